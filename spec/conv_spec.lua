-- Convolutional networks: the forward pass against a convolution written
-- here with loops, Jacobians against central differences, the structured
-- tangent Gram against J J^T for every layer kind, stride, padding,
-- pooling and output mode, training against the updates written out, the
-- exact decomposition, files, the dense shorthand, and bad shapes.
local H = require "helpers"
local pk = H.pk

local function column(M)
  local t = {}
  for i = 1, M:rows() do t[i] = M:get(i, 1) end
  return t
end

local PHI = {
  tanh = function(z) local e = math.exp(2 * z); return (e - 1) / (e + 1) end,
  relu = function(z) return z > 0 and z or 0 end,
  identity = function(z) return z end,
  sin = math.sin,
}

-- the network by loops over channels, positions and the window, from the
-- documented layout (Conv2d's weight C_out x C_in x kh x kw, then b);
-- layers as pk.network takes them, one activation for all
local function lua_forward(input, layers, act, param, sw, sb, theta, x)
  local C, Hh, W = input[1], input[2], input[3]
  local a, off = x, 0
  local function pair(v, d) if v == nil then return d, d end
    if type(v) == "table" then return v[1], v[2] end return v, v end
  for l, spec in ipairs(layers) do
    local z = {}
    if spec[1] == "conv" then
      local Co = spec.channels
      local kh, kw = pair(spec.size)
      local sy, sx = pair(spec.stride, 1)
      local py, px = pair(spec.padding, 0)
      local Ho, Wo = (Hh + 2 * py - kh) // sy + 1, (W + 2 * px - kw) // sx + 1
      local fan = C * kh * kw
      local cw = param == "ntk" and sw / math.sqrt(fan) or 1
      local cb = param == "ntk" and sb or 1
      for co = 0, Co - 1 do
        for oy = 0, Ho - 1 do
          for ox = 0, Wo - 1 do
            local s = 0
            for ci = 0, C - 1 do
              for u = 0, kh - 1 do
                for v = 0, kw - 1 do
                  local y, xx = oy * sy + u - py, ox * sx + v - px
                  if y >= 0 and y < Hh and xx >= 0 and xx < W then
                    s = s + theta[off + ((co * C + ci) * kh + u) * kw + v + 1] * a[(ci * Hh + y) * W + xx + 1]
                  end
                end
              end
            end
            z[(co * Ho + oy) * Wo + ox + 1] = cw * s + cb * theta[off + Co * fan + co + 1]
          end
        end
      end
      off = off + Co * fan + Co
      C, Hh, W = Co, Ho, Wo
    elseif spec[1] == "avgpool" then
      local kh, kw = pair(spec.size)
      local Ho, Wo = Hh // kh, W // kw
      for c = 0, C - 1 do
        for oy = 0, Ho - 1 do
          for ox = 0, Wo - 1 do
            local s = 0
            for u = 0, kh - 1 do
              for v = 0, kw - 1 do s = s + a[(c * Hh + oy * kh + u) * W + ox * kw + v + 1] end
            end
            z[(c * Ho + oy) * Wo + ox + 1] = s / (kh * kw)
          end
        end
      end
      Hh, W = Ho, Wo
    else
      local din, dout = C * Hh * W, spec[2]
      local cw = param == "ntk" and sw / math.sqrt(din) or 1
      local cb = param == "ntk" and sb or 1
      for i = 1, dout do
        local s = 0
        for j = 1, din do s = s + theta[off + (i - 1) * din + j] * a[j] end
        z[i] = cw * s + cb * theta[off + din * dout + i]
      end
      off = off + din * dout + dout
      C, Hh, W = dout, 1, 1
    end
    if spec[1] ~= "avgpool" and l < #layers then
      for i = 1, #z do z[i] = PHI[act](z[i]) end
    end
    a = z
  end
  return a
end

-- the architectures the specs run: every layer kind, strides, padding,
-- rectangular kernels, pooling, several outputs
local NETS = {
  { name = "conv pad 1, conv stride 2, dense", input = {1, 6, 6},
    layers = { {"conv", channels = 3, size = 3, padding = 1}, {"conv", channels = 4, size = 3, stride = 2},
               {"dense", 2} } },
  { name = "rectangular kernel, stride and padding, avgpool", input = {2, 7, 5},
    layers = { {"conv", channels = 3, size = {3, 2}, stride = {2, 1}, padding = {1, 0}},
               {"avgpool", size = 2}, {"dense", 3} } },
  { name = "conv as the last layer", input = {2, 4, 4},
    layers = { {"conv", channels = 2, size = 2, stride = 2}, {"conv", channels = 3, size = 2} } },
  { name = "many channels on few positions (products by pairs of positions)", input = {3, 5, 5},
    layers = { {"conv", channels = 12, size = 3, stride = 2, padding = 1}, {"conv", channels = 5, size = 2},
               {"dense", 3} } },
  { name = "avgpool first, 1x1 kernel, avgpool last", input = {3, 4, 6},
    layers = { {"avgpool", size = {2, 3}}, {"conv", channels = 2, size = 1}, {"dense", 4},
               {"conv", channels = 2, size = 1}, {"avgpool", size = 1} } },
}

local function build(c, act, param, seed)
  return pk.network{ input = c.input, layers = c.layers, activation = act, parameterization = param,
                     sigma_w = 1.3, sigma_b = 0.4, seed = seed or 5 }
end

local function inputs(c, n, seed)
  return pk.randn(n, c.input[1] * c.input[2] * c.input[3], seed)
end

describe("conv networks", function()
  for _, c in ipairs(NETS) do
    for _, param in ipairs{ "ntk", "standard" } do
      it(("forward equals a convolution by loops (%s, %s)"):format(c.name, param), function()
        local net = build(c, "tanh", param)
        local X = inputs(c, 3, 7)
        local F, theta = net:forward(X), column(net:params())
        for i = 1, 3 do
          local f = lua_forward(c.input, c.layers, "tanh", param, 1.3, 0.4, theta, X:totable()[i])
          assert.are.equal(F:cols(), #f)
          for k = 1, #f do
            -- a handful of roundings per layer (sums of at most a few dozen terms)
            assert.is_true(math.abs(f[k] - F:get(i, k)) < 1e-13, ("%d %d: %g vs %g"):format(i, k, f[k], F:get(i, k)))
          end
        end
      end)
    end

    it(("jacobian equals central differences (%s)"):format(c.name), function()
      local net = build(c, "sin", "ntk", 11)
      local X = inputs(c, 2, 12)
      local J = net:jacobian(X)
      local K = net:forward(X):cols()
      assert.are.same({2 * K, net:nparams()}, {J:shape()})
      local theta, probe = net:params(), net:clone()
      -- truncation h^2 f''' / 6 ~ 1e-11, rounding 1e-16 / h ~ 1e-11
      local h, worst = 1e-5, 0
      for p = 1, net:nparams() do
        local tp, tm = theta:copy(), theta:copy()
        tp:set(p, 1, theta:get(p, 1) + h)
        tm:set(p, 1, theta:get(p, 1) - h)
        local Fp, Fm = probe:set_params(tp):forward(X), probe:set_params(tm):forward(X)
        for i = 1, 2 do
          for k = 1, K do
            local fd = (Fp:get(i, k) - Fm:get(i, k)) / (2 * h)
            worst = math.max(worst, math.abs(fd - J:get((i - 1) * K + k, p)))
          end
        end
      end
      assert.is_true(worst < 1e-7, c.name .. ": " .. worst)
    end)
  end
end)

-- J1 J2^T in an output mode
local function reference(net, X1, X2, mode)
  local K = net:forward(X1:slice(1, 1)):cols()
  local JJ = net:jacobian(X1) * net:jacobian(X2):t()
  if mode == "block" then return JJ end
  local n1, n2 = X1:rows(), X2:rows()
  local R = mode == "trace" and pk.zeros(n1, n2) or pk.zeros(n1 * K, n2)
  for i = 1, n1 do for j = 1, n2 do for k = 1, K do
    local v = JJ:get((i - 1) * K + k, (j - 1) * K + k)
    if mode == "trace" then R:set(i, j, R:get(i, j) + v) else R:set((i - 1) * K + k, j, v) end
  end end end
  return R
end

describe("the tangent kernel of conv networks", function()
  for _, c in ipairs(NETS) do
    for _, act in ipairs{ "tanh", "relu" } do
      it(("equals J1 J2^T to 1e-12 in every mode (%s, %s)"):format(c.name, act), function()
        local net = build(c, act, "ntk", 3)
        local X1, X2 = inputs(c, 6, 1), inputs(c, 4, 2)
        for _, mode in ipairs{ "block", "trace", "diagonal" } do
          local Kt = pk.kernel.tangent(net, { outputs = mode })
          assert.is_true(H.rel_err(Kt:gram(X1, X2), reference(net, X1, X2, mode)) < 1e-12, mode)
          local G = Kt:gram(X1)
          assert.is_true(H.rel_err(G, reference(net, X1, X1, mode)) < 1e-12, mode)
          -- the diagonal by itself
          local D, K = Kt:diag(X1), net:forward(X1:slice(1, 1)):cols()
          for r = 1, D:rows() do
            local col = mode == "diagonal" and (r - 1) // K + 1 or r
            assert.is_true(math.abs(D:get(r, 1) - G:get(r, col)) <= 1e-13 * math.abs(G:get(r, col)), mode)
          end
          -- tiles as small as one row change nothing but the order of sums
          local tiled = pk.kernel.tangent(net, { outputs = mode, memory = 150000 })
          assert.is_true(H.max_rel(tiled:gram(X1, X2), Kt:gram(X1, X2)) < 1e-13, mode)
          assert.is_true(H.max_rel(tiled:gram(X1), G) < 1e-13, mode)
        end
      end)
    end
  end
end)

describe("training conv networks", function()
  local c = NETS[2]
  it("takes the gradient steps written out from the Jacobian (gd, mse)", function()
    local net = build(c, "tanh", "ntk", 9)
    local X, Y = inputs(c, 5, 3), pk.randn(5, 3, 4)
    local lr, ref = 0.1, net:clone()
    net:train{ X = X, Y = Y, lr = lr, steps = 3, progress = false }
    for _ = 1, 3 do
      -- the mean of 1/2 |f - y|^2: gradient (1/n) J^T (f - y), rows of f - y stacked
      local R = ref:forward(X) - Y
      local r = pk.zeros(15, 1)
      for i = 1, 5 do for k = 1, 3 do r:set((i - 1) * 3 + k, 1, R:get(i, k)) end end
      ref:set_params(ref:params() - (lr / 5) * (ref:jacobian(X):t() * r))
    end
    assert.is_true(H.max_rel(net:params(), ref:params()) < 1e-13)
  end)

  it("trains with every optimizer and replays its run bit for bit", function()
    local X, Y = inputs(c, 8, 5), pk.matrix{1, 2, 3, 1, 2, 3, 1, 2}
    for _, o in ipairs{ "gd", "sgd", "momentum", "nesterov", "adam", "adamw" } do
      local net = build(c, "tanh", "ntk", 2)
      local t = { X = X, Y = Y, loss = "softmax", optimizer = o, lr = 0.05, steps = 6, progress = false,
                  record = { every = 4 }, seed = 3 }
      if o ~= "gd" then t.batch_size = 3 end
      if o == "nesterov" then t.momentum = 0.5 end
      local traj = net:train(t)
      for _, v in ipairs(traj:losses()) do assert.is_true(v == v and v < math.huge, o) end
      assert.are.equal(0, (traj:weights(6) - net:params()):max_abs(), o)
      -- step 5 comes from a replay between checkpoints 4 and 6
      local again = build(c, "tanh", "ntk", 2)
      t.steps, t.record = 5, nil
      again:train(t)
      assert.are.equal(0, (traj:weights(5) - again:params()):max_abs(), o)
    end
  end)
end)

describe("the kernel machine of conv networks", function()
  for i, c in ipairs(NETS) do
    it(("reproduces the network to 1e-10 (%s)"):format(c.name), function()
      local net = build(c, "tanh", "ntk", 4)
      local X, Xq = inputs(c, 10, 1), inputs(c, 3, 2)
      local K = net:forward(Xq):cols()
      local o = ({ "gd", "sgd", "momentum", "adam", "nesterov" })[i]
      local traj = net:train{ X = X, Y = pk.randn(10, K, 3), optimizer = o, lr = 0.05, steps = 8, seed = 1,
                              batch_size = o ~= "gd" and 4 or nil, weight_decay = i == 1 and 0.01 or 0,
                              record = true, progress = false }
      local km = pk.machine.from_trajectory(traj)
      local maxabs, maxrel = km:verify(Xq)
      assert.is_true(maxrel <= 1e-10, ("%s: %g"):format(o, maxrel))
      -- and the online machine of train{explain} agrees with it
      local net2 = build(c, "tanh", "ntk", 4)
      local _, km2 = net2:train{ X = X, Y = pk.randn(10, K, 3), optimizer = o, lr = 0.05, steps = 8, seed = 1,
                                 batch_size = o ~= "gd" and 4 or nil, weight_decay = i == 1 and 0.01 or 0,
                                 explain = Xq, progress = false }
      assert.is_true(H.max_rel(km2:predict(Xq), km:predict(Xq)) < 1e-12)
      -- the path kernel's diagonal is the sum of squared gradients along the run
      local kp = pk.kernel.path(traj, { rule = "gauss", nodes = 2 })
      local G = kp:gram(Xq)
      assert.is_true(H.max_rel(G, G:t()) == 0)
    end)
  end
end)

describe("conv networks with loss weights", function()
  it("decompose exactly, a weight-0 example contributing exactly 0", function()
    local c = NETS[1]
    local net = build(c, "tanh", "ntk", 2)
    local X, Xq = inputs(c, 6, 3), inputs(c, 2, 4)
    local W = pk.matrix{1, 0, 2, 0.5, 1, 1}
    local traj = net:train{ X = X, Y = pk.randn(6, 2, 5), weights = W, lr = 0.1, steps = 5, record = true,
                            progress = false, seed = 1 }
    local km = pk.machine.from_trajectory(traj)
    local _, maxrel = km:verify(Xq)
    assert.is_true(maxrel <= 1e-10, tostring(maxrel))
    local C = km:contributions(Xq)
    for k = 1, 2 do for q = 1, 2 do assert.are.equal(0, C[k]:get(q, 2)) end end
  end)
end)

describe("conv network objects", function()
  local c = NETS[2]
  it("save, load and clone bit for bit, in format version 2", function()
    local net = build(c, "relu", "standard", 6)
    local p = H.tmpname(".pk")
    assert.is_true(net:save(p))
    assert.are.equal(2, string.unpack("<I4", H.read_bytes(p), 9))
    local back = pk.load(p)
    assert.are.equal(tostring(net), tostring(back))
    local X = inputs(c, 4, 1)
    assert.are.equal(0, (back:forward(X) - net:forward(X)):max_abs())
    assert.are.equal(0, (net:clone():forward(X) - net:forward(X)):max_abs())
    os.remove(p)
  end)

  it("list their layers and shapes", function()
    local net = pk.network{ input = {1, 8, 8}, activation = "relu", seed = 1,
      layers = { {"conv", channels = 16, size = 3, padding = 1}, {"conv", channels = 32, size = 3, stride = 2},
                 {"avgpool", size = {3, 1}}, {"dense", 64}, {"dense", 10} } }
    assert.are.equal("pathkernel.Network 1x8x8 -> conv 16 3x3 pad 1 relu [16x8x8] -> conv 32 3x3 stride 2 relu "
      .. "[32x3x3] -> avgpool 3x1 [32x1x3] -> dense 64 relu -> dense 10 (11658 parameters, ntk parameterization)",
      tostring(net))
    assert.are.equal(16 * 9 + 16 + 32 * 16 * 9 + 32 + 96 * 64 + 64 + 64 * 10 + 10, net:nparams())
    assert.are.equal(11658, net:nparams())
    assert.are.same({1, 8, 8}, net:input())
    assert.are.same({64, 1024, 288, 96, 64, 10}, net:sizes())
    assert.are.same({"relu", "relu", "relu"}, net:activations())
    local L = net:layers()
    assert.are.same({ "conv", channels = 32, size = {3, 3}, stride = {2, 2}, padding = {0, 0},
                      activation = "relu", shape = {32, 3, 3} }, L[2])
    assert.are.same({ "avgpool", size = {3, 1}, shape = {32, 1, 3} }, L[3])
    assert.are.same({ "dense", 10, shape = {10, 1, 1} }, L[5])
  end)

  it("the dense shorthand: a list of dense layers is the sizes network, file for file", function()
    local a = pk.network{ sizes = {12, 5, 4, 2}, activation = {"gelu", "leaky_relu"}, slope = 0.3, seed = 8 }
    local b = pk.network{ input = {3, 2, 2}, layers = { {"dense", 5}, {"dense", 4}, {"dense", 2} },
                          activation = {"gelu", "leaky_relu"}, slope = 0.3, seed = 8 }
    assert.are.equal(tostring(a), tostring(b))
    assert.are.equal(0, (a:params() - b:params()):max_abs())
    local pa, pb = H.tmpname(".pk"), H.tmpname(".pk")
    a:save(pa)
    b:save(pb)
    assert.are.equal(H.read_bytes(pa), H.read_bytes(pb))
    local plain = pk.network{ sizes = {12, 5, 2}, seed = 8 }
    pk.network{ input = 12, layers = { {"dense", 5}, {"dense", 2} }, seed = 8 }:save(pb)
    plain:save(pa)
    assert.are.equal(H.read_bytes(pa), H.read_bytes(pb))
    os.remove(pa)
    os.remove(pb)
  end)

  it("refuse bad shapes and entries, naming the layer and the sizes", function()
    local function net(t) return function() return pk.network(t) end end
    H.raises("network: layer 2 (conv): a 3x3 kernel is larger than its input 2x2 padded by 0,0",
      net{ input = {1, 4, 4}, layers = { {"conv", channels = 2, size = 3}, {"conv", channels = 2, size = 3} } })
    H.raises("network: layer 1 (conv): 'stride' must be a positive integer or a pair {h, w} of them",
      net{ input = {1, 4, 4}, layers = { {"conv", channels = 2, size = 3, stride = 0} } })
    H.raises("network: layer 1 (avgpool): a 5x5 window is larger than its input 4x4",
      net{ input = {1, 4, 4}, layers = { {"avgpool", size = 5}, {"dense", 1} } })
    H.raises("network: layer 1 (conv): unknown entry 'kernel' (valid: channels, size, stride, padding)",
      net{ input = {1, 4, 4}, layers = { {"conv", channels = 2, kernel = 3} } })
    H.raises("network: layer 1 (conv): 'size' (the kernel) is required",
      net{ input = {1, 4, 4}, layers = { {"conv", channels = 2} } })
    H.raises("network: layer 2: unknown kind 'maxpool' (valid: conv, avgpool, dense)",
      net{ input = {1, 4, 4}, layers = { {"conv", channels = 2, size = 2}, {"maxpool", size = 2} } })
    H.raises("network: layer 1 (dense): its width {\"dense\", n} must be a positive integer",
      net{ input = {1, 4, 4}, layers = { {"dense", 0} } })
    H.raises("network: no dense or conv layer", net{ input = {1, 4, 4}, layers = { {"avgpool", size = 2} } })
    H.raises("network: 'input' must be {C, H, W}", net{ input = {1, 4}, layers = { {"dense", 1} } })
    H.raises("network: give 'sizes' or 'layers', not both", net{ sizes = {2, 1}, layers = { {"dense", 1} } })
    -- the options of the list form, each named
    H.raises("network: option 'layers' must be a list of layers", net{ input = 4, layers = "conv" })
    H.raises("network: 'input' is required with 'layers'", net{ layers = { {"dense", 1} } })
    H.raises("network: 'input' goes with 'layers'", net{ sizes = {2, 1}, input = 2 })
    H.raises("network: 'input' must be {C, H, W}", net{ input = {1, 4, 4.5}, layers = { {"dense", 1} } })
    H.raises("network: 'layers' is empty", net{ input = 4, layers = {} })
    H.raises("network: layer 1 (conv): 'padding' must be a non-negative integer or a pair {h, w} of them",
      net{ input = {1, 4, 4}, layers = { {"conv", channels = 2, size = 2, padding = {1, "1"}} } })
    H.raises("network: layer 1 (dense): unknown entry 'activation'",
      net{ input = 4, layers = { {"dense", 1, activation = "relu"} } })
    H.raises("network: 'slope' lists 2 numbers, the network has 1 activated layers (conv and dense, not the last)",
      net{ input = {1, 4, 4}, layers = { {"conv", channels = 2, size = 2}, {"dense", 1} }, slope = {0.1, 0.2} })
    H.raises("network: unknown option 'layer'", net{ input = 4, layer = { {"dense", 1} } })
    H.raises("network: 'activation' lists 1 names, the network has 2 activated layers (conv and dense, not the last)",
      net{ input = {1, 4, 4}, layers = { {"conv", channels = 2, size = 2}, {"avgpool", size = 1}, {"dense", 3},
        {"dense", 1} }, activation = {"tanh"} })
    local cnn = pk.network{ input = {1, 4, 4}, layers = { {"conv", channels = 2, size = 2}, {"dense", 1} } }
    H.raises("X has 15 columns, the network takes 16 inputs (1 x 4 x 4 images, channel-major)",
      cnn.forward, cnn, pk.zeros(2, 15))
  end)
end)

describe("conv networks under the exact rule", function()
  -- relu and leaky_relu conv nets: the kink search needs only that each
  -- layer is linear in its weights (layer.h), so the decomposition of a
  -- conv net is exact to rounding too, offline and online
  local ARCHS = {
    { input = {1, 5, 5}, layers = { {"conv", channels = 3, size = 3, padding = 1}, {"dense", 2} } },
    { input = {2, 6, 5}, layers = { {"conv", channels = 3, size = {3, 2}, stride = 2, padding = {1, 0}},
                                    {"avgpool", size = 2}, {"dense", 4}, {"dense", 2} } },
    { input = {1, 6, 6}, layers = { {"conv", channels = 4, size = 3}, {"conv", channels = 3, size = 2, stride = 2},
                                    {"dense", 3} } },
    { input = {1, 4, 4}, layers = { {"avgpool", size = 2}, {"conv", channels = 2, size = 2},
                                    {"conv", channels = 2, size = 1} } },
  }
  for i, a in ipairs(ARCHS) do
    for _, act in ipairs{ "relu", "leaky_relu" } do
      it(("reproduces a %s conv net to 1e-10 where the gauss rule cannot (%d)"):format(act, i), function()
        local d = a.input[1] * a.input[2] * a.input[3]
        local X, Xq = pk.randn(12, d, 10 + i), pk.randn(4, d, 20 + i)
        local opt = ({ "gd", "adam", "sgd", "momentum" })[i]
        local function run(explain)
          local net = pk.network{ input = a.input, layers = a.layers, activation = act, slope = 0.1, seed = i }
          local K = net:forward(Xq):cols()
          return net, net:train{ X = X, Y = pk.randn(12, K, 30 + i), optimizer = opt, lr = 0.1, steps = 15, seed = 1,
                            batch_size = opt == "sgd" and 5 or nil, record = not explain or nil,
                            explain = explain and Xq or nil, rule = "exact", progress = false }
        end
        local _, traj = run(false)
        local km = pk.machine.from_trajectory(traj, { rule = "exact" })
        local _, maxrel = km:verify(Xq)
        assert.is_true(maxrel <= 1e-10, ("%s %s: %g"):format(act, opt, maxrel))
        -- the run crosses kinks: a fixed rule misses them by far more
        local _, gauss = pk.machine.from_trajectory(traj, { rule = "gauss", nodes = 4 }):verify(Xq)
        assert.is_true(gauss > 1e-8, ("gauss %g"):format(gauss))
        -- the online machine agrees, and its certificate bounds its error
        local net2, _, km2 = run(true)
        assert.is_true(H.max_rel(km2:predict(Xq), km:predict(Xq)) < 1e-12)
        local C = km2:certificate(Xq)
        local E = km2:predict(Xq) - net2:forward(Xq)
        for q = 1, E:rows() do
          for k = 1, E:cols() do assert.is_true(math.abs(E:get(q, k)) <= C:get(q, k) * (1 + 1e-12) + 1e-300) end
        end
      end)
    end
  end
end)

describe("attribution on conv networks", function()
  -- pk.attribute goes through the layer seam (forward, backward, R-op), so
  -- a conv net's scores are checked as a dense net's are: against
  -- retraining, against identities between the methods, and against the
  -- dense network a whole-image kernel is
  local A = { input = {2, 5, 4}, layers = { {"conv", channels = 3, size = {3, 2}, stride = {2, 1}, padding = 1},
                                            {"avgpool", size = 2}, {"dense", 4}, {"dense", 2} } }
  local m, EPS = 8, 2.220446049250313e-16
  local X, Y, Xq = pk.randn(m, 40, 41), pk.randn(m, 2, 42), pk.randn(2, 40, 43)
  local function mk() return pk.network{ input = A.input, layers = A.layers, activation = "tanh", seed = 6 } end
  local function as_list(S) return type(S) == "table" and S or { S } end

  for _, o in ipairs{ { optimizer = "gd", lr = 0.2 }, { optimizer = "adam", lr = 0.02, weight_decay = 0.02 },
                      { optimizer = "sgd", lr = 0.2, batch_size = 3 } } do
    it("metagradients agree with central differences of retraining, shares sum to the change: " .. o.optimizer,
       function()
      local function run(extra)
        local t = { X = X, Y = Y, steps = 10, seed = 3, progress = false }
        for k, v in pairs(o) do t[k] = v end
        for k, v in pairs(extra or {}) do t[k] = v end
        local net = mk()
        local r = net:train(t)
        return net, r
      end
      local net_end, traj = run{ record = { every = 3 } }
      local M = as_list(pk.attribute.metagradient(traj, Xq))
      -- D(h) = M + a h^2 + ...: D(h) - D(h/2) bounds the truncation of D(h/2)
      local function D(i, h)
        local Wp, Wm = pk.ones(m, 1), pk.ones(m, 1)
        Wp:set(i, 1, 1 + h)
        Wm:set(i, 1, 1 - h)
        local Fp = run{ weights = Wp }:forward(Xq)
        return (Fp - run{ weights = Wm }:forward(Xq)) / (2 * h), Fp
      end
      for _, i in ipairs{ 1, 5, 8 } do
        local D1 = D(i, 1e-4)
        local D2, F = D(i, 5e-5)
        for k = 1, #M do
          for q = 1, Xq:rows() do
            local mg, d1, d2 = M[k]:get(q, i), D1:get(q, k), D2:get(q, k)
            local tol = 2 * math.abs(d1 - d2) / 3 + 40 * EPS * math.max(1, math.abs(F:get(q, k))) / 5e-5
            assert(math.abs(mg - d2) <= tol, ("example %d query %d output %d: %.12g vs %.12g (tol %.3g)")
              :format(i, q, k, mg, d2, tol))
          end
        end
      end
      local S, decay = pk.attribute.weights(traj)
      local change = net_end:params() - mk():params()
      assert.is_true(((S:sum(1) + decay):t() - change):max_abs() <= 1e-13 * math.max(1, change:max_abs()))
    end)
  end

  it("TracIn at every step of gd is the left rule's decomposition", function()
    local traj = mk():train{ X = X, Y = Y, steps = 6, lr = 0.2, record = true, progress = false }
    local T = as_list(pk.attribute.tracin(traj, Xq, { every = 1 }))
    local C = as_list(pk.machine.from_trajectory(traj, { rule = "left" }):contributions(Xq))
    for k = 1, #T do assert.is_true(H.max_rel(T[k], C[k]) < 1e-12) end
  end)

  it("influence and representer values of a whole-image kernel are the dense network's", function()
    -- conv 4 with a 5x4 kernel over 2x5x4 is dense 4 over the 40 pixels:
    -- the same parameters in the same order
    local conv = pk.network{ input = {2, 5, 4}, layers = { {"conv", channels = 4, size = {5, 4}}, {"dense", 2} },
                             seed = 2 }
    local dense = pk.network{ sizes = {40, 4, 2}, seed = 2 }
    dense:set_params(conv:params())
    assert.is_true(H.max_rel(conv:forward(Xq), dense:forward(Xq)) < 1e-14)
    for _, solver in ipairs{ "exact", "cg" } do
      local a = as_list(pk.attribute.influence(conv, X, Y, Xq, { damping = 0.5, solver = solver, tol = 1e-13 }))
      local b = as_list(pk.attribute.influence(dense, X, Y, Xq, { damping = 0.5, solver = solver, tol = 1e-13 }))
      for k = 1, #a do assert.is_true(H.max_rel(a[k], b[k]) < 1e-10, solver) end
    end
    local a = as_list(pk.attribute.representer(conv, X, Y, Xq))
    local b = as_list(pk.attribute.representer(dense, X, Y, Xq))
    for k = 1, #a do assert.is_true(H.max_rel(a[k], b[k]) < 1e-10) end
  end)

  it("representer values need a dense last layer", function()
    local net = pk.network{ input = {1, 5, 5}, layers = { {"conv", channels = 2, size = 3}, {"conv", channels = 1, size = 3} } }
    H.raises("representer: the last layer must be dense (it is conv)", pk.attribute.representer, net,
             pk.randn(4, 25, 1), pk.randn(4, 1, 2), pk.randn(2, 25, 3))
  end)
end)
