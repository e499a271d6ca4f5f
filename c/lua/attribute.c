/* attribute.c - the pk.attribute table: exact metagradients, the standard
 * attribution baselines (TracIn, influence functions, representer
 * values), the weights' per-example shares, and the evaluation by
 * retraining (the linear datamodeling score, remove-top-k). Argument and
 * option checking and the results' shapes only; the work is the core's. */
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "aux.h"

static pk_matrix *checkm(lua_State *L, int idx) { return pkL_check(L, idx, &pkL_Matrix); }
static pk_matrix **newm(lua_State *L) { return &pkL_newbox(L, &pkL_Matrix)->u.matrix; }

/* The matrix at idx (a value the function pushed, named what in
 * messages), or NULL when the value is no matrix. */
static pk_matrix *testm(lua_State *L, int idx, const char *fname, const char *what)
{
  pkL_box *b = pkL_testbox(L, idx, &pkL_Matrix);
  if (!b) return NULL;
  if (!b->u.matrix) luaL_error(L, "%s: %s: matrix has been released", fname, what);
  return b->u.matrix;
}

static size_t outputs_of(const pk_network *net)
{
  return pk_network_size(net, pk_network_layers(net));
}

/* The option `output` (its value at v, 0 when absent) for nq queries of a
 * network with K outputs: NULL (every output), or an array of nq 0-based
 * outputs, pushed as a userdata, from a number (every query) or a table
 * of one per query. */
static size_t *opt_outputs(lua_State *L, int v, const char *fname, size_t nq, size_t K)
{
  size_t *out, q;
  if (!v) return NULL;
  out = lua_newuserdatauv(L, (nq ? nq : 1) * sizeof *out, 0);
  if (lua_type(L, v) == LUA_TNUMBER) {
    int isint;
    lua_Integer k = lua_tointegerx(L, v, &isint);
    if (!isint || k < 1 || (lua_Unsigned)k > (lua_Unsigned)K)
      luaL_error(L, "%s: option 'output' must be in 1..%d (or a table of one per query), got %s",
                 fname, (int)K, lua_tostring(L, v));
    for (q = 0; q < nq; q++) out[q] = (size_t)k - 1;
  } else if (lua_type(L, v) == LUA_TTABLE) {
    if (lua_rawlen(L, v) != nq)
      luaL_error(L, "%s: option 'output' must list one output per query (%d), got %d", fname,
                 (int)nq, (int)lua_rawlen(L, v));
    for (q = 0; q < nq; q++) {
      int isint = 0;
      lua_Integer k;
      lua_rawgeti(L, v, (lua_Integer)q + 1);
      k = lua_tointegerx(L, -1, &isint);
      if (!isint || k < 1 || (lua_Unsigned)k > (lua_Unsigned)K)
        luaL_error(L, "%s: option 'output': entry %d must be an integer in 1..%d", fname,
                   (int)q + 1, (int)K);
      out[q] = (size_t)k - 1;
      lua_pop(L, 1);
    }
  } else {
    pkL_opterror(L, v, fname, "output", "an integer or a table");
  }
  return out;
}

/* Push the (nq nk) x m score matrix at idx as itself (nk = 1) or as a
 * table of nk matrices nq x m, one per output. */
