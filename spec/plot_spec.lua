-- Plots (pk.plot): pictures through gnuplot, PNG and SVG, several series,
-- log scales, palettes, heatmaps, image grids; the CSV written instead when
-- gnuplot is missing; and clear errors for bad input.
local H = require "helpers"
local pk = H.pk
local plot = pk.plot

local PNG_MAGIC = "\137PNG\r\n\26\n"

local dir = H.tmpname("-plots")
os.execute("mkdir -p '" .. dir .. "'")

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function lines(path)
  local t = {}
  for l in io.lines(path) do t[#t + 1] = l end
  return t
end

local function series(n, f)
  local x, y = {}, {}
  for i = 1, n do x[i] = i / n; y[i] = f(i / n) end
  return x, y
end

local has_gnuplot = plot.available()
local with_gnuplot = has_gnuplot and it or pending

describe("pk.plot with gnuplot", function()
  with_gnuplot("draws several series with a title, labels and a legend to SVG", function()
    local x, y1 = series(20, math.sin)
    local _, y2 = series(20, math.cos)
    local file, note = plot.line{ file = dir .. "/two.svg", title = "Two curves here", xlabel = "the x axis",
      ylabel = "the y axis", series = { { x = x, y = y1, label = "sine wave" },
                                        { x = x, y = y2, label = "cosine wave", style = "linespoints" } } }
    assert.are.equal(dir .. "/two.svg", file)
    assert.is_nil(note)
    local svg = H.read_bytes(file)
    assert.truthy(svg:find("<svg", 1, true))
    for _, text in ipairs{ "Two curves here", "the x axis", "the y axis", "sine wave", "cosine wave" } do
      assert.truthy(svg:find(text, 1, true), text)
    end
    assert.is_false(exists(dir .. "/two.csv"))
  end)

  with_gnuplot("writes PNG files for line, scatter, heatmap and image grids", function()
    local x, y = series(30, function(t) return t * t end)
    local v = {}
    for i = 1, 30 do v[i] = (i - 15) / 15 end
    local files = {
      plot.line{ file = dir .. "/line.png", x = x, y = y, title = "line" },
      plot.scatter{ file = dir .. "/scatter.png", title = "coloured", palette = "diverging", cblabel = "value",
                    series = { { x = x, y = y, value = v, label = "points" },
                               { x = x, y = y, style = "lines", label = "curve" } } },
      plot.heatmap{ file = dir .. "/heat.png", z = pk.randn(6, 9, 1), title = "heat", palette = "diverging" },
      plot.images{ file = dir .. "/grid.png", title = "grid", columns = 3,
                   images = { { data = pk.rand(16, 1, 1), title = "a" }, { data = pk.rand(4, 4, 2), title = "b" },
                              { data = { 1, 2, 3, 4, 5, 6 }, shape = { 2, 3 } } } },
    }
    for _, f in ipairs(files) do
      local bytes = H.read_bytes(f)
      assert.are.equal(PNG_MAGIC, bytes:sub(1, 8), f)
      assert.is_true(#bytes > 1000, f)
    end
  end)

  with_gnuplot("takes row and column matrices as data, and log axes with zeros in them", function()
    local x = pk.matrix{ 0.001, 0.01, 0.1, 1 }
    local y = pk.matrix{ { 1e-9, 0, 1e-3, 1 } }                        -- 1 x n
    local file = plot.line{ file = dir .. "/log.svg", series = { { x = x, y = y, label = "err" } },
                            logx = true, logy = true, title = "log axes" }
    assert.truthy(H.read_bytes(file):find("log axes", 1, true))
  end)

  with_gnuplot("keeps titles with quotes, backslashes and new lines intact", function()
    local title = [[say "hi" \ it's 50% & more]]
    local file = plot.line{ file = dir .. "/quote.svg", x = { 1, 2 }, y = { 1, 2 }, title = title,
                            xlabel = "first\nsecond" }
    local svg = H.read_bytes(file)
    assert.truthy(svg:find([[<text>say "hi" \ it's 50% &amp; more</text>]], 1, true), "title")
    -- the new line splits the label into two lines of text
    assert.truthy(svg:find("<text>first</text>", 1, true))
    assert.truthy(svg:find("<text>second</text>", 1, true))
  end)
end)

-- Every text that reaches gnuplot, and the output path, against the ways
-- out of a gnuplot string: backquotes (a shell command), system() and $(),
-- @macros, semicolons, both quotes, backslashes, newlines. An escape shows
-- as the marker file; the picture must show the text as given.
describe("pk.plot keeps user text inert", function()
  local function shq(v) return "'" .. tostring(v):gsub("'", "'\\''") .. "'" end
  local function ls(d)           -- names may hold newlines
    local p = assert(io.popen("find " .. shq(d) .. " -mindepth 1 -maxdepth 1 -printf '%f\\0'"))
    local t = {}
    for name in p:read("a"):gmatch("([^\0]+)\0") do t[#t + 1] = name end
    p:close()
    table.sort(t)
    return t
  end
  local function xml(s) return (s:gsub("&", "&amp;"):gsub("<", "&lt;")) end
  -- each line of text t drawn as one <text> element
  local function drawn(svg, t)
    for line in (t .. "\n"):gmatch("(.-)\n") do
      assert.truthy(svg:find("<text>" .. xml(line) .. "</text>", 1, true), "not drawn: " .. line)
    end
  end

  local idir, marker, attacks
  before_each(function()
    idir = H.tmpname("-inject")
    assert(os.execute("mkdir -p " .. shq(idir)))
    marker = idir .. "/PWNED"
    local touch = "touch " .. marker
    attacks = {
      "`" .. touch .. "`",
      'system("' .. touch .. '")',
      "$(" .. touch .. ")",
      "@mark and @@",
      'a; print system("' .. touch .. '"); set output "' .. idir .. '/other"',
      "' . system('" .. touch .. "') . '",
      '" . system("' .. touch .. '") . "',
      [[it's "quoted" '' and \"escaped\" \n \]],
      "first line\n`" .. touch .. "`\n'; @mark\n!" .. touch .. "\n# not a comment",
      "& <b> 50% ^2 _x {y} ~ é ∑",
    }
  end)
  after_each(function() os.execute("rm -rf " .. shq(idir)) end)

  with_gnuplot("in titles, axis labels, legends and colour-bar labels", function()
    for k, a in ipairs(attacks) do
      local file = plot.scatter{ file = idir .. "/s.svg", title = "T" .. a, xlabel = "X" .. a, ylabel = "Y" .. a,
        cblabel = "C" .. a, series = { { x = { 1, 2 }, y = { 1, 2 }, value = { 0, 1 }, label = "S" .. a },
                                       { x = { 1, 2 }, y = { 2, 1 }, style = "lines", label = "L" .. a } } }
      assert.are.same({ "s.svg" }, ls(idir), "attack " .. k)
      local svg = H.read_bytes(file)
      for _, t in ipairs{ "T", "X", "Y", "C", "S", "L" } do drawn(svg, t .. a) end
    end
    local all = table.concat(attacks, "\n")
    local file = plot.heatmap{ file = idir .. "/h.svg", z = { { 1, 2 }, { 3, 4 } }, title = "T" .. all,
                               xlabel = "X" .. all, ylabel = "Y" .. all, cblabel = "C" .. all }
    local svg = H.read_bytes(file)
    for _, t in ipairs{ "T", "X", "Y", "C" } do drawn(svg, t .. all) end
    local images = {}
    for k, a in ipairs(attacks) do images[k] = { data = { 0, 1, 1, 0 }, title = a } end
    file = plot.images{ file = idir .. "/i.svg", title = "T" .. all, images = images }
    svg = H.read_bytes(file)
    drawn(svg, "T" .. all)
    for _, a in ipairs(attacks) do drawn(svg, a) end
    assert.are.same({ "h.svg", "i.svg", "s.svg" }, ls(idir))
  end)

  with_gnuplot("in the font and the gnuplot command", function()
    local saved = plot.config{ font = "Sans`touch " .. marker .. "`,11" }
    local ok, file = pcall(plot.line, { file = idir .. "/f.png", x = { 1, 2 }, y = { 1, 2 } })
    plot.config(saved)
    assert.is_true(ok, file)
    assert.are.equal(PNG_MAGIC, H.read_bytes(file):sub(1, 8))
    saved = plot.config{ gnuplot = "gnuplot`touch " .. marker .. "`; touch " .. marker }
    local csv, note
    ok, csv, note = pcall(plot.line, { file = idir .. "/g.png", x = { 1, 2 }, y = { 1, 2 } })
    plot.config(saved)
    assert.is_true(ok, csv)
    assert.truthy(note:find("is not available", 1, true), note)
    assert.are.same({ "f.png", "g.csv" }, ls(idir))
  end)

  with_gnuplot("in the output path", function()
    -- run in a child whose working folder is idir, so that a command run by
    -- a relative name leaves its mark there
    local names = { "`touch PWNED`.svg", "$(touch PWNED).svg", "|touch PWNED.svg", "a'b\"c; @m \\.svg",
                    "new\nline.svg", "-dash.svg", "~tilde.svg" }
    local function absolute(paths)
      local cwd = assert(io.popen("pwd")):read("l")
      return (paths:gsub("[^;]+", function(p) return p:sub(1, 1) == "/" and p or (cwd .. "/" .. p) end))
    end
    local code = { 'local pk = require "pathkernel"' }
    for _, n in ipairs(names) do
      code[#code + 1] = ("print(pcall(pk.plot.line, { file = %q, x = { 1, 2 }, y = { 1, 2 }, title = 'path' }))"):format(n)
    end
    local script = H.tmpname(".lua")
    H.write_bytes(script, table.concat(code, "\n"))
    local p = assert(io.popen(("cd %s && LUA_PATH=%s LUA_CPATH=%s lua5.4 %s 2>&1"):format(shq(idir),
      shq(absolute(package.path)), shq(absolute(package.cpath)), shq(script))))
    local out = p:read("a")
    p:close()
    os.remove(script)
    table.sort(names)
    assert.are.same(names, ls(idir), out)
    for _, n in ipairs(names) do
      assert.truthy(H.read_bytes(idir .. "/" .. n):find("</svg>%s*$"), n)
    end
  end)

  it("refuses NUL, carriage return and other control characters, naming the option", function()
    for _, bad in ipairs{ "\0", "\r", "\1", "\27", "\127", "\t" } do
      local code = ("\\%d"):format(bad:byte())
      for _, key in ipairs{ "title", "xlabel", "ylabel", "label" } do
        local o = { file = idir .. "/r.svg", x = { 1, 2 }, y = { 1, 2 }, [key] = "ab" .. bad .. "c" }
        local what = key == "label" and "series 1 label" or ("option '" .. key .. "'")
        H.raises(("plot.line: %s holds the control character %s at byte 3"):format(what, code), plot.line, o)
      end
      H.raises(("plot.scatter: option 'cblabel' holds the control character %s at byte 1"):format(code),
               plot.scatter, { file = idir .. "/r.svg", x = { 1 }, y = { 1 }, value = { 1 }, cblabel = bad })
      for _, key in ipairs{ "title", "xlabel", "ylabel", "cblabel" } do
        H.raises(("plot.heatmap: option '%s' holds the control character %s"):format(key, code), plot.heatmap,
                 { file = idir .. "/r.svg", z = { { 1 } }, [key] = bad })
      end
      H.raises(("plot.images: option 'title' holds the control character %s"):format(code), plot.images,
               { file = idir .. "/r.svg", title = bad, images = { { data = { 1 } } } })
      H.raises(("plot.images: image 2 title holds the control character %s"):format(code), plot.images,
               { file = idir .. "/r.svg", images = { { data = { 1 } }, { data = { 1 }, title = bad } } })
      H.raises(("plot.config: option 'font' holds the control character %s"):format(code), plot.config,
               { font = "Sans" .. bad })
    end
    H.raises("plot.line: option 'file': the file name contains a NUL byte", plot.line,
             { file = idir .. "/a\0b.svg", x = { 1 }, y = { 1 } })
    H.raises("plot.line: series 1 color must be \"#rrggbb\"", plot.line,
             { file = idir .. "/r.svg", series = { { x = { 1 }, y = { 1 }, color = "#ff0000' lw 9" } } })
    H.raises("plot.line: series 1 label must be a string, got table", plot.line,
             { file = idir .. "/r.svg", series = { { x = { 1 }, y = { 1 }, label = {} } } })
    H.raises("plot.line: series 1 width must be a number in (0, 1000)", plot.line,
             { file = idir .. "/r.svg", series = { { x = { 1 }, y = { 1 }, width = "2; system('x')" } } })
    assert.are.same({}, ls(idir))
  end)
end)

describe("pk.plot without gnuplot", function()
  local saved
  before_each(function() saved = plot.config{ gnuplot = "/nonexistent/gnuplot" } end)
  after_each(function() plot.config(saved) end)

  it("writes the data as CSV next to the requested file and says so", function()
    local file, note = plot.line{ file = dir .. "/fallback.png", title = "t",
      series = { { x = { 1, 2, 3 }, y = { 0.1, 1 / 3, 2 }, label = "first" },
                 { x = { 4 }, y = { -5 }, label = "with, comma" } } }
    assert.are.equal(dir .. "/fallback.csv", file)
    assert.truthy(note:find("gnuplot (/nonexistent/gnuplot) is not available", 1, true), note)
    assert.truthy(note:find(dir .. "/fallback.csv", 1, true))
    assert.is_false(exists(dir .. "/fallback.png"))
    local l = lines(file)
    assert.are.same({ "series,x,y,value", "first,1,0.10000000000000001,", "first,2,0.33333333333333331,",
                      "first,3,2,", '"with, comma",4,-5,' }, l)
    -- 17 significant digits read back exactly
    assert.are.equal(1 / 3, tonumber(l[3]:match("^first,2,([^,]+),")))
  end)

  it("writes heatmaps, scatter values and image grids as long tables", function()
    local f1 = plot.heatmap{ file = dir .. "/h.svg", z = { { 1, 2, 3 }, { 4, 5, 6 } } }
    assert.are.same({ "row,col,value", "1,1,1", "1,2,2", "1,3,3", "2,1,4", "2,2,5", "2,3,6" }, lines(f1))
    local f2 = plot.scatter{ file = dir .. "/s.png", x = { 1, 2 }, y = { 3, 4 }, value = { -1, 0 / 0 } }
    assert.are.same({ "series,x,y,value", "1,1,3,-1", "1,2,4,NaN" }, lines(f2))
    local f3 = plot.images{ file = dir .. "/i.png", images = { { data = { 1, 2, 3, 4 }, title = "one" } } }
    assert.are.same({ "image,title,row,col,value", "1,one,1,1,1", "1,one,1,2,2", "1,one,2,1,3", "1,one,2,2,4" },
                    lines(f3))
  end)

  it("reports that gnuplot is unavailable", function()
    local ok, why = plot.available()
    assert.is_false(ok)
    assert.truthy(why:find("/nonexistent/gnuplot", 1, true))
  end)
end)

-- A picture is written whole or not at all: a failed plot returns nil and
-- a message and leaves the file that was there as it was, with no
-- temporary beside it. gnuplot is played by small shell scripts that draw
-- what each case needs into the file named by the script's 'set output'.
describe("pk.plot writes pictures atomically", function()
  local function shq(v) return "'" .. tostring(v):gsub("'", "'\\''") .. "'" end
  local function ls(d)
    local t, p = {}, assert(io.popen("ls -A " .. shq(d)))
    for l in p:lines() do t[#t + 1] = l end
    p:close()
    table.sort(t)
    return t
  end
  local OUT = [[OUT=$(sed -n "s/^set output '\(.*\)'$/\1/p" "$1")]]
  local PNG_TAIL = "\0\0\0\0IEND\174\66\96\130"
  local adir, old, saved, fakes
  before_each(function()
    adir = H.tmpname("-atomic")
    assert(os.execute("mkdir -p " .. shq(adir)))
    old = "the picture that was here\n"
    H.write_bytes(adir .. "/p.png", old)
    H.write_bytes(adir .. "/p.svg", old)
    saved, fakes = plot.config(), {}
  end)
  after_each(function()
    plot.config(saved)
    for _, f in ipairs(fakes) do os.remove(f) end
    os.execute("rm -rf " .. shq(adir))
  end)
  local function fake_gnuplot(body)
    local fake = H.tmpname("-gnuplot")
    H.write_bytes(fake, "#!/bin/sh\n" .. OUT .. "\n" .. body .. "\n")
    assert(os.execute("chmod +x " .. shq(fake)))
    fakes[#fakes + 1] = fake
    plot.config{ gnuplot = fake }
    return fake
  end
  -- a file that passes as a whole PNG: signature, padding, IEND chunk
  local function png_file(pad)
    local f = H.tmpname(".png")
    H.write_bytes(f, PNG_MAGIC .. ("x"):rep(pad) .. PNG_TAIL)
    fakes[#fakes + 1] = f
    return f
  end
  local function unchanged()
    assert.are.equal(old, H.read_bytes(adir .. "/p.png"))
    assert.are.equal(old, H.read_bytes(adir .. "/p.svg"))
    assert.are.same({ "p.png", "p.svg" }, ls(adir))
  end
  local function fails(pattern, file)
    local got, msg = plot.line{ file = adir .. "/" .. (file or "p.png"), x = { 1, 2 }, y = { 1, 2 } }
    assert.is_nil(got)
    assert.truthy(msg:find(pattern, 1, true), msg)
    return msg
  end

  it("keeps the old picture when gnuplot fails, and returns its message", function()
    fake_gnuplot([[printf '\211PNG' > "$OUT"; echo 'line 3: undefined variable: boom' >&2; exit 1]])
    local msg = fails("plot.line: gnuplot failed drawing '" .. adir .. "/p.png' (exit 1):")
    assert.truthy(msg:find("undefined variable: boom", 1, true), msg)
    unchanged()
  end)

  it("keeps the old picture when gnuplot draws nothing or stops short", function()
    fake_gnuplot("exit 0")
    fails("plot.line: gnuplot drew nothing for '" .. adir .. "/p.png'")
    unchanged()
    fake_gnuplot([[head -c 3000 ]] .. shq(png_file(5000)) .. [[ > "$OUT"]])
    fails("plot.line: gnuplot drew an incomplete PNG for '" .. adir .. "/p.png' (3000 bytes")
    unchanged()
    fake_gnuplot([[printf '<?xml version="1.0"?>\n<svg width="8">\n<g>' > "$OUT"]])
    fails("plot.line: gnuplot drew an incomplete SVG for '" .. adir .. "/p.svg'", "p.svg")
    unchanged()
  end)

  it("replaces the old picture when gnuplot succeeds", function()
    local good = png_file(100)
    fake_gnuplot("cat " .. shq(good) .. [[ > "$OUT"]])
    assert.are.equal(adir .. "/p.png", plot.line{ file = adir .. "/p.png", x = { 1, 2 }, y = { 1, 2 } })
    assert.are.equal(H.read_bytes(good), H.read_bytes(adir .. "/p.png"))
    fake_gnuplot([[printf '<svg width="8">\n</svg>\n' > "$OUT"]])
    assert.are.equal(adir .. "/p.svg", plot.line{ file = adir .. "/p.svg", x = { 1, 2 }, y = { 1, 2 } })
    assert.are.equal('<svg width="8">\n</svg>\n', H.read_bytes(adir .. "/p.svg"))
    assert.are.same({ "p.png", "p.svg" }, ls(adir))
  end)

  -- Root ignores permissions, so a full disk is a file size limit in a
  -- child: with SIGXFSZ ignored, write() answers EFBIG part way through.
  local function under_limit(blocks, code)
    local script = H.tmpname(".lua")
    H.write_bytes(script, 'local pk = require "pathkernel"\n' .. code)
    local p = assert(io.popen(("trap '' XFSZ; ulimit -f %d; LUA_PATH=%s LUA_CPATH=%s lua5.4 %s 2>&1")
      :format(blocks, shq(package.path), shq(package.cpath), shq(script))))
    local out = p:read("a")
    p:close()
    os.remove(script)
    return out
  end

  it("keeps the old picture when the disk fills while it is written", function()
    -- gnuplot links a whole 200 KB picture into place without writing it;
    -- writing its copy beside the target runs into the limit
    local fake = fake_gnuplot("ln -f " .. shq(png_file(200000)) .. [[ "$OUT"]])
    local out = under_limit(64, ("pk.plot.config{ gnuplot = %q }\nprint(pk.plot.line{ file = %q, x = { 1, 2 }, y = { 1, 2 } })")
      :format(fake, adir .. "/p.png"))
    assert.truthy(out:find("nil\tplot.line: cannot write '" .. adir .. "/p.png': File too large", 1, true), out)
    unchanged()
  end)

  with_gnuplot("keeps the old picture when the disk fills while gnuplot draws", function()
    for _, ext in ipairs{ "png", "svg" } do
      local out = under_limit(8, ("print(pk.plot.line{ file = %q, x = { 1, 2, 3 }, y = { 1, 3, 2 }, title = 't' })")
        :format(adir .. "/p." .. ext))
      assert.truthy(out:find("nil\tplot.line: gnuplot drew an incomplete " .. ext:upper() .. " for '"
                             .. adir .. "/p." .. ext .. "'", 1, true), out)
      unchanged()
    end
  end)

  with_gnuplot("replaces the old picture with gnuplot's", function()
    assert.are.equal(adir .. "/p.png", plot.line{ file = adir .. "/p.png", x = { 1, 2 }, y = { 1, 2 } })
    local png = H.read_bytes(adir .. "/p.png")
    assert.are.equal(PNG_MAGIC, png:sub(1, 8))
    assert.are.equal(PNG_TAIL, png:sub(-12))
    assert.are.equal(adir .. "/p.svg", plot.line{ file = adir .. "/p.svg", x = { 1, 2 }, y = { 1, 2 } })
    assert.truthy(H.read_bytes(adir .. "/p.svg"):find("</svg>%s*$"))
    assert.are.same({ "p.png", "p.svg" }, ls(adir))
  end)

  it("returns nil and a message naming the path once for a missing folder", function()
    for _, gnuplot in ipairs{ false, true } do
      if gnuplot then fake_gnuplot("cat " .. shq(png_file(10)) .. [[ > "$OUT"]])
      else plot.config{ gnuplot = "/nonexistent/gnuplot" } end
      local file = adir .. "/missing/x.png"
      local target = gnuplot and file or (adir .. "/missing/x.csv")
      local got, msg = plot.line{ file = file, x = { 1, 2 }, y = { 1, 2 } }
      assert.is_nil(got)
      assert.are.equal(("plot.line: cannot write '%s': No such file or directory"):format(target), msg)
      H.write_bytes(adir .. "/f", "a file, not a folder")
      got, msg = plot.heatmap{ file = adir .. "/f/x.svg", z = { { 1 } } }
      assert.is_nil(got)
      assert.truthy(msg:find("^plot.heatmap: cannot write '" .. adir:gsub("%p", "%%%0") .. "/f/x%.%a+': Not a directory$"), msg)
      os.remove(adir .. "/f")
      unchanged()
    end
  end)
end)

describe("pk.plot refuses bad input", function()
  local ok_x, ok_y = { 1, 2, 3 }, { 4, 5, 6 }
  it("with clear errors", function()
    H.raises("plot.line: series 1 has 3 x values and 2 y values", plot.line,
             { file = dir .. "/e.png", x = ok_x, y = { 1, 2 } })
    H.raises("plot.line: series 2 ('b') has 1 x values and 0 y values", plot.line,
             { file = dir .. "/e.png", series = { { x = ok_x, y = ok_y }, { x = { 1 }, y = {}, label = "b" } } })
    H.raises("plot.line: series 1 has no points", plot.line, { file = dir .. "/e.png", x = {}, y = {} })
    H.raises("plot.line: 'series' must be a non-empty list", plot.line, { file = dir .. "/e.png", series = {} })
    H.raises("plot.scatter: series 1 has 3 points and 2 values", plot.scatter,
             { file = dir .. "/e.png", x = ok_x, y = ok_y, value = { 1, 2 } })
    H.raises("plot.line: series 1 y[2] is string, not a number", plot.line,
             { file = dir .. "/e.png", x = ok_x, y = { 1, "2", 3 } })
    H.raises("must be a vector (a n x 1 or 1 x n matrix), got 2x2", plot.line,
             { file = dir .. "/e.png", x = pk.zeros(2, 2), y = ok_y })
    H.raises("cannot tell the format of 'x.jpg': name it .png or .svg", plot.line,
             { file = "x.jpg", x = ok_x, y = ok_y })
    H.raises("option 'file' (the picture to write, .png or .svg) is required", plot.line, { x = ok_x, y = ok_y })
    H.raises("plot.line: unknown option 'colour'", plot.line, { file = dir .. "/e.png", x = ok_x, y = ok_y, colour = 1 })
    H.raises("unknown style 'bars'", plot.line, { file = dir .. "/e.png", x = ok_x, y = ok_y, style = "bars" })
    H.raises("unknown legend position 'middle'", plot.line, { file = dir .. "/e.png", x = ok_x, y = ok_y, legend = "middle" })
    H.raises("unknown palette 'jet'", plot.scatter, { file = dir .. "/e.png", x = ok_x, y = ok_y, value = ok_x, palette = "jet" })
    H.raises("xrange must be {low, high} with low < high", plot.line,
             { file = dir .. "/e.png", x = ok_x, y = ok_y, xrange = { 2, 1 } })
    H.raises("plot.heatmap: z is ragged: row 2 has 1 values, row 1 has 2", plot.heatmap,
             { file = dir .. "/e.png", z = { { 1, 2 }, { 3 } } })
    H.raises("plot.heatmap: z is empty", plot.heatmap, { file = dir .. "/e.png", z = {} })
    H.raises("plot.heatmap: z is empty", plot.heatmap, { file = dir .. "/e.png", z = pk.zeros(3, 0) })
    H.raises("plot.images: image 1 has 5 values, not a square", plot.images,
             { file = dir .. "/e.png", images = { { data = { 1, 2, 3, 4, 5 } } } })
    H.raises("plot.images: image 2 has 4 values, its shape 3x3 needs 9", plot.images,
             { file = dir .. "/e.png", shape = { 3, 3 }, images = { { data = pk.zeros(9, 1) }, { data = { 1, 2, 3, 4 } } } })
    H.raises("plot.images: 'images' must be a non-empty list", plot.images, { file = dir .. "/e.png", images = {} })
    H.raises("plot.config: width must be an integer number of pixels", plot.config, { width = 1.5 })
    H.raises("plot.config: unknown option 'terminal'", plot.config, { terminal = "x11" })
    H.raises("plot.folder: cannot write into '/proc/pathkernel-x'", plot.folder, "/proc/pathkernel-x")
  end)

  it("blames the caller's line", function()
    local err = H.raises("series 1 has no points", plot.line, { file = dir .. "/e.png", x = {}, y = {} })
    assert.is_nil(err:find("plot.lua", 1, true), err)
    local ok, e = pcall(function() plot.line{ file = dir .. "/e.png", x = {}, y = {} } end)
    assert.is_false(ok)
    assert.truthy(e:find("plot_spec.lua:%d+: plot.line"), e)
  end)

  it("leaves no empty picture behind when it fails", function()
    pcall(plot.line, { file = dir .. "/never.png", x = { 1 }, y = {} })
    assert.is_false(exists(dir .. "/never.png"))
  end)
end)

describe("pk.plot.folder", function()
  it("creates nested folders and returns the path", function()
    local d = dir .. "/a/b/c"
    assert.are.equal(d, plot.folder(d))
    local f = assert(io.open(d .. "/x", "w"))
    f:close()
    os.remove(d .. "/x")
  end)
end)

teardown(function() os.execute("rm -rf '" .. dir .. "'") end)
