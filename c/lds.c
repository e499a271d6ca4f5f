/* lds.c - judging attribution scores by retraining (DESIGN.md section 4,
 * "Linear datamodeling score"): random subsets of the training set,
 * retraining with 0/1 loss weights from the same initial weights, seed and
 * batch order (the batches are drawn over every row; the dropped rows
 * weigh 0), Spearman's rank correlation between the outputs the scores
 * predict and the outputs retraining gives; and removing each query's
 * top-k examples. Retrainings share one training workspace. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cblas.h>
#include "pk_attribute.h"

pk_status pk_attribute_subsets(size_t J, size_t m, double fraction, uint64_t seed, pk_matrix **out)
{
  size_t k, j, i, *perm = NULL;
  pk_rng r;
  pk_status st;
  *out = NULL;
  if (!(fraction > 0 && fraction < 1))
    return pk_fail(PK_EINVAL, "subsets: fraction must be in (0, 1), got %g", fraction);
  if (m < 2) return pk_fail(PK_EINVAL, "subsets: need at least 2 training examples, got %zu", m);
  k = (size_t)floor(fraction * (double)m + 0.5);
  if (k < 1 || k >= m)
    return pk_fail(PK_EINVAL, "subsets: a fraction of %g of %zu examples keeps %zu of them; it must "
                   "keep at least 1 and drop at least 1", fraction, m, k);
  if ((st = pk_alloc((void **)&perm, m, sizeof(size_t), "the subsets"))) return st;
  if ((st = pk_matrix_zeros(out, J, m))) {
    free(perm);
    return st;
  }
  pk_rng_seed(&r, seed);
  for (i = 0; i < m; i++) perm[i] = i;
  for (j = 0; j < J; j++) {
    /* the first k of a fresh partial Fisher-Yates shuffle */
    for (i = 0; i < k; i++) {
      size_t t = i + (size_t)pk_rng_below(&r, m - i), v = perm[i];
      perm[i] = perm[t];
      perm[t] = v;
      (*out)->data[j * m + perm[i]] = 1.0;
    }
  }
  free(perm);
  return PK_OK;
}

/* ---- ranks and Spearman's correlation ------------------------------------------ */

/* a value and its index: sorting these keeps ties in index order */
typedef struct keyed {
  double v;
  size_t i;
} keyed;

static int by_value(const void *a, const void *b)
{
  const keyed *x = a, *y = b;
  if (x->v < y->v) return -1;
  if (x->v > y->v) return 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

/* average ranks (1-based; ties share the mean of their ranks) */
static void ranks(const double *x, size_t n, keyed *kv, double *rk)
{
  size_t i, j;
  for (i = 0; i < n; i++) {
    kv[i].v = x[i];
    kv[i].i = i;
  }
  qsort(kv, n, sizeof *kv, by_value);
  for (i = 0; i < n; i = j) {
    double avg;
    for (j = i + 1; j < n && kv[j].v == kv[i].v; j++) {}
    avg = 0.5 * ((double)i + (double)(j - 1)) + 1.0;
    for (; i < j; i++) rk[kv[i].i] = avg;
  }
}

pk_status pk_spearman(const double *x, const double *y, size_t n, double *rho)
{
  keyed *idx = NULL;
  size_t i;
  double *rx = NULL, *ry = NULL, mx = 0, my = 0, sxy = 0, sxx = 0, syy = 0;
  pk_status st;
  *rho = NAN;
  if (n < 2) return PK_OK;
  if (!pk_all_finite(x, n) || !pk_all_finite(y, n)) return PK_OK;
  if ((st = pk_alloc((void **)&idx, n, sizeof(keyed), "ranks")) ||
      (st = pk_alloc((void **)&rx, n, sizeof(double), "ranks")) ||
      (st = pk_alloc((void **)&ry, n, sizeof(double), "ranks")))
    goto done;
  ranks(x, n, idx, rx);
  ranks(y, n, idx, ry);
  for (i = 0; i < n; i++) {
    mx += rx[i];
    my += ry[i];
  }
  mx /= (double)n;
  my /= (double)n;
  for (i = 0; i < n; i++) {
    double a = rx[i] - mx, b = ry[i] - my;
    sxy += a * b;
    sxx += a * a;
    syy += b * b;
  }
  /* a constant side (every rank tied) has no correlation: NaN */
  if (sxx > 0 && syy > 0) *rho = sxy / sqrt(sxx * syy);
done:
  free(idx);
  free(rx);
  free(ry);
  return st;
}

pk_status pk_attribute_lds(const pk_matrix *masks, const pk_matrix *observed,
                           const pk_matrix *scores, double *per_query, double *mean, double *se,
                           size_t *defined)
{
  size_t J = masks->rows, m = masks->cols, nq = scores->rows, q, j, n = 0;
  double *pred = NULL, *col = NULL, *obs = NULL, s = 0, ss = 0;
  pk_status st;
  *mean = *se = NAN;
  *defined = 0;
  if (scores->cols != m)
    return pk_fail(PK_EINVAL, "lds: the scores have %zu columns, the subsets %zu training examples",
                   scores->cols, m);
  if (observed->rows != J || observed->cols != nq)
    return pk_fail(PK_EINVAL, "lds: the observed outputs are %zu x %zu, expected %zu x %zu (subsets x "
                   "queries)", observed->rows, observed->cols, J, nq);
  if ((st = pk_alloc((void **)&pred, J * nq + 1, sizeof(double), "the predicted outputs")) ||
      (st = pk_alloc((void **)&col, J + 1, sizeof(double), "lds")) ||
      (st = pk_alloc((void **)&obs, J + 1, sizeof(double), "lds")))
    goto done;
  /* g_j(x_q) = sum_{i in S_j} A[q, i] for every subset and query at once */
  if (J && nq && m)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)J, (int)nq, (int)m, 1.0, masks->data,
                (int)m, scores->data, (int)m, 0.0, pred, (int)nq);
  else
    memset(pred, 0, (J * nq + 1) * sizeof(double));
  for (q = 0; q < nq; q++) {
    double r;
    for (j = 0; j < J; j++) {
      col[j] = pred[j * nq + q];
      obs[j] = observed->data[j * nq + q];
    }
    if ((st = pk_spearman(col, obs, J, &r))) goto done;
    per_query[q] = r;
    if (!isnan(r)) {
      n++;
      s += r;
      ss += r * r;
    }
  }
  *defined = n;
  if (n > 0) *mean = s / (double)n;
  if (n > 1) {
    double var = (ss - s * s / (double)n) / (double)(n - 1);
    *se = sqrt(var > 0 ? var : 0) / sqrt((double)n);
  }
