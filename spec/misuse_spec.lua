-- The misuse fuzzer (fuzz/misuse.lua) in a child process, in a scratch
-- folder: a few thousand calls of every function and method with wrong
-- arguments must end in returns and Lua errors only. Under `make check`
-- the child inherits the sanitizer runtime, so a report fails this spec
-- with the call that caused it. `make misuse N=100000` is the long run.
local H = require "helpers"
local pk = H.pk

local COUNT = tonumber(os.getenv("PK_MISUSE_COUNT")) or 3000

local function shq(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- package paths made absolute, for a child that runs elsewhere
local function absolute(path, cwd)
  local t = {}
  for e in path:gmatch("[^;]+") do
    t[#t + 1] = (e:sub(1, 1) == "/" or e == "") and e or cwd .. "/" .. e
  end
  return table.concat(t, ";")
end

describe("the misuse fuzzer", function()
  it("makes " .. COUNT .. " wrong calls without a crash or a sanitizer report", function()
    local cwd = assert(io.popen("pwd")):read("l")
    local dir = H.tmpname("dir")
    local trace = dir .. "/trace"
    assert(os.execute("mkdir -p " .. shq(dir)))
    local cmd = string.format("cd %s && LUA_PATH=%s LUA_CPATH=%s lua5.4 %s %d --seed %d --trace %s 2>&1",
      shq(dir), shq(absolute(package.path, cwd)), shq(absolute(package.cpath, cwd)),
      shq(cwd .. "/fuzz/misuse.lua"), COUNT, os.time() % 1000, shq(trace))
    local p = assert(io.popen(cmd))
    local out = p:read("a")
    local ok = p:close()
    local last = ""
    local f = io.open(trace)
    if f then
      for l in f:lines() do last = l end
      f:close()
    end
    os.execute("rm -rf " .. shq(dir))
    assert(ok, "the misuse fuzzer died at call: " .. last .. "\n" .. out:sub(-4000))
    local calls = tonumber(out:match("misuse: (%d+) calls"))
    assert.are.equal(COUNT, calls, out)
    -- it found the module's functions and every userdata type, and trained
    local nf, nm, nt = out:match("on (%d+) module functions and (%d+) methods of (%d+) types")
    assert.is_true(tonumber(nf) >= 30 and tonumber(nm) >= 80 and tonumber(nt) >= 6, out)
    for _, t in ipairs{ "Matrix", "Network", "Trajectory", "KernelMachine", "Kernel", "Regressor" } do
      assert.truthy(out:find("pathkernel." .. t .. "[ %]]"), t .. " not reached: " .. out)
    end
    -- about 0.7% of the calls train: at 3000 calls some always do; the 300
    -- calls of the valgrind run (PK_MISUSE_COUNT) train none for some seeds
    if COUNT >= 2000 then assert.is_true(tonumber(out:match("(%d+) trainings ran")) > 0, out) end
  end)

  it("stops the trainings it starts after a few steps, whatever steps they ask for", function()
    local M = dofile("fuzz/misuse.lua")
    local net = pk.network{ sizes = { 2, 3, 1 }, seed = 1 }
    local X, Y = pk.randn(4, 2, 1), pk.randn(4, 1, 2)
    local calls = 0
    -- the guard's clock is the process's CPU time: with the collector
    -- stopped, a collection of this test run's whole heap (the loss
    -- history of a million steps is 8 MB) cannot spend it (under valgrind
    -- that took most of the 0.25 s)
    -- (CI's valgrind run once stopped this at step 1 on the time cap: the
    -- step count is checked with a time cap no machine reaches, the time
    -- cap on its own below)
    collectgarbage("stop")
    local t0 = os.clock()
    local losses = net:train{ X = X, Y = Y, steps = 1000000, lr = 0.01, progress = false,
      on_step = M.guarded(function() calls = calls + 1 end, 3600) }
    collectgarbage("restart")
    assert.are.equal(M.STEP_CAP + 1, #losses)
    assert.are.equal(M.STEP_CAP, calls)
    assert.is_true(os.clock() - t0 < 1)
    -- the time cap alone: a step that outlasts it ends the run after it
    calls = 0
    losses = net:train{ X = X, Y = Y, steps = 1000000, lr = 0.01, progress = false,
      on_step = M.guarded(function()
        calls = calls + 1
        local t = os.clock()
        while os.clock() - t < M.TIME_CAP do end
      end) }
    assert.are.equal(1, calls)
    assert.are.equal(2, #losses)
  end)

  it("runs in this process too, restoring the memory limit and writing nothing here", function()
    local before = assert(io.popen("ls -A")):read("a")
    local limit = pk.memory_limit()
    local M = dofile("fuzz/misuse.lua")
    local stats = M.main({ "500", "--quiet", "--seed", "3" })
    assert.are.equal(500, stats.calls)
    assert.is_true(stats.ok > 0 and stats.err > 0)
    assert.are.equal(0, stats.unnamed)      -- every error named its function and argument
    assert.are.equal(limit, pk.memory_limit())
    assert.are.equal(before, assert(io.popen("ls -A")):read("a"))
  end)
end)
