/* container.c - the PATHKRNL container (magic, version, tag, length,
 * payload, CRC-32 by zlib), atomic saves of any file, checked loads, whole
 * files read, and the matrix as a container object. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <signal.h>
#include <dirent.h>
#include <stdint.h>
#define ZLIB_CONST             /* zlib reads input through const pointers */
#include <zlib.h>
#include "pk_file.h"

static const char MAGIC[8] = { 'P', 'A', 'T', 'H', 'K', 'R', 'N', 'L' };
#define HEADER_BYTES 24u   /* magic 8, version 4, tag 4, payload length 8 */

/* zlib's CRC-32 (the same polynomial and conditioning as the table this
 * file used to carry, so saved files stay byte for byte the same); zlib
 * takes lengths as unsigned int, hence the chunks. */
uint32_t pk_crc32(uint32_t crc, const void *buf, size_t n)
{
  const unsigned char *p = buf;
  uLong c = crc;
  while (n > 0) {
    uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
    c = crc32(c, p, k);
    p += k;
    n -= k;
  }
  return (uint32_t)c;
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

/* Write obj framed as one object: header, payload, CRC. I/O errors are left
 * in *err (an errno value) for the caller, who knows the path. */
pk_status pk_write_object(FILE *f, pk_tag tag, pk_serialize_fn fn, const void *obj, int *err)
{
  pk_writer w;
  pk_status st;
  uint64_t payload;
  uint32_t version;

  memset(&w, 0, sizeof w);
  if ((st = fn(&w, obj))) return st;   /* counting pass */
  payload = w.n;
  version = w.version ? w.version : 1u;
  memset(&w, 0, sizeof w);
  w.f = f;
  w.version = version;
  errno = 0;
  pk_put_bytes(&w, MAGIC, 8);
  pk_put_u32(&w, version);
  pk_put_u32(&w, (uint32_t)tag);
  pk_put_u64(&w, payload);
  if ((st = fn(&w, obj))) return st;
  pk_put_u32(&w, w.crc);
  if (!w.err && w.n != HEADER_BYTES + payload + 4)
    return pk_fail(PK_EINVAL, "save: the serializer wrote %llu payload bytes after counting %llu",
                   (unsigned long long)(w.n - HEADER_BYTES - 4), (unsigned long long)payload);
  *err = w.err;
  return PK_OK;
}

/* The folder part of path ("." when there is none), malloc'd. */
static char *dir_of(const char *path)
{
  const char *slash = strrchr(path, '/');
  size_t n = slash ? (slash == path ? 1 : (size_t)(slash - path)) : 1;
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, slash ? path : ".", n);
  d[n] = '\0';
  return d;
}

/* A save writes "<path>.tmp<pid>". One whose process is gone was left by a
 * crash (a failure of a running save removes its own): remove those, so
 * temporaries never pile up beside a file that is saved again and again. */
static void remove_stale_temps(const char *path)
{
  const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
  size_t blen = strlen(base);
  char *dir = dir_of(path);
  DIR *d = dir ? opendir(dir) : NULL;
  struct dirent *e;
  if (!d) { free(dir); return; }
  while ((e = readdir(d)) != NULL) {
    const char *p = e->d_name;
    char *end, *full;
    long pid;
    if (blen == 0 || strncmp(p, base, blen) != 0 || strncmp(p + blen, ".tmp", 4) != 0) continue;
    p += blen + 4;
    if (*p < '0' || *p > '9') continue;
    errno = 0;
    pid = strtol(p, &end, 10);
    if (*end || errno || pid <= 0 || pid == (long)getpid()) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;   /* alive, or not ours to judge */
    full = malloc(strlen(dir) + strlen(e->d_name) + 2);
    if (!full) break;
    sprintf(full, "%s/%s", dir, e->d_name);
    unlink(full);
    free(full);
  }
  closedir(d);
  free(dir);
}

/* After the rename, fsync the folder so the new name itself is durable.
 * Best effort: some file systems refuse fsync on a folder. */
static void sync_dir(const char *path)
{
  char *dir = dir_of(path);
  int fd = dir ? open(dir, O_RDONLY) : -1;
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  free(dir);
}

/* Write through emit to a temporary file beside path, fsync it and rename it
 * into place: whatever fails, the file that was at path is untouched and the
 * temporary is gone. Only regular files are replaced (never a device, a
 * FIFO or a folder). */
