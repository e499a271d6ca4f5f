/* decomp.c - the exact finite-step decomposition of a trained network into
 * per-example contributions (DESIGN.md section 4):
 *   f(x; w_{s+1}) - f(x; w_s) = gbar_s(x) . D_s,
 *   D_s = -eta_s sum_{i in B_s} (1/|B_s|) J(x_i; w_s)^T l'_{i,s},
 * with gbar_s the average of g(x; w_s + t D_s) over t in [0, 1]: a
 * weighted sum over node rows (a query at a point t of the step). Every
 * product g(x; w) . J(x_i; w_s)^T v is structured: per layer (D_l(x) .
 * G_l(x_i)) (s_w^2 a_l(x) . a_l(x_i) + s_b^2), two GEMMs and a Hadamard
 * product; the first layer's inputs and the last layer's sensitivities do
 * not move along a step, so those layers take one GEMM per step whatever
 * the number of node rows.
 *
 * Rules: left (t = 0), gauss (n fixed nodes) and exact. The exact rule
 * splits a step at the kinks of piecewise-linear units (where a
 * pre-activation, a polynomial in t, crosses zero: kinks.c) and integrates
 * each piece with the nodes exact for its degree; smooth activations get
 * as many nodes as bring the step's residual r_s(x) = f(x; w_{s+1}) -
 * f(x; w_s) - (the step's sum of contributions) within the tolerance. The
 * residual of every step is computed for every rule: their sum is the
 * machine's certificate. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <float.h>
#include <time.h>
#include <cblas.h>
#include "pk_decomp.h"

pk_status pk_quadrature(pk_rule rule, int nodes, double *t, double *w)
{
  int i, j, k;
  if (nodes < 1 || nodes > PK_MAX_NODES)
    return pk_fail(PK_EINVAL, "nodes must be in 1..%d, got %d", PK_MAX_NODES, nodes);
  if (rule == PK_RULE_LEFT) {
    if (nodes != 1) return pk_fail(PK_EINVAL, "the left rule has 1 node, got nodes = %d", nodes);
    t[0] = 0;
    w[0] = 1;
    return PK_OK;
  }
  if (rule != PK_RULE_GAUSS && rule != PK_RULE_EXACT) return pk_fail(PK_EINVAL, "unknown rule");
  /* roots of P_n by Newton from Chebyshev-like guesses, mapped to [0, 1] */
  for (i = 0; i < (nodes + 1) / 2; i++) {
    double x = cos(PK_PI * (i + 0.75) / (nodes + 0.5)), dp = 1;
    for (k = 0; k < 100; k++) {
      double p0 = 1, p1 = x, dx;
      for (j = 2; j <= nodes; j++) {
        double p2 = ((2 * j - 1) * x * p1 - (j - 1) * p0) / j;
        p0 = p1;
        p1 = p2;
      }
      if (nodes == 1) { p1 = x; p0 = 1; }
      dp = nodes * (x * p1 - p0) / (x * x - 1);
      dx = p1 / dp;
      x -= dx;
      if (fabs(dx) < 1e-16) break;
    }
    {
      double p0 = 1, p1 = x;
      for (j = 2; j <= nodes; j++) {
        double p2 = ((2 * j - 1) * x * p1 - (j - 1) * p0) / j;
        p0 = p1;
        p1 = p2;
      }
      dp = nodes == 1 ? 1 : nodes * (x * p1 - p0) / (x * x - 1);
    }
    t[i] = 0.5 * (1 - x);
    t[nodes - 1 - i] = 0.5 * (1 + x);
    w[i] = w[nodes - 1 - i] = 1.0 / ((1 - x * x) * dp * dp);
  }
  if (nodes == 1) { t[0] = 0.5; w[0] = 1; }
  return PK_OK;
}

void pk_quad_init(pk_quad *q)
{
  q->rule = PK_RULE_EXACT;
  q->nodes = 0;
  q->tol = PK_DEFAULT_TOL;
}

/* The first row of Xq holding a NaN or an infinity, or 0: a kernel
 * machine explains finite inputs only (as training takes finite data), so
 * such queries are refused by name rather than turned into NaN results
 * that verify and explain cannot rank. */
size_t pk_nonfinite_row(const pk_matrix *Xq)
{
  size_t r;
  for (r = 0; r < Xq->rows; r++)
    if (!pk_all_finite(Xq->data + r * Xq->cols, Xq->cols)) return r + 1;
  return 0;
}

/* node counts the exact rule tries for smooth layers, in order */
static const int ladder[] = { 1, 2, 3, 4, 6, 8, 12, 16 };
#define NLADDER ((int)(sizeof ladder / sizeof ladder[0]))

/* plans of a query for one step */
enum { PLAN_NATURAL = 0, PLAN_SPLIT = 1 };

/* rows of queries per tile and batch columns per chunk */
#define QTILE 1024
#define BCHUNK 2048

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Layer l's activation as the exact rule sees it: piecewise linear with
 * slope `neg` for z <= 0 (relu 0, leaky_relu its slope; identity 1 and no
 * kink) or smooth. The value at exactly 0 is training's convention:
 * relu'(0) = 0, leaky'(0) = slope. */
static int layer_pl(const pk_network *net, size_t l, double *neg, int *kinked)
{
  const pk_layer *ly = &net->layer[l];
  switch (ly->act) {
  case PK_ACT_IDENTITY: *neg = 1; *kinked = 0; return 1;
  case PK_ACT_RELU: *neg = 0; *kinked = 1; return 1;
  case PK_ACT_LEAKY_RELU: *neg = ly->slope; *kinked = 1; return 1;
  default: *neg = 0; *kinked = 0; return 0;
  }
}

/* a layer with parameters moves along a step: its output gains a degree */
static int moves(const pk_layer *ly) { return ly->nw + ly->nb > 0; }

/* theta's slices of a layer (its bias slice NULL without one) */
#define LW(ly, th) ((th) + (ly)->woff)
#define LB(ly, th) ((ly)->nb ? (th) + (ly)->boff : NULL)

/* the layers' scratch (doubles): forward and backward on a block of node
 * rows (K sensitivity rows each), the products of a block against a chunk
 * of training rows and of a tile's presums, for the contributions and the
 * kernel values */
static size_t work_doubles(const pk_decomp *dc, size_t qt, size_t R, size_t bc)
{
  const pk_network *net = dc->net;
  size_t l, m = 0, K = dc->K, big = R > qt ? R : qt;
  for (l = 0; l < net->L; l++) {
    const pk_layer *ly = &net->layer[l];
    size_t w = ly->vt->work(ly, R * K), d;
    /* a side's features (layer.h) take work() of its examples */
    if ((d = ly->vt->work(ly, big > bc ? big : bc)) > w) w = d;
    if ((d = ly->vt->gram_work(ly, big, K, bc, 1, PK_OUTPUTS_BLOCK)) > w) w = d;
    if (dc->want_kp) {
      if ((d = ly->vt->gram_work(ly, big, K, bc, K, PK_OUTPUTS_DIAGONAL)) > w) w = d;
      if ((d = ly->vt->gram_work(ly, big, 1, bc, 1, PK_OUTPUTS_DIAGONAL)) > w) w = d;
    }
    if (w > m) m = w;
  }
  return m;
}

/* doubles of the layers' features of n examples with per sensitivity rows,
 * the largest layer's (a side's features are computed into one buffer) */
static size_t feat_doubles(const pk_network *net, size_t n, size_t per)
{
  size_t l, m = 0;
  for (l = 0; l < net->L; l++) {
    size_t f = net->layer[l].vt->feat_size(&net->layer[l], per);
    if (f > m) m = f;
  }
  return m * n;
}

/* sample points of the pattern test for n nodes, sorted: 0, the Gauss
 * nodes, extra points where the gaps are widest until the points determine
 * a polynomial of the PL prefix's highest degree, 1 */
static int sample_points(const pk_decomp *dc, int n, double *pt)
{
  int N = 0, i, need = dc->pl_deg + 1;
  pt[N++] = 0;
  for (i = 0; i < n; i++) pt[N++] = dc->gt[n][i];
  pt[N++] = 1;
  while (N < need && N <= PK_KINK_MAXDEG) {
    int j, best = 0;
    double gap = -1;
    for (j = 0; j + 1 < N; j++)
      if (pt[j + 1] - pt[j] > gap) { gap = pt[j + 1] - pt[j]; best = j; }
    memmove(pt + best + 2, pt + best + 1, (size_t)(N - best - 1) * sizeof *pt);
    pt[best + 1] = 0.5 * (pt[best] + pt[best + 2]);
    N++;
  }
  return N;
}

/* The inverse of the Bernstein-Vandermonde matrix V[i][k] = B_{k,N-1}(pt[i])
 * (row-major N x N), by Gauss-Jordan with partial pivoting; returns its
 * infinity norm, or -1 if singular. */
static double bv_inverse(const double *pt, int N, double *inv)
{
  double V[(PK_KINK_MAXDEG + 1) * (PK_KINK_MAXDEG + 1)], nrm = 0;
  int i, j, k, n = N - 1;
  for (i = 0; i < N; i++)
    for (k = 0; k < N; k++) {
      double c = 1;
      int a;
      for (a = 1; a <= k; a++) c = c * (n - k + a) / a;
      V[i * N + k] = c * pow(pt[i], k) * pow(1 - pt[i], n - k);
      inv[i * N + k] = i == k;
    }
  for (k = 0; k < N; k++) {
    int p = k;
    double piv;
    for (i = k + 1; i < N; i++)
      if (fabs(V[i * N + k]) > fabs(V[p * N + k])) p = i;
    if (V[p * N + k] == 0) return -1;
    if (p != k)
      for (j = 0; j < N; j++) {
        double a = V[k * N + j], b = inv[k * N + j];
        V[k * N + j] = V[p * N + j];
        inv[k * N + j] = inv[p * N + j];
        V[p * N + j] = a;
        inv[p * N + j] = b;
      }
    piv = V[k * N + k];
    for (j = 0; j < N; j++) {
      V[k * N + j] /= piv;
      inv[k * N + j] /= piv;
    }
    for (i = 0; i < N; i++)
      if (i != k && V[i * N + k] != 0) {
        double f = V[i * N + k];
        for (j = 0; j < N; j++) {
          V[i * N + j] -= f * V[k * N + j];
          inv[i * N + j] -= f * inv[k * N + j];
        }
      }
  }
  for (i = 0; i < N; i++) {
    double s = 0;
    for (j = 0; j < N; j++) s += fabs(inv[i * N + j]);
    if (s > nrm) nrm = s;
  }
  return nrm;
}

/* ---- memory -------------------------------------------------------------- */

/* rows per block for qt queries: every node of every query of the tile
 * under the rule's usual node count, within a bound on the products */
static size_t rows_cap(const pk_decomp *dc, size_t qt, size_t bc)
{
  size_t per = dc->quad.rule == PK_RULE_EXACT ? 2 : (size_t)dc->quad.nodes, r = qt * per;
  if (per < 1) per = 1;
  while (r > qt && (double)r * (double)dc->K * (double)bc * sizeof(double) > (double)((size_t)32 << 20))
    r /= 2;
  /* a block holds every node of at least one query */
  return r < PK_MAX_NODES ? PK_MAX_NODES : r;
}

