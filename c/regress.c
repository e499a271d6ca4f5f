/* regress.c - kernel regressors over LAPACK: ridge regression and the GP
 * posterior by Cholesky (dpotrf/dpotrs, falling back to dsyevd when the
 * regularized Gram is not numerically positive definite), the NTK-regime
 * gradient flow by dsyevd; predictions in query tiles; files. */
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <math.h>
#include <cblas.h>
#include <lapacke.h>
#include "pk_kern.h"
#include "pk_linalg.h"
#include "pk_regress.h"

enum { FACTOR_NONE = 0, FACTOR_CHOL = 1, FACTOR_EIG = 2 };

struct pk_regressor {
  pk_regressor_kind kind;
  const pk_kernel *kernel;
  pk_kernel *own;        /* the kernel of a loaded model, else NULL */
  pk_matrix *X;          /* the training inputs (a copy) */
  pk_matrix *alpha;      /* N x m: N = n * per Gram rows, m = outs / per */
  size_t per;            /* Gram rows per example (K outputs in block mode) */
  size_t outs;           /* columns of Y */
  int has_f0;
  double param[2];       /* ridge: lambda; gp: noise; flow: lr, t */
  int factor;            /* gp: how F holds (K + noise I)^-1 */
  pk_matrix *F;          /* chol: L in LAPACK's column-major lower triangle;
                          * eig: row i is eigenvector i */
  pk_matrix *winv;       /* eig: 1/eigenvalue, 0 for those dropped */
  char *warning;
};

static const char *const kind_names[] = { "", "ridge", "gp", "gradient_flow" };

void pk_regressor_free(pk_regressor *r)
{
  if (!r) return;
  pk_kernel_free(r->own);
  pk_matrix_free(r->X);
  pk_matrix_free(r->alpha);
  pk_matrix_free(r->F);
  pk_matrix_free(r->winv);
  free(r->warning);
  free(r);
}

pk_regressor_kind pk_regressor_get_kind(const pk_regressor *r) { return r->kind; }
const char *pk_regressor_kind_name(const pk_regressor *r) { return kind_names[r->kind]; }
const pk_matrix *pk_regressor_coefficients(const pk_regressor *r) { return r->alpha; }
const char *pk_regressor_warning(const pk_regressor *r) { return r->warning; }
const pk_kernel *pk_regressor_kernel(const pk_regressor *r) { return r->kernel; }
int pk_regressor_owns_kernel(const pk_regressor *r) { return r->own != NULL; }
int pk_regressor_needs_f0(const pk_regressor *r) { return r->has_f0; }

/* Gram rows and columns per example, as kernel.c lays them out */
static size_t rows_per(const pk_kernel *k) { return k->mode == PK_OUTPUTS_TRACE ? 1 : k->nout; }
static size_t cols_per(const pk_kernel *k) { return k->mode == PK_OUTPUTS_BLOCK ? k->nout : 1; }

static pk_status set_warning(pk_regressor *r, const char *msg)
{
  size_t n = strlen(msg) + 1;
  free(r->warning);
  r->warning = malloc(n);
  if (!r->warning) return pk_fail(PK_ENOMEM, "%s: out of memory", kind_names[r->kind]);
  memcpy(r->warning, msg, n);
  return PK_OK;
}

static size_t first_bad_row(const pk_matrix *A)
{
  size_t i;
  for (i = 0; i < A->rows; i++)
    if (!pk_all_finite(A->data + i * A->cols, A->cols)) return i;
  return (size_t)-1;
}

