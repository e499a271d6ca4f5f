/* attribute.c - counterfactual attribution on recorded runs: exact
 * metagradients by reverse mode through training (every optimizer),
 * TracIn-CP, and the weights' own decomposition into per-example shares
 * (DESIGN.md section 4, "Exact metagradients").
 *
 * Metagradient. With w_i example i's loss weight, each step computes
 * d_s = G_s(w_s) + wd_c w_s, G_s = sum_i c_{i,s} w_i grad l_i (c = 1/|B_s|
 * in the batch) and wd_c the coupled weight decay (0 for adamw), then the
 * optimizer's update. Reverse mode carries the adjoint of the state (w,
 * and the momentum buffer or Adam's two moments) from lambda_T = g(x_q;
 * w_T) back to step 0; at each step the adjoint of d_s, lambda_d, gives
 *   d f(x_q; w_T) / d w_i += c_{i,s} lambda_d . grad l_i(w_s)
 * and the adjoint of w_s takes lambda_d (H_s + wd_c I) by a
 * Hessian-vector product (rop.c). Adjoints of the updates, with primes
 * for step s+1's adjoints:
 *   gd, sgd:  lambda_d = -eta lambda_w'
 *   momentum (buf = mu_s buf + k_s d; w -= eta buf; mu_s, k_s = 0, 1 on
 *     the first step, else mu, 1 - dampening):
 *     l = lambda_b' - eta lambda_w';  lambda_d = k_s l;  lambda_b = mu_s l
 *   nesterov (w -= eta (d + mu buf)):
 *     l = lambda_b' - eta mu lambda_w';  lambda_d = k_s l - eta lambda_w';
 *     lambda_b = mu_s l
 *   adam, adamw (m, v the moments after the step, u = m / (sqrt(v)/s2 + eps),
 *     w' = w~ - alpha u, alpha = eta / (1 - b1^t), s2 = sqrt(1 - b2^t),
 *     P = du/dm, Q = du/dv = -m P^2 / (2 s2 sqrt(v)), 0 where v = 0):
 *     hm = lambda_m' - alpha P lambda_w';  hv = lambda_v' - alpha Q lambda_w'
 *     lambda_d = (1 - b1) hm + 2 (1 - b2) d hv;  lambda_m = b1 hm;
 *     lambda_v = b2 hv
 *   and lambda_w = c_w lambda_w' + lambda_d (H_s + wd_c I), c_w = 1 - eta wd
 *   for adamw (decoupled decay), else 1.
 * The weights w_s (and Adam's moments after each step) come from the
 * record, or from a replay of each checkpoint segment going backwards, in
 * blocks that fit the memory limit. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "pk_attribute.h"
#include "pk_decomp.h"

/* ---- shared checks ------------------------------------------------------------- */

pk_status pk_attr_check_queries(const pk_network *net, const pk_matrix *Xq, const char *who)
{
  size_t bad;
  if (Xq->cols != PK_NET_IN(net))
    return pk_fail(PK_EINVAL, "%s: the queries Xq have %zu columns, the network takes %zu inputs",
                   who, Xq->cols, PK_NET_IN(net));
  if ((bad = pk_nonfinite_row(Xq)))
    return pk_fail(PK_EINVAL, "%s: the queries Xq hold a NaN or infinite value in row %zu", who, bad);
  return PK_OK;
}

static pk_status check_traj(const pk_trajectory *t, const char *who)
{
  pk_status st;
  if (t->T == 0) return pk_fail(PK_EINVAL, "%s: the trajectory has no steps", who);
  /* a shard's batches are one rank's members only: the adjoints and shares
   * need every example of every step */
  if (t->global_rows)
    return pk_fail(PK_EINVAL, "%s: the trajectory is one rank's shard of a data-parallel run; "
                   "attribution needs the whole run (train it in one process)", who);
  if ((st = pk_trajectory_check_data(t))) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s", pk_last_error());
    return pk_fail(st, "%s: %s", who, msg);
  }
  return PK_OK;
}

