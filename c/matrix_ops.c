/* matrix_ops.c - the matrix helpers data preparation reaches for: scalar
 * shifts, elementwise functions, reductions along a dimension, argmax,
 * stacking, a seeded train/test split and classification accuracy. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "pk_base.h"

/* ---- scalars and elementwise functions --------------------------------- */

pk_status pk_matrix_add_scalar(pk_matrix **out, const pk_matrix *a, double s)
{
  size_t i, n = a->rows * a->cols;
  pk_status st = pk_matrix_new(out, a->rows, a->cols);
  if (st) return st;
  for (i = 0; i < n; i++) (*out)->data[i] = a->data[i] + s;
  return PK_OK;
}

pk_status pk_matrix_scalar_sub(pk_matrix **out, double s, const pk_matrix *a)
{
  size_t i, n = a->rows * a->cols;
  pk_status st = pk_matrix_new(out, a->rows, a->cols);
  if (st) return st;
  for (i = 0; i < n; i++) (*out)->data[i] = s - a->data[i];
  return PK_OK;
}

pk_status pk_matrix_map(pk_matrix **out, const pk_matrix *a, pk_map f)
{
  size_t i, n = a->rows * a->cols;
  const double *x = a->data;
  double *y;
  pk_status st;
  *out = NULL;
  if ((unsigned)f > PK_MAP_TANH) return pk_fail(PK_EINVAL, "map: unknown function %d", (int)f);
  if ((st = pk_matrix_new(out, a->rows, a->cols))) return st;
  y = (*out)->data;
  /* libm throughout: IEEE answers outside the domain (log of a negative
   * number is NaN, log 0 is -inf), as NumPy and torch give */
  switch (f) {
  case PK_MAP_EXP: for (i = 0; i < n; i++) y[i] = exp(x[i]); break;
  case PK_MAP_LOG: for (i = 0; i < n; i++) y[i] = log(x[i]); break;
  case PK_MAP_SQRT: for (i = 0; i < n; i++) y[i] = sqrt(x[i]); break;
  case PK_MAP_ABS: for (i = 0; i < n; i++) y[i] = fabs(x[i]); break;
  case PK_MAP_TANH: for (i = 0; i < n; i++) y[i] = tanh(x[i]); break;
  }
  return PK_OK;
}

pk_status pk_matrix_pow(pk_matrix **out, const pk_matrix *a, double p)
{
  size_t i, n = a->rows * a->cols;
  pk_status st = pk_matrix_new(out, a->rows, a->cols);
  if (st) return st;
  if (p == 2)      /* the common case, exact and fast */
    for (i = 0; i < n; i++) (*out)->data[i] = a->data[i] * a->data[i];
  else
    for (i = 0; i < n; i++) (*out)->data[i] = pow(a->data[i], p);
  return PK_OK;
}

/* ---- reductions along a dimension -------------------------------------- */

static pk_status check_dim(int dim, const char *fn)
{
  if (dim != 1 && dim != 2)
    return pk_fail(PK_EINVAL, "%s: dim must be 1 (one value per column) or 2 (one per row), got %d",
                   fn, dim);
  return PK_OK;
}

/* sums along dim into a new 1 x c (dim 1) or r x 1 (dim 2) matrix, in
 * the order a loop over rows then columns adds them */
static pk_status sums(pk_matrix **out, const pk_matrix *a, int dim, const char *fn)
{
  size_t i, j, r = a->rows, c = a->cols;
  double *o;
  pk_status st;
  *out = NULL;
  if ((st = check_dim(dim, fn))) return st;
  if ((st = dim == 1 ? pk_matrix_zeros(out, 1, c) : pk_matrix_zeros(out, r, 1))) return st;
  o = (*out)->data;
  if (c == 0) return PK_OK;
  for (i = 0; i < r; i++)
    for (j = 0; j < c; j++) o[dim == 1 ? j : i] += a->data[i * c + j];
  return PK_OK;
}

pk_status pk_matrix_sum_dim(pk_matrix **out, const pk_matrix *a, int dim)
{
  return sums(out, a, dim, "sum");
}

/* entries along dim: rows for dim 1, columns for dim 2 */
static size_t along(const pk_matrix *a, int dim) { return dim == 1 ? a->rows : a->cols; }

