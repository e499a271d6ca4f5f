/* lua_analysis.c - pk.eigh, pk.alignment and pk.cka over Gram matrices. */
#include "lua_pk.h"

static int l_eigh(lua_State *L)
{
  pk_matrix *G = pk_lua_checkmatrix(L, 1), **w, **V;
  pk_status st;
  lua_settop(L, 1);
  w = pk_lua_newmatrix(L);
  V = pk_lua_newmatrix(L);
  st = pk_eigh(G, w, V);
  if (st) return pk_lua_error(L, st);
  return 2;
}

static int l_alignment(lua_State *L)
{
  pk_matrix *G = pk_lua_checkmatrix(L, 1), *Y = pk_lua_checkmatrix(L, 2);
  double v;
  pk_status st = pk_alignment(G, Y, &v);
  if (st) return pk_lua_error(L, st);
  lua_pushnumber(L, v);
  return 1;
}

static int l_cka(lua_State *L)
{
  pk_matrix *G1 = pk_lua_checkmatrix(L, 1), *G2 = pk_lua_checkmatrix(L, 2);
  double v;
  pk_status st = pk_cka(G1, G2, &v);
  if (st) return pk_lua_error(L, st);
  lua_pushnumber(L, v);
  return 1;
}

void pk_lua_open_analysis(lua_State *L)
{
  static const luaL_Reg fns[] = {
    { "eigh", l_eigh }, { "alignment", l_alignment }, { "cka", l_cka }, { NULL, NULL }
  };
  pk_lua_setfuncs(L, fns, "");
}
