-- Data-parallel training under mpirun (make test-mpi): each rank trains on
-- its shard with comm = mpi, and must end where one process on the whole
-- data ends (to 1e-12 relative: only the order of the gradient's sum
-- differs), with the same bits on every rank; bad input on one rank fails
-- every rank, and the ranks stay in step after it.
local pk = require "pathkernel"
local mpi = require "pathkernel.mpi"

local rank, size = mpi.rank(), mpi.size()

local function rel(a, b) return (a - b):max_abs() / b:max_abs() end

local function same_everywhere(v)      -- v: P x 1
  local G = mpi.allgather(v:t())
  for r = 2, G:rows() do
    if (G:slice(r, r) - G:slice(1, 1)):max_abs() ~= 0 then return false end
  end
  return true
end

local function copy(t, extra)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  for k, v in pairs(extra or {}) do o[k] = v end
  return o
end

-- the full data on every rank, and a split of its rows that is uneven on
-- purpose: rank r takes a block of r + 2 rows (the last rank the rest)
local n = 29
local X, Y = pk.randn(n, 3, 11), pk.randn(n, 2, 12)
local function uneven(M)
  local first = 1
  for r = 0, rank - 1 do first = first + r + 2 end
  local last = rank == size - 1 and n or first + rank + 1
  return M:slice(first, last):copy()
end
local Xl, Yl = uneven(X), uneven(Y)

local function net() return pk.network{ sizes = { 3, 16, 2 }, activation = "tanh", seed = 4 } end