/* The bytes of the workspace for a tile of qt queries against chunks of bc
 * training rows: a block of node rows with their features, the products,
 * the tile's deferred step values and explicit gradients, the queries at
 * w_{s+1}, and the training side of the kernel values. */
static double ws_bytes(const pk_decomp *dc, size_t qt, size_t bc)
{
  const pk_network *net = dc->net;
  size_t Rs = rows_cap(dc, qt, bc);
  double d = sizeof(double), K = (double)dc->K, R = (double)Rs, b;
  double W = (double)pk_net_max_width(net), big = R > (double)qt ? R : (double)qt;
  double d0 = (double)PK_NET_IN(net), kb = dc->want_kp ? (double)(dc->m > bc ? dc->m : bc) : 0;
  b = (double)pk_acts_bytes(net, Rs, 0) + (double)pk_deltas_bytes(net, Rs);
  b += R * (d0 + K * W + 3) * d + R * (sizeof(uint32_t) + sizeof(size_t));
  b += 2 * big * K * (double)bc * d;                          /* products, their rows' sums */
  b += (double)work_doubles(dc, qt, Rs, bc) * d;                /* the layers' scratch */
  b += ((double)feat_doubles(net, Rs > qt ? Rs : qt, dc->K) +  /* the layers' features */
        (double)feat_doubles(net, (size_t)(kb > (double)bc ? kb : (double)bc), dc->K)) * d;
  b += (double)qt * K * (double)dc->nbmax * d;                 /* sacc */
  b += (double)qt * (K * W + W + 2 * K + d0 + 4) * d;          /* presums, residuals */
  b += (double)pk_acts_bytes(net, qt, 0);                      /* wf */
  /* the pattern test's samples: at most (3 + degree) points a query per row */
  if (dc->npl) b += (3.0 + (double)dc->pl_deg) * R * (double)dc->zw * d;
  if (dc->need_gbar) b += (double)qt * K * (double)net->P * d;
  if (dc->want_kp)
    b += (double)pk_acts_bytes(net, (size_t)kb, 0) + (double)pk_deltas_bytes(net, (size_t)kb) +
         kb * d0 * d;
  return b;
}

/* Everything the decomposition holds at once is checked against the
 * memory limit before anything is allocated (a replay or a training run
 * must not find out at its end that its results do not fit), and the
 * query tile and the training chunk shrink until the workspace fits
 * beside the results. Only what cannot fit with one query and one
 * training row a tile is refused, with the parts and the remedy. */
static pk_status plan(pk_decomp *dc, const char *who, double extra, const char *extra_what)
{
  const pk_network *net = dc->net;
  double d = sizeof(double), nq = (double)dc->nq, K = (double)dc->K, m = (double)dc->m;
  double P = (double)net->P, lim = (double)pk_memory_limit();
  double contrib = nq * K * m * d, kp = dc->want_kp ? contrib : 0;
  double c0 = net->layer[0].vt->vprod ? nq * m * d : 0;
  double traces = dc->explicit_traces ? (m + 2) * P * d : 0;
  double small = (nq * (3 * K + 2 * (double)dc->zw + 2) + m + 2 * P + 3) * d;
  double fixed = contrib + kp + c0 + traces + small + extra;
  size_t qt = dc->nq < QTILE ? dc->nq : QTILE, bc = dc->m < BCHUNK ? dc->m : BCHUNK;
  if (qt == 0) qt = 1;
  if (bc == 0) bc = 1;
  /* without a limit in the way: a tile's deferred values near 64 MiB, its
   * features near 256 MiB, its explicit gradients near 64 MiB */
  while (qt > 1 && (double)qt * K * (double)dc->nbmax * d > (double)((size_t)64 << 20)) qt /= 2;
  while (qt > 16 && (double)rows_cap(dc, qt, bc) * ((double)pk_acts_bytes(net, 1, 0) +
                                                    (double)pk_deltas_bytes(net, 1)) >
                        (double)((size_t)256 << 20))
    qt /= 2;
  while (dc->need_gbar && qt > 1 && (double)qt * K * P * d > (double)((size_t)64 << 20)) qt /= 2;
  if (fixed + ws_bytes(dc, 1, 1) > lim) {
    char tot[32], l[32], a[32], b[32], c[32], e[32], w[32], tr[80] = "";
    pk_format_bytes(tot, sizeof tot, fixed + ws_bytes(dc, 1, 1));
    pk_format_bytes(l, sizeof l, lim);
    pk_format_bytes(a, sizeof a, contrib + kp);
    pk_format_bytes(b, sizeof b, c0);
    pk_format_bytes(c, sizeof c, traces);
    pk_format_bytes(e, sizeof e, extra);
    pk_format_bytes(w, sizeof w, small + ws_bytes(dc, 1, 1));
    if (traces > 0) snprintf(tr, sizeof tr, ", the per-example optimizer traces %s", c);
    return pk_fail(PK_ENOMEM, "%s: the decomposition of %zu queries x %zu outputs over %zu training "
                   "examples needs %s at once, above the memory limit of %s: the contributions%s %s, "
                   "the queries' input products %s%s, %s %s, the smallest workspace %s "
                   "(pk.set_memory_limit raises it; or %s)", who,
                   dc->nq, dc->K, dc->m, tot, l, kp > 0 ? " and path kernel values" : "", a, b, tr,
                   extra_what, e, w,
                   /* the remedy for the largest part */
                   traces > contrib + kp + c0 ? "train on fewer examples or a smaller network; gd "
                   "and sgd keep no per-example traces" : dc->explicit_traces ? "explain fewer "
                   "queries at a time, or train with gd or sgd, which keep no per-example traces" :
                   "explain fewer queries at a time");
  }
  /* the workspace shares the limit with the results: halve the tile,
   * then the training chunk, until it fits */
  while (fixed + ws_bytes(dc, qt, bc) > lim && qt > 1) qt = (qt + 1) / 2;
  while (fixed + ws_bytes(dc, qt, bc) > lim && bc > 1) bc = (bc + 1) / 2;
  dc->qt = qt;
  dc->bc = bc;
  dc->rcap = rows_cap(dc, qt, bc);
  return PK_OK;
}

/* ---- setup ---------------------------------------------------------------- */

static pk_status rows_init(pk_rows *r, const pk_network *net, size_t cap)
{
  pk_status st;
  memset(r, 0, sizeof *r);
  r->cap = cap;
  if ((st = pk_alloc((void **)&r->q, cap, sizeof *r->q, "the decomposition's node rows")) ||
      (st = pk_alloc((void **)&r->t, cap, sizeof *r->t, "the decomposition's node rows")) ||
      (st = pk_alloc((void **)&r->w, cap, sizeof *r->w, "the decomposition's node rows")) ||
      (st = pk_alloc((void **)&r->piece, cap, sizeof *r->piece, "the decomposition's node rows")) ||
      (st = pk_alloc((void **)&r->x, cap * PK_NET_IN(net), sizeof *r->x, "the decomposition's node rows")) ||
      (st = pk_acts_init(&r->a, net, cap, 0)) || (st = pk_deltas_init(&r->d, net, cap)))
    return st;
  return PK_OK;
}

static void rows_free(pk_rows *r)
{
  free(r->q);
  free(r->t);
  free(r->w);
  free(r->piece);
  free(r->x);
  pk_acts_free(&r->a);
  pk_deltas_free(&r->d);
  memset(r, 0, sizeof *r);
}

