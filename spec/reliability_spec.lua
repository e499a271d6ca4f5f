-- Reliability: no data lost on a failed save, files that are not regular
-- files, stray temporaries, the memory limit's messages, and one regression
-- test per bug found by review, fuzzing or the misuse fuzzer.
local H = require "helpers"
local pk = H.pk

local function shq(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- a shell command's output (stderr too) and exit status
local function shell(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, rc = p:close()
  return out, ok and 0 or rc
end

-- Run Lua code in a child lua5.4 that loads the same module as this run
-- (build/ or build-asan/), under the shell prefix `pre`; answer its output.
local function child(code, pre)
  local f = H.tmpname(".lua")
  H.write_bytes(f, code)
  local out, rc = shell(string.format("%s LUA_PATH=%s LUA_CPATH=%s lua5.4 %s", pre or "",
    shq(package.path), shq(package.cpath), shq(f)))
  os.remove(f)
  return out, rc
end

local function mkdir()
  local d = H.tmpname("dir")
  assert(os.execute("mkdir -p " .. shq(d)))
  return d
end

local function ls(dir)
  local t, p = {}, assert(io.popen("ls -A " .. shq(dir)))
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  table.sort(t)
  return t
end

describe("saves", function()
  local dir
  before_each(function() dir = mkdir() end)
  after_each(function() os.execute("rm -rf " .. shq(dir)) end)

  -- root ignores permissions, so the failure comes from a file size limit:
  -- with SIGXFSZ ignored, write() answers EFBIG part way through the file
  local function save_under_limit(method, path)
    return child(string.format([[
      local pk = require "pathkernel"
      local ok, msg = pk.randn(200, 200, 1):%s(%q)
      print(ok, msg)]], method, path), "trap '' XFSZ; ulimit -f 64;")
  end

  it("that fail part way leave the previous file intact and no temporary", function()
    local p = dir .. "/m.pk"
    local A = pk.randn(3, 4, 7)
    assert.is_true(A:save(p))
    local before = H.read_bytes(p)
    local out = save_under_limit("save", p)
    assert.truthy(out:find("nil\t" .. p .. ": File too large", 1, true), out)
    assert.are.equal(before, H.read_bytes(p))
    assert.are.equal(0, (pk.load(p) - A):max_abs())
    assert.are.same({ "m.pk" }, ls(dir))
  end)

  it("write_csv is atomic too", function()
    local p = dir .. "/m.csv"
    assert.is_true(pk.matrix{{1, 2}}:write_csv(p))
    local out = save_under_limit("write_csv", p)
    assert.truthy(out:find("nil\t" .. p .. ": File too large", 1, true), out)
    assert.are.equal("1,2\n", H.read_bytes(p))
    assert.are.same({ "m.csv" }, ls(dir))
  end)

  it("into a folder that is a file return nil and a message", function()
    H.write_bytes(dir .. "/f", "x")
    local ok, msg = pk.eye(2):save(dir .. "/f/m.pk")
    assert.is_nil(ok)
    assert.truthy(msg:find("Not a directory", 1, true), msg)
    ok, msg = pk.eye(2):write_csv(dir .. "/f/m.csv")
    assert.is_nil(ok)
    assert.truthy(msg:find("Not a directory", 1, true), msg)
  end)

  it("never replace a folder, a FIFO or a device", function()
    local ok, msg = pk.eye(2):save(dir)
    assert.is_nil(ok)
    assert.truthy(msg:find("is a directory", 1, true), msg)
    local fifo = dir .. "/fifo"
    assert(os.execute("mkfifo " .. shq(fifo)))
    ok, msg = pk.eye(2):save(fifo)
    assert.is_nil(ok)
    assert.truthy(msg:find("not a regular file", 1, true), msg)
    ok = pk.eye(2):write_csv(fifo)
    assert.is_nil(ok)
    assert.is_true(os.execute("test -p " .. shq(fifo)))
    assert.are.same({ "fifo" }, ls(dir))
  end)

  it("remove the temporaries that crashed saves left, not those of live processes", function()
    local p = dir .. "/m.pk"
    -- the pid of a finished shell is (for a while) the pid of no process
    local sh = assert(io.popen("sh -c 'echo $$'"))
    local dead = sh:read("l")
    sh:close()
    H.write_bytes(p .. ".tmp" .. dead, "half a file")
    H.write_bytes(p .. ".tmp1", "pid 1 is alive")
    H.write_bytes(p .. ".tmpx", "not a temporary of ours")
    H.write_bytes(dir .. "/other.pk.tmp" .. dead, "another file's temporary")
    assert.is_true(pk.eye(2):save(p))
    assert.are.same({ "m.pk", "m.pk.tmp1", "m.pk.tmpx", "other.pk.tmp" .. dead }, ls(dir))
  end)

  it("reject paths with NUL bytes and empty paths instead of cutting them", function()
    H.raises("path contains a NUL byte", function() return pk.eye(2):save(dir .. "/a\0b") end)
    H.raises("path contains a NUL byte", function() return pk.eye(2):write_csv(dir .. "/a\0b") end)
    H.raises("path contains a NUL byte", pk.load, dir .. "/a\0b")
    H.raises("path contains a NUL byte", pk.read_csv, dir .. "/a\0b")
    H.raises("empty path", pk.load, "")
    -- a number is not taken for a file name (A:save(2) wrote ./2)
    H.raises("string (a path) expected, got number", function() return pk.eye(2):save(2) end)
    H.raises("string (a path) expected, got number", pk.read_csv, 1.5)
    -- pk.plot hands paths to the shell and to io.open, which cut at a NUL
    H.raises("the file name contains a NUL byte", pk.plot.line, { file = dir .. "/a\0.png", y = pk.matrix{ 1, 2 } })
    H.raises("the path contains a NUL byte", pk.plot.folder, dir .. "/a\0b")
    H.raises("gnuplot must be a command name or path", pk.plot.config, { gnuplot = "gnu\0plot" })
    assert.are.same({}, ls(dir))
  end)

  it("write_csv refuses a header of several lines and unknown options", function()
    H.raises("header must be one line", function()
      return pk.eye(2):write_csv(dir .. "/x.csv", { header = "a\nb" })
    end)
    H.raises("unknown option 'headr'", function()
      return pk.eye(2):write_csv(dir .. "/x.csv", { headr = "a" })
    end)
    assert.are.same({}, ls(dir))
  end)
end)

describe("loads", function()
  it("of a folder return nil, 'is a directory' (it asked for 8 EiB before)", function()
    local v, msg = pk.load("/tmp")
    assert.is_nil(v)
    assert.are.equal("/tmp: is a directory", msg)
    v, msg = pk.read_csv("/tmp")
    assert.is_nil(v)
    assert.are.equal("/tmp: is a directory", msg)
  end)

  it("of a FIFO return at once with nil and a message (no wait for a writer)", function()
    local dir = mkdir()
    local fifo = dir .. "/fifo"
    assert(os.execute("mkfifo " .. shq(fifo)))
    local v, msg = pk.load(fifo)
    assert.is_nil(v)
    assert.truthy(msg:find("not a regular file", 1, true))
    assert.is_nil((pk.read_csv(fifo)))
    os.execute("rm -rf " .. shq(dir))
  end)

  it("of a device return nil and a message", function()
    local v, msg = pk.load("/dev/null")
    assert.is_nil(v)
    assert.are.equal("/dev/null: not a regular file", msg)
  end)

  it("of a file above the memory limit raise an error that names the limit", function()
    local p = H.tmpname(".pk")
    pk.zeros(100, 100):save(p)
    local old = pk.memory_limit()
    pk.set_memory_limit(4096)
    local ok, err = pcall(pk.load, p)
    pk.set_memory_limit(old)
    os.remove(p)
    assert.is_false(ok)
    assert.truthy(err:find("reading " .. p .. " needs 78.2 KiB, above the memory limit of 4.0 KiB", 1, true), err)
  end)
end)

describe("argument checks", function()
  it("print the value that was out of range, however large", function()
    H.raises("rows must be >= 0, got -1099511627776", pk.zeros, -2^40, 1)
    H.raises("rows must be >= 0, got " .. math.mininteger, pk.zeros, math.mininteger, 1)
  end)
end)

describe("matrix review regressions", function()
  it("norm is +inf with infinities (it was NaN from inf/inf), NaN with a NaN", function()
    assert.are.equal(math.huge, pk.matrix{{math.huge, math.huge}}:norm())
    assert.are.equal(math.huge, pk.matrix{{1, -math.huge, 3, math.huge}}:norm())
    local n = pk.matrix{{math.huge, 0 / 0}}:norm()
    assert.is_true(n ~= n)
    assert.are.equal(5, pk.matrix{{3, 4}}:norm())
  end)

  it("A / s divides (it multiplied by 1/s, which overflows for a subnormal s)", function()
    assert.are.equal(1e-300 / 1e-310, (pk.matrix{{1e-300}} / 1e-310):get(1, 1))
    -- 5 / 3 and 5 * (1/3) differ in the last bit
    local a = 5
    assert.is_true(a / 3 ~= a * (1 / 3))
    assert.are.equal(a / 3, (pk.matrix{{a}} / 3):get(1, 1))
    assert.are.equal(math.huge, (pk.matrix{{1}} / 0):get(1, 1))
  end)

  it("a 2^31-1 x 0 matrix prints, transposes and refuses totable at once", function()
    local A = pk.zeros(2^31 - 1, 0)
    local t0 = os.clock()
    local s = tostring(A)
    assert.truthy(s:find("2147483647x0", 1, true))
    assert.are.same({ 0, 2^31 - 1 }, { A:t():shape() })
    H.raises("totable of a 2147483647 x 0 matrix needs", A.totable, A)
    assert.is_true(os.clock() - t0 < 0.5, "took " .. (os.clock() - t0) .. " s")
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

describe("file loader regressions", function()
  local X, Y = pk.randn(6, 2, 11), pk.randn(6, 1, 12)
  local old
  before_each(function() old = pk.memory_limit() end)
  after_each(function() pk.set_memory_limit(old) end)

  local function payload(path) return H.read_bytes(path):sub(25, -5) end
  local function record(o)
    local net = pk.network{ sizes = o.sizes or { 2, 3, 1 }, seed = 1 }
    return net:train{ X = o.X or X, Y = o.Y or Y, steps = o.steps or 3, lr = 0.1, record = true,
      optimizer = o.optimizer, batch_size = o.batch_size, progress = false }
  end

  it("a trajectory loaded with its stored data given keeps one copy (the stored one leaked)", function()
    local p = H.tmpname(".pk")
    assert(record{}:save(p))
    local back = pk.load(p, { X = X, Y = Y })
    assert.are.equal(3, #back)
    assert.are.equal(0, (back:weights(3) - pk.load(p):weights(3)):max_abs())
    os.remove(p)
  end)

  it("stored data that does not match its hash is refused, even with the right data given", function()
    local p = H.tmpname(".pk")
    assert(record{}:save(p))
    local b = payload(p)
    -- one bit of the last stored value of Y
    H.write_bytes(p, H.container(3, b:sub(1, -2) .. string.char(b:byte(-1) ~ 1)))
    H.raises("the stored training data does not match its hash", pk.load, p)
    H.raises("the stored training data does not match its hash", pk.load, p, { X = X, Y = Y })
    os.remove(p)
  end)

  it("a step count that fits the file asks for nothing quadratic (it allocated steps x parameters)", function()
    -- 1 -> 4000 -> 1: 12001 parameters; a step count of 12000 fits the
    -- bytes after it, and checkpoints for every step were allocated at once
    local Xw, Yw = pk.randn(2, 1, 1), pk.randn(2, 1, 2)
    local p = H.tmpname(".pk")
    assert(record{ sizes = { 1, 4000, 1 }, X = Xw, Y = Yw, steps = 1 }:save(p))
    local b = payload(p)
    local at = 76 + 8 * 12001 + 1
    assert.are.equal(1, (string.unpack("<I8", b, at)))
    H.write_bytes(p, H.container(3, b:sub(1, at - 1) .. string.pack("<I8", 12000) .. b:sub(at + 8)))
    pk.set_memory_limit(16 << 20)
    local t0 = os.clock()
    local ok, err = pcall(pk.load, p)
    assert.is_false(ok)
    assert.is_nil(err:find("memory limit", 1, true), err)
    assert.truthy(err:find("check failed", 1, true) or err:find("truncated", 1, true), err)
    assert.is_true(os.clock() - t0 < 0.5)
    os.remove(p)
  end)

  it("a batch size far above the data is a format error (it allocated steps x batch size)", function()
    local p = H.tmpname(".pk")
    assert(record{ optimizer = "sgd", batch_size = 4, steps = 2 }:save(p))
    local b = payload(p)
    -- batch_size follows the network (76 + 8 * 13 bytes), the step count,
    -- loss, optimizer and 6 hyperparameters
    local at = 76 + 8 * 13 + 8 + 4 + 4 + 48 + 1
    assert.are.equal(4, (string.unpack("<I8", b, at)))
    H.write_bytes(p, H.container(3, b:sub(1, at - 1) .. string.pack("<I8", 1 << 40) .. b:sub(at + 8)))
    pk.set_memory_limit(16 << 20)
    H.raises("a batch size above the training rows", pk.load, p)
    os.remove(p)
  end)

  it("batches of no rows and stored data of no rows are refused (replay read an unset gradient)", function()
    H.raises("bad batch offsets", pk.load, "fuzz/regress/trajectory/empty-batch")
    H.raises("the stored training data does not fit the network", pk.load, "fuzz/regress/trajectory/no-rows")
  end)

  it("a network file whose output layer has an activation is refused (it loaded as identity)", function()
    H.raises("value check failed: the output layer has activation 1", pk.load,
      "fuzz/regress/network/output-activation")
  end)

  it("load errors of networks inside other files name the file", function()
    local p = H.tmpname(".pk")
    assert(record{}:save(p))
    local b = payload(p)
    -- the network's layer count says 2^40 layers
    H.write_bytes(p, H.container(3, string.pack("<I8", 1 << 40) .. b:sub(9)))
    H.raises(p .. ": size check failed: layer count", pk.load, p)
    os.remove(p)
  end)
end)

describe("objects that callbacks release or reuse", function()
  local X, Y = pk.randn(6, 2, 1), pk.randn(6, 1, 2)
  local function net() return pk.network{ sizes = { 2, 4, 1 }, seed = 3 } end
  local function opts(o)
    o.X, o.Y, o.steps, o.lr, o.progress = o.X or X, o.Y or Y, 4, o.lr or 0.1, o.progress or false
    return o
  end

  it("a network cannot be released, changed or trained from its own training's callbacks", function()
    local n = net()
    H.raises("network is in use: it cannot be released from its own training's callbacks",
      n.train, n, opts{ on_step = function() n:release() end })
    H.raises("network is in use", n.train, n, opts{ lr = function() getmetatable(n).__gc(n); return 0.1 end })
    H.raises("network is in use", n.train, n, opts{ progress = function() getmetatable(n).__close(n) end })
    H.raises("cannot be changed (set_params) from its own training's callbacks", n.train, n,
      opts{ on_step = function() n:set_params(n:params()) end })
    H.raises("cannot be trained from its own training's callbacks", n.train, n,
      opts{ on_step = function() n:train(opts{}) end })
    -- reading it is fine, and it is usable afterwards
    local seen
    n:train(opts{ on_step = function() seen = n:forward(X) end })
    assert.are.equal(6, seen:rows())
    n:release()
    H.raises("network has been released", n.forward, n, X)
  end)

  it("training keeps X, Y and the queries a callback releases (it read freed memory)", function()
    local a, b = net(), net()
    local ta, ka = a:train(opts{ record = true, explain = X:slice(1, 2) })
    local A, B, Q = X:copy(), Y:copy(), X:slice(1, 2):copy()
    local tb, kb = b:train(opts{ X = A, Y = B, record = true, explain = Q, on_step = function()
      A:release(); B:release(); Q:release(); collectgarbage()
    end })
    assert.are.equal(0, (tb:weights(4) - ta:weights(4)):max_abs())
    assert.are.equal(0, (kb:contributions(X:slice(1, 2)) - ka:contributions(X:slice(1, 2))):max_abs())
    -- the trajectory still replays on the data it owns
    assert.are.equal(0, (tb:weights(3) - ta:weights(3)):max_abs())
    local c = net()
    local A2 = X:copy()
    local losses = c:train(opts{ X = A2, on_step = function() A2:release(); collectgarbage() end })
    assert.are.same(losses, net():train(opts{}))
  end)

  it("a kernel machine cannot be released or used from its own progress callback", function()
    local traj = net():train(opts{ record = true })
    local km = pk.machine.from_trajectory(traj)
    H.raises("kernel machine is in use: it cannot be released from its own progress callback",
      km.predict, km, X, { progress = function() km:release() end })
    H.raises("its own progress callback cannot use it", km.contributions, km, X,
      { progress = function() km:predict(X:slice(1, 1)) end })
    H.raises("kernel machine is in use", km.explain, km, X:row(1), 2,
      { progress = function() getmetatable(km).__gc(km) end })
    local want = km:predict(X)
    local Q = X:copy()
    local got = km:predict(Q:slice(1, 6), { progress = function() Q:release(); collectgarbage() end })
    assert.are.equal(0, (got - want):max_abs())
    km:release()
    H.raises("kernel machine has been released", km.predict, km, X)
  end)

  it("a kernel cannot be released from the progress callback of a fit that uses it", function()
    local K = pk.kernel.tangent(net(), { memory = 1000 })
    local A, B = pk.randn(30, 2, 1), pk.randn(30, 1, 2)
    H.raises("kernel is in use", pk.machine.ridge, K, A, B, { progress = function() K:release() end })
    H.raises("kernel is in use", pk.machine.gp, K, A, B, { progress = function() getmetatable(K).__gc(K) end })
    -- the data may go: the fit holds copies
    local A2, B2 = A:copy(), B:copy()
    local r = pk.machine.ridge(K, A2, B2, { progress = function() A2:release(); B2:release(); collectgarbage() end })
    assert.are.equal(0, (r:predict(A) - pk.machine.ridge(K, A, B):predict(A)):max_abs())
  end)

  it("machines and path kernels keep a trajectory whose __gc is called by hand", function()
    local traj = net():train(opts{ record = { every = 2 } })
    local km, Kp = pk.machine.from_trajectory(traj), pk.kernel.path(traj)
    local want, wantK = km:predict(X:slice(1, 3)), Kp:gram(X)
    getmetatable(traj).__gc(traj)
    getmetatable(traj).__gc(traj)
    H.raises("trajectory has been released", traj.weights, traj, 1)
    assert.are.equal("pathkernel.Trajectory (released)", tostring(traj))
    assert.are.equal(0, (km:predict(X:slice(1, 3)) - want):max_abs())
    assert.are.equal(0, (Kp:gram(X) - wantK):max_abs())
    H.raises("trajectory has been released", pk.machine.from_trajectory, traj)
  end)
end)

describe("the Kernel userdata (through pk.kernel.tangent)", function()
  local net = pk.network{ sizes = { 3, 6, 1 }, seed = 1 }
  local X = pk.randn(5, 3, 1)
  local Y = pk.randn(4, 3, 2)
  -- a working set this small splits the Gram into several tiles, so the
  -- progress callback runs while there is work left
  local function tiled() return pk.kernel.tangent(net, { memory = 1000 }) end

  it("reports progress once per tile, ending at the total", function()
    local seen = {}
    tiled():gram(X, Y, { progress = function(done, total) seen[#seen + 1] = { done, total } end })
    assert.is_true(#seen > 2)
    assert.are.same({ seen[#seen][2], seen[#seen][2] }, seen[#seen])
  end)

  it("keeps matrices a progress callback releases alive until the call ends", function()
    local K = tiled()
    local want = K:gram(X, Y)
    local A, B = X:copy(), Y:copy()
    local G = K:gram(A, B, { progress = function(done)
      if done == 1 then A:release(); B:release(); collectgarbage() end
    end })
    assert.are.equal(0, (G - want):max_abs())
    H.raises("matrix has been released", K.gram, K, A)
    local D = X:copy()
    local d = K:diag(D, { progress = function() D:release(); collectgarbage() end })
    assert.are.equal(0, (d - K:diag(X)):max_abs())
  end)

  it("cannot be released from its own progress callback, and stays usable", function()
    local K = tiled()
    H.raises("kernel is in use", K.gram, K, X, { progress = function() K:release() end })
    H.raises("kernel is in use", K.diag, K, X, { progress = function() getmetatable(K).__gc(K) end })
    -- using it from its own callback is fine: its state is read only
    local inner
    K:gram(X, { progress = function() inner = K:gram(Y) end })
    assert.are.equal(0, (inner - K:gram(Y)):max_abs())
    K:release()
    H.raises("kernel has been released", K.gram, K, X)
    assert.are.equal("pathkernel.Kernel (released)", tostring(K))
  end)

  it("passes on a callback's error, even one that is not a string", function()
    local K = tiled()
    H.raises("boom", K.gram, K, X, { progress = function() error("boom") end })
    local ok, e = pcall(K.gram, K, X, { progress = function() error({ code = 7 }) end })
    assert.is_false(ok)
    assert.are.equal(7, e.code)
    H.raises("cancelled", K.gram, K, X, { progress = function() return false end })
  end)

  it("raises the core's failure with its message", function()
    local K = pk.kernel.tangent(net, { memory = 100 })
    H.raises("tangent kernel: memory = 100 bytes is too small for one tile", K.gram, K, X)
  end)

  it("checks its arguments", function()
    local K = pk.kernel.tangent(net)
    H.raises("X1 has 2 columns, the kernel takes 3 inputs", K.gram, K, pk.zeros(2, 2))
    H.raises("X2 has 2 columns, the kernel takes 3 inputs", K.gram, K, X, pk.zeros(2, 2))
    local R = pk.zeros(2, 3)
    R:release()
    H.raises("matrix has been released", K.gram, K, X, R)
    H.raises("table of options expected, got number", K.gram, K, X, Y, 5)
    H.raises("table of options expected, got string", K.diag, K, X, "fast")
    H.raises("unknown option 'progres'", K.gram, K, X, { progres = false })
    H.raises("unknown outputs mode 'all'", pk.kernel.tangent, net, { outputs = "all" })
    H.raises("option 'memory' must be a positive number", pk.kernel.tangent, net, { memory = 0 })
  end)
end)

describe("the public header", function()
  it("compiles alone under C99 for compilers that are not GCC-compatible too", function()
    -- the kernel declarations sat inside the #else of the PK_API test, where
    -- they came before the types they use: any compiler without __GNUC__ failed
    local src = H.tmpname(".c")
    H.write_bytes(src, '#include "pk.h"\nint main(void) { return pk_status_name(PK_OK) == 0; }\n')
    for _, flags in ipairs({ "", "-U__GNUC__" }) do
      local out, rc = shell(string.format(
        "env -u LD_PRELOAD cc -std=c99 -Wall -Wextra -Wpedantic -Werror %s -Ic -fsyntax-only %s",
        flags, shq(src)))
      assert.are.equal(0, rc, out)
    end
    os.remove(src)
  end)
end)

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
end)
