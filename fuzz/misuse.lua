-- fuzz/misuse.lua - the misuse fuzzer: call every public function of the
-- pathkernel module and every method and metamethod of every userdata type
-- it can reach with wrong arguments (wrong types, nil, NaN, infinities,
-- huge, zero and negative sizes, released objects, extra arguments, tables
-- of the wrong shape, callbacks that fail or release things), and demand
-- that each call either returns or raises a Lua error: never a crash, never
-- a sanitizer report, never a message that does not name the function and
-- argument (Lua's "to '?'" or "#-1": the run then fails).
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
-- Everything trains a few steps of a tiny network on 4 examples, so that
-- every method that walks a run (replay, decomposition, path kernel) is fast.
local function data() return pk.randn(4, 2, 1), pk.randn(4, 1, 2) end
local function tiny(seed, sizes) return pk.network{ sizes = sizes or { 2, 3, 1 }, seed = seed or 1 } end
local function run(o)
  local X, Y = data()
  local net = tiny(o.seed, o.sizes)
  o.seed, o.sizes = nil, nil
  o.X, o.Y, o.progress = X, o.Y or Y, false
  o.steps = o.steps or 3
  o.lr = o.lr or 0.1
  return net:train(o)
end

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
  -- networks, trained or not, one and several outputs
  network = function() return tiny(1) end,
  network_wide = function() return pk.network{ sizes = { 2, 4, 4, 3 }, activation = "relu", seed = 2 } end,
  network_leaky = function()
    return pk.network{ sizes = { 2, 3, 2 }, activation = "leaky_relu", slope = 0.3, seed = 6 }
  end,
  -- conv networks over the pool's 2-column data (1 x 1 x 2 images), and a
  -- wider one that takes 2 x 4 x 4 images
  network_conv = function()
    return pk.network{ input = { 1, 1, 2 }, seed = 7,
      layers = { { "conv", channels = 3, size = { 1, 2 } }, { "dense", 2 } } }
  end,
  network_conv_pool = function()
    return pk.network{ input = { 2, 4, 4 }, activation = "relu", seed = 8,
      layers = { { "conv", channels = 2, size = 3, stride = 2, padding = 1 }, { "avgpool", size = 2 },
                 { "dense", 3 } } }
  end,
  kernel_conv = function()
    return pk.kernel.tangent(pk.network{ input = { 1, 2, 1 }, seed = 9,
      layers = { { "conv", channels = 2, size = 1, padding = { 1, 0 } }, { "avgpool", size = { 2, 1 } },
                 { "dense", 2 } } }, { outputs = "trace" })
  end,
  network_released = function()
    local net = tiny(3)
    net:release()
    return net
  end,
  -- runs: gd recorded at every step, sgd and adam with checkpoints, and one
  -- loaded from a file (it owns its data)
  trajectory = function() return run{ record = true } end,
  trajectory_sgd_every = function()
    return run{ optimizer = "sgd", batch_size = 3, steps = 5, record = { every = 2 } }
  end,
  trajectory_adam_every = function() return run{ optimizer = "adam", steps = 4, record = { every = 3 } } end,
  trajectory_loaded = function()
    local p = M.tmpdir .. "/sample.pk"
    assert(run{ optimizer = "momentum", record = true }:save(p))
    local t = pk.load(p)
    os.remove(p)
    return t
  end,
  -- kernel machines: offline from a trajectory, online (explain =)
  machine_offline = function() return pk.machine.from_trajectory(run{ record = true }, { nodes = 2 }) end,
  machine_offline_adam = function()
    return pk.machine.from_trajectory(run{ optimizer = "adam", record = { every = 2 } }, { rule = "left" })
  end,
  machine_online = function()
    local X = data()
    local _, km = run{ optimizer = "nesterov", explain = X:slice(1, 2) }
    return km
  end,
  machine_exact_online = function()
    local X = data()
    local _, km = run{ explain = X:slice(1, 3), lr = 1 }
    return km
  end,
  machine_exact = function() return pk.machine.from_trajectory(run{ record = true, lr = 1 }) end,
  machine_released = function()
    local km = pk.machine.from_trajectory(run{ record = true })
    km:release()
    return km
  end,
  -- kernels: tangent (every output layout), path, preconditioned
  kernel = function() return pk.kernel.tangent(tiny(4)) end,
  kernel_block = function() return pk.kernel.tangent(pk.network{ sizes = { 2, 3, 2 }, seed = 5 }) end,
  kernel_diagonal = function()
    return pk.kernel.tangent(pk.network{ sizes = { 2, 3, 2 }, seed = 5 }, { outputs = "diagonal" })
  end,
  kernel_tiled = function() return pk.kernel.tangent(tiny(6), { memory = 4000, outputs = "trace" }) end,
  kernel_path = function() return pk.kernel.path(run{ record = { every = 2 } }, { nodes = 2 }) end,
  kernel_preconditioned = function()
    return pk.kernel.preconditioned(run{ optimizer = "adamw", record = true }, 1)
  end,
  kernel_released = function()
    local K = pk.kernel.tangent(tiny(7))
    K:release()
    return K
  end,
  -- classical, infinite-width and precomputed kernels
  kernel_linear = function() return pk.kernel.linear() end,
  kernel_rbf = function() return pk.kernel.rbf{ gamma = 0.5 } end,
  kernel_poly = function() return pk.kernel.poly{ degree = 2 } end,
  kernel_ntk = function() return pk.kernel.ntk{ depth = 2, activation = "relu" } end,
  kernel_nngp = function() return pk.kernel.nngp{ depth = 1, activation = "erf" } end,
  kernel_precomputed = function()
    local A = pk.randn(4, 4, 8)
    return pk.kernel.precomputed(A * A:t(), (data()))
  end,
  -- kernel regressors, fitted on the tiny data; one loaded from a file
  regressor_ridge = function() return pk.machine.ridge(pk.kernel.rbf{ gamma = 0.5 }, data()) end,
  regressor_gp = function() return pk.machine.gp(pk.kernel.tangent(tiny(9), { memory = 1000 }), data()) end,
  regressor_flow = function() return pk.machine.gradient_flow(pk.kernel.ntk{ depth = 1 }, data()) end,
  regressor_loaded = function()
    local p = M.tmpdir .. "/regressor.pk"
    assert(pk.machine.gp(pk.kernel.laplacian{ gamma = 1 }, data()):save(p))
    local r = pk.load(p)
    os.remove(p)
    return r
  end,
  regressor_released = function()
    local r = pk.machine.ridge(pk.kernel.linear(), data())
    r:release()
    return r
  end,
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
    tmpdir .. "/a.pk", tmpdir .. "/b.csv", tmpdir .. "/c", tmpdir, tmpdir .. "/d.npy",
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

-- ---- training with wrong options, in bounded time ----------------------
--
-- Training runs as many steps as it is asked for, and the fuzzer asks for
-- 1e9 too: every option table the fuzzer builds for train carries an
-- on_step that stops the run (as on_step returning false does) after
-- STEP_CAP steps or TIME_CAP seconds. It wraps an on_step the fuzzer chose
-- (a callback that raises, yields, releases...), and an on_step of a wrong
-- type is passed as it is (train refuses it before the first step). Huge
-- step counts still reach the argument checks and the memory limit (the
-- loss history, the trajectory), which refuse them before any step.
local STEP_CAP, TIME_CAP = 16, 0.25
M.STEP_CAP, M.TIME_CAP = STEP_CAP, TIME_CAP

-- (time_cap: the spec that counts steps gives a loaded or valgrind run more)
local function guarded(f, time_cap)
  local t0, cap = os.clock(), time_cap or TIME_CAP
  return function(step, ...)
    if type(step) ~= "number" or step > STEP_CAP or os.clock() - t0 > cap then return false end
    if f then return f(step, ...) end
  end
end

local arg_value   -- forward
local building = false

local function train_opts()
  local odd = { 0, -1, 1.5, 0 / 0, math.huge, -math.huge, 2^31, 2^40, 1e9, 1e308, "3", {} }
  local function one_of(t) return chance(0.85) and pick(t) or pick(odd) end
  local hyper = { 0, 0.5, 0.9, 0.999, 1, 1e-8 }
  local HYPER = {
    gd = { "weight_decay" }, sgd = { "weight_decay" },
    momentum = { "momentum", "dampening", "weight_decay" }, nesterov = { "momentum", "weight_decay" },
    adam = { "beta1", "beta2", "eps", "weight_decay" }, adamw = { "beta1", "beta2", "eps", "weight_decay" },
  }
  local fields = {
    steps = { 1, 2, 5, 1e6, 1e9, 2^40 }, epochs = { 1, 2, 1e9 },
    lr = { 0.1, 1e-3, 10, function() return 0.05 end, function() return 0 / 0 end,
      function() error("lr failed") end, function() return "x" end },
    loss = { "mse", "logistic", "softmax", "hinge" },
    batch_size = { 1, 2, 3, 4, 5, 2^40 }, seed = { 1, 2, math.maxinteger, math.mininteger },
    record = { true, true, { every = 1 }, { every = 2 }, { every = 3 }, false, { every = 0 },
      { every = 2^40 }, { evry = 2 } },
    rule = { "gauss", "left", "exact", "midpoint" }, nodes = { 1, 2, 4, 16, 17 },
    tol = { 1e-13, 1e-6, 0, -1, 0 / 0, "x" }, kernel = { true, false, 1 },
    progress = { false, true }, momentum = hyper, dampening = hyper, beta1 = hyper, beta2 = hyper,
    eps = hyper, weight_decay = hyper, unknown_option = { 1 },
  }
  -- how likely each option is set: mostly a coherent run with a few wrong parts
  local p = { steps = 0.3, epochs = 0.05, lr = 0.3, loss = 0.15, batch_size = 0.1, seed = 0.2,
    record = 0.5, rule = 0.15, nodes = 0.15, tol = 0.1, kernel = 0.1, progress = 0.1, unknown_option = 0.02 }
  local o = {}
  if chance(0.85) then
    o.X, o.Y = data()                -- right data, so that training starts
    if chance(0.2) then o.Y = pick({ pk.matrix{ 1, 2, 1, 2 }, pk.matrix{ 0, 1, 1, 0 }, pk.zeros(4, 2) }) end
  else
    o.X, o.Y = arg_value(false), arg_value(false)
  end
  local opt = chance(0.9) and pick({ "gd", "sgd", "momentum", "nesterov", "adam", "adamw" })
    or pick({ "lbfgs", 3 })
  if chance(0.8) then o.optimizer = opt end
  local names = {}
  for k in pairs(p) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    if chance(p[k]) then o[k] = one_of(fields[k]) end
  end
  for _, h in ipairs(HYPER[o.optimizer or "gd"] or {}) do
    if chance(0.3) then o[h] = one_of(fields[h]) end
  end
  if chance(0.03) then o[pick({ "momentum", "beta1", "eps" })] = 0.5 end   -- where it means nothing
  if chance(0.3) then o.explain = chance(0.8) and (data()):slice(1, rnd(4)) or arg_value(false) end
  local cb = chance(0.12) and pick(callbacks()) or chance(0.03) and arg_value(false) or nil
  if cb == nil or type(cb) == "function" then o.on_step = guarded(cb) else o.on_step = cb end
  return o
end

M.train_opts = function() return train_opts() end
M.guarded = guarded

-- zoo() holds TRAIN where a train option table goes; built when used
local TRAIN = setmetatable({}, { __name = "train options" })
local function realize(v)
  if v ~= TRAIN then return v end
  if building then return {} end
  building = true
  local ok, o = pcall(train_opts)
  building = false
  assert(ok, o)
  return o
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
    { sizes = { 2, 3, 1 }, activation = "leaky_relu", slope = 0 / 0 }, { sizes = { 2, 3, 1 }, slope = { 1, 2 } },
    { input = { 1, 1, 2 }, layers = { { "conv", channels = 2, size = { 1, 2 } }, { "dense", 1 } } },
    { input = { 1, 4, 4 }, layers = { { "conv", channels = 1, size = 5 } } },
    { input = { 2, 3, 3 }, layers = { { "avgpool", size = 2 }, { "conv", channels = 2, size = 1, stride = 0 } } },
    { input = { 1, 2 }, layers = { { "dense", 1 } } }, { input = { 1, 1, 2 }, layers = {} },
    { layers = { { "conv" } } }, { input = { 2^40, 2^40, 2 }, layers = { { "dense", 1 } } },
    { input = 4, layers = "conv" }, { layers = { { "dense", 1 } } }, { input = { 1, 4, 4.5 }, layers = { { "dense", 1 } } },
    { input = { 1, 4, 4 }, layers = { { "conv", channels = 2, size = { 1, "1" }, padding = { 2^40, 0 } } } },
    { input = { 1, 2^20, 2^20 }, layers = { { "conv", channels = 2^20, size = 2^19 }, { "dense", 1 } } },
    { input = 4, layers = { { "dense", 1, activation = "relu" }, { 1 }, { "avgpool" } } },
    { steps = 2^40 }, { lr = 0 / 0 }, { [1] = "positional" }, { unknown_option = true },
    -- pk.split, A:std, pk.hstack / vstack (lists of pool objects)
    { test = 0.2 }, { test = 3 }, { test = 1.0 }, { test = 2^40 }, { shuffle = false, test = 1 },
    { ddof = 1 }, { ddof = -1 }, { ddof = 2^40 },
    { any_object(), any_object() }, { any_object(), any_object(), any_object() },
    TRAIN, TRAIN, TRAIN,
    pick(callbacks()), coroutine.create(function() end), io.stdout,
    string.rep("x", 1000), "block", "trace", "tanh", "relu", "gauss", "nan", "3", "",
  }
