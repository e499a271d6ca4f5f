/* machine.c - the pathkernel.KernelMachine userdata: the trained network
 * as a kernel machine over its training examples (from a trajectory, or
 * accumulated during training), its predictions, contributions,
 * coefficients, explanations and check against the network, and files. */
#include <stddef.h>
#include "aux.h"

static pk_matrix *checkm(lua_State *L, int idx) { return pkL_check(L, idx, &pkL_Matrix); }
static pk_matrix **newm(lua_State *L) { return &pkL_newbox(L, &pkL_Matrix)->u.matrix; }

/* pk.machine.from_trajectory(traj [, { rule, nodes, tol, comm }]) */
typedef struct rule_args {
  pkL_quadargs quad;
  const pk_comm *comm;
} rule_args;

static int l_from_trajectory(lua_State *L)
{
  static const pkL_option spec[] = {
    PKL_QUAD_SPEC(rule_args, quad),
    { "comm", PKL_CUSTOM, .offset = offsetof(rule_args, comm), .set = pkL_setcomm },
    { NULL, 0, .offset = 0 }
  };
  pk_trajectory *t = pkL_check(L, 1, &pkL_Trajectory);
  rule_args a;
  pk_quad q;
  pkL_box *b;
  pkL_quadargs_init(&a.quad);
  a.comm = NULL;
  pkL_options(L, 2, "from_trajectory", spec, &a);
  /* a shard integrates with fixed nodes: the exact rule's residuals need
   * every rank's contributions at every step */
  if (a.comm && a.quad.rule < 0 && !a.quad.tol) a.quad.rule = PK_RULE_GAUSS;
  pkL_quad(L, "from_trajectory", &a.quad, &q);
  b = pkL_newbox(L, &pkL_Machine);
  /* with comm: a rank's shard of a data-parallel run (the communicator
   * lives in the registry as long as the state) */
  if (a.comm)
    return pkL_made(L, pk_machine_from_shard(&b->u.machine, t, &q, a.comm));
  return pkL_made(L, pk_machine_from_trajectory(&b->u.machine, t, &q));
}

/* before using a machine: not from its own progress callback (the
 * machine holds its trajectory, which owns what it describes: the network
 * that trained may change or go meanwhile) */
static pk_machine *usable(lua_State *L, int idx)
{
  return pkL_idle(L, idx, &pkL_Machine, "used");
}

/* the options every method takes: { progress =, output = } */
typedef struct call_args {
  int progress;
  lua_Integer output;
} call_args;

/* The long call of a method on the machine at 1 and the queries at 2 with
 * its options at oi: the queries pinned (a callback that releases them
 * cannot free what the decomposition reads), the machine busy. */
static pkL_call *start(lua_State *L, int oi, call_args *a, pk_matrix **Xq)
{
  static const pkL_option spec[] = {
    { "progress", PKL_VALUE, .offset = offsetof(call_args, progress) },
    { "output", PKL_INTEGER, .offset = offsetof(call_args, output), .lo = 1 },
    { NULL, 0, .offset = 0 }
  };
  pkL_call *c;
  checkm(L, 2);
  lua_settop(L, oi);
  a->output = 0;
  pkL_options(L, oi, NULL, spec, a);
  *Xq = pkL_pin(L, 2);
  c = pkL_begin(L, "decomposition", a->progress);
  pkL_hold(c, 1);
  return c;
}

/* a method that answers one matrix: km:predict(Xq), km:regularization(Xq) */
static int one_matrix(lua_State *L, pk_status (*f)(pk_machine *, const pk_matrix *,
                                                   const pk_call_opts *, pk_matrix **))
{
  pk_machine *km = usable(L, 1);
  call_args a;
  pk_matrix *Xq, **out;
  pkL_call *c = start(L, 3, &a, &Xq);
  pk_status st;
  out = newm(L);
  st = f(km, Xq, &c->opts, out);
  pkL_end(c);
  return pkL_made(L, st);
}

static int km_predict(lua_State *L) { return one_matrix(L, pk_machine_predict); }
static int km_regularization(lua_State *L) { return one_matrix(L, pk_machine_regularization); }

