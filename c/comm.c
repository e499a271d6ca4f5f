/* comm.c - the core's side of the communication hook (pk.h, pk_comm): the
 * hook's calls checked and named, the agreement every collective entry
 * point runs before its work, and the shard offsets. No message-passing
 * library here: the hook's owner provides the transport. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "pk_comm.h"

pk_status pk_comm_reduce(const pk_comm *c, double *buf, size_t n, pk_comm_op op, const char *who)
{
  const char *why;
  if (!c->allreduce) return pk_fail(PK_EINVAL, "%s: the communicator has no allreduce", who);
  if (c->allreduce(c->ctx, buf, n, op) == 0) return PK_OK;
  why = c->error ? c->error(c->ctx) : NULL;
  return pk_fail(PK_EIO, "%s: communication between the ranks failed (%s)", who,
                 why ? why : "no reason given");
}

pk_status pk_comm_agree(const pk_comm *c, const char *who, pk_status local, const double *vals,
                        const char *const *what, size_t n)
{
  double *buf;
  size_t i;
  pk_status st;
  /* the size of the agreement is the one thing every rank knows alike */
  if ((st = pk_alloc((void **)&buf, 1 + 2 * n, sizeof(double), "the ranks' agreement")))
    return st;
  buf[0] = local ? (double)c->rank + 1 : 0;
  for (i = 0; i < n; i++) {
    buf[1 + 2 * i] = vals[i];
    buf[2 + 2 * i] = -vals[i];
  }
  st = pk_comm_reduce(c, buf, 1 + 2 * n, PK_COMM_MAX, who);
  if (st || local) {
    free(buf);
    return st ? st : local;
  }
  if (buf[0] > 0) {
    st = pk_fail(PK_EINVAL, "%s: rank %d refused its arguments (its own error says why); every "
                 "rank stops", who, (int)buf[0] - 1);
  } else {
    for (i = 0; i < n; i++)
      if (buf[1 + 2 * i] != -buf[2 + 2 * i]) {
        st = pk_fail(PK_EINVAL, "%s: the ranks disagree on %s (from %.17g to %.17g): every rank "
                     "must give the same", who, what[i], -buf[2 + 2 * i], buf[1 + 2 * i]);
        break;
      }
  }
  free(buf);
  return st;
}

pk_status pk_comm_offsets(const pk_comm *c, size_t mine, size_t *offset, size_t *total,
                          const char *who)
{
  double *buf;
  size_t r, off = 0, all = 0;
  pk_status st;
  if ((st = pk_calloc((void **)&buf, (size_t)c->size, sizeof(double), "the ranks' row counts")))
    return st;
  buf[c->rank] = (double)mine;
  if (!(st = pk_comm_reduce(c, buf, (size_t)c->size, PK_COMM_SUM, who))) {
    for (r = 0; r < (size_t)c->size; r++) {
      if (r < (size_t)c->rank) off += (size_t)buf[r];
      all += (size_t)buf[r];
    }
    *offset = off;
    *total = all;
  }
  free(buf);
  return st;
}

double pk_comm_hash(const double *x, size_t n)
{
  uint64_t h = 1469598103934665603ull;
  size_t i, k;
  for (i = 0; i < n; i++) {
    unsigned char b[sizeof(double)];
    memcpy(b, x + i, sizeof b);
    for (k = 0; k < sizeof b; k++) {
      h ^= b[k];
      h *= 1099511628211ull;
    }
  }
  return (double)(h >> 11);
}
