-- Kernel regressors: ridge against the normal equations solved here by
-- Gaussian elimination, the GP posterior, gradient flow against its limit
-- and against explicit gradient descent on the linearized model, files,
-- and every class of bad input.
local H = require "helpers"
local pk = H.pk

local EPS = 2.220446049250313e-16

-- Gaussian elimination with partial pivoting: A (n x n) X = B (n x k),
-- tables of rows
local function solve(A, B)
  local n, k = #A, #B[1]
  local M = {}
  for i = 1, n do
    M[i] = {}
    for j = 1, n do M[i][j] = A[i][j] end
    for j = 1, k do M[i][n + j] = B[i][j] end
  end
  for c = 1, n do
    local p = c
    for r = c + 1, n do if math.abs(M[r][c]) > math.abs(M[p][c]) then p = r end end
    M[c], M[p] = M[p], M[c]
    for r = c + 1, n do
      local f = M[r][c] / M[c][c]
      for j = c, n + k do M[r][j] = M[r][j] - f * M[c][j] end
    end
  end
  local X = {}
  for i = n, 1, -1 do
    X[i] = {}
    for j = 1, k do
      local s = M[i][n + j]
      for q = i + 1, n do s = s - M[i][q] * X[q][j] end
      X[i][j] = s / M[i][i]
    end
  end
  return X
end

local function plus_diag(G, v)
  local A = {}
  for i = 1, #G do
    A[i] = {}
    for j = 1, #G do A[i][j] = G[i][j] + (i == j and v or 0) end
  end
  return A
end

local function fro(t)
  local s = 0
  for i = 1, #t do for j = 1, #t[i] do s = s + t[i][j] ^ 2 end end
  return math.sqrt(s)
end

local function diff(a, b)   -- Frobenius norm of a - b, tables or matrices
  if type(a) ~= "table" then a = a:totable() end
  if type(b) ~= "table" then b = b:totable() end
  local s = 0
  for i = 1, #a do for j = 1, #a[i] do s = s + (a[i][j] - b[i][j]) ^ 2 end end
  return math.sqrt(s)
end

local function all_finite(M)
  for _, r in ipairs(M:totable()) do
    for _, v in ipairs(r) do if v ~= v or math.abs(v) == math.huge then return false end end
  end
  return true
end

-- CRC-32 with the zlib polynomial, to forge valid frames around bad payloads
local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do c = (c & 1) ~= 0 and (0xedb88320 ~ (c >> 1)) or (c >> 1) end
  crc_table[i] = c
end
local function crc32(str)
  local c = 0xffffffff
  for i = 1, #str do c = crc_table[(c ~ str:byte(i)) & 0xff] ~ (c >> 8) end
  return c ~ 0xffffffff
end

local X = pk.randn(12, 3, 21)
local Y = pk.randn(12, 2, 22)
local Xq = pk.randn(5, 3, 23)

