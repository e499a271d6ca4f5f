/* layer.h - the layer seam: a network is a list of layers, each reached
 * through a small table of functions, so that the walkers (forward,
 * backward, sensitivities) and the consumers (tangent Grams, the
 * decomposition, Jacobians, per-example gradient rows) never do a layer
 * type's algebra themselves.
 *
 * THE MODEL. A layer with parameters (dense, conv) is linear in its input
 * and linear in its parameters (W, b):
 *     z = s_w W (*) a + s_b b        (*): matrix product, convolution
 * and the walker applies the layer's activation to z (identity after the
 * last layer; pooling has none). A layer without parameters (avgpool) is
 * a fixed linear map of a. Values per example are flat: `in` inputs, `out`
 * outputs (C*H*W for images, channel-major, torch's NCHW flatten).
 *
 * ROWS AND SIDES. Everything per example is a row of a row-major matrix:
 * inputs A (n x in), pre-activations Z (n x out). Sensitivities come `per`
 * rows to an example: row i*per + k of U (n per x out) is the derivative of
 * quantity k of example i (output k of the network, or its loss when
 * per = 1) with respect to this layer's z. Quantity k of example i then
 * has the parameter gradient ("gradient row r = i*per + k")
 *     g_r = ( s_w U_r (*)^T A_i ,  s_b sum over positions of U_r ),
 * the weight part in W's layout, the bias part in b's. A side (pk_side)
 * is such a set of rows as one layer sees them: V = A, U, n, per.
 *
 * THE CONTRACT (every function below; "+=" accumulates, "=" overwrites):
 * - forward:  Z = beta Z + s_w W (*) A [+ s_b b when b != NULL]. W and b
 *   are parameter-shaped (the layer's slices of theta, or of a direction:
 *   forward(D_W, D_b, a) is the R-op term of a step direction, and
 *   forward(W, NULL, da, beta = 1) adds the term of an input direction).
 *   A parameterless layer (nw = nb = 0) ignores W and b: it is a fixed
 *   linear map of its input, so its R-op is forward(NULL, NULL, da) alone
 *   and a caller skips the step-direction term for it.
 * - backward_input: Gin = s_w W^T (*) G, n rows (n may be rows * per:
 *   the walker pushes sensitivities of every output through it).
 * - backward_params: gW = scale s_w sum_i G_i (*)^T A_i, gb = scale s_b
 *   sum_i sum_positions G_i.
 * - gram: out += alpha sum_params g_r(side 1) . g_r'(side 2), laid out by
 *   mode: BLOCK out[(i per1 + k) ldo + j per2 + k2]; DIAGONAL (per1 =
 *   per2) out[(i per + k) ldo + j], the same k on both sides; TRACE
 *   out[i ldo + j], summed over k. sym: side 1's rows are the first n1
 *   rows of side 2 (one block against itself), and only the upper
 *   triangle (j > i, or j == i and k2 >= k) must be right. vprod,
 *   when not NULL, is V1 V2^T (n1 x n2) that the caller already holds (the
 *   decomposition's first layer, whose inputs never move); a layer may
 *   ignore it.
 * - sqnorm: out[r] += |g_r|^2 for every row r of the side.
 * - dot_params: out[r] += alpha g_r . (W, b), (W, b) parameter-shaped
 *   (b may be NULL when nb = 0).
 * - grad_rows: out[r ldo + woff ...] += weight g_r: explicit rows, each
 *   at the layer's own offsets in a P-wide row.
 * A side's `unit` says its U rows are the unit vectors (the output layer
 * seen by the network's own outputs: per = out, U row i per + k = e_k);
 * U is still there, and a layer may use the hint to skip a product.
 * feat: a layer may precompute per-example data of a side once (im2col
 * patches, explicit gradient rows) for the products above: feat_size
 * doubles per example, filled by feat() (with work(ly, n) scratch) from V
 * and U; example i's
 * start at feat + i * feat_size(ly, per), so a run of rows of a side is a
 * side too. The callers size scratch by work (forward and both backward
 * functions on n rows) / gram_work / dot_work and pass it; nothing here
 * allocates, fails or keeps state. Parameterless layers (nw = nb = 0)
 * have nothing to add in gram, sqnorm, dot_params, grad_rows and
 * backward_params: the callers skip them.
 *
 * WHAT A CONSUMER CALLS (network.c, pk_net.h): pk_net_forward_ws
 * (layer by layer, activations between), pk_net_backward (loss gradients
 * G and the parameter gradient), pk_net_deltas (the sensitivities of every
 * output, unit rows at the last layer), then per layer l a side from
 * pk_net_side(A = inputs, U = deltas or loss gradients, rows r0 .. r0+n)
 * and the layer's own function: ly->vt->gram(ly, &s1, &s2, ...). Layer
 * features, when a layer has any, come from pk_lfeats_init/compute. New
 * kinds of layers add a table (layer_<kind>.c) and a case in network.c's
 * construction and files; no consumer changes. */