static void push_scores(lua_State *L, int idx, size_t nk)
{
  pk_matrix *S = checkm(L, idx);
  size_t R = pk_matrix_rows(S), m = pk_matrix_cols(S), nq = nk ? R / nk : 0, k, x;
  if (nk == 1) {
    lua_pushvalue(L, idx);
    return;
  }
  lua_createtable(L, (int)nk, 0);
  for (k = 0; k < nk; k++) {
    pk_matrix **slot = newm(L);
    pkL_raise(L, pk_matrix_new(slot, nq, m));
    for (x = 0; x < nq; x++)
      memcpy(pk_matrix_data(*slot) + x * m, pk_matrix_cdata(S) + (x * nk + k) * m,
             m * sizeof(double));
    lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
}

/* ---- methods of a recorded run ---------------------------------------------- */

typedef struct traj_args {
  int output, progress;
  size_t every;
} traj_args;

/* pk.attribute.metagradient(traj, Xq [, { output, progress }]) and
 * pk.attribute.tracin(traj, Xq [, { every, output, progress }]): the
 * queries pinned, the trajectory busy during the work */
static int traj_scores(lua_State *L, int tracin)
{
  static const pkL_option mg_spec[] = {
    { "output", PKL_VALUE, .offset = offsetof(traj_args, output) },
    { "progress", PKL_VALUE, .offset = offsetof(traj_args, progress) },
    { NULL, 0, .offset = 0 }
  };
  static const pkL_option tr_spec[] = {
    { "every", PKL_SIZE, .offset = offsetof(traj_args, every), .lo = 1 },
    { "output", PKL_VALUE, .offset = offsetof(traj_args, output) },
    { "progress", PKL_VALUE, .offset = offsetof(traj_args, progress) },
    { NULL, 0, .offset = 0 }
  };
  pk_trajectory *t = pkL_check(L, 1, &pkL_Trajectory);
  const char *fname = pkL_fname(L);
  size_t K = outputs_of(pk_trajectory_network0(t)), *out;
  traj_args a = { 0, 0, 1 };
  pk_matrix *Xq, **S;
  pkL_call *c;
  pk_status st;
  int is;
  checkm(L, 2);
  lua_settop(L, 3);
  pkL_options(L, 3, NULL, tracin ? tr_spec : mg_spec, &a);
  out = opt_outputs(L, a.output, fname, pk_matrix_rows(checkm(L, 2)), K);
  Xq = pkL_pin(L, 2);
  c = pkL_begin(L, tracin ? "tracin" : "metagradient", a.progress);
  pkL_hold(c, 1);
  S = newm(L);
  is = lua_gettop(L);
  st = tracin ? pk_attribute_tracin(t, Xq, a.every, out, &c->opts, S)
              : pk_attribute_metagradient(t, Xq, out, &c->opts, S);
  pkL_end(c);
  pkL_raise(L, st);
  push_scores(L, is, out ? 1 : K);
  pkL_account(L);
  return 1;
}

static int a_metagradient(lua_State *L) { return traj_scores(L, 0); }
static int a_tracin(lua_State *L) { return traj_scores(L, 1); }

typedef struct weights_args {
  lua_Integer layer;
  int progress;
} weights_args;

/* pk.attribute.weights(traj [, { layer, progress }]) -> shares, decay */
static int a_weights(lua_State *L)
{
  static const pkL_option spec[] = {
    { "layer", PKL_INTEGER, .offset = offsetof(weights_args, layer), .lo = 1 },
    { "progress", PKL_VALUE, .offset = offsetof(weights_args, progress) },
    { NULL, 0, .offset = 0 }
  };
  pk_trajectory *t = pkL_check(L, 1, &pkL_Trajectory);
  size_t nl = pk_network_layers(pk_trajectory_network0(t));
  weights_args a = { 0, 0 };
  pk_matrix **sh, **dec;
  pkL_call *c;
  pk_status st;
  int is;
  lua_settop(L, 2);
  pkL_options(L, 2, NULL, spec, &a);
  if ((lua_Unsigned)a.layer > (lua_Unsigned)nl)
    return luaL_error(L, "%s: layer must be in 1..%d, got %I", pkL_fname(L), (int)nl, a.layer);
  c = pkL_begin(L, "weights", a.progress);
  pkL_hold(c, 1);
  sh = newm(L);
  is = lua_gettop(L);
  dec = newm(L);
  st = pk_attribute_weights(t, a.layer ? (size_t)a.layer - 1 : SIZE_MAX, &c->opts, sh, dec);
  pkL_end(c);
  pkL_raise(L, st);
  lua_pushvalue(L, is);
  lua_pushvalue(L, is + 1);
  pkL_account(L);
  return 2;
}

/* ---- methods of a trained network ------------------------------------------- */

/* the options every network method takes; first in each method's struct */
typedef struct net_common {
  int output, progress;
} net_common;

typedef struct net_call {
  pk_network *net;
  pk_matrix *X, *Y, *Xq;
  size_t K, *out;
  pkL_call *c;
} net_call;

/* (net, X, Y, Xq [, options]): the options into a (a struct that begins
 * with a net_common), the data and queries pinned, the network busy */
static void net_head(lua_State *L, const pkL_option *spec, void *a, const char *label,
                     net_call *n)
{
  net_common *cm = a;
  n->net = pkL_check(L, 1, &pkL_Network);
  checkm(L, 2);
  checkm(L, 3);
  checkm(L, 4);
  lua_settop(L, 5);
  pkL_options(L, 5, NULL, spec, a);
  n->K = outputs_of(n->net);
  n->out = opt_outputs(L, cm->output, pkL_fname(L), pk_matrix_rows(checkm(L, 4)), n->K);
  n->X = pkL_pin(L, 2);
  n->Y = pkL_pin(L, 3);
  n->Xq = pkL_pin(L, 4);
  n->c = pkL_begin(L, label, cm->progress);
  pkL_hold(n->c, 1);
}

typedef struct influence_args {
  net_common cm;
  pk_influence_opts io;
  int solver;
} influence_args;

/* pk.attribute.influence(net, X, Y, Xq [, { loss, damping, solver, tol,
 * maxiter, output, progress }]) -> scores, info */
static int a_influence(lua_State *L)
{
  static const char *const solvers[] = { "exact", "cg", NULL };   /* pk_solver's order */
#define IA(f) .offset = offsetof(influence_args, f)
  static const pkL_option spec[] = {
    { "loss", PKL_CUSTOM, IA(io.loss), .set = pkL_setloss },
    { "damping", PKL_NUMBER, IA(io.damping) },
    { "solver", PKL_ENUM, IA(solver), .names = solvers },
    { "tol", PKL_NUMBER, IA(io.tol) },
    { "maxiter", PKL_SIZE, IA(io.maxiter), .lo = 1 },
    { "output", PKL_VALUE, IA(cm.output) },
    { "progress", PKL_VALUE, IA(cm.progress) },
    { NULL, 0, .offset = 0 }
  };
#undef IA
  influence_args a;
  pk_influence_info info;
  net_call n;
  pk_matrix **S;
  pk_status st;
  int is;
  memset(&a, 0, sizeof a);
  pk_influence_opts_init(&a.io);
  a.solver = (int)a.io.solver;
  /* checked before the work starts: the options are read in net_head */
  net_head(L, spec, &a, "influence", &n);
  a.io.solver = (pk_solver)a.solver;
  if (!(a.io.damping >= 0) || !isfinite(a.io.damping))
    return luaL_error(L, "%s: option 'damping' must be finite and >= 0, got %f", pkL_fname(L),
                      a.io.damping);
  if (!(a.io.tol > 0 && a.io.tol < 1))
    return luaL_error(L, "%s: option 'tol' must be in (0, 1), got %f", pkL_fname(L), a.io.tol);
  S = newm(L);
  is = lua_gettop(L);
  st = pk_attribute_influence(n.net, n.X, n.Y, n.Xq, &a.io, n.out, &n.c->opts, S, &info);
  pkL_end(n.c);
  pkL_raise(L, st);
  push_scores(L, is, n.out ? 1 : n.K);
  lua_createtable(L, 0, 2);
  if (a.io.solver == PK_SOLVER_EXACT) {
    pkL_setnumber(L, "min_eigenvalue", info.min_eig);
    pkL_setnumber(L, "max_eigenvalue", info.max_eig);
  } else {
    lua_pushinteger(L, (lua_Integer)info.iterations);
    lua_setfield(L, -2, "iterations");
    pkL_setnumber(L, "residual", info.residual);
  }
  pkL_account(L);
  return 2;
}

typedef struct representer_args {
  net_common cm;
  double lambda;
  pk_loss loss;
  int targets;
} representer_args;

/* pk.attribute.representer(net, X, Y, Xq [, { lambda, loss, targets,
 * output, progress }]) -> scores, info */
static int a_representer(lua_State *L)
{
  static const char *const targets[] = { "model", "labels", NULL };
#define RA(f) .offset = offsetof(representer_args, f)
  static const pkL_option spec[] = {
    { "lambda", PKL_NUMBER, RA(lambda) },
    { "loss", PKL_CUSTOM, RA(loss), .set = pkL_setloss },
    { "targets", PKL_ENUM, RA(targets), .names = targets },
    { "output", PKL_VALUE, RA(cm.output) },
    { "progress", PKL_VALUE, RA(cm.progress) },
    { NULL, 0, .offset = 0 }
  };
#undef RA
  representer_args a = { { 0, 0 }, 0.003, PK_LOSS_MSE, 0 };
  pk_representer_info info;
  net_call n;
  pk_matrix **sc, **al, **fit;
  pk_status st;
  int is;
  net_head(L, spec, &a, "representer", &n);
  if (!(a.lambda > 0) || !isfinite(a.lambda))
    return luaL_error(L, "%s: option 'lambda' must be positive and finite, got %f", pkL_fname(L),
                      a.lambda);
  sc = newm(L);
  is = lua_gettop(L);
  al = newm(L);
  fit = newm(L);
  st = pk_attribute_representer(n.net, n.X, n.Y, n.Xq, a.loss, a.lambda, a.targets, n.out,
                                &n.c->opts, sc, al, fit, &info);
  pkL_end(n.c);
  pkL_raise(L, st);
  push_scores(L, is, n.out ? 1 : n.K);
  lua_createtable(L, 0, 4);
  lua_pushvalue(L, is + 1);
  lua_setfield(L, -2, "alpha");
  lua_pushvalue(L, is + 2);
  lua_setfield(L, -2, "fitted");
  pkL_setnumber(L, "gradient", info.grad_max);
  lua_pushinteger(L, (lua_Integer)info.iterations);
  lua_setfield(L, -2, "iterations");
  pkL_account(L);
  return 2;
}

/* ---- evaluation by retraining: lds and remove_top --------------------------- */

/* The score matrix of one method (the value at v, named name) for the
 * queries' outputs: a matrix nq x m, or a table of K of them (one per
 * output; query q takes its row from matrix qout[q]). Pushes the nq x m
 * selection and returns it. */
static pk_matrix *select_scores(lua_State *L, int v, const char *fname, const char *name,
                                size_t nq, size_t m, size_t K, const size_t *qout)
{
  pk_matrix *S = testm(L, v, fname, "scores"), **slot;
  size_t q, k;
  if (S) {
    if (pk_matrix_rows(S) != nq || pk_matrix_cols(S) != m)
      luaL_error(L, "%s: scores.%s must be %d x %d (queries x training examples), got %d x %d",
                 fname, name, (int)nq, (int)m, (int)pk_matrix_rows(S), (int)pk_matrix_cols(S));
    lua_pushvalue(L, v);
    return S;
  }
  if (lua_type(L, v) != LUA_TTABLE || lua_rawlen(L, v) != K || K < 2)
    luaL_error(L, "%s: scores.%s must be a matrix (queries x training examples)%s, got %s", fname,
               name, K > 1 ? " or a table of one per output" : "", pkL_typeof(L, v));
  for (k = 0; k < K; k++) {
    pk_matrix *Sk;
    lua_rawgeti(L, v, (lua_Integer)k + 1);
    Sk = testm(L, -1, fname, "scores");
    if (!Sk || pk_matrix_rows(Sk) != nq || pk_matrix_cols(Sk) != m)
      luaL_error(L, "%s: scores.%s[%d] must be a %d x %d matrix (queries x training examples)",
                 fname, name, (int)k + 1, (int)nq, (int)m);
    lua_pop(L, 1);
  }
  slot = newm(L);
  pkL_raise(L, pk_matrix_new(slot, nq, m));
  for (q = 0; q < nq; q++) {
    lua_rawgeti(L, v, (lua_Integer)qout[q] + 1);
    memcpy(pk_matrix_data(*slot) + q * m, pk_matrix_cdata(testm(L, -1, fname, "scores")) + q * m,
           m * sizeof(double));
    lua_pop(L, 1);
  }
  return *slot;
}

/* Check every entry of the option scores (its value at v), so that nothing
 * is retrained for scores that would be refused afterwards. */
static void check_scores(lua_State *L, int v, const char *fname, size_t nq, size_t m, size_t K,
                         const size_t *qout)
{
  if (!v) luaL_error(L, "%s: option 'scores' is required", fname);
  if (lua_type(L, v) != LUA_TTABLE)
    pkL_opterror(L, v, fname, "scores", "a table of named score matrices");
  lua_pushnil(L);
  while (lua_next(L, v)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "%s: option 'scores' must have string keys (method names)", fname);
    select_scores(L, lua_gettop(L), fname, lua_tostring(L, -2), nq, m, K, qout);
    lua_pop(L, 2);
  }
}