pk_status pk_matrix_mean_dim(pk_matrix **out, const pk_matrix *a, int dim)
{
  size_t k, n;
  pk_status st = sums(out, a, dim, "mean");
  if (st) return st;
  n = along(a, dim);
  if (n == 0) {
    pk_matrix_free(*out);
    *out = NULL;
    return pk_fail(PK_EINVAL, "mean: dim %d of a %zux%zu matrix has no entries to average", dim,
                   a->rows, a->cols);
  }
  for (k = 0; k < (*out)->rows * (*out)->cols; k++) (*out)->data[k] /= (double)n;
  return PK_OK;
}

static pk_status check_ddof(size_t n, size_t ddof, const char *what)
{
  if (n <= ddof)
    return pk_fail(PK_EINVAL, "std: %s %zu entr%s with ddof = %zu leave no degrees of freedom",
                   what, n, n == 1 ? "y" : "ies", ddof);
  return PK_OK;
}

/* two passes (the mean, then squared deviations): no cancellation of
 * sum x^2 - n mean^2 */
pk_status pk_matrix_std_dim(pk_matrix **out, const pk_matrix *a, int dim, size_t ddof)
{
  size_t i, j, r = a->rows, c = a->cols, n;
  pk_matrix *mean;
  double *o;
  pk_status st;
  *out = NULL;
  if ((st = check_dim(dim, "std"))) return st;
  n = along(a, dim);
  if ((st = check_ddof(n, ddof, dim == 1 ? "a column of" : "a row of"))) return st;
  if ((st = pk_matrix_mean_dim(&mean, a, dim))) return st;
  if ((st = dim == 1 ? pk_matrix_zeros(out, 1, c) : pk_matrix_zeros(out, r, 1))) {
    pk_matrix_free(mean);
    return st;
  }
  o = (*out)->data;
  for (i = 0; i < r; i++)
    for (j = 0; j < c; j++) {
      size_t k = dim == 1 ? j : i;
      double d = a->data[i * c + j] - mean->data[k];
      o[k] += d * d;
    }
  for (i = 0; i < (*out)->rows * (*out)->cols; i++) o[i] = sqrt(o[i] / (double)(n - ddof));
  pk_matrix_free(mean);
  return PK_OK;
}

pk_status pk_matrix_std(const pk_matrix *a, size_t ddof, double *out)
{
  size_t i, n = a->rows * a->cols;
  double m = 0, s = 0;
  pk_status st;
  if ((st = check_ddof(n, ddof, "a matrix of"))) return st;
  for (i = 0; i < n; i++) m += a->data[i];
  m /= (double)n;
  for (i = 0; i < n; i++) s += (a->data[i] - m) * (a->data[i] - m);
  *out = sqrt(s / (double)(n - ddof));
  return PK_OK;
}

/* is x a better maximum than the best so far? NaN beats everything and
 * the first NaN stays (as NumPy's argmax); ties keep the first */
static int beats(double x, double best) { return !isnan(best) && (isnan(x) || x > best); }

pk_status pk_matrix_argmax_dim(const pk_matrix *a, int dim, size_t *idx)
{
  size_t i, j, r = a->rows, c = a->cols;
  pk_status st;
  if ((st = check_dim(dim, "argmax"))) return st;
  if (along(a, dim) == 0)
    return pk_fail(PK_EINVAL, "argmax: dim %d of a %zux%zu matrix has no entries", dim, r, c);
  if (dim == 1) {
    for (j = 0; j < c; j++) idx[j] = 0;
    for (i = 1; i < r; i++)
      for (j = 0; j < c; j++)
        if (beats(a->data[i * c + j], a->data[idx[j] * c + j])) idx[j] = i;
  } else {
    for (i = 0; i < r; i++) {
      const double *row = a->data + i * c;
      size_t b = 0;
      for (j = 1; j < c; j++)
        if (beats(row[j], row[b])) b = j;
      idx[i] = b;
    }
  }
  return PK_OK;
}

