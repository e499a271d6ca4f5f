/* optim.c - one step of training, what the training loop and replay
 * share so that a replay is bit for bit the run it replays: the gradient
 * of a batch, and torch.optim's update rules with their state and checks. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "pk_train.h"

static const char *const opt_names[] = { "gd", "sgd", "momentum", "nesterov", "adam", "adamw" };

int pk_optimizer_from_name(const char *name)
{
  int i;
  for (i = 0; i < PK_OPT_COUNT; i++)
    if (strcmp(name, opt_names[i]) == 0) return i;
  return -1;
}

const char *pk_optimizer_name(pk_optimizer o)
{
  return (unsigned)o < PK_OPT_COUNT ? opt_names[o] : "unknown";
}

const char *pk_optimizer_names(void) { return "gd, sgd, momentum, nesterov, adam, adamw"; }

size_t pk_opt_state_vectors(pk_optimizer o)
{
  switch (o) {
  case PK_OPT_MOMENTUM: case PK_OPT_NESTEROV: return 1;
  case PK_OPT_ADAM: case PK_OPT_ADAMW: return 2;
  default: return 0;
  }
}

pk_status pk_opt_init(pk_optstate *s, pk_optimizer o, size_t P)
{
  size_t k = pk_opt_state_vectors(o);
  pk_status st;
  memset(s, 0, sizeof *s);
  s->P = P;
  if (k >= 1 && (st = pk_calloc((void **)&s->a, P, sizeof(double), "the optimizer state"))) return st;
  if (k >= 2 && (st = pk_calloc((void **)&s->b, P, sizeof(double), "the optimizer state"))) {
    pk_opt_free(s);
    return st;
  }
  return PK_OK;
}

void pk_opt_free(pk_optstate *s)
{
  free(s->a);
  free(s->b);
  memset(s, 0, sizeof *s);
}

pk_status pk_opt_check(pk_optimizer o, const pk_hyper *h)
{
  if (!(h->weight_decay >= 0) || !isfinite(h->weight_decay))
    return pk_fail(PK_EINVAL, "train: weight_decay must be >= 0, got %g", h->weight_decay);
  if (o == PK_OPT_MOMENTUM || o == PK_OPT_NESTEROV) {
    if (!(h->momentum >= 0) || !isfinite(h->momentum))
      return pk_fail(PK_EINVAL, "train: momentum must be >= 0, got %g", h->momentum);
    if (!(h->dampening >= 0 && h->dampening <= 1))
      return pk_fail(PK_EINVAL, "train: dampening must be in [0, 1], got %g", h->dampening);
    if (o == PK_OPT_NESTEROV && (h->momentum <= 0 || h->dampening != 0))
      return pk_fail(PK_EINVAL, "train: nesterov needs momentum > 0 and dampening = 0");
  }
  if (o == PK_OPT_ADAM || o == PK_OPT_ADAMW) {
    if (!(h->beta1 >= 0 && h->beta1 < 1))
      return pk_fail(PK_EINVAL, "train: beta1 must be in [0, 1), got %g", h->beta1);
    if (!(h->beta2 >= 0 && h->beta2 < 1))
      return pk_fail(PK_EINVAL, "train: beta2 must be in [0, 1), got %g", h->beta2);
    if (!(h->eps >= 0) || !isfinite(h->eps))
      return pk_fail(PK_EINVAL, "train: eps must be >= 0, got %g", h->eps);
  }
  return PK_OK;
}

/* The update rules of torch.optim's SGD, Adam and AdamW, in their order of
 * operations, so that results agree to rounding. */
void pk_opt_update(pk_optimizer o, const pk_hyper *h, pk_optstate *s, const double *theta,
                   const double *grad, double lr, double *next)
{
  size_t i, P = s->P;
  double wd = h->weight_decay;
  s->t++;
  switch (o) {
  case PK_OPT_GD:
  case PK_OPT_SGD:
    if (wd == 0) for (i = 0; i < P; i++) next[i] = theta[i] - lr * grad[i];
    else for (i = 0; i < P; i++) next[i] = theta[i] - lr * (grad[i] + wd * theta[i]);
    break;
  case PK_OPT_MOMENTUM:
  case PK_OPT_NESTEROV: {
    double mu = h->momentum, keep = 1 - h->dampening;
    for (i = 0; i < P; i++) {
      double d = grad[i] + wd * theta[i];
      s->a[i] = s->t == 1 ? d : mu * s->a[i] + keep * d;
      if (o == PK_OPT_NESTEROV) d = d + mu * s->a[i];
      else d = s->a[i];
      next[i] = theta[i] - lr * d;
    }
    break;
  }
  case PK_OPT_ADAM:
  case PK_OPT_ADAMW: {
    double b1 = h->beta1, b2 = h->beta2;
    double bc1 = 1 - pow(b1, (double)s->t), bc2 = 1 - pow(b2, (double)s->t);
    double step = lr / bc1, bc2s = sqrt(bc2), shrink = 1 - lr * wd;
    for (i = 0; i < P; i++) {
      double d = o == PK_OPT_ADAM ? grad[i] + wd * theta[i] : grad[i];
      double w = o == PK_OPT_ADAMW ? theta[i] * shrink : theta[i];
      s->a[i] = b1 * s->a[i] + (1 - b1) * d;
      s->b[i] = b2 * s->b[i] + (1 - b2) * d * d;
      next[i] = w - step * (s->a[i] / (sqrt(s->b[i]) / bc2s + h->eps));
    }
    break;
  }
  default:
    break;
  }
}

/* ---- the gradient of a batch ------------------------------------------- */

void pk_gather_rows(const pk_matrix *X, const size_t *rows, size_t nb, double *out)
{
  size_t i, d = X->cols;
  for (i = 0; i < nb; i++) memcpy(out + i * d, X->data + rows[i] * d, d * sizeof(double));
}

void pk_grad_step(const pk_network *net, const double *theta, const double *xb,
                  const pk_matrix *Y, pk_loss loss, const size_t *rows, size_t nb,
                  const double *wts, pk_acts *w, double *grad, double *value)
{
  size_t K = PK_NET_OUT(net);
  pk_net_forward_ws(net, theta, xb, nb, w);
  pk_loss_eval_weighted(loss, w->Z[net->L - 1], nb, K, Y, rows, wts, value, w->G[net->L - 1]);
  pk_net_backward(net, theta, w, nb, 1.0 / (double)nb, grad);
}
