/* pk_internal.h - what the C core files share and host programs don't see:
 * the matrix layout, error setting, checked allocation, file framing. */
#ifndef PK_INTERNAL_H
#define PK_INTERNAL_H

#include <stdio.h>
#include "pk.h"

#define PK_PI 3.14159265358979323846
#define PK_SQRT1_2 0.70710678118654752440

/* BLAS and LAPACK take int dimensions */
#define PK_MAX_DIM 2147483647

/* Storage is reference counted: a view holds a reference on the matrix
 * that owns the data, so freeing the owner first never frees data a view
 * still reads. */
struct pk_matrix {
  size_t rows, cols;
  double *data;
  struct pk_matrix *base;  /* the owner, for a view; NULL for an owner */
  size_t refs;             /* owner: itself plus its live views */
};

#if defined(__GNUC__)
#define PK_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PK_PRINTF(a, b)
/* ---- linear algebra (linalg.c) ------------------------------------- */

/* X1 X2^T scaled by alpha into out (n1 x n2). When sym (X1 == X2) only the
 * upper triangle (j >= i) is written, by dsyrk. In blocks of rows, checking
 * o's cancel flag between them (PK_ECANCEL "what: interrupted"). */
pk_status pk_cross(const pk_matrix *X1, const pk_matrix *X2, double alpha, int sym, double *out,
                   const pk_call_opts *o, const char *what);
/* Copy the upper triangle of the n x n row-major a into its lower one. */
void pk_mirror_upper(double *a, size_t n);
/* Eigen-decompose the symmetric n x n a by dsyevd, reading the triangle
 * uplo names in LAPACK's column-major view ('U': the row-major lower
 * triangle); w gets the eigenvalues ascending and row i of a (row-major)
 * the eigenvector of w[i]. Workspace counts against the memory limit;
 * `what` names the caller in messages. */
pk_status pk_syev(double *a, size_t n, char uplo, double *w, const char *what);

#endif

/* Set the message of pk_last_error and return the status, so that a failure
 * reads `return pk_fail(PK_EINVAL, "...", ...)`. */
pk_status pk_fail(pk_status s, const char *fmt, ...) PK_PRINTF(2, 3);

/* Checked allocation: n * size bytes, refusing overflow and anything above
 * the memory limit with a message that says what was asked for. `what`
 * names the object in that message. */
pk_status pk_alloc(void **out, size_t n, size_t size, const char *what);
pk_status pk_calloc(void **out, size_t n, size_t size, const char *what);
/* Would n * size bytes be allowed? (checks only, allocates nothing) */
pk_status pk_check_bytes(size_t n, size_t size, const char *what);
/* The same with a hint that says how to ask for less ("record = { every =
 * k } keeps fewer checkpoints"); the refusal then reads "<what> needs N,
 * above the memory limit of M (pk.set_memory_limit raises it; or <hint>)". */
pk_status pk_check_bytes_hint(size_t n, size_t size, const char *what, const char *hint);
pk_status pk_alloc_hint(void **out, size_t n, size_t size, const char *what, const char *hint);
pk_status pk_calloc_hint(void **out, size_t n, size_t size, const char *what, const char *hint);
/* Prefix the last error's message with name (a file) unless it already
 * starts with "name:"; returns s. */
pk_status pk_fail_in(pk_status s, const char *name);
/* bytes in the unit that reads best: "812 bytes", "17.4 KiB", "191.3 MiB" */
void pk_format_bytes(char *buf, size_t len, double bytes);
/* a x b without overflow, else an error naming `what` */
pk_status pk_mul_size(size_t *out, size_t a, size_t b, const char *what);

/* A matrix of the given shape, allocated but not initialized, with `what`
 * used in the memory-limit message. */
pk_status pk_matrix_alloc(pk_matrix **out, size_t rows, size_t cols, const char *what);
pk_status pk_matrix_alloc_hint(pk_matrix **out, size_t rows, size_t cols, const char *what,
                               const char *hint);