describe("pk.machine.ridge", function()
  local K, lam = pk.kernel.rbf{ gamma = 0.3 }, 1e-2

  it("solves (K + lambda I) alpha = Y like the normal equations", function()
    local G = K:gram(X):totable()
    local want = solve(plus_diag(G, lam), Y:totable())
    local m = pk.machine.ridge(K, X, Y, { lambda = lam })
    assert.are.equal("ridge", m:kind())
    assert.is_nil(m:warning())
    local alpha = m:coefficients()
    assert.are.same({ 12, 2 }, { alpha:shape() })
    -- both solves are backward stable: forward error <= ~ n cond eps each,
    -- cond(K + lambda I) <= (trace K + lambda) / lambda = (12 + 0.01)/0.01
    -- for an rbf Gram (unit diagonal); a factor 10 for the constants
    local cond = (12 + lam) / lam
    local tol = 2 * 10 * 12 * cond * EPS * fro(want)
    assert.is_true(diff(alpha, want) <= tol, ("%g > %g"):format(diff(alpha, want), tol))
    -- predictions are K(Xq, X) alpha
    local P = m:predict(Xq)
    local Pw = K:gram(Xq, X) * pk.matrix(want)
    assert.is_true(diff(P, Pw) <= tol * K:gram(Xq, X):norm() + 1e-14)
    -- on the training set (K + lambda I) alpha = Y gives f(X) = Y - lambda alpha
    local F = m:predict(X)
    assert.is_true(diff(F, Y - lam * alpha) <= 1e-13 * Y:norm())
  end)

  it("fits several outputs at once, each as if alone", function()
    local Y3 = pk.randn(12, 3, 31)
    local m = pk.machine.ridge(K, X, Y3, { lambda = lam })
    local P = m:predict(Xq):totable()
    for c = 1, 3 do
      local col = pk.zeros(12, 1)
      for i = 1, 12 do col:set(i, 1, Y3:get(i, c)) end
      local p1 = pk.machine.ridge(K, X, col, { lambda = lam }):predict(Xq)
      for i = 1, 5 do assert.is_true(math.abs(P[i][c] - p1:get(i, 1)) <= 1e-13) end
    end
  end)

  it("defaults lambda to 1e-3", function()
    local a = pk.machine.ridge(K, X, Y):predict(Xq)
    local b = pk.machine.ridge(K, X, Y, { lambda = 1e-3 }):predict(Xq)
    assert.are.equal(0, (a - b):max_abs())
  end)

  it("falls back to an eigendecomposition when K + lambda I is not positive definite", function()
    -- eigenvalues 3, -1, 3: with lambda = 0.5 indefinite but invertible, so
    -- the fallback must give the exact solution
    local G = pk.matrix{ { 1, 2, 0 }, { 2, 1, 0 }, { 0, 0, 3 } }
    local Kp = pk.kernel.precomputed(G)
    local idx = pk.matrix{ 1, 2, 3 }
    local Yp = pk.matrix{ { 1, -1 }, { 2, 0.5 }, { -3, 4 } }
    local m = pk.machine.ridge(Kp, idx, Yp, { lambda = 0.5 })
    assert.truthy(m:warning():find("not numerically positive definite", 1, true))
    assert.truthy(m:warning():find("dropping 0 eigenvalues", 1, true))
    local want = solve(plus_diag(G:totable(), 0.5), Yp:totable())
    assert.is_true(diff(m:coefficients(), want) <= 1e-14 * fro(want))
    -- singular: G + 0.5 I = diag(0, 1.5): the pseudo-inverse, never NaN
    local m2 = pk.machine.ridge(pk.kernel.precomputed(pk.matrix{ { -0.5, 0 }, { 0, 1 } }),
      pk.matrix{ 1, 2 }, pk.matrix{ 4, 3 }, { lambda = 0.5 })
    assert.truthy(m2:warning():find("dropping 1 eigenvalues", 1, true))
    local a = m2:coefficients()
    assert.are.equal(0, a:get(1, 1))
    assert.is_true(math.abs(a:get(2, 1) - 2) <= 4 * EPS)
    assert.is_true(all_finite(m2:predict(pk.matrix{ 1, 2 })))
  end)
end)