pk_status pk_decomp_init(pk_decomp *dc, const pk_network *net, const pk_matrix *Xq, size_t m,
                         size_t nbmax, const pk_quad *quad, int want_kp, pk_optimizer opt,
                         const pk_hyper *hyper, const char *who, double extra,
                         const char *extra_what)
{
  size_t K = PK_NET_OUT(net), nq = Xq->rows, N, qt, bc, l, W = pk_net_max_width(net);
  static const char *const fewer = "explain fewer queries at a time";
  char what[200], kwhat[160];
  double tq[PK_MAX_NODES], wq[PK_MAX_NODES];
  pk_status st;
  int n;
  memset(dc, 0, sizeof *dc);
  dc->net = net;
  dc->Xq = Xq;
  dc->nq = nq;
  dc->K = K;
  dc->m = m;
  dc->nbmax = nbmax ? (nbmax < m ? nbmax : m) : m;
  dc->want_kp = want_kp;
  dc->quad = *quad;
  dc->opt = opt;
  dc->hyper = *hyper;
  dc->explicit_traces = pk_opt_state_vectors(opt) > 0;
  dc->need_gbar = dc->explicit_traces || hyper->weight_decay > 0;
  if ((st = pk_check_input(net, Xq, "the queries"))) return st;
  if ((N = pk_nonfinite_row(Xq)))
    return pk_fail(PK_EINVAL, "the queries hold a NaN or infinite value in row %zu (a kernel "
                   "machine explains finite inputs only)", N);
  if (net->L > PK_MAX_LAYERS) return pk_fail(PK_EINVAL, "decomposition: more than %d layers", PK_MAX_LAYERS);
  if (quad->rule == PK_RULE_EXACT) {
    if (!(quad->tol >= 0) || !isfinite(quad->tol))
      return pk_fail(PK_EINVAL, "tol must be a finite number >= 0, got %g", quad->tol);
    if (quad->tol == 0) dc->quad.tol = PK_DEFAULT_TOL;
    dc->quad.nodes = 0;
  } else if ((st = pk_quadrature(quad->rule, quad->nodes, tq, wq))) {
    return st;
  }
  for (n = 1; n <= PK_MAX_NODES; n++) pk_quadrature(PK_RULE_GAUSS, n, dc->gt[n], dc->gw[n]);
  /* the piecewise-linear prefix: kinks found there, and exactness when it
   * covers every hidden layer; beyond the highest degree the root finder
   * takes, the prefix stops (the residual still checks every step) */
  if (quad->rule == PK_RULE_EXACT) {
    double neg;
    int kinked;
    int nparam = 0;
    for (l = 0; l + 1 < net->L && dc->pl_deg < PK_KINK_MAXDEG - 1 && layer_pl(net, l, &neg, &kinked); l++)
      dc->pl_deg += moves(&net->layer[l]);
    dc->npl = l;
    dc->all_pl = dc->npl + 1 == net->L;
    /* g(x; w(t)) . v is of degree (layers with parameters) - 1 in t */
    for (l = 0; l < net->L; l++) nparam += moves(&net->layer[l]);
    dc->npl_nodes = (nparam + 1) / 2;
    if (dc->npl_nodes < 1) dc->npl_nodes = 1;
    if (dc->npl_nodes > PK_MAX_NODES) dc->all_pl = 0;
  }
  if (dc->npl) {
    if ((st = pk_alloc((void **)&dc->zoff, dc->npl, sizeof(size_t), "the decomposition"))) goto fail;
    for (l = 0; l < dc->npl; l++) {
      dc->zoff[l] = dc->zw;
      dc->zw += net->layer[l].out;
    }
  }
  if ((st = pk_mul_size(&N, nq * K, m, "contributions"))) goto fail;
  if ((st = plan(dc, who, extra, extra_what))) goto fail;
  qt = dc->qt;
  bc = dc->bc;
  snprintf(what, sizeof what, "the contributions (%zu queries x %zu outputs x %zu training examples)",
           nq, K, m);
  snprintf(kwhat, sizeof kwhat, "the path kernel values (%zu queries x %zu outputs x %zu training "
           "examples)", nq, K, m);
  {
    size_t R = dc->rcap, big = R > qt ? R : qt, d0 = PK_NET_IN(net);
    size_t kb = want_kp ? (m > bc ? m : bc) : bc;
    if ((st = pk_calloc_hint((void **)&dc->contrib, N, sizeof(double), what, fewer)) ||
        (want_kp && (st = pk_calloc_hint((void **)&dc->kp, N, sizeof(double), kwhat, fewer))) ||
        (st = pk_alloc((void **)&dc->theta_node, net->P, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->dir, net->P, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->M, big * K * bc > qt * K ? big * K * bc : qt * K,
                       sizeof(double), "the decomposition's scratch")) ||
        (st = pk_alloc((void **)&dc->T, R * K * W + 2 * W, sizeof(double), "the decomposition's scratch")) ||
        (st = pk_alloc((void **)&dc->work, work_doubles(dc, qt, R, bc) + 1, sizeof(double),
                       "the decomposition's scratch")) ||
        (st = pk_calloc((void **)&dc->zero, W, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->fq, feat_doubles(net, big, K) + 1, sizeof(double),
                       "the layers' features")) ||
        (st = pk_alloc((void **)&dc->fb, feat_doubles(net, kb, K) + 1, sizeof(double),
                       "the layers' features")) ||
        (st = pk_alloc((void **)&dc->xs, qt * d0, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->ones, qt * K * K, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->fail, R, 1, "the decomposition")) ||
        (st = pk_alloc((void **)&dc->start, qt, 1, "the decomposition")) ||
        (st = pk_alloc((void **)&dc->list, qt, sizeof(uint32_t), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->list2, qt, sizeof(uint32_t), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->ecoef, (PK_KINK_MAXDEG + 2) * W, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->C, big * bc, sizeof(double), "the decomposition's scratch")) ||
        (st = pk_alloc((void **)&dc->sacc, qt * K * dc->nbmax + 1, sizeof(double),
                       "the decomposition's step values")) ||
        (st = pk_alloc((void **)&dc->sabs, qt * K, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->res, qt * K, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->rprev, qt, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->finit, nq * K + 1, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->pre0, qt * K * W, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->pre1, qt * W, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->wsum, qt, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->uidx, qt, sizeof(int), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->ulist, qt, sizeof(uint32_t), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->plan, qt, 1, "the decomposition")) ||
        (st = pk_alloc((void **)&dc->tried, qt, 1, "the decomposition")) ||
        (st = pk_calloc((void **)&dc->reg, nq * K + 1, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->f0, nq * K + 1, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->f1, nq * K + 1, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->m0, nq * K + 1, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->m1, nq * K + 1, sizeof(double), "the decomposition")) ||
        (st = pk_calloc((void **)&dc->cert, nq * K + 1, sizeof(double), "the decomposition")) ||
        (st = pk_calloc((void **)&dc->rsum, nq * K + 1, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->minit, nq * K + 1, sizeof(double), "the decomposition")) ||
        (st = pk_calloc((void **)&dc->nidx, nq + 1, 1, "the decomposition")) ||
        (st = pk_calloc((void **)&dc->probe, nq + 1, sizeof(size_t), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->backoff, nq + 1, sizeof(unsigned short), "the decomposition")) ||
        (st = pk_alloc_hint((void **)&dc->c0, net->layer[0].vt->vprod ? nq * m + 1 : 1, sizeof(double),
                            "the queries' input products",
                            fewer)) ||
        (st = pk_alloc((void **)&dc->idx, m + 1, sizeof(size_t), "the decomposition")) ||
        (st = rows_init(&dc->rows, net, R)) || (st = pk_acts_init(&dc->wf, net, qt, 0)))
      goto fail;
  }
  {
    size_t i;
    for (i = 0; i < m; i++) dc->idx[i] = i;
    for (i = 0; i < qt; i++) dc->uidx[i] = -1;
    for (i = 0; i < nq; i++) dc->backoff[i] = 8;
  }
  if (dc->npl) {
    size_t most = 0;
    /* the pattern test's points and matrices for every node count, and
     * its samples of the largest block: points x queries x PL units */
    for (n = 1; n <= PK_MAX_NODES; n++) {
      int Np = sample_points(dc, n, dc->spt[n]);
      size_t per = dc->rcap / (size_t)n ? dc->rcap / (size_t)n : 1;
      dc->ns[n] = Np;
      if ((size_t)Np * per > most) most = (size_t)Np * per;
      if ((st = pk_alloc((void **)&dc->vinv[n], (size_t)(Np * Np), sizeof(double), "the decomposition")))
        goto fail;
      dc->vnorm[n] = bv_inverse(dc->spt[n], Np, dc->vinv[n]);
    }
    if ((st = pk_alloc((void **)&dc->z0, nq * dc->zw + 1, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->z1, nq * dc->zw + 1, sizeof(double), "the decomposition")) ||
        (st = pk_alloc((void **)&dc->zs, most * dc->zw, sizeof(double), "the decomposition")))
      goto fail;
  }
  if (dc->need_gbar) {
    size_t P = net->P;
    /* the node-averaged gradients of one tile of queries: a stateful
     * optimizer contracts them with the traces tile by tile */
    snprintf(what, sizeof what, "the queries' gradients (a tile of %zu queries x %zu outputs x %zu "
             "parameters, for weight decay and stateful optimizers)", qt, K, P);
    if ((st = pk_alloc_hint((void **)&dc->gbar, qt * K * P, sizeof(double), what, fewer))) goto fail;
    if (dc->explicit_traces) {
      size_t nn;
      if ((st = pk_mul_size(&nn, m, P, "per-example traces"))) goto fail;
      snprintf(what, sizeof what, "the per-example optimizer traces (%zu examples x %zu parameters)", m, P);
      if ((st = pk_calloc_hint((void **)&dc->tr, nn, sizeof(double), what,
                               "train on fewer examples or a smaller network; gd and sgd keep no "
                               "traces")) ||
          (st = pk_calloc((void **)&dc->rtr, P, sizeof(double), "the decomposition")) ||
          (st = pk_alloc((void **)&dc->pc, P, sizeof(double), "the decomposition")))
        goto fail;
    }
  }
  if (want_kp &&
      ((st = pk_acts_init(&dc->wa, net, bc, 0)) || (st = pk_deltas_init(&dc->da, net, bc)) ||
       (st = pk_alloc((void **)&dc->xa, bc * PK_NET_IN(net), sizeof(double), "the decomposition"))))
    goto fail;
  return PK_OK;
fail:
  pk_decomp_free(dc);
  return st;
}

void pk_decomp_free(pk_decomp *dc)
{
  int n;
  free(dc->contrib);
  free(dc->kp);
  free(dc->theta_node);
  free(dc->dir);
  free(dc->M);
  free(dc->T);
  free(dc->work);
  free(dc->zero);
  free(dc->fq);
  free(dc->fb);
  free(dc->xs);
  free(dc->ones);
  free(dc->C);
  free(dc->xa);
  free(dc->sacc);
  free(dc->sabs);
  free(dc->res);
  free(dc->rprev);
  free(dc->finit);
  free(dc->pre0);
  free(dc->pre1);
  free(dc->wsum);
  free(dc->uidx);
  free(dc->ulist);
  free(dc->plan);
  free(dc->tried);
  free(dc->gbar);
  free(dc->tr);
  free(dc->rtr);
  free(dc->pc);
  free(dc->reg);
  free(dc->f0);
  free(dc->f1);
  free(dc->m0);
  free(dc->m1);
  free(dc->z0);
  free(dc->z1);
  free(dc->zs);
  free(dc->zoff);
  free(dc->cert);
  free(dc->rsum);
  free(dc->minit);
  free(dc->nidx);
  free(dc->probe);
  free(dc->backoff);
  free(dc->c0);
  free(dc->idx);
  free(dc->pcs.q);
  free(dc->pcs.ta);
  free(dc->pcs.tb);
  free(dc->pcs.mask);
  free(dc->pin);
  free(dc->pzw);
  free(dc->pzd);
  free(dc->brk);
  free(dc->fail);
  free(dc->start);
  free(dc->list);
  free(dc->list2);
  free(dc->ecoef);
  free(dc->pin2);
  free(dc->pcs2.q);
  free(dc->pcs2.ta);
  free(dc->pcs2.tb);
  free(dc->pcs2.mask);
  for (n = 0; n <= PK_MAX_NODES; n++) free(dc->vinv[n]);
  rows_free(&dc->rows);
  pk_acts_free(&dc->wf);
  pk_acts_free(&dc->wa);
  pk_acts_free(&dc->wx);
  pk_deltas_free(&dc->da);
  memset(dc, 0, sizeof *dc);
}

/* ---- the features of node rows --------------------------------------------- */


/* views of the block's features from row r0 on */
typedef struct view {
  double *A[PK_MAX_LAYERS], *Z[PK_MAX_LAYERS], *D[PK_MAX_LAYERS];
  pk_acts a;
  pk_deltas d;
} view;

static void make_view(view *v, const pk_network *net, const pk_rows *r, size_t r0)
{
  size_t l, K = PK_NET_OUT(net);
  for (l = 0; l < net->L; l++) {
    v->A[l] = l ? r->a.A[l] + r0 * net->layer[l].in : NULL;
    v->Z[l] = r->a.Z[l] + r0 * net->layer[l].out;
    v->D[l] = r->d.D[l] + r0 * K * net->layer[l].out;
  }
  v->a = r->a;
  v->a.A = v->A;
  v->a.Z = v->Z;
  v->a.G = NULL;
  v->d = r->d;
  v->d.D = v->D;
}

/* Rows [r0, r1) with the activations a network computes at their weights:
 * consecutive rows at the same t share one forward and backward pass at
 * w_s + t D_s. */
static void features_natural(pk_decomp *dc, size_t r0, size_t r1, const double *theta)
{
  const pk_network *net = dc->net;
  pk_rows *rw = &dc->rows;
  size_t a = r0, P = net->P, i;
  while (a < r1) {
    size_t b = a + 1;
    double t = rw->t[a];
    const double *th = theta;
    view v;
    while (b < r1 && rw->t[b] == t) b++;
    if (t != 0) {
      for (i = 0; i < P; i++) dc->theta_node[i] = theta[i] + t * dc->dir[i];
      th = dc->theta_node;
    }
    make_view(&v, net, rw, a);
    pk_net_forward_ws(net, th, rw->x + a * PK_NET_IN(net), b - a, &v.a);
    pk_net_deltas(net, th, &v.a, b - a, &v.d);
    a = b;
  }
}

