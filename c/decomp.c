/* decomp.c - the exact finite-step decomposition of a trained network into
 * per-example contributions (DESIGN.md section 4):
 *   f(x; w_{s+1}) - f(x; w_s) = gbar_s(x) . D_s,
 *   D_s = -eta_s sum_{i in B_s} (1/|B_s|) J(x_i; w_s)^T l'_{i,s},
 * with gbar_s the average of g(x; w_s + t D_s) over t in [0, 1] by a
 * Gauss-Legendre rule (or the left point). Every product g(x; w) .
 * J(x_i; w_s)^T v is structured: per layer, the layer's gram of the
 * queries' sensitivities against the batch's loss gradients (layer.h; a
 * dense layer's is (D_l(x) . G_l(x_i)) (s_w^2 a_l(x) . a_l(x_i) + s_b^2),
 * two GEMMs and a Hadamard product). */
#include <stdlib.h>
#include <string.h>
#include <math.h>
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
  if (rule != PK_RULE_GAUSS) return pk_fail(PK_EINVAL, "unknown rule");
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

/* rows of queries per tile and batch columns per chunk */
#define QTILE 1024
#define BCHUNK 2048

/* the layers' scratch (doubles) for qt queries against bc training rows */
static size_t work_doubles(const pk_decomp *dc, size_t qt, size_t bc)
{
  const pk_network *net = dc->net;
  size_t l, m = 0, K = dc->K;
  for (l = 0; l < net->L; l++) {
    const pk_layer *ly = &net->layer[l];
    size_t w = ly->vt->gram_work(ly, qt, K, bc, 1, PK_OUTPUTS_BLOCK), d;
    if (dc->want_kp && (d = ly->vt->gram_work(ly, qt, K, bc, K, PK_OUTPUTS_DIAGONAL)) > w) w = d;
    if (!dc->need_gbar && dc->hyper.weight_decay > 0 && (d = ly->vt->dot_work(ly, qt, K)) > w) w = d;
    if (w > m) m = w;
  }
  return m;
}

/* The bytes of the workspace for a tile of qt queries against chunks of bc
 * training rows: the queries' features at every node, the batch's layer
 * features, the products C and acc, the layers' scratch, the tile's
 * explicit gradients, and the training side of the kernel values. */
static double ws_bytes(const pk_decomp *dc, size_t qt, size_t bc)
{
  const pk_network *net = dc->net;
  double K = (double)dc->K, b;
  b = (double)dc->nodes * ((double)pk_acts_bytes(net, qt, 0) + (double)pk_deltas_bytes(net, qt) +
                           (double)pk_lfeats_bytes(net, qt, dc->K));
  b += (double)pk_lfeats_bytes(net, bc, 1);
  b += ((double)qt * K * (double)bc + (double)qt * (double)bc) * sizeof(double);
  b += (double)work_doubles(dc, qt, bc) * sizeof(double);
  if (dc->need_gbar) b += (double)qt * K * (double)net->P * sizeof(double);
  if (dc->want_kp)
    b += (double)pk_acts_bytes(net, bc, 0) + (double)pk_deltas_bytes(net, bc) +
         (double)pk_lfeats_bytes(net, bc, dc->K) + (double)bc * (double)PK_NET_IN(net) * sizeof(double);
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
  double small = (nq * K + m + P + 3) * d, fixed = contrib + kp + c0 + traces + small + extra;
  size_t qt = dc->nq < QTILE ? dc->nq : QTILE, bc = dc->m < BCHUNK ? dc->m : BCHUNK;
  if (qt == 0) qt = 1;
  if (bc == 0) bc = 1;
  /* without a limit in the way: a tile's products near 32 MiB, its
   * features near 256 MiB, its explicit gradients near 64 MiB */
  while (qt > 1 && (double)qt * K * (double)bc * d > (double)((size_t)32 << 20)) qt /= 2;
  while (qt > 16 && (double)dc->nodes * ((double)pk_acts_bytes(net, qt, 0) +
                                         (double)pk_deltas_bytes(net, qt)) > (double)((size_t)256 << 20))
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
  return PK_OK;
}

