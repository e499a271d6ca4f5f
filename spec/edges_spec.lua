-- Edge cases a careful user found (issue 12): non-finite queries of a
-- kernel machine, strict CSV numbers, non-finite rows of the classical
-- kernels, file modes kept by a save, tiles that shrink under a small
-- memory limit, and a decomposition's memory checked before it starts.
local H = require "helpers"
local pk = H.pk

local function shq(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- a machine over a short recorded run, its network and its data
local function small_run(opts)
  local X, Y = pk.randn(12, 2, 1), pk.randn(12, 1, 2)
  local net = pk.network{ sizes = { 2, 8, 1 }, seed = 4 }
  local o = { X = X, Y = Y, lr = 0.1, steps = 6, record = true, progress = false }
  for k, v in pairs(opts or {}) do o[k] = v end
  local traj = net:train(o)
  return pk.machine.from_trajectory(traj), net, X, Y
end

describe("kernel machines refuse non-finite queries", function()
  local km, net = small_run()
  local Q = pk.matrix{ { 0.1, 0.2 }, { 0 / 0, 1 }, { 1, 2 } }

  it("in predict, contributions, coefficients, verify, regularization and explain, naming the row", function()
    for _, bad in ipairs{ 0 / 0, math.huge, -math.huge } do
      local Qb = Q:copy()
      Qb:set(2, 1, bad)
      for _, m in ipairs{ "predict", "contributions", "coefficients", "verify", "regularization" } do
        H.raises("the queries hold a NaN or infinite value in row 2", km[m], km, Qb)
      end
      H.raises("the queries hold a NaN or infinite value in row 1", km.explain, km, Qb:row(2), 3)
    end
  end)

  it("still answers the finite rows, and verify's error is the true gap", function()
    local Qf = Q:gather{ 1, 3 }
    local p = km:predict(Qf)
    local f = net:forward(Qf)
    local a, r = km:verify(Qf)
    -- the gap verify reports is the one predict and forward show
    local gap = 0
    for i = 1, 2 do gap = math.max(gap, math.abs(p:get(i, 1) - f:get(i, 1))) end
    assert.are.equal(gap, a)
    assert.is_true(a < 1e-12 and r < 1e-12)
  end)

  it("in train{ explain = } before training starts, naming the row", function()
    local X, Y = pk.randn(6, 2, 1), pk.randn(6, 1, 2)
    local n = pk.network{ sizes = { 2, 4, 1 }, seed = 1 }
    local w0 = n:params()
    local called = false
    H.raises("train: explain = Xq holds a NaN or infinite value in row 2", n.train, n,
      { X = X, Y = Y, steps = 3, explain = Q, progress = false,
        on_step = function() called = true end })
    assert.is_false(called)
    assert.are.equal(0, (n:params() - w0):max_abs())
  end)

  it("verify reports NaN when a finite query's output overflows, and explain ranks the NaNs first", function()
    local X, Y = pk.randn(12, 2, 1), pk.randn(12, 1, 2)
    local n = pk.network{ sizes = { 2, 8, 8, 1 }, activation = "relu", seed = 4 }
    local m = pk.machine.from_trajectory(n:train{ X = X, Y = Y, lr = 0.1, steps = 6, record = true,
      progress = false })
    local Qo = pk.matrix{ { 0.5, 0.5 }, { 1.7e308, 1.7e308 }, { -0.5, 1 } }
    local p, f = m:predict(Qo), n:forward(Qo)
    local gap = p:get(2, 1) - f:get(2, 1)
    assert.is_true(gap ~= gap, "the premise: row 2 overflows to a NaN gap")
    local a, r = m:verify(Qo)
    assert.is_true(a ~= a and r ~= r)
    -- the finite rows alone verify to rounding
    local a2 = m:verify(Qo:gather{ 1, 3 })
    assert.is_true(a2 < 1e-12)
    local e = m:explain(Qo:row(2), 3)
    assert.is_true(e[1].contribution ~= e[1].contribution)
  end)

  it("on an online machine too", function()
    local X, Y = pk.randn(6, 2, 1), pk.randn(6, 1, 2)
    local Qf = Q:gather{ 1, 3 }
    local _, kmo = pk.network{ sizes = { 2, 4, 1 }, seed = 1 }:train{ X = X, Y = Y, steps = 3,
      explain = Qf, progress = false }
    local Qb = Qf:copy()
    Qb:set(1, 2, math.huge)
    H.raises("the queries hold a NaN or infinite value in row 1", kmo.verify, kmo, Qb)
  end)
end)

describe("read_csv reads decimal numbers only", function()
  local p = H.tmpname(".csv")
  local function read(text, o)
    H.write_bytes(p, text)
    return pk.read_csv(p, o)
  end
  local function refuses(text, what)
    local err = H.raises("line 2, column 2", read, "1,2\n3," .. text .. "\n")
    assert(err:find(what, 1, true), "'" .. text .. "': " .. err)
    return err
  end
  teardown(function() os.remove(p) end)

  it("refuses hexadecimal numbers, with the line and column", function()
    for _, t in ipairs{ "0x10", "-0X1A", "0x1p3", "0x.8" } do refuses(t, "bad number") end
  end)

  it("refuses numbers beyond the double range, and says so", function()
    for _, t in ipairs{ "1e400", "-1e400", "1.8e308", "1e99999999999999999999" } do
      refuses(t, "out of range")
    end
    -- the largest double and what rounds to it are in range
    assert.are.equal(1.7976931348623157e308, read("1.7976931348623157e308"):get(1, 1))
    assert.are.equal(1.7976931348623157e308, read("1.7976931348623158e308"):get(1, 1))
  end)

  it("reads underflow as the nearest double: subnormal or zero", function()
    local A = read("4.9406564584124654e-324,2.2250738585072009e-308,1e-400,-1e-400,0e99999")
    assert.are.equal(2 ^ -1074, A:get(1, 1))
    assert.are.equal(2.2250738585072009e-308, A:get(1, 2))
    assert.are.equal(0, A:get(1, 3))
    assert.are.equal(-math.huge, 1 / A:get(1, 4))      -- -0
    assert.are.equal(0, A:get(1, 5))
  end)

  it("reads inf, infinity and nan (any case, signed) but no other strtod syntax", function()
    local A = read("inf,-INF,+Infinity,-infinity,nan,NaN,-nan")
    for j, v in ipairs{ math.huge, -math.huge, math.huge, -math.huge } do assert.are.equal(v, A:get(1, j)) end
    for j = 5, 7 do assert.is_true(A:get(1, j) ~= A:get(1, j)) end
    for _, t in ipairs{ "nan(123)", "nan()", "infin", "in", "na", "-+1", "+-1", "--1", "1e", "1e+",
                        "e5", ".", "-", "+", ".e1", "1.5.2", "1,5e", "1 2", "1_000", "\v1", "1\f",
                        "0b1", "1d5", "1e5.5", "١" } do
      if t == "1,5e" then
        H.raises("line 2, column 3", read, "1,2,3\n3," .. t .. "\n")
      else
        refuses(t, "bad number")
      end
    end
  end)

  it("reads signs, leading and trailing dots, exponents and spaces or tabs around a number", function()
    local A = read(" 1 ,\t-2.\t, +.5,1E3 , -1e-2,007,-0")
    for j, v in ipairs{ 1, -2, 0.5, 1000, -0.01, 7 } do assert.are.equal(v, A:get(1, j)) end
    assert.are.equal(-math.huge, 1 / A:get(1, 7))
  end)

  it("reads back what write_csv writes, inf and nan included", function()
    local A = pk.matrix{ { math.huge, -math.huge, 0 / 0, 2 ^ -1074, -0.0, 1 / 3, 1.7976931348623157e308 } }
    assert(A:write_csv(p))
    local B = pk.read_csv(p)
    for j = 1, 7 do
      local a, b = A:get(1, j), B:get(1, j)
      assert.is_true(a == b and 1 / a == 1 / b or (a ~= a and b ~= b), "column " .. j)
    end
  end)

  it("shows the bad field escaped", function()
    local err = refuses("\27[31mx", "bad number")
    assert.is_nil(err:find("\27", 1, true), err)
    assert.truthy(err:find("\\x1b[31mx", 1, true), err)
  end)
end)

describe("classical and infinite-width kernels on non-finite rows", function()
  local function isnan(v) return v ~= v end
  local kernels = {
    pk.kernel.linear(), pk.kernel.rbf{ gamma = 0.3 }, pk.kernel.laplacian{ gamma = 0.7 },
    pk.kernel.poly{ degree = 2, c = 0.5 }, pk.kernel.ntk{ depth = 2 },
    pk.kernel.nngp{ depth = 2, activation = "erf" }, pk.kernel.ntk{ depth = 1, activation = "identity" },
  }
  -- rows 2 and 4 of X1 and row 3 of X2 hold a non-finite value
  local X1 = pk.randn(5, 3, 1)
  X1:set(2, 1, math.huge)
  X1:set(4, 3, -math.huge)
  local X2 = pk.randn(4, 3, 2)
  X2:set(3, 2, 0 / 0)
  local bad1, bad2 = { [2] = true, [4] = true }, { [3] = true }
  local good1, good2 = X1:gather{ 1, 3, 5 }, X2:gather{ 1, 2, 4 }
  local at1, at2 = { 1, nil, 2, nil, 3 }, { 1, 2, nil, 3 }

  -- every entry of a bad row or column is NaN; the others are the Gram of
  -- the finite rows alone
  local function check(G, Gf, b1, b2, a1, a2, name)
    for i = 1, G:rows() do
      for j = 1, G:cols() do
        local v = G:get(i, j)
        if b1[i] or b2[j] then
          assert.is_true(isnan(v), name .. ": entry " .. i .. "," .. j .. " = " .. v)
        else
          local w = Gf:get(a1[i], a2[j])
          assert.is_true(math.abs(v - w) <= 1e-14 * math.max(1, math.abs(w)), name)
        end
      end
    end
  end

  it("give NaN in every entry of those rows and columns, in gram and diag", function()
    for _, K in ipairs(kernels) do
      local name = K:name()
      check(K:gram(X1, X2), K:gram(good1, good2), bad1, bad2, at1, at2, name)
      check(K:gram(X2, X1), K:gram(good2, good1), bad2, bad1, at2, at1, name .. " (transposed)")
      check(K:gram(X1), K:gram(good1), bad1, bad1, at1, at1, name .. " (symmetric)")
      check(K:gram(X1, X1:copy()), K:gram(good1, good1:copy()), bad1, bad1, at1, at1, name .. " (two copies)")
      local D, Df = K:diag(X1), K:diag(good1)
      check(D, Df, bad1, {}, at1, { 1 }, name .. " (diag)")
    end
  end)

  it("rbf and laplacian stay in [0, 1] on finite rows whose squared norms overflow", function()
    local X = pk.matrix{ { 1e200, 0 }, { 1e200, 0 }, { 0, 0 }, { -1e200, 1 } }
    for _, K in ipairs{ pk.kernel.rbf(), pk.kernel.laplacian() } do
      for _, G in ipairs{ K:gram(X), K:gram(X, X:copy()) } do
        for i = 1, 4 do
          for j = 1, 4 do
            local want = (i == j or (i <= 2 and j <= 2)) and 1 or 0
            assert.are.equal(want, G:get(i, j), K:name() .. " " .. i .. "," .. j)
          end
        end
      end
      local D = K:diag(X)
      for i = 1, 4 do assert.are.equal(1, D:get(i, 1), K:name()) end
    end
  end)
end)

describe("a save keeps the mode of the file it replaces", function()
  local dir = H.tmpname("dir")
  assert(os.execute("mkdir -p " .. shq(dir)))
  teardown(function() os.execute("rm -rf " .. shq(dir)) end)

  local function mode(path)
    local p = assert(io.popen("stat -c %a " .. shq(path)))
    local m = p:read("l")
    p:close()
    return m
  end

  local X, Y = pk.randn(6, 2, 1), pk.randn(6, 1, 2)
  local net = pk.network{ sizes = { 2, 3, 1 }, seed = 1 }
  local traj = net:clone():train{ X = X, Y = Y, steps = 2, record = true, progress = false }
  local savers = {
    matrix = function(p) return X:save(p) end,
    csv = function(p) return X:write_csv(p) end,
    network = function(p) return net:save(p) end,
    trajectory = function(p) return traj:save(p) end,
    machine = function(p) return pk.machine.from_trajectory(traj):save(p) end,
    regressor = function(p) return pk.machine.ridge(pk.kernel.rbf(), X, Y):save(p) end,
  }

  it("for every kind of save: a private file stays private, a read-only one read-only", function()
    for name, save in pairs(savers) do
      local p = dir .. "/" .. name
      assert.is_true(save(p), name)
      for _, m in ipairs{ "600", "640", "444", "755" } do
        assert(os.execute("chmod " .. m .. " " .. shq(p)))
        assert.is_true(save(p), name)
        assert.are.equal(m, mode(p), name)
      end
    end
  end)

  it("a new file takes the umask's mode, as fopen would give it", function()
    local code = string.format([[
      package.path, package.cpath = %q, %q
      local pk = require "pathkernel"
      assert(pk.eye(2):save(%q))
      assert(pk.eye(2):write_csv(%q))
    ]], package.path, package.cpath, dir .. "/new.bin", dir .. "/new.csv")
    local f = dir .. "/child.lua"
    H.write_bytes(f, code)
    for _, u in ipairs{ { "002", "664" }, { "077", "600" }, { "022", "644" } } do
      os.remove(dir .. "/new.bin")
      os.remove(dir .. "/new.csv")
      assert(os.execute("umask " .. u[1] .. " && lua5.4 " .. shq(f)))
      assert.are.equal(u[2], mode(dir .. "/new.bin"), "umask " .. u[1])
      assert.are.equal(u[2], mode(dir .. "/new.csv"), "umask " .. u[1])
    end
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
          explain = Q, progress = false, on_step = function() steps = steps + 1 end })
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
