/* train.c - the training loop: gradient descent and minibatch SGD on a
 * network, in place, reproducible bit for bit from the seed; plain,
 * recorded (the recorder's hook, trajectory.c) or explained online (the
 * decomposition's hook, machine.c), or both in one run. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "pk_traj.h"
#include "pk_machine.h"
#include "pk_comm.h"

void pk_train_opts_init(pk_train_opts *o)
{
  memset(o, 0, sizeof *o);
  o->loss = PK_LOSS_MSE;
  o->optimizer = PK_OPT_GD;
  o->steps = 100;
  o->lr = 0.01;
  o->hyper.momentum = 0.9;
  o->hyper.beta1 = 0.9;
  o->hyper.beta2 = 0.999;
  o->hyper.eps = 1e-8;
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
  /* a rank of a data-parallel run may hold no rows (the ranks' total is checked) */
  if (X->rows == 0 && !o->comm) return pk_fail(PK_EINVAL, "train: no training data (X has 0 rows)");
  if (!pk_all_finite(X->data, X->rows * X->cols))
    return pk_fail(PK_EINVAL, "train: X holds a NaN or infinite value");
  if ((unsigned)o->loss > PK_LOSS_SOFTMAX) return pk_fail(PK_EINVAL, "train: unknown loss");
  if ((st = pk_loss_check(o->loss, Y, X->rows, PK_NET_OUT(net)))) return st;
  if ((unsigned)o->optimizer >= PK_OPT_COUNT) return pk_fail(PK_EINVAL, "train: unknown optimizer");
  if ((st = pk_opt_check(o->optimizer, &o->hyper))) return st;
  if (o->steps == 0) return pk_fail(PK_EINVAL, "train: steps must be positive");
  if (!o->lr_fn && !(o->lr > 0 && isfinite(o->lr)))
    return pk_fail(PK_EINVAL, "train: lr must be a positive finite number, got %g", o->lr);
  if (o->optimizer == PK_OPT_GD && o->batch_size && o->batch_size != X->rows)
    return pk_fail(PK_EINVAL, "train: gd is full-batch; use optimizer = \"sgd\" for a batch_size");
  if (o->weights && (st = pk_check_loss_weights(o->weights, X->rows, "train: weights")))
    return st;
  return PK_OK;
}

pk_status pk_check_loss_weights(const double *wts, size_t m, const char *who)
{
  size_t i;
  for (i = 0; i < m; i++)
    if (!(wts[i] >= 0) || !isfinite(wts[i])) {
      if (isnan(wts[i]))
        return pk_fail(PK_EINVAL, "%s: entry %zu is NaN; loss weights must be finite and >= 0", who,
                       i + 1);
      return pk_fail(PK_EINVAL, "%s: entry %zu is %g; loss weights must be finite and >= 0", who,
                     i + 1, wts[i]);
    }
  return PK_OK;
}

/* an interrupted run: the network is at w_s, the weights after s steps */
static pk_status interrupted(size_t s, const pk_train_opts *o)
{
  return pk_fail(PK_ECANCEL, "train: interrupted after step %zu of %zu (the network keeps the "
                 "weights of step %zu)", s, o->steps, s);
}

/* ---- data-parallel runs ---------------------------------------------------- */

/* Before a data-parallel run: every rank's own checks, then the ranks'
 * agreement on what must be the same everywhere (so a rank that refuses
 * stops all of them), then where this rank's shard sits among all rows. */
static pk_status comm_check(const pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                            const pk_train_opts *o, size_t *offset, size_t *total)
{
  static const char *const what[] = {
    "the columns of X", "the columns of Y",
    ("the network's weights (build it from the same seed on every rank)"),
    "the network's parameter count", "steps", "the optimizer", "the loss",
    "lr", "batch_size", "seed", "seed", "the hyperparameters", "whether loss weights are given",
    "whether lr is a function"
  };
  const pk_comm *c = o->comm;
  double v[14];
  pk_status st;
  if (c->size < 1 || c->rank < 0 || c->rank >= c->size || !c->allreduce)
    return pk_fail(PK_EINVAL, "train: the communicator is not initialised (rank %d of %d)",
                   c->rank, c->size);
  st = pk_train_check(net, X, Y, o);
  memset(v, 0, sizeof v);
  if (!st) {
    v[0] = (double)X->cols;
    v[1] = (double)Y->cols;
    v[2] = pk_comm_hash(net->theta, net->P);
    v[3] = (double)net->P;
    v[4] = (double)o->steps;
    v[5] = (double)o->optimizer;
    v[6] = (double)o->loss;
    v[7] = o->lr_fn ? 0 : o->lr;
    v[8] = (double)o->batch_size;
    /* the seed matters only where batches are shuffled: a gd run whose
     * ranks drew different default seeds is still one run */
    if (o->optimizer == PK_OPT_SGD || (o->optimizer != PK_OPT_GD && o->batch_size)) {
      v[9] = (double)(o->seed >> 32);
      v[10] = (double)(o->seed & 0xffffffffu);
    }
    v[11] = pk_comm_hash(&o->hyper.momentum, sizeof o->hyper / sizeof(double));
    v[12] = o->weights != NULL;
    v[13] = o->lr_fn != NULL;
  }
  if ((st = pk_comm_agree(c, "train", st, v, what, sizeof v / sizeof v[0]))) return st;
  if ((st = pk_comm_offsets(c, X->rows, offset, total, "train"))) return st;
  if (*total == 0) return pk_fail(PK_EINVAL, "train: no training data (X has 0 rows on every rank)");
  return PK_OK;
}