end

function arg_value(positional)
  local r = rnd(100)
  if r <= 30 then return any_object() end
  if r <= 40 then return pick({ 1, 2, 3, 0, 4 }) end
  if r <= 48 and positional then return pick(paths()) end
  local v = realize(pick(zoo()))
  if positional and type(v) == "string" then return pick(paths()) end
  return v
end

local function args(n, positional)
  local t = { n = n }
  for i = 1, n do t[i] = arg_value(positional) end
  return t
end

-- ---- calling ------------------------------------------------------------

local stats = { calls = 0, ok = 0, err = 0, slow = 0, max = 0, maxname = "", trained = 0, unnamed = 0 }
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

-- Every error names its function and argument: Lua's luaL_argerror says
-- "to '?'" for a method called from C and "#-1" for a checker handed a
-- pushed value; the binding's own checkers never do.
local unnamed = { "to '%?'", "#%-%d" }
function M.check_message(name, a, err)
  local ok, m = pcall(tostring, err)
  if not ok or type(m) ~= "string" then return end
  for _, pat in ipairs(unnamed) do
    if m:find(pat) then
      stats.unnamed = stats.unnamed + 1
      local d = {}
      for i = 1, a.n do d[i] = describe(a[i]) end
      io.stderr:write(string.format("misuse: an error that does not name its function or argument: %s(%s): %s\n",
        name, table.concat(d, ", "), m))
      return
    end
  end
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
    if name:match(":train$") then stats.trained = stats.trained + 1 end
    for i = 2, res.n do learn(res[i]) end
  else
    stats.err = stats.err + 1
    M.check_message(name, a, res[2])
    if M.messages then
      local ok, m = pcall(tostring, res[2])
      m = (ok and m or "?"):gsub("^[^:]*:%d+: ", ""):gsub("%-?%d[%d.e+-]*", "N"):gsub("/tmp/%S*", "PATH")
      local key = name:gsub(":.*", "") .. ": " .. m:sub(1, 100)
      M.messages[key] = (M.messages[key] or 0) + 1
    end
  end
  if pk.memory_limit() ~= fuzz_limit then pk.set_memory_limit(fuzz_limit) end
  -- a call may have turned the state's SIGINT handling off: back on
  if pk.handle_interrupts and not pk.handle_interrupts() then pk.handle_interrupts(true) end
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

