/* matrix.c - dense row-major matrices: construction, views, arithmetic,
 * products through BLAS. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cblas.h>
#include "pk_base.h"

pk_status pk_matrix_alloc(pk_matrix **out, size_t rows, size_t cols, const char *what)
{
  return pk_matrix_alloc_hint(out, rows, cols, what, NULL);
}

pk_status pk_matrix_alloc_hint(pk_matrix **out, size_t rows, size_t cols, const char *what,
                               const char *hint)
{
  pk_matrix *m;
  size_t n;
  pk_status st;
  *out = NULL;
  if (rows > PK_MAX_DIM || cols > PK_MAX_DIM)
    return pk_fail(PK_EINVAL, "%s: a dimension above %d is not supported (BLAS int)",
                   what, PK_MAX_DIM);
  if ((st = pk_mul_size(&n, rows, cols, what))) return st;
  if ((st = pk_check_bytes_hint(n, sizeof(double), what, hint))) return st;
  m = malloc(sizeof *m);
  if (!m) return pk_fail(PK_ENOMEM, "%s: out of memory", what);
  if ((st = pk_alloc((void **)&m->data, n, sizeof(double), what))) {
    free(m);
    return st;
  }
  m->rows = rows;
  m->cols = cols;
  m->base = NULL;
  m->refs = 1;
  *out = m;
  return PK_OK;
}

pk_status pk_matrix_new(pk_matrix **out, size_t rows, size_t cols)
{
  char what[64];
  snprintf(what, sizeof what, "a %zu x %zu matrix", rows, cols);
  return pk_matrix_alloc(out, rows, cols, what);
}

pk_status pk_matrix_fill(pk_matrix **out, size_t rows, size_t cols, double v)
{
  size_t i, n;
  pk_status st = pk_matrix_new(out, rows, cols);
  if (st) return st;
  n = rows * cols;
  for (i = 0; i < n; i++) (*out)->data[i] = v;
  return PK_OK;
}

pk_status pk_matrix_zeros(pk_matrix **out, size_t rows, size_t cols)
{
  return pk_matrix_fill(out, rows, cols, 0.0);
}

pk_status pk_matrix_eye(pk_matrix **out, size_t n)
{
  size_t i;
  pk_status st = pk_matrix_zeros(out, n, n);
  if (st) return st;
  for (i = 0; i < n; i++) (*out)->data[i * n + i] = 1.0;
  return PK_OK;
}

pk_status pk_matrix_randn(pk_matrix **out, size_t rows, size_t cols, uint64_t seed)
{
  pk_rng r;
  size_t i, n;
  pk_status st = pk_matrix_new(out, rows, cols);
  if (st) return st;
  pk_rng_seed(&r, seed);
  n = rows * cols;
  for (i = 0; i < n; i++) (*out)->data[i] = pk_rng_normal(&r);
  return PK_OK;
}

pk_status pk_matrix_rand(pk_matrix **out, size_t rows, size_t cols, uint64_t seed)
{
  pk_rng r;
  size_t i, n;
  pk_status st = pk_matrix_new(out, rows, cols);
  if (st) return st;
  pk_rng_seed(&r, seed);
  n = rows * cols;
  for (i = 0; i < n; i++) (*out)->data[i] = pk_rng_uniform(&r);
  return PK_OK;
}

pk_status pk_matrix_from_array(pk_matrix **out, size_t rows, size_t cols, const double *v)
{
  pk_status st = pk_matrix_new(out, rows, cols);
  if (st) return st;
  if (rows * cols > 0) memcpy((*out)->data, v, rows * cols * sizeof(double));
  return PK_OK;
}

pk_status pk_matrix_copy(pk_matrix **out, const pk_matrix *a)
{
  return pk_matrix_from_array(out, a->rows, a->cols, a->data);
}

pk_status pk_matrix_view_rows(pk_matrix **out, pk_matrix *a, size_t r0, size_t r1)
{
  pk_matrix *m;
  *out = NULL;
  if (r0 > r1 || r1 > a->rows)
    return pk_fail(PK_EINVAL, "rows [%zu, %zu) out of range for %zu rows", r0, r1, a->rows);
  m = malloc(sizeof *m);
  if (!m) return pk_fail(PK_ENOMEM, "view: out of memory");
  m->rows = r1 - r0;
  m->cols = a->cols;
  m->data = a->data + r0 * a->cols;
  m->base = a->base ? a->base : a;
  m->base->refs++;
  m->refs = 0;
  *out = m;
  return PK_OK;
}

void pk_matrix_free(pk_matrix *a)
{
  pk_matrix *owner;
  if (!a) return;
  owner = a->base ? a->base : a;
  if (a->base) free(a);
  if (--owner->refs == 0) {
    free(owner->data);
    free(owner);
  }
}

size_t pk_matrix_rows(const pk_matrix *a) { return a->rows; }
size_t pk_matrix_cols(const pk_matrix *a) { return a->cols; }
double *pk_matrix_data(pk_matrix *a) { return a->data; }
const double *pk_matrix_cdata(const pk_matrix *a) { return a->data; }
double pk_matrix_get(const pk_matrix *a, size_t i, size_t j) { return a->data[i * a->cols + j]; }
void pk_matrix_set(pk_matrix *a, size_t i, size_t j, double v) { a->data[i * a->cols + j] = v; }

pk_status pk_check_same_shape(const pk_matrix *a, const pk_matrix *b, const char *op)
{
  if (a->rows != b->rows || a->cols != b->cols)
    return pk_fail(PK_EINVAL, "%s: shapes %zux%zu and %zux%zu differ",
                   op, a->rows, a->cols, b->rows, b->cols);
  return PK_OK;
}

static pk_status elementwise(pk_matrix **out, const pk_matrix *a, const pk_matrix *b,
                             int op, const char *name)
{
  size_t i, n;
  double *o;
  const double *x = a->data, *y = b->data;
  pk_status st;
  *out = NULL;
  if ((st = pk_check_same_shape(a, b, name))) return st;
  if ((st = pk_matrix_new(out, a->rows, a->cols))) return st;
  o = (*out)->data;
  n = a->rows * a->cols;
  switch (op) {
  case '+': for (i = 0; i < n; i++) o[i] = x[i] + y[i]; break;
  case '-': for (i = 0; i < n; i++) o[i] = x[i] - y[i]; break;
  default:  for (i = 0; i < n; i++) o[i] = x[i] * y[i]; break;
  }
  return PK_OK;
}

pk_status pk_matrix_add(pk_matrix **out, const pk_matrix *a, const pk_matrix *b)
{
  return elementwise(out, a, b, '+', "add");
}

pk_status pk_matrix_sub(pk_matrix **out, const pk_matrix *a, const pk_matrix *b)
{
  return elementwise(out, a, b, '-', "sub");
}

pk_status pk_matrix_hadamard(pk_matrix **out, const pk_matrix *a, const pk_matrix *b)
{
  return elementwise(out, a, b, '*', "hadamard");
}

pk_status pk_matrix_scale(pk_matrix **out, double s, const pk_matrix *a)
{
  size_t i, n = a->rows * a->cols;
  pk_status st = pk_matrix_new(out, a->rows, a->cols);
  if (st) return st;
  for (i = 0; i < n; i++) (*out)->data[i] = s * a->data[i];
  return PK_OK;
}

pk_status pk_matrix_mul(pk_matrix **out, const pk_matrix *a, const pk_matrix *b)
{
  pk_status st;
  *out = NULL;
  if (a->cols != b->rows)
    return pk_fail(PK_EINVAL, "matrix product: shapes %zux%zu and %zux%zu do not conform",
                   a->rows, a->cols, b->rows, b->cols);
  if ((st = pk_matrix_new(out, a->rows, b->cols))) return st;
  if (a->rows == 0 || b->cols == 0) return PK_OK;
  if (a->cols == 0) {
    memset((*out)->data, 0, a->rows * b->cols * sizeof(double));
    return PK_OK;
  }
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)a->rows, (int)b->cols,
              (int)a->cols, 1.0, a->data, (int)a->cols, b->data, (int)b->cols, 0.0,
              (*out)->data, (int)b->cols);
  return PK_OK;
}

pk_status pk_matrix_transpose(pk_matrix **out, const pk_matrix *a)
{
  size_t i, j;
  pk_status st = pk_matrix_new(out, a->cols, a->rows);
  if (st) return st;
  if (a->cols == 0) return PK_OK;   /* rows may be 2^31 - 1: no empty walk */
  for (i = 0; i < a->rows; i++)
    for (j = 0; j < a->cols; j++)
      (*out)->data[j * a->rows + i] = a->data[i * a->cols + j];
  return PK_OK;
}