/* the queries' outputs (option `output` at v): output 1 by default */
static size_t *query_outputs(lua_State *L, int v, const char *fname, size_t nq, size_t K)
{
  size_t *o = opt_outputs(L, v, fname, nq, K), q;
  if (o) return o;
  o = lua_newuserdatauv(L, (nq ? nq : 1) * sizeof *o, 0);
  for (q = 0; q < nq; q++) o[q] = 0;
  return o;
}

/* the options of lds and remove_top */
typedef struct eval_args {
  int net, train, scores, output, progress, reuse, k;   /* stack indices, or 0 */
  pk_matrix *X, *Y, *Xq;
  lua_Integer subsets, seed;
  double fraction;
} eval_args;

/* the option `train`: net:train's options that shape a run */
typedef struct run_args {
  pk_train_opts o;          /* first: pkL_sethyper reads the optimizer here */
  lua_Integer steps, epochs, seed;
  int lr;
  pk_matrix *W;
} run_args;

/* What retraining needs: the initial network (busy during the work), the
 * data and queries (pinned), the run's options. */
typedef struct retrain {
  pk_network *net;
  pk_matrix *X, *Y, *Xq;
  size_t K;
  run_args r;
} retrain;

/* The option train (its value at v, 0 when absent) for a run on rows
 * examples; loss weights pinned (a callback may release them). */
