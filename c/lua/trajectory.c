/* trajectory.c - the pathkernel.Trajectory userdata: a recorded run's
 * weights and networks at any step (replayed between checkpoints), its
 * per-step series, batches, options and data, and files. Kernel machines
 * and path kernels made from it hold the core's trajectory themselves. */
#include <stddef.h>
#include "aux.h"

static pk_trajectory *checkt(lua_State *L, int idx) { return pkL_check(L, idx, &pkL_Trajectory); }
static pk_matrix **newm(lua_State *L) { return &pkL_newbox(L, &pkL_Matrix)->u.matrix; }

static int t_len(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)pk_trajectory_steps(checkt(L, 1)));
  return 1;
}

static size_t check_step(lua_State *L, int idx, pk_trajectory *t)
{
  lua_Integer s = pkL_checkint(L, idx, LUA_MININTEGER, "step");
  if (s < 0 || (lua_Unsigned)s > pk_trajectory_steps(t))
    luaL_error(L, "step %I out of range 0..%d", s, (int)pk_trajectory_steps(t));
  return (size_t)s;
}

static int t_weights(lua_State *L)
{
  pk_trajectory *t = checkt(L, 1);
  size_t s = check_step(L, 2, t), P = pk_network_nparams(pk_trajectory_network0(t));
  pk_matrix **w = newm(L);
  pkL_raise(L, pk_matrix_new(w, P, 1));
  return pkL_made(L, pk_trajectory_weights(t, s, pk_matrix_data(*w)));
}

static int t_network(lua_State *L)
{
  pk_trajectory *t = checkt(L, 1);
  size_t s = check_step(L, 2, t);
  return pkL_made(L, pk_trajectory_network(t, s, &pkL_newbox(L, &pkL_Network)->u.network));
}

/* a per-step series of the trajectory as a Lua array */
static int push_series(lua_State *L, double (*get)(const pk_trajectory *, size_t))
{
  pk_trajectory *t = checkt(L, 1);
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
  lua_pushinteger(L, (lua_Integer)pk_trajectory_memory(checkt(L, 1)));
  return 1;
}

/* traj:batch(s): the 1-based training examples of step s = 1..T (the
 * update from w_{s-1} to w_s), in the order the step took them */
static int t_batch(lua_State *L)
{
  pk_trajectory *t = checkt(L, 1);
  lua_Integer s = pkL_checkint(L, 2, LUA_MININTEGER, "step");
  pk_trajectory_info info;
  size_t nb, i, *rows;
  if (s < 1 || (lua_Unsigned)s > pk_trajectory_steps(t))
    return luaL_error(L, "batch: step %I out of range 1..%d (step s goes from weights(s-1) to "
                      "weights(s))", s, (int)pk_trajectory_steps(t));
  pk_trajectory_get_info(t, &info);
  pkL_raise(L, pk_check_bytes(info.batch_size, sizeof *rows, "batch"));
  rows = lua_newuserdatauv(L, (info.batch_size ? info.batch_size : 1) * sizeof *rows, 0);
  pkL_raise(L, pk_trajectory_batch(t, (size_t)s - 1, rows, &nb));
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
  pk_trajectory *t = checkt(L, 1);
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
    push_series(L, pk_trajectory_lr);
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
  if (pk_trajectory_loss_weights(t)) {
    /* a weighted run: its loss weights (a copy), so that the options with
     * X and Y train the same weights again */
    pk_matrix **w = newm(L);
    pkL_raise(L, pk_matrix_from_array(w, pk_matrix_rows(pk_trajectory_X(t)), 1,
                                      pk_trajectory_loss_weights(t)));
    lua_setfield(L, -2, "weights");
  }
  /* the hyperparameters of this optimizer only, as train accepts them */
  pkL_setnumber(L, "weight_decay", in.hyper.weight_decay);
  if (in.optimizer == PK_OPT_MOMENTUM || in.optimizer == PK_OPT_NESTEROV)
    pkL_setnumber(L, "momentum", in.hyper.momentum);
  if (in.optimizer == PK_OPT_MOMENTUM) pkL_setnumber(L, "dampening", in.hyper.dampening);
  if (in.optimizer == PK_OPT_ADAM || in.optimizer == PK_OPT_ADAMW) {
    pkL_setnumber(L, "beta1", in.hyper.beta1);
    pkL_setnumber(L, "beta2", in.hyper.beta2);
    pkL_setnumber(L, "eps", in.hyper.eps);
  }
  pkL_account(L);
  return 1;
}

/* traj:data() -> X, Y, Wt: views of the recorded training data (they keep
 * it alive; changing them is a change of the data, which replay refuses),
 * and a copy of the run's per-example loss weights (all 1 for a run
 * trained without) */
static int t_data(lua_State *L)
{
  pk_trajectory *t = checkt(L, 1);
  /* a view changes only the storage's reference count */
  pk_matrix *X = (pk_matrix *)pk_trajectory_X(t), *Y = (pk_matrix *)pk_trajectory_Y(t), **W;
  const double *lw = pk_trajectory_loss_weights(t);
  size_t m = pk_matrix_rows(X);
  pkL_raise(L, pk_matrix_view_rows(newm(L), X, 0, m));
  pkL_raise(L, pk_matrix_view_rows(newm(L), Y, 0, pk_matrix_rows(Y)));
  W = newm(L);
  pkL_raise(L, lw ? pk_matrix_from_array(W, m, 1, lw) : pk_matrix_fill(W, m, 1, 1.0));
  pkL_account(L);
  return 3;
}

/* traj:save(path [, { data = true }]) */
static int t_save(lua_State *L)
{
  static const pkL_option spec[] = {
    { "data", PKL_BOOLEAN, .offset = 0 }, { NULL, 0, .offset = 0 }
  };
  pk_trajectory *t = checkt(L, 1);
  int data = 1;
  const char *path = pkL_saveargs(L, spec, &data);
  pkL_raise(L, pk_trajectory_check_data(t));
  return pkL_ioresult(L, pk_trajectory_save(t, path, data), 0);
}

int pkL_load_trajectory(lua_State *L, const char *path, pk_matrix *X, pk_matrix *Y)
{
  /* given X and Y, the trajectory holds its own views of them */
  pkL_box *b = pkL_newbox(L, &pkL_Trajectory);
  return pkL_ioresult(L, pk_trajectory_load(&b->u.trajectory, path, X, Y), 1);
}

static int t_tostring(lua_State *L)
{
  pk_trajectory *t = pkL_checkbox(L, 1, &pkL_Trajectory)->u.trajectory;
  char mem[32];
  if (!t) return pkL_released(L, &pkL_Trajectory);
  pk_format_bytes(mem, sizeof mem, (double)pk_trajectory_memory(t));
  lua_pushfstring(L, "pathkernel.Trajectory of %d steps (%s)", (int)pk_trajectory_steps(t), mem);
  return 1;
}

void pkL_open_trajectory(lua_State *L)
{
  static const luaL_Reg meta[] = { { "__len", t_len }, { "__tostring", t_tostring }, { NULL, NULL } };
  static const luaL_Reg methods[] = {
    { "weights", t_weights }, { "network", t_network }, { "losses", t_losses }, { "lrs", t_lrs },
    { "memory", t_memory }, { "save", t_save }, { "steps", t_len }, { "batch", t_batch },
    { "options", t_options }, { "data", t_data }, { NULL, NULL }
  };
  pkL_newclass(L, &pkL_Trajectory, methods, meta);
}
