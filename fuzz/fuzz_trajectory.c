/* fuzz_trajectory.c - libFuzzer harness: the trajectory loader (what
 * pk.load and pk_trajectory_load run on a file's bytes), both variants:
 * a file that holds its training data, loaded alone and again with that
 * data given; and a file saved without data, loaded with the data the
 * seeds were trained on (fuzz/seeds.lua: FX, FY below). A trajectory that
 * loads must save back to the same bytes, give its weights at the end and
 * one step before it (a replay), and decompose into a kernel machine. */
#include "fuzz.h"
#include "pk_traj.h"

static pk_matrix *FX, *FY;

static void fixed_data(void)
{
  if (FX) return;
  /* pk.randn(6, 2, 11) and pk.randn(6, 1, 12), as fuzz/seeds.lua trains */
  if (pk_matrix_randn(&FX, 6, 2, 11) || pk_matrix_randn(&FY, 6, 1, 12)) abort();
}

static pk_status write_with(pk_writer *w, const void *t)
{
  return pk_trajectory_write_payload(w, t, 1);
}

static pk_status write_without(pk_writer *w, const void *t)
{
  return pk_trajectory_write_payload(w, t, 0);
}

static void use(const pk_trajectory *t)
{
  size_t T = pk_trajectory_steps(t), P = pk_network_nparams(pk_trajectory_network0(t));
  double *w = malloc((P ? P : 1) * sizeof(double));
  pk_machine *km = NULL;
  pk_matrix *q = NULL, *F = NULL;
  pk_status st;
  if (!w) abort();
  pk_fuzz_check_use(pk_trajectory_weights(t, T, w));
  if (T > 0) pk_fuzz_check_use(pk_trajectory_weights(t, T - 1, w));
  free(w);
  if (T == 0) return;
  {
    pk_quad quad = { PK_RULE_LEFT, 1, 0 };
    pk_fuzz_check_use(st = pk_machine_from_trajectory(&km, t, &quad));
  }
  if (st) return;
  pk_fuzz_check_use(st = pk_matrix_view_rows(&q, (pk_matrix *)pk_trajectory_X(t), 0, 1));
  if (!st) pk_fuzz_check_use(pk_machine_predict(km, q, NULL, &F));
  pk_matrix_free(F);
  pk_matrix_free(q);
  pk_machine_free(km);
}

static void one(const unsigned char *b, size_t n)
{
  pk_trajectory *t = NULL, *again = NULL;
  pk_status st;
  pk_fail(PK_OK, "%s", "");
  st = pk_trajectory_load_mem(&t, "fuzz input", b, n, NULL, NULL);
  pk_fuzz_check_status(st);
  if (st == PK_OK) {
    /* it held its data: given that very data, it loads the same */
    pk_fuzz_roundtrip(PK_TAG_TRAJECTORY, write_with, t, b, n);
    st = pk_trajectory_load_mem(&again, "fuzz input", b, n, pk_trajectory_X(t), pk_trajectory_Y(t));
    if (st) pk_fuzz_die("a trajectory that loads alone fails with its own data given");
    pk_fuzz_roundtrip(PK_TAG_TRAJECTORY, write_with, again, b, n);
    pk_trajectory_free(again);
    use(t);
    pk_trajectory_free(t);
    return;
  }
  if (t) pk_fuzz_die("a failed load left an object behind");
  pk_fail(PK_OK, "%s", "");
  st = pk_trajectory_load_mem(&t, "fuzz input", b, n, FX, FY);
  pk_fuzz_check_status(st);
  if (st == PK_OK) {
    pk_fuzz_roundtrip(PK_TAG_TRAJECTORY, write_without, t, b, n);
    use(t);
    pk_trajectory_free(t);
  } else if (t) {
    pk_fuzz_die("a failed load left an object behind");
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data_, size_t size)
{
  unsigned char *fixed = pk_fuzz_repair(data_, size, PK_TAG_TRAJECTORY);
  fixed_data();
  one(data_, size);
  if (fixed) {
    one(fixed, size);
    free(fixed);
  }
  return 0;
}
