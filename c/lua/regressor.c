/* regressor.c - the pathkernel.Regressor userdata (kernel ridge
 * regression, GP posterior, NTK-regime gradient flow) and pk.machine.ridge,
 * gp and gradient_flow. */
#include <math.h>
#include <stddef.h>
#include "aux.h"

static pk_regressor *checkr(lua_State *L, int idx) { return pkL_check(L, idx, &pkL_Regressor); }
static pk_matrix *checkm(lua_State *L, int idx) { return pkL_check(L, idx, &pkL_Matrix); }
static pk_matrix **newm(lua_State *L) { return &pkL_newbox(L, &pkL_Matrix)->u.matrix; }

/* A fitted model borrows its kernel and keeps the Kernel userdata alive as
 * its user value; K:release() could still free it, so check before use. */
static void check_kernel(lua_State *L, int idx, const pk_regressor *r, const char *fn)
{
  pkL_box *kb;
  if (pk_regressor_owns_kernel(r)) return;
  lua_getiuservalue(L, idx, 1);
  kb = pkL_testbox(L, -1, &pkL_Kernel);
  if (!kb || kb->u.kernel != pk_regressor_kernel(r))
    luaL_error(L, "%s: the model's kernel has been released", fn);
  lua_pop(L, 1);
}

typedef struct fit_args {
  double a, t;          /* lambda, noise or lr; the flow's t */
  pk_matrix *f0;
  int progress;
} fit_args;

#define FA(f) .offset = offsetof(fit_args, f)
static const pkL_option ridge_spec[] = {
  { "lambda", PKL_NUMBER, FA(a) }, { "progress", PKL_VALUE, FA(progress) }, { NULL, 0, .offset = 0 }
};
static const pkL_option gp_spec[] = {
  { "noise", PKL_NUMBER, FA(a) }, { "progress", PKL_VALUE, FA(progress) }, { NULL, 0, .offset = 0 }
};
static const pkL_option flow_spec[] = {
  { "lr", PKL_NUMBER, FA(a) }, { "t", PKL_NUMBER, FA(t) }, { "f0", PKL_MATRIX, FA(f0) },
  { "progress", PKL_VALUE, FA(progress) }, { NULL, 0, .offset = 0 }
};
#undef FA

/* pk.machine.ridge / gp / gradient_flow (K, X, Y [, opts]) */
static int fit(lua_State *L, pk_regressor_kind kind)
{
  const char *fn = kind == PK_REGRESSOR_RIDGE ? "ridge" : kind == PK_REGRESSOR_GP ? "gp"
                                                                                  : "gradient_flow";
  pk_kernel *k = pkL_check(L, 1, &pkL_Kernel);
  pk_matrix *X, *Y;
  fit_args a = { kind == PK_REGRESSOR_RIDGE ? 1e-3 : kind == PK_REGRESSOR_GP ? 1e-2 : 1.0,
                 HUGE_VAL, NULL, 0 };
  pkL_box *b;
  pkL_call *c;
  pk_status st;
  checkm(L, 2);
  checkm(L, 3);
  lua_settop(L, 4);
  pkL_options(L, 4, fn, kind == PK_REGRESSOR_RIDGE ? ridge_spec
                        : kind == PK_REGRESSOR_GP ? gp_spec : flow_spec, &a);
  /* the data pinned and the kernel busy: the progress callback may try to
   * release them */
  X = pkL_pin(L, 2);
  Y = pkL_pin(L, 3);
  if (a.f0) {
    lua_getfield(L, 4, "f0");
    a.f0 = pkL_pin(L, -1);
  }
  b = pkL_newbox(L, &pkL_Regressor);
  pkL_keep(L, -1, 1);
  c = pkL_begin(L, fn, a.progress);
  pkL_hold(c, 1);
  if (kind == PK_REGRESSOR_RIDGE) st = pk_ridge_fit(&b->u.regressor, k, X, Y, a.a, &c->opts);
  else if (kind == PK_REGRESSOR_GP) st = pk_gp_fit(&b->u.regressor, k, X, Y, a.a, &c->opts);
  else st = pk_gradient_flow_fit(&b->u.regressor, k, X, Y, a.a, a.t, a.f0, &c->opts);
  pkL_end(c);
  pkL_raise(L, st);
  if (pk_regressor_warning(b->u.regressor)) lua_warning(L, pk_regressor_warning(b->u.regressor), 0);
  lua_pushvalue(L, -2);      /* the model, under its call */
  pkL_account(L);
  return 1;
}

