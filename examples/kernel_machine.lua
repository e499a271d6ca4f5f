-- kernel_machine.lua - the main demo (`make demo`): train a small tanh
-- network on a noisy 1-D regression, rewrite the trained network exactly
-- as a kernel machine over its 40 training points, check that the two
-- predict the same everywhere, and show which training points made one
-- prediction what it is.
--
--   eval "$(make -s env)"; lua5.4 examples/kernel_machine.lua [outdir]
--
-- Pictures go to outdir (default examples/out/). PATHKERNEL_QUICK=1 trains
-- for fewer steps (used by the specs).
local pk = require "pathkernel"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local okdir, outdir = pcall(pk.plot.folder, arg and arg[1] or (here .. "/out"))
if not okdir then
  io.stderr:write("kernel_machine: " .. outdir .. "\n")
  os.exit(1)
end
local quick = os.getenv("PATHKERNEL_QUICK") == "1"
local t0 = pk.clock()

-- data: y = sin(x) + noise at 40 random points of [-3, 3]
local m = 40
local X = 6 * pk.rand(m, 1, 11) - 3
local Y = 0.1 * pk.randn(m, 1, 12)
for i = 1, m do Y:set(i, 1, math.sin(X:get(i, 1)) + Y:get(i, 1)) end

-- the network, trained by full-batch gradient descent with its path recorded
local net = pk.network{ sizes = {1, 64, 64, 1}, activation = "tanh", seed = 3 }
local steps, lr = quick and 300 or 1000, 0.2
local traj = net:train{ X = X, Y = Y, lr = lr, steps = steps, record = true, progress = false }
local losses = traj:losses()
print(("trained %s"):format(tostring(net)))
print(("  %d steps of gradient descent, lr %g: loss %.4f -> %.4f"):format(
  steps, lr, losses[1], net:loss(X, Y)))

-- the same function as a kernel machine: f(x) = f0(x) + sum_i contribution_i(x)
local km = pk.machine.from_trajectory(traj)            -- the exact rule: to rounding
print(("rewritten as %s"):format(tostring(km)))

local ng = 121
local G = pk.zeros(ng, 1)
for j = 1, ng do G:set(j, 1, -3.5 + 7 * (j - 1) / (ng - 1)) end
local maxabs, maxrel = km:verify(G, { progress = false })
print(("verification on %d points of [-3.5, 3.5]: max abs error %.3e, max relative error %.3e"):format(
  ng, maxabs, maxrel))
local F = net:forward(G)
local P = km:predict(G)                                -- the same queries: no recomputation

-- which training points made f(x*) what it is
local xstar = 1.0
local q = pk.matrix{{xstar}}
local e = km:explain(q, 5, { progress = false })
print(("explaining f(%g) = %.6f (network: %.6f)"):format(xstar, e.prediction, e.network))
print(("  = f0(x*) %.6f + sum of %d contributions %.6f"):format(e.bias, m, e.sum))
print("  top 5 training points by |contribution| (a positive one pushed f(x*) up):")
print("    rank  index      x_i      y_i   contribution   path kernel")
for r, c in ipairs(e) do
  print(("    %4d  %5d  %7.3f  %7.3f  %13.6f  %12.5g"):format(
    r, c.index, X:get(c.index, 1), Y:get(c.index, 1), c.contribution, c.kernel))
end

-- pictures: the network and the kernel machine over the grid, and the
-- training points coloured by their contribution to f(x*)
local C = km:contributions(q)                          -- 1 x m, already computed by explain
local gx, fnet, kx, kpred = {}, {}, {}, {}
for j = 1, ng do gx[j], fnet[j] = G:get(j, 1), F:get(j, 1) end
for j = 1, ng, 4 do kx[#kx + 1], kpred[#kpred + 1] = G:get(j, 1), P:get(j, 1) end
local tx, ty, tc = {}, {}, {}
for i = 1, m do tx[i], ty[i], tc[i] = X:get(i, 1), Y:get(i, 1), C:get(1, i) end
local fstar = net:forward(q):get(1, 1)

local function report(file, msg)
  if file then print(("  wrote %s"):format(file)) end
  if msg then print((file and "  note: " or "  could not draw it: ") .. msg) end
end

print("pictures:")
report(pk.plot.scatter{
  file = outdir .. "/kernel_machine.png",
  title = ("A trained tanh network and its exact kernel machine (max abs difference %.1e)"):format(maxabs),
  xlabel = "x", ylabel = "f(x)", legend = "below", height = 640,
  palette = "diverging", cblabel = ("contribution of (x_i, y_i) to f(%g)"):format(xstar),
  series = {
    { x = gx, y = fnet, label = "network", style = "lines", color = "#222222", width = 2 },
    { x = kx, y = kpred, label = "kernel machine f0 + sum_i c_i", style = "points", point = 6,
      size = 1.3, color = "#e07b00" },
    { x = tx, y = ty, value = tc, label = "training points", size = 1.6 },
    { x = { xstar }, y = { fstar }, label = ("query x* = %g"):format(xstar), style = "points", point = 3,
      size = 3, color = "#000000" },
  },
})

-- the contributions against x_i: the kernel machine's weights for this query
local order = {}
for i = 1, m do order[i] = i end
table.sort(order, function(a, b) return tx[a] < tx[b] end)
local sx, sc = {}, {}
for k, i in ipairs(order) do sx[k], sc[k] = tx[i], tc[i] end
report(pk.plot.line{
  file = outdir .. "/kernel_machine_contributions.png",
  title = ("Contribution of each training point to f(%g) (they sum to f(x*) - f0(x*) = %.4f)"):format(
    xstar, e.sum),
  xlabel = "training input x_i", ylabel = "contribution c_i(x*)", legend = false,
  series = { { x = sx, y = sc, style = "linespoints", color = "#b2182b" } },
})

print(("done in %.1f s"):format(pk.clock() - t0))