pk_status pk_decomp_init(pk_decomp *dc, const pk_network *net, const pk_matrix *Xq, size_t m,
                         pk_rule rule, int nodes, int want_kp, pk_optimizer opt,
                         const pk_hyper *hyper, const char *who, double extra,
                         const char *extra_what)
{
  size_t K = PK_NET_OUT(net), nq = Xq->rows, N, qt, bc;
  static const char *const fewer = "explain fewer queries at a time";
  char what[200], kwhat[160];
  pk_status st;
  int q;
  memset(dc, 0, sizeof *dc);
  dc->net = net;
  dc->Xq = Xq;
  dc->nq = nq;
  dc->K = K;
  dc->m = m;
  dc->want_kp = want_kp;
  dc->opt = opt;
  dc->hyper = *hyper;
  dc->explicit_traces = pk_opt_state_vectors(opt) > 0;
  /* weight decay alone goes through the layers' dot products */
  dc->need_gbar = dc->explicit_traces;
  if ((st = pk_check_input(net, Xq, "the queries"))) return st;
  if ((N = pk_nonfinite_row(Xq)))
    return pk_fail(PK_EINVAL, "the queries hold a NaN or infinite value in row %zu (a kernel "
                   "machine explains finite inputs only)", N);
  if ((st = pk_quadrature(rule, nodes, dc->t, dc->wt))) return st;
  dc->nodes = nodes;
  if ((st = pk_mul_size(&N, nq * K, m, "contributions"))) return st;
  if ((st = plan(dc, who, extra, extra_what))) return st;
  qt = dc->qt;
  bc = dc->bc;
  snprintf(what, sizeof what, "the contributions (%zu queries x %zu outputs x %zu training examples)",
           nq, K, m);
  snprintf(kwhat, sizeof kwhat, "the path kernel values (%zu queries x %zu outputs x %zu training "
           "examples)", nq, K, m);
  if ((st = pk_calloc_hint((void **)&dc->contrib, N, sizeof(double), what, fewer)) ||
      (want_kp && (st = pk_calloc_hint((void **)&dc->kp, N, sizeof(double), kwhat, fewer))) ||
      (st = pk_alloc((void **)&dc->theta_node, net->P, sizeof(double), "the decomposition")) ||
      (st = pk_alloc((void **)&dc->work, work_doubles(dc, qt, bc) + 1, sizeof(double),
                     "the decomposition's scratch")) ||
      (st = pk_alloc((void **)&dc->C, qt * bc, sizeof(double), "the decomposition's scratch")) ||
      (st = pk_alloc((void **)&dc->acc, qt * K * bc, sizeof(double), "the decomposition's scratch")) ||
      (st = pk_calloc((void **)&dc->reg, nq * K + 1, sizeof(double), "the decomposition")) ||
      (st = pk_alloc_hint((void **)&dc->c0, net->layer[0].vt->vprod ? nq * m + 1 : 1, sizeof(double),
                          "the queries' input products",
                          fewer)) ||
      (st = pk_alloc((void **)&dc->idx, m + 1, sizeof(size_t), "the decomposition")))
    goto fail;
  for (q = 0; q < nodes; q++)
    if ((st = pk_acts_init(&dc->wq[q], net, qt, 0)) || (st = pk_deltas_init(&dc->dq[q], net, qt)) ||
        (st = pk_lfeats_init(&dc->fq[q], net, qt, K)))
      goto fail;
  if ((st = pk_lfeats_init(&dc->fb, net, bc, 1))) goto fail;
  {
    size_t i;
    for (i = 0; i < m; i++) dc->idx[i] = i;
  }
  if (dc->need_gbar) {
    size_t P = net->P;
    /* the node-averaged gradients of one tile of queries: a stateful
     * optimizer contracts them with the traces tile by tile */
    snprintf(what, sizeof what, "the queries' gradients (a tile of %zu queries x %zu outputs x %zu "
             "parameters, for weight decay and stateful optimizers)", qt, K, P);
    if ((st = pk_alloc_hint((void **)&dc->gbar, qt * K * P, sizeof(double), what, fewer))) goto fail;
    if (dc->explicit_traces) {
      size_t n;
      if ((st = pk_mul_size(&n, m, P, "per-example traces"))) goto fail;
      snprintf(what, sizeof what, "the per-example optimizer traces (%zu examples x %zu parameters)", m, P);
      if ((st = pk_calloc_hint((void **)&dc->tr, n, sizeof(double), what,
                               "train on fewer examples or a smaller network; gd and sgd keep no "
                               "traces")) ||
          (st = pk_calloc((void **)&dc->rtr, P, sizeof(double), "the decomposition")) ||
          (st = pk_alloc((void **)&dc->pc, P, sizeof(double), "the decomposition")))
        goto fail;
    }
  }
  if (want_kp &&
      ((st = pk_acts_init(&dc->wa, net, bc, 0)) || (st = pk_deltas_init(&dc->da, net, bc)) ||
       (st = pk_lfeats_init(&dc->fa, net, bc, K)) ||
       (st = pk_alloc((void **)&dc->xa, bc * PK_NET_IN(net), sizeof(double), "the decomposition"))))
    goto fail;
  return PK_OK;
fail:
  pk_decomp_free(dc);
  return st;
}