/* Rows [r0, r1) of pieces, each at its own t, with the activation pattern
 * of its piece forced on the piecewise-linear prefix (what the kink search
 * found on the piece, not what rounding at the node would say):
 * z = s_w (W + t V) a + s_b (b + t v), two products per layer. */
static void features_split(pk_decomp *dc, size_t r0, size_t r1, const double *theta)
{
  const pk_network *net = dc->net;
  pk_rows *rw = &dc->rows;
  size_t n = r1 - r0, l, r, j, k, K = dc->K, L = net->L;
  double *T = dc->T;     /* scratch: n K rows of the widest layer */
  view v;
  make_view(&v, net, rw, r0);
  v.A[0] = rw->x + r0 * PK_NET_IN(net);
  for (l = 0; l < L; l++) {
    const pk_layer *ly = &net->layer[l];
    size_t dout = ly->out;
    double *Z = v.Z[l];
    /* z = s_w W a + s_b b and its direction s_w V a + s_b v, per row at t */
    ly->vt->forward(ly, LW(ly, theta), LB(ly, theta), v.A[l], n, 0.0, Z, dc->work);
    if (moves(ly)) {
      ly->vt->forward(ly, LW(ly, dc->dir), LB(ly, dc->dir), v.A[l], n, 0.0, T, dc->work);
      for (r = 0; r < n; r++) {
        double t = rw->t[r0 + r], *z = Z + r * dout;
        const double *tt = T + r * dout;
        for (j = 0; j < dout; j++) z[j] += t * tt[j];
      }
    }
    if (l + 1 < L) {
      if (l < dc->npl) {
        for (r = 0; r < n; r++) {
          const double *mk = dc->pcs.mask + rw->piece[r0 + r] * dc->zw + dc->zoff[l];
          const double *z = Z + r * dout;
          double *a = v.A[l + 1] + r * dout;
          for (j = 0; j < dout; j++) a[j] = mk[j] * z[j];
        }
      } else {
        pk_act_apply(ly->act, ly->slope, Z, v.A[l + 1], n * dout);
      }
    }
  }
  /* sensitivities: unit rows at the output, then back through W + t V */
  {
    double *D = v.D[L - 1];
    memset(D, 0, n * K * K * sizeof(double));
    for (r = 0; r < n; r++)
      for (k = 0; k < K; k++) D[(r * K + k) * K + k] = 1.0;
  }
  for (l = L - 1; l > 0; l--) {
    const pk_layer *ly = &net->layer[l], *prev = &net->layer[l - 1];
    size_t din = ly->in;
    double *Dp = v.D[l - 1];
    ly->vt->backward_input(ly, LW(ly, theta), v.D[l], n * K, Dp, dc->work);
    if (moves(ly)) {
      ly->vt->backward_input(ly, LW(ly, dc->dir), v.D[l], n * K, T, dc->work);
      for (r = 0; r < n; r++) {
        double t = rw->t[r0 + r];
        for (k = 0; k < K; k++) {
          double *dp = Dp + (r * K + k) * din;
          const double *tt = T + (r * K + k) * din;
          for (j = 0; j < din; j++) dp[j] += t * tt[j];
        }
      }
    }
    if (l - 1 < dc->npl) {
      for (r = 0; r < n; r++) {
        const double *mk = dc->pcs.mask + rw->piece[r0 + r] * dc->zw + dc->zoff[l - 1];
        for (k = 0; k < K; k++) {
          double *dp = Dp + (r * K + k) * din;
          for (j = 0; j < din; j++) dp[j] *= mk[j];
        }
      }
    } else if (prev->act != PK_ACT_IDENTITY) {
      double *dphi = v.d.dphi;
      for (j = 0; j < n * din; j++) dphi[j] = 1.0;
      pk_act_mul_deriv(prev->act, prev->slope, v.Z[l - 1], v.A[l], dphi, n * din);
      for (r = 0; r < n; r++)
        for (k = 0; k < K; k++) {
          double *dp = Dp + (r * K + k) * din;
          const double *g = dphi + r * din;
          for (j = 0; j < din; j++) dp[j] *= g[j];
        }
    }
  }
}

/* every sensitivity row of rows [r0, r1) times its row's weight: the
 * node-weighted sums are then plain sums of products (w = 0 rows are
 * skipped where they count) */
static void scale_rows(pk_decomp *dc, size_t r0, size_t r1)
{
  const pk_network *net = dc->net;
  pk_rows *rw = &dc->rows;
  size_t l, r, j, K = dc->K;
  for (l = 0; l < net->L; l++) {
    size_t n = K * net->layer[l].out;
    for (r = r0; r < r1; r++) {
      double w = rw->w[r], *d = rw->d.D[l] + r * n;
      for (j = 0; j < n; j++) d[j] *= w;
    }
  }
}

/* ---- contractions of node rows with training rows -------------------------- */

/* The distinct queries of rows [r0, r1) with a nonzero weight (in ulist,
 * uidx mapping back), and the presums of the two layers that do not move
 * along a step: sum_r w_r D_0(r) (the first layer's inputs are the
 * query's own) and sum_r w_r a_{L-1}(r) (the output's sensitivities are
 * unit rows). */
static size_t presums(pk_decomp *dc, size_t q0, size_t r0, size_t r1)
{
  const pk_network *net = dc->net;
  const pk_rows *rw = &dc->rows;
  size_t r, u, nu = 0, K = dc->K, L = net->L, d0 = PK_NET_IN(net), d1 = net->layer[0].out;
  size_t dl = net->layer[L - 1].in, j;
  for (r = r0; r < r1; r++) {
    uint32_t q = rw->q[r];
    if (rw->w[r] == 0 || dc->uidx[q] >= 0) continue;
    dc->uidx[q] = (int)nu;
    dc->ulist[nu++] = q;
  }
  memset(dc->wsum, 0, nu * sizeof(double));
  if (L >= 2) {
    memset(dc->pre0, 0, nu * K * d1 * sizeof(double));
    memset(dc->pre1, 0, nu * dl * sizeof(double));
  }
  for (r = r0; r < r1; r++) {
    double w = rw->w[r];
    if (w == 0) continue;
    u = (size_t)dc->uidx[rw->q[r]];
    dc->wsum[u] += w;
    if (L >= 2) {
      /* the sensitivities are scaled by their row's weight already */
      const double *D0 = rw->d.D[0] + r * K * d1, *A = rw->a.A[L - 1] + r * dl;
      double *p0 = dc->pre0 + u * K * d1, *p1 = dc->pre1 + u * dl;
      for (j = 0; j < K * d1; j++) p0[j] += D0[j];
      for (j = 0; j < dl; j++) p1[j] += w * A[j];
    }
  }
  /* the queries' own inputs (the first layer's), and the output layer's
   * unit sensitivities times the weights' sum (1 but for a block holding
   * part of a query's pieces), its inputs divided by it: the bias term
   * then counts the weights once */
  dc->wone = 1;
  for (u = 0; u < nu; u++) {
    memcpy(dc->xs + u * d0, dc->Xq->data + (q0 + dc->ulist[u]) * d0, d0 * sizeof(double));
    if (dc->wsum[u] != 1.0) dc->wone = 0;
  }
  memset(dc->ones, 0, nu * K * K * sizeof(double));
  for (u = 0; u < nu; u++) {
    size_t k;
    for (k = 0; k < K; k++) dc->ones[(u * K + k) * K + k] = dc->wsum[u];
    if (!dc->wone && L >= 2)
      for (j = 0; j < dl; j++) dc->pre1[u * dl + j] /= dc->wsum[u];
  }
  return nu;
}

/* the side (layer.h) of n examples of layer ly: inputs V, sensitivities U
 * (per rows an example), with the layer's features computed into buf when
 * it has any */
static void side(pk_side *s, const pk_layer *ly, size_t n, size_t per, const double *V,
                 const double *U, int unit, double *buf, double *work)
{
  s->n = n;
  s->per = per;
  s->V = V;
  s->U = U;
  s->unit = unit;
  s->feat = NULL;
  if (n && ly->vt->feat_size(ly, per)) {
    s->feat = buf;
    ly->vt->feat(ly, s, buf, work);
  }
}

/* The side of a block's queries at layer l against any training rows:
 * the presums for the layers that do not move along a step (the first
 * takes the queries' inputs and the summed sensitivities; the last the
 * summed inputs and unit sensitivities), each node row for the others.
 * per1: K (every output) or 1 with output k alone (the kernel values of
 * one output: its sensitivity rows copied). Returns whether the side is
 * one row a query (presums, indexed by u) or a node row a row. */
static int query_side(pk_decomp *dc, pk_side *s, size_t l, size_t r0, size_t r1, size_t nu,
                      int one, size_t k)
{
  const pk_network *net = dc->net;
  const pk_layer *ly = &net->layer[l];
  const pk_rows *rw = &dc->rows;
  size_t K = dc->K, L = net->L, n = r1 - r0, per = one ? 1 : K, i;
  if (l == 0 || l + 1 == L) {
    const double *V = l == 0 ? dc->xs : dc->pre1, *U;
    int unit = 0;
    if (l + 1 == L) {
      /* unit rows (times the weights' sum) */
      if (one) {
        for (i = 0; i < nu; i++) {
          memset(dc->T + i * K, 0, K * sizeof(double));
          dc->T[i * K + k] = dc->wsum[i];
        }
        U = dc->T;
      } else {
        U = dc->ones;
        unit = dc->wone;
      }
      if (L == 1) V = dc->xs;
    } else if (one) {
      for (i = 0; i < nu; i++)
        memcpy(dc->T + i * ly->out, dc->pre0 + (i * K + k) * ly->out, ly->out * sizeof(double));
      U = dc->T;
    } else {
      U = dc->pre0;
    }
    side(s, ly, nu, per, V, U, unit, dc->fq, dc->work);
    return 1;
  }
  if (one) {
    for (i = 0; i < n; i++)
      memcpy(dc->T + i * ly->out, rw->d.D[l] + ((r0 + i) * K + k) * ly->out, ly->out * sizeof(double));
    side(s, ly, n, 1, rw->a.A[l] + r0 * ly->in, dc->T, 0, dc->fq, dc->work);
  } else {
    side(s, ly, n, K, rw->a.A[l] + r0 * ly->in, rw->d.D[l] + r0 * K * ly->out, 0, dc->fq, dc->work);
  }
  return 0;
}

static void presums_done(pk_decomp *dc, size_t nu)
{
  size_t u;
  for (u = 0; u < nu; u++) dc->uidx[dc->ulist[u]] = -1;
}

/* sacc[(q,k), j] += the step values of rows [r0, r1) against the batch
 * (rows brows, activations and loss gradients w at w_s): the node-weighted
 * sum of g(x; w(t)) . J(x_j; w_s)^T l'_j per query */
