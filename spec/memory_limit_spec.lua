-- The memory limit: every allocation whose size the data sets is checked
-- against it, and a refusal names what was asked for, the limit and the
-- remedy; tiles shrink to fit rather than fail; a decomposition's whole
-- need is checked before it starts.
local H = require "helpers"
local pk = H.pk

describe("the memory limit", function()
  local old
  before_each(function() old = pk.memory_limit() end)
  after_each(function() pk.set_memory_limit(old) end)

  -- the message says how much was asked for, the limit, and both remedies
  local function refused(pattern, f, ...)
    local err = H.raises(pattern, f, ...)
    assert.truthy(err:find("above the memory limit of", 1, true), err)
    assert.truthy(err:find("pk.set_memory_limit raises it; or ask for less", 1, true), err)
  end

  it("guards every constructor", function()
    pk.set_memory_limit(1 << 20)
    refused("a 1000 x 1000 matrix needs 7.6 MiB", pk.zeros, 1000, 1000)
    refused("a 1000 x 1000 matrix needs 7.6 MiB", pk.ones, 1000, 1000)
    refused("a 1000 x 1000 matrix needs 7.6 MiB", pk.randn, 1000, 1000, 1)
    refused("a 1000 x 1000 matrix needs 7.6 MiB", pk.rand, 1000, 1000, 1)
    refused("a 1000 x 1000 matrix needs 7.6 MiB", pk.eye, 1000)
    local rows = {}
    for i = 1, 400 do rows[i] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
      17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37,
      38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50 } end
    pk.set_memory_limit(100000)
    refused("a 400 x 50 matrix needs 156.2 KiB", pk.matrix, rows)
  end)

  it("guards arithmetic results, copies and transposes", function()
    local A = pk.ones(300, 300)
    pk.set_memory_limit(500000)
    refused("a 300 x 300 matrix needs 703.1 KiB", function() return A + A end)
    refused("a 300 x 300 matrix needs 703.1 KiB", function() return A * A end)
    refused("a 300 x 300 matrix needs 703.1 KiB", function() return 2 * A end)
    refused("a 300 x 300 matrix needs 703.1 KiB", function() return A / 2 end)
    refused("a 300 x 300 matrix needs 703.1 KiB", A.copy, A)
    refused("a 300 x 300 matrix needs 703.1 KiB", A.t, A)
    refused("a 300 x 300 matrix needs 703.1 KiB", A.hadamard, A, A)
  end)

  it("guards reading CSV, at each step of the read", function()
    local p = H.tmpname(".csv")
    assert(pk.ones(200, 50):write_csv(p))
    pk.set_memory_limit(4096)
    refused("reading " .. p .. " needs", pk.read_csv, p)
    pk.set_memory_limit(40000)        -- the text fits, the values do not
    refused("read_csv needs", pk.read_csv, p)
    pk.set_memory_limit(old)
    assert.are.same({ 200, 50 }, { pk.read_csv(p):shape() })
    os.remove(p)
  end)

  -- refusals that say how to ask for less, for networks, training and kernels
  local function refused_hint(pattern, hint, f, ...)
    local err = H.raises(pattern, f, ...)
    assert.truthy(err:find("above the memory limit of", 1, true), err)
    assert.truthy(err:find("(pk.set_memory_limit raises it; or " .. hint .. ")", 1, true), err)
  end
  local X4, Y4 = pk.randn(4, 2, 1), pk.randn(4, 1, 2)

  it("guards the Jacobian", function()
    local net = pk.network{ sizes = { 2, 50, 1 }, seed = 1 }
    pk.set_memory_limit(1 << 20)
    refused_hint("the 1000 x 201 Jacobian needs 1.5 MiB", "ask for fewer rows of X at a time "
      .. "(pk.kernel.tangent never forms the Jacobian)", net.jacobian, net, pk.zeros(1000, 2))
  end)

  it("guards Gram matrices, pointing at outputs = \"trace\" for several outputs", function()
    local K = pk.kernel.tangent(pk.network{ sizes = { 1, 3, 4 }, seed = 1 })
    pk.set_memory_limit(1 << 20)
    refused_hint("the 800 x 1200 Gram needs 7.3 MiB", 'ask for fewer rows at a time (X:slice(i, j)), '
      .. 'or outputs = "trace" for one value per pair of examples', K.gram, K, pk.zeros(200, 1), pk.zeros(300, 1))
    local K1 = pk.kernel.tangent(pk.network{ sizes = { 1, 3, 1 }, seed = 1 })
    refused_hint("the 1000 x 1000 Gram needs 7.6 MiB", "ask for fewer rows at a time (X:slice(i, j))",
      K1.gram, K1, pk.zeros(1000, 1))
  end)

  it("shrinks tangent tiles to fit the limit (a wide network's tile was refused)", function()
    local net = pk.network{ sizes = { 2, 2000, 1 }, seed = 1 }
    local X = pk.randn(300, 2, 3)
    local K = pk.kernel.tangent(net)
    local want, wantd = K:gram(X), K:diag(X)
    pk.set_memory_limit(1 << 20)
    assert.is_true(H.rel_err(K:gram(X), want) < 1e-13)
    assert.is_true(H.rel_err(K:diag(X), wantd) < 1e-13)
    pk.set_memory_limit(64 << 10)
    refused_hint("one tile of the tangent kernel needs", "use a smaller network", K.gram, K, X:slice(1, 20))
  end)

  it("fits the preconditioned kernel's tiles, Jacobians and their product, to the limit", function()
    local net = pk.network{ sizes = { 2, 50, 1 }, seed = 1 }
    local X = pk.randn(100, 2, 3)
    local traj = net:train{ X = X4, Y = Y4, optimizer = "adam", steps = 2, record = true, progress = false }
    local K = pk.kernel.preconditioned(traj, 1)
    local want = K:gram(X)
    pk.set_memory_limit(100 << 10)
    assert.is_true(H.rel_err(K:gram(X), want) < 1e-13)
  end)

  it("guards recording: weights, optimizer state, batches and losses, each with its remedy", function()
    local every = "record = { every = k } keeps every k-th step only"
    local net = pk.network{ sizes = { 2, 200, 1 }, seed = 1 }
    pk.set_memory_limit(16 << 20)
    refused_hint("the trajectory's weights (20002 checkpoints of 801 parameters) needs 122.2 MiB", every,
      net.train, net, { X = X4, Y = Y4, steps = 20000, record = true, progress = false })
    refused_hint("the optimizer's state at the checkpoints (20002 checkpoints of 2 x 801 values) needs 244.5 MiB",
      every, net.train, net, { X = X4, Y = Y4, steps = 20000, optimizer = "adam", record = true, progress = false })
    refused_hint("the loss history needs 32.0 MiB", "train for fewer steps",
      net.train, net, { X = X4, Y = Y4, steps = 1 << 22, progress = false })
    local X = pk.randn(64, 2, 1)
    pk.set_memory_limit(4 << 20)
    refused_hint("the trajectory's batches needs 24.4 MiB", "train for fewer steps or with a smaller batch_size",
      net.train, net, { X = X, Y = pk.randn(64, 1, 2), optimizer = "sgd", batch_size = 64, steps = 100000,
        record = { every = 1000000 }, progress = false })
    -- what every = k is for: the same run fits
    pk.set_memory_limit(16 << 20)
    local traj = net:train{ X = X4, Y = Y4, steps = 20000, record = { every = 1000 }, progress = false }
    assert.are.equal(20000, #traj)
  end)

  it("guards the decomposition: what it holds in all, before it starts, with the remedy for the largest part", function()
    local net = pk.network{ sizes = { 2, 100, 1 }, seed = 1 }
    local X = pk.randn(100, 2, 1)
    local Y = pk.randn(100, 1, 2)
    pk.set_memory_limit(2 << 20)
    refused_hint("train: explain = Xq: the decomposition of 5000 queries x 1 outputs over 100 training "
      .. "examples needs", "explain fewer queries at a time", net.train, net,
      { X = X, Y = Y, steps = 1, explain = pk.zeros(5000, 2), progress = false })
    -- the queries' gradients (3000 x 401, 9.2 MiB in all) are taken a tile at a time
    local n2 = net:clone()
    local X5, Y5, Q = pk.randn(5, 2, 1), pk.randn(5, 1, 1), pk.randn(3000, 2, 4)
    local _, km2 = n2:train{ X = X5, Y = Y5, steps = 2, weight_decay = 0.1, explain = Q, progress = false }
    assert.is_true((km2:predict(Q) - n2:forward(Q)):max_abs() < 1e-12)
    local Xm = pk.randn(1000, 2, 1)
    refused_hint("per-example optimizer traces 3.1 MiB",
      "train on fewer examples or a smaller network; gd and sgd keep no per-example traces", net.train, net,
      { X = Xm, Y = pk.randn(1000, 1, 1), optimizer = "adam", steps = 1, explain = pk.zeros(1, 2),
        progress = false })
    -- offline, the same limits hold for any queries
    pk.set_memory_limit(0)
    local traj = net:train{ X = X, Y = Y, steps = 2, record = true, progress = false }
    local km = pk.machine.from_trajectory(traj)
    pk.set_memory_limit(2 << 20)
    refused_hint("kernel machine: the decomposition of 5000 queries x 1 outputs over 100 training examples needs",
      "explain fewer queries at a time", km.predict, km, pk.zeros(5000, 2))
    local Kp = pk.kernel.path(traj)
    refused_hint("the 1000 x 1000 Gram needs 7.6 MiB", "ask for fewer rows at a time (X:slice(i, j))",
      Kp.gram, Kp, pk.zeros(1000, 2))
  end)

  it("is read back as set, and 0 restores the default", function()
    pk.set_memory_limit(12345)
    assert.are.equal(12345, pk.memory_limit())
    pk.set_memory_limit(0)
    assert.is_true(pk.memory_limit() > 12345)
    H.raises("memory limit must be >= 0, got -1", pk.set_memory_limit, -1)
    H.raises("memory limit must be an integer", pk.set_memory_limit, 0 / 0)
  end)

  it("totable still works within the limit", function()
    local old = pk.memory_limit()
    pk.set_memory_limit(1 << 20)
    local ok, err = pcall(function() return pk.zeros(3, 2):totable() end)
    local big = pcall(function() return pk.zeros(5000, 10):totable() end)
    pk.set_memory_limit(old)
    assert(ok, err)
    assert.is_false(big)
  end)
end)

