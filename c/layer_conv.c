/* layer_conv.c - the convolution and average-pooling layers behind the
 * seam of layer.h. A conv layer is torch.nn.Conv2d's cross-correlation:
 * W is C_out x (C_in kh kw) row-major (Conv2d.weight flattened), and with
 * the im2col matrix P_i of an example (one row of C_in kh kw values per
 * output position p, zeros where the window leaves the padded image)
 *     z_i[c, p] = s_w W[c] . P_i[p] + s_b b[c],
 * so the passes are GEMMs over a chunk of examples at a time. A gradient
 * row is g_r = (s_w U_r P_i, s_b sum_p U_r[., p]) (U_r: C_out x positions),
 * rank at most the number of positions; products of gradient rows go by
 * the rows themselves or by pairs of positions, whichever the layer's
 * shape makes smaller (see below), from features computed once per block
 * of rows. Average
 * pooling (window = stride, no padding, the floor of torch.nn.AvgPool2d)
 * has no parameters. */
#include <stddef.h>
#include <string.h>
#include <cblas.h>
#include "pk_net.h"

/* scratch per call, in doubles: rows go in chunks within it */
#define CONV_WORK ((size_t)1 << 20)

static size_t npos(const pk_layer *ly) { return ly->oshape.h * ly->oshape.w; }

/* examples per chunk of n: its patches and products within CONV_WORK, and
 * every GEMM dimension within an int */
static size_t chunk(const pk_layer *ly, size_t n)
{
  size_t np = npos(ly), per = np * (ly->fan_in + ly->oshape.c), m = CONV_WORK / per;
  if (m < 1) m = 1;
  if (m > PK_MAX_DIM / np) m = PK_MAX_DIM / np;
  return m < n ? m : n;
}

static size_t conv_work(const pk_layer *ly, size_t n)
{
  return n ? chunk(ly, n) * npos(ly) * (ly->fan_in + ly->oshape.c) : 0;
}

static size_t no_gram_work(const pk_layer *ly, size_t n1, size_t per1, size_t n2, size_t per2,
                           pk_outputs mode)
{
  (void)ly; (void)n1; (void)per1; (void)n2; (void)per2; (void)mode;
  return 0;
}

static size_t no_dot_work(const pk_layer *ly, size_t n, size_t per)
{
  (void)ly; (void)n; (void)per;
  return 0;
}

/* The output columns ox whose input column ox sx + v - px lies inside
 * 0..W-1: [*lo, *hi). Rows (oy) likewise with kh, sy, py. */
static void valid_range(size_t n_out, size_t stride, size_t off, size_t pad, size_t n_in,
                        size_t *lo, size_t *hi)
{
  size_t a = 0, b = n_out;
  /* ox stride + off >= pad and ox stride + off - pad < n_in */
  if (off < pad) a = (pad - off + stride - 1) / stride;
  if (n_in + pad <= off) b = 0;
  else if ((n_in + pad - off + stride - 1) / stride < b) b = (n_in + pad - off + stride - 1) / stride;
  if (a > b) a = b;
  *lo = a;
  *hi = b;
}

/* Pt (F x m npos, row f = (c, u, v), column i npos + p) = the patches of
 * the m examples of A, transposed: Pt[f][i npos + p] = P_i[p][f]. Each
 * output row splits into a zero margin, a run read from one input row
 * (contiguous for stride 1) and a zero margin. */
static void im2col(const pk_layer *ly, const double *A, size_t m, double *Pt)
{
  size_t C = ly->ishape.c, H = ly->ishape.h, W = ly->ishape.w, Ho = ly->oshape.h;
  size_t Wo = ly->oshape.w, np = Ho * Wo, ld = m * np, c, u, v, i, oy, ox;
  for (c = 0; c < C; c++)
    for (u = 0; u < ly->kh; u++) {
      size_t ylo, yhi;
      valid_range(Ho, ly->sy, u, ly->py, H, &ylo, &yhi);
      for (v = 0; v < ly->kw; v++) {
        double *row = Pt + ((c * ly->kh + u) * ly->kw + v) * ld;
        size_t xlo, xhi;
        valid_range(Wo, ly->sx, v, ly->px, W, &xlo, &xhi);
        for (i = 0; i < m; i++) {
          const double *a = A + i * ly->in + c * H * W;
          double *o = row + i * np;
          if (ylo) memset(o, 0, ylo * Wo * sizeof *o);
          for (oy = ylo; oy < yhi; oy++) {
            const double *src = a + (oy * ly->sy + u - ly->py) * W + v - ly->px;
            double *oo = o + oy * Wo;
            for (ox = 0; ox < xlo; ox++) oo[ox] = 0;
            if (ly->sx == 1) memcpy(oo + xlo, src + xlo, (xhi - xlo) * sizeof *oo);
            else for (ox = xlo; ox < xhi; ox++) oo[ox] = src[ox * ly->sx];
            for (ox = xhi; ox < Wo; ox++) oo[ox] = 0;
          }
          if (yhi < Ho) memset(o + yhi * Wo, 0, (Ho - yhi) * Wo * sizeof *o);
        }
      }
    }
}