static void read_run(lua_State *L, int v, const char *fname, lua_Integer seed, size_t rows,
                     run_args *r)
{
#define RU(f) .offset = offsetof(run_args, f)
  static const pkL_option spec[] = {
    { "loss", PKL_CUSTOM, RU(o.loss), .set = pkL_setloss },
    { "optimizer", PKL_CUSTOM, RU(o), .set = pkL_setoptimizer },
    { "lr", PKL_VALUE, RU(lr) },
    { "steps", PKL_INTEGER, RU(steps), .lo = 1 },
    { "epochs", PKL_INTEGER, RU(epochs), .lo = 1 },
    { "batch_size", PKL_SIZE, RU(o.batch_size), .lo = 1 },
    { "seed", PKL_INTEGER, RU(seed) },
    { "momentum", PKL_CUSTOM, RU(o.hyper.momentum), .set = pkL_sethyper },
    { "dampening", PKL_CUSTOM, RU(o.hyper.dampening), .set = pkL_sethyper },
    { "beta1", PKL_CUSTOM, RU(o.hyper.beta1), .set = pkL_sethyper },
    { "beta2", PKL_CUSTOM, RU(o.hyper.beta2), .set = pkL_sethyper },
    { "eps", PKL_CUSTOM, RU(o.hyper.eps), .set = pkL_sethyper },
    { "weight_decay", PKL_CUSTOM, RU(o.hyper.weight_decay), .set = pkL_sethyper },
    { "weights", PKL_MATRIX, RU(W) },
    { NULL, 0, .offset = 0 }
  };
#undef RU
  const char *tf = lua_pushfstring(L, "%s: option 'train'", fname);
  memset(r, 0, sizeof *r);
  pk_train_opts_init(&r->o);
  r->seed = seed;                       /* the run's seed: the call's unless train has one */
  if (v && lua_type(L, v) != LUA_TTABLE)
    pkL_opterror(L, v, fname, "train", "a table of net:train's options");
  if (!v) lua_pushnil(L);               /* no train table: every option absent */
  pkL_options(L, v ? v : -1, tf, spec, r);
  if (r->lr) {
    if (lua_type(L, r->lr) != LUA_TNUMBER)
      luaL_error(L, "%s: train.lr must be a number here (a function of the step is not "
                 "supported for retraining), got %s", fname, pkL_typeof(L, r->lr));
    r->o.lr = lua_tonumber(L, r->lr);
    if (!(r->o.lr > 0 && isfinite(r->o.lr)))
      luaL_error(L, "%s: train.lr must be positive and finite, got %f", fname, r->o.lr);
  }
  r->o.steps = pkL_trainsteps(L, tf, &r->o, rows, r->steps, r->epochs);
  r->o.seed = (uint64_t)r->seed;
  if (r->W) {
    const pk_matrix *W;
    size_t i;
    lua_getfield(L, v, "weights");
    W = pkL_pin(L, -1);
    if (pk_matrix_rows(W) != rows || pk_matrix_cols(W) != 1)
      luaL_error(L, "%s: train.weights must be an m x 1 matrix, one loss weight per row of X "
                 "(%d x 1), got %d x %d", fname, (int)rows, (int)pk_matrix_rows(W),
                 (int)pk_matrix_cols(W));
    r->o.weights = pk_matrix_cdata(W);
    for (i = 0; i < rows; i++)
      if (!(r->o.weights[i] >= 0) || !isfinite(r->o.weights[i]))
        luaL_error(L, "%s: train.weights: entry %d is %f; loss weights must be finite and >= 0",
                   fname, (int)i + 1, r->o.weights[i]);
  }
}

