/* core.c - errors, checked allocation and the memory limit, and the
 * progress and stop checks of long calls: shared by every file of the C
 * core. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <math.h>
#include "pk_base.h"

/* The state of the library, safe to use from several threads of one host
 * (two Lua states on two threads, say): the message of the last failure is
 * the calling thread's own; the memory limit is one setting for the whole
 * process, read and written atomically (relaxed: it orders nothing else). */
static __thread char errbuf[512];
static size_t memlimit;    /* 0 until first asked: then the default */
/* bytes handed out by the checked allocators in this thread since the
 * host last asked (pk_memory_take_allocated) */
static __thread size_t allocated;

pk_status pk_fail(pk_status s, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errbuf, sizeof errbuf, fmt, ap);
  va_end(ap);
  return s;
}

const char *pk_last_error(void) { return errbuf; }

const char *pk_status_name(pk_status s)
{
  switch (s) {
  case PK_OK: return "ok";
  case PK_EINVAL: return "invalid argument";
  case PK_ENOMEM: return "out of memory";
  case PK_EIO: return "i/o error";
  case PK_EFORMAT: return "bad file format";
  case PK_ENUMERIC: return "numerical failure";
  case PK_ECANCEL: return "cancelled";
  }
  return "unknown status";
}

static size_t default_limit(void)
{
  long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || psize <= 0)
    return (size_t)8 << 30;
  /* three quarters of physical memory, computed without overflow */
  return (size_t)pages / 4 * 3 * (size_t)psize;
}

void pk_set_memory_limit(size_t bytes)
{
  __atomic_store_n(&memlimit, bytes ? bytes : default_limit(), __ATOMIC_RELAXED);
}

size_t pk_memory_limit(void)
{
  size_t lim = __atomic_load_n(&memlimit, __ATOMIC_RELAXED), unset = 0;
  if (lim) return lim;
  /* first asked: every thread computes the same default, and a limit set
   * meanwhile by another thread wins over it */
  lim = default_limit();
  if (!__atomic_compare_exchange_n(&memlimit, &unset, lim, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
    lim = unset;
  return lim;
}

static void fmt_bytes(char *buf, size_t len, double b)
{
  static const char *unit[] = { "bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
  int u = 0;
  while (b >= 1024 && u < 6) { b /= 1024; u++; }
  if (u == 0) snprintf(buf, len, "%.0f bytes", b);
  else snprintf(buf, len, "%.1f %s", b, unit[u]);
}

void pk_format_bytes(char *buf, size_t len, double bytes) { fmt_bytes(buf, len, bytes); }

pk_status pk_mul_size(size_t *out, size_t a, size_t b, const char *what)
{
  if (a != 0 && b > SIZE_MAX / a)
    return pk_fail(PK_ENOMEM, "%s: size %zu x %zu overflows", what, a, b);
  *out = a * b;
  return PK_OK;
}

pk_status pk_check_bytes_hint(size_t n, size_t size, const char *what, const char *hint)
{
  char need[32], lim[32];
  size_t limit;
  if (size != 0 && n > SIZE_MAX / size) {
    fmt_bytes(need, sizeof need, (double)n * (double)size);
    return pk_fail(PK_ENOMEM, "%s needs %s: the size overflows", what, need);
  }
  /* read once: the message states the limit the check used */
  if (n * size > (limit = pk_memory_limit())) {
    fmt_bytes(need, sizeof need, (double)n * (double)size);
    fmt_bytes(lim, sizeof lim, (double)limit);
    return pk_fail(PK_ENOMEM, "%s needs %s, above the memory limit of %s "
                   "(pk.set_memory_limit raises it; or %s)", what, need, lim,
                   hint ? hint : "ask for less");
  }
  return PK_OK;
}

pk_status pk_check_bytes(size_t n, size_t size, const char *what)
{
  return pk_check_bytes_hint(n, size, what, NULL);
}

/* What every checked allocation does: the check against the limit, then
 * malloc, or calloc when zero; a refusal or a failure says what and how
 * much. */
static pk_status checked(void **out, size_t n, size_t size, const char *what, const char *hint,
                         int zero)
{
  pk_status st = pk_check_bytes_hint(n, size, what, hint);
  *out = NULL;
  if (st) return st;
  *out = zero ? calloc(n ? n : 1, size ? size : 1) : malloc(n * size > 0 ? n * size : 1);
  if (!*out) {
    char need[32];
    fmt_bytes(need, sizeof need, (double)n * (double)size);
    return pk_fail(PK_ENOMEM, "%s: allocating %s failed", what, need);
  }
  allocated += n * size;
  return PK_OK;
}

size_t pk_memory_take_allocated(void)
{
  size_t n = allocated;
  allocated = 0;
  return n;
}

void pk_call_opts_init(pk_call_opts *o) { memset(o, 0, sizeof *o); }

pk_status pk_alloc_hint(void **out, size_t n, size_t size, const char *what, const char *hint)
{
  return checked(out, n, size, what, hint, 0);
}

pk_status pk_alloc(void **out, size_t n, size_t size, const char *what)
{
  return checked(out, n, size, what, NULL, 0);
}

pk_status pk_calloc_hint(void **out, size_t n, size_t size, const char *what, const char *hint)
{
  return checked(out, n, size, what, hint, 1);
}

pk_status pk_calloc(void **out, size_t n, size_t size, const char *what)
{
  return checked(out, n, size, what, NULL, 1);
}

pk_status pk_fail_in(pk_status s, const char *name)
{
  size_t n = strlen(name);
  char msg[sizeof errbuf];
  if (strncmp(errbuf, name, n) == 0 && errbuf[n] == ':') return s;
  memcpy(msg, errbuf, sizeof msg);
  return pk_fail(s, "%s: %s", name, msg);
}

int pk_all_finite(const double *x, size_t n)
{
  size_t i;
  for (i = 0; i < n; i++)
    if (!isfinite(x[i])) return 0;
  return 1;
}


/* ---- long calls: progress and stops ---------------------------------- */

int pk_cancelled(const pk_call_opts *o)
{
  return o && o->cancel && *o->cancel;
}

int pk_progress(const pk_call_opts *o, double done, double total)
{
  /* the flag first: a progress callback need not run once the host has
   * asked to stop (and with no callback at all the flag is still seen) */
  if (pk_cancelled(o)) return PK_STOP_INTERRUPT;
  if (o && o->progress && o->progress(o->progress_ud, done, total))
    return pk_cancelled(o) ? PK_STOP_INTERRUPT : PK_STOP_CANCEL;
  return PK_STOP_NONE;
}

const char *pk_stop_word(int why)
{
  return why == PK_STOP_INTERRUPT ? "interrupted" : "cancelled";
}
