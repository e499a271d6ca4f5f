/* pk.h - the public C API of pathkernel: opaque types, status codes, and
 * every function a host program may call. No Lua in here. */
#ifndef PK_H
#define PK_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define PK_API __attribute__((visibility("default")))
#else
#define PK_API
#endif

/* ---- status codes and errors ---------------------------------------- */

typedef enum {
  PK_OK = 0,
  PK_EINVAL,    /* bad argument: shape, range, name */
  PK_ENOMEM,    /* allocation failed or above the memory limit */
  PK_EIO,       /* the operating system refused a read or write */
  PK_EFORMAT,   /* a file is truncated, corrupt or not ours */
  PK_ENUMERIC,  /* a numerical failure: divergence, singular matrix */
  PK_ECANCEL    /* a callback asked to stop */
} pk_status;

/* Threads: a host may call the library from several threads at once (two
 * Lua states on two threads, say). Each thread has its own last error; the
 * memory limit is the one state all threads share. Separate objects may be
 * used on separate threads at once; one object used by two threads at once
 * needs the host's lock (machines and kernels keep caches inside). */

/* The message of the last failure in the calling thread: a failure in
 * another thread never changes it. */
PK_API const char *pk_last_error(void);
PK_API const char *pk_status_name(pk_status s);

/* Memory accounting: every large allocation is checked against a limit
 * (default: 3/4 of physical memory). 0 restores the default. One limit for
 * the whole process, set and read atomically from any thread. */
PK_API void pk_set_memory_limit(size_t bytes);
PK_API size_t pk_memory_limit(void);
/* Would n * size bytes be allowed? Checks only (allocates nothing); the
 * refusal's message names `what`. For a host that allocates by data size
 * itself (a scripting binding building tables of a matrix's entries). */
PK_API pk_status pk_check_bytes(size_t n, size_t size, const char *what);
/* The same with a hint of how to ask for less: the refusal then reads
 * "<what> needs N, above the memory limit of M (pk.set_memory_limit raises
 * it; or <hint>)". */
PK_API pk_status pk_check_bytes_hint(size_t n, size_t size, const char *what, const char *hint);
/* bytes in the unit that reads best: "812 bytes", "17.4 KiB", "191.3 MiB" */
PK_API void pk_format_bytes(char *buf, size_t len, double bytes);
/* Bytes the library allocated in the calling thread since the last call
 * (and resets the count): lets a host with a garbage collector tell it how
 * much memory its objects hold beyond what the collector sees. */
PK_API size_t pk_memory_take_allocated(void);

/* Progress callback for long work: done of total units; return nonzero to
 * cancel (the call then fails with PK_ECANCEL, "... cancelled"). */
typedef int (*pk_progress_fn)(void *ud, double done, double total);

/* Options of a call that does long work (training, Grams, path kernels,
 * decompositions, regressor fits and predictions). Zero-initialize it.
 *
 * cancel: a flag the host owns, e.g. set by its SIGINT handler or by
 * another thread. When it is non-NULL and *cancel is nonzero, the work
 * stops at its next check (every training step, every tile or chunk of a
 * Gram, every step of a path kernel or decomposition: a fraction of a
 * second apart) and the call fails with PK_ECANCEL and a message that
 * contains "interrupted" and names what stopped. The library only reads
 * the flag; the host clears it before the next call. Nothing is half
 * written: the call returns no object, and a network being trained keeps
 * the weights of its last complete step (the message says which).
 * A LAPACK factorization (a fit's solve, pk_eigh) is not interruptible
 * inside; the check comes after it. */
typedef struct pk_call_opts {
  pk_progress_fn progress;  /* may be NULL */
  void *progress_ud;
  const volatile sig_atomic_t *cancel;   /* may be NULL */
} pk_call_opts;

/* No progress, no cancellation. */
PK_API void pk_call_opts_init(pk_call_opts *o);

/* ---- communication between processes (data-parallel runs) ------------- */

/* A run spread over several processes (ranks) reaches the others only
 * through this hook, so the library itself never links a message-passing
 * library: the pathkernel.mpi module fills one over MPI, a host may fill
 * one over anything else. A NULL hook means one process.
 *
 * allreduce combines buf[0..n) elementwise over all ranks, in place: the
 * sum or the maximum. It is collective (every rank calls it, in the same
 * order, with the same n and op) and every rank must receive the same
 * bits, so that ranks taking the same step keep identical weights. It
 * returns 0, or nonzero when communication failed; then error(ctx) (may
 * be NULL) says why. */
typedef enum { PK_COMM_SUM = 0, PK_COMM_MAX } pk_comm_op;
typedef struct pk_comm {
  int rank, size;          /* this process, 0..size-1, and how many there are */
  int (*allreduce)(void *ctx, double *buf, size_t n, pk_comm_op op);
  const char *(*error)(void *ctx);
  void *ctx;
} pk_comm;

/* ---- random numbers -------------------------------------------------- */

/* xoshiro256** seeded through splitmix64; normals by Marsaglia's polar
 * method. The same seed gives the same stream on every machine. */
typedef struct pk_rng {
  uint64_t s[4];
  double spare;
  int has_spare;
} pk_rng;

PK_API void pk_rng_seed(pk_rng *r, uint64_t seed);
PK_API uint64_t pk_rng_next(pk_rng *r);
PK_API double pk_rng_uniform(pk_rng *r);          /* [0, 1) */
PK_API double pk_rng_normal(pk_rng *r);           /* N(0, 1) */
PK_API uint64_t pk_rng_below(pk_rng *r, uint64_t n); /* [0, n), unbiased */

/* ---- matrices -------------------------------------------------------- */

/* Dense, row-major, double precision. A view shares its parent's storage,
 * which is reference counted: freeing the parent first leaves the view
 * working. Dimensions are at most PK_MAX_DIM (BLAS takes int). */
typedef struct pk_matrix pk_matrix;

#define PK_MAX_DIM 2147483647

PK_API pk_status pk_matrix_new(pk_matrix **out, size_t rows, size_t cols);
PK_API pk_status pk_matrix_zeros(pk_matrix **out, size_t rows, size_t cols);
PK_API pk_status pk_matrix_fill(pk_matrix **out, size_t rows, size_t cols, double v);
PK_API pk_status pk_matrix_eye(pk_matrix **out, size_t n);
PK_API pk_status pk_matrix_randn(pk_matrix **out, size_t rows, size_t cols, uint64_t seed);
PK_API pk_status pk_matrix_rand(pk_matrix **out, size_t rows, size_t cols, uint64_t seed);
PK_API pk_status pk_matrix_from_array(pk_matrix **out, size_t rows, size_t cols,
                                      const double *rowmajor);
