/* fuzz.h - what the libFuzzer harnesses share. A harness is one file
 * fuzz/fuzz_NAME.c; the Makefile finds it, fuzz/seeds.lua writes its seed
 * corpus into build-fuzz/corpus/NAME/, and inputs that once failed live in
 * fuzz/regress/NAME/ (replayed by every `make fuzz` and by a spec).
 *
 * A loader of the PATHKRNL container is one line:
 *
 *   PK_FUZZ_OBJECT(PK_TAG_MATRIX, pk_matrix, pk_matrix_load_mem,
 *                  pk_matrix_write_payload, pk_matrix_free)
 *
 * It runs the loader on the input as it is (the frame checks), and again
 * with the frame repaired (magic, version, tag, length and CRC made right)
 * so that mutations reach the payload parser instead of dying at the
 * checksum. Oracles: a failure must come with a message; an object that
 * loads must save back to exactly the bytes it was loaded from (the format
 * is canonical), so a loader cannot accept what it does not understand. */
#ifndef PK_FUZZ_H
#define PK_FUZZ_H

#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pk_file.h"

#define PK_FUZZ_HEADER 24u   /* magic 8, version 4, tag 4, payload length 8 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static inline void pk_fuzz_die(const char *what)
{
  fprintf(stderr, "pk fuzz oracle failed: %s (last error: %s)\n", what, pk_last_error());
  abort();
}

/* a status and its message must agree: no failure without a reason */
static inline void pk_fuzz_check_status(pk_status st)
{
  if (st != PK_OK && pk_last_error()[0] == '\0') pk_fuzz_die("a failure without a message");
  if (st != PK_OK && st != PK_EINVAL && st != PK_ENOMEM && st != PK_EFORMAT)
    pk_fuzz_die("a loader of bytes in memory answered an unexpected status");
}

static inline void pk_fuzz_put(unsigned char *p, uint64_t v, int n)
{
  int i;
  for (i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* A copy of data whose frame says: an object with this tag, of the format
 * version the input names if this build reads it (else version 1), the
 * payload length it really has and the right CRC. NULL if too short. */
static inline unsigned char *pk_fuzz_repair(const uint8_t *data, size_t size, pk_tag tag)
{
  unsigned char *b;
  uint32_t v;
  if (size < PK_FUZZ_HEADER + 4) return NULL;
  b = malloc(size);
  if (!b) abort();
  memcpy(b, data, size);
  memcpy(b, "PATHKRNL", 8);
  v = (uint32_t)b[8] | (uint32_t)b[9] << 8 | (uint32_t)b[10] << 16 | (uint32_t)b[11] << 24;
  pk_fuzz_put(b + 8, v >= 1 && v <= PK_FORMAT_VERSION ? v : 1, 4);
  pk_fuzz_put(b + 12, (uint64_t)tag, 4);
  pk_fuzz_put(b + 16, (uint64_t)(size - PK_FUZZ_HEADER - 4), 8);
  pk_fuzz_put(b + size - 4, pk_crc32(0, b, size - 4), 4);
  return b;
}

/* Serialize obj as a framed object in memory and compare with want. */
static inline void pk_fuzz_roundtrip(pk_tag tag, pk_serialize_fn write, const void *obj,
                              const unsigned char *want, size_t n)
{
  char *out = NULL;
  size_t len = 0;
  int err = 0;
  FILE *f = open_memstream(&out, &len);
  if (!f) abort();
  if (pk_write_object(f, tag, write, obj, &err) != PK_OK || err) pk_fuzz_die("saving back failed");
  if (fclose(f) != 0) abort();
  if (len != n || memcmp(out, want, n) != 0)
    pk_fuzz_die("an object that loads does not save back to the same bytes");
  free(out);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
  (void)argc;
  (void)argv;
  /* corrupt sizes must be refused by the checks, not by running out */
  pk_set_memory_limit((size_t)256 << 20);
  return 0;
}

/* a use of a loaded object (walking it, predicting with it) may fail, but
 * only with a message and a status that says why */
static inline void pk_fuzz_check_use(pk_status st)
{
  if (st != PK_OK && pk_last_error()[0] == '\0') pk_fuzz_die("a failure without a message");
  if (st == PK_EIO || st == PK_EFORMAT || st == PK_ECANCEL)
    pk_fuzz_die("using a loaded object answered an unexpected status");
}

/* PK_FUZZ_OBJECT_USE adds USE(obj), run on every object that loads: a
 * loader must not accept what the rest of the library cannot walk. */
#define PK_FUZZ_OBJECT_USE(TAG, TYPE, LOAD_MEM, WRITE, FREE, USE)                \
  static void pk_fuzz_one(const unsigned char *b, size_t n)                     \
  {                                                                              \
    TYPE *obj = NULL;                                                            \
    pk_status st;                                                                \
    pk_fail(PK_OK, "%s", "");                                                    \
    st = LOAD_MEM(&obj, "fuzz input", b, n);                                     \
    pk_fuzz_check_status(st);                                                    \
    if (st == PK_OK) {                                                           \
      if (!obj) pk_fuzz_die("success without an object");                        \
      pk_fuzz_roundtrip(TAG, WRITE, obj, b, n);                                  \
      USE(obj);                                                                  \
      FREE(obj);                                                                 \
    } else if (obj) {                                                            \
      pk_fuzz_die("a failed load left an object behind");                        \
    }                                                                            \
  }                                                                              \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)                  \
  {                                                                              \
    unsigned char *fixed = pk_fuzz_repair(data, size, TAG);                      \
    pk_fuzz_one(data, size);                                                     \
    if (fixed) {                                                                 \
      pk_fuzz_one(fixed, size);                                                  \
      free(fixed);                                                               \
    }                                                                            \
    return 0;                                                                    \
  }

static inline void pk_fuzz_no_use(const void *obj) { (void)obj; }

#define PK_FUZZ_OBJECT(TAG, TYPE, LOAD_MEM, WRITE, FREE)                         \
  PK_FUZZ_OBJECT_USE(TAG, TYPE, LOAD_MEM, WRITE, FREE, pk_fuzz_no_use)

#endif
