/* network.c - the pathkernel.Network userdata: construction from an
 * option table, forward, Jacobian, parameters, losses, training with
 * callbacks and progress (answering a trajectory and a kernel machine when
 * asked), files. */
#include <math.h>
#include <stddef.h>
#include <string.h>
#include "aux.h"

static pk_network *checkn(lua_State *L, int idx) { return pkL_check(L, idx, &pkL_Network); }
static pk_matrix *checkm(lua_State *L, int idx) { return pkL_check(L, idx, &pkL_Matrix); }
static pk_matrix **newm(lua_State *L) { return &pkL_newbox(L, &pkL_Matrix)->u.matrix; }
static pk_network **newn(lua_State *L) { return &pkL_newbox(L, &pkL_Network)->u.network; }

static pk_activation check_act(lua_State *L, const char *name)
{
  int a = pk_activation_from_name(name);
  if (a < 0)
    luaL_error(L, "%s: unknown activation '%s' (valid: %s)", pkL_fname(L), name,
               pk_activation_names());
  return (pk_activation)a;
}

/* ---- construction ------------------------------------------------------------ */

typedef struct net_args {
  pk_network_spec s;
  int sizes, act, slope;   /* stack indices of the options that may be lists */
  int param;
} net_args;

/* the widths at idx into a scratch array the GC owns */
static void read_sizes(lua_State *L, int idx, pk_network_spec *s)
{
  size_t n, i, *sizes;
  if (!idx || lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "network: 'sizes' must be a table of layer widths, e.g. {2, 64, 1}");
  n = lua_rawlen(L, idx);
  if (n < 2) luaL_error(L, "network: 'sizes' needs at least 2 entries (inputs and outputs)");
  if (n > 10000) luaL_error(L, "network: %d layers is too many", (int)n);
  sizes = lua_newuserdatauv(L, n * sizeof *sizes, 0);
  for (i = 0; i < n; i++) {
    lua_Integer v;
    int isint;
    lua_rawgeti(L, idx, (lua_Integer)i + 1);
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v <= 0)
      luaL_error(L, "network: size %d is %s; widths must be positive integers", (int)i + 1,
                 luaL_tolstring(L, -1, NULL));
    if (v > PK_MAX_DIM) luaL_error(L, "network: size %d is too large", (int)i + 1);
    sizes[i] = (size_t)v;
    lua_pop(L, 1);
  }
  s->nsizes = n;
  s->sizes = sizes;
}

/* one name for every hidden layer, or a list of them */
static void read_acts(lua_State *L, int idx, pk_network_spec *s)
{
  size_t i, h = s->nsizes - 2;
  pk_activation *acts;
  switch (idx ? lua_type(L, idx) : LUA_TNIL) {
  case LUA_TNIL: return;
  case LUA_TSTRING: s->act = check_act(L, lua_tostring(L, idx)); return;
  case LUA_TTABLE: break;
  default: luaL_error(L, "network: 'activation' must be a name or a list of names");
  }
  if (lua_rawlen(L, idx) != h)
    luaL_error(L, "network: 'activation' lists %d names, the network has %d hidden layers",
               (int)lua_rawlen(L, idx), (int)h);
  acts = lua_newuserdatauv(L, (h + 1) * sizeof *acts, 0);
  for (i = 0; i < h; i++) {
    if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TSTRING)
      luaL_error(L, "network: activation %d must be a name", (int)i + 1);
    acts[i] = check_act(L, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  s->acts = acts;
}

/* leaky_relu's slope: one number, or one per hidden layer */
static void read_slopes(lua_State *L, int idx, pk_network_spec *s)
{
  size_t i, h = s->nsizes - 2;
  double *sl;
  switch (idx ? lua_type(L, idx) : LUA_TNIL) {
  case LUA_TNIL: return;
  case LUA_TNUMBER: s->slope = lua_tonumber(L, idx); return;
  case LUA_TTABLE: break;
  default: luaL_error(L, "network: 'slope' must be a number or a list of numbers");
  }
  if (lua_rawlen(L, idx) != h)
    luaL_error(L, "network: 'slope' lists %d numbers, the network has %d hidden layers",
               (int)lua_rawlen(L, idx), (int)h);
  sl = lua_newuserdatauv(L, (h + 1) * sizeof *sl, 0);
  for (i = 0; i < h; i++) {
    if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TNUMBER)
      luaL_error(L, "network: slope %d must be a number", (int)i + 1);
    sl[i] = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  s->slopes = sl;
}

/* pk.network{ sizes = {...}, activation = "tanh" | {...}, slope = 0.01 |
 * {...}, parameterization, sigma_w, sigma_b, seed } */
static int l_network(lua_State *L)
{
  static const char *const params[] = { "ntk", "standard", NULL };
  static const pkL_option spec[] = {
    { "sizes", PKL_VALUE, .offset = offsetof(net_args, sizes) },
    { "activation", PKL_VALUE, .offset = offsetof(net_args, act) },
    { "slope", PKL_VALUE, .offset = offsetof(net_args, slope) },
    { "parameterization", PKL_ENUM, .offset = offsetof(net_args, param), .names = params },
    { "sigma_w", PKL_NUMBER, .offset = offsetof(net_args, s.sigma_w) },
    { "sigma_b", PKL_NUMBER, .offset = offsetof(net_args, s.sigma_b) },
    { "seed", PKL_SEED, .offset = offsetof(net_args, s.seed) },
    { NULL, 0, .offset = 0 }
  };
  net_args a;
  pkL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  pk_network_spec_init(&a.s);
  a.param = PK_PARAM_NTK;
  pkL_options(L, 1, "network", spec, &a);
  read_sizes(L, a.sizes, &a.s);
  read_acts(L, a.act, &a.s);
  read_slopes(L, a.slope, &a.s);
  a.s.param = (pk_parameterization)a.param;
  return pkL_made(L, pk_network_new(newn(L), &a.s));
}

/* ---- evaluation --------------------------------------------------------------- */

static int n_forward(lua_State *L)
{
  pk_network *net = checkn(L, 1);
  pk_matrix *X = checkm(L, 2);
  return pkL_made(L, pk_network_forward(net, X, newm(L)));
}

static int n_jacobian(lua_State *L)
{
  pk_network *net = checkn(L, 1);
  pk_matrix *X = checkm(L, 2);
  return pkL_made(L, pk_network_jacobian(net, X, newm(L)));
}

static int n_nparams(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)pk_network_nparams(checkn(L, 1)));
  return 1;
}