double pk_matrix_sum(const pk_matrix *a)
{
  size_t i, n = a->rows * a->cols;
  double s = 0;
  for (i = 0; i < n; i++) s += a->data[i];
  return s;
}

double pk_matrix_norm(const pk_matrix *a)
{
  /* scaled sum of squares: no overflow for large entries; a NaN gives NaN,
   * else an infinity gives +inf (inf/inf in the scaling would give NaN) */
  size_t i, n = a->rows * a->cols;
  double scale = 0, ssq = 1;
  int inf = 0;
  for (i = 0; i < n; i++) {
    double x = fabs(a->data[i]);
    if (isnan(x)) return x;
    if (isinf(x)) {
      inf = 1;
    } else if (x != 0) {
      if (scale < x) {
        ssq = 1 + ssq * (scale / x) * (scale / x);
        scale = x;
      } else {
        ssq += (x / scale) * (x / scale);
      }
    }
  }
  return inf ? (double)INFINITY : scale * sqrt(ssq);
}

double pk_matrix_max_abs(const pk_matrix *a)
{
  size_t i, n = a->rows * a->cols;
  double m = 0;
  for (i = 0; i < n; i++) {
    double x = fabs(a->data[i]);
    if (isnan(x)) return x;
    if (x > m) m = x;
  }
  return m;
}