/* What a rank that stops tells the others (summed over the ranks): its
 * on_step ended the run, or anything else stopped it. */
#define STOP_ON_STEP 1.0
#define STOP_FAILED 1048576.0

/* A step's share of this rank: its members of the global batch (their
 * global rows in [off, off + mine)) as local rows, in the batch's order. */
static size_t local_members(const size_t *rows, size_t nb, size_t off, size_t mine, size_t *out)
{
  size_t i, n = 0;
  for (i = 0; i < nb; i++)
    if (rows[i] >= off && rows[i] - off < mine) out[n++] = rows[i] - off;
  return n;
}

/* This rank's part of a global batch of nb rows: buf[0..P) the weighted
 * gradient sum over its nl members divided by nb, buf[P] their loss sum;
 * the allreduce of buf over the ranks is then the batch's mean gradient
 * and nb times its loss, the same on every rank. */
static void comm_grad(const pk_network *net, const double *xb, const pk_matrix *Y, pk_loss loss,
                      const size_t *lrows, size_t nl, size_t nb, const double *wts, pk_acts *w,
                      double *buf)
{
  size_t P = net->P;
  double value = 0;
  if (nl == 0) {
    memset(buf, 0, (P + 1) * sizeof(double));
    return;
  }
  pk_net_forward_ws(net, net->theta, xb, nl, w);
  pk_loss_eval_weighted(loss, w->Z[net->L - 1], nl, PK_NET_OUT(net), Y, lrows, wts, &value,
                        w->G[net->L - 1]);
  pk_net_backward(net, net->theta, w, nl, 1.0 / (double)nb, buf);
  buf[P] = value * (double)nl;
}

/* A run's workspace: the batch order, the batch and its activations, the
 * gradient (and a data-parallel run's two exchanged values), the next
 * weights, the optimizer's state and a data-parallel rank's local rows,
 * allocated once for runs of one network shape on one data set
 * (retraining many times reuses it). */
struct pk_train_ws {
  batcher bt;
  pk_acts w;
  pk_optstate os;
  pk_optimizer opt;
  size_t m, b, P;
  double *xb, *grad, *next;
  size_t *lrows;
};

static size_t batch_rows(const pk_train_opts *o, size_t m)
{
  size_t b = o->optimizer != PK_OPT_GD && o->batch_size ? o->batch_size : m;
  return b > m ? m : b;
}

/* free what ws holds (zeroed or partly filled: safe) */
static void ws_release(pk_train_ws *ws)
{
  pk_acts_free(&ws->w);
  pk_opt_free(&ws->os);
  free(ws->bt.perm);
  free(ws->xb);
  free(ws->grad);
  free(ws->next);
  free(ws->lrows);
}

/* fill ws for runs over m rows in batches of b (lrows: a data-parallel
 * rank's); on failure what was allocated stays for ws_release */
static pk_status ws_fill(pk_train_ws *ws, const pk_network *net, size_t m, size_t b,
                         const pk_train_opts *o)
{
  pk_status st;
  memset(ws, 0, sizeof *ws);
  ws->m = m;
  ws->b = b;
  ws->P = net->P;
  ws->opt = o->optimizer;
  if ((st = pk_opt_init(&ws->os, o->optimizer, net->P)) ||
      (st = pk_alloc((void **)&ws->bt.perm, m, sizeof(size_t), "the batch order")) ||
      (st = pk_alloc((void **)&ws->xb, b * PK_NET_IN(net), sizeof(double), "the batch")) ||
      (st = pk_alloc((void **)&ws->grad, net->P + 2, sizeof(double), "the gradient")) ||
      (st = pk_alloc((void **)&ws->next, net->P, sizeof(double), "the next weights")) ||
      (o->comm && (st = pk_alloc((void **)&ws->lrows, b, sizeof(size_t), "the batch's local rows"))))
    return st;
  return pk_acts_init(&ws->w, net, b, 1);
}