/* km:contributions(Xq): nq x m, or a table of one such matrix per output */
static int km_contributions(lua_State *L)
{
  pk_machine *km = usable(L, 1);
  size_t k, K = pk_machine_outputs(km);
  call_args a;
  pk_matrix *Xq;
  pkL_call *c = start(L, 3, &a, &Xq);
  pk_status st = PK_OK;
  int it;
  lua_createtable(L, (int)K, 0);
  it = lua_gettop(L);
  for (k = 0; k < K; k++) {
    /* the first slice runs the decomposition, the others read its cache;
     * after a failure a callback's error may be on top: touch nothing */
    if ((st = pk_machine_slice(km, Xq, k, 0, k ? NULL : &c->opts, newm(L)))) break;
    lua_rawseti(L, it, (lua_Integer)k + 1);
  }
  pkL_end(c);
  pkL_raise(L, st);
  if (K == 1) lua_rawgeti(L, it, 1);
  pkL_account(L);
  return 1;
}

/* km:coefficients(Xq) -> a, Kp, undefined: a_i(x) = contribution / Kp where
 * Kp != 0; NaN where Kp = 0, each such entry listed in `undefined` as
 * { query = , example = , output = } */
static int km_coefficients(lua_State *L)
{
  pk_machine *km = usable(L, 1);
  size_t k, K = pk_machine_outputs(km), x, i;
  call_args a;
  pk_matrix *Xq;
  pkL_call *c = start(L, 3, &a, &Xq);
  pk_status st = PK_OK;
  int ia, ikp, iu, nund = 0;
  lua_createtable(L, (int)K, 0);
  ia = lua_gettop(L);
  lua_createtable(L, (int)K, 0);
  ikp = lua_gettop(L);
  for (k = 0; k < K; k++) {
    pk_matrix **co = newm(L), **kp = newm(L);
    if ((st = pk_machine_coefficients(km, Xq, k, k ? NULL : &c->opts, co, kp))) break;
    lua_rawseti(L, ikp, (lua_Integer)k + 1);
    lua_rawseti(L, ia, (lua_Integer)k + 1);
  }
  pkL_end(c);
  pkL_raise(L, st);
  lua_newtable(L);
  iu = lua_gettop(L);
  for (k = 0; k < K; k++) {
    const pk_matrix *kp;
    lua_rawgeti(L, ikp, (lua_Integer)k + 1);
    kp = checkm(L, -1);
    for (x = 0; x < pk_matrix_rows(kp); x++)
      for (i = 0; i < pk_matrix_cols(kp); i++)
        if (pk_matrix_get(kp, x, i) == 0) {
          lua_createtable(L, 0, 3);
          lua_pushinteger(L, (lua_Integer)x + 1);
          lua_setfield(L, -2, "query");
          lua_pushinteger(L, (lua_Integer)i + 1);
          lua_setfield(L, -2, "example");
          lua_pushinteger(L, (lua_Integer)k + 1);
          lua_setfield(L, -2, "output");
          lua_rawseti(L, iu, ++nund);
        }
    lua_pop(L, 1);
  }
  if (K == 1) {
    lua_rawgeti(L, ia, 1);
    lua_rawgeti(L, ikp, 1);
  } else {
    lua_pushvalue(L, ia);
    lua_pushvalue(L, ikp);
  }
  lua_pushvalue(L, iu);
  pkL_account(L);
  return 3;
}

