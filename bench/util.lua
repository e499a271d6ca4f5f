-- bench/util.lua - what the benchmarks share: wall-clock timing, a temp
-- folder, running the Python competitor and reading its `key value` lines,
-- and the dgemm rate of this machine measured in the same run.
local pk = require "pathkernel"

local U = {}

U.python = os.getenv("PK_PYTHON") or "/usr/bin/python3"
U.here = (arg and arg[0] or "bench/x.lua"):match("^(.*)/[^/]*$") or "bench"

function U.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p " .. p))
  return p
end

function U.rmdir(p)
  os.execute("rm -rf '" .. p .. "'")
end

-- best wall time of `reps` runs of f
function U.time(f, reps)
  local best = math.huge
  for _ = 1, reps or 1 do
    local t0 = pk.clock()
    f()
    best = math.min(best, pk.clock() - t0)
  end
  return best
end

-- Run bench/<script> with args; returns a table of its key/value lines, or
-- nil and a reason when the competitor is unavailable (exit code 3).
function U.competitor(script, args)
  local cmd = ("%s %s/%s %s 2>&1"):format(U.python, U.here, script, args)
  local p = assert(io.popen(cmd))
  local out, lines = {}, {}
  for l in p:lines() do
    lines[#lines + 1] = l
    local k, v = l:match("^(%S+) (.*)$")
    if k then out[k] = tonumber(v) or v end
  end
  local _, _, code = p:close()
  if code == 3 then return nil, "skipped: " .. table.concat(lines, " ") end
  if code ~= 0 then error(("competitor %s failed (exit %s):\n%s"):format(script, tostring(code), table.concat(lines, "\n"))) end
  return out
end

-- GFLOP/s of an n x n x n dgemm through pk (the machine's BLAS rate)
function U.dgemm_rate(n)
  local A, B = pk.randn(n, n, 1), pk.randn(n, n, 2)
  local _ = A * B
  local t = U.time(function() local C = A * B end, 3)
  return 2 * n * n * n / t / 1e9
end

function U.header(title)
  print(("== %s"):format(title))
end

function U.row(name, value, unit)
  print(("  %-48s %12.5g %s"):format(name, value, unit or ""))
end

return U