/* the rows of step s into rows (room for the batch) and their count */
static size_t step_rows(const pk_trajectory *t, size_t s, size_t *rows)
{
  size_t i, nb;
  if (t->full_batch) {
    nb = t->X->rows;
    for (i = 0; i < nb; i++) rows[i] = i;
  } else {
    nb = t->boff[s + 1] - t->boff[s];
    for (i = 0; i < nb; i++) rows[i] = t->rows[t->boff[s] + i];
  }
  return nb;
}

static size_t batch_cap(const pk_trajectory *t)
{
  size_t b = t->full_batch ? t->X->rows : t->batch_size;
  return b > t->X->rows ? t->X->rows : b;
}

#define MIB ((double)((size_t)1 << 20))

/* directions per tile: the R-operator's tangents within a working set
 * near 128 MiB, and within what the limit leaves beside `fixed` */
static size_t plan_tile(const pk_network *net, size_t rows, size_t R, double fixed, double per_dir)
{
  double lim = (double)pk_memory_limit();
  size_t rt = R ? R : 1;
  while (rt > 1 && pk_rop_bytes(net, rows, rt) + (double)rt * per_dir > 128 * MIB) rt = (rt + 1) / 2;
  while (rt > 1 && fixed + pk_rop_bytes(net, rows, rt) + (double)rt * per_dir > lim) rt = (rt + 1) / 2;
  return rt;
}

pk_status pk_attr_too_big(const char *who, double need, const char *parts, const char *remedy)
{
  char a[32], b[32];
  pk_format_bytes(a, sizeof a, need);
  pk_format_bytes(b, sizeof b, (double)pk_memory_limit());
  return pk_fail(PK_ENOMEM, "%s needs %s at once, above the memory limit of %s: %s "
                 "(pk.set_memory_limit raises it; or %s)", who, a, b, parts, remedy);
}

/* ---- metagradients ----------------------------------------------------------------- */

typedef struct mg_ctx {
  const pk_trajectory *t;
  const pk_network *net;
  size_t P, m, R, rt, nstate, blk;
  int adam, mom;
  double *lamw, *lamb, *lamv;   /* adjoints: w, and the buffer or Adam's moments */
  double *ld, *hv, *dots, *d, *xb, *scores;
  double *pq;                   /* Adam: alpha P, alpha Q and 2 (1 - b2) d of a step */
  size_t *rows;
  double *Wseg, *Mseg, *Vseg;   /* a block of steps: w_s, and m, v after step s */
  pk_rop rop;
  pk_cursor cur;
  int have_cursor;
  const pk_call_opts *o;
} mg_ctx;

/* w_s for s in [b0, b1) into the block (and Adam's moments after s) */
static pk_status mg_fill(mg_ctx *c, size_t kk, size_t b0, size_t b1)
{
  const pk_trajectory *t = c->t;
  size_t P = c->P, s;
  pk_status st;
  /* every step stored, with the state after it: no replay */
  if (b1 - b0 == 1 && t->check_step[kk] == b0 &&
      (!c->adam || (t->check_step[kk + 1] == b1 && t->state_t[kk + 1] == b1))) {
    memcpy(c->Wseg, t->W + kk * P, P * sizeof(double));
    if (c->adam) {
      const double *S = t->S + (kk + 1) * t->nstate * P;
      memcpy(c->Mseg, S, P * sizeof(double));
      memcpy(c->Vseg, S + P, P * sizeof(double));
    }
    return PK_OK;
  }
  if (!c->have_cursor) {
    if ((st = pk_cursor_init(&c->cur, t))) return st;
    c->have_cursor = 1;
  }
  for (s = b0; s < b1; s++) {
    if ((st = pk_cursor_seek(&c->cur, s))) return st;
    memcpy(c->Wseg + (s - b0) * P, c->cur.theta, P * sizeof(double));
    if (c->adam) {
      memcpy(c->Mseg + (s - b0) * P, c->cur.os.a, P * sizeof(double));
      memcpy(c->Vseg + (s - b0) * P, c->cur.os.b, P * sizeof(double));
    }
  }
  return PK_OK;
}

