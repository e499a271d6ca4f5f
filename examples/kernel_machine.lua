-- kernel_machine.lua - the main demo (`make demo`). Until networks and the
-- path kernel land it shows the matrix layer the rest stands on.
local pk = require "pathkernel"

local A = pk.randn(4, 3, 1)
local B = pk.randn(3, 2, 2)
print("A =", A)
print("B =", B)
print("A * B =", A * B)
local iris = pk.read_csv("examples/data/iris.csv", { header = true })
print(("iris: %d rows, %d columns; mean of column 1 = %.4f"):format(
  iris:rows(), iris:cols(), (pk.ones(1, iris:rows()) * iris):get(1, 1) / iris:rows()))
