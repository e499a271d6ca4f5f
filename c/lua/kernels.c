/* kernels.c - the constructors of the kernels defined by parameters
 * (pk.kernel.linear, rbf, laplacian, poly, ntk, nngp) and of the
 * precomputed kernel; what a Kernel answers is kernel.c's. */
#include <stddef.h>
#include "aux.h"

static pk_kernel **newk(lua_State *L) { return &pkL_newbox(L, &pkL_Kernel)->u.kernel; }

typedef struct kernel_params {
  double gamma, c, sigma_w, sigma_b;
  lua_Integer degree, depth;
  const char *activation;
} kernel_params;

#define KP(f) .offset = offsetof(kernel_params, f)

static void params(lua_State *L, const char *fname, const pkL_option *spec, kernel_params *p)
{
  p->gamma = 1.0;
  p->c = 1.0;
  p->sigma_w = 1.0;
  p->sigma_b = 0.1;
  p->degree = 3;
  p->depth = 1;
  p->activation = "relu";
  pkL_options(L, 1, fname, spec, p);
}

static int l_linear(lua_State *L)
{
  static const pkL_option spec[] = { { NULL, 0, .offset = 0 } };
  kernel_params p;
  params(L, "linear", spec, &p);
  return pkL_made(L, pk_kernel_linear(newk(L)));
}

static const pkL_option gamma_spec[] = {
  { "gamma", PKL_NUMBER, KP(gamma) }, { NULL, 0, .offset = 0 }
};

static int l_rbf(lua_State *L)
{
  kernel_params p;
  params(L, "rbf", gamma_spec, &p);
  return pkL_made(L, pk_kernel_rbf(newk(L), p.gamma));
}

static int l_laplacian(lua_State *L)
{
  kernel_params p;
  params(L, "laplacian", gamma_spec, &p);
  return pkL_made(L, pk_kernel_laplacian(newk(L), p.gamma));
}

static int l_poly(lua_State *L)
{
  static const pkL_option spec[] = {
    { "degree", PKL_INTEGER, KP(degree), .lo = 1, .hi = 1000000 },
    { "c", PKL_NUMBER, KP(c) },
    { NULL, 0, .offset = 0 }
  };
  kernel_params p;
  params(L, "poly", spec, &p);
  return pkL_made(L, pk_kernel_poly(newk(L), (int)p.degree, p.c));
}

/* pk.kernel.ntk / nngp{ depth =, activation =, sigma_w =, sigma_b = } */
static int analytic(lua_State *L, int ntk)
{
  static const pkL_option spec[] = {
    { "depth", PKL_INTEGER | PKL_REQUIRED, KP(depth), .lo = 1, .hi = 100000,
      .note = " (the number of hidden layers)" },
    { "activation", PKL_STRING, KP(activation) },
    { "sigma_w", PKL_NUMBER, KP(sigma_w) },
    { "sigma_b", PKL_NUMBER, KP(sigma_b) },
    { NULL, 0, .offset = 0 }
  };
  kernel_params p;
  params(L, ntk ? "ntk" : "nngp", spec, &p);
  return pkL_made(L, ntk ? pk_kernel_ntk(newk(L), (int)p.depth, p.activation, p.sigma_w, p.sigma_b)
                         : pk_kernel_nngp(newk(L), (int)p.depth, p.activation, p.sigma_w,
                                          p.sigma_b));
}

static int l_ntk(lua_State *L) { return analytic(L, 1); }
static int l_nngp(lua_State *L) { return analytic(L, 0); }

/* pk.kernel.precomputed(G [, X]): the kernel holds a view of G */
static int l_precomputed(lua_State *L)
{
  pk_matrix *G = pkL_check(L, 1, &pkL_Matrix), *X = NULL;
  if (!lua_isnoneornil(L, 2)) X = pkL_check(L, 2, &pkL_Matrix);
  return pkL_made(L, pk_kernel_precomputed(newk(L), G, X));
}

void pkL_open_kernels(lua_State *L)
{
  static const luaL_Reg fns[] = {
    { "linear", l_linear }, { "rbf", l_rbf }, { "laplacian", l_laplacian }, { "poly", l_poly },
    { "ntk", l_ntk }, { "nngp", l_nngp }, { "precomputed", l_precomputed }, { NULL, NULL }
  };
  pkL_subtable(L, "kernel");
  pkL_setfuncs(L, fns, "kernel.");
  lua_pop(L, 1);
}
