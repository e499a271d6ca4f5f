-- bench/attribution.lua - exact metagradients (issue 15) timed against the
-- training run they differentiate: time per query output over the
-- training time (target <= 2, batched over queries) for gd on the digits
-- network and for sgd and adam on a wider network, in wall time and in
-- this process's CPU time (which a loaded machine disturbs less; run with
-- OPENBLAS_NUM_THREADS=1 to compare one core with one core); the replay
-- cost of checkpoints; the smallest memory limit the call runs in; then
-- the LDS table of examples/attribution.lua (run in full).
local pk = require "pathkernel"
local U = require "bench.util"

-- best wall and CPU seconds of reps runs
local function timing(f, reps)
  local w, c = math.huge, math.huge
  for _ = 1, reps or 2 do
    local w0, c0 = pk.clock(), os.clock()
    f()
    w, c = math.min(w, pk.clock() - w0), math.min(c, os.clock() - c0)
  end
  return w, c
end

local function ratio_rows(label, traj, tw, tc, Xq, outputs)
  for _, nq in ipairs{ 1, 8, 32 } do
    local q = Xq:slice(1, nq)
    local w, c = timing(function() pk.attribute.metagradient(traj, q, { progress = false }) end)
    U.row(("%s: %d queries x %d outputs, s"):format(label, nq, outputs), w)
    U.row(("%s: per query output / training, wall"):format(label), w / tw / (nq * outputs))
    U.row(("%s: per query output / training, CPU (target <= 2)"):format(label), c / tc / (nq * outputs))
  end
end

-- the digits network of examples/attribution.lua: 300 digits, 200 gd steps
do
  local D = assert(pk.read_csv(U.here .. "/../examples/data/digits.csv"))
  local X, Y, Xt = pk.split(D:columns(1, 64) / 16, D:columns(65, 65) + 1, { test = D:rows() - 300, shuffle = false })
  local Xq = Xt:slice(1, 32):copy()
  U.header("metagradient, digits {64, 16, 10} tanh, 300 examples, 200 gd steps, softmax")
  local net0 = pk.network{ sizes = { 64, 16, 10 }, activation = "tanh", seed = 1 }
  local o = { X = X, Y = Y, loss = "softmax", lr = 2, steps = 200, progress = false }
  local tw, tc = timing(function() net0:clone():train(o) end, 5)
  o.record = true
  local traj = net0:clone():train(o)
  U.row("training, s", tw)
  ratio_rows("gd", traj, tw, tc, Xq, 10)
  o.record = { every = 20 }
  local traj20 = net0:clone():train(o)
  local q = Xq:slice(1, 8)
  local t1 = U.time(function() pk.attribute.metagradient(traj, q, { progress = false }) end)
  local t20 = U.time(function() pk.attribute.metagradient(traj20, q, { progress = false }) end)
  U.row("8 queries from every = 20 checkpoints / from every step", t20 / t1)
  -- the smallest memory limit it runs in (bisection), against the adjoints
  -- alone: 2 x (queries x outputs x parameters) doubles for gd
  local old = pk.memory_limit()
  local lo, hi = 1 << 16, 1 << 30
  while hi / lo > 1.05 do
    local mid = math.floor(math.sqrt(lo * hi))
    pk.set_memory_limit(mid)
    if pcall(pk.attribute.metagradient, traj20, q, { progress = false }) then hi = mid else lo = mid end
  end
  pk.set_memory_limit(old)
  U.row("8 queries, every = 20: smallest memory limit, MiB", hi / 2^20)
  U.row("  the adjoints and lambda_d alone (8 x 10 x 1210 x 2 doubles), MiB", 8 * 10 * 1210 * 2 * 8 / 2^20)
end

-- a wider network: sgd and adam, 1024 examples, batches of 128
do
  local n, steps = 1024, 100
  local X, Y, Xq = pk.randn(n, 32, 1), pk.randn(n, 1, 2), pk.randn(32, 32, 3)
  local net0 = pk.network{ sizes = { 32, 256, 256, 1 }, activation = "tanh", seed = 3 }
  for _, opt in ipairs{ "sgd", "adam" } do
    U.header(("metagradient, {32, 256, 256, 1} tanh, n = %d, %d %s steps of batch 128, mse"):format(n, steps, opt))
    local o = { X = X, Y = Y, optimizer = opt, lr = opt == "adam" and 1e-3 or 0.05, batch_size = 128,
                steps = steps, seed = 1, progress = false }
    local tw, tc = timing(function() net0:clone():train(o) end, 5)
    o.record = true
    local traj = net0:clone():train(o)
    U.row("training, s", tw)
    ratio_rows(opt, traj, tw, tc, Xq, 1)
  end
end

-- the LDS table of the digits example, in full
do
  U.header("examples/attribution.lua (full): LDS and remove-top-k on the digits")
  local dir = U.tmpdir()
  local p = assert(io.popen(("%s %s/../examples/attribution.lua '%s' 2>&1"):format(
    arg[-1] or "lua5.4", U.here, dir)))
  local show = false
  for l in p:lines() do
    if l:match("^method ") then show = true end
    if show and l == "" then show = false end
    if show or l:match("^LDS at") or l:match("^metagradient") then print("  " .. l) end
  end
  p:close()
  U.rmdir(dir)
end