static pk_status atomic_save(const char *path, pk_emit_fn emit, const void *ctx)
{
  struct stat sb;
  pk_status st;
  size_t len = strlen(path) + 32;
  char *tmp;
  FILE *f;
  int fd, err = 0;

  int exists = stat(path, &sb) == 0;
  /* a file that exists keeps its permission bits (a private file stays
   * private); a new one gets what fopen would give it, 0666 less umask */
  mode_t mode = exists ? (sb.st_mode & 0777) : 0666;

  if (exists && !S_ISREG(sb.st_mode))
    return pk_fail(PK_EIO, "%s: %s", path, S_ISDIR(sb.st_mode) ? "is a directory" :
                   "not a regular file (a save only replaces regular files)");
  tmp = malloc(len);
  if (!tmp) return pk_fail(PK_ENOMEM, "save: out of memory");
  snprintf(tmp, len, "%s.tmp%ld", path, (long)getpid());
  remove_stale_temps(path);
  /* a fresh file, never one already there (a link planted at the
   * temporary's name is not followed), created with at most the final
   * mode, so the data is never more readable than the file will be */
  if (unlink(tmp) != 0 && errno != ENOENT) {
    st = pk_fail(PK_EIO, "%s: %s", path, strerror(errno));
    free(tmp);
    return st;
  }
  fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode);
  if (fd < 0) {
    st = pk_fail(PK_EIO, "%s: %s", path, strerror(errno));
    free(tmp);
    return st;
  }
  /* the umask may have taken bits the old file had: give them back. Best
   * effort (some file systems refuse): failing leaves fewer bits, never
   * more, so nothing becomes readable that was not */
  if (exists) (void)fchmod(fd, mode);
  f = fdopen(fd, "wb");
  if (!f) {
    err = errno;
    close(fd);
    goto io_fail;
  }
  if ((st = emit(f, ctx, &err))) {
    fclose(f);
    goto fail;
  }
  if (!err && fflush(f) != 0) err = errno ? errno : EIO;
  if (!err && fsync(fileno(f)) != 0) err = errno ? errno : EIO;
  if (fclose(f) != 0 && !err) err = errno ? errno : EIO;
  if (err) goto io_fail;
  if (rename(tmp, path) != 0) {
    err = errno;
    goto io_fail;
  }
  sync_dir(path);
  free(tmp);
  return PK_OK;
io_fail:
  st = pk_fail(PK_EIO, "%s: %s", path, strerror(err ? err : EIO));
fail:
  remove(tmp);
  free(tmp);
  return st;
}

struct framed { pk_tag tag; pk_serialize_fn fn; const void *obj; };

static pk_status emit_framed(FILE *f, const void *ctx, int *err)
{
  const struct framed *o = ctx;
  return pk_write_object(f, o->tag, o->fn, o->obj, err);
}

pk_status pk_save_object(const char *path, pk_tag tag, pk_serialize_fn fn, const void *obj)
{
  struct framed o;
  o.tag = tag;
  o.fn = fn;
  o.obj = obj;
  return atomic_save(path, emit_framed, &o);
}

pk_status pk_save_stream(const char *path, pk_emit_fn emit, const void *ctx)
{
  return atomic_save(path, emit, ctx);
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

pk_status pk_read_file(const char *path, unsigned char **buf, size_t *len)
{
  /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused
   * below like every other file that is not a regular one */
  int fd = open(path, O_RDONLY | O_NONBLOCK);
  struct stat sb;
  size_t n, got = 0;
  char what[96];
  pk_status st;
  *buf = NULL;
  *len = 0;
  if (fd < 0) return pk_fail(PK_EIO, "%s: %s", path, strerror(errno));
  if (fstat(fd, &sb) != 0) {
    st = pk_fail(PK_EIO, "%s: %s", path, strerror(errno));
    close(fd);
    return st;
  }
  if (!S_ISREG(sb.st_mode)) {
    close(fd);
    return pk_fail(PK_EIO, "%s: %s", path, S_ISDIR(sb.st_mode) ? "is a directory" :
                   "not a regular file");
  }
  if (sb.st_size < 0 || (uintmax_t)sb.st_size >= (uintmax_t)SIZE_MAX) {
    close(fd);
    return pk_fail(PK_ENOMEM, "%s: the file is too large for this machine", path);
  }
  n = (size_t)sb.st_size;
  snprintf(what, sizeof what, "reading %.60s%s", path, strlen(path) > 60 ? "..." : "");
  if ((st = pk_alloc((void **)buf, n + 1, 1, what))) {
    close(fd);
    return st;
  }
  while (got < n) {            /* a file that shrinks meanwhile is read as it is now */
    ssize_t k = read(fd, *buf + got, n - got);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      st = pk_fail(PK_EIO, "%s: %s", path, strerror(errno));
      close(fd);
      free(*buf);
      *buf = NULL;
      return st;
    }
    if (k == 0) break;
    got += (size_t)k;
  }
  close(fd);
  (*buf)[got] = '\0';
  *len = got;
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
  if (version < 1 || version > PK_FORMAT_VERSION)
    return pk_fail(PK_EFORMAT, "%s: version check failed: format version %u, this build reads 1 "
                   "to %u", path, version, PK_FORMAT_VERSION);
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
    r->version = version;
  }
  return PK_OK;
}

