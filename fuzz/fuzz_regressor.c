/* fuzz_regressor.c - libFuzzer harness: the kernel regressor loader (what
 * pk.load and pk_regressor_load run on a file's bytes): ridge, GP and
 * gradient-flow models over the kernels a file can hold. A model that
 * loads must predict (with its variance, for a GP) at its first training
 * input. */
#include "fuzz.h"
#include "pk_regress.h"

static void use(pk_regressor *r)
{
  pk_matrix *q = NULL, *f0 = NULL, *mean = NULL, *var = NULL;
  int gp = pk_regressor_get_kind(r) == PK_REGRESSOR_GP;
  pk_status st = pk_matrix_view_rows(&q, (pk_matrix *)pk_regressor_X(r), 0, 1);
  pk_fuzz_check_use(st);
  if (!st && pk_regressor_needs_f0(r))
    pk_fuzz_check_use(st = pk_matrix_zeros(&f0, 1, pk_matrix_cols(pk_regressor_coefficients(r))));
  if (!st) {
    pk_fuzz_check_use(st = pk_regressor_predict(r, q, f0, NULL, &mean, gp ? &var : NULL));
    if (!st && (pk_matrix_rows(mean) != 1 || (gp && pk_matrix_rows(var) != 1)))
      pk_fuzz_die("predict answered the wrong shape");
  }
  pk_matrix_free(mean);
  pk_matrix_free(var);
  pk_matrix_free(f0);
  pk_matrix_free(q);
}

PK_FUZZ_OBJECT_USE(PK_TAG_REGRESSOR, pk_regressor, pk_regressor_load_mem,
                   pk_regressor_write_payload, pk_regressor_free, use)
