/* kernel.c - the generic kernel object: shape checks and output allocation
 * around each kernel's own gram and diag. */
#include <stdlib.h>
#include <math.h>
#include "pk_kern.h"

pk_status pk_kernel_new(pk_kernel **out, const pk_kernel_vt *vt, void *state)
{
  pk_kernel *k = malloc(sizeof *k);
  *out = NULL;
  if (!k) return pk_fail(PK_ENOMEM, "kernel: out of memory");
  k->vt = vt;
  k->input_dim = 0;
  k->nout = 1;
  k->mode = PK_OUTPUTS_BLOCK;
  k->memory = (size_t)256 << 20;
  k->nan_rows = 0;
  k->state = state;
  *out = k;
  return PK_OK;
}

static pk_status check_input(const pk_kernel *k, const pk_matrix *X, const char *which)
{
  if (k->input_dim && X->cols != k->input_dim)
    return pk_fail(PK_EINVAL, "%s kernel: %s has %zu columns, the kernel takes %zu inputs",
                   k->vt->name, which, X->cols, k->input_dim);
  return PK_OK;
}

/* rows (or columns) per example in the output */
static size_t per_row(const pk_kernel *k) { return k->mode == PK_OUTPUTS_TRACE ? 1 : k->nout; }
static size_t per_col(const pk_kernel *k) { return k->mode == PK_OUTPUTS_BLOCK ? k->nout : 1; }

/* The documented rule for kernels of the inputs: an entry whose row of X1
 * or X2 holds a NaN or an infinity is NaN. Formulas do not give it by
 * themselves (inf - inf is NaN but exp(-inf) is 0, inf * 0 is NaN but inf
 * * 1 is inf), so it is imposed here, after the fact, for every kernel
 * alike; rows of finite values are untouched. */
static void nan_rows(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                     pk_matrix *out)
{
  size_t i, j, a, rr = per_row(k), cc = X2 ? per_col(k) : 1, nc = out->cols;
  for (i = 0; i < X1->rows; i++)
    if (!pk_all_finite(X1->data + i * X1->cols, X1->cols))
      for (a = 0; a < rr * nc; a++) out->data[i * rr * nc + a] = NAN;
  if (!X2) return;
  for (j = 0; j < X2->rows; j++)
    if (!pk_all_finite(X2->data + j * X2->cols, X2->cols))
      for (i = 0; i < out->rows; i++)
        for (a = 0; a < cc; a++) out->data[i * nc + j * cc + a] = NAN;
}

pk_status pk_kernel_gram(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                         const pk_call_opts *o, pk_matrix **out)
{
  pk_status st;
  size_t r, c;
  char what[96];
  *out = NULL;
  if ((st = check_input(k, X1, "X1")) || (st = check_input(k, X2, "X2"))) return st;
  if (k->input_dim == 0 && X1->cols != X2->cols)
    return pk_fail(PK_EINVAL, "%s kernel: X1 has %zu columns and X2 has %zu", k->vt->name,
                   X1->cols, X2->cols);
  if ((st = pk_mul_size(&r, X1->rows, per_row(k), "gram")) ||
      (st = pk_mul_size(&c, X2->rows, per_col(k), "gram")))
    return st;
  snprintf(what, sizeof what, "the %zu x %zu Gram", r, c);
  if ((st = pk_matrix_alloc_hint(out, r, c, what, k->nout > 1 && k->mode == PK_OUTPUTS_BLOCK ?
                                 "ask for fewer rows at a time (X:slice(i, j)), or outputs = "
                                 "\"trace\" for one value per pair of examples" :
                                 "ask for fewer rows at a time (X:slice(i, j))")))
    return st;
  if ((st = k->vt->gram(k, X1, X2, o, *out))) {
    pk_matrix_free(*out);
    *out = NULL;
  } else if (k->nan_rows) {
    nan_rows(k, X1, X2, *out);
  }
  return st;
}

pk_status pk_kernel_diag(const pk_kernel *k, const pk_matrix *X, const pk_call_opts *o,
                         pk_matrix **out)
{
  pk_status st;
  size_t r;
  *out = NULL;
  if ((st = check_input(k, X, "X"))) return st;
  if ((st = pk_mul_size(&r, X->rows, per_row(k), "diag"))) return st;
  if ((st = pk_matrix_alloc(out, r, 1, "the kernel diagonal"))) return st;
  if ((st = k->vt->diag(k, X, o, *out))) {
    pk_matrix_free(*out);
    *out = NULL;
  } else if (k->nan_rows) {
    nan_rows(k, X, NULL, *out);
  }
  return st;
}

const char *pk_kernel_name(const pk_kernel *k) { return k->vt->name; }
size_t pk_kernel_input_dim(const pk_kernel *k) { return k->input_dim; }
size_t pk_kernel_outputs(const pk_kernel *k) { return k->nout; }

void pk_kernel_free(pk_kernel *k)
{
  if (!k) return;
  if (k->vt->destroy) k->vt->destroy(k);
  free(k);
}

void pk_kernel_set_memory(pk_kernel *k, size_t bytes) { k->memory = bytes; }
void pk_kernel_set_outputs(pk_kernel *k, pk_outputs mode) { k->mode = mode; }
size_t pk_kernel_memory(const pk_kernel *k) { return k->memory; }
pk_outputs pk_kernel_mode(const pk_kernel *k) { return k->mode; }
