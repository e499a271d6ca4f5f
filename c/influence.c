/* influence.c - two attribution baselines at the final weights.
 *
 * Influence functions (Koh and Liang 2017): up-weighting example i by
 * eps in the training objective (1/m) sum_i l_i moves the minimizer by
 * -(1/m) H^-1 grad l_i eps, so the first-order effect on f(x_q) is
 *   -(1/m) g(x_q)^T (H + damping I)^-1 grad l_i,  H = (1/m) sum_i hess l_i.
 * solver "exact" forms H by Hessian-vector products against the identity
 * (rop.c) and eigendecomposes it (LAPACK), refusing an H + damping I that
 * is not positive definite; "cg" solves by conjugate gradients with
 * batched Hessian-vector products and refuses a direction of non-positive
 * curvature. Either way the result is contracted with the per-example
 * gradients in their structured form.
 *
 * Representer points (Yeh et al. 2018): the last layer Theta (its W and b,
 * on the features f~ = [s_w a_{L-1}; s_b], so z = Theta f~) is fine-tuned
 * to a stationary point of (1/m) sum_i L(Theta f~_i, t_i) + lambda
 * ||Theta||^2, with the targets t_i the given network's own outputs (its
 * probabilities for softmax and logistic, its values for mse) as the
 * authors do for a pre-trained network, or the labels Y. There
 *   Theta* = sum_i alpha_i f~_i^T,  alpha_i = -(1/(2 lambda m)) dL/dz(x_i),
 * so the fine-tuned output is z(x_t) = sum_i alpha_i (f~_i . f~_t): the
 * representer value of example i for output k is alpha_ik f~_i . f~_t.
 * Newton's method with conjugate gradients and a backtracking line search
 * finds the stationary point to a tight tolerance, so the values sum to
 * the fine-tuned output to rounding. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <float.h>
#include <cblas.h>
#include "pk_attribute.h"
#include "pk_linalg.h"

void pk_influence_opts_init(pk_influence_opts *io)
{
  memset(io, 0, sizeof *io);
  io->loss = PK_LOSS_MSE;
  io->solver = PK_SOLVER_EXACT;
  io->tol = 1e-10;
}

static pk_status check_data(const pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                            const pk_matrix *Xq, pk_loss loss, const char *who)
{
  pk_status st;
  if (X->cols != PK_NET_IN(net))
    return pk_fail(PK_EINVAL, "%s: X has %zu columns, the network takes %zu inputs", who, X->cols,
                   PK_NET_IN(net));
  if (X->rows == 0) return pk_fail(PK_EINVAL, "%s: X has no rows", who);
  if (!pk_all_finite(X->data, X->rows * X->cols))
    return pk_fail(PK_EINVAL, "%s: X holds a NaN or infinite value", who);
  if ((unsigned)loss > PK_LOSS_SOFTMAX) return pk_fail(PK_EINVAL, "%s: unknown loss", who);
  if ((st = pk_loss_check(loss, Y, X->rows, PK_NET_OUT(net)))) {
    char msg[400];
    snprintf(msg, sizeof msg, "%s", pk_last_error());
    return pk_fail(st, "%s: %s", who, msg);
  }
  return pk_attr_check_queries(net, Xq, who);
}

/* ---- influence ------------------------------------------------------------------- */

static pk_status too_big_inf(double need, pk_solver solver)
{
  char a[32], b[32];
  pk_format_bytes(a, sizeof a, need);
  pk_format_bytes(b, sizeof b, (double)pk_memory_limit());
  return pk_fail(PK_ENOMEM, "influence needs %s at once, above the memory limit of %s: the query "
                 "gradients (queries x outputs x parameters), the scores and %s "
                 "(pk.set_memory_limit raises it; or %s)", a, b,
                 solver == PK_SOLVER_EXACT ? "the explicit parameters x parameters Hessian"
                                           : "the conjugate gradients' five vectors per query output",
                 solver == PK_SOLVER_EXACT ? "solver = \"cg\", which never forms the Hessian"
                                           : "ask for fewer queries at a time, or one output");
}

typedef struct inf_ctx {
  const pk_network *net;
  const pk_matrix *X, *Y;
  size_t m, P, bc, rt;
  size_t *idx;
  int cached;         /* the whole training set is one chunk: its primal is kept */
  pk_rop rop;
  double *tmp;        /* rt x P */
  const pk_call_opts *o;
} inf_ctx;

