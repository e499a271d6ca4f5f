/* tangent.c - the empirical tangent kernel g(x; w) . g(x'; w) of a network
 * by the structured products of its layers (layer.h): per layer, the
 * layer's gram of the two blocks' inputs and output sensitivities (for a
 * dense layer, (D_l(x) . D_l(x')) (s_w^2 a_{l-1}(x) . a_{l-1}(x') + s_b^2):
 * two GEMMs and a Hadamard product), tiled so that the working set stays
 * within the kernel's memory budget; never an n x P Jacobian. */
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include "pk_kern.h"
#include "pk_linalg.h"
#include "pk_net.h"

/* rows of the left side per chunk of a tile */
#define RCHUNK 256

typedef struct tangent_state {
  pk_network *net;      /* a snapshot of the weights */
  struct pk_tangent_ws *ws;
} tangent_state;

/* Features of a block of rows: activations, output sensitivities and the
 * layers' own features (layer.h, feat) of them. */
typedef struct feats {
  pk_acts w;
  pk_deltas dl;
  pk_lfeats lf;
  size_t n;
} feats;

static size_t feat_bytes(const pk_network *net, size_t t)
{
  return pk_acts_bytes(net, t, 0) + pk_deltas_bytes(net, t) +
         pk_lfeats_bytes(net, t, PK_NET_OUT(net));
}

/* the layers' scratch for a chunk of t1 rows against t2 */
static size_t work_doubles(const pk_network *net, size_t t1, size_t t2, pk_outputs mode)
{
  size_t l, m = 0, K = PK_NET_OUT(net), rc = t1 < RCHUNK ? t1 : RCHUNK;
  for (l = 0; l < net->L; l++) {
    const pk_layer *ly = &net->layer[l];
    size_t w = ly->vt->gram_work(ly, rc, K, t2, K, mode);
    if (w > m) m = w;
  }
  return m;
}

static size_t scratch_bytes(const pk_network *net, size_t t1, size_t t2, pk_outputs mode)
{
  return work_doubles(net, t1, t2, mode) * sizeof(double);
}

static void feats_free(feats *f)
{
  pk_acts_free(&f->w);
  pk_deltas_free(&f->dl);
  pk_lfeats_free(&f->lf);
  memset(f, 0, sizeof *f);
}

static pk_status feats_init(feats *f, const pk_network *net, size_t cap)
{
  pk_status st;
  memset(f, 0, sizeof *f);
  if ((st = pk_acts_init(&f->w, net, cap, 0)) || (st = pk_deltas_init(&f->dl, net, cap)) ||
      (st = pk_lfeats_init(&f->lf, net, cap, PK_NET_OUT(net))))
    feats_free(f);
  return st;
}

static void feats_compute(feats *f, const pk_network *net, const double *theta,
                          const pk_matrix *X, size_t r0, size_t n)
{
  f->n = n;
  pk_net_forward_ws(net, theta, X->data + r0 * X->cols, n, &f->w);
  pk_net_deltas(net, theta, &f->w, n, &f->dl);
  pk_lfeats_compute(&f->lf, net, f->w.A, f->dl.D, n, PK_NET_OUT(net), 1);
}

/* A workspace kept between Grams (by a kernel, or across the steps of a
 * path kernel): first-touch page faults on fresh buffers otherwise cost a
 * large share of a Gram. It never exceeds the kernel's memory budget. */
struct pk_tangent_ws {
  feats f1, f2;
  size_t cap1, cap2;      /* rows the feature blocks hold */
  double *M;              /* the layers' scratch */
  size_t mcap;            /* doubles */
};

pk_tangent_ws *pk_tangent_ws_new(void)
{
  return calloc(1, sizeof(pk_tangent_ws));
}

void pk_tangent_ws_free(pk_tangent_ws *ws)
{
  if (!ws) return;
  feats_free(&ws->f1);
  feats_free(&ws->f2);
  free(ws->M);
  free(ws);
}

static pk_status ws_feats(feats *f, size_t *cap, const pk_network *net, size_t rows)
{
  pk_status st;
  if (*cap >= rows && f->w.buf) return PK_OK;
  feats_free(f);
  *cap = 0;
  if ((st = feats_init(f, net, rows))) return st;
  *cap = rows;
  return PK_OK;
}

