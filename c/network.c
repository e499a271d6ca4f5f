/* network.c - fully connected networks: construction, activations, the
 * batched forward and backward passes over BLAS, the per-output
 * sensitivities the kernels use, the explicit Jacobian, and files. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <float.h>
#include <cblas.h>
#include "pk_net.h"

static const char *const act_names[] = {
  "identity", "relu", "tanh", "sigmoid", "softplus", "gelu", "erf", "sin"
};

int pk_activation_from_name(const char *name)
{
  int i;
  for (i = 0; i < PK_ACT_COUNT; i++)
    if (strcmp(name, act_names[i]) == 0) return i;
  return -1;
}

const char *pk_activation_name(pk_activation a)
{
  return (unsigned)a < PK_ACT_COUNT ? act_names[a] : "unknown";
}

const char *pk_activation_names(void)
{
  return "identity, relu, tanh, sigmoid, softplus, gelu, erf, sin";
}

/* ---- activations -------------------------------------------------------- */

static double sigmoid(double z)
{
  if (z >= 0) return 1.0 / (1.0 + exp(-z));
  {
    double e = exp(z);
    return e / (1.0 + e);
  }
}

void pk_act_apply(pk_activation act, const double *z, double *a, size_t n)
{
  size_t i;
  switch (act) {
  case PK_ACT_IDENTITY: if (a != z) memcpy(a, z, n * sizeof *a); break;
  case PK_ACT_RELU: for (i = 0; i < n; i++) a[i] = z[i] > 0 ? z[i] : 0.0; break;
  case PK_ACT_TANH: pk_vtanh(z, a, n); break;
  case PK_ACT_SIGMOID: pk_vsigmoid(z, a, n); break;
  case PK_ACT_SOFTPLUS:
    for (i = 0; i < n; i++) a[i] = (z[i] > 0 ? z[i] : 0.0) + log1p(exp(-fabs(z[i])));
    break;
  case PK_ACT_GELU:
    for (i = 0; i < n; i++) a[i] = 0.5 * z[i] * (1.0 + erf(z[i] * PK_SQRT1_2));
    break;
  case PK_ACT_ERF: for (i = 0; i < n; i++) a[i] = erf(z[i]); break;
  case PK_ACT_SIN: for (i = 0; i < n; i++) a[i] = sin(z[i]); break;
  default: break;
  }
}

/* g[i] *= phi'(z[i]); a = phi(z) gives the cheap forms */
void pk_act_mul_deriv(pk_activation act, const double *z, const double *a, double *g, size_t n)
{
  size_t i;
  const double c_erf = 2.0 / sqrt(PK_PI), c_pdf = 1.0 / sqrt(2.0 * PK_PI);
  switch (act) {
  case PK_ACT_IDENTITY: break;
  case PK_ACT_RELU: for (i = 0; i < n; i++) g[i] = z[i] > 0 ? g[i] : 0.0; break;
  case PK_ACT_TANH: for (i = 0; i < n; i++) g[i] *= 1.0 - a[i] * a[i]; break;
  case PK_ACT_SIGMOID: for (i = 0; i < n; i++) g[i] *= a[i] * (1.0 - a[i]); break;
  case PK_ACT_SOFTPLUS: for (i = 0; i < n; i++) g[i] *= sigmoid(z[i]); break;
  case PK_ACT_GELU:
    for (i = 0; i < n; i++)
      g[i] *= 0.5 * (1.0 + erf(z[i] * PK_SQRT1_2)) + z[i] * c_pdf * exp(-0.5 * z[i] * z[i]);
    break;
  case PK_ACT_ERF: for (i = 0; i < n; i++) g[i] *= c_erf * exp(-z[i] * z[i]); break;
  case PK_ACT_SIN: for (i = 0; i < n; i++) g[i] *= cos(z[i]); break;
  default: break;
  }
}

/* ---- construction -------------------------------------------------------- */

static pk_status alloc_net(pk_network **out, size_t L)
{
  pk_network *n = calloc(1, sizeof *n);
  *out = NULL;
  if (!n) return pk_fail(PK_ENOMEM, "network: out of memory");
  n->L = L;
  n->d = calloc(L + 1, sizeof *n->d);
  n->act = calloc(L, sizeof *n->act);
  n->sw = calloc(L, sizeof *n->sw);
  n->sb = calloc(L, sizeof *n->sb);
  n->woff = calloc(L, sizeof *n->woff);
  n->boff = calloc(L, sizeof *n->boff);
  if (!n->d || !n->act || !n->sw || !n->sb || !n->woff || !n->boff) {
    pk_network_free(n);
    return pk_fail(PK_ENOMEM, "network: out of memory");
  }
  *out = n;
  return PK_OK;
}

