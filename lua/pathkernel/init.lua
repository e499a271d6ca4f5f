-- pathkernel: the front module. Everything numeric lives in the C module
-- pathkernel.core; this file gathers it into one table with the Lua-side
-- comforts (namespaces, helpers) around it.
local core = require "pathkernel.core"

local pk = {}
for k, v in pairs(core) do pk[k] = v end

pk.kernel = pk.kernel or {}
pk.machine = pk.machine or {}

-- pictures through gnuplot (CSV when it is missing)
pk.plot = require "pathkernel.plot"

return pk