/* the transpose of im2col: Gin (m examples, zeroed here) += the patches'
 * gradients dPt scattered back to the pixels they were read from */
static void col2im(const pk_layer *ly, const double *dPt, size_t m, double *Gin)
{
  size_t C = ly->ishape.c, H = ly->ishape.h, W = ly->ishape.w, Ho = ly->oshape.h;
  size_t Wo = ly->oshape.w, np = Ho * Wo, ld = m * np, c, u, v, i, oy, ox;
  memset(Gin, 0, m * ly->in * sizeof *Gin);
  for (c = 0; c < C; c++)
    for (u = 0; u < ly->kh; u++) {
      size_t ylo, yhi;
      valid_range(Ho, ly->sy, u, ly->py, H, &ylo, &yhi);
      for (v = 0; v < ly->kw; v++) {
        const double *row = dPt + ((c * ly->kh + u) * ly->kw + v) * ld;
        size_t xlo, xhi;
        valid_range(Wo, ly->sx, v, ly->px, W, &xlo, &xhi);
        for (i = 0; i < m; i++) {
          double *g = Gin + i * ly->in + c * H * W;
          const double *d = row + i * np;
          for (oy = ylo; oy < yhi; oy++) {
            double *dst = g + (oy * ly->sy + u - ly->py) * W + v - ly->px;
            const double *dd = d + oy * Wo;
            for (ox = xlo; ox < xhi; ox++) dst[ox * ly->sx] += dd[ox];
          }
        }
      }
    }
}

/* Gt (C_out x m npos) = the m rows of G (each C_out x npos) side by side */
static void to_channels(const pk_layer *ly, const double *G, size_t m, double *Gt)
{
  size_t np = npos(ly), Co = ly->oshape.c, i, c;
  for (c = 0; c < Co; c++)
    for (i = 0; i < m; i++)
      memcpy(Gt + c * m * np + i * np, G + i * ly->out + c * np, np * sizeof *Gt);
}

static void conv_forward(const pk_layer *ly, const double *W, const double *b, const double *A,
                         size_t n, double beta, double *Z, double *work)
{
  size_t np = npos(ly), Co = ly->oshape.c, F = ly->fan_in, i0, i, c, p;
  for (i0 = 0; i0 < n; i0 += chunk(ly, n)) {
    size_t m = n - i0 < chunk(ly, n) ? n - i0 : chunk(ly, n);
    double *Pt = work, *T = work + F * m * np;
    im2col(ly, A + i0 * ly->in, m, Pt);
    /* T (C_out x m npos) starts at the bias, so the GEMM adds to it */
    for (c = 0; c < Co; c++) {
      double bias = b ? ly->sb * b[c] : 0.0, *t = T + c * m * np;
      for (p = 0; p < m * np; p++) t[p] = bias;
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Co, (int)(m * np), (int)F, ly->sw,
                W, (int)F, Pt, (int)(m * np), 1.0, T, (int)(m * np));
    for (i = 0; i < m; i++)
      for (c = 0; c < Co; c++) {
        double *z = Z + (i0 + i) * ly->out + c * np;
        const double *t = T + c * m * np + i * np;
        if (beta == 0) memcpy(z, t, np * sizeof *z);
        else
          for (p = 0; p < np; p++) z[p] = beta * z[p] + t[p];
      }
  }
}