static void contract_batch(pk_decomp *dc, size_t q0, size_t r0, size_t r1, const size_t *brows,
                           size_t nb, const pk_acts *w)
{
  const pk_network *net = dc->net;
  const pk_rows *rw = &dc->rows;
  size_t K = dc->K, nu, b0, bn, k, j, l, u, r, S = dc->nbmax;
  double *O = dc->M, *C = dc->C;
  nu = presums(dc, q0, r0, r1);
  for (b0 = 0; b0 < nb; b0 += dc->bc) {
    bn = nb - b0 < dc->bc ? nb - b0 : dc->bc;
    for (l = 0; l < net->L; l++) {
      const pk_layer *ly = &net->layer[l];
      const double *vprod = NULL;
      pk_side sq, st;
      int per_query;
      size_t n1;
      if (!moves(ly)) continue;
      per_query = query_side(dc, &sq, l, r0, r1, nu, 0, 0);
      side(&st, ly, bn, 1, w->A[l] + b0 * ly->in, w->G[l] + b0 * ly->out, 0, dc->fb, dc->work);
      if (l == 0 && ly->vt->vprod) {
        /* the inputs do not move: Xq X^T was computed once */
        for (u = 0; u < nu; u++) {
          const double *src = dc->c0 + (q0 + dc->ulist[u]) * dc->m;
          for (j = 0; j < bn; j++) C[u * bn + j] = src[brows[b0 + j]];
        }
        vprod = C;
      }
      n1 = sq.n;
      memset(O, 0, n1 * K * bn * sizeof(double));
      ly->vt->gram(ly, &sq, &st, PK_OUTPUTS_BLOCK, 0, 1.0, vprod, O, bn, dc->work);
      /* rows of queries (or of nodes) into their queries' step values */
      for (r = 0; r < n1; r++) {
        size_t x;
        if (per_query) x = dc->ulist[r];
        else if (rw->w[r0 + r] == 0) continue;
        else x = rw->q[r0 + r];
        for (k = 0; k < K; k++) {
          double *o = dc->sacc + (x * K + k) * S + b0;
          const double *src = O + (r * K + k) * bn;
          for (j = 0; j < bn; j++) o[j] += src[j];
        }
      }
    }
  }
  presums_done(dc, nu);
}

/* The sensitivities of one output k for n examples at theta (their
 * activations in w): dl->D[l] row j = d f_k(x_j) / d z_l, one row an
 * example (a K-th of pk_net_deltas' work, for the kernel values of one
 * output). */
static void deltas_one(const pk_network *net, const double *theta, const pk_acts *w, size_t n,
                       size_t k, pk_deltas *dl)
{
  size_t l, j, i, K = PK_NET_OUT(net);
  double *D = dl->D[net->L - 1];
  memset(D, 0, n * K * sizeof(double));
  for (i = 0; i < n; i++) D[i * K + k] = 1.0;
  for (l = net->L - 1; l > 0; l--) {
    const pk_layer *ly = &net->layer[l], *prev = &net->layer[l - 1];
    size_t din = ly->in;
    double *Dp = dl->D[l - 1], *dphi = dl->dphi;
    ly->vt->backward_input(ly, LW(ly, theta), dl->D[l], n, Dp, dl->work);
    if (prev->act == PK_ACT_IDENTITY) continue;
    for (j = 0; j < n * din; j++) dphi[j] = 1.0;
    pk_act_mul_deriv(prev->act, prev->slope, w->Z[l - 1], w->A[l], dphi, n * din);
    for (j = 0; j < n * din; j++) Dp[j] *= dphi[j];
  }
}

/* the training side of the kernel values: every output's sensitivities,
 * or the one output the decomposition keeps kernel values for */
static void kernel_deltas(pk_decomp *dc, const double *theta, const pk_acts *w, size_t n)
{
  if (dc->kp_one) deltas_one(dc->net, theta, w, n, dc->kp_k, &dc->da);
  else pk_net_deltas(dc->net, theta, w, n, &dc->da);
}

/* kp[(x,k), i] += lr sum_r w_r g_k(x; w(t_r)) . g_k(x_i; w_s) for every
 * training example i (its activations and per-output sensitivities at w_s
 * computed chunk by chunk) */
static void contract_kernel(pk_decomp *dc, size_t q0, size_t r0, size_t r1, double lr,
                            const double *theta, const pk_matrix *X, const pk_acts *once)
{
  const pk_network *net = dc->net;
  const pk_rows *rw = &dc->rows;
  size_t K = dc->K, nu, b0, bn, k, j, l, u, r;
  size_t mt = once ? dc->m : dc->wa.cap;
  /* the outputs kept, and the training side's rows an example */
  size_t k0 = dc->kp_one ? dc->kp_k : 0, k1 = dc->kp_one ? dc->kp_k + 1 : K, per = dc->kp_one ? 1 : K;
  const pk_acts *ta = once ? once : &dc->wa;
  double *O = dc->M, *C = dc->C;
  nu = presums(dc, q0, r0, r1);
  for (b0 = 0; b0 < dc->m; b0 += mt) {
    bn = dc->m - b0 < mt ? dc->m - b0 : mt;
    if (!once) {
      /* chunk by chunk: the training side again for every block */
      memcpy(dc->xa, X->data + b0 * X->cols, bn * X->cols * sizeof(double));
      pk_net_forward_ws(net, theta, dc->xa, bn, &dc->wa);
      kernel_deltas(dc, theta, &dc->wa, bn);
    }
    for (l = 0; l < net->L; l++) {
      const pk_layer *ly = &net->layer[l];
      const double *vprod = NULL;
      pk_side st;
      if (!moves(ly)) continue;
      side(&st, ly, bn, per, ta->A[l] + (once ? b0 : 0) * ly->in,
           dc->da.D[l] + (once ? b0 : 0) * per * ly->out, !dc->kp_one && l + 1 == net->L, dc->fb, dc->work);
      if (l == 0 && ly->vt->vprod) {
        for (u = 0; u < nu; u++)
          memcpy(C + u * bn, dc->c0 + (q0 + dc->ulist[u]) * dc->m + b0, bn * sizeof(double));
        vprod = C;
      }
      for (k = k0; k < (dc->kp_one ? k1 : k0 + 1); k++) {
        pk_side sq;
        int per_query = query_side(dc, &sq, l, r0, r1, nu, dc->kp_one, k);
        size_t n1 = sq.n, kk;
        memset(O, 0, n1 * sq.per * bn * sizeof(double));
        ly->vt->gram(ly, &sq, &st, PK_OUTPUTS_DIAGONAL, 0, lr, vprod, O, bn, dc->work);
        for (r = 0; r < n1; r++) {
          size_t x;
          if (per_query) x = dc->ulist[r];
          else if (rw->w[r0 + r] == 0) continue;
          else x = rw->q[r0 + r];
          for (kk = 0; kk < sq.per; kk++) {
            size_t out = dc->kp_one ? k : kk;
            double *o = dc->kp + ((q0 + x) * K + out) * dc->m + b0;
            const double *src = O + (r * sq.per + kk) * bn;
            for (j = 0; j < bn; j++) o[j] += src[j];
          }
        }
      }
    }
  }
  (void)k1;
  presums_done(dc, nu);
}

/* out[row(r,k)] += weight * the explicit gradient of row r, output k, from
 * layer inputs A (row r / per) and sensitivities D (row r) */
/* out[P-wide row] += weight * the explicit gradient of each of n examples'
 * per sensitivity rows (inputs A[l], sensitivities U[l] from row r0), the
 * example's rows at out + row[i] P (or out + (i per + k) P with row NULL) */
static void explicit_rows(const pk_network *net, double *const *A, double *const *U, size_t r0,
                          size_t n, size_t per, double weight, double *out)
{
  size_t l;
  for (l = 0; l < net->L; l++) {
    const pk_layer *ly = &net->layer[l];
    pk_side s;
    if (!moves(ly)) continue;
    pk_net_side(&s, net, l, A, U, NULL, r0, n, per, 0);
    ly->vt->grad_rows(ly, &s, weight, out, net->P);
  }
}

/* gbar[(q,k)] += w_r g_k(x; w(t_r)) for rows [r0, r1) */
static void gbar_rows(pk_decomp *dc, size_t r0, size_t r1)
{
  const pk_network *net = dc->net;
  pk_rows *rw = &dc->rows;
  size_t r, K = dc->K, P = net->P;
  /* the rows' layer inputs, the first layer's being the queries' own */
  rw->a.A[0] = rw->x;
  for (r = r0; r < r1; r++) {
    if (rw->w[r] == 0) continue;
    /* sensitivities already scaled by the row's weight */
    explicit_rows(net, rw->a.A, rw->d.D, r, 1, K, 1.0, dc->gbar + rw->q[r] * K * P);
  }
}

/* reg[x*K + k] += alpha * gbar[(x,k)] . v for the tile of qn queries from q0,
 * whose gradients gbar holds */
static void reg_dot(pk_decomp *dc, size_t q0, size_t qn, const double *v, double alpha)
{
  size_t R = qn * dc->K, P = dc->net->P;
  if (R == 0) return;
  cblas_dgemv(CblasRowMajor, CblasNoTrans, (int)R, (int)P, alpha, dc->gbar, (int)P, v, 1, 1.0,
              dc->reg + q0 * dc->K, 1);
}

/* the tile's rows of contrib ((qn K) x m) += alpha * gbar (qn K x P) tr^T */
static void trace_contract(pk_decomp *dc, size_t q0, size_t qn, double alpha)
{
  size_t R = qn * dc->K, P = dc->net->P;
  if (R == 0 || dc->m == 0) return;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)dc->m, (int)P, alpha, dc->gbar,
              (int)P, dc->tr, (int)P, 1.0, dc->contrib + q0 * dc->K * dc->m, (int)dc->m);
}

/* Optimizers other than plain steps, before the query tiles: update the
 * per-example traces exactly as the optimizer updates its buffers
 * (DESIGN.md section 4), and Adam's preconditioner of the step. */
static void traces_update(pk_decomp *dc, double lr, const double *theta, const size_t *rows,
                          size_t nb, const pk_acts *w, const pk_optstate *os)
{
  const pk_network *net = dc->net;
  const pk_hyper *h = &dc->hyper;
  size_t P = net->P, i, p, N = dc->m * P;
  double wd = h->weight_decay, keep, decay;
  int first = os->t == 1;
  if (dc->opt == PK_OPT_MOMENTUM || dc->opt == PK_OPT_NESTEROV) {
    decay = first ? 0.0 : h->momentum;
    keep = first ? 1.0 : 1 - h->dampening;
  } else {
    decay = h->beta1;
    keep = 1 - h->beta1;
  }
  /* traces: tr = decay tr + keep e_i (batch rows), rtr likewise with wd w */
  if (decay != 1.0) for (i = 0; i < N; i++) dc->tr[i] *= decay;
  for (i = 0; i < nb; i++)
    explicit_rows(net, w->A, w->G, i, 1, 1, keep / (double)(dc->batch_total ? dc->batch_total : nb),
                  dc->tr + rows[i] * P);
  if (dc->opt != PK_OPT_ADAMW)
    for (p = 0; p < P; p++) dc->rtr[p] = decay * dc->rtr[p] + keep * wd * theta[p];
  if (dc->opt == PK_OPT_ADAM || dc->opt == PK_OPT_ADAMW) {
    double bc1 = 1 - pow(h->beta1, (double)os->t), bc2 = 1 - pow(h->beta2, (double)os->t);
    double step = lr / bc1, bc2s = sqrt(bc2);
    for (p = 0; p < P; p++) dc->pc[p] = step / (sqrt(os->b[p]) / bc2s + h->eps);
  }
}

