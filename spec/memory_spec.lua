-- Memory the garbage collector sees: matrices, networks and kernels hold
-- their storage in C, and the binding hands what the library allocates to
-- Lua's collector as debt, so a loop of temporaries runs collections and
-- stays at a few temporaries' worth without a collectgarbage() in sight.
-- Each loop runs in a child process of its own, whose peak resident size
-- (VmHWM) is its own; the bound is the peak before the loop plus eight
-- temporaries (the collector finishes a cycle per temporary or so, and a
-- dead temporary's finalizer frees it at the end of the next cycle).
local H = require "helpers"

local function shq(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Run `setup` then `n` iterations of `body` in a child lua5.4 (the same
-- module as this run); answer the peak resident KiB before and after.
local function peaks(setup, body, n)
  local f = H.tmpname(".lua")
  H.write_bytes(f, string.format([[
    local pk = require "pathkernel"
    local function hwm()
      for l in io.lines("/proc/self/status") do
        local v = l:match("^VmHWM:%%s+(%%d+)")
        if v then return tonumber(v) end
      end
    end
    %s
    local base = hwm()
    for _ = 1, %d do %s end
    io.write(base, " ", hwm(), " ", collectgarbage("count"), "\n")
  ]], setup, n, body))
  -- under the sanitizer run the child inherits ASan: its quarantine would
  -- hold freed blocks back, which is not what this measures
  local asan = os.getenv("LD_PRELOAD") and os.getenv("LD_PRELOAD"):find("asan") and
    "ASAN_OPTIONS=" .. shq((os.getenv("ASAN_OPTIONS") or "") .. ":quarantine_size_mb=0") .. " " or ""
  local p = assert(io.popen(string.format("%sLUA_PATH=%s LUA_CPATH=%s lua5.4 %s 2>&1", asan,
    shq(package.path), shq(package.cpath), shq(f))))
  local out = p:read("a")
  p:close()
  os.remove(f)
  local base, peak = out:match("^(%d+) (%d+)")
  assert(base, out)
  return tonumber(base), tonumber(peak)
end

local MiB = 1024     -- in KiB, as /proc/self/status counts

-- each loop of the issue: its setup, its body, the size of one temporary
local loops = {
  { "a loop of 200 pk.ones(1024, 1024) stays at a few matrices",
    "", "local A = pk.ones(1024, 1024)", 8 * MiB },
  { "200 calls of net:params() on a 1M-parameter network stay at a few copies",
    "local net = pk.network{ sizes = { 1000, 1000, 1 }, seed = 1 }\n" ..
    "assert(net:nparams() == 1000 * 1000 + 1000 + 1000 + 1)",
    "local p = net:params()", (1000 * 1000 + 2001) * 8 // 1024 },
  { "200 sums of two 2048 x 2048 temporaries stay at a few of them",
    "", "local C = pk.zeros(2048, 2048) + pk.ones(2048, 2048)", 32 * MiB },
}

-- #children: the work runs in child processes, which valgrind (make valgrind)
-- does not trace; `make test` and `make check` run it
describe("memory held in C #children", function()
  for _, l in ipairs(loops) do
    it(l[1], function()
      local base, peak = peaks(l[2], l[3], 200)
      assert.is_true(peak - base < 8 * l[4], ("peak %d KiB, base %d KiB"):format(peak, base))
    end)
  end

  it("leaves a stopped collector stopped", function()
    -- 20 temporaries of 8 MiB with the collector stopped by the script:
    -- nothing may collect them, so the peak holds them all
    local one = 8 * MiB
    local base, peak = peaks("collectgarbage('stop')", "local A = pk.ones(1024, 1024)", 20)
    assert.is_true(peak - base >= 19 * one, ("peak %d KiB, base %d KiB"):format(peak, base))
  end)
end)