PK_API pk_status pk_matrix_copy(pk_matrix **out, const pk_matrix *a);
/* rows [r0, r1) as a view */
PK_API pk_status pk_matrix_view_rows(pk_matrix **out, pk_matrix *a, size_t r0, size_t r1);
PK_API void pk_matrix_free(pk_matrix *a);

PK_API size_t pk_matrix_rows(const pk_matrix *a);
PK_API size_t pk_matrix_cols(const pk_matrix *a);
PK_API double *pk_matrix_data(pk_matrix *a);
PK_API const double *pk_matrix_cdata(const pk_matrix *a);
PK_API double pk_matrix_get(const pk_matrix *a, size_t i, size_t j);  /* 0-based */
PK_API void pk_matrix_set(pk_matrix *a, size_t i, size_t j, double v);

PK_API pk_status pk_matrix_add(pk_matrix **out, const pk_matrix *a, const pk_matrix *b);
PK_API pk_status pk_matrix_sub(pk_matrix **out, const pk_matrix *a, const pk_matrix *b);
PK_API pk_status pk_matrix_scale(pk_matrix **out, double s, const pk_matrix *a);
PK_API pk_status pk_matrix_hadamard(pk_matrix **out, const pk_matrix *a, const pk_matrix *b);
PK_API pk_status pk_matrix_mul(pk_matrix **out, const pk_matrix *a, const pk_matrix *b);
PK_API pk_status pk_matrix_transpose(pk_matrix **out, const pk_matrix *a);
/* out = a / s elementwise (not a * (1/s): the same rounding as a division) */
PK_API pk_status pk_matrix_div_scalar(pk_matrix **out, const pk_matrix *a, double s);
/* a copy of columns [j0, j1) (0-based) */
PK_API pk_status pk_matrix_columns(pk_matrix **out, const pk_matrix *a, size_t j0, size_t j1);
/* a copy of the n rows rows[0..n) (0-based, any order, repeats allowed) */
PK_API pk_status pk_matrix_gather(pk_matrix **out, const pk_matrix *a, const size_t *rows,
                                  size_t n);
/* 1 when no entry is NaN or infinite */
PK_API int pk_matrix_all_finite(const pk_matrix *a);
PK_API double pk_matrix_sum(const pk_matrix *a);
PK_API double pk_matrix_norm(const pk_matrix *a);      /* Frobenius */
PK_API double pk_matrix_max_abs(const pk_matrix *a);

/* ---- matrix helpers (matrix_ops.c) ----------------------------------- */

/* a + s, and s - a (a - s is a + (-s), the same IEEE result) */
PK_API pk_status pk_matrix_add_scalar(pk_matrix **out, const pk_matrix *a, double s);
PK_API pk_status pk_matrix_scalar_sub(pk_matrix **out, double s, const pk_matrix *a);
/* Elementwise functions by libm. Outside their domain they answer what
 * IEEE 754 says, not an error: log(x < 0) and sqrt(x < 0) are NaN, log(0)
 * is -inf; pow(x < 0, non-integer p) is NaN. */
typedef enum { PK_MAP_EXP = 0, PK_MAP_LOG, PK_MAP_SQRT, PK_MAP_ABS, PK_MAP_TANH } pk_map;
PK_API pk_status pk_matrix_map(pk_matrix **out, const pk_matrix *a, pk_map f);
PK_API pk_status pk_matrix_pow(pk_matrix **out, const pk_matrix *a, double p);
/* Reductions along dim: 1 gives one value per column (1 x c), 2 one per
 * row (r x 1). A sum over nothing is 0; a mean over nothing is an error.
 * std divides by n - ddof (ddof 0: population, NumPy's default; 1: the
 * sample std, torch's default) and needs n > ddof. */
PK_API pk_status pk_matrix_sum_dim(pk_matrix **out, const pk_matrix *a, int dim);
PK_API pk_status pk_matrix_mean_dim(pk_matrix **out, const pk_matrix *a, int dim);
PK_API pk_status pk_matrix_std_dim(pk_matrix **out, const pk_matrix *a, int dim, size_t ddof);
PK_API pk_status pk_matrix_std(const pk_matrix *a, size_t ddof, double *out);
/* 0-based indices of the maximum along dim into idx (c entries for dim 1,
 * r for dim 2), or of the whole matrix into *i, *j (row-major order). A
 * NaN counts as the maximum (the first NaN wins, as in NumPy); among equal
 * values the first wins. Empty ranges are an error. */
PK_API pk_status pk_matrix_argmax_dim(const pk_matrix *a, int dim, size_t *idx);
PK_API pk_status pk_matrix_argmax(const pk_matrix *a, size_t *i, size_t *j);
/* n >= 1 matrices side by side (same rows) or on top of each other (same
 * columns); a mismatch names the entry (1-based). */
PK_API pk_status pk_matrix_hstack(pk_matrix **out, const pk_matrix *const *parts, size_t n);
PK_API pk_status pk_matrix_vstack(pk_matrix **out, const pk_matrix *const *parts, size_t n);
/* Rows of X (and of Y, if not NULL: the same rows) into a training and a
 * test part of ntest rows, both non-empty. shuffle: the test rows are the
 * first ntest of a Fisher-Yates permutation drawn from seed; otherwise the
 * last ntest rows in order. order (may be NULL; n entries) receives the
 * 0-based source rows: the training rows, then the test rows. */
PK_API pk_status pk_split(const pk_matrix *X, const pk_matrix *Y, size_t ntest, int shuffle,
                          uint64_t seed, pk_matrix **Xtrain, pk_matrix **Ytrain,
                          pk_matrix **Xtest, pk_matrix **Ytest, size_t *order);
/* The rows of logits F (n x K) whose prediction matches labels: for K >= 2
 * the argmax of the row against classes 1..K (labels n x 1) or against the
 * argmax of one-hot or probability rows (labels n x K); for K = 1 the
 * logit > 0 against 0/1 labels. A row with a NaN logit counts as wrong. */
PK_API pk_status pk_accuracy(const pk_matrix *F, const pk_matrix *labels, size_t *correct);

/* ---- files ----------------------------------------------------------- */

/* Object tags of the PATHKRNL file format. */
typedef enum {
  PK_TAG_MATRIX = 1,
  PK_TAG_NETWORK = 2,
  PK_TAG_TRAJECTORY = 3,
  PK_TAG_MACHINE = 4,
  PK_TAG_REGRESSOR = 5   /* a kernel regressor: ridge, GP, gradient flow */
} pk_tag;