static int n_params(lua_State *L)
{
  pk_network *net = checkn(L, 1);
  return pkL_made(L, pk_matrix_from_array(newm(L), pk_network_nparams(net), 1,
                                          pk_network_params(net)));
}

static int n_set_params(lua_State *L)
{
  pk_network *net = pkL_idle(L, 1, &pkL_Network, "changed (set_params)");
  pk_matrix *t = checkm(L, 2);
  size_t r = pk_matrix_rows(t), c = pk_matrix_cols(t);
  if (c != 1 && r != 1)
    return luaL_error(L, "set_params: expected a P x 1 (or 1 x P) matrix, got %dx%d", (int)r, (int)c);
  if (!pk_matrix_all_finite(t))
    return luaL_error(L, "set_params: the parameters hold a NaN or infinite value");
  pkL_raise(L, pk_network_set_params(net, pk_matrix_cdata(t), r * c));
  lua_settop(L, 1);
  return 1;
}

static int n_clone(lua_State *L)
{
  pk_network *net = checkn(L, 1);
  return pkL_made(L, pk_network_clone(newn(L), net));
}

static int n_sizes(lua_State *L)
{
  pk_network *net = checkn(L, 1);
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
  pk_network *net = checkn(L, 1);
  size_t l, L1 = pk_network_layers(net);
  lua_createtable(L, (int)L1, 0);
  for (l = 1; l < L1; l++) {
    lua_pushstring(L, pk_activation_name(pk_network_activation(net, l)));
    lua_rawseti(L, -2, (lua_Integer)l);
  }
  return 1;
}

/* net:loss(X, Y [, name]) -> the mean loss */
static int n_loss(lua_State *L)
{
  pk_network *net = checkn(L, 1);
  pk_matrix *X = checkm(L, 2), *Y = checkm(L, 3);
  const char *name = lua_isnoneornil(L, 4) ? "mse" : pkL_checkstring(L, 4);
  pk_loss loss = pkL_checkloss(L, pkL_fname(L), name);
  double v;
  pkL_raise(L, pk_network_loss(net, X, Y, loss, &v));
  pkL_account(L);
  lua_pushnumber(L, v);
  return 1;
}

/* ---- training ------------------------------------------------------------ */

typedef struct train_args {
  pk_train_opts o;
  pk_matrix *X, *Y, *Xq, *W;
  lua_Integer steps, epochs;
  int lr, on_step, progress, record;    /* stack indices of those options, or 0 */
  pkL_quadargs quad;
  int kernel;                           /* keep the path kernel values of explain */
} train_args;

