/* mpi.c - luaopen_pathkernel_mpi, the optional module built by `make mpi`
 * with mpicc: MPI started on require (unless the host did), finished when
 * the Lua state closes, the ranks' collectives on matrices, and the
 * communicator (mpi.comm, a pk_comm) that net:train{ comm = mpi } and the
 * other data-parallel calls of the plain module use without linking MPI.
 *
 * Every collective here first agrees, in one small allreduce, on whether
 * each rank's arguments are good and on the shapes that must match, so a
 * rank with a bad argument raises its own error and every other rank
 * raises one too instead of waiting in a collective that never completes.
 * It cannot help a rank that raises before it calls in at all (a script
 * that takes a different path on one rank): that rank's error ends the
 * script, and mpirun then stops the others (README, "On a cluster"). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <mpi.h>
#include "aux.h"

/* The communicator userdata: a pk_comm first (what aux.c reads), then
 * MPI's side of it. */
typedef struct mpicomm {
  pk_comm c;
  MPI_Comm comm;
  char err[MPI_MAX_ERROR_STRING + 64];
} mpicomm;

static const char SENTINEL[] = "pathkernel.mpi.sentinel";
static int started_here;     /* MPI_Init_thread was ours: MPI_Finalize is ours too */

static int mpi_alive(void)
{
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

static void finish_mpi(void)
{
  if (started_here && mpi_alive()) MPI_Finalize();
}

/* ---- the pk_comm hook ----------------------------------------------------- */

static int failed(mpicomm *m, int rc, const char *what)
{
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) strcpy(msg, "unknown MPI error");
  snprintf(m->err, sizeof m->err, "%s: %s", what, msg);
  return 1;
}

/* A sum is reduced to rank 0 and broadcast from there: every rank then
 * holds the same bits, whatever order MPI's allreduce would add in on
 * each rank. Large buffers go in pieces that fit an int count. */
static int comm_allreduce(void *ctx, double *buf, size_t n, pk_comm_op op)
{
  mpicomm *m = ctx;
  size_t at = 0;
  int rc;
  if (!mpi_alive()) {
    snprintf(m->err, sizeof m->err, "MPI is not running (finalised, or never initialised)");
    return 1;
  }
  while (at < n) {
    int k = n - at > (size_t)(INT_MAX / 2) ? INT_MAX / 2 : (int)(n - at);
    if (op == PK_COMM_MAX) {
      rc = MPI_Allreduce(MPI_IN_PLACE, buf + at, k, MPI_DOUBLE, MPI_MAX, m->comm);
      if (rc != MPI_SUCCESS) return failed(m, rc, "MPI_Allreduce");
    } else {
      rc = MPI_Reduce(m->c.rank == 0 ? MPI_IN_PLACE : buf + at, buf + at, k, MPI_DOUBLE, MPI_SUM,
                      0, m->comm);
      if (rc != MPI_SUCCESS) return failed(m, rc, "MPI_Reduce");
      rc = MPI_Bcast(buf + at, k, MPI_DOUBLE, 0, m->comm);
      if (rc != MPI_SUCCESS) return failed(m, rc, "MPI_Bcast");
    }
    at += (size_t)k;
  }
  return 0;
}

static const char *comm_error(void *ctx) { return ((mpicomm *)ctx)->err; }

static const char COMMKEY[] = "pathkernel.mpi.comm";

/* the process's communicator (one per Lua state, made on the first require) */
static mpicomm *getcomm(lua_State *L)
{
  mpicomm *m;
  lua_getfield(L, LUA_REGISTRYINDEX, COMMKEY);
  m = luaL_testudata(L, -1, PKL_COMM);
  lua_pop(L, 1);     /* the registry keeps it */
  if (!m || !m->c.size || !mpi_alive()) luaL_error(L, "%s: MPI is not running", pkL_fname(L));
  return m;
}

/* a collective's failure on this rank */
static int mpierror(lua_State *L, mpicomm *m, int rc, const char *what)
{
  failed(m, rc, what);
  return luaL_error(L, "%s: %s", pkL_fname(L), m->err);
}

/* ---- agreement ------------------------------------------------------------- */

/* Every rank passes bad (its argument's error is on top of the stack when
 * nonzero) and n values that must match; raises on every rank when a rank
 * is bad or the values differ (what names them). */
