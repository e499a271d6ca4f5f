-- pathkernel.plot: line, scatter, heatmap and image-grid pictures drawn by
-- gnuplot (one script with the data inline, run through io.popen) into
-- PNG or SVG files. Without gnuplot the data goes to a CSV file next to the
-- requested picture and the call says so in its second return value, so an
-- experiment never dies for want of a plotting program.
local M = {}

local cfg = {
  gnuplot = os.getenv("PATHKERNEL_GNUPLOT") or "gnuplot",   -- command or path
  width = 800, height = 560,
  font = "Sans,11",
}

local has_cmd = {}        -- command -> true | false, checked once
local png_term = {}       -- command -> "pngcairo" | "png"

-- ---- small helpers ---------------------------------------------------------

-- Errors of the caller's making travel as { plot_error = message } up to the
-- public entry points, which raise them at the caller's line.
local function fail(fmt, ...)
  error({ plot_error = fmt:format(...) }, 0)
end

local function entry(impl)
  return function(...)
    local r = table.pack(pcall(impl, ...))
    if r[1] then return table.unpack(r, 2, r.n) end
    local e = r[2]
    if type(e) == "table" and e.plot_error then error(e.plot_error, 2) end
    error(e, 0)
  end
end

local function shq(s)     -- a word for /bin/sh
  -- the shell would see the word cut at a NUL byte (and its quote open)
  if tostring(s):find("\0", 1, true) then fail("%s", "a path or command contains a NUL byte") end
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- gnuplot as a shell command. A runtime preloaded into this process (a
-- sanitizer, a profiler) has no business in gnuplot: LD_PRELOAD is cleared.
local function gnuplot_cmd(cmd)
  return "LD_PRELOAD= " .. shq(cmd)
end

