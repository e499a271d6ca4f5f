-- Replays fuzz/regress/NAME/*, the inputs that once failed a fuzz harness
-- (or that review wrote as one), through the Lua API: each must load, or
-- answer nil and a message, or raise a Lua error, and never take long.
-- An object that loads must save back to the same bytes, and every method
-- that walks it must be quick and answer within the memory limit.
local H = require "helpers"
local pk = H.pk

local function files(dir)
  local t, p = {}, io.popen("ls " .. dir .. " 2>/dev/null")
  for l in p:lines() do t[#t + 1] = dir .. "/" .. l end
  p:close()
  table.sort(t)
  return t
end

local function timed(f, ...)
  local t0 = os.clock()
  local r = table.pack(pcall(f, ...))
  return os.clock() - t0, table.unpack(r, 1, r.n)
end

-- every zero-argument method of an object, as the misuse fuzzer would
local function walk(obj)
  local mt = getmetatable(obj)
  assert(timed(tostring, obj) < 0.5, "tostring is slow")
  for name, fn in pairs(type(mt.__index) == "table" and mt.__index or {}) do
    if name ~= "release" and name ~= "save" and name ~= "write_csv" then
      local dt = timed(fn, obj)
      assert(dt < 0.5, name .. " took " .. dt .. " s")
    end
  end
end

-- by harness name; a harness without an entry holds PATHKRNL files, which
-- pk.load replays whatever their type
local replay = {}

local function load_file(path)
  local dt, ok, v, msg = timed(pk.load, path)
  assert(dt < 1, path .. ": load took " .. dt .. " s")
  if ok and v then
    local out = H.tmpname(".pk")
    assert(v:save(out))
    assert.are.equal(H.read_bytes(path), H.read_bytes(out))
    os.remove(out)
    local old = pk.memory_limit()
    pk.set_memory_limit(64 << 20)
    local wok, err = pcall(walk, v)
    pk.set_memory_limit(old)
    assert(wok, err)
  elseif ok then
    assert.is_string(msg)
  else
    assert.is_string(v)     -- a Lua error with a message
  end
end

-- a trajectory file that does not hold its data is loaded with the data
-- the seeds were trained on, as fuzz/fuzz_trajectory.c does
function replay.trajectory(path)
  local dt, ok, v, msg = timed(pk.load, path)
  assert(dt < 1, path .. ": load took " .. dt .. " s")
  if ok and v then return load_file(path) end
  local X, Y = pk.randn(6, 2, 11), pk.randn(6, 1, 12)
  dt, ok, v, msg = timed(pk.load, path, { X = X, Y = Y })
  assert(dt < 1, path .. ": load with data took " .. dt .. " s")
  if ok and v then
    local out = H.tmpname(".pk")
    assert(v:save(out, { data = false }))
    assert.are.equal(H.read_bytes(path), H.read_bytes(out))
    os.remove(out)
  else
    assert.is_string(ok and msg or v)
  end
end

function replay.csv(path)
  local bytes = H.read_bytes(path)
  local o = bytes:byte(1) or 0
  local p = H.tmpname(".csv")
  H.write_bytes(p, bytes:sub(2))
  local sep = ({ ",", ";", "\t", " " })[((o >> 1) & 3) + 1]
  local dt, ok, v = timed(pk.read_csv, p, { header = o & 1 == 1, sep = sep })
  os.remove(p)
  assert(dt < 1, path .. ": read_csv took " .. dt .. " s")
  assert(ok or type(v) == "string")
end

-- .npy files: each loads (and writes back to a file that reads back to
-- the same values) or is refused with a message
function replay.npy(path)
  local dt, ok, v, msg = timed(pk.read_npy, path)
  assert(dt < 1, path .. ": read_npy took " .. dt .. " s")
  if ok and v then
    local out, again = H.tmpname(".npy"), H.tmpname(".npy")
    assert(v:write_npy(out))
    assert(pk.read_npy(out):write_npy(again))
    assert.are.equal(H.read_bytes(out), H.read_bytes(again))
    os.remove(out)
    os.remove(again)
  else
    assert.is_string(ok and msg or v)
  end
end

describe("fuzz regressions", function()
  for _, dir in ipairs(files("fuzz/regress")) do
    local name = dir:match("[^/]+$")
    for _, path in ipairs(files(dir)) do
      it("replays " .. path, function() (replay[name] or load_file)(path) end)
    end
  end
end)
