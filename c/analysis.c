/* analysis.c - looking at Grams: the symmetric eigendecomposition,
 * kernel-target alignment and centered kernel alignment. */
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <math.h>
#include <cblas.h>
#include "pk_linalg.h"

pk_status pk_eigh(const pk_matrix *G, pk_matrix **w, pk_matrix **V)
{
  size_t n = G->rows, i, j, bi = 0, bj = 0;
  double *a, scale, worst = 0;
  pk_status st;
  *w = *V = NULL;
  if (G->cols != n)
    return pk_fail(PK_EINVAL, "eigh: G is %zu x %zu, not square", G->rows, G->cols);
  if (!pk_all_finite(G->data, n * n))
    return pk_fail(PK_EINVAL, "eigh: G has NaN or infinite entries");
  scale = pk_matrix_max_abs(G);
  for (i = 0; i < n; i++)
    for (j = 0; j < i; j++) {
      double e = fabs(G->data[i * n + j] - G->data[j * n + i]);
      if (e > worst) { worst = e; bi = i; bj = j; }
    }
  /* Grams computed in floating point may differ from their transpose by
   * rounding; anything beyond that is not a symmetric matrix */
  if (worst > 1e-8 * scale)
    return pk_fail(PK_EINVAL, "eigh: G is not symmetric: G[%zu,%zu] - G[%zu,%zu] = %g "
                   "(max |G| = %g)", bi + 1, bj + 1, bj + 1, bi + 1,
                   G->data[bi * n + bj] - G->data[bj * n + bi], scale);
  if ((st = pk_matrix_alloc(w, n, 1, "eigh: the eigenvalues")) ||
      (st = pk_matrix_alloc(V, n, n, "eigh: the eigenvectors")))
    goto fail;
  if ((st = pk_alloc((void **)&a, n * n > 0 ? n * n : 1, sizeof(double), "eigh: a copy of G")))
    goto fail;
  for (i = 0; i < n; i++)         /* the symmetric part */
    for (j = 0; j <= i; j++)
      a[i * n + j] = 0.5 * (G->data[i * n + j] + G->data[j * n + i]);
  if ((st = pk_syev(a, n, 'U', (*w)->data, "eigh"))) {
    free(a);
    goto fail;
  }
  for (i = 0; i < n; i++)         /* row i of a is eigenvector i: V = a^T */
    for (j = 0; j < n; j++) (*V)->data[j * n + i] = a[i * n + j];
  free(a);
  return PK_OK;
fail:
  pk_matrix_free(*w);
  pk_matrix_free(*V);
  *w = *V = NULL;
  return st;
}

pk_status pk_alignment(const pk_matrix *G, const pk_matrix *Y, double *out)
{
  size_t n = G->rows, k = Y->cols, i;
  double *Ys, *GY, *YtY, sY, num = 0, nG, nYY = 0;
  pk_status st;
  *out = NAN;
  if (G->cols != n)
    return pk_fail(PK_EINVAL, "alignment: G is %zu x %zu, not square", G->rows, G->cols);
  if (Y->rows != n)
    return pk_fail(PK_EINVAL, "alignment: G is %zu x %zu but Y has %zu rows", n, n, Y->rows);
  if (n == 0 || k == 0)
    return pk_fail(PK_EINVAL, "alignment: empty data (G %zu x %zu, Y %zu x %zu)", n, n,
                   Y->rows, k);
  nG = pk_matrix_norm(G);
  sY = pk_matrix_max_abs(Y);
  if (nG == 0) return pk_fail(PK_EINVAL, "alignment: undefined for G = 0");
  if (sY == 0) return pk_fail(PK_EINVAL, "alignment: undefined for Y = 0");
  if (!isfinite(nG) || !isfinite(sY)) return PK_OK;   /* NaN: no number to give */
  /* Y scaled by 1/max|Y| (the alignment does not change): YY^T cannot overflow */
  if ((st = pk_alloc((void **)&Ys, n * k + n * k + k * k, sizeof(double), "alignment")))
    return st;
  GY = Ys + n * k;
  YtY = GY + n * k;
  for (i = 0; i < n * k; i++) Ys[i] = Y->data[i] / sY;
  /* <G, YY^T>_F = sum((G Y) .* Y); ||YY^T||_F = ||Y^T Y||_F */
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)k, (int)n, 1.0 / nG,
              G->data, (int)n, Ys, (int)k, 0.0, GY, (int)k);
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)k, (int)k, (int)n, 1.0, Ys,
              (int)k, Ys, (int)k, 0.0, YtY, (int)k);
  for (i = 0; i < n * k; i++) num += GY[i] * Ys[i];
  for (i = 0; i < k * k; i++) nYY += YtY[i] * YtY[i];
  free(Ys);
  *out = num / sqrt(nYY);
  return PK_OK;
}

