/* lua_trajectory.c - what the old network file still pushes: trajectories
 * and kernel machines (their methods are in c/lua/), and the rule option. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "lua_pk.h"

/* busy counts the calls running on a machine: a progress callback may try
 * to release it or to use it for other queries (which replaces its cached
 * results), and must not pull them out from under the call below it. */
typedef struct { pk_machine *km; int busy; } mbox;

/* The trajectory's user value is a table { net = <Network>, version = n,
 * X = <Matrix>, Y = <Matrix> }: the network it trained (to detect later
 * changes) and the training data it borrows. No explicit release: kernel
 * machines borrow the trajectory, and the garbage collector knows that. */

void pk_lua_pushtrajectory(lua_State *L, pk_trajectory *t, int net, int X, int Y)
{
  net = lua_absindex(L, net);
  X = lua_absindex(L, X);
  Y = lua_absindex(L, Y);
  if (!lua_checkstack(L, 4)) { pk_trajectory_free(t); luaL_error(L, "stack overflow"); }
  pkL_newbox(L, &pkL_Trajectory)->u.trajectory = t;
  lua_createtable(L, 0, 4);
  if (net) {
    lua_pushvalue(L, net);
    lua_setfield(L, -2, "net");
    lua_pushinteger(L, (lua_Integer)pk_network_version(pk_lua_checknetwork(L, net)));
    lua_setfield(L, -2, "version");
  }
  lua_pushvalue(L, X);
  lua_setfield(L, -2, "X");
  lua_pushvalue(L, Y);
  lua_setfield(L, -2, "Y");
  lua_setiuservalue(L, -2, 1);
  pk_trajectory_detach_source(t);    /* the binding checks the version itself */
}

/* push km; keep (0: none) is kept alive as its user value */
void pk_lua_pushmachine(lua_State *L, pk_machine *km, int keep)
{
  mbox *b;
  if (keep) keep = lua_absindex(L, keep);
  if (!lua_checkstack(L, 3)) { pk_machine_free(km); luaL_error(L, "stack overflow"); }
  b = lua_newuserdatauv(L, sizeof *b, 1);
  b->km = km;
  b->busy = 0;
  luaL_setmetatable(L, PK_MACHINE_MT);
  if (keep) {
    lua_pushvalue(L, keep);
    lua_setiuservalue(L, -2, 1);
  }
}

static int parse_rule(lua_State *L, int idx, pk_rule *rule, int *nodes)
{
  const char *r = pk_lua_optstring(L, idx, "rule", "gauss");
  lua_Integer n;
  if (strcmp(r, "gauss") == 0) *rule = PK_RULE_GAUSS;
  else if (strcmp(r, "left") == 0) *rule = PK_RULE_LEFT;
  else return luaL_error(L, "unknown rule '%s' (valid: gauss, left)", r);
  n = pk_lua_optinteger(L, idx, "nodes", *rule == PK_RULE_LEFT ? 1 : PK_DEFAULT_NODES);
  if (n < 1 || n > 16) return luaL_error(L, "nodes must be in 1..16, got %d", (int)n);
  if (*rule == PK_RULE_LEFT && n != 1) return luaL_error(L, "the left rule has exactly 1 node");
  *nodes = (int)n;
  return 0;
}

void pk_lua_rule_opts(lua_State *L, int idx, pk_rule *rule, int *nodes)
{
  parse_rule(L, idx, rule, nodes);
}
