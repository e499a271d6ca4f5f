-- The collectives of pathkernel.mpi under mpirun (make test-mpi): sums and
-- gathers against what every rank can compute alone, the same bits on
-- every rank, and a bad argument on one rank raising on every rank with
-- the ranks still in step afterwards.
local pk = require "pathkernel"
local mpi = require "pathkernel.mpi"

local rank, size = mpi.rank(), mpi.size()

-- every rank's row of a 1 x c matrix, gathered: the rows must be equal bits
local function same_everywhere(M)
  local flat = M:rows() * M:cols()
  local row = pk.zeros(1, flat)
  for i = 1, M:rows() do
    for j = 1, M:cols() do row:set(1, (i - 1) * M:cols() + j, M:get(i, j)) end
  end
  local G = mpi.allgather(row)
  for r = 2, G:rows() do
    for j = 1, flat do
      if G:get(r, j) ~= G:get(1, j) then return false end
    end
  end
  return true
end

describe("pathkernel.mpi collectives", function()
  it("numbers the ranks 0..size-1, each once", function()
    assert.is_true(size >= 1 and rank >= 0 and rank < size)
    local G = mpi.allgather(pk.matrix{ { rank } })
    assert.are.equal(size, G:rows())
    for r = 1, size do assert.are.equal(r - 1, G:get(r, 1)) end
    mpi.barrier()
  end)

  it("allreduce sums the ranks' matrices, the same bits on every rank", function()
    local S = mpi.allreduce(pk.randn(3, 4, 100 + rank))
    local want = pk.zeros(3, 4)
    for r = 0, size - 1 do want = want + pk.randn(3, 4, 100 + r) end
    -- the order of the additions may differ from ours: a few roundings
    assert.is_true((S - want):max_abs() <= 1e-14 * size * want:max_abs())
    assert.is_true(same_everywhere(S))
  end)

  it("allgather stacks the rows in rank order, empty blocks included", function()
    -- rank r holds r rows (rank 0 none), row i of rank r holds r*100 + i
    local mine = pk.zeros(rank, 2)
    for i = 1, rank do mine:set(i, 1, rank * 100 + i); mine:set(i, 2, -rank) end
    local G = mpi.allgather(mine)
    assert.are.equal(size * (size - 1) / 2, G:rows())
    local at = 1
    for r = 0, size - 1 do
      for i = 1, r do
        assert.are.equal(r * 100 + i, G:get(at, 1))
        assert.are.equal(-r, G:get(at, 2))
        at = at + 1
      end
    end
  end)

  it("shard splits the rows in contiguous blocks that gather back to the matrix", function()
    for _, n in ipairs{ 0, 1, size, 2 * size + 1, 17 } do
      local X = pk.randn(n, 3, 7)
      local part, first, last = mpi.shard(X)
      assert.are.equal(last - first + 1, part:rows())
      local base = n // size
      assert.is_true(part:rows() == base or part:rows() == base + 1)
      local G = mpi.allgather(part)
      assert.are.equal(n, G:rows())
      if n > 0 then assert.are.equal(0, (G - X):max_abs()) end
    end
  end)

  it("refuses shapes that differ across ranks on every rank, and stays in step", function()
    local ok, err = pcall(mpi.allreduce, pk.ones(2, 2 + (rank == size - 1 and 1 or 0)))
    if size > 1 then
      assert.is_false(ok)
      assert.truthy(err:find("mpi.allreduce: the ranks' matrices differ in shape", 1, true), err)
    end
    ok, err = pcall(mpi.allgather, pk.ones(1, rank == 0 and 3 or 2))
    if size > 1 then
      assert.is_false(ok)
      assert.truthy(err:find("mpi.allgather: the ranks' matrices differ in columns", 1, true), err)
    end
    -- a collective after the refusals completes: no rank is left behind
    assert.are.equal(size, mpi.allreduce(pk.ones(1, 1)):get(1, 1))
  end)

  it("turns a bad argument on one rank into an error on every rank", function()
    local arg = rank == 0 and "not a matrix" or pk.ones(2, 2)
    local ok, err = pcall(mpi.allreduce, arg)
    assert.is_false(ok)
    if rank == 0 then
      assert.truthy(err:find("bad argument #1 to 'mpi.allreduce' (pathkernel.Matrix expected, got string)", 1, true), err)
    else
      assert.truthy(err:find("mpi.allreduce: rank 0 gave a bad argument", 1, true), err)
    end
    local released = pk.ones(1, 1)
    if rank == size - 1 then released:release() end
    ok, err = pcall(mpi.allgather, released)
    assert.is_false(ok)
    assert.truthy(err:find(rank == size - 1 and "matrix has been released" or "gave a bad argument", 1, true), err)
    assert.are.equal(size, mpi.allreduce(pk.ones(1, 1)):get(1, 1))
  end)

  it("says what it needs in its communicator", function()
    assert.are.equal("funneled", mpi.thread_level)
    assert.are.equal("userdata", type(mpi.comm))
  end)
end)
