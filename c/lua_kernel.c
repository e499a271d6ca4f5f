/* lua_kernel.c - the pathkernel.Kernel userdata shared by every kernel:
 * gram, diag, calling K(X1, X2), and the common options. The kernel
 * constructors live with the objects they are built from. */
#include <string.h>
#include "lua_pk.h"

typedef struct { pk_kernel *k; } kbox;

pk_kernel *pk_lua_checkkernel(lua_State *L, int idx)
{
  kbox *b = luaL_checkudata(L, idx, PK_KERNEL_MT);
  if (!b->k) luaL_argerror(L, idx, "kernel has been released");
  return b->k;
}

void pk_lua_pushkernel(lua_State *L, pk_kernel *k, int keep)
{
  kbox *b;
  if (keep) keep = lua_absindex(L, keep);
  if (!lua_checkstack(L, 3)) { pk_kernel_free(k); luaL_error(L, "stack overflow"); }
  b = lua_newuserdatauv(L, sizeof *b, 1);
  b->k = k;
  luaL_setmetatable(L, PK_KERNEL_MT);
  if (keep) {
    lua_pushvalue(L, keep);
    lua_setiuservalue(L, -2, 1);
  }
}

void pk_lua_kernel_opts(lua_State *L, int idx, pk_kernel *k)
{
  static const char *const modes[] = { "block", "trace", "diagonal", NULL };
  const char *m = pk_lua_optstring(L, idx, "outputs", "block");
  lua_Integer mem = pk_lua_optinteger(L, idx, "memory", (lua_Integer)k->memory);
  int i;
  for (i = 0; modes[i]; i++)
    if (strcmp(m, modes[i]) == 0) break;
  if (!modes[i])
    luaL_error(L, "unknown outputs mode '%s' (valid: block, trace, diagonal)", m);
  if (mem <= 0) luaL_error(L, "option 'memory' must be a positive number of bytes");
  k->mode = (pk_outputs)i;
  k->memory = (size_t)mem;
}

static int k_release(lua_State *L)
{
  kbox *b = luaL_checkudata(L, 1, PK_KERNEL_MT);
  pk_kernel_free(b->k);
  b->k = NULL;
  return 0;
}

/* K:gram(X1 [, X2] [, { progress = }]) */
static int k_gram(lua_State *L)
{
  pk_kernel *k = pk_lua_checkkernel(L, 1);
  pk_matrix *X1 = pk_lua_checkmatrix(L, 2), *X2 = X1;
  int oidx = 3;
  pk_lua_progress p;
  pk_call_opts o;
  pk_matrix **slot;
  pk_status st;
  if (pk_lua_testmatrix(L, 3)) {
    X2 = pk_lua_checkmatrix(L, 3);
    oidx = 4;
  } else if (!lua_isnoneornil(L, 3) && lua_type(L, 3) != LUA_TTABLE) {
    luaL_typeerror(L, 3, PK_MATRIX_MT);
  }
  lua_settop(L, oidx);
  pk_lua_optfield(L, oidx, "progress");
  pk_lua_progress_init(L, &p, -1, "gram", &o);
  slot = pk_lua_newmatrix(L);
  st = pk_kernel_gram(k, X1, X2, &o, slot);
  pk_lua_progress_done(&p);
  if (st) return pk_lua_error(L, st);
  return 1;
}

static int k_call(lua_State *L) { return k_gram(L); }

static int k_diag(lua_State *L)
{
  pk_kernel *k = pk_lua_checkkernel(L, 1);
  pk_matrix *X = pk_lua_checkmatrix(L, 2);
  pk_lua_progress p;
  pk_call_opts o;
  pk_matrix **slot;
  pk_status st;
  lua_settop(L, 3);
  pk_lua_optfield(L, 3, "progress");
  pk_lua_progress_init(L, &p, -1, "diag", &o);
  slot = pk_lua_newmatrix(L);
  st = pk_kernel_diag(k, X, &o, slot);
  pk_lua_progress_done(&p);
  if (st) return pk_lua_error(L, st);
  return 1;
}

static int k_name(lua_State *L)
{
  lua_pushstring(L, pk_kernel_name(pk_lua_checkkernel(L, 1)));
  return 1;
}

static int k_tostring(lua_State *L)
{
  kbox *b = luaL_checkudata(L, 1, PK_KERNEL_MT);
  if (!b->k) lua_pushliteral(L, "pathkernel.Kernel (released)");
  else lua_pushfstring(L, "pathkernel.Kernel %s", pk_kernel_name(b->k));
  return 1;
}

void pk_lua_open_kernel(lua_State *L)
{
  static const luaL_Reg meta[] = {
    { "__gc", k_release }, { "__close", k_release }, { "__call", k_call },
    { "__tostring", k_tostring }, { NULL, NULL }
  };
  static const luaL_Reg methods[] = {
    { "gram", k_gram }, { "diag", k_diag }, { "name", k_name }, { "release", k_release },
    { NULL, NULL }
  };
  luaL_newmetatable(L, PK_KERNEL_MT);
  luaL_setfuncs(L, meta, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  /* kernel constructors go into pk.kernel: make sure it exists */
  if (lua_getfield(L, -1, "kernel") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "kernel");
  }
  lua_pop(L, 1);
}
