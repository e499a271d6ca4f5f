/* csv.c - matrices as CSV text: a strict reader of decimal numbers (gzip
 * files inflated first, known by their content) and a writer of 17
 * significant digits, saved atomically like every file. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <stdint.h>
#define ZLIB_CONST             /* zlib reads input through const pointers */
#include <zlib.h>
#include "pk_file.h"
#include "pk_formats.h"

/* ---- gzip ------------------------------------------------------------ */

static int is_gzip(const unsigned char *buf, size_t len)
{
  return len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
}

/* The next output capacity: doubling, but the last step lands on the
 * memory limit rather than jumping over it. */
static size_t inflate_grow(size_t cap)
{
  size_t lim = pk_memory_limit(), want = cap > SIZE_MAX / 2 ? SIZE_MAX - 1 : cap ? 2 * cap : 64;
  if (want >= lim && cap + 1 < lim) want = lim - 1;
  return want;
}

/* Inflate every member of the gzip file image in[0..len) into *out
 * (malloc'd, NUL-terminated after *outlen bytes), within the memory limit;
 * a truncated or corrupt stream is PK_EFORMAT naming name. */
static pk_status gunzip(const char *name, const unsigned char *in, size_t len, unsigned char **out,
                        size_t *outlen)
{
  z_stream z;
  unsigned char *buf = NULL;
  size_t cap, used = 0, left = len;   /* left: input not yet handed to zlib */
  char what[96];
  pk_status st = PK_OK;
  int rc;
  *out = NULL;
  *outlen = 0;
  snprintf(what, sizeof what, "inflating %.60s%s", name, strlen(name) > 60 ? "..." : "");
  cap = len < (SIZE_MAX - 64) / 4 ? 4 * len + 64 : len;
  if (cap >= pk_memory_limit()) cap = pk_memory_limit() / 2;
  if ((st = pk_alloc((void **)&buf, cap + 1, 1, what))) return st;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {     /* gzip framing only */
    free(buf);
    return pk_fail(PK_ENOMEM, "%s: out of memory", what);
  }
  for (;;) {
    size_t room, before_out;
    if (z.avail_in == 0 && left > 0) {    /* zlib counts in unsigned int */
      uInt k = left > (1u << 30) ? (1u << 30) : (uInt)left;
      z.next_in = in + (len - left);
      z.avail_in = k;
      left -= k;
    }
    if (used == cap) {
      size_t ncap = inflate_grow(cap);
      unsigned char *nb;
      if ((st = pk_check_bytes_hint(ncap + 1, 1, what, "read a smaller file"))) break;
      if (!(nb = realloc(buf, ncap + 1))) { st = pk_fail(PK_ENOMEM, "%s: out of memory", what); break; }
      buf = nb;
      cap = ncap;
    }
    room = cap - used;
    z.next_out = buf + used;
    z.avail_out = room > (1u << 30) ? (1u << 30) : (uInt)room;
    before_out = z.avail_out;
    rc = inflate(&z, Z_NO_FLUSH);
    used += before_out - z.avail_out;
    if (rc == Z_STREAM_END) {
      /* concatenated members (cat a.gz b.gz) are one file, as gzip -d says */
      size_t rest = z.avail_in + left;
      if (rest == 0) break;
      if (!is_gzip(in + (len - rest), rest)) {
        st = pk_fail(PK_EFORMAT, "%s: gzip check failed: %zu stray bytes after the compressed data",
                     name, rest);
        break;
      }
      inflateReset(&z);
      continue;
    }
    if (rc == Z_OK || rc == Z_BUF_ERROR) {
      if (z.avail_out == 0 || used == cap) continue;          /* needs more room */
      if (z.avail_in == 0 && left == 0) {
        st = pk_fail(PK_EFORMAT, "%s: gzip check failed: the compressed data is truncated", name);
        break;
      }
      if (rc == Z_OK || left > 0) continue;
    }
    if (rc == Z_MEM_ERROR) st = pk_fail(PK_ENOMEM, "%s: out of memory", what);
    else st = pk_fail(PK_EFORMAT, "%s: gzip check failed: corrupt compressed data (%s)", name,
                      z.msg ? z.msg : "zlib could not go on");
    break;
  }
  inflateEnd(&z);
  if (st) {
    free(buf);
    return st;
  }
  buf[used] = '\0';
  *out = buf;
  *outlen = used;
  return PK_OK;
}

/* ---- CSV ------------------------------------------------------------- */

