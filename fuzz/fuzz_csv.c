/* fuzz_csv.c - libFuzzer harness: the CSV reader (what pk.read_csv runs on
 * a file's text). The first byte chooses the options: bit 0 header, bits
 * 1-2 the separator (',' ';' tab space); the rest is the text.
 * Oracle: a matrix that parses writes back (%.17g) to text that parses to
 * the same values, bit for bit (NaNs as NaNs), with the same header. */
#include "fuzz.h"
#include "pk_formats.h"
#include <math.h>

static const char SEPS[4] = { ',', ';', '\t', ' ' };

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  pk_csv_opts o;
  pk_matrix *m = NULL, *back = NULL;
  char *header = NULL, *header2 = NULL, *text = NULL;
  size_t len = 0;
  int err = 0;
  FILE *f;
  pk_status st;
  if (size < 1) return 0;
  o.header = data[0] & 1;
  o.sep = SEPS[(data[0] >> 1) & 3];
  pk_fail(PK_OK, "%s", "");
  st = pk_matrix_parse_csv(&m, "fuzz input", (const char *)data + 1, size - 1, &o,
                           o.header ? &header : NULL);
  pk_fuzz_check_status(st);
  if (st != PK_OK) {
    if (m || header) pk_fuzz_die("a failed parse left a result behind");
    return 0;
  }
  /* write_csv refuses a header with a line break; so does the oracle */
  if (header && strchr(header, '\r')) {
    free(header);
    header = NULL;
  }
  f = open_memstream(&text, &len);
  if (!f) abort();
  if (pk_matrix_emit_csv(f, m, header, &err) != PK_OK || err) pk_fuzz_die("writing CSV failed");
  if (fclose(f) != 0) abort();
  o.sep = ',';
  o.header = header != NULL;
  if (pk_matrix_parse_csv(&back, "written back", text, len, &o, o.header ? &header2 : NULL))
    pk_fuzz_die("what write_csv wrote does not read back");
  same_values(m, back);
  if ((header == NULL) != (header2 == NULL) || (header && strcmp(header, header2) != 0))
    pk_fuzz_die("written and read back, the header changed");
  free(text);
  free(header);
  free(header2);
  pk_matrix_free(m);
  pk_matrix_free(back);
  return 0;
}
