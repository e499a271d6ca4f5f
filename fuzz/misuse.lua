-- fuzz/misuse.lua - the misuse fuzzer: call every public function of the
-- pathkernel module and every method and metamethod of every userdata type
-- it can reach with wrong arguments (wrong types, nil, NaN, infinities,
-- huge, zero and negative sizes, released objects, extra arguments, tables
-- of the wrong shape, callbacks that fail or release things), and demand
-- that each call either returns or raises a Lua error: never a crash, never
-- a sanitizer report.
--
--   lua5.4 fuzz/misuse.lua [COUNT] [--seed S] [--trace FILE] [--quiet] [--messages]
--
-- --trace writes each call before making it (the last line names the call
-- that crashed); --messages lists every distinct error message.
--
-- Run it from a scratch folder (make misuse does): file arguments are paths
-- in a temporary folder, but an option that takes a path could be handed a
-- relative name. Types and functions are discovered, not listed: the module
-- table is walked recursively, and every userdata that a call returns joins
-- the pool of objects, bringing the methods of its metatable. To cover a new
-- type from the start, add a constructor to M.samples below.
local pk = require "pathkernel"

local M = {}

-- Sample constructors: each returns a fresh object, or nil when this build
-- lacks the type. A constructor that raises is skipped (the API it guesses
-- at may not exist yet). Objects returned by any later call join the pool.
M.samples = {
  matrix = function() return pk.randn(3, 2, 1) end,
  square = function() return pk.randn(3, 3, 2) end,
  column = function() return pk.matrix{1, 2, 3} end,
  empty = function() return pk.zeros(0, 2) end,
  special = function() return pk.matrix{{0 / 0, math.huge}, {-math.huge, -0.0}} end,
  view = function() return pk.randn(4, 2, 3):row(2) end,
  view_of_released = function()
    local A = pk.randn(4, 2, 3)
    local v = A:slice(2, 3)
    A:release()
    return v
  end,
  released = function()
    local A = pk.eye(2)
    A:release()
    return A
  end,
  kernel = function() return pk._testkit and pk._testkit.kernel{} end,
  kernel_block = function() return pk._testkit and pk._testkit.kernel{ nout = 2 } end,
  kernel_diagonal = function()
    return pk._testkit and pk._testkit.kernel{ nout = 2, outputs = "diagonal", input_dim = 2 }
  end,
  -- the types to come: these start covering them as soon as they exist
  network = function() return pk.network and pk.network{ sizes = { 2, 3, 1 }, seed = 1 } end,
  trajectory = function()
    if not pk.network then return nil end
    local net = pk.network{ sizes = { 2, 3, 1 }, seed = 1 }
    return net:train{ X = pk.randn(4, 2, 1), Y = pk.randn(4, 1, 2), steps = 2, lr = 0.1,
      record = true, progress = false }
  end,
  kernel_linear = function() return pk.kernel.linear and pk.kernel.linear() end,
  kernel_rbf = function() return pk.kernel.rbf and pk.kernel.rbf{ gamma = 0.5 } end,
}

