/* layer_dense.c - the fully connected layer behind the seam of layer.h:
 * z = s_w W a + s_b b with W out x in row-major (torch.nn.Linear.weight).
 * Its gradient rows are rank one, g_r = (s_w U_r V_i^T, s_b U_r), so every
 * product of two of them factors into a product of sensitivities times a
 * product of inputs: g_r . g_r' = (U_r . U_r') (s_w^2 V_i . V_j + s_b^2),
 * two GEMMs and a Hadamard product for a whole block, never a gradient. */
#include <string.h>
#include <cblas.h>
#include "pk_net.h"

static size_t dense_work(const pk_layer *ly, size_t n)
{
  (void)ly;
  (void)n;
  return 0;
}

/* C (products of inputs) and, for BLOCK, a whole block of M = U1 U2^T;
 * TRACE and DIAGONAL keep an n1 x n2 M */
static size_t dense_gram_work(const pk_layer *ly, size_t n1, size_t per1, size_t n2, size_t per2,
                              pk_outputs mode)
{
  (void)ly;
  return n1 * n2 + (mode == PK_OUTPUTS_BLOCK ? n1 * per1 * n2 * per2 : n1 * n2);
}

static size_t dense_dot_work(const pk_layer *ly, size_t n, size_t per)
{
  (void)per;
  return n * ly->out;
}

static size_t dense_feat_size(const pk_layer *ly, size_t per)
{
  (void)ly;
  (void)per;
  return 0;
}

static void dense_feat(const pk_layer *ly, const pk_side *s, double *feat, double *work)
{
  (void)ly;
  (void)s;
  (void)feat;
  (void)work;
}

static void dense_forward(const pk_layer *ly, const double *W, const double *b, const double *A,
                          size_t n, double beta, double *Z, double *work)
{
  size_t i, j, din = ly->in, dout = ly->out;
  (void)work;
  if (n == 0) return;
  if (b) {
    double sb = ly->sb;
    if (beta == 0) {
      for (i = 0; i < n; i++)
        for (j = 0; j < dout; j++) Z[i * dout + j] = sb * b[j];
    } else {
      for (i = 0; i < n; i++)
        for (j = 0; j < dout; j++) Z[i * dout + j] = beta * Z[i * dout + j] + sb * b[j];
    }
    beta = 1.0;
  }
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)dout, (int)din, ly->sw, A,
              (int)din, W, (int)din, beta, Z, (int)dout);
}

static void dense_backward_input(const pk_layer *ly, const double *W, const double *G, size_t n,
                                 double *Gin, double *work)
{
  (void)work;
  if (n == 0) return;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)ly->in, (int)ly->out,
              ly->sw, G, (int)ly->out, W, (int)ly->in, 0.0, Gin, (int)ly->in);
}

static void dense_backward_params(const pk_layer *ly, const double *A, const double *G, size_t n,
                                  double scale, double *gW, double *gb, double *work)
{
  size_t i, j, din = ly->in, dout = ly->out;
  double sb = scale * ly->sb;
  (void)work;
  for (j = 0; j < dout; j++) gb[j] = 0;
  if (n == 0) {
    memset(gW, 0, ly->nw * sizeof *gW);
    return;
  }
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)dout, (int)din, (int)n,
              scale * ly->sw, G, (int)dout, A, (int)din, 0.0, gW, (int)din);
  for (i = 0; i < n; i++)
    for (j = 0; j < dout; j++) gb[j] += G[i * dout + j];
  for (j = 0; j < dout; j++) gb[j] *= sb;
}

/* C (r x c, leading dimension ldc) = alpha A1 A2^T + beta C, rows of
 * length d with leading dimension lda. sym: A1 is the first r rows of A2
 * and only the upper triangle of the leading r x r block is wanted, which
 * SYRK computes at half the cost; the rest is a GEMM. */
void pk_prod_nt(const double *A1, size_t r, const double *A2, size_t c, size_t d, size_t lda,
                double alpha, double beta, double *C, size_t ldc, int sym)
{
  if (r == 0 || c == 0) return;
  if (!sym) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)r, (int)c, (int)d, alpha, A1,
                (int)lda, A2, (int)lda, beta, C, (int)ldc);
    return;
  }
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)r, (int)d, alpha, A1, (int)lda, beta,
              C, (int)ldc);
  if (c > r)
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)r, (int)(c - r), (int)d, alpha, A1,
                (int)lda, A2 + r * lda, (int)lda, beta, C + r, (int)ldc);
}

