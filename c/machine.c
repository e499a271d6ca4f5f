/* machine.c - the trained network as a kernel machine: per-example
 * contributions from a trajectory (offline, any queries) or accumulated
 * during training (online, fixed queries: the hook the training loop
 * runs), the paper's coefficients, and verification against the network
 * itself. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <float.h>
#include "pk_machine.h"
#include "pk_comm.h"
#include "pk_traj.h"
#include "pk_decomp.h"

void pk_machine_free(pk_machine *km)
{
  if (!km) return;
  pk_matrix_free(km->Xq);
  free(km->contrib);
  free(km->kp);
  free(km->bias);
  free(km->final);
  free(km->reg);
  free(km->cert);
  pk_network_free(km->net0);
  pk_network_free(km->netT);
  pk_trajectory_free((pk_trajectory *)km->traj);
  free(km->map);
  free(km);
}

/* Point the accessors at the rows of the cached results that the queries
 * Xq are: all of them in order, or a subset matched row by row (bitwise).
 * Returns 0 if some row of Xq is not among the cached queries. */
static int set_map(pk_machine *km, const pk_matrix *Xq, int same)
{
  size_t x, r, d = Xq->cols, *map;
  map = malloc((Xq->rows ? Xq->rows : 1) * sizeof *map);
  if (!map) return 0;
  for (x = 0; x < Xq->rows; x++) {
    if (same) { map[x] = x; continue; }
    for (r = 0; r < km->nq; r++)
      if (memcmp(Xq->data + x * d, km->Xq->data + r * d, d * sizeof(double)) == 0) break;
    if (r == km->nq) { free(map); return 0; }
    map[x] = r;
  }
  free(km->map);
  km->map = map;
  km->nreq = Xq->rows;
  return 1;
}

static void drop_results(pk_machine *km)
{
  pk_matrix_free(km->Xq);
  free(km->contrib);
  free(km->kp);
  free(km->bias);
  free(km->final);
  free(km->reg);
  free(km->cert);
  free(km->map);
  km->Xq = NULL;
  km->contrib = km->kp = km->bias = km->final = km->reg = km->cert = NULL;
  km->kp_one = 0;
  km->map = NULL;
  km->nq = km->nreq = 0;
}

/* the rule checked and completed: exact takes the default tolerance for 0 */
static pk_status check_quad(const pk_quad *q, pk_quad *out)
{
  double t[PK_MAX_NODES], w[PK_MAX_NODES];
  pk_status st;
  *out = *q;
  if (q->rule == PK_RULE_EXACT) {
    if (!(q->tol >= 0) || !isfinite(q->tol))
      return pk_fail(PK_EINVAL, "tol must be a finite number >= 0, got %g", q->tol);
    if (q->tol == 0) out->tol = PK_DEFAULT_TOL;
    out->nodes = 0;
    return PK_OK;
  }
  if ((st = pk_quadrature(q->rule, q->nodes, t, w))) return st;
  out->tol = 0;
  return PK_OK;
}

/* a machine shell with w_0 and w_T networks */
static pk_status shell(pk_machine **out, const pk_network *arch, const double *w0,
                       const double *wT, size_t m, const pk_quad *q)
{
  pk_machine *km = calloc(1, sizeof *km);
  pk_status st;
  *out = NULL;
  if (!km) return pk_fail(PK_ENOMEM, "kernel machine: out of memory");
  if ((st = check_quad(q, &km->quad))) { free(km); return st; }
  km->m = m;
  km->K = PK_NET_OUT(arch);
  if ((st = pk_network_clone(&km->net0, arch)) || (st = pk_network_clone(&km->netT, arch))) {
    pk_machine_free(km);
    return st;
  }
  memcpy(km->net0->theta, w0, arch->P * sizeof(double));
  memcpy(km->netT->theta, wT, arch->P * sizeof(double));
  *out = km;
  return PK_OK;
}

/* the bytes a machine keeps for nq queries beside its decomposition: a
 * copy of the queries, f0, f and the regularization, and the network's
 * forward pass over them (its smallest block) */
static double results_bytes(const pk_network *net, const pk_matrix *Xq)
{
  double nq = (double)Xq->rows, K = (double)PK_NET_OUT(net);
  return sizeof(double) * nq * ((double)Xq->cols + 5 * K) + (double)pk_acts_bytes(net, 1, 0);
}