/* The length of the number that starts at s, or 0 if none does: an
 * optional sign, then digits with an optional point (at least one digit)
 * and an optional exponent with at least one digit; or inf, infinity or
 * nan in any case. This is the grammar of Python's float() and of what
 * write_csv writes, and it leaves out the rest of what strtod reads:
 * hexadecimal numbers, nan(payload) and leading whitespace of every
 * kind. */
static size_t number_length(const char *s)
{
  static const char *const words[] = { "infinity", "inf", "nan" };
  const char *p = s;
  size_t digits = 0, i;
  if (*p == '+' || *p == '-') p++;
  for (i = 0; i < sizeof words / sizeof *words; i++) {
    size_t n = strlen(words[i]), k;
    for (k = 0; k < n && p[k] && (p[k] | 0x20) == words[i][k]; k++) ;
    if (k == n) return (size_t)(p + n - s);
  }
  while (*p >= '0' && *p <= '9') { p++; digits++; }
  if (*p == '.') {
    p++;
    while (*p >= '0' && *p <= '9') { p++; digits++; }
  }
  if (!digits) return 0;
  if (*p == 'e' || *p == 'E') {
    const char *e = p + 1;
    if (*e == '+' || *e == '-') e++;
    if (*e < '0' || *e > '9') return 0;
    while (*e >= '0' && *e <= '9') e++;
    p = e;
  }
  return (size_t)(p - s);
}

/* a field for a message: at most 40 bytes, control and non-ASCII bytes as
 * \xNN, so that no byte of the file reaches a terminal as it is */
static void show_field(char *out, size_t cap, const char *f)
{
  size_t n = 0, k;
  for (k = 0; f[k] && k < 40 && n + 5 < cap; k++) {
    unsigned char c = (unsigned char)f[k];
    if (c >= 0x20 && c < 0x7f && c != '\\') out[n++] = (char)c;
    else n += (size_t)snprintf(out + n, cap - n, "\\x%02x", c);
  }
  if (f[k] && n + 4 < cap) { memcpy(out + n, "...", 3); n += 3; }
  out[n] = '\0';
}

/* Parse text[0..len) into values; cols is fixed by the first data line. */
static pk_status parse_csv(const char *path, char *text, size_t len, char sep, int header,
                           pk_matrix **out, char **hdr)
{
  size_t cap = 0, nval = 0, rows = 0, cols = 0, line = 0;
  double *vals = NULL;
  char *p = text, *end = text + len;
  pk_status st = PK_OK;

  while (p < end) {
    char *eol = memchr(p, '\n', (size_t)(end - p));
    char *q, *stop;
    size_t col = 0;
    if (!eol) eol = end;
    *eol = '\0';
    if (eol > p && eol[-1] == '\r') eol[-1] = '\0';
    line++;
    if (line == 1 && header) {
      if (hdr) {
        size_t n = strlen(p);
        *hdr = malloc(n + 1);
        if (!*hdr) { st = pk_fail(PK_ENOMEM, "read_csv: out of memory"); break; }
        memcpy(*hdr, p, n + 1);
      }
      p = eol + 1;
      continue;
    }
    for (q = p; *q == ' ' || *q == '\t'; q++) ;
    if (*q == '\0') { p = eol + 1; continue; }   /* blank line */
    q = p;
    for (;;) {
      double v;
      char *fe = strchr(q, sep);
      if (fe) *fe = '\0';
      char *num = q, shown[200];
      size_t nl;
      col++;
      /* spaces and tabs around a number are allowed, nothing else */
      while (*num == ' ' || *num == '\t') num++;
      nl = number_length(num);
      for (stop = num + nl; *stop == ' ' || *stop == '\t'; stop++) ;
      if (nl == 0 || *stop != '\0') {
        show_field(shown, sizeof shown, q);
        st = pk_fail(PK_EINVAL, "%s: line %zu, column %zu: bad number '%s' (numbers are decimal: "
                     "1, -2.5, 3e-4, inf, nan)", path, line, col, shown);
        goto done;
      }
      num[nl] = '\0';
      errno = 0;
      v = strtod(num, &stop);
      if (stop != num + nl) {    /* a locale whose decimal point is not '.' */
        show_field(shown, sizeof shown, q);
        st = pk_fail(PK_EINVAL, "%s: line %zu, column %zu: bad number '%s' (the C library "
                     "does not read '.' as the decimal point in this locale)", path, line, col,
                     shown);
        goto done;
      }
      /* overflow is refused; underflow gives the nearest double (a
       * subnormal or zero), which is what the digits mean in binary64 */
      if (errno == ERANGE && isinf(v)) {
        show_field(shown, sizeof shown, num);
        st = pk_fail(PK_EINVAL, "%s: line %zu, column %zu: '%s' is out of range (beyond "
                     "+-1.7976931348623157e308; write inf for an infinity)", path, line, col,
                     shown);
        goto done;
      }
      if (nval == cap) {
        size_t ncap = cap ? 2 * cap : 1024;
        double *nv;
        if ((st = pk_check_bytes(ncap, sizeof(double), "read_csv"))) goto done;
        nv = realloc(vals, ncap * sizeof(double));
        if (!nv) { st = pk_fail(PK_ENOMEM, "read_csv: out of memory"); goto done; }
        vals = nv;
        cap = ncap;
      }
      vals[nval++] = v;
      if (!fe) break;
      q = fe + 1;
    }
    if (rows == 0) cols = col;
    else if (col != cols) {
      st = pk_fail(PK_EINVAL, "%s: line %zu has %zu fields, expected %zu", path, line, col,
                   cols);
      goto done;
    }
    rows++;
    p = eol + 1;
  }
  if (!st) st = pk_matrix_from_array(out, rows, cols, vals);
done:
  free(vals);
  return st;
}