static int l_ridge(lua_State *L) { return fit(L, PK_REGRESSOR_RIDGE); }
static int l_gp(lua_State *L) { return fit(L, PK_REGRESSOR_GP); }
static int l_flow(lua_State *L) { return fit(L, PK_REGRESSOR_FLOW); }

/* M:predict(Xq [, f0q]) -> mean (, var for a GP) */
static int r_predict(lua_State *L)
{
  pk_regressor *r = checkr(L, 1);
  pk_matrix *Xq = checkm(L, 2), *f0q = NULL, **mean, **var = NULL;
  int gp = pk_regressor_get_kind(r) == PK_REGRESSOR_GP;
  pkL_call *c;
  pk_status st;
  if (!lua_isnoneornil(L, 3)) f0q = checkm(L, 3);
  check_kernel(L, 1, r, "predict");
  lua_settop(L, 3);
  c = pkL_begin(L, "predict", 0);     /* no progress: the call is for interrupts */
  mean = newm(L);
  if (gp) var = newm(L);
  st = pk_regressor_predict(r, Xq, f0q, &c->opts, mean, var);
  pkL_end(c);
  pkL_raise(L, st);
  pkL_account(L);
  return gp ? 2 : 1;
}

static int r_kind(lua_State *L)
{
  lua_pushstring(L, pk_regressor_kind_name(checkr(L, 1)));
  return 1;
}

static int r_warning(lua_State *L)
{
  const char *w = pk_regressor_warning(checkr(L, 1));
  if (w) lua_pushstring(L, w);
  else lua_pushnil(L);
  return 1;
}

static int r_coefficients(lua_State *L)
{
  pk_regressor *r = checkr(L, 1);
  return pkL_made(L, pk_matrix_copy(newm(L), pk_regressor_coefficients(r)));
}

static int r_save(lua_State *L)
{
  pk_regressor *r = checkr(L, 1);
  const char *path = pkL_saveargs(L, NULL, NULL);
  check_kernel(L, 1, r, "save");
  return pkL_ioresult(L, pk_regressor_save(r, path), 0);
}

int pkL_load_regressor(lua_State *L, const char *path)
{
  return pkL_ioresult(L, pk_regressor_load(&pkL_newbox(L, &pkL_Regressor)->u.regressor, path), 1);
}

static int r_tostring(lua_State *L)
{
  pk_regressor *r = pkL_checkbox(L, 1, &pkL_Regressor)->u.regressor;
  const pk_matrix *a;
  if (!r) return pkL_released(L, &pkL_Regressor);
  a = pk_regressor_coefficients(r);
  lua_pushfstring(L, "pathkernel.Regressor %s (%d coefficient rows, %d columns)",
                  pk_regressor_kind_name(r), (int)pk_matrix_rows(a), (int)pk_matrix_cols(a));
  return 1;
}

void pkL_open_regressor(lua_State *L)
{
  static const luaL_Reg meta[] = { { "__tostring", r_tostring }, { NULL, NULL } };
  static const luaL_Reg methods[] = {
    { "predict", r_predict }, { "kind", r_kind }, { "warning", r_warning },
    { "coefficients", r_coefficients }, { "save", r_save }, { NULL, NULL }
  };
  static const luaL_Reg fns[] = {
    { "ridge", l_ridge }, { "gp", l_gp }, { "gradient_flow", l_flow }, { NULL, NULL }
  };
  pkL_newclass(L, &pkL_Regressor, methods, meta);
  pkL_subtable(L, "machine");
  pkL_setfuncs(L, fns, "machine.");
  lua_pop(L, 1);
}