static pk_status ws_buf(double **p, size_t *cap, size_t n, const char *what)
{
  pk_status st;
  if (*cap >= n && *p) return PK_OK;
  free(*p);
  *p = NULL;
  *cap = 0;
  if ((st = pk_alloc((void **)p, n ? n : 1, sizeof(double), what))) return st;
  *cap = n;
  return PK_OK;
}

/* One output tile: alpha times the kernel of the rows of f1 against the
 * rows of f2, added at out (leading dimension ldo), layer by layer. The
 * rows go in chunks of RCHUNK, so that each layer's products stay in cache
 * and the scratch stays small. sym: f1 == f2 and only the upper triangle
 * is needed (each chunk starts at its diagonal; what lands below the
 * diagonal is overwritten by the final mirror). */
/* Returns nonzero, leaving the tile part done, when co's cancel flag is
 * seen (between chunks: a tile can be the whole Gram). */
static int tile(const pk_network *net, pk_outputs mode, const feats *f1, const feats *f2,
                double *out, size_t ldo, int sym, double *work, double alpha,
                const pk_call_opts *co)
{
  size_t K = PK_NET_OUT(net), t1 = f1->n, t2 = f2->n, l, r0;
  if (mode == PK_OUTPUTS_DIAGONAL) sym = 0;
  for (r0 = 0; r0 < t1; r0 += RCHUNK) {
    if (pk_cancelled(co)) return 1;
    size_t rc = t1 - r0 < RCHUNK ? t1 - r0 : RCHUNK, j0 = sym ? r0 : 0, nc = t2 - j0;
    double *o0 = out + r0 * (mode == PK_OUTPUTS_TRACE ? 1 : K) * ldo +
                 j0 * (mode == PK_OUTPUTS_BLOCK ? K : 1);
    for (l = 0; l < net->L; l++) {
      const pk_layer *ly = &net->layer[l];
      pk_side s1, s2;
      if (ly->nw + ly->nb == 0) continue;
      pk_net_side(&s1, net, l, f1->w.A, f1->dl.D, f1->lf.feat, r0, rc, K, 1);
      pk_net_side(&s2, net, l, f2->w.A, f2->dl.D, f2->lf.feat, j0, nc, K, 1);
      ly->vt->gram(ly, &s1, &s2, mode, sym, alpha, NULL, o0, ldo, work);
    }
  }
  return 0;
}

static size_t tile_need(const pk_network *net, size_t n1, size_t n2, size_t t, int same,
                        pk_outputs mode)
{
  size_t t1 = t < n1 ? t : n1, t2 = t < n2 ? t : n2;
  int one = same && t1 == n1;      /* a single tile reuses its features */
  return feat_bytes(net, t1) + (one ? 0 : feat_bytes(net, t2)) + scratch_bytes(net, t1, t2, mode);
}

/* the largest tile t (rows of each side) whose working set fits `mem` */
static size_t pick_tile(const pk_network *net, size_t n1, size_t n2, size_t mem, int same,
                        pk_outputs mode)
{
  size_t lo = 1, hi = n1 > n2 ? n1 : n2, best = 0;
  if (same && tile_need(net, n1, n2, n1, 1, mode) <= mem) return n1;
  while (lo <= hi) {
    size_t t = lo + (hi - lo) / 2;
    if (tile_need(net, n1, n2, t, 0, mode) <= mem) { best = t; lo = t + 1; }
    else hi = t - 1;
  }
  return best;
}

/* out += alpha K_theta(X1, X2) (upper triangle only when X1 is X2 and the
 * mode is symmetric: pk_tangent_mirror completes it). */
