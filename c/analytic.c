/* analytic.c - the infinite-width NNGP and NTK of fully connected networks
 * in the ntk parameterization (DESIGN.md section 4, as neural-tangents
 * computes them): one dgemm for K0 = x.x'/d0, the variances Sigma(x, x) of
 * every layer once per input row, then the recursion entry by entry. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cblas.h>
#include "pk_kern.h"
#include "pk_linalg.h"

enum { ACT_RELU = 1, ACT_ERF = 2, ACT_IDENTITY = 3 };
static const char *const act_names[] = { "", "relu", "erf", "identity" };
#define PK_PI 3.14159265358979323846
/* pi/2 and pi/4 split in two, so the reductions add no rounding */
#define PIO2_HI 1.5707963267948966
#define PIO2_LO 6.123233995736766e-17
#define PIO4_HI 0.78539816339744828
#define PIO4_LO 3.061616997868383e-17

typedef struct {
  int ntk;          /* 1: Theta, 0: Sigma (NNGP) */
  int depth;        /* hidden layers */
  int act;
  double sigma_w, sigma_b, sw2, sb2;
} analytic;

/* atan(y / x) for y, x >= 0 (not both 0: then 0), within 2 ulp: the
 * rational approximation of Cephes' atan on [0, 0.66] after reducing
 * y / x to [0, 1]. About twice as fast as libm's atan2, which the recursion
 * calls once per entry and layer. */
static inline double atan_q(double y, double x)
{
  static const double P0 = -8.750608600031904122785e-01, P1 = -1.615753718733365076637e+01,
    P2 = -7.500855792314704667340e+01, P3 = -1.228866684490136173410e+02,
    P4 = -6.485021904942025371773e+01, Q0 = 2.485846490142306297962e+01,
    Q1 = 1.650270098316988542046e+02, Q2 = 4.328810604912902668951e+02,
    Q3 = 4.853903996359136964868e+02, Q4 = 1.945506571482613964425e+02;
  int swap = y > x, red;
  double num = swap ? x : y, den = swap ? y : x, a, b, t, z, r, hi, lo;
  /* beyond 0.66, atan(num/den) = pi/4 + atan((num - den)/(num + den)):
   * one division either way, and num - den is exact (Sterbenz) */
  red = num > 0.66 * den;
  a = red ? num - den : num;
  b = red ? num + den : den;
  hi = red ? PIO4_HI : 0.0;
  lo = red ? PIO4_LO : 0.0;
  t = b > 0 ? a / b : a - a;   /* 0 for 0/0; NaN in, NaN out */
  z = t * t;
  r = t + t * (z * ((((P0 * z + P1) * z + P2) * z + P3) * z + P4) /
               (((((z + Q0) * z + Q1) * z + Q2) * z + Q3) * z + Q4));
  r = hi + (r + lo);
  return swap ? (PIO2_HI - r) + PIO2_LO : r;
}

/* The nonlinearities: (k, sd) = (E[phi(u)phi(v)], E[phi'(u)phi'(v)]) for
 * (u, v) ~ N(0, [[q1, c], [c, q2]]). They are written to run many
 * independent entries per loop (see chain), so selects stay selects and
 * the divisions of neighbouring entries overlap. */
static inline void relu(double q1, double q2, double c, double *k, double *sd)
{
  /* DESIGN's theta = atan2(s, c) enters only as pi - theta, computed
   * directly: no cancellation when theta is near pi */
  double r = q1 * q2 - c * c, s = sqrt(r > 0 ? r : 0.0);
  double a = atan_q(s, fabs(c));
  double pmt = c < 0 ? a : (2 * PIO2_HI - a) + 2 * PIO2_LO;
  *k = (s + pmt * c) * (0.5 / PK_PI);
  *sd = pmt * (0.5 / PK_PI);
}

