/* fuzz_machine.c - libFuzzer harness: the kernel machine loader (what
 * pk.load and pk_machine_load run on a file's bytes), offline machines
 * (a trajectory with its data) and online ones (stored results). A machine
 * that loads must predict: an online one for its own queries, an offline
 * one for the first training example. */
#include "fuzz.h"
#include "pk_machine.h"

static void use(pk_machine *km)
{
  pk_matrix *q = NULL, *F = NULL;
  pk_status st;
  if (pk_machine_is_online(km)) {
    st = pk_matrix_copy(&q, km->Xq);
  } else {
    const pk_matrix *X = pk_trajectory_X(km->traj);
    st = pk_matrix_view_rows(&q, (pk_matrix *)X, 0, 1);
  }
  pk_fuzz_check_use(st);
  if (st) return;
  pk_fuzz_check_use(st = pk_machine_predict(km, q, NULL, &F));
  if (!st && (pk_matrix_rows(F) != pk_matrix_rows(q) || pk_matrix_cols(F) != pk_machine_outputs(km)))
    pk_fuzz_die("predict answered the wrong shape");
  pk_matrix_free(F);
  pk_matrix_free(q);
}

PK_FUZZ_OBJECT_USE(PK_TAG_MACHINE, pk_machine, pk_machine_load_mem, pk_machine_write_payload,
                   pk_machine_free, use)
