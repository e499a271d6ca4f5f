/* train.c - gradient descent and minibatch SGD on a network, in place,
 * reproducible bit for bit from the seed. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "pk_internal.h"

static const char *const opt_names[] = { "gd", "sgd" };

int pk_optimizer_from_name(const char *name)
{
  int i;
  for (i = 0; i < 2; i++)
    if (strcmp(name, opt_names[i]) == 0) return i;
  return -1;
}

const char *pk_optimizer_name(pk_optimizer o) { return (unsigned)o < 2 ? opt_names[o] : "unknown"; }

void pk_train_opts_init(pk_train_opts *o)
{
  memset(o, 0, sizeof *o);
  o->loss = PK_LOSS_MSE;
  o->optimizer = PK_OPT_GD;
  o->steps = 100;
  o->lr = 0.01;
}

/* The order of examples for SGD: a fresh permutation each epoch. */
typedef struct batcher {
  size_t m, b, pos;
  size_t *perm;
  pk_rng rng;
  int shuffle;
} batcher;

static void shuffle(batcher *bt)
{
  size_t i;
  for (i = 0; i < bt->m; i++) bt->perm[i] = i;
  if (!bt->shuffle) return;
  for (i = bt->m; i > 1; i--) {
    size_t j = (size_t)pk_rng_below(&bt->rng, i), t = bt->perm[i - 1];
    bt->perm[i - 1] = bt->perm[j];
    bt->perm[j] = t;
  }
}

/* the next batch: *rows points into perm, returns its size */
static size_t next_batch(batcher *bt, const size_t **rows)
{
  size_t k;
  if (bt->pos >= bt->m) {
    shuffle(bt);
    bt->pos = 0;
  }
  k = bt->m - bt->pos < bt->b ? bt->m - bt->pos : bt->b;
  *rows = bt->perm + bt->pos;
  bt->pos += k;
  return k;
}

pk_status pk_train_check(const pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                         const pk_train_opts *o)
{
  pk_status st;
  if ((st = pk_check_input(net, X, "X"))) return st;
  if (X->rows == 0) return pk_fail(PK_EINVAL, "train: no training data (X has 0 rows)");
  if (!pk_all_finite(X->data, X->rows * X->cols))
    return pk_fail(PK_EINVAL, "train: X holds a NaN or infinite value");
  if ((unsigned)o->loss > PK_LOSS_SOFTMAX) return pk_fail(PK_EINVAL, "train: unknown loss");
  if ((st = pk_loss_check(o->loss, Y, X->rows, net->d[net->L]))) return st;
  if ((unsigned)o->optimizer > PK_OPT_SGD) return pk_fail(PK_EINVAL, "train: unknown optimizer");
  if (o->steps == 0) return pk_fail(PK_EINVAL, "train: steps must be positive");
  if (!o->lr_fn && !(o->lr > 0 && isfinite(o->lr)))
    return pk_fail(PK_EINVAL, "train: lr must be a positive finite number, got %g", o->lr);
  if (o->optimizer == PK_OPT_GD && o->batch_size && o->batch_size != X->rows)
    return pk_fail(PK_EINVAL, "train: gd is full-batch; use optimizer = \"sgd\" for a batch_size");
  return PK_OK;
}

pk_status pk_train(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                   const pk_train_opts *o, double *losses, size_t *done)
{
  return pk_train_hooked(net, X, Y, o, NULL, losses, done);
}

pk_status pk_train_hooked(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                          const pk_train_opts *o, const pk_train_hooks *hk, double *losses,
                          size_t *done)
{
  size_t m = X->rows, d0 = net->d[0], K = net->d[net->L], P = net->P, b, s, i, nb;
  batcher bt;
  pk_acts w;
  double *xb = NULL, *grad = NULL, *next = NULL;
  const size_t *rows;
  pk_status st;
  if (done) *done = 0;
  if ((st = pk_train_check(net, X, Y, o))) return st;
  b = o->optimizer == PK_OPT_SGD && o->batch_size ? o->batch_size : m;
  if (b > m) b = m;
  memset(&bt, 0, sizeof bt);
  bt.m = m;
  bt.b = b;
  bt.pos = m;                      /* shuffle before the first batch */
  bt.shuffle = o->optimizer == PK_OPT_SGD;
  pk_rng_seed(&bt.rng, o->seed);
  memset(&w, 0, sizeof w);
  if ((st = pk_alloc((void **)&bt.perm, m, sizeof(size_t), "the batch order")) ||
      (st = pk_alloc((void **)&xb, b * d0, sizeof(double), "the batch")) ||
      (st = pk_alloc((void **)&grad, P, sizeof(double), "the gradient")) ||
      (st = pk_alloc((void **)&next, P, sizeof(double), "the next weights")) ||
      (st = pk_acts_init(&w, net, b, 1)))
    goto out;
  for (s = 0; s < o->steps; s++) {
    double lr = o->lr, loss, *F;
    if (o->lr_fn && (st = o->lr_fn(o->lr_ud, s + 1, &lr))) goto out;
    if (!(lr > 0 && isfinite(lr))) {
      st = pk_fail(PK_EINVAL, "train: the learning rate of step %zu is %g; it must be positive and finite", s + 1, lr);
      goto out;
    }
    nb = next_batch(&bt, &rows);
    for (i = 0; i < nb; i++) memcpy(xb + i * d0, X->data + rows[i] * d0, d0 * sizeof(double));
    pk_net_forward_ws(net, net->theta, xb, nb, &w);
    F = w.Z[net->L - 1];
    pk_loss_eval(o->loss, F, nb, K, Y, rows, &loss, w.G[net->L - 1]);
    if (!isfinite(loss)) {
      st = pk_fail(PK_ENUMERIC, "train: diverged at step %zu: the loss is %g (the network keeps the weights of step %zu)", s + 1, loss, s);
      goto out;
    }
    pk_net_backward(net, net->theta, &w, nb, 1.0 / (double)nb, grad);
    if (hk && hk->before_update && (st = hk->before_update(hk->ud, s, lr, rows, nb, &w, grad)))
      goto out;
    for (i = 0; i < P; i++) next[i] = net->theta[i] - lr * grad[i];
    if (!pk_all_finite(next, P)) {
      st = pk_fail(PK_ENUMERIC, "train: diverged at step %zu: a weight became infinite or NaN (loss %g; the network keeps the weights of step %zu)", s + 1, loss, s);
      goto out;
    }
    memcpy(net->theta, next, P * sizeof(double));
    net->version++;
    if (losses) losses[s] = loss;
    if (done) *done = s + 1;
    if (hk && hk->after_update && (st = hk->after_update(hk->ud, s, loss))) goto out;
    if (o->on_step && o->on_step(o->on_step_ud, s + 1, loss)) {
      st = pk_fail(PK_ECANCEL, "train: stopped by on_step at step %zu", s + 1);
      goto out;
    }
    if (pk_progress(&o->call, (double)(s + 1), (double)o->steps)) {
      st = pk_fail(PK_ECANCEL, "train: stopped at step %zu", s + 1);
      goto out;
    }
  }
out:
  pk_acts_free(&w);
  free(bt.perm);
  free(xb);
  free(grad);
  free(next);
  return st;
}
