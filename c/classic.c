/* classic.c - the classical kernels (linear, rbf, laplacian, polynomial) and
 * the precomputed kernel over a user's own Gram. Grams of inner-product
 * kernels are one dgemm (dsyrk for K(X, X), then half the entries) plus
 * row norms and one elementwise pass. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cblas.h>
#include "pk_kern.h"
#include "pk_linalg.h"

/* squared row norms */
static void row_norms(const pk_matrix *X, double *r)
{
  size_t i, d = X->cols;
  for (i = 0; i < X->rows; i++)
    r[i] = d ? cblas_ddot((int)d, X->data + i * d, 1, X->data + i * d, 1) : 0.0;
}

/* ---- inner-product and distance kernels ------------------------------- */

typedef struct {
  int type;         /* PK_KSPEC_* */
  double gamma, c;
  int degree;
} classic;

/* K(x, x) from ||x||^2 */
static double diag_value(const classic *p, double r)
{
  switch (p->type) {
  case PK_KSPEC_RBF:
  case PK_KSPEC_LAPLACIAN:
    /* the distance to itself is 0, even when ||x||^2 overflows; rows
     * that are not finite are made NaN by pk_kernel_diag */
    return 1.0;
  case PK_KSPEC_POLY:
    return pow(r + p->c, (double)p->degree);
  default:
    return r;
  }
}

typedef struct {
  const classic *p;
  const pk_matrix *X1, *X2;
  const double *r1, *r2;
  double *g;
  int sym;
} rows_job;

/* rows [i0, i1) of the Gram: the L1 distances of laplacian, or the
 * elementwise pass over the cross products already in g */
static double gram_rows(void *ctx, size_t i0, size_t i1)
{
  const rows_job *J = ctx;
  const classic *p = J->p;
  size_t n2 = J->X2->rows, d = J->X1->cols, i, j;
  double units = 0;
  for (i = i0; i < i1; i++) {
    double *row = J->g + i * n2;
    size_t j0 = J->sym ? i : 0;
    switch (p->type) {
    case PK_KSPEC_LAPLACIAN: {
      /* no product form: direct distances, four partial sums per pair */
      const double *x = J->X1->data + i * d;
      for (j = j0; j < n2; j++) {
        const double *y = J->X2->data + j * d;
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        size_t q = 0;
        for (; q + 4 <= d; q += 4) {
          s0 += fabs(x[q] - y[q]);
          s1 += fabs(x[q + 1] - y[q + 1]);
          s2 += fabs(x[q + 2] - y[q + 2]);
          s3 += fabs(x[q + 3] - y[q + 3]);
        }
        for (; q < d; q++) s0 += fabs(x[q] - y[q]);
        row[j] = exp(-p->gamma * ((s0 + s1) + (s2 + s3)));
      }
      break;
    }
    case PK_KSPEC_RBF:
      for (j = j0; j < n2; j++) {
        double dist = J->r1[i] + J->r2[j] + row[j];
        if (!isfinite(dist)) {
          /* a norm or product overflowed (or a row is not finite, which
           * pk_kernel_gram makes NaN): the distance directly, whose
           * overflow is the right limit, exp(-inf) = 0 */
          const double *x = J->X1->data + i * d, *y = J->X2->data + j * d;
          size_t q;
          dist = 0;
          for (q = 0; q < d; q++) dist += (x[q] - y[q]) * (x[q] - y[q]);
        }
        row[j] = exp(-p->gamma * (dist < 0 ? 0.0 : dist));
      }
      break;
    case PK_KSPEC_POLY:
      for (j = j0; j < n2; j++) row[j] = pow(row[j] + p->c, (double)p->degree);
      break;
    default:
      break;
    }
    /* K(X, X): the diagonal from the norms, as diag computes it (for rbf
     * exactly 1 rather than exp of a rounding residue) */
    if (J->sym) row[i] = diag_value(p, J->r1[i]);
    units += (double)(n2 - j0);
  }
  return units;
}

