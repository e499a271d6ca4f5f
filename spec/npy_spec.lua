-- NumPy .npy files: pk.read_npy and A:write_npy against files the spec
-- builds byte by byte from the format's description (so this runs without
-- Python), against files numpy.save writes and numpy.load reads (when
-- /usr/bin/python3 has numpy), and every malformed header refused.
local H = require "helpers"
local pk = H.pk

local function shq(v) return "'" .. tostring(v):gsub("'", "'\\''") .. "'" end

-- ---- the format, written out here independently of the library --------

-- a Python tuple literal: (), (n,), (a, b, ...)
local function tuple(shape)
  if #shape == 1 then return ("(%s,)"):format(shape[1]) end
  local t = {}
  for i, d in ipairs(shape) do t[i] = tostring(d) end
  return "(" .. table.concat(t, ", ") .. ")"
end

-- magic, version, header length, the header (dict, spaces up to a multiple
-- of 64 bytes counted from the start of the file, '\n'), the data
local function npy(o)
  local dict = o.header or ("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }"):format(
    o.descr, o.fortran and "True" or "False", tuple(o.shape))
  local major = o.version or 1
  local pre = major == 1 and 10 or 12
  local pad = (64 - (pre + #dict + 1) % 64) % 64
  local header = dict .. string.rep(" ", pad) .. "\n"
  local len = major == 1 and string.pack("<I2", #header) or string.pack("<I4", #header)
  return "\x93NUMPY" .. string.char(major, 0) .. len .. header .. (o.data or "")
end

-- dtype code -> string.pack item and the values a 2 x 3 test array holds
local DTYPES = {
  f8 = { "d", { 1.5, -2.25, 0.0, 1024.125, -0.5, 3.0 } },
  f4 = { "f", { 1.5, -2.25, 0.0, 1024.125, -0.5, 3.0 } },
  i8 = { "i8", { 0, -1, 127, -128, 5, 42 } },
  i4 = { "i4", { 0, -1, 127, -128, 5, 42 } },
  i2 = { "i2", { 0, -1, 127, -128, 5, 42 } },
  i1 = { "i1", { 0, -1, 127, -128, 5, 42 } },
  u8 = { "I8", { 0, 1, 255, 7, 128, 3 } },
  u4 = { "I4", { 0, 1, 255, 7, 128, 3 } },
  u2 = { "I2", { 0, 1, 255, 7, 128, 3 } },
  u1 = { "I1", { 0, 1, 255, 7, 128, 3 } },
  b1 = { "B", { 1, 0, 1, 1, 0, 0 } },
}

local function pack(code, order, values)
  local fmt = order .. DTYPES[code][1]
  local t = {}
  for i, v in ipairs(values) do t[i] = string.pack(fmt, v) end
  return table.concat(t)
end

-- the 2 x 3 values in C order (rows) or Fortran order (columns)
local function ordered(values, fortran)
  if not fortran then return values end
  return { values[1], values[4], values[2], values[5], values[3], values[6] }
end

local function expected(values) return pk.matrix{ { values[1], values[2], values[3] }, { values[4], values[5], values[6] } } end

local function same_bits(A, B)
  assert.are.same({ A:shape() }, { B:shape() })
  local a, b = A:totable(), B:totable()
  for i = 1, #a do
    for j = 1, #a[i] do
      assert.are.equal(string.pack("<d", a[i][j]), string.pack("<d", b[i][j]), ("[%d][%d]"):format(i, j))
    end
  end
end

local dir = H.tmpname("-npy")
local function path(name) return dir .. "/" .. name end

local function read_bytes(bytes)
  local p = path("x.npy")
  H.write_bytes(p, bytes)
  return pk.read_npy(p)
end

describe("pk.read_npy of files built byte by byte", function()
  setup(function() os.execute("mkdir -p " .. shq(dir)) end)
  teardown(function() os.execute("rm -rf " .. shq(dir)) end)

  it("reads every dtype in both byte orders and both memory orders", function()
    local n = 0
    for code, spec in pairs(DTYPES) do
      for _, order in ipairs{ "<", ">" } do
        for _, fortran in ipairs{ false, true } do
          local descr = (#code == 2 and code:sub(2) == "1" and order == "<" and "|" or order) .. code
          local bytes = npy{ descr = descr, fortran = fortran, shape = { 2, 3 },
            data = pack(code, order, ordered(spec[2], fortran)) }
          local A = assert(read_bytes(bytes))
          same_bits(expected(spec[2]), A)
          n = n + 1
        end
      end
    end
    assert.are.equal(44, n)
  end)

  it("reads 0-d arrays as 1 x 1, 1-d as a column, empty shapes as empty matrices", function()
    same_bits(pk.matrix{ { 2.5 } }, read_bytes(npy{ descr = "<f8", shape = {}, data = string.pack("<d", 2.5) }))
    same_bits(pk.matrix{ 1, 2, 3 }, read_bytes(npy{ descr = "<i4", shape = { 3 }, data = string.pack("<i4<i4<i4", 1, 2, 3) }))
    same_bits(pk.matrix{ 1, 2, 3 }, read_bytes(npy{ descr = ">f4", fortran = true, shape = { 3 },
      data = string.pack(">f>f>f", 1, 2, 3) }))
    assert.are.same({ 0, 1 }, { read_bytes(npy{ descr = "<f8", shape = { 0 } }):shape() })
    assert.are.same({ 0, 4 }, { read_bytes(npy{ descr = "<f8", shape = { 0, 4 } }):shape() })
    assert.are.same({ 5, 0 }, { read_bytes(npy{ descr = "<f8", shape = { 5, 0 }, fortran = true }):shape() })
  end)

  it("reads version 2.0 and 3.0 headers and the forms Python writes", function()
    local data = pack("f8", "<", DTYPES.f8[2])
    for _, v in ipairs{ 2, 3 } do
      same_bits(expected(DTYPES.f8[2]), read_bytes(npy{ version = v, descr = "<f8", shape = { 2, 3 }, data = data }))
    end
    -- double quotes, no trailing comma, other key order, Python 2's long suffix, native order
    local forms = {
      '{"shape": (2, 3), "fortran_order": False, "descr": "<f8"}',
      "{'descr':'<f8','fortran_order':False,'shape':(2L,3L)}",
      "{\n 'descr': '=f8',\n 'fortran_order': False,\n 'shape': (2, 3),\n}",
    }
    for _, h in ipairs(forms) do
      same_bits(expected(DTYPES.f8[2]), read_bytes(npy{ header = h, data = data }))
    end
  end)

  it("keeps every bit of float64 values: NaN, infinities, -0, subnormals", function()
    local v = { 0 / 0, math.huge, -math.huge, -0.0, 5e-324, 1e308 }
    same_bits(expected(v), read_bytes(npy{ descr = "<f8", shape = { 2, 3 }, data = pack("f8", "<", v) }))
    same_bits(expected(v), read_bytes(npy{ descr = ">f8", shape = { 2, 3 }, data = pack("f8", ">", v) }))
    local B = read_bytes(npy{ descr = ">i8", shape = { 2 }, data = string.pack(">i8>i8", -(1 << 62), math.maxinteger) })
    assert.are.equal(-2.0 ^ 62, B:get(1, 1))
    assert.are.equal(2.0 ^ 63, B:get(2, 1))     -- 2^63 - 1 rounds to the nearest double
    -- the bits of math.mininteger read as unsigned: 2^63
    assert.are.equal(2.0 ^ 63, read_bytes(npy{ descr = "<u8", shape = { 1 }, data = string.pack("<i8", math.mininteger) }):get(1, 1))
  end)
end)

describe("A:write_npy", function()
  setup(function() os.execute("mkdir -p " .. shq(dir)) end)
  teardown(function() os.execute("rm -rf " .. shq(dir)) end)

  it("writes float64, C order, a version 1.0 header padded to 64 bytes as numpy.save does", function()
    for _, A in ipairs{ pk.randn(3, 4, 1), pk.zeros(0, 3), pk.matrix{ { 1 } }, pk.randn(123456, 0, 1) } do
      local p = path("w.npy")
      assert.is_true(A:write_npy(p))
      local s = H.read_bytes(p)
      local r, c = A:shape()
      -- numpy.save leaves room for the first dimension to grow to 21 digits
      local dict = ("{'descr': '<f8', 'fortran_order': False, 'shape': (%d, %d), }"):format(r, c)
        .. string.rep(" ", 21 - #tostring(r))
      local values = {}
      for _, row in ipairs(A:totable()) do for _, x in ipairs(row) do values[#values + 1] = string.pack("<d", x) end end
      assert.are.equal(npy{ header = dict, data = table.concat(values) }, s)
      local hlen = string.unpack("<I2", s, 9)
      assert.are.equal(0, (10 + hlen) % 64)
      assert.are.equal("\n", s:sub(10 + hlen, 10 + hlen))
      same_bits(A, pk.read_npy(p))
    end
  end)

  it("round-trips every bit, replaces the file atomically and reports I/O failures", function()
    local A = pk.matrix{ { 0 / 0, math.huge, -math.huge }, { -0.0, 5e-324, -1e-310 } }
    local p = path("atomic.npy")
    H.write_bytes(p, "old contents")
    assert.is_true(A:write_npy(p))
    same_bits(A, pk.read_npy(p))
    local left = io.popen("ls -a " .. shq(dir)):read("a")
    assert.is_nil(left:find(".tmp", 1, true), left)
    local ok, err = A:write_npy(dir .. "/no/such/folder/x.npy")
    assert.is_nil(ok)
    assert.truthy(err:find("No such file or directory", 1, true), err)
    ok, err = A:write_npy(dir)
    assert.is_nil(ok)
    assert.truthy(err:find("is a directory", 1, true), err)
    ok, err = pk.read_npy(dir .. "/missing.npy")
    assert.is_nil(ok)
    assert.truthy(err:find("missing.npy: No such file or directory", 1, true), err)
    assert.is_nil((pk.read_npy(dir)))
    H.raises("empty path", pk.read_npy, "")
    H.raises("string (a path) expected", pk.read_npy, 3)
    H.raises("pathkernel.Matrix expected", A.write_npy, {}, p)
  end)
end)

describe("malformed .npy files", function()
  setup(function() os.execute("mkdir -p " .. shq(dir)) end)
  teardown(function() os.execute("rm -rf " .. shq(dir)) end)
  local good = npy{ descr = "<f8", shape = { 2, 3 }, data = pack("f8", "<", DTYPES.f8[2]) }

  local function refused(msg, bytes)
    local p = path("bad.npy")
    H.write_bytes(p, bytes)
    local err = H.raises(msg, pk.read_npy, p)
    assert.truthy(err:find(p, 1, true), err)      -- the message names the file
  end

  local function with_header(h, data) return npy{ header = h, data = data or pack("f8", "<", DTYPES.f8[2]) } end

  it("are refused with what was wrong", function()
    refused("magic check failed: not a NumPy .npy file", "\x93NUMPZ" .. good:sub(7))
    refused("magic check failed", "")
    refused("magic check failed", "1,2,3\n")
    refused("length check failed: truncated header", good:sub(1, 9))
    refused("length check failed: the header says 118 bytes, the file has 50 after the prefix (truncated)", good:sub(1, 60))
    refused("version check failed: .npy format version 4.0 (this build reads 1.0, 2.0 and 3.0)",
      good:sub(1, 6) .. "\4\0" .. good:sub(9))
    refused("version check failed: .npy format version 1.1", good:sub(1, 6) .. "\1\1" .. good:sub(9))
    refused("header check failed: not a Python dict literal (expected '{')", with_header("[1, 2]"))
    refused("header check failed: missing key 'shape'", with_header("{'descr': '<f8', 'fortran_order': False}"))
    refused("header check failed: missing key 'descr'", with_header("{'fortran_order': False, 'shape': (2, 3)}"))
    refused("header check failed: missing key 'fortran_order'", with_header("{'descr': '<f8', 'shape': (2, 3)}"))
    refused("header check failed: unknown key 'foo'", with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), 'foo': 1}"))
    refused("header check failed: duplicate key 'descr'", with_header("{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (2, 3)}"))
    refused("header check failed: 'fortran_order' must be True or False", with_header("{'descr': '<f8', 'fortran_order': 0, 'shape': (2, 3)}"))
    refused("header check failed: 'shape' must be a tuple: (n,) not (n)", with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (6)}"))
    refused("header check failed: 'shape' must be a tuple such as (3, 4)", with_header("{'descr': '<f8', 'fortran_order': False, 'shape': [2, 3]}"))
    refused("header check failed: a negative dimension in 'shape'", with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 3)}"))
    refused("header check failed: text after the closing '}'", with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3)} x"))
    refused("header check failed: unterminated string", "\x93NUMPY\1\0\13\0{'descr': '<f")
    refused("header check failed: expected ':' after a key", with_header("{'descr' '<f8'}"))
    refused("header check failed: a NUL byte in the header", with_header("{'descr': '<f8'\0}"))
    refused("shape check failed: a 3-dimensional array: only 0-, 1- and 2-dimensional arrays are supported",
      with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2, 3)}"))
    refused("header check failed: a structured dtype (descr is a list): not supported",
      with_header("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (2, 3)}"))
  end)

  it("refuses unsupported dtypes by name", function()
    for _, d in ipairs{ "<c16", "<f2", "|O", "<U3", "<M8[s]", "f8", "<f16" } do
      refused("dtype check failed: unsupported dtype '" .. d .. "'",
        with_header(("{'descr': '%s', 'fortran_order': False, 'shape': (2, 3)}"):format(d)))
    end
    refused("dtype check failed: '|f8' gives no byte order for a 8-byte type",
      with_header("{'descr': '|f8', 'fortran_order': False, 'shape': (2, 3)}"))
  end)

  it("refuses a data size that disagrees with the shape", function()
    refused("size check failed: a 2 x 3 array of '<f8' needs 48 data bytes, the file has 47 (truncated or extended)",
      good:sub(1, -2))
    refused("size check failed: a 2 x 3 array of '<f8' needs 48 data bytes, the file has 49", good .. "\0")
    refused("size check failed: a 3 x 1 array of '<i4' needs 12 data bytes, the file has 8",
      npy{ descr = "<i4", shape = { 3 }, data = string.pack("<i4<i4", 1, 2) })
  end)

  it("refuses huge shapes before allocating anything", function()
    local limit = pk.memory_limit()
    pk.set_memory_limit(1 << 16)
    local ok, err = pcall(function()
      -- a product that overflows 64 bits, one that does not fit the file,
      -- one beyond BLAS's int, one beyond 64 bits
      refused("size check failed: a 2147483647 x 2147483647 array of '<f8'",
        npy{ descr = "<f8", shape = { 2147483647, 2147483647 }, data = string.rep("\0", 8) })
      refused("size check failed: a 100000 x 100000 array of '<f8' needs 80000000000 data bytes, the file has 8",
        npy{ descr = "<f8", shape = { 100000, 100000 }, data = string.rep("\0", 8) })
      refused("shape check failed: dimension 3000000000 is above 2147483647",
        npy{ descr = "|u1", shape = { 3000000000 }, data = "\1" })
      refused("header check failed: a dimension in 'shape' is too large",
        with_header("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999, 1)}"))
      -- the data is there, but the matrix is above the memory limit: refused by the limit
      refused("above the memory limit",
        npy{ descr = "|u1", shape = { 100, 100 }, data = string.rep("\1", 10000) })
    end)
    pk.set_memory_limit(limit)
    assert(ok, err)
  end)
end)

-- ---- interop with NumPy itself -------------------------------------------

-- Debian's python3 with numpy, without the sanitizer runtime that
-- `make check` preloads into this process
local PYTHON = "env -u LD_PRELOAD /usr/bin/python3"
local has_numpy = os.execute(PYTHON .. " -c 'import numpy' >/dev/null 2>&1") == true

local function python(script, ...)
  local p = path("script.py")
  H.write_bytes(p, script)
  local args = { PYTHON, shq(p) }
  for _, a in ipairs{ ... } do args[#args + 1] = shq(a) end
  local f = assert(io.popen(table.concat(args, " ") .. " 2>&1"))
  local out = f:read("a")
  local ok = f:close()
  return ok, out
end

local WRITE_ALL = [[
import sys, numpy as np
out = sys.argv[1]
vals = {'f': [1.5, -2.25, 0.0, 1024.125, -0.5, 3.0], 'i': [0, -1, 127, -128, 5, 42],
        'u': [0, 1, 255, 7, 128, 3], 'b': [1, 0, 1, 1, 0, 0]}
for code in sys.argv[2:]:
    for order in '<>':
        dt = np.dtype(order + code)
        a = np.array(vals[dt.kind], dtype=dt).reshape(2, 3)
        np.save('%s/%s%s-C.npy' % (out, 'le' if order == '<' else 'be', code), a)
        np.save('%s/%s%s-F.npy' % (out, 'le' if order == '<' else 'be', code), np.asfortranarray(a))
        np.save('%s/%s%s-1d.npy' % (out, 'le' if order == '<' else 'be', code), a.ravel())
a = np.array(vals['f']).reshape(2, 3)
np.save(out + '/scalar.npy', np.float64(2.5))
np.save(out + '/empty.npy', np.zeros((0, 4)))
for v in (1, 2, 3):
    with open('%s/v%d.npy' % (out, v), 'wb') as f:
        np.lib.format.write_array(f, a, version=(v, 0))
print('written')
]]

local CHECK = [[
import sys, io, numpy as np
a = np.load(sys.argv[1])
assert a.dtype == np.float64 and a.flags.c_contiguous, a.dtype
assert a.shape == (int(sys.argv[2]), int(sys.argv[3])), a.shape
b = io.BytesIO()
np.save(b, a)
same = b.getvalue() == open(sys.argv[1], 'rb').read()
print('same bytes' if same else 'different bytes')
print(repr(a.ravel().tolist()))
]]

describe("NumPy interop", function()
  setup(function() os.execute("mkdir -p " .. shq(dir)) end)
  teardown(function() os.execute("rm -rf " .. shq(dir)) end)

  if not has_numpy then
    pending("skipped: /usr/bin/python3 with numpy is not installed")
    return
  end

  it("reads what numpy.save writes: every dtype, both byte orders, C and Fortran order, 1-d, 0-d, v1-v3", function()
    local codes = {}
    for code in pairs(DTYPES) do codes[#codes + 1] = code end
    table.sort(codes)
    local ok, out = python(WRITE_ALL, dir, table.unpack(codes))
    assert.is_true(ok, out)
    for _, code in ipairs(codes) do
      local want = expected(DTYPES[code][2])
      for _, order in ipairs{ "le", "be" } do
        local base = path(order .. code)
        same_bits(want, assert(pk.read_npy(base .. "-C.npy")))
        same_bits(want, assert(pk.read_npy(base .. "-F.npy")))
        same_bits(pk.matrix(DTYPES[code][2]), assert(pk.read_npy(base .. "-1d.npy")))
      end
    end
    same_bits(pk.matrix{ { 2.5 } }, pk.read_npy(path("scalar.npy")))
    assert.are.same({ 0, 4 }, { pk.read_npy(path("empty.npy")):shape() })
    for v = 1, 3 do same_bits(expected(DTYPES.f8[2]), pk.read_npy(path("v" .. v .. ".npy"))) end
  end)

  it("writes what numpy.load reads, byte for byte what numpy.save writes", function()
    for _, A in ipairs{ pk.randn(7, 5, 3), pk.matrix{ { 0 / 0, math.huge, -0.0 } }, pk.zeros(0, 2), pk.randn(1000, 1, 4) } do
      local p = path("from-lua.npy")
      assert.is_true(A:write_npy(p))
      local r, c = A:shape()
      local ok, out = python(CHECK, p, r, c)
      assert.is_true(ok, out)
      assert.truthy(out:find("same bytes", 1, true), out)
      -- the values as Python prints them (repr: shortest round-trip digits)
      local list = out:match("%[(.-)%]")
      local i = 0
      for item in list:gmatch("[^,%s]+") do
        i = i + 1
        local want = A:get((i - 1) // c + 1, (i - 1) % c + 1)
        local got = item == "nan" and 0 / 0 or item == "inf" and math.huge or tonumber(item)
        assert.are.equal(string.pack("<d", want), string.pack("<d", got), item)
      end
      assert.are.equal(r * c, i)
    end
  end)
end)