PK_API pk_status pk_matrix_save(const pk_matrix *a, const char *path);
PK_API pk_status pk_matrix_load(pk_matrix **out, const char *path);
/* The tag of a saved object, after checking its header and checksum. */
PK_API pk_status pk_file_tag(const char *path, pk_tag *tag);

typedef struct pk_csv_opts {
  int header;       /* skip (and return) the first line */
  char sep;         /* field separator, ',' by default */
} pk_csv_opts;

/* no header, ',' */
PK_API void pk_csv_opts_init(pk_csv_opts *o);

/* On success *header (if requested and present) is a malloc'd copy of the
 * first line; release it with free(). A gzip-compressed file (known by its
 * content, 1f 8b, not its name) is inflated first, all its members, within
 * the memory limit; a truncated or corrupt one is PK_EFORMAT. */
PK_API pk_status pk_matrix_read_csv(pk_matrix **out, const char *path,
                                    const pk_csv_opts *opts, char **header);
PK_API pk_status pk_matrix_write_csv(const pk_matrix *a, const char *path,
                                     const char *header);

/* NumPy .npy files. Reading: format versions 1.0, 2.0 and 3.0; dtypes
 * float64, float32, int8..int64, uint8..uint64 and bool in either byte
 * order, C or Fortran order; a 0-d array gives a 1 x 1 matrix, a 1-d array
 * of n values an n x 1 column, a 2-d array the same shape (64-bit
 * integers above 2^53 round to the nearest double). A malformed header or
 * a data size that disagrees with it is PK_EFORMAT saying what was wrong.
 * Writing: float64, little-endian, C order, a version 1.0 header padded to
 * 64 bytes, byte for byte what numpy.save writes for the same 2-d array;
 * atomic like every save. */
PK_API pk_status pk_matrix_read_npy(pk_matrix **out, const char *path);
PK_API pk_status pk_matrix_write_npy(const pk_matrix *a, const char *path);

/* ---- networks --------------------------------------------------------- */

typedef enum {
  PK_ACT_IDENTITY = 0, PK_ACT_RELU, PK_ACT_TANH, PK_ACT_SIGMOID, PK_ACT_SOFTPLUS,
  PK_ACT_GELU, PK_ACT_ERF, PK_ACT_SIN, PK_ACT_LEAKY_RELU, PK_ACT_COUNT
} pk_activation;

/* leaky_relu(z) = z for z > 0, slope z otherwise; its derivative at 0 is
 * slope (relu's is 0): the subgradients training uses */
#define PK_LEAKY_SLOPE 0.01

typedef enum { PK_PARAM_NTK = 0, PK_PARAM_STANDARD } pk_parameterization;

/* Kinds of layers (their codes in files) */
typedef enum { PK_LAYER_DENSE = 1, PK_LAYER_CONV, PK_LAYER_AVGPOOL } pk_layer_type;

/* Names <-> values; -1 for an unknown name. pk_activation_names() lists the
 * valid names, comma separated. */
PK_API int pk_activation_from_name(const char *name);
PK_API const char *pk_activation_name(pk_activation a);
PK_API const char *pk_activation_names(void);

/* One layer of a network given as a list (pk_network_spec.layers). */
typedef struct pk_layer_spec {
  pk_layer_type type;
  size_t units;                /* dense: outputs; conv: output channels */
  size_t kh, kw;               /* conv: kernel; avgpool: window, and its stride */
  size_t sy, sx;               /* conv: strides (>= 1) */
  size_t py, px;               /* conv: zero padding on each side */
} pk_layer_spec;

/* A network by its sizes (fully connected) or by a list of layers. The
 * activations go to the "activated" layers: every hidden layer of the
 * sizes form; every conv and dense layer but the network's last layer of
 * the list form (pooling has none). */
typedef struct pk_network_spec {
  size_t nsizes;               /* number of sizes: layers + 1 (>= 2) */
  const size_t *sizes;         /* d_0 (inputs) ... d_L (outputs) */
  /* the list form, used when nlayers > 0 (then sizes is not read): the
   * input's channels, height and width (X rows hold C H W values,
   * channel-major) and the layers in order */
  size_t nlayers;
  const pk_layer_spec *layers;
  size_t input[3];
  const pk_activation *acts;   /* one per activated layer, or NULL */
  pk_activation act;           /* used for every activated layer when acts is NULL */
  /* leaky_relu's negative slope per activated layer (read for leaky_relu
   * layers only), or NULL for `slope` everywhere; a zeroed spec has slope
   * 0, the Lua binding's default is PK_LEAKY_SLOPE */
  const double *slopes;
  double slope;
  pk_parameterization param;
  double sigma_w, sigma_b;
  uint64_t seed;
} pk_network_spec;

/* No sizes or layers yet; tanh (leaky_relu's slope PK_LEAKY_SLOPE), ntk,
 * sigma_w = 1, sigma_b = 0.1, seed 0: the Lua module's defaults. */
PK_API void pk_network_spec_init(pk_network_spec *s);

/* z_l = s_w W_l (*) a_{l-1} + s_b b_l, a_l = phi(z_l) for activated
 * layers, f = z_L; (*) is a matrix product (dense) or a convolution
 * (conv, torch.nn.Conv2d's cross-correlation). ntk: W, b ~ N(0, 1), s_w =
 * sigma_w/sqrt(fan_in), s_b = sigma_b; standard: W ~ N(0, sigma_w^2/fan_in),
 * b ~ N(0, sigma_b^2), s_w = s_b = 1; fan_in = d_{l-1} (dense), C_in kh kw
 * (conv). Parameters: layer by layer, W_l row-major (dense: d_l x d_{l-1},
 * torch.nn.Linear.weight; conv: C_out x C_in x kh x kw, Conv2d.weight),
 * then b_l. Average pooling has none; a dense layer after an image sees
 * its channel-major flatten. */
typedef struct pk_network pk_network;

PK_API pk_status pk_network_new(pk_network **out, const pk_network_spec *spec);
PK_API pk_status pk_network_clone(pk_network **out, const pk_network *net);
PK_API void pk_network_free(pk_network *net);
PK_API size_t pk_network_layers(const pk_network *net);         /* L */
PK_API size_t pk_network_size(const pk_network *net, size_t l); /* d_l, l = 0..L */
PK_API pk_activation pk_network_activation(const pk_network *net, size_t l); /* hidden l = 1..L-1 */
PK_API double pk_network_slope(const pk_network *net, size_t l);  /* leaky_relu's, else 0 */
/* Layer l = 1..L as a list entry would give it, and its output's shape
 * (channels, height, width; a dense layer's is units x 1 x 1). l = 0:
 * out gets the input's shape and *spec is left alone. PK_EINVAL for l > L. */
