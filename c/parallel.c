/* parallel.c - a small parallel for over POSIX threads, for the elementwise
 * passes of Gram computations that BLAS cannot do (the recursions of the
 * analytic kernels, exp of distances). Chunks are handed out one at a time
 * so rows of unequal cost (a triangle) balance. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <pthread.h>
#include <unistd.h>
#include "pk_base.h"

#define MAX_THREADS 64

int pk_threads(void)
{
  static const char *const vars[] = { "PK_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "OMP_NUM_THREADS", NULL };
  long n = 0;
  int i;
  for (i = 0; vars[i] && n <= 0; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) n = strtol(v, NULL, 10);
  }
  if (n <= 0) n = sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = 1;
  if (n > MAX_THREADS) n = MAX_THREADS;
  return (int)n;
}

typedef struct {
  pthread_mutex_t mu;
  size_t next, n, chunk;
  double done;
  int stop;
  pk_chunk_fn fn;
  void *ctx;
} job;

static int take(job *j, size_t *i0, size_t *i1)
{
  int ok;
  pthread_mutex_lock(&j->mu);
  ok = !j->stop && j->next < j->n;
  if (ok) {
    *i0 = j->next;
    *i1 = j->n - j->next > j->chunk ? j->next + j->chunk : j->n;
    j->next = *i1;
  }
  pthread_mutex_unlock(&j->mu);
  return ok;
}

static double finish(job *j, double units)
{
  double d;
  pthread_mutex_lock(&j->mu);
  d = j->done += units;
  pthread_mutex_unlock(&j->mu);
  return d;
}

static void *worker(void *arg)
{
  job *j = arg;
  size_t i0, i1;
  while (take(j, &i0, &i1)) finish(j, j->fn(j->ctx, i0, i1));
  return NULL;
}

pk_status pk_parallel_for(size_t n, size_t chunk, pk_chunk_fn fn, void *ctx,
                          const pk_call_opts *o, double total, const char *what)
{
  pthread_t tid[MAX_THREADS];
  int want = pk_threads(), started = 0, t;
  size_t i0, i1;
  job j;
  if (chunk < 1) chunk = 1;
  j.next = 0;
  j.n = n;
  j.chunk = chunk;
  j.done = 0;
  j.stop = 0;
  j.fn = fn;
  j.ctx = ctx;
  if (pthread_mutex_init(&j.mu, NULL) != 0) {
    /* no lock, no helpers: the range here, a chunk at a time */
    double done = 0;
    int why;
    for (i0 = 0; i0 < n; i0 = i1) {
      i1 = n - i0 > chunk ? i0 + chunk : n;
      done += fn(ctx, i0, i1);
      if ((why = pk_progress(o, done, total)))
        return pk_fail(PK_ECANCEL, "%s: %s", what, pk_stop_word(why));
    }
    return PK_OK;
  }
  /* threads that fail to start are simply not there: the caller's own
   * loop below still covers every chunk */
  for (t = 1; t < want && (size_t)t * chunk < n; t++)
    if (pthread_create(&tid[started], NULL, worker, &j) == 0) started++;
  /* only this thread checks for a stop (a Lua callback never runs on a
   * worker); the workers see j.stop and take no new chunk */
  while (take(&j, &i0, &i1)) {
    double d = finish(&j, fn(ctx, i0, i1));
    int why = pk_progress(o, d, total);
    if (why) {
      pthread_mutex_lock(&j.mu);
      j.stop = why;
      pthread_mutex_unlock(&j.mu);
    }
  }
  for (t = 0; t < started; t++) pthread_join(tid[t], NULL);
  pthread_mutex_destroy(&j.mu);
  /* the workers may have taken every chunk before this thread reported
   * once: the last report is the caller's chance to stop, honoured like any */
  if (!j.stop && started) j.stop = pk_progress(o, j.done, total);
  if (j.stop) return pk_fail(PK_ECANCEL, "%s: %s", what, pk_stop_word(j.stop));
  return PK_OK;
}