/* bias f(x; w_0) and final f(x; w_T) for the queries */
static pk_status ends(pk_machine *km, const pk_matrix *Xq)
{
  static const char *const what = "the queries' outputs", *const hint = "explain fewer queries at a time";
  pk_matrix *F;
  pk_status st;
  size_t n = Xq->rows * km->K;
  if ((st = pk_alloc_hint((void **)&km->bias, n, sizeof(double), what, hint)) ||
      (st = pk_alloc_hint((void **)&km->final, n, sizeof(double), what, hint)) ||
      (st = pk_calloc_hint((void **)&km->reg, n, sizeof(double), what, hint)))
    return st;
  if ((st = pk_network_forward(km->net0, Xq, &F))) return st;
  memcpy(km->bias, F->data, n * sizeof(double));
  pk_matrix_free(F);
  if ((st = pk_network_forward(km->netT, Xq, &F))) return st;
  memcpy(km->final, F->data, n * sizeof(double));
  pk_matrix_free(F);
  return PK_OK;
}

/* The decomposition's results for the queries Xq (hash h) become the
 * machine's: contributions, kernel values, regularization, certificate and
 * the ends f(x; w_0), f(x; w_T). On failure the machine holds part of them
 * (the caller drops them). */
static pk_status take_results(pk_machine *km, pk_decomp *dc, const pk_matrix *Xq, uint64_t h)
{
  pk_status st;
  pk_decomp_finish(dc);
  km->contrib = dc->contrib;
  km->kp = dc->kp;
  km->cert = dc->cert;
  km->kp_one = dc->kp_one;
  km->kp_k = dc->kp_k;
  dc->contrib = dc->kp = dc->cert = NULL;
  km->stats = dc->stats;
  km->nq = Xq->rows;
  km->xq_hash = h;
  if ((st = pk_matrix_copy(&km->Xq, Xq)) || (st = ends(km, Xq))) return st;
  memcpy(km->reg, dc->reg, km->nq * km->K * sizeof(double));
  if (!set_map(km, Xq, 1)) return pk_fail(PK_ENOMEM, "kernel machine: out of memory");
  return PK_OK;
}

pk_status pk_machine_from_trajectory(pk_machine **out, const pk_trajectory *t, const pk_quad *q)
{
  pk_status st;
  *out = NULL;
  if (t->T == 0) return pk_fail(PK_EINVAL, "kernel machine: the trajectory has no steps");
  if ((st = pk_trajectory_check_data(t))) return st;
  if (t->global_rows)
    return pk_fail(PK_EINVAL, "kernel machine: the trajectory is one rank's shard of a "
                   "data-parallel run; give the communicator (comm) to combine the ranks");
  if ((st = shell(out, t->net, t->W, t->W + (t->ncheck - 1) * t->net->P, t->X->rows, q)))
    return st;
  pk_trajectory_retain(t);
  (*out)->traj = t;
  return PK_OK;
}

pk_status pk_machine_from_shard(pk_machine **out, const pk_trajectory *t, const pk_quad *q,
                                const pk_comm *comm)
{
  static const char *const what[] = { "the steps", "the parameters", "the training rows",
                                      "the quadrature" };
  double v[4];
  pk_status st = PK_OK;
  *out = NULL;
  if (!comm || comm->size < 1 || comm->rank < 0 || comm->rank >= comm->size || !comm->allreduce)
    return pk_fail(PK_EINVAL, "kernel machine: the communicator is not initialised");
  if (!t->global_rows)
    st = pk_fail(PK_EINVAL, "kernel machine: the trajectory was not recorded with comm (a "
                 "one-process run needs no communicator)");
  else if (t->T == 0)
    st = pk_fail(PK_EINVAL, "kernel machine: the trajectory has no steps");
  else if (q->rule == PK_RULE_EXACT)
    /* its node counts and certificate come from each step's residual,
     * f(w_{s+1}) - f(w_s) minus every example's contribution: a rank
     * holds its own examples' only */
    st = pk_fail(PK_EINVAL, "kernel machine: the exact rule needs every example's contributions "
                 "at every step; a shard's machine takes rule = \"gauss\" or \"left\"");
  else
    st = pk_trajectory_check_data(t);
  v[0] = (double)t->T;
  v[1] = (double)t->net->P;
  v[2] = (double)t->global_rows;
  v[3] = (double)q->rule * 100 + q->nodes;
  if ((st = pk_comm_agree(comm, "kernel machine", st, v, what, 4))) return st;
  if ((st = shell(out, t->net, t->W, t->W + (t->ncheck - 1) * t->net->P, t->X->rows, q)))
    return st;
  pk_trajectory_retain(t);
  (*out)->traj = t;
  (*out)->comm = comm;
  return PK_OK;
}

