/* pk_comm.h - what the core's data-parallel parts share about the
 * communication hook of pk.h (comm.c): checked collectives with messages
 * that name the caller, agreement of the ranks before any long collective
 * work (so a rank that refuses its arguments stops every rank instead of
 * leaving them waiting), and the split of a training set into shards. */
#ifndef PK_COMM_H
#define PK_COMM_H

#include "pk_base.h"

/* c->allreduce with its failure turned into a status naming who. */
pk_status pk_comm_reduce(const pk_comm *c, double *buf, size_t n, pk_comm_op op, const char *who);
/* Collective: every rank passes its own check's status and n values that
 * must be equal on every rank (what[i] names value i in the message).
 * Returns the local status when it failed (its message kept), else a
 * failure when another rank failed or the ranks disagree on a value, else
 * PK_OK: after it, every rank either goes on or stops. Values must be
 * finite and exact in a double. */
pk_status pk_comm_agree(const pk_comm *c, const char *who, pk_status local, const double *vals,
                        const char *const *what, size_t n);
/* Collective: this rank holds `mine` rows; *offset is the global index of
 * its first row (the rows of lower ranks come first), *total the rows of
 * all ranks. */
pk_status pk_comm_offsets(const pk_comm *c, size_t mine, size_t *offset, size_t *total,
                          const char *who);
/* A 53-bit hash of n doubles' bits, exact in a double: agreement on
 * weights without sending them. */
double pk_comm_hash(const double *x, size_t n);

#endif
