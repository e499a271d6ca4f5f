-- The decomposition sharded by training examples under mpirun (make
-- test-mpi): a run recorded with comm = mpi holds each rank's shard; its
-- machine (from_trajectory with comm) predicts what the one-process
-- machine of the same run on the whole data predicts (1e-12), its
-- contributions gathered in rank order are the one-process contributions,
-- and verify stays within 1e-10 of the network. A shard integrates with
-- the gauss rule (the default there): the exact rule is refused.
local pk = require "pathkernel"
local mpi = require "pathkernel.mpi"

local rank, size = mpi.rank(), mpi.size()

local n = 19
local X, Y = pk.randn(n, 3, 21), pk.randn(n, 2, 22)
local Xl, Yl = mpi.shard(X), mpi.shard(Y)
local Xq = pk.randn(5, 3, 23)

local function rel(a, b) return (a - b):max_abs() / b:max_abs() end

local function both(opts)
  local function run(extra)
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    local net = pk.network{ sizes = { 3, 12, 2 }, activation = "tanh", seed = 8 }
    return net:train(o), net
  end
  local t1 = run{ X = X, Y = Y, record = true }
  local t2, net2 = run{ X = Xl, Y = Yl, record = true, comm = mpi }
  return pk.machine.from_trajectory(t1), pk.machine.from_trajectory(t2, { comm = mpi }), net2
end

describe("pk.machine.from_trajectory(traj, { comm = mpi })", function()
  for _, opts in ipairs{
    { optimizer = "gd", lr = 0.1, steps = 12 },
    { optimizer = "sgd", lr = 0.1, steps = 15, batch_size = 4, seed = 2 },
    { optimizer = "momentum", lr = 0.05, steps = 12, batch_size = 5, seed = 3, weight_decay = 0.01 },
    { optimizer = "adam", lr = 0.01, steps = 12, batch_size = 6, seed = 4 },
  } do
    it("matches the one-process machine for " .. opts.optimizer, function()
      local km1, km2, net2 = both(opts)
      local p1, p2 = km1:predict(Xq), km2:predict(Xq)
      assert.is_true(rel(p2, p1) <= 1e-12, "predict off by " .. rel(p2, p1))
      local abs, r = km2:verify(Xq)
      assert.is_true(r <= 1e-10 and abs <= 1e-10 * net2:forward(Xq):max_abs(), r)
      -- the rank's columns, gathered in rank order, are the whole set's
      local C1, C2 = km1:contributions(Xq), km2:contributions(Xq)
      for k = 1, 2 do
        assert.are.equal(Xl:rows(), C2[k]:cols())
        local G = mpi.allgather(C2[k]:t()):t()
        assert.is_true(rel(G, C1[k]) <= 1e-12, "contributions off by " .. rel(G, C1[k]))
      end
      -- every rank predicts the same bits
      local P = mpi.allgather(pk.matrix{ { p2:get(1, 1), p2:get(5, 2) } })
      for r = 2, size do assert.are.equal(0, (P:slice(r, r) - P:slice(1, 1)):max_abs()) end
    end)
  end

  it("refuses a shard without comm, explain and save, on every rank alike", function()
    local net = pk.network{ sizes = { 3, 12, 2 }, seed = 8 }
    local t = net:train{ X = Xl, Y = Yl, steps = 3, record = true, comm = mpi }
    local ok, err = pcall(pk.machine.from_trajectory, t)
    assert.is_false(ok)
    assert.truthy(err:find("one rank's shard of a data-parallel run", 1, true), err)
    local km = pk.machine.from_trajectory(t, { comm = mpi })
    ok, err = pcall(km.explain, km, Xq:slice(1, 1), 3)
    assert.truthy(err:find("explain: a shard's machine holds this rank's examples only", 1, true), err)
    -- the exact rule's residuals and certificate need every rank's contributions
    ok, err = pcall(pk.machine.from_trajectory, t, { comm = mpi, rule = "exact" })
    assert.truthy(err:find("the exact rule needs every example's contributions", 1, true), err)
    ok, err = pcall(km.certificate, km, Xq)
    assert.truthy(err:find("certificate: a shard's machine holds this rank's contributions", 1, true), err)
    -- attribution reads every example of every step: a shard is refused
    for _, f in ipairs{ function() return pk.attribute.metagradient(t, Xq) end,
                        function() return pk.attribute.tracin(t, Xq) end,
                        function() return pk.attribute.weights(t) end } do
      ok, err = pcall(f)
      assert.is_false(ok)
      assert.truthy(err:find("one rank's shard of a data-parallel run; attribution needs the whole run", 1, true), err)
    end
    ok, err = pcall(t.save, t, os.tmpname())
    assert.truthy(err:find("save: a rank's shard of a data-parallel run cannot be saved", 1, true), err)
    assert.are.equal(size, mpi.allreduce(pk.ones(1, 1)):get(1, 1))
  end)

  it("refuses queries that differ in shape across ranks without a hang", function()
    local _, km = both{ optimizer = "gd", lr = 0.1, steps = 3 }
    if size == 1 then return end
    local Q = rank == 0 and pk.randn(5, 4, 1) or Xq
    local ok, err = pcall(km.predict, km, Q)
    assert.is_false(ok)
    if rank ~= 0 then assert.truthy(err:find("predict: rank 0 refused its arguments", 1, true), err) end
    assert.are.equal(size, mpi.allreduce(pk.ones(1, 1)):get(1, 1))
  end)
end)
