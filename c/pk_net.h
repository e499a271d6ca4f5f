/* pk_net.h - dense networks inside (network.c): the layout of the
 * weights, the batched forward and backward passes with their workspaces,
 * the per-output sensitivities the kernels use, activations, files. */
#ifndef PK_NET_H
#define PK_NET_H

#include "pk_file.h"

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

/* X must have d[0] columns: else a refusal naming X as `what` */
pk_status pk_check_input(const pk_network *net, const pk_matrix *X, const char *what);

/* ---- files (network.c) -------------------------------------------------- */

pk_status pk_network_write_payload(pk_writer *w, const void *net);
pk_status pk_network_read_payload(pk_reader *r, pk_network **out);
/* The loader on a file image in memory (name is used in messages): what
 * pk_network_load runs after pk_read_file, and what the fuzz harness
 * calls. */
pk_status pk_network_load_mem(pk_network **out, const char *name, const unsigned char *buf,
                              size_t len);

#endif
