/* network.c - the pathkernel.Network userdata: construction from an
 * option table (widths, or a list of conv, avgpool and dense layers),
 * forward, Jacobian, parameters, layers, losses, training with callbacks
 * and progress (answering a trajectory and a kernel machine when asked),
 * files. */
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
  int sizes, input, layers, act, slope;   /* stack indices of the options read here */
  int param;
  size_t nact;             /* activated layers: what activation and slope lists count */
  const char *what;        /* their name in messages */
} net_args;

/* the widths at idx into a scratch array the GC owns */
static void read_sizes(lua_State *L, int idx, pk_network_spec *s)
{
  size_t n, i, *sizes;
  if (!idx || lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "network: 'sizes' must be a table of layer widths, e.g. {2, 64, 1} "
               "(or give input and layers)");
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

/* a positive integer (or 0 when zero_ok) at the top of the stack, or a
 * pair {h, w} of them, into *a, *b; pops it */
static void take_pair(lua_State *L, size_t l, const char *kind, const char *key, int zero_ok,
                      size_t *a, size_t *b)
{
  lua_Integer v[2];
  int k, isint, t = lua_gettop(L);
  if (lua_type(L, t) == LUA_TTABLE && lua_rawlen(L, t) == 2) {
    for (k = 0; k < 2; k++) {
      lua_rawgeti(L, t, k + 1);
      v[k] = lua_tointegerx(L, -1, &isint);
      if (!isint || lua_type(L, -1) != LUA_TNUMBER) v[k] = -1;
      lua_pop(L, 1);
    }
  } else {
    v[0] = v[1] = lua_tointegerx(L, t, &isint);
    if (!isint || lua_type(L, t) != LUA_TNUMBER) v[0] = v[1] = -1;
  }
  if (v[0] < (zero_ok ? 0 : 1) || v[1] < (zero_ok ? 0 : 1) || v[0] > PK_MAX_DIM || v[1] > PK_MAX_DIM)
    luaL_error(L, "network: layer %d (%s): '%s' must be a %s integer or a pair {h, w} of them",
               (int)l + 1, kind, key, zero_ok ? "non-negative" : "positive");
  *a = (size_t)v[0];
  *b = (size_t)v[1];
  lua_pop(L, 1);
}

/* a positive integer field of layer l's entry t (at key, or at index i
 * when key is NULL), or an error that says what it is */
static size_t take_count(lua_State *L, int t, size_t l, const char *key, lua_Integer i,
                         const char *msg)
{
  lua_Integer v;
  int isint;
  if (key) lua_getfield(L, t, key);
  else lua_rawgeti(L, t, i);
  v = lua_tointegerx(L, -1, &isint);
  if (!isint || lua_type(L, -1) != LUA_TNUMBER || v < 1 || v > PK_MAX_DIM)
    luaL_error(L, "network: layer %d %s", (int)l + 1, msg);
  lua_pop(L, 1);
  return (size_t)v;
}

/* layer l's entry, the table at index t: {"conv", channels =, size =,
 * stride =, padding =}, {"avgpool", size =} or {"dense", width} */
static void take_layer(lua_State *L, int t, size_t l, pk_layer_spec *sp)
{
  static const char *const conv_keys[] = { "channels", "size", "stride", "padding", NULL };
  static const char *const pool_keys[] = { "size", NULL };
  const char *const *keys;
  const char *kind;
  memset(sp, 0, sizeof *sp);
  if (lua_type(L, t) != LUA_TTABLE || lua_rawgeti(L, t, 1) != LUA_TSTRING)
    luaL_error(L, "network: layer %d must be a table {\"conv\" | \"avgpool\" | \"dense\", ...}",
               (int)l + 1);
  kind = lua_tostring(L, -1);           /* stays on the stack while kind is used */
  if (strcmp(kind, "dense") == 0) keys = NULL;
  else if (strcmp(kind, "conv") == 0) keys = conv_keys;
  else if (strcmp(kind, "avgpool") == 0) keys = pool_keys;
  else {
    luaL_error(L, "network: layer %d: unknown kind '%s' (valid: conv, avgpool, dense)", (int)l + 1,
               kind);
    return;
  }
  /* nothing else in the entry: a misspelt option must not pass silently */
  lua_pushnil(L);
  while (lua_next(L, t)) {
    int ok = 0, i;
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TNUMBER) {
      lua_Integer k = lua_tointeger(L, -1);
      ok = lua_isinteger(L, -1) && (k == 1 || (k == 2 && !keys));
    } else if (lua_type(L, -1) == LUA_TSTRING && keys) {
      for (i = 0; keys[i]; i++) ok = ok || strcmp(lua_tostring(L, -1), keys[i]) == 0;
    }
    if (!ok) {
      lua_pushvalue(L, -1);             /* a copy: lua_next's key must stay as it is */
      luaL_error(L, "network: layer %d (%s): unknown entry '%s'%s%s%s", (int)l + 1, kind,
                 luaL_tolstring(L, -1, NULL), keys ? " (valid: " : "",
                 keys == conv_keys ? "channels, size, stride, padding" : keys ? "size" : "",
                 keys ? ")" : "");
    }
  }
  if (!keys) {
    sp->type = PK_LAYER_DENSE;
    sp->units = take_count(L, t, l, NULL, 2, "(dense): its width {\"dense\", n} must be a positive integer");
  } else if (keys == conv_keys) {
    sp->type = PK_LAYER_CONV;
    sp->units = take_count(L, t, l, "channels", 0, "(conv): 'channels' must be a positive integer");
    if (lua_getfield(L, t, "size") == LUA_TNIL)
      luaL_error(L, "network: layer %d (conv): 'size' (the kernel) is required", (int)l + 1);
    take_pair(L, l, kind, "size", 0, &sp->kh, &sp->kw);
    sp->sy = sp->sx = 1;
    if (lua_getfield(L, t, "stride") != LUA_TNIL) take_pair(L, l, kind, "stride", 0, &sp->sy, &sp->sx);
    else lua_pop(L, 1);
    if (lua_getfield(L, t, "padding") != LUA_TNIL) take_pair(L, l, kind, "padding", 1, &sp->py, &sp->px);
    else lua_pop(L, 1);
  } else {
    sp->type = PK_LAYER_AVGPOOL;
    if (lua_getfield(L, t, "size") == LUA_TNIL)
      luaL_error(L, "network: layer %d (avgpool): 'size' (the window) is required", (int)l + 1);
    take_pair(L, l, kind, "size", 0, &sp->kh, &sp->kw);
    sp->sy = sp->kh;
    sp->sx = sp->kw;
  }
  lua_pop(L, 1);                        /* kind */
}

