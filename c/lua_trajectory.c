/* lua_trajectory.c - the pathkernel.Trajectory and pathkernel.KernelMachine
 * userdata: recorded runs, replay, files, and the trained network as a
 * kernel machine over its training examples. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "lua_pk.h"

typedef struct { pk_trajectory *t; } tbox;
/* busy counts the calls running on a machine: a progress callback may try
 * to release it or to use it for other queries (which replaces its cached
 * results), and must not pull them out from under the call below it. */
typedef struct { pk_machine *km; int busy; } mbox;

/* The trajectory's user value is a table { net = <Network>, version = n,
 * X = <Matrix>, Y = <Matrix> }: the network it trained (to detect later
 * changes) and the training data it borrows. No explicit release: kernel
 * machines borrow the trajectory, and the garbage collector knows that. */

pk_trajectory *pk_lua_checktrajectory(lua_State *L, int idx)
{
  tbox *b = pk_lua_checkudata(L, idx, PK_TRAJECTORY_MT);
  if (!b->t) pk_lua_argerror(L, idx, "trajectory has been released");
  return b->t;
}

static pk_trajectory **newtraj(lua_State *L)
{
  tbox *b = lua_newuserdatauv(L, sizeof *b, 1);
  b->t = NULL;
  luaL_setmetatable(L, PK_TRAJECTORY_MT);
  return &b->t;
}

void pk_lua_pushtrajectory(lua_State *L, pk_trajectory *t, int net, int X, int Y)
{
  net = lua_absindex(L, net);
  X = lua_absindex(L, X);
  Y = lua_absindex(L, Y);
  if (!lua_checkstack(L, 4)) { pk_trajectory_free(t); luaL_error(L, "stack overflow"); }
  *newtraj(L) = t;
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

static int t_len(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)pk_trajectory_steps(pk_lua_checktrajectory(L, 1)));
  return 1;
}

static size_t check_step(lua_State *L, int idx, pk_trajectory *t)
{
  lua_Integer s = pk_lua_checkint(L, idx, LUA_MININTEGER, "step");
  if (s < 0 || (lua_Unsigned)s > pk_trajectory_steps(t))
    luaL_error(L, "step %I out of range 0..%d", s, (int)pk_trajectory_steps(t));
  return (size_t)s;
}

static int t_weights(lua_State *L)
{
  pk_trajectory *t = pk_lua_checktrajectory(L, 1);
  size_t s = check_step(L, 2, t), P = pk_network_nparams(pk_trajectory_network0(t));
  pk_matrix **slot = pk_lua_newmatrix(L);
  pk_status st;
  if ((st = pk_matrix_new(slot, P, 1))) return pk_lua_error(L, st);
  if ((st = pk_trajectory_weights(t, s, pk_matrix_data(*slot)))) return pk_lua_error(L, st);
  return 1;
}

static int t_network(lua_State *L)
{
  pk_trajectory *t = pk_lua_checktrajectory(L, 1);
  size_t s = check_step(L, 2, t);
  pk_network *net;
  pk_status st = pk_network_clone(&net, pk_trajectory_network0(t));
  if (st) return pk_lua_error(L, st);
  pk_lua_pushnetwork(L, net);
  if ((st = pk_trajectory_weights(t, s, net->theta))) return pk_lua_error(L, st);
  return 1;
}

/* a per-step series of the trajectory as a Lua array */
static int push_series(lua_State *L, double (*get)(const pk_trajectory *, size_t))
{
  pk_trajectory *t = pk_lua_checktrajectory(L, 1);
  size_t s, T = pk_trajectory_steps(t);
  lua_createtable(L, (int)T, 0);
  for (s = 0; s < T; s++) {
    lua_pushnumber(L, get(t, s));
    lua_rawseti(L, -2, (lua_Integer)s + 1);
  }
  return 1;
}

static int t_losses(lua_State *L) { return push_series(L, pk_trajectory_loss); }
static int t_lrs(lua_State *L) { return push_series(L, pk_trajectory_lr); }

static int t_memory(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)pk_trajectory_memory(pk_lua_checktrajectory(L, 1)));
  return 1;
}

/* traj:batch(s): the 1-based training examples of step s = 1..T (the
 * update from w_{s-1} to w_s), in the order the step took them */
