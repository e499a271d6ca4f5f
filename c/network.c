/* network.c - networks as lists of layers (layer.h): construction,
 * activations, the walkers that run the layers' forward and backward
 * functions with the activations between them, the per-output
 * sensitivities the kernels use, the explicit Jacobian, and files. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include "pk_net.h"
#include "pk_train.h"

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
  case PK_ACT_RELU: pk_vrelu(z, a, n); break;
  case PK_ACT_LEAKY_RELU: pk_vleaky(z, a, n, slope); break;
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
  case PK_ACT_RELU: pk_vrelu_deriv(z, g, n); break;
  case PK_ACT_LEAKY_RELU: pk_vleaky_deriv(z, g, n, slope); break;
  case PK_ACT_TANH: pk_vtanh_deriv(a, g, n); break;
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

/* A layer as a list or a file gives it, before shapes, offsets and scales. */
typedef struct layer_rec {
  pk_layer_spec s;
  pk_activation act;
  double slope;
} layer_rec;

static const char *kind_name(pk_layer_type t)
{
  return t == PK_LAYER_DENSE ? "dense" : t == PK_LAYER_CONV ? "conv" :
         t == PK_LAYER_AVGPOOL ? "avgpool" : "unknown";
}

static const pk_layer_vt *kind_vt(pk_layer_type t)
{
  return t == PK_LAYER_DENSE ? &pk_dense_vt : t == PK_LAYER_CONV ? &pk_conv_vt : &pk_avgpool_vt;
}

void pk_network_free(pk_network *n)
{
  if (!n) return;
  if (n->train_ws) n->train_ws_free(n->train_ws);
  free(n->layer);
  free(n->theta);
  free(n);
}

/* a * b * c within PK_MAX_DIM, else 0 */
static size_t dim3(size_t a, size_t b, size_t c)
{
  if (a == 0 || b == 0 || c == 0 || a > PK_MAX_DIM || b > PK_MAX_DIM / a ||
      c > PK_MAX_DIM / (a * b))
    return 0;
  return a * b * c;
}

#define LFAIL(...) return layer_fail(l, r->s.type, __VA_ARGS__)

static pk_status layer_fail(size_t l, pk_layer_type t, const char *fmt, ...) PK_PRINTF(3, 4);
static pk_status layer_fail(size_t l, pk_layer_type t, const char *fmt, ...)
{
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return pk_fail(PK_EINVAL, "network: layer %zu (%s): %s", l + 1, kind_name(t), msg);
}

/* The geometry of layer l from its record and the shape that enters it,
 * checked: a kernel or window larger than its (padded) input, a zero
 * stride, sizes past what BLAS indexes are refused naming the layer. */