describe("pk.machine.gp", function()
  local K, noise = pk.kernel.rbf{ gamma = 0.4 }, 1e-2

  it("has the ridge mean with lambda = noise, and the posterior variance", function()
    local m = pk.machine.gp(K, X, Y, { noise = noise })
    assert.are.equal("gp", m:kind())
    local mean, var = m:predict(Xq)
    local r = pk.machine.ridge(K, X, Y, { lambda = noise })
    assert.are.equal(0, (mean - r:predict(Xq)):max_abs())
    assert.are.same({ 5, 2 }, { var:shape() })
    -- var(x) = k(x, x) - k_x^T (K + noise I)^-1 k_x, solved here; the error
    -- of either solve is <= ~ n cond eps ||k||^2 / noise with cond <=
    -- (12 + noise)/noise: 10 * 12 * 1201 * eps * 12 / 0.01 ~ 4e-7 would be the
    -- crude bound, but k^T A^-1 k <= k(x,x) = 1 keeps the actual error
    -- within n cond eps; 1e-10 sits between the two
    local G = K:gram(X):totable()
    local Kq = K:gram(X, Xq):totable()            -- 12 x 5: k_x as columns
    local sol = solve(plus_diag(G, noise), Kq)
    for j = 1, 5 do
      local s = 0
      for i = 1, 12 do s = s + Kq[i][j] * sol[i][j] end
      local want = math.max(1 - s, 0)
      assert.is_true(math.abs(var:get(j, 1) - want) <= 1e-10, ("%g vs %g"):format(var:get(j, 1), want))
      assert.are.equal(var:get(j, 1), var:get(j, 2))   -- one variance per query
    end
  end)

  it("is at most the noise at training points and the prior far away", function()
    local m = pk.machine.gp(K, X, Y, { noise = noise })
    local _, v = m:predict(X)
    -- conditioning on y_i alone leaves k_ii noise / (k_ii + noise) < noise;
    -- more data only lowers it
    for i = 1, 12 do
      assert.is_true(v:get(i, 1) >= 0 and v:get(i, 1) <= noise, v:get(i, 1))
    end
    local _, vf = m:predict(pk.matrix{ { 50, 50, 50 } })
    assert.is_true(math.abs(vf:get(1, 1) - 1) <= 1e-12)      -- k(x,x) = 1, k_x = 0
  end)

  it("variances through the eigendecomposition when the Cholesky fails", function()
    local G = pk.matrix{ { 1, 2, 0 }, { 2, 1, 0 }, { 0, 0, 3 } }
    local m = pk.machine.gp(pk.kernel.precomputed(G), pk.matrix{ 1, 2, 3 },
      pk.matrix{ 1, 2, 3 }, { noise = 0.5 })
    assert.truthy(m:warning())
    local _, v = m:predict(pk.matrix{ 1, 3 })
    local A = plus_diag(G:totable(), 0.5)
    for q, i in ipairs{ 1, 3 } do
      local k = { { G:get(1, i) }, { G:get(2, i) }, { G:get(3, i) } }
      local s = solve(A, k)
      local want = math.max(G:get(i, i) - (k[1][1] * s[1][1] + k[2][1] * s[2][1] + k[3][1] * s[3][1]), 0)
      assert.is_true(math.abs(v:get(q, 1) - want) <= 1e-14, ("%g vs %g"):format(v:get(q, 1), want))
    end
  end)
end)