/* out += alpha sum over W and b of g_r . g_r', by the factored form:
 * v_ij = alpha (s_w^2 V1_i . V2_j + s_b^2) times the sensitivity products */
static void dense_gram(const pk_layer *ly, const pk_side *s1, const pk_side *s2, pk_outputs mode,
                       int sym, double alpha, const double *vprod, double *out, size_t ldo,
                       double *work)
{
  size_t n1 = s1->n, n2 = s2->n, p1 = s1->per, p2 = s2->per, din = ly->in, dout = ly->out;
  size_t i, j, k, k2;
  double c = alpha * ly->sw * ly->sw, b = alpha * ly->sb * ly->sb;
  double *C = work, *M = work + n1 * n2;
  if (n1 == 0 || n2 == 0) return;
  if (mode == PK_OUTPUTS_DIAGONAL) sym = 0;
  if (s1->unit && s2->unit && !vprod && (p1 == 1 || mode == PK_OUTPUTS_TRACE)) {
    /* the output layer seen by its own single output (or the trace): the
     * product goes straight into out, the constant after it */
    double mult = mode == PK_OUTPUTS_TRACE ? (double)p1 : 1.0;
    pk_prod_nt(s1->V, n1, s2->V, n2, din, din, mult * c, 1.0, out, ldo, sym);
    if (b != 0)
      for (i = 0; i < n1; i++) {
        double *o = out + i * ldo;
        for (j = sym ? i : 0; j < n2; j++) o[j] += mult * b;
      }
    return;
  }
  if (vprod) {
    for (i = 0; i < n1 * n2; i++) C[i] = c * vprod[i];
  } else {
    pk_prod_nt(s1->V, n1, s2->V, n2, din, din, c, 0.0, C, n2, sym);
  }
  if (s1->unit && s2->unit) {
    /* the output layer seen by the outputs: M is the identity */
    for (i = 0; i < n1; i++)
      for (k = 0; k < p1; k++) {
        double *o = out + (i * p1 + k) * ldo + (mode == PK_OUTPUTS_BLOCK ? k : 0);
        size_t step = mode == PK_OUTPUTS_BLOCK ? p2 : 1;
        for (j = sym ? i : 0; j < n2; j++) o[j * step] += C[i * n2 + j] + b;
      }
    return;
  }
  if (s1->unit || s2->unit) {
    /* one side's rows are unit vectors: M is the other side's U, read
     * transposed (the decomposition's queries at the output layer):
     * M[(i,k), (j,k2)] = U2[(j,k2), k] or U1[(i,k), k2] */
    for (i = 0; i < n1; i++)
      for (k = 0; k < p1; k++) {
        const double *cr = C + i * n2, *u1 = s1->U + (i * p1 + k) * dout;
        double *o = out + (mode == PK_OUTPUTS_TRACE ? i : i * p1 + k) * ldo;
        if (mode == PK_OUTPUTS_BLOCK) {
          if (s1->unit)
            for (j = 0; j < n2; j++) {
              double v = cr[j] + b;
              const double *u2 = s2->U + j * p2 * dout + k;
              for (k2 = 0; k2 < p2; k2++) o[j * p2 + k2] += u2[k2 * dout] * v;
            }
          else
            for (j = 0; j < n2; j++) {
              double v = cr[j] + b;
              for (k2 = 0; k2 < p2; k2++) o[j * p2 + k2] += u1[k2] * v;
            }
        } else {
          /* the same k on both sides */
          if (s1->unit)
            for (j = 0; j < n2; j++) o[j] += s2->U[(j * p2 + k) * dout + k] * (cr[j] + b);
          else
            for (j = 0; j < n2; j++) o[j] += u1[k] * (cr[j] + b);
        }
      }
    return;
  }
  if (mode == PK_OUTPUTS_BLOCK) {
    pk_prod_nt(s1->U, n1 * p1, s2->U, n2 * p2, dout, dout, 1.0, 0.0, M, n2 * p2, sym);
    for (i = 0; i < n1; i++)
      for (k = 0; k < p1; k++) {
        const double *m = M + (i * p1 + k) * n2 * p2;
        double *o = out + (i * p1 + k) * ldo;
        for (j = sym ? i : 0; j < n2; j++) {
          double v = C[i * n2 + j] + b;
          for (k2 = (sym && j == i) ? k : 0; k2 < p2; k2++) o[j * p2 + k2] += m[j * p2 + k2] * v;
        }
      }
  } else if (mode == PK_OUTPUTS_TRACE) {
    /* rows of U viewed as n x (per out): their products sum over k */
    pk_prod_nt(s1->U, n1, s2->U, n2, p1 * dout, p1 * dout, 1.0, 0.0, M, n2, sym);
    for (i = 0; i < n1; i++) {
      const double *m = M + i * n2, *cr = C + i * n2;
      double *o = out + i * ldo;
      for (j = sym ? i : 0; j < n2; j++) o[j] += m[j] * (cr[j] + b);
    }
  } else {
    for (k = 0; k < p1; k++) {
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n1, (int)n2, (int)dout, 1.0,
                  s1->U + k * dout, (int)(p1 * dout), s2->U + k * dout, (int)(p2 * dout), 0.0, M,
                  (int)n2);
      for (i = 0; i < n1; i++) {
        const double *m = M + i * n2, *cr = C + i * n2;
        double *o = out + (i * p1 + k) * ldo;
        for (j = 0; j < n2; j++) o[j] += m[j] * (cr[j] + b);
      }
    }
  }
}

