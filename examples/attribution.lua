-- attribution.lua - which training digits would change a prediction had
-- they been left out? A small softmax network learns a few hundred 8x8
-- digits by gradient descent, its run recorded. Five attribution methods
-- score every training digit for a few dozen test digits (the logit of the
-- class each is predicted to be): the exact metagradient through the run,
-- the path decomposition (what each digit did along the run that
-- happened), TracIn-CP, influence functions and representer values. Each
-- is judged the way the field judges them: the linear datamodeling score
-- (retraining on random halves and on 95% subsets, same initial weights,
-- seed and batch order) and retraining without each query's top-k digits.
-- Last, the weights themselves as a superposition of the training digits:
-- a few first-layer units' weight change beside the digits whose exact
-- shares make up most of it.
--
--   eval "$(make -s env)"; lua5.4 examples/attribution.lua [outdir]
--
-- Data: examples/data/digits.csv. PATHKERNEL_QUICK=1 runs a smaller
-- version (used by the specs).
local pk = require "pathkernel"

-- the output folder, quick mode and the digits data, as every digits example
local ex = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/digits_data.lua")
  .start("attribution")
local outdir, quick = ex.out, ex.quick
local D = ex:digits()

local m = quick and 150 or 300            -- training digits
local nq = quick and 8 or 30              -- test digits to explain
local subsets = quick and 12 or 100       -- LDS retrainings per fraction
local ks = quick and { 5 } or { 10, 50 }  -- remove-top-k
local X, Y, Xt = pk.split(D:columns(1, 64) / 16, D:columns(65, 65) + 1, { test = D:rows() - m, shuffle = false })
local Xq = Xt:slice(1, nq):copy()

-- the run: full-batch gradient descent from fixed initial weights
local net0 = pk.network{ sizes = { 64, 16, 10 }, activation = "tanh", seed = 1 }
local train = { loss = "softmax", optimizer = "gd", lr = 2, steps = quick and 100 or 200, seed = 1 }
local function options(extra)
  local o = { X = X, Y = Y, progress = false }
  for k, v in pairs(train) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end