PK_API pk_status pk_network_layer(const pk_network *net, size_t l, pk_layer_spec *spec,
                                  size_t shape[3]);
PK_API pk_parameterization pk_network_param(const pk_network *net);
PK_API size_t pk_network_nparams(const pk_network *net);
PK_API const double *pk_network_params(const pk_network *net);
PK_API pk_status pk_network_set_params(pk_network *net, const double *theta, size_t n);
/* Bumped by every change of the weights: lets holders detect a change. */
PK_API uint64_t pk_network_version(const pk_network *net);
PK_API pk_status pk_network_forward(const pk_network *net, const pk_matrix *X, pk_matrix **out);
/* (n*K) x P, row i*K + k = d f_k(x_i) / d theta */
PK_API pk_status pk_network_jacobian(const pk_network *net, const pk_matrix *X, pk_matrix **out);
PK_API pk_status pk_network_save(const pk_network *net, const char *path);
PK_API pk_status pk_network_load(pk_network **out, const char *path);

/* ---- losses ------------------------------------------------------------- */

typedef enum { PK_LOSS_MSE = 0, PK_LOSS_LOGISTIC, PK_LOSS_SOFTMAX } pk_loss;
PK_API int pk_loss_from_name(const char *name);
PK_API const char *pk_loss_name(pk_loss l);
PK_API const char *pk_loss_names(void);     /* comma separated */

/* Check targets Y (n x c) for a loss on K outputs: mse needs c = K; logistic
 * K = 1 and targets 0/1; softmax integer labels 1..K (c = 1) or rows of
 * class probabilities (c = K). */
PK_API pk_status pk_loss_check(pk_loss loss, const pk_matrix *Y, size_t n, size_t K);
/* The mean loss of predictions F (n x K) against Y; dF, if not NULL, gets
 * the per-example derivatives dl_i/df_i (n x K, not divided by n). */
PK_API pk_status pk_loss_eval(pk_loss loss, const double *F, size_t n, size_t K,
                              const pk_matrix *Y, const size_t *rows, double *value,
                              double *dF);
/* The mean loss of the network's outputs on X against Y. */
PK_API pk_status pk_network_loss(const pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                                 pk_loss loss, double *value);

/* ---- training ---------------------------------------------------------- */

/* The update rules of torch.optim: gd (full batch) and sgd (minibatches)
 * are SGD without momentum; momentum and nesterov are SGD with momentum
 * (buf = g on the first step, then buf = mu buf + (1 - dampening) g);
 * adam and adamw follow Adam and AdamW with bias correction. Weight decay
 * adds weight_decay * w to the gradient, except for adamw, which first
 * shrinks w by lr * weight_decay (decoupled). */
typedef enum {
  PK_OPT_GD = 0, PK_OPT_SGD, PK_OPT_MOMENTUM, PK_OPT_NESTEROV, PK_OPT_ADAM, PK_OPT_ADAMW,
  PK_OPT_COUNT
} pk_optimizer;
PK_API int pk_optimizer_from_name(const char *name);
PK_API const char *pk_optimizer_name(pk_optimizer o);
PK_API const char *pk_optimizer_names(void);

typedef struct pk_hyper {
  double momentum;       /* momentum, nesterov (0.9) */
  double dampening;      /* momentum (0) */
  double beta1, beta2;   /* adam, adamw (0.9, 0.999) */
  double eps;            /* adam, adamw (1e-8) */
  double weight_decay;   /* every optimizer (0) */
} pk_hyper;

typedef struct pk_train_opts {
  pk_loss loss;
  pk_optimizer optimizer;
  size_t steps;
  size_t batch_size;     /* 0: the whole training set */
  double lr;
  /* optional: the learning rate of step s (1-based); nonzero status stops */
  pk_status (*lr_fn)(void *ud, size_t step, double *lr);
  void *lr_ud;
  uint64_t seed;         /* shuffling for sgd */
  /* optional: called after each step with the loss before it; nonzero stops */
  int (*on_step)(void *ud, size_t step, double loss);
  void *on_step_ud;
  pk_call_opts call;     /* progress and the cancel flag */
  pk_hyper hyper;
  /* optional: per-example loss weights, one per training row, finite and
   * >= 0 (NULL: all 1). A batch's loss is (1/|B|) sum_{i in B} w_i l_i:
   * the batches are drawn over all rows as without weights, so a weight-0
   * row still takes its place in its batch and contributes nothing. The
   * caller keeps the array alive during the call; a recording copies it. */
  const double *weights;
  /* optional: data-parallel training (NULL: one process). X and Y are
   * this rank's shard, the ranks' shards in rank order the training set;
   * the batches are drawn over that whole set from the same seed on every
   * rank, each rank computes its members' weighted gradient sum, and the
   * allreduced sum over the global batch size is every rank's step. The
   * ranks must agree on the network, options and columns (checked: a
   * disagreement fails on every rank, none waits). */
  const pk_comm *comm;
} pk_train_opts;

PK_API void pk_train_opts_init(pk_train_opts *o);
/* Train net in place. losses (steps entries, may be NULL) receives the loss
 * of each step's batch before its update; *done the number of steps taken.
 * on_step stopping the run returns PK_ECANCEL with the steps taken so far
 * (pk_train_record and pk_train_explain still hand out their objects); a
 * run cancelled by the progress callback or interrupted by call.cancel
 * returns PK_ECANCEL and no object, the network at the weights of its last
 * complete step. */
PK_API pk_status pk_train(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                          const pk_train_opts *o, double *losses, size_t *done);

/* ---- quadrature rules for the step integral ------------------------------- */

/* left: g at the start of each step (the paper's first-order sum);
 * gauss: n-point Gauss-Legendre on each step (exact to rounding for smooth
 * activations at a few nodes); exact: per step and query, the pieces
 * between the kinks of piecewise-linear units (relu) with the nodes that
 * are exact for their polynomial degree, and for smooth activations as
 * many nodes as bring the step's residual r_s(x) = f(x; w_{s+1}) -
 * f(x; w_s) - gbar_s(x) . D_s within tol */
typedef enum { PK_RULE_LEFT = 0, PK_RULE_GAUSS, PK_RULE_EXACT } pk_rule;