static void conv_backward_input(const pk_layer *ly, const double *W, const double *G, size_t n,
                                double *Gin, double *work)
{
  size_t np = npos(ly), Co = ly->oshape.c, F = ly->fan_in, i0;
  for (i0 = 0; i0 < n; i0 += chunk(ly, n)) {
    size_t m = n - i0 < chunk(ly, n) ? n - i0 : chunk(ly, n);
    double *Gt = work, *dPt = work + Co * m * np;
    to_channels(ly, G + i0 * ly->out, m, Gt);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)F, (int)(m * np), (int)Co, ly->sw,
                W, (int)F, Gt, (int)(m * np), 0.0, dPt, (int)(m * np));
    col2im(ly, dPt, m, Gin + i0 * ly->in);
  }
}

static void conv_backward_params(const pk_layer *ly, const double *A, const double *G, size_t n,
                                 double scale, double *gW, double *gb, double *work)
{
  size_t np = npos(ly), Co = ly->oshape.c, F = ly->fan_in, i0, i, c, p;
  for (c = 0; c < Co; c++) gb[c] = 0;
  if (n == 0) memset(gW, 0, ly->nw * sizeof *gW);
  for (i0 = 0; i0 < n; i0 += chunk(ly, n)) {
    size_t m = n - i0 < chunk(ly, n) ? n - i0 : chunk(ly, n);
    double *Pt = work, *Gt = work + F * m * np;
    im2col(ly, A + i0 * ly->in, m, Pt);
    to_channels(ly, G + i0 * ly->out, m, Gt);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Co, (int)F, (int)(m * np),
                scale * ly->sw, Gt, (int)(m * np), Pt, (int)(m * np), i0 ? 1.0 : 0.0, gW, (int)F);
    for (i = 0; i < m; i++)
      for (c = 0; c < Co; c++) {
        const double *g = G + (i0 + i) * ly->out + c * np;
        for (p = 0; p < np; p++) gb[c] += g[p];
      }
  }
  for (c = 0; c < Co; c++) gb[c] *= scale * ly->sb;
}

/* ---- the products of gradient rows ----------------------------------------- */

/* Two ways to the products of two gradient rows, the layer's choice by the
 * size of what it keeps per example:
 *  - explicit: the rows themselves, g_r = (s_w U_r P_i, s_b sum_p U_r),
 *    nw + C_out values per row; a product is one dot (a GEMM for a block);
 *  - pairs of positions: the patches P_i and the sensitivities by position,
 *    npos (F + per C_out) values per example, with
 *      g_r . g_r' = sum_{p,p'} (U_r[., p] . U_r'[., p'])
 *                              (s_w^2 P_i[p] . P_j[p'] + s_b^2),
 *    GEMMs over the positions of a block and a weighted sum of each
 *    npos x npos block (DESIGN.md section 4).
 * Pairs win when the layer has few output positions for its channels
 * (deep, strided layers); explicit rows when it has many (early layers).
 * The choice depends on the layer alone, so both sides of a product agree. */
static size_t row_len(const pk_layer *ly) { return ly->nw + ly->oshape.c; }

static int by_pairs(const pk_layer *ly)
{
  return npos(ly) * (ly->fan_in + ly->oshape.c) < row_len(ly);
}

/* pairs: one row per position, its patch then its sensitivities [k][c] */
static size_t pos_len(const pk_layer *ly, size_t per) { return ly->fan_in + per * ly->oshape.c; }

static size_t conv_feat_size(const pk_layer *ly, size_t per)
{
  return by_pairs(ly) ? npos(ly) * pos_len(ly, per) : per * row_len(ly);
}