done:
  free(pred);
  free(col);
  free(obs);
  return st;
}

/* ---- retraining -------------------------------------------------------------------- */

typedef struct outer_progress {
  const pk_call_opts *o;
  double base, total;
} outer_progress;

static int relay(void *ud, double done, double total)
{
  outer_progress *p = ud;
  (void)total;
  return pk_progress(p->o, p->base + done, p->total);
}

pk_status pk_attribute_retrain(const pk_network *net0, const pk_matrix *X, const pk_matrix *Y,
                               const pk_train_opts *o, const pk_matrix *Xq, const pk_matrix *W,
                               const pk_call_opts *call, const char *who, pk_matrix **out)
{
  size_t J = W->rows, m = X->rows, K = PK_NET_OUT(net0), nq = Xq->rows, j, i;
  pk_network *net = NULL;
  pk_train_ws *ws = NULL;
  pk_train_opts to = *o;
  double *w = NULL;
  outer_progress op;
  pk_status st;
  *out = NULL;
  if (W->cols != m)
    return pk_fail(PK_EINVAL, "%s: the weights have %zu columns, the training set %zu rows", who,
                   W->cols, m);
  if ((st = pk_check_input(net0, Xq, "the queries Xq"))) return st;
  if ((st = pk_train_check(net0, X, Y, o))) return st;
  if ((st = pk_network_clone(&net, net0)) || (st = pk_train_ws_new(&ws, net, m, o)) ||
      (st = pk_alloc((void **)&w, m, sizeof(double), "the retraining's weights")) ||
      (st = pk_matrix_new(out, J, nq * K)))
    goto done;
  op.o = call;
  op.total = (double)J * (double)o->steps;
  to.call.progress = relay;
  to.call.progress_ud = &op;
  to.call.cancel = call ? call->cancel : NULL;
  to.on_step = NULL;
  to.weights = w;
  for (j = 0; j < J; j++) {
    pk_matrix *F = NULL;
    const double *row = W->data + j * m;
    for (i = 0; i < m; i++) w[i] = (o->weights ? o->weights[i] : 1.0) * row[i];
    memcpy(net->theta, net0->theta, net0->P * sizeof(double));
    op.base = (double)j * (double)o->steps;
    if ((st = pk_train_with_ws(net, X, Y, &to, NULL, NULL, ws))) {
      if (st == PK_ECANCEL) {
        int intr = pk_cancelled(call);
        st = pk_fail(PK_ECANCEL, "%s: %s at retraining %zu of %zu", who,
                     intr ? "interrupted" : "cancelled", j + 1, J);
      } else {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", pk_last_error());
        st = pk_fail(st, "%s: retraining %zu of %zu: %s", who, j + 1, J, msg);
      }
      goto done;
    }
    if ((st = pk_network_forward(net, Xq, &F))) goto done;
    memcpy((*out)->data + j * nq * K, F->data, nq * K * sizeof(double));
    pk_matrix_free(F);
  }
done:
  pk_network_free(net);
  pk_train_ws_free(ws);
  free(w);
  if (st) {
    pk_matrix_free(*out);
    *out = NULL;
  }
  return st;
}

