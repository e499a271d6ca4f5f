/* lua_network.c - the pathkernel.Network userdata: construction from an
 * option table, forward, Jacobian, parameters, losses, training with
 * callbacks and progress, files. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "lua_pk.h"

/* busy counts the trainings running on the network: their callbacks may
 * try to release it, set its parameters or train it, and must not pull the
 * weights out from under the loop below them. */
typedef struct { pk_network *net; int busy; } nbox;

pk_network *pk_lua_testnetwork(lua_State *L, int idx)
{
  nbox *b = luaL_testudata(L, idx, PK_NETWORK_MT);
  return b ? b->net : NULL;
}

pk_network *pk_lua_checknetwork(lua_State *L, int idx)
{
  nbox *b = pk_lua_checkudata(L, idx, PK_NETWORK_MT);
  if (!b->net) pk_lua_argerror(L, idx, "network has been released");
  return b->net;
}

static pk_network **newnet(lua_State *L)
{
  nbox *b = lua_newuserdatauv(L, sizeof *b, 1);
  b->net = NULL;
  b->busy = 0;
  luaL_setmetatable(L, PK_NETWORK_MT);
  return &b->net;
}

void pk_lua_pushnetwork(lua_State *L, pk_network *net)
{
  if (!lua_checkstack(L, 2)) { pk_network_free(net); luaL_error(L, "stack overflow"); }
  *newnet(L) = net;
}

/* the network at idx, refused while a training of it runs (its callbacks) */
static pk_network *idle(lua_State *L, int idx, const char *what)
{
  nbox *b = pk_lua_checkudata(L, idx, PK_NETWORK_MT);
  if (b->busy)
    luaL_error(L, "network is in use: it cannot be %s from its own training's callbacks", what);
  return pk_lua_checknetwork(L, idx);
}

static int n_release(lua_State *L)
{
  nbox *b = pk_lua_checkudata(L, 1, PK_NETWORK_MT);
  if (b->busy)
    return luaL_error(L, "network is in use: it cannot be released from its own training's callbacks");
  pk_network_free(b->net);
  b->net = NULL;
  return 0;
}

static pk_activation check_act(lua_State *L, const char *name)
{
  int a = pk_activation_from_name(name);
  if (a < 0) luaL_error(L, "unknown activation '%s' (valid: %s)", name, pk_activation_names());
  return (pk_activation)a;
}

/* pk.network{ sizes = {...}, activation = "tanh" | {...}, slope = 0.01 |
 * {...}, parameterization, sigma_w, sigma_b, seed } */
