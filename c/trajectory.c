/* trajectory.c - recording training runs, replaying them bit for bit from
 * checkpoints, walking them step by step, and their files. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <float.h>
#include "pk_traj.h"

uint64_t pk_data_hash(const pk_matrix *X, const pk_matrix *Y)
{
  /* FNV-1a over shapes and bytes */
  uint64_t h = 0xcbf29ce484222325ULL;
  const pk_matrix *ms[2];
  int k;
  ms[0] = X;
  ms[1] = Y;
  for (k = 0; k < 2; k++) {
    const unsigned char *p = (const unsigned char *)ms[k]->data;
    size_t i, n = ms[k]->rows * ms[k]->cols * sizeof(double);
    uint64_t dims[2];
    dims[0] = ms[k]->rows;
    dims[1] = ms[k]->cols;
    for (i = 0; i < sizeof dims; i++) h = (h ^ ((const unsigned char *)dims)[i]) * 0x100000001b3ULL;
    for (i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  }
  return h;
}

pk_status pk_trajectory_check_data(const pk_trajectory *t)
{
  if (pk_data_hash(t->X, t->Y) != t->hash)
    return pk_fail(PK_EINVAL, "the training data has changed since the trajectory was recorded "
                   "(its hash differs); replay and decomposition need the original X and Y");
  return PK_OK;
}

void pk_trajectory_retain(const pk_trajectory *t)
{
  /* the count is bookkeeping, not the recorded run: holders may be const */
  ((pk_trajectory *)t)->refs++;
}

void pk_trajectory_free(pk_trajectory *t)
{
  if (!t) return;
  if (t->refs > 1) {
    t->refs--;
    return;
  }
  pk_network_free(t->net);
  free(t->lr);
  free(t->loss);
  free(t->boff);
  free(t->rows);
  free(t->check_step);
  free(t->W);
  free(t->state_t);
  free(t->S);
  free(t->lw);
  pk_matrix_free(t->ownX);
  pk_matrix_free(t->ownY);
  free(t);
}

size_t pk_trajectory_steps(const pk_trajectory *t) { return t->T; }
const pk_network *pk_trajectory_network0(const pk_trajectory *t) { return t->net; }
double pk_trajectory_lr(const pk_trajectory *t, size_t s) { return s < t->T ? t->lr[s] : 0; }
double pk_trajectory_loss(const pk_trajectory *t, size_t s) { return s < t->T ? t->loss[s] : 0; }
const pk_matrix *pk_trajectory_X(const pk_trajectory *t) { return t->X; }
const pk_matrix *pk_trajectory_Y(const pk_trajectory *t) { return t->Y; }
const double *pk_trajectory_loss_weights(const pk_trajectory *t) { return t->lw; }

size_t pk_trajectory_memory(const pk_trajectory *t)
{
  size_t b = sizeof *t + t->net->P * sizeof(double);
  b += t->cap * 2 * sizeof(double);
  b += t->check_cap * (2 * sizeof(size_t) + (1 + t->nstate) * t->net->P * sizeof(double));
  if (!t->full_batch) b += (t->cap + 1) * sizeof(size_t) + t->nrows_cap * sizeof(uint32_t);
  if (t->ownX) b += (t->ownX->rows * t->ownX->cols + t->ownY->rows * t->ownY->cols) * sizeof(double);
  if (t->lw) b += t->X->rows * sizeof(double);
  return b;
}

void pk_trajectory_get_info(const pk_trajectory *t, pk_trajectory_info *info)
{
  memset(info, 0, sizeof *info);
  info->loss = t->lossfn;
  info->optimizer = t->optimizer;
  info->hyper = t->hyper;
  info->steps = t->T;
  info->batch_size = t->full_batch ? t->X->rows : t->batch_size;
  info->every = t->every;
  info->seed = t->seed;
  info->full_batch = t->full_batch;
}

pk_status pk_trajectory_batch(const pk_trajectory *t, size_t s, size_t *rows, size_t *nb)
{
  size_t i, n;
  *nb = 0;
  if (s >= t->T)
    return pk_fail(PK_EINVAL, "batch: step %zu is outside the trajectory's %zu steps (0-based)", s,
                   t->T);
  n = t->full_batch ? t->X->rows : t->boff[s + 1] - t->boff[s];
  if (rows)
    for (i = 0; i < n; i++) rows[i] = t->full_batch ? i : (size_t)t->rows[t->boff[s] + i];
  *nb = n;
  return PK_OK;
}

/* The trajectory's own views of the training data, so that the caller may
 * free its matrices first (a garbage collector may). */