static pk_status classic_gram(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                              const pk_call_opts *o, pk_matrix *out)
{
  const classic *p = k->state;
  size_t n1 = X1->rows, n2 = X2->rows;
  int sym = X1 == X2;
  double *r1 = NULL, *r2 = NULL;
  rows_job J;
  pk_status st;
  if (n1 == 0 || n2 == 0) return PK_OK;
  if (p->type == PK_KSPEC_RBF || sym) {
    if ((st = pk_alloc((void **)&r1, n1 + (sym ? 0 : n2), sizeof(double), "row norms")))
      return st;
    r2 = sym ? r1 : r1 + n1;
    row_norms(X1, r1);
    if (!sym) row_norms(X2, r2);
  }
  /* rbf: -2 x.x' so that ||x||^2 + ||x'||^2 + g is the squared distance */
  if (p->type != PK_KSPEC_LAPLACIAN &&
      (st = pk_cross(X1, X2, p->type == PK_KSPEC_RBF ? -2.0 : 1.0, sym, out->data, o,
                     k->vt->name))) {
    free(r1);
    return st;
  }
  J.p = p;
  J.X1 = X1;
  J.X2 = X2;
  J.r1 = r1;
  J.r2 = r2;
  J.g = out->data;
  J.sym = sym;
  st = pk_parallel_for(n1, 1 + ((size_t)1 << 16) / (n2 * (p->type == PK_KSPEC_LAPLACIAN
                                                          ? X1->cols + 1 : 1)),
                       gram_rows, &J, o,
                       sym ? 0.5 * (double)n1 * ((double)n1 + 1) : (double)n1 * (double)n2,
                       k->vt->name);
  if (!st && sym) pk_mirror_upper(out->data, n1);
  free(r1);
  return st;
}

static pk_status classic_diag(const pk_kernel *k, const pk_matrix *X, const pk_call_opts *o,
                              pk_matrix *out)
{
  const classic *p = k->state;
  size_t i, n = X->rows;
  double *v = out->data;
  (void)o;
  row_norms(X, v);
  for (i = 0; i < n; i++) v[i] = diag_value(p, v[i]);
  return PK_OK;
}

static void classic_destroy(pk_kernel *k) { free(k->state); }

static const pk_kernel_vt linear_vt = { "linear", classic_gram, classic_diag, classic_destroy };
static const pk_kernel_vt rbf_vt = { "rbf", classic_gram, classic_diag, classic_destroy };
static const pk_kernel_vt laplacian_vt = { "laplacian", classic_gram, classic_diag,
                                           classic_destroy };
static const pk_kernel_vt poly_vt = { "poly", classic_gram, classic_diag, classic_destroy };

static pk_status classic_new(pk_kernel **out, const pk_kernel_vt *vt, int type, double gamma,
                             int degree, double c)
{
  classic *p;
  pk_status st;
  *out = NULL;
  p = malloc(sizeof *p);
  if (!p) return pk_fail(PK_ENOMEM, "%s kernel: out of memory", vt->name);
  p->type = type;
  p->gamma = gamma;
  p->degree = degree;
  p->c = c;
  if ((st = pk_kernel_new(out, vt, p))) free(p);
  else (*out)->nan_rows = 1;
  return st;
}

pk_status pk_kernel_linear(pk_kernel **out)
{
  return classic_new(out, &linear_vt, PK_KSPEC_LINEAR, 0, 0, 0);
}

static pk_status check_gamma(const char *name, double gamma)
{
  if (!(gamma > 0) || !isfinite(gamma))
    return pk_fail(PK_EINVAL, "%s kernel: gamma must be a positive finite number, got %g",
                   name, gamma);
  return PK_OK;
}

pk_status pk_kernel_rbf(pk_kernel **out, double gamma)
{
  pk_status st = check_gamma("rbf", gamma);
  *out = NULL;
  return st ? st : classic_new(out, &rbf_vt, PK_KSPEC_RBF, gamma, 0, 0);
}

pk_status pk_kernel_laplacian(pk_kernel **out, double gamma)
{
  pk_status st = check_gamma("laplacian", gamma);
  *out = NULL;
  return st ? st : classic_new(out, &laplacian_vt, PK_KSPEC_LAPLACIAN, gamma, 0, 0);
}