/* the options net, X, Y, Xq and train of the table at 1 (read into a)
 * into rt: the data and queries pinned (what is checked is what the work
 * reads) */
static void retrain_head(lua_State *L, const char *fname, const eval_args *a, retrain *rt)
{
  static const char *const need[] = { "X", "Y", "Xq" };
  static const char *const note[] = { "the inputs", "the targets", "the queries" };
  pk_matrix **pinned[3];
  pkL_box *b;
  int i;
  if (!a->net) luaL_error(L, "%s: option 'net' (the initial network) is required", fname);
  if (!(b = pkL_testbox(L, a->net, &pkL_Network)))
    pkL_opterror(L, a->net, fname, "net", "a pathkernel.Network");
  if (!b->u.network) luaL_error(L, "%s: option 'net': network has been released", fname);
  rt->net = b->u.network;
  pinned[0] = &rt->X;
  pinned[1] = &rt->Y;
  pinned[2] = &rt->Xq;
  for (i = 0; i < 3; i++) {
    if (!(i == 0 ? a->X : i == 1 ? a->Y : a->Xq))
      luaL_error(L, "%s: option '%s' (%s) is required", fname, need[i], note[i]);
    lua_getfield(L, 1, need[i]);
    *pinned[i] = pkL_pin(L, -1);
  }
  read_run(L, a->train, fname, a->seed, pk_matrix_rows(rt->X), &rt->r);
  rt->K = outputs_of(rt->net);
  if (pk_matrix_cols(rt->Xq) != pk_network_size(rt->net, 0))
    luaL_error(L, "%s: the queries Xq have %d columns, the network takes %d inputs", fname,
               (int)pk_matrix_cols(rt->Xq), (int)pk_network_size(rt->net, 0));
}

/* the outputs of J runs (J x (nq K)) as one matrix J x nq (K = 1) or a
 * table of K of them, pushed */