local net = net0:clone()
local tt = pk.clock()
local traj = net:train(options{ record = true })
local ttrain = pk.clock() - tt
print(("trained %s on %d digits: %d steps of gd in %.2f s, train accuracy %.3f"):format(
  tostring(net), m, #traj, ttrain, pk.accuracy(net:forward(X), Y)))

-- each query is scored on the logit of the class it is predicted to be
local pred = net:forward(Xq):argmax(2)
local out = {}
for q = 1, nq do out[q] = pred:get(q, 1) end

-- ---- the five methods ----------------------------------------------------
local scores, took = {}, {}
local function timed(name, f)
  local s = pk.clock()
  local r, info = f()
  took[name] = pk.clock() - s
  scores[name] = r
  return r, info
end
-- (output = out: each query's predicted class only; the path decomposition
-- gives every output at once, and the scores below pick each query's)
local M = timed("metagradient", function()
  return pk.attribute.metagradient(traj, Xq, { output = out, progress = false })
end)
print(("metagradient: %d query outputs in %.2f s, %.2f x the training run per query output"):format(
  nq, took.metagradient, took.metagradient / ttrain / nq))
timed("path", function()
  return pk.machine.from_trajectory(traj):contributions(Xq, { progress = false })
end)
timed("tracin", function() return pk.attribute.tracin(traj, Xq, { every = 10, output = out, progress = false }) end)
local damping, iinfo
timed("influence", function()
  -- influence functions assume a minimum: the smallest damping (from 1e-3
  -- up by tens) that makes H + damping I positive definite
  local last
  for _, d in ipairs{ 1e-3, 1e-2, 1e-1, 1 } do
    local ok, r, info = pcall(pk.attribute.influence, net, X, Y, Xq,
      { loss = "softmax", damping = d, output = out, progress = false })
    if ok then
      damping, iinfo = d, info
      return r
    end
    last = r
    print(("influence: damping %g refused: %s"):format(d, tostring(r):match("not positive definite[^;]*") or tostring(r)))
  end
  error(last)
end)
print(("influence: damping %g, eigenvalues of H + damping I in [%.3g, %.3g]"):format(
  damping, iinfo.min_eigenvalue, iinfo.max_eigenvalue))
local _, rinfo = timed("representer", function()
  return pk.attribute.representer(net, X, Y, Xq, { loss = "softmax", lambda = 0.003, output = out, progress = false })
end)
print(("representer: last layer fine-tuned to a stationary point in %d Newton steps (gradient %.1e)"):format(
  rinfo.iterations, rinfo.gradient))

-- ---- the metagradient is exact: central differences of retraining ----------
do
  local q, k = 1, out[1]
  local row, best = M:row(q):totable()[1], 1
  for i = 2, m do if math.abs(row[i]) > math.abs(row[best]) then best = i end end
  local h = 1e-4
  local function f(w)
    local W = pk.ones(m, 1)
    W:set(best, 1, w)
    local n = net0:clone()
    n:train(options{ weights = W })
    return n:forward(Xq:row(1)):get(1, k)
  end
  local fd = (f(1 + h) - f(1 - h)) / (2 * h)
  print(("metagradient vs central differences of retraining (query 1, digit %d): %.9f vs %.9f, relative error %.1e"):format(
    best, row[best], fd, math.abs(row[best] - fd) / math.abs(fd)))
end

-- ---- judged by retraining ---------------------------------------------------
local methods = { "metagradient", "path", "tracin", "influence", "representer" }
local lds = {}
for _, fraction in ipairs{ 0.5, 0.95 } do
  local s = pk.clock()
  lds[fraction] = pk.attribute.lds{ net = net0, X = X, Y = Y, train = train, Xq = Xq, scores = scores,
    subsets = subsets, fraction = fraction, seed = 1, output = out, progress = false }
  print(("LDS at fraction %.2f: %d retrainings in %.1f s"):format(fraction, subsets, pk.clock() - s))
end
local s = pk.clock()
local top = pk.attribute.remove_top{ net = net0, X = X, Y = Y, train = train, Xq = Xq, scores = scores,
  k = ks, output = out, progress = false }
print(("remove-top-k: %d retrainings per method in %.1f s"):format(nq * #ks + 1, pk.clock() - s))

print()
local head = ("%-13s %16s %16s"):format("method", "LDS (0.5)", "LDS (0.95)")
for _, k in ipairs(ks) do head = head .. ("  %22s"):format(("remove top %d: dlogit, flips"):format(k)) end
print(head .. "   time")
for _, name in ipairs(methods) do
  local a, b = lds[0.5][name], lds[0.95][name]
  local line = ("%-13s %7.3f +- %.3f %7.3f +- %.3f"):format(name, a.lds, a.se, b.lds, b.se)
  for j = 1, #ks do
    line = line .. ("  %13.3f %6.0f%%"):format(top[name].mean_change[j], 100 * top[name].flip_rate[j])
  end
  print(line .. ("  %5.2f s"):format(took[name]))
end
print()

local xs, series = {}, {}
for i = 1, #methods do xs[i] = i end
for _, fraction in ipairs{ 0.5, 0.95 } do
  local ys = {}
  for i, name in ipairs(methods) do ys[i] = lds[fraction][name].lds end
  series[#series + 1] = { x = xs, y = ys, label = ("fraction kept %.2f"):format(fraction), style = "linespoints" }
end
local file, note = pk.plot.line{
  file = outdir .. "/attribution.png", series = series, xrange = { 0.8, 5.2 }, yrange = { -0.1, 1.05 },
  title = "Linear datamodeling score on 8x8 digits: 1 metagradient, 2 path, 3 TracIn, 4 influence, 5 representer",
  xlabel = "method", ylabel = "LDS (Spearman, mean over queries)", legend = "bottom left",
}
print("pictures:")
ex.picture(file, note)

-- ---- the weights as a superposition of the training digits ---------------------
local S, decay = pk.attribute.weights(traj, { layer = 1, progress = false })
local dW = (traj:weights(#traj) - traj:weights(0)):slice(1, S:cols()):t()
print(("first layer: the %d training digits' shares and the decay part sum to w_T - w_0 within %.1e (largest change %.3g)"):format(
  m, (S:sum(1) + decay - dW):max_abs(), dW:max_abs()))
-- the units that moved most; for each, the digits whose shares carry most
-- of its change: fraction_i = share_i . dw / |dw|^2 (they sum to 1 with decay)
local units = {}
for u = 1, 16 do
  local n = 0
  for j = 1, 64 do n = n + dW:get(1, (u - 1) * 64 + j) ^ 2 end
  units[u] = { u = u, norm = math.sqrt(n) }
end
table.sort(units, function(a, b) return a.norm > b.norm end)
local shown, images = quick and 2 or 4, {}
local ntop = 6
for r = 1, shown do
  local u, dw, n2 = units[r].u, {}, units[r].norm ^ 2
  local lo, hi = math.huge, -math.huge
  for j = 1, 64 do
    dw[j] = dW:get(1, (u - 1) * 64 + j)
    lo, hi = math.min(lo, dw[j]), math.max(hi, dw[j])
  end
  local fr = {}
  for i = 1, m do
    local d = 0
    for j = 1, 64 do d = d + S:get(i, (u - 1) * 64 + j) * dw[j] end
    fr[i] = { i = i, f = d / n2 }
  end
  table.sort(fr, function(a, b) return a.f > b.f end)
  local acc, half = 0, nil
  for j = 1, m do
    acc = acc + fr[j].f
    if not half and acc >= 0.5 then half = j end
  end
  local topsum = 0
  for j = 1, ntop do topsum = topsum + fr[j].f end
  print(("  hidden unit %2d: |dw| %.3f; its %d largest shares carry %.0f%% of it, %s digits reach half"):format(
    u, units[r].norm, ntop, 100 * topsum, half and tostring(half) or "no set of"))
  local scaled = {}
  for j = 1, 64 do scaled[j] = (dw[j] - lo) / (hi - lo > 0 and hi - lo or 1) end
  images[#images + 1] = { data = scaled, title = ("unit %d: w_T - w_0"):format(u) }
  for j = 1, ntop do
    local i = fr[j].i
    images[#images + 1] = { data = X:row(i), title = ("#%d (a %d): %.0f%%"):format(i, Y:get(i, 1) - 1, 100 * fr[j].f) }
  end
end
file, note = pk.plot.images{
  file = outdir .. "/attribution_weights.png", images = images, columns = ntop + 1, range = { 0, 1 },
  palette = "gray_r",
  title = ("A first-layer unit's weight change (scaled), then the %d digits whose exact shares "
    .. "carry most of it"):format(ntop),
}
ex.picture(file, note)
ex:done()
