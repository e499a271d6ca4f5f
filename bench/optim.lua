-- bench/optim.lua - pathkernel's optimizers against torch.optim (issue 6):
-- the same initial weights, data and hyperparameters, full-batch, and the
-- relative difference of the final weights (target 1e-12). Runs when
-- /usr/bin/python3 has torch; otherwise says it was skipped.
local pk = require "pathkernel"
local U = require "bench.util"

local X, Y = pk.randn(64, 5, 1), pk.randn(64, 2, 2)
local sizes = { 5, 16, 16, 2 }
local net0 = pk.network{ sizes = sizes, activation = "tanh", seed = 4 }
local dir = U.tmpdir()
X:save(dir .. "/X.pkm")
Y:save(dir .. "/Y.pkm")
net0:params():save(dir .. "/theta.pkm")

U.header("optimizers against torch.optim, sizes {5, 16, 16, 2}, tanh, 64 examples, 25 steps")
local cases = {
  { optimizer = "sgd", lr = 0.1, weight_decay = 0.01 },
  { optimizer = "momentum", lr = 0.05, momentum = 0.9, dampening = 0.1, weight_decay = 0.01 },
  { optimizer = "nesterov", lr = 0.05, momentum = 0.9, weight_decay = 0.01 },
  { optimizer = "adam", lr = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01 },
  { optimizer = "adamw", lr = 0.01, beta1 = 0.85, beta2 = 0.99, eps = 1e-8, weight_decay = 0.1 },
}
local worst = 0
for _, c in ipairs(cases) do
  local net = net0:clone()
  local o = { X = X, Y = Y, steps = 25, progress = false, batch_size = 64 }
  if c.optimizer == "sgd" then o.optimizer = "gd"; o.batch_size = nil else o.optimizer = c.optimizer end
  for k, v in pairs(c) do if k ~= "optimizer" then o[k] = v end end
  net:train(o)
  local args = ("--dir %s --sizes 5,16,16,2 --activation tanh --loss mse --optimizer %s --lr %g --steps 25"):format(dir, c.optimizer, c.lr)
  for _, k in ipairs{ "momentum", "dampening", "beta1", "beta2", "eps" } do
    if c[k] then args = args .. (" --%s %.17g"):format(k, c[k]) end
  end
  args = args .. (" --weight-decay %.17g"):format(c.weight_decay or 0)
  local res, why = U.competitor("torch_optim.py", args)
  if not res then
    print("  torch: " .. why)
    break
  end
  local theta = pk.load(dir .. "/theta_torch.pkm")
  local d = (theta - net:params()):norm() / net:params():norm()
  worst = math.max(worst, d)
  U.row(c.optimizer .. ": relative difference of the weights", d)
end
U.row("worst (target <= 1e-12)", worst)
U.rmdir(dir)
assert(worst <= 1e-12, "optimizers differ from torch.optim")
