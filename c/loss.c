/* loss.c - the training losses (means over a batch) and their exact
 * per-example derivatives. */
#include <string.h>
#include <math.h>
#include "pk_train.h"

static const char *const loss_names[] = { "mse", "logistic", "softmax" };

int pk_loss_from_name(const char *name)
{
  int i;
  for (i = 0; i < 3; i++)
    if (strcmp(name, loss_names[i]) == 0) return i;
  return -1;
}

const char *pk_loss_name(pk_loss l) { return (unsigned)l < 3 ? loss_names[l] : "unknown"; }
const char *pk_loss_names(void) { return "mse, logistic, softmax"; }

pk_status pk_loss_check(pk_loss loss, const pk_matrix *Y, size_t n, size_t K)
{
  size_t i, k, c = Y->cols;
  const double *y = Y->data;
  if (Y->rows != n)
    return pk_fail(PK_EINVAL, "Y has %zu rows, X has %zu", Y->rows, n);
  if (!pk_all_finite(y, Y->rows * c))
    return pk_fail(PK_EINVAL, "Y holds a NaN or infinite value");
  switch (loss) {
  case PK_LOSS_MSE:
    if (c != K) return pk_fail(PK_EINVAL, "mse: Y has %zu columns, the network has %zu outputs", c, K);
    break;
  case PK_LOSS_LOGISTIC:
    if (K != 1) return pk_fail(PK_EINVAL, "logistic: needs a network with 1 output, this one has %zu", K);
    if (c != 1) return pk_fail(PK_EINVAL, "logistic: Y must have 1 column of 0/1 targets, it has %zu", c);
    for (i = 0; i < n; i++)
      if (y[i] != 0.0 && y[i] != 1.0)
        return pk_fail(PK_EINVAL, "logistic: target %g in row %zu is not 0 or 1", y[i], i + 1);
    break;
  case PK_LOSS_SOFTMAX:
    if (K < 2) return pk_fail(PK_EINVAL, "softmax: needs a network with at least 2 outputs, this one has %zu", K);
    if (c == 1) {
      for (i = 0; i < n; i++)
        if (y[i] != floor(y[i]) || y[i] < 1 || y[i] > (double)K)
          return pk_fail(PK_EINVAL, "softmax: label %g in row %zu is outside 1..%zu", y[i], i + 1, K);
    } else if (c == K) {
      for (i = 0; i < n; i++) {
        double s = 0;
        for (k = 0; k < K; k++) {
          if (y[i * K + k] < 0)
            return pk_fail(PK_EINVAL, "softmax: row %zu of Y has a negative probability", i + 1);
          s += y[i * K + k];
        }
        if (fabs(s - 1) > 1e-9)
          return pk_fail(PK_EINVAL, "softmax: row %zu of Y sums to %g, not 1 (one-hot rows expected)", i + 1, s);
      }
    } else {
      return pk_fail(PK_EINVAL, "softmax: Y must be labels (1 column) or one-hot rows (%zu columns), it has %zu", K, c);
    }
    break;
  default:
    return pk_fail(PK_EINVAL, "unknown loss");
  }
  return PK_OK;
}

pk_status pk_loss_eval(pk_loss loss, const double *F, size_t n, size_t K, const pk_matrix *Y,
                       const size_t *rows, double *value, double *dF)
{
  return pk_loss_eval_weighted(loss, F, n, K, Y, rows, NULL, value, dF);
}

/* A weight of 1 leaves l_i and dl_i/df bit for bit what they were; a
 * weight of 0 makes both exactly 0, whatever the example's loss. */
pk_status pk_loss_eval_weighted(pk_loss loss, const double *F, size_t n, size_t K,
                                const pk_matrix *Y, const size_t *rows, const double *wts,
                                double *value, double *dF)
{
  size_t i, k, c = Y->cols;
  double total = 0;
  for (i = 0; i < n; i++) {
    size_t row = rows ? rows[i] : i;
    const double *f = F + i * K, *y = Y->data + row * c;
    double *g = dF ? dF + i * K : NULL, li = 0, wi = wts ? wts[row] : 1.0;
    if (wi == 0) {
      if (g) for (k = 0; k < K; k++) g[k] = 0;
      continue;
    }
    switch (loss) {
    case PK_LOSS_MSE:
      for (k = 0; k < K; k++) {
        double e = f[k] - y[k];
        li += 0.5 * e * e;
        if (g) g[k] = e;
      }
      break;
    case PK_LOSS_LOGISTIC: {
      double z = f[0], p = z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z));
      li = (z > 0 ? z : 0) - y[0] * z + log1p(exp(-fabs(z)));
      if (g) g[0] = p - y[0];
      break;
    }
    case PK_LOSS_SOFTMAX: {
      double m = f[0], s = 0, lse;
      for (k = 1; k < K; k++) if (f[k] > m) m = f[k];
      for (k = 0; k < K; k++) s += exp(f[k] - m);
      lse = m + log(s);
      if (c == 1) {
        size_t lab = (size_t)y[0] - 1;
        li = lse - f[lab];
        if (g) for (k = 0; k < K; k++) g[k] = exp(f[k] - lse) - (k == lab ? 1.0 : 0.0);
      } else {
        li = lse;
        for (k = 0; k < K; k++) li -= y[k] * f[k];
        if (g) for (k = 0; k < K; k++) g[k] = exp(f[k] - lse) - y[k];
      }
      break;
    }
    default:
      return pk_fail(PK_EINVAL, "unknown loss");
    }
    if (wi != 1) {
      li *= wi;
      if (g) for (k = 0; k < K; k++) g[k] *= wi;
    }
    total += li;
  }
  *value = n ? total / (double)n : 0.0;
  return PK_OK;
}
