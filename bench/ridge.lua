-- bench/ridge.lua - kernel ridge regression (fit + predict, rbf kernel,
-- n = 4096 training points) against scikit-learn's KernelRidge on the same
-- data in the same run. Targets: predictions equal to 1e-8 (relative to the
-- largest), time <= 1.0x scikit-learn's. Prints "skipped: ..." and exits 0
-- when /usr/bin/python3 lacks NumPy or scikit-learn.
local pk = require "pathkernel"

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
local dir = here .. "/out/ridge"
local N, NQ, D, K = 4096, 1024, 32, 2
local GAMMA, LAMBDA = 1 / D, 1e-2
local REPEATS = 3

assert(os.execute("mkdir -p '" .. dir .. "'"))

-- targets: a smooth function of the inputs plus noise
local Xtr, Xte = pk.randn(N, D, 1), pk.randn(NQ, D, 2)
local W = pk.randn(D, K, 3) * (1 / math.sqrt(D))
local Ytr = Xtr * W + 0.1 * pk.randn(N, K, 4)
assert(Xtr:save(dir .. "/Xtr.pkm"))
assert(Ytr:save(dir .. "/Ytr.pkm"))
assert(Xte:save(dir .. "/Xte.pkm"))

-- run a Python side; returns its `key value` lines as a table, or nil and
-- the reason it was skipped
local function python(script, args)
  local cmd = ("/usr/bin/python3 %s/%s --dir '%s' %s 2>&1; echo \"exit $?\""):format(here, script, dir, args)
  local p = assert(io.popen(cmd))
  local out, lines = {}, {}
  for l in p:lines() do
    lines[#lines + 1] = l
    local k, v = l:match("^(%S+) (%S+)$")
    if k then out[k] = tonumber(v) or v end
  end
  p:close()
  if out.exit == 3 then return nil, table.concat(lines, " ", 1, #lines - 1) end
  if out.exit ~= 0 then error(script .. " failed:\n" .. table.concat(lines, "\n")) end
  return out
end

if os.getenv("OPENBLAS_NUM_THREADS") then
  print("note: OPENBLAS_NUM_THREADS is set; both sides use it")
end

-- pathkernel: fit + predict, best of REPEATS
local best, pred = math.huge, nil
for _ = 1, REPEATS do
  local t0 = pk.clock()
  local m = pk.machine.ridge(pk.kernel.rbf{ gamma = GAMMA }, Xtr, Ytr, { lambda = LAMBDA })
  pred = m:predict(Xte)
  local t = pk.clock() - t0
  if t < best then best = t end
  m:release()
end

local theirs = math.huge
for _ = 1, REPEATS do
  local out, why = python("sklearn_ridge.py", ("--gamma %.17g --lambda %.17g"):format(GAMMA, LAMBDA))
  if not out then
    print("skipped: " .. why)
    os.exit(0)
  end
  if out.time < theirs then theirs = out.time end
end

local ref = pk.load(dir .. "/pred_sklearn.pkm")
local err = (pred - ref):max_abs() / ref:max_abs()
local ratio = best / theirs
print(("ridge: %d train, %d test, %d features, %d outputs, rbf gamma = %g, lambda = %g")
  :format(N, NQ, D, K, GAMMA, LAMBDA))
print(("pathkernel     fit+predict %8.4f s (best of %d)"):format(best, REPEATS))
print(("scikit-learn   fit+predict %8.4f s (best of %d)"):format(theirs, REPEATS))
print(("time ratio pathkernel / scikit-learn = %.3f (target <= 1.0): %s")
  :format(ratio, ratio <= 1.0 and "ok" or "MISSED"))
print(("max |difference| / max |prediction| = %.3g (target <= 1e-8): %s")
  :format(err, err <= 1e-8 and "ok" or "FAILED"))
if not (err <= 1e-8) then os.exit(1) end