-- ---- attribution with nearly right arguments, in bounded time ----------
--
-- Random arguments seldom get past pk.attribute's first checks; these calls
-- do: a recorded run or a network with its data, queries of the right width
-- or not, option values right or odd. lds and remove_top retrain for as many
-- steps as their train table asks, so their progress stops the retraining
-- after TIME_CAP seconds, wrapping a callback the fuzzer chose.
local last_lds       -- the data of an lds that returned, for reuse

local function attr_progress(bounded)
  local t0 = os.clock()
  local cb = chance(0.3) and pick(callbacks()) or nil
  if not bounded and chance(0.1) then return pick({ true, false, 1, "x" }) end
  return function(...)
    if os.clock() - t0 > TIME_CAP then return false end
    if cb then return cb(...) end
  end
end

local function attribution()
  local odd = { 0, -1, 1.5, 0 / 0, math.huge, 2^40, "x", {}, true }
  local function v(t) return chance(0.85) and pick(t) or pick(odd) end
  -- each option present half the time
  local function opts(t)
    local o = {}
    for k, val in pairs(t) do if chance(0.5) then o[k] = val end end
    return o
  end
  local X, Y = data()
  local net = tiny(rnd(8))
  local nq = rnd(3)
  local Xq = chance(0.85) and pk.randn(nq, 2, rnd(9))
    or pick({ pk.randn(2, 3, 1), pk.zeros(0, 2), pk.matrix{ { 0 / 0, 1 } } })
  local trajs = pool["pathkernel.Trajectory"] or {}
  local traj = #trajs > 0 and chance(0.8) and pick(trajs) or pick({ M.samples.trajectory, M.samples.trajectory_adam_every })()
  local output = v{ 1, 2, { 1, 1 }, { 1 } }
  local A = pk.attribute
  local which = rnd(7)
  if which == 1 then
    return "pk.attribute.metagradient", A.metagradient,
      { n = 3, traj, Xq, opts{ output = output, progress = attr_progress() } }
  elseif which == 2 then
    return "pk.attribute.tracin", A.tracin,
      { n = 3, traj, Xq, opts{ every = v{ 1, 2, 3, 2^40 }, output = output, progress = attr_progress() } }
  elseif which == 3 then
    return "pk.attribute.weights", A.weights, { n = 2, traj, opts{ layer = v{ 1, 2, 3 }, progress = attr_progress() } }
  elseif which == 4 then
    return "pk.attribute.influence", A.influence, { n = 5, net, X, Y, Xq, opts{
      loss = v{ "mse", "logistic", "softmax" }, damping = v{ 0, 0.1, 1 }, solver = v{ "exact", "cg" },
      tol = v{ 1e-10, 0.5 }, maxiter = v{ 1, 5, 100 }, output = output, progress = attr_progress() } }
  elseif which == 5 then
    return "pk.attribute.representer", A.representer, { n = 5, net, X, Y, Xq, opts{
      lambda = v{ 0.003, 1, 1e-12 }, loss = v{ "mse", "logistic", "softmax" },
      targets = v{ "model", "labels" }, output = output, progress = attr_progress() } }
  end
  local m = X:rows()
  local function scores()
    local s = { s = pk.randn(nq, m, rnd(9)) }
    if chance(0.3) then s.z = pick({ pk.zeros(nq, m - 1), { pk.zeros(nq, m) }, "x", pk.zeros(nq, m) }) end
    if chance(0.05) then s[1] = pk.zeros(nq, m) end
    return s
  end
  local o = opts{ output = output, seed = v{ 1, 2, math.mininteger },
    train = opts{ steps = v{ 1, 2, 5, 1e9 }, lr = v{ 0.1, 1e-3, function() return 0.1 end },
      optimizer = v{ "gd", "sgd", "momentum", "adam" }, batch_size = v{ 1, 2, 4 },
      loss = v{ "mse", "logistic" }, momentum = v{ 0.9 },
      weights = v{ pk.ones(m, 1), pk.zeros(m, 1), pk.matrix{ 1, -1, 1, 1 }, pk.ones(2, 1) } } }
  o.progress = attr_progress(true)
  -- what they need, mostly there
  local need = { net = net, X = X, Y = chance(0.9) and Y or pk.matrix{ 0, 1, 1, 0 }, Xq = Xq, scores = scores() }
  for k, val in pairs(need) do if chance(0.95) then o[k] = val end end
  if which == 6 then
    o.subsets, o.fraction = v{ 2, 3, 5, 1e9 }, v{ 0.5, 0.25, 0.75 }
    if last_lds and chance(0.3) then o = { scores = scores(), reuse = last_lds, output = output } end
    return "pk.attribute.lds", function(t)
      local res, d = A.lds(t)
      if d and chance(0.5) then last_lds = d end
      return res, d
    end, { n = 1, o }
  end
  o.k = v{ 1, 2, 3, { 1, 2 }, {} }
  return "pk.attribute.remove_top", A.remove_top, { n = 1, o }
