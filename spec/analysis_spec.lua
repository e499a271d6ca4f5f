-- Gram analysis: the symmetric eigendecomposition against a matrix with a
-- known spectrum and by reconstruction, kernel-target alignment and CKA
-- against direct sums written here.
local H = require "helpers"
local pk = H.pk

local EPS = 2.220446049250313e-16

local function sym_random(n, seed)
  local A = pk.randn(n, n, seed)
  return (A + A:t()) * 0.5
end

describe("pk.eigh", function()
  it("finds the known spectrum of the second-difference matrix", function()
    -- tridiag(-1, 2, -1): eigenvalues 2 - 2 cos(k pi/(n+1)), eigenvectors
    -- sin(j k pi/(n+1)) up to sign
    local n = 9
    local T = pk.zeros(n, n)
    for i = 1, n do
      T:set(i, i, 2)
      if i > 1 then T:set(i, i - 1, -1); T:set(i - 1, i, -1) end
    end
    local w, V = pk.eigh(T)
    assert.are.same({ n, 1 }, { w:shape() })
    assert.are.same({ n, n }, { V:shape() })
    -- a backward-stable solver moves eigenvalues by <= c n eps ||T||_2
    -- (Weyl), ||T||_2 < 4
    for k = 1, n do
      local want = 2 - 2 * math.cos(k * math.pi / (n + 1))
      assert.is_true(math.abs(w:get(k, 1) - want) <= 10 * n * EPS * 4)
      local s, nv = 0, 0
      for j = 1, n do
        local v = math.sin(j * k * math.pi / (n + 1))
        s = s + v * V:get(j, k)
        nv = nv + v * v
      end
      -- the gaps are >= 0.28 here, so eigenvectors are as accurate as the
      -- values divided by the gap
      assert.is_true(math.abs(math.abs(s) / math.sqrt(nv) - 1) <= 1e-13)
    end
  end)

  it("reconstructs G as V diag(w) V^T with V orthonormal, w ascending", function()
    for _, n in ipairs{ 1, 2, 7, 40 } do
      local G = sym_random(n, n) + pk.kernel.rbf():gram(pk.randn(n, 3, 100 + n))
      local w, V = pk.eigh(G)
      local D = pk.zeros(n, n)
      for i = 1, n do
        D:set(i, i, w:get(i, 1))
        if i > 1 then assert.is_true(w:get(i, 1) >= w:get(i - 1, 1)) end
      end
      -- backward error of dsyevd and of the products: a few n eps ||G||
      assert.is_true((V * D * V:t() - G):norm() <= 10 * n * EPS * G:norm())
      assert.is_true((V:t() * V - pk.eye(n)):norm() <= 10 * n * EPS * math.sqrt(n))
    end
  end)

  it("handles the empty matrix and a Gram with exact zero eigenvalues", function()
    local w, V = pk.eigh(pk.zeros(0, 0))
    assert.are.same({ 0, 1 }, { w:shape() })
    assert.are.same({ 0, 0 }, { V:shape() })
    -- a rank-2 linear Gram of 6 points: 4 eigenvalues at rounding level
    local G = pk.kernel.linear():gram(pk.randn(6, 2, 5))
    local w2 = pk.eigh(G)
    for i = 1, 4 do assert.is_true(math.abs(w2:get(i, 1)) <= 10 * 6 * EPS * G:norm()) end
    assert.is_true(w2:get(5, 1) > 0.1)
  end)

  it("uses the symmetric part of a matrix symmetric up to rounding, refuses others", function()
    local G = sym_random(5, 3)
    local Gp = G:copy()
    Gp:set(1, 2, Gp:get(1, 2) + 1e-13)
    local w1, w2 = pk.eigh(G), pk.eigh(Gp)
    assert.is_true((w1 - w2):max_abs() <= 1e-13)
    Gp:set(4, 2, Gp:get(4, 2) + 0.01)
    H.raises("eigh: G is not symmetric: G[4,2] - G[2,4]", pk.eigh, Gp)
    H.raises("eigh: G is 2 x 3, not square", pk.eigh, pk.zeros(2, 3))
    local Gn = G:copy()
    Gn:set(2, 2, 0 / 0)
    H.raises("eigh: G has NaN or infinite entries", pk.eigh, Gn)
    H.raises("pathkernel.Matrix expected", pk.eigh, { { 1 } })
  end)
end)