pk_status pk_kernel_poly(pk_kernel **out, int degree, double c)
{
  *out = NULL;
  if (degree < 1)
    return pk_fail(PK_EINVAL, "poly kernel: degree must be an integer >= 1, got %d", degree);
  if (!(c >= 0) || !isfinite(c))
    return pk_fail(PK_EINVAL, "poly kernel: c must be a finite number >= 0 (so the kernel "
                   "is positive semidefinite), got %g", c);
  return classic_new(out, &poly_vt, PK_KSPEC_POLY, 0, degree, c);
}

int pk_classic_kernel_spec(const pk_kernel *k, pk_kernel_spec *s)
{
  const classic *p;
  if (k->vt != &linear_vt && k->vt != &rbf_vt && k->vt != &laplacian_vt && k->vt != &poly_vt)
    return 0;
  p = k->state;
  memset(s, 0, sizeof *s);
  s->type = (uint32_t)p->type;
  if (p->type == PK_KSPEC_POLY) {
    s->p[0] = p->degree;
    s->p[1] = p->c;
  } else {
    s->p[0] = p->gamma;
  }
  return 1;
}

int pk_classic_kernel_from_spec(const pk_kernel_spec *s, pk_kernel **out, pk_status *st)
{
  switch (s->type) {
  case PK_KSPEC_LINEAR: *st = pk_kernel_linear(out); return 1;
  case PK_KSPEC_RBF: *st = pk_kernel_rbf(out, s->p[0]); return 1;
  case PK_KSPEC_LAPLACIAN: *st = pk_kernel_laplacian(out, s->p[0]); return 1;
  case PK_KSPEC_POLY:
    if (!(s->p[0] >= 1 && s->p[0] <= 1e6 && s->p[0] == floor(s->p[0])))
      *st = pk_fail(PK_EFORMAT, "saved poly kernel: bad degree %g", s->p[0]);
    else
      *st = pk_kernel_poly(out, (int)s->p[0], s->p[1]);
    return 1;
  }
  return 0;
}

/* ---- the precomputed kernel ------------------------------------------ */

typedef struct {
  pk_matrix *G;      /* a view: shares the caller's storage */
  pk_matrix *X;      /* a copy, or NULL when inputs are indices */
  size_t *table;     /* open addressing: row index + 1, 0 for empty */
  size_t mask;
} precomp;

static uint64_t row_hash(const double *x, size_t d)
{
  uint64_t h = 1469598103934665603u, u;
  size_t q;
  for (q = 0; q < d; q++) {
    double v = x[q] == 0 ? 0.0 : x[q];   /* -0 == 0 must hash alike */
    memcpy(&u, &v, sizeof u);
    h = (h ^ u) * 1099511628211u;
    h ^= h >> 31;
  }
  return h;
}

static int row_equal(const double *a, const double *b, size_t d)
{
  size_t q;
  for (q = 0; q < d; q++)
    if (!(a[q] == b[q])) return 0;
  return 1;
}

/* the index of the first row of X equal to x, or (size_t)-1 */
static size_t find_row(const precomp *p, const double *x)
{
  size_t d = p->X->cols, h = (size_t)row_hash(x, d) & p->mask, s;
  while ((s = p->table[h]) != 0) {
    if (row_equal(p->X->data + (s - 1) * d, x, d)) return s - 1;
    h = (h + 1) & p->mask;
  }
  return (size_t)-1;
}

/* map each input row to an index of G along an axis of `limit` entries */
static pk_status lookup(const precomp *p, const pk_matrix *X, size_t limit, const char *which,
                        size_t *idx)
{
  size_t i;
  for (i = 0; i < X->rows; i++) {
    const double *x = X->data + i * X->cols;
    if (p->X) {
      idx[i] = find_row(p, x);
      if (idx[i] == (size_t)-1)
        return pk_fail(PK_EINVAL, "precomputed kernel: row %zu of %s is not a row of the "
                       "kernel's X (rows are matched exactly)", i + 1, which);
    } else {
      double v = x[0];
      if (!(v >= 1 && v <= (double)limit && v == floor(v)))
        return pk_fail(PK_EINVAL, "precomputed kernel: %s[%zu] = %g is not an index in "
                       "1..%zu", which, i + 1, v, limit);
      idx[i] = (size_t)v - 1;
    }
  }
  return PK_OK;
}