static void conv_feat(const pk_layer *ly, const pk_side *s, double *feat, double *work)
{
  size_t np = npos(ly), Co = ly->oshape.c, F = ly->fan_in, R = row_len(ly), i0, i, k, c, p, f;
  int pairs = by_pairs(ly);
  for (i0 = 0; i0 < s->n; i0 += chunk(ly, s->n)) {
    size_t m = s->n - i0 < chunk(ly, s->n) ? s->n - i0 : chunk(ly, s->n);
    im2col(ly, s->V + i0 * ly->in, m, work);
    for (i = 0; i < m; i++) {
      if (pairs) {
        size_t Rp = pos_len(ly, s->per);
        double *x = feat + (i0 + i) * np * Rp;
        for (p = 0; p < np; p++)
          for (f = 0; f < F; f++) x[p * Rp + f] = work[f * m * np + i * np + p];
        for (k = 0; k < s->per; k++) {
          const double *u = s->U + ((i0 + i) * s->per + k) * ly->out;
          for (c = 0; c < Co; c++)
            for (p = 0; p < np; p++) x[p * Rp + F + k * Co + c] = u[c * np + p];
        }
        continue;
      }
      for (k = 0; k < s->per; k++) {
        size_t r = (i0 + i) * s->per + k;
        const double *u = s->U + r * ly->out;
        double *g = feat + r * R;
        /* s_w U_r (C_out x npos) times P_i (npos x F) */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)Co, (int)F, (int)np, ly->sw, u,
                    (int)np, work + i * np, (int)(m * np), 0.0, g, (int)F);
        for (c = 0; c < Co; c++) {
          double t = 0;
          for (p = 0; p < np; p++) t += u[c * np + p];
          g[ly->nw + c] = ly->sb * t;
        }
      }
    }
  }
}

/* pairs: the side-2 examples a block takes, so that its two npos-square
 * products of n1 examples against them stay near CONV_WORK doubles */
static size_t pair_block(const pk_layer *ly, size_t n1, size_t n2)
{
  size_t np = npos(ly), jb = CONV_WORK / 2 / (n1 * np * np + 1);
  if (jb < 1) jb = 1;
  return jb < n2 ? jb : n2;
}

static size_t conv_gram_work(const pk_layer *ly, size_t n1, size_t per1, size_t n2, size_t per2,
                             pk_outputs mode)
{
  size_t np = npos(ly);
  (void)per1; (void)per2; (void)mode;
  if (!by_pairs(ly) || n1 == 0 || n2 == 0) return 0;
  return 2 * n1 * np * pair_block(ly, n1, n2) * np;
}

/* out[i ldo + j stride] += sum over each npos x npos block (i, j) of Q o V,
 * for the m1 x mj examples of the products Q, V ((m1 npos) x (mj npos)) */
static void block_sums(const double *Q, const double *V, size_t m1, size_t mj, size_t np,
                       double *out, size_t ldo, size_t stride)
{
  size_t i, j, p, q, ld = mj * np;
  for (i = 0; i < m1; i++)
    for (j = 0; j < mj; j++) {
      double t = 0;
      for (p = 0; p < np; p++) {
        const double *qr = Q + (i * np + p) * ld + j * np, *vr = V + (i * np + p) * ld + j * np;
        for (q = 0; q < np; q++) t += qr[q] * vr[q];
      }
      out[i * ldo + j * stride] += t;
    }
}

static void gram_pairs(const pk_layer *ly, const pk_side *s1, const pk_side *s2, pk_outputs mode,
                       int sym, double alpha, double *out, size_t ldo, double *work)
{
  size_t np = npos(ly), Co = ly->oshape.c, F = ly->fan_in, p1 = s1->per, p2 = s2->per;
  size_t R1 = np * pos_len(ly, p1), R2 = np * pos_len(ly, p2), L1 = pos_len(ly, p1);
  size_t L2 = pos_len(ly, p2), jb = pair_block(ly, s1->n, s2->n), j0, k, k2, i;
  double c = alpha * ly->sw * ly->sw, b = alpha * ly->sb * ly->sb;
  for (j0 = 0; j0 < s2->n; j0 += jb) {
    size_t mj = s2->n - j0 < jb ? s2->n - j0 : jb, ld = mj * np;
    /* with sym, side 1's examples past this block have nothing above the
     * diagonal in it */
    size_t m1 = sym && j0 + mj < s1->n ? j0 + mj : s1->n;
    const double *f1 = s1->feat, *f2 = s2->feat + j0 * R2;
    double *V = work, *Q = work + m1 * np * ld;
    if (m1 == 0) continue;
    /* V = c P1 P2^T + b over every pair of positions */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(m1 * np), (int)ld, (int)F, c, f1,
                (int)L1, f2, (int)L2, 0.0, V, (int)ld);
    for (i = 0; i < m1 * np * ld; i++) V[i] += b;
    if (mode == PK_OUTPUTS_TRACE) {
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(m1 * np), (int)ld, (int)(p1 * Co),
                  1.0, f1 + F, (int)L1, f2 + F, (int)L2, 0.0, Q, (int)ld);
      block_sums(Q, V, m1, mj, np, out + j0, ldo, 1);
    } else {
      for (k = 0; k < p1; k++)
        for (k2 = 0; k2 < p2; k2++) {
          if (mode == PK_OUTPUTS_DIAGONAL && k2 != k) continue;
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(m1 * np), (int)ld, (int)Co, 1.0,
                      f1 + F + k * Co, (int)L1, f2 + F + k2 * Co, (int)L2, 0.0, Q, (int)ld);
          if (mode == PK_OUTPUTS_BLOCK)
            block_sums(Q, V, m1, mj, np, out + k * ldo + j0 * p2 + k2, p1 * ldo, p2);
          else
            block_sums(Q, V, m1, mj, np, out + k * ldo + j0, p1 * ldo, 1);
        }
    }
  }
  (void)R1;
}