/* argument checks shared by every fit; then a model holding a copy of X */
static pk_status fit_begin(pk_regressor **out, pk_regressor_kind kind, const pk_kernel *k,
                           const pk_matrix *X, const pk_matrix *Y, const pk_matrix *f0)
{
  const char *fn = kind_names[kind];
  size_t per = rows_per(k), bad;
  pk_regressor *r;
  pk_status st;
  *out = NULL;
  if (X->rows == 0) return pk_fail(PK_EINVAL, "%s: X has no rows: nothing to fit", fn);
  if (Y->rows != X->rows)
    return pk_fail(PK_EINVAL, "%s: X has %zu rows but Y has %zu", fn, X->rows, Y->rows);
  if (Y->cols == 0) return pk_fail(PK_EINVAL, "%s: Y has no columns", fn);
  if (k->input_dim && X->cols != k->input_dim)
    return pk_fail(PK_EINVAL, "%s: X has %zu columns but the %s kernel takes %zu inputs", fn,
                   X->cols, k->vt->name, k->input_dim);
  if (per != cols_per(k))
    return pk_fail(PK_EINVAL, "%s: the %s kernel's Gram is not square per example (outputs "
                   "= 'diagonal'): use outputs = 'block' or 'trace'", fn, k->vt->name);
  if (per > 1 && Y->cols != per)
    return pk_fail(PK_EINVAL, "%s: the %s kernel has %zu outputs per example (block mode), "
                   "so Y must have %zu columns, not %zu", fn, k->vt->name, per, per, Y->cols);
  if ((bad = first_bad_row(X)) != (size_t)-1)
    return pk_fail(PK_EINVAL, "%s: X has NaN or infinite values (row %zu)", fn, bad + 1);
  if ((bad = first_bad_row(Y)) != (size_t)-1)
    return pk_fail(PK_EINVAL, "%s: Y has NaN or infinite values (row %zu)", fn, bad + 1);
  if (f0) {
    if (f0->rows != Y->rows || f0->cols != Y->cols)
      return pk_fail(PK_EINVAL, "%s: f0 is %zu x %zu but Y is %zu x %zu", fn, f0->rows,
                     f0->cols, Y->rows, Y->cols);
    if ((bad = first_bad_row(f0)) != (size_t)-1)
      return pk_fail(PK_EINVAL, "%s: f0 has NaN or infinite values (row %zu)", fn, bad + 1);
  }
  if ((st = pk_calloc((void **)&r, 1, sizeof *r, "a kernel regressor"))) return st;
  r->kind = kind;
  r->kernel = k;
  r->per = per;
  r->outs = Y->cols;
  r->has_f0 = f0 != NULL;
  if ((st = pk_matrix_copy(&r->X, X))) {
    pk_regressor_free(r);
    return st;
  }
  *out = r;
  return PK_OK;
}

/* K(X, X), checked to be finite */
static pk_status train_gram(pk_regressor *r, const pk_call_opts *o, pk_matrix **G)
{
  pk_status st = pk_kernel_gram(r->kernel, r->X, r->X, o, G);
  if (st) return st;
  if (!pk_all_finite((*G)->data, (*G)->rows * (*G)->cols)) {
    pk_matrix_free(*G);
    *G = NULL;
    return pk_fail(PK_ENUMERIC, "%s: the Gram K(X, X) of the %s kernel has NaN or infinite "
                   "entries", kind_names[r->kind], r->kernel->vt->name);
  }
  return PK_OK;
}

/* The targets T (N x m) of the Gram's rows: Y itself, or with K outputs
 * per example the rows of Y stacked (the same row-major buffer). For
 * gradient flow T = Y - f0. */
static pk_status targets(const pk_regressor *r, const pk_matrix *Y, const pk_matrix *f0,
                         pk_matrix **T)
{
  size_t N = r->X->rows * r->per, m = r->outs / r->per, i;
  pk_status st = pk_matrix_alloc(T, N, m, "the regression targets");
  if (st) return st;
  for (i = 0; i < N * m; i++) (*T)->data[i] = Y->data[i] - (f0 ? f0->data[i] : 0.0);
  return PK_OK;
}

