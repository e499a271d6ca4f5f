/* pathkernel.c - the path kernel of a recorded run: the tangent kernel
 * integrated along the path, Kp(x, x') = sum_s eta_s sum_q w_q
 * Kg_{w_s + t_q D_s}(x, x') (left rule: t = 0), each term the structured,
 * tiled tangent Gram. Symmetric and positive semidefinite by construction. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cblas.h>
#include "pk_kern.h"
#include "pk_traj.h"
#include "pk_decomp.h"

typedef struct path_state {
  const pk_trajectory *t;   /* a reference held */
  pk_rule rule;
  int nodes;
  double tq[PK_MAX_NODES], wq[PK_MAX_NODES];
} path_state;

static pk_status path_run(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                          const pk_call_opts *o, pk_matrix *out, int diag)
{
  const path_state *ps = k->state;
  const pk_trajectory *t = ps->t;
  size_t P = t->net->P, s, i;
  pk_cursor c;
  double *theta = NULL;
  pk_status st;
  int why;
  /* each step's Grams check the cancel flag inside; progress counts steps */
  pk_call_opts inner = { NULL, NULL, NULL };
  pk_tangent_ws *ws = pk_tangent_ws_new();
  if (!ws) return pk_fail(PK_ENOMEM, "path kernel: out of memory");
  if ((st = pk_cursor_init_weights(&c, t))) { pk_tangent_ws_free(ws); return st; }
  if ((st = pk_alloc((void **)&theta, P, sizeof(double), "the path kernel"))) goto done;
  memset(out->data, 0, out->rows * out->cols * sizeof(double));
  inner.cancel = o ? o->cancel : NULL;
  for (s = 0; s < t->T; s++) {
    int q;
    if (pk_cancelled(o)) {
      st = pk_fail(PK_ECANCEL, "path kernel: interrupted at step %zu", s + 1);
      goto done;
    }
    if ((st = pk_cursor_seek(&c, s))) goto done;
    for (q = 0; q < ps->nodes; q++) {
      double a = c.lr * ps->wq[q];
      for (i = 0; i < P; i++) theta[i] = c.theta[i] + ps->tq[q] * (c.next[i] - c.theta[i]);
      if (diag)
        st = pk_tangent_diag_accumulate(t->net, theta, X1, k->mode, k->memory, a, &inner, out);
      else
        st = pk_tangent_accumulate(t->net, theta, X1, X2, k->mode, k->memory, a, &inner, ws, out);
      if (st == PK_ECANCEL) st = pk_fail(PK_ECANCEL, "path kernel: interrupted at step %zu", s + 1);
      if (st) goto done;
    }
    if ((why = pk_progress(o, (double)(s + 1), (double)t->T))) {
      st = pk_fail(PK_ECANCEL, "path kernel: %s at step %zu", pk_stop_word(why), s + 1);
      goto done;
    }
  }
  if (!diag && pk_tangent_symmetric(X1, X2, k->mode)) pk_tangent_mirror(out);
done:
  pk_tangent_ws_free(ws);
  pk_cursor_free(&c);
  free(theta);
  return st;
}

static pk_status path_gram(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                           const pk_call_opts *o, pk_matrix *out)
{
  return path_run(k, X1, X2, o, out, 0);
}

static pk_status path_diag(const pk_kernel *k, const pk_matrix *X, const pk_call_opts *o,
                           pk_matrix *out)
{
  return path_run(k, X, X, o, out, 1);
}

static void path_destroy(pk_kernel *k)
{
  path_state *ps = k->state;
  if (ps) pk_trajectory_free((pk_trajectory *)ps->t);
  free(ps);
}

static const pk_kernel_vt path_vt = { "path", path_gram, path_diag, path_destroy };

pk_status pk_kernel_path(pk_kernel **out, const pk_trajectory *t, pk_rule rule, int nodes)
{
  path_state *ps;
  pk_status st;
  *out = NULL;
  if (t->T == 0) return pk_fail(PK_EINVAL, "path kernel: the trajectory has no steps");
  ps = calloc(1, sizeof *ps);
  if (!ps) return pk_fail(PK_ENOMEM, "path kernel: out of memory");
  if ((st = pk_quadrature(rule, nodes, ps->tq, ps->wq))) { free(ps); return st; }
  ps->t = t;
  ps->rule = rule;
  ps->nodes = nodes;
  if ((st = pk_kernel_new(out, &path_vt, ps))) { free(ps); return st; }
  pk_trajectory_retain(t);
  (*out)->input_dim = PK_NET_IN(t->net);
  (*out)->nout = PK_NET_OUT(t->net);
  return PK_OK;
}

