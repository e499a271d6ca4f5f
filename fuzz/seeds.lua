-- fuzz/seeds.lua OUTDIR NAME... - write the seed corpus of each named fuzz
-- harness into OUTDIR/NAME/: valid inputs made by the library itself, so
-- that mutation starts from files that pass every check. A new harness
-- fuzz/fuzz_NAME.c gets its seeds from one more function in `seeds` below.
local pk = require "pathkernel"

local seeds = {}

local function tmpfile()
  local p = os.tmpname()
  return p
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- the bytes pk saves for a matrix
local function saved(A)
  local p = tmpfile()
  assert(A:save(p))
  local s = slurp(p)
  os.remove(p)
  return s
end

local function sample_matrices()
  local S = pk.matrix{{0 / 0, math.huge, -math.huge, -0.0, 5e-324}}
  return {
    empty = pk.zeros(0, 0), one = pk.matrix{{1.5}}, small = pk.randn(3, 4, 1),
    special = S, wide = pk.zeros(0, 7), tall = pk.zeros(5, 0), col = pk.rand(16, 1, 2),
  }
end

function seeds.matrix(put)
  for name, A in pairs(sample_matrices()) do put(name, saved(A)) end
end

-- the bytes pk saves for any object with a save method (opts: its options)
local function saved_obj(obj, opts)
  local p = tmpfile()
  assert(obj:save(p, opts))
  local s = slurp(p)
  os.remove(p)
  return s
end

-- The data every small run below trains on; fuzz/fuzz_trajectory.c makes
-- the same two matrices to load the trajectories saved without it.
local function fixed_data() return pk.randn(6, 2, 11), pk.randn(6, 1, 12) end

local function small_net(seed, opts)
  local o = { sizes = { 2, 3, 1 }, activation = "tanh", seed = seed }
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.layers then o.sizes = nil end
  return pk.network(o)
end

-- conv networks over the fixed data's two columns read as a 1 x 1 x 2 or a
-- 1 x 2 x 1 image (format version 2: layer records with windows)
local CONV = { input = { 1, 1, 2 }, layers = { { "conv", channels = 2, size = { 1, 2 } }, { "dense", 1 } } }
local CONV_POOL = { input = { 1, 2, 1 }, activation = "relu",
  layers = { { "conv", channels = 2, size = 1, padding = { 1, 0 } }, { "avgpool", size = { 2, 1 } },
             { "dense", 1 } } }

function seeds.network(put)
  local X, Y = fixed_data()
  local net = small_net(1)
  net:train{ X = X, Y = Y, steps = 5, lr = 0.1, progress = false }
  put("trained", saved_obj(net))
  put("fresh", saved_obj(small_net(2)))
  put("deep", saved_obj(pk.network{ sizes = { 2, 2, 2, 2, 3 }, activation = { "relu", "sin", "gelu" },
    parameterization = "standard", sigma_w = 1.5, sigma_b = 0, seed = 3 }))
  put("one-layer", saved_obj(pk.network{ sizes = { 1, 1 }, seed = 4 }))
  -- format version 2: the layer records of a leaky_relu network
  put("leaky", saved_obj(pk.network{ sizes = { 2, 3, 2, 1 }, activation = { "leaky_relu", "tanh" },
    slope = 0.2, seed = 5 }))
  put("conv", saved_obj(small_net(6, CONV)))
  put("conv-pool", saved_obj(small_net(7, CONV_POOL)))
  put("conv-image", saved_obj(pk.network{ input = { 2, 4, 4 }, seed = 8,
    layers = { { "conv", channels = 3, size = 3, stride = 2, padding = 1 }, { "avgpool", size = 2 },
               { "conv", channels = 2, size = 1 } } }))
end