pk_status pk_check_same_shape(const pk_matrix *a, const pk_matrix *b, const char *op);

/* ---- long calls (core.c) --------------------------------------------- */

/* Why long work stops: the progress callback asked (PK_STOP_CANCEL), or
 * the caller's cancel flag is set (PK_STOP_INTERRUPT, checked first). */
enum { PK_STOP_NONE = 0, PK_STOP_CANCEL = 1, PK_STOP_INTERRUPT = 2 };
/* Report progress and check for a stop: one of PK_STOP_*. */
int pk_progress(const pk_call_opts *o, double done, double total);
/* The cancel flag alone (no progress report), for checks inside a unit of
 * work: nonzero when set. */
int pk_cancelled(const pk_call_opts *o);
/* "cancelled" or "interrupted", for the message of a PK_STOP_* */
const char *pk_stop_word(int why);

/* ---- the PATHKRNL container ----------------------------------------- */

/* The newest format version this build reads; it reads every older one.
 * Version 2: a trajectory (alone or inside a kernel machine) that was
 * trained with per-example loss weights ends with them. A file is written
 * with the lowest version that holds its object, so objects without the
 * newer parts stay readable by older builds byte for byte. */
#define PK_FORMAT_VERSION 2u

uint32_t pk_crc32(uint32_t crc, const void *buf, size_t n);

/* A writer either counts bytes (f == NULL) or writes them to a file while
 * keeping the running CRC; serializers run once to count and once to
 * write, so the header can state the payload length up front. version:
 * the format version the payload needs (0 or 1: version 1); a serializer
 * raises it with pk_writer_need during the counting pass, and the header
 * states it. */
typedef struct pk_writer {
  FILE *f;
  uint64_t n;
  uint32_t crc;
  int err;
  uint32_t version;
} pk_writer;

void pk_writer_need(pk_writer *w, uint32_t version);

void pk_put_bytes(pk_writer *w, const void *p, size_t n);
void pk_put_u32(pk_writer *w, uint32_t v);
void pk_put_u64(pk_writer *w, uint64_t v);
void pk_put_f64(pk_writer *w, double v);
void pk_put_f64s(pk_writer *w, const double *v, size_t n);

typedef pk_status (*pk_serialize_fn)(pk_writer *w, const void *obj);

/* Write obj as one checksummed object to a temporary file beside path,
 * fsync it and rename it into place: the old file survives any failure.
 * Temporaries are "<path>.tmp<pid>"; a save removes those of dead processes. */
pk_status pk_save_object(const char *path, pk_tag tag, pk_serialize_fn fn,
                         const void *obj);
/* Any file written the same atomic way: emit writes the bytes to f and
 * leaves an I/O error in *err (an errno value); a status it returns
 * aborts the save. What write_csv and write_npy use. */
typedef pk_status (*pk_emit_fn)(FILE *f, const void *ctx, int *err);
pk_status pk_save_stream(const char *path, pk_emit_fn emit, const void *ctx);
/* The framed object (header, payload, CRC) written to any stream; an I/O
 * error is left in *err as an errno value. */
pk_status pk_write_object(FILE *f, pk_tag tag, pk_serialize_fn fn, const void *obj, int *err);

/* A bounds-checked reader over a payload held in memory. */
typedef struct pk_reader {
  const unsigned char *p;
  size_t n, pos;
  int err;
  uint32_t version;        /* the file's format version (set by the loaders) */
} pk_reader;

uint32_t pk_get_u32(pk_reader *r);
uint64_t pk_get_u64(pk_reader *r);
double pk_get_f64(pk_reader *r);
void pk_get_f64s(pk_reader *r, double *out, size_t n);
/* a count that must fit both size_t and the bytes left (each item >= unit
 * bytes), so corrupt sizes cannot ask for absurd allocations */
pk_status pk_get_count(pk_reader *r, size_t unit, size_t *out, const char *what);

/* Read a whole file, check magic, version, length and CRC; on success
 * *buf holds the file (free it) and *r reads its payload. */
