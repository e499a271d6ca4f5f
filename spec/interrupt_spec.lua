-- Ctrl-C: a real SIGINT sent to a child lua5.4 in the middle of long work
-- (training, a tangent Gram, a path kernel, a decomposition) stops it at
-- its next check with an error that says "interrupted", leaves the network
-- at the weights of its last complete step, and gives SIGINT back to the
-- host afterwards: lua5.4's own handler ("interrupted!") works again. With
-- pk.handle_interrupts(false) the module leaves SIGINT alone. The C API's
-- cancel flag is checked by examples/embed/capi.c. Under `make check` the
-- children load the sanitizer build, so a leak on an interrupted path fails
-- here too (LeakSanitizer reports when the child exits).
local H = require "helpers"
local pk = H.pk

local function shq(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- the bound on the time from the signal to the error: the checks are a
-- fraction of a second apart, the work itself runs for minutes
local PROMPT = 2.0

-- A child lua5.4 running `code` with this run's module, stderr merged into
-- the pipe; the shell prints its pid and execs lua5.4, which keeps it.
local function spawn(code)
  local file = H.tmpname(".lua")
  H.write_bytes(file, "io.stdout:setvbuf('line')\n" .. code)
  local cmd = string.format("exec 2>&1; echo $$; exec env LUA_PATH=%s LUA_CPATH=%s lua5.4 %s",
    shq(package.path), shq(package.cpath), shq(file))
  local p = assert(io.popen(cmd))
  local c = { p = p, pid = assert(math.tointeger(tonumber(p:read("l")))), file = file, out = {} }
  return c
end

-- read the child's lines up to one that starts with `word`; its rest
local function expect(c, word)
  for l in c.p:lines() do
    c.out[#c.out + 1] = l
    if l:sub(1, #word) == word then return l:sub(#word + 2) end
  end
  error("the child ended without '" .. word .. "':\n" .. table.concat(c.out, "\n"))
end

-- everything the child still writes, until it exits
local function finish(c)
  local rest = c.p:read("a")
  c.p:close()
  os.remove(c.file)
  local all = table.concat(c.out, "\n") .. "\n" .. rest
  assert.is_nil(all:find("Sanitizer", 1, true), all)
  return rest, all
end

local function interrupt(c, delay)
  os.execute("sleep " .. delay)
  local t = pk.clock()
  assert(os.execute("kill -INT " .. c.pid))
  return t
end

-- "caught <clock> <message>" from the child: when it caught the error
local function caught(c, sent)
  local line = expect(c, "caught")
  local at, msg = line:match("^(%S+) (.*)$")
  assert.is_true(tonumber(at) - sent < PROMPT,
    string.format("the work stopped %.2f s after the signal: %s", tonumber(at) - sent, msg))
  return msg
end

-- After the long work: a busy Lua loop that only lua5.4's own SIGINT
-- handler can stop (it raises "interrupted!"). If the module had left its
-- handler in place, the loop would run to its end.
local LOOP = [[
print("loop")
local t0 = pk.clock()
while pk.clock() - t0 < 20 do end
print("loop ended")
]]

local function host_handler_back(c)
  expect(c, "loop")
  interrupt(c, 0.3)
  local rest = finish(c)
  assert.truthy(rest:find("interrupted!", 1, true), rest)
  assert.is_nil(rest:find("loop ended", 1, true), rest)
end

local PRELUDE = [[
local pk = require "pathkernel"
local function try(f, ...)
  local ok, err = pcall(f, ...)
  print(string.format("caught %.6f %s", pk.clock(), ok and "(no error)" or tostring(err):gsub("\n", " ")))
  return ok, tostring(err)
end
]]

describe("SIGINT", function()
  it("stops training at a step boundary: the network keeps the weights of that step", function()
    local c = spawn(PRELUDE .. [[
      local X, Y = pk.randn(32, 3, 1), pk.randn(32, 1, 2)
      local function fresh() return pk.network{ sizes = { 3, 16, 1 }, seed = 5 } end
      local function same(a, b)
        local pa, pb = a:params(), b:params()
        for i = 1, pa:rows() do if pa:get(i, 1) ~= pb:get(i, 1) then return false end end
        return true
      end
      -- plain, then recording with an online machine: no half object either way
      for _, extra in ipairs{ {}, { record = { every = 1000 }, explain = pk.randn(4, 3, 3) } } do
        local net = fresh()
        local o = { X = X, Y = Y, steps = 1000000, lr = 1e-3, progress = false }
        for k, v in pairs(extra) do o[k] = v end
        print("ready")
        local _, err = try(net.train, net, o)
        local s = math.tointeger(tonumber(err:match("keeps the weights of step (%d+)")))
        local ref = fresh()
        if s and s > 0 then ref:train{ X = X, Y = Y, steps = s, lr = 1e-3, progress = false } end
        print("steps " .. tostring(s) .. " same " .. tostring(same(net, ref)))
        -- the flag is clear again: the next call runs to its end
        print("again " .. #net:train{ X = X, Y = Y, steps = 3, lr = 1e-3, progress = false })
      end
    ]] .. LOOP)
    for round = 1, 2 do
      expect(c, "ready")
      local msg = caught(c, interrupt(c, 0.5))
      assert.truthy(msg:find("^train: interrupted after step %d+ of 1000000 %(the network keeps the weights of step %d+%)$"), msg)
      local s, same = expect(c, "steps"):match("^(%d+) same (%a+)$")
      assert.is_true(tonumber(s) > 0, "round " .. round)
      assert.are.equal("true", same)
      assert.are.equal("3", expect(c, "again"))
    end
    host_handler_back(c)
  end)

  it("stops a tangent kernel's Gram in the middle of its one big tile", function()
    local c = spawn(PRELUDE .. [[
      -- about 4 s here in one tile (3000 rows through 512-wide layers took
      -- 1.3 s: too close to the 0.5 s before the signal on a faster machine)
      local net = pk.network{ sizes = { 8, 1024, 1024, 1 }, seed = 1 }
      local K = pk.kernel.tangent(net)
      local X = pk.randn(4000, 8, 2)
      print("ready")
      try(K.gram, K, X)
      print("after " .. K:gram(X:slice(1, 2)):rows())
    ]] .. LOOP)
    expect(c, "ready")
    local msg = caught(c, interrupt(c, 0.5))
    assert.are.equal("tangent kernel: interrupted", msg)
    assert.are.equal("2", expect(c, "after"))
    host_handler_back(c)
  end)

  it("stops the classical kernels' Grams, in BLAS products and in threaded passes, and a fit", function()
    local c = spawn(PRELUDE .. [[
      -- about 4 s for the product X1 X2^T and 15 s for the L1 distances
      -- here: work that a faster machine still cannot finish in the 0.5 s
      -- before the signal (2500 x 2000 took 0.96 s here)
      local X1 = pk.randn(4000, 3000, 1)
      local X2 = pk.matrix(X1)
      local Y = pk.randn(4000, 1, 2)
      local rbf, lap = pk.kernel.rbf{ gamma = 1e-3 }, pk.kernel.laplacian{ gamma = 1e-3 }
      print("ready")
      try(rbf.gram, rbf, X1, X2)
      print("ready")
      try(pk.machine.ridge, lap, X1, Y, { progress = false })
      print("after " .. rbf:gram(X1:slice(1, 3)):rows())
    ]] .. LOOP)
    expect(c, "ready")
    assert.are.equal("rbf: interrupted", caught(c, interrupt(c, 0.5)))
    expect(c, "ready")
    assert.are.equal("laplacian: interrupted", caught(c, interrupt(c, 0.5)))
    assert.are.equal("3", expect(c, "after"))
    host_handler_back(c)
  end)

  it("stops a path kernel and a decomposition between (and within) the steps of the run", function()
    local c = spawn(PRELUDE .. [[
      -- a short run on a few examples; the long work is on many queries
      -- (about 10 s for the Gram and 50 s for the decomposition)
      local X, Y = pk.randn(32, 4, 1), pk.randn(32, 1, 2)
      local net = pk.network{ sizes = { 4, 64, 64, 1 }, seed = 3 }
      local traj = net:train{ X = X, Y = Y, steps = 100, lr = 1e-3, record = true, progress = false }
      local K = pk.kernel.path(traj)
      print("ready")
      try(K.gram, K, pk.randn(1500, 4, 4))
      local km = pk.machine.from_trajectory(traj)
      print("ready")
      try(km.predict, km, pk.randn(20000, 4, 5))
      -- the machine answers again once the flag is clear
      print("ready")
      local _, a = km:verify(X:slice(1, 1))
      print("verified " .. tostring(a < 1e-6))
    ]] .. LOOP)
    expect(c, "ready")
    local msg = caught(c, interrupt(c, 0.5))
    assert.truthy(msg:find("^path kernel: interrupted at step %d+$"), msg)
    expect(c, "ready")
    msg = caught(c, interrupt(c, 0.5))
    assert.truthy(msg:find("^decomposition: interrupted at step %d+$"), msg)
    expect(c, "ready")
    assert.are.equal("true", expect(c, "verified"))
    host_handler_back(c)
  end)

  it("stops a metagradient going backwards and the retraining of an LDS", function()
    local c = spawn(PRELUDE .. [[
      -- a short run; the long work is many query outputs (about 20 s for
      -- the metagradient) and many retrainings (minutes for the LDS)
      local X, Y = pk.randn(32, 4, 1), pk.randn(32, 1, 2)
      local net = pk.network{ sizes = { 4, 64, 64, 1 }, seed = 3 }
      local o = { X = X, Y = Y, steps = 2000, lr = 1e-3, progress = false }
      o.record = { every = 50 }
      local traj = net:clone():train(o)
      local Xq = pk.randn(64, 4, 5)
      print("ready")
      try(pk.attribute.metagradient, traj, Xq)
      print("ready")
      try(pk.attribute.lds, { net = net, X = X, Y = Y, Xq = Xq:slice(1, 2), subsets = 1000,
        train = { steps = 2000, lr = 1e-3 }, scores = { s = pk.zeros(2, 32) } })
      -- the network is free again once the call ended
      net:release()
      print("released")
    ]] .. LOOP)
    expect(c, "ready")
    local msg = caught(c, interrupt(c, 0.5))
    assert.truthy(msg:find("^metagradient: interrupted at step %d+ of 2000 %(going backwards%)$"), msg)
    expect(c, "ready")
    msg = caught(c, interrupt(c, 0.5))
    assert.truthy(msg:find("^attribute.lds: interrupted at retraining %d+ of 1000$"), msg)
    expect(c, "released")
    host_handler_back(c)
  end)

  it("gives SIGINT back after nested calls and after a callback's error", function()
    local c = spawn(PRELUDE .. [[
      local K = pk.kernel.rbf{ gamma = 0.5 }
      local X = pk.randn(300, 3, 1)
      local depth = 0
      -- a progress callback that runs a Gram itself, then fails
      local ok, err = pcall(K.gram, K, X, { progress = function()
        depth = depth + 1
        if depth == 1 then K:gram(X:slice(1, 50)) end
        error("callback gave up")
      end })
      print("nested " .. tostring(ok) .. " " .. tostring(err:match("callback gave up") ~= nil))
    ]] .. LOOP)
    assert.are.equal("false true", expect(c, "nested"))
    host_handler_back(c)
  end)

  it("is left to the host after pk.handle_interrupts(false)", function()
    local c = spawn(PRELUDE .. [[
      print("previous " .. tostring(pk.handle_interrupts(false)))
      print("now " .. tostring(pk.handle_interrupts()))
      local net = pk.network{ sizes = { 3, 16, 1 }, seed = 5 }
      local X, Y = pk.randn(32, 3, 1), pk.randn(32, 1, 2)
      print("ready")
      -- lua5.4's handler raises "interrupted!" at the next Lua instruction:
      -- here the progress callback (the module's handler would stop the
      -- training itself, with its own message)
      try(net.train, net, { X = X, Y = Y, steps = 100000000, lr = 1e-3,
                            progress = function() end })
    ]])
    assert.are.equal("true", expect(c, "previous"))
    assert.are.equal("false", expect(c, "now"))
    expect(c, "ready")
    local msg = caught(c, interrupt(c, 0.5))
    assert.truthy(msg:find("interrupted!", 1, true), msg)
    assert.is_nil(msg:find("train: interrupted", 1, true), msg)
    finish(c)
  end)

  it("refuses a non-boolean setting", function()
    H.raises("bad argument #1 to 'handle_interrupts' (boolean expected, got string)",
      pk.handle_interrupts, "no")
    assert.is_true(pk.handle_interrupts())
  end)
end)

-- The C API: the host's own flag in pk_call_opts.cancel (examples/embed/capi.c
-- sets it before a training and a Gram and expects PK_ECANCEL, no object,
-- the weights unchanged). Built without the sanitizer runtime.
local has_cc = os.execute("command -v cc >/dev/null 2>&1") == true
local cc_it = has_cc and it or pending

describe("the C API's cancel flag", function()
  cc_it("stops pk_train and pk_kernel_gram with PK_ECANCEL", function()
    local p = assert(io.popen("env LD_PRELOAD= make -s --no-print-directory build/embed_capi 2>&1 && env LD_PRELOAD= build/embed_capi 2>&1"))
    local out = p:read("a")
    local ok = p:close()
    assert(ok, out)
    assert.truthy(out:find("cancel flag: cancelled: train: interrupted after step 0 of 200 (the network keeps the weights of step 0); tangent kernel: interrupted", 1, true), out)
    assert.truthy(out:find("embed_capi: ok", 1, true), out)
  end)
end)