-- Module functions never called: none so far. (pk.set_memory_limit is
-- called, and the fuzzer's limit is put back after every call.)
M.skip = {}

local LIMIT = 64 << 20      -- memory limit while fuzzing: huge sizes must fail fast

-- ---- a small deterministic generator (xorshift), independent of pk -----

local state = 0x2545F4914F6CDD1D
local function seed(s) state = (s * 0x9E3779B97F4A7C15 + 1) | 1 end
local function rnd(n)       -- 1..n
  state = state ~ (state << 13)
  state = state ~ (state >> 7)
  state = state ~ (state << 17)
  return (state >> 1) % n + 1
end
local function pick(t) return t[rnd(#t)] end
local function chance(p) return rnd(1000) <= p * 1000 end

-- ---- the scratch folder and its paths ----------------------------------

local tmpdir
local function mktmp()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p '" .. p .. "'"))
  return p
end

-- Positional strings are paths under tmpdir (or in no folder at all), so
-- no call can write outside it. Strings inside option tables may be any.
local function paths()
  return {
    tmpdir .. "/a.pk", tmpdir .. "/b.csv", tmpdir .. "/c", tmpdir,
    tmpdir .. "/missing/x.pk", "/nonexistent-pk-misuse/x.pk", tmpdir .. "/a.pk/inside",
    tmpdir .. "/nul\0byte", tmpdir .. "/" .. string.rep("n", 300), "",
  }
end

-- ---- the pool of objects, by type ---------------------------------------

local pool = {}          -- type name -> list of objects
local types = {}         -- type name -> { methods = {name -> fn}, meta = {name -> fn} }
local ntypes = 0
local POOL_MAX = 6

local function typename(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and type(mt.__name) == "string" and mt.__name or nil
end

local function learn(v)
  if type(v) ~= "userdata" then return end
  local name = typename(v)
  if not name or not name:match("^pathkernel%.") then return end
  if not types[name] then
    local mt = getmetatable(v)
    local t = { methods = {}, meta = {} }
    if type(mt.__index) == "table" then
      for k, f in pairs(mt.__index) do
        if type(f) == "function" then t.methods[#t.methods + 1] = { k, f } end
      end
    end
    for k, f in pairs(mt) do
      if type(f) == "function" then t.meta[#t.meta + 1] = { k, f } end
    end
    table.sort(t.methods, function(a, b) return a[1] < b[1] end)
    table.sort(t.meta, function(a, b) return a[1] < b[1] end)
    types[name] = t
    ntypes = ntypes + 1
    pool[name] = {}
  end
  local p = pool[name]
  if #p < POOL_MAX then p[#p + 1] = v else p[rnd(POOL_MAX)] = v end
end

local function any_object()
  local names = {}
  for n in pairs(pool) do names[#names + 1] = n end
  table.sort(names)
  if #names == 0 then return nil end
  local p = pool[pick(names)]
  return #p > 0 and pick(p) or nil
end

local notes = {}
local function refill()
  local names = {}
  for n in pairs(M.samples) do names[#names + 1] = n end
  table.sort(names)
  for _, n in ipairs(names) do
    local ok, v = pcall(M.samples[n])
    if ok then learn(v) elseif not notes[n] then notes[n] = tostring(v) end
  end
end

-- ---- the module's functions ---------------------------------------------

local function walk(t, prefix, out, seen)
  if seen[t] then return end
  seen[t] = true
  local keys = {}
  for k in pairs(t) do if type(k) == "string" then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v, name = t[k], prefix .. "." .. k
    if type(v) == "function" and not M.skip[name] then
      out[#out + 1] = { name, v }
    elseif type(v) == "table" then
      walk(v, name, out, seen)
    end
  end
  return out
end

-- ---- wrong arguments -----------------------------------------------------

local depth = 0
local call   -- forward: a callback may make a misuse call of its own

local function callbacks()
  return {
    function() error("callback failed") end,
    function() error({ "a table as the error" }) end,
    function() error(setmetatable({}, { __tostring = function() error("tostring fails") end })) end,
    function() return false end,
    function() return 0 / 0, "extra" end,
    function(...) return ... end,
    function() collectgarbage() end,
    function() local o = any_object(); if o and o.release then pcall(o.release, o) end end,
    function() coroutine.yield() end,
    function() if depth < 2 then call() end end,
  }
end

local bad_mt = setmetatable({}, {
  __index = function() error("__index fails") end,
  __len = function() error("__len fails") end,
  __pairs = function() error("__pairs fails") end,
})

local function deep(n)
  local t = {}
  for _ = 1, n do t = { t } end
  return t
end

local function zoo()
  local nested = { 1, { 2 } }
  return {
    nil, true, false, 0, -1, 1, 2, 3, 1.5, -0.0, 0 / 0, math.huge, -math.huge,
    2^31, 2^31 - 1, 2^32 + 1, 2^53, 1e308, -1e308, 5e-324, math.maxinteger, math.mininteger,
    2^63, -2^40, 1 << 40,
    {}, { {} }, { { 1, 2 }, { 3 } }, nested, { "a" }, { { 1, 2 }, { 3, 4 } }, { 1, 2, 3 },
    { 0 / 0 }, { { math.huge } }, { { 1, "2" } }, deep(200), bad_mt, { [0] = 1 }, { n = 3 },
    { progress = pick(callbacks()) }, { progress = 3 }, { header = 1 }, { header = "h" },
    { sep = "" }, { sep = "ab" }, { sep = "\n" }, { sep = ";" }, { nout = -1 }, { nout = 2^40 },
    { outputs = "trace" }, { outputs = 1 }, { memory = -1 }, { memory = 1 }, { seed = "x" },
    { seed = 1.5 }, { input_dim = 1 }, { fail_at = 1 }, { sizes = { 2, 0, 1 } }, { steps = -1 },
    { steps = 2^40 }, { lr = 0 / 0 }, { [1] = "positional" }, { unknown_option = true },
    pick(callbacks()), coroutine.create(function() end), io.stdout,
    string.rep("x", 1000), "block", "trace", "tanh", "relu", "gauss", "nan", "3", "",
  }
end

local function arg_value(positional)
  local r = rnd(100)
  if r <= 30 then return any_object() end
  if r <= 40 then return pick({ 1, 2, 3, 0, 4 }) end
  if r <= 48 and positional then return pick(paths()) end
  local v = pick(zoo())
  if positional and type(v) == "string" then return pick(paths()) end
  return v
end

local function args(n, positional)
  local t = { n = n }
  for i = 1, n do t[i] = arg_value(positional) end
  return t
end

-- ---- calling ------------------------------------------------------------

local stats = { calls = 0, ok = 0, err = 0, slow = 0, max = 0, maxname = "" }
local trace
local targets = {}       -- { name, fn, kind } for module functions
local fuzz_limit

local function describe(v)
  local t = type(v)
  if t == "string" then return string.format("%q", #v > 40 and v:sub(1, 40) .. "..." or v) end
  if t == "number" then return string.format("%.17g", v) end
  if t == "userdata" then return typename(v) or "userdata" end
  return t
end

local function run(name, fn, a)
  stats.calls = stats.calls + 1
  if trace then
    local d = {}
    for i = 1, a.n do d[i] = describe(a[i]) end
    trace:write(stats.calls, " ", name, "(", table.concat(d, ", "), ")\n")
    trace:flush()
  end
  local t0 = os.clock()
  local res
  if chance(0.1) then    -- sometimes inside a coroutine: callbacks may try to yield
    local co = coroutine.create(function() return pcall(fn, table.unpack(a, 1, a.n)) end)
    local ok, pok, r1 = coroutine.resume(co)
    res = { n = 2, ok and pok, r1 }
  else
    res = table.pack(pcall(fn, table.unpack(a, 1, a.n)))
  end
  local dt = os.clock() - t0
  if dt > stats.max then stats.max, stats.maxname = dt, name end
  if dt > 1 then stats.slow = stats.slow + 1 end
  if res[1] then
    stats.ok = stats.ok + 1
    for i = 2, res.n do learn(res[i]) end
  else
    stats.err = stats.err + 1
    if M.messages then
      local ok, m = pcall(tostring, res[2])
      m = (ok and m or "?"):gsub("^[^:]*:%d+: ", ""):gsub("%-?%d[%d.e+-]*", "N"):gsub("/tmp/%S*", "PATH")
      local key = name:gsub(":.*", "") .. ": " .. m:sub(1, 100)
      M.messages[key] = (M.messages[key] or 0) + 1
    end
  end
  if pk.memory_limit() ~= fuzz_limit then pk.set_memory_limit(fuzz_limit) end
end

local OPS = {
  { "+", function(a, b) return a + b end }, { "-", function(a, b) return a - b end },
  { "*", function(a, b) return a * b end }, { "/", function(a, b) return a / b end },
  { "%", function(a, b) return a % b end }, { "^", function(a, b) return a ^ b end },
  { "//", function(a, b) return a // b end }, { "..", function(a, b) return a .. b end },
  { "==", function(a, b) return a == b end }, { "<", function(a, b) return a < b end },
  { "<=", function(a, b) return a <= b end }, { "&", function(a, b) return a & b end },
  { "[]", function(a, b) return a[b] end }, { "[]=", function(a, b) a[b] = 1 end },
  { "unm", function(a) return -a end }, { "#", function(a) return #a end },
  { "call", function(a, b) return a(b) end }, { "tostring", function(a) return tostring(a) end },
  { "pairs", function(a) for _ in pairs(a) do end end },
}

local function type_names()
  local names = {}
  for n in pairs(types) do names[#names + 1] = n end
  table.sort(names)
  return names
end

-- one random call
function call()
  depth = depth + 1
  local r = rnd(100)
  local names = type_names()
  if r <= 35 and #targets > 0 then
    local t = pick(targets)
    run(t[1], t[2], args(rnd(7) - 1, true))
  elseif r <= 85 and #names > 0 then
    local tn = pick(names)
    local t = types[tn]
    local list = (chance(0.75) or #t.meta == 0) and t.methods or t.meta
    if #list > 0 then
      local m = pick(list)
      local a = args(rnd(6) - 1, true)
      -- mostly a right self, sometimes any value at all
      local self = chance(0.85) and (#pool[tn] > 0 and pick(pool[tn]) or nil) or arg_value(true)
      table.insert(a, 1, self)
      a.n = a.n + 1
      run(tn .. ":" .. m[1], m[2], a)
    end
  else
    local op = pick(OPS)
    local x, y = any_object(), arg_value(true)
    if chance(0.5) then x, y = y, x end
    run("op " .. op[1], op[2], { n = 2, x, y })
  end
  depth = depth - 1
end

-- every function and method once with each wrong value, in order
local function sweep(budget)
  local values = zoo()
  local nz = #values + 1          -- zoo() starts with nil
  for _, t in ipairs(targets) do
    for i = 1, nz do
      if stats.calls >= budget then return end
      run(t[1], t[2], { n = 1, values[i] })
    end
  end
  for _, tn in ipairs(type_names()) do
    local t = types[tn]
    for _, list in ipairs({ t.methods, t.meta }) do
      for _, m in ipairs(list) do
        for i = 1, nz do
          if stats.calls >= budget then return end
          local self = pool[tn][rnd(#pool[tn])]
          run(tn .. ":" .. m[1], m[2], { n = 3, self, values[i], values[rnd(nz)] })
        end
      end
    end
    if stats.calls % 50 == 0 then refill() end
  end
end

function M.main(argv)
  local count, s, tracefile, quiet = 100000, 1, nil, false
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--seed" then s = assert(math.tointeger(tonumber(argv[i + 1])), "--seed N"); i = i + 1
    elseif a == "--trace" then tracefile = argv[i + 1]; i = i + 1
    elseif a == "--quiet" then quiet = true
    elseif a == "--messages" then M.messages = {}
    else count = assert(math.tointeger(tonumber(a)), "usage: misuse.lua [COUNT] [--seed S] [--trace FILE]") end
    i = i + 1
  end
  seed(s)
  tmpdir = mktmp()
  if tracefile then trace = assert(io.open(tracefile, "w")) end
  local old_limit = pk.memory_limit()
  fuzz_limit = LIMIT
  pk.set_memory_limit(fuzz_limit)
  local t0 = os.clock()

  targets = walk(pk, "pk", {}, {})
  refill()
  sweep(count // 2)
  local n = 0
  while stats.calls < count do
    call()
    n = n + 1
    if n % 100 == 0 then refill() end
    if n % 500 == 0 then collectgarbage() end
  end
  pool = {}
  collectgarbage()
  collectgarbage()
  pk.set_memory_limit(old_limit)
  if trace then trace:close() end
  os.execute("rm -rf '" .. tmpdir .. "'")

  local nm = 0
  for _, t in pairs(types) do nm = nm + #t.methods + #t.meta end
  if not quiet then
    local tn = type_names()
    print(string.format("misuse: %d calls (%d returned, %d raised) on %d module functions and "
      .. "%d methods of %d types [%s], seed %d, %.1f s; slowest %s %.3f s",
      stats.calls, stats.ok, stats.err, #targets, nm, ntypes, table.concat(tn, " "), s,
      os.clock() - t0, stats.maxname, stats.max))
    local skipped = {}
    for k, v in pairs(notes) do skipped[#skipped + 1] = k .. " (" .. v:gsub("\n.*", "") .. ")" end
    table.sort(skipped)
    if #skipped > 0 then print("misuse: samples not built: " .. table.concat(skipped, "; ")) end
  end
  if M.messages then        -- every distinct error, to read for unclear ones
    local keys = {}
    for k in pairs(M.messages) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do print(string.format("%7d  %s", M.messages[k], k)) end
  end
  return stats
end

if arg and arg[0] and arg[0]:match("misuse%.lua$") then
  M.main(arg)
end

return M
