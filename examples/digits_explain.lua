-- digits_explain.lua - which training digits made a classifier say "3"?
-- A softmax network learns the 8x8 digits by gradient descent with its
-- path recorded; rewritten as a kernel machine, each test prediction
-- (the logit of the predicted class) is f0(x) plus one contribution per
-- training digit, exactly. For a few correctly and a few wrongly classified
-- test digits this shows the training digits that pushed hardest for the
-- predicted class and hardest against it.
--
--   eval "$(make -s env)"; lua5.4 examples/digits_explain.lua [outdir]
--
-- Data: examples/data/digits.csv (1797 rows: 64 pixels 0..16, then the
-- label 0..9). PATHKERNEL_QUICK=1 trains on fewer digits (used by the specs).
local pk = require "pathkernel"

-- the output folder, quick mode and the digits data, as every digits example
local ex = dofile(((arg and arg[0] or ""):match("^(.*)/[^/]*$") or ".") .. "/digits_data.lua")
  .start("digits_explain")
local outdir, quick = ex.out, ex.quick
local D = ex:digits()

-- pixels scaled to [0, 1], labels 0..9 as classes 1..10; the first m
-- digits train, the rest test
local m = quick and 300 or 500
local X, Y, Xt, Yt = pk.split(D:columns(1, 64) / 16, D:columns(65, 65) + 1,
  { test = D:rows() - m, shuffle = false })

local net = pk.network{ sizes = {64, 64, 10}, activation = "tanh", seed = 1 }
local steps, lr = quick and 250 or 500, 4
local tt = pk.clock()
local traj = net:train{ X = X, Y = Y, loss = "softmax", lr = lr, steps = steps, record = true, progress = false }
print(("trained %s"):format(tostring(net)))
print(("  on %d digits, %d steps of gradient descent (lr %g) in %.1f s; softmax loss %.3f -> %.3f"):format(
  m, steps, lr, pk.clock() - tt, traj:losses()[1], net:loss(X, Y, "softmax")))

local Ft = net:forward(Xt)
local pred = Ft:argmax(2)                  -- the predicted class of each test digit
print(("train accuracy %.3f"):format(pk.accuracy(net:forward(X), Y)))
print(("test accuracy %.3f on %d digits"):format(pk.accuracy(Ft, Yt), Xt:rows()))

-- a few right and a few wrong test digits
local nshow = quick and 2 or 3
local chosen, right, wrong = {}, 0, 0
for i = 1, Xt:rows() do
  local ok = pred:get(i, 1) == Yt:get(i, 1)
  if ok and right < nshow then right = right + 1; chosen[#chosen + 1] = i
  elseif not ok and wrong < nshow then wrong = wrong + 1; chosen[#chosen + 1] = i end
  if right == nshow and wrong == nshow then break end
end
local Xq = Xt:gather(chosen)

-- the kernel machine for these queries: one n x m matrix per class
local km = pk.machine.from_trajectory(traj)
local td = pk.clock()
local C = km:contributions(Xq, { progress = false })
local maxabs, maxrel = km:verify(Xq, { progress = false })    -- cached: same queries
print(("kernel machine over %d training digits, %d test digits decomposed in %.1f s"):format(
  m, #chosen, pk.clock() - td))
print(("verification: max abs error %.3e, max relative error %.3e"):format(maxabs, maxrel))

local function image(x, title) return { data = x, title = title } end

local k = quick and 3 or 4
local images, same_for, same_against, total = {}, 0, 0, 0
print(("the %d training digits that pushed hardest for (+) and against (-) the predicted class:"):format(k))
for r, i in ipairs(chosen) do
  local label, class = Yt:get(i, 1) - 1, pred:get(i, 1) - 1
  local c = C[class + 1]:row(r):totable()[1]
  local order = {}
  for j = 1, m do order[j] = j end
  table.sort(order, function(a, b) return c[a] > c[b] end)
  local up, down = {}, {}
  for j = 1, k do up[j], down[j] = order[j], order[m + 1 - j] end
  local parts = {}
  images[#images + 1] = image(Xq:row(r), ("#%d: true %d, pred %d"):format(i, label, class))
  for _, j in ipairs(up) do
    local lj = Y:get(j, 1) - 1
    if lj == class then same_for = same_for + 1 end
    parts[#parts + 1] = ("+%.3f(#%d:%d)"):format(c[j], j, lj)
    images[#images + 1] = image(X:row(j), ("+%.2f: a %d"):format(c[j], lj))
  end
  for _, j in ipairs(down) do
    local lj = Y:get(j, 1) - 1
    if lj == class then same_against = same_against + 1 end
    parts[#parts + 1] = ("%.3f(#%d:%d)"):format(c[j], j, lj)
    images[#images + 1] = image(X:row(j), ("%.2f: a %d"):format(c[j], lj))
  end
  total = total + k
  print(("  test digit %4d, a %d, predicted %d (%s): %s"):format(i, label, class,
    label == class and "right" or "wrong", table.concat(parts, " ")))
end
print(("training digits among the strongest supporters that carry the predicted label: %d of %d"):format(
  same_for, total))
print(("training digits among the strongest opponents that carry the predicted label: %d of %d"):format(
  same_against, total))

-- km:explain ranks by |contribution| and sums the rest: one query, one class
local first = chosen[1]
local e = km:explain(Xq:row(1), 3, { output = pred:get(first, 1), progress = false })
print(("explain test digit %d, class %d: logit %.6f = f0 %.6f + sum of contributions %.6f (network %.6f)"):format(
  first, e.output - 1, e.prediction, e.bias, e.sum, e.network))

local file, note = pk.plot.images{
  file = outdir .. "/digits_explain.png",
  title = ("Each row: a test digit (#index: true and predicted class), the %d training digits that pushed "
    .. "the predicted class up most, and the %d that pushed it down most"):format(k, k),
  images = images, columns = 2 * k + 1, range = { 0, 1 }, palette = "gray_r",
}
print("pictures:")
ex.picture(file, note)
ex:done()