/* the list form: the layers at a->layers into a scratch array the GC
 * owns; counts the activated layers (conv and dense, not the last) */
static void read_layers(lua_State *L, net_args *a)
{
  size_t n, i;
  int t = a->layers;
  pk_layer_spec *sp;
  if (lua_type(L, t) != LUA_TTABLE)
    pkL_opterror(L, t, "network", "layers",
                 "a list of layers, e.g. { {\"conv\", channels = 8, size = 3}, {\"dense\", 10} }");
  n = lua_rawlen(L, t);
  if (n < 1) luaL_error(L, "network: 'layers' is empty");
  if (n > 10000) luaL_error(L, "network: %d layers is too many", (int)n);
  sp = lua_newuserdatauv(L, n * sizeof *sp, 0);       /* kept on the stack */
  a->nact = 0;
  for (i = 0; i < n; i++) {
    lua_rawgeti(L, t, (lua_Integer)i + 1);
    take_layer(L, lua_gettop(L), i, &sp[i]);
    lua_pop(L, 1);
    if (sp[i].type != PK_LAYER_AVGPOOL && i + 1 < n) a->nact++;
  }
  a->s.nlayers = n;
  a->s.layers = sp;
  a->what = "activated layers (conv and dense, not the last)";
}

/* input = {C, H, W} or a width (a vector: W x 1 x 1) */
static void read_input(lua_State *L, net_args *a)
{
  int t = a->input, i;
  if (!t)
    luaL_error(L, "network: 'input' is required with 'layers' ({C, H, W} or a width)");
  if (lua_type(L, t) == LUA_TNUMBER && lua_isinteger(L, t)) {
    lua_Integer v = lua_tointeger(L, t);
    if (v >= 1 && v <= PK_MAX_DIM) {
      a->s.input[0] = (size_t)v;
      a->s.input[1] = a->s.input[2] = 1;
      return;
    }
  } else if (lua_type(L, t) == LUA_TTABLE && lua_rawlen(L, t) == 3) {
    for (i = 0; i < 3; i++) {
      lua_Integer v;
      int isint;
      lua_rawgeti(L, t, (lua_Integer)i + 1);
      v = lua_tointegerx(L, -1, &isint);
      if (lua_type(L, -1) != LUA_TNUMBER) isint = 0;
      lua_pop(L, 1);
      if (!isint || v < 1 || v > PK_MAX_DIM) break;
      a->s.input[i] = (size_t)v;
    }
    if (i == 3) return;
  }
  luaL_error(L, "network: 'input' must be {C, H, W} (channels, height, width: positive integers) "
             "or a width");
}