static void push_outputs(lua_State *L, const pk_matrix *F, size_t nq, size_t K)
{
  size_t J = pk_matrix_rows(F), k, j, q;
  if (K > 1) lua_createtable(L, (int)K, 0);
  for (k = 0; k < K; k++) {
    pk_matrix **slot = newm(L);
    pkL_raise(L, pk_matrix_new(slot, J, nq));
    for (j = 0; j < J; j++)
      for (q = 0; q < nq; q++)
        pk_matrix_data(*slot)[j * nq + q] = pk_matrix_cdata(F)[(j * nq + q) * K + k];
    if (K > 1) lua_rawseti(L, -2, (lua_Integer)k + 1);
  }
}

/* lds{ reuse = data }: the masks and outputs of an earlier lds, pushed;
 * their shapes into J, m, nq, K */
static void read_reuse(lua_State *L, int v, const char *fname, size_t *J, size_t *m, size_t *nq,
                       size_t *K)
{
  pk_matrix *masks, *O;
  size_t k;
  int io;
  if (lua_type(L, v) != LUA_TTABLE)
    luaL_error(L, "%s: option 'reuse' must be the second value of an earlier lds", fname);
  lua_getfield(L, v, "masks");
  masks = testm(L, -1, fname, "reuse.masks");
  lua_getfield(L, v, "outputs");
  io = lua_gettop(L);
  O = testm(L, io, fname, "reuse.outputs");
  if (!masks || (!O && lua_type(L, io) != LUA_TTABLE))
    luaL_error(L, "%s: option 'reuse' must be the second value of an earlier lds (masks and "
               "outputs)", fname);
  *J = pk_matrix_rows(masks);
  *m = pk_matrix_cols(masks);
  if (O) {
    *K = 1;
    *nq = pk_matrix_cols(O);
  } else {
    *K = lua_rawlen(L, io);
    lua_rawgeti(L, io, 1);
    if (*K < 2 || !(O = testm(L, -1, fname, "reuse.outputs")))
      luaL_error(L, "%s: option 'reuse': outputs must be a matrix or a table of one per output",
                 fname);
    *nq = pk_matrix_cols(O);
    lua_pop(L, 1);
  }
  for (k = 0; k < *K; k++) {
    if (*K > 1) lua_rawgeti(L, io, (lua_Integer)k + 1);
    else lua_pushvalue(L, io);
    O = testm(L, -1, fname, "reuse.outputs");
    if (!O || pk_matrix_rows(O) != *J || pk_matrix_cols(O) != *nq)
      luaL_error(L, "%s: option 'reuse': outputs[%d] must be %d x %d (subsets x queries)", fname,
                 (int)k + 1, (int)*J, (int)*nq);
    lua_pop(L, 1);
  }
  if (*J < 2) luaL_error(L, "%s: option 'reuse': needs at least 2 subsets", fname);
}

#define EA(f) .offset = offsetof(eval_args, f)

/* pk.attribute.lds{ net, X, Y, train, Xq, scores, subsets, fraction, seed,
 * output, reuse, progress } -> results, data */
