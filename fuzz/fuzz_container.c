/* fuzz_container.c - libFuzzer harness: the PATHKRNL frame checks that
 * pk.load runs before it knows the type (magic, version, length, CRC,
 * tag). Oracle: pk_file_tag_mem and the typed check agree, and a frame
 * that passes has a payload of exactly the length it states. */
#include "fuzz.h"

static void check(const unsigned char *b, size_t n)
{
  pk_tag tag = (pk_tag)0;
  pk_reader r;
  pk_status st;
  pk_fail(PK_OK, "%s", "");
  st = pk_file_tag_mem("fuzz input", b, n, &tag);
  pk_fuzz_check_status(st);
  if (st != PK_OK) return;
  if (tag < PK_TAG_MATRIX || tag > PK_TAG_REGRESSOR) pk_fuzz_die("an unknown tag passed");
  if (pk_load_object_mem("fuzz input", b, n, tag, &r) != PK_OK)
    pk_fuzz_die("the typed frame check refused what pk_file_tag_mem passed");
  if (r.n != n - PK_FUZZ_HEADER - 4 || r.p != b + PK_FUZZ_HEADER || r.pos != 0 || r.err)
    pk_fuzz_die("the payload reader does not cover exactly the payload");
  if (pk_load_object_mem("fuzz input", b, n, tag == PK_TAG_MATRIX ? PK_TAG_NETWORK : PK_TAG_MATRIX,
                         &r) == PK_OK)
    pk_fuzz_die("the frame check passed with the wrong tag");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  /* the repaired copy keeps the input's own tag, so unknown tags get in */
  unsigned char *fixed = pk_fuzz_repair(data, size, size >= 16 ? (pk_tag)(data[12] | data[13] << 8 |
                                        data[14] << 16 | (uint32_t)data[15] << 24) : PK_TAG_MATRIX);
  check(data, size);
  if (fixed) {
    check(fixed, size);
    free(fixed);
  }
  return 0;
}
