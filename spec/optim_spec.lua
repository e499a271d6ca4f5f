-- Optimizers (issue 6): momentum, nesterov, adam and adamw, with weight
-- decay everywhere: their weights against the update rules written out
-- here, the completeness identity of the kernel machine for each, replay
-- with optimizer state, the preconditioned kernel, and bad input.
local H = require "helpers"
local pk = H.pk

local X, Y = pk.randn(12, 3, 1), pk.randn(12, 2, 2)
local Xq = pk.randn(5, 3, 3)

-- the mean mse gradient from the explicit Jacobian: (1/m) J^T (F - Y)
local function gradient(net)
  local F, J = net:forward(X), net:jacobian(X)
  local r = pk.zeros(24, 1)
  for i = 1, 12 do for k = 1, 2 do r:set((i - 1) * 2 + k, 1, F:get(i, k) - Y:get(i, k)) end end
  return (J:t() * r) / 12
end

-- torch.optim's rules, written out element by element
local function reference(opt, h, lr, steps)
  local net = pk.network{ sizes = {3, 4, 2}, activation = "tanh", seed = 8 }
  local P = net:nparams()
  local buf, m, v = {}, {}, {}
  for p = 1, P do buf[p], m[p], v[p] = 0, 0, 0 end
  for t = 1, steps do
    local g, w = gradient(net), net:params()
    local new = pk.zeros(P, 1)
    for p = 1, P do
      local wp, d = w:get(p, 1), g:get(p, 1)
      if opt ~= "adamw" then d = d + h.weight_decay * wp end
      if opt == "momentum" or opt == "nesterov" then
        buf[p] = t == 1 and d or h.momentum * buf[p] + (1 - h.dampening) * d
        if opt == "nesterov" then d = d + h.momentum * buf[p] else d = buf[p] end
        new:set(p, 1, wp - lr * d)
      elseif opt == "adam" or opt == "adamw" then
        if opt == "adamw" then wp = wp * (1 - lr * h.weight_decay) end
        m[p] = h.beta1 * m[p] + (1 - h.beta1) * d
        v[p] = h.beta2 * v[p] + (1 - h.beta2) * d * d
        local bc1, bc2 = 1 - h.beta1 ^ t, 1 - h.beta2 ^ t
        new:set(p, 1, wp - (lr / bc1) * (m[p] / (math.sqrt(v[p]) / math.sqrt(bc2) + h.eps)))
      else
        new:set(p, 1, wp - lr * d)
      end
    end
    net:set_params(new)
  end
  return net:params()
end

local CASES = {
  { "gd", { weight_decay = 0.1 } },
  { "momentum", { momentum = 0.9, dampening = 0, weight_decay = 0 } },
  { "momentum", { momentum = 0.8, dampening = 0.3, weight_decay = 0.05 } },
  { "nesterov", { momentum = 0.9, dampening = 0, weight_decay = 0 } },
  { "nesterov", { momentum = 0.7, dampening = 0, weight_decay = 0.02 } },
  { "adam", { beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0 } },
  { "adam", { beta1 = 0.8, beta2 = 0.99, eps = 1e-6, weight_decay = 0.1 } },
  { "adamw", { beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01 } },
  { "adamw", { beta1 = 0.85, beta2 = 0.95, eps = 1e-7, weight_decay = 0.3 } },
}

local function train_opts(opt, h, lr, steps)
  local o = { X = X, Y = Y, optimizer = opt, lr = lr, steps = steps, progress = false }
  for k, val in pairs(h) do
    if not (opt == "gd" and k ~= "weight_decay") and not (opt == "nesterov" and k == "dampening")
       and not ((opt == "adam" or opt == "adamw") and (k == "momentum" or k == "dampening")) then
      o[k] = val
    end
  end
  return o
end

