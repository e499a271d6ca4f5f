-- Per-example loss weights (issue 15, item 1): net:train{ weights = Wt }
-- makes a batch's loss (1/|B|) sum w_i l_i. Checked against runs that do
-- the same thing another way (a dropped row is a smaller learning rate on
-- the other rows, a doubled weight a duplicated row), the decomposition's
-- completeness and its zero for a weight-0 row, replay, files, bad input.
local H = require "helpers"
local pk = H.pk

local m = 10
local X, Y = pk.randn(m, 3, 31), pk.randn(m, 1, 32)
local Xq = pk.randn(4, 3, 33)

local function net0() return pk.network{ sizes = { 3, 5, 1 }, activation = "tanh", seed = 4 } end

local function weights(t)
  local W = pk.ones(m, 1)
  for i, v in pairs(t) do W:set(i, 1, v) end
  return W
end

-- the rows of A without row j
local function drop(A, j)
  local parts = {}
  if j > 1 then parts[#parts + 1] = A:slice(1, j - 1) end
  if j < A:rows() then parts[#parts + 1] = A:slice(j + 1, A:rows()) end
  return pk.vstack(parts)
end

local function same_bits(a, b)
  assert.are.same({ a:rows(), a:cols() }, { b:rows(), b:cols() })
  for i = 1, a:rows() do
    for j = 1, a:cols() do
      assert.are.equal(string.pack("<d", b:get(i, j)), string.pack("<d", a:get(i, j)))
    end
  end
end

local OPTS = {
  { optimizer = "gd", lr = 0.1 },
  { optimizer = "sgd", lr = 0.1, batch_size = 4 },
  { optimizer = "momentum", lr = 0.05, momentum = 0.8, dampening = 0.2, weight_decay = 0.01 },
  { optimizer = "nesterov", lr = 0.05, momentum = 0.9, batch_size = 3 },
  { optimizer = "adam", lr = 0.01, weight_decay = 0.02 },
  { optimizer = "adamw", lr = 0.01, batch_size = 5 },
}

local function train(net, o, extra)
  local t = { X = X, Y = Y, steps = 12, seed = 3, progress = false }
  for k, v in pairs(o) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  return net:train(t)
end

describe("train{ weights = }", function()
  it("with every weight 1 is the unweighted run bit for bit, for every optimizer", function()
    for _, o in ipairs(OPTS) do
      local a, b = net0(), net0()
      local la = train(a, o)
      local lb = train(b, o, { weights = pk.ones(m, 1) })
      same_bits(a:params(), b:params())
      for s = 1, #la do assert.are.equal(la[s], lb[s]) end
    end
  end)

  it("reports the batch loss (1/|B|) sum w_i l_i", function()
    local W = weights{ [2] = 0, [5] = 2.5, [7] = 0.25 }
    local net = net0()
    local F = net:forward(X)
    local want = 0
    for i = 1, m do want = want + W:get(i, 1) * 0.5 * (F:get(i, 1) - Y:get(i, 1)) ^ 2 end
    want = want / m
    local losses = net:train{ X = X, Y = Y, steps = 1, lr = 0.1, weights = W, progress = false }
    assert.is_true(math.abs(losses[1] - want) <= 1e-14 * math.abs(want))
  end)

  it("with weight 0 on a row is gd without the row at lr (m - 1)/m", function()
    -- (1/m) sum_{i ~= j} grad l_i = ((m-1)/m) (1/(m-1)) sum_{i ~= j} grad l_i
    for _, j in ipairs{ 1, 6, m } do
      local a, b = net0(), net0()
      a:train{ X = X, Y = Y, steps = 20, lr = 0.2, weights = weights{ [j] = 0 }, progress = false }
      b:train{ X = drop(X, j), Y = drop(Y, j), steps = 20, lr = 0.2 * (m - 1) / m, progress = false }
      -- the same sums in another order: a few ulps per step
      assert.is_true(H.max_rel(a:params(), b:params()) < 1e-12)
    end
  end)

  it("with weight 2 on a row is gd with the row twice at lr (m + 1)/m", function()
    local a, b = net0(), net0()
    a:train{ X = X, Y = Y, steps = 20, lr = 0.2, weights = weights{ [3] = 2 }, progress = false }
    b:train{ X = pk.vstack{ X, X:slice(3, 3) }, Y = pk.vstack{ Y, Y:slice(3, 3) }, steps = 20,
             lr = 0.2 * (m + 1) / m, progress = false }
    assert.is_true(H.max_rel(a:params(), b:params()) < 1e-12)
  end)

  it("draws sgd's batches over every row: a weight changes what a batch adds, not which rows", function()
    local t1 = train(net0(), OPTS[2], { record = true })
    local t2 = train(net0(), OPTS[2], { record = true, weights = weights{ [1] = 0, [4] = 3 } })
    for s = 1, #t1 do assert.are.same(t1:batch(s), t2:batch(s)) end
  end)
end)

describe("weighted runs as kernel machines", function()
  it("stay complete, and a weight-0 row contributes exactly 0, for every optimizer", function()
    local W = weights{ [2] = 0, [4] = 1.7, [9] = 0 }
    for _, o in ipairs(OPTS) do
      local t = train(net0(), o, { record = true, weights = W })
      local km = pk.machine.from_trajectory(t)
      local _, rel = km:verify(Xq)
      assert.is_true(rel < 1e-12, o.optimizer .. ": " .. rel)
      local C = km:contributions(Xq)
      for q = 1, Xq:rows() do
        assert.are.equal(0, C:get(q, 2))
        assert.are.equal(0, C:get(q, 9))
      end
      -- the online machine, accumulated while training, agrees
      local _, km2 = train(net0(), o, { explain = Xq, weights = W })
      assert.is_true(H.max_rel(km2:contributions(Xq), C) < 1e-12, o.optimizer)
    end
  end)

  it("traj:options() carries them, so that the options train the same weights again", function()
    local W = weights{ [2] = 0, [5] = 2 }
    local t = train(net0(), OPTS[3], { record = true, weights = W })
    local o = t:options()
    same_bits(W, o.weights)
    o.X, o.Y, o.progress = X, Y, false
    local again = net0()
    again:train(o)
    same_bits(t:weights(#t), again:params())
    assert.is_nil(train(net0(), OPTS[3], { record = true }):options().weights)
  end)

  it("replay between checkpoints honours the weights", function()
    local W = weights{ [1] = 0.5, [3] = 0, [8] = 2 }
    for _, o in ipairs(OPTS) do
      local full = train(net0(), o, { record = true, weights = W })
      local sparse = train(net0(), o, { record = { every = 5 }, weights = W })
      for s = 0, #full do same_bits(full:weights(s), sparse:weights(s)) end
    end
  end)
end)

describe("weighted trajectories in files", function()
  it("keep their weights (format version 2); unweighted runs stay version 1", function()
    local W = weights{ [2] = 0, [6] = 0.125 }
    local t = train(net0(), OPTS[3], { record = { every = 4 }, weights = W })
    local p = H.tmpname(".pk")
    assert.is_true(t:save(p))
    assert.are.equal(2, string.unpack("<I4", H.read_bytes(p), 9))
    local u = pk.load(p)
    local _, _, Wl = u:data()
    same_bits(W, Wl)
    for s = 0, #t do same_bits(t:weights(s), u:weights(s)) end
    -- without its data, loaded with it
    assert.is_true(t:save(p, { data = false }))
    same_bits(W, select(3, pk.load(p, { X = X, Y = Y }):data()))
    -- a machine file holds the trajectory, weights and all
    assert.is_true(pk.machine.from_trajectory(t):save(p))
    assert.are.equal(2, string.unpack("<I4", H.read_bytes(p), 9))
    assert.is_true(H.max_rel(pk.load(p):predict(Xq), pk.machine.from_trajectory(t):predict(Xq)) == 0)
    local plain = train(net0(), OPTS[1], { record = true })
    assert.is_true(plain:save(p))
    assert.are.equal(1, string.unpack("<I4", H.read_bytes(p), 9))
    same_bits(pk.ones(m, 1), select(3, pk.load(p):data()))
    os.remove(p)
  end)

  it("refuse weights that do not fit the data or are negative", function()
    local t = train(net0(), OPTS[1], { record = true, weights = weights{ [2] = 0.5 } })
    local p = H.tmpname(".pk")
    assert.is_true(t:save(p))
    local good = H.read_bytes(p)
    -- the last weight (just before the CRC) made negative, the CRC fixed
    local body = good:sub(1, -13) .. string.pack("<d", -1)
    H.write_bytes(p, body .. string.pack("<I4", H.crc32(body)))
    H.raises("negative or non-finite loss weight", pk.load, p)
    -- the weight count off by one
    local n_at = #good - 4 - 8 * m - 8
    body = good:sub(1, n_at) .. string.pack("<I8", m - 1) .. good:sub(n_at + 9, -5)
    H.write_bytes(p, body .. string.pack("<I4", H.crc32(body)))
    H.raises("loss weights", pk.load, p)
    os.remove(p)
  end)
end)

describe("bad weights", function()
  local function bad(pattern, W)
    local err = H.raises(pattern, function() return net0():train{ X = X, Y = Y, steps = 1, weights = W, progress = false } end)
    assert.truthy(err:find("train", 1, true), err)
    assert.truthy(err:find("weights", 1, true), err)
  end
  it("names the function and the option", function()
    bad("m x 1 matrix", pk.ones(m - 1, 1))
    bad("m x 1 matrix", pk.ones(m, 2))
    bad("m x 1 matrix", pk.ones(1, m))
    bad("must be a pathkernel.Matrix", { 1, 2, 3 })
    bad("entry 3 is -1", weights{ [3] = -1 })
    bad("entry 5 is NaN", weights{ [5] = 0 / 0 })
    bad("entry 1 is inf", weights{ [1] = math.huge })
  end)
end)