/* offsets, scales and the parameter count from d, param, sigmas */
static pk_status layout(pk_network *n)
{
  size_t l, P = 0, w;
  pk_status st;
  for (l = 0; l < n->L; l++) {
    if ((st = pk_mul_size(&w, n->d[l + 1], n->d[l], "network parameters"))) return st;
    n->woff[l] = P;
    if (P + w < P || P + w + n->d[l + 1] < P + w)
      return pk_fail(PK_ENOMEM, "network: parameter count overflows");
    P += w;
    n->boff[l] = P;
    P += n->d[l + 1];
    if (n->param == PK_PARAM_NTK) {
      n->sw[l] = n->sigma_w / sqrt((double)n->d[l]);
      n->sb[l] = n->sigma_b;
    } else {
      n->sw[l] = 1.0;
      n->sb[l] = 1.0;
    }
  }
  n->P = P;
  return pk_alloc((void **)&n->theta, P, sizeof(double), "the network's parameters");
}

/* a network of the spec's shape with its parameters allocated, not drawn */
static pk_status net_shell(pk_network **out, const pk_network_spec *s)
{
  pk_network *n;
  pk_status st;
  size_t l;
  *out = NULL;
  if (s->nsizes < 2)
    return pk_fail(PK_EINVAL, "network: sizes needs at least 2 entries (inputs and outputs), got %zu",
                   s->nsizes);
  for (l = 0; l < s->nsizes; l++)
    if (s->sizes[l] == 0 || s->sizes[l] > PK_MAX_DIM)
      return pk_fail(PK_EINVAL, "network: size %zu (entry %zu) must be a positive width",
                     s->sizes[l], l + 1);
  if (s->param != PK_PARAM_NTK && s->param != PK_PARAM_STANDARD)
    return pk_fail(PK_EINVAL, "network: unknown parameterization");
  if (!(s->sigma_w >= 0) || !isfinite(s->sigma_w) || !(s->sigma_b >= 0) || !isfinite(s->sigma_b))
    return pk_fail(PK_EINVAL, "network: sigma_w and sigma_b must be finite and >= 0");
  for (l = 0; l + 2 < s->nsizes; l++) {
    pk_activation a = s->acts ? s->acts[l] : s->act;
    if ((unsigned)a >= PK_ACT_COUNT)
      return pk_fail(PK_EINVAL, "network: unknown activation for hidden layer %zu", l + 1);
  }
  if ((st = alloc_net(&n, s->nsizes - 1))) return st;
  memcpy(n->d, s->sizes, s->nsizes * sizeof *n->d);
  for (l = 0; l < n->L; l++)
    n->act[l] = l + 1 < n->L ? (s->acts ? s->acts[l] : s->act) : PK_ACT_IDENTITY;
  n->param = s->param;
  n->sigma_w = s->sigma_w;
  n->sigma_b = s->sigma_b;
  n->seed = s->seed;
  if ((st = layout(n))) {
    pk_network_free(n);
    return st;
  }
  *out = n;
  return PK_OK;
}

pk_status pk_network_new(pk_network **out, const pk_network_spec *s)
{
  pk_network *n;
  pk_status st;
  pk_rng r;
  size_t l, i;
  if ((st = net_shell(out, s))) return st;
  n = *out;
  pk_rng_seed(&r, s->seed);
  for (l = 0; l < n->L; l++) {
    double ws = n->param == PK_PARAM_NTK ? 1.0 : n->sigma_w / sqrt((double)n->d[l]);
    double bs = n->param == PK_PARAM_NTK ? 1.0 : n->sigma_b;
    for (i = n->woff[l]; i < n->boff[l]; i++) n->theta[i] = ws * pk_rng_normal(&r);
    for (i = n->boff[l]; i < n->boff[l] + n->d[l + 1]; i++) n->theta[i] = bs * pk_rng_normal(&r);
  }
  *out = n;
  return PK_OK;
}