/* a = V diag(h) V^T T with V's eigenvectors the rows of E (N x N) */
static pk_status eig_apply(const double *E, const double *h, const pk_matrix *T, pk_matrix *a)
{
  size_t N = T->rows, m = T->cols, i, j;
  double *P;
  pk_status st = pk_alloc((void **)&P, N * m, sizeof(double), "the eigenbasis coordinates");
  if (st) return st;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)m, (int)N, 1.0, E,
              (int)N, T->data, (int)m, 0.0, P, (int)m);
  for (i = 0; i < N; i++)
    for (j = 0; j < m; j++) P[i * m + j] *= h[i];
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)N, (int)m, (int)N, 1.0, E, (int)N,
              P, (int)m, 0.0, a->data, (int)m);
  free(P);
  return PK_OK;
}

/* the cutoff below which an eigenvalue counts as zero */
static double eig_cut(const double *w, size_t N)
{
  double big = N ? fmax(fabs(w[0]), fabs(w[N - 1])) : 0;
  return (double)N * DBL_EPSILON * big;
}

/* alpha = (G + lam I)^-1 T. G is consumed: it ends as the Cholesky factor
 * or the eigenvectors, which a GP keeps. */
static pk_status solve_regularized(pk_regressor *r, pk_matrix *G, double lam, const pk_matrix *T)
{
  size_t N = G->rows, m = T->cols, i, j, dropped = 0;
  double *dg = NULL, *Bt = NULL, *w, cut;
  char msg[400];
  lapack_int info;
  pk_status st;
  if ((st = pk_alloc((void **)&dg, N + N * m, sizeof(double), "the ridge solve"))) return st;
  Bt = dg + N;
  for (i = 0; i < N; i++) {
    G->data[i * N + i] += lam;
    dg[i] = G->data[i * N + i];
  }
  /* Column-major 'L' is the row-major upper triangle: dpotrf leaves the
   * strict lower one, so with the diagonal saved G can be rebuilt */
  info = LAPACKE_dpotrf_work(LAPACK_COL_MAJOR, 'L', (lapack_int)N, G->data, (lapack_int)N);
  if ((st = pk_matrix_alloc(&r->alpha, N, m, "the coefficients"))) goto done;
  if (info == 0) {
    for (i = 0; i < N; i++)            /* B = T in column-major order */
      for (j = 0; j < m; j++) Bt[j * N + i] = T->data[i * m + j];
    info = LAPACKE_dpotrs_work(LAPACK_COL_MAJOR, 'L', (lapack_int)N, (lapack_int)m, G->data,
                               (lapack_int)N, Bt, (lapack_int)N);
    if (info != 0) {
      st = pk_fail(PK_ENUMERIC, "%s: dpotrs failed (info %d)", kind_names[r->kind], (int)info);
      goto done;
    }
    for (i = 0; i < N; i++)
      for (j = 0; j < m; j++) r->alpha->data[i * m + j] = Bt[j * N + i];
    r->factor = FACTOR_CHOL;
  } else if (info > 0) {
    int pivot = (int)info;
    for (i = 0; i < N; i++) G->data[i * N + i] = dg[i];
    w = dg;                            /* the diagonal is no longer needed */
    if ((st = pk_syev(G->data, N, 'U', w, kind_names[r->kind]))) goto done;
    cut = eig_cut(w, N);
    for (i = 0; i < N; i++)
      if (fabs(w[i]) > cut) Bt[i] = 1 / w[i];
      else { Bt[i] = 0; dropped++; }
    if ((st = eig_apply(G->data, Bt, T, r->alpha))) goto done;
    snprintf(msg, sizeof msg, "%s: the regularized Gram is not numerically positive definite "
             "(Cholesky failed at column %d; smallest eigenvalue %.3g): solved through its "
             "eigendecomposition, dropping %zu eigenvalues of size at most %.3g",
             kind_names[r->kind], pivot, w[0], dropped, cut);
    if ((st = set_warning(r, msg))) goto done;
    if ((st = pk_matrix_alloc(&r->winv, N, 1, "the inverse eigenvalues"))) goto done;
    memcpy(r->winv->data, Bt, N * sizeof(double));
    r->factor = FACTOR_EIG;
  } else {
    st = pk_fail(PK_ENUMERIC, "%s: dpotrf failed (info %d)", kind_names[r->kind], (int)info);
    goto done;
  }
  if (!pk_all_finite(r->alpha->data, N * m))
    st = pk_fail(PK_ENUMERIC, "%s: the coefficients are not finite", kind_names[r->kind]);
done:
  free(dg);
  return st;
}