-- Text for gnuplot. Inside single quotes gnuplot 5.4 expands nothing: no
-- backslash escapes, no backquoted shell commands, no @macros. Quotes and
-- newlines are the two bytes that cannot sit there: a quote ends the string
-- (gnuplot's doubled '' works only after another character), a newline ends
-- the command and the rest of the line would run as gnuplot commands. So
-- the text is cut at each of them into single-quoted runs joined by
-- gnuplot's string concatenation with the constants "'" and "\n" (a line
-- break). A NUL would cut the line short and the other control characters
-- are not text (an SVG holding one is not valid XML): those are refused.
local function gtext(fn, what, s)
  s = tostring(s)
  local at = s:find("[\0-\9\11-\31\127]")
  if at then
    fail("%s: %s holds the control character \\%d at byte %d (text may hold any byte but NUL, "
         .. "carriage return and the other control characters; a newline breaks the line)",
         fn, what, s:byte(at), at)
  end
  local parts = {}
  for run, sep in (s .. "\n"):gmatch("([^'\n]*)(['\n])") do
    if run ~= "" then parts[#parts + 1] = "'" .. run .. "'" end
    parts[#parts + 1] = sep == "'" and [["'"]] or [["\n"]]
  end
  parts[#parts] = nil                     -- the newline added above
  if #parts == 0 then return "''" end
  return table.concat(parts, ".")
end

-- a colour is "#rrggbb", "#aarrggbb" or a gnuplot colour name
local function colour(fn, what, c)
  if type(c) ~= "string" or not (c:match("^#%x%x%x%x%x%x$") or c:match("^#%x%x%x%x%x%x%x%x$")
                                 or c:match("^%a[%w%-]*$")) then
    fail("%s: %s must be \"#rrggbb\", \"#aarrggbb\" or a colour name like \"dark-red\"", fn, what)
  end
  return "'" .. c .. "'"
end

local function num(v)     -- a number as gnuplot reads it back exactly
  if v ~= v or v == math.huge or v == -math.huge then return "NaN" end
  return ("%.17g"):format(v)
end

local function is_matrix(v)
  local mt = getmetatable(v)
  return type(mt) == "table" and mt.__name == "pathkernel.Matrix"
end

-- a list of numbers from a Lua array or a row/column Matrix
local function vector(fn, what, v)
  if is_matrix(v) then
    local r, c = v:shape()
    if r ~= 1 and c ~= 1 then
      fail("%s: %s must be a vector (a n x 1 or 1 x n matrix), got %dx%d", fn, what, r, c)
    end
    local t, rows = {}, v:totable()
    if c == 1 then for i = 1, r do t[i] = rows[i][1] end else t = rows[1] end
    return t
  end
  if type(v) ~= "table" then
    fail("%s: %s must be a table of numbers or a matrix, got %s", fn, what, type(v))
  end
  local n = #v
  for i = 1, n do
    if type(v[i]) ~= "number" then
      fail("%s: %s[%d] is %s, not a number", fn, what, i, type(v[i]))
    end
  end
  return v
end

-- a table of rows from a Matrix or a table of rows, rectangular, non-empty
local function grid(fn, what, z)
  local rows
  if is_matrix(z) then rows = z:totable()
  elseif type(z) == "table" then rows = z
  else fail("%s: %s must be a matrix or a table of rows, got %s", fn, what, type(z)) end
  local nr = #rows
  if nr == 0 then fail("%s: %s is empty", fn, what) end
  local nc
  for i = 1, nr do
    local r = rows[i]
    if type(r) ~= "table" then fail("%s: %s row %d is %s, not a table", fn, what, i, type(r)) end
    nc = nc or #r
    if #r ~= nc then
      fail("%s: %s is ragged: row %d has %d values, row 1 has %d", fn, what, i, #r, nc)
    end
    for j = 1, nc do
      if type(r[j]) ~= "number" then
        fail("%s: %s[%d][%d] is %s, not a number", fn, what, i, j, type(r[j]))
      end
    end
  end
  if nc == 0 then fail("%s: %s is empty", fn, what) end
  return rows, nr, nc
end

local function check_keys(fn, t, valid)
  for k in pairs(t) do
    if not valid[k] then
      local names = {}
      for n in pairs(valid) do names[#names + 1] = n end
      table.sort(names)
      fail("%s: unknown option '%s' (valid options: %s)", fn, tostring(k), table.concat(names, ", "))
    end
  end
end

local function set_of(list)
  local s = {}
  for _, k in ipairs(list) do s[k] = true end
  return s
end

-- the format from the file name, and a check that the file can be written
local function target(fn, file)
  if type(file) ~= "string" or file == "" then
    fail("%s: option 'file' (the picture to write, .png or .svg) is required", fn)
  end
  -- io.open would cut the name at a NUL and write another file
  if file:find("\0", 1, true) then fail("%s: option 'file': the file name contains a NUL byte", fn) end
  local ext = file:match("%.([%a]+)$")
  ext = ext and ext:lower()
  if ext ~= "png" and ext ~= "svg" then
    fail("%s: cannot tell the format of '%s': name it .png or .svg", fn, file)
  end
  return ext
end

-- a fresh temporary file (created empty by mkstemp), or nil and why
local function scratch(fn)
  local ok, name = pcall(os.tmpname)
  if ok then return name end
  return nil, ("%s: cannot create a temporary file: %s"):format(fn, tostring(name))
end

-- A file is written through a temporary file beside it, renamed over it
-- once complete, so that a failure part way (a full disk) leaves the old
-- file as it was. begin() opens the temporary (`tag` makes its name unique)
-- before any long work, so an unwritable folder is reported at once;
-- finish() writes and renames. Both answer nil and why on failure.
local function begin(fn, path, tag)
  local tmp = path .. ".tmp-" .. tag
  local f, err = io.open(tmp, "wb")
  if f then return { f = f, tmp = tmp, path = path } end
  -- io.open's message starts with the name it was given: say the path once
  if err:sub(1, #tmp + 2) == tmp .. ": " then err = err:sub(#tmp + 3) end
  return nil, ("%s: cannot write '%s': %s"):format(fn, path, err)
end

local function abandon(w)
  w.f:close()
  os.remove(w.tmp)
end

local function finish(fn, w, bytes)
  local okw, err = w.f:write(bytes)
  local okc, cerr = w.f:close()
  if okw and okc then
    local okr, rerr = os.rename(w.tmp, w.path)
    if okr then return w.path end
    err = rerr
  end
  os.remove(w.tmp)
  return nil, ("%s: cannot write '%s': %s"):format(fn, w.path, tostring(err or cerr))
end

local function csv_field(s)
  s = tostring(s)
  if s:find('[,"\r\n]') then s = '"' .. s:gsub('"', '""') .. '"' end
  return s
end

-- ---- gnuplot ----------------------------------------------------------------

local function gnuplot_found(cmd)
  if has_cmd[cmd] == nil then
    local ok = os.execute("command -v " .. shq(cmd) .. " >/dev/null 2>&1")
    has_cmd[cmd] = ok == true
  end
  return has_cmd[cmd]
end

local function terminal(cmd, ext, w, h)
  local size = ("size %d,%d"):format(w, h)
  local font = gtext("plot.config", "option 'font'", cfg.font)
  if ext == "svg" then
    return ("set terminal svg %s noenhanced font %s background rgb 'white'"):format(size, font)
  end
  if png_term[cmd] == nil then
    local ok = os.execute(gnuplot_cmd(cmd) .. " -e 'set terminal pngcairo' >/dev/null 2>&1")
    png_term[cmd] = ok == true and "pngcairo" or "png"
  end
  if png_term[cmd] == "pngcairo" then
    return ("set terminal pngcairo %s noenhanced font %s background rgb 'white'"):format(size, font)
  end
  return ("set terminal png %s noenhanced background rgb 'white'"):format(size)
end

-- A picture is whole when it ends as its format ends: PNG with the IEND
-- chunk, SVG with its closing tag. A full disk or a killed gnuplot leaves a
-- file that starts right and stops short.
local PNG_HEAD, PNG_TAIL = "\137PNG\r\n\26\n", "\0\0\0\0IEND\174\66\96\130"
local function whole(ext, b)
  if ext == "png" then return b:sub(1, 8) == PNG_HEAD and b:sub(-12) == PNG_TAIL end
  return b:find("<svg", 1, true) ~= nil and b:find("</svg>%s*$", math.max(1, #b - 64)) ~= nil
end

-- Run gnuplot on a script that draws into `out`. Answers the picture's
-- bytes; false when gnuplot cannot be started; nil and why when it fails.
-- The script goes through a temporary file rather than a pipe to gnuplot's
-- input: a gnuplot that stops early at an error must not leave us writing
-- into a closed pipe (SIGPIPE would end the whole process).
local function run(fn, file, ext, script, out)
  local sfile, why = scratch(fn)
  if not sfile then return nil, why end
  local f, err = io.open(sfile, "wb")
  if f then
    local okw, werr = f:write(script)
    local okc, cerr = f:close()
    err = not okw and werr or not okc and cerr or nil
  end
  if err then
    os.remove(sfile)
    return nil, ("%s: cannot write the temporary gnuplot script: %s"):format(fn, err)
  end
  local p = io.popen(gnuplot_cmd(cfg.gnuplot) .. " " .. shq(sfile) .. " 2>&1", "r")
  if not p then os.remove(sfile); return false end
  local msg = p:read("a") or ""
  local _, how, code = p:close()
  os.remove(sfile)
  if how == "exit" and code == 127 then return false end  -- the shell found no gnuplot
  local o = io.open(out, "rb")
  local bytes = o and o:read("a") or ""
  if o then o:close() end
  if how ~= "exit" or code ~= 0 then
    return nil, ("%s: gnuplot failed drawing '%s' (%s %s):\n%s"):format(fn, file, how, tostring(code), msg)
  end
  if #bytes == 0 then return nil, ("%s: gnuplot drew nothing for '%s':\n%s"):format(fn, file, msg) end
  if not whole(ext, bytes) then
    return nil, ("%s: gnuplot drew an incomplete %s for '%s' (%d bytes; a full disk?):\n%s")
                :format(fn, ext:upper(), file, #bytes, msg)
  end
  return bytes
end

-- Draw with gnuplot, or write the CSV rows when gnuplot is missing. Returns
-- the file written and, for the fallback, a message; nil and why when the
-- picture cannot be drawn or written (the file that was there stays). gnuplot
-- draws into a temporary file of our naming, so the user's path never
-- reaches it (an output name starting with '|' would run as a shell command).
local function render(fn, file, ext, body, csv_header, csv_rows, w, h)
  if gnuplot_found(cfg.gnuplot) then
    local out, why = scratch(fn)
    if not out then return nil, why end
    local script = table.concat({
      terminal(cfg.gnuplot, ext, w or cfg.width, h or cfg.height),
      "set output " .. gtext(fn, "the temporary file", out),
      "set encoding utf8",
      body,
      "unset output", "" }, "\n")
    local pic
    pic, why = begin(fn, file, out:match("[^/]*$"))
    if not pic then os.remove(out); return nil, why end
    local bytes, err = run(fn, file, ext, script, out)
    os.remove(out)
    if bytes then return finish(fn, pic, bytes) end
    abandon(pic)
    if bytes == nil then return nil, err end
  end
  local csv = file:gsub("%.[%a]+$", "") .. ".csv"
  local lines = { csv_header }
  for _, r in ipairs(csv_rows) do
    for j = 1, #r do r[j] = type(r[j]) == "number" and num(r[j]) or csv_field(r[j]) end
    lines[#lines + 1] = table.concat(r, ",")
  end
  lines[#lines + 1] = ""
  local tag, why = scratch(fn)
  if not tag then return nil, why end
  os.remove(tag)
  local cw
  cw, why = begin(fn, csv, tag:match("[^/]*$"))
  if not cw then return nil, why end
  local ok, err = finish(fn, cw, table.concat(lines, "\n"))
  if not ok then return nil, err end
  return csv, ("%s: gnuplot (%s) is not available, so the data of '%s' was written to '%s' "
               .. "(install gnuplot-nox to get the picture)"):format(fn, cfg.gnuplot, file, csv)
end

-- ---- palettes ------------------------------------------------------------------

local palettes = {
  viridis = "set palette defined (0 '#440154', 0.25 '#3b528b', 0.5 '#21918c', 0.75 '#5ec962', 1 '#fde725')",
  diverging = "set palette defined (-1 '#2166ac', -0.5 '#92c5de', 0 '#e8e8e8', 0.5 '#f4a582', 1 '#b2182b')",
  gray = "set palette defined (0 'black', 1 'white')",
  gray_r = "set palette defined (0 'white', 1 'black')",
}

local function palette(fn, name)
  name = name or "viridis"
  local p = palettes[name]
  if not p then
    fail("%s: unknown palette '%s' (valid: diverging, gray, gray_r, viridis)", fn, tostring(name))
  end
  return p, name
end

local function range(fn, what, r)
  if r == nil then return nil end
  if type(r) ~= "table" or type(r[1]) ~= "number" or type(r[2]) ~= "number" or not (r[1] < r[2]) then
    fail("%s: %s must be {low, high} with low < high", fn, what)
  end
  return ("[%s:%s]"):format(num(r[1]), num(r[2]))
end

-- a line width or point size: a positive number, written back exactly
local function positive(fn, what, v)
  if type(v) ~= "number" or not (v > 0 and v < 1000) then
    fail("%s: %s must be a number in (0, 1000)", fn, what)
  end
  return num(v)
end

-- a text option, quoted for gnuplot
local function opt_text(fn, o, key)
  local v = o[key]
  if type(v) ~= "string" and type(v) ~= "number" then
    fail("%s: option '%s' must be a string, got %s", fn, key, type(v))
  end
  return gtext(fn, ("option '%s'"):format(key), v)
end

-- ---- line and scatter ----------------------------------------------------------

local XY_KEYS = set_of{ "file", "title", "xlabel", "ylabel", "logx", "logy", "legend", "series",
                        "x", "y", "label", "value", "xrange", "yrange", "cbrange", "cblabel",
                        "palette", "style", "width", "height" }
local SERIES_KEYS = set_of{ "x", "y", "label", "style", "value", "color", "width", "size", "point" }
local STYLES = set_of{ "lines", "points", "linespoints" }
local LEGENDS = { ["top left"] = "top left", ["top right"] = "top right",
                  ["bottom left"] = "bottom left", ["bottom right"] = "bottom right",
                  outside = "outside right top", below = "below" }

local function xy(fn, o, default_style)
  if type(o) ~= "table" then fail("%s: expected an option table, got %s", fn, type(o)) end
  check_keys(fn, o, XY_KEYS)
  local ext = target(fn, o.file)
  local series = o.series
  if series == nil then
    if o.x == nil and o.y == nil then
      fail("%s: give the data as series = { {x = , y = }, ... } or as x = , y =", fn)
    end
    series = { { x = o.x, y = o.y, label = o.label, value = o.value, style = o.style } }
  elseif o.x ~= nil or o.y ~= nil then
    fail("%s: give series or x and y, not both", fn)
  end
  if type(series) ~= "table" or #series == 0 then
    fail("%s: 'series' must be a non-empty list of { x = , y = } tables", fn)
  end
  local body, plots, rows, any_value = {}, {}, {}, false
  local logx, logy = o.logx and true or false, o.logy and true or false
  local vmin, vmax = math.huge, -math.huge
  for s, ser in ipairs(series) do
    if type(ser) ~= "table" then fail("%s: series %d is %s, not a table", fn, s, type(ser)) end
    check_keys(fn .. " series " .. s, ser, SERIES_KEYS)
    if ser.label ~= nil and type(ser.label) ~= "string" and type(ser.label) ~= "number" then
      fail("%s: series %d label must be a string, got %s", fn, s, type(ser.label))
    end
    local name = ser.label ~= nil and ("series %d ('%s')"):format(s, tostring(ser.label)) or ("series " .. s)
    if ser.x == nil or ser.y == nil then fail("%s: %s needs x and y", fn, name) end
    local x, y = vector(fn, name .. " x", ser.x), vector(fn, name .. " y", ser.y)
    if #x ~= #y then
      fail("%s: %s has %d x values and %d y values", fn, name, #x, #y)
    end
    if #x == 0 then fail("%s: %s has no points", fn, name) end
    local v
    if ser.value ~= nil then
      v = vector(fn, name .. " value", ser.value)
      if #v ~= #x then
        fail("%s: %s has %d points and %d values", fn, name, #x, #v)
      end
      any_value = true
      for i = 1, #v do
        if v[i] == v[i] and math.abs(v[i]) < math.huge then
          if v[i] < vmin then vmin = v[i] end
          if v[i] > vmax then vmax = v[i] end
        end
      end
    end
    local style = ser.style or o.style or default_style
    if not STYLES[style] then
      fail("%s: %s: unknown style '%s' (valid: lines, points, linespoints)", fn, name, tostring(style))
    end
    local block = { ("$s%d << EOD"):format(s) }
    for i = 1, #x do
      block[#block + 1] = v and (num(x[i]) .. " " .. num(y[i]) .. " " .. num(v[i]))
                            or (num(x[i]) .. " " .. num(y[i]))
      rows[#rows + 1] = { ser.label or s, x[i], y[i], v and v[i] or "" }
    end
    block[#block + 1] = "EOD"
    body[#body + 1] = table.concat(block, "\n")
    local title = ser.label ~= nil and ("title " .. gtext(fn, ("series %d label"):format(s), ser.label))
                  or "notitle"
    local lw = positive(fn, name .. " width", ser.width or 2)
    local psize = ser.size or 1.2
    local ps = positive(fn, name .. " size", psize)
    local pt = ser.point or 7
    if math.type(pt) ~= "integer" or pt < 0 or pt > 1000 then
      fail("%s: %s point must be an integer in 0..1000 (a gnuplot point type)", fn, name)
    end
    local color = ser.color and (" lc rgb " .. colour(fn, name .. " color", ser.color)) or ""
    if v then
      -- a dark ring under each coloured point keeps pale colours visible
      plots[#plots + 1] = ("$s%d using 1:2 with points pt 6 ps %s lc rgb '#333333' notitle"):format(s, num(psize * 1.15))
      plots[#plots + 1] = ("$s%d using 1:2:3 with points pt %d ps %s lc palette %s"):format(s, pt, ps, title)
    elseif style == "lines" then
      plots[#plots + 1] = ("$s%d using 1:2 with lines lw %s%s %s"):format(s, lw, color, title)
    elseif style == "points" then
      plots[#plots + 1] = ("$s%d using 1:2 with points pt %d ps %s%s %s"):format(s, pt, ps, color, title)
    else
      plots[#plots + 1] = ("$s%d using 1:2 with linespoints lw %s pt %d ps %s%s %s"):format(s, lw, pt, ps, color, title)
    end
  end
  if o.title ~= nil then body[#body + 1] = "set title " .. opt_text(fn, o, "title") end
  if o.xlabel ~= nil then body[#body + 1] = "set xlabel " .. opt_text(fn, o, "xlabel") end
  if o.ylabel ~= nil then body[#body + 1] = "set ylabel " .. opt_text(fn, o, "ylabel") end
  if logx then body[#body + 1] = "set logscale x 10\nset format x '1e%L'" end
  if logy then body[#body + 1] = "set logscale y 10\nset format y '1e%L'" end
  local xr, yr = range(fn, "xrange", o.xrange), range(fn, "yrange", o.yrange)
  if xr then body[#body + 1] = "set xrange " .. xr end
  if yr then body[#body + 1] = "set yrange " .. yr end
  body[#body + 1] = "set grid lc rgb '#dddddd'"
  if o.legend == false then
    body[#body + 1] = "set key off"
  else
    local where = LEGENDS[o.legend or "top right"]
    if not where then
      fail("%s: unknown legend position '%s' (valid: top left, top right, bottom left, bottom right, outside, below, false)", fn, tostring(o.legend))
    end
    -- an opaque key would hide the x label when it sits below the plot
    body[#body + 1] = "set key " .. where .. (where == "below" and "" or " opaque") .. " box lc rgb '#bbbbbb'"
  end
  if any_value then
    local pal, pname = palette(fn, o.palette)
    body[#body + 1] = pal
    local cr = range(fn, "cbrange", o.cbrange)
    if not cr and pname == "diverging" and vmax >= vmin then
      local a = math.max(math.abs(vmin), math.abs(vmax))
      if a == 0 then a = 1 end
      cr = ("[%s:%s]"):format(num(-a), num(a))     -- white at zero
    end
    if cr then body[#body + 1] = "set cbrange " .. cr end
    if o.cblabel ~= nil then body[#body + 1] = "set cblabel " .. opt_text(fn, o, "cblabel") end
  elseif o.palette ~= nil or o.cbrange ~= nil then
    palette(fn, o.palette)
    range(fn, "cbrange", o.cbrange)
  end
  body[#body + 1] = "plot " .. table.concat(plots, ", \\\n  ")
  return ext, table.concat(body, "\n"), "series,x,y,value", rows
end

local function size(fn, o)
  for _, k in ipairs{ "width", "height" } do
    local v = o[k]
    if v ~= nil and (math.type(v) ~= "integer" or v < 16 or v > 20000) then
      fail("%s: option '%s' must be an integer number of pixels in 16..20000", fn, k)
    end
  end
  return o.width, o.height
end

--- pk.plot.line{ file =, series = { { x =, y =, label =, style = }, ... },
--- title =, xlabel =, ylabel =, logx =, logy =, legend =, xrange =, yrange = }
M.line = entry(function(o)
  local ext, body, hdr, rows = xy("plot.line", o, "lines")
  return render("plot.line", o.file, ext, body, hdr, rows, size("plot.line", o))
end)

--- pk.plot.scatter{ ... like line, points by default; a series with
--- value = {...} colours its points by the palette }
M.scatter = entry(function(o)
  local ext, body, hdr, rows = xy("plot.scatter", o, "points")
  return render("plot.scatter", o.file, ext, body, hdr, rows, size("plot.scatter", o))
end)

-- ---- heatmap -------------------------------------------------------------------

local HEAT_KEYS = set_of{ "file", "z", "title", "xlabel", "ylabel", "cblabel", "palette", "cbrange",
                          "width", "height" }

--- pk.plot.heatmap{ file =, z = Matrix or rows, title =, xlabel =, ylabel =,
--- cblabel =, palette =, cbrange = }: row 1 at the top, like a printed matrix
M.heatmap = entry(function(o)
  local fn = "plot.heatmap"
  if type(o) ~= "table" then fail("%s: expected an option table, got %s", fn, type(o)) end
  do
    check_keys(fn, o, HEAT_KEYS)
    local ext = target(fn, o.file)
    if o.z == nil then fail("%s: option 'z' (the matrix to show) is required", fn) end
    local rows, nr, nc = grid(fn, "z", o.z)
    local lo, hi = math.huge, -math.huge
    local block, csv = { "$z << EOD" }, {}
    for i = 1, nr do
      local line = {}
      for j = 1, nc do
        local v = rows[i][j]
        line[j] = num(v)
        csv[#csv + 1] = { i, j, v }
        if v == v and math.abs(v) < math.huge then
          if v < lo then lo = v end
          if v > hi then hi = v end
        end
      end
      block[#block + 1] = table.concat(line, " ")
    end
    block[#block + 1] = "EOD"
    local pal, pname = palette(fn, o.palette)
    local body = { table.concat(block, "\n"), pal }
    local cr = range(fn, "cbrange", o.cbrange)
    if not cr and pname == "diverging" and hi >= lo then
      local a = math.max(math.abs(lo), math.abs(hi))
      if a == 0 then a = 1 end
      cr = ("[%s:%s]"):format(num(-a), num(a))
    end
    if cr then body[#body + 1] = "set cbrange " .. cr end
    if o.title ~= nil then body[#body + 1] = "set title " .. opt_text(fn, o, "title") end
    if o.xlabel ~= nil then body[#body + 1] = "set xlabel " .. opt_text(fn, o, "xlabel") end
    if o.ylabel ~= nil then body[#body + 1] = "set ylabel " .. opt_text(fn, o, "ylabel") end
    if o.cblabel ~= nil then body[#body + 1] = "set cblabel " .. opt_text(fn, o, "cblabel") end
    body[#body + 1] = ("set xrange [0.5:%s]\nset yrange [%s:0.5]"):format(num(nc + 0.5), num(nr + 0.5))
    body[#body + 1] = "set tics out nomirror"
    body[#body + 1] = "plot $z matrix using ($1+1):($2+1):3 with image notitle"
    return render(fn, o.file, ext, table.concat(body, "\n"), "row,col,value", csv, size(fn, o))
  end
end)

-- ---- image grids ----------------------------------------------------------------

local IMG_KEYS = set_of{ "file", "images", "columns", "title", "palette", "range", "shape",
                         "width", "height" }
local ONE_IMG_KEYS = set_of{ "data", "title", "shape" }

--- pk.plot.images{ file =, images = { { data = Matrix or {...}, title = }, ... },
--- shape = {rows, cols}, columns = n, title =, palette = "gray_r", range = {lo, hi} }
--- data is an image row by row (a flat list or vector), or a table of rows
M.images = entry(function(o)
  local fn = "plot.images"
  if type(o) ~= "table" then fail("%s: expected an option table, got %s", fn, type(o)) end
  check_keys(fn, o, IMG_KEYS)
  local ext = target(fn, o.file)
  local images = o.images
  if type(images) ~= "table" or #images == 0 then
    fail("%s: 'images' must be a non-empty list of { data = , title = } tables", fn)
  end
  local n = #images
  local columns = o.columns or math.min(n, 8)
  if math.type(columns) ~= "integer" or columns < 1 then
    fail("%s: 'columns' must be a positive integer", fn)
  end
  local nrows = (n + columns - 1) // columns
  local pal = palette(fn, o.palette or "gray_r")
  local cr = range(fn, "range", o.range)
  local shape = o.shape
  local blocks, panels, csv = {}, {}, {}
  for k, im in ipairs(images) do
    if type(im) ~= "table" or is_matrix(im) then
      fail("%s: image %d must be a table { data = , title = }", fn, k)
    end
    check_keys(fn .. " image " .. k, im, ONE_IMG_KEYS)
    if im.data == nil then fail("%s: image %d has no data", fn, k) end
    if im.title ~= nil and type(im.title) ~= "string" and type(im.title) ~= "number" then
      fail("%s: image %d title must be a string, got %s", fn, k, type(im.title))
    end
    local rows, h, w
    local d = im.data
    local shp = im.shape or shape
    if is_matrix(d) and d:rows() > 1 and d:cols() > 1 then
      rows, h, w = grid(fn, "image " .. k, d)
    elseif type(d) == "table" and type(d[1]) == "table" then
      rows, h, w = grid(fn, "image " .. k, d)
    else
      local v = vector(fn, "image " .. k .. " data", d)
      if #v == 0 then fail("%s: image %d is empty", fn, k) end
      if shp == nil then
        local s = math.floor(math.sqrt(#v) + 0.5)
        if s * s ~= #v then
          fail("%s: image %d has %d values, not a square: give shape = {rows, cols}", fn, k, #v)
        end
        shp = { s, s }
      end
      if type(shp) ~= "table" or math.type(shp[1]) ~= "integer" or math.type(shp[2]) ~= "integer"
         or shp[1] < 1 or shp[2] < 1 then
        fail("%s: shape must be {rows, cols} with positive integers", fn)
      end
      h, w = shp[1], shp[2]
      if h * w ~= #v then
        fail("%s: image %d has %d values, its shape %dx%d needs %d", fn, k, #v, h, w, h * w)
      end
      rows = {}
      for i = 1, h do
        rows[i] = table.move(v, (i - 1) * w + 1, i * w, 1, {})
      end
    end
    local b = { ("$i%d << EOD"):format(k) }
    for i = 1, h do
      local line = {}
      for j = 1, w do
        line[j] = num(rows[i][j])
        csv[#csv + 1] = { k, im.title or "", i, j, rows[i][j] }
      end
      b[#b + 1] = table.concat(line, " ")
    end
    b[#b + 1] = "EOD"
    blocks[#blocks + 1] = table.concat(b, "\n")
    panels[#panels + 1] = table.concat({
      "set title " .. gtext(fn, ("image %d title"):format(k), im.title or ""),
      ("set xrange [-0.5:%s]\nset yrange [%s:-0.5]"):format(num(w - 0.5), num(h - 0.5)),
      ("plot $i%d matrix with image notitle"):format(k) }, "\n")
  end
  local body = { table.concat(blocks, "\n"), pal,
    "unset key\nunset tics\nunset colorbox\nunset border\nset size ratio -1",
    cr and ("set cbrange " .. cr) or "",
    ("set multiplot layout %d,%d%s"):format(nrows, columns, o.title and (" title " .. opt_text(fn, o, "title")) or ""),
    table.concat(panels, "\n"),
    "unset multiplot" }
  local w, h = size(fn, o)
  w = w or math.max(240, 150 * columns)
  h = h or (130 * nrows + (o.title and 40 or 10))
  return render(fn, o.file, ext, table.concat(body, "\n"), "image,title,row,col,value", csv, w, h)
end)

-- ---- configuration ----------------------------------------------------------------

local CFG_KEYS = set_of{ "gnuplot", "width", "height", "font" }

--- pk.plot.config{ gnuplot =, width =, height =, font = } sets defaults and
--- returns the previous settings; pk.plot.config() returns the current ones
M.config = entry(function(o)
  local old = { gnuplot = cfg.gnuplot, width = cfg.width, height = cfg.height, font = cfg.font }
  if o == nil then return old end
  if type(o) ~= "table" then fail("%s", "plot.config: expected an option table, got " .. type(o)) end
  check_keys("plot.config", o, CFG_KEYS)
  if o.gnuplot ~= nil then
    if type(o.gnuplot) ~= "string" or o.gnuplot == "" or o.gnuplot:find("\0", 1, true) then
      fail("%s", "plot.config: gnuplot must be a command name or path")
    end
  end
  for _, k in ipairs{ "width", "height" } do
    local v = o[k]
    if v ~= nil and (math.type(v) ~= "integer" or v < 16 or v > 20000) then
      fail("plot.config: %s must be an integer number of pixels in 16..20000", k)
    end
  end
  if o.font ~= nil then
    if type(o.font) ~= "string" then fail("%s", "plot.config: font must be a string like 'Sans,11'") end
    gtext("plot.config", "option 'font'", o.font)
  end
  for k, v in pairs(o) do cfg[k] = v end
  return old
end)

--- pk.plot.available() -> true, or false and the reason
function M.available()
  if gnuplot_found(cfg.gnuplot) then return true end
  return false, ("gnuplot (%s) was not found"):format(cfg.gnuplot)
end

--- pk.plot.folder(path): create a folder (and its parents) for pictures;
--- returns the path, raises when it cannot be created
M.folder = entry(function(path)
  if type(path) ~= "string" or path == "" then fail("%s", "plot.folder: expected a folder path") end
  if path:find("\0", 1, true) then fail("%s", "plot.folder: the path contains a NUL byte") end
  os.execute("mkdir -p -- " .. shq(path) .. " 2>/dev/null")
  local probe = path .. "/.pathkernel-probe"
  local f, err = io.open(probe, "wb")
  if not f then fail("plot.folder: cannot write into '%s': %s", path, err) end
  f:close()
  os.remove(probe)
  return path
end)

return M
