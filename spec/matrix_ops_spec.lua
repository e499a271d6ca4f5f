-- The matrix helpers (scalar shifts, elementwise functions, reductions
-- along a dimension, argmax, stacking, split, accuracy), each against the
-- same computation done entry by entry in Lua over totable().
local H = require "helpers"
local pk = H.pk

local NaN = 0 / 0

-- a table of rows through f(x)
local function map_rows(A, f)
  local out = {}
  for i, row in ipairs(A:totable()) do
    out[i] = {}
    for j, x in ipairs(row) do out[i][j] = f(x) end
  end
  return out
end

-- equal entry by entry, bit for bit (NaN equals NaN)
local function same_bits(rows, B, what)
  local b = B:totable()
  assert.are.equal(#rows, #b, what)
  for i = 1, #rows do
    assert.are.equal(#rows[i], #b[i], what)
    for j = 1, #rows[i] do
      local x, y = rows[i][j], b[i][j]
      if x ~= x then
        assert.is_true(y ~= y, ("%s [%d][%d]: expected NaN, got %s"):format(what, i, j, y))
      else
        assert.is_true(string.pack("<d", x) == string.pack("<d", y),
          ("%s [%d][%d]: expected %.17g, got %.17g"):format(what, i, j, x, y))
      end
    end
  end
end

local A = pk.matrix{ { 1.5, -2, 0 }, { -0.0, 3e-300, -7.25 }, { 1e300, -1e-5, 42 }, { 0.5, 0.5, -3 } }
local S = pk.matrix{ { NaN, math.huge, -math.huge, 1 } }

describe("scalar arithmetic", function()
  it("A + s, s + A, A - s, s - A are the elementwise IEEE results", function()
    for _, M in ipairs{ A, S, pk.randn(5, 7, 3) } do
      for _, s in ipairs{ 2.5, -1, 0, -0.0, 1e-300, math.huge } do
        same_bits(map_rows(M, function(x) return x + s end), M + s, "A + s")
        same_bits(map_rows(M, function(x) return s + x end), s + M, "s + A")
        same_bits(map_rows(M, function(x) return x - s end), M - s, "A - s")
        same_bits(map_rows(M, function(x) return s - x end), s - M, "s - A")
      end
    end
  end)

  it("keeps shapes, empty ones included, and leaves A alone", function()
    local E = pk.zeros(0, 3) + 1
    assert.are.same({ 0, 3 }, { E:shape() })
    local B = A:copy()
    local _ = 1 - A
    same_bits(B:totable(), A, "A after 1 - A")
  end)

  it("still refuses what is neither a matrix nor a number", function()
    H.raises("pathkernel.Matrix expected, got string", function() return A + "1" end)
    H.raises("pathkernel.Matrix expected, got boolean", function() return true - A end)
    H.raises("shapes 4x3 and 3x3 differ", function() return A + pk.eye(3) end)
  end)
end)

describe("elementwise functions", function()
  local function tanh(x)   -- accurate for every x: no overflow, no cancellation at 0
    if x ~= x then return x end
    local e = math.exp(-2 * math.abs(x))
    local t = (1 - e) / (1 + e)
    if math.abs(x) < 1e-8 then t = math.abs(x) end
    return x < 0 and -t or t
  end

  it("exp, log, sqrt and abs equal libm entry by entry", function()
    local M = pk.vstack{ A, A:abs() + 0.5, pk.rand(2, 3, 4) * 100 }
    same_bits(map_rows(M, math.exp), M:exp(), "exp")
    same_bits(map_rows(M, math.log), M:log(), "log")
    same_bits(map_rows(M, math.sqrt), M:sqrt(), "sqrt")
    same_bits(map_rows(M, math.abs), M:abs(), "abs")
  end)

  it("tanh agrees with (1 - e^-2|x|) / (1 + e^-2|x|) to a few ulps", function()
    local M = pk.vstack{ A, pk.randn(6, 3, 5) * 4, pk.matrix{ { 1e-12, -20, 800 } } }
    local T, want = M:tanh():totable(), map_rows(M, tanh)
    for i = 1, #want do
      for j = 1, #want[i] do
        -- the formula's own rounding is a few ulps of a value in [-1, 1]
        assert.is_true(math.abs(T[i][j] - want[i][j]) <= 4 * 2 ^ -52, ("%d %d"):format(i, j))
      end
    end
  end)

  it("pow(p) equals x^p for integer, fractional and negative exponents", function()
    local M = pk.vstack{ A:abs(), pk.rand(3, 3, 6) * 10 }
    for _, p in ipairs{ 2, 3, 0.5, -1, 1 / 3, 0, 2.5 } do
      same_bits(map_rows(M, function(x) return x ^ p end), M:pow(p), "pow " .. p)
    end
    same_bits(map_rows(A, function(x) return x ^ 3 end), A:pow(3), "pow 3 of negatives")
  end)

  it("answers IEEE outside the domain (documented): NaN, -inf, never an error", function()
    local L = pk.matrix{ { -1, 0, -0.0, math.huge } }:log():totable()[1]
    assert.is_true(L[1] ~= L[1])                 -- log of a negative entry: NaN
    assert.are.equal(-math.huge, L[2])           -- log 0: -inf
    assert.are.equal(-math.huge, L[3])
    assert.are.equal(math.huge, L[4])
    local Q = pk.matrix{ { -4 } }
    assert.is_true(Q:sqrt():get(1, 1) ~= Q:sqrt():get(1, 1))
    assert.is_true(Q:pow(0.5):get(1, 1) ~= Q:pow(0.5):get(1, 1))
    assert.are.equal(-64, Q:pow(3):get(1, 1))
    same_bits(map_rows(S, math.exp), S:exp(), "exp of specials")
  end)

  it("checks its argument", function()
    H.raises("pow: the exponent must be a number, got no value", A.pow, A)
    H.raises("pow: the exponent must be a number, got string", A.pow, A, "2")
    H.raises("pathkernel.Matrix expected", A.exp, {})
  end)
end)

describe("reductions along a dimension", function()
  local M = pk.vstack{ A, pk.randn(3, 3, 7) }

  -- column (dim 1) or row (dim 2) sums by loops, as a table of rows
  local function loop_sums(X, dim)
    local t, r, c = X:totable(), X:rows(), X:cols()
    local out = {}
    if dim == 1 then
      out[1] = {}
      for j = 1, c do
        local s = 0
        for i = 1, r do s = s + t[i][j] end
        out[1][j] = s
      end
    else
      for i = 1, r do
        local s = 0
        for j = 1, c do s = s + t[i][j] end
        out[i] = { s }
      end
    end
    return out
  end

  local function loop_std(X, dim, ddof)
    local t, r, c = X:totable(), X:rows(), X:cols()
    local n = dim == 1 and r or c
    local out = {}
    for k = 1, dim == 1 and c or r do
      local s = 0
      for q = 1, n do s = s + (dim == 1 and t[q][k] or t[k][q]) end
      local m, v = s / n, 0
      for q = 1, n do v = v + ((dim == 1 and t[q][k] or t[k][q]) - m) ^ 2 end
      local sd = math.sqrt(v / (n - ddof))
      if dim == 1 then out[1] = out[1] or {}; out[1][k] = sd else out[k] = { sd } end
    end
    return out
  end

  it("sum(1) is 1 x c, sum(2) is r x 1, sum() the total", function()
    same_bits(loop_sums(M, 1), M:sum(1), "sum(1)")
    same_bits(loop_sums(M, 2), M:sum(2), "sum(2)")
    local total = 0
    for _, row in ipairs(M:totable()) do for _, x in ipairs(row) do total = total + x end end
    assert.are.equal(total, M:sum())
  end)

  it("mean(dim) is sum(dim) divided by the count along dim", function()
    same_bits(map_rows(M:sum(1), function(x) return x / M:rows() end), M:mean(1), "mean(1)")
    same_bits(map_rows(M:sum(2), function(x) return x / M:cols() end), M:mean(2), "mean(2)")
    assert.are.equal(M:sum() / (M:rows() * M:cols()), M:mean())
  end)

  it("std is the population std (ddof = 0) unless ddof is given", function()
    local N = pk.randn(7, 4, 12) * 3 + 1     -- finite squares (M holds 1e300)
    for _, dim in ipairs{ 1, 2 } do
      for _, ddof in ipairs{ 0, 1 } do
        local got = ddof == 0 and N:std(dim) or N:std(dim, { ddof = ddof })
        local want = loop_std(N, dim, ddof)
        local g = got:totable()
        assert.are.equal(#want, #g)
        for i = 1, #want do
          for j = 1, #want[i] do
            assert.is_true(math.abs(g[i][j] - want[i][j]) <= 1e-14 * (1 + want[i][j]), ("dim %d ddof %d"):format(dim, ddof))
          end
        end
      end
    end
    -- no dim: the std of all entries, same rule
    local flat = pk.matrix{ 2, 4, 4, 4, 5, 5, 7, 9 }       -- mean 5, population variance 4
    assert.are.equal(2, flat:std())
    assert.is_true(math.abs(flat:std{ ddof = 1 } - math.sqrt(32 / 7)) <= 1e-15)
    assert.is_true(math.abs(flat:t():std() - 2) <= 0)
  end)

  it("argmax(dim) gives 1-based indices; argmax() the row and column of the largest", function()
    local t = M:totable()
    local c1, c2 = M:argmax(1), M:argmax(2)
    assert.are.same({ 1, M:cols() }, { c1:shape() })
    assert.are.same({ M:rows(), 1 }, { c2:shape() })
    local bi, bj = 1, 1
    for j = 1, M:cols() do
      local b = 1
      for i = 2, M:rows() do if t[i][j] > t[b][j] then b = i end end
      assert.are.equal(b, c1:get(1, j))
    end
    for i = 1, M:rows() do
      local b = 1
      for j = 2, M:cols() do if t[i][j] > t[i][b] then b = j end end
      assert.are.equal(b, c2:get(i, 1))
      for j = 1, M:cols() do if t[i][j] > t[bi][bj] then bi, bj = i, j end end
    end
    assert.are.same({ bi, bj }, { M:argmax() })
  end)

  it("argmax: ties go to the first, a NaN counts as the maximum (the first NaN)", function()
    local T = pk.matrix{ { 1, 5, 5 }, { 2, NaN, 3 }, { 9, NaN, 9 } }
    assert.are.same({ { 3, 2, 3 } }, T:argmax(1):totable())
    assert.are.same({ { 2 }, { 2 }, { 2 } }, T:argmax(2):totable())
    assert.are.same({ 2, 2 }, { T:argmax() })
    assert.are.same({ 1, 2 }, { pk.matrix{ { 5, 7, 7 } }:argmax() })
  end)

  it("handles empty matrices: sums are zero, means and argmax refuse", function()
    local E = pk.zeros(0, 3)
    assert.are.same({ { 0, 0, 0 } }, E:sum(1):totable())
    assert.are.same({ 0, 1 }, { E:sum(2):shape() })
    assert.are.same({ 0, 1 }, { E:argmax(2):shape() })
    H.raises("mean: dim 1 of a 0x3 matrix has no entries to average", E.mean, E, 1)
    H.raises("argmax: dim 1 of a 0x3 matrix has no entries", E.argmax, E, 1)
    H.raises("argmax: a 0x3 matrix has no entries", E.argmax, E)
    H.raises("std: a matrix of 0 entries with ddof = 0 leave no degrees of freedom", E.std, E)
    H.raises("std: a column of 1 entry with ddof = 1 leave no degrees of freedom",
      pk.matrix{ { 1, 2 } }.std, pk.matrix{ { 1, 2 } }, 1, { ddof = 1 })
  end)

  it("checks dim and options", function()
    for _, f in ipairs{ "sum", "mean", "std", "argmax" } do
      H.raises(f .. ": dim must be 1 (one value per column) or 2 (one per row), got 3", M[f], M, 3)
      H.raises(f .. ": dim must be 1 (one value per column) or 2 (one per row), got 0", M[f], M, 0)
      H.raises("dim must be an integer, got 1.5", M[f], M, 1.5)
      H.raises("dim must be an integer, got string", M[f], M, "1")
    end
    H.raises("std: unknown option 'dof'", M.std, M, 1, { dof = 1 })
    H.raises("std: ddof must be >= 0, got -1", M.std, M, { ddof = -1 })
  end)
end)

describe("stacking", function()
  local B, C = pk.randn(4, 2, 8), pk.randn(2, 3, 9)

  it("hstack puts matrices side by side, vstack on top of each other", function()
    local Ht, a, b = pk.hstack{ A, B, pk.zeros(4, 0) }:totable(), A:totable(), B:totable()
    for i = 1, 4 do
      local want = {}
      for _, x in ipairs(a[i]) do want[#want + 1] = x end
      for _, x in ipairs(b[i]) do want[#want + 1] = x end
      same_bits({ want }, pk.matrix{ Ht[i] }, "hstack row " .. i)
    end
    local V = pk.vstack{ A, C, pk.zeros(0, 3) }
    local want = A:totable()
    for _, row in ipairs(C:totable()) do want[#want + 1] = row end
    same_bits(want, V, "vstack")
    same_bits(A:totable(), pk.hstack{ A }, "hstack of one")
  end)

  it("names the entry whose shape does not fit", function()
    H.raises("hstack: entry 3 has 2 rows, entry 1 has 4 (shapes 2x3 and 4x3)", pk.hstack, { A, B, C })
    H.raises("vstack: entry 2 has 2 columns, entry 1 has 3", pk.vstack, { A, B })
    H.raises("hstack: no matrices to stack", pk.hstack, {})
    H.raises("vstack: entry 2 is number, not a matrix", pk.vstack, { A, 3 })
    H.raises("hstack: entry 1 is table, not a matrix", pk.hstack, { {} })
    local R = pk.eye(2)
    R:release()
    H.raises("vstack: entry 1 has been released", pk.vstack, { R })
    H.raises("table expected", pk.hstack, A)
  end)
end)

describe("pk.split", function()
  -- X carries its row number in column 1, Y ten times it
  local n = 23
  local X, Y = pk.zeros(n, 2), pk.zeros(n, 1)
  for i = 1, n do X:set(i, 1, i); X:set(i, 2, -i); Y:set(i, 1, 10 * i) end

  it("splits the rows of X and Y alike into disjoint parts that cover them", function()
    local Xtr, Ytr, Xte, Yte, itr, ite = pk.split(X, Y, { test = 0.2, seed = 1 })
    local ntest = math.floor(0.2 * n + 0.5)
    assert.are.same({ n - ntest, 2 }, { Xtr:shape() })
    assert.are.same({ ntest, 2 }, { Xte:shape() })
    assert.are.same({ n - ntest, 1 }, { Ytr:shape() })
    assert.are.same({ ntest, 1 }, { Yte:shape() })
    local seen = {}
    for _, part in ipairs{ { Xtr, Ytr, itr }, { Xte, Yte, ite } } do
      local Xp, Yp, idx = part[1], part[2], part[3]
      assert.are.equal(Xp:rows(), #idx)
      same_bits(X:gather(idx):totable(), Xp, "X rows by index")
      same_bits(Y:gather(idx):totable(), Yp, "Y rows by index")
      for _, i in ipairs(idx) do
        assert.is_nil(seen[i], "row " .. i .. " twice")
        seen[i] = true
      end
    end
    for i = 1, n do assert.is_true(seen[i], "row " .. i .. " missing") end
  end)

  it("is the same split for the same seed, another for another seed", function()
    local _, _, _, _, a = pk.split(X, Y, { seed = 5 })
    local _, _, _, _, b = pk.split(X, Y, { seed = 5 })
    local _, _, _, _, c = pk.split(X, Y, { seed = 6 })
    assert.are.same(a, b)
    assert.are_not.same(a, c)
    pk.manual_seed(3)
    local _, _, _, _, d = pk.split(X, Y)
    pk.manual_seed(3)
    local _, _, _, _, e = pk.split(X, Y)
    assert.are.same(d, e)
  end)

  it("takes a count, a fraction (rounded), no shuffle, and no Y", function()
    local Xtr, _, Xte = pk.split(X, Y, { test = 5, seed = 2 })
    assert.are.equal(5, Xte:rows())
    assert.are.equal(n - 5, Xtr:rows())
    assert.are.equal(math.floor(0.25 * n + 0.5), select(3, pk.split(X, Y)):rows())   -- default 0.25
    local a, ya, b, yb, itr, ite = pk.split(X, Y, { test = 3, shuffle = false })
    local order = {}
    for i = 1, n do order[i] = i end
    assert.are.same(order, table.move(ite, 1, 3, #itr + 1, table.move(itr, 1, #itr, 1, {})))
    assert.are.same({ n - 2, n - 1, n }, ite)
    same_bits(X:slice(1, n - 3):totable(), a, "in order: training rows first")
    same_bits(X:slice(n - 2, n):totable(), b, "in order: the last rows test")
    same_bits(Y:slice(n - 2, n):totable(), yb, "Y alike")
    assert.are.equal(n - 3, ya:rows())
    local x1, y1, x2, y2 = pk.split(X, { test = 4, seed = 1 })
    assert.is_nil(y1)
    assert.is_nil(y2)
    assert.are.equal(4, x2:rows())
    assert.are.equal(n - 4, x1:rows())
  end)

  it("refuses mismatched rows, empty sides and bad options", function()
    H.raises("split: X has 23 rows, Y has 4", pk.split, X, pk.zeros(4, 1))
    H.raises("split: test = 0.01 of 23 rows leaves the test set empty", pk.split, X, Y, { test = 0.01 })
    H.raises("split: test = 0.99 of 23 rows leaves the training set empty", pk.split, X, Y, { test = 0.99 })
    H.raises("split: test = 23 of 23 rows leaves no training rows", pk.split, X, Y, { test = 23 })
    H.raises("split: test = 0: a count of test rows must be >= 1", pk.split, X, Y, { test = 0 })
    H.raises("a fraction must be in (0, 1)", pk.split, X, Y, { test = 1.0 })
    H.raises("a fraction must be in (0, 1)", pk.split, X, Y, { test = 0 / 0 })
    H.raises("split: test must be a fraction in (0, 1) or an integer count, got string", pk.split, X, Y, { test = "20%" })
    H.raises("split: unknown option 'tests'", pk.split, X, Y, { tests = 0.2 })
    H.raises("split: option 'seed' must be an integer, got 1.5", pk.split, X, Y, { seed = 1.5 })
    H.raises("split: test = 0.25 of 1 rows leaves the test set empty", pk.split, pk.zeros(1, 2))
  end)
end)

describe("pk.accuracy", function()
  -- the fraction of rows whose argmax (first of ties) is the label, by loops
  local function loop_accuracy(F, labels)
    local f, l, ok = F:totable(), labels:totable(), 0
    for i = 1, #f do
      local b, nan = 1, false
      for k = 1, #f[i] do
        if f[i][k] ~= f[i][k] then nan = true elseif f[i][k] > f[i][b] then b = k end
      end
      local truth = l[i][1]
      if #l[i] > 1 then
        truth = 1
        for k = 2, #l[i] do if l[i][k] > l[i][truth] then truth = k end end
      end
      if not nan and b == truth then ok = ok + 1 end
    end
    return ok / #f, ok
  end

  it("scores argmax per row against labels 1..K or one-hot rows", function()
    local F = pk.randn(40, 4, 11)
    local labels = pk.zeros(40, 1)
    local onehot = pk.zeros(40, 4)
    for i = 1, 40 do
      local k = (i * 7) % 4 + 1
      labels:set(i, 1, k)
      onehot:set(i, k, 1)
    end
    local a, c = pk.accuracy(F, labels)
    local wa, wc = loop_accuracy(F, labels)
    assert.are.equal(wa, a)
    assert.are.equal(wc, c)
    assert.are.same({ a, c }, { pk.accuracy(F, onehot) })
    assert.are.same({ 1, 40 }, { pk.accuracy(onehot, labels) })
    assert.are.equal(F:argmax(2):t():totable()[1][1], select(2, F:row(1):argmax()))
  end)

  it("scores one logit per row as class 1 where it is > 0 against 0/1 labels", function()
    local F = pk.matrix{ 2, -1, 0, 0.5, -3 }
    local Y = pk.matrix{ 1, 0, 1, 0, 0 }
    local ok = 0
    for i = 1, 5 do
      if (F:get(i, 1) > 0 and 1 or 0) == Y:get(i, 1) then ok = ok + 1 end
    end
    assert.are.same({ ok / 5, ok }, { pk.accuracy(F, Y) })
    assert.are.equal(3, ok)      -- a logit of exactly 0 says class 0
  end)

  it("counts a row with a NaN logit as wrong", function()
    local F = pk.matrix{ { NaN, 1 }, { 0, 1 }, { 1, 0 } }
    assert.are.same({ 1 / 3, 1 }, { pk.accuracy(F, pk.matrix{ 2, 1, 1 }) })
    assert.are.same({ 0, 0 }, { pk.accuracy(pk.matrix{ NaN }, pk.matrix{ 0 }) })
  end)

  it("refuses labels that are not classes, and mismatched shapes", function()
    local F = pk.randn(3, 3, 1)
    H.raises("accuracy: label 4 in row 2 is not a class in 1..3", pk.accuracy, F, pk.matrix{ 1, 4, 2 })
    H.raises("accuracy: label 1.5 in row 1 is not a class in 1..3", pk.accuracy, F, pk.matrix{ 1.5, 1, 2 })
    H.raises("accuracy: label 0 in row 3 is not a class in 1..3", pk.accuracy, F, pk.matrix{ 1, 1, 0 })
    H.raises("accuracy: label 2 in row 1 is not 0 or 1", pk.accuracy, pk.matrix{ 1, 2 }, pk.matrix{ 2, 0 })
    H.raises("accuracy: the logits have 3 rows, the labels 2", pk.accuracy, F, pk.matrix{ 1, 2 })
    H.raises("accuracy: labels must be n x 1 (classes 1..3) or n x 3 (one-hot rows), got 3x2",
      pk.accuracy, F, pk.zeros(3, 2))
    H.raises("accuracy: no rows to score", pk.accuracy, pk.zeros(0, 3), pk.zeros(0, 1))
    H.raises("accuracy: the label row 1 holds a NaN", pk.accuracy, F, pk.matrix{ { NaN, 0, 1 }, { 1, 0, 0 }, { 1, 0, 0 } })
    H.raises("pathkernel.Matrix expected", pk.accuracy, F, { 1, 2, 3 })
  end)
end)
