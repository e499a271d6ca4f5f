-- Networks: the parameter layout against a forward pass written here in
-- Lua, Jacobians and training gradients against central finite
-- differences, gradient descent against its closed form, and bad input.
local H = require "helpers"
local pk = H.pk

local ACTS = { "identity", "relu", "tanh", "sigmoid", "softplus", "gelu", "erf", "sin", "leaky_relu" }

-- phi in plain Lua, for the independent forward pass
local function erf(x)
  -- Abramowitz-Stegun 7.1.26 is too coarse; integrate exp(-t^2) by
  -- composite Simpson on 2000 panels (error ~1e-14 on |x| < 6)
  local n, s = 2000, 0
  local h = x / n
  for i = 0, n do
    local t = i * h
    local w = (i == 0 or i == n) and 1 or (i % 2 == 1 and 4 or 2)
    s = s + w * math.exp(-t * t)
  end
  return 2 / math.sqrt(math.pi) * s * h / 3
end
local PHI = {
  identity = function(z) return z end,
  relu = function(z) return z > 0 and z or 0 end,
  tanh = function(z) local e = math.exp(2 * z); return (e - 1) / (e + 1) end,
  sigmoid = function(z) return 1 / (1 + math.exp(-z)) end,
  softplus = function(z) return math.log(1 + math.exp(z)) end,
  gelu = function(z) return 0.5 * z * (1 + erf(z / math.sqrt(2))) end,
  erf = erf,
  sin = math.sin,
  leaky_relu = function(z) return z > 0 and z or 0.01 * z end,
}

-- forward pass from the documented layout: W_l row-major then b_l
local function lua_forward(sizes, act, param, sw, sb, theta, x)
  local a, off = x, 0
  for l = 1, #sizes - 1 do
    local din, dout = sizes[l], sizes[l + 1]
    local cw = param == "ntk" and sw / math.sqrt(din) or 1
    local cb = param == "ntk" and sb or 1
    local z = {}
    for i = 1, dout do
      local s = 0
      for j = 1, din do s = s + theta[off + (i - 1) * din + j] * a[j] end
      z[i] = cw * s + cb * theta[off + din * dout + i]
    end
    off = off + din * dout + dout
    if l < #sizes - 1 then
      for i = 1, dout do z[i] = PHI[act](z[i]) end
    end
    a = z
  end
  return a
end

local function column(M)
  local t = {}
  for i = 1, M:rows() do t[i] = M:get(i, 1) end
  return t
end

