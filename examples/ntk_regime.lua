-- ntk_regime.lua - a wide network trained by gradient descent behaves like
-- its linearization: full-batch gradient descent on the mse loss
-- (1/n) sum_i 1/2 (f(x_i) - y_i)^2 then follows the closed form of
-- kernel gradient flow with the tangent kernel K of the network at
-- initialization,
--   f_t(x) = f_0(x) + K(x, X) K^-1 (I - exp(-lr t K / n)) (Y - f_0(X)),
-- with t the number of steps (pk.machine.gradient_flow with f0 = the
-- initial network on X). This trains a narrow and a wide network on the
-- same 1-D regression and measures how far each one's outputs on a test
-- grid stray from the closed form during training.
--
--   eval "$(make -s env)"; lua5.4 examples/ntk_regime.lua [outdir]
--
-- Pictures go to outdir (default examples/out/). PATHKERNEL_QUICK=1 uses
-- two widths and fewer seeds (used by the specs).
local pk = require "pathkernel"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local okdir, outdir = pcall(pk.plot.folder, arg and arg[1] or (here .. "/out"))
if not okdir then
  io.stderr:write("ntk_regime: " .. outdir .. "\n")
  os.exit(1)
end
local quick = os.getenv("PATHKERNEL_QUICK") == "1"
local t0 = pk.clock()

-- data: y = sin(2x) at 16 points of [-2, 2]; the test grid reaches beyond
local n, nq = 16, 41
local X, Y, Xq = pk.zeros(n, 1), pk.zeros(n, 1), pk.zeros(nq, 1)
for i = 1, n do
  local x = -2 + 4 * (i - 1) / (n - 1)
  X:set(i, 1, x)
  Y:set(i, 1, math.sin(2 * x))
end
for j = 1, nq do Xq:set(j, 1, -2.5 + 5 * (j - 1) / (nq - 1)) end

-- networks {1, w, 1}, erf, ntk parameterization; gd with a small rate, so
-- that the discrete steps stay close to the continuous flow (below)
local widths = quick and { 64, 1024 } or { 64, 256, 1024, 4096 }
local seeds = quick and 2 or 3
local lr, steps, every = 0.02, 1000, 25
local sigma_w, sigma_b = 1.2, 0.5

local function mse(F) return (F - Y):norm() ^ 2 / (2 * n) end