pk_status pk_load_object(const char *path, pk_tag want, unsigned char **buf,
                         pk_reader *r);
/* The same checks on a file image in memory (name is used in messages):
 * what every loader runs, and what the fuzz harnesses call. */
pk_status pk_load_object_mem(const char *name, const unsigned char *buf, size_t len,
                             pk_tag want, pk_reader *r);
pk_status pk_file_tag_mem(const char *name, const unsigned char *buf, size_t len, pk_tag *tag);
/* After a payload is read: PK_OK only if it was read exactly to its end. */
pk_status pk_reader_end(const pk_reader *r, const char *name);
/* A whole regular file into *buf (NUL-terminated, *len bytes; free it).
 * Folders, devices and FIFOs are refused with PK_EIO. */
pk_status pk_read_file(const char *path, unsigned char **buf, size_t *len);
pk_status pk_matrix_load_mem(pk_matrix **out, const char *name, const unsigned char *buf,
                             size_t len);
/* CSV from text in memory (as pk_matrix_read_csv reads a file, gzip
 * included), and to a stream (as pk_matrix_write_csv writes one). */
pk_status pk_matrix_parse_csv(pk_matrix **out, const char *name, const char *text, size_t len,
                              const pk_csv_opts *opts, char **header);
pk_status pk_matrix_emit_csv(FILE *f, const pk_matrix *a, const char *header, int *err);
/* .npy from a file image in memory (what pk_matrix_read_npy runs after
 * pk_read_file, and what the fuzz harness calls), and to a stream. */
pk_status pk_matrix_read_npy_mem(pk_matrix **out, const char *name, const unsigned char *buf,
                                 size_t len);
pk_status pk_matrix_emit_npy(FILE *f, const pk_matrix *a, int *err);
pk_status pk_matrix_read_payload(pk_reader *r, pk_matrix **out);
pk_status pk_matrix_write_payload(pk_writer *w, const void *a);

/* ---- kernels ----------------------------------------------------------- */

typedef struct pk_kernel_vt {
  const char *name;
  /* out is allocated by the caller's wrapper: (n1*r) x (n2*c) as
   * pk_kernel_gram computes from outputs(); X1, X2 have been checked
   * against input_dim. */
  pk_status (*gram)(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                    const pk_call_opts *o, pk_matrix *out);
  pk_status (*diag)(const pk_kernel *k, const pk_matrix *X, const pk_call_opts *o,
                    pk_matrix *out);
  void (*destroy)(pk_kernel *k);
} pk_kernel_vt;

struct pk_kernel {
  const pk_kernel_vt *vt;
  size_t input_dim;     /* 0: any */
  size_t nout;          /* K: outputs of the model (1 for classical kernels) */
  pk_outputs mode;      /* how K > 1 outputs are laid out */
  size_t memory;        /* working-set budget in bytes for tiled Grams */
  int nan_rows;         /* a kernel of the inputs alone (classical, infinite
                         * width): every entry of a row with a NaN or an
                         * infinity is NaN, whatever its formula gives */
  void *state;          /* the kernel's own data, freed by destroy */
};

/* A kernel shell with vt and state; input_dim 0, nout 1, block mode. */
pk_status pk_kernel_new(pk_kernel **out, const pk_kernel_vt *vt, void *state);

/* ---- networks ------------------------------------------------------------ */

struct pk_network {
  size_t L;              /* dense layers */
  size_t *d;             /* L + 1 sizes */
  pk_activation *act;    /* act[l]: after layer l (0-based); act[L-1] = identity */
  pk_parameterization param;
  double sigma_w, sigma_b;
  uint64_t seed;
  double *sw, *sb;       /* per-layer scales of W and b in the forward pass */
  size_t P;
  double *theta;
  size_t *woff, *boff;   /* where W_l and b_l start in theta */
  uint64_t version;
};

