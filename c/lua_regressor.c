/* lua_regressor.c - the pathkernel.Regressor userdata (kernel ridge
 * regression, GP posterior, NTK-regime gradient flow) and pk.machine.ridge,
 * gp and gradient_flow. */
#include <math.h>
#include "lua_pk.h"

typedef struct { pk_regressor *r; } rbox;

static pk_regressor *check_reg(lua_State *L, int idx)
{
  rbox *b = pk_lua_checkudata(L, idx, PK_REGRESSOR_MT);
  if (!b->r) pk_lua_argerror(L, idx, "model has been released");
  return b->r;
}

static rbox *new_box(lua_State *L)
{
  rbox *b = lua_newuserdatauv(L, sizeof *b, 1);
  b->r = NULL;
  luaL_setmetatable(L, PK_REGRESSOR_MT);
  return b;
}

/* A fitted model borrows its kernel and keeps the Kernel userdata alive as
 * its user value; K:release() could still free it, so check before use.
 * (lua_kernel.c's box is a struct whose first member is the pk_kernel
 * pointer, NULL once released.) */
static void check_kernel(lua_State *L, int idx, const pk_regressor *r, const char *fn)
{
  pk_kernel **kb;
  if (pk_regressor_owns_kernel(r)) return;
  lua_getiuservalue(L, idx, 1);
  kb = luaL_testudata(L, -1, PK_KERNEL_MT);
  if (!kb || *kb != pk_regressor_kernel(r))
    luaL_error(L, "%s: the model's kernel has been released", fn);
  lua_pop(L, 1);
}

static void opt_table(lua_State *L, int idx, const char *fn, const char *const *keys)
{
  int t = lua_type(L, idx);
  if (t != LUA_TNONE && t != LUA_TNIL && t != LUA_TTABLE)
    luaL_error(L, "%s: expected an option table, got %s", fn, lua_typename(L, t));
  pk_lua_checkkeys(L, idx, fn, keys);
}

/* pk.machine.ridge / gp / gradient_flow (K, X, Y [, opts]) */
static int fit(lua_State *L, pk_regressor_kind kind)
{
  static const char *const ridge_keys[] = { "lambda", "progress", NULL };
  static const char *const gp_keys[] = { "noise", "progress", NULL };
  static const char *const flow_keys[] = { "lr", "t", "f0", "progress", NULL };
  const char *fn = kind == PK_REGRESSOR_RIDGE ? "ridge" : kind == PK_REGRESSOR_GP ? "gp"
                                                                                  : "gradient_flow";
  pk_kernel *k = pk_lua_checkkernel(L, 1);
  pk_matrix *X = pk_lua_checkmatrix(L, 2), *Y = pk_lua_checkmatrix(L, 3), *f0 = NULL;
  double a = 0, t = 0;
  pk_lua_progress p;
  pk_call_opts o;
  rbox *b;
  pk_status st;
  opt_table(L, 4, fn, kind == PK_REGRESSOR_RIDGE ? ridge_keys
                      : kind == PK_REGRESSOR_GP ? gp_keys : flow_keys);
  lua_settop(L, 4);
  if (kind == PK_REGRESSOR_RIDGE) a = pk_lua_optnumber(L, 4, "lambda", 1e-3);
  else if (kind == PK_REGRESSOR_GP) a = pk_lua_optnumber(L, 4, "noise", 1e-2);
  else {
    a = pk_lua_optnumber(L, 4, "lr", 1.0);
    t = pk_lua_optnumber(L, 4, "t", HUGE_VAL);
    if (pk_lua_optfield(L, 4, "f0") != LUA_TNIL) {
      f0 = pk_lua_testmatrix(L, -1);
      if (!f0) return luaL_error(L, "%s: option 'f0' must be a %s, got %s", fn, PK_MATRIX_MT,
                                 luaL_typename(L, -1));
      pk_lua_checkoptmatrix(L, -1, "f0");   /* not released */
    }
    lua_pop(L, 1);   /* the option table keeps f0 alive */
  }
  pk_lua_optfield(L, 4, "progress");                /* 5 */
  pk_lua_progress_init(L, &p, 5, fn, &o);           /* 6: its guard */
  b = new_box(L);                                   /* 7 */
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, 7, 1);
  /* the progress callback must not free the kernel the fit is using */
  pk_lua_kernel_busy(L, 1, 1);
  if (kind == PK_REGRESSOR_RIDGE) st = pk_ridge_fit(&b->r, k, X, Y, a, &o);
  else if (kind == PK_REGRESSOR_GP) st = pk_gp_fit(&b->r, k, X, Y, a, &o);
  else st = pk_gradient_flow_fit(&b->r, k, X, Y, a, t, f0, &o);
  pk_lua_kernel_busy(L, 1, -1);
  pk_lua_progress_done(&p);
  if (st) return pk_lua_error(L, st);
  if (pk_regressor_warning(b->r)) lua_warning(L, pk_regressor_warning(b->r), 0);
  return 1;
}

