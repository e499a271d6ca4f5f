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
#include <math.h>
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
  double buf[8];                /* n <= 3 */
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

/* ---- distributed kernel ridge (ScaLAPACK) --------------------------------- */

/* ScaLAPACK and its BLACS have no C header on Debian: their C and Fortran
 * entry points as the library exports them. */
extern void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
extern void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
extern void Cblacs_gridexit(int ctxt);
extern int Csys2blacs_handle(MPI_Comm comm);
extern void Cfree_blacs_system_handle(int handle);
extern int numroc_(const int *n, const int *nb, const int *iproc, const int *isrc,
                   const int *nprocs);
extern void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
                      const int *irsrc, const int *icsrc, const int *ctxt, const int *lld,
                      int *info);
extern void pdpotrf_(const char *uplo, const int *n, double *a, const int *ia, const int *ja,
                     const int *desca, int *info);
extern void pdpotrs_(const char *uplo, const int *n, const int *nrhs, const double *a,
                     const int *ia, const int *ja, const int *desca, double *b, const int *ib,
                     const int *jb, const int *descb, int *info);

static const char RIDGE[] = "pathkernel.mpi.Ridge";

typedef struct ridge_args {
  double lambda;
  lua_Integer block;
} ridge_args;

/* The argument checks of mpi.ridge, run protected: a failure becomes this
 * rank's "bad argument" in the agreement instead of leaving the others. */
static int ridge_check(lua_State *L)
{
  static const pkL_option spec[] = {
    { "lambda", PKL_NUMBER, .offset = offsetof(ridge_args, lambda) },
    { "block", PKL_INTEGER, .offset = offsetof(ridge_args, block), .lo = 1, .hi = 4096 },
    { NULL, 0, .offset = 0 }
  };
  ridge_args *a = lua_touserdata(L, 5);
  pk_kernel *k = pkL_check(L, 1, &pkL_Kernel);
  pk_matrix *X = pkL_check(L, 2, &pkL_Matrix), *Y = pkL_check(L, 3, &pkL_Matrix);
  pkL_options(L, 4, "mpi.ridge", spec, a);
  if (!(a->lambda > 0) || !isfinite(a->lambda))
    luaL_error(L, "mpi.ridge: lambda must be a positive finite number, got %f", a->lambda);
  if (pk_kernel_outputs(k) != 1)
    luaL_error(L, "mpi.ridge: the kernel answers %d rows per example; only kernels of one "
               "(pk.kernel.rbf, ntk, ... or a network kernel in trace mode) are distributed",
               (int)pk_kernel_outputs(k));
  if (pk_matrix_rows(Y) != pk_matrix_rows(X))
    luaL_error(L, "mpi.ridge: Y has %d rows on this rank, X has %d: each rank's rows of X and Y "
               "go together", (int)pk_matrix_rows(Y), (int)pk_matrix_rows(X));
  if (pk_kernel_input_dim(k) && pk_kernel_input_dim(k) != pk_matrix_cols(X))
    luaL_error(L, "mpi.ridge: X has %d columns, the kernel takes %d", (int)pk_matrix_cols(X),
               (int)pk_kernel_input_dim(k));
  if (!pk_matrix_all_finite(X) || !pk_matrix_all_finite(Y))
    luaL_error(L, "mpi.ridge: X or Y holds a NaN or infinite value on this rank");
  return 0;
}

/* every rank's rows of M (c columns, r rows here) into a new matrix on every
 * rank; counts (p ints) must hold each rank's rows */
static pk_matrix *gather_rows(lua_State *L, mpicomm *m, const pk_matrix *M, size_t c,
                              const long long *rows, size_t total)
{
  int p = m->c.size, i, rc, *counts = lua_newuserdatauv(L, 2 * (size_t)p * sizeof(int), 0);
  int *displs = counts + p;
  pkL_box *b;
  for (i = 0; i < p; i++) {
    counts[i] = (int)(rows[i] * (long long)c);
    displs[i] = i ? displs[i - 1] + counts[i - 1] : 0;
  }
  b = pkL_newbox(L, &pkL_Matrix);
  pkL_raise(L, pk_matrix_new(&b->u.matrix, total, c));
  rc = MPI_Allgatherv(pk_matrix_cdata(M), counts[m->c.rank], MPI_DOUBLE,
                      pk_matrix_data(b->u.matrix), counts, displs, MPI_DOUBLE, m->comm);
  if (rc != MPI_SUCCESS) mpierror(L, m, rc, "MPI_Allgatherv");
  lua_remove(L, -2);
  return b->u.matrix;
}

