/* linalg.c - the dense linear algebra that several rooms share: the cross
 * products X1 X2^T of Gram computations (dsyrk for a symmetric one, in
 * blocks that see the cancel flag), mirroring a computed upper triangle,
 * and the symmetric eigendecomposition (dsyevd) with its workspace
 * counted against the memory limit. */
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <cblas.h>
#include <lapacke.h>
#include "pk_linalg.h"

pk_status pk_cross(const pk_matrix *X1, const pk_matrix *X2, double alpha, int sym, double *out,
                   const pk_call_opts *o, const char *what)
{
  size_t n1 = X1->rows, n2 = X2->rows, d = X1->cols, r0, r1, rows;
  if (n1 == 0 || n2 == 0) return PK_OK;
  if (d == 0) {   /* BLAS wants lda >= 1: the empty sum is 0 */
    memset(out, 0, n1 * n2 * sizeof(double));
    return PK_OK;
  }
  /* blocks of rows of about 2^27 multiply-adds, so that the cancel flag is
   * seen a fraction of a second apart even in a product of minutes (a
   * smaller product is one block, one BLAS call) */
  rows = ((size_t)1 << 27) / (n2 * d + 1);
  if (rows < 64) rows = 64;
  for (r0 = 0; r0 < n1; r0 = r1) {
    size_t m;
    r1 = n1 - r0 > rows ? r0 + rows : n1;
    m = r1 - r0;
    if (pk_cancelled(o)) return pk_fail(PK_ECANCEL, "%s: interrupted", what);
    if (sym) {
      /* the upper triangle of rows r0..r1: a triangle by dsyrk, the
       * columns right of it by dgemm */
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)m, (int)d, alpha,
                  X1->data + r0 * d, (int)d, 0.0, out + r0 * n1 + r0, (int)n1);
      if (r1 < n1)
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)(n1 - r1), (int)d,
                    alpha, X1->data + r0 * d, (int)d, X1->data + r1 * d, (int)d, 0.0,
                    out + r0 * n1 + r1, (int)n1);
    } else {
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n2, (int)d, alpha,
                  X1->data + r0 * d, (int)d, X2->data, (int)d, 0.0, out + r0 * n2, (int)n2);
    }
  }
  return PK_OK;
}

void pk_mirror_upper(double *a, size_t n)
{
  /* in tiles, so both the rows read and the columns written stay in cache */
  const size_t B = 64;
  size_t i0, j0, i, j;
  for (i0 = 0; i0 < n; i0 += B)
    for (j0 = 0; j0 <= i0; j0 += B) {
      size_t i1 = i0 + B < n ? i0 + B : n, j1 = j0 + B < n ? j0 + B : n;
      for (i = i0; i < i1; i++)
        for (j = j0; j < j1 && j < i; j++) a[i * n + j] = a[j * n + i];
    }
}

pk_status pk_syev(double *a, size_t n, char uplo, double *w, const char *what)
{
  double wq = 0;
  lapack_int iwq = 0, info, lwork, liwork;
  double *work;
  lapack_int *iwork;
  pk_status st;
  if (n == 0) return PK_OK;
  if (n > (size_t)INT_MAX / 8)
    return pk_fail(PK_EINVAL, "%s: %zu x %zu is beyond LAPACK's int sizes", what, n, n);
  info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', uplo, (lapack_int)n, a, (lapack_int)n, w,
                             &wq, -1, &iwq, -1);
  if (info != 0)
    return pk_fail(PK_ENUMERIC, "%s: dsyevd workspace query failed (info %d)", what, (int)info);
  /* dsyevd needs 1 + 6n + 2n^2 doubles, which outgrows int first */
  if (!(wq < (double)INT_MAX) || iwq < 1)
    return pk_fail(PK_ENOMEM, "%s: the eigensolver's workspace for n = %zu exceeds LAPACK's "
                   "int sizes", what, n);
  lwork = (lapack_int)wq;
  liwork = iwq;
  if ((st = pk_alloc((void **)&work, (size_t)lwork, sizeof(double), "the eigensolver workspace")))
    return st;
  if ((st = pk_alloc((void **)&iwork, (size_t)liwork, sizeof(lapack_int),
                     "the eigensolver workspace"))) {
    free(work);
    return st;
  }
  info = LAPACKE_dsyevd_work(LAPACK_COL_MAJOR, 'V', uplo, (lapack_int)n, a, (lapack_int)n, w,
                             work, lwork, iwork, liwork);
  free(work);
  free(iwork);
  if (info != 0)
    return pk_fail(PK_ENUMERIC, "%s: the eigensolver dsyevd failed to converge (info %d)",
                   what, (int)info);
  return PK_OK;
}
