/* npy.c - NumPy's .npy files: reading 0-, 1- and 2-dimensional arrays of
 * the common numeric dtypes in either byte order and either memory order,
 * writing float64 the way numpy.save does. The header is a Python dict
 * literal; it is parsed here by a small recursive reader that accepts
 * exactly the literals NumPy writes and names what it refuses. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include "pk_file.h"
#include "pk_formats.h"

static const unsigned char NPY_MAGIC[6] = { 0x93, 'N', 'U', 'M', 'P', 'Y' };

/* ---- the header: a Python dict literal -------------------------------- */

typedef struct hdr {
  const char *name;          /* the file, for messages */
  const char *p, *end;       /* the header text */
  const char *start;
  /* what was found */
  int have_descr, have_order, have_shape;
  char descr[16];
  int fortran;
  long ndim;
  uint64_t dims[2];
} hdr;

#define NPY_MAX_NDIM 2

/* a syntax error, with where it was found */
static pk_status bad(const hdr *h, const char *what)
{
  return pk_fail(PK_EFORMAT, "%s: header check failed: %s (at byte %ld of the header)", h->name,
                 what, (long)(h->p - h->start));
}

static pk_status missing(const hdr *h, const char *key)
{
  return pk_fail(PK_EFORMAT, "%s: header check failed: missing key '%s'", h->name, key);
}

static void skip_ws(hdr *h)
{
  while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
    h->p++;
}

static int peek(hdr *h)
{
  skip_ws(h);
  return h->p < h->end ? (unsigned char)*h->p : -1;
}

/* A quoted string (no escapes: NumPy's keys and dtype strings have none)
 * into buf; longer strings are refused. */
static pk_status read_string(hdr *h, char *buf, size_t cap, const char *what)
{
  char q;
  size_t n = 0;
  char msg[96];
  int c = peek(h);
  if (c != '\'' && c != '"') {
    snprintf(msg, sizeof msg, "expected a quoted string for %s", what);
    return bad(h, msg);
  }
  q = *h->p++;
  while (h->p < h->end && *h->p != q) {
    if (*h->p == '\\') return bad(h, "escapes in strings are not supported");
    if (n + 1 >= cap) {
      snprintf(msg, sizeof msg, "%s is too long", what);
      return bad(h, msg);
    }
    buf[n++] = *h->p++;
  }
  if (h->p >= h->end) return bad(h, "unterminated string");
  h->p++;
  buf[n] = '\0';
  return PK_OK;
}

static int word(hdr *h, const char *w)
{
  size_t n = strlen(w);
  if ((size_t)(h->end - h->p) >= n && memcmp(h->p, w, n) == 0) {
    const char *after = h->p + n;
    if (after == h->end || !((*after >= 'a' && *after <= 'z') || (*after >= 'A' && *after <= 'Z') ||
                             (*after >= '0' && *after <= '9') || *after == '_')) {
      h->p = after;
      return 1;
    }
  }
  return 0;
}

/* A non-negative decimal integer (Python 2 wrote a trailing L). */
static pk_status read_dim(hdr *h, uint64_t *out)
{
  uint64_t v = 0;
  int c = peek(h);
  if (c == '-') return bad(h, "a negative dimension in 'shape'");
  if (c < '0' || c > '9') return bad(h, "'shape' must be a tuple of integers");
  while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
    unsigned d = (unsigned)(*h->p - '0');
    if (v > (UINT64_MAX - d) / 10) return bad(h, "a dimension in 'shape' is too large");
    v = 10 * v + d;
    h->p++;
  }
  if (h->p < h->end && (*h->p == 'L' || *h->p == 'l')) h->p++;
  *out = v;
  return PK_OK;
}