static pk_status hold_data(pk_trajectory *t, const pk_matrix *X, const pk_matrix *Y)
{
  pk_matrix *vX, *vY;
  pk_status st;
  /* a view changes the owner's reference count, never the data */
  if ((st = pk_matrix_view_rows(&vX, (pk_matrix *)X, 0, X->rows))) return st;
  if ((st = pk_matrix_view_rows(&vY, (pk_matrix *)Y, 0, Y->rows))) {
    pk_matrix_free(vX);
    return st;
  }
  pk_matrix_free(t->ownX);
  pk_matrix_free(t->ownY);
  t->X = t->ownX = vX;
  t->Y = t->ownY = vY;
  return PK_OK;
}

pk_status pk_trajectory_network(const pk_trajectory *t, size_t s, pk_network **out)
{
  pk_status st;
  *out = NULL;
  if (s > t->T) return pk_fail(PK_EINVAL, "step %zu out of range 0..%zu", s, t->T);
  if ((st = pk_network_clone(out, t->net))) return st;
  if ((st = pk_trajectory_weights(t, s, (*out)->theta))) {
    pk_network_free(*out);
    *out = NULL;
  }
  return st;
}

/* ---- recording --------------------------------------------------------------- */

static pk_status new_traj(pk_trajectory **out, const pk_network *net, size_t steps, size_t every,
                          int full_batch, size_t batch, size_t nstate)
{
  pk_trajectory *t = calloc(1, sizeof *t);
  size_t nck = steps / every + 2, P = net->P;
  pk_status st;
  *out = NULL;
  if (!t) return pk_fail(PK_ENOMEM, "trajectory: out of memory");
  t->refs = 1;
  t->every = every;
  t->full_batch = full_batch;
  t->cap = steps;
  t->check_cap = nck;
  static const char *const fewer = "record = { every = k } keeps every k-th step only";
  if ((st = pk_network_clone(&t->net, net)) ||
      (st = pk_alloc_hint((void **)&t->lr, steps, sizeof(double), "the trajectory's learning rates",
                          "train for fewer steps")) ||
      (st = pk_alloc_hint((void **)&t->loss, steps, sizeof(double), "the trajectory's losses",
                          "train for fewer steps")) ||
      (st = pk_alloc_hint((void **)&t->check_step, nck, sizeof(size_t), "the trajectory's checkpoints",
                          fewer)) ||
      (st = pk_calloc_hint((void **)&t->state_t, nck, sizeof(size_t), "the trajectory's checkpoints",
                           fewer)))
    goto fail;
  t->nstate = nstate;
  if (nstate) {
    size_t n;
    char what[160];
    if ((st = pk_mul_size(&n, nck, nstate * P, "the optimizer's checkpoints"))) goto fail;
    snprintf(what, sizeof what, "the optimizer's state at the checkpoints (%zu checkpoints of %zu x "
             "%zu values)", nck, nstate, P);
    if ((st = pk_alloc_hint((void **)&t->S, n, sizeof(double), what, fewer))) goto fail;
  }
  {
    size_t n;
    char what[160];
    if ((st = pk_mul_size(&n, nck, P, "the trajectory's weights"))) goto fail;
    snprintf(what, sizeof what, "the trajectory's weights (%zu checkpoints of %zu parameters)", nck, P);
    if ((st = pk_alloc_hint((void **)&t->W, n, sizeof(double), what, fewer))) goto fail;
  }
  if (!full_batch) {
    size_t nr;
    static const char *const smaller = "train for fewer steps or with a smaller batch_size";
    if ((st = pk_mul_size(&nr, steps, batch, "the trajectory's batches"))) goto fail;
    t->nrows_cap = nr;
    if ((st = pk_alloc_hint((void **)&t->boff, steps + 1, sizeof(size_t), "the trajectory's batches",
                            smaller)) ||
        (st = pk_alloc_hint((void **)&t->rows, nr ? nr : 1, sizeof(uint32_t), "the trajectory's batches",
                            smaller)))
      goto fail;
    t->boff[0] = 0;
  }
  *out = t;
  return PK_OK;
fail:
  pk_trajectory_free(t);
  return st;
}

static void add_check(pk_trajectory *t, size_t step, const double *w, const pk_optstate *os)
{
  size_t P = t->net->P, n = t->nstate * P;
  t->check_step[t->ncheck] = step;
  memcpy(t->W + t->ncheck * P, w, P * sizeof(double));
  t->state_t[t->ncheck] = os ? os->t : 0;
  if (n) {
    double *S = t->S + t->ncheck * n;
    if (!os) memset(S, 0, n * sizeof(double));
    else {
      memcpy(S, os->a, P * sizeof(double));
      if (t->nstate > 1) memcpy(S + P, os->b, P * sizeof(double));
    }
  }
  t->ncheck++;
}