pk_status pk_matrix_div_scalar(pk_matrix **out, const pk_matrix *a, double s)
{
  /* a true division: a * (1/s) rounds twice, and 1/s overflows for a
   * subnormal s where a / s is finite */
  size_t i, n = a->rows * a->cols;
  pk_status st = pk_matrix_new(out, a->rows, a->cols);
  if (st) return st;
  for (i = 0; i < n; i++) (*out)->data[i] = a->data[i] / s;
  return PK_OK;
}

pk_status pk_matrix_columns(pk_matrix **out, const pk_matrix *a, size_t j0, size_t j1)
{
  size_t i, w;
  pk_status st;
  *out = NULL;
  if (j0 > j1 || j1 > a->cols)
    return pk_fail(PK_EINVAL, "columns %zu..%zu out of range for %zu columns", j0 + 1, j1,
                   a->cols);
  w = j1 - j0;
  if ((st = pk_matrix_new(out, a->rows, w))) return st;
  for (i = 0; i < a->rows && w; i++)
    memcpy((*out)->data + i * w, a->data + i * a->cols + j0, w * sizeof(double));
  return PK_OK;
}

pk_status pk_matrix_gather(pk_matrix **out, const pk_matrix *a, const size_t *rows, size_t n)
{
  size_t k;
  pk_status st;
  *out = NULL;
  for (k = 0; k < n; k++)
    if (rows[k] >= a->rows)
      return pk_fail(PK_EINVAL, "gather: row %zu out of range 1..%zu", rows[k] + 1, a->rows);
  if ((st = pk_matrix_new(out, n, a->cols))) return st;
  for (k = 0; k < n && a->cols; k++)
    memcpy((*out)->data + k * a->cols, a->data + rows[k] * a->cols, a->cols * sizeof(double));
  return PK_OK;
}

int pk_matrix_all_finite(const pk_matrix *a) { return pk_all_finite(a->data, a->rows * a->cols); }