end

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
      if m[1] == "train" and chance(0.7) then a[1] = realize(TRAIN); a.n = math.max(a.n, 1) end
      -- mostly a right self, sometimes any value at all
      local self = chance(0.85) and (#pool[tn] > 0 and pick(pool[tn]) or nil) or arg_value(true)
      table.insert(a, 1, self)
      a.n = a.n + 1
      run(tn .. ":" .. m[1], m[2], a)
    end
  elseif r <= 92 then
    -- training is where most of the library runs: wrong options for it
    -- often, mostly on a fresh network (those of the pool get released)
    local nets = pool["pathkernel.Network"] or {}
    local net = (#nets == 0 or chance(0.7)) and tiny(rnd(8), chance(0.2) and { 2, 3, 2 } or nil) or pick(nets)
    run("pathkernel.Network:train", net.train, { n = 2, net, realize(TRAIN) })
  elseif r <= 96 then
    -- attribution: long work on runs and networks, retraining
    local ok, name, fn, a = pcall(attribution)
    if ok then run(name, fn, a) end
  else
    local op = pick(OPS)
    local x, y = any_object(), arg_value(true)
    if chance(0.5) then x, y = y, x end
    run("op " .. op[1], op[2], { n = 2, x, y })
  end
  depth = depth - 1
end

-- a zoo value as a positional argument: strings become scratch paths (the
-- sweep once passed "trace" as a path: a save overwrote the call trace)
local function positional(v)
  v = realize(v)
  if type(v) == "string" then return paths()[#v % 10 + 1] end
  return v
end

-- every function and method once with each wrong value, in order
local function sweep(budget)
  local values = zoo()
  local nz = #values + 1          -- zoo() starts with nil
  for _, t in ipairs(targets) do
    for i = 1, nz do
      if stats.calls >= budget then return end
      run(t[1], t[2], { n = 1, positional(values[i]) })
    end
  end
  for _, tn in ipairs(type_names()) do
    local t = types[tn]
    for _, list in ipairs({ t.methods, t.meta }) do
      for _, m in ipairs(list) do
        for i = 1, nz do
          if stats.calls >= budget then return end
          local self = pool[tn][rnd(#pool[tn])]
          run(tn .. ":" .. m[1], m[2], { n = 3, self, positional(values[i]), positional(values[rnd(nz)]) })
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
  M.tmpdir = tmpdir
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
      .. "%d methods of %d types [%s], seed %d, %.1f s; slowest %s %.3f s; %d trainings ran",
      stats.calls, stats.ok, stats.err, #targets, nm, ntypes, table.concat(tn, " "), s,
      os.clock() - t0, stats.maxname, stats.max, stats.trained))
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
  if stats.unnamed > 0 then
    print(string.format("misuse: %d errors did not name their function or argument (listed on stderr)",
      stats.unnamed))
  end
  return stats
end

if arg and arg[0] and arg[0]:match("misuse%.lua$") then
  if M.main(arg).unnamed > 0 then os.exit(1) end
end

return M