static pk_status record_step(void *ud, size_t s, double lr, const size_t *rows, size_t nb,
                             const pk_acts *w, const double *theta, const double *next,
                             double loss, const pk_optstate *os)
{
  pk_trajectory *t = ud;
  size_t i;
  (void)w;
  (void)theta;
  t->lr[s] = lr;
  t->loss[s] = loss;
  if (!t->full_batch) {
    for (i = 0; i < nb; i++) t->rows[t->boff[s] + i] = (uint32_t)rows[i];
    t->boff[s + 1] = t->boff[s] + nb;
  }
  t->T = s + 1;
  if ((s + 1) % t->every == 0) add_check(t, s + 1, next, os);
  return PK_OK;
}

pk_status pk_recorder_begin(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                            const pk_train_opts *o, size_t every, pk_trajectory **out,
                            pk_train_hooks *hk)
{
  pk_trajectory *t;
  pk_status st;
  *out = NULL;
  if (X->rows > UINT32_MAX) return pk_fail(PK_EINVAL, "record: more than 2^32 training rows");
  {
    size_t b = o->optimizer != PK_OPT_GD && o->batch_size ? o->batch_size : X->rows;
    if (b > X->rows) b = X->rows;
    if ((st = new_traj(&t, net, o->steps, every, o->optimizer == PK_OPT_GD, b,
                       pk_opt_state_vectors(o->optimizer))))
      return st;
    t->batch_size = b;
  }
  t->lossfn = o->loss;
  t->optimizer = o->optimizer;
  t->hyper = o->hyper;
  t->seed = o->seed;
  if (o->weights) {
    /* the run's own copy: the caller's array may change after training */
    if ((st = pk_alloc_hint((void **)&t->lw, X->rows, sizeof(double), "the trajectory's loss weights",
                            "train on fewer examples"))) {
      pk_trajectory_free(t);
      return st;
    }
    memcpy(t->lw, o->weights, X->rows * sizeof(double));
  }
  if ((st = hold_data(t, X, Y))) {
    pk_trajectory_free(t);
    return st;
  }
  t->hash = pk_data_hash(X, Y);
  add_check(t, 0, net->theta, NULL);
  hk->ud = t;
  hk->step = record_step;
  *out = t;
  return PK_OK;
}

void pk_recorder_end(pk_trajectory *t, const pk_network *net)
{
  /* the final weights are always a checkpoint; replay never starts from
   * the last step, so its optimizer state is not needed */
  if (t->check_step[t->ncheck - 1] != t->T) add_check(t, t->T, net->theta, NULL);
}

size_t pk_trajectory_batch_total(const pk_trajectory *t, size_t s)
{
  size_t M = t->global_rows, b = t->full_batch ? M : t->batch_size, per, j;
  if (!M) return 0;
  if (b == 0 || b > M) b = M;
  per = (M + b - 1) / b;
  j = s % per;
  return j == per - 1 ? M - j * b : b;
}

/* ---- walking and replay -------------------------------------------------------- */

/* what replaying a step needs beside the weights: the batch, its
 * activations and loss gradients, the gradient and the optimizer state */
static pk_status cursor_batch(pk_cursor *c)
{
  const pk_trajectory *t = c->t;
  size_t P = t->net->P, b = t->full_batch ? t->X->rows : t->batch_size, i;
  char what[160];
  pk_status st;
  if (b > t->X->rows) b = t->X->rows;
  /* the batch is the least a replay can work with: the gradient must be
   * summed exactly as training summed it, over the whole batch at once */
  snprintf(what, sizeof what, "replaying the run (the activations and loss gradients of a batch "
           "of %zu examples)", b);
  if ((st = pk_check_bytes_hint(pk_acts_bytes(t->net, b, 1), 1, what,
                                c->weights_only ? "record = true keeps every step's weights, "
                                "which need no replay" : NULL)) ||
      (st = pk_alloc((void **)&c->grad, P, sizeof(double), "replay")) ||
      (st = pk_alloc((void **)&c->xb, b * t->X->cols, sizeof(double), "replay")) ||
      (st = pk_alloc((void **)&c->rows, b, sizeof(size_t), "replay")) ||
      (st = pk_acts_init(&c->w, t->net, b, 1)) ||
      (st = pk_opt_init(&c->os, t->optimizer, P)))
    return st;
  if (t->full_batch)
    for (i = 0; i < b; i++) c->rows[i] = i;
  return PK_OK;
}

