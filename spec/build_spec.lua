-- The build: the rockspec names every C source and Lua file, the module
-- exports only its entry point and the pk_ C API.
local H = require "helpers"

local shq, shell = H.shq, H.shell

local function ls(cmd)
  local t, p = {}, assert(io.popen(cmd))
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  table.sort(t)
  return t
end

describe("the rockspec", function()
  local env = {}
  local chunk = assert(loadfile("rockspec/pathkernel-scm-1.rockspec", "t", env))
  chunk()

  it("is format 3.0 for Lua 5.4 with LAPACKE and BLAS as external dependencies", function()
    assert.are.equal("3.0", env.rockspec_format)
    assert.are.same({ "lua >= 5.4, < 5.5" }, env.dependencies)
    assert.truthy(env.external_dependencies.LAPACKE)
    assert.truthy(env.external_dependencies.BLAS)
    assert.are.equal("builtin", env.build.type)
  end)

  it("links zlib (gzip reading, CRC-32) as an external dependency", function()
    assert.are.same({ header = "zlib.h", library = "z" }, env.external_dependencies.ZLIB)
    local found = false
    for _, l in ipairs(env.build.modules["pathkernel.core"].libraries) do found = found or l == "z" end
    assert.is_true(found)
  end)

  it("declares its tests: busted under lua5.4, offline (luarocks test)", function()
    -- test.type = "busted" would make LuaRocks fetch busted as a rock
    assert.are.equal("command", env.test.type)
    assert.truthy(env.test.command:find("lua5.4 /usr/bin/busted", 1, true))
    assert.truthy(env.test.command:find("make --no-print-directory all", 1, true))
  end)

  it("compiles every C source of the checkout but the optional MPI module's", function()
    local srcs = {}
    for _, s in ipairs(env.build.modules["pathkernel.core"].sources) do srcs[#srcs + 1] = s end
    table.sort(srcs)
    assert.are.same(ls("ls c/*.c c/lua/*.c | grep -v '^c/lua/mpi'"), srcs)
  end)

  it("maps every Lua file of lua/ to its module name", function()
    local files = {}
    for name, v in pairs(env.build.modules) do
      if type(v) == "string" then
        local expect = "lua/" .. name:gsub("%.", "/") .. ".lua"
        if name == "pathkernel" then expect = "lua/pathkernel/init.lua" end
        assert.are.equal(expect, v)
        files[#files + 1] = v
      end
    end
    table.sort(files)
    assert.are.same(ls("find lua -name '*.lua'"), files)
  end)
end)

describe("the module", function()
  it("exports only luaopen_pathkernel_core and pk_ functions", function()
    local syms = ls("nm -D --defined-only build/pathkernel/core.so | awk '$2 == \"T\" {print $3}'")
    assert.is_true(#syms > 10)
    for _, s in ipairs(syms) do
      assert.is_true(s == "luaopen_pathkernel_core" or s:match("^pk_") ~= nil, s)
    end
  end)

  it("links no MPI: only the optional pathkernel.mpi does (make mpi)", function()
    assert.are.same({}, ls("env -u LD_PRELOAD ldd build/pathkernel/core.so | grep -i 'libmpi\\|scalapack'"))
    assert.are.same({}, ls("grep -l 'mpi\\.h' c/*.c c/*.h c/lua/*.h"))
  end)

  it("has no Lua header in the C core", function()
    assert.are.same({}, ls("grep -l 'lua\\.h\\|lauxlib\\.h' c/*.c c/*.h | grep -v '^c/lua_'"))
  end)
end)

describe("the Makefile", function()
  local function phony()
    local text = assert(io.open("Makefile")):read("a"):gsub("\\\n", " ")
    local t = {}
    for line in text:gmatch("[^\n]+") do
      local names = line:match("^%.PHONY:(.*)")
      if names then for n in names:gmatch("%S+") do t[#t + 1] = n end end
    end
    table.sort(t)
    return t
  end

  it("lists every target in make help, and no other", function()
    local targets, listed = phony(), {}
    assert.is_true(#targets >= 18)
    for _, l in ipairs(ls("env -u LD_PRELOAD make -s --no-print-directory help")) do
      local name = l:match("^  (%S+)")
      if name then listed[#listed + 1] = name end
    end
    table.sort(listed)
    assert.are.same(targets, listed)
  end)
end)

describe("the C headers", function()
  it("compiles alone under C99 for compilers that are not GCC-compatible too", function()
    -- the kernel declarations sat inside the #else of the PK_API test, where
    -- they came before the types they use: any compiler without __GNUC__ failed
    local src = H.tmpname(".c")
    H.write_bytes(src, '#include "pk.h"\nint main(void) { return pk_status_name(PK_OK) == 0; }\n')
    for _, flags in ipairs({ "", "-U__GNUC__" }) do
      local out, rc = shell(string.format(
        "env -u LD_PRELOAD cc -std=c99 -Wall -Wextra -Wpedantic -Werror %s -Ic -fsyntax-only %s",
        flags, shq(src)))
      assert.are.equal(0, rc, out)
    end
    os.remove(src)
  end)

  it("each compile alone: a header includes what it needs", function()
    for _, h in ipairs(ls("ls c/pk_*.h")) do
      -- without the sanitizer build's preload (make check), as the public header's test
      local cmd = "printf '#include \"%s\"\\n' | env -u LD_PRELOAD cc -std=c99 -Wall -Wpedantic " ..
                  "-Werror -Ic -fsyntax-only -x c - 2>&1"
      local p = assert(io.popen(cmd:format(h:match("[^/]+$"))))
      local out = p:read("a")
      assert.is_true(p:close(), h .. ": " .. out)
    end
  end)
end)

describe("the Lua binding (c/lua/)", function()
  local function read(f)
    local h = assert(io.open(f))
    local s = h:read("a")
    h:close()
    return s
  end

  it("includes no header of the library but pk.h and its own aux.h", function()
    local files = ls("ls c/lua/*.c c/lua/*.h")
    assert.is_true(#files > 0)
    for _, f in ipairs(files) do
      for inc in read(f):gmatch('#%s*include%s*"([^"]+)"') do
        assert.is_true(inc == "pk.h" or inc == "aux.h", f .. " includes " .. inc)
      end
    end
  end)

  it("has one floor per type: no type file calls another, aux.c calls none", function()
    for _, f in ipairs(ls("ls c/lua/*.c")) do
      if f ~= "c/lua/init.c" then
        local s, own = read(f), f:match("c/lua/(%w+)%.c")
        for name in s:gmatch("pkL_(open_[%w_]+)") do
          assert.are.equal("open_" .. own, name, f .. " names pkL_" .. name)
        end
        for name in s:gmatch("pkL_(load_[%w_]+)") do
          assert.are.equal("load_" .. own, name, f .. " names pkL_" .. name)
        end
      end
    end
  end)
end)
