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
/* a x b without overflow, else an error naming `what` */
pk_status pk_mul_size(size_t *out, size_t a, size_t b, const char *what);

/* A matrix of the given shape, allocated but not initialized, with `what`
 * used in the memory-limit message. */
pk_status pk_matrix_alloc(pk_matrix **out, size_t rows, size_t cols, const char *what);
pk_status pk_check_same_shape(const pk_matrix *a, const pk_matrix *b, const char *op);

/* ---- the PATHKRNL container ----------------------------------------- */

#define PK_FORMAT_VERSION 1u

uint32_t pk_crc32(uint32_t crc, const void *buf, size_t n);

/* A writer either counts bytes (f == NULL) or writes them to a file while
 * keeping the running CRC; serializers run once to count and once to
 * write, so the header can state the payload length up front. */
typedef struct pk_writer {
  FILE *f;
  uint64_t n;
  uint32_t crc;
  int err;
} pk_writer;

void pk_put_bytes(pk_writer *w, const void *p, size_t n);
void pk_put_u32(pk_writer *w, uint32_t v);
void pk_put_u64(pk_writer *w, uint64_t v);
void pk_put_f64(pk_writer *w, double v);
void pk_put_f64s(pk_writer *w, const double *v, size_t n);

typedef pk_status (*pk_serialize_fn)(pk_writer *w, const void *obj);

/* Write obj as one checksummed object to a temporary file beside path,
 * fsync it and rename it into place: the old file survives any failure. */
pk_status pk_save_object(const char *path, pk_tag tag, pk_serialize_fn fn,
                         const void *obj);

/* A bounds-checked reader over a payload held in memory. */
typedef struct pk_reader {
  const unsigned char *p;
  size_t n, pos;
  int err;
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
  void *state;          /* the kernel's own data, freed by destroy */
};

/* A kernel shell with vt and state; input_dim 0, nout 1, block mode. */
pk_status pk_kernel_new(pk_kernel **out, const pk_kernel_vt *vt, void *state);
/* Report progress; nonzero when the caller asked to stop. */
int pk_progress(const pk_call_opts *o, double done, double total);

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

/* Training with hooks for recorders: before_update sees the batch, its
 * activations and loss gradients (w->G) and the mean gradient, before the
 * step; after_update the loss once the weights have moved. */
typedef struct pk_train_hooks {
  void *ud;
  pk_status (*before_update)(void *ud, size_t step, double lr, const size_t *rows, size_t nb,
                             const pk_acts *w, const double *grad);
  pk_status (*after_update)(void *ud, size_t step, double loss);
} pk_train_hooks;

pk_status pk_train_check(const pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                         const pk_train_opts *o);
pk_status pk_train_hooked(pk_network *net, const pk_matrix *X, const pk_matrix *Y,
                          const pk_train_opts *o, const pk_train_hooks *hk, double *losses,
                          size_t *done);

pk_status pk_network_write_payload(pk_writer *w, const void *net);
pk_status pk_network_read_payload(pk_reader *r, pk_network **out);
pk_status pk_check_input(const pk_network *net, const pk_matrix *X, const char *what);

/* ---- small numeric helpers ------------------------------------------- */
/* vectorized tanh and logistic sigmoid, within a few ulps (fastmath.c);
 * x and y must not overlap */
void pk_vtanh(const double *x, double *y, size_t n);
void pk_vsigmoid(const double *x, double *y, size_t n);
int pk_all_finite(const double *x, size_t n);

#endif
