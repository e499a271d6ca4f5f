/* init.c - luaopen_pathkernel_core, the top floor: the module table, every
 * type's functions and methods, pk.load (which opens a file by its tag
 * through the type that saved it) and the module-wide settings. */
#include <stddef.h>
#include "aux.h"

typedef struct load_args {
  pk_matrix *X, *Y;
} load_args;

/* pk.load(path [, { X =, Y = }]): opens any saved object by its tag */
static int l_load(lua_State *L)
{
  static const pkL_option spec[] = {
    { "X", PKL_MATRIX, .offset = offsetof(load_args, X) },
    { "Y", PKL_MATRIX, .offset = offsetof(load_args, Y) },
    { NULL, 0, .offset = 0 }
  };
  const char *path = pkL_checkpath(L, 1);
  load_args a = { NULL, NULL };
  pk_tag tag;
  pk_status st;
  pkL_options(L, 2, "load", spec, &a);
  if ((a.X != NULL) != (a.Y != NULL)) return luaL_error(L, "load: give both X and Y, or neither");
  lua_settop(L, 2);
  if ((st = pk_file_tag(path, &tag))) return pkL_ioresult(L, st, 0);
  switch (tag) {
  case PK_TAG_MATRIX: return pkL_load_matrix(L, path);
  case PK_TAG_NETWORK: return pkL_load_network(L, path);
  case PK_TAG_TRAJECTORY: return pkL_load_trajectory(L, path, a.X, a.Y);
  case PK_TAG_MACHINE: return pkL_load_machine(L, path);
  case PK_TAG_REGRESSOR: return pkL_load_regressor(L, path);
  }
  return luaL_error(L, "%s: this build cannot load objects with tag %d", path, (int)tag);
}

static int l_manual_seed(lua_State *L)
{
  pkL_setseed(L, (uint64_t)pkL_checkint(L, 1, LUA_MININTEGER, "seed"));
  return 0;
}

/* pk.clock(): a monotonic wall clock in seconds, for timing experiments */
static int l_clock(lua_State *L)
{
  lua_pushnumber(L, pkL_now());
  return 1;
}

static int l_set_memory_limit(lua_State *L)
{
  pk_set_memory_limit((size_t)pkL_checkint(L, 1, 0, "memory limit"));
  return 0;
}

static int l_memory_limit(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)pk_memory_limit());
  return 1;
}

/* pk.handle_interrupts([on]): this state's setting (true by default),
 * changed when on is given; answers the setting it had */
static int l_handle_interrupts(lua_State *L)
{
  int old = pkL_interrupts(L);
  if (!lua_isnone(L, 1)) {
    pkL_checktype(L, 1, LUA_TBOOLEAN);
    pkL_setinterrupts(L, lua_toboolean(L, 1));
  }
  lua_pushboolean(L, old);
  return 1;
}

#if defined(__GNUC__)
__attribute__((visibility("default")))
#endif
int luaopen_pathkernel_core(lua_State *L);

int luaopen_pathkernel_core(lua_State *L)
{
  static const luaL_Reg fns[] = {
    { "load", l_load }, { "set_memory_limit", l_set_memory_limit },
    { "memory_limit", l_memory_limit }, { "manual_seed", l_manual_seed }, { "clock", l_clock },
    { "handle_interrupts", l_handle_interrupts }, { NULL, NULL }
  };
  luaL_checkversion(L);
  lua_newtable(L);
  pkL_setfuncs(L, fns, "");
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  pkL_open_matrix(L);
  pkL_open_network(L);
  pkL_open_trajectory(L);
  pkL_open_machine(L);
  pkL_open_kernel(L);
  pkL_open_kernels(L);
  pkL_open_regressor(L);
  pkL_open_analysis(L);
  pkL_open_attribute(L);
  return 1;
}
