/* pk_linalg.h - the dense linear algebra several rooms share (linalg.c):
 * the cross products of Gram computations, mirroring a triangle, the
 * symmetric eigendecomposition. */
#ifndef PK_LINALG_H
#define PK_LINALG_H

#include "pk_base.h"

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
