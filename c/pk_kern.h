/* pk_kern.h - kernels inside: the generic kernel object and its table of
 * operations (kernel.c), kernels defined by parameters and their specs
 * (classic.c, analytic.c, kspec.c), the tangent kernel's pieces that the
 * path kernel sums (tangent.c). */
#ifndef PK_KERN_H
#define PK_KERN_H

#include "pk_base.h"

typedef struct pk_kernel_vt {
  const char *name;
  /* out is allocated by the caller's wrapper: (n1*r) x (n2*c) as
   * pk_kernel_gram computes from outputs(); X1, X2 have been checked
   * against input_dim. */
  pk_status (*gram)(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                    const pk_call_opts *o, pk_matrix *out);
  pk_status (*diag)(const pk_kernel *k, const pk_matrix *X, const pk_call_opts *o,
                    pk_matrix *out);
  void (*destroy)(pk_kernel *k);
} pk_kernel_vt;

struct pk_kernel {
  const pk_kernel_vt *vt;
  size_t input_dim;     /* 0: any */
  size_t nout;          /* K: outputs of the model (1 for classical kernels) */
  pk_outputs mode;      /* how K > 1 outputs are laid out */
  size_t memory;        /* working-set budget in bytes for tiled Grams */
  int nan_rows;         /* a kernel of the inputs alone (classical, infinite
                         * width): every entry of a row with a NaN or an
                         * infinity is NaN, whatever its formula gives */
  void *state;          /* the kernel's own data, freed by destroy */
};

/* A kernel shell with vt and state; input_dim 0, nout 1, block mode. */
pk_status pk_kernel_new(pk_kernel **out, const pk_kernel_vt *vt, void *state);

/* ---- kernels defined by parameters (classic.c, analytic.c, kspec.c) ----- */

/* What a saved model records of its kernel: a type and its parameters. */
enum {
  PK_KSPEC_LINEAR = 1, PK_KSPEC_RBF, PK_KSPEC_LAPLACIAN, PK_KSPEC_POLY,
  PK_KSPEC_NTK, PK_KSPEC_NNGP
};
typedef struct pk_kernel_spec {
  uint32_t type;
  double p[4];    /* rbf/laplacian: gamma; poly: degree, c;
                   * ntk/nngp: depth, activation (1 relu, 2 erf, 3 identity),
                   * sigma_w, sigma_b */
} pk_kernel_spec;

/* Fill s and return 1 if k is a kernel defined by parameters, else 0
 * (kspec.c; each family answers for its own kernels). */
int pk_kernel_get_spec(const pk_kernel *k, pk_kernel_spec *s);
int pk_classic_kernel_spec(const pk_kernel *k, pk_kernel_spec *s);
int pk_analytic_kernel_spec(const pk_kernel *k, pk_kernel_spec *s);
/* Rebuild a kernel from a spec read from a file, checking its values
 * (kspec.c). A family's own reader returns 0 for a type not its own, else
 * 1 with the status in *st. */
pk_status pk_kernel_from_spec(const pk_kernel_spec *s, pk_kernel **out);
int pk_classic_kernel_from_spec(const pk_kernel_spec *s, pk_kernel **out, pk_status *st);
int pk_analytic_kernel_from_spec(const pk_kernel_spec *s, pk_kernel **out, pk_status *st);

/* ---- the empirical tangent kernel (tangent.c), summed by the path kernel --- */

typedef struct pk_tangent_ws pk_tangent_ws;
pk_tangent_ws *pk_tangent_ws_new(void);
void pk_tangent_ws_free(pk_tangent_ws *ws);
/* ws (may be NULL) is reused between calls with the same network shape */
pk_status pk_tangent_accumulate(const pk_network *net, const double *theta, const pk_matrix *X1,
                                const pk_matrix *X2, pk_outputs mode, size_t memory, double alpha,
                                const pk_call_opts *o, pk_tangent_ws *ws, pk_matrix *out);
pk_status pk_tangent_diag_accumulate(const pk_network *net, const double *theta,
                                     const pk_matrix *X, pk_outputs mode, size_t memory,
                                     double alpha, const pk_call_opts *o, pk_matrix *out);
void pk_tangent_mirror(pk_matrix *out);
int pk_tangent_symmetric(const pk_matrix *X1, const pk_matrix *X2, pk_outputs mode);

#endif