pk_status pk_matrix_argmax(const pk_matrix *a, size_t *i, size_t *j)
{
  size_t k, b = 0, n = a->rows * a->cols;
  if (n == 0)
    return pk_fail(PK_EINVAL, "argmax: a %zux%zu matrix has no entries", a->rows, a->cols);
  for (k = 1; k < n; k++)
    if (beats(a->data[k], a->data[b])) b = k;
  *i = b / a->cols;
  *j = b % a->cols;
  return PK_OK;
}

/* ---- stacking ------------------------------------------------------------ */

static pk_status stack(pk_matrix **out, const pk_matrix *const *parts, size_t n, int horizontal)
{
  const char *fn = horizontal ? "hstack" : "vstack";
  size_t k, total = 0, r, c, off;
  pk_status st;
  *out = NULL;
  if (n == 0) return pk_fail(PK_EINVAL, "%s: no matrices to stack", fn);
  for (k = 0; k < n; k++) {
    const pk_matrix *p = parts[k];
    size_t same = horizontal ? p->rows : p->cols, want = horizontal ? parts[0]->rows : parts[0]->cols;
    size_t grows = horizontal ? p->cols : p->rows;
    if (same != want)
      return pk_fail(PK_EINVAL, "%s: entry %zu has %zu %s, entry 1 has %zu (shapes %zux%zu and "
                     "%zux%zu)", fn, k + 1, same, horizontal ? "rows" : "columns", want, p->rows,
                     p->cols, parts[0]->rows, parts[0]->cols);
    if (grows > PK_MAX_DIM - total)
      return pk_fail(PK_EINVAL, "%s: the result would have more than %d %s", fn, PK_MAX_DIM,
                     horizontal ? "columns" : "rows");
    total += grows;
  }
  r = horizontal ? parts[0]->rows : total;
  c = horizontal ? total : parts[0]->cols;
  if ((st = pk_matrix_new(out, r, c))) return st;
  off = 0;
  for (k = 0; k < n; k++) {
    const pk_matrix *p = parts[k];
    size_t i, pn = p->rows * p->cols;
    if (pn == 0) continue;
    if (horizontal) {
      for (i = 0; i < r; i++)
        memcpy((*out)->data + i * c + off, p->data + i * p->cols, p->cols * sizeof(double));
      off += p->cols;
    } else {
      memcpy((*out)->data + off * c, p->data, pn * sizeof(double));
      off += p->rows;
    }
  }
  return PK_OK;
}

pk_status pk_matrix_hstack(pk_matrix **out, const pk_matrix *const *parts, size_t n)
{
  return stack(out, parts, n, 1);
}

pk_status pk_matrix_vstack(pk_matrix **out, const pk_matrix *const *parts, size_t n)
{
  return stack(out, parts, n, 0);
}

/* ---- train/test split ------------------------------------------------------ */

static pk_status take_rows(pk_matrix **out, const pk_matrix *a, const size_t *rows, size_t n)
{
  size_t k;
  pk_status st = pk_matrix_new(out, n, a->cols);
  if (st || a->cols == 0) return st;
  for (k = 0; k < n; k++)
    memcpy((*out)->data + k * a->cols, a->data + rows[k] * a->cols, a->cols * sizeof(double));
  return PK_OK;
}