void pk_train_ws_free(pk_train_ws *ws)
{
  if (!ws) return;
  ws_release(ws);
  free(ws);
}

pk_status pk_train_ws_new(pk_train_ws **out, const pk_network *net, size_t m,
                          const pk_train_opts *o)
{
  pk_train_ws *ws;
  pk_status st;
  *out = NULL;
  if (o->comm) return pk_fail(PK_EINVAL, "train: a reusable workspace is for runs without comm");
  if ((st = pk_alloc((void **)&ws, 1, sizeof *ws, "the training workspace"))) return st;
  if ((st = ws_fill(ws, net, m, batch_rows(o, m), o))) {
    pk_train_ws_free(ws);
    return st;
  }
  *out = ws;
  return PK_OK;
}

/* The loop itself: hk (may be NULL) sees every step after its update is
 * computed and before it is applied (see pk_train_hooks). In the
 * workspace ws when given (made for this run's shape; each run starts
 * afresh: the batch order from the seed, the optimizer's state from
 * zero), else in one of its own. */
static pk_status train_loop(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                            const pk_train_opts *o, pk_train_hooks *hk, double *losses,
                            size_t *done, size_t *total, pk_train_ws *ws)
{
  size_t m = X->rows, P = net->P, b, s, nb, nl = 0, off = 0, mine = m;
  pk_train_ws own;
  batcher *bt;
  pk_acts *w;
  pk_optstate *os;
  double *xb, *grad, *next;
  size_t *lrows;
  const size_t *rows;
  const pk_comm *comm = o->comm;
  pk_status st;
  int why, hk_stopped = 0;
  if (done) *done = 0;
  if (hk) hk->stopped = 0;
  if (comm) {
    /* the batches are drawn over every rank's rows */
    if (ws) return pk_fail(PK_EINVAL, "train: a reusable workspace is for runs without comm");
    if ((st = comm_check(net, X, Y, o, &off, &m))) return st;
    if (total) *total = m;
  } else if ((st = pk_train_check(net, X, Y, o))) {
    return st;
  }
  b = batch_rows(o, m);
  if (ws) {
    if (ws->m != m || ws->b != b || ws->P != P || ws->opt != o->optimizer || ws->w.cap < b)
      return pk_fail(PK_EINVAL, "train: the workspace was made for another run's shape");
    ws->os.t = 0;
    if (ws->os.a) memset(ws->os.a, 0, P * sizeof(double));
    if (ws->os.b) memset(ws->os.b, 0, P * sizeof(double));
  } else {
    ws = &own;
    st = ws_fill(ws, net, m, b, o);
    /* a rank short of memory stops every rank, none waits for it */
    if (comm) st = pk_comm_agree(comm, "train", st, NULL, NULL, 0);
    if (st) goto out;
  }
  bt = &ws->bt;
  w = &ws->w;
  os = &ws->os;
  xb = ws->xb;
  grad = ws->grad;
  next = ws->next;
  lrows = ws->lrows;
  bt->m = m;
  bt->b = b;
  bt->pos = m;                      /* shuffle before the first batch */
  /* sgd always shuffles; the others only when they use minibatches */
  bt->shuffle = o->optimizer == PK_OPT_SGD || (o->optimizer != PK_OPT_GD && b < m);
  pk_rng_seed(&bt->rng, o->seed);
  /* the update is applied only after every check and hook of its step:
   * whatever stops the run, the network holds a complete step's weights */
  for (s = 0; s < o->steps; s++) {
    double lr = o->lr, loss;
    if (pk_cancelled(&o->call)) {
      st = interrupted(s, o);
      goto stop;
    }
    if (o->lr_fn && (st = o->lr_fn(o->lr_ud, s + 1, &lr))) goto stop;
    if (!(lr > 0 && isfinite(lr))) {
      st = pk_fail(PK_EINVAL, "train: the learning rate of step %zu is %g; it must be positive and finite", s + 1, lr);
      goto stop;
    }
    nb = next_batch(bt, &rows);
    if (comm) {
      nl = local_members(rows, nb, off, mine, lrows);
      pk_gather_rows(X, lrows, nl, xb);
      comm_grad(net, xb, Y, o->loss, lrows, nl, nb, o->weights, w, grad);
      /* a stop on any rank (its on_step at the previous step, or its
       * interrupt, progress or lr function) stops every rank here, at the
       * same weights: after on_step's, as on_step's own stop does (the
       * steps taken are the result); after any other, with an error */
      grad[P + 1] = 0;
      if ((st = pk_comm_reduce(comm, grad, P + 2, PK_COMM_SUM, "train"))) goto out;
      if (grad[P + 1] >= STOP_FAILED) {
        st = pk_fail(PK_ECANCEL, "train: another rank stopped (interrupted, cancelled or failed) "
                     "after step %zu; the network keeps the weights of step %zu", s, s);
        goto out;
      }
      if (grad[P + 1] > 0) goto out;
      loss = grad[P] / (double)nb;
    } else {
      pk_gather_rows(X, rows, nb, xb);
      pk_grad_step(net, net->theta, xb, Y, o->loss, rows, nb, o->weights, w, grad, &loss);
    }
    pk_opt_update(o->optimizer, &o->hyper, os, net->theta, grad, lr, next);
    if (!isfinite(loss)) {
      st = pk_fail(PK_ENUMERIC, "train: diverged at step %zu: the loss is %g (the network keeps the weights of step %zu)", s + 1, loss, s);
      goto out;
    }
    if (!pk_all_finite(next, P)) {
      st = pk_fail(PK_ENUMERIC, "train: diverged at step %zu: a weight became infinite or NaN (loss %g; the network keeps the weights of step %zu)", s + 1, loss, s);
      goto out;
    }
    /* a data-parallel run's hooks see this rank's members of the batch */
    if (hk && (st = hk->step(hk->ud, s, lr, comm ? lrows : rows, comm ? nl : nb, w, net->theta,
                             next, loss, os))) {
      /* a hook stops only when interrupted (an online decomposition checks
       * the flag inside a long step) */
      if (st == PK_ECANCEL) st = interrupted(s, o);
      goto out;
    }
    memcpy(net->theta, next, P * sizeof(double));
    net->version++;
    if (losses) losses[s] = loss;
    if (done) *done = s + 1;
    if (o->on_step && o->on_step(o->on_step_ud, s + 1, loss)) {
      st = pk_fail(PK_ECANCEL, "train: stopped by on_step at step %zu", s + 1);
      if (hk) hk->stopped = 1;
      hk_stopped = 1;
      goto stop;
    }
    if ((why = pk_progress(&o->call, (double)(s + 1), (double)o->steps))) {
      st = why == PK_STOP_INTERRUPT ? interrupted(s + 1, o)
                                    : pk_fail(PK_ECANCEL, "train: stopped at step %zu", s + 1);
      goto stop;
    }
  }
  /* the closing exchange, where a rank that stops after the last step
   * meets the others (a stop then changes nothing: every step is taken) */
  if (comm) {
    memset(grad, 0, (P + 2) * sizeof(double));
    st = pk_comm_reduce(comm, grad, P + 2, PK_COMM_SUM, "train");
  }
  goto out;
stop:
  /* the others wait at their next exchange: tell them to stop there */
  if (comm) {
    memset(grad, 0, (P + 2) * sizeof(double));
    grad[P + 1] = hk_stopped ? STOP_ON_STEP : STOP_FAILED;
    (void)comm->allreduce(comm->ctx, grad, P + 2, PK_COMM_SUM);
  }
out:
  if (ws == &own) ws_release(&own);
  return st;
}