pk_status pk_cka(const pk_matrix *G1, const pk_matrix *G2, double *out)
{
  size_t n = G1->rows, i, j;
  double *m, *r1, *c1, *r2, *c2, a1, a2, t1 = 0, t2 = 0, s11 = 0, s22 = 0, s12 = 0, u1, u2;
  pk_status st;
  *out = NAN;
  if (G1->cols != n)
    return pk_fail(PK_EINVAL, "cka: G1 is %zu x %zu, not square", G1->rows, G1->cols);
  if (G2->rows != G1->rows || G2->cols != G1->cols)
    return pk_fail(PK_EINVAL, "cka: G1 is %zu x %zu but G2 is %zu x %zu", n, n, G2->rows,
                   G2->cols);
  if (n < 2)
    return pk_fail(PK_EINVAL, "cka: needs at least 2 examples (centering a %zu x %zu Gram "
                   "leaves 0)", n, n);
  a1 = pk_matrix_max_abs(G1);
  a2 = pk_matrix_max_abs(G2);
  if (!isfinite(a1) || !isfinite(a2)) return PK_OK;   /* NaN: no number to give */
  /* CKA does not change with the scale of either Gram: divide by the
   * largest entries so no square can overflow */
  u1 = a1 > 0 ? 1 / a1 : 0;
  u2 = a2 > 0 ? 1 / a2 : 0;
  if ((st = pk_calloc((void **)&m, 4 * n, sizeof(double), "cka"))) return st;
  r1 = m; c1 = m + n; r2 = m + 2 * n; c2 = m + 3 * n;
  for (i = 0; i < n; i++)
    for (j = 0; j < n; j++) {
      double g1 = G1->data[i * n + j] * u1, g2 = G2->data[i * n + j] * u2;
      r1[i] += g1; c1[j] += g1;
      r2[i] += g2; c2[j] += g2;
    }
  for (i = 0; i < n; i++) {
    t1 += r1[i]; t2 += r2[i];
    r1[i] /= (double)n; c1[i] /= (double)n; r2[i] /= (double)n; c2[i] /= (double)n;
  }
  t1 /= (double)n * (double)n;
  t2 /= (double)n * (double)n;
  /* (H G H)_ij = g_ij - rowmean_i - colmean_j + mean */
  for (i = 0; i < n; i++)
    for (j = 0; j < n; j++) {
      double x = G1->data[i * n + j] * u1 - r1[i] - c1[j] + t1;
      double y = G2->data[i * n + j] * u2 - r2[i] - c2[j] + t2;
      s11 += x * x; s22 += y * y; s12 += x * y;
    }
  free(m);
  if (s11 == 0 || s22 == 0)
    return pk_fail(PK_EINVAL, "cka: undefined: the centered %s is zero (a Gram that is "
                   "constant up to row and column offsets)", s11 == 0 ? "G1" : "G2");
  *out = s12 / sqrt(s11 * s22);
  return PK_OK;
}