/* the adjoint of d_s from the adjoints of step s+1, and the state's own
 * adjoints carried to step s (all but lambda_w, which needs the HVP) */
static void mg_adjoint_d(mg_ctx *c, size_t s, const double *ws, const double *m1, const double *v1)
{
  const pk_trajectory *t = c->t;
  const pk_hyper *h = &t->hyper;
  size_t P = c->P, N = c->R * P, r, p;
  double lr = t->lr[s], tstep = (double)(s + 1);
  switch (t->optimizer) {
  case PK_OPT_MOMENTUM:
  case PK_OPT_NESTEROV: {
    int first = s == 0;
    double mu_s = first ? 0.0 : h->momentum, kap = first ? 1.0 : 1.0 - h->dampening;
    double a = t->optimizer == PK_OPT_NESTEROV ? lr * h->momentum : lr;
    double e = t->optimizer == PK_OPT_NESTEROV ? lr : 0.0;
    for (p = 0; p < N; p++) {
      double l = c->lamb[p] - a * c->lamw[p];
      c->ld[p] = kap * l - e * c->lamw[p];
      c->lamb[p] = mu_s * l;
    }
    break;
  }
  case PK_OPT_ADAM:
  case PK_OPT_ADAMW: {
    double b1 = h->beta1, b2 = h->beta2;
    double alpha = lr / (1 - pow(b1, tstep)), s2 = sqrt(1 - pow(b2, tstep));
    /* alpha P and alpha Q once per step, then every adjoint row in order */
    double *aP = c->pq, *aQ = c->pq + P, *d2 = c->pq + 2 * P;
    for (p = 0; p < P; p++) {
      double sv = sqrt(v1[p]), Pp = 1.0 / (sv / s2 + h->eps);
      aP[p] = alpha * Pp;
      aQ[p] = v1[p] > 0 ? -alpha * m1[p] * Pp * Pp / (2.0 * s2 * sv) : 0.0;
      d2[p] = 2 * (1 - b2) * c->d[p];
    }
    for (r = 0; r < c->R; r++) {
      double *lw = c->lamw + r * P, *lb = c->lamb + r * P, *lv = c->lamv + r * P, *ld = c->ld + r * P;
      for (p = 0; p < P; p++) {
        double hm = lb[p] - aP[p] * lw[p], hh = lv[p] - aQ[p] * lw[p];
        ld[p] = (1 - b1) * hm + d2[p] * hh;
        lb[p] = b1 * hm;
        lv[p] = b2 * hh;
      }
    }
    break;
  }
  default:
    for (p = 0; p < N; p++) c->ld[p] = -lr * c->lamw[p];
    break;
  }
  (void)ws;
}

static pk_status mg_step(mg_ctx *c, size_t s, const double *ws, const double *m1, const double *v1)
{
  const pk_trajectory *t = c->t;
  const pk_network *net = c->net;
  size_t P = c->P, m = c->m, nb, r0, j, i, p;
  double wd = t->hyper.weight_decay, lr = t->lr[s];
  double wdc = t->optimizer == PK_OPT_ADAMW ? 0.0 : wd;
  double cwm = t->optimizer == PK_OPT_ADAMW ? 1.0 - lr * wd : 1.0;
  nb = step_rows(t, s, c->rows);
  pk_gather_rows(t->X, c->rows, nb, c->xb);
  pk_rop_primal(&c->rop, ws, c->xb, nb, t->Y, c->rows, t->lw, 1.0 / (double)nb);
  if (c->adam) {
    pk_rop_grad(&c->rop, c->d);
    if (wdc > 0) for (p = 0; p < P; p++) c->d[p] += wdc * ws[p];
  }
  mg_adjoint_d(c, s, ws, m1, v1);
  for (r0 = 0; r0 < c->R; r0 += c->rt) {
    size_t rn = c->R - r0 < c->rt ? c->R - r0 : c->rt;
    if (pk_cancelled(c->o))
      return pk_fail(PK_ECANCEL, "metagradient: interrupted at step %zu of %zu (going backwards)",
                     s + 1, t->T);
    memset(c->dots, 0, rn * nb * sizeof(double));
    pk_rop_tile(&c->rop, c->ld + r0 * P, P, rn, c->dots, c->hv, P);
    for (j = 0; j < rn; j++) {
      double *sc = c->scores + (r0 + j) * m, *lw = c->lamw + (r0 + j) * P;
      const double *dj = c->dots + j * nb, *hj = c->hv + j * P, *dd = c->ld + (r0 + j) * P;
      for (i = 0; i < nb; i++) sc[c->rows[i]] += dj[i] / (double)nb;
      for (p = 0; p < P; p++) lw[p] = cwm * lw[p] + hj[p] + wdc * dd[p];
    }
  }
  (void)net;
  return PK_OK;
}