/* Make sure results for Xq exist (cached when Xq is the same data). */
pk_status pk_machine_compute(pk_machine *km, const pk_matrix *Xq, int want_kp,
                             const pk_call_opts *o)
{
  const pk_trajectory *t = km->traj;
  const pk_matrix *req = Xq;
  pk_matrix *all = NULL;
  pk_decomp dc;
  pk_cursor c;
  pk_status st;
  uint64_t h;
  size_t s;
  if (Xq->cols != PK_NET_IN(km->net0))
    return pk_fail(PK_EINVAL, "the queries have %zu columns, the network takes %zu inputs",
                   Xq->cols, PK_NET_IN(km->net0));
  if ((s = pk_nonfinite_row(Xq)))
    return pk_fail(PK_EINVAL, "the queries hold a NaN or infinite value in row %zu (a kernel "
                   "machine explains finite inputs only)", s);
  h = pk_data_hash(Xq, Xq);
  /* want_kp: 0 no kernel values, 1 those of every output, 2 + k those of
   * output k alone (a K-th of the work: what explain needs of a query) */
  if (km->Xq && (!want_kp || (km->kp && (!km->kp_one || (size_t)want_kp == 2 + km->kp_k)))) {
    int same = km->xq_hash == h && km->Xq->rows == Xq->rows &&
               memcmp(km->Xq->data, Xq->data, Xq->rows * Xq->cols * sizeof(double)) == 0;
    if (set_map(km, Xq, same)) return PK_OK;
  }
  if (!t) {
    if (km->Xq && !km->kp && want_kp)
      return pk_fail(PK_EINVAL, "this machine was accumulated online without kernel values (train "
                     "with explain = Xq and kernel = true keeps them)");
    return pk_fail(PK_EINVAL, "this machine was accumulated online for its own %zu queries; "
                   "other queries need a trajectory (train with record = true)", km->nq);
  }
  /* Rows of the cached queries asked again with the kernel values (explain
   * after predict or contributions, row by row): the whole cached set
   * once, so that the rows after it find theirs in the cache. */
  if (want_kp && km->Xq && set_map(km, Xq, 0)) {
    if ((st = pk_matrix_copy(&all, km->Xq))) return st;
    Xq = all;
    want_kp = 1;
  }
  h = pk_data_hash(Xq, Xq);
  drop_results(km);
  if ((st = pk_decomp_init(&dc, t->net, Xq, t->X->rows, t->full_batch ? t->X->rows : t->batch_size,
                           &km->quad, want_kp, t->optimizer, &t->hyper, "kernel machine",
                           pk_cursor_bytes(t) + results_bytes(t->net, Xq),
                           "the replay, the queries and their outputs")))
    return st;
  if ((st = pk_cursor_init(&c, t))) { pk_decomp_free(&dc); return st; }
  dc.cancel = o ? o->cancel : NULL;
  dc.steps = t->T;
  if (want_kp >= 2) {
    dc.kp_one = 1;
    dc.kp_k = (size_t)want_kp - 2;
  }
  for (s = 0; s < t->T; s++) {
    int why;
    if ((st = pk_cursor_seek(&c, s))) break;
    dc.batch_total = pk_trajectory_batch_total(t, s);
    if ((st = pk_decomp_step(&dc, c.lr, c.theta, c.next, c.rows, c.nb, &c.w, t->X, &c.os))) {
      if (st == PK_ECANCEL) st = pk_fail(PK_ECANCEL, "decomposition: interrupted at step %zu", s + 1);
      break;
    }
    if ((why = pk_progress(o, (double)(s + 1), (double)t->T))) {
      st = pk_fail(PK_ECANCEL, "decomposition: %s at step %zu", pk_stop_word(why), s + 1);
      break;
    }
  }
  pk_cursor_free(&c);
  if (!st) st = take_results(km, &dc, Xq, h);
  if (!st && all && !set_map(km, req, 0)) st = pk_fail(PK_ENOMEM, "kernel machine: out of memory");
  pk_decomp_free(&dc);
  pk_matrix_free(all);
  if (st) drop_results(km);
  return st;
}