describe("under a small memory limit tiles shrink instead of failing", function()
  local X, Y = pk.randn(60, 3, 1), pk.randn(60, 1, 2)
  local Q = pk.randn(50, 3, 3)
  local net = pk.network{ sizes = { 3, 32, 32, 1 }, seed = 1 }
  local traj = net:train{ X = X, Y = Y, lr = 0.1, steps = 4, record = true, progress = false }
  local net2 = pk.network{ sizes = { 3, 32, 32, 1 }, seed = 1 }
  local traj2 = net2:train{ X = X, Y = Y, lr = 0.1, steps = 4, record = { every = 2 }, progress = false }
  local lim0 = pk.memory_limit()
  after_each(function() pk.set_memory_limit(lim0) end)

  -- f() under a limit of `bytes`, and without one
  local function under(bytes, f)
    local free = f()
    pk.set_memory_limit(math.floor(bytes))
    local ok, got = pcall(f)
    pk.set_memory_limit(lim0)
    assert(ok, got)
    return got, free
  end
  local function same(what, a, b)
    local e = (a - b):max_abs() / b:max_abs()
    assert.is_true(e <= 1e-14, what .. ": " .. e)
  end

  it("the path kernel's Gram and diagonal, just above what the output needs", function()
    local K = pk.kernel.path(traj)
    same("path gram", under(math.floor(50 * 50 * 8 * 1.05), function() return K:gram(Q) end))
    same("path cross gram", under(math.floor(50 * 60 * 8 * 1.05), function() return K:gram(Q, X) end))
    -- the diagonal is small: the step's weights (1217 parameters) bound it
    same("path diag", under(1217 * 8 * 1.05, function() return K:diag(Q) end))
    -- replaying a run recorded every 2 steps holds the activations of its
    -- batch of 60 (194 values each)
    local K2 = pk.kernel.path(traj2)
    local lim = 60 * 194 * 8 * 1.05
    same("replayed path gram", under(lim, function() return K2:gram(Q) end))
    same("replayed path cross gram", under(lim, function() return K2:gram(Q, X) end))
    same("replayed path diag", under(lim, function() return K2:diag(Q) end))
  end)

  it("the tangent kernel's Gram and diagonal, just above what the output needs", function()
    local K = pk.kernel.tangent(net)
    same("tangent cross gram", under(math.floor(50 * 60 * 8 * 1.05), function() return K:gram(Q, X) end))
    same("tangent gram", under(math.floor(50 * 50 * 8 * 1.05), function() return K:gram(Q) end))
    same("tangent diag", under(2000, function() return K:diag(Q) end))
    local K2 = pk.kernel.tangent(pk.network{ sizes = { 3, 32, 32, 4 }, seed = 2 })
    same("4 outputs", under(math.floor(200 * 200 * 8 * 1.05), function() return K2:gram(Q) end))
    same("4 outputs, diag", under(math.floor(4000), function() return K2:diag(Q) end))
  end)

  it("refuses only when one row does not fit, and says what one row needs", function()
    -- one row of a layer of 2000 units holds 16 KB of activations
    local K = pk.kernel.tangent(pk.network{ sizes = { 3, 2000, 1 }, seed = 1 })
    pk.set_memory_limit(10000)
    local e1 = H.raises("one row of the tangent kernel's diagonal needs", K.diag, K, Q)
    local e2 = H.raises("one tile of the tangent kernel needs", K.gram, K, Q:slice(1, 2))
    pk.set_memory_limit(lim0)
    assert.truthy(e1:find("tangent kernel", 1, true), e1)
    assert.truthy(e2:find("tangent kernel", 1, true), e2)
    -- the replay of a run recorded every 2 steps needs its batch
    local K2 = pk.kernel.path(traj2)
    pk.set_memory_limit(20000)
    local err = H.raises("replaying the run (the activations and loss gradients of a batch of 60 examples)",
      K2.gram, K2, Q:slice(1, 10))
    pk.set_memory_limit(lim0)
    assert.truthy(err:find("record = true", 1, true), err)
  end)

  it("net:forward and a regressor's predictions", function()
    local big = pk.randn(2000, 3, 5)
    same("case 8", under(2000 * 8 * 1.5, function() return net:forward(big) end))
    local M = pk.machine.ridge(pk.kernel.rbf(), X, Y)
    same("case 9", under(2000 * 8 * 1.5, function() return M:predict(big) end))
  end)
end)