static void agree(lua_State *L, mpicomm *m, int bad, const double *v, const char *what, int n)
{
  double buf[8];
  int i, rc;
  buf[0] = bad ? m->c.rank + 1 : 0;
  for (i = 0; i < n; i++) {
    buf[1 + 2 * i] = v[i];
    buf[2 + 2 * i] = -v[i];
  }
  rc = MPI_Allreduce(MPI_IN_PLACE, buf, 1 + 2 * n, MPI_DOUBLE, MPI_MAX, m->comm);
  if (rc != MPI_SUCCESS) mpierror(L, m, rc, "MPI_Allreduce");
  if (bad) lua_error(L);
  if (buf[0] > 0)
    luaL_error(L, "%s: rank %d gave a bad argument (its own error says which); every rank stops",
               pkL_fname(L), (int)buf[0] - 1);
  for (i = 0; i < n; i++)
    if (buf[1 + 2 * i] != -buf[2 + 2 * i])
      luaL_error(L, "%s: the ranks' matrices differ in %s (%I to %I): every rank must give the same",
                 pkL_fname(L), what, (lua_Integer)-buf[2 + 2 * i], (lua_Integer)buf[1 + 2 * i]);
}

/* The matrix argument at idx, or NULL with the error message pushed. */
static pk_matrix *trymatrix(lua_State *L, int idx)
{
  pkL_box *b = pkL_testbox(L, idx, &pkL_Matrix);
  if (!b) {
    lua_pushfstring(L, "bad argument #%d to '%s' (pathkernel.Matrix expected, got %s)", idx,
                    pkL_fname(L), luaL_typename(L, idx));
    return NULL;
  }
  if (!b->u.matrix) {
    lua_pushfstring(L, "bad argument #%d to '%s' (matrix has been released)", idx, pkL_fname(L));
    return NULL;
  }
  return b->u.matrix;
}

/* ---- the module's functions ---------------------------------------------- */

static int l_rank(lua_State *L)
{
  lua_pushinteger(L, getcomm(L)->c.rank);
  return 1;
}

static int l_size(lua_State *L)
{
  lua_pushinteger(L, getcomm(L)->c.size);
  return 1;
}

static int l_barrier(lua_State *L)
{
  mpicomm *m = getcomm(L);
  int rc = MPI_Barrier(m->comm);
  if (rc != MPI_SUCCESS) mpierror(L, m, rc, "MPI_Barrier");
  return 0;
}

/* mpi.shard(X) -> this rank's block of rows (a view), first, last (1-based):
 * n rows in size blocks, the first n % size one row longer. Local: every
 * rank computes its own block from the same n. */
static int l_shard(lua_State *L)
{
  mpicomm *m = getcomm(L);
  pk_matrix *X = pkL_check(L, 1, &pkL_Matrix);
  size_t n = pk_matrix_rows(X), p = (size_t)m->c.size, r = (size_t)m->c.rank;
  size_t base = n / p, rem = n % p, r0 = r * base + (r < rem ? r : rem);
  size_t r1 = r0 + base + (r < rem ? 1 : 0);
  pkL_box *b = pkL_newbox(L, &pkL_Matrix);
  pkL_raise(L, pk_matrix_view_rows(&b->u.matrix, X, r0, r1));
  pkL_keep(L, -1, 1);
  lua_pushinteger(L, (lua_Integer)r0 + 1);
  lua_pushinteger(L, (lua_Integer)r1);
  return 3;
}

/* mpi.allreduce(M) -> the elementwise sum over the ranks (the same bits on
 * every rank) */
static int l_allreduce(lua_State *L)
{
  mpicomm *m = getcomm(L);
  pk_matrix *M = trymatrix(L, 1), *R;
  double v[2] = { 0, 0 };
  size_t n;
  pkL_box *b;
  if (M) {
    v[0] = (double)pk_matrix_rows(M);
    v[1] = (double)pk_matrix_cols(M);
  }
  agree(L, m, M == NULL, v, "shape", 2);
  b = pkL_newbox(L, &pkL_Matrix);
  pkL_raise(L, pk_matrix_copy(&b->u.matrix, M));
  R = b->u.matrix;
  n = pk_matrix_rows(R) * pk_matrix_cols(R);
  if (comm_allreduce(m, pk_matrix_data(R), n, PK_COMM_SUM))
    return luaL_error(L, "%s: %s", pkL_fname(L), m->err);
  return pkL_made(L, PK_OK);
}

/* mpi.allgather(M) -> the rows of every rank, in rank order (a rank may
 * hold none) */