pk_status pk_machine_predict(pk_machine *km, const pk_matrix *Xq, const pk_call_opts *o,
                             pk_matrix **out)
{
  pk_status st;
  size_t x, k, i, K = km->K, m = km->m;
  double *sum;
  *out = NULL;
  st = pk_machine_compute(km, Xq, 0, o);
  if (km->comm) {
    /* every rank goes on to the sum, or every rank stops here */
    double v[2];
    static const char *const what[] = { "the queries' rows", "the outputs" };
    v[0] = st ? 0 : (double)km->nreq;
    v[1] = (double)K;
    st = pk_comm_agree(km->comm, "predict", st, v, what, 2);
  }
  if (st) return st;
  if ((st = pk_matrix_new(out, km->nreq, K))) return st;
  /* the contributions' sums first (over the ranks, for a shard), then
   * the rest of the prediction */
  sum = (*out)->data;
  for (x = 0; x < km->nreq; x++)
    for (k = 0; k < K; k++) {
      const double *c = km->contrib + (km->map[x] * K + k) * m;
      double s = 0;
      for (i = 0; i < m; i++) s += c[i];
      sum[x * K + k] = s;
    }
  if (km->comm && (st = pk_comm_reduce(km->comm, sum, km->nreq * K, PK_COMM_SUM, "predict"))) {
    pk_matrix_free(*out);
    *out = NULL;
    return st;
  }
  for (x = 0; x < km->nreq; x++)
    for (k = 0; k < K; k++) {
      size_t r = km->map[x] * K + k;
      sum[x * K + k] = km->bias[r] + sum[x * K + k] + km->reg[r];
    }
  return PK_OK;
}

/* (nq x m) slice of contributions or kernel values for output k */
pk_status pk_machine_slice(pk_machine *km, const pk_matrix *Xq, size_t k, int kernel,
                           const pk_call_opts *o, pk_matrix **out)
{
  pk_status st;
  size_t x, K = km->K, m = km->m;
  const double *src;
  *out = NULL;
  if (k >= K) return pk_fail(PK_EINVAL, "output %zu out of range 1..%zu", k + 1, K);
  if ((st = pk_machine_compute(km, Xq, kernel, o))) return st;
  if ((st = pk_matrix_new(out, km->nreq, m))) return st;
  src = kernel ? km->kp : km->contrib;
  for (x = 0; x < km->nreq; x++)
    memcpy((*out)->data + x * m, src + (km->map[x] * K + k) * m, m * sizeof(double));
  return PK_OK;
}

pk_status pk_machine_regularization(pk_machine *km, const pk_matrix *Xq, const pk_call_opts *o,
                                    pk_matrix **out)
{
  pk_status st;
  size_t x, k, K = km->K;
  *out = NULL;
  if ((st = pk_machine_compute(km, Xq, 0, o))) return st;
  if ((st = pk_matrix_new(out, km->nreq, K))) return st;
  for (x = 0; x < km->nreq; x++)
    for (k = 0; k < K; k++) (*out)->data[x * K + k] = km->reg[km->map[x] * K + k];
  return PK_OK;
}

pk_status pk_machine_coefficients(pk_machine *km, const pk_matrix *Xq, size_t k,
                                  const pk_call_opts *o, pk_matrix **a, pk_matrix **kp)
{
  pk_status st;
  size_t e, n;
  *a = *kp = NULL;
  if ((st = pk_machine_slice(km, Xq, k, 1, o, kp))) return st;
  if ((st = pk_machine_slice(km, Xq, k, 0, NULL, a))) {
    pk_matrix_free(*kp);
    *kp = NULL;
    return st;
  }
  /* where Kp is 0 no coefficient reproduces the contribution: NaN says so
   * (never a division that pretends) */
  n = (*a)->rows * (*a)->cols;
  for (e = 0; e < n; e++) {
    double v = (*kp)->data[e];
    (*a)->data[e] = v == 0 ? NAN : (*a)->data[e] / v;
  }
  return PK_OK;
}

