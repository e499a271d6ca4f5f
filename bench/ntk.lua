-- bench/ntk.lua - the empirical NTK Gram (issue 4): 2048 x 2048, sizes
-- {32, 512, 512, 1}, tanh, float64. pathkernel's structured Gram against the
-- functorch vmap(jacrev) + contraction recipe in PyTorch 1.13 with the same
-- weights, and pathkernel's useful GFLOP/s against a dgemm of comparable
-- size timed in the same run.
local pk = require "pathkernel"
local U = require "bench.util"

local n = tonumber(os.getenv("PK_BENCH_N")) or 2048
local sizes = { 32, 512, 512, 1 }
local net = pk.network{ sizes = sizes, activation = "tanh", seed = 1 }
local X = pk.randn(n, sizes[1], 2)
local K = pk.kernel.tangent(net)

U.header(("tangent kernel Gram %d x %d, sizes {32, 512, 512, 1}, tanh"):format(n, n))
-- best of interleaved rounds: a passing load on this shared machine hits
-- every measurement alike
local G
local X2 = pk.matrix(X)
local t_pk, t_pk2, dg = math.huge, math.huge, 0
for _ = 1, 3 do
  t_pk = math.min(t_pk, U.time(function() G = K:gram(X, X) end))
  t_pk2 = math.min(t_pk2, U.time(function() K:gram(X, X2) end))
  dg = math.max(dg, U.dgemm_rate(2048))
end

-- useful flops of the structured formula: per layer (K = 1) a Gram of the
-- layer inputs (d_{l-1}) and, below the last layer, of the sensitivities
-- (d_l); the symmetric Gram does half of them
local per_pair = 0
for l = 1, #sizes - 1 do
  per_pair = per_pair + 2 * sizes[l]
  if l < #sizes - 1 then per_pair = per_pair + 2 * sizes[l + 1] end
end
local flops_full = per_pair * n * n
local rate = flops_full / 2 / t_pk / 1e9
local rate2 = flops_full / t_pk2 / 1e9

U.row("pathkernel gram(X, X) (symmetric), s", t_pk)
U.row("pathkernel gram(X, X') (general), s", t_pk2)
U.row("useful GFLOP/s, symmetric (flops done)", rate)
U.row("useful GFLOP/s, general", rate2)
U.row("dgemm 2048^3 GFLOP/s, same run", dg)
U.row("symmetric rate / dgemm rate", rate / dg)
U.row("general rate / dgemm rate", rate2 / dg)

local dir = U.tmpdir()
X:save(dir .. "/X1.pkm")
X:save(dir .. "/X2.pkm")
net:params():save(dir .. "/theta.pkm")
local res, why
if os.getenv("PK_BENCH_NO_COMPETITOR") then res, why = nil, "skipped (PK_BENCH_NO_COMPETITOR)" else res, why = U.competitor("torch_ntk.py", ("--dir %s --sizes 32,512,512,1 --activation tanh --check-rows 4"):format(dir)) end
if not res then
  print("  torch: " .. why)
else
  local Gt = pk.load(dir .. "/gram_torch.pkm")
  local err = (Gt - G):norm() / G:norm()
  U.row("torch functorch vmap(jacrev) recipe, s", res.time)
  U.row("speedup (torch time / pathkernel time)", res.time / t_pk)
  U.row("relative difference of the two Grams", err)
  assert(err < 1e-12, "pathkernel and torch Grams differ")
end
U.rmdir(dir)
