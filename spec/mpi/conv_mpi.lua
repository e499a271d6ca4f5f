-- Conv networks under mpirun (make test-mpi): data-parallel training of a
-- conv net ends where one process on the whole data ends (1e-12: only the
-- order of the gradient's sum differs), and the machine of the sharded
-- run predicts what the one-process machine predicts and reproduces the
-- network (1e-10), as for dense networks (train_mpi, machine_mpi).
local pk = require "pathkernel"
local mpi = require "pathkernel.mpi"

local n = 17
local X, Y = pk.randn(n, 2 * 5 * 4, 31), pk.randn(n, 2, 32)
local Xl, Yl = mpi.shard(X), mpi.shard(Y)
local Xq = pk.randn(4, 2 * 5 * 4, 33)

local function rel(a, b) return (a - b):max_abs() / b:max_abs() end

local function net()
  return pk.network{ input = { 2, 5, 4 }, activation = "tanh", seed = 9,
    layers = { { "conv", channels = 3, size = { 3, 2 }, stride = { 2, 1 }, padding = 1 }, { "avgpool", size = 2 },
               { "dense", 4 }, { "dense", 2 } } }
end

describe("conv networks with comm = mpi", function()
  for _, opts in ipairs{
    { optimizer = "gd", lr = 0.1, steps = 10 },
    { optimizer = "adam", lr = 0.01, steps = 10, batch_size = 5, seed = 4 },
  } do
    it("train and decompose as one process on the whole data: " .. opts.optimizer, function()
      local function run(extra)
        local o = {}
        for k, v in pairs(opts) do o[k] = v end
        for k, v in pairs(extra) do o[k] = v end
        o.progress = false
        local nn = net()
        return nn:train(o), nn
      end
      local t1, net1 = run{ X = X, Y = Y, record = true }
      local t2, net2 = run{ X = Xl, Y = Yl, record = true, comm = mpi }
      assert.is_true(rel(net2:params(), net1:params()) <= 1e-12)
      local km1, km2 = pk.machine.from_trajectory(t1), pk.machine.from_trajectory(t2, { comm = mpi })
      assert.is_true(rel(km2:predict(Xq), km1:predict(Xq)) <= 1e-12)
      local _, r = km2:verify(Xq)
      assert.is_true(r <= 1e-10, r)
    end)
  end
end)