static void mg_free(mg_ctx *c)
{
  free(c->lamw);
  free(c->lamb);
  free(c->lamv);
  free(c->ld);
  free(c->hv);
  free(c->dots);
  free(c->d);
  free(c->pq);
  free(c->xb);
  free(c->rows);
  free(c->Wseg);
  free(c->Mseg);
  free(c->Vseg);
  pk_rop_free(&c->rop);
  if (c->have_cursor) pk_cursor_free(&c->cur);
}

pk_status pk_attribute_metagradient(const pk_trajectory *t, const pk_matrix *Xq,
                                    const size_t *outputs, const pk_call_opts *o, pk_matrix **out)
{
  static const char *const who = "metagradient";
  const pk_network *net = t->net;
  size_t P = net->P, m, nq = Xq->rows, nk = pk_outputs_per(net, outputs), b, nadj, kk, taken = 0;
  double fixed, seg, lim = (double)pk_memory_limit(), d8 = sizeof(double);
  mg_ctx c;
  pk_status st;
  *out = NULL;
  memset(&c, 0, sizeof c);
  if ((st = check_traj(t, who)) || (st = pk_attr_check_queries(net, Xq, who)) ||
      (st = pk_outputs_check(net, nq, outputs, who)))
    return st;
  m = t->X->rows;
  b = batch_cap(t);
  c.t = t;
  c.net = net;
  c.P = P;
  c.m = m;
  c.o = o;
  c.R = nq * nk;
  c.adam = t->optimizer == PK_OPT_ADAM || t->optimizer == PK_OPT_ADAMW;
  c.mom = t->optimizer == PK_OPT_MOMENTUM || t->optimizer == PK_OPT_NESTEROV;
  nadj = 1 + (c.mom ? 1 : 0) + (c.adam ? 2 : 0);
  /* the adjoints and lambda_d (R x P each), the scores, Adam's d, the
   * batch, and the replay of a block of steps; then the tile */
  fixed = d8 * ((double)c.R * (double)P * (double)(nadj + 1) + (double)c.R * (double)m +
                4.0 * (double)P + (double)b * (double)Xq->cols) + (double)b * sizeof(size_t);
  seg = d8 * (double)P * (c.adam ? 3.0 : 1.0);
  if (t->every > 1 || c.adam) fixed += pk_cursor_bytes(t);
  if (fixed + seg + pk_rop_bytes(net, b, 1) + d8 * ((double)P + (double)b) > lim) {
    st = pk_attr_too_big("metagradient", fixed + seg + pk_rop_bytes(net, b, 1), "the adjoints of every "
                 "query output (queries x outputs x parameters, one to four of them by optimizer), "
                 "the scores, a batch's second-order workspace",
                 "ask for fewer queries at a time, or one output");
    goto done;
  }
  c.rt = plan_tile(net, b, c.R, fixed + seg, d8 * ((double)P + (double)b));
  fixed += pk_rop_bytes(net, b, c.rt) + d8 * (double)c.rt * ((double)P + (double)b);
  {
    double room = lim - fixed, cap = 256 * MIB;
    double n = (room < cap ? room : cap) / seg;
    c.blk = n < 1 ? 1 : n > (double)t->every ? t->every : (size_t)n;
  }
  if ((st = pk_matrix_zeros(out, c.R, m)) ||
      (st = pk_alloc((void **)&c.lamw, c.R * P, sizeof(double), "the metagradient's adjoints")) ||
      (st = pk_alloc((void **)&c.ld, c.R * P, sizeof(double), "the metagradient's adjoints")) ||
      (c.mom && (st = pk_calloc((void **)&c.lamb, c.R * P, sizeof(double), "the metagradient's adjoints"))) ||
      (c.adam && ((st = pk_calloc((void **)&c.lamb, c.R * P, sizeof(double), "the metagradient's adjoints")) ||
                  (st = pk_calloc((void **)&c.lamv, c.R * P, sizeof(double), "the metagradient's adjoints")) ||
                  (st = pk_alloc((void **)&c.pq, 3 * P, sizeof(double), "the metagradient")) ||
                  (st = pk_alloc((void **)&c.Mseg, c.blk * P, sizeof(double), "the replayed moments")) ||
                  (st = pk_alloc((void **)&c.Vseg, c.blk * P, sizeof(double), "the replayed moments")))) ||
      (st = pk_alloc((void **)&c.hv, c.rt * P, sizeof(double), "the Hessian-vector products")) ||
      (st = pk_alloc((void **)&c.dots, c.rt * b, sizeof(double), "the per-example products")) ||
      (st = pk_alloc((void **)&c.d, P, sizeof(double), "the metagradient")) ||
      (st = pk_alloc((void **)&c.xb, b * Xq->cols + 1, sizeof(double), "the batch")) ||
      (st = pk_alloc((void **)&c.rows, b, sizeof(size_t), "the batch")) ||
      (st = pk_alloc((void **)&c.Wseg, c.blk * P, sizeof(double), "the replayed weights")) ||
      (st = pk_rop_init(&c.rop, net, t->lossfn, b, c.rt)))
    goto done;
  c.scores = (*out)->data;
  /* lambda_T: the queries' output gradients at w_T */
  {
    size_t q0, qt = 256;
    for (q0 = 0; q0 < nq; q0 += qt) {
      size_t qn = nq - q0 < qt ? nq - q0 : qt;
      if ((st = pk_output_grads(net, t->W + (t->ncheck - 1) * P, Xq->data + q0 * Xq->cols, qn,
                                outputs ? outputs + q0 : NULL, c.lamw + q0 * nk * P, P)))
        goto done;
    }
  }
  /* backwards: checkpoint segments from the last, each in blocks from its end */
  for (kk = t->ncheck - 1; kk-- > 0;) {
    size_t s0 = t->check_step[kk], b1 = t->check_step[kk + 1];
    while (b1 > s0) {
      size_t b0 = b1 - s0 > c.blk ? b1 - c.blk : s0, s;
      if ((st = mg_fill(&c, kk, b0, b1))) goto done;
      for (s = b1; s-- > b0;) {
        size_t j = s - b0;
        int why;
        if ((st = mg_step(&c, s, c.Wseg + j * P, c.adam ? c.Mseg + j * P : NULL,
                          c.adam ? c.Vseg + j * P : NULL)))
          goto done;
        taken++;
        if ((why = pk_progress(o, (double)taken, (double)t->T))) {
          st = pk_fail(PK_ECANCEL, "metagradient: %s at step %zu of %zu (going backwards)",
                       pk_stop_word(why), s + 1, t->T);
          goto done;
        }
      }
      b1 = b0;
    }
  }
done:
  mg_free(&c);
  if (st) {
    pk_matrix_free(*out);
    *out = NULL;
  }
  return st;
}