static void conv_gram(const pk_layer *ly, const pk_side *s1, const pk_side *s2, pk_outputs mode,
                      int sym, double alpha, const double *vprod, double *out, size_t ldo,
                      double *work)
{
  size_t R = row_len(ly), p1 = s1->per, p2 = s2->per, k;
  (void)vprod;
  if (s1->n == 0 || s2->n == 0) return;
  if (by_pairs(ly)) {
    gram_pairs(ly, s1, s2, mode, sym, alpha, out, ldo, work);
  } else if (mode == PK_OUTPUTS_BLOCK) {
    pk_prod_nt(s1->feat, s1->n * p1, s2->feat, s2->n * p2, R, R, alpha, 1.0, out, ldo, sym);
  } else if (mode == PK_OUTPUTS_TRACE) {
    pk_prod_nt(s1->feat, s1->n, s2->feat, s2->n, p1 * R, p1 * R, alpha, 1.0, out, ldo, sym);
  } else {
    for (k = 0; k < p1; k++)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s1->n, (int)s2->n, (int)R, alpha,
                  s1->feat + k * R, (int)(p1 * R), s2->feat + k * R, (int)(p2 * R), 1.0,
                  out + k * ldo, (int)(p1 * ldo));
  }
}

/* pairs: the dot of the npos-position rows x[p] and y[q] over n values */
static double dotn(const double *x, const double *y, size_t n)
{
  size_t i;
  double t = 0;
  for (i = 0; i < n; i++) t += x[i] * y[i];
  return t;
}

static void conv_sqnorm(const pk_layer *ly, const pk_side *s, double *out)
{
  size_t R = row_len(ly), r, j;
  if (by_pairs(ly)) {
    size_t np = npos(ly), Co = ly->oshape.c, F = ly->fan_in, Lp = pos_len(ly, s->per), i, k, p, q;
    double c = ly->sw * ly->sw, b = ly->sb * ly->sb;
    for (i = 0; i < s->n; i++) {
      const double *x = s->feat + i * np * Lp;
      for (k = 0; k < s->per; k++) {
        double t = 0;
        for (p = 0; p < np; p++)
          for (q = 0; q < np; q++)
            t += dotn(x + p * Lp + F + k * Co, x + q * Lp + F + k * Co, Co) *
                 (c * dotn(x + p * Lp, x + q * Lp, F) + b);
        out[i * s->per + k] += t;
      }
    }
    return;
  }
  for (r = 0; r < s->n * s->per; r++) {
    const double *g = s->feat + r * R;
    double t = 0;
    for (j = 0; j < R; j++) t += g[j] * g[j];
    out[r] += t;
  }
}