static inline void erf_(double q1, double q2, double c, double *k, double *sd)
{
  /* (1+2q1)(1+2q2) - 4c^2 arranged as 1 + 2(q1+q2) + 4(q1q2 - c^2): the
   * same number, kept >= 1 where rounding makes q1q2 < c^2 */
  double d = (1 + 2 * q1) * (1 + 2 * q2), r = q1 * q2 - c * c;
  double x = 2 * c / sqrt(d), ax = fabs(x), as;
  ax = ax > 1 ? 1.0 : ax;
  as = atan_q(ax, sqrt((1 - ax) * (1 + ax)));     /* asin(|x|) */
  *k = (2 / PK_PI) * (x < 0 ? -as : as);
  *sd = (4 / PK_PI) / sqrt(1 + 2 * (q1 + q2) + 4 * (r > 0 ? r : 0.0));
}

static inline void identity(double q1, double q2, double c, double *k, double *sd)
{
  (void)q1;
  (void)q2;
  *k = c;
  *sd = 1;
}

/* s[l * n + i] = Sigma(x_i, x_i) entering nonlinearity l (l < depth), from
 * q0[i] = ||x_i||^2 / d0. The same arithmetic as chain, so that on the
 * diagonal of K(X, X) the cross term equals the variances exactly. */
static void row_chain(const analytic *a, const double *q0, size_t n, double *s)
{
  size_t i;
  int l;
  for (i = 0; i < n; i++) {
    double kk = q0[i], sd;
    for (l = 0; l < a->depth; l++) {
      double sv = a->sw2 * kk + a->sb2;
      s[(size_t)l * n + i] = sv;
      switch (a->act) {
      case ACT_RELU: relu(sv, sv, sv, &kk, &sd); break;
      case ACT_ERF: erf_(sv, sv, sv, &kk, &sd); break;
      default: identity(sv, sv, sv, &kk, &sd); break;
      }
    }
  }
}

static void sq_norms(const pk_matrix *X, double *q)
{
  size_t i, d = X->cols;
  for (i = 0; i < X->rows; i++)
    q[i] = cblas_ddot((int)d, X->data + i * d, 1, X->data + i * d, 1) / (double)d;
}

/* One layer for m entries: k[j] = K(x, x') entering the dense layer,
 * tt[j] = ThetaTilde; the variances of entry j are sa[j * inca] and sb[j]. */
#define LAYER(fn)                                                        \
  for (j = 0; j < m; j++) {                                              \
    double sv = sw2 * k[j] + sb2, th = sv + sw2 * tt[j], sd;             \
    fn(sa[j * inca], sb[j], sv, &k[j], &sd);                             \
    tt[j] = sd * th;                                                     \
  }

/* The recursion for m entries at once, layer by layer: k holds K0 on entry
 * and the kernel on exit; the variances of layer l start at sa + l * lda
 * (stepping inca per entry: 0 along a Gram row) and sb + l * ldb. */
static void chain(const analytic *a, double *k, double *tt, size_t m, const double *sa0,
                  size_t lda, size_t inca, const double *sb0, size_t ldb)
{
  const double sw2 = a->sw2, sb2 = a->sb2;
  size_t j;
  int l;
  for (j = 0; j < m; j++) tt[j] = 0;
  for (l = 0; l < a->depth; l++) {
    const double *sa = sa0 + (size_t)l * lda, *sb = sb0 + (size_t)l * ldb;
    switch (a->act) {
    case ACT_RELU: LAYER(relu) break;
    case ACT_ERF: LAYER(erf_) break;
    default: LAYER(identity) break;
    }
  }
  for (j = 0; j < m; j++) {
    double sv = sw2 * k[j] + sb2;
    k[j] = a->ntk ? sv + sw2 * tt[j] : sv;
  }
}

#define BLOCK 256    /* entries per chain call: ThetaTilde lives on the stack */

static pk_status check_cols(const analytic *a, const pk_matrix *X)
{
  if (X->cols == 0)
    return pk_fail(PK_EINVAL, "%s kernel: inputs have no columns (K0 = x.x'/d0 needs d0 >= 1)",
                   a->ntk ? "ntk" : "nngp");
  return PK_OK;
}

typedef struct {
  const analytic *a;
  double *g, *q1;
  const double *s1, *s2;
  size_t n1, n2;
  int sym;
} rows_job;