typedef struct ranked { size_t i; double a; } ranked;

/* decreasing |contribution|, NaN first (an output that overflowed is the
 * thing to see), ties by index: a total order, as qsort needs */
static int by_abs(const void *pa, const void *pb)
{
  const ranked *a = pa, *b = pb;
  int na = isnan(a->a), nb = isnan(b->a);
  if (na != nb) return na ? -1 : 1;
  if (!na && a->a != b->a) return a->a < b->a ? 1 : -1;
  return a->i < b->i ? -1 : (a->i > b->i);
}

/* The explained output (ex->output, or the predicted class: the largest
 * output of the network at w_T) and the decomposition it needs: an
 * uncached query gets the kernel values of that output alone (a K-th of
 * the work); an online machine keeps kernel values only when trained to. */
pk_status pk_machine_explain(pk_machine *km, const pk_matrix *xq, const pk_call_opts *o,
                             pk_explanation *ex)
{
  size_t K = km->K, m = km->m, i, r0, out, k;
  const double *c;
  ranked *r;
  double sum = 0;
  pk_status st;
  if (km->comm)
    return pk_fail(PK_EINVAL, "explain: a shard's machine holds this rank's examples only (rank "
                   "them from km:contributions gathered with mpi.allgather)");
  if (xq->rows != 1)
    return pk_fail(PK_EINVAL, "explain: xq must be one query (a 1 x d matrix), got %zu rows",
                   xq->rows);
  if (ex->output != SIZE_MAX && ex->output >= K)
    return pk_fail(PK_EINVAL, "explain: output %zu out of range 1..%zu", ex->output + 1, K);
  out = ex->output;
  if (out == SIZE_MAX && K == 1) out = 0;
  else if (out == SIZE_MAX) {
    pk_matrix *F;
    if ((st = pk_network_forward(km->netT, xq, &F))) return st;
    out = 0;
    for (k = 1; k < K; k++)
      if (F->data[k] > F->data[out]) out = k;
    pk_matrix_free(F);
  }
  if ((st = pk_machine_compute(km, xq, km->traj ? 2 + (int)out : km->kp != NULL, o))) return st;
  r0 = (km->map[0] * K + out) * m;
  c = km->contrib + r0;
  if ((st = pk_alloc((void **)&r, m ? m : 1, sizeof *r, "explain: the ranking"))) return st;
  for (i = 0; i < m; i++) {
    r[i].i = i;
    r[i].a = fabs(c[i]);
    sum += c[i];
  }
  qsort(r, m, sizeof *r, by_abs);
  ex->n = ex->top < m ? ex->top : m;
  ex->has_kernel = km->kp != NULL;
  for (i = 0; i < ex->n; i++) {
    ex->index[i] = r[i].i;
    ex->contribution[i] = c[r[i].i];
    ex->kernel[i] = km->kp ? km->kp[r0 + r[i].i] : NAN;
  }
  free(r);
  ex->output = out;
  ex->sum = sum;
  ex->bias = km->bias[km->map[0] * K + out];
  ex->regularization = km->reg[km->map[0] * K + out];
  ex->prediction = ex->bias + sum + ex->regularization;
  ex->network = km->final[km->map[0] * K + out];
  return PK_OK;
}

/* entry i = x*K + k of the requested queries, through the row map */
double pk_machine_final(const pk_machine *km, size_t i)
{
  return km->final[km->map[i / km->K] * km->K + i % km->K];
}

pk_status pk_machine_certificate(pk_machine *km, const pk_matrix *Xq, const pk_call_opts *o,
                                 pk_matrix **out)
{
  pk_status st;
  size_t x, k, K = km->K;
  *out = NULL;
  if (km->comm)
    return pk_fail(PK_EINVAL, "certificate: a shard's machine holds this rank's contributions "
                   "only, and the residuals need them all");
  if ((st = pk_machine_compute(km, Xq, 0, o))) return st;
  if (!km->cert)
    return pk_fail(PK_EINVAL, "certificate: this machine was saved without one (a file of an "
                   "earlier version); decompose again from its trajectory");
  if ((st = pk_matrix_new(out, km->nreq, K))) return st;
  for (x = 0; x < km->nreq; x++)
    for (k = 0; k < K; k++) (*out)->data[x * K + k] = km->cert[km->map[x] * K + k];
  return PK_OK;
}