/* text is writable, len bytes plus a terminating NUL at text[len] */
static pk_status csv_from_buffer(pk_matrix **out, const char *name, char *text, size_t len,
                                 const pk_csv_opts *opts, char **header)
{
  char sep = opts && opts->sep ? opts->sep : ',';
  pk_status st;
  *out = NULL;
  if (header) *header = NULL;
  if (sep == '\n' || sep == '\r')
    return pk_fail(PK_EINVAL, "read_csv: the separator cannot be a line break");
  if (memchr(text, '\0', len))
    return pk_fail(PK_EINVAL, "%s: not a text file (contains NUL bytes)", name);
  st = parse_csv(name, text, len, sep, opts && opts->header, out, header);
  if (st && header && *header) { free(*header); *header = NULL; }
  return st;
}

pk_status pk_matrix_parse_csv(pk_matrix **out, const char *name, const char *text, size_t len,
                              const pk_csv_opts *opts, char **header)
{
  char *copy;
  pk_status st;
  *out = NULL;
  if (header) *header = NULL;
  if (is_gzip((const unsigned char *)text, len)) {
    if ((st = gunzip(name, (const unsigned char *)text, len, (unsigned char **)&copy, &len)))
      return st;
  } else {
    if (len == SIZE_MAX) return pk_fail(PK_ENOMEM, "read_csv: the text is too long");
    if ((st = pk_alloc((void **)&copy, len + 1, 1, "read_csv"))) return st;
    memcpy(copy, text, len);
    copy[len] = '\0';
  }
  st = csv_from_buffer(out, name, copy, len, opts, header);
  free(copy);
  return st;
}

void pk_csv_opts_init(pk_csv_opts *o)
{
  o->header = 0;
  o->sep = ',';
}

pk_status pk_matrix_read_csv(pk_matrix **out, const char *path, const pk_csv_opts *opts,
                             char **header)
{
  unsigned char *buf;
  size_t len;
  pk_status st;
  *out = NULL;
  if (header) *header = NULL;
  if ((st = pk_read_file(path, &buf, &len))) return st;
  if (is_gzip(buf, len)) {      /* by content, whatever the name */
    unsigned char *text;
    st = gunzip(path, buf, len, &text, &len);
    free(buf);
    if (st) return st;
    buf = text;
  }
  st = csv_from_buffer(out, path, (char *)buf, len, opts, header);
  free(buf);
  return st;
}

struct csv_out { const pk_matrix *a; const char *header; };

pk_status pk_matrix_emit_csv(FILE *f, const pk_matrix *a, const char *header, int *err)
{
  size_t i, j;
  errno = 0;
  if (header && fprintf(f, "%s\n", header) < 0) goto bad;
  for (i = 0; i < a->rows; i++)
    for (j = 0; j < a->cols; j++)
      if (fprintf(f, "%.17g%c", a->data[i * a->cols + j], j + 1 < a->cols ? ',' : '\n') < 0)
        goto bad;
  return PK_OK;
bad:
  *err = errno ? errno : EIO;
  return PK_OK;
}

static pk_status emit_csv(FILE *f, const void *ctx, int *err)
{
  const struct csv_out *o = ctx;
  return pk_matrix_emit_csv(f, o->a, o->header, err);
}

pk_status pk_matrix_write_csv(const pk_matrix *a, const char *path, const char *header)
{
  struct csv_out o;
  if (header && strpbrk(header, "\r\n"))
    return pk_fail(PK_EINVAL, "write_csv: the header must be one line");
  o.a = a;
  o.header = header;
  return pk_save_stream(path, emit_csv, &o);
}