/* rows [i0, i1) of the Gram, each entry from its K0 */
static double gram_rows(void *ctx, size_t i0, size_t i1)
{
  const rows_job *J = ctx;
  size_t i, j, n1 = J->n1, n2 = J->n2;
  double units = 0, tt[BLOCK];
  for (i = i0; i < i1; i++) {
    double *row = J->g + i * n2;
    size_t j0 = J->sym ? i : 0;
    /* K(X, X): the diagonal starts from the same q as diag, so it equals diag */
    if (J->sym) row[i] = J->q1[i];
    for (j = j0; j < n2; j += BLOCK) {
      size_t m = n2 - j < BLOCK ? n2 - j : BLOCK;
      chain(J->a, row + j, tt, m, J->s1 + i, n1, 0, J->s2 + j, n2);
    }
    units += (double)(n2 - j0);
  }
  return units;
}

static pk_status analytic_gram(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                               const pk_call_opts *o, pk_matrix *out)
{
  const analytic *a = k->state;
  size_t n1 = X1->rows, n2 = X2->rows, L = (size_t)a->depth;
  int sym = X1 == X2;
  double *q1, *q2, *s1, *s2, *g = out->data;
  rows_job J;
  pk_status st;
  if (n1 == 0 || n2 == 0) return PK_OK;
  if ((st = check_cols(a, X1))) return st;
  /* q1 | q2 | s1 (L x n1) | s2 (L x n2) */
  if ((st = pk_alloc((void **)&q1, (L + 1) * (n1 + n2), sizeof(double), "the layer variances")))
    return st;
  q2 = q1 + n1;
  s1 = q2 + n2;
  s2 = s1 + L * n1;
  sq_norms(X1, q1);
  if (sym) {
    s2 = s1;
    q2 = q1;
  } else {
    sq_norms(X2, q2);
  }
  row_chain(a, q1, n1, s1);
  if (!sym) row_chain(a, q2, n2, s2);
  if ((st = pk_cross(X1, X2, 1.0 / (double)X1->cols, sym, g, o, a->ntk ? "ntk kernel" : "nngp kernel"))) {
    free(q1);
    return st;
  }
  J.a = a;
  J.g = g;
  J.q1 = q1;
  J.s1 = s1;
  J.s2 = s2;
  J.n1 = n1;
  J.n2 = n2;
  J.sym = sym;
  /* chunks of about 2^16 entries */
  st = pk_parallel_for(n1, 1 + ((size_t)1 << 16) / n2, gram_rows, &J, o,
                       sym ? 0.5 * (double)n1 * ((double)n1 + 1) : (double)n1 * (double)n2,
                       a->ntk ? "ntk kernel" : "nngp kernel");
  if (!st && sym) pk_mirror_upper(g, n1);
  free(q1);
  return st;
}

static pk_status analytic_diag(const pk_kernel *k, const pk_matrix *X, const pk_call_opts *o,
                               pk_matrix *out)
{
  const analytic *a = k->state;
  size_t n = X->rows, j;
  double *s, tt[BLOCK];
  pk_status st;
  (void)o;
  if (n == 0) return PK_OK;
  if ((st = check_cols(a, X))) return st;
  if ((st = pk_alloc((void **)&s, (size_t)a->depth * n, sizeof(double), "the layer variances")))
    return st;
  sq_norms(X, out->data);
  row_chain(a, out->data, n, s);
  for (j = 0; j < n; j += BLOCK) {
    size_t m = n - j < BLOCK ? n - j : BLOCK;
    chain(a, out->data + j, tt, m, s + j, n, 1, s + j, n);
  }
  free(s);
  return PK_OK;
}

static void analytic_destroy(pk_kernel *k) { free(k->state); }

static const pk_kernel_vt ntk_vt = { "ntk", analytic_gram, analytic_diag, analytic_destroy };
static const pk_kernel_vt nngp_vt = { "nngp", analytic_gram, analytic_diag, analytic_destroy };