static int l_ridge(lua_State *L) { return fit(L, PK_REGRESSOR_RIDGE); }
static int l_gp(lua_State *L) { return fit(L, PK_REGRESSOR_GP); }
static int l_flow(lua_State *L) { return fit(L, PK_REGRESSOR_FLOW); }

/* M:predict(Xq [, f0q]) -> mean (, var for a GP) */
static int r_predict(lua_State *L)
{
  pk_regressor *r = check_reg(L, 1);
  pk_matrix *Xq = pk_lua_checkmatrix(L, 2), *f0q = NULL, **mean, **var = NULL;
  int gp = pk_regressor_get_kind(r) == PK_REGRESSOR_GP;
  pk_status st;
  pk_lua_progress p;
  pk_call_opts o;
  if (!lua_isnoneornil(L, 3)) f0q = pk_lua_checkmatrix(L, 3);
  check_kernel(L, 1, r, "predict");
  lua_settop(L, 3);
  pk_lua_progress_init(L, &p, 0, "predict", &o);   /* no bar: for interrupts */
  mean = pk_lua_newmatrix(L);
  if (gp) var = pk_lua_newmatrix(L);
  st = pk_regressor_predict(r, Xq, f0q, &o, mean, var);
  pk_lua_progress_done(&p);
  if (st) return pk_lua_error(L, st);
  return gp ? 2 : 1;
}

static int r_kind(lua_State *L)
{
  lua_pushstring(L, pk_regressor_kind_name(check_reg(L, 1)));
  return 1;
}

static int r_warning(lua_State *L)
{
  const char *w = pk_regressor_warning(check_reg(L, 1));
  if (w) lua_pushstring(L, w);
  else lua_pushnil(L);
  return 1;
}

static int r_coefficients(lua_State *L)
{
  pk_regressor *r = check_reg(L, 1);
  pk_matrix **slot = pk_lua_newmatrix(L);
  pk_status st = pk_matrix_copy(slot, pk_regressor_coefficients(r));
  if (st) return pk_lua_error(L, st);
  return 1;
}

static int r_save(lua_State *L)
{
  pk_regressor *r = check_reg(L, 1);
  const char *path = pk_lua_checkstring(L, 2);
  pk_status st;
  check_kernel(L, 1, r, "save");
  st = pk_regressor_save(r, path);
  if (st) return pk_lua_fail(L, st);
  lua_pushboolean(L, 1);
  return 1;
}

int pk_lua_load_regressor(lua_State *L, const char *path)
{
  rbox *b = new_box(L);
  pk_status st = pk_regressor_load(&b->r, path);
  if (st == PK_EIO) return pk_lua_fail(L, st);
  if (st) return pk_lua_error(L, st);
  return 1;
}

static int r_release(lua_State *L)
{
  rbox *b = pk_lua_checkudata(L, 1, PK_REGRESSOR_MT);
  pk_regressor_free(b->r);
  b->r = NULL;
  return 0;
}

static int r_tostring(lua_State *L)
{
  rbox *b = pk_lua_checkudata(L, 1, PK_REGRESSOR_MT);
  const pk_matrix *a;
  if (!b->r) {
    lua_pushliteral(L, "pathkernel.Regressor (released)");
    return 1;
  }
  a = pk_regressor_coefficients(b->r);
  lua_pushfstring(L, "pathkernel.Regressor %s (%d coefficient rows, %d columns)",
                  pk_regressor_kind_name(b->r), (int)pk_matrix_rows(a), (int)pk_matrix_cols(a));
  return 1;
}

void pk_lua_open_regressor(lua_State *L)
{
  static const luaL_Reg meta[] = {
    { "__gc", r_release }, { "__close", r_release }, { "__tostring", r_tostring },
    { NULL, NULL }
  };
  static const luaL_Reg methods[] = {
    { "predict", r_predict }, { "kind", r_kind }, { "warning", r_warning },
    { "coefficients", r_coefficients }, { "save", r_save }, { "release", r_release },
    { NULL, NULL }
  };
  static const luaL_Reg fns[] = {
    { "ridge", l_ridge }, { "gp", l_gp }, { "gradient_flow", l_flow }, { NULL, NULL }
  };
  luaL_newmetatable(L, PK_REGRESSOR_MT);
  pk_lua_setfuncs(L, meta, "");
  lua_newtable(L);
  pk_lua_setfuncs(L, methods, "");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  if (lua_getfield(L, -1, "machine") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "machine");
  }
  pk_lua_setfuncs(L, fns, "machine.");
  lua_pop(L, 1);
}