static pk_status check_positive(const char *fn, const char *name, double v)
{
  if (!(v > 0) || !isfinite(v))
    return pk_fail(PK_EINVAL, "%s: %s must be a positive finite number, got %g", fn, name, v);
  return PK_OK;
}

static pk_status fit_regularized(pk_regressor **out, pk_regressor_kind kind,
                                 const pk_kernel *k, const pk_matrix *X, const pk_matrix *Y,
                                 double lam, const pk_call_opts *o)
{
  pk_regressor *r;
  pk_matrix *G = NULL, *T = NULL;
  pk_status st;
  *out = NULL;
  if ((st = check_positive(kind_names[kind], kind == PK_REGRESSOR_GP ? "noise" : "lambda", lam)))
    return st;
  if ((st = fit_begin(&r, kind, k, X, Y, NULL))) return st;
  r->param[0] = lam;
  /* LAPACK's solve cannot be interrupted: a Ctrl-C during it stops the fit after it */
  if (!(st = targets(r, Y, NULL, &T)) && !(st = train_gram(r, o, &G)) &&
      !(st = solve_regularized(r, G, lam, T)) &&
      !(st = pk_cancelled(o) ? pk_fail(PK_ECANCEL, "%s: interrupted", kind_names[kind]) : PK_OK)) {
    if (kind == PK_REGRESSOR_GP) {
      r->F = G;       /* the factor predictive variances need */
      G = NULL;
    } else {
      r->factor = FACTOR_NONE;
      pk_matrix_free(r->winv);
      r->winv = NULL;
    }
  }
  pk_matrix_free(G);
  pk_matrix_free(T);
  if (st) {
    pk_regressor_free(r);
    return st;
  }
  *out = r;
  return PK_OK;
}

pk_status pk_ridge_fit(pk_regressor **out, const pk_kernel *k, const pk_matrix *X,
                       const pk_matrix *Y, double lambda, const pk_call_opts *o)
{
  return fit_regularized(out, PK_REGRESSOR_RIDGE, k, X, Y, lambda, o);
}

pk_status pk_gp_fit(pk_regressor **out, const pk_kernel *k, const pk_matrix *X,
                    const pk_matrix *Y, double noise, const pk_call_opts *o)
{
  return fit_regularized(out, PK_REGRESSOR_GP, k, X, Y, noise, o);
}