pk_status pk_network_clone(pk_network **out, const pk_network *src)
{
  pk_network_spec s;
  pk_status st;
  memset(&s, 0, sizeof s);
  s.nsizes = src->L + 1;
  s.sizes = src->d;
  s.acts = src->act;           /* the first L - 1 entries are the hidden ones */
  s.param = src->param;
  s.sigma_w = src->sigma_w;
  s.sigma_b = src->sigma_b;
  s.seed = src->seed;
  if ((st = net_shell(out, &s))) return st;
  memcpy((*out)->theta, src->theta, src->P * sizeof(double));
  (*out)->version = src->version;
  return PK_OK;
}

void pk_network_free(pk_network *n)
{
  if (!n) return;
  free(n->d);
  free(n->act);
  free(n->sw);
  free(n->sb);
  free(n->woff);
  free(n->boff);
  free(n->theta);
  free(n);
}

size_t pk_network_layers(const pk_network *n) { return n->L; }
size_t pk_network_size(const pk_network *n, size_t l) { return l <= n->L ? n->d[l] : 0; }
pk_activation pk_network_activation(const pk_network *n, size_t l)
{
  return l >= 1 && l <= n->L ? n->act[l - 1] : PK_ACT_IDENTITY;
}
pk_parameterization pk_network_param(const pk_network *n) { return n->param; }
size_t pk_network_nparams(const pk_network *n) { return n->P; }
const double *pk_network_params(const pk_network *n) { return n->theta; }
uint64_t pk_network_version(const pk_network *n) { return n->version; }

pk_status pk_network_set_params(pk_network *n, const double *theta, size_t len)
{
  if (len != n->P)
    return pk_fail(PK_EINVAL, "set_params: expected %zu parameters, got %zu", n->P, len);
  memcpy(n->theta, theta, len * sizeof(double));
  n->version++;
  return PK_OK;
}

pk_status pk_check_input(const pk_network *n, const pk_matrix *X, const char *what)
{
  if (X->cols != n->d[0])
    return pk_fail(PK_EINVAL, "%s has %zu columns, the network takes %zu inputs", what, X->cols,
                   n->d[0]);
  return PK_OK;
}

/* ---- workspaces ------------------------------------------------------------ */

size_t pk_acts_bytes(const pk_network *n, size_t cap, int with_grad)
{
  size_t l, tot = 0;
  for (l = 0; l < n->L; l++) {
    tot += cap * n->d[l + 1] * (with_grad ? 2 : 1);     /* Z, G */
    if (l + 1 < n->L) tot += cap * n->d[l + 1];        /* A[l+1] */
  }
  return tot * sizeof(double);
}

pk_status pk_acts_init(pk_acts *w, const pk_network *n, size_t cap, int with_grad)
{
  size_t l, tot = pk_acts_bytes(n, cap, with_grad) / sizeof(double);
  double *p;
  pk_status st;
  memset(w, 0, sizeof *w);
  w->cap = cap;
  w->A = calloc(n->L, sizeof *w->A);
  w->Z = calloc(n->L, sizeof *w->Z);
  w->G = calloc(n->L, sizeof *w->G);
  if (!w->A || !w->Z || !w->G) {
    pk_acts_free(w);
    return pk_fail(PK_ENOMEM, "network workspace: out of memory");
  }
  if ((st = pk_alloc((void **)&w->buf, tot, sizeof(double), "the network's activations"))) {
    pk_acts_free(w);
    return st;
  }
  p = w->buf;
  for (l = 0; l < n->L; l++) {
    w->Z[l] = p; p += cap * n->d[l + 1];
    if (with_grad) { w->G[l] = p; p += cap * n->d[l + 1]; }
    if (l + 1 < n->L) { w->A[l + 1] = p; p += cap * n->d[l + 1]; }
  }
  return PK_OK;
}

void pk_acts_free(pk_acts *w)
{
  free(w->A);
  free(w->Z);
  free(w->G);
  free(w->buf);
  memset(w, 0, sizeof *w);
}

static size_t max_width(const pk_network *n)
{
  size_t l, m = 0;
  for (l = 0; l <= n->L; l++)
    if (n->d[l] > m) m = n->d[l];
  return m;
}

size_t pk_deltas_bytes(const pk_network *n, size_t cap)
{
  size_t l, tot = cap * max_width(n), K = n->d[n->L];
  for (l = 0; l < n->L; l++) tot += cap * K * n->d[l + 1];
  return tot * sizeof(double);
}