/* the global index of local row (or column) l in a block-cyclic layout */
static size_t global_index(int l, int nb, int me, int nprocs)
{
  return ((size_t)(l / nb) * (size_t)nprocs + (size_t)me) * (size_t)nb + (size_t)(l % nb);
}

/* this rank's rows of the global matrix A whose local indices are 0..nloc-1 */
static pk_matrix *local_rows(lua_State *L, const pk_matrix *A, int nloc, int nb, int me,
                             int nprocs)
{
  size_t d = pk_matrix_cols(A), l;
  pkL_box *b = pkL_newbox(L, &pkL_Matrix);
  pkL_raise(L, pk_matrix_new(&b->u.matrix, (size_t)nloc, d));
  for (l = 0; l < (size_t)nloc; l++)
    memcpy(pk_matrix_data(b->u.matrix) + l * d,
           pk_matrix_cdata(A) + global_index((int)l, nb, me, nprocs) * d, d * sizeof(double));
  return b->u.matrix;
}

/* a grid of nprow x npcol ranks, as square as the count allows */
static void grid_shape(int p, int *nprow, int *npcol)
{
  int r = 1, i;
  for (i = 1; i * i <= p; i++)
    if (p % i == 0) r = i;
  *nprow = r;
  *npcol = p / r;
}

/* mpi.ridge(K, Xlocal, Ylocal [, { lambda = 1e-3, block = 64 }]) -> a model
 * with :predict(Xq) on any rank's queries; collective */
