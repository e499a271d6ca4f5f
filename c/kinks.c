/* kinks.c - where a piecewise-linear unit switches along a step: the sign
 * changes of a polynomial pre-activation z(t) inside an interval, with a
 * guarantee that none is missed (DESIGN.md section 4, "Exact steps for
 * every activation"). Degree 1 and 2 in closed form; beyond, Bernstein
 * coefficients and de Casteljau subdivision: the number of sign changes
 * of the coefficients bounds the number of roots, so a sequence of one
 * strict sign proves there is none. Nothing here knows about layers. */
#include <math.h>
#include <float.h>
#include <string.h>
#include "pk_kinks.h"

/* binomial coefficients up to PK_KINK_MAXDEG, exact in doubles */
static double binom(int n, int k)
{
  double r = 1;
  int i;
  if (k < 0 || k > n) return 0;
  if (k > n - k) k = n - k;
  for (i = 1; i <= k; i++) r = r * (n - k + i) / i;
  return r;
}

void pk_bern_from_mono(const double *m, int deg, double a, double b, double *out)
{
  double c[PK_KINK_MAXDEG + 1], h = b - a, hk = 1;
  int i, k;
  memcpy(c, m, (size_t)(deg + 1) * sizeof *c);
  /* Taylor shift to a: c holds the coefficients of p(a + v) */
  for (i = 0; i < deg; i++)
    for (k = deg - 1; k >= i; k--) c[k] += a * c[k + 1];
  /* scale to u in [0, 1]: v = h u */
  for (k = 0; k <= deg; k++) {
    c[k] *= hk;
    hk *= h;
  }
  /* monomial in u to Bernstein: b_i = sum_{k <= i} C(i, k) / C(deg, k) c_k */
  for (i = 0; i <= deg; i++) {
    double s = 0;
    for (k = 0; k <= i; k++) s += binom(i, k) / binom(deg, k) * c[k];
    out[i] = s;
  }
}

double pk_bern_eval(const double *b, int deg, double u)
{
  double w[PK_KINK_MAXDEG + 1];
  int i, k;
  memcpy(w, b, (size_t)(deg + 1) * sizeof *w);
  for (k = 1; k <= deg; k++)
    for (i = 0; i <= deg - k; i++) w[i] = (1 - u) * w[i] + u * w[i + 1];
  return w[0];
}

/* de Casteljau at 1/2: the coefficients of the two halves (exact halving,
 * so the halves are convex combinations without new rounding in the
 * weights) */
static void bern_halve(const double *b, int deg, double *left, double *right)
{
  double w[PK_KINK_MAXDEG + 1];
  int i, k;
  memcpy(w, b, (size_t)(deg + 1) * sizeof *w);
  left[0] = w[0];
  right[deg] = w[deg];
  for (k = 1; k <= deg; k++) {
    for (i = 0; i <= deg - k; i++) w[i] = 0.5 * (w[i] + w[i + 1]);
    left[k] = w[0];
    right[deg - k] = w[deg - k];
  }
}

/* sign changes of the coefficient sequence, zeros skipped */
static int sign_changes(const double *b, int deg)
{
  int i, v = 0, last = 0;
  for (i = 0; i <= deg; i++) {
    int s = b[i] > 0 ? 1 : b[i] < 0 ? -1 : 0;
    if (s == 0) continue;
    if (last && s != last) v++;
    last = s;
  }
  return v;
}

typedef struct roots_out {
  double *t;
  int n, cap, overflow;
} roots_out;

static void push(roots_out *o, double t)
{
  if (o->n < o->cap) o->t[o->n++] = t;
  else o->overflow = 1;
}

/* the root of b (one sign change, nonzero ends) on [lo, hi] in t, by
 * bisection on the Bernstein form: halving until the bracket is one ulp */
static double bisect(const double *b, int deg, double lo, double hi)
{
  double u0 = 0, u1 = 1, s0 = b[0] > 0 ? 1 : -1;
  int it;
  for (it = 0; it < 64; it++) {
    double um = 0.5 * (u0 + u1), v;
    if (um <= u0 || um >= u1) break;
    v = pk_bern_eval(b, deg, um);
    if (v == 0) return lo + (hi - lo) * um;
    if ((v > 0 ? 1 : -1) == s0) u0 = um;
    else u1 = um;
  }
  return lo + (hi - lo) * 0.5 * (u0 + u1);
}

/* Every sign change of the polynomial with Bernstein coefficients b on
 * [lo, hi] lies at a pushed point. Subdivision stops at intervals of
 * width `minw`, where one point stands for whatever happens inside. */
static void isolate(const double *b, int deg, double lo, double hi, double minw, roots_out *o)
{
  double left[PK_KINK_MAXDEG + 1], right[PK_KINK_MAXDEG + 1], mid;
  int v = sign_changes(b, deg);
  if (v == 0 || o->overflow) return;
  if (hi - lo <= minw) {
    push(o, 0.5 * (lo + hi));
    return;
  }
  if (v == 1 && b[0] != 0 && b[deg] != 0) {
    /* Descartes' rule for the Bernstein basis: exactly one simple root */
    push(o, bisect(b, deg, lo, hi));
    return;
  }
  bern_halve(b, deg, left, right);
  mid = 0.5 * (lo + hi);
  isolate(left, deg, lo, mid, minw, o);
  /* a root exactly at the midpoint belongs to neither open half */
  if (left[deg] == 0 && mid > lo && mid < hi) push(o, mid);
  isolate(right, deg, mid, hi, minw, o);
}

int pk_kink_roots(const double *m, int deg, double a, double b, double *out, int cap)
{
  roots_out o;
  o.t = out;
  o.n = 0;
  o.cap = cap;
  o.overflow = 0;
  /* the true degree: leading zeros (a layer whose direction is zero) */
  while (deg > 0 && m[deg] == 0) deg--;
  if (deg == 0 || !(b > a)) return 0;
  if (deg == 1) {
    double r = -m[0] / m[1];
    if (r > a && r < b) push(&o, r);
  } else if (deg == 2) {
    /* the discriminant with its rounding errors recovered by fma (Kahan),
     * then the formula that never subtracts nearly equal numbers */
    double A = m[2], B = m[1], C = m[0];
    double p = B * B, dp = fma(B, B, -p), q = 4 * A * C, dq = fma(4 * A, C, -q);
    double disc = (p - q) + (dp - dq);
    if (disc > 0) {
      double s = sqrt(disc), h = -0.5 * (B + copysign(s, B)), r1 = h / A, r2 = C / h;
      /* h != 0: |h| >= s / 2 > 0 */
      if (r1 > a && r1 < b) push(&o, r1);
      if (r2 > a && r2 < b) push(&o, r2);
    }
    /* disc <= 0: no real root, or a double one where the sign does not
     * change */
  } else {
    double bc[PK_KINK_MAXDEG + 1];
    pk_bern_from_mono(m, deg, a, b, bc);
    isolate(bc, deg, a, b, 4 * DBL_EPSILON * (fabs(a) + fabs(b) + (b - a)), &o);
  }
  return o.overflow ? -1 : o.n;
}
