/* network.c - networks as lists of layers (layer.h): construction,
 * activations, the walkers that run the layers' forward and backward
 * functions with the activations between them, the per-output
 * sensitivities the kernels use, the explicit Jacobian, and files. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <float.h>
#include <cblas.h>
#include "pk_net.h"

static const char *const act_names[] = {
  "identity", "relu", "tanh", "sigmoid", "softplus", "gelu", "erf", "sin", "leaky_relu"
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
  return "identity, relu, tanh, sigmoid, softplus, gelu, erf, sin, leaky_relu";
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

void pk_act_apply(pk_activation act, double slope, const double *z, double *a, size_t n)
{
  size_t i;
  switch (act) {
  case PK_ACT_IDENTITY: if (a != z) memcpy(a, z, n * sizeof *a); break;
  case PK_ACT_RELU: for (i = 0; i < n; i++) a[i] = z[i] > 0 ? z[i] : 0.0; break;
  case PK_ACT_LEAKY_RELU: for (i = 0; i < n; i++) a[i] = z[i] > 0 ? z[i] : slope * z[i]; break;
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

/* g[i] *= phi'(z[i]); a = phi(z) gives the cheap forms. At 0, relu' is
 * taken as 0 and leaky_relu' as slope, as torch's backward passes do. */
void pk_act_mul_deriv(pk_activation act, double slope, const double *z, const double *a,
                      double *g, size_t n)
{
  size_t i;
  const double c_erf = 2.0 / sqrt(PK_PI), c_pdf = 1.0 / sqrt(2.0 * PK_PI);
  switch (act) {
  case PK_ACT_IDENTITY: break;
  case PK_ACT_RELU: for (i = 0; i < n; i++) g[i] = z[i] > 0 ? g[i] : 0.0; break;
  case PK_ACT_LEAKY_RELU: for (i = 0; i < n; i++) g[i] = z[i] > 0 ? g[i] : slope * g[i]; break;
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

/* A layer as a list or a file describes it, before offsets and scales. */
typedef struct layer_rec {
  pk_layer_type type;
  size_t out;                      /* dense: width */
  pk_activation act;
  double slope;
} layer_rec;

void pk_network_free(pk_network *n)
{
  if (!n) return;
  free(n->layer);
  free(n->theta);
  free(n);
}

/* shapes, offsets, scales and the parameter count; allocates theta */
static pk_status layout(pk_network *n)
{
  size_t l, P = 0;
  pk_status st;
  for (l = 0; l < n->L; l++) {
    pk_layer *ly = &n->layer[l];
    if ((st = pk_mul_size(&ly->nw, ly->out, ly->fan_in, "network parameters"))) return st;
    ly->woff = P;
    if (P + ly->nw < P || P + ly->nw + ly->nb < P + ly->nw)
      return pk_fail(PK_ENOMEM, "network: parameter count overflows");
    P += ly->nw;
    ly->boff = P;
    P += ly->nb;
    if (n->param == PK_PARAM_NTK) {
      ly->sw = n->sigma_w / sqrt((double)ly->fan_in);
      ly->sb = n->sigma_b;
    } else {
      ly->sw = 1.0;
      ly->sb = 1.0;
    }
  }
  n->P = P;
  return pk_alloc((void **)&n->theta, P, sizeof(double), "the network's parameters");
}

/* A network of in inputs and the layers recs[0..L), parameters allocated,
 * not drawn. The records have been checked. */
static pk_status build(pk_network **out, size_t in, const layer_rec *recs, size_t L,
                       pk_parameterization param, double sigma_w, double sigma_b, uint64_t seed)
{
  pk_network *n = calloc(1, sizeof *n);
  pk_status st;
  size_t l;
  *out = NULL;
  if (!n || !(n->layer = calloc(L, sizeof *n->layer))) {
    free(n);
    return pk_fail(PK_ENOMEM, "network: out of memory");
  }
  n->L = L;
  n->param = param;
  n->sigma_w = sigma_w;
  n->sigma_b = sigma_b;
  n->seed = seed;
  for (l = 0; l < L; l++) {
    pk_layer *ly = &n->layer[l];
    ly->vt = &pk_dense_vt;
    ly->in = l ? n->layer[l - 1].out : in;
    ly->out = recs[l].out;
    ly->ishape.c = ly->in;
    ly->oshape.c = ly->out;
    ly->ishape.h = ly->ishape.w = ly->oshape.h = ly->oshape.w = 1;
    ly->kh = ly->kw = ly->sy = ly->sx = 1;
    ly->fan_in = ly->in;
    ly->nb = ly->out;
    ly->act = l + 1 < L ? recs[l].act : PK_ACT_IDENTITY;
    ly->slope = ly->act == PK_ACT_LEAKY_RELU ? recs[l].slope : 0.0;
  }
  if ((st = layout(n))) {
    pk_network_free(n);
    return st;
  }
  *out = n;
  return PK_OK;
}

/* the spec's layers as records, checked (recs: nsizes - 1 of them) */
static pk_status spec_records(const pk_network_spec *s, layer_rec *recs)
{
  size_t l;
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
  for (l = 0; l + 1 < s->nsizes; l++) {
    layer_rec *r = &recs[l];
    r->type = PK_LAYER_DENSE;
    r->out = s->sizes[l + 1];
    r->act = PK_ACT_IDENTITY;
    r->slope = 0;
    if (l + 2 < s->nsizes) {
      r->act = s->acts ? s->acts[l] : s->act;
      if ((unsigned)r->act >= PK_ACT_COUNT)
        return pk_fail(PK_EINVAL, "network: unknown activation for hidden layer %zu", l + 1);
      r->slope = s->slopes ? s->slopes[l] : s->slope;
      if (r->act == PK_ACT_LEAKY_RELU && !isfinite(r->slope))
        return pk_fail(PK_EINVAL, "network: the slope of hidden layer %zu must be finite", l + 1);
    }
  }
  return PK_OK;
}

/* draw the parameters from the seed: layer by layer, W then b */
static void draw(pk_network *n)
{
  pk_rng r;
  size_t l, i;
  pk_rng_seed(&r, n->seed);
  for (l = 0; l < n->L; l++) {
    const pk_layer *ly = &n->layer[l];
    double ws = n->param == PK_PARAM_NTK ? 1.0 : n->sigma_w / sqrt((double)ly->fan_in);
    double bs = n->param == PK_PARAM_NTK ? 1.0 : n->sigma_b;
    for (i = ly->woff; i < ly->woff + ly->nw; i++) n->theta[i] = ws * pk_rng_normal(&r);
    for (i = ly->boff; i < ly->boff + ly->nb; i++) n->theta[i] = bs * pk_rng_normal(&r);
  }
}

pk_status pk_network_new(pk_network **out, const pk_network_spec *s)
{
  layer_rec *recs;
  pk_status st;
  *out = NULL;
  if (s->nsizes < 2) return spec_records(s, NULL);
  if (!(recs = calloc(s->nsizes - 1, sizeof *recs)))
    return pk_fail(PK_ENOMEM, "network: out of memory");
  if (!(st = spec_records(s, recs)) &&
      !(st = build(out, s->sizes[0], recs, s->nsizes - 1, s->param, s->sigma_w, s->sigma_b,
                   s->seed)))
    draw(*out);
  free(recs);
  return st;
}

void pk_network_spec_init(pk_network_spec *s)
{
  memset(s, 0, sizeof *s);
  s->act = PK_ACT_TANH;
  s->slope = PK_LEAKY_SLOPE;
  s->param = PK_PARAM_NTK;
  s->sigma_w = 1.0;
  s->sigma_b = 0.1;
}

pk_status pk_network_clone(pk_network **out, const pk_network *src)
{
  pk_network *n = calloc(1, sizeof *n);
  pk_status st;
  *out = NULL;
  if (!n) return pk_fail(PK_ENOMEM, "network: out of memory");
  *n = *src;
  n->layer = NULL;
  n->theta = NULL;
  if (!(n->layer = malloc(src->L * sizeof *n->layer))) {
    pk_network_free(n);
    return pk_fail(PK_ENOMEM, "network: out of memory");
  }
  memcpy(n->layer, src->layer, src->L * sizeof *n->layer);
  if ((st = pk_alloc((void **)&n->theta, src->P, sizeof(double), "the network's parameters"))) {
    pk_network_free(n);
    return st;
  }
  memcpy(n->theta, src->theta, src->P * sizeof(double));
  *out = n;
  return PK_OK;
}

int pk_network_same_arch(const pk_network *a, const pk_network *b)
{
  size_t l;
  if (a->L != b->L || a->P != b->P || a->param != b->param || a->seed != b->seed ||
      memcmp(&a->sigma_w, &b->sigma_w, sizeof a->sigma_w) != 0 ||
      memcmp(&a->sigma_b, &b->sigma_b, sizeof a->sigma_b) != 0)
    return 0;
  for (l = 0; l < a->L; l++) {
    const pk_layer *x = &a->layer[l], *y = &b->layer[l];
    if (x->vt != y->vt || x->in != y->in || x->out != y->out || x->kh != y->kh ||
        x->kw != y->kw || x->sy != y->sy || x->sx != y->sx || x->py != y->py || x->px != y->px ||
        x->ishape.c != y->ishape.c || x->ishape.h != y->ishape.h || x->ishape.w != y->ishape.w ||
        x->act != y->act || memcmp(&x->slope, &y->slope, sizeof x->slope) != 0)
      return 0;
  }
  return 1;
}

size_t pk_network_layers(const pk_network *n) { return n->L; }
size_t pk_network_size(const pk_network *n, size_t l)
{
  return l == 0 ? PK_NET_IN(n) : l <= n->L ? n->layer[l - 1].out : 0;
}
pk_activation pk_network_activation(const pk_network *n, size_t l)
{
  return l >= 1 && l <= n->L ? n->layer[l - 1].act : PK_ACT_IDENTITY;
}
double pk_network_slope(const pk_network *n, size_t l)
{
  return l >= 1 && l <= n->L ? n->layer[l - 1].slope : 0.0;
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

pk_status pk_network_loss(const pk_network *n, const pk_matrix *X, const pk_matrix *Y,
                          pk_loss loss, double *value)
{
  pk_matrix *F;
  pk_status st;
  if ((st = pk_network_forward(n, X, &F))) return st;
  if (!(st = pk_loss_check(loss, Y, X->rows, PK_NET_OUT(n))))
    st = pk_loss_eval(loss, F->data, X->rows, F->cols, Y, NULL, value, NULL);
  pk_matrix_free(F);
  return st;
}

pk_status pk_check_input(const pk_network *n, const pk_matrix *X, const char *what)
{
  if (X->cols != PK_NET_IN(n))
    return pk_fail(PK_EINVAL, "%s has %zu columns, the network takes %zu inputs", what, X->cols,
                   PK_NET_IN(n));
  return PK_OK;
}

/* ---- workspaces ------------------------------------------------------------ */

/* the most scratch any layer wants for its passes over n rows */
static size_t max_work(const pk_network *n, size_t rows)
{
  size_t l, m = 0;
  for (l = 0; l < n->L; l++) {
    size_t w = n->layer[l].vt->work(&n->layer[l], rows);
    if (w > m) m = w;
  }
  return m;
}

size_t pk_acts_bytes(const pk_network *n, size_t cap, int with_grad)
{
  size_t l, tot = 0;
  for (l = 0; l < n->L; l++) {
    size_t out = n->layer[l].out;
    tot += cap * out * (with_grad ? 2 : 1);     /* Z, G */
    if (l + 1 < n->L) tot += cap * out;         /* A[l+1] */
  }
  return (tot + max_work(n, cap)) * sizeof(double);
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
    size_t out = n->layer[l].out;
    w->Z[l] = p; p += cap * out;
    if (with_grad) { w->G[l] = p; p += cap * out; }
    if (l + 1 < n->L) { w->A[l + 1] = p; p += cap * out; }
  }
  w->work = p;
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

/* the widest layer input */
static size_t max_in(const pk_network *n)
{
  size_t l, m = 0;
  for (l = 0; l < n->L; l++)
    if (n->layer[l].in > m) m = n->layer[l].in;
  return m;
}

size_t pk_deltas_bytes(const pk_network *n, size_t cap)
{
  size_t l, K = PK_NET_OUT(n), tot = cap * max_in(n) + max_work(n, cap * K);
  for (l = 0; l < n->L; l++) tot += cap * K * n->layer[l].out;
  return tot * sizeof(double);
}

pk_status pk_deltas_init(pk_deltas *dl, const pk_network *n, size_t cap)
{
  size_t l, K = PK_NET_OUT(n);
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
    p += cap * K * n->layer[l].out;
  }
  dl->dphi = p;
  dl->work = p + cap * max_in(n);
  return PK_OK;
}

void pk_deltas_free(pk_deltas *dl)
{
  free(dl->D);
  free(dl->buf);
  memset(dl, 0, sizeof *dl);
}

void pk_net_side(pk_side *s, const pk_network *n, size_t l, double *const *A, double *const *U,
                 double *const *feat, size_t r0, size_t rows, size_t per, int outputs)
{
  const pk_layer *ly = &n->layer[l];
  size_t fs = ly->vt->feat_size(ly, per);
  s->n = rows;
  s->per = per;
  s->V = A[l] + r0 * ly->in;
  s->U = U[l] + r0 * per * ly->out;
  s->feat = fs && feat && feat[l] ? feat[l] + r0 * fs : NULL;
  s->unit = outputs && l + 1 == n->L;
}

size_t pk_lfeats_bytes(const pk_network *n, size_t cap, size_t per)
{
  size_t l, tot = 0;
  for (l = 0; l < n->L; l++) tot += cap * n->layer[l].vt->feat_size(&n->layer[l], per);
  return tot * sizeof(double);
}

pk_status pk_lfeats_init(pk_lfeats *f, const pk_network *n, size_t cap, size_t per)
{
  size_t nf = pk_lfeats_bytes(n, cap, per) / sizeof(double), l;
  double *p;
  pk_status st;
  memset(f, 0, sizeof *f);
  if (!nf) return PK_OK;
  if (!(f->feat = calloc(n->L, sizeof *f->feat)))
    return pk_fail(PK_ENOMEM, "network workspace: out of memory");
  if ((st = pk_alloc((void **)&f->buf, nf, sizeof(double), "the layers' features"))) {
    pk_lfeats_free(f);
    return st;
  }
  p = f->buf;
  for (l = 0; l < n->L; l++) {
    size_t fs = n->layer[l].vt->feat_size(&n->layer[l], per);
    if (fs) {
      f->feat[l] = p;
      p += cap * fs;
    }
  }
  return PK_OK;
}

void pk_lfeats_free(pk_lfeats *f)
{
  free(f->feat);
  free(f->buf);
  memset(f, 0, sizeof *f);
}

void pk_lfeats_compute(pk_lfeats *f, const pk_network *n, double *const *A, double *const *U,
                       size_t rows, size_t per, int outputs)
{
  size_t l;
  if (!f->feat) return;
  for (l = 0; l < n->L; l++)
    if (f->feat[l]) {
      const pk_layer *ly = &n->layer[l];
      pk_side s;
      pk_net_side(&s, n, l, A, U, NULL, 0, rows, per, outputs);
      ly->vt->feat(ly, &s, f->feat[l]);
    }
}

/* ---- passes ------------------------------------------------------------------ */

/* theta's slices for layer l */
#define LW(ly, theta) ((theta) + (ly)->woff)
#define LB(ly, theta) ((ly)->nb ? (theta) + (ly)->boff : NULL)

void pk_net_forward_ws(const pk_network *n, const double *theta, const double *X, size_t rows,
                       pk_acts *w)
{
  size_t l;
  w->A[0] = (double *)X;
  if (rows == 0) return;
  for (l = 0; l < n->L; l++) {
    const pk_layer *ly = &n->layer[l];
    ly->vt->forward(ly, LW(ly, theta), LB(ly, theta), w->A[l], rows, 0.0, w->Z[l], w->work);
    if (l + 1 < n->L) pk_act_apply(ly->act, ly->slope, w->Z[l], w->A[l + 1], rows * ly->out);
  }
}

void pk_net_backward(const pk_network *n, const double *theta, pk_acts *w, size_t rows,
                     double scale, double *grad)
{
  size_t l;
  if (rows == 0) return;
  for (l = n->L; l-- > 0;) {
    const pk_layer *ly = &n->layer[l];
    if (grad && ly->nw + ly->nb)
      ly->vt->backward_params(ly, w->A[l], w->G[l], rows, scale, grad + ly->woff,
                              grad + ly->boff, w->work);
    if (l > 0) {
      const pk_layer *prev = &n->layer[l - 1];
      ly->vt->backward_input(ly, LW(ly, theta), w->G[l], rows, w->G[l - 1], w->work);
      pk_act_mul_deriv(prev->act, prev->slope, w->Z[l - 1], w->A[l], w->G[l - 1], rows * ly->in);
    }
  }
}

void pk_net_deltas(const pk_network *n, const double *theta, const pk_acts *w, size_t rows,
                   pk_deltas *dl)
{
  size_t l, i, k, j, K = PK_NET_OUT(n);
  double *D = dl->D[n->L - 1];
  memset(D, 0, rows * K * K * sizeof(double));
  for (i = 0; i < rows; i++)
    for (k = 0; k < K; k++) D[(i * K + k) * K + k] = 1.0;
  for (l = n->L - 1; l > 0; l--) {
    const pk_layer *ly = &n->layer[l], *prev = &n->layer[l - 1];
    size_t din = ly->in;
    double *Dp = dl->D[l - 1], *dphi = dl->dphi;
    ly->vt->backward_input(ly, LW(ly, theta), dl->D[l], rows * K, Dp, dl->work);
    if (prev->act == PK_ACT_IDENTITY) continue;
    for (j = 0; j < rows * din; j++) dphi[j] = 1.0;
    pk_act_mul_deriv(prev->act, prev->slope, w->Z[l - 1], w->A[l], dphi, rows * din);
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
  size_t K = PK_NET_OUT(n), b, r0;
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
  size_t K = PK_NET_OUT(n), rows, l;
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
  memset((*out)->data, 0, rows * n->P * sizeof(double));
  for (l = 0; l < n->L; l++) {
    const pk_layer *ly = &n->layer[l];
    pk_side s;
    pk_net_side(&s, n, l, w.A, dl.D, NULL, 0, X->rows, K, 1);
    ly->vt->grad_rows(ly, &s, 1.0, (*out)->data, n->P);
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

/* Two payload layouts. Layout 1 (every network before layers had kinds):
 * u64 L, u64 d_0..d_L, u32 activation per layer, u32 parameterization,
 * f64 sigma_w, f64 sigma_b, u64 seed, u64 P, f64 theta[P]. Layout 2 starts
 * with LAYERS_MARK (a layer count no file can hold), then u64 L, u64 C, H,
 * W of the input, the same u32 parameterization, f64 sigma_w, sigma_b, u64
 * seed, then a record per layer: u32 type, u32 activation, f64 slope
 * (leaky_relu's, else 0), u64 outputs (dense: width, conv: channels),
 * u64 kh, kw, stride y, x, padding y, x (0 where the type has none), then
 * u64 P, f64 theta[P]. Networks that layout 1 describes are written in it,
 * byte for byte as before; the others in layout 2, in a file of format
 * version 2 (which older builds refuse by version). */
#define LAYERS_MARK 0xFFFFFFFF00000002ull

static int needs_layers(const pk_network *n)
{
  size_t l;
  for (l = 0; l < n->L; l++)
    if (n->layer[l].vt != &pk_dense_vt || n->layer[l].act == PK_ACT_LEAKY_RELU) return 1;
  return 0;
}

pk_status pk_network_write_payload(pk_writer *wr, const void *obj)
{
  const pk_network *n = obj;
  size_t l;
  if (!needs_layers(n)) {
    pk_put_u64(wr, n->L);
    pk_put_u64(wr, PK_NET_IN(n));
    for (l = 0; l < n->L; l++) pk_put_u64(wr, n->layer[l].out);
    for (l = 0; l < n->L; l++) pk_put_u32(wr, (uint32_t)n->layer[l].act);
  } else {
    const pk_shape *in = &n->layer[0].ishape;
    pk_writer_need(wr, 2);
    pk_put_u64(wr, LAYERS_MARK);
    pk_put_u64(wr, n->L);
    pk_put_u64(wr, in->c);
    pk_put_u64(wr, in->h);
    pk_put_u64(wr, in->w);
  }
  pk_put_u32(wr, (uint32_t)n->param);
  pk_put_f64(wr, n->sigma_w);
  pk_put_f64(wr, n->sigma_b);
  pk_put_u64(wr, n->seed);
  if (needs_layers(n))
    for (l = 0; l < n->L; l++) {
      const pk_layer *ly = &n->layer[l];
      int dense = ly->vt == &pk_dense_vt;
      pk_put_u32(wr, (uint32_t)ly->vt->type);
      pk_put_u32(wr, (uint32_t)ly->act);
      pk_put_f64(wr, ly->slope);
      pk_put_u64(wr, ly->oshape.c);
      pk_put_u64(wr, dense ? 0 : ly->kh);
      pk_put_u64(wr, dense ? 0 : ly->kw);
      pk_put_u64(wr, dense ? 0 : ly->sy);
      pk_put_u64(wr, dense ? 0 : ly->sx);
      pk_put_u64(wr, dense ? 0 : ly->py);
      pk_put_u64(wr, dense ? 0 : ly->px);
    }
  pk_put_u64(wr, n->P);
  pk_put_f64s(wr, n->theta, n->P);
  return PK_OK;
}

#define BAD(...) do { st = pk_fail(PK_EFORMAT, __VA_ARGS__); goto done; } while (0)

/* An activation code read from a file, for layer l of L (the last has
 * none); layout 1 knows the codes below leaky_relu's. */
static pk_status read_act(uint32_t a, size_t l, size_t L, int layered, pk_activation *out)
{
  if (a >= (layered ? PK_ACT_COUNT : PK_ACT_LEAKY_RELU))
    return pk_fail(PK_EFORMAT, "value check failed: unknown activation %u", a);
  /* the output layer has none: a file that says otherwise is not ours */
  if (l + 1 == L && a != PK_ACT_IDENTITY)
    return pk_fail(PK_EFORMAT, "value check failed: the output layer has activation %u", a);
  *out = (pk_activation)a;
  return PK_OK;
}

pk_status pk_network_read_payload(pk_reader *r, pk_network **out)
{
  size_t L, l, P, in, need = 0;
  layer_rec *recs = NULL;
  pk_parameterization param;
  double sigma_w, sigma_b;
  uint64_t seed, first;
  int layered;
  pk_status st = PK_OK;
  *out = NULL;
  /* layout 2's mark, or layout 1's layer count */
  first = pk_get_u64(r);
  if (r->err) return pk_fail(PK_EFORMAT, "file is truncated (reading layer count)");
  layered = first == LAYERS_MARK;
  if (layered) {
    if ((st = pk_get_count(r, 8, &L, "layer count"))) return st;
  } else {
    if (first > (r->n - r->pos) / 8)
      return pk_fail(PK_EFORMAT, "size check failed: layer count of %llu does not fit the file",
                     (unsigned long long)first);
    L = (size_t)first;
  }
  if (L < 1) return pk_fail(PK_EFORMAT, "size check failed: a network with no layers");
  if (!(recs = calloc(L, sizeof *recs))) return pk_fail(PK_ENOMEM, "network: out of memory");
  if (!layered) {
    in = (size_t)pk_get_u64(r);
    for (l = 0; l < L; l++) {
      recs[l].type = PK_LAYER_DENSE;
      recs[l].out = (size_t)pk_get_u64(r);
    }
    for (l = 0; l < L && !r->err; l++)
      if ((st = read_act(pk_get_u32(r), l, L, 0, &recs[l].act))) goto done;
  } else {
    size_t c = (size_t)pk_get_u64(r), h = (size_t)pk_get_u64(r), w = (size_t)pk_get_u64(r);
    if (h != 1 || w != 1) BAD("value check failed: an input of %zu x %zu x %zu values (a network "
                              "of dense layers takes C x 1 x 1)", c, h, w);
    in = c;
  }
  param = (pk_parameterization)pk_get_u32(r);
  sigma_w = pk_get_f64(r);
  sigma_b = pk_get_f64(r);
  seed = pk_get_u64(r);
  if (layered)
    for (l = 0; l < L && !r->err; l++) {
      uint32_t type = pk_get_u32(r), a = pk_get_u32(r);
      uint64_t g[6];
      int k;
      recs[l].slope = pk_get_f64(r);
      recs[l].out = (size_t)pk_get_u64(r);
      for (k = 0; k < 6; k++) g[k] = pk_get_u64(r);
      if (r->err) break;
      if (type != PK_LAYER_DENSE) BAD("value check failed: layer %zu has unknown type %u", l + 1, type);
      recs[l].type = PK_LAYER_DENSE;
      if (g[0] || g[1] || g[2] || g[3] || g[4] || g[5])
        BAD("value check failed: dense layer %zu has a window, stride or padding", l + 1);
      if ((st = read_act(a, l, L, 1, &recs[l].act))) goto done;
      if (recs[l].act == PK_ACT_LEAKY_RELU ? !isfinite(recs[l].slope)
                                           : recs[l].slope != 0 || signbit(recs[l].slope))
        BAD("value check failed: layer %zu has slope %g", l + 1, recs[l].slope);
    }
  if (r->err) BAD("file is truncated (reading the network)");
  if (param != PK_PARAM_NTK && param != PK_PARAM_STANDARD)
    BAD("value check failed: unknown parameterization %u", (unsigned)param);
  if (!(sigma_w >= 0 && sigma_w <= DBL_MAX && sigma_b >= 0 && sigma_b <= DBL_MAX))
    BAD("value check failed: sigma_w and sigma_b must be finite and >= 0");
  /* the parameter count must match the sizes and fit the file before any
   * allocation of that size */
  for (l = 0; l < L; l++) {
    size_t a = l ? recs[l - 1].out : in, b = recs[l].out;
    if (a == 0 || b == 0 || a > PK_MAX_DIM || b > PK_MAX_DIM || b > ((r->n - r->pos) / 8) / a)
      BAD("size check failed: layer sizes do not fit the file");
    need += b * a + b;
  }
  if ((st = pk_get_count(r, 8, &P, "parameter count"))) goto done;
  if (P != need) BAD("size check failed: %zu parameters for sizes that need %zu", P, need);
  if ((st = build(out, in, recs, L, param, sigma_w, sigma_b, seed))) goto done;
  /* one encoding per network: layout 2 only where layout 1 cannot say it */
  if (layered && !needs_layers(*out)) {
    pk_network_free(*out);
    *out = NULL;
    BAD("value check failed: layer records for a network that layout 1 describes");
  }
  pk_get_f64s(r, (*out)->theta, P);
  if (r->err) {
    pk_network_free(*out);
    *out = NULL;
    BAD("file is truncated (reading the parameters)");
  }
done:
  free(recs);
  return st;
}

#undef BAD

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