/* How the step integral is taken: the rule, its node count (gauss: 1..16;
 * left: 1; exact: ignored) and, for exact, the tolerance (0: the default):
 * each step's residual must be within tol / T of the query's output (T
 * steps), or at the level of its rounding, so that the residuals add up to
 * at most tol relative to the output. */
typedef struct pk_quad {
  pk_rule rule;
  int nodes;
  double tol;
} pk_quad;
#define PK_DEFAULT_TOL 1e-13
/* rule exact, default tolerance */
PK_API void pk_quad_init(pk_quad *q);

/* ---- trajectories ------------------------------------------------------- */

/* The record of a training run: w_0, every step's learning rate, batch and
 * loss, and the weights at checkpoints (every step, or every k-th with the
 * steps between regenerated by deterministic replay). The trajectory holds
 * views of the training data (the caller may free its matrices first); a
 * change to the data's entries is detected by a hash and refused. */
typedef struct pk_trajectory pk_trajectory;

/* Train net like pk_train and record the run into *out (every >= 1). */
PK_API pk_status pk_train_record(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                                 const pk_train_opts *o, size_t every, pk_trajectory **out,
                                 double *losses, size_t *done);
PK_API void pk_trajectory_free(pk_trajectory *t);
PK_API size_t pk_trajectory_steps(const pk_trajectory *t);
PK_API size_t pk_trajectory_memory(const pk_trajectory *t);   /* bytes held */
PK_API const pk_network *pk_trajectory_network0(const pk_trajectory *t);
PK_API double pk_trajectory_lr(const pk_trajectory *t, size_t s);   /* 0-based step */
PK_API double pk_trajectory_loss(const pk_trajectory *t, size_t s);
/* w_s for s = 0..T into out (P values), replaying from a checkpoint if needed */
PK_API pk_status pk_trajectory_weights(const pk_trajectory *t, size_t s, double *out);
/* A new network (free it) with the architecture of the run and weights w_s. */
PK_API pk_status pk_trajectory_network(const pk_trajectory *t, size_t s, pk_network **out);
/* PK_EINVAL, saying so, if the training data changed since recording. */
PK_API pk_status pk_trajectory_check_data(const pk_trajectory *t);
/* with_data: also store X and Y; otherwise attach them on load */
PK_API pk_status pk_trajectory_save(const pk_trajectory *t, const char *path, int with_data);
/* X, Y may be NULL when the file holds the data; given, they must hash
 * like the recorded data, and the trajectory holds views of them. */
PK_API pk_status pk_trajectory_load(pk_trajectory **out, const char *path, const pk_matrix *X,
                                    const pk_matrix *Y);
PK_API const pk_matrix *pk_trajectory_X(const pk_trajectory *t);
PK_API const pk_matrix *pk_trajectory_Y(const pk_trajectory *t);
/* How the run was trained: what pk_train_opts said, as recorded. */
typedef struct pk_trajectory_info {
  pk_loss loss;
  pk_optimizer optimizer;
  pk_hyper hyper;
  size_t steps;          /* T, the steps taken */
  size_t batch_size;     /* rows per step (for gd: every training row) */
  size_t every;          /* checkpoint spacing (1: every step stored) */
  uint64_t seed;
  int full_batch;        /* gd: each step took every row in order */
} pk_trajectory_info;
PK_API void pk_trajectory_get_info(const pk_trajectory *t, pk_trajectory_info *info);
/* The 0-based training rows of step s (0-based: the update from w_s to
 * w_{s+1}), in the order the step took them, into rows (room for
 * info.batch_size entries; may be NULL), and their count into *nb. */
PK_API pk_status pk_trajectory_batch(const pk_trajectory *t, size_t s, size_t *rows, size_t *nb);
/* The per-example loss weights of the run (one per training row), or
 * NULL when it was trained without weights (all 1). */
PK_API const double *pk_trajectory_loss_weights(const pk_trajectory *t);

/* ---- kernel machines from training ----------------------------------------- */

/* f(x; w_T) = f(x; w_0) + sum_i contribution_i(x) (+ regularization), with
 * contribution_i(x) = sum_s -eta_s c_{i,s} gbar_s(x) . J(x_i; w_s)^T l'_{i,s}. */
typedef struct pk_machine pk_machine;

/* The machine holds a reference to the trajectory: pk_trajectory_free may
 * come first (the trajectory goes when its last holder does). */
PK_API pk_status pk_machine_from_trajectory(pk_machine **out, const pk_trajectory *t,
                                            const pk_quad *q);
/* Train and accumulate the machine for the queries Xq during training. */
PK_API pk_status pk_train_explain(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                                  const pk_train_opts *o, const pk_matrix *Xq, const pk_quad *q,
                                  int want_kernel, pk_machine **out, double *losses,
                                  size_t *done);
/* Both in one run, or either: record when every >= 1 (into *traj), explain
 * when Xq is not NULL (into *out). On_step stopping the run still hands out
 * the objects (with PK_ECANCEL); any other failure hands out none. */
PK_API pk_status pk_train_full(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                               const pk_train_opts *o, size_t every, pk_trajectory **traj,
                               const pk_matrix *Xq, const pk_quad *quad, int want_kernel,
                               pk_machine **out, double *losses, size_t *done);
/* The machine of one rank's shard of a data-parallel run (a trajectory
 * recorded with pk_train_opts.comm, holding this rank's rows): each rank
 * computes its own examples' contributions for the same queries, with no
 * communication; pk_machine_predict and pk_machine_verify then add the
 * contributions over the ranks through comm (collective: every rank calls
 * them with the same queries), pk_machine_slice and coefficients give
 * this rank's columns; explain, certificate and save are refused, and so
 * is the exact rule (its residuals need every rank's contributions). comm
 * must outlive the machine. Collective (the ranks agree on the run). */
PK_API pk_status pk_machine_from_shard(pk_machine **out, const pk_trajectory *t, const pk_quad *q,
                                       const pk_comm *comm);
PK_API void pk_machine_free(pk_machine *km);
/* nq x K: b(x) + sum_i contribution_i(x) */
PK_API pk_status pk_machine_predict(pk_machine *km, const pk_matrix *Xq, const pk_call_opts *o,
                                    pk_matrix **out);
/* nq x m for output k (0-based): contributions (kernel = 0) or the path
 * kernel values Kp_kk(x, x_i) = sum_s eta_s gbar_s(x) . g_k(x_i; w_s) */
PK_API pk_status pk_machine_slice(pk_machine *km, const pk_matrix *Xq, size_t k, int kernel,
                                  const pk_call_opts *o, pk_matrix **out);
