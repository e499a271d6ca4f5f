/* kernel.c - the pathkernel.Kernel userdata that every kernel is: gram,
 * diag, calling K(X1, X2); and the kernels of a network and of a run,
 * pk.kernel.tangent, path and preconditioned, with their common options.
 * The kernels defined by parameters are made in kernels.c. */
#include <stddef.h>
#include "aux.h"

static pk_matrix *checkm(lua_State *L, int idx) { return pkL_check(L, idx, &pkL_Matrix); }

/* ---- gram and diag ------------------------------------------------------------ */

/* Gram (gram = 1) or diagonal of the kernel at 1 with the options at oidx;
 * X1 at 2, X2 at 3 when oidx is 4 */
static int run(lua_State *L, int gram, int oidx)
{
  static const pkL_option spec[] = {
    { "progress", PKL_VALUE, .offset = 0 }, { NULL, 0, .offset = 0 }
  };
  pk_kernel *k = pkL_check(L, 1, &pkL_Kernel);
  int progress;
  pk_matrix *X1, *X2, **out;
  pkL_call *c;
  pk_status st;
  lua_settop(L, oidx);
  pkL_options(L, oidx, NULL, spec, &progress);
  /* pinned: a callback that releases them cannot free their storage */
  X1 = pkL_pin(L, 2);
  /* K:gram(X, X) is the symmetric Gram, as K:gram(X): the kernels see one
   * pointer (the relu NTK's diagonal from two views lost ~1e-9 to a sqrt) */
  X2 = oidx == 4 && !lua_rawequal(L, 2, 3) ? pkL_pin(L, 3) : X1;
  c = pkL_begin(L, gram ? "gram" : "diag", progress);
  pkL_hold(c, 1);
  out = &pkL_newbox(L, &pkL_Matrix)->u.matrix;
  st = gram ? pk_kernel_gram(k, X1, X2, &c->opts, out) : pk_kernel_diag(k, X1, &c->opts, out);
  pkL_end(c);
  return pkL_made(L, st);
}

/* K:gram(X1 [, X2] [, { progress = }]), also K(X1 [, X2]) */
static int k_gram(lua_State *L)
{
  int oidx = 3;
  pkL_check(L, 1, &pkL_Kernel);
  checkm(L, 2);
  if (pkL_testbox(L, 3, &pkL_Matrix)) {
    checkm(L, 3);                  /* a released X2 says so */
    oidx = 4;
  } else if (!lua_isnoneornil(L, 3) && lua_type(L, 3) != LUA_TTABLE) {
    pkL_typeerror(L, 3, pkL_Matrix.name);
  } else if (lua_type(L, 3) == LUA_TTABLE) {
    /* a list where X2 may go is data, not options: K:gram(X, {1, 2, 3}) */
    int list = lua_rawgeti(L, 3, 1) != LUA_TNIL;
    lua_pop(L, 1);
    if (list) pkL_typeerror(L, 3, pkL_Matrix.name);
  }
  return run(L, 1, oidx);
}

static int k_diag(lua_State *L)
{
  pkL_check(L, 1, &pkL_Kernel);
  checkm(L, 2);
  return run(L, 0, 3);
}

static int k_name(lua_State *L)
{
  lua_pushstring(L, pk_kernel_name(pkL_check(L, 1, &pkL_Kernel)));
  return 1;
}

static int k_tostring(lua_State *L)
{
  pk_kernel *k = pkL_checkbox(L, 1, &pkL_Kernel)->u.kernel;
  if (!k) return pkL_released(L, &pkL_Kernel);
  lua_pushfstring(L, "pathkernel.Kernel %s", pk_kernel_name(k));
  return 1;
}

/* ---- kernels of a network and of a run ------------------------------------------ */

/* the options of a network's kernels; memory 0: the kernel's default */
typedef struct kernel_args {
  int outputs;
  lua_Integer memory;
  pk_rule rule;
  lua_Integer nodes;
} kernel_args;

