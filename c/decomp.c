/* decomp.c - the exact finite-step decomposition of a trained network into
 * per-example contributions (DESIGN.md section 4):
 *   f(x; w_{s+1}) - f(x; w_s) = gbar_s(x) . D_s,
 *   D_s = -eta_s sum_{i in B_s} (1/|B_s|) J(x_i; w_s)^T l'_{i,s},
 * with gbar_s the average of g(x; w_s + t D_s) over t in [0, 1] by a
 * Gauss-Legendre rule (or the left point). Every product g(x; w) .
 * J(x_i; w_s)^T v is structured: per layer (D_l(x) . G_l(x_i)) (s_w^2
 * a_l(x) . a_l(x_i) + s_b^2), two GEMMs and a Hadamard product. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cblas.h>
#include "pk_internal.h"

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

/* rows of queries per tile and batch columns per chunk */
#define QTILE 1024
#define BCHUNK 2048

pk_status pk_decomp_init(pk_decomp *dc, const pk_network *net, const pk_matrix *Xq, size_t m,
                         pk_rule rule, int nodes, int want_kp)
{
  size_t K = net->d[net->L], nq = Xq->rows, qt = nq < QTILE ? nq : QTILE, N;
  pk_status st;
  memset(dc, 0, sizeof *dc);
  dc->net = net;
  dc->Xq = Xq;
  dc->nq = nq;
  dc->K = K;
  dc->m = m;
  dc->want_kp = want_kp;
  if ((st = pk_check_input(net, Xq, "the queries"))) return st;
  if ((st = pk_quadrature(rule, nodes, dc->t, dc->wt))) return st;
  dc->nodes = nodes;
  if (qt == 0) qt = 1;
  dc->qt = qt;
  if ((st = pk_mul_size(&N, nq * K, m, "contributions"))) return st;
  if ((st = pk_calloc((void **)&dc->contrib, N, sizeof(double), "the contributions (queries x outputs x training examples)")) ||
      (want_kp && (st = pk_calloc((void **)&dc->kp, N, sizeof(double), "the path kernel values (queries x outputs x training examples)"))) ||
      (st = pk_alloc((void **)&dc->theta_node, net->P, sizeof(double), "the decomposition")) ||
      (st = pk_acts_init(&dc->wq, net, qt, 0)) ||
      (st = pk_deltas_init(&dc->dq, net, qt)) ||
      (st = pk_alloc((void **)&dc->M, qt * K * BCHUNK, sizeof(double), "the decomposition's scratch")) ||
      (st = pk_alloc((void **)&dc->C, qt * BCHUNK, sizeof(double), "the decomposition's scratch")) ||
      (st = pk_alloc((void **)&dc->acc, qt * K * BCHUNK, sizeof(double), "the decomposition's scratch"))) {
    pk_decomp_free(dc);
    return st;
  }
  if (want_kp) {
    size_t mt = m < BCHUNK ? m : BCHUNK;
    if ((st = pk_acts_init(&dc->wa, net, mt ? mt : 1, 0)) ||
        (st = pk_deltas_init(&dc->da, net, mt ? mt : 1)) ||
        (st = pk_alloc((void **)&dc->xa, (mt ? mt : 1) * net->d[0], sizeof(double), "the decomposition"))) {
      pk_decomp_free(dc);
      return st;
    }
  }
  return PK_OK;
}

void pk_decomp_free(pk_decomp *dc)
{
  free(dc->contrib);
  free(dc->kp);
  free(dc->theta_node);
  free(dc->M);
  free(dc->C);
  free(dc->acc);
  free(dc->xa);
  pk_acts_free(&dc->wq);
  pk_deltas_free(&dc->dq);
  pk_acts_free(&dc->wa);
  pk_deltas_free(&dc->da);
  memset(dc, 0, sizeof *dc);
}

static void mm_nt(const double *A, size_t ra, const double *B, size_t rb, size_t k, double *C)
{
  /* C (ra x rb) = A (ra x k) B (rb x k)^T */
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ra, (int)rb, (int)k, 1.0, A, (int)k,
              B, (int)k, 0.0, C, (int)rb);
}

/* acc[(x,k), j] += wq * sum_l M_l * (c_l C_l + b_l) for a query tile (wq,
 * dq hold its features at the node) against training rows whose inputs
 * are A_l[j] and whose per-output sensitivities are Gt (rows j*Kt + k, Kt
 * = K for the training deltas, 1 with loss gradients G). diag: M uses the
 * same output k on both sides (the training side has K rows per example). */
