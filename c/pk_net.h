/* pk_net.h - networks inside (network.c): lists of layers (layer.h), the
 * batched forward and backward passes with their workspaces, the
 * per-output sensitivities and layer features the kernels use, files. */
#ifndef PK_NET_H
#define PK_NET_H

#include "pk_file.h"
#include "layer.h"

/* A network is a list of layers (layer.h): the walkers below run the
 * layers' functions and apply the activations between them. */
struct pk_network {
  size_t L;              /* layers */
  pk_layer *layer;       /* L records; layer[L-1].act = identity */
  pk_parameterization param;
  double sigma_w, sigma_b;
  uint64_t seed;
  size_t P;
  double *theta;
  uint64_t version;
  /* the last training's workspace (train.c), kept for the next run: a
   * fresh workspace costs a page fault per page on first touch, which on
   * a virtual machine is a fixed cost of the order of a few steps; freed
   * through the function train.c leaves with it, so the network's room
   * does not call up into training's */
  struct pk_train_ws *train_ws;
  void (*train_ws_free)(struct pk_train_ws *);
};

/* values per example going in (d_0) and coming out (K) */
#define PK_NET_IN(n) ((n)->layer[0].in)
#define PK_NET_OUT(n) ((n)->layer[(n)->L - 1].out)

/* Same layers, activations, slopes, parameterization: weights of one fit
 * the other. */
int pk_network_same_arch(const pk_network *a, const pk_network *b);

/* A batch through the network, kept for backward passes and kernels. For
 * layer l (0-based): A[l] is its input (n x in; A[0] is the caller's X),
 * Z[l] its pre-activation (n x out; Z[L-1] is the output), G[l] the loss
 * gradient with respect to Z[l]; work is the layers' scratch. */
typedef struct pk_acts {
  size_t cap;
  double **A, **Z, **G;
  double *work;
  double *buf;
} pk_acts;

pk_status pk_acts_init(pk_acts *w, const pk_network *net, size_t cap, int with_grad);
void pk_acts_free(pk_acts *w);
/* Forward n rows of X (row-major, d_0 columns) at weights theta. */
void pk_net_forward_ws(const pk_network *net, const double *theta, const double *X, size_t n,
                       pk_acts *w);
/* Backward from dF (n x K) already in w->G[L-1]: fills every G[l] and, if
 * grad is not NULL, the parameter gradient sum_i J_i^T dF_i (scaled by
 * `scale`). */
void pk_net_backward(const pk_network *net, const double *theta, pk_acts *w, size_t n,
                     double scale, double *grad);

/* Sensitivities of every output: D[l] is (n*K) x out_l, row i*K + k holding
 * d f_k(x_i) / d z_l. D[L-1] rows are unit vectors. */
typedef struct pk_deltas {
  size_t cap, K;
  double **D;
  double *dphi;          /* scratch: phi' of one layer, cap x the widest input */
  double *work;          /* the layers' scratch for cap K rows */
  double *buf;
} pk_deltas;

pk_status pk_deltas_init(pk_deltas *dl, const pk_network *net, size_t cap);
void pk_deltas_free(pk_deltas *dl);
void pk_net_deltas(const pk_network *net, const double *theta, const pk_acts *w, size_t n,
                   pk_deltas *dl);
/* bytes of pk_acts / pk_deltas for cap rows */
/* the most scratch (doubles) any layer's passes want over rows rows; the
 * widest layer side */
size_t pk_net_max_work(const pk_network *n, size_t rows);
size_t pk_net_max_width(const pk_network *n);
size_t pk_acts_bytes(const pk_network *net, size_t cap, int with_grad);
size_t pk_deltas_bytes(const pk_network *net, size_t cap);

/* The layers' own features (layer.h, feat) of a block of up to cap
 * examples with per sensitivity rows each: feat[l] is NULL for a layer
 * without features, and feat itself NULL when no layer has any. */
typedef struct pk_lfeats {
  double **feat;
  double *buf;
  double *work;            /* the layers' scratch for computing them */
} pk_lfeats;

size_t pk_lfeats_bytes(const pk_network *net, size_t cap, size_t per);
pk_status pk_lfeats_init(pk_lfeats *f, const pk_network *net, size_t cap, size_t per);
void pk_lfeats_free(pk_lfeats *f);
/* compute them for n examples from inputs A and sensitivities U (as
 * pk_net_side takes them) */
void pk_lfeats_compute(pk_lfeats *f, const pk_network *net, double *const *A, double *const *U,
                       size_t n, size_t per, int outputs);

/* The side (layer.h) of layer l for rows [r0, r0 + n) of a block whose
 * layer inputs are A[l] and whose sensitivities are U[l] (per rows an
 * example); feat[l]: the layer's features of the block (feat may be NULL
 * when no layer has any). outputs: U holds the sensitivities of the
 * network's outputs (pk_deltas), whose last layer's rows are units. */
void pk_net_side(pk_side *s, const pk_network *net, size_t l, double *const *A,
                 double *const *U, double *const *feat, size_t r0, size_t n, size_t per,
                 int outputs);

/* X must have d_0 columns: else a refusal naming X as `what` */
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