static void set_memory(lua_State *L, int v, void *out, const pkL_option *o, const char *fname)
{
  int isint = 0;
  lua_Integer m = lua_type(L, v) == LUA_TNUMBER ? lua_tointegerx(L, v, &isint) : 0;
  if (!isint) pkL_opterror(L, v, fname, o->key, "a positive number of bytes");
  if (m <= 0) luaL_error(L, "%s: option 'memory' must be a positive number of bytes", fname);
  ((kernel_args *)out)->memory = m;
}

static const char *const modes[] = { "block", "trace", "diagonal", NULL };
#define KA(f) .offset = offsetof(kernel_args, f)
/* the path kernel's options: the last two are every network kernel's */
static const pkL_option path_spec[] = {
  { "rule", PKL_CUSTOM, KA(rule), .set = pkL_setrule },
  { "nodes", PKL_INTEGER, KA(nodes), .lo = 1, .hi = 16 },
  { "outputs", PKL_ENUM, KA(outputs), .names = modes, .noun = "outputs mode" },
  { "memory", PKL_CUSTOM, KA(memory), .set = set_memory },
  { NULL, 0, .offset = 0 }
};
#undef KA

/* the kernel made into the box on top, with its options */
static int made(lua_State *L, pk_status st, const kernel_args *a)
{
  pk_kernel *k;
  pkL_raise(L, st);
  k = pkL_testbox(L, -1, &pkL_Kernel)->u.kernel;
  pk_kernel_set_outputs(k, (pk_outputs)a->outputs);
  if (a->memory) pk_kernel_set_memory(k, (size_t)a->memory);
  return pkL_made(L, PK_OK);
}

/* pk.kernel.tangent(net [, { outputs, memory }]): a snapshot of the weights */
static int l_tangent(lua_State *L)
{
  pk_network *net = pkL_check(L, 1, &pkL_Network);
  kernel_args a = { PK_OUTPUTS_BLOCK, 0, PK_RULE_GAUSS, 0 };
  pkL_options(L, 2, "tangent", path_spec + 2, &a);
  return made(L, pk_kernel_tangent(&pkL_newbox(L, &pkL_Kernel)->u.kernel, net), &a);
}

/* pk.kernel.path(traj [, { rule, nodes, outputs, memory }]) */
static int l_path(lua_State *L)
{
  pk_trajectory *t = pkL_check(L, 1, &pkL_Trajectory);
  kernel_args a = { PK_OUTPUTS_BLOCK, 0, PK_RULE_GAUSS, 0 };
  pkL_box *b;
  pkL_options(L, 2, "path", path_spec, &a);
  a.nodes = pkL_rulenodes(L, "path", a.rule, a.nodes);
  b = pkL_newbox(L, &pkL_Kernel);
  pkL_keep(L, -1, 1);
  return made(L, pk_kernel_path(&b->u.kernel, t, a.rule, (int)a.nodes), &a);
}

/* pk.kernel.preconditioned(traj, s [, { outputs, memory }]) */
static int l_preconditioned(lua_State *L)
{
  pk_trajectory *t = pkL_check(L, 1, &pkL_Trajectory);
  lua_Integer s = pkL_checkint(L, 2, 0, "step");
  kernel_args a = { PK_OUTPUTS_BLOCK, 0, PK_RULE_GAUSS, 0 };
  pkL_options(L, 3, "preconditioned", path_spec + 2, &a);
  return made(L, pk_kernel_preconditioned(&pkL_newbox(L, &pkL_Kernel)->u.kernel, t, (size_t)s),
              &a);
}

void pkL_open_kernel(lua_State *L)
{
  static const luaL_Reg meta[] = {
    { "__call", k_gram }, { "__tostring", k_tostring }, { NULL, NULL }
  };
  static const luaL_Reg methods[] = {
    { "gram", k_gram }, { "diag", k_diag }, { "name", k_name }, { NULL, NULL }
  };
  static const luaL_Reg fns[] = {
    { "tangent", l_tangent }, { "path", l_path }, { "preconditioned", l_preconditioned },
    { NULL, NULL }
  };
  pkL_newclass(L, &pkL_Kernel, methods, meta);
  pkL_subtable(L, "kernel");
  pkL_setfuncs(L, fns, "kernel.");
  lua_pop(L, 1);
}