pk_status pk_gradient_flow_fit(pk_regressor **out, const pk_kernel *k, const pk_matrix *X,
                               const pk_matrix *Y, double lr, double t, const pk_matrix *f0,
                               const pk_call_opts *o)
{
  pk_regressor *r;
  pk_matrix *G = NULL, *T = NULL;
  double *w = NULL, c, cut;
  size_t N, i;
  pk_status st;
  *out = NULL;
  if ((st = check_positive("gradient_flow", "lr", lr))) return st;
  if (!(t >= 0))
    return pk_fail(PK_EINVAL, "gradient_flow: t must be >= 0 (math.huge for the limit), got %g",
                   t);
  if ((st = fit_begin(&r, PK_REGRESSOR_FLOW, k, X, Y, f0))) return st;
  r->param[0] = lr;
  r->param[1] = t;
  N = X->rows * r->per;
  /* dL/df for the mean loss (1/n) sum 1/2 ||f_i - y_i||^2 over n examples */
  c = lr * t / (double)X->rows;
  if ((st = targets(r, Y, f0, &T)) || (st = train_gram(r, o, &G))) goto done;
  if ((st = pk_alloc((void **)&w, 2 * N, sizeof(double), "gradient_flow"))) goto done;
  if ((st = pk_syev(G->data, N, 'U', w, "gradient_flow"))) goto done;
  if (pk_cancelled(o)) {          /* during the eigendecomposition, which runs to its end */
    st = pk_fail(PK_ECANCEL, "gradient_flow: interrupted");
    goto done;
  }
  cut = eig_cut(w, N);
  for (i = 0; i < N; i++) {
    double h, l = w[i];
    if (isinf(t)) {
      /* the limit is the pseudo-inverse: eigenvalues 0 up to rounding are
       * dropped; a truly negative one makes the flow run away */
      if (l < -cut) {
        st = pk_fail(PK_ENUMERIC, "gradient_flow: the Gram has eigenvalue %g < 0 (it is not "
                     "positive semidefinite), so the flow diverges as t -> inf", l);
        goto done;
      }
      h = l > cut ? 1 / l : 0;
    } else if (fabs(l) <= cut) {
      /* an eigenvalue 0 up to rounding: the l -> 0 limit of the next line,
       * so a rounding residue below 0 cannot make exp overflow */
      h = c;
    } else {
      /* (1 - exp(-c l)) / l, accurate for small c l through expm1 */
      h = c == 0 ? 0 : -expm1(-c * l) / l;
    }
    w[N + i] = h;
  }
  if ((st = pk_matrix_alloc(&r->alpha, N, T->cols, "the coefficients")) ||
      (st = eig_apply(G->data, w + N, T, r->alpha)))
    goto done;
  if (!pk_all_finite(r->alpha->data, N * T->cols))
    st = pk_fail(PK_ENUMERIC, "gradient_flow: the flow overflows by t = %g (the Gram's "
                 "eigenvalue %g < 0 makes exp(%g) too large)", t, w[0], -c * w[0]);
done:
  free(w);
  pk_matrix_free(G);
  pk_matrix_free(T);
  if (st) {
    pk_regressor_free(r);
    return st;
  }
  *out = r;
  return PK_OK;
}

/* ---- prediction ------------------------------------------------------ */

/* rows [i0, i1) of A as a stack view (kernels only read it) */
static pk_matrix rows_of(const pk_matrix *A, size_t i0, size_t i1)
{
  pk_matrix v;
  v.rows = i1 - i0;
  v.cols = A->cols;
  v.data = A->data + i0 * A->cols;
  v.base = NULL;
  v.refs = 1;
  return v;
}

/* variances of one tile: Kq (Br x N) holds K(xq, X), kd the K(xq, xq) */
static pk_status tile_var(const pk_regressor *r, pk_matrix *Kq, const double *kd, double *v)
{
  size_t B = Kq->rows, N = Kq->cols, i, j;
  if (r->factor == FACTOR_CHOL) {
    /* row-major Kq is column-major K(X, xq): solve L V = K(X, xq) in place */
    cblas_dtrsm(CblasColMajor, CblasLeft, CblasLower, CblasNoTrans, CblasNonUnit, (int)N,
                (int)B, 1.0, r->F->data, (int)N, Kq->data, (int)N);
    for (i = 0; i < B; i++) {
      const double *q = Kq->data + i * N;
      double s = 0;
      for (j = 0; j < N; j++) s += q[j] * q[j];
      v[i] = kd[i] - s;
    }
  } else {
    double *P;
    pk_status st = pk_alloc((void **)&P, B * N, sizeof(double), "the predictive variances");
    if (st) return st;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)N, (int)N, 1.0,
                Kq->data, (int)N, r->F->data, (int)N, 0.0, P, (int)N);
    for (i = 0; i < B; i++) {
      const double *q = P + i * N;
      double s = 0;
      for (j = 0; j < N; j++) s += r->winv->data[j] * q[j] * q[j];
      v[i] = kd[i] - s;
    }
    free(P);
  }
  for (i = 0; i < B; i++)
    if (v[i] < 0) v[i] = 0;    /* rounding below zero; NaN stays NaN */
  return PK_OK;
}