void pk_decomp_free(pk_decomp *dc)
{
  free(dc->contrib);
  free(dc->kp);
  free(dc->theta_node);
  free(dc->work);
  free(dc->C);
  free(dc->acc);
  free(dc->xa);
  free(dc->gbar);
  free(dc->tr);
  free(dc->rtr);
  free(dc->pc);
  free(dc->reg);
  free(dc->c0);
  free(dc->idx);
  {
    int q;
    for (q = 0; q < PK_MAX_NODES; q++) {
      pk_acts_free(&dc->wq[q]);
      pk_deltas_free(&dc->dq[q]);
      pk_lfeats_free(&dc->fq[q]);
    }
  }
  pk_acts_free(&dc->wa);
  pk_deltas_free(&dc->da);
  pk_lfeats_free(&dc->fb);
  pk_lfeats_free(&dc->fa);
  memset(dc, 0, sizeof *dc);
}

/* acc[(x,k), j] += weight * the products of the gradients of a query tile
 * (its features at the node) with those of nj training rows, layer by
 * layer: against the batch's loss gradients (per = 1, BLOCK layout), or
 * with diag against the training rows' output sensitivities, output k
 * with output k (DIAGONAL). A, Gt, Ft: the training rows' layer inputs,
 * sensitivities and layer features; cols: their rows in the training set. */
static void contract(pk_decomp *dc, int node, size_t q0, size_t qn, double *const *A,
                     double *const *Gt, double *const *Ft, const size_t *cols, size_t nj,
                     int diag, double weight, double *acc)
{
  const pk_network *net = dc->net;
  size_t K = dc->K, l, x, j;
  for (l = 0; l < net->L; l++) {
    const pk_layer *ly = &net->layer[l];
    const double *vprod = NULL;
    pk_side sq, st;
    if (ly->nw + ly->nb == 0) continue;
    pk_net_side(&sq, net, l, dc->wq[node].A, dc->dq[node].D, dc->fq[node].feat, 0, qn, K, 1);
    pk_net_side(&st, net, l, A, Gt, Ft, 0, nj, diag ? K : 1, diag);
    if (l == 0 && ly->vt->vprod) {
      /* the inputs do not move: Xq X^T was computed once */
      double *C = dc->C;
      for (x = 0; x < qn; x++) {
        const double *src = dc->c0 + (q0 + x) * dc->m;
        for (j = 0; j < nj; j++) C[x * nj + j] = src[cols[j]];
      }
      vprod = C;
    }
    ly->vt->gram(ly, &sq, &st, diag ? PK_OUTPUTS_DIAGONAL : PK_OUTPUTS_BLOCK, 0, weight, vprod,
                 acc, nj, dc->work);
  }
}

