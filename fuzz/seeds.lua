-- fuzz/seeds.lua OUTDIR NAME... - write the seed corpus of each named fuzz
-- harness into OUTDIR/NAME/: valid inputs made by the library itself, so
-- that mutation starts from files that pass every check. A new harness
-- fuzz/fuzz_NAME.c gets its seeds from one more function in `seeds` below.
local pk = require "pathkernel"

local seeds = {}

local function tmpfile()
  local p = os.tmpname()
  return p
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- the bytes pk saves for a matrix
local function saved(A)
  local p = tmpfile()
  assert(A:save(p))
  local s = slurp(p)
  os.remove(p)
  return s
end

local function sample_matrices()
  local S = pk.matrix{{0 / 0, math.huge, -math.huge, -0.0, 5e-324}}
  return {
    empty = pk.zeros(0, 0), one = pk.matrix{{1.5}}, small = pk.randn(3, 4, 1),
    special = S, wide = pk.zeros(0, 7), tall = pk.zeros(5, 0), col = pk.rand(16, 1, 2),
  }
end

function seeds.matrix(put)
  for name, A in pairs(sample_matrices()) do put(name, saved(A)) end
end

-- CRC-32 (zlib polynomial), for frames no loader of this build writes yet
local crctab = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do c = (c & 1) == 1 and (0xedb88320 ~ (c >> 1)) or (c >> 1) end
  crctab[i] = c
end
local function crc32(s)
  local c = 0xffffffff
  for i = 1, #s do c = crctab[(c ~ s:byte(i)) & 0xff] ~ (c >> 8) end
  return c ~ 0xffffffff
end

local function frame(tag, payload)
  local head = "PATHKRNL" .. string.pack("<I4I4I8", 1, tag, #payload) .. payload
  return head .. string.pack("<I4", crc32(head))
end

function seeds.container(put)
  put("matrix", saved(pk.randn(2, 3, 3)))
  assert(frame(1, saved(pk.eye(2)):sub(25, -5)) == saved(pk.eye(2)), "seeds.lua frames differ")
  for tag = 1, 5 do
    put("empty-tag" .. tag, frame(tag, ""))
    put("bytes-tag" .. tag, frame(tag, string.rep("\1\0\0\0\0\0\0\0", 3)))
  end
end

-- first byte: bit 0 header, bits 1-2 separator (',' ';' tab space)
function seeds.csv(put)
  local opt = { comma = 0, header = 1, semi = 2, tab = 4, space = 6 }
  local function csv(name, o, text) put(name, string.char(o) .. text) end
  csv("plain", opt.comma, "1,2,3\n4,5,6\n")
  csv("header", opt.header, "a,b\n1.5,-2e3\n")
  csv("crlf", opt.comma, "1,2\r\n3,4\r\n")
  csv("blank", opt.comma, "\n1\n\n  \n2\n")
  csv("special", opt.comma, "nan,inf,-inf,-0,0x1p-3,1e-320, 7 \n")
  csv("semi", opt.semi, "1;2\n3;4")
  csv("tab", opt.tab | 1, "x\ty\n1\t2\n")
  csv("space", opt.space, "1 2\n3 4\n")
  csv("ragged", opt.comma, "1,2\n3\n")
  csv("bad", opt.comma, "1,x\n")
  local iris = io.open("examples/data/iris.csv", "rb")
  if iris then
    local lines = {}
    for l in iris:lines() do
      lines[#lines + 1] = l
      if #lines == 12 then break end
    end
    iris:close()
    csv("iris", opt.header, table.concat(lines, "\n") .. "\n")
  end
  local p = tmpfile()
  assert(pk.randn(4, 3, 5):write_csv(p, { header = "u,v,w" }))
  csv("written", opt.header, slurp(p))
  os.remove(p)
end

local out = assert(arg[1], "usage: lua5.4 fuzz/seeds.lua OUTDIR NAME...")
for i = 2, #arg do
  local name = arg[i]
  local dir = out .. "/" .. name
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  if seeds[name] then
    local n = 0
    seeds[name](function(seed, bytes)
      local f = assert(io.open(dir .. "/" .. seed, "wb"))
      f:write(bytes)
      f:close()
      n = n + 1
    end)
    print(string.format("seeds: %d for %s", n, name))
  else
    print(string.format("seeds: none for %s (add a function to fuzz/seeds.lua)", name))
  end
end
