-- bench/mpi/worker.lua - one rank of bench/mpi.lua (run under mpirun):
-- "decomp" trains data-parallel with record = true and decomposes the run
-- sharded by examples; "ridge" fits mpi.ridge, "ridge1" pk.machine.ridge
-- (on rank 0 alone). Rank 0 prints `key value` lines; the memory figures
-- are per rank (every rank prints its own).
local pk = require "pathkernel"
local mpi = require "pathkernel.mpi"

local mode = arg[1] or "decomp"
local rank, size = mpi.rank(), mpi.size()

local function say(k, v) if rank == 0 then print(k .. " " .. tostring(v)) end end

local function status(field)
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+) kB")) * 1024
end

local function timed(f)
  mpi.barrier()
  local t0 = pk.clock()
  f()
  mpi.barrier()
  return pk.clock() - t0
end

if mode == "decomp" then
  local n, nq, steps = tonumber(arg[2]) or 512, tonumber(arg[3]) or 128, tonumber(arg[4]) or 100
  local X, Y = pk.randn(n, 16, 1), pk.randn(n, 1, 2)
  local Xq = pk.randn(nq, 16, 3)
  local net = pk.network{ sizes = { 16, 128, 128, 1 }, activation = "tanh", seed = 3 }
  local Xl, Yl = mpi.shard(X), mpi.shard(Y)
  local traj
  local t_train = timed(function()
    traj = net:train{ X = Xl, Y = Yl, lr = 0.05, steps = steps, record = true, comm = mpi, progress = false }
  end)
  -- what training communicates: one allreduce of P + 2 values a step
  local buf = pk.zeros(net:nparams() + 2, 1)
  local t_ar = timed(function() for _ = 1, steps do mpi.allreduce(buf) end end)
  local km = pk.machine.from_trajectory(traj, { comm = mpi })
  -- the rank's own contributions (no communication), then predict, which
  -- adds them up over the ranks (the only exchange of the decomposition)
  local t_dec = timed(function() km:contributions(Xq, { progress = false }) end)
  local t_comb = timed(function() km:predict(Xq, { progress = false }) end)
  local _, rel = km:verify(Xq)
  say("ranks", size)
  say("train_s", t_train)
  say("train_allreduce_s", t_ar)
  say("decomp_s", t_dec)
  say("combine_s", t_comb)
  say("verify_rel", rel)
elseif mode == "ridge" or mode == "ridge1" then
  local n = tonumber(arg[2]) or 3000
  local X, Y = pk.randn(n, 8, 1), pk.randn(n, 1, 2)
  local K = pk.kernel.rbf{ gamma = 0.1 }
  local Xl, Yl = mpi.shard(X), mpi.shard(Y)
  collectgarbage()
  local base = status("VmRSS")
  local t = timed(function()
    if mode == "ridge1" then
      if rank == 0 then local r = pk.machine.ridge(K, X, Y, { lambda = 1e-3 }) end
    else
      local r = mpi.ridge(K, Xl, Yl, { lambda = 1e-3 })
    end
  end)
  local peak = status("VmHWM") - base
  local all = mpi.allgather(pk.matrix{ { peak } })
  say("ranks", size)
  say("n", n)
  say("fit_s", t)
  local worst = 0
  for r = 1, all:rows() do worst = math.max(worst, all:get(r, 1)) end
  say("peak_rank_mib", worst / 2^20)
  say("gram_mib", n * n * 8 / 2^20)
end
