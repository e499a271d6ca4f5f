-- The infinite-width limit: the empirical tangent kernel of networks
-- {d, w, w, 1} in the ntk parameterization approaches the analytic NTK
-- (pk.kernel.ntk with the same depth, sigma_w, sigma_b) with an error that
-- falls like 1/sqrt(w), checked by the fitted slope of log(error) on log(w).
--
-- Which error scales as w^-1/2. At width w the tangent Gram of one random
-- network is K_w = K_inf + B_w + F_w: a deterministic finite-width bias
-- B_w = E[K_w] - K_inf, of order 1/w, and a zero-mean fluctuation F_w whose
-- size is of order 1/sqrt(w) (the Gram is a sum over ~w units of weakly
-- dependent terms). So one network's error ||K_w - K_inf|| is dominated by
-- F_w and falls like w^-1/2, while the Gram averaged over S seeds has error
-- sqrt(||B_w||^2 + E||F_w||^2 / S), which mixes w^-1 and w^-1/2 and has no
-- single slope. The quantity tested is therefore the root mean square over
-- seeds of the single-network relative error,
--   rms(w) = sqrt(mean_s ||K_w,s - K_inf||_F^2) / ||K_inf||_F ,
-- whose expected slope is -1/2; the seed-averaged Gram is checked
-- separately for what its decomposition predicts (no bias above the
-- fluctuations that averaging leaves).
local H = require "helpers"
local pk = H.pk

local n, d = 16, 4
-- N(0, I) inputs: the analytic kernel starts from K0 = x.x'/d, the
-- network's first layer from (sigma_w / sqrt(d)) W x, both ~1 here
local X = pk.randn(n, d, 7)
local depth, sigma_w, sigma_b = 2, 1.4, 0.1
local widths = { 64, 256, 1024 }
local seeds = 16

-- log(rms) = a + b log(w) by least squares: returns b
local function slope(xs, ys)
  local k, sx, sy, sxx, sxy = #xs, 0, 0, 0, 0
  for i = 1, k do
    local x, y = math.log(xs[i]), math.log(ys[i])
    sx, sy, sxx, sxy = sx + x, sy + y, sxx + x * x, sxy + x * y
  end
  return (k * sxy - sx * sy) / (k * sxx - sx * sx)
end

-- for each width: the rms relative error over seeds against each of the
-- given analytic Grams, and the error of the seed-averaged Gram against the
-- first. Networks are drawn once per (activation, width, seed).
local cache = {}
local function measure(act)
  if cache[act] then return cache[act] end
  local refs = {
    pk.kernel.ntk{ depth = depth, activation = act, sigma_w = sigma_w, sigma_b = sigma_b }:gram(X),
    -- a deliberately wrong limit (one hidden layer too many), to show the
    -- slope test can fail
    pk.kernel.ntk{ depth = depth + 1, activation = act, sigma_w = sigma_w, sigma_b = sigma_b }:gram(X),
  }
  local r = { rms = {}, wrong = {}, mean = {} }
  for k, w in ipairs(widths) do
    local sq, sqw, sum = 0, 0, pk.zeros(n, n)
    for s = 1, seeds do
      local net = pk.network{ sizes = { d, w, w, 1 }, activation = act, parameterization = "ntk",
                              sigma_w = sigma_w, sigma_b = sigma_b, seed = 100 * k + s }
      local G = pk.kernel.tangent(net):gram(X)
      sq = sq + ((G - refs[1]):norm() / refs[1]:norm()) ^ 2
      sqw = sqw + ((G - refs[2]):norm() / refs[2]:norm()) ^ 2
      sum = sum + G
    end
    r.rms[k], r.wrong[k] = math.sqrt(sq / seeds), math.sqrt(sqw / seeds)
    r.mean[k] = (sum / seeds - refs[1]):norm() / refs[1]:norm()
  end
  r.slope, r.wrong_slope = slope(widths, r.rms), slope(widths, r.wrong)
  cache[act] = r
  return r
end

local function show(act, r)
  local t = {}
  for k, w in ipairs(widths) do
    t[#t + 1] = ("w %d: rms %.4f, seed mean %.4f, vs depth+1 %.4f"):format(w, r.rms[k], r.mean[k], r.wrong[k])
  end
  return ("%s: slope %.3f (wrong limit %.3f); %s"):format(act, r.slope, r.wrong_slope, table.concat(t, "; "))
end

describe("the infinite-width limit of the tangent kernel", function()
  for _, act in ipairs{ "relu", "erf" } do
    it(act .. ": the rms error over seeds falls like w^-1/2 (fitted slope -0.5 +- 0.15)", function()
      local r = measure(act)
      -- The tolerance comes from the seed noise. Each network's squared
      -- error varies with a coefficient of variation of 0.5 to 0.9
      -- (measured over 60 seeds at widths 32..512), so log(rms) over 16
      -- seeds has a standard deviation of about 0.8 / (2 sqrt(16)) = 0.1,
      -- and the least-squares slope over three widths a factor of 4 apart
      -- sqrt(2) * 0.1 / (2 ln 4) = 0.05: 0.15 is three of those. (Ten
      -- disjoint sets of 16 seeds gave slopes from -0.40 to -0.57.)
      assert.is_true(math.abs(r.slope + 0.5) <= 0.15, show(act, r))
      for k = 2, #widths do assert.is_true(r.rms[k] < r.rms[k - 1], show(act, r)) end
      -- and the prefactor is that of a fluctuation, not a mismatch: at
      -- w = 1024 one network is within 15% of the limit
      assert.is_true(r.rms[#widths] < 0.15, show(act, r))
    end)

    it(act .. ": the seed-averaged Gram has no bias above what averaging leaves", function()
      -- E||mean - K_inf||^2 = rms^2 / S + (1 - 1/S) ||B_w||^2: with the
      -- right limit and a bias ~1/w the error is about rms / sqrt(S); a
      -- factor 2 allows for the spread of one such average.
      local r = measure(act)
      for k = 1, #widths do
        assert.is_true(r.mean[k] <= 2 * r.rms[k] / math.sqrt(seeds), show(act, r))
      end
    end)

    it(act .. ": against the limit of a deeper network the error stops falling", function()
      local r = measure(act)
      assert.is_true(r.wrong_slope > -0.25, show(act, r))
      assert.is_true(r.wrong[#widths] > 2 * r.rms[#widths], show(act, r))
    end)
  end
end)
