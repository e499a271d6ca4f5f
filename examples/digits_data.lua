-- digits_data.lua - what the digits examples share: the output folder
-- (argument 1, else examples/out), quick mode, the 8x8 digits data, and the
-- lines that report a picture. Loaded by the examples with dofile beside
-- them:  local ex = dofile(folder .. "/digits_data.lua").start("name")
local pk = require "pathkernel"

local M = {}

local function fail(name, msg)
  io.stderr:write(name .. ": " .. msg .. "\n")
  os.exit(1)
end

-- the run's settings: here (the examples folder), out (the output folder,
-- made if missing), quick (PATHKERNEL_QUICK=1: less work, for the specs), t0
function M.start(name)
  local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
  local okdir, outdir = pcall(pk.plot.folder, arg and arg[1] or (here .. "/out"))
  if not okdir then fail(name, outdir) end
  local ex = { name = name, here = here, out = outdir, quick = os.getenv("PATHKERNEL_QUICK") == "1",
               t0 = pk.clock() }
  return setmetatable(ex, { __index = M })
end

-- examples/data/digits.csv (or PATHKERNEL_DIGITS): 1797 rows of 64 pixels
-- 0..16 and the label 0..9, checked before any work
function M:digits()
  local path = os.getenv("PATHKERNEL_DIGITS") or (self.here .. "/data/digits.csv")
  local D, err = pk.read_csv(path)
  if not D then
    fail(self.name, ("cannot read the digits data: %s\n"):format(err)
      .. "  it ships with pathkernel as examples/data/digits.csv (1797 rows of 64 pixels and a label)")
  end
  if D:cols() ~= 65 or D:rows() < 600 then
    fail(self.name, ("%s has %d rows of %d values; expected 1797 rows of 64 pixels and a label")
      :format(path, D:rows(), D:cols()))
  end
  return D
end

-- what pk.plot returned, as the examples report it
function M.picture(file, note)
  if file then print(("  wrote %s"):format(file)) end
  if note then print((file and "  note: " or "  could not draw it: ") .. note) end
end

-- the last line of a run
function M:done()
  print(("done in %.1f s"):format(pk.clock() - self.t0))
end

return M