/* out (n x P) = H V for n directions (rows of V), H = (1/m) sum_i hess l_i */
static pk_status hvp_all(inf_ctx *c, const double *V, size_t n, double *out, const char *who)
{
  size_t P = c->P, b0, r0, k;
  memset(out, 0, n * P * sizeof(double));
  for (b0 = 0; b0 < c->m; b0 += c->bc) {
    size_t bn = c->m - b0 < c->bc ? c->m - b0 : c->bc;
    if (pk_cancelled(c->o)) return pk_fail(PK_ECANCEL, "%s: interrupted", who);
    if (!c->cached)
      pk_rop_primal(&c->rop, c->net->theta, c->X->data + b0 * c->X->cols, bn, c->Y, c->idx + b0,
                    NULL, 1.0 / (double)c->m);
    for (r0 = 0; r0 < n; r0 += c->rt) {
      size_t rn = n - r0 < c->rt ? n - r0 : c->rt;
      pk_rop_tile(&c->rop, V + r0 * P, P, rn, NULL, c->tmp, P);
      for (k = 0; k < rn * P; k++) out[r0 * P + k] += c->tmp[k];
    }
  }
  return PK_OK;
}

/* scores[r, i] = alpha V_r . grad l_i for every training row */
static pk_status dots_all(inf_ctx *c, const double *V, size_t n, double alpha, double *scores,
                          double *dots, const char *who)
{
  size_t P = c->P, m = c->m, b0, r0, j, i;
  for (b0 = 0; b0 < m; b0 += c->bc) {
    size_t bn = m - b0 < c->bc ? m - b0 : c->bc;
    if (pk_cancelled(c->o)) return pk_fail(PK_ECANCEL, "%s: interrupted", who);
    if (!c->cached)
      pk_rop_primal(&c->rop, c->net->theta, c->X->data + b0 * c->X->cols, bn, c->Y, c->idx + b0,
                    NULL, 1.0 / (double)m);
    for (r0 = 0; r0 < n; r0 += c->rt) {
      size_t rn = n - r0 < c->rt ? n - r0 : c->rt;
      memset(dots, 0, rn * bn * sizeof(double));
      pk_rop_tile(&c->rop, V + r0 * P, P, rn, dots, NULL, 0);
      for (j = 0; j < rn; j++)
        for (i = 0; i < bn; i++) scores[(r0 + j) * m + b0 + i] = alpha * dots[j * bn + i];
    }
  }
  return PK_OK;
}

/* G (R x P) <- (H + damping I)^-1 G by the eigendecomposition of H */
static pk_status solve_exact(inf_ctx *c, double damping, double *G, size_t R,
                             pk_influence_info *info)
{
  static const char *const who = "influence";
  size_t P = c->P, p, q, r0;
  double *H = NULL, *E = NULL, *w = NULL, *Z = NULL, top, tiny;
  pk_status st;
  char what[160];
  snprintf(what, sizeof what, "the explicit Hessian (%zu x %zu, solver = \"exact\")", P, P);
  if ((st = pk_alloc_hint((void **)&H, P * P, sizeof(double), what, "solver = \"cg\" never forms it")) ||
      (st = pk_alloc((void **)&E, c->rt * P, sizeof(double), "the Hessian's identity rows")) ||
      (st = pk_alloc((void **)&w, P, sizeof(double), "the Hessian's eigenvalues")) ||
      (st = pk_alloc((void **)&Z, R * P + 1, sizeof(double), "influence")))
    goto done;
  /* H, rt rows at a time: H e_p for the identity's rows */
  for (r0 = 0; r0 < P; r0 += c->rt) {
    size_t rn = P - r0 < c->rt ? P - r0 : c->rt, j;
    int why;
    memset(E, 0, rn * P * sizeof(double));
    for (j = 0; j < rn; j++) E[j * P + r0 + j] = 1.0;
    if ((st = hvp_all(c, E, rn, H + r0 * P, who))) goto done;
    if ((why = pk_progress(c->o, (double)(r0 + rn), (double)P))) {
      st = pk_fail(PK_ECANCEL, "influence: %s while forming the Hessian", pk_stop_word(why));
      goto done;
    }
  }
  /* exact in exact arithmetic; symmetric to rounding: take its symmetric
   * part, then add the damping */
  for (p = 0; p < P; p++) {
    for (q = p + 1; q < P; q++) H[p * P + q] = H[q * P + p] = 0.5 * (H[p * P + q] + H[q * P + p]);
    H[p * P + p] += damping;
  }
  if ((st = pk_syev(H, P, 'U', w, "influence"))) goto done;
  top = fmax(fabs(w[0]), fabs(w[P - 1]));
  info->min_eig = w[0];
  info->max_eig = w[P - 1];
  tiny = (double)P * DBL_EPSILON * (top > 0 ? top : 1.0);
  if (!(w[0] > tiny)) {
    st = pk_fail(PK_ENUMERIC, "influence: the Hessian plus damping (%g) is not positive definite: "
                 "its smallest eigenvalue is %.3g (largest %.3g)%s; influence functions assume a "
                 "minimum: pass damping above %.3g, or train closer to one", damping, w[0],
                 w[P - 1], w[0] > 0 ? ", singular to working precision" : "",
                 fabs(w[0]) + damping + tiny);
    goto done;
  }
  /* rows of H are the eigenvectors v_p: G <- ((G V) diag(1/w)) V^T */
  if (R) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)P, (int)P, 1.0, G, (int)P, H,
                (int)P, 0.0, Z, (int)P);
    for (r0 = 0; r0 < R; r0++)
      for (p = 0; p < P; p++) Z[r0 * P + p] /= w[p];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)P, (int)P, 1.0, Z, (int)P, H,
                (int)P, 0.0, G, (int)P);
  }
