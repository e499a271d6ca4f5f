/* lua_kernels.c - the constructors of the kernels defined by parameters
 * (pk.kernel.linear, rbf, laplacian, poly, ntk, nngp) and of the
 * precomputed kernel; the Kernel userdata itself is lua_kernel.c's. */
#include "lua_pk.h"

/* The option table at idx: absent, nil or a table with only valid keys. */
static void opt_table(lua_State *L, int idx, const char *fn, const char *const *keys)
{
  int t = lua_type(L, idx);
  if (t != LUA_TNONE && t != LUA_TNIL && t != LUA_TTABLE)
    luaL_error(L, "%s: expected an option table, got %s", fn, lua_typename(L, t));
  pk_lua_checkkeys(L, idx, fn, keys);
}

/* Push a kernel built by a core constructor, or raise its error; nothing
 * may raise between the constructor and the push, so nothing leaks. */
static int push_new(lua_State *L, pk_status st, pk_kernel *k, int keep)
{
  if (st) return pk_lua_error(L, st);
  pk_lua_pushkernel(L, k, keep);
  return 1;
}

static int l_linear(lua_State *L)
{
  static const char *const keys[] = { NULL };
  pk_kernel *k;
  pk_status st;
  opt_table(L, 1, "linear", keys);
  st = pk_kernel_linear(&k);
  return push_new(L, st, k, 0);
}

static int l_rbf(lua_State *L)
{
  static const char *const keys[] = { "gamma", NULL };
  pk_kernel *k;
  pk_status st;
  double gamma;
  opt_table(L, 1, "rbf", keys);
  gamma = pk_lua_optnumber(L, 1, "gamma", 1.0);
  st = pk_kernel_rbf(&k, gamma);
  return push_new(L, st, k, 0);
}

static int l_laplacian(lua_State *L)
{
  static const char *const keys[] = { "gamma", NULL };
  pk_kernel *k;
  pk_status st;
  double gamma;
  opt_table(L, 1, "laplacian", keys);
  gamma = pk_lua_optnumber(L, 1, "gamma", 1.0);
  st = pk_kernel_laplacian(&k, gamma);
  return push_new(L, st, k, 0);
}

static int l_poly(lua_State *L)
{
  static const char *const keys[] = { "degree", "c", NULL };
  pk_kernel *k;
  pk_status st;
  lua_Integer degree;
  double c;
  opt_table(L, 1, "poly", keys);
  degree = pk_lua_optinteger(L, 1, "degree", 3);
  c = pk_lua_optnumber(L, 1, "c", 1.0);
  if (degree < 1 || degree > 1000000)
    return luaL_error(L, "poly: degree must be an integer in 1..1000000, got %I", degree);
  st = pk_kernel_poly(&k, (int)degree, c);
  return push_new(L, st, k, 0);
}

static int analytic(lua_State *L, int ntk)
{
  static const char *const keys[] = { "depth", "activation", "sigma_w", "sigma_b", NULL };
  const char *fn = ntk ? "ntk" : "nngp", *act;
  pk_kernel *k;
  pk_status st;
  lua_Integer depth;
  double sw, sb;
  opt_table(L, 1, fn, keys);
  if (pk_lua_optfield(L, 1, "depth") == LUA_TNIL)
    return luaL_error(L, "%s: option 'depth' (the number of hidden layers) is required", fn);
  lua_pop(L, 1);
  depth = pk_lua_optinteger(L, 1, "depth", 1);
  act = pk_lua_optstring(L, 1, "activation", "relu");
  sw = pk_lua_optnumber(L, 1, "sigma_w", 1.0);
  sb = pk_lua_optnumber(L, 1, "sigma_b", 0.1);
  if (depth < 1 || depth > 100000)
    return luaL_error(L, "%s: depth (the number of hidden layers) must be in 1..100000, got %I",
                      fn, depth);
  st = ntk ? pk_kernel_ntk(&k, (int)depth, act, sw, sb)
           : pk_kernel_nngp(&k, (int)depth, act, sw, sb);
  return push_new(L, st, k, 0);
}

static int l_ntk(lua_State *L) { return analytic(L, 1); }
static int l_nngp(lua_State *L) { return analytic(L, 0); }

/* pk.kernel.precomputed(G [, X]): the kernel keeps G alive */
static int l_precomputed(lua_State *L)
{
  pk_matrix *G = pk_lua_checkmatrix(L, 1), *X = NULL;
  pk_kernel *k;
  pk_status st;
  if (!lua_isnoneornil(L, 2)) X = pk_lua_checkmatrix(L, 2);
  st = pk_kernel_precomputed(&k, G, X);
  return push_new(L, st, k, 0);
}

void pk_lua_open_kernels(lua_State *L)
{
  static const luaL_Reg fns[] = {
    { "linear", l_linear }, { "rbf", l_rbf }, { "laplacian", l_laplacian }, { "poly", l_poly },
    { "ntk", l_ntk }, { "nngp", l_nngp }, { "precomputed", l_precomputed }, { NULL, NULL }
  };
  if (lua_getfield(L, -1, "kernel") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "kernel");
  }
  pk_lua_setfuncs(L, fns, "kernel.");
  lua_pop(L, 1);
}