describe("pk.machine.gradient_flow", function()
  local K = pk.kernel.rbf{ gamma = 0.5 }

  it("at t = math.huge equals ridge as lambda -> 0 on a positive definite Gram", function()
    local Xs = pk.randn(8, 2, 41) * 1.5
    local Ys = pk.randn(8, 2, 42)
    local w = pk.eigh(K:gram(Xs))
    local lmin, lmax = w:get(1, 1), w:get(8, 1)
    assert.is_true(lmin > 0.05)                 -- well conditioned by construction
    local lam = 1e-12
    local f = pk.machine.gradient_flow(K, Xs, Ys, { lr = 0.1, t = math.huge })
    local r = pk.machine.ridge(K, Xs, Ys, { lambda = lam })
    -- (K + lam)^-1 - K^-1 = -lam K^-2 + O(lam^2): ||d alpha|| <= lam/lmin^2 ||Y||,
    -- plus each side's rounding, ~ n cond eps ||alpha||
    local a = f:coefficients()
    local tol = lam / lmin ^ 2 * Ys:norm() + 2 * 10 * 8 * (lmax / lmin) * EPS * a:norm()
    assert.is_true(diff(a, r:coefficients()) <= tol)
    local Q = pk.randn(3, 2, 43)
    assert.is_true(diff(f:predict(Q), r:predict(Q)) <= tol * K:gram(Q, Xs):norm())
    -- the limit interpolates the training targets
    assert.is_true(diff(f:predict(Xs), Ys) <= 1e-12 * Ys:norm())
  end)

  it("at t = math.huge uses the pseudo-inverse on a singular Gram", function()
    -- rows 1 and 4 equal: K(X, X) has a null vector e1 - e4, the flow can
    -- only reach targets with equal values there, and converges to their
    -- mean (the projection of Y on the range of K); elsewhere it interpolates
    local Xd = pk.matrix{ { 0, 0 }, { 1, 0 }, { 0, 1.5 }, { 0, 0 } }
    local Yd = pk.matrix{ 1, 2, 3, 5 }
    local f = pk.machine.gradient_flow(K, Xd, Yd, { t = math.huge })
    local P = f:predict(Xd)
    assert.is_true(all_finite(P))
    assert.is_true(math.abs(P:get(1, 1) - 3) <= 1e-10)
    assert.is_true(math.abs(P:get(4, 1) - 3) <= 1e-10)
    assert.is_true(math.abs(P:get(2, 1) - 2) <= 1e-10)
    assert.is_true(math.abs(P:get(3, 1) - 3) <= 1e-10)
    -- at a long finite time the same: the null direction takes the l -> 0
    -- limit c = lr t / n of (1 - exp(-c l))/l, multiplied by K v ~ rounding
    -- (2500 * 1e-16), the others have decayed by exp(-c l_min) ~ 0
    local fl = pk.machine.gradient_flow(K, Xd, Yd, { lr = 1, t = 1e4 })
    assert.is_true(diff(fl:predict(Xd), P) <= 1e-9)
  end)

  it("matches explicit gradient descent on the linearized model", function()
    -- f <- f - (eta/m) K (f - Y) at the training points, the queries moving
    -- with K(Xq, X). In the eigenbasis of K a component with x = eta l/m
    -- decays by (1 - x)^s under descent and by exp(-s x) under the flow;
    -- log(1 - x) >= -x - x^2 / (2(1 - x)) gives
    --   0 <= exp(-s x) - (1 - x)^s <= d(x) = exp(-s x) s x^2 / (2 (1 - x)),
    -- so at training points ||f_gd - f_flow|| <= sqrt(sum d_i^2 (v_i.r0)^2)
    -- per output, and at a query |.| <= ||k_q|| sqrt(sum (d_i/l_i)^2 (v_i.r0)^2).
    local n, steps = 10, 60
    local Xg, Yg, Xgq = pk.randn(n, 2, 51), pk.randn(n, 2, 52), pk.randn(4, 2, 53)
    local Gm = K:gram(Xg)
    local w, V = pk.eigh(Gm)
    local eta = 0.05 * n / w:get(n, 1)      -- x_max = 0.05, s x_max = 3
    local G, Gq = Gm:totable(), K:gram(Xgq, Xg):totable()
    local f, fq = {}, {}
    for i = 1, n do f[i] = { 0, 0 } end
    for i = 1, 4 do fq[i] = { 0, 0 } end
    for _ = 1, steps do
      local r = {}
      for i = 1, n do r[i] = { f[i][1] - Yg:get(i, 1), f[i][2] - Yg:get(i, 2) } end
      for c = 1, 2 do
        for i = 1, n do
          local s = 0
          for j = 1, n do s = s + G[i][j] * r[j][c] end
          f[i][c] = f[i][c] - eta / n * s
        end
        for i = 1, 4 do
          local s = 0
          for j = 1, n do s = s + Gq[i][j] * r[j][c] end
          fq[i][c] = fq[i][c] - eta / n * s
        end
      end
    end
    local flow = pk.machine.gradient_flow(K, Xg, Yg, { lr = eta, t = steps })
    local P, Pq = flow:predict(Xg):totable(), flow:predict(Xgq):totable()
    local proj = (V:t() * Yg):totable()     -- v_i . r0 with r0 = Y - f0 = Y
    for c = 1, 2 do
      local bt, bq = 0, 0
      for i = 1, n do
        local l = w:get(i, 1)
        local x = eta * l / n
        local d = math.exp(-steps * x) * steps * x * x / (2 * (1 - x))
        bt = bt + (d * proj[i][c]) ^ 2
        bq = bq + (steps * eta / n * x / (2 * (1 - x)) * math.exp(-steps * x) * proj[i][c]) ^ 2
      end
      bt, bq = math.sqrt(bt), math.sqrt(bq)
      local et, eq = 0, 0
      for i = 1, n do et = et + (P[i][c] - f[i][c]) ^ 2 end
      et = math.sqrt(et)
      assert.is_true(et <= bt + 1e-12, ("train: %g > bound %g"):format(et, bt))
      -- the bound is within a factor 3 of the truth: a wrong lr or m would
      -- break it by far more
      assert.is_true(et >= bt / 3, ("train: %g much below bound %g"):format(et, bt))
      for i = 1, 4 do
        local kn = 0
        for j = 1, n do kn = kn + Gq[i][j] ^ 2 end
        local e = math.abs(Pq[i][c] - fq[i][c])
        assert.is_true(e <= math.sqrt(kn) * bq + 1e-12, ("query: %g > %g"):format(e, math.sqrt(kn) * bq))
      end
    end
    -- t = 0 is f0 = 0 everywhere
    assert.are.equal(0, pk.machine.gradient_flow(K, Xg, Yg, { lr = eta, t = 0 }):predict(Xgq):max_abs())
  end)

  it("starts from f0 when given, which predict then needs at the queries", function()
    local F0, F0q = pk.randn(12, 2, 61), pk.randn(5, 2, 62)
    local f = pk.machine.gradient_flow(K, X, Y, { lr = 0.5, t = 7, f0 = F0 })
    local g = pk.machine.gradient_flow(K, X, Y - F0, { lr = 0.5, t = 7 })
    assert.are.equal(0, (f:predict(Xq, F0q) - (g:predict(Xq) + F0q)):max_abs())
    H.raises("fitted with f0, so it needs f0 at the queries too", f.predict, f, Xq)
    H.raises("fitted without f0; f0q has no meaning", g.predict, g, Xq, F0q)
    H.raises("f0q is 2 x 2, expected 5 x 2", f.predict, f, Xq, pk.zeros(2, 2))
    H.raises("f0 is 3 x 2 but Y is 12 x 2", pk.machine.gradient_flow, K, X, Y, { f0 = pk.zeros(3, 2) })
    H.raises("option 'f0' must be a pathkernel.Matrix, got table", pk.machine.gradient_flow, K, X, Y, { f0 = {} })
    local Fn = F0:copy()
    Fn:set(3, 1, 0 / 0)
    H.raises("f0 has NaN or infinite values (row 3)", pk.machine.gradient_flow, K, X, Y, { f0 = Fn })
  end)

  it("reads several outputs example-major with a block tangent kernel", function()
    -- the same flow on the (nK) x (nK) block Gram, once through the
    -- network's tangent kernel with Y n x K, once through a precomputed
    -- Gram over nK index rows with Y flattened: c = lr t / n, so the
    -- second run's t is scaled by K to keep the same c
    local net = pk.network{ sizes = {3, 16, 2}, activation = "tanh", seed = 1 }
    local Kt = pk.kernel.tangent(net)
    local X, Y, Xq = pk.randn(6, 3, 1), pk.randn(6, 2, 2), pk.randn(4, 3, 3)
    local P = pk.machine.gradient_flow(Kt, X, Y, { lr = 0.5, t = 10 }):predict(Xq)
    local all = pk.zeros(10, 3)
    for i = 1, 6 do for j = 1, 3 do all:set(i, j, X:get(i, j)) end end
    for i = 1, 4 do for j = 1, 3 do all:set(6 + i, j, Xq:get(i, j)) end end
    local pre = pk.kernel.precomputed(Kt:gram(all))
    local idx, Yf, qidx = pk.zeros(12, 1), pk.zeros(12, 1), pk.zeros(8, 1)
    for r = 1, 12 do idx:set(r, 1, r); Yf:set(r, 1, Y:get((r - 1) // 2 + 1, (r - 1) % 2 + 1)) end
    for r = 1, 8 do qidx:set(r, 1, 12 + r) end
    local R = pk.machine.gradient_flow(pre, idx, Yf, { lr = 0.5, t = 20 }):predict(qidx)
    for x = 1, 4 do for k = 1, 2 do
      assert.is_true(math.abs(P:get(x, k) - R:get((x - 1) * 2 + k, 1)) <= 1e-12 * math.max(1, math.abs(R:get((x - 1) * 2 + k, 1))))
    end end
  end)

  it("refuses to run to t = inf on an indefinite Gram and reports overflow", function()
    local Kp = pk.kernel.precomputed(pk.matrix{ { 1, 2 }, { 2, 1 } })   -- eigenvalues -1, 3
    local idx, Yp = pk.matrix{ 1, 2 }, pk.matrix{ 1, 0 }
    H.raises("not positive semidefinite), so the flow diverges", pk.machine.gradient_flow, Kp, idx, Yp)
    H.raises("the flow overflows by t = 10000", pk.machine.gradient_flow, Kp, idx, Yp, { t = 1e4 })
    -- a short time is fine: exp(c) for the negative eigenvalue, c = lr t / m
    local f = pk.machine.gradient_flow(Kp, idx, Yp, { t = 1 })
    assert.is_true(all_finite(f:predict(idx)))
  end)
end)

describe("regressor files", function()
  it("save and pk.load give the same predictions", function()
    local cases = {
      pk.machine.ridge(pk.kernel.rbf{ gamma = 0.7 }, X, Y, { lambda = 0.1 }),
      pk.machine.gp(pk.kernel.ntk{ depth = 2, activation = "erf", sigma_w = 1.3 }, X, Y, { noise = 0.05 }),
      pk.machine.gradient_flow(pk.kernel.laplacian{ gamma = 0.2 }, X, Y, { lr = 2, t = 3 }),
      pk.machine.ridge(pk.kernel.poly{ degree = 2, c = 0.5 }, X, Y),
      pk.machine.gp(pk.kernel.linear(), X, Y),
      pk.machine.gradient_flow(pk.kernel.nngp{ depth = 3 }, X, Y, { f0 = pk.ones(12, 2) }),
      -- all ones Gram (gamma underflows the distances) plus noise below
      -- rounding: the Cholesky fails, the GP keeps an eigendecomposition
      pk.machine.gp(pk.kernel.rbf{ gamma = 1e-30 }, X, Y, { noise = 1e-300 }),
    }
    assert.truthy(cases[7]:warning())
    for k, m in ipairs(cases) do
      local p = H.tmpname(".pkr")
      assert.is_true(m:save(p))
      local l = pk.load(p)
      os.remove(p)
      assert.are.equal(m:kind(), l:kind())
      assert.are.equal(m:warning(), l:warning())
      local f0q = k == 6 and pk.ones(5, 2) or nil
      local a, va = m:predict(Xq, f0q)
      local b, vb = l:predict(Xq, f0q)
      assert.are.equal(0, (a - b):max_abs(), tostring(k))
      if va then assert.are.equal(0, (va - vb):max_abs()) end
      assert.truthy(tostring(l):find("pathkernel.Regressor " .. m:kind(), 1, true))
    end
  end)

  it("cannot save a precomputed Gram, and says why (an error: no I/O failed)", function()
    local m = pk.machine.ridge(pk.kernel.precomputed(pk.eye(3)), pk.matrix{ 1, 2, 3 }, pk.matrix{ 1, 2, 3 })
    local p = H.tmpname(".pkr")
    H.raises("precomputed Gram, which a model file cannot hold", m.save, m, p)
    assert.is_nil(io.open(p))
  end)

  it("checks what it loads", function()
    local m = pk.machine.ridge(pk.kernel.rbf(), X, Y)
    local p = H.tmpname(".pkr")
    assert.is_true(m:save(p))
    local s = H.read_bytes(p)
    assert.are.equal(5, s:byte(13))                   -- the tag: a kernel regressor
    H.write_bytes(p, s:sub(1, #s - 9))
    H.raises("length check failed", pk.load, p)
    -- valid frames (checksum recomputed) around payloads that lie: the
    -- payload starts at byte 25 with u32 kind, u32 kernel type, f64 gamma
    local function forge(pos, bytes)
      local body = s:sub(1, pos - 1) .. bytes .. s:sub(pos + #bytes, #s - 4)
      H.write_bytes(p, body .. string.pack("<I4", crc32(body)))
    end
    forge(25, string.pack("<I4", 9))
    H.raises("saved model: unknown kind 9", pk.load, p)
    forge(29, string.pack("<I4", 77))
    H.raises("saved kernel: unknown kernel type 77", pk.load, p)
    forge(33, string.pack("<d", -1))
    H.raises("gamma must be a positive finite number, got -1", pk.load, p)
    forge(25 + 4 + 4 + 32 + 16, string.pack("<I8", 2))
    H.raises("bad output counts", pk.load, p)
    forge(25 + 4 + 4 + 32 + 16 + 16 + 8, string.pack("<I8", 1e15))
    H.raises("does not fit the file", pk.load, p)
    os.remove(p)
    local ok, err = m:save("/nonexistent-dir/x.pkr")
    assert.is_nil(ok)
    assert.truthy(err:find("nonexistent", 1, true))
  end)
end)

describe("regressor arguments", function()
  local K = pk.kernel.rbf()

  it("refuses non-positive regularization and bad times", function()
    for _, v in ipairs{ 0, -1, 0 / 0, math.huge } do
      H.raises("ridge: lambda must be a positive finite number", pk.machine.ridge, K, X, Y, { lambda = v })
      H.raises("gp: noise must be a positive finite number", pk.machine.gp, K, X, Y, { noise = v })
      H.raises("gradient_flow: lr must be a positive finite number", pk.machine.gradient_flow, K, X, Y, { lr = v })
    end
    H.raises("t must be >= 0 (math.huge for the limit)", pk.machine.gradient_flow, K, X, Y, { t = -1 })
    H.raises("t must be >= 0", pk.machine.gradient_flow, K, X, Y, { t = 0 / 0 })
  end)

  it("refuses mismatched shapes", function()
    H.raises("ridge: X has 12 rows but Y has 11", pk.machine.ridge, K, X, Y:slice(1, 11))
    H.raises("gp: X has 12 rows but Y has 5", pk.machine.gp, K, X, Xq)
    local Kp = pk.kernel.precomputed(pk.eye(12), X)
    H.raises("ridge: X has 2 columns but the precomputed kernel takes 3 inputs",
      pk.machine.ridge, Kp, pk.zeros(12, 2), Y)
    local m = pk.machine.ridge(K, X, Y)
    H.raises("predict: Xq has 2 columns but the model was fitted on 3", m.predict, m, pk.zeros(4, 2))
    H.raises("X has no rows: nothing to fit", pk.machine.ridge, K, pk.zeros(0, 3), pk.zeros(0, 1))
    H.raises("Y has no columns", pk.machine.ridge, K, X, pk.zeros(12, 0))
    assert.are.same({ 0, 2 }, { m:predict(pk.zeros(0, 3)):shape() })
  end)

  it("refuses NaN in the training data and passes NaN queries through", function()
    local Xn = X:copy()
    Xn:set(4, 2, 0 / 0)
    H.raises("ridge: X has NaN or infinite values (row 4)", pk.machine.ridge, K, Xn, Y)
    local Yn = Y:copy()
    Yn:set(7, 1, math.huge)
    H.raises("gp: Y has NaN or infinite values (row 7)", pk.machine.gp, K, X, Yn)
    local Gn = pk.eye(3)
    Gn:set(2, 3, 0 / 0)
    H.raises("Gram K(X, X) of the precomputed kernel has NaN or infinite entries",
      pk.machine.ridge, pk.kernel.precomputed(Gn), pk.matrix{ 1, 2, 3 }, pk.matrix{ 1, 2, 3 })
    local m = pk.machine.gp(K, X, Y)
    local Q = Xq:copy()
    Q:set(2, 1, 0 / 0)
    local mean, var = m:predict(Q)
    assert.is_true(mean:get(2, 1) ~= mean:get(2, 1) and var:get(2, 1) ~= var:get(2, 1))
    assert.is_true(mean:get(1, 1) == mean:get(1, 1) and var:get(3, 2) == var:get(3, 2))
  end)

  it("checks option names and argument types", function()
    H.raises("ridge: unknown option 'lamda' (valid options: lambda, progress)", pk.machine.ridge, K, X, Y, { lamda = 1 })
    H.raises("gp: unknown option 'lambda' (valid options: noise, progress)", pk.machine.gp, K, X, Y, { lambda = 1 })
    H.raises("valid options: lr, t, f0, progress", pk.machine.gradient_flow, K, X, Y, { steps = 1 })
    H.raises("bad argument #4 to 'machine.ridge' (table of options expected, got number)", pk.machine.ridge, K, X, Y, 0.1)
    H.raises("pathkernel.Kernel expected, got string", pk.machine.ridge, "rbf", X, Y)
    H.raises("pathkernel.Matrix expected, got table", pk.machine.ridge, K, {}, Y)
    H.raises("pathkernel.Regressor expected", pk.machine.ridge(K, X, Y).predict, {}, X)
  end)

  it("refuses a released kernel or model instead of crashing", function()
    local Kr = pk.kernel.rbf()
    local m = pk.machine.ridge(Kr, X, Y)
    Kr:release()
    H.raises("predict: the model's kernel has been released", m.predict, m, Xq)
    H.raises("kernel has been released", pk.machine.ridge, Kr, X, Y)
    local m2 = pk.machine.ridge(pk.kernel.rbf(), X, Y)
    m2:release()
    H.raises("model has been released", m2.predict, m2, Xq)
    assert.are.equal("pathkernel.Regressor (released)", tostring(m2))
    -- the kernel stays alive as long as the model needs it
    local m3 = pk.machine.ridge(pk.kernel.laplacian(), X, Y)
    collectgarbage()
    collectgarbage()
    assert.is_true(all_finite(m3:predict(Xq)))
  end)

  it("reports progress, can be cancelled, and survives a failing callback", function()
    local Xb, Yb = pk.randn(300, 4, 71), pk.randn(300, 1, 72)
    local K3 = pk.kernel.ntk{ depth = 3 }
    local calls, last = 0, 0
    pk.machine.ridge(K3, Xb, Yb, { progress = function(done, total)
      calls = calls + 1
      assert.is_true(done >= last and done <= total)
      last = done
    end })
    assert.is_true(calls > 0)
    H.raises("cancelled", pk.machine.ridge, K3, Xb, Yb, { progress = function() return false end })
    H.raises("boom", pk.machine.gp, K3, Xb, Yb, { progress = function() error("boom") end })
  end)

  it("refuses a training set beyond the memory limit", function()
    local lim = pk.memory_limit()
    pk.set_memory_limit(1 << 20)
    local ok, err = pcall(pk.machine.ridge, pk.kernel.rbf(), pk.zeros(2000, 1), pk.zeros(2000, 1))
    pk.set_memory_limit(lim)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("above the memory limit", 1, true))
  end)
end)
