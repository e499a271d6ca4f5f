/* lua_kernel.c - the pathkernel.Kernel userdata shared by every kernel:
 * gram, diag, calling K(X1, X2), and the common options. The kernel
 * constructors live with the objects they are built from. */
#include <string.h>
#include "lua_pk.h"

/* busy counts the calls running on the kernel: a progress callback may
 * try to release it (directly or through __gc/__close), and must not free
 * what the C code below it is still using. */
typedef struct { pk_kernel *k; int busy; } kbox;

pk_kernel *pk_lua_checkkernel(lua_State *L, int idx)
{
  kbox *b = pk_lua_checkudata(L, idx, PK_KERNEL_MT);
  if (!b->k) pk_lua_argerror(L, idx, "kernel has been released");
  return b->k;
}

void pk_lua_kernel_busy(lua_State *L, int idx, int delta)
{
  kbox *b = pk_lua_checkudata(L, idx, PK_KERNEL_MT);
  b->busy += delta;
}

void pk_lua_pushkernel(lua_State *L, pk_kernel *k, int keep)
{
  kbox *b;
  if (keep) keep = lua_absindex(L, keep);
  if (!lua_checkstack(L, 3)) { pk_kernel_free(k); luaL_error(L, "stack overflow"); }
  b = lua_newuserdatauv(L, sizeof *b, 1);
  b->k = k;
  b->busy = 0;
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
  kbox *b = pk_lua_checkudata(L, 1, PK_KERNEL_MT);
  if (b->busy) return luaL_error(L, "kernel is in use: it cannot be released from its own progress callback");
  pk_kernel_free(b->k);
  b->k = NULL;
  return 0;
}

static const char *const call_keys[] = { "progress", NULL };

/* The options argument at idx: nil or a table of known keys. */
static void check_call_opts(lua_State *L, int idx, const char *fn)
{
  if (!lua_isnoneornil(L, idx) && lua_type(L, idx) != LUA_TTABLE)
    pk_lua_typeerror(L, idx, "table of options");
  pk_lua_checkkeys(L, idx, fn, call_keys);
}

/* Run gram (X2 != NULL) or diag with the kernel marked busy; the matrices
 * are pinned, so a callback that releases them cannot free their storage. */
static int run(lua_State *L, kbox *b, pk_matrix *X1, pk_matrix *X2, int oidx, const char *label)
{
  pk_lua_progress p;
  pk_call_opts o;
  pk_matrix **slot;
  pk_status st;
  pk_lua_optfield(L, oidx, "progress");
  pk_lua_progress_init(L, &p, -1, label, &o);
  slot = pk_lua_newmatrix(L);
  b->busy++;
  st = X2 ? pk_kernel_gram(b->k, X1, X2, &o, slot) : pk_kernel_diag(b->k, X1, &o, slot);
  b->busy--;
  pk_lua_progress_done(&p);
  if (st) return pk_lua_error(L, st);
  return 1;
}

/* K:gram(X1 [, X2] [, { progress = }]) */
static int k_gram(lua_State *L)
{
  kbox *b = pk_lua_checkudata(L, 1, PK_KERNEL_MT);
  pk_matrix *X1, *X2;
  int oidx = 3;
  pk_lua_checkkernel(L, 1);
  pk_lua_checkmatrix(L, 2);
  if (luaL_testudata(L, 3, PK_MATRIX_MT)) {
    pk_lua_checkmatrix(L, 3);      /* a released X2 says so */
    oidx = 4;
  } else if (!lua_isnoneornil(L, 3) && lua_type(L, 3) != LUA_TTABLE) {
    pk_lua_typeerror(L, 3, PK_MATRIX_MT);
  } else if (lua_type(L, 3) == LUA_TTABLE) {
    /* a list where X2 may go is data, not options: K:gram(X, {1, 2, 3}) */
    int list = lua_rawgeti(L, 3, 1) != LUA_TNIL;
    lua_pop(L, 1);
    if (list) pk_lua_typeerror(L, 3, PK_MATRIX_MT);
  }
  check_call_opts(L, oidx, "gram");
  lua_settop(L, oidx);
  X1 = pk_lua_pinmatrix(L, 2);
  X2 = oidx == 4 ? pk_lua_pinmatrix(L, 3) : X1;
  return run(L, b, X1, X2, oidx, "gram");
}

static int k_call(lua_State *L) { return k_gram(L); }

static int k_diag(lua_State *L)
{
  kbox *b = pk_lua_checkudata(L, 1, PK_KERNEL_MT);
  pk_lua_checkkernel(L, 1);
  pk_lua_checkmatrix(L, 2);
  check_call_opts(L, 3, "diag");
  lua_settop(L, 3);
  return run(L, b, pk_lua_pinmatrix(L, 2), NULL, 3, "diag");
}

static int k_name(lua_State *L)
{
  lua_pushstring(L, pk_kernel_name(pk_lua_checkkernel(L, 1)));
  return 1;
}

static int k_tostring(lua_State *L)
{
  kbox *b = pk_lua_checkudata(L, 1, PK_KERNEL_MT);
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
  pk_lua_setfuncs(L, meta, "");
  lua_newtable(L);
  pk_lua_setfuncs(L, methods, "");
  lua_setfield(L, -2, "__index");
  pk_lua_setname(L, k_call, "gram");     /* K(X1, X2) is K:gram(X1, X2) */
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