static int t_batch(lua_State *L)
{
  pk_trajectory *t = pk_lua_checktrajectory(L, 1);
  lua_Integer s = pk_lua_checkint(L, 2, LUA_MININTEGER, "step");
  pk_trajectory_info info;
  size_t nb, i, *rows;
  pk_status st;
  if (s < 1 || (lua_Unsigned)s > pk_trajectory_steps(t))
    return luaL_error(L, "batch: step %I out of range 1..%d (step s goes from weights(s-1) to "
                      "weights(s))", s, (int)pk_trajectory_steps(t));
  pk_trajectory_get_info(t, &info);
  if ((st = pk_check_bytes(info.batch_size, sizeof *rows, "batch"))) return pk_lua_error(L, st);
  rows = lua_newuserdatauv(L, (info.batch_size ? info.batch_size : 1) * sizeof *rows, 0);
  if ((st = pk_trajectory_batch(t, (size_t)s - 1, rows, &nb))) return pk_lua_error(L, st);
  lua_createtable(L, (int)nb, 0);
  for (i = 0; i < nb; i++) {
    lua_pushinteger(L, (lua_Integer)rows[i] + 1);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* traj:options(): how the run was trained, in net:train's names */
static int t_options(lua_State *L)
{
  pk_trajectory *t = pk_lua_checktrajectory(L, 1);
  pk_trajectory_info in;
  size_t s, T;
  int varied = 0;
  pk_trajectory_get_info(t, &in);
  T = in.steps;
  lua_createtable(L, 0, 14);
  lua_pushstring(L, pk_optimizer_name(in.optimizer));
  lua_setfield(L, -2, "optimizer");
  lua_pushstring(L, pk_loss_name(in.loss));
  lua_setfield(L, -2, "loss");
  for (s = 1; s < T; s++)
    if (pk_trajectory_lr(t, s) != pk_trajectory_lr(t, 0)) varied = 1;
  if (varied) {         /* a schedule: the rate of every step */
    lua_createtable(L, (int)T, 0);
    for (s = 0; s < T; s++) {
      lua_pushnumber(L, pk_trajectory_lr(t, s));
      lua_rawseti(L, -2, (lua_Integer)s + 1);
    }
  } else if (T) {
    lua_pushnumber(L, pk_trajectory_lr(t, 0));
  } else {
    lua_pushnil(L);
  }
  lua_setfield(L, -2, "lr");
  lua_pushinteger(L, (lua_Integer)T);
  lua_setfield(L, -2, "steps");
  lua_pushinteger(L, (lua_Integer)in.batch_size);
  lua_setfield(L, -2, "batch_size");
  lua_pushinteger(L, (lua_Integer)in.seed);      /* the same integer net:train took */
  lua_setfield(L, -2, "seed");
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, (lua_Integer)in.every);
  lua_setfield(L, -2, "every");
  lua_setfield(L, -2, "record");
  /* the hyperparameters of this optimizer only, as train accepts them */
  lua_pushnumber(L, in.hyper.weight_decay);
  lua_setfield(L, -2, "weight_decay");
  if (in.optimizer == PK_OPT_MOMENTUM || in.optimizer == PK_OPT_NESTEROV) {
    lua_pushnumber(L, in.hyper.momentum);
    lua_setfield(L, -2, "momentum");
  }
  if (in.optimizer == PK_OPT_MOMENTUM) {
    lua_pushnumber(L, in.hyper.dampening);
    lua_setfield(L, -2, "dampening");
  }
  if (in.optimizer == PK_OPT_ADAM || in.optimizer == PK_OPT_ADAMW) {
    lua_pushnumber(L, in.hyper.beta1);
    lua_setfield(L, -2, "beta1");
    lua_pushnumber(L, in.hyper.beta2);
    lua_setfield(L, -2, "beta2");
    lua_pushnumber(L, in.hyper.eps);
    lua_setfield(L, -2, "eps");
  }
  return 1;
}

/* traj:data() -> X, Y, Wt: views of the recorded training data (they keep
 * it alive; changing them is a change of the data, which replay refuses),
 * and a copy of the run's per-example loss weights */
static int t_data(lua_State *L)
{
  pk_trajectory *t = pk_lua_checktrajectory(L, 1);
  pk_matrix **slot;
  pk_status st;
  slot = pk_lua_newmatrix(L);
  if ((st = pk_matrix_view_rows(slot, (pk_matrix *)pk_trajectory_X(t), 0, pk_matrix_rows(pk_trajectory_X(t)))))
    return pk_lua_error(L, st);
  slot = pk_lua_newmatrix(L);
  if ((st = pk_matrix_view_rows(slot, (pk_matrix *)pk_trajectory_Y(t), 0, pk_matrix_rows(pk_trajectory_Y(t)))))
    return pk_lua_error(L, st);
  {
    /* the per-example loss weights, m x 1 (all 1 for a run trained without) */
    const double *lw = pk_trajectory_loss_weights(t);
    size_t i, m = pk_matrix_rows(pk_trajectory_X(t));
    slot = pk_lua_newmatrix(L);
    if ((st = pk_matrix_new(slot, m, 1))) return pk_lua_error(L, st);
    for (i = 0; i < m; i++) pk_matrix_data(*slot)[i] = lw ? lw[i] : 1.0;
  }
  return 3;
}

/* traj:save(path [, { data = true }]) */
static int t_save(lua_State *L)
{
  static const char *const keys[] = { "data", NULL };
  pk_trajectory *t = pk_lua_checktrajectory(L, 1);
  const char *path = pk_lua_checkpath(L, 2);
  int data;
  pk_status st;
  pk_lua_checkkeys(L, 3, "save", keys);
  data = pk_lua_optboolean(L, 3, "data", 1);
  if ((st = pk_trajectory_check_data(t))) return pk_lua_error(L, st);
  if ((st = pk_trajectory_save(t, path, data))) return pk_lua_fail(L, st);
  lua_pushboolean(L, 1);
  return 1;
}

int pk_lua_load_trajectory(lua_State *L, const char *path, int opts)
{
  pk_matrix *X = NULL, *Y = NULL;
  pk_trajectory **slot;
  pk_status st;
  if (pk_lua_optfield(L, opts, "X") != LUA_TNIL) X = pk_lua_checkoptmatrix(L, -1, "X");
  if (pk_lua_optfield(L, opts, "Y") != LUA_TNIL) Y = pk_lua_checkoptmatrix(L, -1, "Y");
  /* index -2: X, -1: Y (or nils) */
  slot = newtraj(L);
  if ((X != NULL) != (Y != NULL)) return luaL_error(L, "load: give both X and Y, or neither");
  st = pk_trajectory_load(slot, path, X, Y);
  if (st == PK_EIO) return pk_lua_fail(L, st);
  if (st) return pk_lua_error(L, st);
  lua_createtable(L, 0, 2);
  if (X) {
    lua_pushvalue(L, -4);
    lua_setfield(L, -2, "X");
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "Y");
  }
  lua_setiuservalue(L, -2, 1);
  return 1;
}