static pk_status analytic_new(pk_kernel **out, int ntk, int depth, int act, double sigma_w,
                              double sigma_b)
{
  const char *name = ntk ? "ntk" : "nngp";
  analytic *a;
  pk_status st;
  *out = NULL;
  if (depth < 1)
    return pk_fail(PK_EINVAL, "%s kernel: depth (the number of hidden layers) must be >= 1, "
                   "got %d", name, depth);
  if (depth > 100000)
    return pk_fail(PK_EINVAL, "%s kernel: depth %d is beyond any sensible network", name,
                   depth);
  if (!(sigma_w > 0) || !isfinite(sigma_w))
    return pk_fail(PK_EINVAL, "%s kernel: sigma_w must be a positive finite number, got %g",
                   name, sigma_w);
  if (!(sigma_b >= 0) || !isfinite(sigma_b))
    return pk_fail(PK_EINVAL, "%s kernel: sigma_b must be a finite number >= 0, got %g",
                   name, sigma_b);
  a = malloc(sizeof *a);
  if (!a) return pk_fail(PK_ENOMEM, "%s kernel: out of memory", name);
  a->ntk = ntk;
  a->depth = depth;
  a->act = act;
  a->sigma_w = sigma_w;
  a->sigma_b = sigma_b;
  a->sw2 = sigma_w * sigma_w;
  a->sb2 = sigma_b * sigma_b;
  if ((st = pk_kernel_new(out, ntk ? &ntk_vt : &nngp_vt, a))) free(a);
  else (*out)->nan_rows = 1;
  return st;
}

static pk_status act_code(const char *name, const char *activation, int *act)
{
  int i;
  for (i = ACT_RELU; i <= ACT_IDENTITY; i++)
    if (activation && strcmp(activation, act_names[i]) == 0) {
      *act = i;
      return PK_OK;
    }
  return pk_fail(PK_EINVAL, "%s kernel: activation '%s' has no analytic kernel (supported: "
                 "relu, erf, identity)", name, activation ? activation : "(none)");
}

pk_status pk_kernel_ntk(pk_kernel **out, int depth, const char *activation, double sigma_w,
                        double sigma_b)
{
  int act = 0;
  pk_status st = act_code("ntk", activation, &act);
  *out = NULL;
  return st ? st : analytic_new(out, 1, depth, act, sigma_w, sigma_b);
}

pk_status pk_kernel_nngp(pk_kernel **out, int depth, const char *activation, double sigma_w,
                         double sigma_b)
{
  int act = 0;
  pk_status st = act_code("nngp", activation, &act);
  *out = NULL;
  return st ? st : analytic_new(out, 0, depth, act, sigma_w, sigma_b);
}

int pk_analytic_kernel_spec(const pk_kernel *k, pk_kernel_spec *s)
{
  const analytic *a;
  if (k->vt != &ntk_vt && k->vt != &nngp_vt) return 0;
  a = k->state;
  memset(s, 0, sizeof *s);
  s->type = a->ntk ? PK_KSPEC_NTK : PK_KSPEC_NNGP;
  s->p[0] = a->depth;
  s->p[1] = a->act;
  s->p[2] = a->sigma_w;
  s->p[3] = a->sigma_b;
  return 1;
}

int pk_analytic_kernel_from_spec(const pk_kernel_spec *s, pk_kernel **out, pk_status *st)
{
  if (s->type != PK_KSPEC_NTK && s->type != PK_KSPEC_NNGP) return 0;
  if (!(s->p[0] >= 1 && s->p[0] <= 100000 && s->p[0] == floor(s->p[0])))
    *st = pk_fail(PK_EFORMAT, "saved %s kernel: bad depth %g",
                  s->type == PK_KSPEC_NTK ? "ntk" : "nngp", s->p[0]);
  else if (!(s->p[1] >= ACT_RELU && s->p[1] <= ACT_IDENTITY && s->p[1] == floor(s->p[1])))
    *st = pk_fail(PK_EFORMAT, "saved kernel: bad activation code %g", s->p[1]);
  else
    *st = analytic_new(out, s->type == PK_KSPEC_NTK, (int)s->p[0], (int)s->p[1], s->p[2],
                       s->p[3]);
  return 1;
}
