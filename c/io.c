/* io.c - the PATHKRNL container (magic, version, tag, length, payload,
 * CRC-32), atomic saves, checked loads, and CSV. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include "pk_internal.h"

static const char MAGIC[8] = { 'P', 'A', 'T', 'H', 'K', 'R', 'N', 'L' };
#define HEADER_BYTES 24u   /* magic 8, version 4, tag 4, payload length 8 */

uint32_t pk_crc32(uint32_t crc, const void *buf, size_t n)
{
  static uint32_t table[256];
  static int ready;
  const unsigned char *p = buf;
  size_t i;
  if (!ready) {
    uint32_t k, c;
    int j;
    for (k = 0; k < 256; k++) {
      c = k;
      for (j = 0; j < 8; j++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
      table[k] = c;
    }
    ready = 1;
  }
  crc = ~crc;
  for (i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

/* ---- writing --------------------------------------------------------- */

void pk_put_bytes(pk_writer *w, const void *p, size_t n)
{
  w->n += n;
  if (!w->f || w->err) return;
  w->crc = pk_crc32(w->crc, p, n);
  if (n && fwrite(p, 1, n, w->f) != n) w->err = errno ? errno : EIO;
}

void pk_put_u32(pk_writer *w, uint32_t v)
{
  unsigned char b[4];
  int i;
  for (i = 0; i < 4; i++) b[i] = (unsigned char)(v >> (8 * i));
  pk_put_bytes(w, b, 4);
}

void pk_put_u64(pk_writer *w, uint64_t v)
{
  unsigned char b[8];
  int i;
  for (i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
  pk_put_bytes(w, b, 8);
}

void pk_put_f64(pk_writer *w, double v)
{
  uint64_t u;
  memcpy(&u, &v, 8);
  pk_put_u64(w, u);
}

void pk_put_f64s(pk_writer *w, const double *v, size_t n)
{
  unsigned char buf[8 * 512];
  size_t i, k;
  if (!w->f) { w->n += 8 * (uint64_t)n; return; }
  while (n) {
    size_t chunk = n < 512 ? n : 512;
    for (i = 0; i < chunk; i++) {
      uint64_t u;
      memcpy(&u, &v[i], 8);
      for (k = 0; k < 8; k++) buf[8 * i + k] = (unsigned char)(u >> (8 * k));
    }
    pk_put_bytes(w, buf, 8 * chunk);
    v += chunk;
    n -= chunk;
  }
}

pk_status pk_save_object(const char *path, pk_tag tag, pk_serialize_fn fn, const void *obj)
{
  pk_writer w;
  pk_status st;
  char *tmp;
  size_t len = strlen(path);
  int fd, e;
  uint64_t payload;

  memset(&w, 0, sizeof w);
  if ((st = fn(&w, obj))) return st;   /* counting pass */
  payload = w.n;

  tmp = malloc(len + 16);
  if (!tmp) return pk_fail(PK_ENOMEM, "save: out of memory");
  snprintf(tmp, len + 16, "%s.tmp%ld", path, (long)getpid());
  fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    st = pk_fail(PK_EIO, "%s: %s", path, strerror(errno));
    free(tmp);
    return st;
  }
  memset(&w, 0, sizeof w);
  w.f = fdopen(fd, "wb");
  if (!w.f) {
    st = pk_fail(PK_EIO, "%s: %s", path, strerror(errno));
    close(fd);
    goto fail;
  }
  errno = 0;
  pk_put_bytes(&w, MAGIC, 8);
  pk_put_u32(&w, PK_FORMAT_VERSION);
  pk_put_u32(&w, (uint32_t)tag);
  pk_put_u64(&w, payload);
  if ((st = fn(&w, obj))) { fclose(w.f); goto fail; }
  pk_put_u32(&w, w.crc);
  if (!w.err && w.n != HEADER_BYTES + payload + 4) w.err = EINVAL;
  if (!w.err && fflush(w.f) != 0) w.err = errno ? errno : EIO;
  if (!w.err && fsync(fileno(w.f)) != 0) w.err = errno ? errno : EIO;
  if (fclose(w.f) != 0 && !w.err) w.err = errno ? errno : EIO;
  if (w.err) {
    st = pk_fail(PK_EIO, "%s: %s", path, strerror(w.err));
    goto fail;
  }
  if (rename(tmp, path) != 0) {
    st = pk_fail(PK_EIO, "%s: %s", path, strerror(errno));
    goto fail;
  }
  free(tmp);
  return PK_OK;
fail:
  e = errno;
  remove(tmp);
  errno = e;
  free(tmp);
  return st;
}

/* ---- reading --------------------------------------------------------- */

uint32_t pk_get_u32(pk_reader *r)
{
  uint32_t v = 0;
  int i;
  if (r->err || r->n - r->pos < 4) { r->err = 1; return 0; }
  for (i = 0; i < 4; i++) v |= (uint32_t)r->p[r->pos + i] << (8 * i);
  r->pos += 4;
  return v;
}

uint64_t pk_get_u64(pk_reader *r)
{
  uint64_t v = 0;
  int i;
  if (r->err || r->n - r->pos < 8) { r->err = 1; return 0; }
  for (i = 0; i < 8; i++) v |= (uint64_t)r->p[r->pos + i] << (8 * i);
  r->pos += 8;
  return v;
}

double pk_get_f64(pk_reader *r)
{
  uint64_t u = pk_get_u64(r);
  double v;
  memcpy(&v, &u, 8);
  return v;
}

void pk_get_f64s(pk_reader *r, double *out, size_t n)
{
  size_t i;
  if (r->err || (r->n - r->pos) / 8 < n) { r->err = 1; return; }
  for (i = 0; i < n; i++) out[i] = pk_get_f64(r);
}

pk_status pk_get_count(pk_reader *r, size_t unit, size_t *out, const char *what)
{
  uint64_t v = pk_get_u64(r);
  if (r->err) return pk_fail(PK_EFORMAT, "file is truncated (reading %s)", what);
  if (unit && v > (r->n - r->pos) / unit)
    return pk_fail(PK_EFORMAT, "size check failed: %s of %llu does not fit the file",
                   what, (unsigned long long)v);
  *out = (size_t)v;
  return PK_OK;
}

static pk_status read_file(const char *path, unsigned char **buf, size_t *len)
{
  FILE *f = fopen(path, "rb");
  long n;
  pk_status st;
  *buf = NULL;
  if (!f) return pk_fail(PK_EIO, "%s: %s", path, strerror(errno));
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    st = pk_fail(PK_EIO, "%s: cannot determine its size (%s)", path, strerror(errno));
    fclose(f);
    return st;
  }
  if ((st = pk_alloc((void **)buf, (size_t)n + 1, 1, "reading the file"))) {
    fclose(f);
    return st;
  }
  if ((size_t)n && fread(*buf, 1, (size_t)n, f) != (size_t)n) {
    st = pk_fail(PK_EIO, "%s: read failed", path);
    fclose(f);
    free(*buf);
    *buf = NULL;
    return st;
  }
  fclose(f);
  *len = (size_t)n;
  return PK_OK;
}

static const char *tag_name(uint32_t t)
{
  switch (t) {
  case PK_TAG_MATRIX: return "matrix";
  case PK_TAG_NETWORK: return "network";
  case PK_TAG_TRAJECTORY: return "trajectory";
  case PK_TAG_MACHINE: return "kernel machine";
  case PK_TAG_REGRESSOR: return "kernel regressor";
  }
  return "unknown object";
}

static pk_status check_frame(const char *path, const unsigned char *b, size_t len,
                             pk_tag *tag, pk_reader *r)
{
  pk_reader h;
  uint32_t version, t, crc;
  uint64_t payload;
  if (len < 8 || memcmp(b, MAGIC, 8) != 0)
    return pk_fail(PK_EFORMAT, "%s: magic check failed: not a pathkernel file", path);
  if (len < HEADER_BYTES + 4)
    return pk_fail(PK_EFORMAT, "%s: length check failed: truncated header", path);
  h.p = b; h.n = len; h.pos = 8; h.err = 0;
  version = pk_get_u32(&h);
  t = pk_get_u32(&h);
  payload = pk_get_u64(&h);
  if (version != PK_FORMAT_VERSION)
    return pk_fail(PK_EFORMAT, "%s: version check failed: format version %u, this build reads %u",
                   path, version, PK_FORMAT_VERSION);
  if (payload != (uint64_t)(len - HEADER_BYTES - 4))
    return pk_fail(PK_EFORMAT, "%s: length check failed: header says %llu payload bytes, "
                   "file has %llu (truncated or extended)", path,
                   (unsigned long long)payload, (unsigned long long)(len - HEADER_BYTES - 4));
  h.pos = len - 4;
  crc = pk_get_u32(&h);
  if (crc != pk_crc32(0, b, len - 4))
    return pk_fail(PK_EFORMAT, "%s: checksum check failed: the file is corrupt", path);
  *tag = (pk_tag)t;
  if (r) {
    r->p = b + HEADER_BYTES;
    r->n = (size_t)payload;
    r->pos = 0;
    r->err = 0;
  }
  return PK_OK;
}

pk_status pk_load_object(const char *path, pk_tag want, unsigned char **buf, pk_reader *r)
{
  size_t len;
  pk_tag tag;
  pk_status st = read_file(path, buf, &len);
  if (st) return st;
  if ((st = check_frame(path, *buf, len, &tag, r))) goto fail;
  if (tag != want) {
    st = pk_fail(PK_EFORMAT, "%s: tag check failed: holds a %s, not a %s", path,
                 tag_name(tag), tag_name(want));
    goto fail;
  }
  return PK_OK;
fail:
  free(*buf);
  *buf = NULL;
  return st;
}

pk_status pk_file_tag(const char *path, pk_tag *tag)
{
  unsigned char *buf;
  size_t len;
  pk_status st = read_file(path, &buf, &len);
  if (st) return st;
  st = check_frame(path, buf, len, tag, NULL);
  free(buf);
  if (!st && (*tag < PK_TAG_MATRIX || *tag > PK_TAG_REGRESSOR))
    st = pk_fail(PK_EFORMAT, "%s: tag check failed: unknown object tag %u", path, (unsigned)*tag);
  return st;
}

/* ---- matrices in files ----------------------------------------------- */

pk_status pk_matrix_write_payload(pk_writer *w, const void *obj)
{
  const pk_matrix *a = obj;
  pk_put_u64(w, a->rows);
  pk_put_u64(w, a->cols);
  pk_put_f64s(w, a->data, a->rows * a->cols);
  return PK_OK;
}

pk_status pk_matrix_read_payload(pk_reader *r, pk_matrix **out)
{
  size_t rows = 0, cols = 0, n;
  pk_status st;
  *out = NULL;
  if ((st = pk_get_count(r, 0, &rows, "rows"))) return st;
  if ((st = pk_get_count(r, 0, &cols, "cols"))) return st;
  if ((cols && rows > SIZE_MAX / cols) || (n = rows * cols) > (r->n - r->pos) / 8)
    return pk_fail(PK_EFORMAT, "size check failed: a %zu x %zu matrix does not fit the file",
                   rows, cols);
  if ((st = pk_matrix_new(out, rows, cols))) return st;
  pk_get_f64s(r, (*out)->data, n);
  return PK_OK;
}

pk_status pk_matrix_save(const pk_matrix *a, const char *path)
{
  return pk_save_object(path, PK_TAG_MATRIX, pk_matrix_write_payload, a);
}

pk_status pk_matrix_load(pk_matrix **out, const char *path)
{
  unsigned char *buf;
  pk_reader r;
  pk_status st = pk_load_object(path, PK_TAG_MATRIX, &buf, &r);
  *out = NULL;
  if (st) return st;
  st = pk_matrix_read_payload(&r, out);
  if (!st && r.pos != r.n)
    st = pk_fail(PK_EFORMAT, "%s: length check failed: %zu stray payload bytes", path,
                 r.n - r.pos);
  if (st && *out) { pk_matrix_free(*out); *out = NULL; }
  free(buf);
  return st;
}

/* ---- CSV ------------------------------------------------------------- */

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
      errno = 0;
      v = strtod(q, &stop);
      while (*stop == ' ' || *stop == '\t') stop++;
      col++;
      if (stop == q || *stop != '\0') {
        st = pk_fail(PK_EINVAL, "%s: line %zu, column %zu: bad number '%.40s'", path, line,
                     col, q);
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

pk_status pk_matrix_read_csv(pk_matrix **out, const char *path, const pk_csv_opts *opts,
                             char **header)
{
  unsigned char *buf;
  size_t len;
  pk_status st;
  char sep = opts && opts->sep ? opts->sep : ',';
  *out = NULL;
  if (header) *header = NULL;
  if ((st = read_file(path, &buf, &len))) return st;
  buf[len] = '\0';
  if (memchr(buf, '\0', len))
    st = pk_fail(PK_EINVAL, "%s: not a text file (contains NUL bytes)", path);
  else
    st = parse_csv(path, (char *)buf, len, sep, opts && opts->header, out, header);
  free(buf);
  if (st && header && *header) { free(*header); *header = NULL; }
  return st;
}

pk_status pk_matrix_write_csv(const pk_matrix *a, const char *path, const char *header)
{
  FILE *f = fopen(path, "w");
  size_t i, j;
  int bad = 0;
  if (!f) return pk_fail(PK_EIO, "%s: %s", path, strerror(errno));
  if (header && fprintf(f, "%s\n", header) < 0) bad = 1;
  for (i = 0; i < a->rows && !bad; i++)
    for (j = 0; j < a->cols; j++)
      if (fprintf(f, "%.17g%c", a->data[i * a->cols + j], j + 1 < a->cols ? ',' : '\n') < 0) {
        bad = 1;
        break;
      }
  if (fclose(f) != 0) bad = 1;
  if (bad) return pk_fail(PK_EIO, "%s: write failed", path);
  return PK_OK;
}