static void contract(const pk_decomp *dc, size_t qn, double *const *A, double *const *Gt,
                     size_t nj, int diag, double weight, double *acc)
{
  const pk_network *net = dc->net;
  size_t K = dc->K, l, x, k, j, L = net->L;
  double *M = dc->M, *C = dc->C;
  for (l = 0; l < L; l++) {
    size_t din = net->d[l], dout = net->d[l + 1];
    double c = net->sw[l] * net->sw[l], b = net->sb[l] * net->sb[l];
    mm_nt(dc->wq.A[l], qn, A[l], nj, din, C);
    if (l + 1 == L) {
      /* query sensitivities are unit rows: M[(x,k), j] = Gt[j][k] */
      for (x = 0; x < qn; x++)
        for (k = 0; k < K; k++) {
          double *o = acc + (x * K + k) * nj;
          const double *cr = C + x * nj;
          if (diag) { for (j = 0; j < nj; j++) o[j] += weight * (c * cr[j] + b); }
          else for (j = 0; j < nj; j++) o[j] += weight * Gt[l][j * K + k] * (c * cr[j] + b);
        }
      continue;
    }
    if (!diag) {
      mm_nt(dc->dq.D[l], qn * K, Gt[l], nj, dout, M);
      for (x = 0; x < qn; x++)
        for (k = 0; k < K; k++) {
          double *o = acc + (x * K + k) * nj;
          const double *mr = M + (x * K + k) * nj, *cr = C + x * nj;
          for (j = 0; j < nj; j++) o[j] += weight * mr[j] * (c * cr[j] + b);
        }
    } else {
      for (k = 0; k < K; k++) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)qn, (int)nj, (int)dout, 1.0,
                    dc->dq.D[l] + k * dout, (int)(K * dout), Gt[l] + k * dout, (int)(K * dout),
                    0.0, M, (int)nj);
        for (x = 0; x < qn; x++) {
          double *o = acc + (x * K + k) * nj;
          const double *mr = M + x * nj, *cr = C + x * nj;
          for (j = 0; j < nj; j++) o[j] += weight * mr[j] * (c * cr[j] + b);
        }
      }
    }
  }
}

pk_status pk_decomp_step(pk_decomp *dc, double lr, const double *theta, const double *next,
                         const size_t *rows, size_t nb, const pk_acts *w, const pk_matrix *X)
{
  const pk_network *net = dc->net;
  size_t K = dc->K, P = net->P, L = net->L, q0, qn, b0, bn, i, x, k, l;
  int q;
  double coef = -lr / (double)nb;
  double *A[PK_MAX_LAYERS], *G[PK_MAX_LAYERS];
  if (L > PK_MAX_LAYERS) return pk_fail(PK_EINVAL, "decomposition: more than %d layers", PK_MAX_LAYERS);
  for (q0 = 0; q0 < dc->nq; q0 += dc->qt) {
    qn = dc->nq - q0 < dc->qt ? dc->nq - q0 : dc->qt;
    for (q = 0; q < dc->nodes; q++) {
      double tq = dc->t[q];
      for (i = 0; i < P; i++) dc->theta_node[i] = theta[i] + tq * (next[i] - theta[i]);
      pk_net_forward_ws(net, dc->theta_node, dc->Xq->data + q0 * dc->Xq->cols, qn, &dc->wq);
      pk_net_deltas(net, dc->theta_node, &dc->wq, qn, &dc->dq);
      /* against the batch: per-example loss gradients G at w_s */
      for (b0 = 0; b0 < nb; b0 += BCHUNK) {
        bn = nb - b0 < BCHUNK ? nb - b0 : BCHUNK;
        for (l = 0; l < L; l++) {
          A[l] = w->A[l] + b0 * net->d[l];
          G[l] = w->G[l] + b0 * net->d[l + 1];
        }
        memset(dc->acc, 0, qn * K * bn * sizeof(double));
        contract(dc, qn, A, G, bn, 0, dc->wt[q], dc->acc);
        for (x = 0; x < qn; x++)
          for (k = 0; k < K; k++) {
            double *crow = dc->contrib + ((q0 + x) * K + k) * dc->m;
            const double *a = dc->acc + (x * K + k) * bn;
            for (i = 0; i < bn; i++) crow[rows[b0 + i]] += coef * a[i];
          }
      }
      /* against every training example at w_s: the path kernel values */
      if (dc->want_kp) {
        size_t mt = dc->wa.cap;
        for (b0 = 0; b0 < dc->m; b0 += mt) {
          bn = dc->m - b0 < mt ? dc->m - b0 : mt;
          memcpy(dc->xa, X->data + b0 * X->cols, bn * X->cols * sizeof(double));
          pk_net_forward_ws(net, theta, dc->xa, bn, &dc->wa);
          pk_net_deltas(net, theta, &dc->wa, bn, &dc->da);
          memset(dc->acc, 0, qn * K * bn * sizeof(double));
          contract(dc, qn, dc->wa.A, dc->da.D, bn, 1, dc->wt[q], dc->acc);
          for (x = 0; x < qn; x++)
            for (k = 0; k < K; k++) {
              double *krow = dc->kp + ((q0 + x) * K + k) * dc->m + b0;
              const double *a = dc->acc + (x * K + k) * bn;
              for (i = 0; i < bn; i++) krow[i] += lr * a[i];
            }
        }
      }
    }
  }
  return PK_OK;
}