/* one name for every activated layer, or a list of them */
static void read_acts(lua_State *L, int idx, net_args *a)
{
  size_t i, h = a->nact;
  pk_activation *acts;
  switch (idx ? lua_type(L, idx) : LUA_TNIL) {
  case LUA_TNIL: return;
  case LUA_TSTRING: a->s.act = check_act(L, lua_tostring(L, idx)); return;
  case LUA_TTABLE: break;
  default: luaL_error(L, "network: 'activation' must be a name or a list of names");
  }
  if (lua_rawlen(L, idx) != h)
    luaL_error(L, "network: 'activation' lists %d names, the network has %d %s",
               (int)lua_rawlen(L, idx), (int)h, a->what);
  acts = lua_newuserdatauv(L, (h + 1) * sizeof *acts, 0);
  for (i = 0; i < h; i++) {
    if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TSTRING)
      luaL_error(L, "network: activation %d must be a name", (int)i + 1);
    acts[i] = check_act(L, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  a->s.acts = acts;
}

/* leaky_relu's slope: one number, or one per activated layer */
static void read_slopes(lua_State *L, int idx, net_args *a)
{
  size_t i, h = a->nact;
  double *sl;
  switch (idx ? lua_type(L, idx) : LUA_TNIL) {
  case LUA_TNIL: return;
  case LUA_TNUMBER: a->s.slope = lua_tonumber(L, idx); return;
  case LUA_TTABLE: break;
  default: luaL_error(L, "network: 'slope' must be a number or a list of numbers");
  }
  if (lua_rawlen(L, idx) != h)
    luaL_error(L, "network: 'slope' lists %d numbers, the network has %d %s",
               (int)lua_rawlen(L, idx), (int)h, a->what);
  sl = lua_newuserdatauv(L, (h + 1) * sizeof *sl, 0);
  for (i = 0; i < h; i++) {
    if (lua_rawgeti(L, idx, (lua_Integer)i + 1) != LUA_TNUMBER)
      luaL_error(L, "network: slope %d must be a number", (int)i + 1);
    sl[i] = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  a->s.slopes = sl;
}

/* pk.network{ sizes = {...} | input = {C, H, W}, layers = {...},
 * activation = "tanh" | {...}, slope = 0.01 | {...}, parameterization,
 * sigma_w, sigma_b, seed } */
static int l_network(lua_State *L)
{
  static const char *const params[] = { "ntk", "standard", NULL };
  static const pkL_option spec[] = {
    { "sizes", PKL_VALUE, .offset = offsetof(net_args, sizes) },
    { "input", PKL_VALUE, .offset = offsetof(net_args, input) },
    { "layers", PKL_VALUE, .offset = offsetof(net_args, layers) },
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
  memset(&a, 0, sizeof a);
  pk_network_spec_init(&a.s);
  a.param = PK_PARAM_NTK;
  pkL_options(L, 1, "network", spec, &a);
  if (a.layers) {
    if (a.sizes) return luaL_error(L, "network: give 'sizes' or 'layers', not both");
    read_layers(L, &a);
    read_input(L, &a);
  } else {
    if (a.input) return luaL_error(L, "network: 'input' goes with 'layers' (sizes[1] is the input)");
    read_sizes(L, a.sizes, &a.s);
    a.nact = a.s.nsizes - 2;
    a.what = "hidden layers";
  }
  read_acts(L, a.act, &a);
  read_slopes(L, a.slope, &a);
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

/* the kind of layer l (1-based) */
static pk_layer_type kind_of(const pk_network *net, size_t l, size_t shape[3])
{
  pk_layer_spec sp;
  pk_network_layer(net, l, &sp, shape);
  return sp.type;
}

/* one name per activated layer (pooling has none) */
static int n_activations(lua_State *L)
{
  pk_network *net = checkn(L, 1);
  size_t l, L1 = pk_network_layers(net), shape[3];
  lua_Integer j = 0;
  lua_createtable(L, (int)L1, 0);
  for (l = 1; l < L1; l++) {
    if (kind_of(net, l, shape) == PK_LAYER_AVGPOOL) continue;
    lua_pushstring(L, pk_activation_name(pk_network_activation(net, l)));
    lua_rawseti(L, -2, ++j);
  }
  return 1;
}

static void push_shape(lua_State *L, const size_t *v)
{
  int i;
  lua_createtable(L, 3, 0);
  for (i = 0; i < 3; i++) {
    lua_pushinteger(L, (lua_Integer)v[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

static void set_pair(lua_State *L, const char *key, size_t a, size_t b)
{
  lua_createtable(L, 2, 0);
  lua_pushinteger(L, (lua_Integer)a);
  lua_rawseti(L, -2, 1);
  lua_pushinteger(L, (lua_Integer)b);
  lua_rawseti(L, -2, 2);
  lua_setfield(L, -2, key);
}

/* net:input() -> {C, H, W} */
static int n_input(lua_State *L)
{
  pk_network *net = checkn(L, 1);
  size_t shape[3];
  pk_network_layer(net, 0, NULL, shape);
  push_shape(L, shape);
  return 1;
}

/* net:layers() -> one table per layer, as pk.network's list takes it, with
 * its activation and the shape of its output */
static int n_layers(lua_State *L)
{
  pk_network *net = checkn(L, 1);
  size_t l, L1 = pk_network_layers(net), shape[3];
  lua_createtable(L, (int)L1, 0);
  for (l = 1; l <= L1; l++) {
    pk_layer_spec sp;
    pk_activation a = pk_network_activation(net, l);
    pk_network_layer(net, l, &sp, shape);
    lua_createtable(L, 2, 6);
    lua_pushstring(L, sp.type == PK_LAYER_DENSE ? "dense" : sp.type == PK_LAYER_CONV ? "conv" : "avgpool");
    lua_rawseti(L, -2, 1);
    if (sp.type == PK_LAYER_DENSE) {
      lua_pushinteger(L, (lua_Integer)sp.units);
      lua_rawseti(L, -2, 2);
    } else if (sp.type == PK_LAYER_CONV) {
      lua_pushinteger(L, (lua_Integer)sp.units);
      lua_setfield(L, -2, "channels");
      set_pair(L, "size", sp.kh, sp.kw);
      set_pair(L, "stride", sp.sy, sp.sx);
      set_pair(L, "padding", sp.py, sp.px);
    } else {
      set_pair(L, "size", sp.kh, sp.kw);
    }
    if (sp.type != PK_LAYER_AVGPOOL && l < L1) {
      lua_pushstring(L, pk_activation_name(a));
      lua_setfield(L, -2, "activation");
      if (a == PK_ACT_LEAKY_RELU) {
        lua_pushnumber(L, pk_network_slope(net, l));
        lua_setfield(L, -2, "slope");
      }
    }
    push_shape(L, shape);
    lua_setfield(L, -2, "shape");
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

static void add_act(luaL_Buffer *buf, const pk_network *net, size_t l)
{
  pk_activation a = pk_network_activation(net, l);
  char tmp[64];
  luaL_addstring(buf, " ");
  luaL_addstring(buf, pk_activation_name(a));
  if (a == PK_ACT_LEAKY_RELU) {
    snprintf(tmp, sizeof tmp, "(%g)", pk_network_slope(net, l));
    luaL_addstring(buf, tmp);
  }
}

/* a dense network by its widths (3 -> 5 relu -> 2), any other by its
 * layers with their output shapes (1x8x8 -> conv 16 3x3 pad 1 tanh
 * [16x8x8] -> ...) */
static int n_tostring(lua_State *L)
{
  pk_network *net = pkL_checkbox(L, 1, &pkL_Network)->u.network;
  luaL_Buffer buf;
  size_t l, L1, shape[3];
  int dense = 1;
  char tmp[128];
  if (!net) return pkL_released(L, &pkL_Network);
  L1 = pk_network_layers(net);
  for (l = 1; l <= L1; l++) dense = dense && kind_of(net, l, shape) == PK_LAYER_DENSE;
  luaL_buffinit(L, &buf);
  luaL_addstring(&buf, "pathkernel.Network ");
  if (dense) {
    for (l = 0; l <= L1; l++) {
      snprintf(tmp, sizeof tmp, "%s%zu", l ? " -> " : "", pk_network_size(net, l));
      luaL_addstring(&buf, tmp);
      if (l >= 1 && l < L1) add_act(&buf, net, l);
    }
  } else {
    pk_network_layer(net, 0, NULL, shape);
    snprintf(tmp, sizeof tmp, "%zux%zux%zu", shape[0], shape[1], shape[2]);
    luaL_addstring(&buf, tmp);
    for (l = 1; l <= L1; l++) {
      pk_layer_spec sp;
      pk_network_layer(net, l, &sp, shape);
      if (sp.type == PK_LAYER_DENSE) {
        snprintf(tmp, sizeof tmp, " -> dense %zu", sp.units);
      } else if (sp.type == PK_LAYER_CONV) {
        int n = snprintf(tmp, sizeof tmp, " -> conv %zu %zux%zu", sp.units, sp.kh, sp.kw);
        if (sp.sy != 1 || sp.sx != 1)
          n += snprintf(tmp + n, sizeof tmp - (size_t)n, sp.sy == sp.sx ? " stride %zu" : " stride %zux%zu",
                        sp.sy, sp.sx);
        if (sp.py || sp.px)
          snprintf(tmp + n, sizeof tmp - (size_t)n, sp.py == sp.px ? " pad %zu" : " pad %zux%zu", sp.py,
                   sp.px);
      } else {
        snprintf(tmp, sizeof tmp, " -> avgpool %zux%zu", sp.kh, sp.kw);
      }
      luaL_addstring(&buf, tmp);
      if (sp.type != PK_LAYER_AVGPOOL && l < L1) add_act(&buf, net, l);
      if (sp.type != PK_LAYER_DENSE) {
        snprintf(tmp, sizeof tmp, " [%zux%zux%zu]", shape[0], shape[1], shape[2]);
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
    { "sizes", n_sizes }, { "activations", n_activations }, { "layers", n_layers },
    { "input", n_input }, { "loss", n_loss },
    { "train", n_train }, { "save", n_save }, { NULL, NULL }
  };
  static const luaL_Reg fns[] = { { "network", l_network }, { NULL, NULL } };
  pkL_newclass(L, &pkL_Network, methods, meta);
  pkL_setfuncs(L, fns, "");
}
