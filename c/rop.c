/* rop.c - second-order products of a weighted training loss over a batch,
 * for the attribution methods (DESIGN.md section 4, "Exact
 * metagradients"): Hessian-vector products by Pearlmutter's R-operator (a
 * forward pass of directional derivatives, then the backward pass of the
 * gradient differentiated along them: exact, never a P x P matrix), and
 * the per-example products V . grad l_i in their structured per-layer form
 * delta_i^T (s_w V_l a_i + s_b v_l), whose second factor is the
 * R-operator's own first product. All layer algebra goes through the
 * layer seam (layer.h): forward with W or with a direction V, backward to
 * the input and to the parameters. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cblas.h>
#include "pk_attribute.h"

/* phi''(z), with a = phi(z); 0 for the piecewise-linear activations (the
 * convention training's phi' follows: the kinks have measure zero) */
static void act_second(pk_activation act, const double *z, const double *a, double *out, size_t n)
{
  size_t i;
  const double c_erf = 2.0 / sqrt(PK_PI), c_pdf = 1.0 / sqrt(2.0 * PK_PI);
  switch (act) {
  case PK_ACT_TANH: for (i = 0; i < n; i++) out[i] = -2.0 * a[i] * (1.0 - a[i] * a[i]); break;
  case PK_ACT_SIGMOID: for (i = 0; i < n; i++) out[i] = a[i] * (1.0 - a[i]) * (1.0 - 2.0 * a[i]); break;
  case PK_ACT_SOFTPLUS:
    for (i = 0; i < n; i++) {
      double s = z[i] >= 0 ? 1.0 / (1.0 + exp(-z[i])) : exp(z[i]) / (1.0 + exp(z[i]));
      out[i] = s * (1.0 - s);
    }
    break;
  case PK_ACT_GELU:
    for (i = 0; i < n; i++) out[i] = c_pdf * exp(-0.5 * z[i] * z[i]) * (2.0 - z[i] * z[i]);
    break;
  case PK_ACT_ERF: for (i = 0; i < n; i++) out[i] = -2.0 * z[i] * c_erf * exp(-z[i] * z[i]); break;
  case PK_ACT_SIN: for (i = 0; i < n; i++) out[i] = -a[i]; break;
  default: memset(out, 0, n * sizeof(double)); break;   /* identity, relu, leaky_relu */
  }
}

/* ---- the workspace ----------------------------------------------------------- */

/* doubles of one layer's parameters (the products that add into a layer's
 * slice); the layers' scratch is pk_net_max_work */
static size_t max_params(const pk_network *net)
{
  size_t l, w = 0;
  for (l = 0; l < net->L; l++)
    if (net->layer[l].nw + net->layer[l].nb > w) w = net->layer[l].nw + net->layer[l].nb;
  return w;
}

/* doubles of the primal part per row and of the tangent part per row and
 * direction */
static void sizes(const pk_network *net, double *primal, double *tangent)
{
  size_t l, L = net->L, K = PK_NET_OUT(net);
  double p = (double)K + 1, t = 4.0 * (double)pk_net_max_width(net);
  for (l = 0; l < L; l++) {
    double out = (double)net->layer[l].out, in = (double)net->layer[l].in;
    p += 3.0 * out;                                      /* Z, D, Dw */
    if (l + 1 < L) p += 3.0 * out;                       /* A[l+1], F1, F2 */
    if (l >= 1) p += in;                                 /* Dp */
    t += out;                                            /* Zd */
    if (l >= 1) t += in;                                 /* Ad */
  }
  *primal = p;
  *tangent = t;
}

double pk_rop_bytes(const pk_network *net, size_t cap, size_t rcap)
{
  double p, t;
  sizes(net, &p, &t);
  return sizeof(double) * ((double)cap * p + (double)cap * (double)rcap * t +
                           (double)pk_net_max_work(net, cap * rcap) + (double)max_params(net));
}