static void dense_sqnorm(const pk_layer *ly, const pk_side *s, double *out)
{
  size_t i, k, j, din = ly->in, dout = ly->out;
  for (i = 0; i < s->n; i++) {
    const double *a = s->V + i * din;
    double aa = 0;
    for (j = 0; j < din; j++) aa += a[j] * a[j];
    for (k = 0; k < s->per; k++) {
      const double *d = s->U + (i * s->per + k) * dout;
      double dd = 0;
      for (j = 0; j < dout; j++) dd += d[j] * d[j];
      out[i * s->per + k] += dd * (ly->sw * ly->sw * aa + ly->sb * ly->sb);
    }
  }
}

/* g_r . (W, b) = s_w U_r . (W V_i) + s_b U_r . b */
static void dense_dot_params(const pk_layer *ly, const pk_side *s, const double *W,
                             const double *b, double alpha, double *out, double *work)
{
  size_t i, k, j, dout = ly->out;
  if (s->n == 0) return;
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->n, (int)dout, (int)ly->in, 1.0,
              s->V, (int)ly->in, W, (int)ly->in, 0.0, work, (int)dout);
  for (i = 0; i < s->n; i++)
    for (k = 0; k < s->per; k++) {
      const double *u = s->U + (i * s->per + k) * dout, *t = work + i * dout;
      double tw = 0, tb = 0;
      for (j = 0; j < dout; j++) {
        tw += u[j] * t[j];
        tb += u[j] * b[j];
      }
      out[i * s->per + k] += alpha * (ly->sw * tw + ly->sb * tb);
    }
}

static void dense_grad_rows(const pk_layer *ly, const pk_side *s, double weight, double *out,
                            size_t ldo)
{
  size_t r, a, c, din = ly->in, dout = ly->out, nr = s->n * s->per;
  for (r = 0; r < nr; r++) {
    const double *dv = s->U + r * dout, *av = s->V + (r / s->per) * din;
    double *ow = out + r * ldo + ly->woff, *ob = out + r * ldo + ly->boff;
    for (a = 0; a < dout; a++) {
      double sa = weight * ly->sw * dv[a];
      if (sa != 0)
        for (c = 0; c < din; c++) ow[a * din + c] += sa * av[c];
      ob[a] += weight * ly->sb * dv[a];
    }
  }
}

const pk_layer_vt pk_dense_vt = {
  "dense", PK_LAYER_DENSE, 1,
  dense_work, dense_gram_work, dense_dot_work, dense_feat_size, dense_feat,
  dense_forward, dense_backward_input, dense_backward_params,
  dense_gram, dense_sqnorm, dense_dot_params, dense_grad_rows
};
