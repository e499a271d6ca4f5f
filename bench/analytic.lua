-- bench/analytic.lua - the analytic NTK / NNGP Gram (4096 x 4096, depth 3,
-- relu, sigma_w 1.5, sigma_b 0.1) against a vectorized NumPy version of the
-- same recursion (bench/numpy_analytic.py) in the same run. Target: >= 5x
-- faster. Two cases: the training Gram K(X, X), which pathkernel computes
-- as a triangle, and a cross Gram K(X1, X2) of distinct sets, where both
-- sides do every entry. Prints "skipped: ..." and exits 0 when
-- /usr/bin/python3 lacks NumPy.
local pk = require "pathkernel"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local dir = here .. "/out/analytic"
local N, D, DEPTH, SW, SB = 4096, 64, 3, 1.5, 0.1
local REPEATS = 2

assert(os.execute("mkdir -p '" .. dir .. "'"))

local function python(args)
  local cmd = ("/usr/bin/python3 %s/numpy_analytic.py --dir '%s' %s 2>&1; echo \"exit $?\"")
    :format(here, dir, args)
  local p = assert(io.popen(cmd))
  local out, lines = {}, {}
  for l in p:lines() do
    lines[#lines + 1] = l
    local k, v = l:match("^(%S+) (%S+)$")
    if k then out[k] = tonumber(v) or v end
  end
  p:close()
  if out.exit == 3 then return nil, table.concat(lines, " ", 1, #lines - 1) end
  if out.exit ~= 0 then error("numpy_analytic.py failed:\n" .. table.concat(lines, "\n")) end
  return out
end

if os.getenv("OPENBLAS_NUM_THREADS") then
  print("note: OPENBLAS_NUM_THREADS is set; both sides use it")
end

local ntk = pk.kernel.ntk{ depth = DEPTH, activation = "relu", sigma_w = SW, sigma_b = SB }
local nngp = pk.kernel.nngp{ depth = DEPTH, activation = "relu", sigma_w = SW, sigma_b = SB }

-- max relative difference, split into the diagonal (i == j) and the rest
local function compare(A, B, square)
  local a, b = A:totable(), B:totable()
  local off, diag = 0, 0
  for i = 1, #a do
    local ra, rb = a[i], b[i]
    for j = 1, #ra do
      local e = math.abs(ra[j] - rb[j]) / math.max(math.abs(rb[j]), 1e-300)
      if e ~= e then e = math.huge end
      if square and i == j then
        if e > diag then diag = e end
      elseif e > off then
        off = e
      end
    end
  end
  return off, diag
end

local failed = false
print(("analytic kernels: %d x %d Grams, %d features, depth %d, relu, sigma_w %g, sigma_b %g")
  :format(N, N, D, DEPTH, SW, SB))
for _, case in ipairs{ "K(X, X)", "K(X1, X2)" } do
  local X1 = pk.randn(N, D, 11)
  local X2 = case == "K(X, X)" and X1 or pk.randn(N, D, 12)
  assert(X1:save(dir .. "/X1.pkm"))
  assert(X2:save(dir .. "/X2.pkm"))

  local best, G = math.huge, nil
  for _ = 1, REPEATS do
    G = nil
    collectgarbage()
    local t0 = pk.clock()
    G = ntk:gram(X1, X2)
    local t = pk.clock() - t0
    if t < best then best = t end
  end
  local S = nngp:gram(X1, X2)

  local theirs = math.huge
  for _ = 1, REPEATS do
    local out, why = python(("--depth %d --activation relu --sigma-w %.17g --sigma-b %.17g")
      :format(DEPTH, SW, SB))
    if not out then
      print("skipped: " .. why)
      os.exit(0)
    end
    if out.time < theirs then theirs = out.time end
  end

  local square = X1 == X2
  local o1, d1 = compare(G, pk.load(dir .. "/ntk_numpy.pkm"), square)
  local o2, d2 = compare(S, pk.load(dir .. "/nngp_numpy.pkm"), square)
  local speedup = theirs / best
  print(("%-9s pathkernel %7.3f s   NumPy %7.3f s   (best of %d; NumPy computes NNGP and NTK "
    .. "together, pathkernel the NTK)"):format(case, best, theirs, REPEATS))
  print(("%-9s speedup %.1fx (target >= 5x): %s"):format(case, speedup, speedup >= 5 and "ok" or "MISSED"))
  print(("%-9s max relative difference: ntk %.2g, nngp %.2g off the diagonal (target <= 1e-10)")
    :format(case, o1, o2))
  if square then
    -- on the diagonal NumPy takes c = x.x/d0 from a GEMM and the variances
    -- from einsum: their rounding residue becomes an angle ~ sqrt(eps) in
    -- relu's pi - theta; pathkernel takes both from the same numbers
    print(("%-9s on the diagonal: ntk %.2g, nngp %.2g (NumPy's own error ~ sqrt(eps); bound 1e-6)")
      :format(case, d1, d2))
  end
  if not (o1 <= 1e-10 and o2 <= 1e-10 and d1 <= 1e-6 and d2 <= 1e-6) then failed = true end
  G, S = nil, nil
  collectgarbage()
end
if failed then
  print("FAILED: results differ from NumPy's")
  os.exit(1)
end
