-- train.lua - the script run by examples/embed/host.c. The host passes its
-- data as Lua tables and a path; this trains a network, checks its kernel
-- machine, saves the network for the host to load through c/pk.h, and
-- returns the network's predictions on the host's queries.
local X, Y, Xq, path = ...
local pk = require "pathkernel"

X, Y, Xq = pk.matrix(X), pk.matrix(Y), pk.matrix(Xq)
local net = pk.network{ sizes = {1, 16, 16, 1}, activation = "tanh", seed = 2 }
local traj = net:train{ X = X, Y = Y, lr = 0.2, steps = 150, record = true, progress = false }
local km = pk.machine.from_trajectory(traj)
local _, rel = km:verify(Xq, { progress = false })
local e = km:explain(Xq:row(1), 1, { progress = false })
assert(net:save(path))

local F = net:forward(Xq)
local pred = {}
for i = 1, F:rows() do pred[i] = F:get(i, 1) end
return pred, rel, ("%s; the example that moved f(query 1) most: #%d"):format(tostring(net), e[1].index)
