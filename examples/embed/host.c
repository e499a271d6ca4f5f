/* host.c - a C program that embeds Lua with pathkernel linked in. It
 * preloads the C module (luaopen_pathkernel_core) so `require "pathkernel"`
 * needs no shared object, points package.path at the front module in lua/,
 * hands its own data to a script (examples/embed/train.lua) as tables, and
 * reads the result back twice: the numbers the script returns, and the
 * network the script saved, loaded and run through the C API of c/pk.h.
 *
 *   make embed              (builds build/embed_host and runs it)
 *   build/embed_host [script.lua]
 *
 * PATHKERNEL_LUA_DIR overrides the folder that holds pathkernel/init.lua.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "pk.h"

#ifndef PK_SOURCE_DIR
#define PK_SOURCE_DIR "."
#endif

int luaopen_pathkernel_core(lua_State *L);   /* linked in from c/lua/init.c */

/* message handler: the error with a traceback */
static int traceback(lua_State *L)
{
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

/* package.preload["pathkernel.core"] and package.path for lua/ */
static void setup_pathkernel(lua_State *L)
{
  const char *dir = getenv("PATHKERNEL_LUA_DIR");
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_pathkernel_core);
  lua_setfield(L, -2, "pathkernel.core");
  lua_pop(L, 1);
  if (!dir || !*dir) dir = PK_SOURCE_DIR "/lua";
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;", dir, dir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
}

/* a Lua array of rows { {x}, ... } from n single numbers */
static void push_column(lua_State *L, const double *v, int n, int rows)
{
  int i;
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    if (rows) {
      lua_createtable(L, 1, 0);
      lua_pushnumber(L, v[i]);
      lua_rawseti(L, -2, 1);
    } else {
      lua_pushnumber(L, v[i]);
    }
    lua_rawseti(L, -2, i + 1);
  }
}

int main(int argc, char **argv)
{
  enum { M = 24, NQ = 5 };
  double x[M], y[M], xq[NQ], pred[NQ], rel;
  const char *script = argc > 1 ? argv[1] : PK_SOURCE_DIR "/examples/embed/train.lua";
  const char *tmp = getenv("TMPDIR");
  char path[512];
  lua_State *L;
  pk_network *net = NULL;
  pk_matrix *Xq = NULL, *F = NULL;
  pk_status st;
  int i, rc = 1, base;

  for (i = 0; i < M; i++) {
    x[i] = -2.0 + 4.0 * i / (M - 1);
    y[i] = sin(2 * x[i]);
  }
  for (i = 0; i < NQ; i++) xq[i] = -1.7 + 0.8 * i;
  snprintf(path, sizeof path, "%s/pathkernel-embed-%ld.pk", tmp && *tmp ? tmp : "/tmp", (long)getpid());

  L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "embed_host: cannot create a Lua state\n");
    return 1;
  }
  luaL_openlibs(L);
  setup_pathkernel(L);

  /* script(X, Y, Xq, path) -> predictions, relative error, description */
  lua_pushcfunction(L, traceback);
  base = lua_gettop(L);
  if (luaL_loadfile(L, script) != LUA_OK) {
    fprintf(stderr, "embed_host: %s\n", lua_tostring(L, -1));
    goto done;
  }
  push_column(L, x, M, 1);
  push_column(L, y, M, 0);
  push_column(L, xq, NQ, 1);
  lua_pushstring(L, path);
  if (lua_pcall(L, 4, 3, base) != LUA_OK) {
    fprintf(stderr, "embed_host: the script failed: %s\n", lua_tostring(L, -1));
    goto done;
  }
  if (!lua_istable(L, -3) || !lua_isnumber(L, -2) || !lua_isstring(L, -1)) {
    fprintf(stderr, "embed_host: the script must return a table, a number and a string\n");
    goto done;
  }
  for (i = 0; i < NQ; i++) {
    int isnum;
    lua_geti(L, -3, i + 1);
    pred[i] = lua_tonumberx(L, -1, &isnum);
    lua_pop(L, 1);
    if (!isnum) {
      fprintf(stderr, "embed_host: prediction %d is not a number\n", i + 1);
      goto done;
    }
  }
  rel = lua_tonumber(L, -2);
  printf("script: %s\n", lua_tostring(L, -1));
  printf("script: kernel machine vs network, max relative error %.3e\n", rel);

  /* the network the script trained, through the C API */
  if ((st = pk_network_load(&net, path)) || (st = pk_matrix_from_array(&Xq, NQ, 1, xq)) ||
      (st = pk_network_forward(net, Xq, &F))) {
    fprintf(stderr, "embed_host: %s: %s\n", pk_status_name(st), pk_last_error());
    goto done;
  }
  for (i = 0; i < NQ; i++) {
    double c = pk_matrix_get(F, (size_t)i, 0);
    printf("  f(%5.2f): Lua %+.17g  C %+.17g\n", xq[i], pred[i], c);
    if (c != pred[i]) {
      fprintf(stderr, "embed_host: the C API and the script disagree at query %d\n", i + 1);
      goto done;
    }
  }
  if (!(rel <= 1e-9)) {
    fprintf(stderr, "embed_host: the kernel machine is off by %g\n", rel);
    goto done;
  }
  printf("embed_host: ok (the script's results and the C API's agree bit for bit)\n");
  rc = 0;

done:
  pk_matrix_free(F);
  pk_matrix_free(Xq);
  pk_network_free(net);
  lua_close(L);
  remove(path);
  return rc;
}