static void conv_dot_params(const pk_layer *ly, const pk_side *s, const double *W,
                            const double *b, double alpha, double *out, double *work)
{
  size_t R = row_len(ly), r, j;
  (void)work;
  if (by_pairs(ly)) {
    /* s_w sum_p U_r[., p] . (W P_i[p]) + s_b sum_p U_r[., p] . b */
    size_t np = npos(ly), Co = ly->oshape.c, F = ly->fan_in, Lp = pos_len(ly, s->per), i, k, p, c;
    for (i = 0; i < s->n; i++) {
      const double *x = s->feat + i * np * Lp;
      for (p = 0; p < np; p++)
        for (c = 0; c < Co; c++) {
          double t = ly->sw * dotn(W + c * F, x + p * Lp, F) + ly->sb * b[c];
          for (k = 0; k < s->per; k++) out[i * s->per + k] += alpha * x[p * Lp + F + k * Co + c] * t;
        }
    }
    return;
  }
  for (r = 0; r < s->n * s->per; r++) {
    const double *g = s->feat + r * R;
    double tw = 0, tb = 0;
    for (j = 0; j < ly->nw; j++) tw += g[j] * W[j];
    for (j = 0; j < ly->oshape.c; j++) tb += g[ly->nw + j] * b[j];
    out[r] += alpha * (tw + tb);
  }
}

/* without features (a caller that has none): the patches are read in
 * place, one value at a time */
static void grad_row_direct(const pk_layer *ly, const double *u, const double *a, double weight,
                            double *ow, double *ob)
{
  size_t H = ly->ishape.h, W = ly->ishape.w, Ho = ly->oshape.h, Wo = ly->oshape.w, np = Ho * Wo;
  size_t c, ci, y0, x0, oy, ox;
  for (c = 0; c < ly->oshape.c; c++) {
    const double *uc = u + c * np;
    double t = 0;
    for (ci = 0; ci < ly->ishape.c; ci++)
      for (y0 = 0; y0 < ly->kh; y0++)
        for (x0 = 0; x0 < ly->kw; x0++) {
          double e = 0;
          for (oy = 0; oy < Ho; oy++) {
            ptrdiff_t y = (ptrdiff_t)(oy * ly->sy + y0) - (ptrdiff_t)ly->py;
            if (y < 0 || y >= (ptrdiff_t)H) continue;
            for (ox = 0; ox < Wo; ox++) {
              ptrdiff_t x = (ptrdiff_t)(ox * ly->sx + x0) - (ptrdiff_t)ly->px;
              if (x >= 0 && x < (ptrdiff_t)W)
                e += uc[oy * Wo + ox] * a[ci * H * W + (size_t)y * W + (size_t)x];
            }
          }
          ow[c * ly->fan_in + (ci * ly->kh + y0) * ly->kw + x0] += weight * ly->sw * e;
        }
    for (oy = 0; oy < np; oy++) t += uc[oy];
    ob[c] += weight * ly->sb * t;
  }
}

static void conv_grad_rows(const pk_layer *ly, const pk_side *s, double weight, double *out,
                           size_t ldo)
{
  size_t R = row_len(ly), r, j, nr = s->n * s->per;
  for (r = 0; r < nr; r++) {
    double *ow = out + r * ldo + ly->woff, *ob = out + r * ldo + ly->boff;
    if (s->feat && by_pairs(ly)) {
      /* weight s_w U_r P_i straight into the row: U by position is npos x
       * C_out, the patches npos x F, both with the position rows' stride */
      size_t np = npos(ly), Co = ly->oshape.c, F = ly->fan_in, Lp = pos_len(ly, s->per), p, c;
      size_t i = r / s->per, k = r % s->per;
      const double *x = s->feat + i * np * Lp;
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)Co, (int)F, (int)np, weight * ly->sw,
                  x + F + k * Co, (int)Lp, x, (int)Lp, 1.0, ow, (int)F);
      for (c = 0; c < Co; c++) {
        double t = 0;
        for (p = 0; p < np; p++) t += x[p * Lp + F + k * Co + c];
        ob[c] += weight * ly->sb * t;
      }
    } else if (s->feat) {
      const double *g = s->feat + r * R;
      for (j = 0; j < ly->nw; j++) ow[j] += weight * g[j];
      for (j = 0; j < ly->oshape.c; j++) ob[j] += weight * g[ly->nw + j];
    } else {
      grad_row_direct(ly, s->U + r * ly->out, s->V + (r / s->per) * ly->in, weight, ow, ob);
    }
  }
}

const pk_layer_vt pk_conv_vt = {
  "conv", PK_LAYER_CONV, 0,
  conv_work, conv_gram_work, no_dot_work, conv_feat_size, conv_feat,
  conv_forward, conv_backward_input, conv_backward_params,
  conv_gram, conv_sqnorm, conv_dot_params, conv_grad_rows
};

/* ---- average pooling -------------------------------------------------------- */

