/* pk_file.h - the PATHKRNL container (container.c): the framing every
 * object file shares (magic, version, tag, length, payload, CRC), the
 * writer and the bounds-checked reader of payloads, atomic saves of any
 * file, whole files read, and the matrix as a container object. */
#ifndef PK_FILE_H
#define PK_FILE_H

#include "pk_base.h"

/* The newest format version this build reads; it reads every older one.
 * Version 2: a trajectory (alone or inside a kernel machine) ends with its
 * per-example loss weights (a count of 0 when it has none); a network that
 * layout 1 cannot describe (leaky_relu, layer kinds) is stored as layer
 * records (network.c). A file is written with the lowest version that
 * holds its object, so objects without the newer parts stay readable by
 * older builds byte for byte. */
#define PK_FORMAT_VERSION 2u

uint32_t pk_crc32(uint32_t crc, const void *buf, size_t n);

/* A writer either counts bytes (f == NULL) or writes them to a file while
 * keeping the running CRC; serializers run once to count and once to
 * write, so the header can state the payload length up front. version:
 * the format version the payload needs (0 or 1: version 1); a serializer
 * raises it with pk_writer_need during the counting pass, and the header
 * states it. */
typedef struct pk_writer {
  FILE *f;
  uint64_t n;
  uint32_t crc;
  int err;
  uint32_t version;
} pk_writer;

void pk_writer_need(pk_writer *w, uint32_t version);

void pk_put_bytes(pk_writer *w, const void *p, size_t n);
void pk_put_u32(pk_writer *w, uint32_t v);
void pk_put_u64(pk_writer *w, uint64_t v);
void pk_put_f64(pk_writer *w, double v);
void pk_put_f64s(pk_writer *w, const double *v, size_t n);

typedef pk_status (*pk_serialize_fn)(pk_writer *w, const void *obj);

/* Write obj as one checksummed object to a temporary file beside path,
 * fsync it and rename it into place: the old file survives any failure.
 * Temporaries are "<path>.tmp<pid>"; a save removes those of dead processes. */
pk_status pk_save_object(const char *path, pk_tag tag, pk_serialize_fn fn,
                         const void *obj);
/* Any file written the same atomic way: emit writes the bytes to f and
 * leaves an I/O error in *err (an errno value); a status it returns
 * aborts the save. What write_csv and write_npy use. */
typedef pk_status (*pk_emit_fn)(FILE *f, const void *ctx, int *err);
pk_status pk_save_stream(const char *path, pk_emit_fn emit, const void *ctx);
/* The framed object (header, payload, CRC) written to any stream; an I/O
 * error is left in *err as an errno value. */
pk_status pk_write_object(FILE *f, pk_tag tag, pk_serialize_fn fn, const void *obj, int *err);

/* A bounds-checked reader over a payload held in memory. */
typedef struct pk_reader {
  const unsigned char *p;
  size_t n, pos;
  int err;
  uint32_t version;        /* the file's format version (set by the loaders) */
} pk_reader;

uint32_t pk_get_u32(pk_reader *r);
uint64_t pk_get_u64(pk_reader *r);
double pk_get_f64(pk_reader *r);
void pk_get_f64s(pk_reader *r, double *out, size_t n);
/* a count that must fit both size_t and the bytes left (each item >= unit
 * bytes), so corrupt sizes cannot ask for absurd allocations */
pk_status pk_get_count(pk_reader *r, size_t unit, size_t *out, const char *what);

/* Read a whole file, check magic, version, length and CRC; on success
 * *buf holds the file (free it) and *r reads its payload. */
pk_status pk_load_object(const char *path, pk_tag want, unsigned char **buf,
                         pk_reader *r);
/* The same checks on a file image in memory (name is used in messages):
 * what every loader runs, and what the fuzz harnesses call. */
pk_status pk_load_object_mem(const char *name, const unsigned char *buf, size_t len,
                             pk_tag want, pk_reader *r);
pk_status pk_file_tag_mem(const char *name, const unsigned char *buf, size_t len, pk_tag *tag);
/* After a payload is read into obj: PK_OK only if it was read exactly to
 * its end, and the file states the version a save of obj (by fn) states,
 * the lowest that holds it: a file that loads saves back the same bytes. */
pk_status pk_reader_end(const pk_reader *r, const char *name, pk_serialize_fn fn,
                        const void *obj);
/* A whole regular file into *buf (NUL-terminated, *len bytes; free it).
 * Folders, devices and FIFOs are refused with PK_EIO. */
pk_status pk_read_file(const char *path, unsigned char **buf, size_t *len);
pk_status pk_matrix_load_mem(pk_matrix **out, const char *name, const unsigned char *buf,
                             size_t len);
pk_status pk_matrix_read_payload(pk_reader *r, pk_matrix **out);
pk_status pk_matrix_write_payload(pk_writer *w, const void *a);

#endif