/* ... and contract the traces with the node-averaged gradients of one
 * tile of queries */
static void traces_contract(pk_decomp *dc, size_t q0, size_t qn, double lr, const double *theta)
{
  const pk_hyper *h = &dc->hyper;
  size_t P = dc->net->P, R = qn * dc->K, i, p;
  double wd = h->weight_decay;
  switch (dc->opt) {
  case PK_OPT_MOMENTUM:
    trace_contract(dc, q0, qn, -lr);
    reg_dot(dc, q0, qn, dc->rtr, -lr);
    break;
  case PK_OPT_NESTEROV:
    /* D = -lr (g + mu buf): the g part is the plain step (added by the
     * structured engine); here the buffer part and the decay terms */
    trace_contract(dc, q0, qn, -lr * h->momentum);
    reg_dot(dc, q0, qn, dc->rtr, -lr * h->momentum);
    if (wd > 0) reg_dot(dc, q0, qn, theta, -lr * wd);
    break;
  default:   /* adam, adamw: the preconditioned step lr P_s on the gradients */
    if (dc->opt == PK_OPT_ADAMW && wd > 0) reg_dot(dc, q0, qn, theta, -lr * wd);
    for (i = 0; i < R; i++)
      for (p = 0; p < P; p++) dc->gbar[i * P + p] *= dc->pc[p];
    trace_contract(dc, q0, qn, -1.0);
    if (dc->opt == PK_OPT_ADAM) reg_dot(dc, q0, qn, dc->rtr, -1.0);
    break;
  }
}

/* ---- the pattern test and the pieces of a step --------------------------- */

/* The batched rows [r0, r1) hold nqs queries (list qs, tile-local) at the n
 * Gauss nodes, node-major. With their pre-activations at w_s and w_{s+1}
 * (and extra points where the prefix is deeper than the points), each PL
 * unit's pre-activation is sampled at the points of sample_points; if
 * every layer below is free of kinks on [0, 1], those samples are of one
 * polynomial, whose Bernstein coefficients all of one strict sign (beyond
 * their rounding) prove the unit does not switch in the step. Queries
 * where some unit cannot be proven so are marked for splitting. */
static pk_status pattern_test(pk_decomp *dc, size_t q0, const uint32_t *qs, size_t nqs, int n,
                              size_t r0, const double *theta, unsigned char *fail)
{
  const pk_network *net = dc->net;
  const pk_rows *rw = &dc->rows;
  int N = dc->ns[n], i, node[PK_KINK_MAXDEG + 1];
  size_t zw = dc->zw, p, l;
  const double *pt = dc->spt[n], *vi = dc->vinv[n], *zp[PK_KINK_MAXDEG + 1];
  double tau = 1e-13 * dc->vnorm[n];
  pk_status st;
  /* the samples: t = 0 and 1 from the ends' forward passes, the nodes
   * from the node rows, read where they are (node[i] says which); the
   * forward passes at extra points into zs[i] (nqs x zw) */
  for (i = 0; i < N; i++) {
    double *zi = dc->zs + (size_t)i * nqs * zw;
    int j;
    node[i] = -1;
    for (j = 0; j < n; j++)
      if (pt[i] == dc->gt[n][j]) node[i] = j;
    if (i > 0 && i < N - 1 && node[i] < 0) {
      /* an extra point: the queries' forward pass there (node 0's rows
       * hold their inputs in order) */
      size_t P = net->P, x;
      if (!dc->wx.cap && (st = pk_acts_init(&dc->wx, net, dc->rcap, 0))) return st;
      for (x = 0; x < P; x++) dc->theta_node[x] = theta[x] + pt[i] * dc->dir[x];
      pk_net_forward_ws(net, dc->theta_node, rw->x + r0 * PK_NET_IN(net), nqs, &dc->wx);
      for (p = 0; p < nqs; p++)
        for (l = 0; l < dc->npl; l++)
          memcpy(zi + p * zw + dc->zoff[l], dc->wx.Z[l] + p * net->layer[l].out,
                 net->layer[l].out * sizeof(double));
    }
  }
  /* a layer of a query at once, the units innermost (vectorized in
   * fastmath.c): a unit's samples are in N arrays, so a loop over them per
   * unit touched N cache lines for one unit's test. Same sums in the same
   * order as one unit at a time. */
  for (p = 0; p < nqs; p++) {
    fail[p] = 0;
    for (l = 0; l < dc->npl && !fail[p]; l++) {
      double neg, *zm = dc->T, *bmn, *bmx, *bk;
      size_t w = net->layer[l].out;
      int kinked;
      layer_pl(net, l, &neg, &kinked);
      if (!kinked) continue;
      for (i = 0; i < N; i++)
        zp[i] = i == 0 ? dc->z0 + (q0 + qs[p]) * zw + dc->zoff[l]
                : i == N - 1 ? dc->z1 + (q0 + qs[p]) * zw + dc->zoff[l]
                : node[i] >= 0 ? rw->a.Z[l] + (r0 + (size_t)node[i] * nqs + p) * w
                : dc->zs + ((size_t)i * nqs + p) * zw + dc->zoff[l];
      bmn = zm + w;
      bmx = bmn + w;
      bk = bmx + w;
      fail[p] = (unsigned char)pk_bernstein_test(zp, N, vi, w, tau, zm, bmn, bmx, bk);
    }
  }
  return PK_OK;
}

/* grow an array to hold `need` items, keeping its contents */
static pk_status grow(void **p, size_t *cap, size_t need, size_t size, const char *what)
{
  void *np;
  size_t nc;
  pk_status st;
  if (need <= *cap) return PK_OK;
  nc = *cap ? *cap : 16;
  while (nc < need) nc *= 2;
  if ((st = pk_alloc(&np, nc, size, what))) return st;
  if (*p && *cap) memcpy(np, *p, *cap * size);
  free(*p);
  *p = np;
  *cap = nc;
  return PK_OK;
}