pk_status pk_deltas_init(pk_deltas *dl, const pk_network *n, size_t cap)
{
  size_t l, K = n->d[n->L];
  double *p;
  pk_status st;
  memset(dl, 0, sizeof *dl);
  dl->cap = cap;
  dl->K = K;
  dl->D = calloc(n->L, sizeof *dl->D);
  if (!dl->D) return pk_fail(PK_ENOMEM, "network workspace: out of memory");
  if ((st = pk_alloc((void **)&dl->buf, pk_deltas_bytes(n, cap) / sizeof(double), sizeof(double),
                     "the network's output sensitivities"))) {
    pk_deltas_free(dl);
    return st;
  }
  p = dl->buf;
  for (l = 0; l < n->L; l++) {
    dl->D[l] = p;
    p += cap * K * n->d[l + 1];
  }
  dl->dphi = p;
  return PK_OK;
}

void pk_deltas_free(pk_deltas *dl)
{
  free(dl->D);
  free(dl->buf);
  memset(dl, 0, sizeof *dl);
}

/* ---- passes ------------------------------------------------------------------ */

void pk_net_forward_ws(const pk_network *n, const double *theta, const double *X, size_t rows,
                       pk_acts *w)
{
  size_t l, i, j;
  w->A[0] = (double *)X;
  if (rows == 0) return;
  for (l = 0; l < n->L; l++) {
    size_t din = n->d[l], dout = n->d[l + 1];
    const double *W = theta + n->woff[l], *b = theta + n->boff[l];
    double *Z = w->Z[l], sb = n->sb[l];
    for (i = 0; i < rows; i++)
      for (j = 0; j < dout; j++) Z[i * dout + j] = sb * b[j];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)dout, (int)din,
                n->sw[l], w->A[l], (int)din, W, (int)din, 1.0, Z, (int)dout);
    if (l + 1 < n->L) pk_act_apply(n->act[l], Z, w->A[l + 1], rows * dout);
  }
}

void pk_net_backward(const pk_network *n, const double *theta, pk_acts *w, size_t rows,
                     double scale, double *grad)
{
  size_t l, i, j;
  if (rows == 0) return;
  for (l = n->L; l-- > 0;) {
    size_t din = n->d[l], dout = n->d[l + 1];
    const double *W = theta + n->woff[l];
    double *G = w->G[l];
    if (grad) {
      double *gW = grad + n->woff[l], *gb = grad + n->boff[l], sb = scale * n->sb[l];
      cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)dout, (int)din, (int)rows,
                  scale * n->sw[l], G, (int)dout, w->A[l], (int)din, 0.0, gW, (int)din);
      for (j = 0; j < dout; j++) gb[j] = 0;
      for (i = 0; i < rows; i++)
        for (j = 0; j < dout; j++) gb[j] += G[i * dout + j];
      for (j = 0; j < dout; j++) gb[j] *= sb;
    }
    if (l > 0) {
      double *Gp = w->G[l - 1];
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)din, (int)dout,
                  n->sw[l], G, (int)dout, W, (int)din, 0.0, Gp, (int)din);
      pk_act_mul_deriv(n->act[l - 1], w->Z[l - 1], w->A[l], Gp, rows * din);
    }
  }
}

void pk_net_deltas(const pk_network *n, const double *theta, const pk_acts *w, size_t rows,
                   pk_deltas *dl)
{
  size_t l, i, k, j, K = n->d[n->L];
  double *D = dl->D[n->L - 1];
  memset(D, 0, rows * K * K * sizeof(double));
  for (i = 0; i < rows; i++)
    for (k = 0; k < K; k++) D[(i * K + k) * K + k] = 1.0;
  for (l = n->L - 1; l > 0; l--) {
    size_t din = n->d[l], dout = n->d[l + 1];
    const double *W = theta + n->woff[l];
    double *Dp = dl->D[l - 1], *dphi = dl->dphi;
    if (l == n->L - 1) {
      /* unit rows: the product is a copy of W's rows */
      for (i = 0; i < rows; i++)
        for (k = 0; k < K; k++)
          for (j = 0; j < din; j++) Dp[(i * K + k) * din + j] = n->sw[l] * W[k * din + j];
    } else {
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(rows * K), (int)din,
                  (int)dout, n->sw[l], dl->D[l], (int)dout, W, (int)din, 0.0, Dp, (int)din);
    }
    for (j = 0; j < rows * din; j++) dphi[j] = 1.0;
    pk_act_mul_deriv(n->act[l - 1], w->Z[l - 1], w->A[l], dphi, rows * din);
    for (i = 0; i < rows; i++)
      for (k = 0; k < K; k++) {
        double *r = Dp + (i * K + k) * din;
        const double *g = dphi + i * din;
        for (j = 0; j < din; j++) r[j] *= g[j];
      }
  }
}