void pk_machine_rule_stats(const pk_machine *km, pk_rule_stats *out) { *out = km->stats; }
void pk_machine_quad(const pk_machine *km, pk_quad *out) { *out = km->quad; }

pk_status pk_machine_verify(pk_machine *km, const pk_matrix *Xq, const pk_call_opts *o,
                            double *maxabs, double *maxrel)
{
  pk_matrix *pred;
  pk_status st = pk_machine_predict(km, Xq, o, &pred);
  size_t i, n;
  double a = 0, r = 0, scale = 0;
  if (st) return st;
  n = km->nreq * km->K;
  for (i = 0; i < n; i++)
    if (fabs(pk_machine_final(km, i)) > scale) scale = fabs(pk_machine_final(km, i));
  for (i = 0; i < n; i++) {
    double f = pk_machine_final(km, i), e = fabs(pred->data[i] - f);
    /* relative to the output's magnitude, floored by the largest output so
     * that outputs near zero do not inflate it */
    double rel = e / fmax(fabs(f), scale > 0 ? scale : 1.0);
    /* a NaN gap (an output that overflowed) stays: it is the answer */
    if (isnan(e) || e > a) a = isnan(a) ? a : e;
    if (isnan(rel) || rel > r) r = isnan(r) ? r : rel;
  }
  pk_matrix_free(pred);
  *maxabs = a;
  *maxrel = r;
  return PK_OK;
}

/* ---- online: the machine accumulated during training ------------------- */

/* The decomposition for fixed queries during one training run: what the
 * training loop (train.c) hooks into the run, then turns into a machine. */
struct pk_explainer {
  pk_decomp dc;
  const pk_matrix *X;
  pk_matrix *w0;          /* the weights before the first step */
  pk_quad quad;
};

static pk_status explain_step(void *ud, size_t s, double lr, const size_t *rows, size_t nb,
                              const pk_acts *w, const double *theta, const double *next,
                              double loss, const pk_optstate *os)
{
  pk_explainer *e = ud;
  (void)s;
  (void)loss;
  return pk_decomp_step(&e->dc, lr, theta, next, rows, nb, w, e->X, os);
}

pk_status pk_explainer_begin(const pk_network *net, const pk_matrix *X, const pk_train_opts *o,
                             const pk_matrix *Xq, const pk_quad *quad, int want_kp,
                             pk_explainer **out, pk_train_hooks *hk)
{
  pk_explainer *e;
  pk_status st;
  size_t bad;
  *out = NULL;
  if ((bad = pk_nonfinite_row(Xq)))
    return pk_fail(PK_EINVAL, "train: explain = Xq holds a NaN or infinite value in row %zu (a "
                   "kernel machine explains finite inputs only)", bad);
  if (!(e = calloc(1, sizeof *e))) return pk_fail(PK_ENOMEM, "kernel machine: out of memory");
  e->X = X;
  e->quad = *quad;
  if ((st = pk_matrix_from_array(&e->w0, net->P, 1, net->theta)) ||
      (st = pk_decomp_init(&e->dc, net, Xq, X->rows,
                           o->optimizer != PK_OPT_GD && o->batch_size ? o->batch_size : X->rows,
                           quad, want_kp, o->optimizer, &o->hyper, "train: explain = Xq",
                           (double)net->P * sizeof(double) + results_bytes(net, Xq),
                           "the queries and their outputs"))) {
    pk_explainer_free(e);
    return st;
  }
  e->dc.cancel = o->call.cancel;
  e->dc.steps = o->steps;
  hk->ud = e;
  hk->step = explain_step;
  *out = e;
  return PK_OK;
}

pk_status pk_explainer_end(pk_explainer *e, const pk_network *net, pk_machine **out)
{
  pk_machine *km;
  pk_status st;
  *out = NULL;
  if ((st = shell(&km, net, e->w0->data, net->theta, e->X->rows, &e->quad))) return st;
  if ((st = take_results(km, &e->dc, e->dc.Xq, pk_data_hash(e->dc.Xq, e->dc.Xq)))) {
    pk_machine_free(km);
    return st;
  }
  *out = km;
  return PK_OK;
}