pk_status pk_regressor_predict(const pk_regressor *r, const pk_matrix *Xq, const pk_matrix *f0q,
                               const pk_call_opts *o, pk_matrix **mean, pk_matrix **var)
{
  const pk_kernel *k = r->kernel;
  size_t q = Xq->rows, N = r->alpha->rows, m = r->alpha->cols, per = r->per, i0, B, i, j;
  size_t budget = k->memory ? k->memory : (size_t)256 << 20, rowbytes;
  int want_var = var != NULL && r->kind == PK_REGRESSOR_GP;
  pk_status st;
  *mean = NULL;
  if (var) *var = NULL;
  if (Xq->cols != r->X->cols)
    return pk_fail(PK_EINVAL, "predict: Xq has %zu columns but the model was fitted on %zu",
                   Xq->cols, r->X->cols);
  if (r->has_f0 && !f0q)
    return pk_fail(PK_EINVAL, "predict: this model was fitted with f0, so it needs f0 at the "
                   "queries too: predict(Xq, f0q)");
  if (!r->has_f0 && f0q)
    return pk_fail(PK_EINVAL, "predict: this model was fitted without f0; f0q has no meaning");
  if (f0q && (f0q->rows != q || f0q->cols != r->outs))
    return pk_fail(PK_EINVAL, "predict: f0q is %zu x %zu, expected %zu x %zu", f0q->rows,
                   f0q->cols, q, r->outs);
  if (budget > pk_memory_limit()) budget = pk_memory_limit();   /* smaller tiles, not an error */
  if ((st = pk_matrix_alloc(mean, q, r->outs, "the predictions"))) return st;
  if (want_var && (st = pk_matrix_alloc(var, q, r->outs, "the predictive variances"))) goto fail;
  /* tiles of query rows: the cross Gram (and the variance scratch) within
   * the kernel's working-set budget */
  rowbytes = per * N * sizeof(double) * (want_var && r->factor == FACTOR_EIG ? 2 : 1);
  B = budget / (rowbytes ? rowbytes : 1);
  if (B < 1) B = 1;
  for (i0 = 0; i0 < q; i0 += B) {
    size_t i1 = i0 + B < q ? i0 + B : q;
    pk_matrix view = rows_of(Xq, i0, i1), *Kq = NULL, *kd = NULL;
    if ((st = pk_kernel_gram(k, &view, r->X, o, &Kq))) goto fail;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Kq->rows, (int)m, (int)N, 1.0,
                Kq->data, (int)N, r->alpha->data, (int)m, 0.0, (*mean)->data + i0 * r->outs,
                (int)m);
    if (want_var) {
      double *v = NULL;
      if (!(st = pk_kernel_diag(k, &view, o, &kd)) &&
          !(st = pk_alloc((void **)&v, Kq->rows, sizeof(double), "the predictive variances")) &&
          !(st = tile_var(r, Kq, kd->data, v))) {
        /* with K outputs the tile's rows are (example, output) pairs, the
         * layout of var's rows; with one, every output shares the variance */
        if (per > 1)
          memcpy((*var)->data + i0 * r->outs, v, Kq->rows * sizeof(double));
        else
          for (i = 0; i < Kq->rows; i++)
            for (j = 0; j < r->outs; j++) (*var)->data[(i0 + i) * r->outs + j] = v[i];
      }
      free(v);
      pk_matrix_free(kd);
    }
    pk_matrix_free(Kq);
    if (st) goto fail;
  }
  if (f0q)
    for (i = 0; i < q * r->outs; i++) (*mean)->data[i] += f0q->data[i];
  return PK_OK;