local function compare(opts)
  local one, par = net(), net()
  local l1 = one:train(copy(opts, { X = X, Y = Y }))
  local l2 = par:train(copy(opts, { X = Xl, Y = Yl, comm = mpi }))
  assert.is_true(rel(par:params(), one:params()) <= 1e-12, "weights off by " .. rel(par:params(), one:params()))
  assert.is_true(same_everywhere(par:params()), "the ranks' weights differ")
  assert.are.equal(#l1, #l2)
  for s = 1, #l1 do assert.is_true(math.abs(l1[s] - l2[s]) <= 1e-12 * math.abs(l1[s])) end
end

describe("net:train{ comm = mpi }", function()
  it("gd equals one process on the whole data", function()
    compare{ optimizer = "gd", lr = 0.1, steps = 30 }
  end)

  it("sgd draws the global batches from the seed, with uneven shards", function()
    compare{ optimizer = "sgd", lr = 0.1, steps = 40, batch_size = 6, seed = 9 }
  end)

  it("momentum and adam take the same steps too", function()
    compare{ optimizer = "momentum", lr = 0.05, steps = 25, batch_size = 7, seed = 2, momentum = 0.8 }
    compare{ optimizer = "adam", lr = 0.01, steps = 25, batch_size = 5, seed = 3 }
    compare{ optimizer = "adamw", lr = 0.01, steps = 10, batch_size = 8, seed = 3 }
    compare{ optimizer = "nesterov", lr = 0.05, steps = 10, seed = 5 }
  end)

  it("carries loss weights, weight decay and an lr function", function()
    local W = pk.rand(n, 1, 5)
    local one, par = net(), net()
    local opts = { optimizer = "sgd", batch_size = 4, seed = 1, steps = 20, weight_decay = 0.01,
                   lr = function(s) return 0.1 / s end }
    one:train(copy(opts, { X = X, Y = Y, weights = W }))
    par:train(copy(opts, { X = Xl, Y = Yl, weights = uneven(W), comm = mpi }))
    assert.is_true(rel(par:params(), one:params()) <= 1e-12)
    assert.is_true(same_everywhere(par:params()))
  end)

  it("trains with a rank that holds no rows", function()
    local Xe = rank == 0 and pk.zeros(0, 3) or mpi.shard(X)
    local Ye = rank == 0 and pk.zeros(0, 2) or mpi.shard(Y)
    -- without rank 0's block the data are the other ranks' blocks
    local Xall, Yall = mpi.allgather(Xe), mpi.allgather(Ye)
    local one, par = net(), net()
    one:train{ X = Xall, Y = Yall, optimizer = "sgd", batch_size = 3, steps = 15, seed = 5, lr = 0.1 }
    par:train{ X = Xe, Y = Ye, optimizer = "sgd", batch_size = 3, steps = 15, seed = 5, lr = 0.1, comm = mpi }
    assert.is_true(rel(par:params(), one:params()) <= 1e-12)
  end)

  it("stops every rank at the same step when on_step stops one", function()
    local par = net()
    local losses = par:train{ X = Xl, Y = Yl, lr = 0.1, steps = 20, comm = mpi,
      on_step = function(s) if rank == size - 1 and s == 7 then return false end end }
    assert.is_true(#losses >= 7 and #losses <= 8, #losses)
    assert.is_true(same_everywhere(par:params()))
  end)
end)

describe("net:train{ comm = mpi } with bad input", function()
  local function fails_everywhere(opts, mine, others)
    local ok, err = pcall(function() return net():train(opts) end)
    assert.is_false(ok)
    if size > 1 or others == nil then
      assert.truthy(err:find(mine, 1, true) or (others and err:find(others, 1, true)), err)
    end
    -- and the ranks are still in step
    assert.are.equal(size, mpi.allreduce(pk.ones(1, 1)):get(1, 1))
    return err
  end

  it("refuses shards with different column counts on every rank", function()
    if size == 1 then return end
    local Xb = rank == 1 and pk.randn(3, 4, 1) or Xl
    local Yb = rank == 1 and pk.randn(3, 2, 1) or Yl
    local ok, err = pcall(function() return net():train{ X = Xb, Y = Yb, steps = 2, comm = mpi } end)
    assert.is_false(ok)
    assert.truthy(err:find("train", 1, true), err)
    assert.are.equal(size, mpi.allreduce(pk.ones(1, 1)):get(1, 1))
  end)

  it("refuses Y rows that do not match X rows on one rank, on every rank", function()
    local Yb = rank == 0 and Yl:slice(1, Yl:rows() - 1) or Yl
    local ok, err = pcall(function() return net():train{ X = Xl, Y = Yb, steps = 2, comm = mpi } end)
    assert.is_false(ok)
    if rank ~= 0 then assert.truthy(err:find("train: rank 0 refused its arguments", 1, true), err) end
    assert.are.equal(size, mpi.allreduce(pk.ones(1, 1)):get(1, 1))
  end)

  it("needs the same seed only where batches are shuffled", function()
    -- gd shuffles nothing: seeds that differ change nothing
    local a = net()
    a:train{ X = Xl, Y = Yl, lr = 0.1, steps = 3, seed = 1 + rank, comm = mpi }
    assert.is_true(same_everywhere(a:params()))
    if size == 1 then return end
    local ok, err = pcall(function()
      return net():train{ X = Xl, Y = Yl, optimizer = "sgd", batch_size = 4, steps = 3, seed = 1 + rank, comm = mpi } end)
    assert.is_false(ok)
    assert.truthy(err:find("train: the ranks disagree on seed", 1, true), err)
    assert.are.equal(size, mpi.allreduce(pk.ones(1, 1)):get(1, 1))
  end)

  it("refuses options and networks that differ across ranks", function()
    if size == 1 then return end
    local ok, err = pcall(function()
      return net():train{ X = Xl, Y = Yl, steps = 2 + (rank == 0 and 1 or 0), comm = mpi } end)
    assert.is_false(ok)
    assert.truthy(err:find("train: the ranks disagree on steps", 1, true), err)
    ok, err = pcall(function()
      local nn = pk.network{ sizes = { 3, 16, 2 }, seed = 4 + rank }
      return nn:train{ X = Xl, Y = Yl, steps = 2, comm = mpi } end)
    assert.is_false(ok)
    assert.truthy(err:find("the network's weights", 1, true), err)
    assert.are.equal(size, mpi.allreduce(pk.ones(1, 1)):get(1, 1))
  end)

  it("refuses what is not a communicator, epochs, sparse records and explain", function()
    local ok, err = pcall(function() return net():train{ X = Xl, Y = Yl, comm = {} } end)
    assert.is_false(ok)
    assert.truthy(err:find("train: option 'comm' must be a communicator", 1, true), err)
    ok, err = pcall(function() return net():train{ X = Xl, Y = Yl, comm = mpi, epochs = 2 } end)
    assert.truthy(err:find("train: give steps, not epochs, with comm", 1, true), err)
    ok, err = pcall(function() return net():train{ X = Xl, Y = Yl, comm = mpi, record = { every = 2 } } end)
    assert.truthy(err:find("train: with comm, record = true (every step) only", 1, true), err)
    ok, err = pcall(function() return net():train{ X = Xl, Y = Yl, comm = mpi, explain = X } end)
    assert.truthy(err:find("train: explain is not available with comm", 1, true), err)
    assert.are.equal(size, mpi.allreduce(pk.ones(1, 1)):get(1, 1))
  end)
end)
