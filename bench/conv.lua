-- bench/conv.lua - conv networks (issue 16): the digits-size CNN 1x8x8 ->
-- conv 16 3x3 pad 1 -> conv 32 3x3 stride 2 -> dense 64 -> 10, tanh,
-- float64, 2 threads, against torch.nn.Conv2d in PyTorch 1.13 with the
-- same weights and data: one full-batch GD step on mse at n = 1024 (target
-- ratio <= 1.0), and the tangent Gram of 512 inputs summed over the 10
-- outputs (512 x 512) against the functorch vmap(jacrev) recipe (target
-- >= 20x), with the memory each used. PK_BENCH_NO_COMPETITOR skips torch.
local pk = require "pathkernel"
local U = require "bench.util"

local function cnn(seed)
  return pk.network{ input = {1, 8, 8}, activation = "tanh", seed = seed,
    layers = { {"conv", channels = 16, size = 3, padding = 1}, {"conv", channels = 32, size = 3, stride = 2},
               {"dense", 64}, {"dense", 10} } }
end

-- the process's resident memory now and at its peak, MiB (Linux)
local function rss()
  local f = io.open("/proc/self/status")
  if not f then return 0, 0 end
  local s = f:read("a")
  f:close()
  return (tonumber(s:match("VmRSS:%s*(%d+)")) or 0) / 1024, (tonumber(s:match("VmHWM:%s*(%d+)")) or 0) / 1024
end

local skip = os.getenv("PK_BENCH_NO_COMPETITOR")
local dir = U.tmpdir()

-- the Gram first, while the process is small, so its peak memory is its own
do
  local n = 512
  local net = cnn(1)
  local X = pk.randn(n, 64, 2)
  local K = pk.kernel.tangent(net, { outputs = "trace" })
  U.header(("tangent kernel Gram %d x %d (trace over 10 outputs) of the CNN, %d parameters"):format(
    n, n, net:nparams()))
  local before = rss()
  local G
  local t = U.time(function() G = K:gram(X) end, 3)
  local _, peak = rss()
  U.row("pathkernel gram(X, X), s", t)
  U.row("pathkernel peak memory above the start, MiB", peak - before)
  X:save(dir .. "/X1.pkm")
  net:params():save(dir .. "/theta.pkm")
  local res, why
  if skip then res, why = nil, "skipped (PK_BENCH_NO_COMPETITOR)"
  else res, why = U.competitor("torch_conv.py", ("--dir %s --mode ntk"):format(dir)) end
  if not res then
    print("  torch: " .. why)
  else
    local Gt = pk.load(dir .. "/gram_torch.pkm")
    U.row("torch functorch vmap(jacrev) recipe, s", res.time)
    U.row("torch peak memory (whole process), MiB", res.peak_rss_mib)
    U.row("speedup (torch time / pathkernel time, target >= 20)", res.time / t)
    U.row("relative difference of the two Grams", (Gt - G):norm() / G:norm())
  end
end

do
  local n, steps, lr = 1024, 50, 0.05
  local X, Y = pk.randn(n, 64, 3), pk.randn(n, 10, 4)
  local net0 = cnn(5)
  U.header(("training step: the CNN, tanh, n = %d, GD on mse, %d steps"):format(n, steps))
  net0:clone():train{ X = X, Y = Y, lr = lr, steps = 1, progress = false }
  local net
  local function run_pk()
    net = net0:clone()
    return U.time(function() net:train{ X = X, Y = Y, lr = lr, steps = steps, progress = false } end) / steps
  end
  local per_pk = run_pk()
  X:save(dir .. "/X.pkm")
  Y:save(dir .. "/Y.pkm")
  net0:params():save(dir .. "/theta.pkm")
  local res, why
  if skip then res, why = nil, "skipped (PK_BENCH_NO_COMPETITOR)"
  else res, why = U.competitor("torch_conv.py", ("--dir %s --mode train --lr %g --steps %d"):format(dir, lr, steps)) end
  -- pathkernel again after torch: the best of the rounds, against torch's
  per_pk = math.min(per_pk, run_pk(), run_pk())
  U.row("pathkernel time per step, s", per_pk)
  if not res then
    print("  torch: " .. why)
  else
    local theta_t = pk.load(dir .. "/theta_torch.pkm")
    U.row("torch time per step, s", res.time_per_step)
    U.row("ratio pathkernel / torch (target <= 1.0)", per_pk / res.time_per_step)
    local d = (theta_t - net:params()):norm() / net:params():norm()
    U.row("relative difference of the final weights", d)
    assert(d < 1e-10, "pathkernel and torch weights differ")
  end
end
U.rmdir(dir)
