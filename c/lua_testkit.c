/* lua_testkit.c - pk._testkit: objects that exist only to test the
 * generic machinery from Lua (the misuse fuzzer and the specs build
 * Kernel userdata from it while no real kernel is compiled in). */
#include "lua_pk.h"

/* pk._testkit.kernel{ nout = 1, input_dim = 0, fail_at = 0, outputs =, memory = } */
static int l_kernel(lua_State *L)
{
  static const char *const keys[] = { "nout", "input_dim", "fail_at", "outputs", "memory", NULL };
  lua_Integer nout, dim, fail_at;
  pk_kernel *k;
  pk_status st;
  if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TTABLE);
  pk_lua_checkkeys(L, 1, "testkit.kernel", keys);
  nout = pk_lua_optinteger(L, 1, "nout", 1);
  dim = pk_lua_optinteger(L, 1, "input_dim", 0);
  fail_at = pk_lua_optinteger(L, 1, "fail_at", 0);
  luaL_argcheck(L, nout >= 1 && nout <= 1024, 1, "nout must be in 1..1024");
  luaL_argcheck(L, dim >= 0 && dim <= PK_MAX_DIM, 1, "input_dim must be in 0..2^31-1");
  luaL_argcheck(L, fail_at >= 0, 1, "fail_at must be >= 0");
  if ((st = pk_testkit_kernel(&k, (size_t)nout, (size_t)dim, (long)fail_at)))
    return pk_lua_error(L, st);
  pk_lua_pushkernel(L, k, 0);      /* owns k from here: options may raise */
  pk_lua_kernel_opts(L, 1, k);
  return 1;
}

void pk_lua_open_testkit(lua_State *L)
{
  static const luaL_Reg fns[] = { { "kernel", l_kernel }, { NULL, NULL } };
  luaL_newlib(L, fns);
  lua_setfield(L, -2, "_testkit");
}