describe("pk.network", function()
  it("counts parameters and prints its shape", function()
    local net = pk.network{ sizes = {3, 5, 4, 2}, activation = "relu", seed = 1 }
    assert.are.equal(3 * 5 + 5 + 5 * 4 + 4 + 4 * 2 + 2, net:nparams())
    assert.are.same({3, 5, 4, 2}, net:sizes())
    assert.are.same({"relu", "relu"}, net:activations())
    local s = tostring(net)
    assert.truthy(s:find("3 -> 5 relu -> 4 relu -> 2", 1, true))
    assert.truthy(s:find("54 parameters", 1, true))
    assert.truthy(s:find("ntk", 1, true))
  end)

  for _, param in ipairs{ "ntk", "standard" } do
    for _, act in ipairs(ACTS) do
      it(("follows the documented layout and scaling (%s, %s)"):format(act, param), function()
        local sizes = {3, 4, 3, 2}
        local net = pk.network{ sizes = sizes, activation = act, parameterization = param,
                                sigma_w = 1.3, sigma_b = 0.4, seed = 5 }
        local X = pk.randn(4, 3, 6)
        local F = net:forward(X)
        local theta = column(net:params())
        for i = 1, 4 do
          local f = lua_forward(sizes, act, param, 1.3, 0.4, theta, X:totable()[i])
          for k = 1, 2 do
            -- a handful of roundings per layer; the Lua erf is good to 1e-13
            assert.is_true(math.abs(f[k] - F:get(i, k)) < 1e-12, act .. " " .. f[k] .. " " .. F:get(i, k))
          end
        end
      end)
    end
  end

  it("takes one activation per hidden layer", function()
    local net = pk.network{ sizes = {2, 3, 3, 1}, activation = {"sin", "relu"}, seed = 2 }
    assert.are.same({"sin", "relu"}, net:activations())
    local X = pk.randn(3, 2, 1)
    local theta = column(net:params())
    local F = net:forward(X)
    for i = 1, 3 do
      local x = X:totable()[i]
      -- layer 1 sin, layer 2 relu: compute by hand
      local a1, off = {}, 0
      for r = 1, 3 do
        local s = 0
        for c = 1, 2 do s = s + theta[(r - 1) * 2 + c] * x[c] end
        a1[r] = math.sin(s / math.sqrt(2) + 0.1 * theta[6 + r])
      end
      off = 9
      local a2 = {}
      for r = 1, 3 do
        local s = 0
        for c = 1, 3 do s = s + theta[off + (r - 1) * 3 + c] * a1[c] end
        a2[r] = math.max(0, s / math.sqrt(3) + 0.1 * theta[off + 9 + r])
      end
      off = 21
      local s = 0
      for c = 1, 3 do s = s + theta[off + c] * a2[c] end
      local f = s / math.sqrt(3) + 0.1 * theta[off + 4]
      assert.is_true(math.abs(f - F:get(i, 1)) < 1e-14)
    end
  end)

  it("initializes from the seed: N(0,1) for ntk, N(0, sigma^2/fan_in) for standard", function()
    local a = pk.network{ sizes = {100, 200, 1}, seed = 3 }
    local b = pk.network{ sizes = {100, 200, 1}, seed = 3 }
    local c = pk.network{ sizes = {100, 200, 1}, seed = 4 }
    assert.are.equal(0, (a:params() - b:params()):max_abs())
    assert.is_true((a:params() - c:params()):max_abs() > 0)
    local p = a:params()
    local n = p:rows()
    local mean = p:sum() / n
    local var = p:hadamard(p):sum() / n - mean * mean
    -- 20401 draws: the variance's standard error is ~0.01
    assert.is_true(math.abs(var - 1) < 0.05)
    local s = pk.network{ sizes = {100, 200, 1}, parameterization = "standard", sigma_w = 2, seed = 3 }
    local W1 = s:params():slice(1, 20000)
    local v1 = W1:hadamard(W1):sum() / 20000
    assert.is_true(math.abs(v1 / (4 / 100) - 1) < 0.05)
  end)

  it("sets, clones and keeps parameters independent", function()
    local net = pk.network{ sizes = {2, 3, 1}, seed = 1 }
    local c = net:clone()
    local p = net:params()
    c:set_params(2 * p)
    assert.are.equal(0, (net:params() - p):max_abs())
    assert.are.equal(0, (c:params() - 2 * p):max_abs())
    H.raises("expected 13 parameters, got 12", net.set_params, net, pk.zeros(12, 1))
    H.raises("NaN", net.set_params, net, pk.matrix(p):hadamard(pk.zeros(13, 1)) * (0 / 0))
  end)

  it("saves and loads bit for bit", function()
    local net = pk.network{ sizes = {3, 6, 2}, activation = {"gelu"}, parameterization = "standard", seed = 8 }
    local p = H.tmpname(".pk")
    assert.is_true(net:save(p))
    local back = pk.load(p)
    assert.are.equal(tostring(net), tostring(back))
    assert.are.equal(0, (back:params() - net:params()):max_abs())
    local X = pk.randn(5, 3, 1)
    assert.are.equal(0, (back:forward(X) - net:forward(X)):max_abs())
    -- a network file is not a matrix: the tag decides
    H.write_bytes(p, H.read_bytes(p):sub(1, 40))
    H.raises("length check failed", pk.load, p)
    os.remove(p)
  end)
end)