/* ---- public passes ----------------------------------------------------------- */

/* rows per block of work, so workspaces stay near `budget` bytes */
static size_t block_rows(size_t per_row, size_t budget, size_t n)
{
  size_t b = per_row ? budget / per_row : n;
  if (b < 1) b = 1;
  return b < n ? b : n;
}

pk_status pk_network_forward(const pk_network *n, const pk_matrix *X, pk_matrix **out)
{
  pk_acts w;
  pk_status st;
  size_t K = n->d[n->L], b, r0;
  *out = NULL;
  if ((st = pk_check_input(n, X, "X"))) return st;
  if ((st = pk_matrix_new(out, X->rows, K))) return st;
  /* blocks of rows within 64 MiB, and within the memory limit, so that
   * a small limit costs more blocks rather than an error */
  b = block_rows(pk_acts_bytes(n, 1, 0), pk_memory_limit() < ((size_t)64 << 20) ?
                 pk_memory_limit() : (size_t)64 << 20, X->rows);
  if ((st = pk_acts_init(&w, n, b, 0))) {
    pk_matrix_free(*out);
    *out = NULL;
    return st;
  }
  for (r0 = 0; r0 < X->rows; r0 += b) {
    size_t m = X->rows - r0 < b ? X->rows - r0 : b;
    pk_net_forward_ws(n, n->theta, X->data + r0 * X->cols, m, &w);
    memcpy((*out)->data + r0 * K, w.Z[n->L - 1], m * K * sizeof(double));
  }
  pk_acts_free(&w);
  return PK_OK;
}

pk_status pk_network_jacobian(const pk_network *n, const pk_matrix *X, pk_matrix **out)
{
  pk_acts w;
  pk_deltas dl;
  pk_status st;
  size_t K = n->d[n->L], rows, i, k, l, a, c;
  char what[80];
  *out = NULL;
  if ((st = pk_check_input(n, X, "X"))) return st;
  if ((st = pk_mul_size(&rows, X->rows, K, "jacobian"))) return st;
  snprintf(what, sizeof what, "the %zu x %zu Jacobian", rows, n->P);
  if ((st = pk_matrix_alloc_hint(out, rows, n->P, what, "ask for fewer rows of X at a time "
                                 "(pk.kernel.tangent never forms the Jacobian)")))
    return st;
  if ((st = pk_acts_init(&w, n, X->rows, 0))) goto fail;
  if ((st = pk_deltas_init(&dl, n, X->rows))) { pk_acts_free(&w); goto fail; }
  pk_net_forward_ws(n, n->theta, X->data, X->rows, &w);
  pk_net_deltas(n, n->theta, &w, X->rows, &dl);
  for (i = 0; i < X->rows; i++)
    for (k = 0; k < K; k++) {
      double *J = (*out)->data + (i * K + k) * n->P;
      for (l = 0; l < n->L; l++) {
        size_t din = n->d[l], dout = n->d[l + 1];
        const double *dv = dl.D[l] + (i * K + k) * dout, *av = w.A[l] + i * din;
        double *JW = J + n->woff[l], *Jb = J + n->boff[l];
        for (a = 0; a < dout; a++) {
          double s = n->sw[l] * dv[a];
          for (c = 0; c < din; c++) JW[a * din + c] = s * av[c];
          Jb[a] = n->sb[l] * dv[a];
        }
      }
    }
  pk_deltas_free(&dl);
  pk_acts_free(&w);
  return PK_OK;
fail:
  pk_matrix_free(*out);
  *out = NULL;
  return st;
}

/* ---- files ------------------------------------------------------------------- */

pk_status pk_network_write_payload(pk_writer *wr, const void *obj)
{
  const pk_network *n = obj;
  size_t l;
  pk_put_u64(wr, n->L);
  for (l = 0; l <= n->L; l++) pk_put_u64(wr, n->d[l]);
  for (l = 0; l < n->L; l++) pk_put_u32(wr, (uint32_t)n->act[l]);
  pk_put_u32(wr, (uint32_t)n->param);
  pk_put_f64(wr, n->sigma_w);
  pk_put_f64(wr, n->sigma_b);
  pk_put_u64(wr, n->seed);
  pk_put_u64(wr, n->P);
  pk_put_f64s(wr, n->theta, n->P);
  return PK_OK;
}