done:
  free(H);
  free(E);
  free(w);
  free(Z);
  return st;
}

/* G <- (H + damping I)^-1 G by conjugate gradients, every row at once */
static pk_status solve_cg(inf_ctx *c, double damping, double tol, size_t maxiter, double *G,
                          size_t R, const size_t *outputs, pk_influence_info *info)
{
  size_t P = c->P, r, p, it, nact, a;
  double *x = NULL, *res = NULL, *dir = NULL, *Ad = NULL, *pv = NULL, *rs = NULL, *bn = NULL;
  size_t *act = NULL;
  pk_status st;
  if ((st = pk_calloc((void **)&x, R * P + 1, sizeof(double), "the conjugate gradients")) ||
      (st = pk_alloc((void **)&res, R * P + 1, sizeof(double), "the conjugate gradients")) ||
      (st = pk_alloc((void **)&dir, R * P + 1, sizeof(double), "the conjugate gradients")) ||
      (st = pk_alloc((void **)&pv, R * P + 1, sizeof(double), "the conjugate gradients")) ||
      (st = pk_alloc((void **)&Ad, R * P + 1, sizeof(double), "the conjugate gradients")) ||
      (st = pk_alloc((void **)&rs, R + 1, sizeof(double), "the conjugate gradients")) ||
      (st = pk_alloc((void **)&bn, R + 1, sizeof(double), "the conjugate gradients")) ||
      (st = pk_alloc((void **)&act, R + 1, sizeof(size_t), "the conjugate gradients")))
    goto done;
  memcpy(res, G, R * P * sizeof(double));
  memcpy(dir, G, R * P * sizeof(double));
  nact = 0;
  for (r = 0; r < R; r++) {
    rs[r] = cblas_ddot((int)P, res + r * P, 1, res + r * P, 1);
    bn[r] = sqrt(rs[r]);
    if (bn[r] > 0) act[nact++] = r;
  }
  info->residual = 0;
  for (it = 0; nact > 0; it++) {
    int why;
    if (it == maxiter) {
      double worst = 0;
      for (a = 0; a < nact; a++) worst = fmax(worst, sqrt(rs[act[a]]) / bn[act[a]]);
      st = pk_fail(PK_ENUMERIC, "influence: conjugate gradients did not converge in %zu iterations "
                   "(relative residual %.3g, tol %.3g); pass a larger damping, tol or maxiter, or "
                   "solver = \"exact\" for a small network", maxiter, worst, tol);
      goto done;
    }
    /* the active directions, packed, through the Hessian */
    for (a = 0; a < nact; a++) memcpy(pv + a * P, dir + act[a] * P, P * sizeof(double));
    if ((st = hvp_all(c, pv, nact, Ad, "influence"))) goto done;
    for (a = 0; a < nact; a++) {
      double *d = dir + act[a] * P, *Ap = Ad + a * P, pap, alpha, rn;
      r = act[a];
      for (p = 0; p < P; p++) Ap[p] += damping * d[p];
      pap = cblas_ddot((int)P, d, 1, Ap, 1);
      if (!(pap > 0)) {
        st = pk_fail(PK_ENUMERIC, "influence: the Hessian plus damping (%g) is not positive "
                     "definite: conjugate gradients met a direction of curvature %.3g (query %zu, "
                     "output %zu, iteration %zu); influence functions assume a minimum: pass a "
                     "larger damping", damping, pap, r / pk_outputs_per(c->net, outputs) + 1,
                     pk_row_output(c->net, outputs, r) + 1, it + 1);
        goto done;
      }
      alpha = rs[r] / pap;
      cblas_daxpy((int)P, alpha, d, 1, x + r * P, 1);
      cblas_daxpy((int)P, -alpha, Ap, 1, res + r * P, 1);
      rn = cblas_ddot((int)P, res + r * P, 1, res + r * P, 1);
      for (p = 0; p < P; p++) d[p] = res[r * P + p] + (rn / rs[r]) * d[p];
      rs[r] = rn;
    }
    /* drop the converged rows */
    {
      size_t keep = 0;
      for (a = 0; a < nact; a++) {
        double rel = sqrt(rs[act[a]]) / bn[act[a]];
        if (rel > tol) act[keep++] = act[a];
        else info->residual = fmax(info->residual, rel);
      }
      nact = keep;
    }
    info->iterations = it + 1;
    if ((why = pk_progress(c->o, (double)(it + 1), (double)maxiter))) {
      st = pk_fail(PK_ECANCEL, "influence: %s at conjugate-gradient iteration %zu",
                   pk_stop_word(why), it + 1);
      goto done;
    }
  }
  memcpy(G, x, R * P * sizeof(double));
done:
  free(x);
  free(res);
  free(dir);
  free(pv);
  free(Ad);
  free(rs);
  free(bn);
  free(act);
  return st;
}