static pk_status shape_layer(pk_layer *ly, const layer_rec *r, pk_shape in, size_t l)
{
  const pk_layer_spec *s = &r->s;
  size_t H = in.h, W = in.w, C = in.c;
  memset(ly, 0, sizeof *ly);
  ly->vt = kind_vt(s->type);
  ly->in = dim3(C, H, W);
  ly->ishape = in;
  ly->kh = ly->kw = ly->sy = ly->sx = 1;
  switch (s->type) {
  case PK_LAYER_DENSE:
    if (s->units == 0 || s->units > PK_MAX_DIM) LFAIL("width %zu must be in 1..%d", s->units, PK_MAX_DIM);
    ly->ishape.c = ly->in;
    ly->ishape.h = ly->ishape.w = 1;
    ly->oshape.c = ly->out = s->units;
    ly->oshape.h = ly->oshape.w = 1;
    ly->fan_in = ly->in;
    ly->nb = s->units;
    break;
  case PK_LAYER_CONV:
    if (s->units == 0 || s->units > PK_MAX_DIM) LFAIL("channels = %zu must be in 1..%d", s->units, PK_MAX_DIM);
    if (s->kh == 0 || s->kw == 0) LFAIL("the kernel size must be positive, got %zux%zu", s->kh, s->kw);
    if (s->sy == 0 || s->sx == 0) LFAIL("the stride must be at least 1, got %zux%zu", s->sy, s->sx);
    if (s->py > PK_MAX_DIM || s->px > PK_MAX_DIM || s->kh > PK_MAX_DIM || s->kw > PK_MAX_DIM ||
        s->sy > PK_MAX_DIM || s->sx > PK_MAX_DIM)
      LFAIL("sizes past %d", PK_MAX_DIM);
    if (s->kh > H + 2 * s->py || s->kw > W + 2 * s->px)
      LFAIL("a %zux%zu kernel is larger than its input %zux%zu padded by %zu,%zu", s->kh, s->kw,
            H, W, s->py, s->px);
    ly->kh = s->kh;
    ly->kw = s->kw;
    ly->sy = s->sy;
    ly->sx = s->sx;
    ly->py = s->py;
    ly->px = s->px;
    ly->oshape.c = s->units;
    ly->oshape.h = (H + 2 * s->py - s->kh) / s->sy + 1;
    ly->oshape.w = (W + 2 * s->px - s->kw) / s->sx + 1;
    ly->fan_in = dim3(C, s->kh, s->kw);
    ly->out = dim3(s->units, ly->oshape.h, ly->oshape.w);
    if (!ly->fan_in || !ly->out || !dim3(ly->oshape.h, ly->oshape.w, ly->fan_in))
      LFAIL("%zu channels of %zux%zu from a %zux%zu kernel over %zu channels: sizes past %d",
            s->units, ly->oshape.h, ly->oshape.w, s->kh, s->kw, C, PK_MAX_DIM);
    ly->nb = s->units;
    break;
  case PK_LAYER_AVGPOOL:
    if (s->kh == 0 || s->kw == 0) LFAIL("the window must be positive, got %zux%zu", s->kh, s->kw);
    if (s->kh > H || s->kw > W)
      LFAIL("a %zux%zu window is larger than its input %zux%zu", s->kh, s->kw, H, W);
    ly->kh = ly->sy = s->kh;
    ly->kw = ly->sx = s->kw;
    ly->oshape.c = C;
    ly->oshape.h = H / s->kh;
    ly->oshape.w = W / s->kw;
    ly->out = dim3(C, ly->oshape.h, ly->oshape.w);
    ly->fan_in = s->kh * s->kw;
    break;
  default:
    return pk_fail(PK_EINVAL, "network: layer %zu has an unknown type %d", l + 1, (int)s->type);
  }
  if (!ly->in) LFAIL("an input of %zux%zux%zu values is past %d", C, H, W, PK_MAX_DIM);
  ly->act = r->act;
  ly->slope = ly->act == PK_ACT_LEAKY_RELU ? r->slope : 0.0;
  return PK_OK;
}

#undef LFAIL

/* offsets, scales and the parameter count; allocates theta unless the
 * count is above maxP (a file's bytes: PK_EFORMAT) */
static pk_status layout(pk_network *n, size_t maxP)
{
  size_t l, P = 0;
  pk_status st;
  for (l = 0; l < n->L; l++) {
    pk_layer *ly = &n->layer[l];
    if (ly->vt != &pk_avgpool_vt &&
        (st = pk_mul_size(&ly->nw, ly->oshape.c, ly->fan_in, "network parameters")))
      return st;
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
    if (ly->vt == &pk_avgpool_vt) ly->sw = ly->sb = 0;
  }
  n->P = P;
  if (P > maxP)
    return pk_fail(PK_EFORMAT, "size check failed: %zu parameters do not fit the file", P);
  return pk_alloc((void **)&n->theta, P, sizeof(double), "the network's parameters");
}

/* A network of the input shape and the layers recs[0..L), parameters
 * allocated, not drawn. */
static pk_status build(pk_network **out, const size_t input[3], const layer_rec *recs, size_t L,
                       pk_parameterization param, double sigma_w, double sigma_b, uint64_t seed,
                       size_t maxP)
{
  pk_network *n;
  pk_status st;
  pk_shape in;
  size_t l, with_params = 0;
  *out = NULL;
  if (!dim3(input[0], input[1], input[2]))
    return pk_fail(PK_EINVAL, "network: the input must be C x H x W positive sizes within %d "
                   "values, got %zu x %zu x %zu", PK_MAX_DIM, input[0], input[1], input[2]);
  for (l = 0; l < L; l++) with_params += recs[l].s.type != PK_LAYER_AVGPOOL;
  if (!with_params)
    return pk_fail(PK_EINVAL, "network: no dense or conv layer (pooling alone has nothing to train)");
  if (!(n = calloc(1, sizeof *n)) || !(n->layer = calloc(L, sizeof *n->layer))) {
    free(n);
    return pk_fail(PK_ENOMEM, "network: out of memory");
  }
  n->L = L;
  n->param = param;
  n->sigma_w = sigma_w;
  n->sigma_b = sigma_b;
  n->seed = seed;
  in.c = input[0];
  in.h = input[1];
  in.w = input[2];
  for (l = 0; l < L; l++) {
    if ((st = shape_layer(&n->layer[l], &recs[l], in, l))) {
      pk_network_free(n);
      return st;
    }
    in = n->layer[l].oshape;
  }
  if ((st = layout(n, maxP))) {
    pk_network_free(n);
    return st;
  }
  *out = n;
  return PK_OK;
}

