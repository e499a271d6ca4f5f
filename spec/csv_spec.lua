-- CSV: values round-trip exactly; read_csv reads decimal numbers only and
-- names the line and column of a bad field; gzip-compressed files are
-- inflated first, known by their content.
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

describe("pk.read_csv and A:write_csv", function()
  it("round-trips values exactly (%.17g) with a header", function()
    local A = pk.randn(6, 3, 2)
    local p = H.tmpname(".csv")
    assert.is_true(A:write_csv(p, { header = "a,b,c" }))
    local B, header = pk.read_csv(p, { header = true })
    assert.are.equal("a,b,c", header)
    assert.are.equal(0, (A - B):max_abs())
    os.remove(p)
  end)

  it("reads the iris file shipped with the examples", function()
    local I, header = pk.read_csv("examples/data/iris.csv", { header = true })
    assert.are.same({150, 5}, {I:shape()})
    assert.truthy(header:find("setosa", 1, true))
  end)

  it("names the line and column of a bad field", function()
    local p = H.tmpname(".csv")
    H.write_bytes(p, "1,2,3\n4,x5,6\n")
    H.raises("line 2, column 2", pk.read_csv, p)
    H.write_bytes(p, "1,2,3\n4,5\n")
    H.raises("line 2 has 2 fields, expected 3", pk.read_csv, p)
    H.write_bytes(p, "1;2\n3;4\n")
    assert.are.same({{1, 2}, {3, 4}}, pk.read_csv(p, { sep = ";" }):totable())
    os.remove(p)
    assert.is_nil((pk.read_csv("/nonexistent.csv")))
    H.raises("unknown option 'headr'", pk.read_csv, p, { headr = true })
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
    H.same_bits(P, G)
    H.same_bits(A, G)
    assert.are.equal("w,x,y,z", gh)
    assert.are.equal(ph, gh)
  end)

  it("knows gzip by its content, not by its name", function()
    assert.is_true(A:write_csv(path("b.csv")))
    H.write_bytes(path("plain-looking.csv"), gzip(path("b.csv"), path("b.gz")))
    H.same_bits(A, pk.read_csv(path("plain-looking.csv")))
    H.write_bytes(path("text.csv.gz"), H.read_bytes(path("b.csv")))
    H.same_bits(A, pk.read_csv(path("text.csv.gz")))
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
