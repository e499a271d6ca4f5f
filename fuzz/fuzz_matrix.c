/* fuzz_matrix.c - libFuzzer harness: the matrix loader (what pk.load and
 * pk_matrix_load run on a file's bytes). */
#include "fuzz.h"

PK_FUZZ_OBJECT(PK_TAG_MATRIX, pk_matrix, pk_matrix_load_mem, pk_matrix_write_payload,
               pk_matrix_free)
