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

/* error unless the trained network is unchanged since recording */
static void check_source(lua_State *L, int idx)
{
  lua_getiuservalue(L, idx, 1);
  if (lua_getfield(L, -1, "net") == LUA_TUSERDATA) {
    pk_network *net = pk_lua_testnetwork(L, -1);
    lua_getfield(L, -2, "version");
    if (!net || (lua_Integer)pk_network_version(net) != lua_tointeger(L, -1))
      luaL_error(L, "the network was changed (trained again, set_params or released) after this "
                 "trajectory was recorded; its kernel machine would no longer describe it");
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
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

pk_machine *pk_lua_checkmachine(lua_State *L, int idx)
{
  mbox *b = pk_lua_checkudata(L, idx, PK_MACHINE_MT);
  if (!b->km) pk_lua_argerror(L, idx, "kernel machine has been released");
  return b->km;
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

/* pk.machine.from_trajectory(traj [, { rule, nodes }]) */
static int l_from_trajectory(lua_State *L)
{
  static const char *const keys[] = { "rule", "nodes", NULL };
  pk_trajectory *t = pk_lua_checktrajectory(L, 1);
  pk_machine *km;
  pk_rule rule;
  int nodes;
  pk_status st;
  if (!lua_isnoneornil(L, 2)) pk_lua_checktype(L, 2, LUA_TTABLE);
  pk_lua_checkkeys(L, 2, "from_trajectory", keys);
  parse_rule(L, 2, &rule, &nodes);
  check_source(L, 1);
  if ((st = pk_machine_from_trajectory(&km, t, rule, nodes))) return pk_lua_error(L, st);
  pk_lua_pushmachine(L, km, 1);
  return 1;
}

/* the options table of a machine method at idx: { progress = } */
static void call_opts(lua_State *L, int idx, pk_lua_progress *p, pk_call_opts *o, const char *label)
{
  static const char *const keys[] = { "progress", "output", NULL };
  if (!lua_isnoneornil(L, idx)) pk_lua_checktype(L, idx, LUA_TTABLE);
  pk_lua_checkkeys(L, idx, NULL, keys);     /* named after the method, not the label */
  pk_lua_optfield(L, idx, "progress");
  pk_lua_progress_init(L, p, -1, label, o);
}

/* before using a machine: not from its own progress callback, and its
 * trajectory's network unchanged */
static pk_machine *usable(lua_State *L, int idx)
{
  mbox *b = pk_lua_checkudata(L, idx, PK_MACHINE_MT);
  pk_machine *km;
  if (b->busy)
    luaL_error(L, "kernel machine is in use: its own progress callback cannot use it");
  km = pk_lua_checkmachine(L, idx);
  if (pk_machine_is_online(km)) return km;
  if (lua_getiuservalue(L, idx, 1) == LUA_TUSERDATA) check_source(L, lua_gettop(L));
  lua_pop(L, 1);
  return km;
}

/* the queries at idx (2), pinned: a callback that releases them cannot
 * free what the decomposition reads */
static pk_matrix *queries(lua_State *L)
{
  pk_lua_checkmatrix(L, 2);
  return pk_lua_pinmatrix(L, 2);
}

static int km_predict(lua_State *L)
{
  pk_machine *km = usable(L, 1);
  mbox *b = lua_touserdata(L, 1);
  pk_matrix *Xq;
  pk_lua_progress p;
  pk_call_opts o;
  pk_matrix **slot;
  pk_status st;
  pk_lua_checkmatrix(L, 2);
  lua_settop(L, 3);
  call_opts(L, 3, &p, &o, "decomposition");
  Xq = queries(L);
  slot = pk_lua_newmatrix(L);
  b->busy++;
  st = pk_machine_predict(km, Xq, &o, slot);
  b->busy--;
  pk_lua_progress_done(&p);
  if (st) return pk_lua_error(L, st);
  return 1;
}

/* push the nq x m slices of every output: one matrix, or a table of K */
static int push_slices(lua_State *L, pk_machine *km, pk_matrix *Xq, int kernel, pk_call_opts *o,
                       pk_lua_progress *p)
{
  size_t k, K = pk_machine_outputs(km);
  mbox *b = lua_touserdata(L, 1);
  pk_status st;
  b->busy++;
  st = pk_machine_compute(km, Xq, kernel, o);
  b->busy--;
  pk_lua_progress_done(p);
  if (st) return pk_lua_error(L, st);
  if (K > 1) lua_createtable(L, (int)K, 0);
  for (k = 0; k < K; k++) {
    pk_matrix **slot = pk_lua_newmatrix(L);
    if ((st = pk_machine_slice(km, Xq, k, kernel, NULL, slot))) return pk_lua_error(L, st);
    if (K > 1) lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
  return 1;
}

static int km_contributions(lua_State *L)
{
  pk_machine *km = usable(L, 1);
  pk_matrix *Xq;
  pk_lua_progress p;
  pk_call_opts o;
  pk_lua_checkmatrix(L, 2);
  lua_settop(L, 3);
  call_opts(L, 3, &p, &o, "decomposition");
  Xq = queries(L);
  return push_slices(L, km, Xq, 0, &o, &p);
}

/* km:coefficients(Xq) -> a, Kp, undefined: a_i(x) = contribution / Kp where
 * Kp != 0; NaN where Kp = 0, each such entry listed in `undefined` as
 * { query = , example = , output = } */
static int km_coefficients(lua_State *L)
{
  pk_machine *km = usable(L, 1);
  pk_matrix *Xq = pk_lua_checkmatrix(L, 2);
  pk_lua_progress p;
  pk_call_opts o;
  size_t k, K = pk_machine_outputs(km), m = pk_machine_examples(km), x, i, nq = pk_matrix_rows(Xq);
  int nund = 0, ikp, ia, iu;
  lua_settop(L, 3);
  call_opts(L, 3, &p, &o, "decomposition");                /* pushes the progress field */
  Xq = queries(L);
  push_slices(L, km, Xq, 1, &o, &p);
  ikp = lua_gettop(L);                                     /* Kp */
  push_slices(L, km, Xq, 0, NULL, &p);
  ia = lua_gettop(L);                                      /* contributions -> a */
  lua_newtable(L);
  iu = lua_gettop(L);                                      /* undefined entries */
  for (k = 0; k < K; k++) {
    pk_matrix *kp, *a;
    if (K > 1) {
      lua_rawgeti(L, ikp, (lua_Integer)k + 1);
      lua_rawgeti(L, ia, (lua_Integer)k + 1);
      kp = pk_lua_checkmatrix(L, -2);
      a = pk_lua_checkmatrix(L, -1);
      lua_pop(L, 2);
    } else {
      kp = pk_lua_checkmatrix(L, ikp);
      a = pk_lua_checkmatrix(L, ia);
    }
    for (x = 0; x < nq; x++)
      for (i = 0; i < m; i++) {
        double kv = pk_matrix_get(kp, x, i);
        if (kv == 0) {
          pk_matrix_set(a, x, i, NAN);
          lua_createtable(L, 0, 3);
          lua_pushinteger(L, (lua_Integer)x + 1);
          lua_setfield(L, -2, "query");
          lua_pushinteger(L, (lua_Integer)i + 1);
          lua_setfield(L, -2, "example");
          lua_pushinteger(L, (lua_Integer)k + 1);
          lua_setfield(L, -2, "output");
          lua_rawseti(L, iu, ++nund);
        } else {
          pk_matrix_set(a, x, i, pk_matrix_get(a, x, i) / kv);
        }
      }
  }
  lua_pushvalue(L, ia);
  lua_pushvalue(L, ikp);
  lua_pushvalue(L, iu);
  return 3;
}

static int km_regularization(lua_State *L)
{
  pk_machine *km = usable(L, 1);
  mbox *b = lua_touserdata(L, 1);
  pk_matrix *Xq;
  pk_lua_progress p;
  pk_call_opts o;
  pk_matrix **slot;
  pk_status st;
  size_t n;
  pk_lua_checkmatrix(L, 2);
  lua_settop(L, 3);
  call_opts(L, 3, &p, &o, "decomposition");
  Xq = queries(L);
  b->busy++;
  st = pk_machine_compute(km, Xq, 0, &o);
  b->busy--;
  pk_lua_progress_done(&p);
  if (st) return pk_lua_error(L, st);
  n = pk_matrix_rows(Xq);
  slot = pk_lua_newmatrix(L);
  if ((st = pk_matrix_new(slot, n, km->K))) return pk_lua_error(L, st);
  {
    size_t x, k;
    for (x = 0; x < n; x++)
      for (k = 0; k < km->K; k++)
        pk_matrix_set(*slot, x, k, km->reg[km->map[x] * km->K + k]);
  }
  return 1;
}

typedef struct ranked { size_t i; double c, a; } ranked;

/* decreasing |c|, NaN first (an output that overflowed is the thing to
 * see), ties by index: a total order, as qsort needs */
static int by_abs(const void *pa, const void *pb)
{
  const ranked *a = pa, *b = pb;
  int na = isnan(a->a), nb = isnan(b->a);
  if (na != nb) return na ? -1 : 1;
  if (!na && a->a != b->a) return a->a < b->a ? 1 : -1;
  return a->i < b->i ? -1 : (a->i > b->i);
}

/* km:explain(xq, k [, { output = }]) */
static int km_explain(lua_State *L)
{
  pk_machine *km = usable(L, 1);
  mbox *b = lua_touserdata(L, 1);
  pk_matrix *xq = pk_lua_checkmatrix(L, 2);
  lua_Integer top = pk_lua_checkint(L, 3, 1, "k");
  size_t K = pk_machine_outputs(km), m = pk_machine_examples(km), out, i, n, row;
  pk_lua_progress p;
  pk_call_opts o;
  ranked *r;
  double sum = 0, *pred;
  pk_status st;
  if (pk_matrix_rows(xq) != 1)
    return luaL_error(L, "explain: xq must be one query (a 1 x d matrix), got %d rows", (int)pk_matrix_rows(xq));
  lua_settop(L, 4);
  call_opts(L, 4, &p, &o, "decomposition");
  xq = queries(L);
  b->busy++;
  st = pk_machine_compute(km, xq, 1, &o);
  b->busy--;
  pk_lua_progress_done(&p);
  if (st) return pk_lua_error(L, st);
  row = km->map[0];
  pred = km->final + row * K;
  if (pk_lua_optfield(L, 4, "output") != LUA_TNIL) {
    lua_Integer k = pk_lua_checkint(L, -1, 1, "output");
    if ((lua_Unsigned)k > K) return luaL_error(L, "output %d out of range 1..%d", (int)k, (int)K);
    out = (size_t)k - 1;
  } else {
    /* the predicted class for several outputs */
    out = 0;
    for (i = 1; i < K; i++) if (pred[i] > pred[out]) out = i;
  }
  lua_pop(L, 1);
  r = lua_newuserdatauv(L, (m ? m : 1) * sizeof *r, 0);
  for (i = 0; i < m; i++) {
    r[i].i = i;
    r[i].c = km->contrib[(row * K + out) * m + i];
    r[i].a = fabs(r[i].c);
    sum += r[i].c;
  }
  qsort(r, m, sizeof *r, by_abs);
  n = (size_t)top < m ? (size_t)top : m;
  lua_createtable(L, (int)n, 6);
  for (i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)r[i].i + 1);
    lua_setfield(L, -2, "index");
    lua_pushnumber(L, r[i].c);
    lua_setfield(L, -2, "contribution");
    lua_pushnumber(L, km->kp[(row * K + out) * m + r[i].i]);
    lua_setfield(L, -2, "kernel");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_pushinteger(L, (lua_Integer)out + 1);
  lua_setfield(L, -2, "output");
  lua_pushnumber(L, sum);
  lua_setfield(L, -2, "sum");
  lua_pushnumber(L, km->bias[row * K + out]);
  lua_setfield(L, -2, "bias");
  lua_pushnumber(L, km->reg[row * K + out]);
  lua_setfield(L, -2, "regularization");
  lua_pushnumber(L, km->bias[row * K + out] + sum + km->reg[row * K + out]);
  lua_setfield(L, -2, "prediction");
  lua_pushnumber(L, pred[out]);
  lua_setfield(L, -2, "network");
  return 1;
}

static int km_verify(lua_State *L)
{
  pk_machine *km = usable(L, 1);
  mbox *b = lua_touserdata(L, 1);
  pk_matrix *Xq;
  pk_lua_progress p;
  pk_call_opts o;
  double a, r;
  pk_status st;
  pk_lua_checkmatrix(L, 2);
  lua_settop(L, 3);
  call_opts(L, 3, &p, &o, "decomposition");
  Xq = queries(L);
  b->busy++;
  st = pk_machine_verify(km, Xq, &o, &a, &r);
  b->busy--;
  pk_lua_progress_done(&p);
  if (st) return pk_lua_error(L, st);
  lua_pushnumber(L, a);
  lua_pushnumber(L, r);
  return 2;
}

static int km_save(lua_State *L)
{
  pk_machine *km = pk_lua_checkmachine(L, 1);
  pk_status st = pk_machine_save(km, pk_lua_checkpath(L, 2));
  if (st == PK_EIO) return pk_lua_fail(L, st);
  if (st) return pk_lua_error(L, st);
  lua_pushboolean(L, 1);
  return 1;
}

int pk_lua_load_machine(lua_State *L, const char *path)
{
  mbox *b = lua_newuserdatauv(L, sizeof *b, 1);
  pk_status st;
  b->km = NULL;
  b->busy = 0;
  luaL_setmetatable(L, PK_MACHINE_MT);
  st = pk_machine_load(&b->km, path);
  if (st == PK_EIO) return pk_lua_fail(L, st);
  if (st) return pk_lua_error(L, st);
  return 1;
}

static int km_gc(lua_State *L)
{
  mbox *b = pk_lua_checkudata(L, 1, PK_MACHINE_MT);
  if (b->busy)
    return luaL_error(L, "kernel machine is in use: it cannot be released from its own progress callback");
  pk_machine_free(b->km);
  b->km = NULL;
  return 0;
}

static int km_tostring(lua_State *L)
{
  mbox *b = pk_lua_checkudata(L, 1, PK_MACHINE_MT);
  if (!b->km) lua_pushliteral(L, "pathkernel.KernelMachine (released)");
  else lua_pushfstring(L, "pathkernel.KernelMachine over %d training examples (%s, %s rule, %d node%s)",
                       (int)pk_machine_examples(b->km), pk_machine_is_online(b->km) ? "online" : "from a trajectory",
                       b->km->rule == PK_RULE_GAUSS ? "gauss" : "left", b->km->nodes, b->km->nodes > 1 ? "s" : "");
  return 1;
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
  static const luaL_Reg kmeta[] = {
    { "__gc", km_gc }, { "__close", km_gc }, { "__tostring", km_tostring }, { NULL, NULL }
  };
  static const luaL_Reg kmethods[] = {
    { "predict", km_predict }, { "contributions", km_contributions },
    { "coefficients", km_coefficients }, { "explain", km_explain }, { "verify", km_verify },
    { "regularization", km_regularization }, { "save", km_save }, { "release", km_gc },
    { NULL, NULL }
  };
  luaL_newmetatable(L, PK_TRAJECTORY_MT);
  pk_lua_setfuncs(L, tmeta, "");
  lua_newtable(L);
  pk_lua_setfuncs(L, tmethods, "");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, PK_MACHINE_MT);
  pk_lua_setfuncs(L, kmeta, "");
  lua_newtable(L);
  pk_lua_setfuncs(L, kmethods, "");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  if (lua_getfield(L, -1, "machine") != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "machine");
  }
  lua_pushcfunction(L, l_from_trajectory);
  lua_setfield(L, -2, "from_trajectory");
  pk_lua_setname(L, l_from_trajectory, "machine.from_trajectory");
  lua_pop(L, 1);
}