#define TA(f) .offset = offsetof(train_args, f)
static const pkL_option train_spec[] = {
  { "X", PKL_MATRIX | PKL_REQUIRED, TA(X), .note = " (the inputs)" },
  { "Y", PKL_MATRIX | PKL_REQUIRED, TA(Y), .note = " (the targets)" },
  { "loss", PKL_CUSTOM, TA(o.loss), .set = pkL_setloss },
  { "optimizer", PKL_CUSTOM, TA(o), .set = pkL_setoptimizer },
  { "lr", PKL_VALUE, TA(lr) },
  { "steps", PKL_INTEGER, TA(steps), .lo = 1 },
  { "epochs", PKL_INTEGER, TA(epochs), .lo = 1 },
  { "batch_size", PKL_SIZE, TA(o.batch_size), .lo = 1 },
  { "seed", PKL_SEED, TA(o.seed) },
  { "on_step", PKL_FUNCTION, TA(on_step) },
  { "progress", PKL_VALUE, TA(progress) },
  { "record", PKL_VALUE, TA(record) },
  { "explain", PKL_MATRIX, TA(Xq) },
  PKL_QUAD_SPEC(train_args, quad),
  { "kernel", PKL_BOOLEAN, TA(kernel) },
  { "momentum", PKL_CUSTOM, TA(o.hyper.momentum), .set = pkL_sethyper },
  { "dampening", PKL_CUSTOM, TA(o.hyper.dampening), .set = pkL_sethyper },
  { "beta1", PKL_CUSTOM, TA(o.hyper.beta1), .set = pkL_sethyper },
  { "beta2", PKL_CUSTOM, TA(o.hyper.beta2), .set = pkL_sethyper },
  { "eps", PKL_CUSTOM, TA(o.hyper.eps), .set = pkL_sethyper },
  { "weight_decay", PKL_CUSTOM, TA(o.hyper.weight_decay), .set = pkL_sethyper },
  { "weights", PKL_MATRIX, TA(W) },
  { "comm", PKL_CUSTOM, TA(o.comm), .set = pkL_setcomm },
  { NULL, 0, .offset = 0 }
};
#undef TA

static void train_lr(lua_State *L, train_args *a)
{
  if (!a->lr || lua_type(L, a->lr) == LUA_TFUNCTION) return;
  if (lua_type(L, a->lr) != LUA_TNUMBER)
    pkL_opterror(L, a->lr, "train", "lr", "a number or a function of the step");
  a->o.lr = lua_tonumber(L, a->lr);
  if (!(a->o.lr > 0 && isfinite(a->o.lr)))
    luaL_error(L, "train: lr must be positive and finite, got %f", a->o.lr);
}

static size_t train_every(lua_State *L, int idx)
{
  static const pkL_option spec[] = {
    { "every", PKL_INTEGER, .offset = 0, .lo = 1 }, { NULL, 0, .offset = 0 }
  };
  lua_Integer every = 1;
  switch (idx ? lua_type(L, idx) : LUA_TNIL) {
  case LUA_TNIL: return 0;
  case LUA_TBOOLEAN: return lua_toboolean(L, idx) ? 1 : 0;
  case LUA_TTABLE: pkL_options(L, idx, "record", spec, &every); return (size_t)every;
  default: return (size_t)luaL_error(L, "train: record must be true or { every = k }");
  }
}

typedef struct train_ctx {
  pkL_call *c;
  int lr_fn, on_step;      /* stack indices or 0 */
  int stopped;             /* on_step returned false */
} train_ctx;

static pk_status lr_cb(void *ud, size_t step, double *lr)
{
  train_ctx *t = ud;
  lua_State *L = t->c->L;
  lua_pushvalue(L, t->lr_fn);
  lua_pushinteger(L, (lua_Integer)step);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    t->c->failed = 1;               /* its error is on top */
    return PK_ECANCEL;
  }
  if (lua_type(L, -1) != LUA_TNUMBER) {
    lua_pushfstring(L, "train: the lr function returned %s at step %d, not a number",
                    luaL_typename(L, -1), (int)step);
    t->c->failed = 1;
    return PK_ECANCEL;
  }
  *lr = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return PK_OK;
}

static int on_step_cb(void *ud, size_t step, double loss)
{
  train_ctx *t = ud;
  lua_State *L = t->c->L;
  t->c->loss = loss;
  if (!t->on_step) return 0;
  lua_pushvalue(L, t->on_step);
  lua_pushinteger(L, (lua_Integer)step);
  lua_pushnumber(L, loss);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    t->c->failed = 1;
    return 1;
  }
  if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) t->stopped = 1;
  lua_pop(L, 1);
  return t->stopped;
}