pk_status pk_attribute_influence(const pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                                 const pk_matrix *Xq, const pk_influence_opts *io,
                                 const size_t *outputs, const pk_call_opts *o, pk_matrix **out,
                                 pk_influence_info *info)
{
  static const char *const who = "influence";
  size_t P = net->P, m = X->rows, nq = Xq->rows, nk = pk_outputs_per(net, outputs), R, i, q0;
  double *G = NULL, *dots = NULL, d8 = sizeof(double), fixed, lim = (double)pk_memory_limit();
  size_t maxiter = io->maxiter ? io->maxiter : (2 * P > 100 ? 2 * P : 100);
  inf_ctx c;
  pk_status st;
  *out = NULL;
  memset(info, 0, sizeof *info);
  memset(&c, 0, sizeof c);
  if ((st = check_data(net, X, Y, Xq, io->loss, who))) return st;
  if (!(io->damping >= 0) || !isfinite(io->damping))
    return pk_fail(PK_EINVAL, "%s: damping must be finite and >= 0, got %g", who, io->damping);
  if (io->solver != PK_SOLVER_EXACT && io->solver != PK_SOLVER_CG)
    return pk_fail(PK_EINVAL, "%s: unknown solver", who);
  if (!(io->tol > 0 && io->tol < 1))
    return pk_fail(PK_EINVAL, "%s: tol must be in (0, 1), got %g", who, io->tol);
  if ((st = pk_outputs_check(net, nq, outputs, who))) return st;
  R = nq * nk;
  c.net = net;
  c.X = X;
  c.Y = Y;
  c.m = m;
  c.P = P;
  c.o = o;
  /* the query gradients and the scores, and cg's five R x P vectors or
   * the exact solver's P x P matrix */
  fixed = d8 * ((double)R * (double)P + (double)R * (double)m + (double)m);
  fixed += io->solver == PK_SOLVER_CG ? 5 * d8 * (double)R * (double)P
                                      : d8 * ((double)P * (double)P + (double)R * (double)P);
  if (fixed + pk_rop_bytes(net, 1, 1) + d8 * (double)P > lim) {
    st = too_big_inf(fixed + pk_rop_bytes(net, 1, 1), io->solver);
    goto done;
  }
  c.bc = m < 4096 ? m : 4096;
  while (c.bc > 1 && fixed + pk_rop_bytes(net, c.bc, 1) + d8 * ((double)P + (double)c.bc) > lim) c.bc /= 2;
  c.cached = c.bc == m;
  {
    size_t dirs = io->solver == PK_SOLVER_EXACT ? (P > R ? P : R) : R, rt = dirs ? dirs : 1;
    while (rt > 1 && pk_rop_bytes(net, c.bc, rt) + d8 * (double)rt * ((double)P * 2 + (double)c.bc) > 128 * 1048576.0)
      rt = (rt + 1) / 2;
    while (rt > 1 && fixed + pk_rop_bytes(net, c.bc, rt) + d8 * (double)rt * ((double)P * 2 + (double)c.bc) > lim)
      rt = (rt + 1) / 2;
    c.rt = rt;
  }
  if ((st = pk_alloc((void **)&c.idx, m, sizeof(size_t), "the training rows")) ||
      (st = pk_alloc((void **)&c.tmp, c.rt * P, sizeof(double), "the Hessian-vector products")) ||
      (st = pk_alloc((void **)&dots, c.rt * c.bc, sizeof(double), "the per-example products")) ||
      (st = pk_alloc((void **)&G, R * P + 1, sizeof(double), "the query gradients")) ||
      (st = pk_rop_init(&c.rop, net, io->loss, c.bc, c.rt)) ||
      (st = pk_matrix_new(out, R, m)))
    goto done;
  for (i = 0; i < m; i++) c.idx[i] = i;
  if (c.cached) pk_rop_primal(&c.rop, net->theta, X->data, m, Y, c.idx, NULL, 1.0 / (double)m);
  for (q0 = 0; q0 < nq; q0 += 256) {
    size_t qn = nq - q0 < 256 ? nq - q0 : 256;
    if ((st = pk_output_grads(net, net->theta, Xq->data + q0 * Xq->cols, qn,
                              outputs ? outputs + q0 : NULL, G + q0 * nk * P, P)))
      goto done;
  }
  st = io->solver == PK_SOLVER_EXACT ? solve_exact(&c, io->damping, G, R, info)
                                     : solve_cg(&c, io->damping, io->tol, maxiter, G, R, outputs, info);
  if (st) goto done;
  st = dots_all(&c, G, R, -1.0 / (double)m, (*out)->data, dots, who);
done:
  pk_rop_free(&c.rop);
  free(c.idx);
  free(c.tmp);
  free(dots);
  free(G);
  if (st) {
    pk_matrix_free(*out);
    *out = NULL;
  }
  return st;
}

