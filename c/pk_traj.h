/* pk_traj.h - recorded runs inside (trajectory.c): the record, its data,
 * the cursor that walks and replays it step by step, its files, and the
 * recorder the training loop hooks into a run. */
#ifndef PK_TRAJ_H
#define PK_TRAJ_H

#include "pk_train.h"

struct pk_trajectory {
  pk_network *net;         /* the architecture, holding w_0 */
  size_t T, cap;           /* steps recorded, capacity */
  double *lr, *loss;       /* per step */
  int full_batch;          /* gd: every step uses all rows in order */
  size_t *boff;            /* sgd: rows of step s are rows[boff[s]..boff[s+1]) */
  uint32_t *rows;
  size_t nrows_cap;
  size_t every;            /* checkpoint spacing; 1 keeps every step */
  size_t ncheck, check_cap;
  size_t *check_step;      /* steps of the stored weights, ascending */
  double *W;               /* ncheck x P */
  pk_loss lossfn;
  pk_optimizer optimizer;
  pk_hyper hyper;
  size_t nstate;           /* optimizer state vectors (0, 1 or 2) */
  size_t *state_t;         /* per checkpoint: the optimizer's update count */
  double *S;               /* per checkpoint: nstate x P state values */
  size_t batch_size;
  uint64_t seed;
  double *lw;              /* per-example loss weights (m), owned; NULL: all 1 */
  const pk_matrix *X, *Y;  /* the training data (borrowed, or owned) */
  pk_matrix *ownX, *ownY;
  uint64_t hash;           /* of X and Y when recorded */
  size_t refs;             /* holders: its owner plus machines and path kernels */
  /* one rank's shard of a data-parallel run (pk_train_opts.comm): the rows
   * of every rank (0: not sharded). X, Y and the batches are this rank's;
   * every step's weights and optimizer state are stored (no replay, which
   * would need the other ranks' gradients). */
  size_t global_rows;
};

/* The global batch size of step s of a sharded trajectory (the divisor of
 * its mean gradient), from the batcher's rule: epochs of global_rows rows
 * in batches of batch_size, the last one shorter; 0 when not sharded. */
size_t pk_trajectory_batch_total(const pk_trajectory *t, size_t s);

/* Another holder of t (a kernel machine, a path kernel): pk_trajectory_free
 * frees t when the last holder lets go, so freeing the trajectory first
 * (a Lua __gc called by hand) leaves its borrowers working. */
void pk_trajectory_retain(const pk_trajectory *t);

/* FNV-1a over the shapes and bytes of X and Y: what a trajectory keeps to
 * know its data again (and a machine its queries) */
uint64_t pk_data_hash(const pk_matrix *X, const pk_matrix *Y);

/* Walks a trajectory step by step, replaying between checkpoints: after
 * pk_cursor_seek(c, s), theta = w_s, next = w_{s+1}, w holds the batch of step s
 * with its per-example loss gradients, rows/nb the batch. */
typedef struct pk_cursor {
  const pk_trajectory *t;
  size_t s;                /* the step the cursor has loaded, or SIZE_MAX */
  int weights_only;        /* theta, next and lr only: no batch unless replayed */
  double *theta, *next, *grad, *xb;
  size_t *rows, nb;
  double lr, loss;
  pk_acts w;
  pk_optstate os;          /* after step s's update */
} pk_cursor;

pk_status pk_cursor_init(pk_cursor *c, const pk_trajectory *t);
/* the bytes a cursor of pk_cursor_init holds (weights, batch, state) */
double pk_cursor_bytes(const pk_trajectory *t);
/* A cursor for theta, next and lr alone (the path kernel): where both ends
 * of a step are stored it reads them, holding nothing per example; it
 * takes a batch's workspace only when it must replay a step. */
pk_status pk_cursor_init_weights(pk_cursor *c, const pk_trajectory *t);
/* load step s (0 <= s < T); cheapest when s follows the last one */
pk_status pk_cursor_seek(pk_cursor *c, size_t s);
void pk_cursor_free(pk_cursor *c);

/* ---- files (trajectory.c) ----------------------------------------------- */

/* What a trajectory file holds (with_data: X and Y too), also inside a
 * kernel machine's file; the reader checks everything a recording cannot
 * write, and takes X and Y (both or neither) in place of stored data. */
pk_status pk_trajectory_write_payload(pk_writer *w, const pk_trajectory *t, int with_data);
pk_status pk_trajectory_read_payload(pk_reader *r, const char *path, pk_trajectory **out,
                                     const pk_matrix *X, const pk_matrix *Y);
/* The loader on a file image in memory (name is used in messages): what
 * pk_trajectory_load runs after pk_read_file, and what the fuzz harness
 * calls. */
pk_status pk_trajectory_load_mem(pk_trajectory **out, const char *name, const unsigned char *buf,
                                 size_t len, const pk_matrix *X, const pk_matrix *Y);

/* ---- the recorder, a hook of the training loop -------------------------- */

/* Begin makes the trajectory of a run that pk_train_check has passed and
 * sets hk to record each step (every >= 1: checkpoint spacing); end adds
 * the final weights and ties the trajectory to net. */
pk_status pk_recorder_begin(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                            const pk_train_opts *o, size_t every, pk_trajectory **out,
                            pk_train_hooks *hk);
void pk_recorder_end(pk_trajectory *t, const pk_network *net);

#endif