/* ---- TracIn-CP ------------------------------------------------------------------------ */

/* -(1/m) sum over checkpoints s = 0, every, ... < T of n_s eta_s
 * g(x_q; w_s) . grad l_i(w_s), n_s the steps the checkpoint stands for:
 * with every = 1 and gd, the left rule's contributions (unit weights). */
pk_status pk_attribute_tracin(const pk_trajectory *t, const pk_matrix *Xq, size_t every,
                              const size_t *outputs, const pk_call_opts *o, pk_matrix **out)
{
  static const char *const who = "tracin";
  const pk_network *net = t->net;
  size_t P = net->P, m, nq = Xq->rows, nk = pk_outputs_per(net, outputs), R, rt, bc, s, nck, ick = 0;
  size_t *idx = NULL;
  double *lam = NULL, *dots = NULL, *ws = NULL, d8 = sizeof(double), fixed;
  pk_rop rop;
  pk_cursor cur;
  int have_cur = 0;
  pk_status st;
  *out = NULL;
  memset(&rop, 0, sizeof rop);
  if (every == 0) return pk_fail(PK_EINVAL, "%s: every must be >= 1", who);
  if ((st = check_traj(t, who)) || (st = pk_attr_check_queries(net, Xq, who)) ||
      (st = pk_outputs_check(net, nq, outputs, who)))
    return st;
  m = t->X->rows;
  R = nq * nk;
  bc = m < 1024 ? m : 1024;
  nck = (t->T + every - 1) / every;
  fixed = d8 * ((double)R * (double)P + (double)R * (double)m + (double)P);
  if (fixed + pk_rop_bytes(net, 1, 1) + d8 > (double)pk_memory_limit()) {
    st = pk_attr_too_big("tracin", fixed + pk_rop_bytes(net, 1, 1), "the query gradients (queries x "
                 "outputs x parameters) and the scores", "ask for fewer queries at a time");
    goto done;
  }
  while (bc > 1 && fixed + pk_rop_bytes(net, bc, 1) + d8 * (double)bc > (double)pk_memory_limit()) bc /= 2;
  rt = plan_tile(net, bc, R, fixed, d8 * (double)bc);
  if ((st = pk_matrix_zeros(out, R, m)) ||
      (st = pk_alloc((void **)&lam, R * P, sizeof(double), "the query gradients")) ||
      (st = pk_alloc((void **)&dots, rt * bc, sizeof(double), "the per-example products")) ||
      (st = pk_alloc((void **)&ws, P, sizeof(double), "the weights")) ||
      (st = pk_alloc((void **)&idx, m, sizeof(size_t), "the training rows")) ||
      (st = pk_rop_init(&rop, net, t->lossfn, bc, rt)))
    goto done;
  for (s = 0; s < m; s++) idx[s] = s;
  if ((st = pk_cursor_init_weights(&cur, t))) goto done;
  have_cur = 1;
  for (s = 0; s < t->T; s += every, ick++) {
    size_t ns = t->T - s < every ? t->T - s : every, b0, r0, j, i, q0;
    double coef = -(double)ns * t->lr[s] / (double)m;
    int why;
    if ((st = pk_cursor_seek(&cur, s))) goto done;
    memcpy(ws, cur.theta, P * sizeof(double));
    for (q0 = 0; q0 < nq; q0 += 256) {
      size_t qn = nq - q0 < 256 ? nq - q0 : 256;
      if ((st = pk_output_grads(net, ws, Xq->data + q0 * Xq->cols, qn, outputs ? outputs + q0 : NULL,
                                lam + q0 * nk * P, P)))
        goto done;
    }
    for (b0 = 0; b0 < m; b0 += bc) {
      size_t bn = m - b0 < bc ? m - b0 : bc;
      if (pk_cancelled(o)) {
        st = pk_fail(PK_ECANCEL, "tracin: interrupted at checkpoint %zu of %zu", ick + 1, nck);
        goto done;
      }
      pk_rop_primal(&rop, ws, t->X->data + b0 * t->X->cols, bn, t->Y, idx + b0, NULL, 1.0);
      for (r0 = 0; r0 < R; r0 += rt) {
        size_t rn = R - r0 < rt ? R - r0 : rt;
        memset(dots, 0, rn * bn * sizeof(double));
        pk_rop_tile(&rop, lam + r0 * P, P, rn, dots, NULL, 0);
        for (j = 0; j < rn; j++) {
          double *sc = (*out)->data + (r0 + j) * m + b0;
          for (i = 0; i < bn; i++) sc[i] += coef * dots[j * bn + i];
        }
      }
    }
    if ((why = pk_progress(o, (double)(ick + 1), (double)nck))) {
      st = pk_fail(PK_ECANCEL, "tracin: %s at checkpoint %zu of %zu", pk_stop_word(why), ick + 1, nck);
      goto done;
    }
  }
done:
  if (have_cur) pk_cursor_free(&cur);
  pk_rop_free(&rop);
  free(lam);
  free(dots);
  free(ws);
  free(idx);
  if (st) {
    pk_matrix_free(*out);
    *out = NULL;
  }
  return st;
}

