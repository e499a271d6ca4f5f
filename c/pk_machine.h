/* pk_machine.h - kernel machines inside (machine.c): the cached results
 * per query, the online decomposition the training loop hooks into a run,
 * files. */
#ifndef PK_MACHINE_H
#define PK_MACHINE_H

#include "pk_train.h"

struct pk_machine {
  const pk_trajectory *traj;   /* offline: a reference held; NULL for an online machine */
  pk_quad quad;
  size_t m, K;
  pk_network *net0, *netT;     /* w_0 and w_T */
  /* results for the queries Xq (cached for offline machines) */
  pk_matrix *Xq;
  uint64_t xq_hash;
  size_t nq;
  double *contrib, *kp;        /* (nq K) x m */
  int kp_one;                  /* kp holds output kp_k only */
  size_t kp_k;
  double *bias, *final, *reg;  /* nq x K */
  double *cert;                /* nq x K: the certificate (NULL: not known, an old file) */
  pk_rule_stats stats;         /* of the last decomposition */
  size_t *map, nreq;           /* the last requested queries: their rows here */
  const pk_comm *comm;         /* a shard's machine: predict sums over the ranks */
};

/* f(x; w_T) of entry i = x*K + k of the last requested queries */
double pk_machine_final(const pk_machine *km, size_t i);
/* Make sure results for Xq exist (cached when Xq is the same data): an
 * offline machine replays its trajectory; an online one has its own
 * queries only. The accessors then read them through km->map. */
pk_status pk_machine_compute(pk_machine *km, const pk_matrix *Xq, int want_kp,
                             const pk_call_opts *o);

/* ---- the online decomposition, a hook of the training loop -------------- */

/* For the queries Xq: begin sets hk to add each step of the run to the
 * decomposition; end makes the machine of the run so far (net at its
 * final weights); free at any time. */
typedef struct pk_explainer pk_explainer;
pk_status pk_explainer_begin(const pk_network *net, const pk_matrix *X, const pk_train_opts *o,
                             const pk_matrix *Xq, const pk_quad *quad, int want_kp,
                             pk_explainer **out, pk_train_hooks *hk);
pk_status pk_explainer_end(pk_explainer *e, const pk_network *net, pk_machine **out);
void pk_explainer_free(pk_explainer *e);

/* ---- files (machine.c) -------------------------------------------------- */

/* The loader on a file image in memory (name is used in messages): what
 * pk_machine_load runs after pk_read_file, and what the fuzz harness
 * calls. */
pk_status pk_machine_load_mem(pk_machine **out, const char *name, const unsigned char *buf,
                              size_t len);
/* what a machine file holds, for writing one to any stream */
pk_status pk_machine_write_payload(pk_writer *w, const void *km);

#endif