static int l_network(lua_State *L)
{
  static const char *const keys[] = { "sizes", "activation", "slope", "parameterization",
                                      "sigma_w", "sigma_b", "seed", NULL };
  pk_network_spec s;
  size_t n, i, *sizes;
  pk_activation *acts = NULL;
  const char *param;
  pk_status st;
  pk_network **slot;
  pk_lua_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  pk_lua_checkkeys(L, 1, "network", keys);
  memset(&s, 0, sizeof s);
  if (lua_getfield(L, 1, "sizes") != LUA_TTABLE)
    return luaL_error(L, "network: 'sizes' must be a table of layer widths, e.g. {2, 64, 1}");
  n = lua_rawlen(L, 2);
  if (n < 2) return luaL_error(L, "network: 'sizes' needs at least 2 entries (inputs and outputs)");
  if (n > 10000) return luaL_error(L, "network: %d layers is too many", (int)n);
  sizes = lua_newuserdatauv(L, n * sizeof *sizes, 0);            /* index 3 */
  for (i = 0; i < n; i++) {
    lua_Integer v;
    int isint;
    lua_rawgeti(L, 2, (lua_Integer)i + 1);
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v <= 0)
      return luaL_error(L, "network: size %d is %s; widths must be positive integers", (int)i + 1,
                        luaL_tolstring(L, -1, NULL));
    if (v > PK_MAX_DIM) return luaL_error(L, "network: size %d is too large", (int)i + 1);
    sizes[i] = (size_t)v;
    lua_pop(L, 1);
  }
  s.nsizes = n;
  s.sizes = sizes;
  s.act = PK_ACT_TANH;
  switch (lua_getfield(L, 1, "activation")) {                      /* index 4 */
  case LUA_TNIL: break;
  case LUA_TSTRING: s.act = check_act(L, lua_tostring(L, -1)); break;
  case LUA_TTABLE:
    if (lua_rawlen(L, 4) != n - 2)
      return luaL_error(L, "network: 'activation' lists %d names, the network has %d hidden layers",
                        (int)lua_rawlen(L, 4), (int)(n - 2));
    acts = lua_newuserdatauv(L, (n - 2 + 1) * sizeof *acts, 0);
    for (i = 0; i < n - 2; i++) {
      if (lua_rawgeti(L, 4, (lua_Integer)i + 1) != LUA_TSTRING)
        return luaL_error(L, "network: activation %d must be a name", (int)i + 1);
      acts[i] = check_act(L, lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    s.acts = acts;
    break;
  default:
    return luaL_error(L, "network: 'activation' must be a name or a list of names");
  }
  /* leaky_relu's slope: one number, or one per hidden layer */
  s.slope = PK_LEAKY_SLOPE;
  switch (lua_getfield(L, 1, "slope")) {
  case LUA_TNIL: break;
  case LUA_TNUMBER: s.slope = lua_tonumber(L, -1); break;
  case LUA_TTABLE: {
    int t = lua_gettop(L);
    double *sl;
    if (lua_rawlen(L, t) != n - 2)
      return luaL_error(L, "network: 'slope' lists %d numbers, the network has %d hidden layers",
                        (int)lua_rawlen(L, t), (int)(n - 2));
    sl = lua_newuserdatauv(L, (n - 2 + 1) * sizeof *sl, 0);
    for (i = 0; i < n - 2; i++) {
      if (lua_rawgeti(L, t, (lua_Integer)i + 1) != LUA_TNUMBER)
        return luaL_error(L, "network: slope %d must be a number", (int)i + 1);
      sl[i] = lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
    s.slopes = sl;
    break;
  }
  default:
    return luaL_error(L, "network: 'slope' must be a number or a list of numbers");
  }
  param = pk_lua_optstring(L, 1, "parameterization", "ntk");
  if (strcmp(param, "ntk") == 0) s.param = PK_PARAM_NTK;
  else if (strcmp(param, "standard") == 0) s.param = PK_PARAM_STANDARD;
  else return luaL_error(L, "network: unknown parameterization '%s' (valid: ntk, standard)", param);
  s.sigma_w = pk_lua_optnumber(L, 1, "sigma_w", 1.0);
  s.sigma_b = pk_lua_optnumber(L, 1, "sigma_b", 0.1);
  pk_lua_optfield(L, 1, "seed");
  s.seed = pk_lua_optseed(L, -1);
  lua_pop(L, 1);
  slot = newnet(L);
  if ((st = pk_network_new(slot, &s))) return pk_lua_error(L, st);
  return 1;
}

static int n_forward(lua_State *L)
{
  pk_network *net = pk_lua_checknetwork(L, 1);
  pk_matrix *X = pk_lua_checkmatrix(L, 2);
  pk_matrix **slot = pk_lua_newmatrix(L);
  pk_status st = pk_network_forward(net, X, slot);
  if (st) return pk_lua_error(L, st);
  return 1;
}

static int n_jacobian(lua_State *L)
{
  pk_network *net = pk_lua_checknetwork(L, 1);
  pk_matrix *X = pk_lua_checkmatrix(L, 2);
  pk_matrix **slot = pk_lua_newmatrix(L);
  pk_status st = pk_network_jacobian(net, X, slot);
  if (st) return pk_lua_error(L, st);
  return 1;
}

static int n_nparams(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)pk_network_nparams(pk_lua_checknetwork(L, 1)));
  return 1;
}

static int n_params(lua_State *L)
{
  pk_network *net = pk_lua_checknetwork(L, 1);
  pk_matrix **slot = pk_lua_newmatrix(L);
  pk_status st = pk_matrix_from_array(slot, pk_network_nparams(net), 1, pk_network_params(net));
  if (st) return pk_lua_error(L, st);
  return 1;
}

static int n_set_params(lua_State *L)
{
  pk_network *net = idle(L, 1, "changed (set_params)");
  pk_matrix *t = pk_lua_checkmatrix(L, 2);
  pk_status st;
  if (t->cols != 1 && t->rows != 1)
    return luaL_error(L, "set_params: expected a P x 1 (or 1 x P) matrix, got %dx%d", (int)t->rows, (int)t->cols);
  if (!pk_all_finite(t->data, t->rows * t->cols))
    return luaL_error(L, "set_params: the parameters hold a NaN or infinite value");
  st = pk_network_set_params(net, t->data, t->rows * t->cols);
  if (st) return pk_lua_error(L, st);
  lua_settop(L, 1);
  return 1;
}