double pk_cursor_bytes(const pk_trajectory *t)
{
  size_t P = t->net->P, b = t->full_batch ? t->X->rows : t->batch_size;
  if (b > t->X->rows) b = t->X->rows;
  return (double)sizeof(double) * (3.0 + (double)pk_opt_state_vectors(t->optimizer)) * (double)P +
         (double)b * ((double)t->X->cols * sizeof(double) + sizeof(size_t)) +
         (double)pk_acts_bytes(t->net, b, 1);
}

static pk_status cursor_init(pk_cursor *c, const pk_trajectory *t, int weights_only)
{
  size_t P = t->net->P;
  pk_status st;
  memset(c, 0, sizeof *c);
  c->t = t;
  c->s = SIZE_MAX;
  c->weights_only = weights_only;
  if ((st = pk_trajectory_check_data(t))) return st;
  if ((st = pk_alloc((void **)&c->theta, P, sizeof(double), "the weights of a step")) ||
      (st = pk_alloc((void **)&c->next, P, sizeof(double), "the weights of a step")) ||
      (!weights_only && (st = cursor_batch(c)))) {
    pk_cursor_free(c);
    return st;
  }
  return PK_OK;
}

pk_status pk_cursor_init(pk_cursor *c, const pk_trajectory *t) { return cursor_init(c, t, 0); }

pk_status pk_cursor_init_weights(pk_cursor *c, const pk_trajectory *t)
{
  return cursor_init(c, t, 1);
}

void pk_cursor_free(pk_cursor *c)
{
  free(c->theta);
  free(c->next);
  free(c->grad);
  free(c->xb);
  free(c->rows);
  pk_acts_free(&c->w);
  pk_opt_free(&c->os);
  memset(c, 0, sizeof *c);
}

/* the index of the last checkpoint at or before step s */
static size_t check_before(const pk_trajectory *t, size_t s)
{
  size_t lo = 0, hi = t->ncheck;
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (t->check_step[mid] <= s) lo = mid;
    else hi = mid;
  }
  return lo;
}

/* from theta = w_s, compute step s: batch, activations, next */
static void run_step(pk_cursor *c, size_t s)
{
  const pk_trajectory *t = c->t;
  size_t i, P = t->net->P, k = check_before(t, s + 1);
  /* w_{s+1} stored with the optimizer's state after the update (or no
   * state to keep): the record is the truth, and the mean gradient, its
   * weight-gradient products and the update would only be overwritten.
   * The batch's activations and loss gradients are what the caller
   * reads; they are computed by the same code as in training. */
  int stored = t->check_step[k] == s + 1 && (t->nstate == 0 || t->state_t[k] == s + 1);
  if (t->full_batch) {
    c->nb = t->X->rows;
  } else {
    c->nb = t->boff[s + 1] - t->boff[s];
    for (i = 0; i < c->nb; i++) c->rows[i] = t->rows[t->boff[s] + i];
  }
  c->lr = t->lr[s];
  pk_gather_rows(t->X, c->rows, c->nb, c->xb);
  if (c->nb) {
    pk_grad_step(t->net, c->theta, c->xb, t->Y, t->lossfn, c->rows, c->nb, t->lw, &c->w,
                 stored ? NULL : c->grad, &c->loss);
  } else {                             /* a shard with no member in this batch */
    if (!stored) memset(c->grad, 0, P * sizeof(double));
    c->loss = 0;
  }
  if (stored) {
    memcpy(c->next, t->W + k * P, P * sizeof(double));
    c->os.t = t->state_t[k];
    if (t->nstate) {
      const double *S = t->S + k * t->nstate * P;
      memcpy(c->os.a, S, P * sizeof(double));
      if (t->nstate > 1) memcpy(c->os.b, S + P, P * sizeof(double));
    }
  } else {
    pk_opt_update(t->optimizer, &t->hyper, &c->os, c->theta, c->grad, c->lr, c->next);
    if (t->check_step[k] == s + 1) {   /* stored: the record is the truth */
      memcpy(c->next, t->W + k * P, P * sizeof(double));
      /* and so is its optimizer state, where it was stored with it: a
       * shard's own gradient is not the step's */
      if (t->global_rows && t->nstate && t->state_t[k] == c->os.t) {
        const double *S = t->S + k * t->nstate * P;
        memcpy(c->os.a, S, P * sizeof(double));
        if (t->nstate > 1) memcpy(c->os.b, S + P, P * sizeof(double));
      }
    }
  }
  c->s = s;
}