/* net:train{ ... } -> losses | trajectory [, kernel machine] */
static int n_train(lua_State *L)
{
  pk_network *net = pkL_idle(L, 1, &pkL_Network, "trained");
  train_args a;
  train_ctx t;
  double *losses;
  size_t done = 0, i, every;
  pkL_box *tb = NULL, *mb = NULL;
  int ti = 0, mi = 0;
  pk_matrix *X, *Y, *Xq = NULL;
  pk_quad quad;
  pk_status st;
  pkL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  memset(&a, 0, sizeof a);
  pk_train_opts_init(&a.o);
  pkL_quadargs_init(&a.quad);
  pkL_options(L, 2, "train", train_spec, &a);
  if (a.o.comm && a.epochs)   /* an epoch counts every rank's rows, unknown here */
    return luaL_error(L, "train: give steps, not epochs, with comm");
  a.o.steps = pkL_trainsteps(L, "train", &a.o, pk_matrix_rows(a.X), a.steps, a.epochs);
  train_lr(L, &a);
  every = train_every(L, a.record);
  pkL_quad(L, "train", &a.quad, &quad);
  if (a.W && (pk_matrix_rows(a.W) != pk_matrix_rows(a.X) || pk_matrix_cols(a.W) != 1))
    return luaL_error(L, "train: option 'weights' must be an m x 1 matrix, one loss weight per row "
                      "of X (%d x 1), got %d x %d", (int)pk_matrix_rows(a.X),
                      (int)pk_matrix_rows(a.W), (int)pk_matrix_cols(a.W));
  memset(&t, 0, sizeof t);
  t.on_step = a.on_step;
  if (a.lr && lua_type(L, a.lr) == LUA_TFUNCTION) {
    t.lr_fn = a.lr;
    a.o.lr_fn = lr_cb;
    a.o.lr_ud = &t;
  }
  a.o.on_step = on_step_cb;
  a.o.on_step_ud = &t;
  pkL_raise(L, pk_check_bytes_hint(a.o.steps, sizeof(double), "the loss history",
                                   "train for fewer steps"));
  losses = lua_newuserdatauv(L, a.o.steps * sizeof(double), 0);
  /* The results' boxes first, so that nothing the run makes can leak;
   * training reads views of X, Y and the queries, so a callback that
   * releases them cannot free what the loop reads. */
  if (every) {
    tb = pkL_newbox(L, &pkL_Trajectory);
    ti = lua_gettop(L);
  }
  if (a.Xq) {
    mb = pkL_newbox(L, &pkL_Machine);
    mi = lua_gettop(L);
  }
  lua_getfield(L, 2, "X");
  X = pkL_pin(L, -1);
  lua_getfield(L, 2, "Y");
  Y = pkL_pin(L, -1);
  if (a.Xq) {
    lua_getfield(L, 2, "explain");
    Xq = pkL_pin(L, -1);
  }
  if (a.W) {              /* the weights too (a trajectory copies them) */
    lua_getfield(L, 2, "weights");
    a.o.weights = pk_matrix_cdata(pkL_pin(L, -1));
  }
  t.c = pkL_begin(L, "train", a.progress);
  t.c->show_loss = 1;
  a.o.call = t.c->opts;
  pkL_hold(t.c, 1);
  st = pk_train_full(net, X, Y, &a.o, every, tb ? &tb->u.trajectory : NULL, Xq, &quad,
                     a.kernel, mb ? &mb->u.machine : NULL, losses, &done);
  pkL_end(t.c);             /* a callback's error first */
  if (st && !(st == PK_ECANCEL && t.stopped)) return pkL_error(L, st);
  if (tb) {
    lua_pushvalue(L, ti);
  } else {
    lua_createtable(L, (int)done, 0);
    for (i = 0; i < done; i++) {
      lua_pushnumber(L, losses[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
  }
  if (mb) lua_pushvalue(L, mi);
  pkL_account(L);
  return mb ? 2 : 1;
}

/* ---- files and printing -------------------------------------------------- */

static int n_save(lua_State *L)
{
  pk_network *net = checkn(L, 1);
  return pkL_ioresult(L, pk_network_save(net, pkL_saveargs(L, NULL, NULL)), 0);
}

int pkL_load_network(lua_State *L, const char *path)
{
  return pkL_ioresult(L, pk_network_load(newn(L), path), 1);
}

static int n_tostring(lua_State *L)
{
  pk_network *net = pkL_checkbox(L, 1, &pkL_Network)->u.network;
  luaL_Buffer buf;
  size_t l, L1;
  char tmp[64];
  if (!net) return pkL_released(L, &pkL_Network);
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

void pkL_open_network(lua_State *L)
{
  static const luaL_Reg meta[] = { { "__tostring", n_tostring }, { NULL, NULL } };
  static const luaL_Reg methods[] = {
    { "forward", n_forward }, { "jacobian", n_jacobian }, { "nparams", n_nparams },
    { "params", n_params }, { "set_params", n_set_params }, { "clone", n_clone },
    { "sizes", n_sizes }, { "activations", n_activations }, { "loss", n_loss },
    { "train", n_train }, { "save", n_save }, { NULL, NULL }
  };
  static const luaL_Reg fns[] = { { "network", l_network }, { NULL, NULL } };
  pkL_newclass(L, &pkL_Network, methods, meta);
  pkL_setfuncs(L, fns, "");
}