static size_t pool_work(const pk_layer *ly, size_t n)
{
  (void)ly;
  (void)n;
  return 0;
}

static size_t pool_feat_size(const pk_layer *ly, size_t per)
{
  (void)ly;
  (void)per;
  return 0;
}

static void pool_feat(const pk_layer *ly, const pk_side *s, double *feat, double *work)
{
  (void)ly; (void)s; (void)feat; (void)work;
}

static void pool_forward(const pk_layer *ly, const double *W, const double *b, const double *A,
                         size_t n, double beta, double *Z, double *work)
{
  size_t C = ly->ishape.c, H = ly->ishape.h, Wd = ly->ishape.w, Ho = ly->oshape.h;
  size_t Wo = ly->oshape.w, i, c, oy, ox, u, v;
  double scale = 1.0 / (double)(ly->kh * ly->kw);
  (void)W; (void)b; (void)work;
  for (i = 0; i < n; i++)
    for (c = 0; c < C; c++) {
      const double *a = A + i * ly->in + c * H * Wd;
      double *z = Z + i * ly->out + c * Ho * Wo;
      for (oy = 0; oy < Ho; oy++)
        for (ox = 0; ox < Wo; ox++) {
          double t = 0;
          for (u = 0; u < ly->kh; u++)
            for (v = 0; v < ly->kw; v++) t += a[(oy * ly->kh + u) * Wd + ox * ly->kw + v];
          z[oy * Wo + ox] = (beta == 0 ? 0.0 : beta * z[oy * Wo + ox]) + scale * t;
        }
    }
}

static void pool_backward_input(const pk_layer *ly, const double *W, const double *G, size_t n,
                                double *Gin, double *work)
{
  size_t C = ly->ishape.c, H = ly->ishape.h, Wd = ly->ishape.w, Ho = ly->oshape.h;
  size_t Wo = ly->oshape.w, i, c, oy, ox, u, v;
  double scale = 1.0 / (double)(ly->kh * ly->kw);
  (void)W; (void)work;
  memset(Gin, 0, n * ly->in * sizeof *Gin);
  for (i = 0; i < n; i++)
    for (c = 0; c < C; c++) {
      double *g = Gin + i * ly->in + c * H * Wd;
      const double *d = G + i * ly->out + c * Ho * Wo;
      for (oy = 0; oy < Ho; oy++)
        for (ox = 0; ox < Wo; ox++) {
          double t = scale * d[oy * Wo + ox];
          for (u = 0; u < ly->kh; u++)
            for (v = 0; v < ly->kw; v++) g[(oy * ly->kh + u) * Wd + ox * ly->kw + v] = t;
        }
    }
}

static void pool_backward_params(const pk_layer *ly, const double *A, const double *G, size_t n,
                                 double scale, double *gW, double *gb, double *work)
{
  (void)ly; (void)A; (void)G; (void)n; (void)scale; (void)gW; (void)gb; (void)work;
}

static void pool_gram(const pk_layer *ly, const pk_side *s1, const pk_side *s2, pk_outputs mode,
                      int sym, double alpha, const double *vprod, double *out, size_t ldo,
                      double *work)
{
  (void)ly; (void)s1; (void)s2; (void)mode; (void)sym; (void)alpha; (void)vprod; (void)out;
  (void)ldo; (void)work;
}

static void pool_sqnorm(const pk_layer *ly, const pk_side *s, double *out)
{
  (void)ly; (void)s; (void)out;
}

static void pool_dot_params(const pk_layer *ly, const pk_side *s, const double *W,
                            const double *b, double alpha, double *out, double *work)
{
  (void)ly; (void)s; (void)W; (void)b; (void)alpha; (void)out; (void)work;
}

static void pool_grad_rows(const pk_layer *ly, const pk_side *s, double weight, double *out,
                           size_t ldo)
{
  (void)ly; (void)s; (void)weight; (void)out; (void)ldo;
}

const pk_layer_vt pk_avgpool_vt = {
  "avgpool", PK_LAYER_AVGPOOL, 0,
  pool_work, no_gram_work, no_dot_work, pool_feat_size, pool_feat,
  pool_forward, pool_backward_input, pool_backward_params,
  pool_gram, pool_sqnorm, pool_dot_params, pool_grad_rows
};