-- runs of a few steps for every optimizer family and both ways of recording
local function runs()
  local X, Y = fixed_data()
  local t = {}
  local function run(name, o)
    local net = small_net(#name, o.net)
    o.net = nil
    o.X, o.Y, o.progress = X, Y, false
    o.lr = o.lr or 0.1
    o.steps = o.steps or 4
    t[name] = { net:train(o) }
  end
  run("gd", { record = true })
  run("sgd-every", { optimizer = "sgd", batch_size = 4, steps = 7, record = { every = 3 }, seed = 5 })
  run("adam", { optimizer = "adam", lr = 0.01, record = { every = 2 } })
  run("momentum", { optimizer = "momentum", weight_decay = 0.01, batch_size = 3, record = true, seed = 6 })
  run("adamw-explain", { optimizer = "adamw", record = true, explain = X:slice(1, 2) })
  run("gd-explain", { explain = X:slice(2, 4) })
  run("gd-explain-gauss-kernel", { explain = X:slice(2, 4), rule = "gauss", nodes = 3, kernel = true })
  run("relu-explain", { explain = X:slice(1, 3), lr = 0.8, net = { activation = "relu" } })
  run("nesterov-explain", { optimizer = "nesterov", explain = X:slice(1, 1), steps = 2 })
  -- loss weights: format version 2
  run("sgd-weights", { optimizer = "sgd", batch_size = 2, steps = 5, record = { every = 2 }, seed = 7,
    weights = pk.matrix{ 1, 0, 0.5, 2, 1, 0 } })
  -- conv networks
  run("conv-gd", { net = CONV, record = true })
  run("conv-pool-momentum", { net = CONV_POOL, optimizer = "momentum", batch_size = 4,
    record = { every = 2 }, seed = 8, steps = 5 })
  run("conv-adam-explain", { net = CONV, optimizer = "adam", lr = 0.01, record = true,
    explain = X:slice(1, 2) })
  return t
end

function seeds.trajectory(put)
  for name, r in pairs(runs()) do
    local traj = r[1]
    if type(traj) == "userdata" then
      put(name .. "-data", saved_obj(traj))
      put(name .. "-nodata", saved_obj(traj, { data = false }))
    end
  end
  -- classification: softmax on 3 outputs, logistic on 1 (saved with data)
  local X = pk.randn(5, 2, 21)
  local labels = pk.matrix{ 1, 3, 2, 2, 1 }
  local t3 = small_net(7, { sizes = { 2, 4, 3 } }):train{ X = X, Y = labels, loss = "softmax",
    steps = 3, lr = 0.1, record = true, progress = false }
  put("softmax-data", saved_obj(t3))
  local t1 = small_net(8):train{ X = X, Y = pk.matrix{ 0, 1, 1, 0, 1 }, loss = "logistic",
    optimizer = "sgd", batch_size = 2, steps = 3, lr = 0.1, record = true, progress = false }
  put("logistic-data", saved_obj(t1))
end

function seeds.machine(put)
  for name, r in pairs(runs()) do
    local traj, online = r[1], r[2]
    if type(traj) == "userdata" then
      put(name .. "-offline-gauss", saved_obj(pk.machine.from_trajectory(traj, { nodes = 2 })))
      put(name .. "-offline-left", saved_obj(pk.machine.from_trajectory(traj, { rule = "left" })))
      put(name .. "-offline-exact", saved_obj(pk.machine.from_trajectory(traj, { tol = 1e-11 })))
    end
    if online then put(name .. "-online", saved_obj(online)) end
  end
end

-- ridge, GP (Cholesky and, on a singular Gram, eigendecomposition) and
-- gradient flow (with and without f0) over every kernel a file can hold
function seeds.regressor(put)
  local X, Y = fixed_data()
  local kernels = {
    linear = pk.kernel.linear(), rbf = pk.kernel.rbf{ gamma = 0.5 },
    laplacian = pk.kernel.laplacian{ gamma = 1 }, poly = pk.kernel.poly{ degree = 2, c = 1 },
    ntk = pk.kernel.ntk{ depth = 2, activation = "relu" },
    nngp = pk.kernel.nngp{ depth = 1, activation = "erf", sigma_w = 1.5, sigma_b = 0.1 },
  }
  for name, K in pairs(kernels) do
    put("ridge-" .. name, saved_obj(pk.machine.ridge(K, X, Y, { lambda = 0.1 })))
    put("gp-" .. name, saved_obj(pk.machine.gp(K, X, Y, { noise = 0.01 })))
    put("flow-" .. name, saved_obj(pk.machine.gradient_flow(K, X, Y, { lr = 0.5, t = 10 })))
  end
  -- a rank-2 Gram with no noise to speak of: the GP falls back to eigh
  local twice = pk.matrix{ { 1, 2 }, { 1, 2 }, { 2, 4 }, { 2, 4 } }
  local ok, gp = pcall(pk.machine.gp, pk.kernel.linear(), twice, pk.matrix{ 1, 1, 2, 2 }, { noise = 1e-300 })
  if ok then put("gp-eig", saved_obj(gp)) end
  put("flow-f0", saved_obj(pk.machine.gradient_flow(pk.kernel.rbf{ gamma = 1 }, X, Y,
    { f0 = pk.randn(6, 1, 13), t = math.huge })))
end

-- CRC-32 (zlib polynomial), for frames no loader of this build writes yet
local crctab = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do c = (c & 1) == 1 and (0xedb88320 ~ (c >> 1)) or (c >> 1) end
  crctab[i] = c
end
local function crc32(s)
  local c = 0xffffffff
  for i = 1, #s do c = crctab[(c ~ s:byte(i)) & 0xff] ~ (c >> 8) end
  return c ~ 0xffffffff
end

local function frame(tag, payload)
  local head = "PATHKRNL" .. string.pack("<I4I4I8", 1, tag, #payload) .. payload
  return head .. string.pack("<I4", crc32(head))
end

function seeds.container(put)
  put("matrix", saved(pk.randn(2, 3, 3)))
  put("network", saved_obj(small_net(1)))
  local X, Y = fixed_data()
  local traj = small_net(2):train{ X = X, Y = Y, steps = 2, lr = 0.1, record = true, progress = false }
  put("trajectory", saved_obj(traj))
  put("machine", saved_obj(pk.machine.from_trajectory(traj)))
  assert(frame(1, saved(pk.eye(2)):sub(25, -5)) == saved(pk.eye(2)), "seeds.lua frames differ")
  for tag = 1, 6 do
    put("empty-tag" .. tag, frame(tag, ""))
    put("bytes-tag" .. tag, frame(tag, string.rep("\1\0\0\0\0\0\0\0", 3)))
  end
end

-- first byte: bit 0 header, bits 1-2 separator (',' ';' tab space)
function seeds.csv(put)
  local opt = { comma = 0, header = 1, semi = 2, tab = 4, space = 6 }
  local function csv(name, o, text) put(name, string.char(o) .. text) end
  csv("plain", opt.comma, "1,2,3\n4,5,6\n")
  csv("header", opt.header, "a,b\n1.5,-2e3\n")
  csv("crlf", opt.comma, "1,2\r\n3,4\r\n")
  csv("blank", opt.comma, "\n1\n\n  \n2\n")
  csv("special", opt.comma, "nan,-NaN,inf,-Infinity,-0,.5,2.,1e-320,1e-400, 7 \n")
  csv("refused", opt.comma, "0x1p-3,1e400,nan(1),1e,+-1\n")
  csv("semi", opt.semi, "1;2\n3;4")
  csv("tab", opt.tab | 1, "x\ty\n1\t2\n")
  csv("space", opt.space, "1 2\n3 4\n")
  csv("ragged", opt.comma, "1,2\n3\n")
  csv("bad", opt.comma, "1,x\n")
  local iris = io.open("examples/data/iris.csv", "rb")
  if iris then
    local lines = {}
    for l in iris:lines() do
      lines[#lines + 1] = l
      if #lines == 12 then break end
    end
    iris:close()
    csv("iris", opt.header, table.concat(lines, "\n") .. "\n")
  end
  local p = tmpfile()
  assert(pk.randn(4, 3, 5):write_csv(p, { header = "u,v,w" }))
  csv("written", opt.header, slurp(p))
  -- gzip-compressed, and two members back to back (read_csv inflates them)
  if os.execute("gzip -c -n '" .. p .. "' > '" .. p .. ".gz' 2>/dev/null") then
    local gz = slurp(p .. ".gz")
    csv("gzip", opt.header, gz)
    csv("gzip-twice", opt.header, gz .. gz)
    os.remove(p .. ".gz")
  end
  os.remove(p)
end

-- .npy files: what A:write_npy writes, and files built from the format's
-- description for every dtype, byte order, memory order and version
local function npy(descr, fortran, shape, data, version, dict)
  if not dict then
    local t = {}
    for i, d in ipairs(shape) do t[i] = tostring(d) end
    local tuple = #shape == 1 and "(" .. shape[1] .. ",)" or "(" .. table.concat(t, ", ") .. ")"
    dict = ("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }"):format(descr,
      fortran and "True" or "False", tuple)
  end
  version = version or 1
  local pre = version == 1 and 10 or 12
  local header = dict .. string.rep(" ", (64 - (pre + #dict + 1) % 64) % 64) .. "\n"
  local len = version == 1 and string.pack("<I2", #header) or string.pack("<I4", #header)
  return "\x93NUMPY" .. string.char(version, 0) .. len .. header .. data
end

function seeds.npy(put)
  for name, A in pairs(sample_matrices()) do
    local p = tmpfile()
    assert(A:write_npy(p))
    put("written-" .. name, slurp(p))
    os.remove(p)
  end
  local items = { f8 = "d", f4 = "f", i8 = "i8", i4 = "i4", i2 = "i2", i1 = "i1", u8 = "I8", u4 = "I4",
                  u2 = "I2", u1 = "I1", b1 = "B" }
  for code, item in pairs(items) do
    for _, order in ipairs{ "<", ">" } do
      local vals = {}
      for i = 1, 6 do
        local v = code == "b1" and i % 2 or (code:sub(1, 1) == "f" and i * 0.75 - 2 or i * 3 - 5)
        if code:sub(1, 1) == "u" then v = i * 3 end
        vals[i] = string.pack(order .. item, v)
      end
      local data = table.concat(vals)
      local descr = (code:sub(2) == "1" and order == "<" and "|" or order) .. code
      put(("%s-%s-C"):format(code, order == "<" and "le" or "be"), npy(descr, false, { 2, 3 }, data))
      put(("%s-%s-F"):format(code, order == "<" and "le" or "be"), npy(descr, true, { 3, 2 }, data))
      put(("%s-%s-1d"):format(code, order == "<" and "le" or "be"), npy(descr, false, { 6 }, data))
    end
  end
  local d = string.pack("<d<d", 1.5, -2)
  put("scalar", npy("<f8", false, {}, d:sub(1, 8)))
  put("empty", npy("<f8", false, { 0, 3 }, ""))
  put("v2", npy("<f8", false, { 2 }, d, 2))
  put("v3", npy("<f8", false, { 1, 2 }, d, 3))
  put("python-forms", npy(nil, nil, nil, d, 1, '{"shape": (2L,), "fortran_order": False, "descr": "=f8"}'))
  put("three-d", npy("<f8", false, { 1, 1, 2 }, d))
end

local out = assert(arg[1], "usage: lua5.4 fuzz/seeds.lua OUTDIR NAME...")
for i = 2, #arg do
  local name = arg[i]
  local dir = out .. "/" .. name
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  if seeds[name] then
    local n = 0
    seeds[name](function(seed, bytes)
      local f = assert(io.open(dir .. "/" .. seed, "wb"))
      f:write(bytes)
      f:close()
      n = n + 1
    end)
    print(string.format("seeds: %d for %s", n, name))
  else
    print(string.format("seeds: none for %s (add a function to fuzz/seeds.lua)", name))
  end
end
