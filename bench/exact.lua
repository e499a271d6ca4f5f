-- bench/exact.lua - the exact rule (issue 14) against the training run it
-- explains: a recorded GD run of sizes {24, 256, 256, 1}, n = 512, 200
-- steps, lr 0.05, rewritten as a kernel machine for 128 queries by the
-- default rule, for tanh and relu; side by side in one run, best of a few
-- interleaved rounds: the plain training run, the machine from the record
-- (targets: <= 2.0x training, verify <= 1e-10), training with explain = Xq
-- (target <= 1.5x), the fixed 4-node Gauss rule for comparison, and for
-- relu the share of (query, step) pairs that were split at kinks and the
-- time they took.
--
--   make bench B=exact        (PK_BENCH_STEPS, PK_BENCH_ROUNDS to change)
local pk = require "pathkernel"
local U = require "bench.util"

local n, nq, d = 512, 128, 24
local steps = tonumber(os.getenv("PK_BENCH_STEPS")) or 200
local rounds = tonumber(os.getenv("PK_BENCH_ROUNDS")) or 3
local lr = 0.05
local X, Y = pk.randn(n, d, 1), pk.randn(n, 1, 2)
local Xq = pk.randn(nq, d, 3)

for _, act in ipairs{ "tanh", "relu" } do
  U.header(("%s: a %d-step GD run of {24, 256, 256, 1}, n = %d, lr %g; %d queries"):format(act, steps, n, lr, nq))
  local net0 = pk.network{ sizes = { d, 256, 256, 1 }, activation = act, seed = 3 }
  local best = { plain = math.huge, exact = math.huge, online = math.huge, gauss = math.huge }
  local traj, rel, grel, orel, info
  for _ = 1, rounds do
    local net = net0:clone()
    best.plain = math.min(best.plain, U.time(function()
      net:train{ X = X, Y = Y, lr = lr, steps = steps, progress = false }
    end))
    net = net0:clone()
    traj = net:train{ X = X, Y = Y, lr = lr, steps = steps, record = true, progress = false }
    local km = pk.machine.from_trajectory(traj)
    best.exact = math.min(best.exact, U.time(function() km:predict(Xq, { progress = false }) end))
    _, rel = km:verify(Xq)
    _, info = km:certificate(Xq)
    local km_online
    net = net0:clone()
    best.online = math.min(best.online, U.time(function()
      local _
      _, km_online = net:train{ X = X, Y = Y, lr = lr, steps = steps, explain = Xq, progress = false }
    end))
    _, orel = km_online:verify(Xq)
    local g = pk.machine.from_trajectory(traj, { rule = "gauss" })
    best.gauss = math.min(best.gauss, U.time(function() g:predict(Xq, { progress = false }) end))
    _, grel = g:verify(Xq)
  end
  U.row("training, s", best.plain)
  U.row("exact machine from the record, s", best.exact)
  U.row("exact machine / training (target <= 2.0)", best.exact / best.plain)
  U.row("exact machine: max relative error (target <= 1e-10)", rel)
  U.row("train{ explain = Xq }, s", best.online)
  U.row("train{ explain = Xq } / training (target <= 1.5)", best.online / best.plain)
  U.row("train{ explain = Xq }: max relative error", orel)
  U.row("node evaluations per (query, step)", info.nodes)
  U.row("pairs that needed more nodes than first tried, %", 100 * info.refined / info.pairs)
  if act == "relu" then
    U.row("pairs split at kinks, %", 100 * info.split / info.pairs)
    U.row("time on split pairs, s", info.split_seconds)
  end
  U.row("gauss, 4 nodes: s", best.gauss)
  U.row("gauss, 4 nodes: / training", best.gauss / best.plain)
  U.row("gauss, 4 nodes: max relative error", grel)
end

-- item 6: explain on one query against the decomposition of many, on the
-- digits classifier of examples/digits_explain.lua (250 steps)
do
  local D = pk.read_csv(U.here .. "/../examples/data/digits.csv")
  local m = 500
  local Xd, Yd, Xt = pk.split(D:columns(1, 64) / 16, D:columns(65, 65) + 1,
    { test = D:rows() - m, shuffle = false })
  local net = pk.network{ sizes = { 64, 64, 10 }, activation = "tanh", seed = 1 }
  U.header("explain: the digits classifier {64, 64, 10}, m = 500, 250 steps of lr 4")
  local traj = net:train{ X = Xd, Y = Yd, loss = "softmax", lr = 4, steps = 250, record = true,
    progress = false }
  local Q = Xt:slice(1, 100)
  local best = { single = math.huge, many = math.huge, rows = math.huge }
  for _ = 1, rounds do
    local km = pk.machine.from_trajectory(traj)
    best.single = math.min(best.single, U.time(function()
      for i = 1, 20 do km:explain(Q:row(i), 5, { progress = false }) end
    end))
    local all = pk.machine.from_trajectory(traj)
    best.many = math.min(best.many, U.time(function() all:coefficients(Q, { progress = false }) end))
    best.rows = math.min(best.rows, U.time(function()
      for i = 1, 100 do all:explain(Q:row(i), 5, { progress = false }) end
    end))
  end
  U.row("20 single-query explains, s", best.single)
  U.row("100 queries at once (coefficients), s", best.many)
  U.row("one explain / the decomposition of 100", best.single / 20 / best.many)
  U.row("then 100 explains of its rows, s", best.rows)
end
