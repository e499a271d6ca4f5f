/* pk_base.h - what every file of the C core shares and host programs
 * don't see: the matrix layout, errors, checked allocation under the
 * memory limit, the progress and stop checks of long calls and the
 * parallel loop, small numeric helpers. The ground floor of the internal
 * headers: it includes only pk.h. */
#ifndef PK_BASE_H
#define PK_BASE_H

#include <stdio.h>
#include "pk.h"

#define PK_PI 3.14159265358979323846
#define PK_SQRT1_2 0.70710678118654752440

/* Storage is reference counted: a view holds a reference on the matrix
 * that owns the data, so freeing the owner first never frees data a view
 * still reads. */
struct pk_matrix {
  size_t rows, cols;
  double *data;
  struct pk_matrix *base;  /* the owner, for a view; NULL for an owner */
  size_t refs;             /* owner: itself plus its live views */
};

/* ---- errors and checked allocation (core.c) ----------------------------- */

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
pk_status pk_alloc_hint(void **out, size_t n, size_t size, const char *what, const char *hint);
pk_status pk_calloc_hint(void **out, size_t n, size_t size, const char *what, const char *hint);
/* Prefix the last error's message with name (a file) unless it already
 * starts with "name:"; returns s. */
pk_status pk_fail_in(pk_status s, const char *name);
/* a x b without overflow, else an error naming `what` */
pk_status pk_mul_size(size_t *out, size_t a, size_t b, const char *what);

/* ---- matrices (matrix.c) ------------------------------------------------ */

/* A matrix of the given shape, allocated but not initialized, with `what`
 * used in the memory-limit message. */
pk_status pk_matrix_alloc(pk_matrix **out, size_t rows, size_t cols, const char *what);
pk_status pk_matrix_alloc_hint(pk_matrix **out, size_t rows, size_t cols, const char *what,
                               const char *hint);
pk_status pk_check_same_shape(const pk_matrix *a, const pk_matrix *b, const char *op);

/* ---- long calls: progress, stops, threads (core.c, parallel.c) ---------- */

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

/* ---- small numeric helpers (core.c, fastmath.c) ------------------------- */

/* 1 when no entry of x[0..n) is NaN or infinite */
int pk_all_finite(const double *x, size_t n);
/* vectorized tanh and logistic sigmoid, within a few ulps (fastmath.c);
 * x and y must not overlap */
void pk_vtanh(const double *x, double *y, size_t n);
void pk_vsigmoid(const double *x, double *y, size_t n);
void pk_vrelu(const double *z, double *a, size_t n);
void pk_vleaky(const double *z, double *a, size_t n, double slope);
void pk_vrelu_deriv(const double *z, double *g, size_t n);
void pk_vleaky_deriv(const double *z, double *g, size_t n, double slope);
void pk_vtanh_deriv(const double *a, double *g, size_t n);
/* the pattern test of the kink search: whether some unit may cross zero
 * (fastmath.c; decomp.c says more) */
int pk_bernstein_test(const double *const *z, int N, const double *vi, size_t w, double tau,
                      double *zm, double *bmn, double *bmx, double *bk);

#endif