pk_status pk_cursor_seek(pk_cursor *c, size_t s)
{
  const pk_trajectory *t = c->t;
  size_t P = t->net->P, k, from;
  pk_status st;
  if (s >= t->T) return pk_fail(PK_EINVAL, "step %zu is outside the trajectory's %zu steps", s, t->T);
  if (c->weights_only) {
    size_t k1;
    k = check_before(t, s);
    k1 = check_before(t, s + 1);
    if (t->check_step[k] == s && t->check_step[k1] == s + 1) {
      /* both ends stored: nothing to replay (and no state to carry on) */
      memcpy(c->theta, t->W + k * P, P * sizeof(double));
      memcpy(c->next, t->W + k1 * P, P * sizeof(double));
      c->lr = t->lr[s];
      c->s = SIZE_MAX;
      return PK_OK;
    }
    if (!c->grad && (st = cursor_batch(c))) return st;
  }
  if (c->s != SIZE_MAX && s == c->s + 1) {
    memcpy(c->theta, c->next, P * sizeof(double));
    run_step(c, s);
    return PK_OK;
  }
  if (c->s == s) return PK_OK;
  k = check_before(t, s);
  from = t->check_step[k];
  memcpy(c->theta, t->W + k * P, P * sizeof(double));
  c->os.t = t->state_t[k];
  if (t->nstate) {
    const double *S = t->S + k * t->nstate * P;
    memcpy(c->os.a, S, P * sizeof(double));
    if (t->nstate > 1) memcpy(c->os.b, S + P, P * sizeof(double));
  }
  for (; from < s; from++) {
    run_step(c, from);
    memcpy(c->theta, c->next, P * sizeof(double));
  }
  run_step(c, s);
  return PK_OK;
}

pk_status pk_trajectory_weights(const pk_trajectory *t, size_t s, double *out)
{
  size_t k = check_before(t, s), P = t->net->P;
  pk_cursor c;
  pk_status st;
  if (s > t->T) return pk_fail(PK_EINVAL, "step %zu is outside 0..%zu", s, t->T);
  if (t->check_step[k] == s) {
    memcpy(out, t->W + k * P, P * sizeof(double));
    return PK_OK;
  }
  if ((st = pk_cursor_init_weights(&c, t))) return st;
  if (!(st = pk_cursor_seek(&c, s - 1))) memcpy(out, c.next, P * sizeof(double));
  pk_cursor_free(&c);
  return st;
}

/* ---- files ------------------------------------------------------------------------ */

typedef struct save_ctx {
  const pk_trajectory *t;
  int with_data;
} save_ctx;

pk_status pk_trajectory_write_payload(pk_writer *w, const pk_trajectory *t, int with_data)
{
  size_t i, P = t->net->P;
  pk_network_write_payload(w, t->net);
  pk_put_u64(w, t->T);
  pk_put_u32(w, (uint32_t)t->lossfn);
  pk_put_u32(w, (uint32_t)t->optimizer);
  pk_put_f64(w, t->hyper.momentum);
  pk_put_f64(w, t->hyper.dampening);
  pk_put_f64(w, t->hyper.beta1);
  pk_put_f64(w, t->hyper.beta2);
  pk_put_f64(w, t->hyper.eps);
  pk_put_f64(w, t->hyper.weight_decay);
  pk_put_u64(w, t->batch_size);
  pk_put_u64(w, t->seed);
  pk_put_u64(w, t->every);
  pk_put_u32(w, (uint32_t)t->full_batch);
  pk_put_f64s(w, t->lr, t->T);
  pk_put_f64s(w, t->loss, t->T);
  if (!t->full_batch) {
    pk_put_u64(w, t->boff[t->T]);
    for (i = 0; i <= t->T; i++) pk_put_u64(w, t->boff[i]);
    for (i = 0; i < t->boff[t->T]; i++) pk_put_u32(w, t->rows[i]);
  }
  pk_put_u64(w, t->ncheck);
  for (i = 0; i < t->ncheck; i++) pk_put_u64(w, t->check_step[i]);
  for (i = 0; i < t->ncheck; i++) pk_put_u64(w, t->state_t[i]);
  pk_put_f64s(w, t->W, t->ncheck * P);
  pk_put_f64s(w, t->S, t->ncheck * t->nstate * P);
  pk_put_u64(w, t->hash);
  pk_put_u32(w, (uint32_t)with_data);
  if (with_data) {
    pk_matrix_write_payload(w, t->X);
    pk_matrix_write_payload(w, t->Y);
  }
  if (t->lw || w->version >= 2) {
    /* version 2: the loss weights, one per training row; a count of 0
     * when the file is version 2 for another reason (its network's layer
     * records) and the run had none. The network came first, so both
     * passes see the same version here. */
    pk_writer_need(w, 2);
    pk_put_u64(w, t->lw ? t->X->rows : 0);
    if (t->lw) pk_put_f64s(w, t->lw, t->X->rows);
  }
  return PK_OK;
}