/* A batch through the network, kept for backward passes and kernels. For
 * layer l (0-based): A[l] is its input (n x d[l]; A[0] is the caller's X),
 * Z[l] its pre-activation (n x d[l+1]; Z[L-1] is the output), G[l] the loss
 * gradient with respect to Z[l]. */
typedef struct pk_acts {
  size_t cap;
  double **A, **Z, **G;
  double *buf;
} pk_acts;

pk_status pk_acts_init(pk_acts *w, const pk_network *net, size_t cap, int with_grad);
void pk_acts_free(pk_acts *w);
/* Forward n rows of X (row-major, d[0] columns) at weights theta. */
void pk_net_forward_ws(const pk_network *net, const double *theta, const double *X, size_t n,
                       pk_acts *w);
/* Backward from dF (n x K) already in w->G[L-1]: fills every G[l] and, if
 * grad is not NULL, the parameter gradient sum_i J_i^T dF_i (scaled by
 * `scale`). */
void pk_net_backward(const pk_network *net, const double *theta, pk_acts *w, size_t n,
                     double scale, double *grad);

/* Sensitivities of every output: D[l] is (n*K) x d[l+1], row i*K + k holding
 * d f_k(x_i) / d z_l. D[L-1] rows are unit vectors. */
typedef struct pk_deltas {
  size_t cap, K;
  double **D;
  double *dphi;          /* scratch: phi' of one layer, cap x max d */
  double *buf;
} pk_deltas;

pk_status pk_deltas_init(pk_deltas *dl, const pk_network *net, size_t cap);
void pk_deltas_free(pk_deltas *dl);
void pk_net_deltas(const pk_network *net, const double *theta, const pk_acts *w, size_t n,
                   pk_deltas *dl);
/* bytes of pk_acts / pk_deltas for cap rows */
size_t pk_acts_bytes(const pk_network *net, size_t cap, int with_grad);
size_t pk_deltas_bytes(const pk_network *net, size_t cap);

/* g[i] *= phi'(z[i]), with a = phi(z) available for the cheap forms */
void pk_act_mul_deriv(pk_activation act, const double *z, const double *a, double *g, size_t n);
void pk_act_apply(pk_activation act, const double *z, double *a, size_t n);

/* ---- optimizers ------------------------------------------------------------- */

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

/* A hook of the training loop (train.c), for recorders and online
 * decompositions: called for each step after the update is computed and
 * before it is applied, with
 * theta = w_s, next = w_{s+1}, and w holding the batch (A[0] its inputs) and
 * the per-example loss gradients G (not divided by nb; G[L-1] = dl/df). */
typedef struct pk_train_hooks {
  void *ud;
  pk_status (*step)(void *ud, size_t s, double lr, const size_t *rows, size_t nb,
                    const pk_acts *w, const double *theta, const double *next, double loss,
                    const pk_optstate *state);
  /* set by the training loop: 1 when on_step stopped the run after a
   * complete step (the recorded objects are whole), 0 for any other end */
  int stopped;
} pk_train_hooks;

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
/* The first bad entry of m loss weights (not finite or negative) as a
 * failure naming who, or PK_OK. */
pk_status pk_check_loss_weights(const double *wts, size_t m, const char *who);

pk_status pk_train_check(const pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                         const pk_train_opts *o);

/* ---- trajectories -------------------------------------------------------- */

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
  const pk_network *source;  /* the trained network, borrowed; may be NULL */
  uint64_t source_version;
  size_t refs;             /* holders: its owner plus machines and path kernels */
};

/* Another holder of t (a kernel machine, a path kernel): pk_trajectory_free
 * frees t when the last holder lets go, so freeing the trajectory first
 * (a Lua __gc called by hand) leaves its borrowers working. */
void pk_trajectory_retain(const pk_trajectory *t);

uint64_t pk_data_hash(const pk_matrix *X, const pk_matrix *Y);
pk_status pk_trajectory_check_data(const pk_trajectory *t);