pk_status pk_rop_init(pk_rop *r, const pk_network *net, pk_loss loss, size_t cap, size_t rcap)
{
  size_t l, L = net->L, K = PK_NET_OUT(net), mw = pk_net_max_width(net), np, nt;
  double p, t, *q;
  pk_status st;
  memset(r, 0, sizeof *r);
  r->net = net;
  r->L = L;
  r->K = K;
  r->cap = cap;
  r->rcap = rcap;
  r->loss = loss;
  sizes(net, &p, &t);
  if ((st = pk_calloc((void **)&r->ptrs, 10 * L, sizeof *r->ptrs, "the second-order products")))
    return st;
  r->A = r->ptrs;
  r->Z = r->A + L;
  r->D = r->Z + L;
  r->Dw = r->D + L;
  r->Dp = r->Dw + L;
  r->F1 = r->Dp + L;
  r->F2 = r->F1 + L;
  r->Zd = r->F2 + L;
  r->Ad = r->Zd + L;
  np = (size_t)p * cap;
  nt = (size_t)t * cap * rcap + pk_net_max_work(net, cap * rcap) + max_params(net);
  if ((st = pk_alloc((void **)&r->buf, np ? np : 1, sizeof(double),
                     "the second-order products' activations")) ||
      (st = pk_alloc((void **)&r->tbuf, nt ? nt : 1, sizeof(double),
                     "the second-order products' tangents"))) {
    pk_rop_free(r);
    return st;
  }
  q = r->buf;
  for (l = 0; l < L; l++) {
    size_t w = cap * net->layer[l].out;
    r->Z[l] = q; q += w;
    r->D[l] = q; q += w;
    r->Dw[l] = q; q += w;
    if (l + 1 < L) {
      r->A[l + 1] = q; q += w;
      r->F1[l] = q; q += w;
      r->F2[l] = q; q += w;
    }
    if (l >= 1) { r->Dp[l] = q; q += cap * net->layer[l].in; }
  }
  r->pr = q; q += cap * K;
  r->cw = q;
  q = r->tbuf;
  for (l = 0; l < L; l++) {
    r->Zd[l] = q; q += rcap * cap * net->layer[l].out;
    if (l >= 1) { r->Ad[l] = q; q += rcap * cap * net->layer[l].in; }
  }
  r->g0 = q; q += rcap * cap * mw;
  r->g1 = q; q += rcap * cap * mw;
  r->gp = q; q += rcap * cap * mw;
  r->gs = q; q += cap * mw;
  r->ps = q; q += max_params(net);
  r->work = q;
  return PK_OK;
}

void pk_rop_free(pk_rop *r)
{
  free(r->ptrs);
  free(r->buf);
  free(r->tbuf);
  memset(r, 0, sizeof *r);
}

/* ---- the passes ---------------------------------------------------------------- */

static int has_params(const pk_layer *ly) { return ly->nw + ly->nb > 0; }

void pk_rop_primal(pk_rop *r, const double *theta, const double *X, size_t n, const pk_matrix *Y,
                   const size_t *rows, const double *lw, double scale)
{
  const pk_network *net = r->net;
  size_t L = r->L, K = r->K, l, i, k;
  double v;
  r->n = n;
  r->theta = theta;
  r->A[0] = (double *)X;
  for (l = 0; l < L; l++) {
    const pk_layer *ly = &net->layer[l];
    size_t w = n * ly->out;
    ly->vt->forward(ly, theta + ly->woff, ly->nb ? theta + ly->boff : NULL, r->A[l], n, 0.0,
                    r->Z[l], r->work);
    if (l + 1 < L) {
      pk_act_apply(ly->act, ly->slope, r->Z[l], r->A[l + 1], w);
      for (i = 0; i < w; i++) r->F1[l][i] = 1.0;
      pk_act_mul_deriv(ly->act, ly->slope, r->Z[l], r->A[l + 1], r->F1[l], w);
      act_second(ly->act, r->Z[l], r->A[l + 1], r->F2[l], w);
    }
  }
  /* the targets were checked against the loss when the run was recorded */
  pk_loss_eval_weighted(r->loss, r->Z[L - 1], n, K, Y, rows, NULL, &v, r->D[L - 1]);
  for (i = 0; i < n; i++) {
    const double *f = r->Z[L - 1] + i * K;
    double *p = r->pr + i * K;
    if (r->loss == PK_LOSS_LOGISTIC) {
      p[0] = f[0] >= 0 ? 1 / (1 + exp(-f[0])) : exp(f[0]) / (1 + exp(f[0]));
    } else if (r->loss == PK_LOSS_SOFTMAX) {
      double mx = f[0], s = 0;
      for (k = 1; k < K; k++) if (f[k] > mx) mx = f[k];
      for (k = 0; k < K; k++) s += (p[k] = exp(f[k] - mx));
      for (k = 0; k < K; k++) p[k] /= s;
    }
    r->cw[i] = scale * (lw ? lw[rows ? rows[i] : i] : 1.0);
  }
  for (l = L - 1; l >= 1; l--) {
    const pk_layer *ly = &net->layer[l];
    size_t w = n * ly->in;
    ly->vt->backward_input(ly, theta + ly->woff, r->D[l], n, r->Dp[l], r->work);
    for (i = 0; i < w; i++) r->D[l - 1][i] = r->F1[l - 1][i] * r->Dp[l][i];
  }
  for (l = 0; l < L; l++) {
    size_t out = net->layer[l].out;
    for (i = 0; i < n; i++)
      for (k = 0; k < out; k++) r->Dw[l][i * out + k] = r->cw[i] * r->D[l][i * out + k];
  }
}