/* an activated layer: conv or dense, not the network's last */
static int activated(const layer_rec *r, size_t l, size_t L)
{
  return r->s.type != PK_LAYER_AVGPOOL && l + 1 < L;
}

/* the spec's layers as records (recs: nlayers, or nsizes - 1 of them) with
 * their activations; input gets the input's shape */
static pk_status spec_records(const pk_network_spec *s, layer_rec *recs, size_t L,
                              size_t input[3])
{
  size_t l, j = 0;
  if (s->param != PK_PARAM_NTK && s->param != PK_PARAM_STANDARD)
    return pk_fail(PK_EINVAL, "network: unknown parameterization");
  if (!(s->sigma_w >= 0) || !isfinite(s->sigma_w) || !(s->sigma_b >= 0) || !isfinite(s->sigma_b))
    return pk_fail(PK_EINVAL, "network: sigma_w and sigma_b must be finite and >= 0");
  if (s->nlayers) {
    for (l = 0; l < L; l++) {
      recs[l].s = s->layers[l];
      if (recs[l].s.type == PK_LAYER_DENSE)
        recs[l].s.kh = recs[l].s.kw = recs[l].s.sy = recs[l].s.sx = recs[l].s.py = recs[l].s.px = 0;
      if (recs[l].s.type == PK_LAYER_AVGPOOL) {
        recs[l].s.units = 0;
        recs[l].s.sy = recs[l].s.kh;
        recs[l].s.sx = recs[l].s.kw;
        recs[l].s.py = recs[l].s.px = 0;
      }
    }
    memcpy(input, s->input, 3 * sizeof *input);
  } else {
    for (l = 0; l < s->nsizes; l++)
      if (s->sizes[l] == 0 || s->sizes[l] > PK_MAX_DIM)
        return pk_fail(PK_EINVAL, "network: size %zu (entry %zu) must be a positive width",
                       s->sizes[l], l + 1);
    for (l = 0; l < L; l++) {
      memset(&recs[l].s, 0, sizeof recs[l].s);
      recs[l].s.type = PK_LAYER_DENSE;
      recs[l].s.units = s->sizes[l + 1];
    }
    input[0] = s->sizes[0];
    input[1] = input[2] = 1;
  }
  for (l = 0; l < L; l++) {
    layer_rec *r = &recs[l];
    r->act = PK_ACT_IDENTITY;
    r->slope = 0;
    if (!activated(r, l, L)) continue;
    r->act = s->acts ? s->acts[j] : s->act;
    r->slope = s->slopes ? s->slopes[j] : s->slope;
    j++;
    if ((unsigned)r->act >= PK_ACT_COUNT)
      return s->nlayers ? pk_fail(PK_EINVAL, "network: unknown activation for layer %zu", l + 1)
                        : pk_fail(PK_EINVAL, "network: unknown activation for hidden layer %zu", l + 1);
    if (r->act == PK_ACT_LEAKY_RELU && !isfinite(r->slope))
      return s->nlayers ? pk_fail(PK_EINVAL, "network: the slope of layer %zu must be finite", l + 1)
                        : pk_fail(PK_EINVAL, "network: the slope of hidden layer %zu must be finite", l + 1);
  }
  /* a dense layer first flattens its input: the network is the sizes form's */
  if (recs[0].s.type == PK_LAYER_DENSE) {
    input[0] = dim3(input[0], input[1], input[2]) ? input[0] * input[1] * input[2] : 0;
    input[1] = input[2] = 1;
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
  size_t L, input[3];
  *out = NULL;
  if (s->nlayers) {
    if (!s->layers) return pk_fail(PK_EINVAL, "network: nlayers = %zu without layers", s->nlayers);
    L = s->nlayers;
  } else {
    if (s->nsizes < 2)
      return pk_fail(PK_EINVAL, "network: sizes needs at least 2 entries (inputs and outputs), "
                     "got %zu", s->nsizes);
    L = s->nsizes - 1;
  }
  if (!(recs = calloc(L, sizeof *recs))) return pk_fail(PK_ENOMEM, "network: out of memory");
  if (!(st = spec_records(s, recs, L, input)) &&
      !(st = build(out, input, recs, L, s->param, s->sigma_w, s->sigma_b, s->seed, SIZE_MAX)))
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
  n->train_ws = NULL;
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
        x->oshape.c != y->oshape.c || x->oshape.h != y->oshape.h || x->oshape.w != y->oshape.w ||
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
pk_status pk_network_layer(const pk_network *n, size_t l, pk_layer_spec *spec, size_t shape[3])
{
  const pk_layer *ly;
  if (l > n->L) return pk_fail(PK_EINVAL, "network: layer %zu of %zu", l, n->L);
  if (l == 0) {
    shape[0] = n->layer[0].ishape.c;
    shape[1] = n->layer[0].ishape.h;
    shape[2] = n->layer[0].ishape.w;
    return PK_OK;
  }
  ly = &n->layer[l - 1];
  memset(spec, 0, sizeof *spec);
  spec->type = ly->vt->type;
  if (spec->type != PK_LAYER_AVGPOOL) spec->units = ly->oshape.c;
  if (spec->type != PK_LAYER_DENSE) {
    spec->kh = ly->kh;
    spec->kw = ly->kw;
    spec->sy = ly->sy;
    spec->sx = ly->sx;
    spec->py = ly->py;
    spec->px = ly->px;
  }
  shape[0] = ly->oshape.c;
  shape[1] = ly->oshape.h;
  shape[2] = ly->oshape.w;
  return PK_OK;
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
  const pk_shape *in = &n->layer[0].ishape;
  if (X->cols != PK_NET_IN(n)) {
    if (in->h * in->w > 1)
      return pk_fail(PK_EINVAL, "%s has %zu columns, the network takes %zu inputs (%zu x %zu x %zu "
                     "images, channel-major)", what, X->cols, PK_NET_IN(n), in->c, in->h, in->w);
    return pk_fail(PK_EINVAL, "%s has %zu columns, the network takes %zu inputs", what, X->cols,
                   PK_NET_IN(n));
  }
  return PK_OK;
}

/* ---- workspaces ------------------------------------------------------------ */

/* the most scratch (doubles) any layer wants for its passes over rows rows */
size_t pk_net_max_work(const pk_network *n, size_t rows)
{
  size_t l, m = 0;
  for (l = 0; l < n->L; l++) {
    size_t w = n->layer[l].vt->work(&n->layer[l], rows);
    if (w > m) m = w;
  }
  return m;
}

/* the widest layer side, values per example going in or coming out */
size_t pk_net_max_width(const pk_network *n)
{
  size_t l, w = 0;
  for (l = 0; l < n->L; l++) {
    if (n->layer[l].in > w) w = n->layer[l].in;
    if (n->layer[l].out > w) w = n->layer[l].out;
  }
  return w;
}

size_t pk_acts_bytes(const pk_network *n, size_t cap, int with_grad)
{
  size_t l, tot = 0;
  for (l = 0; l < n->L; l++) {
    size_t out = n->layer[l].out;
    tot += cap * out * (with_grad ? 2 : 1);     /* Z, G */
    if (l + 1 < n->L) tot += cap * out;         /* A[l+1] */
  }
  return (tot + pk_net_max_work(n, cap)) * sizeof(double);
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
  size_t l, K = PK_NET_OUT(n), tot = cap * max_in(n) + pk_net_max_work(n, cap * K);
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

/* doubles of the features alone (without their scratch) */
static size_t lfeat_doubles(const pk_network *n, size_t cap, size_t per)
{
  size_t l, tot = 0;
  for (l = 0; l < n->L; l++) tot += cap * n->layer[l].vt->feat_size(&n->layer[l], per);
  return tot;
}

size_t pk_lfeats_bytes(const pk_network *n, size_t cap, size_t per)
{
  size_t f = lfeat_doubles(n, cap, per);
  return f ? (f + pk_net_max_work(n, cap)) * sizeof(double) : 0;
}

pk_status pk_lfeats_init(pk_lfeats *f, const pk_network *n, size_t cap, size_t per)
{
  size_t nf = lfeat_doubles(n, cap, per), l;
  double *p;
  pk_status st;
  memset(f, 0, sizeof *f);
  if (!nf) return PK_OK;
  if (!(f->feat = calloc(n->L, sizeof *f->feat)))
    return pk_fail(PK_ENOMEM, "network workspace: out of memory");
  if ((st = pk_alloc((void **)&f->buf, nf + pk_net_max_work(n, cap), sizeof(double),
                     "the layers' features"))) {
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
  f->work = p;
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
      ly->vt->feat(ly, &s, f->feat[l], f->work);
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
  pk_lfeats lf;
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
  /* layers with features (conv: the gradient rows themselves) give them */
  if ((st = pk_lfeats_init(&lf, n, X->rows, K))) {
    pk_deltas_free(&dl);
    pk_acts_free(&w);
    goto fail;
  }
  pk_net_forward_ws(n, n->theta, X->data, X->rows, &w);
  pk_net_deltas(n, n->theta, &w, X->rows, &dl);
  pk_lfeats_compute(&lf, n, w.A, dl.D, X->rows, K, 1);
  memset((*out)->data, 0, rows * n->P * sizeof(double));
  for (l = 0; l < n->L; l++) {
    const pk_layer *ly = &n->layer[l];
    pk_side s;
    if (ly->nw + ly->nb == 0) continue;
    pk_net_side(&s, n, l, w.A, dl.D, lf.feat, 0, X->rows, K, 1);
    ly->vt->grad_rows(ly, &s, 1.0, (*out)->data, n->P);
  }
  pk_lfeats_free(&lf);
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
 * seed, then a record per layer: u32 type (pk_layer_type), u32 activation,
 * f64 slope (leaky_relu's, else 0), u64 outputs (dense: width, conv:
 * channels, avgpool: 0), u64 kh, kw, stride y, x, padding y, x (dense: all
 * 0; avgpool: the window, strides equal to it, no padding), then u64 P,
 * f64 theta[P]. Networks that layout 1 describes are written in it, byte
 * for byte as before; the others in layout 2, in a file of format version
 * 2 (which older builds refuse by version). */
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
      pk_layer_spec sp;
      size_t shape[3];
      pk_network_layer(n, l + 1, &sp, shape);
      pk_put_u32(wr, (uint32_t)sp.type);
      pk_put_u32(wr, (uint32_t)n->layer[l].act);
      pk_put_f64(wr, n->layer[l].slope);
      pk_put_u64(wr, sp.units);
      pk_put_u64(wr, sp.kh);
      pk_put_u64(wr, sp.kw);
      pk_put_u64(wr, sp.sy);
      pk_put_u64(wr, sp.sx);
      pk_put_u64(wr, sp.py);
      pk_put_u64(wr, sp.px);
    }
  pk_put_u64(wr, n->P);
  pk_put_f64s(wr, n->theta, n->P);
  return PK_OK;
}

#define BAD(...) do { st = pk_fail(PK_EFORMAT, __VA_ARGS__); goto done; } while (0)

/* An activation code read from a file for a layer that is activated or not
 * (the last layer and pooling have none); layout 1 knows the codes below
 * leaky_relu's. */
static pk_status read_act(uint32_t a, size_t l, int act_ok, int last, int layered,
                          pk_activation *out)
{
  if (a >= (layered ? PK_ACT_COUNT : PK_ACT_LEAKY_RELU))
    return pk_fail(PK_EFORMAT, "value check failed: unknown activation %u", a);
  /* a file that gives one to a layer without is not ours */
  if (!act_ok && a != PK_ACT_IDENTITY)
    return last ? pk_fail(PK_EFORMAT, "value check failed: the output layer has activation %u", a)
                : pk_fail(PK_EFORMAT, "value check failed: the pooling layer %zu has activation %u",
                          l + 1, a);
  *out = (pk_activation)a;
  return PK_OK;
}

/* one layer record of layout 2 into r (checked against its kind) */
static pk_status read_record(pk_reader *rd, layer_rec *r, size_t l, size_t L)
{
  uint32_t type = pk_get_u32(rd), a = pk_get_u32(rd);
  pk_layer_spec *s = &r->s;
  pk_status st;
  r->slope = pk_get_f64(rd);
  s->units = (size_t)pk_get_u64(rd);
  s->kh = (size_t)pk_get_u64(rd);
  s->kw = (size_t)pk_get_u64(rd);
  s->sy = (size_t)pk_get_u64(rd);
  s->sx = (size_t)pk_get_u64(rd);
  s->py = (size_t)pk_get_u64(rd);
  s->px = (size_t)pk_get_u64(rd);
  if (rd->err) return pk_fail(PK_EFORMAT, "file is truncated (reading the layers)");
  if (type < PK_LAYER_DENSE || type > PK_LAYER_AVGPOOL)
    return pk_fail(PK_EFORMAT, "value check failed: layer %zu has unknown type %u", l + 1, type);
  s->type = (pk_layer_type)type;
  if (type == PK_LAYER_DENSE && (s->kh || s->kw || s->sy || s->sx || s->py || s->px))
    return pk_fail(PK_EFORMAT, "value check failed: dense layer %zu has a window, stride or padding",
                   l + 1);
  if (type == PK_LAYER_AVGPOOL && (s->units || s->sy != s->kh || s->sx != s->kw || s->py || s->px))
    return pk_fail(PK_EFORMAT, "value check failed: avgpool layer %zu is not a plain window", l + 1);
  if ((st = read_act(a, l, type != PK_LAYER_AVGPOOL && l + 1 < L, l + 1 == L, 1, &r->act)))
    return st;
  if (r->act == PK_ACT_LEAKY_RELU ? !isfinite(r->slope) : r->slope != 0 || signbit(r->slope))
    return pk_fail(PK_EFORMAT, "value check failed: layer %zu has slope %g", l + 1, r->slope);
  return PK_OK;
}

pk_status pk_network_read_payload(pk_reader *r, pk_network **out)
{
  size_t L, l, P, input[3];
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
    input[0] = (size_t)pk_get_u64(r);
    input[1] = input[2] = 1;
    for (l = 0; l < L; l++) {
      recs[l].s.type = PK_LAYER_DENSE;
      recs[l].s.units = (size_t)pk_get_u64(r);
    }
    for (l = 0; l < L && !r->err; l++)
      if ((st = read_act(pk_get_u32(r), l, l + 1 < L, l + 1 == L, 0, &recs[l].act))) goto done;
  } else {
    for (l = 0; l < 3; l++) input[l] = (size_t)pk_get_u64(r);
  }
  param = (pk_parameterization)pk_get_u32(r);
  sigma_w = pk_get_f64(r);
  sigma_b = pk_get_f64(r);
  seed = pk_get_u64(r);
  for (l = 0; layered && l < L && !r->err; l++)
    if ((st = read_record(r, &recs[l], l, L))) goto done;
  if (r->err) BAD("file is truncated (reading the network)");
  if (param != PK_PARAM_NTK && param != PK_PARAM_STANDARD)
    BAD("value check failed: unknown parameterization %u", (unsigned)param);
  if (!(sigma_w >= 0 && sigma_w <= DBL_MAX && sigma_b >= 0 && sigma_b <= DBL_MAX))
    BAD("value check failed: sigma_w and sigma_b must be finite and >= 0");
  /* a dense first layer sees its input flat: that is how it is written */
  if (recs[0].s.type == PK_LAYER_DENSE && (input[1] != 1 || input[2] != 1))
    BAD("value check failed: an input of %zu x %zu x %zu to a dense layer", input[0], input[1],
        input[2]);
  /* the shapes and the parameter count are checked, and the count must fit
   * the file, before anything of that size is allocated */
  st = build(out, input, recs, L, param, sigma_w, sigma_b, seed,
             r->n - r->pos >= 8 ? (r->n - r->pos - 8) / 8 : 0);
  if (st == PK_EINVAL) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", pk_last_error());
    BAD("value check failed: %s", msg);
  }
  if (st) goto done;
  if ((st = pk_get_count(r, 8, &P, "parameter count"))) goto done;
  if (P != (*out)->P) BAD("size check failed: %zu parameters for layers that need %zu", P, (*out)->P);
  /* one encoding per network: layout 2 only where layout 1 cannot say it */
  if (layered && !needs_layers(*out))
    BAD("value check failed: layer records for a network that layout 1 describes");
  pk_get_f64s(r, (*out)->theta, P);
  if (r->err) BAD("file is truncated (reading the parameters)");
done:
  if (st) {
    pk_network_free(*out);
    *out = NULL;
  }
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
