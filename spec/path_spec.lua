-- The path decomposition (issue 5): the trained network rewritten as a sum
-- over its training examples, exact to rounding with the default rule
-- (exact, issue 14) and with the Gauss rule, first order in the learning
-- rate with the paper's left rule; trajectories that replay bit for bit;
-- kernel machines and the queries they refuse (NaN or infinite rows);
-- files; and bad input.
local H = require "helpers"
local pk = H.pk

local X, Xq = pk.randn(24, 3, 1), pk.randn(6, 3, 3)
local function targets(loss, K)
  if loss == "mse" then return pk.randn(24, K, 2) end
  if loss == "logistic" then
    local Y = pk.zeros(24, 1)
    for i = 1, 24 do Y:set(i, 1, i % 3 == 0 and 1 or 0) end
    return Y
  end
  local Y = pk.zeros(24, 1)
  for i = 1, 24 do Y:set(i, 1, (i % K) + 1) end
  return Y
end

local function sizes_for(depth, K)
  local s = { 3 }
  for _ = 1, depth do s[#s + 1] = 12 end
  s[#s + 1] = K
  return s
end

describe("the default rule reproduces the network to 1e-12, the Gauss rule to 1e-9", function()
  for _, act in ipairs{ "tanh", "softplus", "gelu", "erf", "sigmoid" } do
    for _, depth in ipairs{ 1, 3 } do
      for _, K in ipairs{ 1, 3 } do
        for _, opt in ipairs{ "gd", "sgd" } do
          it(("%s, depth %d, %d output%s, %s"):format(act, depth, K, K > 1 and "s" or "", opt), function()
            local net = pk.network{ sizes = sizes_for(depth, K), activation = act, seed = depth * 10 + K }
            local traj = net:train{ X = X, Y = targets("mse", K), lr = 0.1, steps = 40, record = true,
                                    optimizer = opt, batch_size = opt == "sgd" and 5 or nil, seed = 3 }
            local km = pk.machine.from_trajectory(traj)
            local _, rel = km:verify(Xq)
            assert.is_true(rel <= 1e-12, ("max relative error %g"):format(rel))
            -- predict is the kernel-machine sum, compared with the network itself
            local F = net:forward(Xq)
            assert.is_true(H.max_rel(km:predict(Xq), F) <= 1e-12)
            local _, grel = pk.machine.from_trajectory(traj, { rule = "gauss" }):verify(Xq)
            assert.is_true(grel <= 1e-9, ("gauss: max relative error %g"):format(grel))
          end)
        end
      end
    end
  end

  for _, loss in ipairs{ "logistic", "softmax" } do
    it(("holds for the %s loss"):format(loss), function()
      local K = loss == "softmax" and 4 or 1
      local net = pk.network{ sizes = {3, 10, 10, K}, activation = "tanh", seed = 2 }
      local traj = net:train{ X = X, Y = targets(loss, K), loss = loss, lr = 0.3, steps = 30, record = true }
      local _, rel = pk.machine.from_trajectory(traj):verify(Xq)
      assert.is_true(rel <= 1e-12, loss .. " " .. rel)
    end)
  end
end)

describe("the left rule", function()
  it("has an error first order in the learning rate at a fixed horizon", function()
    -- horizon eta T = 2: the left sum's error is O(eta) (DESIGN.md section 4)
    local errs, lrs = {}, { 0.08, 0.04, 0.02 }
    for i, lr in ipairs(lrs) do
      local net = pk.network{ sizes = {3, 10, 1}, activation = "tanh", seed = 5 }
      local traj = net:train{ X = X, Y = targets("mse", 1), lr = lr, steps = math.floor(2 / lr + 0.5), record = true }
      local abs = pk.machine.from_trajectory(traj, { rule = "left" }):verify(Xq)
      errs[i] = abs
    end
    -- least-squares slope of log(err) on log(lr)
    local n, sx, sy, sxx, sxy = 3, 0, 0, 0, 0
    for i = 1, n do
      local x, y = math.log(lrs[i]), math.log(errs[i])
      sx, sy, sxx, sxy = sx + x, sy + y, sxx + x * x, sxy + x * y
    end
    local slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    assert.is_true(slope > 0.85 and slope < 1.15, "fitted slope " .. slope)
  end)

  it("is exact for a linear model, whose gradient does not depend on the weights", function()
    local net = pk.network{ sizes = {3, 2}, activation = {}, parameterization = "standard", seed = 1 }
    local traj = net:train{ X = X, Y = targets("mse", 2), lr = 0.2, steps = 25, record = true }
    local _, rel = pk.machine.from_trajectory(traj, { rule = "left" }):verify(Xq)
    assert.is_true(rel <= 1e-12, "linear model: " .. rel)
  end)
end)

describe("trajectories", function()
  it("telescope: the machine of the first s steps predicts f(x; w_s)", function()
    local Y = targets("mse", 1)
    local full = pk.network{ sizes = {3, 8, 1}, seed = 9 }:train{ X = X, Y = Y, lr = 0.2, steps = 4, record = true }
    local prev = full:network(0):forward(Xq)
    for s = 1, 4 do
      local traj = pk.network{ sizes = {3, 8, 1}, seed = 9 }:train{ X = X, Y = Y, lr = 0.2, steps = s, record = true }
      assert.are.equal(0, (traj:weights(s) - full:weights(s)):max_abs())
      local now = pk.machine.from_trajectory(traj):predict(Xq)
      local step = full:network(s):forward(Xq) - prev
      -- the machine's increment over the step equals the network's
      local inc = now - (s == 1 and full:network(0):forward(Xq) or pk.machine.from_trajectory(
        pk.network{ sizes = {3, 8, 1}, seed = 9 }:train{ X = X, Y = Y, lr = 0.2, steps = s - 1, record = true }):predict(Xq))
      assert.is_true((inc - step):max_abs() <= 1e-12 * math.max(1, step:max_abs()) + 1e-14)
      prev = full:network(s):forward(Xq)
    end
  end)

  it("replays between checkpoints bit for bit", function()
    local Y = targets("mse", 2)
    local a = pk.network{ sizes = {3, 40, 2}, seed = 4 }
    local b = a:clone()
    local ta = a:train{ X = X, Y = Y, optimizer = "sgd", batch_size = 5, lr = 0.1, steps = 23, seed = 7, record = true }
    local tb = b:train{ X = X, Y = Y, optimizer = "sgd", batch_size = 5, lr = 0.1, steps = 23, seed = 7, record = { every = 5 } }
    assert.are.equal(23, #ta)
    assert.are.equal(23, #tb)
    for s = 0, 23 do
      assert.are.equal(0, (ta:weights(s) - tb:weights(s)):max_abs(), "step " .. s)
    end
    assert.is_true(tb:memory() < ta:memory() / 3)
    assert.are.same(ta:losses(), tb:losses())
    -- the decomposition is the same whichever way the weights are found
    local pa = pk.machine.from_trajectory(ta):predict(Xq)
    local pb = pk.machine.from_trajectory(tb):predict(Xq)
    assert.are.equal(0, (pa - pb):max_abs())
  end)

  it("gives the network at any step", function()
    local net = pk.network{ sizes = {3, 5, 1}, seed = 2 }
    local w0 = net:params()
    local traj = net:train{ X = X, Y = targets("mse", 1), lr = 0.1, steps = 6, record = { every = 4 } }
    assert.are.equal(0, (traj:network(0):params() - w0):max_abs())
    assert.are.equal(0, (traj:network(6):params() - net:params()):max_abs())
    assert.are.equal(6, #traj:losses())
    assert.are.same({0.1, 0.1, 0.1, 0.1, 0.1, 0.1}, traj:lrs())
    H.raises("step 7 out of range 0..6", traj.weights, traj, 7)
  end)

  it("keeps its data alive and refuses changed data", function()
    local Xc, Y = X:copy(), targets("mse", 1)
    local net = pk.network{ sizes = {3, 5, 1}, seed = 2 }
    local traj = net:train{ X = Xc, Y = Y, lr = 0.1, steps = 5, record = { every = 2 } }
    Xc:release()
    collectgarbage()
    assert.is_true(pk.machine.from_trajectory(traj):verify(Xq) < 1e-12)
    local Xd = X:copy()
    local t2 = pk.network{ sizes = {3, 5, 1}, seed = 2 }:train{ X = Xd, Y = Y, lr = 0.1, steps = 5, record = { every = 2 } }
    Xd:set(1, 1, 42)
    H.raises("training data has changed", pk.machine.from_trajectory, t2)
    H.raises("training data has changed", t2.weights, t2, 3)
  end)

  it("round-trips through files, with or without its data", function()
    local Y = targets("mse", 1)
    local net = pk.network{ sizes = {3, 6, 1}, seed = 3 }
    local traj = net:train{ X = X, Y = Y, optimizer = "sgd", batch_size = 7, lr = 0.1, steps = 9, record = { every = 4 } }
    local p = H.tmpname(".pk")
    assert.is_true(traj:save(p))
    local back = pk.load(p)
    assert.are.equal(9, #back)
    for s = 0, 9 do assert.are.equal(0, (back:weights(s) - traj:weights(s)):max_abs()) end
    local k1, k2 = pk.machine.from_trajectory(traj), pk.machine.from_trajectory(back)
    assert.are.equal(0, (k1:predict(Xq) - k2:predict(Xq)):max_abs())
    assert.is_true(traj:save(p, { data = false }))
    H.raises("holds no training data", pk.load, p)
    local again = pk.load(p, { X = X, Y = Y })
    assert.are.equal(0, (again:weights(9) - traj:weights(9)):max_abs())
    local other = X:copy()
    other:set(2, 2, 0)
    H.raises("does not match the recorded hash", pk.load, p, { X = other, Y = Y })
    -- kernel machines, offline and online
    assert.is_true(k1:save(p))
    local k3 = pk.load(p)
    assert.are.equal(0, (k3:predict(Xq) - k1:predict(Xq)):max_abs())
    local _, online = pk.network{ sizes = {3, 6, 1}, seed = 3 }:train{ X = X, Y = Y, lr = 0.1, steps = 9, explain = Xq }
    assert.is_true(online:save(p))
    local k4 = pk.load(p)
    assert.are.equal(0, (k4:predict(Xq) - online:predict(Xq)):max_abs())
    assert.are.equal(0, (k4:contributions(Xq) - online:contributions(Xq)):max_abs())
    os.remove(p)
  end)
end)

describe("kernel machines", function()
  local Y3 = targets("mse", 3)
  local net = pk.network{ sizes = {3, 9, 9, 3}, activation = "gelu", seed = 6 }
  local traj, online = net:train{ X = X, Y = Y3, optimizer = "sgd", batch_size = 6, lr = 0.2, steps = 20,
                                  seed = 2, record = true, explain = Xq }
  local km = pk.machine.from_trajectory(traj)

  it("accumulated online equals the offline machine to 1e-12", function()
    assert.is_true(H.max_rel(online:predict(Xq), km:predict(Xq)) <= 1e-12)
    local a, b = online:contributions(Xq), km:contributions(Xq)
    for k = 1, 3 do assert.is_true((a[k] - b[k]):max_abs() <= 1e-12) end
    H.raises("online for its own 6 queries", online.predict, online, pk.randn(2, 3, 1))
  end)

  it("answers any subset of its queries from what it holds, online too", function()
    local sub = pk.matrix{ Xq:totable()[5], Xq:totable()[2] }
    local full, part = online:contributions(Xq), online:contributions(sub)
    for k = 1, 3 do
      for i = 1, 24 do
        assert.are.equal(full[k]:get(5, i), part[k]:get(1, i))
        assert.are.equal(full[k]:get(2, i), part[k]:get(2, i))
      end
    end
    local e = online:explain(Xq:row(4), 3, { output = 1 })
    assert.are.equal(3, #e)
    assert.is_true(math.abs(e.prediction - e.network) <= 1e-12 * math.max(1, math.abs(e.network)))
    local a, r = online:verify(sub)
    assert.is_true(r <= 1e-12 and a >= 0)
  end)

  it("sums its contributions and bias to its prediction, one matrix per output", function()
    local C = km:contributions(Xq)
    local P = km:predict(Xq)
    local F0 = traj:network(0):forward(Xq)
    assert.are.equal(3, #C)
    for k = 1, 3 do
      assert.are.same({6, 24}, {C[k]:shape()})
      for x = 1, 6 do
        local s = F0:get(x, k)
        for i = 1, 24 do s = s + C[k]:get(x, i) end
        assert.is_true(math.abs(s - P:get(x, k)) <= 1e-12 * math.max(1, math.abs(s)))
      end
    end
  end)

  it("gives the paper's coefficients: a_i(x) Kp(x, x_i) = contribution_i(x)", function()
    local a, Kp, undefined = km:coefficients(Xq)
    local C = km:contributions(Xq)
    assert.are.same({}, undefined)
    for k = 1, 3 do for x = 1, 6 do for i = 1, 24 do
      local c = C[k]:get(x, i)
      assert.is_true(math.abs(a[k]:get(x, i) * Kp[k]:get(x, i) - c) <= 1e-12 * math.max(1e-3, math.abs(c)))
    end end end
  end)

  it("reports the coefficients it cannot define instead of dividing by zero", function()
    -- sigma_b = 0 and relu: at x = 0 every activation is 0, so g(0; w) = 0
    local n = pk.network{ sizes = {3, 6, 1}, activation = "relu", sigma_b = 0, seed = 1 }
    local t = n:train{ X = X, Y = targets("mse", 1), lr = 0.1, steps = 5, record = true }
    local q = pk.matrix{{0, 0, 0}, {1, 0.5, -0.3}}
    local a, Kp, undefined = pk.machine.from_trajectory(t):coefficients(q)
    local first = 0
    for _, u in ipairs(undefined) do
      if u.query == 1 then first = first + 1 end
      assert.are.equal(0, Kp:get(u.query, u.example))
      assert.is_true(a:get(u.query, u.example) ~= a:get(u.query, u.example))   -- NaN marks it
    end
    assert.are.equal(24, first)           -- every example, for the query at 0
    for x = 1, 2 do for i = 1, 24 do
      if Kp:get(x, i) ~= 0 then assert.is_true(a:get(x, i) == a:get(x, i)) end
    end end
  end)

  it("explains a prediction by its largest contributions", function()
    local q = Xq:row(2)
    local e = km:explain(q, 5, { output = 2 })
    assert.are.equal(5, #e)
    local C = km:contributions(Xq)[2]
    for r = 1, 5 do
      -- one query instead of six: BLAS may block the sums differently
      assert.is_true(math.abs(C:get(2, e[r].index) - e[r].contribution) <= 1e-13 * math.abs(e[r].contribution))
      if r > 1 then assert.is_true(math.abs(e[r - 1].contribution) >= math.abs(e[r].contribution)) end
      assert.is_number(e[r].kernel)
    end
    assert.is_true(math.abs(e.bias + e.sum - e.network) <= 1e-9 * math.max(1, math.abs(e.network)))
    assert.are.equal(e.prediction, e.bias + e.sum + e.regularization)
    -- without output: the predicted (largest) output
    local F = net:forward(q)
    local best = 1
    for k = 2, 3 do if F:get(1, k) > F:get(1, best) then best = k end end
    assert.are.equal(best, km:explain(q, 1).output)
  end)

  it("refuses bad input", function()
    H.raises("the queries have 2 columns, the network takes 3 inputs", km.predict, km, pk.zeros(2, 2))
    H.raises("unknown rule 'simpson' (valid: exact, gauss, left)", pk.machine.from_trajectory, traj, { rule = "simpson" })
    H.raises("nodes must be in 1..16, got 17", pk.machine.from_trajectory, traj, { nodes = 17 })
    H.raises("nodes must be in 1..16, got 0", pk.kernel.path, traj, { nodes = 0 })
    H.raises("xq must be one query", km.explain, km, Xq, 3)
    H.raises("pathkernel.Trajectory expected", pk.machine.from_trajectory, net)
  end)

  it("refuses a trajectory with no steps", function()
    -- rebuild a saved one-step GD trajectory as a zero-step one
    local n1 = pk.network{ sizes = {3, 2, 1}, seed = 1 }
    local t1 = n1:train{ X = X, Y = targets("mse", 1), lr = 0.1, steps = 1, record = true }
    local p = H.tmpname(".pk")
    t1:save(p)
    local s = H.read_bytes(p)
    local pos = 25
    local L = string.unpack("<I8", s, pos)
    local netlen = 8 + (L + 1) * 8 + L * 4 + 4 + 8 + 8 + 8 + 8
    local P = string.unpack("<I8", s, pos + netlen - 8)
    netlen = netlen + P * 8
    local head = s:sub(pos, pos + netlen - 1)
    local q = pos + netlen + 8                                  -- after T
    -- loss, optimizer, 6 hyperparameters, batch, seed, every, full
    local settings = s:sub(q, q + 4 + 4 + 48 + 8 + 8 + 8 + 4 - 1)
    q = q + 84 + 8 + 8                                          -- skip lr[1], loss[1]
    q = q + 8 + 16 + 16                                         -- ncheck, 2 steps, 2 counts
    local w0 = s:sub(q, q + P * 8 - 1)
    q = q + 2 * P * 8
    local tail = s:sub(q, #s - 4)                               -- hash, data flag, data
    local payload = head .. string.pack("<I8", 0) .. settings .. string.pack("<I8I8I8", 1, 0, 0) .. w0 .. tail
    H.write_bytes(p, H.container(3, payload))
    local t0 = pk.load(p)
    assert.are.equal(0, #t0)
    H.raises("has no steps", pk.machine.from_trajectory, t0)
    H.raises("has no steps", pk.kernel.path, t0)
    os.remove(p)
  end)
end)

-- a machine over a short recorded run, its network and its data
local function small_run(opts)
  local X, Y = pk.randn(12, 2, 1), pk.randn(12, 1, 2)
  local net = pk.network{ sizes = { 2, 8, 1 }, seed = 4 }
  local o = { X = X, Y = Y, lr = 0.1, steps = 6, record = true, progress = false }
  for k, v in pairs(opts or {}) do o[k] = v end
  local traj = net:train(o)
  return pk.machine.from_trajectory(traj), net, X, Y
end

describe("kernel machines refuse non-finite queries", function()
  local km, net = small_run()
  local Q = pk.matrix{ { 0.1, 0.2 }, { 0 / 0, 1 }, { 1, 2 } }

  it("in predict, contributions, coefficients, verify, regularization and explain, naming the row", function()
    for _, bad in ipairs{ 0 / 0, math.huge, -math.huge } do
      local Qb = Q:copy()
      Qb:set(2, 1, bad)
      for _, m in ipairs{ "predict", "contributions", "coefficients", "verify", "regularization" } do
        H.raises("the queries hold a NaN or infinite value in row 2", km[m], km, Qb)
      end
      H.raises("the queries hold a NaN or infinite value in row 1", km.explain, km, Qb:row(2), 3)
    end
  end)

  it("still answers the finite rows, and verify's error is the true gap", function()
    local Qf = Q:gather{ 1, 3 }
    local p = km:predict(Qf)
    local f = net:forward(Qf)
    local a, r = km:verify(Qf)
    -- the gap verify reports is the one predict and forward show
    local gap = 0
    for i = 1, 2 do gap = math.max(gap, math.abs(p:get(i, 1) - f:get(i, 1))) end
    assert.are.equal(gap, a)
    assert.is_true(a < 1e-12 and r < 1e-12)
  end)

  it("in train{ explain = } before training starts, naming the row", function()
    local X, Y = pk.randn(6, 2, 1), pk.randn(6, 1, 2)
    local n = pk.network{ sizes = { 2, 4, 1 }, seed = 1 }
    local w0 = n:params()
    local called = false
    H.raises("train: explain = Xq holds a NaN or infinite value in row 2", n.train, n,
      { X = X, Y = Y, steps = 3, explain = Q, progress = false,
        on_step = function() called = true end })
    assert.is_false(called)
    assert.are.equal(0, (n:params() - w0):max_abs())
  end)

  it("verify reports NaN when a finite query's output overflows, and explain ranks the NaNs first", function()
    local X, Y = pk.randn(12, 2, 1), pk.randn(12, 1, 2)
    local n = pk.network{ sizes = { 2, 8, 8, 1 }, activation = "relu", seed = 4 }
    local m = pk.machine.from_trajectory(n:train{ X = X, Y = Y, lr = 0.1, steps = 6, record = true,
      progress = false })
    local Qo = pk.matrix{ { 0.5, 0.5 }, { 1.7e308, 1.7e308 }, { -0.5, 1 } }
    local p, f = m:predict(Qo), n:forward(Qo)
    local gap = p:get(2, 1) - f:get(2, 1)
    assert.is_true(gap ~= gap, "the premise: row 2 overflows to a NaN gap")
    local a, r = m:verify(Qo)
    assert.is_true(a ~= a and r ~= r)
    -- the finite rows alone verify to rounding
    local a2 = m:verify(Qo:gather{ 1, 3 })
    assert.is_true(a2 < 1e-12)
    local e = m:explain(Qo:row(2), 3)
    assert.is_true(e[1].contribution ~= e[1].contribution)
  end)

  it("on an online machine too", function()
    local X, Y = pk.randn(6, 2, 1), pk.randn(6, 1, 2)
    local Qf = Q:gather{ 1, 3 }
    local _, kmo = pk.network{ sizes = { 2, 4, 1 }, seed = 1 }:train{ X = X, Y = Y, steps = 3,
      explain = Qf, progress = false }
    local Qb = Qf:copy()
    Qb:set(1, 2, math.huge)
    H.raises("the queries hold a NaN or infinite value in row 1", kmo.verify, kmo, Qb)
  end)
end)

describe("the path kernel", function()
  local Y = targets("mse", 1)
  local net = pk.network{ sizes = {3, 8, 8, 1}, activation = "tanh", seed = 3 }
  local traj = net:train{ X = X, Y = Y, lr = 0.2, steps = 12, record = { every = 5 } }

  it("with the left rule is sum_s eta_s Kg at w_s", function()
    local G = pk.kernel.path(traj, { rule = "left" }):gram(X)
    local R = pk.zeros(24, 24)
    for s = 0, 11 do R = R + 0.2 * pk.kernel.tangent(traj:network(s)):gram(X) end
    assert.is_true(H.rel_err(G, R) < 1e-13)
  end)

  it("is symmetric and positive semidefinite on the training set", function()
    local G = pk.kernel.path(traj)(X)
    assert.are.equal(0, (G - G:t()):max_abs())
    local ev = H.jacobi_eigenvalues(G)
    assert.is_true(ev[1] >= -1e-10 * ev[#ev], "smallest eigenvalue " .. ev[1])
    local D = pk.kernel.path(traj):diag(X)
    for i = 1, 24 do assert.is_true(math.abs(D:get(i, 1) - G:get(i, i)) <= 1e-13 * G:get(i, i)) end
  end)

  it("tiles like the tangent kernel", function()
    local X2 = pk.randn(9, 3, 4)
    local a = pk.kernel.path(traj, { nodes = 2 }):gram(X, X2)
    local b = pk.kernel.path(traj, { nodes = 2, memory = 6000 }):gram(X, X2)
    assert.is_true(H.max_rel(a, b) < 1e-14)
  end)
end)
