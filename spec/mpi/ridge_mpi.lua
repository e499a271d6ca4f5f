-- mpi.ridge under mpirun (make test-mpi): kernel ridge regression solved by
-- ScaLAPACK over the ranks' block-cyclic blocks of K + lambda I must equal
-- pk.machine.ridge on the whole data (1e-10: the same linear system, solved
-- in another order), on any block size and uneven shards; bad input on
-- one rank fails every rank.
local pk = require "pathkernel"
local mpi = require "pathkernel.mpi"

local rank, size = mpi.rank(), mpi.size()
local n = 41
local X, Y = pk.randn(n, 4, 31), pk.randn(n, 3, 32)
local Xq = pk.randn(11, 4, 33)

local function rel(a, b) return (a - b):max_abs() / b:max_abs() end

describe("mpi.ridge", function()
  for _, case in ipairs{
    { kernel = pk.kernel.rbf{ gamma = 0.3 }, block = 4, lambda = 1e-2 },
    { kernel = pk.kernel.rbf{ gamma = 0.3 }, block = 64, lambda = 1e-3 },
    { kernel = pk.kernel.ntk{ depth = 2, activation = "relu" }, block = 5, lambda = 1e-2 },
  } do
    it(("equals pk.machine.ridge (%s, blocks of %d)"):format(case.kernel:name(), case.block), function()
      local one = pk.machine.ridge(case.kernel, X, Y, { lambda = case.lambda })
      local dist = mpi.ridge(case.kernel, mpi.shard(X), mpi.shard(Y), { lambda = case.lambda, block = case.block })
      -- predictions on sharded queries, gathered in rank order
      local p1, p2 = one:predict(Xq), mpi.allgather(dist:predict(mpi.shard(Xq)))
      assert.is_true(rel(p2, p1) <= 1e-10, "off by " .. rel(p2, p1))
      -- every rank holds the same coefficients, and the same inputs as X
      local A = dist:coefficients()
      assert.are.same({ n, 3 }, { A:rows(), A:cols() })
      local G = mpi.allgather(pk.matrix{ { A:get(1, 1), A:get(n, 3), A:sum() } })
      for r = 2, size do assert.are.equal(0, (G:slice(r, r) - G:slice(1, 1)):max_abs()) end
      assert.are.equal(0, (dist:inputs() - X):max_abs())
    end)
  end

  it("takes uneven shards, a rank without rows among them", function()
    local first = rank == 0 and 1 or 1 + 2 * rank
    local last = rank == 0 and 0 or (rank == size - 1 and n or 2 * rank + 2)
    local Xl = last >= first and X:slice(first, last):copy() or pk.zeros(0, 4)
    local Yl = last >= first and Y:slice(first, last):copy() or pk.zeros(0, 3)
    local Xall, Yall = mpi.allgather(Xl), mpi.allgather(Yl)
    local K = pk.kernel.laplacian{ gamma = 0.5 }
    local one = pk.machine.ridge(K, Xall, Yall, { lambda = 1e-2 })
    local dist = mpi.ridge(K, Xl, Yl, { lambda = 1e-2, block = 3 })
    assert.is_true(rel(dist:predict(Xq), one:predict(Xq)) <= 1e-10)
  end)

  it("refuses bad input on one rank on every rank, and stays in step", function()
    local K = pk.kernel.rbf{ gamma = 0.3 }
    local Xl, Yl = mpi.shard(X), mpi.shard(Y)
    local Yb = rank == 0 and Yl:slice(1, Yl:rows() - 1) or Yl
    local ok, err = pcall(mpi.ridge, K, Xl, Yb, { lambda = 1e-2 })
    assert.is_false(ok)
    assert.truthy(err:find(rank == 0 and "mpi.ridge: Y has" or "mpi.ridge: rank 0 gave a bad argument", 1, true), err)
    ok, err = pcall(mpi.ridge, K, Xl, Yl, { lambda = rank == size - 1 and -1 or 1e-2 })
    assert.is_false(ok)
    assert.truthy(err:find(rank == size - 1 and "lambda must be a positive" or "gave a bad argument", 1, true), err)
    local net = pk.network{ sizes = { 4, 5, 2 }, seed = 1 }
    ok, err = pcall(mpi.ridge, pk.kernel.tangent(net), Xl, Yl)
    assert.truthy(err:find("only kernels of one", 1, true), err)
    ok, err = pcall(mpi.ridge, "rbf", Xl, Yl)
    assert.truthy(err:find("pathkernel.Kernel expected", 1, true), err)
    if size > 1 then
      ok, err = pcall(mpi.ridge, K, rank == 1 and pk.randn(3, 5, 1) or Xl, rank == 1 and pk.randn(3, 3, 1) or Yl)
      assert.is_false(ok)
    end
    assert.are.equal(size, mpi.allreduce(pk.ones(1, 1)):get(1, 1))
  end)
end)
