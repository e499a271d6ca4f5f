-- digits_conv.lua - a small convolutional network on the 8x8 digits,
-- beside the fully connected one of digits_explain.lua, and which training
-- digits made the conv net say what it said. Both learn by full-batch
-- gradient descent on softmax; the conv net's run is recorded and rewritten
-- exactly as a kernel machine, so each test prediction (the logit of the
-- predicted class) is f0(x) plus one contribution per training digit. For
-- a few right and a few wrong test digits this shows the training digits
-- that pushed the prediction hardest up and hardest down.
--
--   eval "$(make -s env)"; lua5.4 examples/digits_conv.lua [outdir]
--
-- Data: examples/data/digits.csv (1797 rows: 64 pixels 0..16, then the
-- label 0..9). PATHKERNEL_QUICK=1 trains on fewer digits (used by the specs).
local pk = require "pathkernel"

-- the output folder, quick mode and the digits data, as every digits example
local ex = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/digits_data.lua")
  .start("digits_conv")
local outdir, quick = ex.out, ex.quick
local D = ex:digits()

-- pixels scaled to [0, 1] (each row a 1 x 8 x 8 image), labels 0..9 as
-- classes 1..10; the first m digits train, the rest test
local m = quick and 300 or 500
local X, Y, Xt, Yt = pk.split(D:columns(1, 64) / 16, D:columns(65, 65) + 1,
  { test = D:rows() - m, shuffle = false })
local steps = quick and 150 or 250

-- the two networks: digits_explain's dense one, and a conv net with about
-- as many parameters
local dense = pk.network{ sizes = {64, 64, 10}, activation = "tanh", seed = 1 }
local cnn = pk.network{ input = {1, 8, 8}, activation = "tanh", seed = 1,
  layers = { {"conv", channels = 8, size = 3, padding = 1},   -- 8 x 8 x 8
             {"avgpool", size = 2},                         -- 8 x 4 x 4
             {"dense", 32}, {"dense", 10} } }

local td = pk.clock()
dense:train{ X = X, Y = Y, loss = "softmax", lr = 4, steps = steps, progress = false }
local dense_time = pk.clock() - td
local tc = pk.clock()
local traj = cnn:train{ X = X, Y = Y, loss = "softmax", lr = 8, steps = steps, record = true, progress = false }
local cnn_time = pk.clock() - tc

print(("both trained on %d digits, %d steps of gradient descent:"):format(m, steps))
print(("  dense: %s in %.1f s"):format(tostring(dense), dense_time))
print(("  conv:  %s in %.1f s"):format(tostring(cnn), cnn_time))
local Ft = cnn:forward(Xt)
local pred = Ft:argmax(2)
print(("test accuracy on %d digits: dense %.3f, conv %.3f"):format(Xt:rows(), pk.accuracy(dense:forward(Xt), Yt),
  pk.accuracy(Ft, Yt)))

-- a few right and a few wrong test digits of the conv net
local nshow = quick and 2 or 3
local chosen, right, wrong = {}, 0, 0
for i = 1, Xt:rows() do
  local ok = pred:get(i, 1) == Yt:get(i, 1)
  if ok and right < nshow then right = right + 1; chosen[#chosen + 1] = i
  elseif not ok and wrong < nshow then wrong = wrong + 1; chosen[#chosen + 1] = i end
  if right == nshow and wrong == nshow then break end
end
local Xq = Xt:gather(chosen)

-- the conv net as a kernel machine for these queries
local km = pk.machine.from_trajectory(traj)
local tk = pk.clock()
local C = km:contributions(Xq, { progress = false })
local maxabs, maxrel = km:verify(Xq, { progress = false })
print(("kernel machine of the conv net over %d training digits: %d test digits decomposed in %.1f s"):format(
  m, #chosen, pk.clock() - tk))
print(("verification: max abs error %.3e, max relative error %.3e"):format(maxabs, maxrel))

local k = quick and 3 or 4
local images, same_for, total = {}, 0, 0
print(("the %d training digits that pushed hardest for (+) and against (-) the predicted class:"):format(k))
for r, i in ipairs(chosen) do
  local label, class = Yt:get(i, 1) - 1, pred:get(i, 1) - 1
  local c = C[class + 1]:row(r):totable()[1]
  local order = {}
  for j = 1, m do order[j] = j end
  table.sort(order, function(a, b) return c[a] > c[b] end)
  local parts = {}
  images[#images + 1] = { data = Xq:row(r), title = ("#%d: true %d, pred %d"):format(i, label, class) }
  for j = 1, k do
    local t = order[j]
    if Y:get(t, 1) - 1 == class then same_for = same_for + 1 end
    parts[#parts + 1] = ("+%.3f(#%d:%d)"):format(c[t], t, Y:get(t, 1) - 1)
    images[#images + 1] = { data = X:row(t), title = ("+%.2f: a %d"):format(c[t], Y:get(t, 1) - 1) }
  end
  for j = 1, k do
    local t = order[m + 1 - j]
    parts[#parts + 1] = ("%.3f(#%d:%d)"):format(c[t], t, Y:get(t, 1) - 1)
    images[#images + 1] = { data = X:row(t), title = ("%.2f: a %d"):format(c[t], Y:get(t, 1) - 1) }
  end
  total = total + k
  print(("  test digit %4d, a %d, predicted %d (%s): %s"):format(i, label, class,
    label == class and "right" or "wrong", table.concat(parts, " ")))
end
print(("training digits among the strongest supporters that carry the predicted label: %d of %d"):format(
  same_for, total))

local first = chosen[1]
local e = km:explain(Xq:row(1), 3, { output = pred:get(first, 1), progress = false })
print(("explain test digit %d, class %d: logit %.6f = f0 %.6f + sum of contributions %.6f (network %.6f)"):format(
  first, e.output - 1, e.prediction, e.bias, e.sum, e.network))

local file, note = pk.plot.images{
  file = outdir .. "/digits_conv.png",
  title = ("Conv net: a test digit, then the %d training digits that pushed its predicted class up most, "
    .. "then the %d that pushed it down most"):format(k, k),
  images = images, columns = 2 * k + 1, range = { 0, 1 }, palette = "gray_r",
}
print("pictures:")
ex.picture(file, note)
ex:done()
