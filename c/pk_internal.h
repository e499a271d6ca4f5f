/* pk_internal.h - what the C core files share and host programs don't see:
 * the matrix layout, error setting, checked allocation, file framing. */
#ifndef PK_INTERNAL_H
#define PK_INTERNAL_H

#include <stdio.h>
#include "pk.h"

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

/* ---- small numeric helpers ------------------------------------------- */
int pk_all_finite(const double *x, size_t n);

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

/* Fill s and return 1 if k is one of ours, else 0. */
int pk_classic_kernel_spec(const pk_kernel *k, pk_kernel_spec *s);
int pk_analytic_kernel_spec(const pk_kernel *k, pk_kernel_spec *s);
/* Rebuild a kernel from a spec read from a file (checking its values). */
pk_status pk_kernel_from_spec(const pk_kernel_spec *s, pk_kernel **out);

/* X1 X2^T scaled by alpha into out (n1 x n2). When sym (X1 == X2) only the
 * upper triangle (j >= i) is written, by dsyrk. */
void pk_cross(const pk_matrix *X1, const pk_matrix *X2, double alpha, int sym, double *out);
/* Copy the upper triangle of the n x n row-major a into its lower one. */
void pk_mirror_upper(double *a, size_t n);
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

/* Eigen-decompose the symmetric n x n a by dsyevd, reading the triangle
 * uplo names in LAPACK's column-major view ('U': the row-major lower
 * triangle); w gets the eigenvalues ascending and row i of a (row-major)
 * the eigenvector of w[i]. Workspace counts against the memory limit;
 * `what` names the caller in messages. */
pk_status pk_syev(double *a, size_t n, char uplo, double *w, const char *what);

#endif