fail:
  pk_matrix_free(*mean);
  *mean = NULL;
  if (var) {
    pk_matrix_free(*var);
    *var = NULL;
  }
  return st;
}

/* ---- files ----------------------------------------------------------- */

static pk_status write_model(pk_writer *w, const void *obj)
{
  const pk_regressor *r = obj;
  pk_kernel_spec s;
  size_t len = r->warning ? strlen(r->warning) : 0;
  int i;
  if (!pk_kernel_get_spec(r->kernel, &s))
    return pk_fail(PK_EINVAL, "save: kernel not serializable");
  pk_put_u32(w, (uint32_t)r->kind);
  pk_put_u32(w, s.type);
  for (i = 0; i < 4; i++) pk_put_f64(w, s.p[i]);
  pk_put_f64(w, r->param[0]);
  pk_put_f64(w, r->param[1]);
  pk_put_u64(w, r->per);
  pk_put_u64(w, r->outs);
  pk_put_u32(w, (uint32_t)r->has_f0);
  pk_put_u32(w, (uint32_t)r->factor);
  pk_matrix_write_payload(w, r->X);
  pk_matrix_write_payload(w, r->alpha);
  if (r->factor != FACTOR_NONE) pk_matrix_write_payload(w, r->F);
  if (r->factor == FACTOR_EIG) pk_matrix_write_payload(w, r->winv);
  pk_put_u64(w, len);
  pk_put_bytes(w, r->warning ? r->warning : "", len);
  return PK_OK;
}

pk_status pk_regressor_save(const pk_regressor *r, const char *path)
{
  pk_kernel_spec s;
  if (!pk_kernel_get_spec(r->kernel, &s)) {
    if (strcmp(r->kernel->vt->name, "precomputed") == 0)
      return pk_fail(PK_EINVAL, "save: this %s model's kernel is a precomputed Gram, which a "
                     "model file cannot hold; save the Gram and X and refit instead",
                     kind_names[r->kind]);
    return pk_fail(PK_EINVAL, "save: this %s model's %s kernel cannot be saved: a model file "
                   "holds only kernels defined by parameters (linear, rbf, laplacian, poly, "
                   "ntk, nngp)", kind_names[r->kind], r->kernel->vt->name);
  }
  return pk_save_object(path, PK_TAG_REGRESSOR, write_model, r);
}

static pk_status read_shape(pk_reader *rd, pk_matrix **m, size_t rows, size_t cols,
                            const char *what)
{
  pk_status st = pk_matrix_read_payload(rd, m);
  if (st) return st;
  if ((*m)->rows != rows || (*m)->cols != cols)
    return pk_fail(PK_EFORMAT, "size check failed: %s is %zu x %zu, expected %zu x %zu", what,
                   (*m)->rows, (*m)->cols, rows, cols);
  return PK_OK;
}

