-- What a trajectory tells about its run: traj:batch(s), traj:options(),
-- traj:data() and its printout, each checked against the run itself (the
-- batch's loss and update recomputed from the weights, the options fed
-- back to train the same weights, the data compared entry by entry).
local H = require "helpers"
local pk = H.pk

local function shq(v) return "'" .. tostring(v):gsub("'", "'\\''") .. "'" end

local X, Y = pk.randn(10, 2, 1), pk.randn(10, 1, 2)

local function run(o)
  local net = pk.network{ sizes = { 2, 4, 1 }, activation = "tanh", seed = o.net_seed or 3 }
  o.net_seed = nil
  o.X, o.Y, o.progress = o.X or X, o.Y or Y, false
  return net:train(o), net
end

describe("traj:batch(s)", function()
  it("names the examples whose mean loss at w_{s-1} is the recorded loss of step s", function()
    local t = run{ optimizer = "sgd", batch_size = 4, steps = 7, lr = 0.1, seed = 5, record = { every = 3 } }
    local net = pk.network{ sizes = { 2, 4, 1 }, seed = 1 }
    for s = 1, #t do
      local b = t:batch(s)
      assert.is_true(#b >= 1 and #b <= 4)
      net:set_params(t:weights(s - 1))
      local loss = net:loss(X:gather(b), Y:gather(b))
      assert.is_true(math.abs(loss - t:losses()[s]) <= 1e-14 * (1 + loss), "step " .. s)
    end
  end)

  it("names the examples whose gradient is step s's update (sgd, mse)", function()
    local lr = 0.05
    local t = run{ optimizer = "sgd", batch_size = 3, steps = 5, lr = lr, seed = 9, record = true }
    local net = pk.network{ sizes = { 2, 4, 1 }, seed = 1 }
    for s = 1, #t do
      local b = t:batch(s)
      local Xb, Yb = X:gather(b), Y:gather(b)
      net:set_params(t:weights(s - 1))
      -- w_s - w_{s-1} = -lr (1/|B|) J^T (f - y) for the mean of 1/2 (f - y)^2
      local J = net:jacobian(Xb)
      local step = J:t() * (net:forward(Xb) - Yb) * (-lr / #b)
      assert.is_true(((t:weights(s) - t:weights(s - 1)) - step):max_abs() <= 1e-14, "step " .. s)
    end
  end)

  it("covers each epoch once with sgd, and every example in order with gd", function()
    local t = run{ optimizer = "sgd", batch_size = 4, steps = 6, lr = 0.1, seed = 2, record = true }
    for epoch = 0, 1 do
      local seen = {}
      for s = 3 * epoch + 1, 3 * epoch + 3 do
        for _, i in ipairs(t:batch(s)) do
          assert.is_nil(seen[i])
          seen[i] = true
        end
      end
      for i = 1, 10 do assert.is_true(seen[i], "example " .. i) end
    end
    local g = run{ steps = 2, lr = 0.1, record = true }
    assert.are.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, g:batch(2))
  end)

  it("checks the step: 1..T", function()
    local t = run{ steps = 3, record = true }
    H.raises("batch: step 0 out of range 1..3", t.batch, t, 0)
    H.raises("batch: step 4 out of range 1..3", t.batch, t, 4)
    H.raises("step must be an integer, got 1.5", t.batch, t, 1.5)
    H.raises("step must be an integer, got no value", t.batch, t)
  end)
end)

describe("traj:options()", function()
  it("tells the optimizer, loss, lr, steps, batch size, seed, record mode and hyperparameters", function()
    local t = run{ optimizer = "adam", beta1 = 0.8, beta2 = 0.99, eps = 1e-7, weight_decay = 0.01,
      batch_size = 4, steps = 6, lr = 0.02, seed = 11, record = { every = 2 } }
    assert.are.same({ optimizer = "adam", loss = "mse", lr = 0.02, steps = 6, batch_size = 4, seed = 11,
      record = { every = 2 }, beta1 = 0.8, beta2 = 0.99, eps = 1e-7, weight_decay = 0.01 }, t:options())
    local m = run{ optimizer = "momentum", momentum = 0.5, dampening = 0.1, steps = 2, lr = 0.1, record = true, seed = 1 }
    assert.are.same({ optimizer = "momentum", loss = "mse", lr = 0.1, steps = 2, batch_size = 10, seed = 1,
      record = { every = 1 }, momentum = 0.5, dampening = 0.1, weight_decay = 0 }, m:options())
  end)

  it("gives the per-step rates when the lr varied", function()
    local t = run{ steps = 4, lr = function(s) return 0.1 / s end, record = true }
    assert.are.same(t:lrs(), t:options().lr)
    assert.are.same({ 0.1, 0.05, 0.1 / 3, 0.025 }, t:options().lr)
  end)

  it("trains the same weights when fed back to train, and survives a file", function()
    for _, o in ipairs{
      { optimizer = "sgd", batch_size = 3, steps = 5, lr = 0.1, seed = 4, record = { every = 2 } },
      { optimizer = "nesterov", momentum = 0.7, steps = 4, lr = 0.05, record = true, seed = 8 },
      { steps = 3, lr = 0.2, record = true, seed = 1 },
    } do
      local t = run(o)
      local again = t:options()
      again.X, again.Y, again.progress = X, Y, false
      local net = pk.network{ sizes = { 2, 4, 1 }, activation = "tanh", seed = 3 }
      local t2 = net:train(again)
      assert.are.equal(0, (t2:weights(#t2) - t:weights(#t)):max_abs())
      local p = H.tmpname(".pk")
      assert(t:save(p))
      assert.are.same(t:options(), pk.load(p):options())
      os.remove(p)
    end
  end)

  it("tells the loss of a classifier", function()
    local labels = pk.matrix{ 1, 2, 1, 2, 2, 1, 1, 2, 2, 1 }
    local net = pk.network{ sizes = { 2, 3, 2 }, seed = 1 }
    local t = net:train{ X = X, Y = labels, loss = "softmax", steps = 2, record = true, progress = false }
    assert.are.equal("softmax", t:options().loss)
  end)
end)

describe("traj:data()", function()
  it("answers the training data, which outlives the trajectory and the caller's matrices", function()
    local Xc, Yc = X:copy(), Y:copy()
    local t = run{ X = Xc, Y = Yc, steps = 2, record = true }
    local Xd, Yd = t:data()
    assert.are.equal(0, (Xd - X):max_abs())
    assert.are.equal(0, (Yd - Y):max_abs())
    Xc:release()
    Yc:release()
    t = nil
    collectgarbage()
    collectgarbage()
    assert.are.equal(0, (Xd - X):max_abs())
    assert.are.equal(0, (Yd - Y):max_abs())
  end)

  it("answers the stored data of a loaded trajectory", function()
    local p = H.tmpname(".pk")
    assert(run{ steps = 2, record = true }:save(p))
    local Xd, Yd = pk.load(p):data()
    os.remove(p)
    assert.are.equal(0, (Xd - X):max_abs())
    assert.are.equal(0, (Yd - Y):max_abs())
  end)
end)

describe("tostring(traj)", function()
  it("shows the memory held in the unit that reads best", function()
    local units = {}
    for _, o in ipairs{ { steps = 2, width = 3 }, { steps = 30, width = 100 } } do
      local net = pk.network{ sizes = { 2, o.width, o.width, 1 }, seed = 1 }
      local t = net:train{ X = X, Y = Y, steps = o.steps, record = true, progress = false }
      local steps, num, unit = tostring(t):match("^pathkernel%.Trajectory of (%d+) steps %(([%d.]+) (%a+)%)$")
      assert.are.equal(o.steps, tonumber(steps))
      local scale = ({ bytes = 1, KiB = 1024, MiB = 1024 ^ 2, GiB = 1024 ^ 3 })[unit]
      assert.is_number(scale, tostring(t))
      num = tonumber(num)
      assert.is_true(num >= 1 and num < 1024, tostring(t))     -- no 195851 KiB
      assert.is_true(math.abs(num * scale - t:memory()) <= 0.05 * scale, tostring(t))
      units[#units + 1] = unit
    end
    assert.are.same({ "KiB", "MiB" }, units)
  end)
end)