static int t_tostring(lua_State *L)
{
  tbox *b = pk_lua_checkudata(L, 1, PK_TRAJECTORY_MT);
  if (!b->t) lua_pushliteral(L, "pathkernel.Trajectory (released)");
  else {
    char mem[32];
    pk_format_bytes(mem, sizeof mem, (double)pk_trajectory_memory(b->t));
    lua_pushfstring(L, "pathkernel.Trajectory of %d steps (%s)", (int)pk_trajectory_steps(b->t), mem);
  }
  return 1;
}

static int t_gc(lua_State *L)
{
  tbox *b = pk_lua_checkudata(L, 1, PK_TRAJECTORY_MT);
  pk_trajectory_free(b->t);
  b->t = NULL;
  return 0;
}

/* ---- kernel machines ------------------------------------------------------------ */

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

void pk_lua_open_trajectory(lua_State *L)
{
  static const luaL_Reg tmeta[] = {
    { "__gc", t_gc }, { "__len", t_len }, { "__tostring", t_tostring }, { NULL, NULL }
  };
  static const luaL_Reg tmethods[] = {
    { "weights", t_weights }, { "network", t_network }, { "losses", t_losses }, { "lrs", t_lrs },
    { "memory", t_memory }, { "save", t_save }, { "steps", t_len }, { "batch", t_batch },
    { "options", t_options }, { "data", t_data }, { NULL, NULL }
  };
  luaL_newmetatable(L, PK_TRAJECTORY_MT);
  pk_lua_setfuncs(L, tmeta, "");
  lua_newtable(L);
  pk_lua_setfuncs(L, tmethods, "");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}
