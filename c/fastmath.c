/* fastmath.c - vectorizable elementwise functions for the hot loops: tanh
 * and the logistic sigmoid through one expm1 kernel. glibc's scalar tanh is
 * the bottleneck of a training step otherwise; these stay within a few ulps
 * of the correctly rounded values, and phi' is always computed from the
 * same phi, so kernels and Jacobians remain consistent to rounding. */
#include <string.h>
#include <stdint.h>
#include <math.h>
#include "pk_base.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(PK_NO_CLONES)
/* one build for every x86-64, with an AVX2/FMA copy picked at load time;
 * vectorizing the selects needs comparisons that may not trap */
#pragma GCC optimize("O3", "no-trapping-math")
#define PK_VEC __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define PK_VEC
#endif

/* expm1(y) for 0 <= y <= 64: y = k ln2 + r with |r| <= ln2/2, expm1(r) by
 * its Taylor series (the remainder is below 2^-56 relative), then
 * expm1(y) = 2^k expm1(r) + (2^k - 1), both terms exact but the sum. */
static inline double expm1_pos(double y)
{
  const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  const double log2e = 1.44269504088896338700e+00, shift = 0x1.8p52;
  double kd = y * log2e + shift, k, r, p, two_k;
  uint64_t bits;
  memcpy(&bits, &kd, 8);
  k = kd - shift;
  r = (y - k * ln2_hi) - k * ln2_lo;
  p = 1.0 / 6227020800.0;                 /* 1/13! */
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r * r + r;                      /* expm1(r) */
  bits = (bits + 1023) << 52;             /* the low bits of kd hold k */
  memcpy(&two_k, &bits, 8);
  return two_k * p + (two_k - 1.0);
}

PK_VEC void pk_vtanh(const double *restrict x, double *restrict y, size_t n)
{
  size_t i;
  for (i = 0; i < n; i++) {
    double a = fabs(x[i]), c, u, t;
    c = a < 22.0 ? a : 22.0;      /* tanh is 1 in double beyond 19.1; NaN -> 22 */
    u = expm1_pos(2.0 * c);
    t = copysign(u / (u + 2.0), x[i]);
    y[i] = a == a ? t : x[i];
  }
}

/* 1 / (1 + e^-z) through e^|z|, without overflow */
PK_VEC void pk_vsigmoid(const double *restrict x, double *restrict y, size_t n)
{
  size_t i;
  for (i = 0; i < n; i++) {
    double a = fabs(x[i]), c, e, s;
    c = a < 64.0 ? a : 64.0;
    e = expm1_pos(c) + 1.0;       /* e^|z| */
    s = (x[i] >= 0 ? e : 1.0) / (1.0 + e);
    y[i] = a == a ? s : x[i];
  }
}

/* The piecewise-linear activations and their derivatives as selects, so
 * that they vectorize: a branch per element mispredicts on half of them
 * (the signs of pre-activations are random), which made relu's two
 * elementwise passes cost more than tanh's. Same values as the scalar
 * forms, NaN and -0 included (z > 0 is false for both). z and a (or g) may
 * be the same array. */
PK_VEC void pk_vrelu(const double *z, double *a, size_t n)
{
  size_t i;
  for (i = 0; i < n; i++) a[i] = z[i] > 0 ? z[i] : 0.0;
}

PK_VEC void pk_vleaky(const double *z, double *a, size_t n, double slope)
{
  size_t i;
  for (i = 0; i < n; i++) a[i] = z[i] > 0 ? z[i] : slope * z[i];
}

/* g *= relu'(z) (0 at z = 0), leaky_relu'(z) (slope at 0), tanh' from a = tanh z */
PK_VEC void pk_vrelu_deriv(const double *z, double *g, size_t n)
{
  size_t i;
  for (i = 0; i < n; i++) g[i] = z[i] > 0 ? g[i] : 0.0;
}

PK_VEC void pk_vleaky_deriv(const double *z, double *g, size_t n, double slope)
{
  size_t i;
  for (i = 0; i < n; i++) g[i] = z[i] > 0 ? g[i] : slope * g[i];
}

PK_VEC void pk_vtanh_deriv(const double *a, double *g, size_t n)
{
  size_t i;
  for (i = 0; i < n; i++) g[i] *= 1.0 - a[i] * a[i];
}

/* The kink search's pattern test for w units (decomp.c): the samples of
 * unit u at N points are z[i][u]; its N Bernstein coefficients are
 * b_k = sum_i vi[k N + i] z_i (in the order of i). Returns 1 when some
 * unit with a nonzero sample has coefficients of neither strict sign
 * beyond tau max_i |z_i| (it may cross zero), else 0. zm, bmn, bmx, bk:
 * scratch of w each. */
PK_VEC int pk_bernstein_test(const double *const *z, int N, const double *restrict vi, size_t w,
                             double tau, double *restrict zm, double *restrict bmn,
                             double *restrict bmx, double *restrict bk)
{
  size_t u;
  int i, k, bad = 0;
  for (u = 0; u < w; u++) {
    zm[u] = 0;
    bmn[u] = INFINITY;
    bmx[u] = -INFINITY;
  }
  for (i = 0; i < N; i++) {
    const double *restrict zi = z[i];
    for (u = 0; u < w; u++) {
      double a = fabs(zi[u]);
      zm[u] = a > zm[u] ? a : zm[u];
    }
  }
  for (k = 0; k < N; k++) {
    for (u = 0; u < w; u++) bk[u] = 0;
    for (i = 0; i < N; i++) {
      const double *restrict zi = z[i];
      double v = vi[k * N + i];
      for (u = 0; u < w; u++) bk[u] += v * zi[u];
    }
    for (u = 0; u < w; u++) {
      bmn[u] = bk[u] < bmn[u] ? bk[u] : bmn[u];
      bmx[u] = bk[u] > bmx[u] ? bk[u] : bmx[u];
    }
  }
  /* a polynomial with N zeros has none at all (zm = 0) */
  for (u = 0; u < w; u++)
    bad |= zm[u] != 0 && !(bmn[u] > tau * zm[u]) && !(bmx[u] < -tau * zm[u]);
  return bad;
}
