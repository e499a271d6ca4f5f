-- Files: a save that fails loses nothing and leaves no temporary, replaces
-- only regular files and keeps their mode; a load of what is not a regular
-- file, or does not fit the memory limit, fails with a message; loaders
-- refuse corrupt files before they allocate by them; the container's
-- CRC-32 is the standard one, so older files load and save back the same.
local H = require "helpers"
local pk = H.pk

local shq, shell = H.shq, H.shell

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

  it("follow one convention for every type: misuse raises, the system's refusal is nil, message", function()
    local X, Y = pk.randn(6, 2, 1), pk.randn(6, 1, 2)
    local net = pk.network{ sizes = { 2, 3, 1 }, seed = 1 }
    local traj, online = net:clone():train{ X = X, Y = Y, steps = 2, lr = 0.1, record = true,
      explain = X, progress = false }
    local objects = { X, net, traj, pk.machine.from_trajectory(traj), online,
      pk.machine.ridge(pk.kernel.rbf(), X, Y) }
    local missing = dir .. "/no/such/folder/x"
    for _, o in ipairs(objects) do
      local name = getmetatable(o).__name
      -- a number is no path (a regressor's save(123) wrote a file named 123)
      H.raises("string (a path) expected, got number", o.save, o, 123)
      -- the options argument is checked (traj:save(p, 42) was ignored)
      H.raises("table of options expected, got number", o.save, o, dir .. "/x", 42)
      H.raises("save: unknown option 'bogus'", o.save, o, dir .. "/x", { bogus = true })
      local ok, msg = o:save(missing)
      assert.is_nil(ok, name)
      assert.truthy(msg:find(missing, 1, true), msg)
      assert.is_true(o:save(dir .. "/ok"), name)
      assert.are.equal(name, getmetatable(pk.load(dir .. "/ok")).__name)
    end
    for _, w in ipairs{ "write_csv", "write_npy" } do
      H.raises("string (a path) expected, got number", X[w], X, 7)
      H.raises("table of options expected, got number", X[w], X, dir .. "/x", 42)
      local ok, msg = X[w](X, missing)
      assert.is_nil(ok)
      assert.truthy(msg:find(missing, 1, true), msg)
    end
    assert.are.same({ "ok" }, ls(dir))
    -- loads: a missing file is nil, message; a corrupt one, or bad options, raise
    for _, load in ipairs{ pk.load, pk.read_csv, pk.read_npy } do
      local ok, msg = load(missing)
      assert.is_nil(ok)
      assert.truthy(msg:find(missing, 1, true), msg)
    end
    H.write_bytes(dir .. "/bad", "PATHKRNL and not much else")
    H.raises("check failed", pk.load, dir .. "/bad")
    H.raises("table of options expected, got number", pk.load, dir .. "/ok", 5)
    H.raises("load: unknown option 'Z'", pk.load, dir .. "/ok", { Z = X })
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
    -- a regressor's save too (it wrote ./9.007199254741e+15 from save(2^53))
    local reg = pk.machine.ridge(pk.kernel.rbf{ gamma = 1 }, pk.eye(2), pk.eye(2))
    H.raises("string (a path) expected, got number", reg.save, reg, 2 ^ 53)
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

describe("loaders refuse corrupt files", function()
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

  it("a file of a newer format version than its object needs is refused (it loaded and saved back as another file)", function()
    -- version 2 holds a trajectory's loss weights: a matrix, a network or a
    -- run without weights is always written as version 1
    local p = H.tmpname(".pk")
    local function as_version_2()
      local b = H.read_bytes(p)
      local body = b:sub(1, 8) .. string.pack("<I4", 2) .. b:sub(13, -5)
      H.write_bytes(p, body .. string.pack("<I4", H.crc32(body)))
    end
    for _, obj in ipairs{ pk.eye(2), pk.network{ sizes = { 2, 3, 1 }, seed = 1 } } do
      assert(obj:save(p))
      assert.truthy(pk.load(p))
      as_version_2()
      H.raises("version check failed: a file of format version 2 holds an object of version 1", pk.load, p)
    end
    -- a run without weights in a version-2 frame lacks the weights it announces
    assert(record{}:save(p))
    as_version_2()
    H.raises("file is truncated (reading loss weight count)", pk.load, p)
    -- a weighted run is version 2 and loads as it is
    local net = pk.network{ sizes = { 2, 3, 1 }, seed = 1 }
    assert(net:train{ X = X, Y = Y, steps = 2, record = true, progress = false,
      weights = pk.ones(6, 1) }:save(p))
    assert.are.equal(2, (string.unpack("<I4", H.read_bytes(p), 9)))
    assert.truthy(pk.load(p))
    os.remove(p)
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

local dir = H.tmpname("-gzip")
local function path(name) return dir .. "/" .. name end

describe("the container's CRC-32 (zlib's)", function()
  setup(function() os.execute("mkdir -p " .. shq(dir)) end)
  teardown(function() os.execute("rm -rf " .. shq(dir)) end)

  it("is the standard CRC-32: the check value of '123456789' and of every saved file", function()
    -- the spec's own bitwise CRC gives the published check value ...
    assert.are.equal(0xCBF43926, H.crc32("123456789"))
    -- ... and agrees with the library's on what it saves and what it loads
    local p = path("m.pk")
    assert.is_true(pk.randn(5, 3, 2):save(p))
    local s = H.read_bytes(p)
    assert.are.equal(H.crc32(s:sub(1, -5)), string.unpack("<I4", s, #s - 3))
    local payload = string.pack("<I8I8", 1, 2) .. string.pack("<d<d", 1.25, -3)
    H.write_bytes(p, H.container(1, payload))
    assert.are.same({ { 1.25, -3 } }, pk.load(p):totable())
    H.write_bytes(p, H.container(1, payload):sub(1, -5) .. string.pack("<I4", H.crc32("123456789")))
    H.raises("checksum check failed", pk.load, p)
  end)

  it("loads a matrix saved before the change and saves it back to the same bytes", function()
    local old = H.read_bytes("spec/data/matrix-crc-table.pk")
    local A = pk.load("spec/data/matrix-crc-table.pk")
    H.same_bits(pk.matrix{ { 1.5, -2, 0 / 0 }, { math.huge, -0.0, 5e-324 } }, A)
    local p = path("again.pk")
    assert.is_true(A:save(p))
    assert.are.equal(old, H.read_bytes(p))
  end)

  it("loads a trajectory saved before the change: the same run, replayed exactly", function()
    local old = H.read_bytes("spec/data/trajectory-crc-table.pk")
    local t = pk.load("spec/data/trajectory-crc-table.pk")
    -- the run that wrote it (see the file's history): trained again now
    local X = pk.matrix{ { 0, 1 }, { 1, 0 }, { 1, 1 } }
    local Y = pk.matrix{ 0.5, -0.5, 1 }
    local net = pk.network{ sizes = { 2, 3, 1 }, seed = 7 }
    pk.manual_seed(0)     -- the file's run drew its (unused) gd seed from a fresh stream
    local now = net:train{ X = X, Y = Y, steps = 3, lr = 0.1, record = true, progress = false }
    assert.are.equal(3, #t)
    for s = 0, 3 do H.same_bits(now:weights(s), t:weights(s)) end
    local p = path("traj-again.pk")
    assert.is_true(t:save(p))
    assert.are.equal(old, H.read_bytes(p))
    assert.is_true(now:save(p))
    assert.are.equal(old, H.read_bytes(p))
  end)
end)
