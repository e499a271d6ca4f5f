/* analysis.c - pk.eigh, pk.alignment and pk.cka over Gram matrices. */
#include "aux.h"

static pk_matrix *checkm(lua_State *L, int idx) { return pkL_check(L, idx, &pkL_Matrix); }

static int l_eigh(lua_State *L)
{
  pk_matrix *G = checkm(L, 1);
  pkL_box *w, *V;
  lua_settop(L, 1);
  w = pkL_newbox(L, &pkL_Matrix);
  V = pkL_newbox(L, &pkL_Matrix);
  pkL_made(L, pk_eigh(G, &w->u.matrix, &V->u.matrix));
  return 2;
}

/* a number from two matrices */
static int measure(lua_State *L, pk_status (*f)(const pk_matrix *, const pk_matrix *, double *))
{
  pk_matrix *A = checkm(L, 1), *B = checkm(L, 2);
  double v;
  pkL_raise(L, f(A, B, &v));
  lua_pushnumber(L, v);
  return 1;
}

static int l_alignment(lua_State *L) { return measure(L, pk_alignment); }
static int l_cka(lua_State *L) { return measure(L, pk_cka); }

void pkL_open_analysis(lua_State *L)
{
  static const luaL_Reg fns[] = {
    { "eigh", l_eigh }, { "alignment", l_alignment }, { "cka", l_cka }, { NULL, NULL }
  };
  pkL_setfuncs(L, fns, "");
}