/* ---- representer points ------------------------------------------------------------ */

typedef struct rep_ctx {
  pk_loss loss;
  size_t m, K, p;
  double lambda;
  const double *F, *T;   /* features m x p, targets m x K */
  double *Z, *E, *S;     /* m x K: outputs, dL/dz; S: the loss's curvature data (probabilities) */
} rep_ctx;

/* the outputs Z = F Theta^T and the objective; E = dL/dz */
static double rep_eval(rep_ctx *c, const double *Th)
{
  size_t m = c->m, K = c->K, i, k;
  double tot = 0, reg = 0;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)K, (int)c->p, 1.0, c->F,
              (int)c->p, Th, (int)c->p, 0.0, c->Z, (int)K);
  for (i = 0; i < m; i++) {
    const double *z = c->Z + i * K, *t = c->T + i * K;
    double *e = c->E + i * K, *s = c->S + i * K;
    switch (c->loss) {
    case PK_LOSS_LOGISTIC: {
      double p = z[0] >= 0 ? 1 / (1 + exp(-z[0])) : exp(z[0]) / (1 + exp(z[0]));
      tot += (z[0] > 0 ? z[0] : 0) + log1p(exp(-fabs(z[0]))) - t[0] * z[0];
      e[0] = p - t[0];
      s[0] = p;
      break;
    }
    case PK_LOSS_SOFTMAX: {
      double mx = z[0], sum = 0, lse;
      for (k = 1; k < K; k++) if (z[k] > mx) mx = z[k];
      for (k = 0; k < K; k++) sum += exp(z[k] - mx);
      lse = mx + log(sum);
      for (k = 0; k < K; k++) {
        s[k] = exp(z[k] - lse);
        e[k] = s[k] - t[k];
        tot += t[k] * (lse - z[k]);
      }
      break;
    }
    default:
      for (k = 0; k < K; k++) {
        e[k] = z[k] - t[k];
        tot += 0.5 * e[k] * e[k];
      }
      break;
    }
  }
  for (i = 0; i < K * c->p; i++) reg += Th[i] * Th[i];
  return tot / (double)m + c->lambda * reg;
}

