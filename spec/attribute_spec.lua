-- Attribution (issue 15): exact metagradients against finite differences
-- of retraining and a linear model's derivative written out; TracIn
-- against the left rule and explicit Jacobians; influence against a
-- Hessian built by finite differences of explicit gradients; representer
-- values against the representer theorem; the weights' per-example shares
-- against their sum and explicit Jacobians; LDS on scores that are
-- (nearly) exact and on random ones; remove_top; bad input.
local H = require "helpers"
local pk = H.pk

local EPS = 2.220446049250313e-16

local m = 10
local X, Y = pk.randn(m, 3, 41), pk.randn(m, 2, 42)
local labels = pk.matrix{ 1, 2, 3, 1, 2, 3, 3, 2, 1, 1 }
local Xq = pk.randn(3, 3, 43)

local function net0(K) return pk.network{ sizes = { 3, 5, K or 2 }, activation = "tanh", seed = 6 } end

local function weights(t)
  local W = pk.ones(m, 1)
  for i, v in pairs(t or {}) do W:set(i, 1, v) end
  return W
end

-- a Lua copy of a score result: one matrix or a table of K
local function as_list(S) return type(S) == "table" and S or { S } end

local OPTS = {
  { optimizer = "gd", lr = 0.2 },
  { optimizer = "gd", lr = 0.2, weight_decay = 0.05 },
  { optimizer = "sgd", lr = 0.2, batch_size = 4 },
  { optimizer = "momentum", lr = 0.05, momentum = 0.8, dampening = 0.1, weight_decay = 0.01 },
  { optimizer = "nesterov", lr = 0.05, momentum = 0.9, batch_size = 3 },
  { optimizer = "adam", lr = 0.01, weight_decay = 0.02 },
  { optimizer = "adamw", lr = 0.01, weight_decay = 0.1, batch_size = 5 },
}

local STEPS = 12

local function run(o, extra)
  local t = { X = X, Y = Y, steps = STEPS, seed = 3, progress = false }
  for k, v in pairs(o) do t[k] = v end
  for k, v in pairs(extra or {}) do t[k] = v end
  local net = net0(t.loss == "softmax" and 3 or 2)
  if t.loss == "softmax" then t.Y = labels end
  local r = net:train(t)
  return net, r
end