pk_status pk_tangent_accumulate(const pk_network *net, const double *theta, const pk_matrix *X1,
                                const pk_matrix *X2, pk_outputs mode, size_t memory, double alpha,
                                const pk_call_opts *o, pk_tangent_ws *ws, pk_matrix *out)
{
  size_t K = PK_NET_OUT(net), n1 = X1->rows, n2 = X2->rows, t, ti, tj, ntiles, done = 0;
  int same = X1 == X2 || (X1->data == X2->data && n1 == n2);
  int sym = same && mode != PK_OUTPUTS_DIAGONAL, why;
  size_t rk = mode == PK_OUTPUTS_TRACE ? 1 : K, ck = mode == PK_OUTPUTS_BLOCK ? K : 1;
  size_t ldo = n2 * ck;
  pk_tangent_ws *own = NULL;
  feats *f1, *f2;
  pk_status st = PK_OK;
  if (n1 == 0 || n2 == 0) return PK_OK;
  /* tiles shrink to fit the memory limit too */
  if (memory > pk_memory_limit()) {
    memory = pk_memory_limit();
    if ((st = pk_check_bytes_hint(tile_need(net, n1, n2, 1, 0, mode), 1,
                                  "one tile of the tangent kernel",
                                  "use a smaller network")))
      return st;
  }
  if (!ws && !(ws = own = pk_tangent_ws_new())) return pk_fail(PK_ENOMEM, "tangent kernel: out of memory");
  f1 = &ws->f1;
  f2 = &ws->f2;
  t = pick_tile(net, n1, n2, memory, same, mode);
  if (t == 0) {
    size_t need = tile_need(net, n1, n2, 1, 0, mode);
    st = pk_fail(PK_ENOMEM, "tangent kernel: memory = %zu bytes is too small for one tile; "
                 "the minimum for this network is %zu bytes", memory, need);
    goto out;
  }
  {
    size_t t1 = t < n1 ? t : n1, t2 = t < n2 ? t : n2, nw = work_doubles(net, t1, t2, mode);
    /* a cached workspace must not push the total over the budget */
    if (ws->cap1 > t1 || ws->cap2 > t2 || ws->mcap > nw) {
      feats_free(&ws->f1);
      feats_free(&ws->f2);
      ws->cap1 = ws->cap2 = 0;
      free(ws->M);
      ws->M = NULL;
      ws->mcap = 0;
    }
    if ((st = ws_feats(f1, &ws->cap1, net, t1))) goto out;
    if (!same && (st = ws_feats(f2, &ws->cap2, net, t2))) goto out;
    if ((st = ws_buf(&ws->M, &ws->mcap, nw, "the tangent kernel's tile"))) goto out;
  }
  ntiles = ((n1 + t - 1) / t) * ((n2 + t - 1) / t);
  if (sym) ntiles = ((n1 + t - 1) / t) * ((n1 + t - 1) / t + 1) / 2;
  for (ti = 0; ti < n1; ti += t) {
    size_t m1 = n1 - ti < t ? n1 - ti : t;
    feats_compute(f1, net, theta, X1, ti, m1);
    for (tj = sym ? ti : 0; tj < n2; tj += t) {
      size_t m2 = n2 - tj < t ? n2 - tj : t;
      const feats *g = f1;
      if (!(same && tj == ti)) {
        /* X1 == X2 only reaches here off the diagonal when there are
         * several tiles: then the second feature block is needed too */
        if ((st = ws_feats(f2, &ws->cap2, net, t))) goto out;
        feats_compute(f2, net, theta, X2, tj, m2);
        g = f2;
      }
      if (tile(net, mode, f1, g, out->data + ti * rk * ldo + tj * ck, ldo, sym && tj == ti, ws->M,
               alpha, o))
        why = PK_STOP_INTERRUPT;
      else
        why = pk_progress(o, (double)++done, (double)ntiles);
      if (why) {
        st = pk_fail(PK_ECANCEL, "tangent kernel: %s", pk_stop_word(why));
        goto out;
      }
    }
  }
out:
  pk_tangent_ws_free(own);
  return st;
}

/* complete a symmetric Gram from its upper triangle */
void pk_tangent_mirror(pk_matrix *out)
{
  pk_mirror_upper(out->data, out->rows);
}

int pk_tangent_symmetric(const pk_matrix *X1, const pk_matrix *X2, pk_outputs mode)
{
  return mode != PK_OUTPUTS_DIAGONAL &&
         (X1 == X2 || (X1->data == X2->data && X1->rows == X2->rows));
}

static pk_status tangent_gram(const pk_kernel *k, const pk_matrix *X1, const pk_matrix *X2,
                              const pk_call_opts *o, pk_matrix *out)
{
  const tangent_state *s = k->state;
  pk_status st;
  memset(out->data, 0, out->rows * out->cols * sizeof(double));
  if (!s->ws) {
    tangent_state *m = k->state;     /* the cache is not part of the value */
    if (!(m->ws = pk_tangent_ws_new())) return pk_fail(PK_ENOMEM, "tangent kernel: out of memory");
  }
  st = pk_tangent_accumulate(s->net, s->net->theta, X1, X2, k->mode, k->memory, 1.0, o, s->ws, out);
  if (!st && pk_tangent_symmetric(X1, X2, k->mode)) pk_tangent_mirror(out);
  return st;
}