void pk_writer_need(pk_writer *w, uint32_t version)
{
  if (version > w->version) w->version = version;
}

pk_status pk_load_object_mem(const char *name, const unsigned char *buf, size_t len,
                             pk_tag want, pk_reader *r)
{
  pk_tag tag;
  pk_status st = check_frame(name, buf, len, &tag, r);
  if (st) return st;
  if (tag != want)
    return pk_fail(PK_EFORMAT, "%s: tag check failed: holds a %s, not a %s", name,
                   tag_name(tag), tag_name(want));
  return PK_OK;
}

pk_status pk_load_object(const char *path, pk_tag want, unsigned char **buf, pk_reader *r)
{
  size_t len;
  pk_status st = pk_read_file(path, buf, &len);
  if (st) return st;
  if ((st = pk_load_object_mem(path, *buf, len, want, r))) {
    free(*buf);
    *buf = NULL;
  }
  return st;
}

pk_status pk_reader_end(const pk_reader *r, const char *name, pk_serialize_fn fn,
                        const void *obj)
{
  pk_writer w;
  pk_status st;
  uint32_t need;
  if (r->err) return pk_fail(PK_EFORMAT, "%s: length check failed: the payload is truncated", name);
  if (r->pos != r->n)
    return pk_fail(PK_EFORMAT, "%s: length check failed: %zu stray payload bytes", name,
                   r->n - r->pos);
  memset(&w, 0, sizeof w);
  if ((st = fn(&w, obj))) return pk_fail_in(st, name);   /* counting: writes nothing */
  need = w.version ? w.version : 1u;
  if (r->version != need)
    return pk_fail(PK_EFORMAT, "%s: version check failed: a file of format version %u holds an "
                   "object of version %u", name, r->version, need);
  return PK_OK;
}

pk_status pk_file_tag_mem(const char *name, const unsigned char *buf, size_t len, pk_tag *tag)
{
  pk_status st = check_frame(name, buf, len, tag, NULL);
  if (!st && (*tag < PK_TAG_MATRIX || *tag > PK_TAG_REGRESSOR))
    st = pk_fail(PK_EFORMAT, "%s: tag check failed: unknown object tag %u", name, (unsigned)*tag);
  return st;
}

pk_status pk_file_tag(const char *path, pk_tag *tag)
{
  unsigned char *buf;
  size_t len;
  pk_status st = pk_read_file(path, &buf, &len);
  if (st) return st;
  st = pk_file_tag_mem(path, buf, len, tag);
  free(buf);
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

pk_status pk_matrix_load_mem(pk_matrix **out, const char *name, const unsigned char *buf,
                             size_t len)
{
  pk_reader r;
  pk_status st;
  *out = NULL;
  if ((st = pk_load_object_mem(name, buf, len, PK_TAG_MATRIX, &r))) return st;
  if ((st = pk_matrix_read_payload(&r, out)) ||
      (st = pk_reader_end(&r, name, pk_matrix_write_payload, *out))) {
    pk_matrix_free(*out);
    *out = NULL;
  }
  return st;
}

pk_status pk_matrix_load(pk_matrix **out, const char *path)
{
  unsigned char *buf;
  size_t len;
  pk_status st;
  *out = NULL;
  if ((st = pk_read_file(path, &buf, &len))) return st;
  st = pk_matrix_load_mem(out, path, buf, len);
  free(buf);
  return st;
}
