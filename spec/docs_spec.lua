-- docs/API.md documents every public Lua function: each function of the
-- module (pk.x, pk.kernel.x, pk.machine.x, pk.plot.x, ...) and each method
-- of every pathkernel.* userdata type must be mentioned there. A function
-- added without its documentation fails here with its name.
local H = require "helpers"
local pk = H.pk

local doc = H.read_bytes("docs/API.md")

local function mentioned(text)
  return doc:find(text, 1, true) ~= nil
end

describe("docs/API.md", function()
  it("mentions every function of the module", function()
    local missing = {}
    for name, v in pairs(pk) do
      if name:sub(1, 1) == "_" then
        -- private: not part of the API
      elseif type(v) == "function" then
        if not mentioned("pk." .. name) then missing[#missing + 1] = "pk." .. name end
      elseif type(v) == "table" then
        for sub, f in pairs(v) do
          if type(f) == "function" and not mentioned(("pk.%s.%s"):format(name, sub)) then
            missing[#missing + 1] = ("pk.%s.%s"):format(name, sub)
          end
        end
      end
    end
    table.sort(missing)
    assert.are.same({}, missing)
  end)

  it("mentions every method of every userdata type", function()
    -- make sure every type's metatable exists
    local net = pk.network{ sizes = {1, 2, 1}, seed = 1 }
    local traj = net:train{ X = pk.zeros(2, 1), Y = pk.zeros(2, 1), steps = 1, record = true }
    pk.machine.from_trajectory(traj)
    pk.kernel.tangent(net)
    local missing, types = {}, 0
    for tname, mt in pairs(debug.getregistry()) do
      if type(tname) == "string" and tname:match("^pathkernel%.") and type(mt) == "table"
         and type(mt.__index) == "table" then
        types = types + 1
        for m, f in pairs(mt.__index) do
          if type(f) == "function" and not mentioned(":" .. m .. "(") and not mentioned(":" .. m .. "{") then
            missing[#missing + 1] = tname .. ":" .. m
          end
        end
      end
    end
    assert.is_true(types >= 5, "found only " .. types .. " userdata types")
    table.sort(missing)
    assert.are.same({}, missing)
  end)
end)

-- The README and docs/API.md stand alone and say what the code does.
describe("the README and docs/API.md", function()
  local readme = H.read_bytes("README.md")
  local function shq(v) return "'" .. tostring(v):gsub("'", "'\\''") .. "'" end
  local function exists(path)
    local f = io.open(path, "rb")
    if f then f:close() end
    return f ~= nil
  end

  it("name only files that are in the repository", function()
    -- the folders of the source tree (build outputs are not part of it)
    local top = {}
    for d in ("bench c docs examples fuzz lua rockspec spec .ci"):gmatch("%S+") do top[d] = true end
    local missing = {}
    for name, text in pairs{ ["README.md"] = readme, ["docs/API.md"] = doc } do
      for path in text:gmatch("[%w_%./%-]+%.[%a]+") do
        local first = path:match("^([^/]+)/")
        local wanted = (first and top[first] and not path:find("NAME", 1, true)) or path:match("^[%w_%-]+%.md$")
        if wanted and not exists(path) and not exists("docs/" .. path) then
          missing[#missing + 1] = name .. ": " .. path
        end
      end
    end
    table.sort(missing)
    assert.are.same({}, missing)
  end)

  it("list every object tag of the file format, and pk.load every type it opens", function()
    local names = { MATRIX = "matrix", NETWORK = "network", TRAJECTORY = "trajectory",
                    MACHINE = "kernel machine", REGRESSOR = "regressor" }
    local tags = {}
    for name, n in H.read_bytes("c/pk.h"):gmatch("PK_TAG_(%u+)%s*=%s*(%d+)") do
      tags[#tags + 1] = n .. " " .. assert(names[name], "a tag without a name here: " .. name)
    end
    table.sort(tags)
    assert.is_true(#tags >= 5)
    for file, text in pairs{ ["README.md"] = readme, ["docs/API.md"] = doc } do
      local list = assert(text:match("object tag (%b())"), file):gsub("%s+", " ")
      local listed = {}
      for entry in list:sub(2, -2):gmatch("[^,]+") do listed[#listed + 1] = entry:match("^%s*(.-)%s*$") end
      table.sort(listed)
      assert.are.same(tags, listed, file)
    end
    -- every type that saves itself is one pk.load opens
    local X, Y = pk.randn(4, 1, 1), pk.randn(4, 1, 2)
    pk.machine.ridge(pk.kernel.rbf{}, X, Y)
    local net = pk.network{ sizes = {1, 2, 1}, seed = 1 }
    pk.machine.from_trajectory(net:train{ X = X, Y = Y, steps = 1, record = true })
    local row = assert(doc:match("\n| `pk%.load%(.-\n"))
    local types = 0
    for tname, mt in pairs(debug.getregistry()) do
      if type(tname) == "string" and tname:match("^pathkernel%.") and type(mt) == "table"
         and type(mt.__index) == "table" and mt.__index.save then
        types = types + 1
        assert.truthy(row:find(tname:match("^pathkernel%.(.*)$"), 1, true), tname .. " missing from the pk.load row")
      end
    end
    assert.is_true(types >= 5)
  end)

  it("show an online machine answering rows and subsets of its own queries", function()
    local para = assert(doc:match("An online\nmachine answers.-\n\n"), "the paragraph on online machines")
    local X, Y, Xq = pk.randn(6, 2, 1), pk.randn(6, 1, 2), pk.randn(3, 2, 3)
    local _, km = pk.network{ sizes = {2, 4, 1}, seed = 1 }:train{ X = X, Y = Y, steps = 3, lr = 0.1, explain = Xq }
    local calls = 0
    for code in para:gmatch("`(km:[^`]+)`") do
      local f = assert(load("return " .. code, code, "t", { km = km, Xq = Xq, k = 2 }))
      assert.truthy(f(), code)
      calls = calls + 1
    end
    assert.is_true(calls >= 2, "the paragraph shows no call")
    H.raises("accumulated online for its own 3 queries", km.predict, km, pk.randn(1, 2, 9))
  end)

  it("have a README plot example that runs in an empty folder", function()
    local snippet = assert(readme:match("\n## Plots\n.-```lua\n(.-)```"))
    local cwd = assert(io.popen("pwd")):read("l")
    local function absolute(paths)
      return (paths:gsub("[^;]+", function(p) return p:sub(1, 1) == "/" and p or (cwd .. "/" .. p) end))
    end
    local dir = H.tmpname("-readme")
    assert(os.execute("mkdir -p " .. shq(dir)))
    H.write_bytes(dir .. "/plot.lua", table.concat({
      'local pk = require "pathkernel"',
      "local net = pk.network{ sizes = {1, 4, 1}, seed = 1 }",
      "local traj = net:train{ X = pk.randn(8, 1, 1), Y = pk.randn(8, 1, 2), lr = 0.1, steps = 5, record = true }",
      snippet }, "\n"))
    local p = assert(io.popen(("cd %s && LUA_PATH=%s LUA_CPATH=%s lua5.4 plot.lua 2>&1"):format(shq(dir),
      shq(absolute(package.path)), shq(absolute(package.cpath)))))
    local out = p:read("a")
    local ok = p:close()
    local made = pk.plot.available() and (dir .. "/out/loss.png") or (dir .. "/out/loss.csv")
    local wrote = exists(made)
    os.execute("rm -rf " .. shq(dir))
    assert.is_true(ok, out)
    assert.is_true(wrote, out)
  end)
end)