static int n_clone(lua_State *L)
{
  pk_network *net = pk_lua_checknetwork(L, 1);
  pk_network **slot = newnet(L);
  pk_status st = pk_network_clone(slot, net);
  if (st) return pk_lua_error(L, st);
  return 1;
}

static int n_sizes(lua_State *L)
{
  pk_network *net = pk_lua_checknetwork(L, 1);
  size_t l, L1 = pk_network_layers(net);
  lua_createtable(L, (int)L1 + 1, 0);
  for (l = 0; l <= L1; l++) {
    lua_pushinteger(L, (lua_Integer)pk_network_size(net, l));
    lua_rawseti(L, -2, (lua_Integer)l + 1);
  }
  return 1;
}

static int n_activations(lua_State *L)
{
  pk_network *net = pk_lua_checknetwork(L, 1);
  size_t l, L1 = pk_network_layers(net);
  lua_createtable(L, (int)L1, 0);
  for (l = 1; l < L1; l++) {
    lua_pushstring(L, pk_activation_name(pk_network_activation(net, l)));
    lua_rawseti(L, -2, (lua_Integer)l);
  }
  return 1;
}

static pk_loss check_loss(lua_State *L, const char *name)
{
  int l = pk_loss_from_name(name);
  if (l < 0) luaL_error(L, "unknown loss '%s' (valid: mse, logistic, softmax)", name);
  return (pk_loss)l;
}

/* net:loss(X, Y [, name]) -> the mean loss */
static int n_loss(lua_State *L)
{
  pk_network *net = pk_lua_checknetwork(L, 1);
  pk_matrix *X = pk_lua_checkmatrix(L, 2), *Y = pk_lua_checkmatrix(L, 3);
  pk_loss loss = check_loss(L, lua_isnoneornil(L, 4) ? "mse" : pk_lua_checkstring(L, 4));
  pk_matrix **F = pk_lua_newmatrix(L);
  pk_status st;
  double v;
  if ((st = pk_network_forward(net, X, F))) return pk_lua_error(L, st);
  if ((st = pk_loss_check(loss, Y, X->rows, pk_network_size(net, pk_network_layers(net)))))
    return pk_lua_error(L, st);
  pk_loss_eval(loss, (*F)->data, X->rows, (*F)->cols, Y, NULL, &v, NULL);
  lua_pushnumber(L, v);
  return 1;
}

/* ---- training ------------------------------------------------------------ */

typedef struct train_ctx {
  lua_State *L;
  int lr_fn, on_step;      /* stack indices or 0 */
  int failed;              /* a Lua callback raised: its error is on top */
  int stopped;             /* on_step returned false */
  pk_lua_progress prog;
} train_ctx;

static pk_status lr_cb(void *ud, size_t step, double *lr)
{
  train_ctx *c = ud;
  lua_State *L = c->L;
  lua_pushvalue(L, c->lr_fn);
  lua_pushinteger(L, (lua_Integer)step);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    c->failed = 1;
    return pk_fail(PK_ECANCEL, "lr function failed");
  }
  if (lua_type(L, -1) != LUA_TNUMBER) {
    lua_pushfstring(L, "train: the lr function returned %s at step %d, not a number",
                    luaL_typename(L, -1), (int)step);
    c->failed = 1;
    return pk_fail(PK_ECANCEL, "lr function failed");
  }
  *lr = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return PK_OK;
}

static int on_step_cb(void *ud, size_t step, double loss)
{
  train_ctx *c = ud;
  lua_State *L = c->L;
  c->prog.loss = loss;
  if (!c->on_step) return 0;
  lua_pushvalue(L, c->on_step);
  lua_pushinteger(L, (lua_Integer)step);
  lua_pushnumber(L, loss);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    c->failed = 1;
    return 1;
  }
  if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) c->stopped = 1;
  lua_pop(L, 1);
  return c->stopped;
}

