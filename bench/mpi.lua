-- bench/mpi.lua - the MPI part (issue 17), run by `make bench B=mpi` after
-- `make mpi`: each figure comes from bench/mpi/worker.lua under mpirun with
-- OpenBLAS on one thread per rank. The decomposition (and the data-parallel
-- training it comes from) under -np 1 and -np 2: speedup on this machine and
-- the share of the time spent communicating; the memory per rank of
-- mpi.ridge under -np 2 against pk.machine.ridge in one process at the
-- same n.
local U = require "bench.util"

local function have(cmd) return os.execute(cmd .. " >/dev/null 2>&1") end
local so = package.searchpath("pathkernel.mpi", package.cpath)
if not so or not have("command -v mpirun") then
  print("== mpi: skipped (make mpi first; mpirun from openmpi-bin)")
  return
end

local root = have("test \"$(id -u)\" = 0") and "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " or ""
local function run(np, args)
  local cmd = ("env OPENBLAS_NUM_THREADS=1 %smpirun -np %d --oversubscribe lua5.4 %s/mpi/worker.lua %s 2>&1")
    :format(root, np, U.here, args)
  local p = assert(io.popen(cmd))
  local out, lines = {}, {}
  for l in p:lines() do
    lines[#lines + 1] = l
    local k, v = l:match("^(%S+) (%S+)$")
    if k then out[k] = tonumber(v) or v end
  end
  if not p:close() then error("mpirun failed:\n" .. table.concat(lines, "\n")) end
  return out
end

local n, nq, steps = 512, 128, 100
U.header(("data-parallel training and the sharded decomposition: sizes {16, 128, 128, 1}, n = %d, %d queries, %d GD steps, OPENBLAS_NUM_THREADS=1"):format(n, nq, steps))
local one = run(1, ("decomp %d %d %d"):format(n, nq, steps))
local two = run(2, ("decomp %d %d %d"):format(n, nq, steps))
for _, r in ipairs{ one, two } do
  local tag = ("-np %d: "):format(r.ranks)
  U.row(tag .. "training with record, s", r.train_s)
  U.row(tag .. "  its allreduces alone (upper bound), share", r.train_allreduce_s / r.train_s)
  U.row(tag .. "decomposition (own examples), s", r.decomp_s)
  U.row(tag .. "combining over ranks (predict), s", r.combine_s)
  U.row(tag .. "  communication share of the decomposition", r.combine_s / (r.decomp_s + r.combine_s))
  U.row(tag .. "verify max relative error", r.verify_rel)
end
U.row("speedup -np 2 / -np 1, training", one.train_s / two.train_s)
U.row("speedup -np 2 / -np 1, decomposition", (one.decomp_s + one.combine_s) / (two.decomp_s + two.combine_s))

local nr = 3000
U.header(("kernel ridge at n = %d (rbf, 8 inputs): peak memory per rank over its start"):format(nr))
local r1 = run(1, ("ridge1 %d"):format(nr))
local r2 = run(2, ("ridge %d"):format(nr))
U.row("the Gram n x n, MiB", r1.gram_mib)
U.row("pk.machine.ridge, one process: peak, MiB", r1.peak_rank_mib)
U.row("mpi.ridge -np 2: peak of the worst rank, MiB", r2.peak_rank_mib)
U.row("per rank / one process", r2.peak_rank_mib / r1.peak_rank_mib)
U.row("pk.machine.ridge fit, s", r1.fit_s)
U.row("mpi.ridge -np 2 fit, s", r2.fit_s)