static pk_status write_traj(pk_writer *w, const void *obj)
{
  const save_ctx *c = obj;
  return pk_trajectory_write_payload(w, c->t, c->with_data);
}

pk_status pk_trajectory_save(const pk_trajectory *t, const char *path, int with_data)
{
  save_ctx c;
  if (t->global_rows)
    return pk_fail(PK_EINVAL, "save: a rank's shard of a data-parallel run cannot be saved (the "
                   "file format has no place for the other ranks' rows)");
  c.t = t;
  c.with_data = with_data;
  return pk_save_object(path, PK_TAG_TRAJECTORY, write_traj, &c);
}

/* A file that is not what a recording writes: "path: msg". */
static pk_status bad(const char *path, const char *msg)
{
  return pk_fail(PK_EFORMAT, "%s: %s", path, msg);
}

/* Every array below is sized by a count that was first checked against the
 * bytes left in the payload (pk_get_count), so a corrupt count is refused
 * before anything of its size is allocated, and memory stays linear in the
 * file. */

/* The run's settings (steps, loss, optimizer and its hyperparameters,
 * batches, seed, checkpoint spacing), checked as training checks them. */
static pk_status read_settings(pk_reader *rd, const char *path, pk_trajectory *t)
{
  uint32_t lossfn, opt, full;
  pk_status st;
  size_t T;
  if ((st = pk_get_count(rd, 16, &T, "step count"))) return st;
  lossfn = pk_get_u32(rd);
  opt = pk_get_u32(rd);
  t->hyper.momentum = pk_get_f64(rd);
  t->hyper.dampening = pk_get_f64(rd);
  t->hyper.beta1 = pk_get_f64(rd);
  t->hyper.beta2 = pk_get_f64(rd);
  t->hyper.eps = pk_get_f64(rd);
  t->hyper.weight_decay = pk_get_f64(rd);
  t->batch_size = (size_t)pk_get_u64(rd);
  t->seed = pk_get_u64(rd);
  t->every = (size_t)pk_get_u64(rd);
  full = pk_get_u32(rd);
  if (rd->err) return bad(path, "file is truncated (trajectory header)");
  if (lossfn > PK_LOSS_SOFTMAX || opt >= PK_OPT_COUNT || full > 1 || t->every == 0 ||
      t->batch_size == 0)
    return bad(path, "value check failed: bad trajectory settings");
  /* gd, and only gd, takes every row at every step */
  if ((int)full != (opt == PK_OPT_GD))
    return bad(path, "value check failed: batches do not fit the optimizer");
  if (pk_opt_check((pk_optimizer)opt, &t->hyper))
    return bad(path, "value check failed: bad optimizer hyperparameters");
  t->T = t->cap = T;
  t->full_batch = (int)full;
  t->lossfn = (pk_loss)lossfn;
  t->optimizer = (pk_optimizer)opt;
  t->nstate = pk_opt_state_vectors(t->optimizer);
  return PK_OK;
}

/* every step's learning rate and loss */
static pk_status read_steps(pk_reader *rd, const char *path, pk_trajectory *t)
{
  size_t i, T = t->T;
  pk_status st;
  if ((st = pk_alloc((void **)&t->lr, T, sizeof(double), "the trajectory's steps")) ||
      (st = pk_alloc((void **)&t->loss, T, sizeof(double), "the trajectory's steps")))
    return st;
  pk_get_f64s(rd, t->lr, T);
  pk_get_f64s(rd, t->loss, T);
  if (rd->err) return bad(path, "file is truncated (steps)");
  for (i = 0; i < T; i++)
    if (!(t->lr[i] > 0 && t->lr[i] <= DBL_MAX) || !(fabs(t->loss[i]) <= DBL_MAX))
      return bad(path, "value check failed: a learning rate or loss that training never records");
  return PK_OK;
}