static int l_allgather(lua_State *L)
{
  mpicomm *m = getcomm(L);
  pk_matrix *M = trymatrix(L, 1), *R;
  int p = m->c.size, i, rc, *counts, *displs;
  long long mine, *rows;
  size_t total = 0, c;
  double v[1] = { 0 };
  pkL_box *b;
  if (M) v[0] = (double)pk_matrix_cols(M);
  agree(L, m, M == NULL, v, "columns", 1);
  c = pk_matrix_cols(M);
  rows = lua_newuserdatauv(L, (size_t)p * (sizeof(long long) + 2 * sizeof(int)), 0);
  counts = (int *)(rows + p);
  displs = counts + p;
  mine = (long long)pk_matrix_rows(M);
  rc = MPI_Allgather(&mine, 1, MPI_LONG_LONG, rows, 1, MPI_LONG_LONG, m->comm);
  if (rc != MPI_SUCCESS) mpierror(L, m, rc, "MPI_Allgather");
  for (i = 0; i < p; i++) total += (size_t)rows[i];
  /* MPI counts are ints: refused alike on every rank (every rank sees the
   * same counts) */
  if (total > PK_MAX_DIM || (c && total > (size_t)INT_MAX / c))
    return luaL_error(L, "%s: %d rows of %d columns in all are more than one MPI message holds",
                      pkL_fname(L), (int)total, (int)c);
  for (i = 0; i < p; i++) {
    counts[i] = (int)(rows[i] * (long long)c);
    displs[i] = i ? displs[i - 1] + counts[i - 1] : 0;
  }
  b = pkL_newbox(L, &pkL_Matrix);
  pkL_raise(L, pk_matrix_new(&b->u.matrix, total, c));
  R = b->u.matrix;
  rc = MPI_Allgatherv(pk_matrix_cdata(M), counts[m->c.rank], MPI_DOUBLE, pk_matrix_data(R),
                      counts, displs, MPI_DOUBLE, m->comm);
  if (rc != MPI_SUCCESS) mpierror(L, m, rc, "MPI_Allgatherv");
  return pkL_made(L, PK_OK);
}

/* ---- opening ---------------------------------------------------------------- */

static int sentinel_gc(lua_State *L)
{
  (void)L;
  finish_mpi();
  return 0;
}

/* MPI_THREAD_FUNNELED: only the thread that loaded the module calls MPI
 * (the library's worker threads compute, they never communicate). */
#if defined(__GNUC__)
__attribute__((visibility("default")))
#endif
int luaopen_pathkernel_mpi(lua_State *L);

int luaopen_pathkernel_mpi(lua_State *L)
{
  static const luaL_Reg fns[] = {
    { "rank", l_rank }, { "size", l_size }, { "barrier", l_barrier }, { "shard", l_shard },
    { "allreduce", l_allreduce }, { "allgather", l_allgather }, { NULL, NULL }
  };
  int init = 0, fin = 0, provided = 0;
  mpicomm *m;
  /* the plain module first: its classes (pathkernel.Matrix) are ours too */
  lua_getglobal(L, "require");
  lua_pushstring(L, "pathkernel.core");
  lua_call(L, 1, 0);
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (fin) return luaL_error(L, "pathkernel.mpi: MPI has been finalised in this process and cannot start again");
  if (!init) {
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      return luaL_error(L, "pathkernel.mpi: MPI_Init_thread failed");
    started_here = 1;
    atexit(finish_mpi);      /* os.exit without closing the state */
  }
  /* finish MPI when the state closes, once however often the module loads */
  if (lua_getfield(L, LUA_REGISTRYINDEX, SENTINEL) == LUA_TNIL) {
    lua_newuserdatauv(L, 1, 0);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, sentinel_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, SENTINEL);
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 10);
  pkL_setfuncs(L, fns, "mpi.");
  if (lua_getfield(L, LUA_REGISTRYINDEX, COMMKEY) == LUA_TNIL) {
    lua_pop(L, 1);
    m = lua_newuserdatauv(L, sizeof *m, 0);
    memset(m, 0, sizeof *m);
    m->comm = MPI_COMM_NULL;
    luaL_newmetatable(L, PKL_COMM);
    lua_setmetatable(L, -2);
    /* a communicator of our own, whose errors return instead of
     * aborting; MPI_Finalize frees it */
    if (MPI_Comm_dup(MPI_COMM_WORLD, &m->comm) != MPI_SUCCESS)
      return luaL_error(L, "pathkernel.mpi: MPI_Comm_dup failed");
    MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(m->comm, &m->c.rank);
    MPI_Comm_size(m->comm, &m->c.size);
    m->c.allreduce = comm_allreduce;
    m->c.error = comm_error;
    m->c.ctx = m;
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, COMMKEY);
  }
  lua_setfield(L, -2, "comm");
  lua_pushstring(L, "funneled");
  lua_setfield(L, -2, "thread_level");
  return 1;
}
