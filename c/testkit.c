/* testkit.c - a kernel for testing the generic kernel machinery (the
 * Kernel userdata, output modes, progress, cancellation, failures) before
 * and apart from the real kernels: K_ab(x, x') = [a == b] x.x' over nout
 * outputs, progress after each row of X1, and a failure on request. Lua
 * reaches it as pk._testkit.kernel{...}; it is not part of the API. */
#include <stdlib.h>
#include "pk_internal.h"

static double dot(const double *x, const double *y, size_t n)
{
  double s = 0;
  size_t i;
  for (i = 0; i < n; i++) s += x[i] * y[i];
  return s;
}

static pk_status probe_step(const pk_kernel *k, const pk_call_opts *o, size_t done, size_t total)
{
  const long *fail_at = k->state;
  if (*fail_at > 0 && done == (size_t)*fail_at)
    return pk_fail(PK_ENUMERIC, "testkit kernel: failing after row %zu as asked", done);
  if (pk_progress(o, (double)done, (double)total))
    return pk_fail(PK_ECANCEL, "%s: cancelled by the progress callback", k->vt->name);
  return PK_OK;
}

static pk_status probe_gram(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                            const pk_call_opts *o, pk_matrix *out)
{
  size_t i, j, a, b, K = k->nout, d = X1->cols, oc = out->cols;
  pk_status st;
  for (i = 0; i < X1->rows; i++) {
    for (j = 0; j < X2->rows; j++) {
      double v = dot(X1->data + i * d, X2->data + j * d, d);
      switch (k->mode) {
      case PK_OUTPUTS_BLOCK:
        for (a = 0; a < K; a++)
          for (b = 0; b < K; b++) out->data[(i * K + a) * oc + j * K + b] = a == b ? v : 0;
        break;
      case PK_OUTPUTS_TRACE:
        out->data[i * oc + j] = (double)K * v;
        break;
      case PK_OUTPUTS_DIAGONAL:
        for (a = 0; a < K; a++) out->data[(i * K + a) * oc + j] = v;
        break;
      }
    }
    if ((st = probe_step(k, o, i + 1, X1->rows))) return st;
  }
  return PK_OK;
}

static pk_status probe_diag(const pk_kernel *k, const pk_matrix *X, const pk_call_opts *o,
                            pk_matrix *out)
{
  size_t i, a, per = out->rows / (X->rows ? X->rows : 1);
  pk_status st;
  for (i = 0; i < X->rows; i++) {
    double v = dot(X->data + i * X->cols, X->data + i * X->cols, X->cols);
    if (per == 1) out->data[i] = (double)k->nout * v;   /* trace mode */
    else for (a = 0; a < per; a++) out->data[i * per + a] = v;
    if ((st = probe_step(k, o, i + 1, X->rows))) return st;
  }
  return PK_OK;
}

static void probe_destroy(pk_kernel *k) { free(k->state); }

static const pk_kernel_vt probe_vt = { "testkit", probe_gram, probe_diag, probe_destroy };

pk_status pk_testkit_kernel(pk_kernel **out, size_t nout, size_t input_dim, long fail_at)
{
  long *state;
  pk_status st;
  *out = NULL;
  if (nout == 0) return pk_fail(PK_EINVAL, "testkit kernel: nout must be >= 1");
  if ((st = pk_alloc((void **)&state, 1, sizeof *state, "testkit kernel"))) return st;
  *state = fail_at;
  if ((st = pk_kernel_new(out, &probe_vt, state))) {
    free(state);
    return st;
  }
  (*out)->nout = nout;
  (*out)->input_dim = input_dim;
  return PK_OK;
}