static pk_status precomp_gram(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                              const pk_call_opts *o, pk_matrix *out)
{
  const precomp *p = k->state;
  size_t n1 = X1->rows, n2 = X2->rows, gc = p->G->cols, i, j, *idx;
  pk_status st;
  (void)o;
  if ((st = pk_alloc((void **)&idx, n1 + n2, sizeof(size_t), "precomputed kernel indices")))
    return st;
  if (!(st = lookup(p, X1, p->G->rows, "X1", idx)) &&
      !(st = lookup(p, X2, p->G->cols, "X2", idx + n1)))
    for (i = 0; i < n1; i++) {
      const double *grow = p->G->data + idx[i] * gc;
      for (j = 0; j < n2; j++) out->data[i * n2 + j] = grow[idx[n1 + j]];
    }
  free(idx);
  return st;
}

static pk_status precomp_diag(const pk_kernel *k, const pk_matrix *X, const pk_call_opts *o,
                              pk_matrix *out)
{
  const precomp *p = k->state;
  size_t n = X->rows, lim = p->G->rows < p->G->cols ? p->G->rows : p->G->cols, i, *idx;
  pk_status st;
  (void)o;
  if ((st = pk_alloc((void **)&idx, n, sizeof(size_t), "precomputed kernel indices")))
    return st;
  if (!(st = lookup(p, X, lim, "X", idx)))
    for (i = 0; i < n; i++) out->data[i] = p->G->data[idx[i] * p->G->cols + idx[i]];
  free(idx);
  return st;
}

static void precomp_destroy(pk_kernel *k)
{
  precomp *p = k->state;
  if (!p) return;
  pk_matrix_free(p->G);
  pk_matrix_free(p->X);
  free(p->table);
  free(p);
}

static const pk_kernel_vt precomp_vt = { "precomputed", precomp_gram, precomp_diag,
                                         precomp_destroy };

pk_status pk_kernel_precomputed(pk_kernel **out, pk_matrix *G, const pk_matrix *X)
{
  precomp *p;
  pk_status st;
  size_t cap = 1, i;
  *out = NULL;
  if (X && G->rows != G->cols)
    return pk_fail(PK_EINVAL, "precomputed kernel: G is %zu x %zu, not square", G->rows,
                   G->cols);
  if (X && X->rows != G->rows)
    return pk_fail(PK_EINVAL, "precomputed kernel: G is %zu x %zu but X has %zu rows",
                   G->rows, G->cols, X->rows);
  if (X && X->cols == 0)
    return pk_fail(PK_EINVAL, "precomputed kernel: X has no columns to match rows by");
  if ((st = pk_calloc((void **)&p, 1, sizeof *p, "precomputed kernel"))) return st;
  if ((st = pk_matrix_view_rows(&p->G, G, 0, G->rows))) goto fail;
  if (X) {
    while (cap < 2 * X->rows) cap *= 2;
    if ((st = pk_matrix_copy(&p->X, X)) ||
        (st = pk_calloc((void **)&p->table, cap, sizeof(size_t), "precomputed kernel rows")))
      goto fail;
    p->mask = cap - 1;
    for (i = 0; i < X->rows; i++) {
      const double *x = p->X->data + i * X->cols;
      size_t h = (size_t)row_hash(x, X->cols) & p->mask, s;
      int dup = 0;
      while ((s = p->table[h]) != 0) {
        if (row_equal(p->X->data + (s - 1) * X->cols, x, X->cols)) { dup = 1; break; }
        h = (h + 1) & p->mask;
      }
      if (!dup) p->table[h] = i + 1;    /* the first of equal rows wins */
    }
  }
  if ((st = pk_kernel_new(out, &precomp_vt, p))) goto fail;
  (*out)->input_dim = X ? X->cols : 1;
  return PK_OK;
fail:
  pk_matrix_free(p->G);
  pk_matrix_free(p->X);
  free(p->table);
  free(p);
  return st;
}
