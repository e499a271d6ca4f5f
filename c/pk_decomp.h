/* pk_decomp.h - the exact finite-step decomposition (decomp.c): the
 * quadrature along a step (fixed Gauss or left nodes, or the exact rule's
 * pieces and nodes per query and step), and the accumulator of per-example
 * contributions, residuals and certificates that kernel machines run over
 * a replay or a training run. */
#ifndef PK_DECOMP_H
#define PK_DECOMP_H

#include "pk_train.h"
#include "pk_kinks.h"

#define PK_MAX_NODES 16
#define PK_MAX_LAYERS 256

/* Gauss-Legendre (or left-point) nodes and weights on [0, 1] */
pk_status pk_quadrature(pk_rule rule, int nodes, double *t, double *w);

/* The queries of a tile at points of one step: row r is query q[r] at
 * t[r] along the step, weighted by w[r] (a Gauss weight times the length of
 * its piece). Split rows carry the activation pattern of their piece. */
typedef struct pk_rows {
  size_t n, cap;
  uint32_t *q;
  double *t, *w;
  size_t *piece;          /* split rows: their piece; SIZE_MAX for natural rows */
  double *x;              /* the rows' inputs, gathered (cap x d0) */
  pk_acts a;              /* features at the rows (cap) */
  pk_deltas d;            /* sensitivities (cap x K) */
} pk_rows;

/* pieces of a step between the kinks of its piecewise-linear layers */
typedef struct pk_pieces {
  size_t n, cap;
  uint32_t *q;
  double *ta, *tb;
  double *mask;           /* per piece: zw values, the pattern of every PL layer */
} pk_pieces;

typedef struct pk_decomp {
  const pk_network *net;
  const pk_matrix *Xq;
  size_t nq, K, m, nbmax, qt, bc, rcap;  /* queries per tile, training rows per
                                          * chunk, node rows per block */
  int want_kp;
  int kp_one;              /* kernel values of output kp_k only (set after pk_decomp_init) */
  size_t kp_k;
  pk_quad quad;
  pk_optimizer opt;
  pk_hyper hyper;
  /* optimizers with state or weight decay: explicit gradients */
  int explicit_traces, need_gbar;
  /* the exact rule: hidden layers from the input up whose activation is
   * piecewise linear (their kinks are found), all hidden layers so (then
   * npl_nodes Gauss nodes per piece are exact), widths of those layers */
  size_t npl;
  int all_pl, npl_nodes, pl_deg;  /* pl_deg: the highest degree of a PL pre-activation */
  size_t zw, *zoff;        /* zoff[l]: layer l's offset in a pattern (npl entries) */
  double gt[PK_MAX_NODES + 1][PK_MAX_NODES], gw[PK_MAX_NODES + 1][PK_MAX_NODES];
  /* the sample test of the pattern: per node count n, the points {0, the
   * n Gauss nodes, extras, 1} and the inverse of their Bernstein-Vandermonde
   * matrix (values -> coefficients), with its infinity norm */
  int ns[PK_MAX_NODES + 1];
  double spt[PK_MAX_NODES + 1][PK_KINK_MAXDEG + 1];
  double *vinv[PK_MAX_NODES + 1], vnorm[PK_MAX_NODES + 1];
  /* per query, across steps */
  double *f0, *f1;         /* nq x K: outputs at w_s, w_{s+1} */
  double *m0, *m1;         /* nq x K: the sums of |terms| of those outputs (their rounding) */
  size_t steps;            /* steps of the run (set after pk_decomp_init; tol is spread over them) */
  double *z0, *z1;         /* nq x zw: PL pre-activations at w_s, w_{s+1} */
  double *cert;            /* nq x K: the certificate's rounding terms, then the certificate */
  double *rsum;            /* nq x K: the sum of the residuals so far (the machine's error) */
  double *minit, *finit;   /* nq x K: m0 and f0 at w_0 */
  double *rprev;           /* qt: a query's largest |residual| at its last try of the step */
  unsigned char *nidx;     /* exact rule, smooth layers: ladder index to try first */
  size_t *probe;           /* step at which to try one node fewer */
  unsigned short *backoff; /* steps until the next such try after a failed one */
  size_t step;             /* steps added */
  int have_f0;
  /* per step */
  double *dir;             /* P: next - theta */
  double *sacc;            /* (qt K) x nbmax: a tile's step values before they are accepted */
  double *sabs;            /* qt x K: sum of |terms| of the step (rounding) */
  double *gbar;            /* (qt K) x P: a tile's node-averaged query gradients */
  double *tr;              /* m x P: per-example traces (momentum or first moment) */
  double *rtr;             /* P: the weight-decay part of the trace */
  double *pc;              /* P: Adam's preconditioner */
  double *reg;             /* nq x K: the weight-decay terms */
  double *c0;              /* nq x m: Xq X^T, the first layer's input products */
  int c0_ready;
  size_t *idx;             /* 0..m-1 */
  double *contrib;         /* (nq K) x m: row x*K + k, column i */
  double *kp;              /* (nq K) x m: Kp_kk(x, x_i), when wanted */
  double *theta_node, *M, *C, *T, *xa, *work, *zero;
  double *fq, *fb;         /* layer features of a query side, of a training side */
  double *pre0, *pre1, *wsum;   /* presums of a block's rows per query */
  double *xs, *ones;       /* the presums' queries' inputs; unit rows times the weights' sums */
  int wone;                /* every weights' sum of the block is 1 */
  int *uidx;               /* qt: a query's place among a block's queries, or -1 */
  uint32_t *ulist;
  pk_rows rows;            /* one block of node rows */
  pk_acts wf, wa, wx;      /* queries at w_{s+1}; training rows; extra sample points */
  pk_deltas da;
  double *zs;              /* samples of the PL pre-activations (ns x rows x zw) */
  pk_pieces pcs, pcs2;      /* the pieces of a step's split queries; the next layer's */
  double *pin, *pin2, *pzw, *pzd, *ecoef;  /* piece construction: input coefficients,
                                            * products, one piece's polynomials */
  size_t pin_cap, pin2_cap, pz_cap;
  unsigned char *fail;     /* rcap: pattern test verdicts */
  unsigned char *start;    /* qt: ladder index a query started the step with */
  uint32_t *list, *list2;  /* qt: queries of a pass, the next pass */
  double *brk;             /* roots of one piece */
  size_t brk_cap;
  unsigned char *plan;     /* qt: per query of the tile, this step's plan */
  unsigned char *tried;    /* qt: ladder index tried */
  double *res;             /* qt x K: residuals of the tile */
  /* statistics of the last run */
  pk_rule_stats stats;
  double nodes_sum;
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
                         size_t nbmax, const pk_quad *quad, int want_kp, pk_optimizer opt,
                         const pk_hyper *hyper, const char *who, double extra,
                         const char *extra_what);
/* After the last step: the certificate's part for the rounding of the
 * final sums (predict adds contributions, bias and regularization). */
void pk_decomp_finish(pk_decomp *dc);
void pk_decomp_free(pk_decomp *dc);
/* Add step s: theta = w_s, next = w_{s+1}; w holds the batch's activations
 * and per-example loss gradients at w_s; X is the whole training set (for
 * the path kernel values). PK_ECANCEL ("decomposition: interrupted") when
 * dc->cancel is seen: the step is then half added. */
pk_status pk_decomp_step(pk_decomp *dc, double lr, const double *theta, const double *next,
                         const size_t *rows, size_t nb, const pk_acts *w, const pk_matrix *X,
                         const pk_optstate *os);

#endif