/* ---- remove the top k ------------------------------------------------------------------- */

/* the indices of the k largest entries of s into idx (ties: the lower
 * index first; a NaN counts as the smallest) */
static void top_k(const double *s, size_t m, size_t k, keyed *kv, size_t *idx)
{
  size_t i;
  for (i = 0; i < m; i++) {
    kv[i].v = isnan(s[i]) ? HUGE_VAL : -s[i];
    kv[i].i = i;
  }
  qsort(kv, m, sizeof *kv, by_value);
  for (i = 0; i < k; i++) idx[i] = kv[i].i;
}

static size_t argmax_row(const double *f, size_t K)
{
  size_t k, b = 0;
  for (k = 1; k < K; k++) if (f[k] > f[b]) b = k;
  return b;
}

pk_status pk_attribute_remove_top(const pk_network *net0, const pk_matrix *X, const pk_matrix *Y,
                                  const pk_train_opts *o, const pk_matrix *Xq,
                                  const pk_matrix *scores, const size_t *qout, const size_t *ks,
                                  size_t nks, const pk_call_opts *call, pk_matrix **full,
                                  pk_matrix **change, pk_matrix **flipped)
{
  size_t m = X->rows, nq = Xq->rows, K = PK_NET_OUT(net0), q, a, i, J = nq * nks, *idx = NULL;
  pk_matrix *W = NULL, *F = NULL;
  keyed *kv = NULL;
  int classifier = o->loss != PK_LOSS_MSE;
  pk_status st;
  *full = *change = *flipped = NULL;
  if (scores->rows != nq || scores->cols != m)
    return pk_fail(PK_EINVAL, "remove_top: the scores are %zu x %zu, expected %zu x %zu (queries x "
                   "training examples)", scores->rows, scores->cols, nq, m);
  for (a = 0; a < nks; a++)
    if (ks[a] < 1 || ks[a] >= m)
      return pk_fail(PK_EINVAL, "remove_top: k = %zu must be in 1..%zu (fewer than the %zu "
                     "training examples)", ks[a], m ? m - 1 : 0, m);
  for (q = 0; q < nq; q++)
    if (qout[q] >= K) return pk_fail(PK_EINVAL, "remove_top: output %zu is outside 1..%zu", qout[q] + 1, K);
  /* one retraining per query and k, and a last one on every example */
  if ((st = pk_matrix_fill(&W, J + 1, m, 1.0)) ||
      (st = pk_alloc((void **)&idx, m, sizeof(size_t), "remove_top")) ||
      (st = pk_alloc((void **)&kv, m, sizeof(keyed), "remove_top")))
    goto done;
  for (q = 0; q < nq; q++)
    for (a = 0; a < nks; a++) {
      double *row = W->data + (q * nks + a) * m;
      top_k(scores->data + q * m, m, ks[a], kv, idx);
      for (i = 0; i < ks[a]; i++) row[idx[i]] = 0.0;
    }
  if ((st = pk_attribute_retrain(net0, X, Y, o, Xq, W, call, "remove_top", &F)) ||
      (st = pk_matrix_new(full, nq, K)) || (st = pk_matrix_new(change, nq, nks)) ||
      (st = pk_matrix_new(flipped, nq, nks)))
    goto done;
  memcpy((*full)->data, F->data + J * nq * K, nq * K * sizeof(double));
  for (q = 0; q < nq; q++)
    for (a = 0; a < nks; a++) {
      const double *f = F->data + (q * nks + a) * nq * K + q * K, *f0 = (*full)->data + q * K;
      double flip = NAN;
      (*change)->data[q * nks + a] = f[qout[q]] - f0[qout[q]];
      if (classifier)
        flip = K == 1 ? (double)((f[0] > 0) != (f0[0] > 0))
                      : (double)(argmax_row(f, K) != argmax_row(f0, K));
      (*flipped)->data[q * nks + a] = flip;
    }
done:
  pk_matrix_free(W);
  pk_matrix_free(F);
  free(idx);
  free(kv);
  if (st) {
    pk_matrix_free(*full);
    pk_matrix_free(*change);
    pk_matrix_free(*flipped);
    *full = *change = *flipped = NULL;
  }
  return st;
}
