-- Kernels defined by parameters (linear, rbf, laplacian, poly), the
-- precomputed kernel, and the infinite-width NNGP / NTK against quadrature
-- of their defining expectations, written here in Lua; rows that hold a NaN
-- or an infinity; bad input.
local H = require "helpers"
local pk = H.pk

local EPS = 2.220446049250313e-16

local function rows(M)
  local t = M:totable()
  return t
end

local function dot(x, y)
  local s = 0
  for k = 1, #x do s = s + x[k] * y[k] end
  return s
end

-- max over entries of |A - B| / tol(i, j): <= 1 means within tolerance
local function worst(A, B, tol)
  local m = 0
  for i = 1, A:rows() do
    for j = 1, A:cols() do
      local e = math.abs(A:get(i, j) - B:get(i, j)) / tol(i, j)
      if e ~= e then return math.huge end
      if e > m then m = e end
    end
  end
  return m
end

-- a deterministic test set with rows of different norms
local X1 = pk.randn(7, 5, 11)
local X2 = pk.randn(6, 5, 12) * 0.7
local d = 5

describe("classical kernels", function()
  local A, B = rows(X1), rows(X2)

  -- Every entry below is a short sum in both computations; a sum of d
  -- products carries at most d*eps*sum|terms| rounding (the standard gamma_d
  -- bound), so tolerances are that bound with a factor 4 for the few extra
  -- operations (norms, exp, pow), never a fixed guess.
  it("linear: x.x'", function()
    local G = pk.kernel.linear():gram(X1, X2)
    assert.is_true(worst(G, pk.matrix((function()
      local t = {}
      for i = 1, #A do t[i] = {} for j = 1, #B do t[i][j] = dot(A[i], B[j]) end end
      return t
    end)()), function(i, j)
      local s = 0
      for k = 1, d do s = s + math.abs(A[i][k] * B[j][k]) end
      return 4 * d * EPS * s + 1e-300
    end) <= 1)
  end)

  it("rbf: exp(-gamma ||x - x'||^2)", function()
    local gamma = 0.35
    local G = pk.kernel.rbf{ gamma = gamma }:gram(X1, X2)
    for i = 1, #A do
      for j = 1, #B do
        local s, n = 0, dot(A[i], A[i]) + dot(B[j], B[j])
        for k = 1, d do s = s + (A[i][k] - B[j][k]) ^ 2 end
        local want = math.exp(-gamma * s)
        -- C forms ||x||^2 + ||x'||^2 - 2 x.x': absolute error in the exponent
        -- up to 4 (d + 2) eps (||x||^2 + ||x'||^2), then relative through exp
        local tol = want * (gamma * 4 * (d + 2) * EPS * 2 * n + 4 * EPS)
        assert.is_true(math.abs(G:get(i, j) - want) <= tol, ("rbf %d,%d"):format(i, j))
      end
    end
  end)

  it("laplacian: exp(-gamma ||x - x'||_1)", function()
    local gamma = 0.6
    local G = pk.kernel.laplacian{ gamma = gamma }:gram(X1, X2)
    for i = 1, #A do
      for j = 1, #B do
        local s = 0
        for k = 1, d do s = s + math.abs(A[i][k] - B[j][k]) end
        local want = math.exp(-gamma * s)
        local tol = want * (gamma * 4 * d * EPS * s + 4 * EPS)
        assert.is_true(math.abs(G:get(i, j) - want) <= tol)
      end
    end
  end)

  it("poly: (x.x' + c)^degree", function()
    for _, p in ipairs{ { 1, 0 }, { 2, 1 }, { 3, 0.5 }, { 5, 2 } } do
      local deg, c = p[1], p[2]
      local G = pk.kernel.poly{ degree = deg, c = c }:gram(X1, X2)
      for i = 1, #A do
        for j = 1, #B do
          local g = dot(A[i], B[j])
          local want = (g + c) ^ deg
          local s = 0
          for k = 1, d do s = s + math.abs(A[i][k] * B[j][k]) end
          -- relative error of the base, times the degree, plus pow's own
          local rel = 4 * (d * EPS * s + EPS * math.abs(g + c)) / math.abs(g + c)
          local tol = math.abs(want) * (deg * rel + 4 * EPS) + 1e-300
          assert.is_true(math.abs(G:get(i, j) - want) <= tol, ("poly %d %d,%d"):format(deg, i, j))
        end
      end
    end
  end)

  it("defaults: rbf and laplacian gamma = 1, poly degree 3 and c = 1", function()
    local x, y = X1:row(1), X2:row(2)
    assert.are.equal(pk.kernel.rbf{ gamma = 1 }:gram(x, y):get(1, 1), pk.kernel.rbf():gram(x, y):get(1, 1))
    assert.are.equal(pk.kernel.laplacian{ gamma = 1 }:gram(x, y):get(1, 1),
      pk.kernel.laplacian{}:gram(x, y):get(1, 1))
    assert.are.equal(pk.kernel.poly{ degree = 3, c = 1 }:gram(x, y):get(1, 1),
      pk.kernel.poly():gram(x, y):get(1, 1))
  end)

  it("K(X, X) is symmetric, equals K(X, copy of X), and its diagonal is diag exactly", function()
    for _, K in ipairs{ pk.kernel.linear(), pk.kernel.rbf{ gamma = 0.2 }, pk.kernel.laplacian{},
                        pk.kernel.poly{ degree = 2 }, pk.kernel.ntk{ depth = 2 },
                        pk.kernel.nngp{ depth = 3, activation = "erf" },
                        pk.kernel.ntk{ depth = 1, activation = "identity" } } do
      local G = K:gram(X1)
      assert.are.equal(0, (G - G:t()):max_abs(), K:name())
      -- dsyrk and dgemm may round differently: a few ulps of the entries
      local Gc = K:gram(X1, X1:copy())
      assert.is_true(H.max_rel(G, Gc) <= 1e-13, K:name())
      -- the diagonal of K(X, X) goes through the same arithmetic as diag
      local dg = K:diag(X1)
      for i = 1, X1:rows() do assert.are.equal(dg:get(i, 1), G:get(i, i), K:name()) end
      -- K(X, X) with the same matrix twice is that same symmetric Gram (the
      -- relu NTK's diagonal computed as a pair is off by ~1e-9)
      assert.are.equal(0, (K:gram(X1, X1) - G):max_abs(), K:name())
    end
    assert.are.equal(1, pk.kernel.rbf{ gamma = 3 }:gram(X1):get(4, 4))
  end)

  it("empty inputs give empty Grams", function()
    assert.are.same({ 0, 6 }, { pk.kernel.rbf():gram(pk.zeros(0, 5), X2):shape() })
    assert.are.same({ 0, 1 }, { pk.kernel.ntk{ depth = 1 }:diag(pk.zeros(0, 5)):shape() })
  end)
end)

describe("the precomputed kernel", function()
  local X = pk.matrix{ { 1, 2 }, { 3, 4 }, { -0.0, 5 }, { 6, 7 } }
  local G = pk.matrix{ { 4, 1, 2, 3 }, { 1, 5, 0, 1 }, { 2, 0, 6, 2 }, { 3, 1, 2, 7 } }

  it("looks rows up by exact match", function()
    local K = pk.kernel.precomputed(G, X)
    assert.are.equal("precomputed", K:name())
    local Q = pk.matrix{ { 6, 7 }, { 0, 5 } }      -- 0 matches -0
    local R = K:gram(Q, X)
    assert.are.same({ { 3, 1, 2, 7 }, { 2, 0, 6, 2 } }, R:totable())
    assert.are.same({ { 4 }, { 5 }, { 6 }, { 7 } }, K:diag(X):totable())
    H.raises("row 2 of X1 is not a row of the kernel's X", K.gram, K, pk.matrix{ { 1, 2 }, { 1, 2.0000001 } }, X)
    H.raises("row 1 of X2 is not a row", K.gram, K, X, pk.matrix{ { 0 / 0, 5 } })
    H.raises("X1 has 3 columns, the kernel takes 2 inputs", K.gram, K, pk.zeros(1, 3), X)
  end)

  it("takes 1-based indices without X, rows of G for X1 and columns for X2", function()
    local Gr = pk.matrix{ { 1, 2, 3 }, { 4, 5, 6 } }
    local K = pk.kernel.precomputed(Gr)
    assert.are.same({ { 6, 4 } }, K:gram(pk.matrix{ 2 }, pk.matrix{ 3, 1 }):totable())
    assert.are.same({ { 1 }, { 5 } }, K:diag(pk.matrix{ 1, 2 }):totable())
    H.raises("X2[1] = 4 is not an index in 1..3", K.gram, K, pk.matrix{ 1 }, pk.matrix{ 4 })
    H.raises("X1[1] = 1.5 is not an index", K.gram, K, pk.matrix{ 1.5 }, pk.matrix{ 1 })
    H.raises("X[1] = 3 is not an index in 1..2", K.diag, K, pk.matrix{ 3 })
  end)

  it("shares G and keeps it alive", function()
    local Gs = G:copy()
    local K = pk.kernel.precomputed(Gs, X)
    Gs:set(1, 2, 9)
    assert.are.equal(9, K:gram(X:row(1), X:row(2)):get(1, 1))
    Gs:release()
    collectgarbage()
    assert.are.equal(9, K:gram(X:row(1), X:row(2)):get(1, 1))
  end)

  it("refuses a G that does not fit X", function()
    H.raises("not square", pk.kernel.precomputed, pk.zeros(2, 3), pk.zeros(2, 1))
    H.raises("G is 4 x 4 but X has 3 rows", pk.kernel.precomputed, G, pk.zeros(3, 2))
    H.raises("X has no columns", pk.kernel.precomputed, pk.zeros(2, 2), pk.zeros(2, 0))
    H.raises("pathkernel.Matrix expected", pk.kernel.precomputed, {})
  end)
end)

-- ---- the infinite-width kernels against quadrature ----------------------

-- Gauss-Hermite nodes and weights for the weight exp(-x^2), by Newton's
-- method on the orthonormal Hermite recurrence.
local function gauss_hermite(n)
  local x, w = {}, {}
  local z, pp = 0, 0
  local m = (n + 1) // 2
  for i = 1, m do
    if i == 1 then z = math.sqrt(2 * n + 1) - 1.85575 * (2 * n + 1) ^ (-1 / 6)
    elseif i == 2 then z = z - 1.14 * n ^ 0.426 / z
    elseif i == 3 then z = 1.86 * z - 0.86 * x[1]
    elseif i == 4 then z = 1.91 * z - 0.91 * x[2]
    else z = 2 * z - x[i - 2] end
    for _ = 1, 100 do
      local p1, p2 = math.pi ^ -0.25, 0
      for j = 1, n do
        local p3 = p2
        p2 = p1
        p1 = z * math.sqrt(2 / j) * p2 - math.sqrt((j - 1) / j) * p3
      end
      pp = math.sqrt(2 * n) * p2
      local z1 = z
      z = z1 - p1 / pp
      if math.abs(z - z1) <= 1e-15 * math.max(1, math.abs(z)) then break end
    end
    x[i], x[n + 1 - i] = z, -z
    w[i] = 2 / (pp * pp)
    w[n + 1 - i] = w[i]
  end
  return x, w
end

-- Gauss-Legendre on [-1, 1], by Newton's method on the Legendre recurrence.
local function gauss_legendre(n)
  local x, w = {}, {}
  for i = 1, (n + 1) // 2 do
    local z, pp = math.cos(math.pi * (i - 0.25) / (n + 0.5)), 0
    for _ = 1, 100 do
      local p1, p2 = 1, 0
      for j = 1, n do
        local p3 = p2
        p2 = p1
        p1 = ((2 * j - 1) * z * p2 - (j - 1) * p3) / j
      end
      pp = n * (z * p1 - p2) / (z * z - 1)
      local z1 = z
      z = z1 - p1 / pp
      if math.abs(z - z1) <= 1e-16 then break end
    end
    x[i], x[n + 1 - i] = -z, z
    w[i] = 2 / ((1 - z * z) * pp * pp)
    w[n + 1 - i] = w[i]
  end
  return x, w
end

-- erf to full double precision: 2/sqrt(pi) e^{-x^2} sum 2^k x^{2k+1} / (2k+1)!!,
-- a series of positive terms (no cancellation); erf(x) = +-1 beyond 6
local function erf(x)
  local ax = math.abs(x)
  if ax > 6 then return x > 0 and 1 or -1 end
  if ax == 0 then return x end
  local term, sum, k = ax, ax, 0
  repeat
    k = k + 1
    term = term * 2 * ax * ax / (2 * k + 1)
    sum = sum + term
  until term < 1e-17 * sum
  local v = 2 / math.sqrt(math.pi) * math.exp(-ax * ax) * sum
  return x < 0 and -v or v
end

-- (u, v) ~ N(0, [[q1, c], [c, q2]]) as u = a.z, v = b.z with z ~ N(0, I_2);
-- b2 from q1 q2 - c^2, which is exactly 0 on the diagonal (c = q1 = q2)
local function factor(q1, q2, c)
  local a1 = math.sqrt(q1)
  return { a1, 0 }, { c / a1, math.sqrt(math.max(q1 * q2 - c * c, 0) / q1) }
end

-- tensor Gauss-Hermite: E[f(u) g(v)] over z = sqrt(2) (x_i, x_j); on the
-- diagonal u = v and the 1-D rule is the same integral
local function gh_expect(rule, q1, q2, c, f, g)
  local x, w = rule[1], rule[2]
  local a, b = factor(q1, q2, c)
  local s = 0
  if q1 == q2 and c == q1 then
    for i = 1, #x do
      local u = a[1] * math.sqrt(2) * x[i]
      s = s + w[i] * f(u) * g(u)
    end
    return s / math.sqrt(math.pi)
  end
  for i = 1, #x do
    local z1 = math.sqrt(2) * x[i]
    local fu = f(a[1] * z1)
    for j = 1, #x do
      local z2 = math.sqrt(2) * x[j]
      s = s + w[i] * w[j] * fu * g(b[1] * z1 + b[2] * z2)
    end
  end
  return s / math.pi
end

local function erf_expect(rule)
  local dphi = function(u) return 2 / math.sqrt(math.pi) * math.exp(-u * u) end
  return function(q1, q2, c)
    return gh_expect(rule, q1, q2, c, erf, erf), gh_expect(rule, q1, q2, c, dphi, dphi)
  end
end

-- ReLU is positively homogeneous, so in polar coordinates z = r e(t) the
-- radial integrals are moments: int r^3 e^{-r^2/2} dr = 2 for phi(u)phi(v),
-- int r e^{-r^2/2} dr = 1 for phi'(u)phi'(v); what is left is an integral
-- over the angle of a function that is smooth between the angles where u or
-- v changes sign. Gauss-Legendre on each such arc is then exact to rounding.
-- (A tensor Gauss-Hermite rule converges only algebraically across the
-- kinks of relu and the jump of its derivative, too slowly for a tolerance
-- near machine precision; it is used for the smooth erf below.)
local function relu_expect(gl)
  return function(q1, q2, c)
    local a, b = factor(q1, q2, c)
    local cuts = { 0, 2 * math.pi }
    for _, v in ipairs{ a, b } do
      local t0 = math.atan(v[2], v[1])
      for _, t in ipairs{ t0 + math.pi / 2, t0 - math.pi / 2, t0 + 1.5 * math.pi } do
        t = t % (2 * math.pi)
        cuts[#cuts + 1] = t
      end
    end
    table.sort(cuts)
    local K, S = 0, 0
    for k = 1, #cuts - 1 do
      local lo, hi = cuts[k], cuts[k + 1]
      if hi > lo then
        local mid, half = (lo + hi) / 2, (hi - lo) / 2
        local u, v = a[1] * math.cos(mid) + a[2] * math.sin(mid), b[1] * math.cos(mid) + b[2] * math.sin(mid)
        if u > 0 and v > 0 then
          S = S + (hi - lo)
          for i = 1, #gl[1] do
            local t = mid + half * gl[1][i]
            local uu = a[1] * math.cos(t) + a[2] * math.sin(t)
            local vv = b[1] * math.cos(t) + b[2] * math.sin(t)
            K = K + half * gl[2][i] * math.max(uu, 0) * math.max(vv, 0)
          end
        end
      end
    end
    return 2 * K / (2 * math.pi), S / (2 * math.pi)
  end
end

local function identity_expect(q1, q2, c) return c, 1 end

-- The recursion of DESIGN.md section 4, with the expectations given
local function reference(x, y, depth, sw, sb, expect)
  local d0 = #x
  local K, q1, q2, tt = dot(x, y) / d0, dot(x, x) / d0, dot(y, y) / d0, 0
  for l = 0, depth do
    local S, s1, s2 = sw ^ 2 * K + sb ^ 2, sw ^ 2 * q1 + sb ^ 2, sw ^ 2 * q2 + sb ^ 2
    local theta = S + sw ^ 2 * tt
    if l == depth then return S, theta end
    local sd
    K, sd = expect(s1, s2, S)
    q1 = expect(s1, s1, s1)
    q2 = expect(s2, s2, s2)
    tt = sd * theta
  end
end

local pairs_ = {
  { { 0.3, -1.2, 0.8 }, { 1.1, 0.4, -0.5 } },
  { { 0.3, -1.2, 0.8 }, { 0.3, -1.2, 0.8 } },          -- the diagonal
  { { 0.3, -1.2, 0.8 }, { -0.3, 1.2, -0.8 } },         -- antipodal: theta = pi
  { { 1, 0, 0 }, { 0, 2, 0 } },                         -- orthogonal
  { { 2.5, 1.5, -0.5 }, { 0.1, 0.05, 0.2 } },           -- very different norms
  { { 0.0, 0.0, 0.0 }, { 1, 2, 3 } },                    -- the zero input
}

local function check_against(act, expect, tol, depths, params, scale)
  for _, depth in ipairs(depths) do
    for _, sp in ipairs(params) do
      local sw, sb = sp[1], sp[2]
      local ntk = pk.kernel.ntk{ depth = depth, activation = act, sigma_w = sw, sigma_b = sb }
      local nngp = pk.kernel.nngp{ depth = depth, activation = act, sigma_w = sw, sigma_b = sb }
      for p, xy in ipairs(pairs_) do
        local x, y = {}, {}
        for k = 1, 3 do x[k], y[k] = xy[1][k] * (scale or 1), xy[2][k] * (scale or 1) end
        local S, T = reference(x, y, depth, sw, sb, expect)
        local A, B = pk.matrix{ x }, pk.matrix{ y }
        local gs, gt = nngp:gram(A, B):get(1, 1), ntk:gram(A, B):get(1, 1)
        local msg = ("%s depth %d sw %g sb %g pair %d: nngp %.17g vs %.17g, ntk %.17g vs %.17g")
          :format(act, depth, sw, sb, p, gs, S, gt, T)
        assert.is_true(math.abs(gs - S) <= tol * math.max(1, math.abs(S)), msg)
        assert.is_true(math.abs(gt - T) <= tol * math.max(1, math.abs(T)), msg)
      end
    end
  end
end

describe("infinite-width kernels", function()
  local params = { { 1.5, 0.1 }, { 1.0, 0.0 }, { 0.8, 1.3 } }

  it("relu: NNGP and NTK equal quadrature of E[phi(u)phi(v)] and E[phi'(u)phi'(v)]", function()
    local gl = { gauss_legendre(24) }
    -- the rule integrates the arc of a smooth trigonometric product to
    -- rounding: its error terms fall as (arc)^48 / 48!
    local x, w = gl[1], gl[2]
    local s = 0
    for i = 1, #x do s = s + w[i] * math.cos(3 * x[i]) end
    assert.is_true(math.abs(s - 2 * math.sin(3) / 3) < 1e-15)
    -- Both sides round at each of <= 5 layers, amplified by sigma_w^2 <= 2.25
    -- per layer in the Theta recursion: 1e-12 relative is ~ 40 * 2.25^4 eps
    check_against("relu", relu_expect(gl), 1e-12, { 1, 2, 4 }, params)
  end)

  it("erf: NNGP and NTK equal 2-D Gauss-Hermite quadrature", function()
    local r80, r96 = { gauss_hermite(80) }, { gauss_hermite(96) }
    -- the rule itself: sum w = sqrt(pi), sum w x^2 = sqrt(pi)/2, sum w x^4 =
    -- 3 sqrt(pi)/4 (it is exact for polynomials of degree <= 191)
    local m0, m2, m4 = 0, 0, 0
    for i = 1, 96 do
      m0 = m0 + r96[2][i]
      m2 = m2 + r96[2][i] * r96[1][i] ^ 2
      m4 = m4 + r96[2][i] * r96[1][i] ^ 4
    end
    assert.is_true(math.abs(m0 - math.sqrt(math.pi)) < 1e-14)
    assert.is_true(math.abs(m2 - math.sqrt(math.pi) / 2) < 1e-14)
    assert.is_true(math.abs(m4 - 3 * math.sqrt(math.pi) / 4) < 1e-14)
    -- erf(sqrt(q) z) and its derivative are entire, and the rule converges
    -- geometrically, the slower the larger the variance q (erf becomes a
    -- step). The inputs are scaled so every variance in the recursion stays
    -- below 1.2; there 80 and 96 nodes agree to 1e-15, which bounds the
    -- error of the 96-node rule well below the tolerance.
    local a1, b1 = erf_expect(r80)(1.2, 0.9, 0.6)
    local a2, b2 = erf_expect(r96)(1.2, 0.9, 0.6)
    assert.is_true(math.abs(a1 - a2) < 1e-15 and math.abs(b1 - b2) < 1e-15)
    check_against("erf", erf_expect(r96), 1e-12, { 1 }, { { 1.2, 0.1 }, { 0.8, 0.5 } }, 0.5)
    check_against("erf", erf_expect(r96), 1e-12, { 3 }, { { 1.2, 0.1 } }, 0.5)
  end)

  it("identity: the linear recursion in closed form", function()
    check_against("identity", identity_expect, 1e-13, { 1, 2, 5 }, params)
    -- NNGP of a deep linear network: sw^(2(L+1)) K0 + sb^2 sum_{i<=L} sw^(2i)
    local x, y = pairs_[1][1], pairs_[1][2]
    local sw, sb, L = 1.3, 0.4, 3
    local want = sw ^ (2 * (L + 1)) * dot(x, y) / 3
    for i = 0, L do want = want + sb ^ 2 * sw ^ (2 * i) end
    local got = pk.kernel.nngp{ depth = L, activation = "identity", sigma_w = sw, sigma_b = sb }
      :gram(pk.matrix{ x }, pk.matrix{ y }):get(1, 1)
    assert.is_true(math.abs(got - want) <= 1e-14 * math.abs(want))
  end)

  it("known values: relu NNGP of one hidden layer is the arc-cosine kernel", function()
    -- depth 1, sw = 1, sb = 0: Sigma = K1 = |x||x'|/(2 pi d) (sin t + (pi - t) cos t)
    local x, y = pairs_[1][1], pairs_[1][2]
    local nx, ny = math.sqrt(dot(x, x)), math.sqrt(dot(y, y))
    local t = math.acos(dot(x, y) / (nx * ny))
    local want = nx * ny / (2 * math.pi * 3) * (math.sin(t) + (math.pi - t) * math.cos(t))
    local got = pk.kernel.nngp{ depth = 1, activation = "relu", sigma_w = 1, sigma_b = 0 }
      :gram(pk.matrix{ x }, pk.matrix{ y }):get(1, 1)
    assert.is_true(math.abs(got - want) <= 1e-14)
    -- defaults: activation relu, sigma_w 1, sigma_b 0.1
    local K1 = pk.kernel.ntk{ depth = 2 }:gram(X1, X2)
    local K2 = pk.kernel.ntk{ depth = 2, activation = "relu", sigma_w = 1, sigma_b = 0.1 }:gram(X1, X2)
    assert.are.equal(0, (K1 - K2):max_abs())
  end)

  it("large Grams run in parallel and match the serial entries", function()
    -- rows are handed to threads in chunks: compare a block against
    -- Grams of single rows, which take the serial path
    -- (chunks of ~2^16 entries: 1200 x 700 makes 13 of them)
    local Xa, Xb = pk.randn(1200, 8, 5), pk.randn(700, 8, 6)
    local K = pk.kernel.ntk{ depth = 3, sigma_w = 1.4 }
    local G = K:gram(Xa, Xb)
    for _, i in ipairs{ 1, 77, 150, 300, 601, 1200 } do
      -- a one-row dgemm may sum x.x' in another order: K0 differs by a few
      -- ulps, amplified by at most sigma_w^2 per layer
      local r = K:gram(Xa:row(i), Xb)
      for j = 1, 700, 13 do
        assert.is_true(math.abs(r:get(1, j) - G:get(i, j)) <= 1e-13 * math.abs(G:get(i, j)))
      end
    end
    -- and the symmetric Gram, whose rows carry unequal work, against the
    -- cross Gram of the same points. Off the diagonal they agree to
    -- rounding. On it the cross Gram gets c = x.x'/d0 from dgemm and the
    -- variances from the norms: a rounding residue eps*q in q1 q2 - c^2
    -- becomes an angle theta ~ sqrt(2 eps) ~ 2e-8 in relu's pi - theta (the
    -- recursion is ill-conditioned at theta = 0, in neural-tangents too),
    -- which K(X, X) avoids by taking both from the same numbers.
    local Xs = Xa:slice(1, 500)
    local S, C = K:gram(Xs):totable(), K:gram(Xs, Xs:copy()):totable()
    local bad = 0
    for i = 1, 500 do
      for j = 1, 500 do
        local tol = (i == j and 1e-7 or 1e-13) * math.abs(C[i][j])
        if not (math.abs(S[i][j] - C[i][j]) <= tol) then bad = bad + 1 end
      end
    end
    assert.are.equal(0, bad)
  end)
end)

describe("classical and infinite-width kernels on non-finite rows", function()
  local function isnan(v) return v ~= v end
  local kernels = {
    pk.kernel.linear(), pk.kernel.rbf{ gamma = 0.3 }, pk.kernel.laplacian{ gamma = 0.7 },
    pk.kernel.poly{ degree = 2, c = 0.5 }, pk.kernel.ntk{ depth = 2 },
    pk.kernel.nngp{ depth = 2, activation = "erf" }, pk.kernel.ntk{ depth = 1, activation = "identity" },
  }
  -- rows 2 and 4 of X1 and row 3 of X2 hold a non-finite value
  local X1 = pk.randn(5, 3, 1)
  X1:set(2, 1, math.huge)
  X1:set(4, 3, -math.huge)
  local X2 = pk.randn(4, 3, 2)
  X2:set(3, 2, 0 / 0)
  local bad1, bad2 = { [2] = true, [4] = true }, { [3] = true }
  local good1, good2 = X1:gather{ 1, 3, 5 }, X2:gather{ 1, 2, 4 }
  local at1, at2 = { 1, nil, 2, nil, 3 }, { 1, 2, nil, 3 }

  -- every entry of a bad row or column is NaN; the others are the Gram of
  -- the finite rows alone
  local function check(G, Gf, b1, b2, a1, a2, name)
    for i = 1, G:rows() do
      for j = 1, G:cols() do
        local v = G:get(i, j)
        if b1[i] or b2[j] then
          assert.is_true(isnan(v), name .. ": entry " .. i .. "," .. j .. " = " .. v)
        else
          local w = Gf:get(a1[i], a2[j])
          assert.is_true(math.abs(v - w) <= 1e-14 * math.max(1, math.abs(w)), name)
        end
      end
    end
  end

  it("give NaN in every entry of those rows and columns, in gram and diag", function()
    for _, K in ipairs(kernels) do
      local name = K:name()
      check(K:gram(X1, X2), K:gram(good1, good2), bad1, bad2, at1, at2, name)
      check(K:gram(X2, X1), K:gram(good2, good1), bad2, bad1, at2, at1, name .. " (transposed)")
      check(K:gram(X1), K:gram(good1), bad1, bad1, at1, at1, name .. " (symmetric)")
      check(K:gram(X1, X1:copy()), K:gram(good1, good1:copy()), bad1, bad1, at1, at1, name .. " (two copies)")
      local D, Df = K:diag(X1), K:diag(good1)
      check(D, Df, bad1, {}, at1, { 1 }, name .. " (diag)")
    end
  end)

  it("rbf and laplacian stay in [0, 1] on finite rows whose squared norms overflow", function()
    local X = pk.matrix{ { 1e200, 0 }, { 1e200, 0 }, { 0, 0 }, { -1e200, 1 } }
    for _, K in ipairs{ pk.kernel.rbf(), pk.kernel.laplacian() } do
      for _, G in ipairs{ K:gram(X), K:gram(X, X:copy()) } do
        for i = 1, 4 do
          for j = 1, 4 do
            local want = (i == j or (i <= 2 and j <= 2)) and 1 or 0
            assert.are.equal(want, G:get(i, j), K:name() .. " " .. i .. "," .. j)
          end
        end
      end
      local D = K:diag(X)
      for i = 1, 4 do assert.are.equal(1, D:get(i, 1), K:name()) end
    end
  end)
end)

describe("kernel arguments", function()
  it("refuses bad parameters with clear messages", function()
    H.raises("rbf kernel: gamma must be a positive finite number, got 0", pk.kernel.rbf, { gamma = 0 })
    H.raises("gamma must be a positive finite number, got -1", pk.kernel.laplacian, { gamma = -1 })
    H.raises("gamma must be a positive finite number, got ", pk.kernel.rbf, { gamma = 0 / 0 })
    H.raises("gamma must be a positive finite number, got inf", pk.kernel.rbf, { gamma = math.huge })
    H.raises("option 'gamma' must be a number, got string", pk.kernel.rbf, { gamma = "1" })
    H.raises("rbf: unknown option 'gama' (valid options: gamma)", pk.kernel.rbf, { gama = 1 })
    H.raises("bad argument #1 to 'kernel.rbf' (table of options expected, got number)", pk.kernel.rbf, 0.5)
    H.raises("linear: unknown option 'gamma'", pk.kernel.linear, { gamma = 1 })
    H.raises("poly: degree must be in 1..1000000, got 0", pk.kernel.poly, { degree = 0 })
    H.raises("option 'degree' must be an integer, got 1.5", pk.kernel.poly, { degree = 1.5 })
    H.raises("c must be a finite number >= 0", pk.kernel.poly, { c = -1 })
    H.raises("poly: unknown option 'coef0' (valid options: degree, c)", pk.kernel.poly, { coef0 = 1 })
  end)

  it("refuses bad network descriptions", function()
    H.raises("depth (the number of hidden layers) must be in 1..100000, got 0", pk.kernel.ntk, { depth = 0 })
    H.raises("nngp: depth (the number of hidden layers) must be in 1..100000, got -2", pk.kernel.nngp, { depth = -2 })
    H.raises("ntk: option 'depth' (the number of hidden layers) is required", pk.kernel.ntk, {})
    H.raises("ntk: option 'depth' (the number of hidden layers) is required", pk.kernel.ntk)
    H.raises("activation 'tanh' has no analytic kernel (supported: relu, erf, identity)",
      pk.kernel.ntk, { depth = 2, activation = "tanh" })
    H.raises("nngp kernel: activation 'gelu' has no analytic kernel (supported: relu, erf, identity)",
      pk.kernel.nngp, { depth = 2, activation = "gelu" })
    H.raises("sigma_w must be a positive finite number, got 0", pk.kernel.ntk, { depth = 1, sigma_w = 0 })
    H.raises("sigma_b must be a finite number >= 0, got -0.1", pk.kernel.ntk, { depth = 1, sigma_b = -0.1 })
    H.raises("unknown option 'width' (valid options: depth, activation, sigma_w, sigma_b)",
      pk.kernel.ntk, { depth = 1, width = 10 })
    H.raises("inputs have no columns", function() return pk.kernel.ntk{ depth = 1 }:gram(pk.zeros(2, 0)) end)
  end)

  it("refuses inputs of different widths", function()
    local K = pk.kernel.rbf()
    H.raises("X1 has 5 columns and X2 has 3", K.gram, K, X1, pk.zeros(2, 3))
    H.raises("pathkernel.Matrix expected", K.gram, K, {})
  end)

  it("turns NaN and infinite inputs into NaN entries, never a crash", function()
    local Xn = X1:copy()
    Xn:set(2, 3, 0 / 0)
    Xn:set(4, 1, math.huge)
    for _, K in ipairs{ pk.kernel.linear(), pk.kernel.rbf(), pk.kernel.laplacian(), pk.kernel.poly(),
                        pk.kernel.ntk{ depth = 2 }, pk.kernel.nngp{ depth = 2, activation = "erf" } } do
      local G, D = K:gram(Xn, X2), K:diag(Xn)
      local Gs = K:gram(Xn)
      assert.is_true(G:get(2, 1) ~= G:get(2, 1), K:name())
      assert.is_true(D:get(2, 1) ~= D:get(2, 1), K:name())
      assert.is_true(Gs:get(2, 2) ~= Gs:get(2, 2), K:name())
      -- rows without NaN are untouched by it
      local Gc = K:gram(X1:row(1), X2)
      assert.are.equal(Gc:get(1, 3), G:get(1, 3), K:name())
    end
  end)

  it("refuses Grams beyond the memory limit", function()
    local lim = pk.memory_limit()
    pk.set_memory_limit(1 << 20)
    local ok, err = pcall(function() return pk.kernel.rbf():gram(pk.zeros(1000, 1)) end)
    pk.set_memory_limit(lim)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("above the memory limit", 1, true))
  end)
end)
