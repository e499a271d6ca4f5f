/* fuzz_regressor.c - libFuzzer harness: the kernel regressor loader (ridge,
 * GP and gradient-flow models, what pk.load runs on their files). A model
 * that loads must predict on one input of its own width. */
#include "fuzz.h"

static void use(pk_regressor *r)
{
  const pk_matrix *alpha = pk_regressor_coefficients(r);
  pk_matrix *Xq = NULL, *mean = NULL, *var = NULL;
  size_t d = pk_kernel_input_dim(pk_regressor_kernel(r));
  pk_status st = pk_matrix_zeros(&Xq, 1, d ? d : 1);
  pk_fuzz_check_use(st);
  if (st) return;
  if (!pk_regressor_needs_f0(r)) {
    pk_fuzz_check_use(pk_regressor_predict(r, Xq, NULL, NULL, &mean, &var));
    if (mean && pk_matrix_cols(mean) != pk_matrix_cols(alpha))
      pk_fuzz_die("predict answered the wrong number of outputs");
  }
  pk_matrix_free(mean);
  pk_matrix_free(var);
  pk_matrix_free(Xq);
}

PK_FUZZ_OBJECT_USE(PK_TAG_REGRESSOR, pk_regressor, pk_regressor_load_mem,
                   pk_regressor_write_payload, pk_regressor_free, use)