void pk_explainer_free(pk_explainer *e)
{
  if (!e) return;
  pk_decomp_free(&e->dc);
  pk_matrix_free(e->w0);
  free(e);
}

/* ---- files --------------------------------------------------------------------- */

pk_status pk_machine_write_payload(pk_writer *w, const void *obj)
{
  const pk_machine *km = obj;
  size_t n = km->nq * km->K;
  pk_put_u32(w, km->traj ? 0u : 1u);
  pk_put_u32(w, (uint32_t)km->quad.rule);
  pk_put_u32(w, (uint32_t)km->quad.nodes);
  if (km->quad.rule == PK_RULE_EXACT) pk_put_f64(w, km->quad.tol);
  if (km->traj) return pk_trajectory_write_payload(w, km->traj, 1);
  pk_network_write_payload(w, km->net0);
  pk_network_write_payload(w, km->netT);
  pk_put_u64(w, km->m);
  pk_matrix_write_payload(w, km->Xq);
  pk_put_f64s(w, km->contrib, n * km->m);
  pk_put_u32(w, km->kp ? 1u : 0u);
  if (km->kp) pk_put_f64s(w, km->kp, n * km->m);
  pk_put_f64s(w, km->bias, n);
  pk_put_f64s(w, km->final, n);
  pk_put_f64s(w, km->reg, n);
  /* the exact rule's machines end with their certificate (a header with
   * rule 2 is new to older builds, so machines of the other rules keep
   * their old bytes) */
  if (km->quad.rule == PK_RULE_EXACT) {
    pk_put_u32(w, km->cert ? 1u : 0u);
    if (km->cert) pk_put_f64s(w, km->cert, n);
  }
  return PK_OK;
}

pk_status pk_machine_save(const pk_machine *km, const char *path)
{
  if (km->traj && !km->traj->X)
    return pk_fail(PK_EINVAL, "save: the trajectory has no training data");
  if (km->comm)
    return pk_fail(PK_EINVAL, "save: a shard's machine cannot be saved (it holds one rank's "
                   "examples)");
  return pk_save_object(path, PK_TAG_MACHINE, pk_machine_write_payload, km);
}

#define BAD(...) do { st = pk_fail(PK_EFORMAT, __VA_ARGS__); goto done; } while (0)

/* an online machine: w_0 and w_T, the queries and their results; every
 * array is sized by counts that fit the bytes left */
static pk_status read_online(pk_reader *r, const char *name, const pk_quad *q,
                             pk_machine **out)
{
  pk_network *n0 = NULL, *nT = NULL;
  pk_machine *km = NULL;
  size_t m, n, N, left;
  uint32_t haskp;
  pk_status st;
  *out = NULL;
  if ((st = pk_network_read_payload(r, &n0)) || (st = pk_network_read_payload(r, &nT))) goto done;
  if (!pk_network_same_arch(n0, nT))
    BAD("%s: value check failed: the two networks differ", name);
  if ((st = shell(&km, n0, n0->theta, nT->theta, 0, q))) goto done;
  if ((st = pk_get_count(r, 0, &m, "training set size"))) goto done;
  if (m > UINT32_MAX) BAD("%s: value check failed: more than 2^32 training examples", name);
  km->m = m;
  if ((st = pk_matrix_read_payload(r, &km->Xq))) goto done;
  if (km->Xq->cols != PK_NET_IN(km->net0))
    BAD("%s: value check failed: queries do not fit the network", name);
  if ((n = pk_nonfinite_row(km->Xq)))
    BAD("%s: value check failed: query row %zu holds a NaN or infinite value", name, n);
  km->nq = km->Xq->rows;
  /* queries x outputs x (contributions [+ kernel values]) + 3 outputs each */
  left = (r->n - r->pos) / 8;
  if (km->nq && km->K > left / km->nq) BAD("%s: size check failed: outputs do not fit the file", name);
  n = km->nq * km->K;
  if (3 * n > left || (m && n > (left - 3 * n) / m))
    BAD("%s: size check failed: contributions do not fit the file", name);
  N = n * m;
  if ((st = pk_alloc_hint((void **)&km->contrib, N, sizeof(double), "the contributions",
                          "explain fewer queries at a time")))
    goto done;
  pk_get_f64s(r, km->contrib, N);
  haskp = pk_get_u32(r);
  if (r->err) BAD("%s: file is truncated", name);
  if (haskp > 1) BAD("%s: value check failed: kernel flag", name);
  if (haskp) {
    if (N > (r->n - r->pos) / 8) BAD("%s: file is truncated", name);
    if ((st = pk_alloc_hint((void **)&km->kp, N, sizeof(double), "the path kernel values",
                            "explain fewer queries at a time")))
      goto done;
    pk_get_f64s(r, km->kp, N);
  }
  if ((st = pk_alloc((void **)&km->bias, n, sizeof(double), "outputs")) ||
      (st = pk_alloc((void **)&km->final, n, sizeof(double), "outputs")) ||
      (st = pk_alloc((void **)&km->reg, n, sizeof(double), "outputs")))
    goto done;
  pk_get_f64s(r, km->bias, n);
  pk_get_f64s(r, km->final, n);
  pk_get_f64s(r, km->reg, n);
  if (q->rule == PK_RULE_EXACT) {
    uint32_t has = pk_get_u32(r);
    if (has > 1) BAD("%s: value check failed: certificate flag", name);
    if (has) {
      if (n > (r->n - r->pos) / 8) BAD("%s: file is truncated", name);
      if ((st = pk_alloc((void **)&km->cert, n, sizeof(double), "outputs"))) goto done;
      pk_get_f64s(r, km->cert, n);
    }
  }
  km->xq_hash = pk_data_hash(km->Xq, km->Xq);
  if (!set_map(km, km->Xq, 1)) st = pk_fail(PK_ENOMEM, "kernel machine: out of memory");
done:
  pk_network_free(n0);
  pk_network_free(nT);
  if (st) pk_machine_free(km);
  else *out = km;
  return st;
}