describe("leaky_relu", function()
  it("takes a slope per hidden layer, or one for all (0.01 by default)", function()
    local net = pk.network{ sizes = {3, 4, 5, 2}, activation = {"leaky_relu", "leaky_relu"},
                            slope = {0.2, -0.5}, parameterization = "standard", seed = 9 }
    assert.are.same({"leaky_relu", "leaky_relu"}, net:activations())
    assert.truthy(tostring(net):find("3 -> 4 leaky_relu(0.2) -> 5 leaky_relu(-0.5) -> 2", 1, true))
    local X = pk.randn(6, 3, 2)
    local theta, F = column(net:params()), net:forward(X)
    for i = 1, 6 do
      -- the standard parameterization: z = W a + b, by hand
      local a, off, slopes = X:totable()[i], 0, {0.2, -0.5}
      for l, d in ipairs{ {3, 4}, {4, 5}, {5, 2} } do
        local z = {}
        for r = 1, d[2] do
          local s = theta[off + d[1] * d[2] + r]
          for c = 1, d[1] do s = s + theta[off + (r - 1) * d[1] + c] * a[c] end
          z[r] = (l == 3 or s > 0) and s or slopes[l] * s
        end
        off, a = off + d[1] * d[2] + d[2], z
      end
      for k = 1, 2 do assert.is_true(math.abs(a[k] - F:get(i, k)) < 1e-14) end
    end
    local one = pk.network{ sizes = {2, 3, 3, 1}, activation = {"leaky_relu", "tanh"}, slope = 0.3 }
    assert.truthy(tostring(one):find("2 -> 3 leaky_relu(0.3) -> 3 tanh -> 1", 1, true))
    assert.truthy(tostring(pk.network{ sizes = {2, 3, 1}, activation = "leaky_relu" }):find("leaky_relu(0.01)", 1, true))
    -- a slope for a layer of another activation changes nothing
    local a = pk.network{ sizes = {2, 3, 1}, activation = "tanh", slope = 0.7, seed = 1 }
    local b = pk.network{ sizes = {2, 3, 1}, activation = "tanh", seed = 1 }
    assert.are.equal(tostring(a), tostring(b))
    H.raises("network: 'slope' lists 1 numbers, the network has 2 hidden layers", pk.network,
      { sizes = {2, 3, 3, 1}, slope = {0.1} })
    H.raises("network: slope 2 must be a number", pk.network, { sizes = {2, 3, 3, 1}, slope = {0.1, "x"} })
    H.raises("network: 'slope' must be a number or a list of numbers", pk.network, { sizes = {2, 1}, slope = "x" })
    H.raises("network: the slope of hidden layer 1 must be finite", pk.network,
      { sizes = {2, 3, 1}, activation = "leaky_relu", slope = 0 / 0 })
  end)

  it("has derivative slope at 0 (relu: 0), as training takes it", function()
    -- x = 0 and b = 0 put every first-layer unit exactly at its kink
    for _, c in ipairs{ { "relu", 0 }, { "leaky_relu", 0.25 } } do
      local net = pk.network{ sizes = {2, 3, 1}, activation = c[1], slope = 0.25,
                              parameterization = "standard", sigma_b = 0, seed = 3 }
      local J = net:jacobian(pk.zeros(1, 2))
      local theta = column(net:params())
      -- d f / d b1_j = W2_j phi'(0); W2 starts at 6 + 3 + 1
      for j = 1, 3 do assert.are.equal(c[2] * theta[9 + j], J:get(1, 6 + j)) end
      local before = net:params()
      net:train{ X = pk.zeros(1, 2), Y = pk.ones(1, 1), lr = 1, steps = 1 }
      local moved = (before - net:params()):slice(7, 9)
      if c[2] == 0 then assert.are.equal(0, moved:max_abs()) else assert.is_true(moved:max_abs() > 0) end
    end
  end)
end)