/* Read the training options at idx into o; pushes nothing permanent. */
void pk_lua_train_opts(lua_State *L, int idx, pk_network *net, pk_train_opts *o,
                       pk_matrix **X, pk_matrix **Y)
{
  const char *loss, *opt;
  lua_Integer steps, epochs, bs;
  pk_train_opts_init(o);
  if (pk_lua_optfield(L, idx, "X") == LUA_TNIL) luaL_error(L, "train: option X (the inputs) is required");
  *X = pk_lua_checkoptmatrix(L, -1, "X");
  lua_pop(L, 1);
  if (pk_lua_optfield(L, idx, "Y") == LUA_TNIL) luaL_error(L, "train: option Y (the targets) is required");
  *Y = pk_lua_checkoptmatrix(L, -1, "Y");
  lua_pop(L, 1);
  loss = pk_lua_optstring(L, idx, "loss", "mse");
  o->loss = check_loss(L, loss);
  opt = pk_lua_optstring(L, idx, "optimizer", "gd");
  if (pk_optimizer_from_name(opt) < 0)
    luaL_error(L, "unknown optimizer '%s' (valid: %s)", opt, pk_optimizer_names());
  o->optimizer = (pk_optimizer)pk_optimizer_from_name(opt);
  {
    /* hyperparameters, each only where it means something */
    static const struct { const char *name; unsigned mask; } hp[] = {
      { "momentum", 1u << PK_OPT_MOMENTUM | 1u << PK_OPT_NESTEROV },
      { "dampening", 1u << PK_OPT_MOMENTUM },
      { "beta1", 1u << PK_OPT_ADAM | 1u << PK_OPT_ADAMW },
      { "beta2", 1u << PK_OPT_ADAM | 1u << PK_OPT_ADAMW },
      { "eps", 1u << PK_OPT_ADAM | 1u << PK_OPT_ADAMW },
      { "weight_decay", 0x3fu },
    };
    static const char *const valid[] = {
      "weight_decay", "weight_decay", "momentum, dampening, weight_decay", "momentum, weight_decay",
      "beta1, beta2, eps, weight_decay", "beta1, beta2, eps, weight_decay"
    };
    double *dst[6];
    size_t k;
    dst[0] = &o->hyper.momentum;
    dst[1] = &o->hyper.dampening;
    dst[2] = &o->hyper.beta1;
    dst[3] = &o->hyper.beta2;
    dst[4] = &o->hyper.eps;
    dst[5] = &o->hyper.weight_decay;
    if (o->optimizer == PK_OPT_ADAMW) o->hyper.weight_decay = 0.01;   /* torch's default */
    for (k = 0; k < 6; k++) {
      int t = pk_lua_optfield(L, idx, hp[k].name);
      if (t != LUA_TNIL) {
        if (!(hp[k].mask & (1u << o->optimizer)))
          luaL_error(L, "train: %s is not a hyperparameter of %s (its hyperparameters: %s)",
                     hp[k].name, opt, valid[o->optimizer]);
        if (t != LUA_TNUMBER) luaL_error(L, "train: %s must be a number", hp[k].name);
        *dst[k] = lua_tonumber(L, -1);
      }
      lua_pop(L, 1);
    }
  }
  bs = 0;
  if (pk_lua_optfield(L, idx, "batch_size") != LUA_TNIL) bs = pk_lua_checkint(L, -1, 1, "batch_size");
  lua_pop(L, 1);
  o->batch_size = (size_t)bs;
  if (o->optimizer == PK_OPT_SGD && bs == 0) o->batch_size = 32;
  steps = epochs = 0;
  if (pk_lua_optfield(L, idx, "steps") != LUA_TNIL) steps = pk_lua_checkint(L, -1, 1, "steps");
  if (pk_lua_optfield(L, idx, "epochs") != LUA_TNIL) epochs = pk_lua_checkint(L, -1, 1, "epochs");
  lua_pop(L, 2);
  if (steps && epochs) luaL_error(L, "train: give steps or epochs, not both");
  if (epochs) {
    size_t b = o->optimizer != PK_OPT_GD && o->batch_size ? o->batch_size : (*X)->rows;
    size_t per = b && (*X)->rows ? ((*X)->rows + b - 1) / b : 1;
    if ((lua_Unsigned)epochs > (lua_Unsigned)LUA_MAXINTEGER / per) luaL_error(L, "train: too many epochs");
    steps = epochs * (lua_Integer)per;
  }
  if (!steps) steps = 100;
  o->steps = (size_t)steps;
  if (pk_lua_optfield(L, idx, "lr") == LUA_TNUMBER) {
    o->lr = lua_tonumber(L, -1);
    if (!(o->lr > 0 && isfinite(o->lr))) luaL_error(L, "train: lr must be positive and finite, got %f", o->lr);
  } else if (!lua_isnil(L, -1) && !lua_isfunction(L, -1)) {
    luaL_error(L, "train: lr must be a number or a function of the step");
  }
  lua_pop(L, 1);
  pk_lua_optfield(L, idx, "seed");
  o->seed = pk_lua_optseed(L, -1);
  lua_pop(L, 1);
  if (pk_lua_optfield(L, idx, "weights") != LUA_TNIL) {
    pk_matrix *Wt = pk_lua_checkoptmatrix(L, -1, "weights");
    if (pk_matrix_rows(Wt) != pk_matrix_rows(*X) || pk_matrix_cols(Wt) != 1)
      luaL_error(L, "train: option 'weights' must be an m x 1 matrix, one loss weight per row of X "
                 "(%d x 1), got %d x %d", (int)pk_matrix_rows(*X), (int)pk_matrix_rows(Wt),
                 (int)pk_matrix_cols(Wt));
    o->weights = pk_matrix_cdata(Wt);
  }
  lua_pop(L, 1);
  (void)net;
}