/* the most a network keeps of its last training's workspace */
#define KEEP_WS ((size_t)256 << 20)

/* The loop in the network's kept workspace when it fits this run's shape,
 * else in a new one, which the network then keeps (within KEEP_WS) for its
 * next run: fresh memory costs a page fault per page on first touch, a
 * fixed cost of a few steps per call on a virtual machine (the conv CNN of
 * bench/conv.lua, n = 1024: one step 0.26 s in fresh memory, 0.028 s
 * kept). Data-parallel runs and runs that fail their checks go as before. */
static pk_status train_kept(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                            const pk_train_opts *o, pk_train_hooks *hk, double *losses,
                            size_t *done, size_t *total)
{
  pk_train_ws *ws = net->train_ws;
  size_t m = X->rows, b = batch_rows(o, m);
  pk_status st;
  if (o->comm || pk_train_check(net, X, Y, o))
    return train_loop(net, X, Y, o, hk, losses, done, total, NULL);
  net->train_ws = NULL;
  if (ws && (ws->m != m || ws->b != b || ws->P != net->P || ws->opt != o->optimizer ||
             ws->w.cap < b)) {
    pk_train_ws_free(ws);
    ws = NULL;
  }
  if (!ws && (st = pk_train_ws_new(&ws, net, m, o))) {
    if (done) *done = 0;
    if (hk) hk->stopped = 0;
    return st;
  }
  st = train_loop(net, X, Y, o, hk, losses, done, total, ws);
  if (pk_acts_bytes(net, ws->w.cap, 1) <= KEEP_WS) {
    net->train_ws = ws;
    net->train_ws_free = pk_train_ws_free;
  } else {
    pk_train_ws_free(ws);
  }
  return st;
}

