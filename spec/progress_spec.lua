-- Progress of long operations: every one takes progress = false (silent),
-- true (a bar on stderr when it is a terminal) or a function(done, total)
-- that may stop the work by returning false; a bar never changes a result.
local H = require "helpers"
local pk = H.pk

local X, Y = pk.randn(30, 3, 1), pk.randn(30, 2, 2)
local Xq = pk.randn(5, 3, 3)

local function fresh()
  return pk.network{ sizes = {3, 8, 2}, activation = "tanh", seed = 4 }
end

-- calls of a progress function: monotone, ending at total
local function recorder()
  local calls = {}
  return calls, function(done, total)
    calls[#calls + 1] = { done, total }
  end
end

local function check_calls(calls, total)
  assert.is_true(#calls > 0, "the progress function was never called")
  for i, c in ipairs(calls) do
    assert.are.equal(total, c[2])
    if i > 1 then assert.is_true(c[1] > calls[i - 1][1]) end
  end
  assert.are.equal(total, calls[#calls][1])
end

describe("progress = false | true | function", function()
  it("works for net:train, and a bar or a function never changes the result", function()
    local a, b, c = fresh(), fresh(), fresh()
    local la = a:train{ X = X, Y = Y, lr = 0.1, steps = 12, progress = false }
    local lb = b:train{ X = X, Y = Y, lr = 0.1, steps = 12, progress = true }
    local calls, fn = recorder()
    local lc = c:train{ X = X, Y = Y, lr = 0.1, steps = 12, progress = fn }
    check_calls(calls, 12)
    assert.are.equal(12, #calls)
    assert.are.same(la, lb)
    assert.are.same(la, lc)
    assert.are.equal(0, (a:params() - c:params()):max_abs())
  end)

  it("works for net:train with record and explain", function()
    local calls, fn = recorder()
    local traj, km = fresh():train{ X = X, Y = Y, lr = 0.1, steps = 7, record = true, explain = Xq, progress = fn }
    check_calls(calls, 7)
    assert.are.equal(7, #traj)
    assert.is_true(km:verify(Xq, { progress = false }) < 1e-12)
  end)

  it("works for K:gram and K:diag", function()
    local K = pk.kernel.tangent(fresh(), { memory = 4096 })      -- small tiles: several calls
    local G0 = K:gram(X, Xq, { progress = false })
    local G1 = K:gram(X, Xq, { progress = true })
    local calls, fn = recorder()
    local G2 = K:gram(X, Xq, { progress = fn })
    assert.is_true(#calls > 1)
    check_calls(calls, calls[1][2])
    assert.are.equal(0, (G0 - G1):max_abs())
    assert.are.equal(0, (G0 - G2):max_abs())
    local D0 = K:diag(X, { progress = false })
    local dcalls, dfn = recorder()
    local D1 = K:diag(X, { progress = dfn })
    check_calls(dcalls, 30)
    assert.are.equal(0, (D0 - D1):max_abs())
  end)

  it("works for every kernel-machine method", function()
    local traj = fresh():train{ X = X, Y = Y, lr = 0.1, steps = 9, record = true, progress = false }
    local km = pk.machine.from_trajectory(traj)
    local P0 = km:predict(Xq, { progress = false })
    local P1 = km:predict(Xq, { progress = true })
    assert.are.equal(0, (P0 - P1):max_abs())
    local q = Xq:row(1)
    local methods = {
      { "predict", Xq }, { "contributions", Xq }, { "coefficients", Xq }, { "verify", Xq },
      { "regularization", Xq }, { "explain", q, 2 },
    }
    for _, m in ipairs(methods) do
      local name, arg, k = m[1], m[2], m[3]
      -- a fresh machine each time: results are cached per query set
      local fresh_km = pk.machine.from_trajectory(traj)
      local calls, fn = recorder()
      if k then fresh_km[name](fresh_km, arg, k, { progress = fn })
      else fresh_km[name](fresh_km, arg, { progress = fn }) end
      check_calls(calls, 9)
      if k then fresh_km[name](fresh_km, arg, k, { progress = false })
      else fresh_km[name](fresh_km, arg, { progress = false }) end
    end
    assert.is_true(km:predict(Xq, { progress = fresh }) ~= nil)   -- any function will do
  end)

  it("stops the work when the function returns false, and passes its errors on", function()
    local net = fresh()
    local before = net:params()
    H.raises("train: stopped at step 3", net.train, net,
             { X = X, Y = Y, lr = 0.1, steps = 10, progress = function(done) return done < 3 end })
    -- the network keeps the weights of the steps it took
    assert.is_true((net:params() - before):max_abs() > 0)
    local K = pk.kernel.tangent(net, { memory = 4096 })
    H.raises("cancelled", K.gram, K, X, Xq, { progress = function() return false end })
    H.raises("progress says no", K.diag, K, X, { progress = function() error("progress says no") end })
    local traj = fresh():train{ X = X, Y = Y, lr = 0.1, steps = 6, record = true }
    local km = pk.machine.from_trajectory(traj)
    H.raises("decomposition: cancelled at step 2", km.predict, km, Xq,
             { progress = function(done) return done < 2 end })
    H.raises("oops", km.verify, km, Xq, { progress = function() error("oops") end })
    -- a cancelled decomposition leaves the machine usable
    local _, rel = km:verify(Xq, { progress = false })
    assert.is_true(rel < 1e-12)
  end)

  it("refuses anything but a boolean or a function", function()
    local net = fresh()
    H.raises("option 'progress' must be a boolean or a function, got string", net.train, net,
             { X = X, Y = Y, steps = 2, progress = "yes" })
    local K = pk.kernel.tangent(net)
    H.raises("option 'progress' must be a boolean or a function, got number", K.gram, K, X, { progress = 1 })
    local km = pk.machine.from_trajectory(net:train{ X = X, Y = Y, steps = 2, record = true })
    H.raises("option 'progress' must be a boolean or a function, got table", km.predict, km, Xq, { progress = {} })
    H.raises("unknown option 'progres'", km.predict, km, Xq, { progres = false })
  end)
end)

-- The bar itself: on a terminal only, after the first second, cleared at
-- the end, and never with progress = false. util-linux `script` gives the
-- child a pseudo-terminal.
local has_script = os.execute("command -v script >/dev/null 2>&1") == true
local tty_it = has_script and it or pending

describe("the terminal bar", function()
  tty_it("is drawn on a terminal after a second, and not with progress = false", function()
    local prog = [[
      local pk = require "pathkernel"
      local X, Y = pk.randn(10, 2, 1), pk.randn(10, 1, 2)
      local function slow() local t = pk.clock() while pk.clock() - t < 0.006 do end end
      local net = pk.network{ sizes = {2, 4, 1}, seed = 1 }
      net:train{ X = X, Y = Y, lr = 0.01, steps = 200, on_step = slow, progress = %s }
      io.stdout:write("finished\n")
    ]]
    local function shq(v) return "'" .. v:gsub("'", "'\\''") .. "'" end
    local function run(progress)
      local file = H.tmpname(".lua")
      H.write_bytes(file, prog:format(progress))
      -- the child uses this run's module (the sanitizer build under make
      -- check, with its preloaded runtime); `script` itself does not
      local inner = ("LD_PRELOAD=%s LUA_PATH=%s LUA_CPATH=%s lua5.4 %s"):format(
        shq(os.getenv("LD_PRELOAD") or ""), shq(package.path), shq(package.cpath), shq(file))
      local cmd = ("LD_PRELOAD= script -qec %s /dev/null 2>&1"):format(shq(inner))
      local p = assert(io.popen(cmd))
      local out = p:read("a")
      p:close()
      os.remove(file)
      return out
    end
    local on = run("true")
    assert.truthy(on:find("finished", 1, true), on)
    assert.truthy(on:find("\rtrain [", 1, true), "no bar drawn: " .. on)
    assert.truthy(on:find("loss", 1, true))
    assert.truthy(on:find("\r" .. (" "):rep(100) .. "\r", 1, true), "the bar is not cleared")
    local off = run("false")
    assert.truthy(off:find("finished", 1, true), off)
    assert.is_nil(off:find("train [", 1, true), "a bar with progress = false: " .. off)
  end)
end)