pk_status pk_machine_load_mem(pk_machine **out, const char *name, const unsigned char *buf,
                              size_t len)
{
  pk_reader r;
  pk_status st;
  uint32_t kind, rule, nodes;
  pk_machine *km = NULL;
  pk_quad q;
  *out = NULL;
  if ((st = pk_load_object_mem(name, buf, len, PK_TAG_MACHINE, &r))) return st;
  kind = pk_get_u32(&r);
  rule = pk_get_u32(&r);
  nodes = pk_get_u32(&r);
  q.rule = (pk_rule)rule;
  q.nodes = (int)nodes;
  q.tol = rule == PK_RULE_EXACT ? pk_get_f64(&r) : 0;
  if (r.err || kind > 1 || rule > PK_RULE_EXACT ||
      (rule == PK_RULE_EXACT ? nodes != 0 || !(q.tol > 0 && q.tol <= DBL_MAX)
                             : nodes < 1 || nodes > PK_MAX_NODES) ||
      (rule == PK_RULE_LEFT && nodes != 1))
    BAD("%s: value check failed: bad kernel machine header", name);
  if (kind == 0) {
    pk_trajectory *t;
    if ((st = pk_trajectory_read_payload(&r, name, &t, NULL, NULL))) goto done;
    st = pk_machine_from_trajectory(&km, t, &q);
    pk_trajectory_free(t);          /* the machine holds it now */
    if (st) goto done;
  } else if ((st = read_online(&r, name, &q, &km))) {
    goto done;
  }
  if (r.err) BAD("%s: file is truncated", name);
  st = pk_reader_end(&r, name, pk_machine_write_payload, km);
done:
  if (st) {
    pk_machine_free(km);
    return pk_fail_in(st, name);
  }
  *out = km;
  return PK_OK;
}

#undef BAD

pk_status pk_machine_load(pk_machine **out, const char *path)
{
  unsigned char *buf;
  size_t len;
  pk_status st;
  *out = NULL;
  if ((st = pk_read_file(path, &buf, &len))) return st;
  st = pk_machine_load_mem(out, path, buf, len);
  free(buf);
  return st;
}

int pk_machine_is_online(const pk_machine *km) { return km->traj == NULL; }
size_t pk_machine_outputs(const pk_machine *km) { return km->K; }
size_t pk_machine_examples(const pk_machine *km) { return km->m; }
pk_rule pk_machine_rule(const pk_machine *km) { return km->quad.rule; }
int pk_machine_nodes(const pk_machine *km) { return km->quad.nodes; }
