-- The exact rule (issue 14): relu networks rewritten exactly, each step
-- cut at the kinks of its units (where a pre-activation, a polynomial in
-- the step's t, crosses zero) and integrated piece by piece; smooth
-- activations with the nodes each step needs; the certificate that bounds
-- the machine's error; online and offline machines alike.
local H = require "helpers"
local pk = H.pk

local X, Xq = pk.randn(16, 3, 1), pk.randn(5, 3, 3)

local function targets(loss, K)
  if loss == "mse" then return pk.randn(16, K, 2) end
  local Y = pk.zeros(16, 1)
  for i = 1, 16 do Y:set(i, 1, (i % K) + 1) end
  return Y
end

local function sizes_for(depth, K)
  local s = { 3 }
  for _ = 1, depth do s[#s + 1] = 8 end
  s[#s + 1] = K
  return s
end

-- |predict - network| <= certificate, entry by entry
local function certified(km, net, Q)
  local C = km:certificate(Q)
  local err = (km:predict(Q) - net:forward(Q)):abs()
  for i = 1, Q:rows() do
    for k = 1, C:cols() do
      if not (err:get(i, k) <= C:get(i, k)) then
        return false, ("query %d output %d: error %g above the certificate %g"):format(i, k, err:get(i, k), C:get(i, k))
      end
    end
  end
  return true
end

describe("the exact rule on relu and leaky_relu networks", function()
  local OPTS = {
    gd = { lr = 0.6 }, sgd = { lr = 0.6, batch_size = 5 },
    momentum = { lr = 0.3 }, nesterov = { lr = 0.3, batch_size = 6 },
    adam = { lr = 0.05 }, adamw = { lr = 0.05, weight_decay = 0.1, batch_size = 6 },
  }
  local split, pairs_, gauss_worst = 0, 0, 0
  for _, act in ipairs{ "relu", "leaky_relu" } do
  for _, opt in ipairs{ "gd", "sgd", "momentum", "nesterov", "adam", "adamw" } do
    for _, depth in ipairs{ 1, 2, 3 } do
      for _, K in ipairs{ 1, 3 } do
        for _, loss in ipairs{ "mse", "softmax" } do
          local label = ("%s, %s, depth %d, %d output%s, %s"):format(act, opt, depth, K, K > 1 and "s" or "", loss)
          if not (loss == "softmax" and K == 1) then
            it("reproduces the network to 1e-10, within its certificate, online as offline: " .. label, function()
              local net = pk.network{ sizes = sizes_for(depth, K), activation = act, slope = 0.1,
                                      seed = depth * 7 + K }
              local o = { X = X, Y = targets(loss, K), loss = loss, optimizer = opt, steps = 12, seed = 5,
                          record = true, explain = Xq, progress = false }
              for k, v in pairs(OPTS[opt]) do o[k] = v end
              local traj, online = net:train(o)
              local km = pk.machine.from_trajectory(traj)
              local _, rel = km:verify(Xq)
              assert.is_true(rel <= 1e-10, label .. ": max relative error " .. rel)
              local ok, why = certified(km, net, Xq)
              assert.is_true(ok, why)
              local _, info = km:certificate(Xq)
              assert.are.equal(12 * Xq:rows(), info.pairs)
              split, pairs_ = split + info.split, pairs_ + info.pairs
              -- accumulated during training: the same machine
              assert.is_true(H.max_rel(online:predict(Xq), km:predict(Xq)) <= 1e-12)
              local a, b = online:contributions(Xq), km:contributions(Xq)
              if K == 1 then a, b = { a }, { b } end
              for k = 1, K do assert.is_true((a[k] - b[k]):max_abs() <= 1e-12, label) end
              assert.is_true((online:certificate(Xq) - km:certificate(Xq)):max_abs() <= 1e-12)
              -- fixed Gauss nodes miss the kinks
              local _, g = pk.machine.from_trajectory(traj, { rule = "gauss" }):verify(Xq)
              gauss_worst = math.max(gauss_worst, g)
            end)
          end
        end
      end
    end
  end
  end

  it("needed its kinks: many pairs were split, and fixed nodes were far off", function()
    assert.is_true(pairs_ > 0)
    assert.is_true(split >= pairs_ / 10, ("%d of %d pairs split"):format(split, pairs_))
    assert.is_true(gauss_worst >= 1e-6, "gauss, 4 nodes: " .. gauss_worst)
  end)

  it("stays exact where most units switch in most steps", function()
    for _, act in ipairs{ "relu", "leaky_relu" } do
      local net = pk.network{ sizes = {3, 16, 16, 16, 2}, activation = act, slope = 0.2, seed = 3 }
      local traj = net:train{ X = X, Y = targets("mse", 2), lr = 3, steps = 8, record = true, progress = false }
      local km = pk.machine.from_trajectory(traj)
      local Q = pk.randn(20, 3, 9)
      local _, rel = km:verify(Q)
      local _, info = km:certificate(Q)
      assert.is_true(info.split >= info.pairs / 2, ("%s: %d of %d pairs split"):format(act, info.split, info.pairs))
      assert.is_true(rel <= 1e-10, act .. ": max relative error " .. rel)
      assert.is_true(certified(km, net, Q))
    end
  end)

  it("gives a unit that sits at exactly zero no part, as training does (relu'(0) = 0)", function()
    -- hidden unit 3 has zero weights and bias: z = 0 along every step, so
    -- with relu'(0) = 0 it never learns and moves nothing; the machine
    -- equals that of the network without it (standard parameterization:
    -- no fan-in scale differs between the two)
    local big = pk.network{ sizes = {3, 5, 1}, activation = "relu", parameterization = "standard", seed = 2 }
    local p = big:params():totable()
    local function pack(units)
      local v = {}
      for _, j in ipairs(units) do for c = 1, 3 do v[#v + 1] = { p[(j - 1) * 3 + c][1] } end end
      for _, j in ipairs(units) do v[#v + 1] = { p[15 + j][1] } end
      for _, j in ipairs(units) do v[#v + 1] = { p[20 + j][1] } end
      v[#v + 1] = { p[26][1] }
      return pk.matrix(v)
    end
    for _, i in ipairs{ 7, 8, 9, 18 } do p[i][1] = 0 end
    big:set_params(pack{ 1, 2, 3, 4, 5 })
    local small = pk.network{ sizes = {3, 4, 1}, activation = "relu", parameterization = "standard", seed = 2 }
    small:set_params(pack{ 1, 2, 4, 5 })
    local Y = targets("mse", 1)
    local tb = big:train{ X = X, Y = Y, lr = 0.3, steps = 10, record = true, progress = false }
    local ts = small:train{ X = X, Y = Y, lr = 0.3, steps = 10, record = true, progress = false }
    local w = tb:weights(10):totable()
    for _, i in ipairs{ 7, 8, 9, 18 } do assert.are.equal(0, w[i][1]) end   -- unit 3 never learned
    local kb, ks = pk.machine.from_trajectory(tb), pk.machine.from_trajectory(ts)
    local cb, cs = kb:contributions(Xq), ks:contributions(Xq)
    assert.is_true((cb - cs):max_abs() <= 1e-12 * math.max(1, cs:max_abs()))
    local _, rel = kb:verify(Xq)
    assert.is_true(rel <= 1e-12)
  end)
end)

-- A network {3, 8, 8, 1} trained one step, and a query x solved for so
-- that a unit u of the second layer has roots r1 and r2 along the step:
-- with the first layer's pattern fixed, the coefficients of its
-- pre-activation z(t) = alpha + beta t + gamma t^2 are affine in x, and
-- the roots are two affine conditions, alpha - r1 r2 gamma = 0 and
-- beta + (r1 + r2) gamma = 0. Of the solutions nearest a few moderate
-- starting points (one per unit), the smallest whose first layer keeps
-- its pattern along the step.
local function constructed(r1, r2)
  local net = pk.network{ sizes = {3, 8, 8, 1}, activation = "relu", seed = 3 }
  local traj = net:train{ X = X, Y = pk.randn(16, 1, 2), lr = 1, steps = 1, record = true, progress = false }
  local w0, w1 = traj:weights(0):totable(), traj:weights(1):totable()
  local function W(w, i) return w[i][1] end
  local s1, s2, sb = 1 / math.sqrt(3), 1 / math.sqrt(8), 0.1
  -- the first layer's pre-activation at t = 0 and its change over the step
  local function first(x)
    local z0, z1 = {}, {}
    for j = 1, 8 do
      local a, b = sb * W(w0, 24 + j), sb * (W(w1, 24 + j) - W(w0, 24 + j))
      for c = 1, 3 do
        local i = (j - 1) * 3 + c
        a = a + s1 * W(w0, i) * x[c]
        b = b + s1 * (W(w1, i) - W(w0, i)) * x[c]
      end
      z0[j], z1[j] = a, b
    end
    return z0, z1
  end
  local best
  for u = 1, 8 do
    for _, x0 in ipairs{ { 0.4, -0.3, 0.2 }, { -0.5, 0.6, 0.1 }, { 1, 0.2, -0.7 }, { 0.1, -1, 0.5 } } do
      local M = {}
      local z0 = first(x0)
      for j = 1, 8 do M[j] = z0[j] > 0 and 1 or 0 end
      local function cond(x)
        local a0, a1 = first(x)
        local al, be, ga = sb * W(w0, 96 + u), sb * (W(w1, 96 + u) - W(w0, 96 + u)), 0
        for j = 1, 8 do
          local i = 32 + (u - 1) * 8 + j
          local wv, vv = W(w0, i), W(w1, i) - W(w0, i)
          al = al + s2 * wv * M[j] * a0[j]
          be = be + s2 * (wv * M[j] * a1[j] + vv * M[j] * a0[j])
          ga = ga + s2 * vv * M[j] * a1[j]
        end
        return { al - r1 * r2 * ga, be + (r1 + r2) * ga }
      end
      -- x = x0 + G^T (G G^T)^-1 (-e0), G the conditions' gradient
      local e0, G = cond(x0), { {}, {} }
      for c = 1, 3 do
        local xe = { x0[1], x0[2], x0[3] }
        xe[c] = xe[c] + 1
        local e = cond(xe)
        G[1][c], G[2][c] = e[1] - e0[1], e[2] - e0[2]
      end
      local a, b, d = 0, 0, 0
      for c = 1, 3 do a, b, d = a + G[1][c] ^ 2, b + G[1][c] * G[2][c], d + G[2][c] ^ 2 end
      local y1, y2 = (-d * e0[1] + b * e0[2]) / (a * d - b * b), (b * e0[1] - a * e0[2]) / (a * d - b * b)
      local x, n, ok = {}, 0, true
      for c = 1, 3 do
        x[c] = x0[c] + G[1][c] * y1 + G[2][c] * y2
        n = n + x[c] ^ 2
      end
      local q0, q1 = first(x)
      for j = 1, 8 do
        local e = q0[j] + q1[j]
        if (q0[j] > 0) ~= (M[j] == 1) or (e > 0) ~= (M[j] == 1) or math.min(math.abs(q0[j]), math.abs(e)) < 1e-3 then
          ok = false
        end
      end
      if ok and (not best or n < best.n) then best = { n = n, u = u, x = x } end
    end
  end
  assert(best, "no query found")
  return net, traj, pk.matrix{ best.x }, best.u
end

-- z of the second layer's units at t along step 0, by a network of the
-- first two layers at the interpolated weights (an independent forward)
local function second_layer(traj, xq, t)
  local w0, w1 = traj:weights(0), traj:weights(1)
  local sub = pk.network{ sizes = {3, 8, 8}, activation = { "relu" }, seed = 1 }
  sub:set_params((w0 + t * (w1 - w0)):slice(1, 104))
  return sub:forward(xq)
end

describe("the exact rule finds every kink", function()
  it("of a unit that crosses zero twice within one step", function()
    local net, traj, xq, u = constructed(0.3, 0.7)
    -- the first layer does not switch (the same sign at both ends of a
    -- linear path), and unit u changes sign twice along the step
    local first = pk.network{ sizes = {3, 8}, seed = 1 }
    first:set_params(traj:weights(0):slice(1, 32))
    local a0 = first:forward(xq)
    first:set_params(traj:weights(1):slice(1, 32))
    local a1 = first:forward(xq)
    for j = 1, 8 do assert.is_true(a0:get(1, j) * a1:get(1, j) > 0) end
    local z0, zm, z1 = second_layer(traj, xq, 0):get(1, u), second_layer(traj, xq, 0.5):get(1, u),
                       second_layer(traj, xq, 1):get(1, u)
    assert.is_true(z0 * zm < 0 and zm * z1 < 0, ("z: %g %g %g"):format(z0, zm, z1))
    -- the roots are where they were put
    assert.is_true(math.abs(second_layer(traj, xq, 0.3):get(1, u)) <= 1e-12)
    assert.is_true(math.abs(second_layer(traj, xq, 0.7):get(1, u)) <= 1e-12)
    local km = pk.machine.from_trajectory(traj)
    local _, rel = km:verify(xq)
    assert.is_true(rel <= 1e-10, "exact: " .. rel)
    local _, info = km:certificate(xq)
    assert.are.equal(1, info.split)
    assert.is_true(certified(km, net, xq))
    -- both Gauss nodes (0.21, 0.79) lie outside the negative stretch
    local _, g = pk.machine.from_trajectory(traj, { rule = "gauss", nodes = 2 }):verify(xq)
    assert.is_true(g >= 1e-6, "gauss, 2 nodes: " .. g)
  end)

  it("at the Gauss nodes themselves, and at the start of the step", function()
    local t1 = 0.5 - 0.5 / math.sqrt(3)
    for _, roots in ipairs{ { t1, 1 - t1 }, { 0, 0.6 }, { t1, 1.3 } } do
      local net, traj, xq = constructed(roots[1], roots[2])
      local km = pk.machine.from_trajectory(traj)
      local _, rel = km:verify(xq)
      assert.is_true(rel <= 1e-10, ("roots %g, %g: %g"):format(roots[1], roots[2], rel))
      assert.is_true(certified(km, net, xq))
    end
  end)

  it("of a first-layer unit at the midpoint, the one node of a one-hidden-layer step", function()
    local net = pk.network{ sizes = {3, 6, 1}, activation = "relu", seed = 5 }
    local traj = net:train{ X = X, Y = targets("mse", 1), lr = 1, steps = 1, record = true, progress = false }
    -- unit 1's pre-activation at w(1/2) is affine in x: put its zero on a
    -- query, so the kink sits on the node
    local mid = pk.network{ sizes = {3, 6}, seed = 1 }
    mid:set_params((0.5 * (traj:weights(0) + traj:weights(1))):slice(1, 24))
    local x0, e = pk.matrix{ { 0.3, -0.2, 0.5 } }, pk.matrix{ { 1, 0, 0 } }
    local z0, z1 = mid:forward(x0):get(1, 1), mid:forward(x0 + e):get(1, 1)
    local xq = x0 - (z0 / (z1 - z0)) * e
    assert.is_true(math.abs(mid:forward(xq):get(1, 1)) <= 1e-15)
    local first = pk.network{ sizes = {3, 6}, seed = 1 }
    first:set_params(traj:weights(0):slice(1, 24))
    local a = first:forward(xq):get(1, 1)
    first:set_params(traj:weights(1):slice(1, 24))
    assert.is_true(a * first:forward(xq):get(1, 1) < 0)        -- it switches in the step
    local km = pk.machine.from_trajectory(traj)
    local _, rel = km:verify(xq)
    assert.is_true(rel <= 1e-10, "exact: " .. rel)
    local _, g = pk.machine.from_trajectory(traj, { rule = "gauss", nodes = 1 }):verify(xq)
    assert.is_true(g >= 1e-6, "the midpoint alone: " .. g)
  end)
end)

describe("the exact rule on smooth activations", function()
  for _, act in ipairs{ "tanh", "gelu", "sigmoid", "sin" } do
    for _, depth in ipairs{ 1, 2, 3 } do
      for _, lr in ipairs{ 0.05, 2 } do
        it(("reproduces the network to 1e-12 within its certificate: %s, depth %d, lr %g"):format(act, depth, lr), function()
          local net = pk.network{ sizes = sizes_for(depth, 1), activation = act, seed = depth }
          local traj = net:train{ X = X, Y = targets("mse", 1), lr = lr, steps = 20, record = true, progress = false }
          local km = pk.machine.from_trajectory(traj)
          local _, rel = km:verify(Xq)
          assert.is_true(rel <= 1e-12, "max relative error " .. rel)
          assert.is_true(certified(km, net, Xq))
        end)
      end
    end
  end

  it("adds nodes where a step needs them, and is exact where fixed nodes are not", function()
    local net = pk.network{ sizes = {3, 8, 8, 1}, activation = "tanh", seed = 4 }
    local traj = net:train{ X = X, Y = targets("mse", 1), lr = 2, steps = 15, record = true, progress = false }
    local km = pk.machine.from_trajectory(traj)
    local _, rel = km:verify(Xq)
    local _, info = km:certificate(Xq)
    assert.is_true(rel <= 1e-12, "exact: " .. rel)
    assert.is_true(info.refined > 0 and info.nodes > 2, ("nodes %g"):format(info.nodes))
    assert.is_true(certified(km, net, Xq))
    local _, g = pk.machine.from_trajectory(traj, { rule = "gauss", nodes = 2 }):verify(Xq)
    assert.is_true(g >= 1e-9, "gauss, 2 nodes: " .. g)
  end)

  it("spends fewer nodes for a looser tol, and keeps within it", function()
    local net = pk.network{ sizes = {3, 8, 8, 1}, activation = "tanh", seed = 4 }
    local traj = net:train{ X = X, Y = targets("mse", 1), lr = 0.5, steps = 15, record = true, progress = false }
    local tight = pk.machine.from_trajectory(traj)
    local loose = pk.machine.from_trajectory(traj, { tol = 1e-6 })
    local _, rt = tight:verify(Xq)
    local _, rl = loose:verify(Xq)
    local _, it = tight:certificate(Xq)
    local _, il = loose:certificate(Xq)
    assert.is_true(il.nodes < it.nodes, ("%g vs %g nodes"):format(il.nodes, it.nodes))
    -- the residuals add up to at most tol times the output (plus rounding)
    assert.is_true(rl <= 1e-6 and rt <= 1e-12, ("%g %g"):format(rl, rt))
    assert.is_true(certified(loose, net, Xq))
  end)

  it("follows relu kinks below smooth layers, and certifies the rest", function()
    for _, acts in ipairs{ { "relu", "tanh" }, { "tanh", "relu" } } do
      local net = pk.network{ sizes = {3, 8, 8, 1}, activation = acts, seed = 6 }
      local traj = net:train{ X = X, Y = targets("mse", 1), lr = 1, steps = 10, record = true, progress = false }
      local km = pk.machine.from_trajectory(traj)
      local ok, why = certified(km, net, Xq)
      assert.is_true(ok, why)
      if acts[1] == "relu" then
        local _, rel = km:verify(Xq)
        assert.is_true(rel <= 1e-10, "relu below tanh: " .. rel)
      end
    end
  end)
end)

describe("the certificate", function()
  it("is large when the machine is wrong, and bounds that error", function()
    local net = pk.network{ sizes = {3, 8, 8, 1}, activation = "relu", seed = 2 }
    local traj = net:train{ X = X, Y = targets("mse", 1), lr = 1, steps = 10, record = true, progress = false }
    local left = pk.machine.from_trajectory(traj, { rule = "left" })
    local C = left:certificate(Xq)
    local err = (left:predict(Xq) - net:forward(Xq)):abs()
    assert.is_true(err:max_abs() >= 1e-4)
    assert.is_true(certified(left, net, Xq))
    -- not loose: within a few rounding units of the error it bounds
    assert.is_true(C:max_abs() <= err:max_abs() + 1e-12)
    local exact = pk.machine.from_trajectory(traj)
    assert.is_true(exact:certificate(Xq):max_abs() <= 1e-12)
  end)

  it("travels with a machine through its file, online too", function()
    local net = pk.network{ sizes = {3, 8, 1}, activation = "relu", seed = 3 }
    local traj, online = net:train{ X = X, Y = targets("mse", 1), lr = 0.5, steps = 6, record = true,
                                    explain = Xq, progress = false }
    local km = pk.machine.from_trajectory(traj, { tol = 1e-11 })
    local p = H.tmpname(".pk")
    for _, m in ipairs{ km, online } do
      assert.is_true(m:save(p))
      local back = pk.load(p)
      assert.are.equal(0, (back:certificate(Xq) - m:certificate(Xq)):max_abs())
      assert.are.equal(0, (back:predict(Xq) - m:predict(Xq)):max_abs())
      assert.are.equal(tostring(m), tostring(back))
    end
    os.remove(p)
    assert.is_truthy(tostring(km):find("exact rule, tol 1e-11", 1, true))
  end)
end)

describe("online machines", function()
  it("keep the path kernel values only when asked (they cost as much again)", function()
    local Y = targets("mse", 1)
    local _, plain = pk.network{ sizes = {3, 6, 1}, activation = "relu", seed = 1 }:train{ X = X, Y = Y,
      lr = 0.3, steps = 5, explain = Xq, progress = false }
    local traj, kept = pk.network{ sizes = {3, 6, 1}, activation = "relu", seed = 1 }:train{ X = X, Y = Y,
      lr = 0.3, steps = 5, explain = Xq, kernel = true, record = true, progress = false }
    H.raises("without kernel values (train with explain = Xq and kernel = true keeps them)",
      plain.coefficients, plain, Xq)
    local e = plain:explain(Xq:row(2), 3)
    assert.are.equal(3, #e)
    assert.is_nil(e[1].kernel)
    local _, Kp = kept:coefficients(Xq)
    local _, Koff = pk.machine.from_trajectory(traj):coefficients(Xq)
    assert.is_true((Kp - Koff):max_abs() <= 1e-12 * Koff:max_abs())
    local k = kept:explain(Xq:row(2), 3)
    assert.are.equal(Kp:get(2, k[1].index), k[1].kernel)
    assert.are.equal(0, (plain:contributions(Xq) - kept:contributions(Xq)):max_abs())
    H.raises("option 'kernel' must be a boolean", pk.network{ sizes = {3, 6, 1} }.train,
      pk.network{ sizes = {3, 6, 1} }, { X = X, Y = Y, steps = 1, explain = Xq, kernel = 1 })
  end)
end)

describe("explain", function()
  it("of the rows of a decomposed set: one decomposition adds the kernel values for the whole set", function()
    local net = pk.network{ sizes = {3, 6, 2}, activation = "relu", seed = 4 }
    local traj = net:train{ X = X, Y = targets("mse", 2), lr = 0.3, steps = 6, record = true, progress = false }
    local km = pk.machine.from_trajectory(traj)
    local Q = pk.randn(7, 3, 5)
    local C = km:contributions(Q)
    local runs = 0
    local function counting() return { progress = function(done) if done == 1 then runs = runs + 1 end end } end
    for i = 1, 7 do
      local e = km:explain(Q:row(i), 2, counting())
      local k = e.output
      assert.are.equal(C[k]:get(i, e[1].index), e[1].contribution)
    end
    assert.are.equal(1, runs)
    -- the kernel values are those of the set computed at once
    local _, Kp = pk.machine.from_trajectory(traj):coefficients(Q)
    local e = km:explain(Q:row(3), 1, { output = 2 })
    assert.are.equal(Kp[2]:get(3, e[1].index), e[1].kernel)
  end)
end)

describe("explain of a query not decomposed before", function()
  it("takes the kernel values of the explained output alone, equal to those of every output", function()
    local net = pk.network{ sizes = {3, 6, 6, 4}, activation = "relu", seed = 8 }
    local traj = net:train{ X = X, Y = targets("softmax", 4), loss = "softmax", lr = 0.5, steps = 6,
      record = true, progress = false }
    local q = Xq:row(3)
    local _, Kp = pk.machine.from_trajectory(traj):coefficients(q)
    local F = net:forward(q)
    local best = 1
    for k = 2, 4 do if F:get(1, k) > F:get(1, best) then best = k end end
    for _, o in ipairs{ {}, { output = 2 } } do
      local km = pk.machine.from_trajectory(traj)
      local e = km:explain(q, 16, o)
      assert.are.equal(o.output or best, e.output)
      for r = 1, 16 do
        local want = Kp[e.output]:get(1, e[r].index)
        assert.is_true(math.abs(e[r].kernel - want) <= 1e-12 * math.max(1, math.abs(want)))
      end
      -- every output's kernel values afterwards: computed again, not the one output's
      local _, K2 = km:coefficients(q)
      for k = 1, 4 do assert.is_true((K2[k] - Kp[k]):max_abs() <= 1e-12 * Kp[k]:max_abs()) end
    end
  end)
end)

describe("a recorded run after the network that recorded it changes", function()
  it("keeps its trajectory and machines: they describe the run, which they own", function()
    local Y = targets("mse", 2)
    local net = pk.network{ sizes = {3, 8, 8, 2}, activation = "relu", seed = 9 }
    local traj, online = net:train{ X = X, Y = Y, lr = 0.4, steps = 8, record = true, explain = Xq,
                                    progress = false }
    local final = traj:network(#traj)           -- w_T, where the run ended
    local before = pk.machine.from_trajectory(traj)
    local P0 = before:predict(Xq)
    -- trained again, then its weights set, then released and collected
    net:train{ X = X, Y = Y, lr = 0.4, steps = 3, progress = false }
    assert.is_true((net:forward(Xq) - final:forward(Xq)):max_abs() > 1e-3)
    net:set_params(pk.randn(net:nparams(), 1, 4))
    net:release()
    net = nil
    collectgarbage()
    collectgarbage()
    local after = pk.machine.from_trajectory(traj)
    -- queries no machine has decomposed: every call below replays the run
    local Q = pk.randn(4, 3, 11)
    for _, km in ipairs{ before, after } do
      local ok, why = certified(km, final, Q)
      assert.is_true(ok, why)
      local _, rel = km:verify(Q)
      assert.is_true(rel <= 1e-10, "verify " .. rel)
      local e = km:explain(Q:row(1), 2)
      assert.is_true(math.abs(e.prediction - e.network) <= 1e-10 * math.max(1, math.abs(e.network)))
    end
    local P1 = after:predict(Xq)
    assert.is_true((P1 - P0):max_abs() <= 1e-12 * math.max(1, P0:max_abs()))
    assert.is_true((online:predict(Xq) - P0):max_abs() <= 1e-12 * math.max(1, P0:max_abs()))
    assert.is_true(certified(online, final, Xq))
    -- the trajectory's own views of the run agree with the machine's ends
    assert.are.equal(0, (traj:network(#traj):forward(Xq) - final:forward(Xq)):max_abs())
    assert.is_true(pk.kernel.path(traj)(Xq, X):rows() > 0)
  end)
end)

describe("the exact rule refuses", function()
  it("tolerances that are no tolerance, and options of other rules", function()
    local traj = pk.network{ sizes = {3, 4, 1}, seed = 1 }:train{ X = X, Y = targets("mse", 1), lr = 0.1,
      steps = 2, record = true, progress = false }
    for _, tol in ipairs{ 0, -1, 1 / 0, 0 / 0 } do
      H.raises("tol must be a positive finite number", pk.machine.from_trajectory, traj, { tol = tol })
    end
    H.raises("option 'tol' must be a number, got string", pk.machine.from_trajectory, traj, { tol = "x" })
    H.raises("nodes is an option of the gauss rule", pk.machine.from_trajectory, traj, { rule = "exact", nodes = 3 })
    H.raises("tol is an option of the exact rule, not of the gauss rule", pk.machine.from_trajectory, traj,
      { rule = "gauss", tol = 1e-9 })
    H.raises("unknown rule 'exact' (valid: gauss, left)", pk.kernel.path, traj, { rule = "exact" })
    H.raises("tol must be a positive finite number", pk.network{ sizes = {3, 4, 1} }.train,
      pk.network{ sizes = {3, 4, 1} }, { X = X, Y = targets("mse", 1), steps = 1, explain = Xq, tol = -1 })
  end)
end)