/* net:train{ ... } -> losses | trajectory [, kernel machine] */
static int n_train(lua_State *L)
{
  static const char *const keys[] = { "X", "Y", "loss", "optimizer", "lr", "steps", "epochs",
                                      "batch_size", "seed", "on_step", "progress", "record",
                                      "explain", "rule", "nodes", "momentum", "dampening",
                                      "beta1", "beta2", "eps", "weight_decay", "weights", NULL };
  pk_network *net = idle(L, 1, "trained");
  nbox *box = lua_touserdata(L, 1);
  pk_train_opts o;
  pk_matrix *X, *Y, *Xq = NULL;
  train_ctx c;
  double *losses;
  size_t done = 0, i, every = 0;
  pk_trajectory *traj = NULL;
  pk_machine *km = NULL;
  pk_rule rule = PK_RULE_GAUSS;
  int nodes = PK_DEFAULT_NODES, ix;
  pk_status st;
  pk_lua_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  pk_lua_checkkeys(L, 2, "train", keys);
  pk_lua_train_opts(L, 2, net, &o, &X, &Y);
  memset(&c, 0, sizeof c);
  c.L = L;
  if (pk_lua_optfield(L, 2, "lr") == LUA_TFUNCTION) {      /* index 3 */
    c.lr_fn = 3;
    o.lr_fn = lr_cb;
    o.lr_ud = &c;
  }
  if (pk_lua_optfield(L, 2, "on_step") == LUA_TFUNCTION) c.on_step = 4;   /* index 4 */
  else if (!lua_isnil(L, 4)) return luaL_error(L, "train: on_step must be a function");
  o.on_step = on_step_cb;
  o.on_step_ud = &c;
  pk_lua_optfield(L, 2, "progress");                       /* index 5 */
  switch (pk_lua_optfield(L, 2, "record")) {               /* index 6 */
  case LUA_TNIL: break;
  case LUA_TBOOLEAN: every = lua_toboolean(L, 6) ? 1 : 0; break;
  case LUA_TTABLE: {
    static const char *const rkeys[] = { "every", NULL };
    pk_lua_checkkeys(L, 6, "record", rkeys);
    if (pk_lua_optfield(L, 6, "every") == LUA_TNIL) every = 1;
    else every = (size_t)pk_lua_checkint(L, -1, 1, "record.every");
    lua_pop(L, 1);
    break;
  }
  default: return luaL_error(L, "train: record must be true or { every = k }");
  }
  if (pk_lua_optfield(L, 2, "explain") != LUA_TNIL) pk_lua_checkoptmatrix(L, 7, "explain");   /* index 7 */
  pk_lua_rule_opts(L, 2, &rule, &nodes);
  pk_lua_progress_init(L, &c.prog, 5, "train", &o.call);     /* index 8: its guard */
  c.prog.show_loss = 1;
  if ((st = pk_check_bytes_hint(o.steps, sizeof(double), "the loss history", "train for fewer steps")))
    return pk_lua_error(L, st);
  losses = lua_newuserdatauv(L, o.steps * sizeof(double), 0);  /* index 9 */
  /* Training runs on views of X, Y and the queries: a callback that
   * releases them cannot free what the loop reads, and a trajectory takes
   * the views of X and Y as its own. */
  ix = lua_gettop(L) + 1;
  pk_lua_optfield(L, 2, "X");                                  /* ix */
  pk_lua_optfield(L, 2, "Y");                                  /* ix + 1 */
  X = pk_lua_pinmatrix(L, ix);                                 /* ix + 2 */
  Y = pk_lua_pinmatrix(L, ix + 1);                             /* ix + 3 */
  if (o.weights) {
    /* the weights too (a trajectory copies them) */
    pk_lua_optfield(L, 2, "weights");
    o.weights = pk_matrix_cdata(pk_lua_pinmatrix(L, lua_gettop(L)));
  }
  if (!lua_isnil(L, 7)) Xq = pk_lua_pinmatrix(L, 7);
  box->busy++;
  st = pk_train_full(net, X, Y, &o, every, every ? &traj : NULL, Xq, rule, nodes, 1,
                     Xq ? &km : NULL, losses, &done);
  box->busy--;
  if (c.failed || c.prog.failed) {
    /* a Lua callback raised: its error is on top of the stack */
    pk_trajectory_free(traj);
    pk_machine_free(km);
    c.prog.failed = 0;
    pk_lua_progress_done(&c.prog);
    return lua_error(L);
  }
  pk_lua_progress_done(&c.prog);
  if (st && !(st == PK_ECANCEL && c.stopped)) {
    pk_trajectory_free(traj);
    pk_machine_free(km);
    return pk_lua_error(L, st);
  }
  if (traj) {
    pk_lua_pushtrajectory(L, traj, 1, ix, ix + 1);    /* it holds its own views */
  } else {
    lua_createtable(L, (int)done, 0);
    for (i = 0; i < done; i++) {
      lua_pushnumber(L, losses[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
  }
  if (km) {
    pk_lua_pushmachine(L, km, 0);
    return 2;
  }
  return 1;
}

/* ---- files and printing -------------------------------------------------- */

static int n_save(lua_State *L)
{
  pk_network *net = pk_lua_checknetwork(L, 1);
  pk_status st = pk_network_save(net, pk_lua_checkpath(L, 2));
  if (st) return pk_lua_fail(L, st);
  lua_pushboolean(L, 1);
  return 1;
}

int pk_lua_load_network(lua_State *L, const char *path)
{
  pk_network **slot = newnet(L);
  pk_status st = pk_network_load(slot, path);
  if (st == PK_EIO) return pk_lua_fail(L, st);
  if (st) return pk_lua_error(L, st);
  return 1;
}

static int n_tostring(lua_State *L)
{
  nbox *b = pk_lua_checkudata(L, 1, PK_NETWORK_MT);
  pk_network *net = b->net;
  luaL_Buffer buf;
  size_t l, L1;
  char tmp[64];
  if (!net) {
    lua_pushliteral(L, "pathkernel.Network (released)");
    return 1;
  }
  L1 = pk_network_layers(net);
  luaL_buffinit(L, &buf);
  luaL_addstring(&buf, "pathkernel.Network ");
  for (l = 0; l <= L1; l++) {
    snprintf(tmp, sizeof tmp, "%s%zu", l ? " -> " : "", pk_network_size(net, l));
    luaL_addstring(&buf, tmp);
    if (l >= 1 && l < L1) {
      pk_activation a = pk_network_activation(net, l);
      luaL_addstring(&buf, " ");
      luaL_addstring(&buf, pk_activation_name(a));
      if (a == PK_ACT_LEAKY_RELU) {
        snprintf(tmp, sizeof tmp, "(%g)", pk_network_slope(net, l));
        luaL_addstring(&buf, tmp);
      }
    }
  }
  snprintf(tmp, sizeof tmp, " (%zu parameters, %s parameterization)", pk_network_nparams(net),
           pk_network_param(net) == PK_PARAM_NTK ? "ntk" : "standard");
  luaL_addstring(&buf, tmp);
  luaL_pushresult(&buf);
  return 1;
}

void pk_lua_open_network(lua_State *L)
{
  static const luaL_Reg meta[] = {
    { "__gc", n_release }, { "__close", n_release }, { "__tostring", n_tostring },
    { NULL, NULL }
  };
  static const luaL_Reg methods[] = {
    { "forward", n_forward }, { "jacobian", n_jacobian }, { "nparams", n_nparams },
    { "params", n_params }, { "set_params", n_set_params }, { "clone", n_clone },
    { "sizes", n_sizes }, { "activations", n_activations }, { "loss", n_loss },
    { "train", n_train }, { "save", n_save }, { "release", n_release }, { NULL, NULL }
  };
  luaL_newmetatable(L, PK_NETWORK_MT);
  pk_lua_setfuncs(L, meta, "");
  lua_newtable(L);
  pk_lua_setfuncs(L, methods, "");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushcfunction(L, l_network);
  lua_setfield(L, -2, "network");
  pk_lua_setname(L, l_network, "network");
}