/* out (n x 1, or n*K x 1) += alpha K_theta(x_i, x_i) */
/* a block of t rows for the diagonal: features and the squared norms */
static size_t diag_bytes(const pk_network *net, size_t t)
{
  return feat_bytes(net, t) + t * PK_NET_OUT(net) * sizeof(double);
}

pk_status pk_tangent_diag_accumulate(const pk_network *net, const double *theta,
                                     const pk_matrix *X, pk_outputs mode, size_t memory,
                                     double alpha, const pk_call_opts *o, pk_matrix *out)
{
  size_t K = PK_NET_OUT(net), n = X->rows, t, r0, i, kk, l;
  int why;
  feats f;
  double *v = NULL;
  pk_status st;
  t = n ? n : 1;
  if (memory > pk_memory_limit()) {
    memory = pk_memory_limit();
    if ((st = pk_check_bytes_hint(diag_bytes(net, 1), 1, "one row of the tangent kernel's diagonal",
                                  "use a smaller network")))
      return st;
  } else if (diag_bytes(net, 1) > memory) {
    return pk_fail(PK_ENOMEM, "tangent kernel: memory = %zu bytes is too small for one row; the "
                   "minimum for this network is %zu bytes", memory, diag_bytes(net, 1));
  }
  while (t > 1 && diag_bytes(net, t) > memory) t /= 2;
  if ((st = feats_init(&f, net, t))) return st;
  if ((st = pk_alloc((void **)&v, t * K, sizeof(double), "the tangent kernel's diagonal"))) {
    feats_free(&f);
    return st;
  }
  for (r0 = 0; r0 < n; r0 += t) {
    size_t m = n - r0 < t ? n - r0 : t;
    feats_compute(&f, net, theta, X, r0, m);
    /* |g_r|^2 summed over the layers, in layer order */
    memset(v, 0, m * K * sizeof(double));
    for (l = 0; l < net->L; l++) {
      const pk_layer *ly = &net->layer[l];
      pk_side s;
      if (ly->nw + ly->nb == 0) continue;
      pk_net_side(&s, net, l, f.w.A, f.dl.D, f.lf.feat, 0, m, K, 1);
      ly->vt->sqnorm(ly, &s, v);
    }
    for (i = 0; i < m; i++) {
      double tr = 0;
      for (kk = 0; kk < K; kk++) {
        if (mode == PK_OUTPUTS_TRACE) tr += v[i * K + kk];
        else out->data[(r0 + i) * K + kk] += alpha * v[i * K + kk];
      }
      if (mode == PK_OUTPUTS_TRACE) out->data[r0 + i] += alpha * tr;
    }
    if ((why = pk_progress(o, (double)(r0 + m), (double)n))) {
      st = pk_fail(PK_ECANCEL, "tangent kernel: %s", pk_stop_word(why));
      break;
    }
  }
  feats_free(&f);
  free(v);
  return st;
}

static pk_status tangent_diag(const pk_kernel *k, const pk_matrix *X, const pk_call_opts *o,
                              pk_matrix *out)
{
  const tangent_state *s = k->state;
  memset(out->data, 0, out->rows * sizeof(double));
  return pk_tangent_diag_accumulate(s->net, s->net->theta, X, k->mode, k->memory, 1.0, o, out);
}

static void tangent_destroy(pk_kernel *k)
{
  tangent_state *s = k->state;
  if (s) {
    pk_network_free(s->net);
    pk_tangent_ws_free(s->ws);
  }
  free(s);
}

static const pk_kernel_vt tangent_vt = { "tangent", tangent_gram, tangent_diag, tangent_destroy };

pk_status pk_kernel_tangent(pk_kernel **out, const pk_network *net)
{
  tangent_state *s = calloc(1, sizeof *s);
  pk_status st;
  *out = NULL;
  if (!s) return pk_fail(PK_ENOMEM, "tangent kernel: out of memory");
  if ((st = pk_network_clone(&s->net, net))) {
    free(s);
    return st;
  }
  if ((st = pk_kernel_new(out, &tangent_vt, s))) {
    pk_network_free(s->net);
    free(s);
    return st;
  }
  (*out)->input_dim = PK_NET_IN(net);
  (*out)->nout = PK_NET_OUT(net);
  return PK_OK;
}
