-- LuaRocks build of pathkernel: `luarocks --lua-version=5.4 make
-- rockspec/pathkernel-scm-1.rockspec` from a checkout (no network needed);
-- `luarocks --lua-version=5.4 test` runs the specs.
rockspec_format = "3.0"
package = "pathkernel"
version = "scm-1"
source = {
  url = "git+https://example.invalid/pathkernel.git",
}
description = {
  summary = "Neural networks as exact kernel machines over their gradient-descent path",
  detailed = [[
    pathkernel trains fully connected networks by gradient descent in C,
    records their weight trajectories, and computes tangent kernels, path
    kernels and kernel machines from them over BLAS and LAPACK, so that a
    trained network can be rewritten, to machine precision, as a sum over
    its training examples.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
external_dependencies = {
  LAPACKE = { header = "lapacke.h", library = "lapacke" },
  BLAS = { library = "blas" },
  LAPACK = { library = "lapack" },
  ZLIB = { header = "zlib.h", library = "z" },
}
build = {
  type = "builtin",
  modules = {
    ["pathkernel.core"] = {
      sources = {
        "c/analysis.c", "c/analytic.c", "c/attribute.c", "c/classic.c", "c/comm.c",
        "c/container.c", "c/core.c", "c/csv.c", "c/decomp.c", "c/fastmath.c",
        "c/influence.c", "c/kernel.c", "c/kinks.c", "c/kspec.c", "c/layer_conv.c",
        "c/layer_dense.c", "c/lds.c", "c/linalg.c", "c/loss.c", "c/machine.c",
        "c/matrix.c", "c/matrix_ops.c", "c/network.c", "c/npy.c", "c/optim.c",
        "c/parallel.c", "c/pathkernel.c", "c/regress.c", "c/rng.c", "c/rop.c",
        "c/tangent.c", "c/train.c", "c/trajectory.c",
        "c/lua/analysis.c", "c/lua/attribute.c", "c/lua/aux.c", "c/lua/init.c",
        "c/lua/kernel.c", "c/lua/kernels.c", "c/lua/machine.c", "c/lua/matrix.c",
        "c/lua/network.c", "c/lua/regressor.c", "c/lua/trajectory.c",
      },
      incdirs = { "c", "$(LAPACKE_INCDIR)", "$(ZLIB_INCDIR)" },
      libdirs = { "$(LAPACKE_LIBDIR)", "$(BLAS_LIBDIR)", "$(LAPACK_LIBDIR)", "$(ZLIB_LIBDIR)" },
      libraries = { "lapacke", "lapack", "blas", "z", "m", "pthread" },
    },
    ["pathkernel"] = "lua/pathkernel/init.lua",
    ["pathkernel.plot"] = "lua/pathkernel/plot.lua",
  },
}
-- The specs are busted specs, but test.type = "busted" makes LuaRocks
-- (3.8 on Debian 12) install busted as a rock for Lua 5.4 first, which
-- needs the network and ignores Debian's lua-busted. So the suite runs as
-- a command: build the module in build/ (where .busted points), then
-- Debian's busted under lua5.4 (.busted also says lua = "lua5.4").
-- Arguments after `--` reach busted: `luarocks test -- spec/matrix_spec.lua`.
test = {
  type = "command",
  command = "make --no-print-directory all && lua5.4 /usr/bin/busted",
}