PK_API pk_status pk_machine_save(const pk_machine *km, const char *path);
PK_API pk_status pk_machine_load(pk_machine **out, const char *path);
PK_API int pk_machine_is_online(const pk_machine *km);
PK_API size_t pk_machine_outputs(const pk_machine *km);
PK_API size_t pk_machine_examples(const pk_machine *km);
PK_API pk_rule pk_machine_rule(const pk_machine *km);
PK_API int pk_machine_nodes(const pk_machine *km);
PK_API pk_status pk_machine_verify(pk_machine *km, const pk_matrix *Xq, const pk_call_opts *o,
                                   double *maxabs, double *maxrel);
/* nq x K: the weight-decay term of each query's output (0 without decay) */
PK_API pk_status pk_machine_regularization(pk_machine *km, const pk_matrix *Xq,
                                           const pk_call_opts *o, pk_matrix **out);
/* The paper's coefficients for output k (0-based), nq x m: *a holds
 * a_i(x) = contribution_i(x) / Kp(x, x_i), NaN where Kp(x, x_i) = 0 (no
 * coefficient exists there: *kp says where); *kp the path kernel values. */
PK_API pk_status pk_machine_coefficients(pk_machine *km, const pk_matrix *Xq, size_t k,
                                         const pk_call_opts *o, pk_matrix **a, pk_matrix **kp);

/* One query's explanation: the training examples that moved its output
 * most. The caller provides the arrays (room for `top` entries each). */
typedef struct pk_explanation {
  size_t top;               /* in: how many examples to rank */
  size_t *index;            /* out: 0-based examples, |contribution| decreasing, NaN first */
  double *contribution;     /* out: their contributions */
  double *kernel;           /* out: their path kernel values Kp(x, x_i) (NaN without them) */
  int has_kernel;           /* out: 0 for an online machine trained without kernel values */
  size_t n;                 /* out: entries filled, min(top, m) */
  size_t output;            /* in: 0-based output, or SIZE_MAX for the largest one;
                             * out: the output explained */
  double sum;               /* out: the sum of all m contributions */
  double bias;              /* out: f(x; w_0) */
  double regularization;    /* out: the weight-decay term */
  double prediction;        /* out: bias + sum + regularization */
  double network;           /* out: f(x; w_T), what the prediction reproduces */
} pk_explanation;

/* xq: one query (1 x d). A query the machine has not decomposed costs the
 * contributions of every output and the kernel values of the explained
 * output alone; a row of the cached queries decomposes the cached set
 * once with the kernel values, so that its other rows read them. */
PK_API pk_status pk_machine_explain(pk_machine *km, const pk_matrix *xq, const pk_call_opts *o,
                                    pk_explanation *ex);
/* nq x K: what the machine vouches for without running the network, a
 * bound on |predict - f(x; w_T)| per query and output: |sum_s r_s(x)|,
 * r_s(x) = f(x; w_{s+1}) - f(x; w_s) - (the step's sum of contributions)
 * computed from the network's own outputs at every step (their sum
 * telescopes to the machine's error), plus the rounding of the sums. It
 * bounds the prediction, not each example's contribution. */
PK_API pk_status pk_machine_certificate(pk_machine *km, const pk_matrix *Xq,
                                        const pk_call_opts *o, pk_matrix **out);
/* How the last decomposition integrated its steps: (query, step) pairs,
 * those split at kinks, those that needed more nodes than first tried,
 * the node evaluations per pair, and the seconds spent on split pairs. */
typedef struct pk_rule_stats {
  size_t pairs, split, refined;
  double nodes_per_pair, split_seconds;
} pk_rule_stats;
PK_API void pk_machine_rule_stats(const pk_machine *km, pk_rule_stats *out);
PK_API void pk_machine_quad(const pk_machine *km, pk_quad *out);

/* ---- kernels ---------------------------------------------------------- */

/* A kernel answers Gram matrices K(X1, X2) and diagonals K(x, x). Kernels of
 * networks with K outputs answer (n1*K) x (n2*K) blocks by default (rows
 * example-major); see pk_kernel_outputs. */
typedef struct pk_kernel pk_kernel;

typedef enum {
  PK_OUTPUTS_BLOCK = 0,   /* (n1*K) x (n2*K): every output pair */
  PK_OUTPUTS_TRACE,       /* n1 x n2: the sum over k of K_kk */
  PK_OUTPUTS_DIAGONAL     /* (n1*K) x n2: row i*K+k holds K_kk(x_i, .) */
} pk_outputs;

PK_API pk_status pk_kernel_gram(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                                const pk_call_opts *o, pk_matrix **out);
/* n x 1 (n*K x 1 in block or diagonal mode): K(x_i, x_i) */
PK_API pk_status pk_kernel_diag(const pk_kernel *k, const pk_matrix *X, const pk_call_opts *o,
                                pk_matrix **out);
PK_API const char *pk_kernel_name(const pk_kernel *k);
PK_API size_t pk_kernel_input_dim(const pk_kernel *k);   /* 0: any */
PK_API size_t pk_kernel_outputs(const pk_kernel *k);     /* rows per example */
PK_API void pk_kernel_free(pk_kernel *k);
/* Memory budget (bytes) of a tiled kernel's working set, and its output
 * layout for networks with several outputs. */
PK_API void pk_kernel_set_memory(pk_kernel *k, size_t bytes);
PK_API void pk_kernel_set_outputs(pk_kernel *k, pk_outputs mode);
PK_API size_t pk_kernel_memory(const pk_kernel *k);
PK_API pk_outputs pk_kernel_mode(const pk_kernel *k);

/* The path kernel of a recorded run (holding a reference to it, as a
 * kernel machine does). */
PK_API pk_status pk_kernel_path(pk_kernel **out, const pk_trajectory *t, pk_rule rule, int nodes);
/* The kernel g(x; w_s)^T P_s g(x'; w_s) that Adam's diagonal preconditioner
 * P_s induces at the update from w_s to w_{s+1} (s = 0..T-1; adam, adamw). */
PK_API pk_status pk_kernel_preconditioned(pk_kernel **out, const pk_trajectory *t, size_t s);
/* The empirical tangent kernel of a snapshot of net's current weights. */
PK_API pk_status pk_kernel_tangent(pk_kernel **out, const pk_network *net);

/* ---- classical and infinite-width kernels (classic.c, analytic.c) ---- */

