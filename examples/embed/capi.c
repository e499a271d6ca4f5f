/* capi.c - pathkernel from C alone, no Lua: train a small network, compare
 * its tangent kernel with J J^T, record a second run, rewrite it as a
 * kernel machine and verify it against the network, and stop long work
 * through the cancel flag of pk_call_opts. Every call returns a status; on
 * failure pk_last_error() says what went wrong.
 *
 *   make embed       (builds build/embed_capi against build/libpathkernel.a)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pk.h"

/* On failure: print the library's message and leave through `fail`. */
#define CHECK(call)                                                              \
  do {                                                                           \
    pk_status st_ = (call);                                                      \
    if (st_ != PK_OK) {                                                          \
      fprintf(stderr, "embed_capi: %s failed (%s): %s\n", #call,                 \
              pk_status_name(st_), pk_last_error());                             \
      goto fail;                                                                 \
    }                                                                            \
  } while (0)

int main(void)
{
  enum { M = 32, D = 2, NQ = 8 };
  const size_t sizes[] = { D, 16, 16, 1 };
  pk_network_spec spec = { 0 };
  pk_train_opts opts;
  pk_network *net = NULL, *net2 = NULL;
  pk_matrix *X = NULL, *Y = NULL, *Xq = NULL, *G = NULL, *J = NULL, *Jt = NULL, *JJt = NULL,
            *diff = NULL, *bad = NULL, *F = NULL, *P = NULL;
  pk_kernel *K = NULL;
  pk_trajectory *traj = NULL;
  pk_machine *km = NULL;
  pk_quad quad;
  double losses[200], maxabs = 0, maxrel = 0, gerr, scale;
  size_t done = 0, i;
  int rc = 1;

  /* data: y = sin(x1) cos(x2) at random points */
  CHECK(pk_matrix_randn(&X, M, D, 1));
  CHECK(pk_matrix_new(&Y, M, 1));
  for (i = 0; i < M; i++)
    pk_matrix_set(Y, i, 0, sin(pk_matrix_get(X, i, 0)) * cos(pk_matrix_get(X, i, 1)));
  CHECK(pk_matrix_randn(&Xq, NQ, D, 2));

  spec.nsizes = sizeof sizes / sizeof sizes[0];
  spec.sizes = sizes;
  spec.act = PK_ACT_TANH;
  spec.param = PK_PARAM_NTK;
  spec.sigma_w = 1.0;
  spec.sigma_b = 0.1;
  spec.seed = 7;
  CHECK(pk_network_new(&net, &spec));
  CHECK(pk_network_clone(&net2, net));      /* the same start for the recorded run */
  printf("network %zu -> 16 -> 16 -> 1 (%s), %zu parameters\n", sizes[0],
         pk_activation_name(pk_network_activation(net, 1)), pk_network_nparams(net));

  /* plain training */
  pk_train_opts_init(&opts);
  opts.loss = PK_LOSS_MSE;
  opts.steps = 200;
  opts.lr = 0.2;
  CHECK(pk_train(net, X, Y, &opts, losses, &done));
  printf("pk_train: %zu steps, loss %.4f -> %.4f\n", done, losses[0], losses[done - 1]);

  /* the tangent kernel at the trained weights equals J J^T */
  CHECK(pk_kernel_tangent(&K, net));
  CHECK(pk_kernel_gram(K, X, Xq, NULL, &G));
  CHECK(pk_network_jacobian(net, X, &J));
  CHECK(pk_network_jacobian(net, Xq, &Jt));
  {
    pk_matrix *JqT = NULL;
    CHECK(pk_matrix_transpose(&JqT, Jt));
    pk_status st = pk_matrix_mul(&JJt, J, JqT);
    pk_matrix_free(JqT);
    CHECK(st);
  }
  CHECK(pk_matrix_sub(&diff, G, JJt));
  scale = pk_matrix_max_abs(JJt);
  gerr = pk_matrix_max_abs(diff) / (scale > 0 ? scale : 1);
  printf("pk_kernel_gram: %s kernel, %zux%zu, max relative difference from J J^T %.2e\n",
         pk_kernel_name(K), pk_matrix_rows(G), pk_matrix_cols(G), gerr);
  if (!(gerr < 1e-12)) {
    fprintf(stderr, "embed_capi: the tangent kernel differs from J J^T by %g\n", gerr);
    goto fail;
  }

  /* a recorded run, and the trained network as a kernel machine */
  CHECK(pk_train_record(net2, X, Y, &opts, 1, &traj, NULL, &done));
  pk_quad_init(&quad);               /* the exact rule with its default tolerance */
  CHECK(pk_machine_from_trajectory(&km, traj, &quad));
  CHECK(pk_machine_verify(km, Xq, NULL, &maxabs, &maxrel));
  CHECK(pk_machine_predict(km, Xq, NULL, &P));
  CHECK(pk_network_forward(net2, Xq, &F));
  printf("pk_machine_from_trajectory: %zu steps recorded (%zu KiB), %zu training examples\n",
         pk_trajectory_steps(traj), pk_trajectory_memory(traj) / 1024, pk_machine_examples(km));
  printf("pk_machine_verify: max abs error %.3e, max relative error %.3e\n", maxabs, maxrel);
  printf("query 1: network %.12f, kernel machine %.12f\n", pk_matrix_get(F, 0, 0), pk_matrix_get(P, 0, 0));
  if (!(maxrel <= 1e-9)) {
    fprintf(stderr, "embed_capi: the kernel machine is off by %g\n", maxrel);
    goto fail;
  }

  /* a host stops long work through a cancel flag (its SIGINT handler or
   * another thread sets it): here set before the calls, so each stops at
   * its first check with PK_ECANCEL, returns no object, and the network
   * keeps its weights */
  {
    volatile sig_atomic_t stop = 1;
    pk_call_opts co = { NULL, NULL, NULL };
    pk_train_opts o2 = opts;
    pk_matrix *out = NULL;
    double w0 = pk_network_params(net)[0];
    pk_status st1, st2;
    char msg1[256];
    co.cancel = &stop;
    o2.call.cancel = &stop;
    st1 = pk_train(net, X, Y, &o2, NULL, &done);
    snprintf(msg1, sizeof msg1, "%s", pk_last_error());
    st2 = pk_kernel_gram(K, X, X, &co, &out);
    if (st1 != PK_ECANCEL || done != 0 || pk_network_params(net)[0] != w0 || !strstr(msg1, "interrupted") ||
        st2 != PK_ECANCEL || out != NULL || !strstr(pk_last_error(), "interrupted")) {
      fprintf(stderr, "embed_capi: the cancel flag did not stop the work (%s, %s)\n", msg1,
              pk_last_error());
      pk_matrix_free(out);
      goto fail;
    }
    printf("cancel flag: %s: %s; %s\n", pk_status_name(st1), msg1, pk_last_error());
  }

  /* a mistake is a status and a message, never a crash */
  CHECK(pk_matrix_zeros(&bad, 3, D + 1));
  {
    pk_matrix *out = NULL;
    pk_status st = pk_network_forward(net, bad, &out);
    if (st == PK_OK) {
      pk_matrix_free(out);
      fprintf(stderr, "embed_capi: a 3-column input was accepted by a 2-input network\n");
      goto fail;
    }
    printf("a wrong input is refused: %s: %s\n", pk_status_name(st), pk_last_error());
  }
  rc = 0;

fail:
  /* the machine borrows the trajectory, which borrows X and Y */
  pk_machine_free(km);
  pk_trajectory_free(traj);
  pk_kernel_free(K);
  pk_network_free(net);
  pk_network_free(net2);
  pk_matrix_free(X);
  pk_matrix_free(Y);
  pk_matrix_free(Xq);
  pk_matrix_free(G);
  pk_matrix_free(J);
  pk_matrix_free(Jt);
  pk_matrix_free(JJt);
  pk_matrix_free(diff);
  pk_matrix_free(bad);
  pk_matrix_free(F);
  pk_matrix_free(P);
  if (rc == 0) printf("embed_capi: ok\n");
  return rc;
}