describe("network files", function()
  it("read version 1 files of earlier builds; dense networks are still written in that version", function()
    -- written by the build before layers (sizes {3, 5, 4, 2}, gelu, relu, standard)
    local old = pk.load("spec/data/network-v1.pk")
    local net = pk.network{ sizes = {3, 5, 4, 2}, activation = {"gelu", "relu"}, parameterization = "standard",
                            sigma_w = 1.5, sigma_b = 0.3, seed = 4 }
    assert.are.equal(tostring(net), tostring(old))
    assert.are.equal(0, (old:params() - net:params()):max_abs())
    local p = H.tmpname(".pk")
    assert.is_true(net:save(p))
    assert.are.equal(H.read_bytes("spec/data/network-v1.pk"), H.read_bytes(p))
    os.remove(p)
  end)

  it("store slopes in version 2, round trip, and refuse what they do not know", function()
    local net = pk.network{ sizes = {3, 4, 4, 2}, activation = {"leaky_relu", "tanh"}, slope = 0.125, seed = 2 }
    local p = H.tmpname(".pk")
    assert.is_true(net:save(p))
    local bytes = H.read_bytes(p)
    assert.are.equal(2, string.unpack("<I4", bytes, 9))
    local back = pk.load(p)
    assert.are.equal(tostring(net), tostring(back))
    local X = pk.randn(5, 3, 1)
    assert.are.equal(0, (back:forward(X) - net:forward(X)):max_abs())
    assert.are.equal(0, (back:params() - net:params()):max_abs())
    -- a later format version is refused by version
    H.write_bytes(p, bytes:sub(1, 8) .. string.pack("<I4", 3) .. bytes:sub(13))
    H.raises("version check failed: format version 3, this build reads 1 to 2", pk.load, p)
    os.remove(p)
  end)

  it("hold leaky_relu networks inside trajectories and machines, with or without loss weights", function()
    local X, Y = pk.randn(6, 2, 1), pk.randn(6, 1, 2)
    for _, wts in ipairs{ false, true } do
      local net = pk.network{ sizes = {2, 5, 1}, activation = "leaky_relu", slope = 0.3, seed = 4 }
      local W = wts and pk.matrix{1, 0, 2, 1, 1, 0.5} or nil
      local traj = net:train{ X = X, Y = Y, lr = 0.1, steps = 4, weights = W, record = true, progress = false }
      local p = H.tmpname(".pk")
      assert.is_true(traj:save(p, { data = true }))
      assert.are.equal(2, string.unpack("<I4", H.read_bytes(p), 9))
      local back = pk.load(p)
      assert.are.equal(tostring(net), tostring(back:network(4)))
      assert.are.equal(0, (back:weights(4) - traj:weights(4)):max_abs())
      local _, _, bw = back:data()
      assert.are.equal(0, (bw - (W or pk.ones(6, 1))):max_abs())
      -- replaying from the file reproduces the run bit for bit
      assert.are.equal(0, (back:network(4):params() - net:params()):max_abs())
      local km = pk.machine.from_trajectory(traj, { nodes = 2 })
      km:predict(X)
      assert.is_true(km:save(p))
      local km2 = pk.load(p)
      assert.are.equal(0, (km2:predict(X) - km:predict(X)):max_abs())
      os.remove(p)
    end
  end)
end)