/* ---- the kernel Adam induces at one step ---------------------------------- */

/* K_s(x, x') = g(x; w_s)^T P_s g(x'; w_s) with P_s = (lr_s / (1 - beta1^t))
 * / (sqrt(v_t) / sqrt(1 - beta2^t) + eps), the diagonal preconditioner of
 * update s + 1. The diagonal breaks the per-layer rank-one structure, so
 * this one uses explicit Jacobians, tiled by rows. */
typedef struct precond_state {
  pk_network *net;     /* at w_s */
  double *p;           /* P_s, P entries */
} precond_state;

static pk_status precond_gram(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                              const pk_call_opts *o, pk_matrix *out)
{
  const precond_state *ps = k->state;
  const pk_network *net = ps->net;
  size_t P = net->P, K = PK_NET_OUT(net), per, t, r0, c0, i, p;
  size_t ldo = out->cols;
  int why;
  pk_status st = PK_OK;
  size_t mem = k->memory < pk_memory_limit() ? k->memory : pk_memory_limit();
  /* a tile of t rows a side: two t K x P Jacobians and their t K x t K product */
  per = 2 * P * K * sizeof(double);
  if (mem < per + K * K * sizeof(double))
    return pk_fail(PK_ENOMEM, "preconditioned kernel: %s = %zu bytes is too small; one row of each "
                   "side needs %zu", mem < k->memory ? "the memory limit" : "memory", mem,
                   per + K * K * sizeof(double));
  /* then t K x t K doubles of their product must fit beside them */
  t = mem / per;
  while (t > 1 && (mem - t * per) / sizeof(double) / (t * K) < t * K) t -= t / 4 ? t / 4 : 1;
  for (r0 = 0; r0 < X1->rows; r0 += t) {
    size_t n1 = X1->rows - r0 < t ? X1->rows - r0 : t;
    pk_matrix *v1, *J1 = NULL;
    if ((st = pk_matrix_view_rows(&v1, (pk_matrix *)X1, r0, r0 + n1))) return st;
    st = pk_network_jacobian(net, v1, &J1);
    pk_matrix_free(v1);
    if (st) return st;
    for (i = 0; i < n1 * K; i++)
      for (p = 0; p < P; p++) J1->data[i * P + p] *= ps->p[p];
    for (c0 = 0; c0 < X2->rows; c0 += t) {
      size_t n2 = X2->rows - c0 < t ? X2->rows - c0 : t, a, b;
      pk_matrix *v2, *J2 = NULL, *G = NULL;
      if ((st = pk_matrix_view_rows(&v2, (pk_matrix *)X2, c0, c0 + n2))) break;
      st = pk_network_jacobian(net, v2, &J2);
      pk_matrix_free(v2);
      if (st) break;
      st = pk_matrix_alloc(&G, n1 * K, n2 * K, "the preconditioned kernel's tile");
      if (!st) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(n1 * K), (int)(n2 * K), (int)P,
                    1.0, J1->data, (int)P, J2->data, (int)P, 0.0, G->data, (int)(n2 * K));
        /* lay the K x K blocks out in the kernel's output mode */
        for (a = 0; a < n1 * K; a++)
          for (b = 0; b < n2 * K; b++) {
            size_t i1 = a / K, k1 = a % K, i2 = b / K, k2 = b % K;
            double v = G->data[a * n2 * K + b];
            if (k->mode == PK_OUTPUTS_BLOCK) out->data[(r0 * K + a) * ldo + c0 * K + b] = v;
            else if (k1 == k2) {
              if (k->mode == PK_OUTPUTS_TRACE) {
                if (k1 == 0) out->data[(r0 + i1) * ldo + c0 + i2] = 0;
                out->data[(r0 + i1) * ldo + c0 + i2] += v;
              } else {
                out->data[((r0 + i1) * K + k1) * ldo + c0 + i2] = v;
              }
            }
          }
      }
      pk_matrix_free(G);
      pk_matrix_free(J2);
      if (!st && pk_cancelled(o)) st = pk_fail(PK_ECANCEL, "preconditioned kernel: interrupted");
      if (st) break;
    }
    pk_matrix_free(J1);
    if (st) return st;
    if ((why = pk_progress(o, (double)(r0 + n1), (double)X1->rows)))
      return pk_fail(PK_ECANCEL, "preconditioned kernel: %s", pk_stop_word(why));
  }
  return st;
}

