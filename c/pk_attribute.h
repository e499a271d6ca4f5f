/* pk_attribute.h - attribution inside (rop.c, attribute.c, influence.c,
 * lds.c): the R-operator workspace over a batch of training rows, the
 * query gradients and the score matrices' rows that they share. */
#ifndef PK_ATTRIBUTE_H
#define PK_ATTRIBUTE_H

#include "pk_traj.h"

/* Second-order products of a weighted training loss over a batch of n
 * rows: after pk_rop_primal at weights theta, pk_rop_tile answers, for a
 * tile of directions V_j (parameter vectors),
 *   dots[j, i] = V_j . grad l_i(theta)            (unweighted per-example)
 *   hv[j]      = H V_j,  H = sum_i c_i hess l_i(theta)
 * with c_i = scale * lw[row_i] the per-example coefficient given to the
 * primal (1/|B| times the loss weight, for a training step). */
typedef struct pk_rop {
  const pk_network *net;
  size_t L, K, cap, rcap, n;
  pk_loss loss;
  const double *theta;
  double **A;        /* A[l]: input of layer l (n x d[l]); A[0] is the caller's rows */
  double **Z;        /* Z[l]: pre-activation (n x d[l+1]) */
  double **D;        /* D[l]: dl_i/dZ[l], unweighted */
  double **Dw;       /* Dw[l]: c_i D[l] */
  double **Dp;       /* Dp[l], l >= 1: dl_i/dA[l] = s_w D[l] W_l (before phi') */
  double **F1, **F2; /* phi' and phi'' at Z[l], l <= L-2 */
  double *pr;        /* n x K: the loss's probabilities (logistic, softmax) */
  double *cw;        /* n: c_i */
  double **Zd;       /* tangents of a tile: Zd[l] (rcap n x d[l+1]) */
  double **Ad;       /* Ad[l], l >= 1 (rcap n x d[l]) */
  double *g0, *g1, *gp;   /* rcap n x max width each */
  double *gs;             /* n x max width: one direction's input-side product */
  double *ps;             /* one layer's parameters: a product added into its slice */
  double *work;           /* the layers' scratch for rcap n rows */
  double *buf, *tbuf;
  double **ptrs;
} pk_rop;

/* bytes of a workspace for cap rows and tiles of rcap directions */
double pk_rop_bytes(const pk_network *net, size_t cap, size_t rcap);
pk_status pk_rop_init(pk_rop *r, const pk_network *net, pk_loss loss, size_t cap, size_t rcap);
void pk_rop_free(pk_rop *r);
/* The batch X (n rows, row-major, n <= cap) at weights theta: forward,
 * loss derivatives against Y (rows[i] names row i's target and weight;
 * NULL: row i), backward. lw (NULL: all 1) and scale give c_i. */
void pk_rop_primal(pk_rop *r, const double *theta, const double *X, size_t n, const pk_matrix *Y,
                   const size_t *rows, const double *lw, double scale);
/* grad = sum_i c_i grad l_i (P values) */
void pk_rop_grad(const pk_rop *r, double *grad);
/* rt <= rcap directions V (row j at V + j*ldv): dots (rt x n, added to;
 * may be NULL) and hv (row j at hv + j*ldh, overwritten; NULL: dots only) */
void pk_rop_tile(pk_rop *r, const double *V, size_t ldv, size_t rt, double *dots, double *hv,
                 size_t ldh);

/* Which outputs of which queries a score matrix has rows for: outputs
 * NULL, every output of every query (row x K + k); else outputs[x]
 * (0-based) for query x (row x). These check outputs against K and give
 * the rows per query, the query and the output of row r. */
pk_status pk_outputs_check(const pk_network *net, size_t nq, const size_t *outputs, const char *who);
size_t pk_outputs_per(const pk_network *net, const size_t *outputs);
size_t pk_row_output(const pk_network *net, const size_t *outputs, size_t r);

/* Explicit gradients of the network outputs at the n rows of Xq (n x d0)
 * at weights theta, into out (stride ld): with outputs (n entries, for
 * these rows) row x = grad_w f_{outputs[x]}(x_x); without, row x K + k =
 * grad_w f_k(x_x). */
pk_status pk_output_grads(const pk_network *net, const double *theta, const double *Xq, size_t n,
                          const size_t *outputs, double *out, size_t ld);

/* Xq must have the network's inputs and finite values: else a refusal
 * naming who and the row */
pk_status pk_attr_check_queries(const pk_network *net, const pk_matrix *Xq, const char *who);

/* "<who> needs N at once, above the memory limit of M: <parts>
 * (pk.set_memory_limit raises it; or <remedy>)" */
pk_status pk_attr_too_big(const char *who, double need, const char *parts, const char *remedy);

#endif