static int l_ridge(lua_State *L)
{
  mpicomm *m = getcomm(L);
  ridge_args a = { 1e-3, 64 };
  int bad, p = m->c.size, i, rc, nprow, npcol, myrow, mycol, ctxt, handle, info = 0, zero = 0,
      one = 1, n_, c_, nb, locr, locc, loccb, lld, descA[9], descB[9], xi, ai;
  double v[3] = { 0, 0, 0 };
  long long mine, *rows;
  size_t n = 0, d, c, r, j;
  pk_matrix *X, *Y, *Xall, *Yall, *Xr, *Xc, *alpha;
  pk_kernel *k;
  pk_matrix *G = NULL, *B = NULL, *D = NULL;
  pk_status st;
  lua_settop(L, 4);
  lua_pushcfunction(L, ridge_check);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  lua_pushvalue(L, 4);
  lua_pushlightuserdata(L, &a);
  bad = lua_pcall(L, 5, 0, 0) != LUA_OK;
  if (!bad) {
    v[0] = (double)pk_matrix_cols(pkL_check(L, 2, &pkL_Matrix));
    v[1] = (double)pk_matrix_cols(pkL_check(L, 3, &pkL_Matrix));
    v[2] = (double)a.block;
  }
  agree(L, m, bad, v, "columns (of X, of Y) or block", 3);
  k = pkL_check(L, 1, &pkL_Kernel);
  X = pkL_check(L, 2, &pkL_Matrix);
  Y = pkL_check(L, 3, &pkL_Matrix);
  d = pk_matrix_cols(X);
  c = pk_matrix_cols(Y);
  /* who holds how many rows: the same counts on every rank, so a refusal
   * below is every rank's */
  rows = lua_newuserdatauv(L, (size_t)p * sizeof(long long), 0);
  mine = (long long)pk_matrix_rows(X);
  rc = MPI_Allgather(&mine, 1, MPI_LONG_LONG, rows, 1, MPI_LONG_LONG, m->comm);
  if (rc != MPI_SUCCESS) mpierror(L, m, rc, "MPI_Allgather");
  for (i = 0; i < p; i++) n += (size_t)rows[i];
  if (n == 0) return luaL_error(L, "mpi.ridge: no training rows on any rank");
  if (n > (size_t)INT_MAX / (d > c ? (d ? d : 1) : (c ? c : 1)))
    return luaL_error(L, "mpi.ridge: %d rows of %d columns are more than one MPI message holds",
                      (int)n, (int)(d > c ? d : c));
  /* every rank keeps the inputs (n x d) and the targets: the Gram's
   * blocks need any row, and predictions need every training input */
  Xall = gather_rows(L, m, X, d, rows, n);
  xi = lua_gettop(L);
  Yall = gather_rows(L, m, Y, c, rows, n);
  /* the grid and this rank's blocks of K + lambda I and of Y */
  grid_shape(p, &nprow, &npcol);
  handle = Csys2blacs_handle(m->comm);
  ctxt = handle;
  Cblacs_gridinit(&ctxt, "Row", nprow, npcol);
  Cblacs_gridinfo(ctxt, &nprow, &npcol, &myrow, &mycol);
  n_ = (int)n;
  c_ = (int)c;
  nb = (int)a.block;
  locr = numroc_(&n_, &nb, &myrow, &zero, &nprow);
  locc = numroc_(&n_, &nb, &mycol, &zero, &npcol);
  loccb = numroc_(&c_, &nb, &mycol, &zero, &npcol);
  lld = locr > 1 ? locr : 1;
  Xr = local_rows(L, Xall, locr, nb, myrow, nprow);
  Xc = local_rows(L, Xall, locc, nb, mycol, npcol);
  /* K(Xc, Xr), locc x locr row-major, is the block K(Xr, Xc) column-major
   * with leading dimension locr, as ScaLAPACK stores it (K is symmetric) */
  st = locr && locc ? pk_kernel_gram(k, Xc, Xr, NULL, &G) : pk_matrix_zeros(&G, 1, 1);
  if (!st) st = pk_matrix_zeros(&B, (size_t)lld, (size_t)(loccb > 0 ? loccb : 1));
  /* the diagonal from the kernel's own K(x, x): a Gram of two different
   * matrices computes it like any pair, which loses digits where the
   * kernel has a square root at x = x' (the arc-cosine kernels); one
   * process's Gram of X with itself takes the exact value too */
  if (!st && locr && locc) st = pk_kernel_diag(k, Xr, NULL, &D);
  if (!st && locr && locc) {
    double *A = pk_matrix_data(G);
    for (j = 0; j < (size_t)locc; j++) {
      size_t gj = global_index((int)j, nb, mycol, npcol);
      for (r = 0; r < (size_t)locr; r++)
        if (global_index((int)r, nb, myrow, nprow) == gj)
          A[r + j * (size_t)lld] = pk_matrix_get(D, r, 0) + a.lambda;
    }
  }
  pk_matrix_free(D);
  if (!st)
    for (j = 0; j < (size_t)loccb; j++)
      for (r = 0; r < (size_t)locr; r++)
        pk_matrix_data(B)[r + j * (size_t)lld] =
          pk_matrix_get(Yall, global_index((int)r, nb, myrow, nprow),
                        global_index((int)j, nb, mycol, npcol));
  /* a rank short of memory stops every rank */
  {
    double fail = st ? 1 : 0;
    rc = MPI_Allreduce(MPI_IN_PLACE, &fail, 1, MPI_DOUBLE, MPI_MAX, m->comm);
    if (rc == MPI_SUCCESS && fail > 0) {
      pk_matrix_free(G);
      pk_matrix_free(B);
      Cblacs_gridexit(ctxt);
      Cfree_blacs_system_handle(handle);
      return st ? pkL_error(L, st) : luaL_error(L, "mpi.ridge: another rank failed to build its "
                                                 "blocks of the Gram");
    }
  }
  descinit_(descA, &n_, &n_, &nb, &nb, &zero, &zero, &ctxt, &lld, &info);
  if (!info) descinit_(descB, &n_, &c_, &nb, &nb, &zero, &zero, &ctxt, &lld, &info);
  if (!info) pdpotrf_("L", &n_, pk_matrix_data(G), &one, &one, descA, &info);
  {
    int worst = info;
    MPI_Allreduce(&info, &worst, 1, MPI_INT, MPI_MAX, m->comm);
    info = worst;
  }
  if (!info) pdpotrs_("L", &n_, &c_, pk_matrix_data(G), &one, &one, descA, pk_matrix_data(B),
                      &one, &one, descB, &info);
  pk_matrix_free(G);
  Cblacs_gridexit(ctxt);
  Cfree_blacs_system_handle(handle);
  if (info) {
    pk_matrix_free(B);
    return luaL_error(L, info > 0 ? "mpi.ridge: K + lambda I is not positive definite (at "
                      "row %d); raise lambda" : "mpi.ridge: ScaLAPACK refused argument %d",
                      info > 0 ? info : -info);
  }
  /* alpha on every rank: each entry has one owner, so the sum of the
   * owners' blocks over zeros is exact */
  {
    pkL_box *bx = pkL_newbox(L, &pkL_Matrix);
    st = pk_matrix_zeros(&bx->u.matrix, n, c);
    if (st) pk_matrix_free(B);
    pkL_raise(L, st);
    alpha = bx->u.matrix;
  }
  for (j = 0; j < (size_t)loccb; j++)
    for (r = 0; r < (size_t)locr; r++)
      pk_matrix_set(alpha, global_index((int)r, nb, myrow, nprow),
                    global_index((int)j, nb, mycol, npcol), pk_matrix_data(B)[r + j * (size_t)lld]);
  pk_matrix_free(B);
  if (comm_allreduce(m, pk_matrix_data(alpha), n * c, PK_COMM_SUM))
    return luaL_error(L, "mpi.ridge: %s", m->err);
  /* the model: the kernel, the inputs and alpha as its user values */
  ai = lua_gettop(L);
  lua_newuserdatauv(L, 1, 3);
  luaL_setmetatable(L, RIDGE);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, xi);
  lua_setiuservalue(L, -2, 2);
  lua_pushvalue(L, ai);
  lua_setiuservalue(L, -2, 3);
  pkL_account(L);
  return 1;
}

