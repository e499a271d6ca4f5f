-- bench/path.lua - the exact decomposition (issue 5): 256 queries over a
-- 500-step GD run of sizes {32, 256, 256, 1}, n = 1024, timed against the
-- training run itself; the contraction's GEMM rate against dgemm in the
-- same run; the node count the default rule needs for 1e-9; and the
-- trajectory's memory with record = true and with every = 10.
local pk = require "pathkernel"
local U = require "bench.util"

local n, nq, steps, lr = 1024, 256, tonumber(os.getenv("PK_BENCH_STEPS")) or 500, 0.05
local sizes = { 32, 256, 256, 1 }
local X, Y = pk.randn(n, 32, 1), pk.randn(n, 1, 2)
local Xq = pk.randn(nq, 32, 3)
local net0 = pk.network{ sizes = sizes, activation = "tanh", seed = 3 }

U.header(("decomposition of %d queries over a %d-step GD run, sizes {32, 256, 256, 1}, n = %d"):format(nq, steps, n))
local net = net0:clone()
local t_plain = U.time(function() net:train{ X = X, Y = Y, lr = lr, steps = steps, progress = false } end)
net = net0:clone()
local traj
local t_rec = U.time(function() traj = net:train{ X = X, Y = Y, lr = lr, steps = steps, record = true, progress = false } end)
local net10 = net0:clone()
local traj10 = net10:train{ X = X, Y = Y, lr = lr, steps = steps, record = { every = 10 }, progress = false }
U.row("training, s", t_plain)
U.row("training with record = true, s", t_rec)
U.row("trajectory memory, record = true, MiB", traj:memory() / 2^20)
U.row("trajectory memory, every = 10, MiB", traj10:memory() / 2^20)

local results = {}
for _, nodes in ipairs{ 1, 2, 3, 4 } do
  local km = pk.machine.from_trajectory(traj, { nodes = nodes })
  local t = U.time(function() km:predict(Xq, { progress = false }) end)
  local _, rel = km:verify(Xq)
  results[nodes] = { t = t, rel = rel }
  U.row(("gauss %d node%s: time, s"):format(nodes, nodes > 1 and "s" or ""), t)
  U.row(("gauss %d node%s: max relative error"):format(nodes, nodes > 1 and "s" or ""), rel)
end
-- per node: the marginal cost of a node (replay is paid once)
local per_node = (results[4].t - results[1].t) / 3
U.row("marginal decomposition time per node, s", per_node)
U.row("per node / training time (target <= 1.0)", per_node / t_plain)
U.row("4 nodes total / (4 x training time)", results[4].t / (4 * t_plain))
local need
for nodes = 1, 4 do if results[nodes].rel <= 1e-9 then need = nodes; break end end
U.row("nodes needed for 1e-9 (default 4)", need or 0 / 0)
local km10 = pk.machine.from_trajectory(traj10, { nodes = 4 })
U.row("4 nodes from every = 10 checkpoints, s", U.time(function() km10:predict(Xq, { progress = false }) end))

-- the contraction's rate: per node and step, for each layer, products of
-- the queries' sensitivities and inputs with the batch's (nq x d by d x n
-- GEMMs, d = 256 here; the first layer's inputs are done once): useful
-- flops over the marginal time of a node, which also pays for the queries'
-- forward and backward passes at the node
local per_node_step = 2 * nq * n * (256 + 256 + 256 + 256)
local rate = per_node_step * steps / per_node / 1e9
local dg = U.dgemm_rate(2048)
U.row("contraction GFLOP/s (marginal node time)", rate)
U.row("dgemm 2048^3 GFLOP/s, same run", dg)
U.row("contraction rate / dgemm rate (target >= 0.5)", rate / dg)