/* g = (1/m) E^T F + 2 lambda Theta */
static void rep_grad(const rep_ctx *c, const double *Th, double *g)
{
  size_t i;
  for (i = 0; i < c->K * c->p; i++) g[i] = 2 * c->lambda * Th[i];
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)c->K, (int)c->p, (int)c->m,
              1.0 / (double)c->m, c->E, (int)c->K, c->F, (int)c->p, 1.0, g, (int)c->p);
}

/* out = H V at the last rep_eval: (1/m) (S_i (F V^T)_i)^T F + 2 lambda V; zv m x K scratch */
static void rep_hv(const rep_ctx *c, const double *V, double *out, double *zv)
{
  size_t m = c->m, K = c->K, i, k;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)K, (int)c->p, 1.0, c->F,
              (int)c->p, V, (int)c->p, 0.0, zv, (int)K);
  for (i = 0; i < m; i++) {
    double *z = zv + i * K;
    const double *s = c->S + i * K;
    if (c->loss == PK_LOSS_LOGISTIC) z[0] *= s[0] * (1 - s[0]);
    else if (c->loss == PK_LOSS_SOFTMAX) {
      double sz = 0;
      for (k = 0; k < K; k++) sz += s[k] * z[k];
      for (k = 0; k < K; k++) z[k] = s[k] * (z[k] - sz);
    }
  }
  for (i = 0; i < K * c->p; i++) out[i] = 2 * c->lambda * V[i];
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)c->p, (int)m, 1.0 / (double)m,
              zv, (int)K, c->F, (int)c->p, 1.0, out, (int)c->p);
}

static double max_abs(const double *v, size_t n)
{
  double a = 0;
  size_t i;
  for (i = 0; i < n; i++) a = fmax(a, fabs(v[i]));
  return a;
}

/* Newton's method on the strongly convex objective: each step solves
 * H d = -g by conjugate gradients, then backtracks until the objective
 * falls enough (Armijo); stops at a gradient at rounding level */
static pk_status rep_fit(rep_ctx *c, double *Th, double *work, pk_representer_info *info,
                         const pk_call_opts *o)
{
  size_t N = c->K * c->p, it, cg, i;
  double *g = work, *d = g + N, *r = d + N, *q = r + N, *Hq = q + N, *Tn = Hq + N, *zv = Tn + N;
  double f = rep_eval(c, Th), gm, best = HUGE_VAL;
  for (it = 0; it < 100; it++) {
    double rr, t = 1, gd, fn = f, scale;
    int why;
    rep_grad(c, Th, g);
    gm = max_abs(g, N);
    info->grad_max = gm;
    info->iterations = it;
    scale = max_abs(c->E, c->m * c->K) * max_abs(c->F, c->m * c->p) + 2 * c->lambda * max_abs(Th, N);
    if (gm <= 16 * DBL_EPSILON * (scale > 1 ? scale : 1) || (gm >= best && gm < 1e-9 * (scale > 1 ? scale : 1)))
      return PK_OK;
    best = gm < best ? gm : best;
    /* CG on H d = -g from d = 0 */
    memset(d, 0, N * sizeof(double));
    for (i = 0; i < N; i++) r[i] = q[i] = -g[i];
    rr = cblas_ddot((int)N, r, 1, r, 1);
    for (cg = 0; cg < 2 * N + 10 && sqrt(rr) > 1e-14 * gm; cg++) {
      double qHq, a, rn;
      rep_hv(c, q, Hq, zv);
      qHq = cblas_ddot((int)N, q, 1, Hq, 1);
      if (!(qHq > 0)) break;
      a = rr / qHq;
      cblas_daxpy((int)N, a, q, 1, d, 1);
      cblas_daxpy((int)N, -a, Hq, 1, r, 1);
      rn = cblas_ddot((int)N, r, 1, r, 1);
      for (i = 0; i < N; i++) q[i] = r[i] + (rn / rr) * q[i];
      rr = rn;
    }
    gd = cblas_ddot((int)N, g, 1, d, 1);
    if (!(gd < 0)) for (i = 0; i < N; i++) d[i] = -g[i];   /* never: H is positive definite */
    gd = cblas_ddot((int)N, g, 1, d, 1);
    for (; t > 1e-20; t *= 0.5) {
      for (i = 0; i < N; i++) Tn[i] = Th[i] + t * d[i];
      fn = rep_eval(c, Tn);
      if (fn <= f + 1e-4 * t * gd) break;
    }
    if (!(fn <= f)) {
      rep_eval(c, Th);     /* no descent left: at rounding level */
      return PK_OK;
    }
    memcpy(Th, Tn, N * sizeof(double));
    f = fn;
    if ((why = pk_progress(o, (double)(it + 1), 100.0)))
      return pk_fail(PK_ECANCEL, "representer: %s at Newton iteration %zu", pk_stop_word(why), it + 1);
  }
  rep_grad(c, Th, g);
  info->grad_max = max_abs(g, N);
  info->iterations = it;
  return PK_OK;
}