/* ---- the weights as a superposition of the training examples ---------------------- */

/* out[p - p0] += scale * (example i's gradient)[p] for p in [p0, p1), from
 * the batch's layer inputs A and (weighted) sensitivities G, row i, by
 * the layers' gradient rows into row (P values of scratch) */
static void grad_slice(const pk_network *net, double *const *A, double *const *G, size_t i,
                       size_t p0, size_t p1, double scale, double *out, double *row)
{
  size_t l, p;
  memset(row + p0, 0, (p1 - p0) * sizeof(double));
  for (l = 0; l < net->L; l++) {
    const pk_layer *ly = &net->layer[l];
    pk_side sd;
    if (ly->nw + ly->nb == 0 || ly->boff + ly->nb <= p0 || ly->woff >= p1) continue;
    pk_net_side(&sd, net, l, A, G, NULL, i, 1, 1, 0);
    ly->vt->grad_rows(ly, &sd, 1.0, row, net->P);
  }
  for (p = p0; p < p1; p++) out[p - p0] += scale * row[p];
}

/* Row i of *shares (m x (p1 - p0)) is example i's exact share of w_T - w_0
 * over the parameters [p0, p1), *decay (1 x (p1 - p0)) the weight decay's,
 * so that the rows and decay sum to w_T - w_0. Each step's update is split
 * as the decomposition splits it (DESIGN.md section 4): gd and sgd by
 * -eta c_i w_i grad l_i; momentum and Adam through per-example traces of
 * their buffers, Adam's preconditioner applied at each step. */