/* model:predict(Xq) -> K(Xq, X) alpha for this rank's queries (local) */
static int ridge_predict(lua_State *L)
{
  pk_kernel *k;
  pk_matrix *X, *alpha, *Xq, *G = NULL;
  pkL_box *b;
  pk_status st;
  luaL_checkudata(L, 1, RIDGE);
  Xq = pkL_check(L, 2, &pkL_Matrix);
  lua_getiuservalue(L, 1, 1);
  k = pkL_check(L, -1, &pkL_Kernel);
  lua_getiuservalue(L, 1, 2);
  X = pkL_check(L, -1, &pkL_Matrix);
  lua_getiuservalue(L, 1, 3);
  alpha = pkL_check(L, -1, &pkL_Matrix);
  if (pk_matrix_cols(Xq) != pk_matrix_cols(X))
    return luaL_error(L, "predict: the queries have %d columns, the training inputs %d",
                      (int)pk_matrix_cols(Xq), (int)pk_matrix_cols(X));
  b = pkL_newbox(L, &pkL_Matrix);
  if (!(st = pk_kernel_gram(k, Xq, X, NULL, &G))) st = pk_matrix_mul(&b->u.matrix, G, alpha);
  pk_matrix_free(G);
  return pkL_made(L, st);
}

/* model:coefficients() -> alpha (n x c, the same on every rank);
 * model:inputs() -> every rank's training inputs, in rank order */
static int ridge_uservalue(lua_State *L, int i)
{
  luaL_checkudata(L, 1, RIDGE);
  lua_getiuservalue(L, 1, i);
  return 1;
}

static int ridge_coefficients(lua_State *L) { return ridge_uservalue(L, 3); }
static int ridge_inputs(lua_State *L) { return ridge_uservalue(L, 2); }

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
    { "allreduce", l_allreduce }, { "allgather", l_allgather }, { "ridge", l_ridge },
    { NULL, NULL }
  };
  static const luaL_Reg ridge_methods[] = {
    { "predict", ridge_predict }, { "coefficients", ridge_coefficients },
    { "inputs", ridge_inputs }, { NULL, NULL }
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
  if (luaL_newmetatable(L, RIDGE)) {
    lua_newtable(L);
    pkL_setfuncs(L, ridge_methods, "");
    lua_setfield(L, -2, "__index");
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