static pk_status read_model(pk_reader *rd, pk_regressor *r)
{
  pk_kernel_spec s, s2;
  size_t N, len;
  uint32_t kind, factor, has_f0;
  int i;
  pk_status st;
  kind = pk_get_u32(rd);
  s.type = pk_get_u32(rd);
  for (i = 0; i < 4; i++) s.p[i] = pk_get_f64(rd);
  r->param[0] = pk_get_f64(rd);
  r->param[1] = pk_get_f64(rd);
  r->per = (size_t)pk_get_u64(rd);
  r->outs = (size_t)pk_get_u64(rd);
  has_f0 = pk_get_u32(rd);
  r->has_f0 = has_f0 != 0;
  factor = pk_get_u32(rd);
  if (rd->err) return pk_fail(PK_EFORMAT, "file is truncated (reading the model header)");
  if (kind < PK_REGRESSOR_RIDGE || kind > PK_REGRESSOR_FLOW)
    return pk_fail(PK_EFORMAT, "saved model: unknown kind %u", (unsigned)kind);
  r->kind = (pk_regressor_kind)kind;
  if (has_f0 > 1 || (has_f0 && kind != PK_REGRESSOR_FLOW))
    return pk_fail(PK_EFORMAT, "saved model: bad f0 flag %u for a %s model", (unsigned)has_f0,
                   kind_names[kind]);
  if (kind == PK_REGRESSOR_GP ? factor != FACTOR_CHOL && factor != FACTOR_EIG
                              : factor != FACTOR_NONE)
    return pk_fail(PK_EFORMAT, "saved model: bad factor code %u for a %s model",
                   (unsigned)factor, kind_names[kind]);
  r->factor = (int)factor;
  if (r->per != 1 || r->outs == 0 || r->outs > PK_MAX_DIM)
    return pk_fail(PK_EFORMAT, "saved model: bad output counts (%zu per example, %zu outputs)",
                   r->per, r->outs);
  if ((st = pk_kernel_from_spec(&s, &r->own))) return st;
  r->kernel = r->own;
  /* the kernel must describe itself as the file does, bit for bit (unused
   * parameters zero), or the model would not save back to what it was */
  if (!pk_kernel_get_spec(r->kernel, &s2) || s2.type != s.type ||
      memcmp(s2.p, s.p, sizeof s.p) != 0)
    return pk_fail(PK_EFORMAT, "saved model: kernel parameters that the kernel does not keep");
  if ((st = pk_matrix_read_payload(rd, &r->X))) return st;
  if (r->X->rows == 0) return pk_fail(PK_EFORMAT, "saved model: no training inputs");
  N = r->X->rows * r->per;
  if ((st = read_shape(rd, &r->alpha, N, r->outs / r->per, "the coefficients"))) return st;
  if (factor != FACTOR_NONE && (st = read_shape(rd, &r->F, N, N, "the GP factor"))) return st;
  if (factor == FACTOR_EIG && (st = read_shape(rd, &r->winv, N, 1, "the GP weights")))
    return st;
  if ((st = pk_get_count(rd, 1, &len, "the warning"))) return st;
  if (len) {
    /* saved with strlen: a NUL inside would not save back */
    if (memchr(rd->p + rd->pos, '\0', len))
      return pk_fail(PK_EFORMAT, "value check failed: the warning holds a NUL byte");
    if ((st = pk_alloc((void **)&r->warning, len + 1, 1, "the warning"))) return st;
    memcpy(r->warning, rd->p + rd->pos, len);
    r->warning[len] = '\0';
    rd->pos += len;
  }
  return PK_OK;
}

const pk_matrix *pk_regressor_X(const pk_regressor *r) { return r->X; }

pk_status pk_regressor_write_payload(pk_writer *w, const void *r)
{
  return write_model(w, r);
}

pk_status pk_regressor_load_mem(pk_regressor **out, const char *name, const unsigned char *buf,
                                size_t len)
{
  pk_reader rd;
  pk_regressor *r;
  pk_status st;
  *out = NULL;
  if ((st = pk_load_object_mem(name, buf, len, PK_TAG_REGRESSOR, &rd))) return st;
  if ((st = pk_calloc((void **)&r, 1, sizeof *r, "a kernel regressor"))) return st;
  if ((st = read_model(&rd, r)) || (st = pk_reader_end(&rd, name, write_model, r))) {
    pk_regressor_free(r);
    return pk_fail_in(st, name);
  }
  *out = r;
  return PK_OK;
}

pk_status pk_regressor_load(pk_regressor **out, const char *path)
{
  unsigned char *buf;
  size_t len;
  pk_status st;
  *out = NULL;
  if ((st = pk_read_file(path, &buf, &len))) return st;
  st = pk_regressor_load_mem(out, path, buf, len);
  free(buf);
  return st;
}
