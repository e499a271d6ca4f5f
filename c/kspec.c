/* kspec.c - kernels defined by parameters, as a file records them: the
 * spec of a kernel (its type and parameters) and the kernel back from a
 * spec, whichever family (classic.c, analytic.c) it belongs to. What a
 * saved model holds of its kernel. */
#include "pk_kern.h"

int pk_kernel_get_spec(const pk_kernel *k, pk_kernel_spec *s)
{
  return pk_classic_kernel_spec(k, s) || pk_analytic_kernel_spec(k, s);
}

pk_status pk_kernel_from_spec(const pk_kernel_spec *s, pk_kernel **out)
{
  pk_status st = PK_OK;
  *out = NULL;
  if (pk_classic_kernel_from_spec(s, out, &st) || pk_analytic_kernel_from_spec(s, out, &st))
    return st;
  return pk_fail(PK_EFORMAT, "saved kernel: unknown kernel type %u", (unsigned)s->type);
}
