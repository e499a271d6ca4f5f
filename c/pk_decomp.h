/* pk_decomp.h - the exact finite-step decomposition (decomp.c): the
 * quadrature along a step, and the accumulator of per-example
 * contributions that kernel machines run over a replay or a training run. */
#ifndef PK_DECOMP_H
#define PK_DECOMP_H

#include "pk_train.h"

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
  /* optimizers with state: explicit gradients (weight decay alone goes
   * through the layers' dot products) */
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
  double *theta_node, *C, *acc, *xa;
  double *work;            /* the layers' scratch */
  pk_acts wq[PK_MAX_NODES], wa;      /* the queries at each node; training rows */
  pk_deltas dq[PK_MAX_NODES], da;
  pk_lfeats fq[PK_MAX_NODES], fb, fa;  /* layer features: queries, batch, training rows */
  /* the caller's cancel flag (set after pk_decomp_init), checked between
   * tiles of a step: a step over many queries can take long */
  const volatile sig_atomic_t *cancel;
  /* a shard of a data-parallel run (set before each step): the global
   * batch's size, which divides the step where nb counts this rank's
   * members only; 0: nb */
  size_t batch_total;
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

#endif