/* Walks a trajectory step by step, replaying between checkpoints: after
 * pk_cursor_next, theta = w_s, next = w_{s+1}, w holds the batch of step s
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

pk_status pk_trajectory_write_payload(pk_writer *w, const pk_trajectory *t, int with_data);
pk_status pk_trajectory_read_payload(pk_reader *r, const char *path, pk_trajectory **out,
                                     const pk_matrix *X, const pk_matrix *Y);

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

/* ---- tangent and path kernels ---------------------------------------------- */
typedef struct pk_tangent_ws pk_tangent_ws;
pk_tangent_ws *pk_tangent_ws_new(void);
void pk_tangent_ws_free(pk_tangent_ws *ws);
/* ws (may be NULL) is reused between calls with the same network shape */
pk_status pk_tangent_accumulate(const pk_network *net, const double *theta, const pk_matrix *X1,
                                const pk_matrix *X2, pk_outputs mode, size_t memory, double alpha,
                                const pk_call_opts *o, pk_tangent_ws *ws, pk_matrix *out);
pk_status pk_tangent_diag_accumulate(const pk_network *net, const double *theta,
                                     const pk_matrix *X, pk_outputs mode, size_t memory,
                                     double alpha, const pk_call_opts *o, pk_matrix *out);
void pk_tangent_mirror(pk_matrix *out);
int pk_tangent_symmetric(const pk_matrix *X1, const pk_matrix *X2, pk_outputs mode);

/* ---- the decomposition ---------------------------------------------------- */

#define PK_MAX_NODES 16
#define PK_MAX_LAYERS 256

/* Gauss-Legendre (or left-point) nodes and weights on [0, 1] */
pk_status pk_quadrature(pk_rule rule, int nodes, double *t, double *w);

typedef struct pk_decomp {
  const pk_network *net;
  const pk_matrix *Xq;
  size_t nq, K, m, qt, bc;  /* queries per tile, training rows per chunk */
  int nodes, want_kp;
  pk_optimizer opt;
  pk_hyper hyper;
  /* optimizers with state or weight decay: explicit gradients */
  int explicit_traces, need_gbar;
  double *gbar;            /* (qt K) x P: a tile's node-averaged query gradients */
  double *tr;              /* m x P: per-example traces (momentum or first moment) */
  double *rtr;             /* P: the weight-decay part of the trace */
  double *pc;              /* P: Adam's preconditioner */
  double *reg;             /* nq x K: the weight-decay terms */
  double *c0;              /* nq x m: Xq X^T, the first layer's input products */
  int c0_ready;
  size_t *idx;             /* 0..m-1 */
  double t[PK_MAX_NODES], wt[PK_MAX_NODES];
  double *contrib;         /* (nq K) x m: row x*K + k, column i */
  double *kp;              /* (nq K) x m: Kp_kk(x, x_i), when wanted */
  double *theta_node, *M, *C, *acc, *xa;
  pk_acts wq[PK_MAX_NODES], wa;      /* the queries at each node; training rows */
  pk_deltas dq[PK_MAX_NODES], da;
  /* the caller's cancel flag (set after pk_decomp_init), checked between
   * tiles of a step: a step over many queries can take long */
  const volatile sig_atomic_t *cancel;
} pk_decomp;

/* 1 + the index of the first row of Xq with a NaN or infinite value, or 0 */
size_t pk_nonfinite_row(const pk_matrix *Xq);
/* who names the caller in a refusal; extra is what the caller holds beside
 * the decomposition meanwhile (a replay, the machine's own arrays), in
 * bytes, counted against the memory limit with it, and extra_what says
 * what that is */
pk_status pk_decomp_init(pk_decomp *dc, const pk_network *net, const pk_matrix *Xq, size_t m,
                         pk_rule rule, int nodes, int want_kp, pk_optimizer opt,
                         const pk_hyper *hyper, const char *who, double extra,
                         const char *extra_what);