describe("pk.attribute.metagradient", function()
  -- Central differences of retraining with w_i = 1 +- h: D(h) = M + a h^2
  -- + O(h^4), so D(h) - D(h/2) = (3/4) a h^2 estimates the truncation of
  -- D(h/2) (a third of it), and rounding adds about T eps |f| / (h/2).
  local function check(o, loss)
    local extra = { record = { every = 4 }, loss = loss }
    local _, traj = run(o, extra)
    local M = as_list(pk.attribute.metagradient(traj, Xq))
    local h = 1e-4
    local function D(i, hh)
      local Wp, Wm = weights{ [i] = 1 + hh }, weights{ [i] = 1 - hh }
      local Fp = run(o, { loss = loss, weights = Wp }):forward(Xq)
      local Fm = run(o, { loss = loss, weights = Wm }):forward(Xq)
      return (Fp - Fm) / (2 * hh), Fp
    end
    for _, i in ipairs{ 1, 4, 9 } do
      local D1 = D(i, h)
      local D2, F = D(i, h / 2)
      for k = 1, #M do
        for q = 1, Xq:rows() do
          local mg, d1, d2 = M[k]:get(q, i), D1:get(q, k), D2:get(q, k)
          local tol = 2 * math.abs(d1 - d2) / 3 + 4 * STEPS * EPS * math.max(1, math.abs(F:get(q, k))) / (h / 2)
          assert(math.abs(mg - d2) <= tol, ("%s %s: example %d query %d output %d: metagradient %.12g, "
            .. "central differences %.12g (tolerance %.3g)"):format(o.optimizer, loss or "mse", i, q, k, mg, d2, tol))
        end
      end
    end
  end

  for _, o in ipairs(OPTS) do
    it("agrees with central differences of retraining: " .. o.optimizer ..
       (o.weight_decay and " with weight decay" or ""), function()
      check(o)
      check(o, "softmax")
    end)
  end

  it("is the forward-mode derivative of a linear model written out", function()
    -- f = theta . phi(x), phi = [s_w x; s_b]; gd on mse with decay:
    -- theta' = theta - eta ((1/m) sum_i w_i (theta . phi_i - y_i) phi_i + wd theta),
    -- so J = d theta / d w (P x m) follows
    -- J' = (I - eta (Phi^T Phi / m + wd I)) J - (eta/m) Phi^T diag(r), r = Phi theta - y
    local d, eta, wd, T = 3, 0.3, 0.02, 40
    local net = pk.network{ sizes = { d, 1 }, sigma_w = 1.3, sigma_b = 0.4, seed = 2 }
    local y = Y:slice(1, m)
    local yy = pk.zeros(m, 1)
    for i = 1, m do yy:set(i, 1, y:get(i, 1)) end
    local traj = net:train{ X = X, Y = yy, lr = eta, steps = T, weight_decay = wd, record = true, progress = false }
    local sw, sb = 1.3 / math.sqrt(d), 0.4
    local function phi(A)
      local F = pk.zeros(A:rows(), d + 1)
      for i = 1, A:rows() do
        for j = 1, d do F:set(i, j, sw * A:get(i, j)) end
        F:set(i, d + 1, sb)
      end
      return F
    end
    local Phi, Phiq, P = phi(X), phi(Xq), d + 1
    local A = pk.eye(P) - eta * (Phi:t() * Phi / m + wd * pk.eye(P))
    local J = pk.zeros(P, m)
    for s = 0, T - 1 do
      local r = Phi * traj:weights(s) - yy
      local B = pk.zeros(P, m)
      for p = 1, P do for i = 1, m do B:set(p, i, Phi:get(i, p) * r:get(i, 1)) end end
      J = A * J - (eta / m) * B
    end
    local want = Phiq * J
    local M = pk.attribute.metagradient(traj, Xq)
    assert.is_true(H.max_rel(M, want) < 1e-12, H.max_rel(M, want))
  end)

  it("is the same from every recorded step as from checkpoints replayed in blocks", function()
    for _, o in ipairs(OPTS) do
      local _, full = run(o, { record = true })
      local _, sparse = run(o, { record = { every = 5 } })
      local a, b = as_list(pk.attribute.metagradient(full, Xq)), as_list(pk.attribute.metagradient(sparse, Xq))
      for k = 1, #a do assert.are.equal(0, (a[k] - b[k]):max_abs(), o.optimizer) end
    end
  end)

  it("holds within a memory limit barely above what it needs (replay in small blocks)", function()
    local o = OPTS[6]
    local _, traj = run(o, { record = { every = 6 } })
    local want = pk.attribute.metagradient(traj, Xq, { output = 2 })
    local old = pk.memory_limit()
    -- the smallest limit that works, by bisection
    local lo, hi = 1024, 64 * 1024 * 1024
    while hi - lo > 256 do
      local mid = (lo + hi) // 2
      pk.set_memory_limit(mid)
      local ok = pcall(pk.attribute.metagradient, traj, Xq, { output = 2 })
      if ok then hi = mid else lo = mid end
    end
    pk.set_memory_limit(hi)
    local ok, got = pcall(pk.attribute.metagradient, traj, Xq, { output = 2 })
    pk.set_memory_limit(lo)
    local ok2, err = pcall(pk.attribute.metagradient, traj, Xq, { output = 2 })
    pk.set_memory_limit(old)
    assert.is_true(ok, got)
    assert.are.equal(0, (got - want):max_abs())
    assert.is_false(ok2)
    assert.truthy(tostring(err):find("memory limit", 1, true), err)
  end)

  it("honours the recorded loss weights: a weight-0 example still has a derivative", function()
    local W = weights{ [2] = 0, [5] = 1.5 }
    local o = OPTS[1]
    local _, traj = run(o, { record = true, weights = W })
    local M = as_list(pk.attribute.metagradient(traj, Xq))
    local h = 1e-5
    local function at(i, v)
      local Wv = W:copy()
      Wv:set(i, 1, v)
      return run(o, { weights = Wv }):forward(Xq)
    end
    -- example 5: central differences; example 2 (weight 0, where weights
    -- stop): the one-sided second-order difference (-3 f(0) + 4 f(h) - f(2h)) / 2h
    local D5 = (at(5, 1.5 + h) - at(5, 1.5 - h)) / (2 * h)
    local D2 = (-3 * at(2, 0) + 4 * at(2, h) - at(2, 2 * h)) / (2 * h)
    for k = 1, 2 do
      for q = 1, 3 do
        assert.is_true(math.abs(M[k]:get(q, 5) - D5:get(q, k)) < 1e-7 * math.max(1, math.abs(D5:get(q, k))))
        assert.is_true(math.abs(M[k]:get(q, 2) - D2:get(q, k)) < 1e-7 * math.max(1, math.abs(D2:get(q, k))))
      end
    end
    assert.is_true(M[1]:slice(1, 3):max_abs() > 0)
  end)
end)