pk_status pk_network_read_payload(pk_reader *r, pk_network **out)
{
  size_t L, l, P;
  size_t *sizes = NULL;
  pk_activation *acts = NULL;
  pk_network_spec s;
  pk_status st;
  *out = NULL;
  memset(&s, 0, sizeof s);
  if ((st = pk_get_count(r, 8, &L, "layer count"))) return st;
  if (L < 1) return pk_fail(PK_EFORMAT, "size check failed: a network with no layers");
  sizes = malloc((L + 1) * sizeof *sizes);
  acts = malloc(L * sizeof *acts);
  if (!sizes || !acts) { st = pk_fail(PK_ENOMEM, "network: out of memory"); goto done; }
  for (l = 0; l <= L; l++) sizes[l] = (size_t)pk_get_u64(r);
  for (l = 0; l < L; l++) {
    uint32_t a = pk_get_u32(r);
    if (a >= PK_ACT_COUNT) { st = pk_fail(PK_EFORMAT, "value check failed: unknown activation %u", a); goto done; }
    /* the output layer has none: a file that says otherwise is not ours */
    if (l + 1 == L && a != PK_ACT_IDENTITY && !r->err) {
      st = pk_fail(PK_EFORMAT, "value check failed: the output layer has activation %u", a);
      goto done;
    }
    acts[l] = (pk_activation)a;
  }
  s.param = (pk_parameterization)pk_get_u32(r);
  s.sigma_w = pk_get_f64(r);
  s.sigma_b = pk_get_f64(r);
  s.seed = pk_get_u64(r);
  if (r->err) { st = pk_fail(PK_EFORMAT, "file is truncated (reading the network)"); goto done; }
  if (s.param != PK_PARAM_NTK && s.param != PK_PARAM_STANDARD) {
    st = pk_fail(PK_EFORMAT, "value check failed: unknown parameterization %u", (unsigned)s.param);
    goto done;
  }
  if (!(s.sigma_w >= 0 && s.sigma_w <= DBL_MAX && s.sigma_b >= 0 && s.sigma_b <= DBL_MAX)) {
    st = pk_fail(PK_EFORMAT, "value check failed: sigma_w and sigma_b must be finite and >= 0");
    goto done;
  }
  s.nsizes = L + 1;
  s.sizes = sizes;
  s.acts = acts;
  /* the parameter count must match the sizes and fit the file before any
   * allocation of that size */
  {
    size_t need = 0, k;
    for (k = 0; k < L; k++) {
      if (sizes[k] == 0 || sizes[k + 1] == 0 || sizes[k] > PK_MAX_DIM || sizes[k + 1] > PK_MAX_DIM ||
          sizes[k + 1] > ((r->n - r->pos) / 8) / sizes[k]) {
        st = pk_fail(PK_EFORMAT, "size check failed: layer sizes do not fit the file");
        goto done;
      }
      need += sizes[k + 1] * sizes[k] + sizes[k + 1];
    }
    if ((st = pk_get_count(r, 8, &P, "parameter count"))) goto done;
    if (P != need) {
      st = pk_fail(PK_EFORMAT, "size check failed: %zu parameters for sizes that need %zu", P, need);
      goto done;
    }
  }
  if ((st = pk_network_new(out, &s))) goto done;
  pk_get_f64s(r, (*out)->theta, P);
  if (r->err) {
    st = pk_fail(PK_EFORMAT, "file is truncated (reading the parameters)");
    pk_network_free(*out);
    *out = NULL;
  }
done:
  free(sizes);
  free(acts);
  return st;
}

pk_status pk_network_save(const pk_network *n, const char *path)
{
  return pk_save_object(path, PK_TAG_NETWORK, pk_network_write_payload, n);
}

pk_status pk_network_load_mem(pk_network **out, const char *name, const unsigned char *buf,
                              size_t len)
{
  pk_reader r;
  pk_status st;
  *out = NULL;
  if ((st = pk_load_object_mem(name, buf, len, PK_TAG_NETWORK, &r))) return st;
  if ((st = pk_network_read_payload(&r, out)) ||
      (st = pk_reader_end(&r, name, pk_network_write_payload, *out))) {
    pk_network_free(*out);
    *out = NULL;
    return pk_fail_in(st, name);
  }
  return PK_OK;
}

pk_status pk_network_load(pk_network **out, const char *path)
{
  unsigned char *buf;
  size_t len;
  pk_status st;
  *out = NULL;
  if ((st = pk_read_file(path, &buf, &len))) return st;
  st = pk_network_load_mem(out, path, buf, len);
  free(buf);
  return st;
}