static pk_status precond_diag(const pk_kernel *k, const pk_matrix *X, const pk_call_opts *o,
                              pk_matrix *out)
{
  size_t i, K = k->nout;
  int why;
  pk_status st = PK_OK;
  for (i = 0; i < X->rows && !st; i++) {
    pk_matrix *row, *G;
    size_t a;
    if ((st = pk_matrix_view_rows(&row, (pk_matrix *)X, i, i + 1))) break;
    if (!(st = pk_kernel_gram(k, row, row, NULL, &G))) {
      if (k->mode == PK_OUTPUTS_BLOCK)
        for (a = 0; a < K; a++) out->data[i * K + a] = G->data[a * K + a];
      else if (k->mode == PK_OUTPUTS_TRACE) out->data[i] = G->data[0];
      else for (a = 0; a < K; a++) out->data[i * K + a] = G->data[a];
      pk_matrix_free(G);
    }
    pk_matrix_free(row);
    if (!st && (why = pk_progress(o, (double)(i + 1), (double)X->rows)))
      st = pk_fail(PK_ECANCEL, "preconditioned kernel: %s", pk_stop_word(why));
  }
  return st;
}

static void precond_destroy(pk_kernel *k)
{
  precond_state *ps = k->state;
  if (!ps) return;
  pk_network_free(ps->net);
  free(ps->p);
  free(ps);
}

static const pk_kernel_vt precond_vt = { "preconditioned", precond_gram, precond_diag, precond_destroy };

pk_status pk_kernel_preconditioned(pk_kernel **out, const pk_trajectory *t, size_t s)
{
  precond_state *ps;
  pk_cursor c;
  pk_status st;
  size_t p, P = t->net->P;
  *out = NULL;
  if (t->optimizer != PK_OPT_ADAM && t->optimizer != PK_OPT_ADAMW)
    return pk_fail(PK_EINVAL, "preconditioned kernel: the run used %s, which has no preconditioner "
                   "(adam and adamw do)", pk_optimizer_name(t->optimizer));
  if (s >= t->T)
    return pk_fail(PK_EINVAL, "preconditioned kernel: step %zu out of range 0..%zu", s, t->T ? t->T - 1 : 0);
  ps = calloc(1, sizeof *ps);
  if (!ps) return pk_fail(PK_ENOMEM, "preconditioned kernel: out of memory");
  if ((st = pk_cursor_init(&c, t))) { free(ps); return st; }
  if ((st = pk_cursor_seek(&c, s)) || (st = pk_network_clone(&ps->net, t->net)) ||
      (st = pk_alloc((void **)&ps->p, P, sizeof(double), "the preconditioner"))) {
    pk_cursor_free(&c);
    pk_network_free(ps->net);
    free(ps->p);
    free(ps);
    return st;
  }
  memcpy(ps->net->theta, c.theta, P * sizeof(double));
  {
    const pk_hyper *h = &t->hyper;
    double bc1 = 1 - pow(h->beta1, (double)c.os.t), bc2 = 1 - pow(h->beta2, (double)c.os.t);
    for (p = 0; p < P; p++) ps->p[p] = (c.lr / bc1) / (sqrt(c.os.b[p]) / sqrt(bc2) + h->eps);
  }
  pk_cursor_free(&c);
  if ((st = pk_kernel_new(out, &precond_vt, ps))) {
    pk_network_free(ps->net);
    free(ps->p);
    free(ps);
    return st;
  }
  (*out)->input_dim = PK_NET_IN(t->net);
  (*out)->nout = PK_NET_OUT(t->net);
  return PK_OK;
}