/* '(' [int (',' int)* [','] ] ')': a 1-tuple needs its comma, as in Python */
static pk_status read_shape(hdr *h)
{
  pk_status st;
  int commas = 0;
  char msg[128];
  if (peek(h) != '(') return bad(h, "'shape' must be a tuple such as (3, 4)");
  h->p++;
  h->ndim = 0;
  for (;;) {
    uint64_t d = 0;
    int c = peek(h);
    if (c == ')') break;
    if ((st = read_dim(h, &d))) return st;
    if (h->ndim < NPY_MAX_NDIM) h->dims[h->ndim] = d;
    h->ndim++;                    /* at most one per two header bytes: no overflow */
    c = peek(h);
    if (c == ',') { h->p++; commas++; continue; }
    if (c == ')') break;
    return bad(h, "expected ',' or ')' in 'shape'");
  }
  h->p++;
  if (h->ndim == 1 && commas == 0) return bad(h, "'shape' must be a tuple: (n,) not (n)");
  if (h->ndim > NPY_MAX_NDIM) {
    snprintf(msg, sizeof msg, "a %ld-dimensional array: only 0-, 1- and 2-dimensional arrays are "
             "supported (reshape it in NumPy)", h->ndim);
    return pk_fail(PK_EFORMAT, "%s: shape check failed: %s", h->name, msg);
  }
  return PK_OK;
}

static pk_status parse_header(hdr *h)
{
  pk_status st;
  char key[32], msg[96];
  if (peek(h) != '{') return bad(h, "not a Python dict literal (expected '{')");
  h->p++;
  for (;;) {
    int c = peek(h);
    if (c == '}') break;
    if ((st = read_string(h, key, sizeof key, "a key"))) return st;
    if (peek(h) != ':') return bad(h, "expected ':' after a key");
    h->p++;
    if (strcmp(key, "descr") == 0) {
      if (h->have_descr++) return bad(h, "duplicate key 'descr'");
      if (peek(h) == '[') return bad(h, "a structured dtype (descr is a list): not supported");
      if ((st = read_string(h, h->descr, sizeof h->descr, "'descr'"))) return st;
    } else if (strcmp(key, "fortran_order") == 0) {
      if (h->have_order++) return bad(h, "duplicate key 'fortran_order'");
      skip_ws(h);
      if (word(h, "True")) h->fortran = 1;
      else if (word(h, "False")) h->fortran = 0;
      else return bad(h, "'fortran_order' must be True or False");
    } else if (strcmp(key, "shape") == 0) {
      if (h->have_shape++) return bad(h, "duplicate key 'shape'");
      if ((st = read_shape(h))) return st;
    } else {
      snprintf(msg, sizeof msg, "unknown key '%s' (a .npy header has descr, fortran_order, shape)", key);
      return bad(h, msg);
    }
    c = peek(h);
    if (c == ',') { h->p++; continue; }
    if (c == '}') break;
    return bad(h, "expected ',' or '}' after a value");
  }
  h->p++;
  if (peek(h) != -1) return bad(h, "text after the closing '}'");
  if (!h->have_descr) return missing(h, "descr");
  if (!h->have_order) return missing(h, "fortran_order");
  if (!h->have_shape) return missing(h, "shape");
  return PK_OK;
}

/* ---- dtypes ------------------------------------------------------------ */

typedef enum { K_FLOAT, K_INT, K_UINT, K_BOOL } kind;

typedef struct dtype {
  kind k;
  size_t size;
  int big;            /* big-endian bytes */
} dtype;

static int host_big(void)
{
  const uint16_t one = 1;
  unsigned char c;
  memcpy(&c, &one, 1);
  return c == 0;
}

static pk_status parse_dtype(const char *name, const char *s, dtype *d)
{
  char order = s[0];
  const char *t = s + 1;
  int ok = 0;
  memset(d, 0, sizeof *d);
  if (order != '<' && order != '>' && order != '|' && order != '=') goto unsupported;
  if (strcmp(t, "f8") == 0) { d->k = K_FLOAT; d->size = 8; ok = 1; }
  else if (strcmp(t, "f4") == 0) { d->k = K_FLOAT; d->size = 4; ok = 1; }
  else if (strcmp(t, "i8") == 0) { d->k = K_INT; d->size = 8; ok = 1; }
  else if (strcmp(t, "i4") == 0) { d->k = K_INT; d->size = 4; ok = 1; }
  else if (strcmp(t, "i2") == 0) { d->k = K_INT; d->size = 2; ok = 1; }
  else if (strcmp(t, "i1") == 0) { d->k = K_INT; d->size = 1; ok = 1; }
  else if (strcmp(t, "u8") == 0) { d->k = K_UINT; d->size = 8; ok = 1; }
  else if (strcmp(t, "u4") == 0) { d->k = K_UINT; d->size = 4; ok = 1; }
  else if (strcmp(t, "u2") == 0) { d->k = K_UINT; d->size = 2; ok = 1; }
  else if (strcmp(t, "u1") == 0) { d->k = K_UINT; d->size = 1; ok = 1; }
  else if (strcmp(t, "b1") == 0) { d->k = K_BOOL; d->size = 1; ok = 1; }
  if (!ok) goto unsupported;
  /* '|' means "byte order not applicable": only for one-byte types */
  if (order == '|' && d->size > 1)
    return pk_fail(PK_EFORMAT, "%s: dtype check failed: '%s' gives no byte order for a "
                   "%zu-byte type", name, s, d->size);
  d->big = order == '>' || (order == '=' && host_big());
  return PK_OK;
unsupported:
  return pk_fail(PK_EFORMAT, "%s: dtype check failed: unsupported dtype '%s' (supported: float64 "
                 "'<f8', float32 '<f4', int64 '<i8', int32 '<i4', int16, int8, the unsigned "
                 "ones 'u1'..'u8' and bool '|b1', either byte order)", name, s);
}