/* x.x' */
PK_API pk_status pk_kernel_linear(pk_kernel **out);
/* exp(-gamma ||x - x'||^2), gamma > 0 */
PK_API pk_status pk_kernel_rbf(pk_kernel **out, double gamma);
/* exp(-gamma ||x - x'||_1), gamma > 0 */
PK_API pk_status pk_kernel_laplacian(pk_kernel **out, double gamma);
/* (x.x' + c)^degree, degree >= 1, c >= 0 */
PK_API pk_status pk_kernel_poly(pk_kernel **out, int degree, double c);
/* A user's own Gram. With X (n x d, G n x n), an input row is looked up as
 * the first row of X equal to it (exact ==; -0 equals 0, NaN equals
 * nothing); a row not in X is an error. With X NULL, inputs are n x 1
 * matrices of 1-based indices: rows of G for X1, columns of G for X2.
 * G is shared, not copied: it must outlive the kernel, and later changes
 * to it show through. X is copied. */
PK_API pk_status pk_kernel_precomputed(pk_kernel **out, pk_matrix *G, const pk_matrix *X);
/* The infinite-width kernels of a fully connected network with `depth`
 * hidden layers (depth + 1 dense layers) in the ntk parameterization, as
 * neural-tangents computes them; activation "relu", "erf" or "identity". */
PK_API pk_status pk_kernel_ntk(pk_kernel **out, int depth, const char *activation,
                               double sigma_w, double sigma_b);
PK_API pk_status pk_kernel_nngp(pk_kernel **out, int depth, const char *activation,
                                double sigma_w, double sigma_b);

/* ---- kernel regressors (regress.c) ----------------------------------- */

/* A model f(x) = f0(x) + K(x, X) alpha fitted on (X, Y): kernel ridge
 * regression, the GP posterior, or the NTK-regime gradient flow. It
 * borrows its kernel (keep the kernel alive while the model lives), except
 * a loaded model, which owns the kernel rebuilt from the file. */
typedef struct pk_regressor pk_regressor;

typedef enum {
  PK_REGRESSOR_RIDGE = 1,
  PK_REGRESSOR_GP = 2,
  PK_REGRESSOR_FLOW = 3
} pk_regressor_kind;

/* (K(X,X) + lambda I) alpha = Y, lambda > 0 */
PK_API pk_status pk_ridge_fit(pk_regressor **out, const pk_kernel *k, const pk_matrix *X,
                              const pk_matrix *Y, double lambda, const pk_call_opts *o);
/* the GP posterior with observation noise variance `noise` > 0 */
PK_API pk_status pk_gp_fit(pk_regressor **out, const pk_kernel *k, const pk_matrix *X,
                           const pk_matrix *Y, double noise, const pk_call_opts *o);
/* f_t(x) = f0(x) + K(x,X) K^-1 (I - exp(-lr t K / n)) (Y - f0(X)), t may be
 * +inf (then K^-1 is the pseudo-inverse); f0 (n x outputs, the initial
 * model on X) may be NULL for f0 = 0. */
PK_API pk_status pk_gradient_flow_fit(pk_regressor **out, const pk_kernel *k,
                                      const pk_matrix *X, const pk_matrix *Y, double lr,
                                      double t, const pk_matrix *f0, const pk_call_opts *o);
/* Predictions for the rows of Xq: *mean (nq x outputs); *var (nq x outputs,
 * the posterior variance of f, without the noise) for a GP when var is not
 * NULL. f0q, the initial model at Xq, is required for a gradient flow
 * fitted with f0 and refused otherwise. */
PK_API pk_status pk_regressor_predict(const pk_regressor *r, const pk_matrix *Xq,
                                      const pk_matrix *f0q, const pk_call_opts *o,
                                      pk_matrix **mean, pk_matrix **var);
PK_API pk_regressor_kind pk_regressor_get_kind(const pk_regressor *r);
PK_API const char *pk_regressor_kind_name(const pk_regressor *r);
/* the coefficients alpha: (n * rows per example) x outputs */
PK_API const pk_matrix *pk_regressor_coefficients(const pk_regressor *r);
/* what the fit had to work around (an eigendecomposition instead of a
 * Cholesky factorization), or NULL */
PK_API const char *pk_regressor_warning(const pk_regressor *r);
PK_API const pk_kernel *pk_regressor_kernel(const pk_regressor *r);
PK_API int pk_regressor_owns_kernel(const pk_regressor *r);
PK_API int pk_regressor_needs_f0(const pk_regressor *r);
/* Only models over kernels defined by parameters (linear, rbf, laplacian,
 * poly, ntk, nngp) can be saved: others fail with PK_EINVAL saying why. */
PK_API pk_status pk_regressor_save(const pk_regressor *r, const char *path);
PK_API pk_status pk_regressor_load(pk_regressor **out, const char *path);
PK_API void pk_regressor_free(pk_regressor *r);

/* ---- kernel analysis (analysis.c) ------------------------------------ */

/* Eigenvalues ascending (*w, n x 1) and orthonormal eigenvectors as the
 * columns of *V (n x n) of a symmetric G (its symmetric part is used; a G
 * far from symmetric is refused). */
PK_API pk_status pk_eigh(const pk_matrix *G, pk_matrix **w, pk_matrix **V);
/* <G, Y Y^T>_F / (||G||_F ||Y Y^T||_F) */
PK_API pk_status pk_alignment(const pk_matrix *G, const pk_matrix *Y, double *out);
/* <H G1 H, H G2 H>_F / (||H G1 H||_F ||H G2 H||_F), H = I - 11^T/n */
PK_API pk_status pk_cka(const pk_matrix *G1, const pk_matrix *G2, double *out);

/* ---- attribution (attribute.c, rop.c, influence.c, lds.c) ----------------- */

/* Every score matrix has m columns, one per training example, and a row
 * per query output asked for: outputs NULL asks for every output (row
 * x K + k for query x and output k); else outputs holds one 0-based output
 * per query (row x). Entry (r, i) is the first-order effect on that output
 * of up-weighting training example i (its loss weight w_i), so that
 * removing i changes it by about minus the entry. */

/* d f(x_q; w_T) / d w_i exactly, by reverse mode through the recorded run:
 * adjoints carried back step by step with exact Hessian-vector products
 * (gd, sgd, momentum, nesterov, adam, adamw, weight decay included;
 * Adam's preconditioner differentiated too). Trajectories with
 * checkpoints are replayed segment by segment going backwards. */
PK_API pk_status pk_attribute_metagradient(const pk_trajectory *t, const pk_matrix *Xq,
                                           const size_t *outputs, const pk_call_opts *o,
                                           pk_matrix **out);
