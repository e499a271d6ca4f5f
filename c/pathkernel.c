/* pathkernel.c - the path kernel of a recorded run: the tangent kernel
 * integrated along the path, Kp(x, x') = sum_s eta_s sum_q w_q
 * Kg_{w_s + t_q D_s}(x, x') (left rule: t = 0), each term the structured,
 * tiled tangent Gram. Symmetric and positive semidefinite by construction. */
#include <stdlib.h>
#include <string.h>
#include "pk_internal.h"

typedef struct path_state {
  const pk_trajectory *t;   /* borrowed */
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
  if ((st = pk_cursor_init(&c, t))) return st;
  if ((st = pk_alloc((void **)&theta, P, sizeof(double), "the path kernel"))) goto done;
  memset(out->data, 0, out->rows * out->cols * sizeof(double));
  for (s = 0; s < t->T; s++) {
    int q;
    if ((st = pk_cursor_seek(&c, s))) goto done;
    for (q = 0; q < ps->nodes; q++) {
      double a = c.lr * ps->wq[q];
      for (i = 0; i < P; i++) theta[i] = c.theta[i] + ps->tq[q] * (c.next[i] - c.theta[i]);
      if (diag) {
        if ((st = pk_tangent_diag_accumulate(t->net, theta, X1, k->mode, k->memory, a, NULL, out)))
          goto done;
      } else if ((st = pk_tangent_accumulate(t->net, theta, X1, X2, k->mode, k->memory, a, NULL, out))) {
        goto done;
      }
    }
    if (pk_progress(o, (double)(s + 1), (double)t->T)) {
      st = pk_fail(PK_ECANCEL, "path kernel: cancelled at step %zu", s + 1);
      goto done;
    }
  }
  if (!diag && pk_tangent_symmetric(X1, X2, k->mode)) pk_tangent_mirror(out);
done:
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

static void path_destroy(pk_kernel *k) { free(k->state); }

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
  (*out)->input_dim = t->net->d[0];
  (*out)->nout = t->net->d[t->net->L];
  return PK_OK;
}