/* features f~ = [s_w a_{L-1}; s_b] of the rows of X (n x p), and the outputs */
static pk_status features(const pk_network *net, const pk_matrix *X, double *Fo, double *out)
{
  const pk_layer *ly = &net->layer[net->L - 1];
  size_t L = net->L, din = ly->in, K = ly->out, p = din + 1, b = 256, r0, i, j;
  pk_acts w;
  pk_status st;
  if ((st = pk_acts_init(&w, net, b, 0))) return st;
  for (r0 = 0; r0 < X->rows; r0 += b) {
    size_t n = X->rows - r0 < b ? X->rows - r0 : b;
    pk_net_forward_ws(net, net->theta, X->data + r0 * X->cols, n, &w);
    for (i = 0; i < n; i++) {
      double *f = Fo + (r0 + i) * p;
      const double *a = w.A[L - 1] + i * din;
      for (j = 0; j < din; j++) f[j] = ly->sw * a[j];
      f[din] = ly->sb;
      if (out) memcpy(out + (r0 + i) * K, w.Z[L - 1] + i * K, K * sizeof(double));
    }
  }
  pk_acts_free(&w);
  return PK_OK;
}

pk_status pk_attribute_representer(const pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                                   const pk_matrix *Xq, pk_loss loss, double lambda, int labels,
                                   const size_t *outputs, const pk_call_opts *o, pk_matrix **scores,
                                   pk_matrix **alpha, pk_matrix **fitted, pk_representer_info *info)
{
  static const char *const who = "representer";
  const pk_layer *last = &net->layer[net->L - 1];
  size_t K = last->out, p = last->in + 1, m = X->rows, nq = Xq->rows;
  size_t nk = pk_outputs_per(net, outputs);
  size_t N = K * p, i, k, x;
  double *F = NULL, *Fq = NULL, *T = NULL, *Z = NULL, *E = NULL, *S = NULL, *Th = NULL, *work = NULL;
  double *C = NULL, d8 = sizeof(double), need;
  rep_ctx c;
  pk_status st;
  *scores = *alpha = *fitted = NULL;
  memset(info, 0, sizeof *info);
  if ((st = check_data(net, X, Y, Xq, loss, who))) return st;
  /* the theorem's form z = Theta f~ is a dense last layer's */
  if (last->vt->type != PK_LAYER_DENSE)
    return pk_fail(PK_EINVAL, "%s: the last layer must be dense (it is %s)", who, last->vt->name);
  if (!(lambda > 0) || !isfinite(lambda))
    return pk_fail(PK_EINVAL, "%s: lambda must be positive and finite, got %g", who, lambda);
  if ((st = pk_outputs_check(net, nq, outputs, who))) return st;
  need = d8 * ((double)m * (double)p + (double)nq * (double)p + 5 * (double)m * (double)K +
               7 * (double)N + (double)nq * (double)m * (1.0 + (double)nk) + (double)nq * (double)K);
  if (need > (double)pk_memory_limit()) {
    st = pk_attr_too_big("representer", need, "the last layer's features of the training rows and "
                 "queries, the scores and the query-by-example feature products",
                 "ask for fewer queries at a time");
    goto done;
  }
  if ((st = pk_alloc((void **)&F, m * p, sizeof(double), "the training features")) ||
      (st = pk_alloc((void **)&Fq, nq * p + 1, sizeof(double), "the query features")) ||
      (st = pk_alloc((void **)&T, m * K, sizeof(double), "the targets")) ||
      (st = pk_alloc((void **)&Z, m * K, sizeof(double), "representer")) ||
      (st = pk_alloc((void **)&E, m * K, sizeof(double), "representer")) ||
      (st = pk_alloc((void **)&S, m * K, sizeof(double), "representer")) ||
      (st = pk_alloc((void **)&Th, N, sizeof(double), "representer")) ||
      (st = pk_alloc((void **)&work, 6 * N + m * K, sizeof(double), "representer")) ||
      (st = pk_alloc((void **)&C, nq * m + 1, sizeof(double), "representer")))
    goto done;
  if ((st = features(net, X, F, Z)) || (st = features(net, Xq, Fq, NULL))) goto done;
  /* targets: the network's own predictions (Yeh et al. on a pre-trained
   * network), or the labels */
  for (i = 0; i < m; i++) {
    double *t = T + i * K;
    const double *z = Z + i * K, *y = Y->data + i * Y->cols;
    if (labels) {
      if (loss == PK_LOSS_SOFTMAX && Y->cols == 1) {
        for (k = 0; k < K; k++) t[k] = (double)(k + 1) == y[0] ? 1.0 : 0.0;
      } else {
        for (k = 0; k < K; k++) t[k] = y[k];
      }
    } else if (loss == PK_LOSS_LOGISTIC) {
      t[0] = z[0] >= 0 ? 1 / (1 + exp(-z[0])) : exp(z[0]) / (1 + exp(z[0]));
    } else if (loss == PK_LOSS_SOFTMAX) {
      double mx = z[0], s = 0;
      for (k = 1; k < K; k++) if (z[k] > mx) mx = z[k];
      for (k = 0; k < K; k++) s += (t[k] = exp(z[k] - mx));
      for (k = 0; k < K; k++) t[k] /= s;
    } else {
      for (k = 0; k < K; k++) t[k] = z[k];
    }
  }
  /* Theta = [W_L b_L], from the network */
  {
    const double *W = net->theta + last->woff, *b = net->theta + last->boff;
    for (k = 0; k < K; k++) {
      memcpy(Th + k * p, W + k * (p - 1), (p - 1) * sizeof(double));
      Th[k * p + p - 1] = b[k];
    }
  }
  c.loss = loss;
  c.m = m;
  c.K = K;
  c.p = p;
  c.lambda = lambda;
  c.F = F;
  c.T = T;
  c.Z = Z;
  c.E = E;
  c.S = S;
  if ((st = rep_fit(&c, Th, work, info, o))) goto done;
  rep_eval(&c, Th);
  if ((st = pk_matrix_new(alpha, m, K)) || (st = pk_matrix_new(fitted, nq, K)) ||
      (st = pk_matrix_new(scores, nq * nk, m)))
    goto done;
  for (i = 0; i < m * K; i++) (*alpha)->data[i] = -E[i] / (2 * lambda * (double)m);
  if (nq) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)K, (int)p, 1.0, Fq, (int)p,
                Th, (int)p, 0.0, (*fitted)->data, (int)K);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)m, (int)p, 1.0, Fq, (int)p,
                F, (int)p, 0.0, C, (int)m);
  }
  for (x = 0; x < nq; x++)
    for (k = 0; k < nk; k++) {
      double *row = (*scores)->data + (x * nk + k) * m;
      size_t kk = outputs ? outputs[x] : k;
      for (i = 0; i < m; i++) row[i] = (*alpha)->data[i * K + kk] * C[x * m + i];
    }
done:
  free(F);
  free(Fq);
  free(T);
  free(Z);
  free(E);
  free(S);
  free(Th);
  free(work);
  free(C);
  if (st) {
    pk_matrix_free(*scores);
    pk_matrix_free(*alpha);
    pk_matrix_free(*fitted);
    *scores = *alpha = *fitted = NULL;
  }
  return st;
}