/* one item at p as a double */
static double decode(const dtype *d, const unsigned char *p)
{
  uint64_t u = 0;
  size_t k;
  if (d->big)
    for (k = 0; k < d->size; k++) u = u << 8 | p[k];
  else
    for (k = d->size; k-- > 0;) u = u << 8 | p[k];
  switch (d->k) {
  case K_FLOAT:
    if (d->size == 8) {
      double v;
      memcpy(&v, &u, 8);
      return v;
    } else {
      uint32_t w = (uint32_t)u;
      float v;
      memcpy(&v, &w, 4);
      return (double)v;
    }
  case K_INT:
    /* sign-extend from size bytes (two's complement) */
    if (d->size < 8 && (u >> (8 * d->size - 1)) & 1) u |= ~(uint64_t)0 << (8 * d->size);
    {
      int64_t s;
      memcpy(&s, &u, 8);
      return (double)s;
    }
  case K_UINT:
    return (double)u;
  case K_BOOL:
    return u != 0;
  }
  return 0;
}

/* ---- reading ------------------------------------------------------------- */

pk_status pk_matrix_read_npy_mem(pk_matrix **out, const char *name, const unsigned char *buf,
                                 size_t len)
{
  hdr h;
  dtype d = { K_FLOAT, 8, 0 };
  size_t hlen, pre, rows, cols, n, i, j, need;
  unsigned major, minor;
  const unsigned char *data;
  pk_status st;
  *out = NULL;
  if (len < 6 || memcmp(buf, NPY_MAGIC, 6) != 0)
    return pk_fail(PK_EFORMAT, "%s: magic check failed: not a NumPy .npy file", name);
  if (len < 8) return pk_fail(PK_EFORMAT, "%s: length check failed: truncated header", name);
  major = buf[6];
  minor = buf[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0)
    return pk_fail(PK_EFORMAT, "%s: version check failed: .npy format version %u.%u (this build "
                   "reads 1.0, 2.0 and 3.0)", name, major, minor);
  pre = major == 1 ? 10 : 12;
  if (len < pre) return pk_fail(PK_EFORMAT, "%s: length check failed: truncated header", name);
  hlen = major == 1 ? (size_t)buf[8] | (size_t)buf[9] << 8
                    : (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
  if (hlen > len - pre)
    return pk_fail(PK_EFORMAT, "%s: length check failed: the header says %zu bytes, the file has "
                   "%zu after the prefix (truncated)", name, hlen, len - pre);
  memset(&h, 0, sizeof h);
  h.name = name;
  h.start = h.p = (const char *)buf + pre;
  h.end = h.p + hlen;
  if (memchr(h.p, '\0', hlen)) return bad(&h, "a NUL byte in the header");
  if ((st = parse_header(&h))) return st;
  if ((st = parse_dtype(name, h.descr, &d))) return st;
  /* 0-d: a 1 x 1 matrix; 1-d: a column; 2-d: as it is */
  if (h.ndim == 0) { rows = 1; cols = 1; }
  else if (h.ndim == 1) { rows = (size_t)h.dims[0]; cols = 1; }
  else { rows = (size_t)h.dims[0]; cols = (size_t)h.dims[1]; }
  for (i = 0; i < (size_t)h.ndim; i++)
    if (h.dims[i] > PK_MAX_DIM)
      return pk_fail(PK_EFORMAT, "%s: shape check failed: dimension %llu is above %d (the BLAS "
                     "limit)", name, (unsigned long long)h.dims[i], PK_MAX_DIM);
  data = buf + pre + hlen;
  if ((cols && rows > SIZE_MAX / cols) || (n = rows * cols) > SIZE_MAX / d.size ||
      (need = n * d.size) != len - pre - hlen)
    return pk_fail(PK_EFORMAT, "%s: size check failed: a %zu x %zu array of '%s' needs %.0f data "
                   "bytes, the file has %zu (truncated or extended)", name, rows, cols, h.descr,
                   (double)rows * (double)cols * (double)d.size, len - pre - hlen);
  if ((st = pk_matrix_new(out, rows, cols))) return pk_fail_in(st, name);
  if (d.k == K_FLOAT && d.size == 8 && d.big == host_big() && (!h.fortran || h.ndim < 2)) {
    if (n) memcpy((*out)->data, data, n * 8);    /* already doubles in this machine's order */
  } else if (!h.fortran || h.ndim < 2) {
    for (i = 0; i < n; i++) (*out)->data[i] = decode(&d, data + i * d.size);
  } else {
    /* column-major: item j * rows + i is entry (i, j) */
    for (j = 0; j < cols; j++)
      for (i = 0; i < rows; i++)
        (*out)->data[i * cols + j] = decode(&d, data + (j * rows + i) * d.size);
  }
  return PK_OK;
}

pk_status pk_matrix_read_npy(pk_matrix **out, const char *path)
{
  unsigned char *buf;
  size_t len;
  pk_status st;
  *out = NULL;
  if ((st = pk_read_file(path, &buf, &len))) return st;
  st = pk_matrix_read_npy_mem(out, path, buf, len);
  free(buf);
  return st;
}

/* ---- writing ------------------------------------------------------------- */

/* numpy.save's header for a 2-d float64 C-order array, byte for byte:
 * the dict with its keys sorted, room for the first dimension to grow to
 * 21 digits, then spaces and '\n' up to a multiple of 64 bytes counted
 * from the start of the file. */
static size_t npy_header(char *buf, size_t cap, size_t rows, size_t cols)
{
  char dict[128], shape[48];
  int len, grow, hlen, pad;
  snprintf(shape, sizeof shape, "(%zu, %zu)", rows, cols);
  len = snprintf(dict, sizeof dict, "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }", shape);
  grow = 21 - snprintf(NULL, 0, "%zu", rows);
  hlen = len + (grow > 0 ? grow : 0) + 1;              /* the dict, growth room and '\n' */
  pad = 64 - (10 + hlen) % 64;
  if ((size_t)(10 + hlen + pad) > cap) return 0;
  memcpy(buf, NPY_MAGIC, 6);
  buf[6] = 1;
  buf[7] = 0;
  buf[8] = (char)((hlen + pad) & 0xff);
  buf[9] = (char)((hlen + pad) >> 8);
  memcpy(buf + 10, dict, (size_t)len);
  memset(buf + 10 + len, ' ', (size_t)(hlen - 1 - len + pad));
  buf[10 + hlen + pad - 1] = '\n';
  return (size_t)(10 + hlen + pad);
}

pk_status pk_matrix_emit_npy(FILE *f, const pk_matrix *a, int *err)
{
  char head[256];
  size_t n = npy_header(head, sizeof head, a->rows, a->cols);
  pk_writer w;
  if (!n) return pk_fail(PK_EINVAL, "write_npy: the header does not fit");
  memset(&w, 0, sizeof w);
  w.f = f;
  errno = 0;
  pk_put_bytes(&w, head, n);
  pk_put_f64s(&w, a->data, a->rows * a->cols);   /* little-endian, as '<f8' says */
  *err = w.err;
  return PK_OK;
}

static pk_status emit_npy(FILE *f, const void *ctx, int *err)
{
  return pk_matrix_emit_npy(f, ctx, err);
}

pk_status pk_matrix_write_npy(const pk_matrix *a, const char *path)
{
  return pk_save_stream(path, emit_npy, a);
}