void pk_rop_grad(const pk_rop *r, double *grad)
{
  const pk_network *net = r->net;
  size_t l;
  for (l = 0; l < r->L; l++) {
    const pk_layer *ly = &net->layer[l];
    if (!has_params(ly)) continue;
    ly->vt->backward_params(ly, r->A[l], r->Dw[l], r->n, 1.0, grad + ly->woff,
                            ly->nb ? grad + ly->boff : NULL, r->work);
  }
}

/* the loss's curvature along the output tangents: G (rt n x K) = c_i
 * hess_f l_i Zd */
static void loss_tangent(const pk_rop *r, const double *Zd, size_t rt, double *G)
{
  size_t n = r->n, K = r->K, j, i, k;
  for (j = 0; j < rt; j++)
    for (i = 0; i < n; i++) {
      const double *z = Zd + (j * n + i) * K, *p = r->pr + i * K;
      double *g = G + (j * n + i) * K, c = r->cw[i];
      switch (r->loss) {
      case PK_LOSS_LOGISTIC: g[0] = c * p[0] * (1 - p[0]) * z[0]; break;
      case PK_LOSS_SOFTMAX: {
        double pz = 0;
        for (k = 0; k < K; k++) pz += p[k] * z[k];
        for (k = 0; k < K; k++) g[k] = c * p[k] * (z[k] - pz);
        break;
      }
      default: for (k = 0; k < K; k++) g[k] = c * z[k]; break;
      }
    }
}

void pk_rop_tile(pk_rop *r, const double *V, size_t ldv, size_t rt, double *dots, double *hv,
                 size_t ldh)
{
  const pk_network *net = r->net;
  const double *theta = r->theta;
  size_t L = r->L, n = r->n, l, j, i, a;
  double *gc, *gn;
  /* forward: Zd[l] = s_w V (*) A + s_b v (the per-example products'
   * factor), then + s_w W (*) Ad; Ad[l+1] = phi' Zd[l] */
  for (l = 0; l < L; l++) {
    const pk_layer *ly = &net->layer[l];
    size_t out = ly->out, w = n * out;
    for (j = 0; j < rt; j++) {
      const double *Vj = V + j * ldv;
      double *Zj = r->Zd[l] + j * w;
      if (!has_params(ly)) {
        memset(Zj, 0, w * sizeof(double));
        continue;
      }
      ly->vt->forward(ly, Vj + ly->woff, ly->nb ? Vj + ly->boff : NULL, r->A[l], n, 0.0, Zj,
                      r->work);
      if (dots)
        for (i = 0; i < n; i++) {
          const double *dr = r->D[l] + i * out, *zr = Zj + i * out;
          double s = 0;
          for (a = 0; a < out; a++) s += dr[a] * zr[a];
          dots[j * n + i] += s;
        }
    }
    if (!hv) continue;
    if (l >= 1) ly->vt->forward(ly, theta + ly->woff, NULL, r->Ad[l], rt * n, 1.0, r->Zd[l], r->work);
    if (l + 1 < L)
      for (j = 0; j < rt; j++) {
        const double *Zj = r->Zd[l] + j * w;
        double *Aj = r->Ad[l + 1] + j * w;
        for (i = 0; i < w; i++) Aj[i] = r->F1[l][i] * Zj[i];
      }
  }
  if (!hv) return;
  /* backward: the gradient's tangent, layer by layer */
  gc = r->g0;
  gn = r->g1;
  loss_tangent(r, r->Zd[L - 1], rt, gc);
  for (l = L; l-- > 0;) {
    const pk_layer *ly = &net->layer[l];
    size_t in = ly->in, out = ly->out;
    if (has_params(ly))
      for (j = 0; j < rt; j++) {
        double *h = hv + j * ldh;
        ly->vt->backward_params(ly, r->A[l], gc + j * n * out, n, 1.0, h + ly->woff,
                                ly->nb ? h + ly->boff : NULL, r->work);
        if (l >= 1) {
          /* + s_w Dw (*)^T Ad: the weights' part only (the bias
           * gradient's tangent is s_b sum Gd alone) */
          ly->vt->backward_params(ly, r->Ad[l] + j * n * in, r->Dw[l], n, 1.0, r->ps,
                                  ly->nb ? r->ps + ly->nw : NULL, r->work);
          for (a = 0; a < ly->nw; a++) h[ly->woff + a] += r->ps[a];
        }
      }
    if (l == 0) break;
    ly->vt->backward_input(ly, theta + ly->woff, gc, rt * n, r->gp, r->work);
    for (j = 0; j < rt; j++) {
      const double *Vj = V + j * ldv, *Zj = r->Zd[l - 1] + j * n * in;
      double *gpj = r->gp + j * n * in, *gnj = gn + j * n * in;
      if (has_params(ly)) {
        ly->vt->backward_input(ly, Vj + ly->woff, r->Dw[l], n, r->gs, r->work);
        for (i = 0; i < n * in; i++) gpj[i] += r->gs[i];
      }
      for (i = 0; i < n; i++) {
        double c = r->cw[i];
        for (a = 0; a < in; a++) {
          size_t e = i * in + a;
          gnj[e] = r->F1[l - 1][e] * gpj[e] + r->F2[l - 1][e] * Zj[e] * c * r->Dp[l][e];
        }
      }
    }
    { double *t = gc; gc = gn; gn = t; }
  }
}