describe("net:jacobian", function()
  -- Central differences: truncation h^2 |f'''| / 6 ~ 1e-11 at h = 1e-5 and
  -- rounding ~ 1e-16 |f| / h ~ 1e-11; 1e-7 leaves room for O(1) third
  -- derivatives of deeper compositions.
  local h, tol = 1e-5, 1e-7
  for _, param in ipairs{ "ntk", "standard" } do
    for _, act in ipairs(ACTS) do
      it(("equals central differences (%s, %s, 2 outputs)"):format(act, param), function()
        local net = pk.network{ sizes = {3, 5, 4, 2}, activation = act, parameterization = param, seed = 11 }
        local X = pk.randn(3, 3, 12)
        local J = net:jacobian(X)
        assert.are.same({6, net:nparams()}, {J:shape()})
        local theta = net:params()
        local probe = net:clone()
        local worst = 0
        for p = 1, net:nparams() do
          local tp, tm = theta:copy(), theta:copy()
          tp:set(p, 1, theta:get(p, 1) + h)
          tm:set(p, 1, theta:get(p, 1) - h)
          local Fp = probe:set_params(tp):forward(X)
          local Fm = probe:set_params(tm):forward(X)
          for i = 1, 3 do for k = 1, 2 do
            local fd = (Fp:get(i, k) - Fm:get(i, k)) / (2 * h)
            worst = math.max(worst, math.abs(fd - J:get((i - 1) * 2 + k, p)))
          end end
        end
        assert.is_true(worst < tol, ("%s %s: %g"):format(act, param, worst))
      end)
    end
  end
end)

describe("losses and their gradients", function()
  local X = pk.randn(7, 3, 21)
  local cases = {
    { loss = "mse", K = 2, Y = pk.randn(7, 2, 22) },
    { loss = "logistic", K = 1, Y = pk.matrix{0, 1, 1, 0, 1, 0, 0} },
    { loss = "softmax", K = 3, Y = pk.matrix{1, 3, 2, 2, 1, 3, 3} },
    { loss = "softmax", K = 3, Y = pk.matrix{{1, 0, 0}, {0, 0, 1}, {0, 1, 0}, {0, 1, 0}, {1, 0, 0}, {0, 0, 1}, {0.5, 0, 0.5}} },
  }
  for ci, c in ipairs(cases) do
    for _, act in ipairs{ "tanh", "softplus", "sin", "leaky_relu" } do
      it(("one GD step moves by lr x the finite-difference gradient (%s #%d, %s)"):format(c.loss, ci, act), function()
        local net = pk.network{ sizes = {3, 6, c.K}, activation = act, seed = 30 + ci }
        local theta0 = net:params()
        local lr = 0.5
        local losses = net:train{ X = X, Y = c.Y, loss = c.loss, lr = lr, steps = 1 }
        assert.is_true(math.abs(losses[1] - pk.network{ sizes = {3, 6, c.K}, activation = act, seed = 30 + ci }:loss(X, c.Y, c.loss)) < 1e-15)
        local grad = (theta0 - net:params()) / lr
        local probe = net:clone()
        local h, worst = 1e-6, 0
        for p = 1, theta0:rows() do
          local tp, tm = theta0:copy(), theta0:copy()
          tp:set(p, 1, theta0:get(p, 1) + h)
          tm:set(p, 1, theta0:get(p, 1) - h)
          local fd = (probe:set_params(tp):loss(X, c.Y, c.loss) - probe:set_params(tm):loss(X, c.Y, c.loss)) / (2 * h)
          worst = math.max(worst, math.abs(fd - grad:get(p, 1)))
        end
        -- the loss is O(1): rounding in the difference quotient ~1e-10
        assert.is_true(worst < 1e-8, c.loss .. " " .. worst)
      end)
    end
  end

  it("evaluates the documented formulas", function()
    local net = pk.network{ sizes = {3, 4, 2}, seed = 1 }
    local F = net:forward(X)
    local Y = pk.randn(7, 2, 3)
    local s = 0
    for i = 1, 7 do for k = 1, 2 do s = s + 0.5 * (F:get(i, k) - Y:get(i, k)) ^ 2 end end
    assert.is_true(math.abs(net:loss(X, Y, "mse") - s / 7) < 1e-15)
    local labels = pk.matrix{1, 2, 2, 1, 1, 2, 1}
    s = 0
    for i = 1, 7 do
      local lse = math.log(math.exp(F:get(i, 1)) + math.exp(F:get(i, 2)))
      s = s + lse - F:get(i, labels:get(i, 1))
    end
    assert.is_true(math.abs(net:loss(X, labels, "softmax") - s / 7) < 1e-14)
    local n1 = pk.network{ sizes = {3, 4, 1}, seed = 1 }
    local f1 = n1:forward(X)
    local y = pk.matrix{1, 0, 1, 1, 0, 0, 1}
    s = 0
    for i = 1, 7 do
      local p = 1 / (1 + math.exp(-f1:get(i, 1)))
      s = s - (y:get(i, 1) * math.log(p) + (1 - y:get(i, 1)) * math.log(1 - p))
    end
    assert.is_true(math.abs(n1:loss(X, y, "logistic") - s / 7) < 1e-14)
  end)
end)

-- a tiny dense solver for the closed forms
local function solve(A, b)
  local n = #A
  local M = {}
  for i = 1, n do M[i] = { table.unpack(A[i]) }; M[i][n + 1] = b[i] end
  for c = 1, n do
    local p = c
    for r = c + 1, n do if math.abs(M[r][c]) > math.abs(M[p][c]) then p = r end end
    M[c], M[p] = M[p], M[c]
    for r = c + 1, n do
      local f = M[r][c] / M[c][c]
      for k = c, n + 1 do M[r][k] = M[r][k] - f * M[c][k] end
    end
  end
  local x = {}
  for r = n, 1, -1 do
    local s = M[r][n + 1]
    for k = r + 1, n do s = s - M[r][k] * x[k] end
    x[r] = s / M[r][r]
  end
  return x
end

describe("net:train", function()
  it("on a linear model follows the closed form of GD on least squares", function()
    -- f = W x + b (standard, identity, one layer); with Xa = [X 1],
    -- H = Xa^T Xa / m: theta_T = theta* + (I - lr H)^T (theta_0 - theta*)
    local m, d, T, lr = 20, 3, 37, 0.1
    local X, Y = pk.randn(m, d, 1), pk.randn(m, 1, 2)
    local net = pk.network{ sizes = {d, 1}, activation = {}, parameterization = "standard", seed = 3 }
    local theta0 = net:params()
    net:train{ X = X, Y = Y, lr = lr, steps = T }
    local Xa = pk.ones(m, d + 1)
    for i = 1, m do for j = 1, d do Xa:set(i, j, X:get(i, j)) end end
    local Hm = (Xa:t() * Xa) / m
    local rhs = (Xa:t() * Y) / m
    local star = pk.matrix(solve(Hm:totable(), column(rhs)))
    local step = pk.eye(d + 1) - lr * Hm
    local Pw, base, e = pk.eye(d + 1), step, T
    while e > 0 do
      if e % 2 == 1 then Pw = Pw * base end
      base = base * base
      e = e // 2
    end
    local expect = star + Pw * (theta0 - star)
    assert.is_true(H.max_rel(net:params(), expect) < 1e-12)
  end)

  it("learns sin on [-pi, pi] with a tanh network", function()
    local n = 64
    local X, Y = pk.zeros(n, 1), pk.zeros(n, 1)
    for i = 1, n do
      local x = -math.pi + 2 * math.pi * (i - 1) / (n - 1)
      X:set(i, 1, x)
      Y:set(i, 1, math.sin(x))
    end
    local net = pk.network{ sizes = {1, 32, 32, 1}, activation = "tanh", sigma_b = 1, seed = 7 }
    local losses = net:train{ X = X, Y = Y, lr = 0.5, steps = 3000, progress = false }
    -- 1/2 mean squared error below 1e-3: an rms error under 0.045 on [-1, 1]
    assert.is_true(losses[#losses] < 1e-3, "final loss " .. losses[#losses])
    assert.is_true(net:loss(X, Y) < 1e-3)
  end)

  it("is reproducible bit for bit with sgd and the same seed", function()
    local X, Y = pk.randn(50, 3, 1), pk.randn(50, 2, 2)
    local function run(seed)
      local net = pk.network{ sizes = {3, 8, 2}, seed = 1 }
      local l = net:train{ X = X, Y = Y, optimizer = "sgd", batch_size = 7, steps = 30, lr = 0.1, seed = seed }
      return net:params(), l
    end
    local p1, l1 = run(5)
    local p2, l2 = run(5)
    local p3 = run(6)
    assert.are.equal(0, (p1 - p2):max_abs())
    assert.are.same(l1, l2)
    assert.is_true((p1 - p3):max_abs() > 0)
  end)

  it("with sgd over the whole set equals gd up to summation order", function()
    local X, Y = pk.randn(30, 3, 1), pk.randn(30, 1, 2)
    local a = pk.network{ sizes = {3, 8, 1}, seed = 1 }
    local b = a:clone()
    a:train{ X = X, Y = Y, steps = 20, lr = 0.1 }
    b:train{ X = X, Y = Y, optimizer = "sgd", batch_size = 30, steps = 20, lr = 0.1, seed = 9 }
    assert.is_true(H.max_rel(a:params(), b:params()) < 1e-12)
  end)

  it("counts epochs, calls lr(step) and on_step, and stops when on_step says false", function()
    local X, Y = pk.randn(25, 2, 1), pk.randn(25, 1, 2)
    local net = pk.network{ sizes = {2, 4, 1}, seed = 1 }
    assert.are.equal(6, #net:train{ X = X, Y = Y, optimizer = "sgd", batch_size = 10, epochs = 2 })
    local seen, steps = {}, {}
    net:train{ X = X, Y = Y, steps = 4, lr = function(s) seen[#seen + 1] = s; return 0.1 / s end,
               on_step = function(s, loss) steps[#steps + 1] = s; assert(loss > 0) end }
    assert.are.same({1, 2, 3, 4}, seen)
    assert.are.same({1, 2, 3, 4}, steps)
    local l = net:train{ X = X, Y = Y, steps = 10, on_step = function(s) return s < 3 end }
    assert.are.equal(3, #l)
    H.raises("boom", net.train, net, { X = X, Y = Y, steps = 3, on_step = function() error("boom") end })
    H.raises("lr function returned nil", net.train, net, { X = X, Y = Y, steps = 3, lr = function() end })
    H.raises("learning rate of step 2 is -1", net.train, net, { X = X, Y = Y, steps = 3, lr = function(s) return s == 2 and -1 or 0.1 end })
  end)

  it("stops on divergence naming the step and the loss, keeping finite weights", function()
    local X, Y = pk.randn(20, 2, 1), 100 * pk.randn(20, 1, 2)
    local net = pk.network{ sizes = {2, 16, 1}, activation = "identity", seed = 1 }
    local last
    local err = H.raises("diverged at step", net.train, net, { X = X, Y = Y, lr = 50, steps = 1000,
      on_step = function() last = net:params() end })
    assert.truthy(err:find("loss", 1, true))
    local p = net:params()
    assert.is_true(p:max_abs() < math.huge)
    assert.are.equal(0, (p - last):max_abs())
  end)
end)

describe("bad input to networks", function()
  local net = pk.network{ sizes = {3, 4, 2}, seed = 1 }
  local X, Y = pk.randn(5, 3, 1), pk.randn(5, 2, 2)
  it("is refused with clear errors", function()
    H.raises("X has 2 columns, the network takes 3 inputs", net.forward, net, pk.zeros(5, 2))
    H.raises("X has 4 columns, the network takes 3 inputs", net.jacobian, net, pk.zeros(5, 4))
    H.raises("Y has 4 rows, X has 5", net.train, net, { X = X, Y = pk.zeros(4, 2) })
    H.raises("Y has 3 columns, the network has 2 outputs", net.train, net, { X = X, Y = pk.zeros(5, 3) })
    local c3 = pk.network{ sizes = {3, 4, 3}, seed = 1 }
    H.raises("label 4 in row 2 is outside 1..3", c3.train, c3, { X = X, Y = pk.matrix{1, 4, 1, 1, 2}, loss = "softmax" })
    H.raises("label 1.5 in row 1", c3.train, c3, { X = X, Y = pk.matrix{1.5, 2, 1, 1, 2}, loss = "softmax" })
    local c1 = pk.network{ sizes = {3, 4, 1}, seed = 1 }
    H.raises("target 2 in row 3 is not 0 or 1", c1.train, c1, { X = X, Y = pk.matrix{0, 1, 2, 0, 1}, loss = "logistic" })
    H.raises("unknown activation 'swish' (valid: identity, relu, tanh, sigmoid, softplus, gelu, erf, sin, leaky_relu)",
      pk.network, { sizes = {2, 2, 1}, activation = "swish" })
    H.raises("unknown loss 'hinge' (valid: mse, logistic, softmax)", net.train, net, { X = X, Y = Y, loss = "hinge" })
    H.raises("unknown optimizer 'lbfgs'", net.train, net, { X = X, Y = Y, optimizer = "lbfgs" })
    H.raises("unknown parameterization 'mup' (valid: ntk, standard)", pk.network, { sizes = {2, 1}, parameterization = "mup" })
    H.raises("lr must be positive", net.train, net, { X = X, Y = Y, lr = 0 })
    H.raises("lr must be positive", net.train, net, { X = X, Y = Y, lr = -1 })
    H.raises("steps must be >= 1", net.train, net, { X = X, Y = Y, steps = 0 })
    H.raises("batch_size must be >= 1", net.train, net, { X = X, Y = Y, optimizer = "sgd", batch_size = 0 })
    H.raises("no training data", net.train, net, { X = pk.zeros(0, 3), Y = pk.zeros(0, 2) })
    H.raises("expected 26 parameters, got 3", net.set_params, net, pk.zeros(3, 1))
    H.raises("widths must be positive", pk.network, { sizes = {2, 0, 1} })
    H.raises("widths must be positive", pk.network, { sizes = {2, -3, 1} })
    H.raises("at least 2 entries", pk.network, { sizes = {2} })
    H.raises("unknown option 'size'", pk.network, { size = {2, 1} })
    H.raises("unknown option 'rate'", net.train, net, { X = X, Y = Y, rate = 1 })
    H.raises("train: option 'X' (the inputs) is required", net.train, net, { Y = Y })
    H.raises("gd is full-batch", net.train, net, { X = X, Y = Y, batch_size = 2 })
    H.raises("NaN", net.train, net, { X = X * (0 / 0), Y = Y })
    H.raises("2 hidden layers", pk.network, { sizes = {2, 3, 3, 1}, activation = {"tanh"} })
    H.raises("pathkernel.Network expected", net.forward, X, X)
  end)
end)
