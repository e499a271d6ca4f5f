-- learning_rate.lua - how exact is the kernel machine? The paper's sum
-- Kp = sum_s eta_s Kg_{w_s} (rule = "left") evaluates the gradient at the
-- start of each step, so at a fixed horizon eta * steps its error falls
-- like eta; averaging the gradient over each step with n-point
-- Gauss-Legendre (rule = "gauss") makes it fall like eta^(2n), down to
-- rounding; the exact rule (the default) picks the nodes each step needs.
-- This trains the same network for the same horizon at several learning
-- rates and measures, with km:verify, the largest gap between the kernel
-- machine and the network on a query set. Then the same for relu, whose
-- kinks fixed nodes cannot see: the exact rule cuts each step where a unit
-- switches.
--
--   eval "$(make -s env)"; lua5.4 examples/learning_rate.lua [outdir]
local pk = require "pathkernel"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local okdir, outdir = pcall(pk.plot.folder, arg and arg[1] or (here .. "/out"))
if not okdir then
  io.stderr:write("learning_rate: " .. outdir .. "\n")
  os.exit(1)
end
local quick = os.getenv("PATHKERNEL_QUICK") == "1"
local t0 = pk.clock()

-- a smooth target on 2-D inputs, and queries away from the training points
local m = 30
local X, Xq = pk.randn(m, 2, 1), pk.randn(40, 2, 3)
local Y = pk.zeros(m, 1)
for i = 1, m do Y:set(i, 1, math.sin(2 * X:get(i, 1)) * math.cos(X:get(i, 2))) end

local horizon = 4                 -- eta * steps, the same "time" for every run
local lrs = quick and { 0.8, 0.4, 0.2, 0.1, 0.05 } or { 0.8, 0.4, 0.2, 0.1, 0.05, 0.025, 0.0125 }
local rules = {
  { name = "left (the paper's sum)", short = "left", opts = { rule = "left" }, order = 1 },
  { name = "gauss, 1 node (midpoint)", short = "gauss n=1", opts = { rule = "gauss", nodes = 1 }, order = 2 },
  { name = "gauss, 2 nodes", short = "gauss n=2", opts = { rule = "gauss", nodes = 2 }, order = 4 },
  { name = "gauss, 4 nodes", short = "gauss n=4", opts = { rule = "gauss", nodes = 4 } },
  { name = "exact (the default)", short = "exact", opts = {} },
}
local rounding = 1e-13            -- below this the error is rounding, not the rule

print(("network {2, 32, 32, 1} tanh, %d training points, horizon eta * steps = %g"):format(m, horizon))
print(("max |kernel machine - network| over %d queries:"):format(Xq:rows()))
local head = { "      lr  steps" }
for _, r in ipairs(rules) do head[#head + 1] = ("%12s"):format(r.short) end
print(table.concat(head))
local errs = {}
for _, r in ipairs(rules) do errs[r] = {} end
for k, lr in ipairs(lrs) do
  local steps = math.floor(horizon / lr + 0.5)
  local net = pk.network{ sizes = {2, 32, 32, 1}, activation = "tanh", seed = 5 }
  local traj = net:train{ X = X, Y = Y, lr = lr, steps = steps, record = true, progress = false }
  local line = { ("%8.4f %6d"):format(lr, steps) }
  for _, r in ipairs(rules) do
    local maxabs = pk.machine.from_trajectory(traj, r.opts):verify(Xq, { progress = false })
    errs[r][k] = maxabs
    line[#line + 1] = ("%12.3e"):format(maxabs)
  end
  print(table.concat(line))
end

-- least-squares slope of log(error) against log(lr), over errors above rounding
local function slope(xs, ys)
  local n, sx, sy, sxx, sxy = 0, 0, 0, 0, 0
  for i = 1, #xs do
    if ys[i] > rounding then
      local x, y = math.log(xs[i]), math.log(ys[i])
      n, sx, sy, sxx, sxy = n + 1, sx + x, sy + y, sxx + x * x, sxy + x * y
    end
  end
  if n < 2 then return nil, n end
  return (n * sxy - sx * sy) / (n * sxx - sx * sx), n
end

print("fitted slopes of log(error) against log(lr):")
for _, r in ipairs(rules) do
  local s, n = slope(lrs, errs[r])
  r.fitted = s
  local worst = 0
  for _, e in ipairs(errs[r]) do worst = math.max(worst, e) end
  if s then
    print(("  slope %-10s %.3f  (theory %d, fitted on the %d rates with errors above %g)"):format(
      r.short, s, r.order, n, rounding))
  else
    print(("  slope %-10s none: every error is at rounding level (max %.2e)"):format(r.short, worst))
  end
end

-- the picture: errors floored at 1e-17 so that exact zeros show on a log axis
local series = {}
for _, r in ipairs(rules) do
  local y = {}
  for k, e in ipairs(errs[r]) do y[k] = math.max(e, 1e-17) end
  local label = r.fitted and ("%s: slope %.2f"):format(r.name, r.fitted) or (r.name .. ": rounding")
  series[#series + 1] = { x = lrs, y = y, label = label, style = "linespoints" }
end
local file, note = pk.plot.line{
  file = outdir .. "/learning_rate.png",
  title = ("Kernel machine vs network at a fixed horizon eta*steps = %g"):format(horizon),
  xlabel = "learning rate eta", ylabel = "max |kernel machine - network| on the queries",
  logx = true, logy = true, legend = "below", height = 640, series = series,
}
-- relu: the integrand jumps where a unit switches inside a step
print("the same for relu, {2, 32, 32, 1}:")
print("      lr  steps   gauss n=4       exact  split pairs")
local relu_worst = { gauss = 0, exact = 0 }
for _, lr in ipairs(quick and { 0.4, 0.1 } or { 0.4, 0.2, 0.1, 0.05 }) do
  local steps = math.floor(horizon / lr + 0.5)
  local net = pk.network{ sizes = {2, 32, 32, 1}, activation = "relu", seed = 5 }
  local traj = net:train{ X = X, Y = Y, lr = lr, steps = steps, record = true, progress = false }
  local g = pk.machine.from_trajectory(traj, { rule = "gauss" }):verify(Xq, { progress = false })
  local km = pk.machine.from_trajectory(traj)
  local e = km:verify(Xq, { progress = false })
  local _, info = km:certificate(Xq)
  relu_worst.gauss, relu_worst.exact = math.max(relu_worst.gauss, g), math.max(relu_worst.exact, e)
  print(("%8.4f %6d %11.3e %11.3e  %5.1f%%"):format(lr, steps, g, e, 100 * info.split / info.pairs))
end
print(("relu: worst gauss n=4 %.2e, worst exact %.2e"):format(relu_worst.gauss, relu_worst.exact))

print("pictures:")
if file then print(("  wrote %s"):format(file)) end
if note then print((file and "  note: " or "  could not draw it: ") .. note) end
print(("done in %.1f s"):format(pk.clock() - t0))