-- one network: train it in chunks of `every` steps and compare, at each
-- checkpoint, its outputs with the closed form and with the linearized
-- model stepped exactly as gd steps (f <- f - (lr/n) K (f(X) - Y))
local function run(w, seed)
  local net = pk.network{ sizes = { 1, w, 1 }, activation = "erf", parameterization = "ntk",
                          sigma_w = sigma_w, sigma_b = sigma_b, seed = seed }
  local K = pk.kernel.tangent(net)                -- a snapshot: the kernel at initialization
  local f0X, f0q = net:forward(X), net:forward(Xq)
  local KX, KqX = K:gram(X), K:gram(Xq, X)
  local lmax = pk.eigh(KX):get(n, 1)
  local lX, lq = f0X:copy(), f0q:copy()           -- the linearized model, in discrete steps
  local r = { w = w, lmax = lmax, gap = 0, lin = 0, disc = 0, t = { 0 },
              loss = { mse(f0X) }, flow_loss = { mse(f0X) } }
  for s = every, steps, every do
    net:train{ X = X, Y = Y, loss = "mse", optimizer = "gd", lr = lr, steps = every, progress = false }
    for _ = 1, every do
      local res = lX - Y
      lX = lX - (lr / n) * (KX * res)
      lq = lq - (lr / n) * (KqX * res)
    end
    local M = pk.machine.gradient_flow(K, X, Y, { lr = lr, t = s, f0 = f0X })
    local P, F = M:predict(Xq, f0q), net:forward(Xq)
    r.gap = math.max(r.gap, (F - P):max_abs())
    r.lin = math.max(r.lin, (F - lq):max_abs())
    r.disc = math.max(r.disc, (P - lq):max_abs())
    r.t[#r.t + 1] = s
    r.loss[#r.loss + 1] = net:loss(X, Y)
    r.flow_loss[#r.flow_loss + 1] = mse(M:predict(X, f0X))
    if s == steps then r.F, r.P = F, P end
  end
  return r
end

print(("%d training points of y = sin(2x) on [-2, 2], %d test points on [-2.5, 2.5]"):format(n, nq))
print(("networks {1, w, 1}, erf, ntk parameterization (sigma_w %g, sigma_b %g); gd, lr %g, %d steps"):format(
  sigma_w, sigma_b, lr, steps))
print(("max over the test points and %d checkpoints of |f_net - f_flow|, mean over %d seeds:"):format(
  steps // every, seeds))
print("   width  |net - flow|  |net - lin gd|  |lin gd - flow|  lr*lmax/n   loss net   loss flow    time")
local rows, first = {}, {}
for _, w in ipairs(widths) do
  local tw = pk.clock()
  local g, l, dsc, a, ln, lf = 0, 0, 0, 0, 0, 0
  for seed = 1, seeds do
    local r = run(w, seed)
    if seed == 1 then first[#first + 1] = r end
    g, l, dsc, a = g + r.gap / seeds, l + r.lin / seeds, dsc + r.disc / seeds, a + lr * r.lmax / n / seeds
    ln, lf = ln + r.loss[#r.loss] / seeds, lf + r.flow_loss[#r.flow_loss] / seeds
  end
  rows[#rows + 1] = { w = w, gap = g }
  print(("  %6d  %12.4f  %14.4f  %15.2e  %9.3f  %9.5f  %10.5f  %5.1f s"):format(
    w, g, l, dsc, a, ln, lf, pk.clock() - tw))
end
local narrow, wide = rows[1], rows[#rows]
print(("gap network vs gradient flow: width %d %.4f, width %d %.4f (%.1fx smaller)"):format(
  narrow.w, narrow.gap, wide.w, wide.gap, narrow.gap / wide.gap))
print("|lin gd - flow| is the linearized model in discrete steps against the closed form at t = steps:")
print("per eigenvalue l of K, (1 - lr l/n)^t against exp(-lr t l/n), which differ by O(lr l/n);")
print("what is left of |net - flow| is the network's departure from its linearization.")

-- pictures: the training loss over time, network against closed form, for
-- the narrowest and the widest network (seed 1); and their final outputs
local colors = { "#b2182b", "#2166ac" }
local loss_series, out_series = {}, {}
local gx = {}
for j = 1, nq do gx[j] = Xq:get(j, 1) end
for k, r in ipairs{ first[1], first[#first] } do
  loss_series[#loss_series + 1] = { x = r.t, y = r.loss, style = "lines", color = colors[k],
    label = ("network, width %d"):format(r.w) }
  loss_series[#loss_series + 1] = { x = r.t, y = r.flow_loss, style = "points", point = 6, color = colors[k],
    label = ("gradient flow, width %d kernel"):format(r.w) }
  local fy, py = {}, {}
  for j = 1, nq do fy[j], py[j] = r.F:get(j, 1), r.P:get(j, 1) end
  out_series[#out_series + 1] = { x = gx, y = fy, style = "lines", color = colors[k],
    label = ("network, width %d"):format(r.w) }
  out_series[#out_series + 1] = { x = gx, y = py, style = "points", point = 6, color = colors[k],
    label = ("gradient flow, width %d kernel"):format(r.w) }
end
local tx, ty = {}, {}
for i = 1, n do tx[i], ty[i] = X:get(i, 1), Y:get(i, 1) end
out_series[#out_series + 1] = { x = tx, y = ty, style = "points", point = 7, color = "#000000",
  label = "training points" }

local function report(file, note)
  if file then print(("  wrote %s"):format(file)) end
  if note then print((file and "  note: " or "  could not draw it: ") .. note) end
end
print("pictures:")
report(pk.plot.line{
  file = outdir .. "/ntk_regime.png",
  title = ("Gradient descent (lines) and kernel gradient flow with the initial tangent kernel (circles), lr %g"):format(lr),
  xlabel = "step t", ylabel = "training loss (mse)", logy = true, legend = "top right", series = loss_series,
})
report(pk.plot.line{
  file = outdir .. "/ntk_regime_outputs.png",
  title = ("After %d steps: the networks and their gradient-flow predictions"):format(steps),
  xlabel = "x", ylabel = "f(x)", legend = "below", height = 640, series = out_series,
})
print(("done in %.1f s"):format(pk.clock() - t0))