/* minibatches: the rows of every step (full-batch runs store none) */
static pk_status read_batches(pk_reader *rd, const char *path, pk_trajectory *t)
{
  size_t i, T = t->T, nrows;
  pk_status st;
  if (t->full_batch) return PK_OK;
  if ((st = pk_get_count(rd, 4, &nrows, "batch rows"))) return st;
  if (T >= (rd->n - rd->pos) / 8) return bad(path, "file is truncated (batch offsets)");
  t->nrows_cap = nrows;
  if ((st = pk_alloc((void **)&t->boff, T + 1, sizeof(size_t), "the trajectory's batches")) ||
      (st = pk_alloc((void **)&t->rows, nrows, sizeof(uint32_t), "the trajectory's batches")))
    return st;
  for (i = 0; i <= T; i++) t->boff[i] = (size_t)pk_get_u64(rd);
  for (i = 0; i < nrows; i++) t->rows[i] = pk_get_u32(rd);
  if (rd->err) return bad(path, "file is truncated (batches)");
  /* every step took between 1 and batch_size rows */
  for (i = 0; i < T; i++)
    if (t->boff[i] >= t->boff[i + 1] || t->boff[i + 1] - t->boff[i] > t->batch_size)
      return bad(path, "value check failed: bad batch offsets");
  if (t->boff[0] != 0 || t->boff[T] != nrows)
    return bad(path, "value check failed: bad batch offsets");
  return PK_OK;
}

/* The checkpoints: their steps, the optimizer's update counts there, the
 * weights and the optimizer's state vectors (read whole; a truncation is
 * seen with the data flag that follows). */
static pk_status read_checkpoints(pk_reader *rd, const char *path, pk_trajectory *t)
{
  static const char *const fewer = "record = { every = k } keeps fewer checkpoints",
                          *const what = "the trajectory's checkpoints";
  size_t i, P = t->net->P, nstate = t->nstate, unit, ncheck, n;
  pk_status st;
  /* each: its step, its optimizer step count, P weights and the state */
  if (pk_mul_size(&unit, 8 * (1 + nstate), P, "checkpoint") || unit > SIZE_MAX - 16)
    return bad(path, "size check failed: checkpoints do not fit the file");
  if ((st = pk_get_count(rd, unit + 16, &ncheck, "checkpoint count"))) return st;
  if (ncheck < 1) return bad(path, "size check failed: no checkpoints");
  t->check_cap = ncheck;
  if ((st = pk_alloc((void **)&t->check_step, ncheck, sizeof(size_t), what)) ||
      (st = pk_alloc((void **)&t->state_t, ncheck, sizeof(size_t), what)) ||
      (st = pk_mul_size(&n, ncheck, P, "the trajectory's weights")) ||
      (st = pk_alloc_hint((void **)&t->W, n, sizeof(double), "the trajectory's weights", fewer)))
    return st;
  if (nstate && ((st = pk_mul_size(&n, n, nstate, "the optimizer's checkpoints")) ||
                 (st = pk_alloc_hint((void **)&t->S, n, sizeof(double),
                                     "the optimizer's state at the checkpoints", fewer))))
    return st;
  t->ncheck = ncheck;
  for (i = 0; i < ncheck; i++) {
    t->check_step[i] = (size_t)pk_get_u64(rd);
    if (t->check_step[i] > t->T || (i && t->check_step[i] <= t->check_step[i - 1]))
      return bad(path, "value check failed: checkpoint steps");
  }
  if (t->check_step[0] != 0 || t->check_step[ncheck - 1] != t->T)
    return bad(path, "value check failed: checkpoint steps");
  for (i = 0; i < ncheck; i++) {
    t->state_t[i] = (size_t)pk_get_u64(rd);
    if (t->state_t[i] > t->check_step[i])
      return bad(path, "value check failed: optimizer step counts");
  }
  pk_get_f64s(rd, t->W, ncheck * P);
  pk_get_f64s(rd, t->S, ncheck * nstate * P);
  return PK_OK;
}

/* does this data fit the recorded network and loss? */
static int data_fits(const pk_trajectory *t, const pk_matrix *X, const pk_matrix *Y)
{
  return X->rows != 0 && X->cols == PK_NET_IN(t->net) &&
         !pk_loss_check(t->lossfn, Y, X->rows, PK_NET_OUT(t->net));
}

/* the hash of the recorded data, and the data itself when the file holds it */
static pk_status read_data(pk_reader *rd, const char *path, pk_trajectory *t)
{
  uint32_t has_data;
  pk_status st;
  t->hash = pk_get_u64(rd);
  has_data = pk_get_u32(rd);
  if (rd->err) return bad(path, "file is truncated");
  if (has_data > 1) return bad(path, "value check failed: data flag");
  if (!has_data) return PK_OK;
  if ((st = pk_matrix_read_payload(rd, &t->ownX)) || (st = pk_matrix_read_payload(rd, &t->ownY)))
    return st;
  if (rd->err) return bad(path, "file is truncated (data)");
  t->X = t->ownX;
  t->Y = t->ownY;
  if (!data_fits(t, t->X, t->Y))
    return bad(path, "value check failed: the stored training data does not fit the network");
  if (pk_data_hash(t->X, t->Y) != t->hash)
    return bad(path, "checksum check failed: the stored training data does not match its hash");
  return PK_OK;
}