describe("optimizers", function()
  for _, c in ipairs(CASES) do
    local opt, h = c[1], c[2]
    local lr = (opt == "adam" or opt == "adamw") and 0.01 or 0.1
    local label = ("%s %s"):format(opt, (function()
      local t = {}
      for k, val in pairs(h) do t[#t + 1] = k .. "=" .. val end
      table.sort(t)
      return table.concat(t, " ")
    end)())

    it("follow the written-out update rule: " .. label, function()
      local net = pk.network{ sizes = {3, 4, 2}, activation = "tanh", seed = 8 }
      net:train(train_opts(opt, h, lr, 7))
      -- the reference computes the gradient another way (explicit
      -- Jacobian); 7 steps of rounding differences stay near 1e-15
      assert.is_true(H.max_rel(net:params(), reference(opt, h, lr, 7)) < 1e-12)
    end)

    it("keep the completeness identity to 1e-9: " .. label, function()
      for _, batch in ipairs{ false, 5 } do
        if not (batch and opt == "gd") then
          local net = pk.network{ sizes = {3, 8, 8, 2}, activation = "tanh", seed = 4 }
          local o = train_opts(opt, h, lr, 30)
          o.record = true
          o.explain = Xq
          o.batch_size = batch or nil
          o.seed = 3
          local traj, online = net:train(o)
          local km = pk.machine.from_trajectory(traj)
          -- f(x; w_0) + sum_i contribution_i(x) + regularization(x) = f(x; w_T)
          local F0, FT = traj:network(0):forward(Xq), net:forward(Xq)
          local C, R = km:contributions(Xq), km:regularization(Xq)
          for x = 1, 5 do for k = 1, 2 do
            local s = F0:get(x, k) + R:get(x, k)
            for i = 1, 12 do s = s + C[k]:get(x, i) end
            assert.is_true(math.abs(s - FT:get(x, k)) <= 1e-9 * math.max(1, math.abs(FT:get(x, k))),
              ("%s: %g vs %g"):format(label, s, FT:get(x, k)))
          end end
          if h.weight_decay > 0 then assert.is_true(R:max_abs() > 0) else assert.are.equal(0, R:max_abs()) end
          local _, rel = km:verify(Xq)
          assert.is_true(rel <= 1e-12, label .. ": " .. rel)
          assert.is_true(H.max_rel(online:predict(Xq), km:predict(Xq)) <= 1e-12)
          assert.is_true((online:regularization(Xq) - R):max_abs() <= 1e-12)
        end
      end
    end)
  end

  it("replay from checkpoints with their state bit for bit, through files too", function()
    for _, opt in ipairs{ "momentum", "nesterov", "adam", "adamw" } do
      local lr = opt:sub(1, 4) == "adam" and 0.01 or 0.1
      local a = pk.network{ sizes = {3, 6, 2}, seed = 2 }
      local b = a:clone()
      local ta = a:train{ X = X, Y = Y, optimizer = opt, lr = lr, steps = 17, batch_size = 5, seed = 9, record = true }
      local tb = b:train{ X = X, Y = Y, optimizer = opt, lr = lr, steps = 17, batch_size = 5, seed = 9, record = { every = 4 } }
      local p = H.tmpname(".pk")
      tb:save(p)
      local tc = pk.load(p)
      os.remove(p)
      for s = 0, 17 do
        assert.are.equal(0, (ta:weights(s) - tb:weights(s)):max_abs(), opt .. " step " .. s)
        assert.are.equal(0, (ta:weights(s) - tc:weights(s)):max_abs(), opt .. " loaded, step " .. s)
      end
    end
  end)
end)

describe("pk.kernel.preconditioned", function()
  it("is g(x; w_s)^T P_s g(x'; w_s) with Adam's P_s", function()
    local h = { beta1 = 0.9, beta2 = 0.99, eps = 1e-8 }
    local net = pk.network{ sizes = {3, 4, 2}, activation = "tanh", seed = 8 }
    local traj = net:train{ X = X, Y = Y, optimizer = "adam", lr = 0.01, steps = 4, beta2 = 0.99, record = true }
    -- P_s from the written-out second moment after update s + 1 = 3
    local probe = pk.network{ sizes = {3, 4, 2}, activation = "tanh", seed = 8 }
    local v = {}
    for p = 1, probe:nparams() do v[p] = 0 end
    for t = 1, 3 do
      local g = gradient(probe)
      for p = 1, probe:nparams() do v[p] = h.beta2 * v[p] + (1 - h.beta2) * g:get(p, 1) ^ 2 end
      probe:set_params(traj:weights(t))
    end
    local w2 = traj:network(2)
    local J1, J2 = w2:jacobian(Xq), w2:jacobian(X)
    local Pd = pk.zeros(w2:nparams(), w2:nparams())
    for p = 1, w2:nparams() do
      Pd:set(p, p, (0.01 / (1 - h.beta1 ^ 3)) / (math.sqrt(v[p]) / math.sqrt(1 - h.beta2 ^ 3) + h.eps))
    end
    local expect = J1 * Pd * J2:t()
    local K = pk.kernel.preconditioned(traj, 2)
    assert.is_true(H.rel_err(K:gram(Xq, X), expect) < 1e-12)
    assert.is_true(H.rel_err(pk.kernel.preconditioned(traj, 2, { memory = 2000 }):gram(Xq, X), expect) < 1e-12)
    local D, G = K:diag(Xq), K:gram(Xq)
    for r = 1, 10 do assert.is_true(math.abs(D:get(r, 1) - G:get(r, r)) <= 1e-13 * math.abs(G:get(r, r))) end
    H.raises("step 4 out of range 0..3", pk.kernel.preconditioned, traj, 4)
    local t2 = pk.network{ sizes = {3, 4, 2}, seed = 1 }:train{ X = X, Y = Y, steps = 2, record = true }
    H.raises("has no preconditioner", pk.kernel.preconditioned, t2, 0)
  end)
end)

describe("bad optimizer input", function()
  local net = pk.network{ sizes = {3, 4, 2}, seed = 1 }
  it("is refused with clear errors", function()
    H.raises("unknown optimizer 'rmsprop' (valid: gd, sgd, momentum, nesterov, adam, adamw)",
      net.train, net, { X = X, Y = Y, optimizer = "rmsprop" })
    H.raises("beta1 is not a hyperparameter of momentum (its hyperparameters: momentum, dampening, weight_decay)",
      net.train, net, { X = X, Y = Y, optimizer = "momentum", beta1 = 0.9 })
    H.raises("momentum is not a hyperparameter of adam (its hyperparameters: beta1, beta2, eps, weight_decay)",
      net.train, net, { X = X, Y = Y, optimizer = "adam", momentum = 0.9 })
    H.raises("unknown option 'betas'", net.train, net, { X = X, Y = Y, optimizer = "adam", betas = {0.9, 0.99} })
    H.raises("beta1 must be in [0, 1), got 1", net.train, net, { X = X, Y = Y, optimizer = "adam", beta1 = 1 })
    H.raises("beta2 must be in [0, 1), got -0.1", net.train, net, { X = X, Y = Y, optimizer = "adamw", beta2 = -0.1 })
    H.raises("weight_decay must be >= 0, got -0.01", net.train, net, { X = X, Y = Y, optimizer = "sgd", weight_decay = -0.01 })
    H.raises("eps must be >= 0, got -1e-08", net.train, net, { X = X, Y = Y, optimizer = "adam", eps = -1e-8 })
    H.raises("momentum must be >= 0", net.train, net, { X = X, Y = Y, optimizer = "momentum", momentum = -0.5 })
    H.raises("nesterov needs momentum > 0", net.train, net, { X = X, Y = Y, optimizer = "nesterov", momentum = 0 })
    H.raises("dampening must be in [0, 1]", net.train, net, { X = X, Y = Y, optimizer = "momentum", dampening = 2 })
  end)
end)
