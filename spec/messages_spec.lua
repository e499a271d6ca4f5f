-- Error messages name the function (or method) and the argument or option,
-- however the function is called: from Lua code, through pcall (C calls it,
-- so Lua's own checkers cannot find a name and print '?'), as a
-- metamethod, or with an option table's field (which is no argument: Lua's
-- checkers print "#-2" for it).
local H = require "helpers"
local pk = H.pk

-- the message of a call that must fail
local function err(f, ...)
  local ok, e = pcall(f, ...)
  assert.is_false(ok, "the call succeeded")
  return tostring(e)
end

local function has(msg, s)
  assert.truthy(msg:find(s, 1, true), "'" .. msg .. "' does not contain '" .. s .. "'")
end

-- no Lua-style message without a name or with a pushed value's index
local function named(msg)
  assert.is_nil(msg:find("to '?'", 1, true), msg)
  assert.is_nil(msg:find("#%-%d"), msg)
end

describe("error messages", function()
  local net = pk.network{ sizes = { 2, 3, 1 }, seed = 1 }
  local X, Y = pk.randn(4, 2, 1), pk.randn(4, 1, 2)
  local K = pk.kernel.rbf{ gamma = 1 }

  it("name a method called from C, counting self as the first argument", function()
    local m = err(net.forward, net, "x")
    assert.are.equal("bad argument #2 to 'forward' (pathkernel.Matrix expected, got string)", m)
    -- called as a method from Lua, self is not counted (Lua's convention)
    has(err(function() return net:forward("x") end), "bad argument #1 to 'forward' (pathkernel.Matrix expected, got string)")
    -- a coroutine's body, a metamethod, K(...) for K:gram
    has(err(coroutine.wrap(net.forward), net, 1), "bad argument #2 to 'forward'")
    has(err(getmetatable(X).__add, X, "s"), "bad argument #2 to 'add' (pathkernel.Matrix expected, got string)")
    has(err(K, "x"), "bad argument #2 to 'gram' (pathkernel.Matrix expected, got string)")
    -- a wrong self
    has(err(net.forward, 42, X), "bad argument #1 to 'forward' (pathkernel.Network expected, got number)")
    has(err(pk.kernel.tangent(net).diag, X, X), "bad argument #1 to 'diag' (pathkernel.Kernel expected, got pathkernel.Matrix)")
  end)

  it("name every method of every type when it is handed a wrong self", function()
    local traj = net:clone():train{ X = X, Y = Y, steps = 2, lr = 0.1, record = true, progress = false }
    local objects = { X, net, traj, pk.machine.from_trajectory(traj), K, pk.machine.ridge(K, X, Y) }
    local n = 0
    for _, o in ipairs(objects) do
      for name, f in pairs(getmetatable(o).__index) do
        local ok, e = pcall(f, 42)
        if not ok then
          n = n + 1
          e = tostring(e)
          named(e)
          has(e, "to '" .. name .. "'")
        end
      end
    end
    assert.is_true(n >= 50, n .. " methods checked")
  end)

  it("name the option of a wrong option value, not a stack index", function()
    local m = err(net.train, net, { X = { { 1, 2 } } })
    assert.are.equal("train: option 'X' must be a pathkernel.Matrix, got table", m)
    has(err(net.train, net, { X = X, Y = net }), "train: option 'Y' must be a pathkernel.Matrix, got pathkernel.Network")
    has(err(net.train, net, { X = X, Y = Y, explain = "x" }), "train: option 'explain' must be a pathkernel.Matrix, got string")
    local R = pk.randn(2, 2, 3)
    R:release()
    has(err(net.train, net, { X = R, Y = Y }), "train: option 'X': matrix has been released")
    local path = H.tmpname(".pk")
    assert(net:clone():train{ X = X, Y = Y, steps = 2, lr = 0.1, record = true, progress = false }:save(path))
    has(err(pk.load, path, { X = 1, Y = Y }), "load: option 'X' must be a pathkernel.Matrix, got number")
    os.remove(path)
    has(err(pk.machine.gradient_flow, K, X, Y, { f0 = R }), "gradient_flow: option 'f0'")
    has(err(net.train, net, { X = X, Y = Y, steps = 1.5 }), "train: option 'steps' must be an integer, got 1.5")
    has(err(K.gram, K, X, { progress = 1 }), "gram: option 'progress' must be a boolean or a function, got number")
    has(err(pk.zeros, "3", 3), "zeros: rows must be an integer, got string")
  end)

  it("say what is wrong with an option table that has list entries", function()
    -- a list where X2 may go is taken for data
    local m = err(function() return K:gram(X, { 1, 2, 3 }) end)
    has(m, "bad argument #2 to 'gram' (pathkernel.Matrix expected, got table)")
    m = err(K.gram, K, X, X, { 1, 2, 3 })
    assert.are.equal("gram: options must have string keys, got a number key 1", m)
    has(err(K.gram, K, X, X, { [true] = 1 }), "gram: options must have string keys, got a boolean key")
    -- machine methods are named after themselves, not their progress label
    local traj = net:clone():train{ X = X, Y = Y, steps = 2, lr = 0.1, record = true, progress = false }
    local km = pk.machine.from_trajectory(traj)
    has(err(km.predict, km, X, { steps = 1 }), "predict: unknown option 'steps'")
    has(err(km.contributions, km, X, { 1 }), "contributions: options must have string keys, got a number key 1")
  end)
end)