static int a_lds(lua_State *L)
{
  static const pkL_option spec[] = {
    { "net", PKL_VALUE, EA(net) }, { "X", PKL_MATRIX, EA(X) }, { "Y", PKL_MATRIX, EA(Y) },
    { "train", PKL_VALUE, EA(train) }, { "Xq", PKL_MATRIX, EA(Xq) },
    { "scores", PKL_VALUE, EA(scores) }, { "subsets", PKL_INTEGER, EA(subsets), .lo = 2 },
    { "fraction", PKL_NUMBER, EA(fraction) }, { "seed", PKL_INTEGER, EA(seed) },
    { "output", PKL_VALUE, EA(output) }, { "reuse", PKL_VALUE, EA(reuse) },
    { "progress", PKL_VALUE, EA(progress) },
    { NULL, 0, .offset = 0 }
  };
  const char *fname = pkL_fname(L);
  eval_args a;
  size_t J, m, nq, K, q, j, *qout;
  pk_matrix *masks, *observed;
  int imasks, iouts, ires;
  pkL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  memset(&a, 0, sizeof a);
  a.subsets = 100;
  a.fraction = 0.5;
  a.seed = 1;
  pkL_options(L, 1, NULL, spec, &a);
  if (!(a.fraction > 0 && a.fraction < 1))
    return luaL_error(L, "%s: option 'fraction' must be in (0, 1), got %f", fname, a.fraction);
  if (a.reuse) {
    read_reuse(L, a.reuse, fname, &J, &m, &nq, &K);
    imasks = lua_gettop(L) - 1;
    iouts = lua_gettop(L);
    qout = query_outputs(L, a.output, fname, nq, K);
    check_scores(L, a.scores, fname, nq, m, K, qout);
  } else {
    retrain rt;
    pk_matrix **slot, **F;
    pkL_call *c;
    pk_status st;
    int iF;
    retrain_head(L, fname, &a, &rt);
    J = (size_t)a.subsets;
    nq = pk_matrix_rows(rt.Xq);
    m = pk_matrix_rows(rt.X);
    K = rt.K;
    qout = query_outputs(L, a.output, fname, nq, K);
    check_scores(L, a.scores, fname, nq, m, K, qout);
    slot = newm(L);
    imasks = lua_gettop(L);
    pkL_raise(L, pk_attribute_subsets(J, m, a.fraction, (uint64_t)a.seed, slot));
    F = newm(L);
    iF = lua_gettop(L);
    c = pkL_begin(L, "lds", a.progress);
    pkL_hold(c, a.net);
    st = pk_attribute_retrain(rt.net, rt.X, rt.Y, &rt.r.o, rt.Xq, *slot, &c->opts, fname, F);
    pkL_end(c);
    pkL_raise(L, st);
    push_outputs(L, checkm(L, iF), nq, K);
    iouts = lua_gettop(L);
  }
  masks = checkm(L, imasks);
  /* observed[j, q]: run j's output qout[q] for query q */
  {
    pk_matrix **slot = newm(L);
    pkL_raise(L, pk_matrix_new(slot, J, nq));
    observed = *slot;
  }
  for (q = 0; q < nq; q++) {
    pk_matrix *O;
    if (K > 1) lua_rawgeti(L, iouts, (lua_Integer)qout[q] + 1);
    else lua_pushvalue(L, iouts);
    O = checkm(L, -1);
    for (j = 0; j < J; j++) pk_matrix_data(observed)[j * nq + q] = pk_matrix_cdata(O)[j * nq + q];
    lua_pop(L, 1);
  }
  lua_newtable(L);
  ires = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, a.scores)) {
    pk_matrix *S = select_scores(L, lua_gettop(L), fname, lua_tostring(L, -2), nq, m, K, qout);
    pk_matrix **pq = newm(L);
    double mean, se;
    size_t defined;
    pkL_raise(L, pk_matrix_new(pq, nq, 1));
    pkL_raise(L, pk_attribute_lds(masks, observed, S, pk_matrix_data(*pq), &mean, &se, &defined));
    lua_createtable(L, 0, 4);
    pkL_setnumber(L, "lds", mean);
    pkL_setnumber(L, "se", se);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "per_query");
    lua_pushinteger(L, (lua_Integer)defined);
    lua_setfield(L, -2, "defined");
    lua_pushvalue(L, -5);                       /* the key */
    lua_insert(L, -2);
    lua_settable(L, ires);
    lua_pop(L, 3);                              /* per_query, selection, value */
  }
  /* the data: masks and outputs, for lds{ ..., reuse = data } */
  lua_createtable(L, 0, 5);
  lua_pushvalue(L, imasks);
  lua_setfield(L, -2, "masks");
  lua_pushvalue(L, iouts);
  lua_setfield(L, -2, "outputs");
  lua_pushinteger(L, (lua_Integer)J);
  lua_setfield(L, -2, "subsets");
  if (!a.reuse) {
    pkL_setnumber(L, "fraction", a.fraction);
    lua_pushinteger(L, a.seed);
    lua_setfield(L, -2, "seed");
  } else {
    lua_getfield(L, a.reuse, "fraction");
    lua_setfield(L, -2, "fraction");
    lua_getfield(L, a.reuse, "seed");
    lua_setfield(L, -2, "seed");
  }
  lua_pushvalue(L, ires);
  lua_insert(L, -2);
  pkL_account(L);
  return 2;
}

/* the option k of remove_top (its value at v): a number or a list of
 * them, each in 1..m-1; pushed as a userdata */
static size_t *read_ks(lua_State *L, int v, const char *fname, size_t m, size_t *nks)
{
  size_t *ks, i;
  int t = v ? lua_type(L, v) : LUA_TNIL;
  if (t != LUA_TNIL && t != LUA_TNUMBER && t != LUA_TTABLE)
    pkL_opterror(L, v, fname, "k", "a number or a table of numbers");
  *nks = t == LUA_TTABLE ? lua_rawlen(L, v) : 1;
  if (*nks == 0) luaL_error(L, "%s: option 'k' lists no k", fname);
  ks = lua_newuserdatauv(L, *nks * sizeof *ks, 0);
  for (i = 0; i < *nks; i++) {
    lua_Integer k;
    int isint = 0;
    if (t == LUA_TNIL) lua_pushinteger(L, 10);
    else if (t == LUA_TNUMBER) lua_pushvalue(L, v);
    else lua_rawgeti(L, v, (lua_Integer)i + 1);
    k = lua_tointegerx(L, -1, &isint);
    if (!isint || k < 1 || (lua_Unsigned)k >= (lua_Unsigned)m)
      luaL_error(L, "%s: option 'k': entry %d must be an integer in 1..%d (fewer than the "
                 "training examples)", fname, (int)i + 1, (int)m - 1);
    ks[i] = (size_t)k;
    lua_pop(L, 1);
  }
  return ks;
}