/* out[r] += weight * the explicit gradient row r (example r / per) of the
 * block whose layer inputs are A and whose sensitivities are U */
static void explicit_rows(const pk_network *net, double *const *A, double *const *U, size_t n,
                          size_t per, double weight, double *out)
{
  size_t l;
  for (l = 0; l < net->L; l++) {
    const pk_layer *ly = &net->layer[l];
    pk_side s;
    if (ly->nw + ly->nb == 0) continue;
    pk_net_side(&s, net, l, A, U, NULL, 0, n, per, 0);
    ly->vt->grad_rows(ly, &s, weight, out, net->P);
  }
}

/* reg[x*K + k] += alpha * g(x; node q)_k . v for the tile of qn queries
 * from q0 at node q, by the layers' dot products (no gradient is formed):
 * weight decay's term for optimizers without state */
static void decay_dot(pk_decomp *dc, int q, size_t q0, size_t qn, const double *v, double alpha)
{
  const pk_network *net = dc->net;
  size_t l;
  for (l = 0; l < net->L; l++) {
    const pk_layer *ly = &net->layer[l];
    pk_side s;
    if (ly->nw + ly->nb == 0) continue;
    pk_net_side(&s, net, l, dc->wq[q].A, dc->dq[q].D, dc->fq[q].feat, 0, qn, dc->K, 1);
    ly->vt->dot_params(ly, &s, v + ly->woff, ly->nb ? v + ly->boff : NULL, alpha,
                       dc->reg + q0 * dc->K, dc->work);
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
  {
    size_t l;
    for (l = 0; l < net->L; l++) {
      const pk_layer *ly = &net->layer[l];
      if (ly->nw + ly->nb == 0) continue;
      for (i = 0; i < nb; i++) {
        pk_side s;
        pk_net_side(&s, net, l, w->A, w->G, NULL, i, 1, 1, 0);
        ly->vt->grad_rows(ly, &s, keep / (double)(dc->batch_total ? dc->batch_total : nb),
                          dc->tr + rows[i] * P, P);
      }
    }
  }
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

pk_status pk_decomp_step(pk_decomp *dc, double lr, const double *theta, const double *next,
                         const size_t *rows, size_t nb, const pk_acts *w, const pk_matrix *X,
                         const pk_optstate *os)
{
  const pk_network *net = dc->net;
  size_t K = dc->K, P = net->P, L = net->L, q0, qn, b0, bn, i, x, k, l, bc = dc->bc;
  int q;
  double coef = -lr / (double)(dc->batch_total ? dc->batch_total : nb);
  double *A[PK_MAX_LAYERS], *G[PK_MAX_LAYERS];
  /* the plain gradient step's terms come from the structured engine:
   * everything for gd and sgd, the current-gradient part for nesterov */
  int structured = !dc->explicit_traces || dc->opt == PK_OPT_NESTEROV;
  if (L > PK_MAX_LAYERS) return pk_fail(PK_EINVAL, "decomposition: more than %d layers", PK_MAX_LAYERS);
  if (!dc->c0_ready && dc->nq && dc->m && net->layer[0].vt->vprod) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)dc->nq, (int)dc->m, (int)X->cols, 1.0,
                dc->Xq->data, (int)X->cols, X->data, (int)X->cols, 0.0, dc->c0, (int)dc->m);
    dc->c0_ready = 1;
  }
  if (dc->explicit_traces) traces_update(dc, lr, theta, rows, nb, w, os);
  for (q0 = 0; q0 < dc->nq; q0 += dc->qt) {
    if (dc->cancel && *dc->cancel) return pk_fail(PK_ECANCEL, "decomposition: interrupted");
    qn = dc->nq - q0 < dc->qt ? dc->nq - q0 : dc->qt;
    if (dc->need_gbar) memset(dc->gbar, 0, qn * K * P * sizeof(double));
    /* the queries at every node of the step, once */
    for (q = 0; q < dc->nodes; q++) {
      double tq = dc->t[q];
      for (i = 0; i < P; i++) dc->theta_node[i] = theta[i] + tq * (next[i] - theta[i]);
      pk_net_forward_ws(net, dc->theta_node, dc->Xq->data + q0 * dc->Xq->cols, qn, &dc->wq[q]);
      pk_net_deltas(net, dc->theta_node, &dc->wq[q], qn, &dc->dq[q]);
      pk_lfeats_compute(&dc->fq[q], net, dc->wq[q].A, dc->dq[q].D, qn, K, 1);
      if (dc->need_gbar)
        explicit_rows(net, dc->wq[q].A, dc->dq[q].D, qn, K, dc->wt[q], dc->gbar);
      else if (dc->hyper.weight_decay > 0)
        decay_dot(dc, q, q0, qn, theta, -lr * dc->hyper.weight_decay * dc->wt[q]);
    }
    /* against the batch: per-example loss gradients G at w_s, every node
     * summed before the scatter */
    for (b0 = 0; structured && b0 < nb; b0 += bc) {
      bn = nb - b0 < bc ? nb - b0 : bc;
      for (l = 0; l < L; l++) {
        A[l] = w->A[l] + b0 * net->layer[l].in;
        G[l] = w->G[l] + b0 * net->layer[l].out;
      }
      pk_lfeats_compute(&dc->fb, net, A, G, bn, 1, 0);
      memset(dc->acc, 0, qn * K * bn * sizeof(double));
      for (q = 0; q < dc->nodes; q++)
        contract(dc, q, q0, qn, A, G, dc->fb.feat, rows + b0, bn, 0, dc->wt[q], dc->acc);
      for (x = 0; x < qn; x++)
        for (k = 0; k < K; k++) {
          double *crow = dc->contrib + ((q0 + x) * K + k) * dc->m;
          const double *a = dc->acc + (x * K + k) * bn;
          for (i = 0; i < bn; i++) crow[rows[b0 + i]] += coef * a[i];
        }
    }
    /* against every training example at w_s: the path kernel values; the
     * training side is computed once per chunk for all nodes */
    if (dc->want_kp) {
      size_t mt = dc->wa.cap;
      for (b0 = 0; b0 < dc->m; b0 += mt) {
        if (dc->cancel && *dc->cancel) return pk_fail(PK_ECANCEL, "decomposition: interrupted");
        bn = dc->m - b0 < mt ? dc->m - b0 : mt;
        memcpy(dc->xa, X->data + b0 * X->cols, bn * X->cols * sizeof(double));
        pk_net_forward_ws(net, theta, dc->xa, bn, &dc->wa);
        pk_net_deltas(net, theta, &dc->wa, bn, &dc->da);
        pk_lfeats_compute(&dc->fa, net, dc->wa.A, dc->da.D, bn, K, 1);
        memset(dc->acc, 0, qn * K * bn * sizeof(double));
        for (q = 0; q < dc->nodes; q++)
          contract(dc, q, q0, qn, dc->wa.A, dc->da.D, dc->fa.feat, dc->idx + b0, bn, 1, dc->wt[q],
                   dc->acc);
        for (x = 0; x < qn; x++)
          for (k = 0; k < K; k++) {
            double *krow = dc->kp + ((q0 + x) * K + k) * dc->m + b0;
            const double *a = dc->acc + (x * K + k) * bn;
            for (i = 0; i < bn; i++) krow[i] += lr * a[i];
          }
      }
    }
    if (dc->explicit_traces) traces_contract(dc, q0, qn, lr, theta);
  }
  return PK_OK;
}