/* km:explain(xq, k [, { output = }]) */
static int km_explain(lua_State *L)
{
  pk_machine *km = usable(L, 1);
  pk_matrix *xq = checkm(L, 2);
  lua_Integer top = pkL_checkint(L, 3, 1, "k");
  size_t K = pk_machine_outputs(km), m = pk_machine_examples(km), i, n, room;
  double *buf;
  pk_explanation ex;
  call_args a;
  pkL_call *c;
  pk_status st;
  if (pk_matrix_rows(xq) != 1)
    return luaL_error(L, "explain: xq must be one query (a 1 x d matrix), got %d rows",
                      (int)pk_matrix_rows(xq));
  c = start(L, 4, &a, &xq);
  if ((lua_Unsigned)a.output > K) return luaL_error(L, "output %d out of range 1..%d", (int)a.output, (int)K);
  n = (size_t)top < m ? (size_t)top : m;
  ex.top = n;
  /* the arrays the core fills, owned by the collector */
  room = n ? n : 1;
  buf = lua_newuserdatauv(L, room * (2 * sizeof(double) + sizeof(size_t)), 0);
  ex.contribution = buf;
  ex.kernel = buf + room;
  ex.index = (size_t *)(buf + 2 * room);
  ex.output = a.output ? (size_t)a.output - 1 : SIZE_MAX;
  st = pk_machine_explain(km, xq, &c->opts, &ex);
  pkL_end(c);
  pkL_raise(L, st);
  lua_createtable(L, (int)ex.n, 6);
  for (i = 0; i < ex.n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)ex.index[i] + 1);
    lua_setfield(L, -2, "index");
    pkL_setnumber(L, "contribution", ex.contribution[i]);
    if (ex.has_kernel) pkL_setnumber(L, "kernel", ex.kernel[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_pushinteger(L, (lua_Integer)ex.output + 1);
  lua_setfield(L, -2, "output");
  pkL_setnumber(L, "sum", ex.sum);
  pkL_setnumber(L, "bias", ex.bias);
  pkL_setnumber(L, "regularization", ex.regularization);
  pkL_setnumber(L, "prediction", ex.prediction);
  pkL_setnumber(L, "network", ex.network);
  pkL_account(L);
  return 1;
}

/* km:certificate(Xq) -> nq x K bounds, and how the steps were integrated */
static int km_certificate(lua_State *L)
{
  pk_machine *km = usable(L, 1);
  call_args a;
  pk_matrix *Xq, **out;
  pkL_call *c = start(L, 3, &a, &Xq);
  pk_rule_stats rs;
  pk_status st;
  out = newm(L);
  st = pk_machine_certificate(km, Xq, &c->opts, out);
  pkL_end(c);
  pkL_raise(L, st);
  pk_machine_rule_stats(km, &rs);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)rs.pairs);
  lua_setfield(L, -2, "pairs");
  lua_pushinteger(L, (lua_Integer)rs.split);
  lua_setfield(L, -2, "split");
  lua_pushinteger(L, (lua_Integer)rs.refined);
  lua_setfield(L, -2, "refined");
  pkL_setnumber(L, "nodes", rs.nodes_per_pair);
  pkL_setnumber(L, "split_seconds", rs.split_seconds);
  pkL_account(L);
  return 2;
}

static int km_verify(lua_State *L)
{
  pk_machine *km = usable(L, 1);
  call_args a;
  pk_matrix *Xq;
  pkL_call *c = start(L, 3, &a, &Xq);
  double maxabs, maxrel;
  pk_status st = pk_machine_verify(km, Xq, &c->opts, &maxabs, &maxrel);
  pkL_end(c);
  pkL_raise(L, st);
  pkL_account(L);
  lua_pushnumber(L, maxabs);
  lua_pushnumber(L, maxrel);
  return 2;
}

static int km_save(lua_State *L)
{
  pk_machine *km = pkL_check(L, 1, &pkL_Machine);
  return pkL_ioresult(L, pk_machine_save(km, pkL_saveargs(L, NULL, NULL)), 0);
}

int pkL_load_machine(lua_State *L, const char *path)
{
  return pkL_ioresult(L, pk_machine_load(&pkL_newbox(L, &pkL_Machine)->u.machine, path), 1);
}

static int km_tostring(lua_State *L)
{
  pk_machine *km = pkL_checkbox(L, 1, &pkL_Machine)->u.machine;
  const char *how;
  pk_quad q;
  if (!km) return pkL_released(L, &pkL_Machine);
  pk_machine_quad(km, &q);
  how = pk_machine_is_online(km) ? "online" : "from a trajectory";
  if (q.rule == PK_RULE_EXACT)
    lua_pushfstring(L, "pathkernel.KernelMachine over %d training examples (%s, exact rule, tol %f)",
                    (int)pk_machine_examples(km), how, (lua_Number)q.tol);
  else
    lua_pushfstring(L, "pathkernel.KernelMachine over %d training examples (%s, %s rule, %d node%s)",
                    (int)pk_machine_examples(km), how, q.rule == PK_RULE_GAUSS ? "gauss" : "left",
                    q.nodes, q.nodes > 1 ? "s" : "");
  return 1;
}

void pkL_open_machine(lua_State *L)
{
  static const luaL_Reg meta[] = { { "__tostring", km_tostring }, { NULL, NULL } };
  static const luaL_Reg methods[] = {
    { "predict", km_predict }, { "contributions", km_contributions },
    { "coefficients", km_coefficients }, { "explain", km_explain }, { "verify", km_verify },
    { "regularization", km_regularization }, { "certificate", km_certificate },
    { "save", km_save }, { NULL, NULL }
  };
  static const luaL_Reg fns[] = { { "from_trajectory", l_from_trajectory }, { NULL, NULL } };
  pkL_newclass(L, &pkL_Machine, methods, meta);
  pkL_subtable(L, "machine");
  pkL_setfuncs(L, fns, "machine.");
  lua_pop(L, 1);
}
