-- zlib in the library: pk.read_csv inflates gzip-compressed files (known
-- by their content, not their name), and the container's CRC-32 now comes
-- from zlib: the standard check value, and files saved before the change
-- (spec/data/*-crc-table.pk, written by the build that had its own CRC
-- table) still load and save back byte for byte the same.
local H = require "helpers"
local pk = H.pk

local function shq(v) return "'" .. tostring(v):gsub("'", "'\\''") .. "'" end

local dir = H.tmpname("-gzip")
local function path(name) return dir .. "/" .. name end

-- gzip the file at `from` into `to` with /bin/gzip (an independent deflater)
local function gzip(from, to)
  assert(os.execute(("gzip -c -n %s > %s"):format(shq(from), shq(to))))
  return H.read_bytes(to)
end

local function same_bits(A, B)
  assert.are.same({ A:shape() }, { B:shape() })
  local a, b = A:totable(), B:totable()
  for i = 1, #a do
    for j = 1, #a[i] do
      assert.are.equal(string.pack("<d", a[i][j]), string.pack("<d", b[i][j]), ("[%d][%d]"):format(i, j))
    end
  end
end

describe("pk.read_csv of gzip-compressed files", function()
  setup(function() os.execute("mkdir -p " .. shq(dir)) end)
  teardown(function() os.execute("rm -rf " .. shq(dir)) end)

  local rows = pk.randn(200, 4, 1):totable()
  rows[#rows + 1] = { 0 / 0, math.huge, -0.0, 5e-324 }
  local A = pk.matrix(rows)

  it("reads a .csv.gz as the same matrix as the plain .csv, header included", function()
    assert.is_true(A:write_csv(path("a.csv"), { header = "w,x,y,z" }))
    local gz = gzip(path("a.csv"), path("a.csv.gz"))
    assert.are.equal("\31\139", gz:sub(1, 2))
    local P, ph = pk.read_csv(path("a.csv"), { header = true })
    local G, gh = pk.read_csv(path("a.csv.gz"), { header = true })
    same_bits(P, G)
    same_bits(A, G)
    assert.are.equal("w,x,y,z", gh)
    assert.are.equal(ph, gh)
  end)

  it("knows gzip by its content, not by its name", function()
    assert.is_true(A:write_csv(path("b.csv")))
    H.write_bytes(path("plain-looking.csv"), gzip(path("b.csv"), path("b.gz")))
    same_bits(A, pk.read_csv(path("plain-looking.csv")))
    H.write_bytes(path("text.csv.gz"), H.read_bytes(path("b.csv")))
    same_bits(A, pk.read_csv(path("text.csv.gz")))
  end)

  it("reads concatenated gzip members as one file (cat a.gz b.gz)", function()
    H.write_bytes(path("top.csv"), "1,2\n3,4\n")
    H.write_bytes(path("bottom.csv"), "5,6\n")
    H.write_bytes(path("empty.csv"), "")
    local both = gzip(path("top.csv"), path("t.gz")) .. gzip(path("empty.csv"), path("e.gz"))
      .. gzip(path("bottom.csv"), path("u.gz"))
    H.write_bytes(path("both.csv.gz"), both)
    assert.are.same({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, pk.read_csv(path("both.csv.gz")):totable())
  end)

  it("refuses truncated, corrupt and extended streams with a clear error", function()
    assert.is_true(A:write_csv(path("c.csv")))
    local gz = gzip(path("c.csv"), path("c.gz"))
    local cases = {
      { gz:sub(1, #gz // 2), "gzip check failed: the compressed data is truncated" },
      { gz:sub(1, -5), "gzip check failed: the compressed data is truncated" },    -- no length
      { "\31\139", "gzip check failed: the compressed data is truncated" },
      { gz:sub(1, -9) .. string.pack("<I4", 0) .. gz:sub(-4), "gzip check failed: corrupt compressed data (incorrect data check)" },
      { gz:sub(1, -5) .. string.pack("<I4", 7), "gzip check failed: corrupt compressed data (incorrect length check)" },
      { gz:sub(1, 2) .. "\99" .. gz:sub(4), "gzip check failed: corrupt compressed data (unknown compression method)" },
      { gz .. "junk", "gzip check failed: 4 stray bytes after the compressed data" },
    }
    for i, c in ipairs(cases) do
      local p = path("bad" .. i .. ".csv.gz")
      H.write_bytes(p, c[1])
      local err = H.raises(c[2], pk.read_csv, p)
      assert.truthy(err:find(p, 1, true), err)
    end
    -- flipping a byte inside the deflate data is caught by the stream or its CRC
    local mid = #gz // 2
    H.write_bytes(path("flip.gz"), gz:sub(1, mid - 1) .. string.char(gz:byte(mid) ~ 0x55) .. gz:sub(mid + 1))
    H.raises("gzip check failed: corrupt compressed data", pk.read_csv, path("flip.gz"))
  end)

  it("parse errors inside a compressed file still name the file and the line", function()
    H.write_bytes(path("d.csv"), "1,2\n3,x\n")
    gzip(path("d.csv"), path("d.csv.gz"))
    H.raises(path("d.csv.gz") .. ": line 2, column 2: bad number 'x'", pk.read_csv, path("d.csv.gz"))
  end)

  it("keeps the inflated text within the memory limit", function()
    -- 2.1 MB of text that compresses to a few KB
    H.write_bytes(path("big.csv"), string.rep("1,2,3\n", 350000))
    local gz = gzip(path("big.csv"), path("big.csv.gz"))
    assert.is_true(#gz < 20000)
    local limit = pk.memory_limit()
    pk.set_memory_limit(1 << 20)
    local ok, err = pcall(pk.read_csv, path("big.csv.gz"))
    pk.set_memory_limit(limit)
    assert.is_false(ok)
    assert.truthy(err:find("inflating " .. path("big.csv.gz"), 1, true), err)
    assert.truthy(err:find("above the memory limit of 1.0 MiB", 1, true), err)
    local B = pk.read_csv(path("big.csv.gz"))
    assert.are.same({ 350000, 3 }, { B:shape() })
    assert.are.equal(6 * 350000, B:sum())
  end)
end)

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
    same_bits(pk.matrix{ { 1.5, -2, 0 / 0 }, { math.huge, -0.0, 5e-324 } }, A)
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
    for s = 0, 3 do same_bits(now:weights(s), t:weights(s)) end
    local p = path("traj-again.pk")
    assert.is_true(t:save(p))
    assert.are.equal(old, H.read_bytes(p))
    assert.is_true(now:save(p))
    assert.are.equal(old, H.read_bytes(p))
  end)
end)