pk_status pk_attribute_weights(const pk_trajectory *t, size_t layer, const pk_call_opts *o,
                               pk_matrix **shares, pk_matrix **decay)
{
  static const char *const who = "weights";
  const pk_network *net = t->net;
  const pk_hyper *h = &t->hyper;
  size_t P = net->P, m, p0 = 0, p1 = P, n, s, i, p;
  int stateful = pk_opt_state_vectors(t->optimizer) > 0;
  double *tr = NULL, *rtr = NULL, *row = NULL, *S, *dec, wd = h->weight_decay, need;
  pk_cursor c;
  pk_status st;
  *shares = *decay = NULL;
  if ((st = check_traj(t, who))) return st;
  if (layer != SIZE_MAX) {
    if (layer >= net->L)
      return pk_fail(PK_EINVAL, "%s: layer %zu is outside 1..%zu", who, layer + 1, net->L);
    const pk_layer *ly = &net->layer[layer];
    if (ly->nw + ly->nb == 0)
      return pk_fail(PK_EINVAL, "%s: layer %zu has no parameters", who, layer + 1);
    /* W then b, one run of theta */
    p0 = ly->woff;
    p1 = ly->boff + ly->nb;
  }
  m = t->X->rows;
  n = p1 - p0;
  need = (double)sizeof(double) * (double)m * (double)n * (stateful ? 2.0 : 1.0) + pk_cursor_bytes(t);
  if (need > (double)pk_memory_limit())
    return pk_attr_too_big("weights", need, stateful ? "the shares (examples x parameters) and the "
                   "per-example optimizer traces beside them" : "the shares (examples x parameters)",
                   "ask for one layer, { layer = l }");
  if ((st = pk_matrix_zeros(shares, m, n)) || (st = pk_matrix_zeros(decay, 1, n)) ||
      (st = pk_alloc((void **)&row, P, sizeof(double), "an example's gradient")))
    goto fail;
  if (stateful &&
      ((st = pk_calloc_hint((void **)&tr, m * n, sizeof(double), "the per-example optimizer traces",
                            "ask for one layer, { layer = l }")) ||
       (st = pk_calloc((void **)&rtr, n, sizeof(double), "the weight decay's trace"))))
    goto fail;
  if ((st = pk_cursor_init(&c, t))) goto fail;
  S = (*shares)->data;
  dec = (*decay)->data;
  for (s = 0; s < t->T; s++) {
    const double *th;
    double lr, inv;
    int why;
    if ((st = pk_cursor_seek(&c, s))) break;
    th = c.theta + p0;
    lr = c.lr;
    inv = 1.0 / (double)c.nb;
    switch (t->optimizer) {
    case PK_OPT_GD:
    case PK_OPT_SGD:
      for (i = 0; i < c.nb; i++) grad_slice(net, c.w.A, c.w.G, i, p0, p1, -lr * inv, S + c.rows[i] * n, row);
      for (p = 0; p < n; p++) dec[p] += -lr * wd * th[p];
      break;
    case PK_OPT_MOMENTUM:
    case PK_OPT_NESTEROV: {
      int first = c.os.t == 1, nest = t->optimizer == PK_OPT_NESTEROV;
      double mu_s = first ? 0.0 : h->momentum, keep = first ? 1.0 : 1.0 - h->dampening, mu = h->momentum;
      if (mu_s != 1.0) for (p = 0; p < m * n; p++) tr[p] *= mu_s;
      for (i = 0; i < c.nb; i++) grad_slice(net, c.w.A, c.w.G, i, p0, p1, keep * inv, tr + c.rows[i] * n, row);
      for (p = 0; p < n; p++) rtr[p] = mu_s * rtr[p] + keep * wd * th[p];
      /* momentum: D = -lr buf; nesterov: D = -lr (d + mu buf) */
      for (p = 0; p < m * n; p++) S[p] += -lr * (nest ? mu : 1.0) * tr[p];
      if (nest)
        for (i = 0; i < c.nb; i++) grad_slice(net, c.w.A, c.w.G, i, p0, p1, -lr * inv, S + c.rows[i] * n, row);
      for (p = 0; p < n; p++) dec[p] += nest ? -lr * (wd * th[p] + mu * rtr[p]) : -lr * rtr[p];
      break;
    }
    default: {   /* adam, adamw: D = -alpha P m (+ adamw's -lr wd w) */
      double b1 = h->beta1, tt = (double)c.os.t;
      double alpha = lr / (1 - pow(b1, tt)), s2 = sqrt(1 - pow(h->beta2, tt));
      const double *v = c.os.b + p0;
      int adamw = t->optimizer == PK_OPT_ADAMW;
      for (p = 0; p < m * n; p++) tr[p] *= b1;
      for (i = 0; i < c.nb; i++) grad_slice(net, c.w.A, c.w.G, i, p0, p1, (1 - b1) * inv, tr + c.rows[i] * n, row);
      if (!adamw) for (p = 0; p < n; p++) rtr[p] = b1 * rtr[p] + (1 - b1) * wd * th[p];
      for (i = 0; i < m; i++) {
        double *Si = S + i * n;
        const double *ti = tr + i * n;
        for (p = 0; p < n; p++) Si[p] -= alpha / (sqrt(v[p]) / s2 + h->eps) * ti[p];
      }
      for (p = 0; p < n; p++)
        dec[p] += adamw ? -lr * wd * th[p] : -alpha / (sqrt(v[p]) / s2 + h->eps) * rtr[p];
      break;
    }
    }
    if ((why = pk_progress(o, (double)(s + 1), (double)t->T))) {
      st = pk_fail(PK_ECANCEL, "weights: %s at step %zu of %zu", pk_stop_word(why), s + 1, t->T);
      break;
    }
  }
  pk_cursor_free(&c);
  if (st) goto fail;
  free(tr);
  free(rtr);
  free(row);
  return PK_OK;
fail:
  free(tr);
  free(rtr);
  free(row);
  pk_matrix_free(*shares);
  pk_matrix_free(*decay);
  *shares = *decay = NULL;
  return st;
}