/* the mean over the nq queries of column i of M (nq x nks) */
static double column_mean(const pk_matrix *M, size_t nq, size_t nks, size_t i)
{
  double sum = 0;
  size_t q;
  for (q = 0; q < nq; q++) sum += pk_matrix_cdata(M)[q * nks + i];
  return nq ? sum / (double)nq : NAN;
}

/* pk.attribute.remove_top{ net, X, Y, train, Xq, scores, k, output, seed,
 * progress } -> results, the full run's outputs */
static int a_remove_top(lua_State *L)
{
  static const pkL_option spec[] = {
    { "net", PKL_VALUE, EA(net) }, { "X", PKL_MATRIX, EA(X) }, { "Y", PKL_MATRIX, EA(Y) },
    { "train", PKL_VALUE, EA(train) }, { "Xq", PKL_MATRIX, EA(Xq) },
    { "scores", PKL_VALUE, EA(scores) }, { "k", PKL_VALUE, EA(k) },
    { "output", PKL_VALUE, EA(output) }, { "seed", PKL_INTEGER, EA(seed) },
    { "progress", PKL_VALUE, EA(progress) },
    { NULL, 0, .offset = 0 }
  };
  const char *fname = pkL_fname(L);
  eval_args a;
  retrain rt;
  size_t nq, m, nks, i, *qout, *ks;
  int ires, ifull, classifier;
  pkL_call *c;
  pk_status st = PK_OK;
  pkL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  memset(&a, 0, sizeof a);
  a.seed = 1;
  pkL_options(L, 1, NULL, spec, &a);
  retrain_head(L, fname, &a, &rt);
  nq = pk_matrix_rows(rt.Xq);
  m = pk_matrix_rows(rt.X);
  ks = read_ks(L, a.k, fname, m, &nks);
  qout = query_outputs(L, a.output, fname, nq, rt.K);
  check_scores(L, a.scores, fname, nq, m, rt.K, qout);
  classifier = rt.r.o.loss != PK_LOSS_MSE;
  lua_pushnil(L);
  ifull = lua_gettop(L);                        /* the full run's outputs, once known */
  lua_newtable(L);
  ires = lua_gettop(L);
  c = pkL_begin(L, "remove_top", a.progress);
  pkL_hold(c, a.net);
  lua_pushnil(L);
  while (lua_next(L, a.scores)) {
    int top = lua_gettop(L), ichange, iflip;    /* top: the value; top - 1: its key */
    pk_matrix *S = select_scores(L, top, fname, lua_tostring(L, -2), nq, m, rt.K, qout);
    pk_matrix **full, **change, **flipped;
    full = newm(L);
    if (lua_isnil(L, ifull)) {
      lua_pushvalue(L, -1);
      lua_replace(L, ifull);
    }
    change = newm(L);
    ichange = lua_gettop(L);
    flipped = newm(L);
    iflip = lua_gettop(L);
    st = pk_attribute_remove_top(rt.net, rt.X, rt.Y, &rt.r.o, rt.Xq, S, qout, ks, nks, &c->opts,
                                 full, change, flipped);
    /* a callback's error may be on top: touch nothing before pkL_end */
    if (st) break;
    lua_createtable(L, 0, 5);
    lua_createtable(L, (int)nks, 0);
    for (i = 0; i < nks; i++) {
      lua_pushinteger(L, (lua_Integer)ks[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "k");
    lua_createtable(L, (int)nks, 0);
    for (i = 0; i < nks; i++) {
      lua_pushnumber(L, column_mean(*change, nq, nks, i));
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "mean_change");
    lua_pushvalue(L, ichange);
    lua_setfield(L, -2, "change");
    if (classifier) {
      lua_createtable(L, (int)nks, 0);
      for (i = 0; i < nks; i++) {
        lua_pushnumber(L, column_mean(*flipped, nq, nks, i));
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      lua_setfield(L, -2, "flip_rate");
      lua_pushvalue(L, iflip);
      lua_setfield(L, -2, "flipped");
    }
    lua_pushvalue(L, top - 1);
    lua_insert(L, -2);
    lua_settable(L, ires);
    lua_settop(L, top - 1);                     /* the key, for lua_next */
  }
  pkL_end(c);
  pkL_raise(L, st);
  lua_pushvalue(L, ires);
  lua_pushvalue(L, ifull);
  pkL_account(L);
  return 2;
}

#undef EA

void pkL_open_attribute(lua_State *L)
{
  static const luaL_Reg fns[] = {
    { "metagradient", a_metagradient }, { "tracin", a_tracin }, { "influence", a_influence },
    { "representer", a_representer }, { "weights", a_weights }, { "lds", a_lds },
    { "remove_top", a_remove_top }, { NULL, NULL }
  };
  pkL_subtable(L, "attribute");
  pkL_setfuncs(L, fns, "attribute.");
  lua_pop(L, 1);
}
