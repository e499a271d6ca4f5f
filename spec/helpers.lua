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

-- eigenvalues of a small symmetric matrix by cyclic Jacobi rotations, an
-- independent check that needs no LAPACK
function H.jacobi_eigenvalues(M)
  local n = M:rows()
  local a = M:totable()
  for _ = 1, 100 do
    local off = 0
    for p = 1, n do for q = p + 1, n do off = off + a[p][q] ^ 2 end end
    if off < 1e-30 then break end
    for p = 1, n - 1 do
      for q = p + 1, n do
        if math.abs(a[p][q]) > 1e-300 then
          local theta = (a[q][q] - a[p][p]) / (2 * a[p][q])
          local t = (theta >= 0 and 1 or -1) / (math.abs(theta) + math.sqrt(theta * theta + 1))
          local c = 1 / math.sqrt(t * t + 1)
          local s = t * c
          for k = 1, n do
            local akp, akq = a[k][p], a[k][q]
            a[k][p], a[k][q] = c * akp - s * akq, s * akp + c * akq
          end
          for k = 1, n do
            local apk, aqk = a[p][k], a[q][k]
            a[p][k], a[q][k] = c * apk - s * aqk, s * apk + c * aqk
          end
        end
      end
    end
  end
  local ev = {}
  for i = 1, n do ev[i] = a[i][i] end
  table.sort(ev)
  return ev
end

-- CRC-32 (the zlib polynomial) and the PATHKRNL container, to build test
-- files the way the library does
function H.crc32(s)
  local crc = 0xffffffff
  for i = 1, #s do
    crc = crc ~ s:byte(i)
    for _ = 1, 8 do
      crc = (crc & 1) ~= 0 and (0xedb88320 ~ (crc >> 1)) or (crc >> 1)
    end
  end
  return crc ~ 0xffffffff
end

function H.container(tag, payload)
  local body = "PATHKRNL" .. string.pack("<I4I4I8", 1, tag, #payload) .. payload
  return body .. string.pack("<I4", H.crc32(body))
end

-- a shell word: s in single quotes
function H.shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- a shell command's output (stderr too) and exit status
function H.shell(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, _, rc = p:close()
  return out, ok and 0 or rc
end

-- A and B hold the same doubles, bit for bit (NaNs and signed zeros too)
function H.same_bits(A, B)
  local ra, ca = A:shape()
  local rb, cb = B:shape()
  assert(ra == rb and ca == cb, ("shapes %dx%d and %dx%d"):format(ra, ca, rb, cb))
  local a, b = A:totable(), B:totable()
  for i = 1, #a do
    for j = 1, #a[i] do
      assert(string.pack("<d", a[i][j]) == string.pack("<d", b[i][j]),
             ("[%d][%d]: %.17g and %.17g differ"):format(i, j, a[i][j], b[i][j]))
    end
  end
end

return H