/* ---- explicit gradients of the outputs ---------------------------------------- */

pk_status pk_outputs_check(const pk_network *net, size_t nq, const size_t *outputs, const char *who)
{
  size_t K = PK_NET_OUT(net), x;
  for (x = 0; outputs && x < nq; x++)
    if (outputs[x] >= K)
      return pk_fail(PK_EINVAL, "%s: the output of query %zu is %zu, outside 1..%zu", who, x + 1,
                     outputs[x] + 1, K);
  return PK_OK;
}

size_t pk_outputs_per(const pk_network *net, const size_t *outputs)
{
  return outputs ? 1 : PK_NET_OUT(net);
}

size_t pk_row_output(const pk_network *net, const size_t *outputs, size_t r)
{
  return outputs ? outputs[r] : r % PK_NET_OUT(net);
}

pk_status pk_output_grads(const pk_network *net, const double *theta, const double *Xq, size_t n,
                          const size_t *outputs, double *out, size_t ld)
{
  pk_acts w;
  pk_deltas dl;
  pk_status st = PK_OK;
  size_t K = PK_NET_OUT(net), nk = pk_outputs_per(net, outputs), x, l, i;
  double **U, *sel = NULL, **Usel = NULL;
  if (n == 0) return PK_OK;
  if ((st = pk_acts_init(&w, net, n, 0))) return st;
  if ((st = pk_deltas_init(&dl, net, n))) {
    pk_acts_free(&w);
    return st;
  }
  pk_net_forward_ws(net, theta, Xq, n, &w);
  pk_net_deltas(net, theta, &w, n, &dl);
  U = dl.D;
  if (outputs) {
    /* one sensitivity row per query: the output it asks for */
    size_t tot = 0;
    for (l = 0; l < net->L; l++) tot += n * net->layer[l].out;
    if ((st = pk_alloc((void **)&sel, tot, sizeof(double), "the queries' sensitivities")))
      goto done;
    if ((st = pk_alloc((void **)&Usel, net->L, sizeof *Usel, "the queries' sensitivities")))
      goto done;
    for (l = 0, tot = 0; l < net->L; l++) {
      size_t o = net->layer[l].out;
      Usel[l] = sel + tot;
      tot += n * o;
      for (x = 0; x < n; x++)
        memcpy(Usel[l] + x * o, dl.D[l] + (x * K + outputs[x]) * o, o * sizeof(double));
    }
    U = Usel;
  }
  for (i = 0; i < n * nk; i++) memset(out + i * ld, 0, net->P * sizeof(double));
  for (l = 0; l < net->L; l++) {
    const pk_layer *ly = &net->layer[l];
    pk_side s;
    if (!has_params(ly)) continue;
    pk_net_side(&s, net, l, w.A, U, NULL, 0, n, nk, !outputs);
    ly->vt->grad_rows(ly, &s, 1.0, out, ld);
  }
done:
  free(Usel);
  free(sel);
  pk_deltas_free(&dl);
  pk_acts_free(&w);
  return st;
}