/* format version 2: the per-example loss weights (*nw of them; 0 when
 * the file is version 2 for its network's layer records alone) */
static pk_status read_loss_weights(pk_reader *rd, const char *path, pk_trajectory *t, size_t *nw)
{
  size_t i;
  pk_status st;
  *nw = 0;
  if (rd->version < 2) return PK_OK;
  if ((st = pk_get_count(rd, 8, nw, "loss weight count"))) return st;
  if (*nw == 0) return PK_OK;
  if ((st = pk_alloc((void **)&t->lw, *nw ? *nw : 1, sizeof(double),
                     "the trajectory's loss weights")))
    return st;
  pk_get_f64s(rd, t->lw, *nw);
  if (rd->err) return bad(path, "file is truncated (loss weights)");
  for (i = 0; i < *nw; i++)
    if (!(t->lw[i] >= 0 && t->lw[i] <= DBL_MAX))
      return bad(path, "value check failed: a negative or non-finite loss weight");
  return PK_OK;
}

/* The data the run replays: the caller's X and Y replace a stored copy
 * (they must hash alike); the batches and the nw loss weights must fit
 * it. */
static pk_status use_data(const char *path, pk_trajectory *t, const pk_matrix *X,
                          const pk_matrix *Y, size_t nw)
{
  size_t i;
  pk_status st;
  if (X || Y) {
    if (!X || !Y) return pk_fail(PK_EINVAL, "load: give both X and Y");
    /* the caller's data replaces the stored copy, as the run's own views */
    if ((st = hold_data(t, X, Y))) return st;
    if (!data_fits(t, X, Y))
      return pk_fail(PK_EINVAL, "%s: the training data does not fit the network", path);
    if (pk_data_hash(X, Y) != t->hash)
      return pk_fail(PK_EINVAL, "%s: the training data does not match the recorded hash", path);
  }
  if (!t->X)
    return pk_fail(PK_EINVAL, "%s holds no training data: load it with the original X and Y", path);
  if (t->batch_size > t->X->rows)
    return bad(path, "value check failed: a batch size above the training rows");
  if (t->lw && nw != t->X->rows)
    return bad(path, "value check failed: the loss weights do not fit the training rows");
  for (i = 0; !t->full_batch && i < t->nrows_cap; i++)
    if (t->rows[i] >= t->X->rows)
      return bad(path, "value check failed: a batch row outside the data");
  return PK_OK;
}

pk_status pk_trajectory_read_payload(pk_reader *rd, const char *path, pk_trajectory **out,
                                     const pk_matrix *X, const pk_matrix *Y)
{
  pk_trajectory *t = calloc(1, sizeof *t);
  pk_status st;
  size_t nw;
  *out = NULL;
  if (!t) return pk_fail_in(pk_fail(PK_ENOMEM, "trajectory: out of memory"), path);
  t->refs = 1;
  if ((st = pk_network_read_payload(rd, &t->net)) || (st = read_settings(rd, path, t)) ||
      (st = read_steps(rd, path, t)) || (st = read_batches(rd, path, t)) ||
      (st = read_checkpoints(rd, path, t)) || (st = read_data(rd, path, t)) ||
      (st = read_loss_weights(rd, path, t, &nw)) || (st = use_data(path, t, X, Y, nw))) {
    pk_trajectory_free(t);
    return pk_fail_in(st, path);
  }
  *out = t;
  return PK_OK;
}

pk_status pk_trajectory_load_mem(pk_trajectory **out, const char *name, const unsigned char *buf,
                                 size_t len, const pk_matrix *X, const pk_matrix *Y)
{
  pk_reader r;
  save_ctx c;
  pk_status st;
  *out = NULL;
  if ((st = pk_load_object_mem(name, buf, len, PK_TAG_TRAJECTORY, &r))) return st;
  if ((st = pk_trajectory_read_payload(&r, name, out, X, Y))) return st;
  c.t = *out;
  c.with_data = 0;          /* the data's bytes change no version */
  if ((st = pk_reader_end(&r, name, write_traj, &c))) {
    pk_trajectory_free(*out);
    *out = NULL;
  }
  return st;
}

pk_status pk_trajectory_load(pk_trajectory **out, const char *path, const pk_matrix *X,
                             const pk_matrix *Y)
{
  unsigned char *buf;
  size_t len;
  pk_status st;
  *out = NULL;
  if ((st = pk_read_file(path, &buf, &len))) return st;
  st = pk_trajectory_load_mem(out, path, buf, len, X, Y);
  free(buf);
  return st;
}