void pk_decomp_free(pk_decomp *dc);
/* Add step s: theta = w_s, next = w_{s+1}; w holds the batch's activations
 * and per-example loss gradients at w_s; X is the whole training set (for
 * the path kernel values). PK_ECANCEL ("decomposition: interrupted") when
 * dc->cancel is seen: the step is then half added. */
pk_status pk_decomp_step(pk_decomp *dc, double lr, const double *theta, const double *next,
                         const size_t *rows, size_t nb, const pk_acts *w, const pk_matrix *X,
                         const pk_optstate *os);

/* ---- kernel machines -------------------------------------------------------- */

struct pk_machine {
  const pk_trajectory *traj;   /* offline: a reference held; NULL for an online machine */
  pk_rule rule;
  int nodes;
  size_t m, K;
  pk_network *net0, *netT;     /* w_0 and w_T */
  /* results for the queries Xq (cached for offline machines) */
  pk_matrix *Xq;
  uint64_t xq_hash;
  size_t nq;
  double *contrib, *kp;        /* (nq K) x m */
  double *bias, *final, *reg;  /* nq x K */
  size_t *map, nreq;           /* the last requested queries: their rows here */
};

double pk_machine_final(const pk_machine *km, size_t i);

/* The hooks of a training run (train.c runs them; pk_train_check has
 * passed). The recorder (trajectory.c): begin makes the trajectory and
 * sets hk to record each step (every >= 1: checkpoint spacing); end adds
 * the final weights and ties the trajectory to net. */
pk_status pk_recorder_begin(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                            const pk_train_opts *o, size_t every, pk_trajectory **out,
                            pk_train_hooks *hk);
void pk_recorder_end(pk_trajectory *t, const pk_network *net);
/* The online decomposition for the queries Xq (machine.c): begin sets hk
 * to add each step; end makes the machine of the run so far (net at its
 * final weights); free at any time. */
typedef struct pk_explainer pk_explainer;
pk_status pk_explainer_begin(const pk_network *net, const pk_matrix *X, const pk_train_opts *o,
                             const pk_matrix *Xq, pk_rule rule, int nodes, int want_kp,
                             pk_explainer **out, pk_train_hooks *hk);
pk_status pk_explainer_end(pk_explainer *e, const pk_network *net, pk_machine **out);
void pk_explainer_free(pk_explainer *e);
/* train with any of: recording (every > 0), online decomposition (Xq) */
pk_status pk_train_full(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                        const pk_train_opts *o, size_t every, pk_trajectory **traj,
                        const pk_matrix *Xq, pk_rule rule, int nodes, int want_kp,
                        pk_machine **out, double *losses, size_t *done);
pk_status pk_machine_compute(pk_machine *km, const pk_matrix *Xq, int want_kp,
                             const pk_call_opts *o);

pk_status pk_network_write_payload(pk_writer *w, const void *net);
pk_status pk_network_read_payload(pk_reader *r, pk_network **out);
/* The loaders on a file image in memory (name is used in messages): what
 * pk_network_load, pk_trajectory_load and pk_machine_load run after
 * pk_read_file, and what the fuzz harnesses call. */
pk_status pk_network_load_mem(pk_network **out, const char *name, const unsigned char *buf,
                              size_t len);
pk_status pk_trajectory_load_mem(pk_trajectory **out, const char *name, const unsigned char *buf,
                                 size_t len, const pk_matrix *X, const pk_matrix *Y);
pk_status pk_machine_load_mem(pk_machine **out, const char *name, const unsigned char *buf,
                              size_t len);
/* what a machine file holds, for writing one to any stream */
pk_status pk_machine_write_payload(pk_writer *w, const void *km);
pk_status pk_regressor_load_mem(pk_regressor **out, const char *name, const unsigned char *buf,
                                size_t len);
pk_status pk_regressor_write_payload(pk_writer *w, const void *r);
const pk_matrix *pk_regressor_X(const pk_regressor *r);   /* its training inputs */
pk_status pk_check_input(const pk_network *net, const pk_matrix *X, const char *what);