static pk_status pieces_reserve(pk_pieces *pc, size_t need, size_t zw)
{
  static const char *const what = "the pieces of a step";
  size_t c;
  pk_status st;
  if (need <= pc->cap) return PK_OK;
  c = pc->cap;
  if ((st = grow((void **)&pc->q, &c, need, sizeof *pc->q, what))) return st;
  c = pc->cap;
  if ((st = grow((void **)&pc->ta, &c, need, sizeof *pc->ta, what))) return st;
  c = pc->cap;
  if ((st = grow((void **)&pc->tb, &c, need, sizeof *pc->tb, what))) return st;
  {
    size_t mc = pc->cap * zw;
    if ((st = grow((void **)&pc->mask, &mc, c * zw, sizeof *pc->mask, what))) return st;
  }
  pc->cap = c;
  return PK_OK;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The pieces of [0, 1] for the queries qs (tile-local): layer by layer
 * through the piecewise-linear prefix, on each piece of the layers below
 * (where their pattern is fixed) the pre-activation of every unit is a
 * polynomial in t whose coefficients are exact products:
 *   z_k = s_w (W a_k + V a_{k-1}) + s_b (b [k = 0] + v [k = 1]),
 * with a_k the coefficients of the layer's input on the piece and W + t V
 * its weights along the step. The pieces are cut at every sign change
 * (kinks.c), and each carries the pattern of every layer: the sign of z
 * at its middle, or training's convention where z is exactly 0 there. */
static pk_status build_pieces(pk_decomp *dc, size_t q0, const uint32_t *qs, size_t nqs,
                              const double *theta)
{
  const pk_network *net = dc->net;
  pk_pieces *cur = &dc->pcs, *nxt = &dc->pcs2;
  size_t p, l, u, k, zw = dc->zw, deg_in = 0, d0 = PK_NET_IN(net);
  pk_status st;
  if ((st = pieces_reserve(cur, nqs, zw)) ||
      (st = grow((void **)&dc->pin, &dc->pin_cap, nqs * d0, sizeof(double), "the pieces of a step")))
    return st;
  for (p = 0; p < nqs; p++) {
    cur->q[p] = qs[p];
    cur->ta[p] = 0;
    cur->tb[p] = 1;
    memcpy(dc->pin + p * d0, dc->Xq->data + (q0 + qs[p]) * d0, d0 * sizeof(double));
  }
  cur->n = nqs;
  for (l = 0; l < dc->npl; l++) {
    const pk_layer *ly = &net->layer[l];
    int mv = moves(ly);
    size_t din = ly->in, dout = ly->out, ki = deg_in + 1, deg = deg_in + (mv ? 1 : 0);
    size_t nr = cur->n * ki, np2 = 0, r0;
    double neg, *E = dc->ecoef, *bw = dc->T, *bv = dc->T + dout;
    int kinked;
    layer_pl(net, l, &neg, &kinked);
    if (nr * dout > dc->pz_cap) {
      size_t c = 0;
      free(dc->pzw);
      free(dc->pzd);
      dc->pzw = dc->pzd = NULL;
      dc->pz_cap = 0;
      if ((st = grow((void **)&dc->pzw, &c, nr * dout, sizeof(double), "the pieces of a step"))) return st;
      c = 0;
      if ((st = grow((void **)&dc->pzd, &c, nr * dout, sizeof(double), "the pieces of a step"))) return st;
      dc->pz_cap = c;
    }
    /* the layer (bilinear in its weights and its input) on every
     * coefficient of every piece's input: with W (pzw) and with the
     * step's direction V (pzd), in blocks the layers' scratch holds; the
     * bias terms s_b b and s_b v from a zero input */
    for (r0 = 0; r0 < nr; r0 += dc->rcap) {
      size_t n = nr - r0 < dc->rcap ? nr - r0 : dc->rcap;
      ly->vt->forward(ly, mv ? LW(ly, theta) : NULL, NULL, dc->pin + r0 * din, n, 0.0,
                      dc->pzw + r0 * dout, dc->work);
      if (mv)
        ly->vt->forward(ly, LW(ly, dc->dir), NULL, dc->pin + r0 * din, n, 0.0,
                        dc->pzd + r0 * dout, dc->work);
    }
    if (mv) {
      ly->vt->forward(ly, LW(ly, theta), LB(ly, theta), dc->zero, 1, 0.0, bw, dc->work);
      ly->vt->forward(ly, LW(ly, dc->dir), LB(ly, dc->dir), dc->zero, 1, 0.0, bv, dc->work);
    }
    for (p = 0; p < cur->n; p++) {
      double ta = cur->ta[p], tb = cur->tb[p];
      size_t nb = 0, c;
      for (k = 0; k <= deg; k++)
        for (u = 0; u < dout; u++)
          E[k * dout + u] = (k < ki ? dc->pzw[(p * ki + k) * dout + u] : 0) +
                            (mv && k >= 1 ? dc->pzd[(p * ki + k - 1) * dout + u] : 0);
      if (mv)
        for (u = 0; u < dout; u++) {
          E[u] += bw[u];
          E[dout + u] += bv[u];
        }
      if (kinked)
        for (u = 0; u < dout; u++) {
          double m[PK_KINK_MAXDEG + 1];
          int got;
          for (k = 0; k <= deg; k++) m[k] = E[k * dout + u];
          if ((st = grow((void **)&dc->brk, &dc->brk_cap, nb + deg, sizeof(double), "the kinks of a step")))
            return st;
          while ((got = pk_kink_roots(m, (int)deg, ta, tb, dc->brk + nb, (int)(dc->brk_cap - nb))) < 0)
            if ((st = grow((void **)&dc->brk, &dc->brk_cap, 2 * dc->brk_cap, sizeof(double),
                           "the kinks of a step")))
              return st;
          nb += (size_t)got;
        }
      if (nb > 1) {
        size_t i, j = 1;
        qsort(dc->brk, nb, sizeof(double), cmp_double);
        for (i = 1; i < nb; i++)
          if (dc->brk[i] != dc->brk[j - 1]) dc->brk[j++] = dc->brk[i];
        nb = j;
      }
      if ((st = pieces_reserve(nxt, np2 + nb + 1, zw)) ||
          (st = grow((void **)&dc->pin2, &dc->pin2_cap, (np2 + nb + 1) * (deg + 1) * dout,
                     sizeof(double), "the pieces of a step")))
        return st;
      for (c = 0; c <= nb; c++) {
        double lo = c ? dc->brk[c - 1] : ta, hi = c < nb ? dc->brk[c] : tb, mid = 0.5 * (lo + hi);
        double *mk = nxt->mask + np2 * zw, *out = dc->pin2 + np2 * (deg + 1) * dout;
        if (!(hi > lo)) continue;
        nxt->q[np2] = cur->q[p];
        nxt->ta[np2] = lo;
        nxt->tb[np2] = hi;
        memcpy(mk, cur->mask + p * zw, dc->zoff[l] * sizeof(double));
        for (u = 0; u < dout; u++) {
          double z = 0;
          int kk;
          for (kk = (int)deg; kk >= 0; kk--) z = z * mid + E[(size_t)kk * dout + u];
          mk[dc->zoff[l] + u] = !kinked || z > 0 ? 1.0 : neg;
        }
        for (k = 0; k <= deg; k++)
          for (u = 0; u < dout; u++) out[k * dout + u] = mk[dc->zoff[l] + u] * E[k * dout + u];
        np2++;
      }
    }
    nxt->n = np2;
    {
      pk_pieces t = *cur;
      double *tp = dc->pin;
      size_t tc = dc->pin_cap;
      *cur = *nxt;
      *nxt = t;
      dc->pin = dc->pin2;
      dc->pin_cap = dc->pin2_cap;
      dc->pin2 = tp;
      dc->pin2_cap = tc;
    }
    deg_in = deg;
  }
  return PK_OK;
}

/* ---- one step ---------------------------------------------------------------- */

/* the nodes and weights of a plan with n nodes (left: t = 0) */
static void plan_nodes(const pk_decomp *dc, int n, const double **t, const double **w)
{
  static const double zero = 0, one = 1;
  if (dc->quad.rule == PK_RULE_LEFT) {
    *t = &zero;
    *w = &one;
  } else {
    *t = dc->gt[n];
    *w = dc->gw[n];
  }
}

enum { MODE_STEP = 0, MODE_KERNEL = 1 };

typedef struct tile_ctx {
  size_t q0, qn;
  double lr;
  const double *theta;
  const size_t *brows;
  size_t nb;
  const pk_acts *w;
  const pk_matrix *X;
  int *cnt;                /* qt: node count per query */
  const pk_acts *kside;     /* every training example at w_s, once per step (with dc->da) */
  size_t rows_done;        /* node rows evaluated */
  double split_time;
} tile_ctx;

static void block_contract(pk_decomp *dc, tile_ctx *tc, int mode, size_t n)
{
  int structured = !dc->explicit_traces || dc->opt == PK_OPT_NESTEROV;
  if (mode == MODE_KERNEL) {
    contract_kernel(dc, tc->q0, 0, n, tc->lr, tc->theta, tc->X, tc->kside);
    return;
  }
  if (structured) contract_batch(dc, tc->q0, 0, n, tc->brows, tc->nb, tc->w);
  if (dc->need_gbar) gbar_rows(dc, 0, n);
  tc->rows_done += n;
}

static void add_row(pk_decomp *dc, size_t q0, uint32_t q, double t, double w, size_t piece)
{
  pk_rows *rw = &dc->rows;
  size_t r = rw->n++, d0 = PK_NET_IN(dc->net);
  rw->q[r] = q;
  rw->t[r] = t;
  rw->w[r] = w;
  rw->piece[r] = piece;
  memcpy(rw->x + r * d0, dc->Xq->data + (q0 + q) * d0, d0 * sizeof(double));
}

/* Run the queries of list (tile-local) under their plans: node rows in
 * blocks, their features, and the contraction the mode asks for. In
 * MODE_STEP the pattern test may move a query from its natural plan to a
 * split one. */
static pk_status run_plans(pk_decomp *dc, tile_ctx *tc, const uint32_t *list, size_t nl, int mode)
{
  pk_rows *rw = &dc->rows;
  size_t i, j, R = dc->rcap, nsplit = 0;
  int c, maxc = 0;
  pk_status st;
  uint32_t *qs = dc->list2;
  for (i = 0; i < nl; i++)
    if (tc->cnt[list[i]] > maxc) maxc = tc->cnt[list[i]];
  /* natural plans, grouped by node count, node-major within a block */
  for (c = 1; c <= maxc; c++) {
    const double *t, *w;
    size_t per = R / (size_t)c, nqs = 0;
    if (per == 0) per = 1;
    plan_nodes(dc, c, &t, &w);
    for (i = 0; i <= nl; i++) {
      if (i < nl && (dc->plan[list[i]] != PLAN_NATURAL || tc->cnt[list[i]] != c)) continue;
      if (i < nl) qs[nqs++] = list[i];
      if (nqs == 0 || (nqs < per && i < nl)) continue;
      rw->n = 0;
      for (j = 0; j < (size_t)c; j++) {
        size_t p;
        for (p = 0; p < nqs; p++) add_row(dc, tc->q0, qs[p], t[j], w[j], SIZE_MAX);
      }
      features_natural(dc, 0, rw->n, tc->theta);
      scale_rows(dc, 0, rw->n);
      if (mode == MODE_STEP && dc->quad.rule == PK_RULE_EXACT && dc->npl) {
        size_t p;
        if ((st = pattern_test(dc, tc->q0, qs, nqs, c, 0, tc->theta, dc->fail))) return st;
        for (p = 0; p < nqs; p++)
          if (dc->fail[p]) {
            dc->plan[qs[p]] = PLAN_SPLIT;
            for (j = 0; j < (size_t)c; j++) rw->w[j * nqs + p] = 0;
          }
      }
      block_contract(dc, tc, mode, rw->n);
      nqs = 0;
    }
  }
  /* split plans: the pieces of every split query, then their node rows */
  for (i = 0; i < nl; i++)
    if (dc->plan[list[i]] == PLAN_SPLIT) qs[nsplit++] = list[i];
  if (nsplit) {
    double t0 = now();
    size_t p;
    if ((st = build_pieces(dc, tc->q0, qs, nsplit, tc->theta))) return st;
    rw->n = 0;
    for (p = 0; p < dc->pcs.n; p++) {
      uint32_t q = dc->pcs.q[p];
      const double *t, *w;
      double ta = dc->pcs.ta[p], h = dc->pcs.tb[p] - ta;
      c = tc->cnt[q];
      plan_nodes(dc, c, &t, &w);
      for (j = 0; j < (size_t)c; j++) {
        if (rw->n == R) {
          features_split(dc, 0, rw->n, tc->theta);
          scale_rows(dc, 0, rw->n);
          block_contract(dc, tc, mode, rw->n);
          rw->n = 0;
        }
        add_row(dc, tc->q0, q, ta + h * t[j], h * w[j], p);
      }
    }
    if (rw->n) {
      features_split(dc, 0, rw->n, tc->theta);
      scale_rows(dc, 0, rw->n);
      block_contract(dc, tc, mode, rw->n);
      rw->n = 0;
    }
    tc->split_time += now() - t0;
  }
  return PK_OK;
}

/* forward the tile's queries at weights th into wf, keeping the outputs,
 * the sums of the absolute terms of the output layer (what rounding in the
 * outputs is proportional to, larger than |f| where terms cancel) and the
 * PL pre-activations */
static void ends_forward(pk_decomp *dc, size_t q0, size_t qn, const double *th, double *f,
                         double *fm, double *z)
{
  const pk_network *net = dc->net;
  const pk_layer *ly = &net->layer[net->L - 1];
  size_t x, l, i, K = dc->K, L = net->L, din = ly->in;
  double *aw = dc->theta_node, *aa = dc->T, *az = dc->M;
  pk_net_forward_ws(net, th, dc->Xq->data + q0 * PK_NET_IN(net), qn, &dc->wf);
  memcpy(f + q0 * K, dc->wf.Z[L - 1], qn * K * sizeof(double));
  /* the output layer on |W|, |b| and |a| (its scales are >= 0) */
  for (i = 0; i < ly->nw; i++) aw[ly->woff + i] = fabs(th[ly->woff + i]);
  for (i = 0; i < ly->nb; i++) aw[ly->boff + i] = fabs(th[ly->boff + i]);
  for (i = 0; i < qn * din; i++) aa[i] = fabs(dc->wf.A[L - 1][i]);
  ly->vt->forward(ly, LW(ly, aw), LB(ly, aw), aa, qn, 0.0, az, dc->work);
  memcpy(fm + q0 * K, az, qn * K * sizeof(double));
  for (x = 0; x < qn && dc->npl; x++)
    for (l = 0; l < dc->npl; l++)
      memcpy(z + (q0 + x) * dc->zw + dc->zoff[l], dc->wf.Z[l] + x * net->layer[l].out,
             net->layer[l].out * sizeof(double));
}

static pk_status step_tile(pk_decomp *dc, tile_ctx *tc, const double *next)
{
  const pk_network *net = dc->net;
  size_t q0 = tc->q0, qn = tc->qn, K = dc->K, P = net->P, S = dc->nbmax, nb = tc->nb, x, k, j, p;
  size_t npend = qn;
  int exact = dc->quad.rule == PK_RULE_EXACT, smooth = exact && !dc->all_pl;
  int structured = !dc->explicit_traces || dc->opt == PK_OPT_NESTEROV;
  double coef = -tc->lr / (double)(dc->batch_total ? dc->batch_total : nb), u = DBL_EPSILON / 2;
  uint32_t *pend = dc->list;
  pk_status st;
  int cnt[QTILE];
  tc->cnt = cnt;
  ends_forward(dc, q0, qn, next, dc->f1, dc->m1, dc->z1);
  /* first plans */
  for (x = 0; x < qn; x++) {
    size_t g = q0 + x;
    pend[x] = (uint32_t)x;
    dc->rprev[x] = INFINITY;
    dc->plan[x] = PLAN_NATURAL;
    if (!exact) cnt[x] = dc->quad.nodes;
    else if (!smooth) cnt[x] = dc->npl_nodes;
    else {
      int a = dc->nidx[g];
      if (a > 0 && dc->step >= dc->probe[g]) a--;     /* try one node count fewer */
      dc->start[x] = (unsigned char)a;
      dc->tried[x] = (unsigned char)a;
      cnt[x] = ladder[a];
    }
  }
  while (npend) {
    size_t nn = 0;
    for (j = 0; j < npend; j++) {
      x = pend[j];
      if (structured) memset(dc->sacc + x * K * S, 0, K * S * sizeof(double));
      if (dc->need_gbar) memset(dc->gbar + x * K * P, 0, K * P * sizeof(double));
    }
    if ((st = run_plans(dc, tc, pend, npend, MODE_STEP))) return st;
    /* residuals: the change of the network against the step's sum of
     * contributions (for explicit gradients, gbar . D_s, the same in exact
     * arithmetic); the sum of |terms| bounds the rounding of that sum */
    for (j = 0; j < npend; j++) {
      size_t g;
      double scale = 0;
      int ok = 1;
      x = pend[j];
      g = q0 + x;
      for (k = 0; k < K; k++) {
        double f0 = dc->f0[g * K + k], f1 = dc->f1[g * K + k], s = 0, a = 0;
        if (dc->need_gbar) {
          const double *gb = dc->gbar + (x * K + k) * P;
          for (p = 0; p < P; p++) {
            double v = gb[p] * dc->dir[p];
            s += v;
            a += fabs(v);
          }
        } else {
          const double *sa = dc->sacc + (x * K + k) * S;
          for (p = 0; p < nb; p++) {
            double v = coef * sa[p];
            s += v;
            a += fabs(v);
          }
        }
        dc->res[x * K + k] = f1 - f0 - s;
        dc->sabs[x * K + k] = a;
        if (fabs(f0) > scale) scale = fabs(f0);
        if (fabs(f1) > scale) scale = fabs(f1);
      }
      if (exact) {
        /* The run's tolerance spread over its steps: the step's residual
         * within tol / T of the output, and the residuals so far (the
         * machine's error at w_{s+1}, where the rounding of the outputs in
         * between cancels) within (s + 1) tol / T. Neither is asked below
         * the rounding of the outputs and the step's sum (nf, nfr); once
         * the sum is beyond its share, a step is refined until its
         * residual is well below that rounding, or until more nodes stop
         * reducing it (what is left is rounding). */
        double T = (double)(dc->steps > dc->step ? dc->steps : dc->step + 1), rmax = 0, nfmax = 0;
        for (k = 0; k < K; k++) {
          double r = dc->res[x * K + k], f0 = fabs(dc->f0[g * K + k]), f1 = fabs(dc->f1[g * K + k]);
          double m0 = dc->m0[g * K + k], m1 = dc->m1[g * K + k], sa = dc->sabs[x * K + k];
          double nf = 2 * u * (f0 + f1 + sa) + 4 * u * (m0 + m1);
          double nfr = 2 * u * (fabs(dc->finit[g * K + k]) + f1 + sa) + 4 * u * (dc->minit[g * K + k] + m1) +
                       dc->cert[g * K + k];
          double thr = fmax(dc->quad.tol * scale / T, nf);
          double sthr = fmax(dc->quad.tol * scale * (double)(dc->step + 1) / T, nfr);
          int over = !(fabs(dc->rsum[g * K + k] + r) <= sthr);
          if (!(fabs(r) <= thr) || (over && !(fabs(r) <= nf / 8))) ok = 0;
          if (fabs(r) > rmax) rmax = fabs(r);
          if (nf > nfmax) nfmax = nf;
        }
        if (!ok && dc->rprev[x] < INFINITY && !(rmax < dc->rprev[x] / 4) && rmax <= 16 * nfmax) {
          /* rounding: the count before was as good */
          ok = 1;
          if (smooth && dc->tried[x] > dc->start[x]) dc->tried[x]--;
        }
        dc->rprev[x] = rmax;
      }
      if (!ok) {
        if (!smooth && dc->plan[x] == PLAN_NATURAL && dc->npl) {
          /* the pattern test passed, the residual says otherwise: the
           * kinks from the exact polynomials instead */
          dc->plan[x] = PLAN_SPLIT;
          pend[nn++] = (uint32_t)x;
          continue;
        }
        if (smooth && dc->tried[x] + 1 < NLADDER) {
          dc->tried[x]++;
          cnt[x] = ladder[dc->tried[x]];
          pend[nn++] = (uint32_t)x;
          continue;
        }
      }
      /* accepted: the error so far, and the rounding of computing it */
      for (k = 0; k < K; k++) {
        dc->rsum[g * K + k] += dc->res[x * K + k];
        dc->cert[g * K + k] += 2 * u * (fabs(dc->f1[g * K + k] - dc->f0[g * K + k]) + dc->sabs[x * K + k]);
      }
    }
    npend = nn;
  }
  /* the accepted step values into the contributions */
  if (structured)
    for (x = 0; x < qn; x++)
      for (k = 0; k < K; k++) {
        double *crow = dc->contrib + ((q0 + x) * K + k) * dc->m;
        const double *a = dc->sacc + (x * K + k) * S;
        for (j = 0; j < nb; j++) crow[tc->brows[j]] += coef * a[j];
      }
  if (dc->explicit_traces) traces_contract(dc, q0, qn, tc->lr, tc->theta);
  else if (dc->hyper.weight_decay > 0) reg_dot(dc, q0, qn, tc->theta, -tc->lr * dc->hyper.weight_decay);
  /* the path kernel values with the accepted plans */
  if (dc->want_kp) {
    for (x = 0; x < qn; x++) pend[x] = (uint32_t)x;
    if ((st = run_plans(dc, tc, pend, qn, MODE_KERNEL))) return st;
  }
  /* statistics, and where smooth queries start the next step */
  for (x = 0; x < qn; x++) {
    size_t g = q0 + x;
    dc->stats.pairs++;
    if (dc->plan[x] == PLAN_SPLIT) dc->stats.split++;
    if (smooth) {
      int a = dc->tried[x], s0 = dc->start[x], base = dc->nidx[g];
      if (a > s0) dc->stats.refined++;
      if (s0 < base) {
        if (a == s0) {           /* one node count fewer was enough */
          dc->nidx[g] = (unsigned char)a;
          dc->backoff[g] = 8;
        } else {                 /* it was not: wait twice as long to try again */
          dc->nidx[g] = (unsigned char)a;
          if (dc->backoff[g] < 4096) dc->backoff[g] = (unsigned short)(2 * dc->backoff[g]);
        }
        dc->probe[g] = dc->step + dc->backoff[g];
      } else if (a > s0) {
        dc->nidx[g] = (unsigned char)a;
        dc->probe[g] = dc->step + dc->backoff[g];
      }
    }
  }
  return PK_OK;
}

pk_status pk_decomp_step(pk_decomp *dc, double lr, const double *theta, const double *next,
                         const size_t *rows, size_t nb, const pk_acts *w, const pk_matrix *X,
                         const pk_optstate *os)
{
  const pk_network *net = dc->net;
  size_t P = net->P, i, q0;
  tile_ctx tc;
  if (!dc->c0_ready && dc->nq && dc->m && net->layer[0].vt->vprod) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)dc->nq, (int)dc->m, (int)X->cols, 1.0,
                dc->Xq->data, (int)X->cols, X->data, (int)X->cols, 0.0, dc->c0, (int)dc->m);
    dc->c0_ready = 1;
  }
  for (i = 0; i < P; i++) dc->dir[i] = next[i] - theta[i];
  if (dc->explicit_traces) traces_update(dc, lr, theta, rows, nb, w, os);
  if (!dc->have_f0) {
    for (q0 = 0; q0 < dc->nq; q0 += dc->qt)
      ends_forward(dc, q0, dc->nq - q0 < dc->qt ? dc->nq - q0 : dc->qt, theta, dc->f0, dc->m0, dc->z0);
    memcpy(dc->minit, dc->m0, dc->nq * dc->K * sizeof(double));
    memcpy(dc->finit, dc->f0, dc->nq * dc->K * sizeof(double));
    dc->have_f0 = 1;
  }
  memset(&tc, 0, sizeof tc);
  if (dc->want_kp && dc->m <= dc->wa.cap) {
    /* The kernel values' training side (every example's activations and
     * per-output sensitivities at w_s) once for the step: from the batch's
     * own forward pass when the batch is the training set in order (gd). */
    int whole = nb == dc->m;
    for (i = 0; whole && i < nb; i++) whole = rows[i] == i;
    if (whole) {
      tc.kside = w;
    } else {
      memcpy(dc->xa, X->data, dc->m * X->cols * sizeof(double));
      pk_net_forward_ws(net, theta, dc->xa, dc->m, &dc->wa);
      tc.kside = &dc->wa;
    }
    kernel_deltas(dc, theta, tc.kside, dc->m);
  }
  tc.lr = lr;
  tc.theta = theta;
  tc.brows = rows;
  tc.nb = nb;
  tc.w = w;
  tc.X = X;
  for (q0 = 0; q0 < dc->nq; q0 += dc->qt) {
    pk_status st;
    if (dc->cancel && *dc->cancel) return pk_fail(PK_ECANCEL, "decomposition: interrupted");
    tc.q0 = q0;
    tc.qn = dc->nq - q0 < dc->qt ? dc->nq - q0 : dc->qt;
    if ((st = step_tile(dc, &tc, next))) return st;
  }
  dc->nodes_sum += (double)tc.rows_done;
  dc->stats.split_seconds += tc.split_time;
  {
    double *t = dc->f0;
    dc->f0 = dc->f1;
    dc->f1 = t;
    t = dc->m0;
    dc->m0 = dc->m1;
    dc->m1 = t;
    t = dc->z0;
    dc->z0 = dc->z1;
    dc->z1 = t;
  }
  dc->step++;
  return PK_OK;
}

void pk_decomp_finish(pk_decomp *dc)
{
  size_t x, k, i, K = dc->K, m = dc->m;
  double u = DBL_EPSILON / 2;
  /* predict sums bias, contributions and regularization once more */
  for (x = 0; x < dc->nq; x++)
    for (k = 0; k < K; k++) {
      const double *c = dc->contrib + (x * K + k) * m;
      /* f0 holds f(x; w_T) now; |bias| <= |f(x; w_T)| + sum |c_i| + |reg|;
       * the outputs at both ends may be computed again in other blocks */
      double a = dc->m0[x * K + k] + dc->minit[x * K + k] + fabs(dc->reg[x * K + k]);
      for (i = 0; i < m; i++) a += fabs(c[i]);
      dc->cert[x * K + k] += fabs(dc->rsum[x * K + k]) + 4 * u * a;
    }
  dc->stats.nodes_per_pair = dc->stats.pairs ? dc->nodes_sum / (double)dc->stats.pairs : 0;
}
