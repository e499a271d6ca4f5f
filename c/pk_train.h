/* pk_train.h - training inside: one step (the gradient of a batch and the
 * optimizers' update, optim.c), what the training loop checks, and the
 * hooks it runs for recorders and online decompositions (train.c). */
#ifndef PK_TRAIN_H
#define PK_TRAIN_H

#include "pk_net.h"

/* ---- one step (optim.c, loss.c) ----------------------------------------- */

/* Optimizer state: t updates taken; a = momentum buffer or Adam's first
 * moment, b = Adam's second moment. */
typedef struct pk_optstate {
  size_t t, P;
  double *a, *b;
} pk_optstate;

size_t pk_opt_state_vectors(pk_optimizer o);     /* 0, 1 or 2 P-vectors */
pk_status pk_opt_init(pk_optstate *s, pk_optimizer o, size_t P);
void pk_opt_free(pk_optstate *s);
pk_status pk_opt_check(pk_optimizer o, const pk_hyper *h);
/* next = the optimizer's update of theta with the mean gradient grad;
 * updates the state in place */
void pk_opt_update(pk_optimizer o, const pk_hyper *h, pk_optstate *s, const double *theta,
                   const double *grad, double lr, double *next);

void pk_gather_rows(const pk_matrix *X, const size_t *rows, size_t nb, double *out);
/* Forward and backward on a gathered batch: w (activations and
 * per-example loss gradients, each scaled by its example's loss weight
 * wts[row], so that everything downstream -- the mean gradient, the
 * decomposition's contractions, the optimizer traces -- sees w_i l_i),
 * the mean gradient, and the batch loss. wts NULL: all weights 1. */
void pk_grad_step(const pk_network *net, const double *theta, const double *xb,
                  const pk_matrix *Y, pk_loss loss, const size_t *rows, size_t nb,
                  const double *wts, pk_acts *w, double *grad, double *value);
/* pk_loss_eval with per-example weights wts (indexed by training row, as
 * rows names them; NULL: all 1): value = (1/n) sum w_i l_i, dF rows w_i l'_i */
pk_status pk_loss_eval_weighted(pk_loss loss, const double *F, size_t n, size_t K,
                                const pk_matrix *Y, const size_t *rows, const double *wts,
                                double *value, double *dF);

/* ---- the training loop (train.c) ---------------------------------------- */

/* A hook of the training loop, for recorders and online decompositions:
 * called for each step after the update is computed and before it is
 * applied, with theta = w_s, next = w_{s+1}, and w holding the batch (A[0]
 * its inputs) and the per-example loss gradients G (not divided by nb;
 * G[L-1] = dl/df). */
typedef struct pk_train_hooks {
  void *ud;
  pk_status (*step)(void *ud, size_t s, double lr, const size_t *rows, size_t nb,
                    const pk_acts *w, const double *theta, const double *next, double loss,
                    const pk_optstate *state);
  /* set by the training loop: 1 when on_step stopped the run after a
   * complete step (the recorded objects are whole), 0 for any other end */
  int stopped;
} pk_train_hooks;

/* The first bad entry of m loss weights (not finite or negative) as a
 * failure naming who, or PK_OK. */
pk_status pk_check_loss_weights(const double *wts, size_t m, const char *who);

/* What every run passes before it starts: data, loss, optimizer, steps,
 * learning rate, batch size and loss weights, each refusal naming it. */
pk_status pk_train_check(const pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                         const pk_train_opts *o);

/* A training run's workspace (batch order, batch, activations, gradient,
 * optimizer state) for runs of net's shape on m rows with o's optimizer
 * and batch size: what retraining many times reuses (attribution's LDS
 * and remove-top-k). */
typedef struct pk_train_ws pk_train_ws;
pk_status pk_train_ws_new(pk_train_ws **out, const pk_network *net, size_t m,
                          const pk_train_opts *o);
void pk_train_ws_free(pk_train_ws *ws);
/* pk_train in a workspace of pk_train_ws_new: each run starts afresh (the
 * batch order from o's seed, the optimizer's state from zero) */
pk_status pk_train_with_ws(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                           const pk_train_opts *o, double *losses, size_t *done,
                           pk_train_ws *ws);

#endif