describe("pk.attribute.tracin", function()
  it("with every = 1 is the left rule's path contributions for gd", function()
    local _, traj = run(OPTS[1], { record = true })
    local T = pk.attribute.tracin(traj, Xq)
    local C = pk.machine.from_trajectory(traj, { rule = "left" }):contributions(Xq)
    for k = 1, 2 do assert.is_true(H.max_rel(T[k], C[k]) < 1e-12) end
  end)

  it("is -(1/m) sum over checkpoints of n_s eta_s g(x_q) . grad l_i, from explicit Jacobians", function()
    local every = 5
    local _, traj = run(OPTS[3], { record = true })
    local T = pk.attribute.tracin(traj, Xq, { every = every, output = 2 })
    local want = pk.zeros(3, m)
    local lrs = traj:lrs()
    for s = 0, #traj - 1, every do
      local net = traj:network(s)
      local Jq, Jx, F = net:jacobian(Xq), net:jacobian(X), net:forward(X)
      local ns = math.min(every, #traj - s)
      for q = 1, 3 do
        for i = 1, m do
          local dot = 0
          for p = 1, net:nparams() do
            -- grad l_i = J_i^T (f_i - y_i), rows i*K + k of the Jacobian
            local gi = 0
            for k = 1, 2 do gi = gi + Jx:get((i - 1) * 2 + k, p) * (F:get(i, k) - Y:get(i, k)) end
            dot = dot + Jq:get((q - 1) * 2 + 2, p) * gi
          end
          want:set(q, i, want:get(q, i) - ns * lrs[s + 1] * dot / m)
        end
      end
    end
    assert.is_true(H.max_rel(T, want) < 1e-12, H.max_rel(T, want))
  end)
end)

describe("pk.attribute.influence", function()
  -- a tiny trained network, its mse Hessian by central differences of the
  -- gradient (1/m) J^T (f - y) written out from net:jacobian
  local Xs, Ys = pk.randn(8, 2, 51), pk.randn(8, 1, 52)
  local Xqs = pk.randn(3, 2, 53)
  local net = pk.network{ sizes = { 2, 3, 1 }, activation = "tanh", seed = 9 }
  net:train{ X = Xs, Y = Ys, steps = 400, lr = 0.3, progress = false }
  local P, n = net:nparams(), 8

  local function gradient(theta)
    local nt = net:clone()
    nt:set_params(theta)
    return nt:jacobian(Xs):t() * (nt:forward(Xs) - Ys) / n
  end

  local function hessian()
    local theta, h = net:params(), 1e-5
    local Hm = pk.zeros(P, P)
    for p = 1, P do
      local tp, tm = theta:copy(), theta:copy()
      tp:set(p, 1, theta:get(p, 1) + h)
      tm:set(p, 1, theta:get(p, 1) - h)
      local col = (gradient(tp) - gradient(tm)) / (2 * h)
      for r = 1, P do Hm:set(r, p, col:get(r, 1)) end
    end
    return 0.5 * (Hm + Hm:t())
  end
  local Hfd = hessian()

  -- -(1/m) g_q^T (H + damping I)^-1 grad l_i through pk.eigh
  local function reference(damping)
    local w, V = pk.eigh(Hfd + damping * pk.eye(P))
    local Dinv = pk.zeros(P, P)
    for p = 1, P do Dinv:set(p, p, 1 / w:get(p, 1)) end
    local inv = V * Dinv * V:t()
    local J, r = net:jacobian(Xs), net:forward(Xs) - Ys
    local G = pk.zeros(P, n)
    for i = 1, n do for p = 1, P do G:set(p, i, J:get(i, p) * r:get(i, 1)) end end
    return -(net:jacobian(Xqs) * inv * G) / n, w:get(1, 1)
  end

  it("agrees with the explicit Hessian, both solvers", function()
    local damping = 0.05
    local want, wmin = reference(damping)
    local I1, info = pk.attribute.influence(net, Xs, Ys, Xqs, { damping = damping })
    local I2, info2 = pk.attribute.influence(net, Xs, Ys, Xqs, { damping = damping, solver = "cg" })
    -- central differences of the gradient: O(h^2) = 1e-10, conditioned by H
    assert.is_true(H.max_rel(I1, want) < 1e-6, H.max_rel(I1, want))
    assert.is_true(H.max_rel(I2, I1) < 1e-8, H.max_rel(I2, I1))
    assert.is_true(math.abs(info.min_eigenvalue - wmin) < 1e-7)
    assert.is_true(info2.iterations >= 1 and info2.iterations <= 2 * P)
    assert.is_true(info2.residual <= 1e-10)
  end)

  it("reports a Hessian that is not positive definite instead of inverting it", function()
    local w = pk.eigh(Hfd)
    local damping = 0
    if w:get(1, 1) > 0 then damping = -2 * w:get(1, 1) end  -- never: checked below
    assert.is_true(w:get(1, 1) < 0, "the test network should sit off a minimum")
    H.raises("not positive definite", pk.attribute.influence, net, Xs, Ys, Xqs, { damping = damping })
    H.raises("not positive definite", pk.attribute.influence, net, Xs, Ys, Xqs, { damping = damping, solver = "cg" })
  end)
end)

describe("pk.attribute.representer", function()
  it("decomposes the fine-tuned last layer's output as the representer theorem states", function()
    local net = run(OPTS[1], { loss = "softmax", steps = 60, lr = 0.5 })
    for _, targets in ipairs{ "model", "labels" } do
      local lambda = 0.01
      local R, info = pk.attribute.representer(net, X, labels, Xq, { loss = "softmax", lambda = lambda, targets = targets })
      for k = 1, 3 do
        local rows = R[k]:sum(2)
        for q = 1, 3 do
          assert.is_true(math.abs(rows:get(q, 1) - info.fitted:get(q, k)) < 1e-12)
        end
      end
      -- alpha_i = -(1/(2 lambda m)) dL/dz at the fine-tuned outputs of the training rows
      local _, tinfo = pk.attribute.representer(net, X, labels, X, { loss = "softmax", lambda = lambda, targets = targets })
      local Z, T = tinfo.fitted, net:forward(X)
      for i = 1, m do
        local zmax, tmax, sz, st = -math.huge, -math.huge, 0, 0
        for k = 1, 3 do zmax = math.max(zmax, Z:get(i, k)); tmax = math.max(tmax, T:get(i, k)) end
        for k = 1, 3 do sz = sz + math.exp(Z:get(i, k) - zmax); st = st + math.exp(T:get(i, k) - tmax) end
        for k = 1, 3 do
          local p = math.exp(Z:get(i, k) - zmax) / sz
          local t = targets == "model" and math.exp(T:get(i, k) - tmax) / st or (labels:get(i, 1) == k and 1 or 0)
          local a = -(p - t) / (2 * lambda * m)
          assert.is_true(math.abs(info.alpha:get(i, k) - a) < 1e-12)
        end
      end
    end
  end)

  it("for mse fine-tunes to ridge regression on the features", function()
    -- a network with no hidden layer: the features are [s_w x; s_b], and the
    -- stationary point solves (Phi^T Phi / m + 2 lambda I) Theta^T = Phi^T T / m
    local net = pk.network{ sizes = { 3, 2 }, seed = 3 }
    local lambda = 0.05
    local R, info = pk.attribute.representer(net, X, Y, Xq, { lambda = lambda, targets = "labels" })
    local sw = 1 / math.sqrt(3)
    local Phi, Phiq = pk.hstack{ sw * X, 0.1 * pk.ones(m, 1) }, pk.hstack{ sw * Xq, 0.1 * pk.ones(3, 1) }
    local w, V = pk.eigh(Phi:t() * Phi / m + 2 * lambda * pk.eye(4))
    local Dinv = pk.zeros(4, 4)
    for p = 1, 4 do Dinv:set(p, p, 1 / w:get(p, 1)) end
    local ThetaT = V * Dinv * V:t() * Phi:t() * Y / m
    assert.is_true(H.max_rel(info.fitted, Phiq * ThetaT) < 1e-12)
    assert.is_true(H.max_rel(R[1]:sum(2), (Phiq * ThetaT):slice(1, 3) * pk.matrix{ { 1 }, { 0 } }) < 1e-12)
  end)
end)

describe("pk.attribute.weights", function()
  for _, o in ipairs(OPTS) do
    it("rows and decay sum to w_T - w_0: " .. o.optimizer, function()
      local _, traj = run(o, { record = { every = 3 }, weights = weights{ [3] = 0, [7] = 2 } })
      local S, Dc = pk.attribute.weights(traj)
      local dw = (traj:weights(#traj) - traj:weights(0)):t()
      assert.is_true((S:sum(1) + Dc - dw):max_abs() <= 1e-12 * dw:max_abs())
      for p = 1, S:cols() do assert.are.equal(0, S:get(3, p)) end
      -- one layer: those columns of the whole
      local S2, D2 = pk.attribute.weights(traj, { layer = 2 })
      local off = 5 * 3 + 5
      for i = 1, m do for p = 1, S2:cols() do assert.are.equal(S:get(i, off + p), S2:get(i, p)) end end
      for p = 1, D2:cols() do assert.are.equal(Dc:get(1, off + p), D2:get(1, p)) end
    end)
  end

  it("for gd, row i is sum_s -eta_s w_i J_i(w_s)^T l'_i(w_s) / m from explicit Jacobians", function()
    local W = weights{ [2] = 0.5, [6] = 3 }
    local _, traj = run(OPTS[2], { record = true, weights = W })
    local S, Dc = pk.attribute.weights(traj)
    local lrs = traj:lrs()
    local want, dec = pk.zeros(m, S:cols()), pk.zeros(1, S:cols())
    for s = 0, #traj - 1 do
      local net = traj:network(s)
      local J, F, th = net:jacobian(X), net:forward(X), traj:weights(s)
      for i = 1, m do
        for p = 1, S:cols() do
          local g = 0
          for k = 1, 2 do g = g + J:get((i - 1) * 2 + k, p) * (F:get(i, k) - Y:get(i, k)) end
          want:set(i, p, want:get(i, p) - lrs[s + 1] * W:get(i, 1) * g / m)
        end
      end
      for p = 1, S:cols() do dec:set(1, p, dec:get(1, p) - lrs[s + 1] * 0.05 * th:get(p, 1)) end
    end
    assert.is_true(H.max_rel(S, want) < 1e-12)
    assert.is_true(H.max_rel(Dc, dec) < 1e-12)
  end)
end)

describe("pk.attribute.lds", function()
  -- a linear model on mse: retraining is nearly linear in the weights, so
  -- the metagradient predicts subsets to second order
  local n, nq = 40, 8
  local Xl, Yl, Xql = pk.randn(n, 3, 61), pk.randn(n, 1, 62), pk.randn(nq, 3, 63)
  local net = pk.network{ sizes = { 3, 1 }, seed = 5 }
  local train = { lr = 0.1, steps = 60 }
  local traj = net:clone():train{ X = Xl, Y = Yl, lr = 0.1, steps = 60, seed = 1, record = true, progress = false }
  local M = pk.attribute.metagradient(traj, Xql)
  local R = pk.randn(nq, n, 64)

  it("is close to 1 for exact scores and a small dropped fraction, near 0 for random scores", function()
    local res, data = pk.attribute.lds{ net = net, X = Xl, Y = Yl, train = train, Xq = Xql,
      scores = { mg = M, random = R }, subsets = 40, fraction = 0.95, progress = false }
    assert.is_true(res.mg.lds > 0.95, res.mg.lds)
    assert.are.equal(nq, res.mg.defined)
    assert.is_true(math.abs(res.random.lds) < 4 * res.random.se + 0.05, res.random.lds)
    assert.are.same({ 40, n }, { data.masks:rows(), data.masks:cols() })
    for j = 1, 40 do assert.are.equal(38, data.masks:row(j):sum()) end
    -- reuse scores new matrices without retraining, to the same numbers
    local again = pk.attribute.lds{ scores = { mg = M }, reuse = data }
    assert.are.equal(res.mg.lds, again.mg.lds)
    -- the observed outputs are those of retraining with the masks as weights
    local w = data.masks:row(3):t()
    local r = net:clone()
    r:train{ X = Xl, Y = Yl, lr = 0.1, steps = 60, seed = 1, weights = w:copy(), progress = false }
    local F = r:forward(Xql)
    for q = 1, nq do assert.are.equal(F:get(q, 1), data.outputs:get(3, q)) end
  end)

  it("ranks ties by their average rank (Spearman)", function()
    -- 6 subsets of 4 examples; scores with ties in the predicted sums
    local masks = pk.matrix{ { 1, 1, 0, 0 }, { 1, 0, 1, 0 }, { 0, 1, 1, 0 }, { 1, 0, 0, 1 }, { 0, 0, 1, 1 }, { 0, 1, 0, 1 } }
    local outputs = pk.matrix{ { 3 }, { 1 }, { 4 }, { 1 }, { 5 }, { 9 } }
    local S = pk.matrix{ { 1, 1, 2, 0 } }       -- predicted: 2, 3, 3, 1, 2, 1
    local res = pk.attribute.lds{ scores = { s = S }, reuse = { masks = masks, outputs = outputs } }
    local function avg_ranks(v)
      local r = {}
      for i = 1, #v do
        local less, eq = 0, 0
        for j = 1, #v do
          if v[j] < v[i] then less = less + 1 elseif v[j] == v[i] then eq = eq + 1 end
        end
        r[i] = less + (eq + 1) / 2
      end
      return r
    end
    local a, b = avg_ranks{ 2, 3, 3, 1, 2, 1 }, avg_ranks{ 3, 1, 4, 1, 5, 9 }
    local ma, mb, sab, saa, sbb = 0, 0, 0, 0, 0
    for i = 1, 6 do ma, mb = ma + a[i] / 6, mb + b[i] / 6 end
    for i = 1, 6 do
      sab = sab + (a[i] - ma) * (b[i] - mb)
      saa = saa + (a[i] - ma) ^ 2
      sbb = sbb + (b[i] - mb) ^ 2
    end
    assert.is_true(math.abs(res.s.lds - sab / math.sqrt(saa * sbb)) < 1e-15)
    -- a constant prediction has no rank correlation: undefined, not 0
    local c = pk.attribute.lds{ scores = { z = pk.zeros(1, 4) }, reuse = { masks = masks, outputs = outputs } }
    assert.are.equal(0, c.z.defined)
    assert.is_true(c.z.per_query:get(1, 1) ~= c.z.per_query:get(1, 1))
  end)

  it("picks each query's output from a table of scores", function()
    local _, traj3 = run(OPTS[1], { record = true, loss = "softmax" })
    local Ms = pk.attribute.metagradient(traj3, Xq)
    local net3 = net0(3)
    local tr = { loss = "softmax", lr = 0.2, steps = STEPS, seed = 3 }
    local res, data = pk.attribute.lds{ net = net3, X = X, Y = labels, train = tr, Xq = Xq,
      scores = { mg = Ms }, subsets = 6, output = { 1, 3, 2 }, progress = false }
    local per = res.mg.per_query
    for q, k in ipairs{ 1, 3, 2 } do
      local one = pk.attribute.lds{ scores = { s = Ms[k] }, reuse = data, output = k }
      assert.are.equal(one.s.per_query:get(q, 1), per:get(q, 1))
    end
    assert.are.equal(3, res.mg.defined)
  end)
end)

describe("pk.attribute.remove_top", function()
  it("retrains without each query's top k and reports the change", function()
    local n, nq = 30, 4
    local Xl, Yl, Xql = pk.randn(n, 3, 71), pk.randn(n, 1, 72), pk.randn(nq, 3, 73)
    local net = pk.network{ sizes = { 3, 1 }, seed = 5 }
    local train = { lr = 0.1, steps = 50, seed = 2 }
    local traj = net:clone():train{ X = Xl, Y = Yl, lr = 0.1, steps = 50, seed = 2, record = true, progress = false }
    local M = pk.attribute.metagradient(traj, Xql)
    local res, full = pk.attribute.remove_top{ net = net, X = Xl, Y = Yl, train = train, Xq = Xql,
      scores = { mg = M }, k = { 1, 3 }, progress = false }
    -- the full run is the recorded one
    assert.are.equal(0, (full - traj:network(#traj):forward(Xql)):max_abs())
    -- one query's top 3 removed by hand
    local q = 2
    local order = {}
    for i = 1, n do order[i] = i end
    table.sort(order, function(a, b)
      local sa, sb = M:get(q, a), M:get(q, b)
      if sa ~= sb then return sa > sb end
      return a < b
    end)
    local W = pk.ones(n, 1)
    for j = 1, 3 do W:set(order[j], 1, 0) end
    local r = net:clone()
    r:train{ X = Xl, Y = Yl, lr = 0.1, steps = 50, seed = 2, weights = W, progress = false }
    local want = r:forward(Xql):get(q, 1) - full:get(q, 1)
    assert.are.equal(want, res.mg.change:get(q, 2))
    -- removing what pushed f up brings it down, about by the scores' sum
    local s = 0
    for j = 1, 3 do s = s + M:get(q, order[j]) end
    assert.is_true(want < 0 and math.abs(want + s) < 0.2 * s)
    assert.is_nil(res.mg.flip_rate)
    local mean = 0
    for i = 1, nq do mean = mean + res.mg.change:get(i, 1) / nq end
    assert.is_true(math.abs(res.mg.mean_change[1] - mean) < 1e-15)
  end)
end)

describe("per-query outputs", function()
  it("give each query's row of the all-outputs scores, for every method", function()
    local _, traj = run(OPTS[1], { record = true })
    local net = traj:network(#traj)
    local pick = { 2, 1, 2 }
    local calls = {
      function(o) return pk.attribute.metagradient(traj, Xq, o) end,
      function(o) return pk.attribute.tracin(traj, Xq, o) end,
      function(o) o.damping = 1; return pk.attribute.influence(net, X, Y, Xq, o) end,
      function(o) return pk.attribute.representer(net, X, Y, Xq, o) end,
    }
    for _, f in ipairs(calls) do
      local all, one = f{}, f{ output = pick }
      assert.are.same({ 3, m }, { one:rows(), one:cols() })
      for q, k in ipairs(pick) do
        for i = 1, m do
          local a, b = all[k]:get(q, i), one:get(q, i)
          assert.is_true(math.abs(a - b) <= 1e-13 * math.max(1, math.abs(a)))
        end
      end
    end
  end)
end)

describe("attribution input checks", function()
  local _, traj = run(OPTS[1], { record = true })
  local net = traj:network(#traj)
  local function bad(fn, pattern, f, ...)
    local err = H.raises(pattern, f, ...)
    assert.truthy(err:find(fn, 1, true), err)
  end
  it("name the function and the option", function()
    local Xbad = pk.randn(2, 4, 1)
    bad("metagradient", "Xq have 4 columns", pk.attribute.metagradient, traj, Xbad)
    bad("tracin", "Xq have 4 columns", pk.attribute.tracin, traj, Xbad)
    bad("influence", "Xq have 4 columns", pk.attribute.influence, net, X, Y, Xbad)
    bad("representer", "Xq have 4 columns", pk.attribute.representer, net, X, Y, Xbad)
    bad("metagradient", "option 'output' must be in 1..2", pk.attribute.metagradient, traj, Xq, { output = 3 })
    bad("tracin", "every must be >= 1", pk.attribute.tracin, traj, Xq, { every = 0 })
    bad("influence", "unknown solver 'lu'", pk.attribute.influence, net, X, Y, Xq, { solver = "lu" })
    bad("influence", "damping", pk.attribute.influence, net, X, Y, Xq, { damping = -1 })
    bad("influence", "Y has 3 rows", pk.attribute.influence, net, X, Y:slice(1, 3), Xq)
    bad("representer", "lambda", pk.attribute.representer, net, X, Y, Xq, { lambda = 0 })
    bad("representer", "targets", pk.attribute.representer, net, X, Y, Xq, { targets = "x" })
    bad("weights", "layer must be in 1..2", pk.attribute.weights, traj, { layer = 3 })
    local base = { net = net0(), X = X, Y = Y, Xq = Xq, train = { steps = 2 }, progress = false }
    local function lds(extra)
      local t = {}
      for k, v in pairs(base) do t[k] = v end
      for k, v in pairs(extra) do t[k] = v end
      return pk.attribute.lds(t)
    end
    local S = pk.zeros(3, m)
    bad("lds", "scores.s must be 3 x 10 (queries x training examples), got 3 x 9", lds, { scores = { s = pk.zeros(3, 9) } })
    bad("lds", "scores.s[2] must be a 3 x 10 matrix", lds, { scores = { s = { pk.zeros(3, 10), pk.zeros(2, 10) } } })
    bad("lds", "scores.s must be a matrix (queries x training examples) or a table of one per output", lds,
        { scores = { s = { S, S, S } } })
    bad("lds", "option 'fraction' must be in (0, 1)", lds, { scores = { s = S }, fraction = 1 })
    bad("lds", "option 'fraction' must be in (0, 1)", lds, { scores = { s = S }, fraction = 0 })
    bad("lds", "subsets must be >= 2", lds, { scores = { s = S }, subsets = 1 })
    bad("lds", "train.lr must be a number", lds, { scores = { s = S }, train = { lr = function() return 0.1 end } })
    bad("lds", "unknown option 'record'", lds, { scores = { s = S }, train = { record = true } })
    bad("lds", "option 'output'", lds, { scores = { s = S }, output = 3 })
    bad("lds", "option 'output' must list one output per query", lds, { scores = { s = S }, output = { 1 } })
    bad("lds", "option 'Xq'", lds, { scores = { s = S }, Xq = "x" })
    bad("lds", "the queries Xq have 4 columns", lds, { scores = { s = pk.zeros(2, m) }, Xq = Xbad })
    bad("lds", "weights", lds, { scores = { s = S }, train = { weights = pk.ones(3, 1) } })
    bad("lds", "train.weights: entry 2 is -1", lds, { scores = { s = S }, train = { weights = weights{ [2] = -1 } } })
    bad("lds", "train.weights: entry 1 is", lds, { scores = { s = S }, train = { weights = weights{ 0 / 0 } } })
    bad("lds", "option 'train': unknown option 'stpes'", lds, { scores = { s = S }, train = { stpes = 2 } })
    bad("lds", "momentum is not a hyperparameter of gd", lds, { scores = { s = S }, train = { momentum = 0.9 } })
    bad("lds", "option 'net' (the initial network) is required", pk.attribute.lds, { X = X, Y = Y, Xq = Xq, scores = { s = S } })
    bad("lds", "option 'reuse'", pk.attribute.lds, { scores = { s = S }, reuse = { masks = 1 } })
    bad("remove_top", "option 'k': entry 1 must be an integer in 1..9", pk.attribute.remove_top,
        { net = net0(), X = X, Y = Y, Xq = Xq, scores = { s = S }, k = { 10 } })
  end)

  it("stop when progress says so, naming the retraining", function()
    local calls = 0
    local err = H.raises("cancelled at retraining", pk.attribute.lds, { net = net0(), X = X, Y = Y,
      Xq = Xq, train = { steps = 5 }, scores = { s = pk.zeros(3, m) }, subsets = 4,
      progress = function(done, total)
        calls = calls + 1
        assert.are.equal(20, total)
        return done < 7
      end })
    assert.truthy(err:find("retraining 2 of 4", 1, true), err)
    assert.are.equal(7, calls)
    H.raises("metagradient: cancelled at step", pk.attribute.metagradient, traj, Xq, { progress = function() return false end })
  end)
end)

describe("attribution's long calls", function()
  local _, traj = run(OPTS[1], { record = true })
  local net = traj:network(#traj)
  -- a callback that tries obj.f(obj) records the error it gets
  local function attempt(log, f, obj)
    local ok, err = pcall(f, obj)
    log[#log + 1] = ok and "(no error)" or tostring(err)
  end

  it("hold the network they work on: a callback cannot release or train it, afterwards it can", function()
    local log = {}
    local want = pk.attribute.influence(net, X, Y, Xq, { damping = 1 })
    local got = pk.attribute.influence(net, X, Y, Xq, { damping = 1, progress = function()
      attempt(log, net.release, net)
      attempt(log, function(n) n:train{ X = X, Y = Y, steps = 1, progress = false } end, net)
    end })
    assert.is_true(#log >= 2)
    for _, e in ipairs(log) do assert.truthy(e:find("network is in use", 1, true), e) end
    for k = 1, 2 do H.same_bits(want[k], got[k]) end
    local n0 = net0()
    log = {}
    pk.attribute.lds{ net = n0, X = X, Y = Y, Xq = Xq, train = { steps = 2 }, subsets = 2,
      scores = { s = pk.zeros(3, m) }, progress = function() attempt(log, n0.release, n0) end }
    assert.is_true(#log >= 1)
    for _, e in ipairs(log) do assert.truthy(e:find("network is in use", 1, true), e) end
    -- the marks are gone with the calls
    n0:release()
    net:clone():release()
  end)

  it("read the queries and data they were given even when a callback releases them", function()
    local Q = Xq:copy()
    local want = pk.attribute.metagradient(traj, Xq)
    local got = pk.attribute.metagradient(traj, Q, { progress = function() Q:release() end })
    for k = 1, 2 do H.same_bits(want[k], got[k]) end
    local Xc, Yc = X:copy(), Y:copy()
    local res = pk.attribute.lds{ net = net0(), X = Xc, Y = Yc, Xq = Xq, train = { steps = 2 },
      subsets = 3, scores = { s = pk.zeros(3, m) }, progress = function() Xc:release(); Yc:release() end }
    assert.is_not_nil(res.s)
  end)

  it("re-raise a progress callback's error", function()
    H.raises("gave up", pk.attribute.tracin, traj, Xq, { progress = function() error("gave up") end })
    H.raises("gave up", pk.attribute.weights, traj, { progress = function() error("gave up") end })
    H.raises("gave up", pk.attribute.remove_top, { net = net0(), X = X, Y = Y, Xq = Xq,
      train = { steps = 2 }, k = 1, scores = { s = pk.zeros(3, m) },
      progress = function() error("gave up") end })
  end)
end)