/* ---- small numeric helpers ------------------------------------------- */
/* vectorized tanh and logistic sigmoid, within a few ulps (fastmath.c);
 * x and y must not overlap */
void pk_vtanh(const double *x, double *y, size_t n);
void pk_vsigmoid(const double *x, double *y, size_t n);
int pk_all_finite(const double *x, size_t n);
/* "38.3 KiB": a size for a message */
void pk_fmt_bytes(char *buf, size_t len, double bytes);
/* out = a / s elementwise (not a * (1/s)) */
pk_status pk_matrix_div_scalar(pk_matrix **out, const pk_matrix *a, double s);

/* ---- kernels defined by parameters (classic.c, analytic.c) ----------- */

/* What a saved model records of its kernel: a type and its parameters. */
enum {
  PK_KSPEC_LINEAR = 1, PK_KSPEC_RBF, PK_KSPEC_LAPLACIAN, PK_KSPEC_POLY,
  PK_KSPEC_NTK, PK_KSPEC_NNGP
};
typedef struct pk_kernel_spec {
  uint32_t type;
  double p[4];    /* rbf/laplacian: gamma; poly: degree, c;
                   * ntk/nngp: depth, activation (1 relu, 2 erf, 3 identity),
                   * sigma_w, sigma_b */
} pk_kernel_spec;

/* Fill s and return 1 if k is a kernel defined by parameters, else 0
 * (kspec.c; each family answers for its own kernels). */
int pk_kernel_get_spec(const pk_kernel *k, pk_kernel_spec *s);
int pk_classic_kernel_spec(const pk_kernel *k, pk_kernel_spec *s);
int pk_analytic_kernel_spec(const pk_kernel *k, pk_kernel_spec *s);
/* Rebuild a kernel from a spec read from a file, checking its values
 * (kspec.c). A family's own reader returns 0 for a type not its own, else
 * 1 with the status in *st. */
pk_status pk_kernel_from_spec(const pk_kernel_spec *s, pk_kernel **out);
int pk_classic_kernel_from_spec(const pk_kernel_spec *s, pk_kernel **out, pk_status *st);
int pk_analytic_kernel_from_spec(const pk_kernel_spec *s, pk_kernel **out, pk_status *st);

/* Run fn over [0, n) in chunks of `chunk` on up to pk_threads() threads,
 * the caller's among them. fn returns the units of work its chunk did;
 * progress (out of `total` units) and cancellation go through the calling
 * thread only, so a Lua callback never runs on another thread. */
typedef double (*pk_chunk_fn)(void *ctx, size_t i0, size_t i1);
pk_status pk_parallel_for(size_t n, size_t chunk, pk_chunk_fn fn, void *ctx,
                          const pk_call_opts *o, double total, const char *what);
/* PK_NUM_THREADS, else OPENBLAS_NUM_THREADS, else OMP_NUM_THREADS, else the
 * online CPUs; 1..64 */
int pk_threads(void);

/* ---- linear algebra (linalg.c) ------------------------------------- */

/* X1 X2^T scaled by alpha into out (n1 x n2). When sym (X1 == X2) only the
 * upper triangle (j >= i) is written, by dsyrk. In blocks of rows, checking
 * o's cancel flag between them (PK_ECANCEL "what: interrupted"). */
pk_status pk_cross(const pk_matrix *X1, const pk_matrix *X2, double alpha, int sym, double *out,
                   const pk_call_opts *o, const char *what);
/* Copy the upper triangle of the n x n row-major a into its lower one. */
void pk_mirror_upper(double *a, size_t n);
/* Eigen-decompose the symmetric n x n a by dsyevd, reading the triangle
 * uplo names in LAPACK's column-major view ('U': the row-major lower
 * triangle); w gets the eigenvalues ascending and row i of a (row-major)
 * the eigenvector of w[i]. Workspace counts against the memory limit;
 * `what` names the caller in messages. */
pk_status pk_syev(double *a, size_t n, char uplo, double *w, const char *what);

#endif