pk_status pk_split(const pk_matrix *X, const pk_matrix *Y, size_t ntest, int shuffle, uint64_t seed,
                   pk_matrix **Xtrain, pk_matrix **Ytrain, pk_matrix **Xtest, pk_matrix **Ytest,
                   size_t *order)
{
  size_t n = X->rows, ntrain, i, *perm, *train, *test;
  pk_matrix *o[4] = { NULL, NULL, NULL, NULL };
  pk_status st;
  *Xtrain = *Xtest = NULL;
  if (Ytrain) *Ytrain = NULL;
  if (Ytest) *Ytest = NULL;
  if (Y && Y->rows != n)
    return pk_fail(PK_EINVAL, "split: X has %zu rows, Y has %zu", n, Y->rows);
  if (Y && (!Ytrain || !Ytest)) return pk_fail(PK_EINVAL, "split: Y given without Ytrain and Ytest");
  if (ntest == 0) return pk_fail(PK_EINVAL, "split: the test set would be empty (%zu rows in all)", n);
  if (ntest >= n)
    return pk_fail(PK_EINVAL, "split: a test set of %zu of %zu rows leaves no training rows",
                   ntest, n);
  ntrain = n - ntest;
  if ((st = pk_alloc((void **)&perm, n, sizeof *perm, "split"))) return st;
  for (i = 0; i < n; i++) perm[i] = i;
  if (shuffle) {
    /* Fisher-Yates; the test rows are the first ntest of the permutation */
    pk_rng r;
    pk_rng_seed(&r, seed);
    for (i = n - 1; i > 0; i--) {
      size_t k = (size_t)pk_rng_below(&r, (uint64_t)i + 1), t = perm[i];
      perm[i] = perm[k];
      perm[k] = t;
    }
    test = perm;
    train = perm + ntest;
  } else {
    /* in order: training rows first, the last ntest rows for testing */
    train = perm;
    test = perm + ntrain;
  }
  if ((st = take_rows(&o[0], X, train, ntrain)) || (st = take_rows(&o[2], X, test, ntest)) ||
      (Y && ((st = take_rows(&o[1], Y, train, ntrain)) || (st = take_rows(&o[3], Y, test, ntest))))) {
    for (i = 0; i < 4; i++) pk_matrix_free(o[i]);
    free(perm);
    return st;
  }
  if (order) {
    memcpy(order, train, ntrain * sizeof *order);
    memcpy(order + ntrain, test, ntest * sizeof *order);
  }
  free(perm);
  *Xtrain = o[0];
  *Xtest = o[2];
  if (Y) {
    *Ytrain = o[1];
    *Ytest = o[3];
  }
  return PK_OK;
}

/* ---- accuracy ---------------------------------------------------------------- */

pk_status pk_accuracy(const pk_matrix *F, const pk_matrix *labels, size_t *correct)
{
  size_t n = F->rows, K = F->cols, i, j, ok = 0;
  *correct = 0;
  if (labels->rows != n)
    return pk_fail(PK_EINVAL, "accuracy: the logits have %zu rows, the labels %zu", n, labels->rows);
  if (n == 0) return pk_fail(PK_EINVAL, "accuracy: no rows to score");
  if (K == 0) return pk_fail(PK_EINVAL, "accuracy: the logits have no columns");
  if (K == 1) {
    /* one logit per row: class 1 where it is > 0 (probability > 1/2) */
    if (labels->cols != 1)
      return pk_fail(PK_EINVAL, "accuracy: one logit per row needs an n x 1 column of 0/1 labels, "
                     "got %zux%zu labels", labels->rows, labels->cols);
    for (i = 0; i < n; i++) {
      double y = labels->data[i], f = F->data[i];
      if (y != 0 && y != 1)
        return pk_fail(PK_EINVAL, "accuracy: label %.17g in row %zu is not 0 or 1 (one logit per "
                       "row means binary labels)", y, i + 1);
      if (!isnan(f) && (f > 0) == (y == 1)) ok++;
    }
  } else if (labels->cols == 1 || labels->cols == K) {
    for (i = 0; i < n; i++) {
      const double *f = F->data + i * K;
      size_t pred = 0, truth;
      int nan = 0;
      if (labels->cols == 1) {
        double y = labels->data[i];
        if (!(y >= 1 && y <= (double)K && y == floor(y)))
          return pk_fail(PK_EINVAL, "accuracy: label %.17g in row %zu is not a class in 1..%zu", y,
                         i + 1, K);
        truth = (size_t)y - 1;
      } else {
        const double *l = labels->data + i * K;
        truth = 0;
        for (j = 0; j < K; j++) {
          if (isnan(l[j]))
            return pk_fail(PK_EINVAL, "accuracy: the label row %zu holds a NaN", i + 1);
          if (l[j] > l[truth]) truth = j;
        }
      }
      /* a row with a NaN logit predicts nothing: it counts as wrong */
      for (j = 0; j < K; j++) {
        if (isnan(f[j])) nan = 1;
        else if (f[j] > f[pred]) pred = j;
      }
      if (!nan && pred == truth) ok++;
    }
  } else {
    return pk_fail(PK_EINVAL, "accuracy: labels must be n x 1 (classes 1..%zu) or n x %zu (one-hot "
                   "rows), got %zux%zu", K, K, labels->rows, labels->cols);
  }
  *correct = ok;
  return PK_OK;
}