/* TracIn-CP in the same convention: -(1/m) sum over s = 0, every,
 * 2 every, ... < T of n_s eta_s g(x_q; w_s) . grad l_i(w_s), with n_s the
 * steps checkpoint s stands for (every, fewer for the last). */
PK_API pk_status pk_attribute_tracin(const pk_trajectory *t, const pk_matrix *Xq, size_t every,
                                     const size_t *outputs, const pk_call_opts *o, pk_matrix **out);
/* The weights as a superposition of the training examples: row i of
 * *shares (m x P_l) is example i's exact share of w_T - w_0 over layer
 * `layer`'s parameters (0-based; SIZE_MAX: every parameter), *decay
 * (1 x P_l) the weight decay's part; rows and decay sum to w_T - w_0. */
PK_API pk_status pk_attribute_weights(const pk_trajectory *t, size_t layer, const pk_call_opts *o,
                                      pk_matrix **shares, pk_matrix **decay);
/* Influence functions (Koh and Liang) at net's weights, for the training
 * objective (1/m) sum_i l_i on (X, Y):
 *   -(1/m) g(x_q)^T (H + damping I)^-1 grad l_i,  H = (1/m) sum_i hess l_i.
 * solver exact: H from Hessian-vector products and LAPACK's
 * eigendecomposition (P x P memory); cg: conjugate gradients with
 * Hessian-vector products to the relative residual tol within maxiter
 * iterations (0: max(2P, 100)). An H + damping I that is not positive
 * definite fails with PK_ENUMERIC saying so. */
typedef enum { PK_SOLVER_EXACT = 0, PK_SOLVER_CG } pk_solver;
typedef struct pk_influence_opts {
  pk_loss loss;          /* mse */
  double damping;        /* 0 */
  pk_solver solver;      /* exact */
  double tol;            /* cg: 1e-10 */
  size_t maxiter;        /* cg: 0, the default */
} pk_influence_opts;
typedef struct pk_influence_info {
  double min_eig, max_eig;   /* exact: of H + damping I */
  size_t iterations;         /* cg: iterations taken */
  double residual;           /* cg: the largest final relative residual */
} pk_influence_info;
PK_API void pk_influence_opts_init(pk_influence_opts *io);
PK_API pk_status pk_attribute_influence(const pk_network *net, const pk_matrix *X,
                                        const pk_matrix *Y, const pk_matrix *Xq,
                                        const pk_influence_opts *io, const size_t *outputs,
                                        const pk_call_opts *o, pk_matrix **out,
                                        pk_influence_info *info);
/* Representer values (Yeh et al. 2018) of the last layer: Theta = [W_L
 * b_L] on the features f~ = [s_w a_{L-1}; s_b] is fine-tuned to the
 * stationary point of (1/m) sum_i L(Theta f~_i, t_i) + lambda ||Theta||^2,
 * the targets t_i the network's own outputs (probabilities for softmax and
 * logistic; labels = 1: Y); then alpha_i = -(1/(2 lambda m)) dL/dz(x_i)
 * (*alpha, m x K), the fine-tuned outputs (*fitted, nq x K) and the
 * scores alpha_ik f~_i . f~_q, which sum over i to the fitted output. */
typedef struct pk_representer_info {
  double grad_max;       /* the largest gradient entry at the stationary point found */
  size_t iterations;     /* Newton iterations */
} pk_representer_info;
PK_API pk_status pk_attribute_representer(const pk_network *net, const pk_matrix *X,
                                          const pk_matrix *Y, const pk_matrix *Xq, pk_loss loss,
                                          double lambda, int labels, const size_t *outputs,
                                          const pk_call_opts *o, pk_matrix **scores,
                                          pk_matrix **alpha, pk_matrix **fitted,
                                          pk_representer_info *info);
/* J random subsets of m training examples as a J x m matrix of 0/1
 * weights: each row keeps round(fraction m) examples, drawn uniformly
 * (Fisher-Yates) from one stream seeded by seed; 0 < fraction < 1 and
 * every subset keeps at least one example and drops at least one. */
PK_API pk_status pk_attribute_subsets(size_t J, size_t m, double fraction, uint64_t seed,
                                      pk_matrix **out);
/* Retrain a copy of net0 once per row of W (J x m loss weights, times
 * o->weights when set), from net0's weights with o's seed and batch order,
 * and answer the queries' outputs: row j of *out (J x (nq K)) holds run
 * j's f(x_q) for every query, K values each. One workspace serves every
 * run; call's progress counts the steps of all of them and its cancel
 * flag stops them ("<who>: interrupted at retraining j of J"). */
PK_API pk_status pk_attribute_retrain(const pk_network *net0, const pk_matrix *X,
                                      const pk_matrix *Y, const pk_train_opts *o,
                                      const pk_matrix *Xq, const pk_matrix *W,
                                      const pk_call_opts *call, const char *who, pk_matrix **out);
/* Spearman's rank correlation of x and y (n values; ties get their average
 * rank); NaN when n < 2, a value is not finite, or a side is constant. */
PK_API pk_status pk_spearman(const double *x, const double *y, size_t n, double *rho);
/* The linear datamodeling score of scores (nq x m) against J subsets
 * (masks, J x m of 0/1) and the outputs retraining gave on them
 * (observed, J x nq): per query (per_query, nq values) the Spearman
 * correlation over the subsets of sum_{i in S_j} A[q, i] with observed;
 * *mean over the queries where it is defined (*defined of them) and *se
 * its standard error (sample deviation / sqrt(defined)). */
PK_API pk_status pk_attribute_lds(const pk_matrix *masks, const pk_matrix *observed,
                                  const pk_matrix *scores, double *per_query, double *mean,
                                  double *se, size_t *defined);
/* Retrain without each query's top-k examples by scores (nq x m), for
 * each k of ks (1 <= k < m), and once on every example: *full (nq x K)
 * the queries' outputs of that run, *change (nq x nks) the change of
 * query q's output qout[q] (0-based) when its top k are removed, *flipped
 * (nq x nks) 1 where the predicted class changed (softmax: the argmax;
 * logistic: the sign), 0 where not, NaN for mse. */
PK_API pk_status pk_attribute_remove_top(const pk_network *net0, const pk_matrix *X,
                                         const pk_matrix *Y, const pk_train_opts *o,
                                         const pk_matrix *Xq, const pk_matrix *scores,
                                         const size_t *qout, const size_t *ks, size_t nks,
                                         const pk_call_opts *call, pk_matrix **full,
                                         pk_matrix **change, pk_matrix **flipped);

#endif