pk_status pk_train_with_ws(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                           const pk_train_opts *o, double *losses, size_t *done,
                           pk_train_ws *ws)
{
  return train_loop(net, X, Y, o, NULL, losses, done, NULL, ws);
}

/* ---- plain, recorded and explained training ------------------------------- */

pk_status pk_train(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                   const pk_train_opts *o, double *losses, size_t *done)
{
  return train_kept(net, X, Y, o, NULL, losses, done, NULL);
}

/* both hooks of one run, in order: the recorder's, then the decomposition's */
typedef struct hook_pair {
  pk_train_hooks rec, explain;
} hook_pair;

static pk_status both_steps(void *ud, size_t s, double lr, const size_t *rows, size_t nb,
                            const pk_acts *w, const double *theta, const double *next,
                            double loss, const pk_optstate *os)
{
  hook_pair *h = ud;
  pk_status st;
  if (h->rec.step && (st = h->rec.step(h->rec.ud, s, lr, rows, nb, w, theta, next, loss, os)))
    return st;
  if (h->explain.step)
    return h->explain.step(h->explain.ud, s, lr, rows, nb, w, theta, next, loss, os);
  return PK_OK;
}

pk_status pk_train_full(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                        const pk_train_opts *o, size_t every, pk_trajectory **traj,
                        const pk_matrix *Xq, const pk_quad *quad, int want_kp,
                        pk_machine **out, double *losses, size_t *done)
{
  hook_pair h;
  pk_train_hooks hk;
  size_t total = 0;
  pk_trajectory *t = NULL;
  pk_explainer *ex = NULL;
  pk_status st, st2;
  if (out) *out = NULL;
  if (traj) *traj = NULL;
  memset(&h, 0, sizeof h);
  if (o->comm && Xq)
    return pk_fail(PK_EINVAL, "train: explain is not available with comm (record the run and "
                   "use pk.machine.from_trajectory(traj, { comm = })");
  /* a shard's steps cannot be replayed alone: every step is stored */
  if (o->comm && every > 1)
    return pk_fail(PK_EINVAL, "train: with comm, record = true (every step) only");
  if (!o->comm && (st = pk_train_check(net, X, Y, o))) return st;
  if (Xq && (st = pk_explainer_begin(net, X, o, Xq, quad, want_kp, &ex, &h.explain)))
    return st;
  if (every && (st = pk_recorder_begin(net, X, Y, o, every, &t, &h.rec))) goto done;
  hk.ud = &h;
  hk.step = both_steps;
  st = train_kept(net, X, Y, o, &hk, losses, done, &total);
  if (t && o->comm && total) {
    /* the shard's record knows the global batches: their sizes divide */
    t->global_rows = total;
    t->batch_size = o->optimizer != PK_OPT_GD && o->batch_size && o->batch_size < total
                    ? o->batch_size : total;
  }
  /* stopped by on_step: the record and the machine of the steps taken;
   * cancelled or interrupted: nothing (a step may be recorded but not
   * applied) */
  if (st && !(st == PK_ECANCEL && hk.stopped)) goto done;
  if (t) pk_recorder_end(t, net);
  if (ex && (st2 = pk_explainer_end(ex, net, out))) {
    st = st2;
    goto done;
  }
  if (t) {
    *traj = t;
    t = NULL;
  }
done:
  pk_trajectory_free(t);
  pk_explainer_free(ex);
  return st;
}

pk_status pk_train_record(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                          const pk_train_opts *o, size_t every, pk_trajectory **out,
                          double *losses, size_t *done)
{
  *out = NULL;
  if (every == 0) return pk_fail(PK_EINVAL, "record: every must be >= 1");
  return pk_train_full(net, X, Y, o, every, out, NULL, NULL, 0, NULL, losses, done);
}

pk_status pk_train_explain(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                           const pk_train_opts *o, const pk_matrix *Xq, const pk_quad *q,
                           int want_kp, pk_machine **out, double *losses, size_t *done)
{
  return pk_train_full(net, X, Y, o, 0, NULL, Xq, q, want_kp, out, losses, done);
}
