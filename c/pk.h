/* pk.h - the public C API of pathkernel: opaque types, status codes, and
 * every function a host program may call. No Lua in here. */
#ifndef PK_H
#define PK_H

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

/* The message of the last failure in this thread of control (the library
 * keeps one buffer; calls from several threads at once must not share it). */
PK_API const char *pk_last_error(void);
PK_API const char *pk_status_name(pk_status s);

/* Memory accounting: every large allocation is checked against a limit
 * (default: 3/4 of physical memory). 0 restores the default. */
PK_API void pk_set_memory_limit(size_t bytes);
PK_API size_t pk_memory_limit(void);

/* Progress callback for long work: done of total units; return nonzero to
 * cancel (the call then fails with PK_ECANCEL). */
typedef int (*pk_progress_fn)(void *ud, double done, double total);

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

/* Dense, row-major, double precision. A view shares its parent's storage;
 * the parent must outlive it. */
typedef struct pk_matrix pk_matrix;

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
PK_API double pk_matrix_sum(const pk_matrix *a);
PK_API double pk_matrix_norm(const pk_matrix *a);      /* Frobenius */
PK_API double pk_matrix_max_abs(const pk_matrix *a);

/* ---- files ----------------------------------------------------------- */

/* Object tags of the PATHKRNL file format. */
typedef enum {
  PK_TAG_MATRIX = 1,
  PK_TAG_NETWORK = 2,
  PK_TAG_TRAJECTORY = 3,
  PK_TAG_MACHINE = 4
} pk_tag;

PK_API pk_status pk_matrix_save(const pk_matrix *a, const char *path);
PK_API pk_status pk_matrix_load(pk_matrix **out, const char *path);
/* The tag of a saved object, after checking its header and checksum. */
PK_API pk_status pk_file_tag(const char *path, pk_tag *tag);

typedef struct pk_csv_opts {
  int header;       /* skip (and return) the first line */
  char sep;         /* field separator, ',' by default */
} pk_csv_opts;

/* On success *header (if requested and present) is a malloc'd copy of the
 * first line; release it with free(). */
PK_API pk_status pk_matrix_read_csv(pk_matrix **out, const char *path,
                                    const pk_csv_opts *opts, char **header);
PK_API pk_status pk_matrix_write_csv(const pk_matrix *a, const char *path,
                                     const char *header);

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

typedef struct pk_call_opts {
  pk_progress_fn progress;  /* may be NULL */
  void *progress_ud;
} pk_call_opts;

PK_API pk_status pk_kernel_gram(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                                const pk_call_opts *o, pk_matrix **out);
/* n x 1 (n*K x 1 in block or diagonal mode): K(x_i, x_i) */
PK_API pk_status pk_kernel_diag(const pk_kernel *k, const pk_matrix *X, const pk_call_opts *o,
                                pk_matrix **out);
PK_API const char *pk_kernel_name(const pk_kernel *k);
PK_API size_t pk_kernel_input_dim(const pk_kernel *k);   /* 0: any */
PK_API size_t pk_kernel_outputs(const pk_kernel *k);     /* rows per example */
PK_API void pk_kernel_free(pk_kernel *k);

#endif
