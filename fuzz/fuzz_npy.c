/* fuzz_npy.c - libFuzzer harness: the .npy reader (what pk.read_npy runs
 * on a file's bytes). Oracles: a failure comes with a message and a
 * loader's status, and leaves no matrix; a matrix that loads has as many
 * entries as its data bytes hold items; written back (float64, C order,
 * what A:write_npy writes) it reads again to the same values bit for bit,
 * and that second file writes back to exactly itself. */
#include "fuzz.h"
#include "pk_formats.h"
#include <math.h>

static void same_values(const pk_matrix *a, const pk_matrix *b)
{
  size_t i, n = pk_matrix_rows(a) * pk_matrix_cols(a);
  const double *x = pk_matrix_cdata(a), *y = pk_matrix_cdata(b);
  if (pk_matrix_rows(a) != pk_matrix_rows(b) || pk_matrix_cols(a) != pk_matrix_cols(b))
    pk_fuzz_die("written and read back, the shape changed");
  for (i = 0; i < n; i++)
    if (!(isnan(x[i]) && isnan(y[i])) && memcmp(&x[i], &y[i], sizeof x[i]) != 0)
      pk_fuzz_die("written and read back, a value changed");
}

/* the .npy image of m as write_npy writes it, malloc'd into *out */
static size_t emit(const pk_matrix *m, char **out)
{
  size_t len = 0;
  int err = 0;
  FILE *f = open_memstream(out, &len);
  if (!f) abort();
  if (pk_matrix_emit_npy(f, m, &err) != PK_OK || err) pk_fuzz_die("writing .npy failed");
  if (fclose(f) != 0) abort();
  return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  pk_matrix *m = NULL, *back = NULL;
  char *text = NULL, *text2 = NULL;
  size_t len, len2;
  pk_status st;
  pk_fail(PK_OK, "%s", "");
  st = pk_matrix_read_npy_mem(&m, "fuzz input", data, size);
  pk_fuzz_check_status(st);
  if (st != PK_OK) {
    if (m) pk_fuzz_die("a failed load left a matrix behind");
    return 0;
  }
  if (!m) pk_fuzz_die("success without a matrix");
  /* every item is at least one byte: no more entries than data bytes */
  if (pk_matrix_rows(m) && pk_matrix_cols(m) > size / pk_matrix_rows(m))
    pk_fuzz_die("more entries than the file has bytes");
  len = emit(m, &text);
  if (pk_matrix_read_npy_mem(&back, "written back", (const unsigned char *)text, len) != PK_OK)
    pk_fuzz_die("what write_npy wrote does not read back");
  same_values(m, back);
  len2 = emit(back, &text2);
  if (len2 != len || memcmp(text, text2, len) != 0)
    pk_fuzz_die("a file write_npy wrote does not write back to itself");
  free(text);
  free(text2);
  pk_matrix_free(m);
  pk_matrix_free(back);
  return 0;
}
