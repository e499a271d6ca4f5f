-- The tangent kernel: equal to J J^T of the explicit Jacobian for every
-- activation, parameterization and output mode; symmetric, PSD, the same
-- tiled or not; a snapshot of the weights; its bad input; and the Kernel
-- userdata's calls: progress per tile, callbacks that release what the
-- call uses, a callback's error, the core's failure, argument checks.
local H = require "helpers"
local pk = H.pk

local ACTS = { "identity", "relu", "tanh", "sigmoid", "softplus", "gelu", "erf", "sin", "leaky_relu" }

-- the reference: J1 J2^T reduced to the requested output mode
local function reference(net, X1, X2, mode)
  local K = net:sizes()[#net:sizes()]
  local JJ = net:jacobian(X1) * net:jacobian(X2):t()
  if mode == "block" then return JJ end
  local n1, n2 = X1:rows(), X2:rows()
  local R = mode == "trace" and pk.zeros(n1, n2) or pk.zeros(n1 * K, n2)
  for i = 1, n1 do for j = 1, n2 do for k = 1, K do
    local v = JJ:get((i - 1) * K + k, (j - 1) * K + k)
    if mode == "trace" then R:set(i, j, R:get(i, j) + v) else R:set((i - 1) * K + k, j, v) end
  end end end
  return R
end

describe("pk.kernel.tangent", function()
  for _, param in ipairs{ "ntk", "standard" } do
    for _, act in ipairs(ACTS) do
      for _, K in ipairs{ 1, 3 } do
        it(("equals J1 J2^T to 1e-12 (%s, %s, %d output%s, every mode)"):format(act, param, K, K > 1 and "s" or ""), function()
          local net = pk.network{ sizes = {4, 9, 7, K}, activation = act, parameterization = param, seed = 3 }
          local X1, X2 = pk.randn(8, 4, 1), pk.randn(5, 4, 2)
          for _, mode in ipairs{ "block", "trace", "diagonal" } do
            local Kt = pk.kernel.tangent(net, { outputs = mode })
            -- the same sums in another order: a few ulps of the norm
            assert.is_true(H.rel_err(Kt:gram(X1, X2), reference(net, X1, X2, mode)) < 1e-12, mode)
            assert.is_true(H.rel_err(Kt:gram(X1), reference(net, X1, X1, mode)) < 1e-12, mode)
          end
        end)
      end
    end
  end

  it("is symmetric and positive semidefinite on one set", function()
    local net = pk.network{ sizes = {3, 16, 16, 2}, activation = "relu", seed = 4 }
    local X = pk.randn(12, 3, 5)
    local G = pk.kernel.tangent(net)(X)
    assert.are.same({24, 24}, {G:shape()})
    assert.are.equal(0, (G - G:t()):max_abs())
    local ev = H.jacobi_eigenvalues(G)
    assert.is_true(ev[1] >= -1e-10 * ev[#ev], "smallest eigenvalue " .. ev[1])
  end)

  it("gives the same Gram tiled and untiled", function()
    local net = pk.network{ sizes = {3, 20, 10, 2}, activation = "gelu", seed = 6 }
    local X1, X2 = pk.randn(37, 3, 1), pk.randn(23, 3, 2)
    for _, mode in ipairs{ "block", "trace", "diagonal" } do
      local whole = pk.kernel.tangent(net, { outputs = mode })
      local tiled = pk.kernel.tangent(net, { outputs = mode, memory = 20000 })
      -- tiles change which BLAS calls run (syrk vs gemm, block sizes)
      assert.is_true(H.max_rel(tiled:gram(X1, X2), whole:gram(X1, X2)) < 1e-14, mode)
      assert.is_true(H.max_rel(tiled:gram(X1), whole:gram(X1)) < 1e-14, mode)
      local G = tiled:gram(X1)
      local ref = reference(net, X1, X1, mode)
      assert.is_true(H.rel_err(G, ref) < 1e-12, mode)
    end
  end)

  it("diag equals the Gram's diagonal", function()
    local net = pk.network{ sizes = {3, 8, 2}, activation = "sin", seed = 2 }
    local X = pk.randn(6, 3, 3)
    for _, mode in ipairs{ "block", "trace", "diagonal" } do
      local Kt = pk.kernel.tangent(net, { outputs = mode })
      local G, D = Kt:gram(X), Kt:diag(X)
      for r = 1, D:rows() do
        local c = mode == "block" and r or (mode == "trace" and r or (r - 1) // 2 + 1)
        assert.is_true(math.abs(D:get(r, 1) - G:get(r, c)) <= 1e-14 * math.abs(G:get(r, c)))
      end
    end
  end)

  it("holds a snapshot of the weights", function()
    local net = pk.network{ sizes = {2, 5, 1}, seed = 1 }
    local X = pk.randn(4, 2, 1)
    local Kt = pk.kernel.tangent(net)
    local before = Kt:gram(X)
    net:train{ X = X, Y = pk.randn(4, 1, 2), lr = 0.5, steps = 10 }
    assert.are.equal(0, (Kt:gram(X) - before):max_abs())
    assert.is_true((pk.kernel.tangent(net):gram(X) - before):max_abs() > 0)
  end)

  it("reports progress and can be cancelled", function()
    local net = pk.network{ sizes = {2, 30, 1}, seed = 1 }
    local X = pk.randn(40, 2, 1)
    local Kt = pk.kernel.tangent(net, { memory = 30000 })
    local calls, last = 0, nil
    Kt:gram(X, X:copy(), { progress = function(done, total) calls = calls + 1; last = { done, total } end })
    assert.is_true(calls > 1)
    assert.are.equal(last[1], last[2])
    H.raises("cancelled", Kt.gram, Kt, X, X:copy(), { progress = function() return false end })
    H.raises("stop here", Kt.gram, Kt, X, X:copy(), { progress = function() error("stop here") end })
  end)

  it("refuses bad input", function()
    local net = pk.network{ sizes = {3, 8, 2}, seed = 1 }
    local Kt = pk.kernel.tangent(net)
    H.raises("X1 has 2 columns, the kernel takes 3 inputs", Kt.gram, Kt, pk.zeros(4, 2))
    H.raises("X2 has 4 columns", Kt.gram, Kt, pk.zeros(4, 3), pk.zeros(4, 4))
    H.raises("X has 1 columns", Kt.diag, Kt, pk.zeros(4, 1))
    H.raises("unknown outputs mode 'sum' (valid: block, trace, diagonal)", pk.kernel.tangent, net, { outputs = "sum" })
    local err = H.raises("too small for one tile; the minimum for this network is", pk.kernel.tangent(net, { memory = 100 }).gram,
      pk.kernel.tangent(net, { memory = 100 }), pk.randn(5, 3, 1))
    local minimum = tonumber(err:match("is (%d+) bytes"))
    assert.is_true(minimum > 100)
    assert.are.same({10, 10}, {pk.kernel.tangent(net, { memory = minimum }):gram(pk.randn(5, 3, 1)):shape()})
    -- 200000^2 x 4 outputs^2 doubles: refused before anything is allocated
    local big = pk.zeros(200000, 3)
    H.raises("above the memory limit", Kt.gram, Kt, big)
    H.raises("memory' must be a positive", pk.kernel.tangent, net, { memory = 0 })
    H.raises("pathkernel.Network expected", pk.kernel.tangent, {})
  end)
end)

describe("the Kernel userdata (through pk.kernel.tangent)", function()
  local net = pk.network{ sizes = { 3, 6, 1 }, seed = 1 }
  local X = pk.randn(5, 3, 1)
  local Y = pk.randn(4, 3, 2)
  -- a working set this small splits the Gram into several tiles, so the
  -- progress callback runs while there is work left
  local function tiled() return pk.kernel.tangent(net, { memory = 1000 }) end

  it("reports progress once per tile, ending at the total", function()
    local seen = {}
    tiled():gram(X, Y, { progress = function(done, total) seen[#seen + 1] = { done, total } end })
    assert.is_true(#seen > 2)
    assert.are.same({ seen[#seen][2], seen[#seen][2] }, seen[#seen])
  end)

  it("keeps matrices a progress callback releases alive until the call ends", function()
    local K = tiled()
    local want = K:gram(X, Y)
    local A, B = X:copy(), Y:copy()
    local G = K:gram(A, B, { progress = function(done)
      if done == 1 then A:release(); B:release(); collectgarbage() end
    end })
    assert.are.equal(0, (G - want):max_abs())
    H.raises("matrix has been released", K.gram, K, A)
    local D = X:copy()
    local d = K:diag(D, { progress = function() D:release(); collectgarbage() end })
    assert.are.equal(0, (d - K:diag(X)):max_abs())
  end)

  it("cannot be released from its own progress callback, and stays usable", function()
    local K = tiled()
    H.raises("kernel is in use", K.gram, K, X, { progress = function() K:release() end })
    H.raises("kernel is in use", K.diag, K, X, { progress = function() getmetatable(K).__gc(K) end })
    -- using it from its own callback is fine: its state is read only
    local inner
    K:gram(X, { progress = function() inner = K:gram(Y) end })
    assert.are.equal(0, (inner - K:gram(Y)):max_abs())
    K:release()
    H.raises("kernel has been released", K.gram, K, X)
    assert.are.equal("pathkernel.Kernel (released)", tostring(K))
  end)

  it("passes on a callback's error, even one that is not a string", function()
    local K = tiled()
    H.raises("boom", K.gram, K, X, { progress = function() error("boom") end })
    local ok, e = pcall(K.gram, K, X, { progress = function() error({ code = 7 }) end })
    assert.is_false(ok)
    assert.are.equal(7, e.code)
    H.raises("cancelled", K.gram, K, X, { progress = function() return false end })
  end)

  it("raises the core's failure with its message", function()
    local K = pk.kernel.tangent(net, { memory = 100 })
    H.raises("tangent kernel: memory = 100 bytes is too small for one tile", K.gram, K, X)
  end)

  it("checks its arguments", function()
    local K = pk.kernel.tangent(net)
    H.raises("X1 has 2 columns, the kernel takes 3 inputs", K.gram, K, pk.zeros(2, 2))
    H.raises("X2 has 2 columns, the kernel takes 3 inputs", K.gram, K, X, pk.zeros(2, 2))
    local R = pk.zeros(2, 3)
    R:release()
    H.raises("matrix has been released", K.gram, K, X, R)
    H.raises("table of options expected, got number", K.gram, K, X, Y, 5)
    H.raises("table of options expected, got string", K.diag, K, X, "fast")
    H.raises("unknown option 'progres'", K.gram, K, X, { progres = false })
    H.raises("unknown outputs mode 'all'", pk.kernel.tangent, net, { outputs = "all" })
    H.raises("option 'memory' must be a positive number", pk.kernel.tangent, net, { memory = 0 })
  end)
end)