describe("pk.alignment", function()
  local G = pk.kernel.rbf{ gamma = 0.3 }:gram(pk.randn(8, 3, 1))
  local Y = pk.randn(8, 2, 2)

  it("is <G, YY^T>_F / (||G||_F ||YY^T||_F), computed here by sums", function()
    local YY = Y * Y:t()
    local num, ng, ny = 0, 0, 0
    for i = 1, 8 do
      for j = 1, 8 do
        num = num + G:get(i, j) * YY:get(i, j)
        ng = ng + G:get(i, j) ^ 2
        ny = ny + YY:get(i, j) ^ 2
      end
    end
    local want = num / math.sqrt(ng * ny)
    -- sums of 64 terms either way: 64 eps relative to the sum of |terms|,
    -- which is at most ||G|| ||YY^T|| (Cauchy-Schwarz) i.e. 1 after division
    assert.is_true(math.abs(pk.alignment(G, Y) - want) <= 4 * 64 * EPS)
  end)

  it("is 1 for G = YY^T, -1 for -YY^T, and ignores the scale of G and Y", function()
    assert.is_true(math.abs(pk.alignment(Y * Y:t(), Y) - 1) <= 1e-14)
    assert.is_true(math.abs(pk.alignment(-1 * (Y * Y:t()), Y) + 1) <= 1e-14)
    local a = pk.alignment(G, Y)
    assert.is_true(math.abs(pk.alignment(1e100 * G, 1e-100 * Y) - a) <= 1e-14)
    assert.is_true(a > -1 and a < 1)
  end)

  it("refuses what has no alignment", function()
    H.raises("alignment: G is 8 x 8 but Y has 3 rows", pk.alignment, G, pk.ones(3, 1))
    H.raises("alignment: G is 2 x 3, not square", pk.alignment, pk.zeros(2, 3), pk.ones(2, 1))
    H.raises("alignment: undefined for G = 0", pk.alignment, pk.zeros(8, 8), Y)
    H.raises("alignment: undefined for Y = 0", pk.alignment, G, pk.zeros(8, 1))
    H.raises("alignment: empty data", pk.alignment, pk.zeros(0, 0), pk.zeros(0, 1))
    local Gn = G:copy()
    Gn:set(1, 1, 0 / 0)
    local v = pk.alignment(Gn, Y)
    assert.is_true(v ~= v)
  end)
end)

describe("pk.cka", function()
  local X = pk.randn(10, 4, 9)
  local G1 = pk.kernel.rbf{ gamma = 0.2 }:gram(X)
  local G2 = pk.kernel.linear():gram(X)

  it("equals <HG1H, HG2H> / (||HG1H|| ||HG2H||) with H formed explicitly", function()
    local n = 10
    local Hm = pk.eye(n) - (1 / n) * pk.ones(n, n)
    local A, B = Hm * G1 * Hm, Hm * G2 * Hm
    local want = A:hadamard(B):sum() / (A:norm() * B:norm())
    assert.is_true(math.abs(pk.cka(G1, G2) - want) <= 1e-13)
    assert.is_true(math.abs(pk.cka(G1, G2) - pk.cka(G2, G1)) <= 1e-15)
  end)

  it("is 1 for a Gram with itself, and blind to scale and to row/column offsets", function()
    assert.is_true(math.abs(pk.cka(G1, G1) - 1) <= 1e-14)
    local c = pk.cka(G1, G2)
    assert.is_true(math.abs(pk.cka(3 * G1, 1e-7 * G2) - c) <= 1e-14)
    -- H (G + a 1^T + 1 b^T) H = H G H
    local a, b = pk.randn(10, 1, 1), pk.randn(10, 1, 2)
    local Go = G1 + a * pk.ones(1, 10) + pk.ones(10, 1) * b:t()
    assert.is_true(math.abs(pk.cka(Go, G2) - c) <= 1e-13)
  end)

  it("refuses what has no CKA", function()
    H.raises("cka: G1 is 10 x 10 but G2 is 9 x 9", pk.cka, G1, pk.eye(9))
    H.raises("cka: G1 is 2 x 3, not square", pk.cka, pk.zeros(2, 3), pk.zeros(2, 3))
    H.raises("cka: needs at least 2 examples", pk.cka, pk.eye(1), pk.eye(1))
    H.raises("the centered G2 is zero", pk.cka, G1, pk.ones(10, 10))
    local Gn = G1:copy()
    Gn:set(3, 3, 0 / 0)
    local v = pk.cka(Gn, G2)
    assert.is_true(v ~= v)
  end)
end)