describe("a decomposition under a small memory limit", function()
  local lim0 = pk.memory_limit()
  after_each(function() pk.set_memory_limit(lim0) end)
  local X, Y = pk.randn(10, 2, 1), pk.randn(10, 1, 2)
  local Q = pk.randn(1000, 2, 3)

  -- the results of f(), without a limit and under one
  local function both(bytes, f)
    local a, b = f()
    pk.set_memory_limit(bytes)
    local ok, c, d = pcall(f)
    pk.set_memory_limit(lim0)
    assert(ok, c)
    return a, b, c, d
  end
  local function close(a, b, what)
    local e = (a - b):max_abs() / b:max_abs()
    assert.is_true(e <= 1e-13, what .. ": " .. e)
  end

  -- 1000 queries of a {2, 64, 1} network: each node's activations alone
  -- hold 1 MB, the results (contributions, kernel values, input products,
  -- outputs, the queries) about 300 KB
  it("takes smaller query tiles and gives the same machine (offline and online, gd and adam)", function()
    for _, opt in ipairs{ "gd", "adam" } do
      local net = pk.network{ sizes = { 2, 64, 1 }, seed = 2 }
      local traj = net:train{ X = X, Y = Y, optimizer = opt, lr = 0.05, steps = 5, record = true,
        progress = false }
      local km = pk.machine.from_trajectory(traj)
      local c1, k1, c2, k2 = both(600000, function()
        local _, kp = km:coefficients(Q)
        return km:contributions(Q), kp
      end)
      close(c2, c1, opt .. " contributions")
      close(k2, k1, opt .. " kernel values")
      local _, m1, _, m2 = both(600000, function()
        return pk.network{ sizes = { 2, 64, 1 }, seed = 2 }:train{ X = X, Y = Y, optimizer = opt,
          lr = 0.05, steps = 5, explain = Q, progress = false }
      end)
      close(m2:contributions(Q), m1:contributions(Q), opt .. " online")
      close(m2:contributions(Q), c1, opt .. " online against offline")
    end
  end)
end)

