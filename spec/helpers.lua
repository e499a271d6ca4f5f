-- spec/helpers.lua - shared helpers for the busted specs: the module, temp
-- files, and comparisons with stated tolerances.
local pk = require "pathkernel"

local H = { pk = pk }

-- a fresh temporary path, removed at exit of the spec run
function H.tmpname(suffix)
  local p = os.tmpname()
  os.remove(p)
  return p .. (suffix or "")
end

function H.read_bytes(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

function H.write_bytes(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- max |a - b| / max(1, |b|) over two matrices of the same shape
function H.max_rel(a, b)
  assert(a:rows() == b:rows() and a:cols() == b:cols(), "shape mismatch")
  local m = 0
  for i = 1, a:rows() do
    for j = 1, a:cols() do
      local x, y = a:get(i, j), b:get(i, j)
      local e = math.abs(x - y) / math.max(1, math.abs(y))
      if e ~= e then return math.huge end
      if e > m then m = e end
    end
  end
  return m
end

-- relative error in the norm sense: ||a - b|| / ||b||
function H.rel_err(a, b)
  local nb = b:norm()
  return (a - b):norm() / (nb > 0 and nb or 1)
end

-- naive triple loop product, an independent check of BLAS
function H.naive_mul(a, b)
  local r, n, c = a:rows(), a:cols(), b:cols()
  local out = pk.zeros(r, c)
  for i = 1, r do
    for j = 1, c do
      local s = 0
      for k = 1, n do s = s + a:get(i, k) * b:get(k, j) end
      out:set(i, j, s)
    end
  end
  return out
end

-- assert that f raises an error whose message contains `pattern` (plain)
function H.raises(pattern, f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error matching '" .. pattern .. "', got success")
  err = tostring(err)
  assert(err:find(pattern, 1, true), "error '" .. err .. "' does not contain '" .. pattern .. "'")
  return err
end

return H
