/* fuzz_network.c - libFuzzer harness: the network loader (what pk.load
 * and pk_network_load run on a file's bytes). A network that loads must
 * run forward and give its Jacobian on one input. */
#include "fuzz.h"
#include "pk_net.h"

static void use(pk_network *net)
{
  pk_matrix *X = NULL, *F = NULL, *J = NULL;
  pk_status st = pk_matrix_zeros(&X, 1, pk_network_size(net, 0));
  pk_fuzz_check_use(st);
  if (st) return;
  pk_fuzz_check_use(pk_network_forward(net, X, &F));
  pk_fuzz_check_use(pk_network_jacobian(net, X, &J));
  if (F && (pk_matrix_rows(F) != 1 || pk_matrix_cols(F) != pk_network_size(net, pk_network_layers(net))))
    pk_fuzz_die("forward answered the wrong shape");
  pk_matrix_free(J);
  pk_matrix_free(F);
  pk_matrix_free(X);
}

PK_FUZZ_OBJECT_USE(PK_TAG_NETWORK, pk_network, pk_network_load_mem, pk_network_write_payload,
                   pk_network_free, use)