describe("a decomposition's memory is checked before it starts", function()
  local lim0 = pk.memory_limit()
  after_each(function() pk.set_memory_limit(lim0) end)
  local X, Y = pk.randn(20, 2, 1), pk.randn(20, 1, 2)
  -- 2000 queries over 20 examples: contributions, kernel values and input
  -- products 320 KB each, 1 MB in all; no single array above 400 KB
  local Q = pk.randn(2000, 2, 3)

  it("train{ explain = } refuses before the first step, naming the total, the parts and the remedy", function()
    for _, opt in ipairs{ "gd", "adam" } do
      local net = pk.network{ sizes = { 2, 4, 1 }, seed = 1 }
      local w0, steps = net:params(), 0
      pk.set_memory_limit(400000)
      local err = H.raises("train: explain = Xq: the decomposition of 2000 queries x 1 outputs over 20 "
        .. "training examples needs", net.train, net, { X = X, Y = Y, optimizer = opt, steps = 3,
          explain = Q, kernel = true, progress = false, on_step = function() steps = steps + 1 end })
      pk.set_memory_limit(lim0)
      assert.are.equal(0, steps)
      assert.are.equal(0, (net:params() - w0):max_abs())
      for _, part in ipairs{ "above the memory limit of 390.6 KiB", "the contributions and path kernel values 625.0 KiB",
                             "the queries' input products 312.5 KiB", "explain fewer queries at a time" } do
        assert.truthy(err:find(part, 1, true), err)
      end
      assert.are.equal(opt == "adam", err:find("gd or sgd, which keep no per-example traces", 1, true) ~= nil, err)
    end
  end)

  it("a machine from a trajectory refuses before it replays a step", function()
    local net = pk.network{ sizes = { 2, 4, 1 }, seed = 1 }
    local km = pk.machine.from_trajectory(net:train{ X = X, Y = Y, optimizer = "adam", steps = 3,
      record = { every = 2 }, progress = false })
    local called = 0
    pk.set_memory_limit(400000)
    local err = H.raises("kernel machine: the decomposition of 2000 queries", km.predict, km, Q,
      { progress = function() called = called + 1 end })
    pk.set_memory_limit(lim0)
    assert.are.equal(0, called)
    assert.truthy(err:find("gd or sgd", 1, true), err)
    -- fewer queries at a time pass
    pk.set_memory_limit(400000)
    local p = km:predict(Q:slice(1, 200))
    pk.set_memory_limit(lim0)
    assert.is_true((p - net:forward(Q:slice(1, 200))):max_abs() < 1e-12)
  end)
end)
