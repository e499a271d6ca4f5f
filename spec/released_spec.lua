-- Objects released or reused while in use: a callback cannot release the
-- object whose call it serves, and the data a callback releases stays alive
-- until the call ends; released objects refuse every use by name. (The
-- Kernel userdata's own cases are in tangent_spec.lua.)
local H = require "helpers"
local pk = H.pk

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
    H.raises("kernel machine is in use: it cannot be used from its own progress callback", km.contributions, km, X,
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