#ifndef PK_LAYER_H
#define PK_LAYER_H

#include <stddef.h>
#include "pk.h"

typedef struct pk_layer pk_layer;

typedef struct pk_side {
  size_t n, per;         /* examples; sensitivity rows per example */
  const double *V;       /* n x in: the layer's inputs */
  const double *U;       /* (n per) x out: sensitivities */
  const double *feat;    /* the layer's features of these rows (feat_size > 0), else NULL */
  int unit;              /* U rows are unit vectors (see above) */
} pk_side;

typedef struct pk_layer_vt {
  const char *name;
  pk_layer_type type;
  int vprod;             /* gram uses vprod: a caller holding V1 V2^T should pass it */
  /* doubles of scratch: forward / backward_* on n rows; gram between sides
   * of n1 x per1 and n2 x per2 rows; dot_params on n x per rows */
  size_t (*work)(const pk_layer *ly, size_t n);
  size_t (*gram_work)(const pk_layer *ly, size_t n1, size_t per1, size_t n2, size_t per2,
                      pk_outputs mode);
  size_t (*dot_work)(const pk_layer *ly, size_t n, size_t per);
  size_t (*feat_size)(const pk_layer *ly, size_t per);   /* doubles per example; 0: none */
  void (*feat)(const pk_layer *ly, const pk_side *s, double *feat, double *work);

  void (*forward)(const pk_layer *ly, const double *W, const double *b, const double *A,
                  size_t n, double beta, double *Z, double *work);
  void (*backward_input)(const pk_layer *ly, const double *W, const double *G, size_t n,
                         double *Gin, double *work);
  void (*backward_params)(const pk_layer *ly, const double *A, const double *G, size_t n,
                          double scale, double *gW, double *gb, double *work);
  void (*gram)(const pk_layer *ly, const pk_side *s1, const pk_side *s2, pk_outputs mode,
               int sym, double alpha, const double *vprod, double *out, size_t ldo,
               double *work);
  void (*sqnorm)(const pk_layer *ly, const pk_side *s, double *out);
  void (*dot_params)(const pk_layer *ly, const pk_side *s, const double *W, const double *b,
                     double alpha, double *out, double *work);
  void (*grad_rows)(const pk_layer *ly, const pk_side *s, double weight, double *out,
                    size_t ldo);
} pk_layer_vt;

/* Where the values of an image live: channels x height x width. A dense
 * layer sees c = its width, h = w = 1. */
typedef struct pk_shape { size_t c, h, w; } pk_shape;

struct pk_layer {
  const pk_layer_vt *vt;
  size_t in, out;          /* values per example */
  pk_shape ishape, oshape; /* in = c h w of ishape, out likewise */
  size_t kh, kw;           /* conv, pooling: the window */
  size_t sy, sx, py, px;   /* conv, pooling: strides and zero padding */
  size_t fan_in;           /* inputs of one output value: in (dense), c kh kw (conv) */
  size_t woff, nw, boff, nb;  /* slices of theta; 0 for pooling */
  double sw, sb;           /* z = sw W (*) a + sb b */
  pk_activation act;       /* the walker applies it after the layer */
  double slope;            /* leaky_relu's negative slope */
};

extern const pk_layer_vt pk_dense_vt, pk_conv_vt, pk_avgpool_vt;

/* C (r x c, leading dimension ldc) = alpha A1 A2^T + beta C, rows of
 * length d with leading dimension lda. sym: A1 is the first r rows of A2
 * and only the upper triangle of the leading r x r block is wanted (SYRK
 * at half the cost; the rest is a GEMM). */
void pk_prod_nt(const double *A1, size_t r, const double *A2, size_t c, size_t d, size_t lda,
                double alpha, double beta, double *C, size_t ldc, int sym);

/* a = phi(z), and g[i] *= phi'(z[i]) (given a = phi(z) too, for the
 * cheap forms); slope is leaky_relu's (relu'(0) = 0, leaky'(0) = slope).
 * The walkers apply them between layers, never the layers. */
void pk_act_apply(pk_activation act, double slope, const double *z, double *a, size_t n);
void pk_act_mul_deriv(pk_activation act, double slope, const double *z, const double *a,
                      double *g, size_t n);

#endif
