/* matrix.c - the pathkernel.Matrix userdata: constructors, views that
 * keep their parent alive, arithmetic metamethods, elementwise functions
 * and reductions, stacking, splitting, CSV, .npy and files. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include "aux.h"

static pk_matrix *checkm(lua_State *L, int idx) { return pkL_check(L, idx, &pkL_Matrix); }
/* the slot of a new, empty Matrix on top: a core constructor fills it */
static pk_matrix **newm(lua_State *L) { return &pkL_newbox(L, &pkL_Matrix)->u.matrix; }

/* ---- constructors ----------------------------------------------------------- */

/* pk.zeros, ones, rand, randn (rows, cols [, seed]) */
static int filled(lua_State *L, int kind)
{
  size_t r = pkL_checksize(L, 1, "rows"), c = pkL_checksize(L, 2, "cols");
  uint64_t seed = kind >= 2 ? pkL_optseed(L, 3) : 0;
  pk_matrix **out = newm(L);
  switch (kind) {
  case 0: return pkL_made(L, pk_matrix_zeros(out, r, c));
  case 1: return pkL_made(L, pk_matrix_fill(out, r, c, 1.0));
  case 2: return pkL_made(L, pk_matrix_rand(out, r, c, seed));
  default: return pkL_made(L, pk_matrix_randn(out, r, c, seed));
  }
}

static int l_zeros(lua_State *L) { return filled(L, 0); }
static int l_ones(lua_State *L) { return filled(L, 1); }
static int l_rand(lua_State *L) { return filled(L, 2); }
static int l_randn(lua_State *L) { return filled(L, 3); }

static int l_eye(lua_State *L)
{
  size_t n = pkL_checksize(L, 1, "size");
  return pkL_made(L, pk_matrix_eye(newm(L), n));
}

static double table_number(lua_State *L, int i, int j)
{
  double v;
  if (lua_type(L, -1) != LUA_TNUMBER) {
    if (j) luaL_error(L, "matrix: entry [%d][%d] is %s, not a number", i, j, luaL_typename(L, -1));
    luaL_error(L, "matrix: entry [%d] is %s, not a number", i, luaL_typename(L, -1));
  }
  v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* pk.matrix{{1,2},{3,4}}: a table of rows; a flat table of numbers makes a
 * column vector; pk.matrix(M) copies a matrix. */
static int l_matrix(lua_State *L)
{
  size_t rows, cols = 0, i, j;
  double *d;
  int t = LUA_TTABLE;
  if (pkL_testbox(L, 1, &pkL_Matrix)) {
    pk_matrix *a = checkm(L, 1);
    return pkL_made(L, pk_matrix_copy(newm(L), a));
  }
  pkL_checktype(L, 1, LUA_TTABLE);
  rows = lua_rawlen(L, 1);
  if (rows > 0) {
    t = lua_rawgeti(L, 1, 1);
    cols = t == LUA_TTABLE ? lua_rawlen(L, -1) : 1;
    lua_pop(L, 1);
    if (t != LUA_TTABLE && t != LUA_TNUMBER)
      return luaL_error(L, "matrix: row 1 is %s, expected a table of numbers", lua_typename(L, t));
  }
  pkL_made(L, pk_matrix_new(newm(L), rows, cols));
  d = pk_matrix_data(pkL_testbox(L, -1, &pkL_Matrix)->u.matrix);
  for (i = 0; i < rows; i++) {
    if (t == LUA_TNUMBER) {        /* a column vector */
      lua_rawgeti(L, 1, (lua_Integer)i + 1);
      d[i] = table_number(L, (int)i + 1, 0);
      continue;
    }
    if (lua_rawgeti(L, 1, (lua_Integer)i + 1) != LUA_TTABLE)
      return luaL_error(L, "matrix: row %d is %s, expected a table of numbers", (int)i + 1,
                        luaL_typename(L, -1));
    if (lua_rawlen(L, -1) != cols)
      return luaL_error(L, "matrix: ragged rows: row %d has %d entries, row 1 has %d",
                        (int)i + 1, (int)lua_rawlen(L, -1), (int)cols);
    for (j = 0; j < cols; j++) {
      lua_rawgeti(L, -1, (lua_Integer)j + 1);
      d[i * cols + j] = table_number(L, (int)i + 1, (int)j + 1);
    }
    lua_pop(L, 1);
  }
  return 1;
}

/* ---- shape, entries and views -------------------------------------------------- */

static int m_rows(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)pk_matrix_rows(checkm(L, 1)));
  return 1;
}

static int m_cols(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)pk_matrix_cols(checkm(L, 1)));
  return 1;
}

static int m_shape(lua_State *L)
{
  pk_matrix *m = checkm(L, 1);
  lua_pushinteger(L, (lua_Integer)pk_matrix_rows(m));
  lua_pushinteger(L, (lua_Integer)pk_matrix_cols(m));
  return 2;
}

static size_t check_index(lua_State *L, int idx, size_t n, const char *what)
{
  lua_Integer v = pkL_checkint(L, idx, LUA_MININTEGER, what);
  if (v < 1 || (lua_Unsigned)v > n) {
    if (n == 0) luaL_error(L, "%s %I out of range (the matrix has no %ss)", what, v, what);
    luaL_error(L, "%s %I out of range 1..%d", what, v, (int)n);
  }
  return (size_t)v - 1;
}

static int m_get(lua_State *L)
{
  pk_matrix *m = checkm(L, 1);
  size_t i = check_index(L, 2, pk_matrix_rows(m), "row");
  size_t j = check_index(L, 3, pk_matrix_cols(m), "column");
  lua_pushnumber(L, pk_matrix_get(m, i, j));
  return 1;
}

static int m_set(lua_State *L)
{
  pk_matrix *m = checkm(L, 1);
  size_t i = check_index(L, 2, pk_matrix_rows(m), "row");
  size_t j = check_index(L, 3, pk_matrix_cols(m), "column");
  pk_matrix_set(m, i, j, pkL_checknumber(L, 4));
  return 0;
}

/* rows [r0, r1) of the matrix at 1 as a view, which keeps it alive */
static int push_view(lua_State *L, pk_matrix *m, size_t r0, size_t r1)
{
  pkL_raise(L, pk_matrix_view_rows(newm(L), m, r0, r1));
  pkL_keep(L, -1, 1);
  return 1;
}

static int m_row(lua_State *L)
{
  pk_matrix *m = checkm(L, 1);
  size_t i = check_index(L, 2, pk_matrix_rows(m), "row");
  return push_view(L, m, i, i + 1);
}

/* the span first..last of the arguments 2 and 3 within 1..n (empty when
 * last = first - 1), as [*i0, *i1) */
static void check_span(lua_State *L, size_t n, const char *what, const char *msg, size_t *i0,
                       size_t *i1)
{
  char first[32], last[32];
  lua_Integer a, b;
  snprintf(first, sizeof first, "first %s", what);
  snprintf(last, sizeof last, "last %s", what);
  a = pkL_checkint(L, 2, LUA_MININTEGER, first);
  b = pkL_checkint(L, 3, LUA_MININTEGER, last);
  if (a < 1 || b > (lua_Integer)n || b < a - 1) luaL_error(L, msg, a, b, (int)n);
  *i0 = (size_t)a - 1;
  *i1 = (size_t)b;
}

static int m_slice(lua_State *L)
{
  pk_matrix *m = checkm(L, 1);
  size_t i0, i1;
  check_span(L, pk_matrix_rows(m), "row", "slice %I..%I out of range for %d rows", &i0, &i1);
  return push_view(L, m, i0, i1);
}

/* A:columns(j1, j2): a copy of columns j1..j2 */
static int m_columns(lua_State *L)
{
  pk_matrix *m = checkm(L, 1);
  size_t j0, j1;
  check_span(L, pk_matrix_cols(m), "column", "columns %I..%I out of range for %d columns", &j0,
             &j1);
  return pkL_made(L, pk_matrix_columns(newm(L), m, j0, j1));
}

/* A:gather{ i1, i2, ... }: a copy of the listed rows, in that order */
static int m_gather(lua_State *L)
{
  pk_matrix *m = checkm(L, 1);
  size_t n, k, *rows;
  pkL_checktype(L, 2, LUA_TTABLE);
  n = lua_rawlen(L, 2);
  pkL_raise(L, pk_check_bytes(n, sizeof *rows, "gather"));
  rows = lua_newuserdatauv(L, (n ? n : 1) * sizeof *rows, 0);    /* scratch the GC owns */
  for (k = 0; k < n; k++) {
    lua_Integer i;
    int isint;
    lua_rawgeti(L, 2, (lua_Integer)k + 1);
    i = lua_tointegerx(L, -1, &isint);
    if (!isint) return luaL_error(L, "gather: entry %d is not an integer row index", (int)k + 1);
    if (i < 1 || (lua_Unsigned)i > pk_matrix_rows(m))
      return luaL_error(L, "gather: row %I out of range 1..%d", i, (int)pk_matrix_rows(m));
    lua_pop(L, 1);
    rows[k] = (size_t)i - 1;
  }
  return pkL_made(L, pk_matrix_gather(newm(L), m, rows, n));
}

static int m_totable(lua_State *L)
{
  pk_matrix *m = checkm(L, 1);
  size_t i, j, r = pk_matrix_rows(m), c = pk_matrix_cols(m);
  const double *d = pk_matrix_cdata(m);
  char what[80];
  /* Lua tables cost about 16 bytes a slot and 64 a table: a 2^31 x 0
   * matrix would make 2^31 empty rows, so check the memory limit first */
  snprintf(what, sizeof what, "totable of a %zu x %zu matrix", r, c);
  pkL_raise(L, pk_check_bytes(r + 1, 64 + 16 * c, what));
  lua_createtable(L, (int)r, 0);
  for (i = 0; i < r; i++) {
    lua_createtable(L, (int)c, 0);
    for (j = 0; j < c; j++) {
      lua_pushnumber(L, d[i * c + j]);
      lua_rawseti(L, -2, (lua_Integer)j + 1);
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* like NumPy: whole for small matrices, 3 + ... + 3 beyond 10 rows or cols */
static int shown(size_t n, size_t k) { return n <= 10 || k < 3 || k >= n - 3; }
/* the index after k that tostring looks at: 3 stands for the elided middle */
static size_t next_shown(size_t n, size_t k) { return n > 10 && k == 3 ? n - 3 : k + 1; }

static int m_tostring(lua_State *L)
{
  pk_matrix *m = pkL_checkbox(L, 1, &pkL_Matrix)->u.matrix;
  luaL_Buffer buf;
  char cell[64];   /* the header line: 18 + 2 x 20 digits + x */
  int width = 1;
  size_t i, j, r, c;
  const double *d;
  if (!m) return pkL_released(L, &pkL_Matrix);
  r = pk_matrix_rows(m);
  c = pk_matrix_cols(m);
  d = pk_matrix_cdata(m);
  for (i = 0; i < r; i = next_shown(r, i))
    for (j = 0; j < c; j = next_shown(c, j))
      if (shown(r, i) && shown(c, j)) {
        int w = snprintf(cell, sizeof cell, "%.6g", d[i * c + j]);
        if (w > width) width = w;
      }
  luaL_buffinit(L, &buf);
  snprintf(cell, sizeof cell, "pathkernel.Matrix %zux%zu", r, c);
  luaL_addstring(&buf, cell);
  for (i = 0; i < r; i = next_shown(r, i)) {
    if (!shown(r, i)) {
      if (i == 3) luaL_addstring(&buf, "\n ...");
      continue;
    }
    luaL_addstring(&buf, "\n");
    for (j = 0; j < c; j = next_shown(c, j)) {
      if (!shown(c, j)) {
        if (j == 3) luaL_addstring(&buf, "  ...");
        continue;
      }
      snprintf(cell, sizeof cell, " %*.6g", width, d[i * c + j]);
      luaL_addstring(&buf, cell);
    }
  }
  luaL_pushresult(&buf);
  return 1;
}

static int m_len(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)pk_matrix_rows(checkm(L, 1)));
  return 1;
}

/* ---- arithmetic ---------------------------------------------------------------- */

/* A op B, A op s, s op A for + - * (A * B the matrix product); A - s is
 * A + (-s), the same IEEE result */
static int arith(lua_State *L, char op)
{
  int n1 = lua_type(L, 1) == LUA_TNUMBER, n2 = lua_type(L, 2) == LUA_TNUMBER;
  pk_matrix *a = checkm(L, n1 ? 2 : 1), *b = n1 || n2 ? NULL : checkm(L, 2), **out;
  double s = n1 ? lua_tonumber(L, 1) : n2 ? lua_tonumber(L, 2) : 0;
  out = newm(L);
  if (op == '+') return pkL_made(L, b ? pk_matrix_add(out, a, b) : pk_matrix_add_scalar(out, a, s));
  if (op == '*') return pkL_made(L, b ? pk_matrix_mul(out, a, b) : pk_matrix_scale(out, s, a));
  return pkL_made(L, b ? pk_matrix_sub(out, a, b)
                       : n1 ? pk_matrix_scalar_sub(out, s, a) : pk_matrix_add_scalar(out, a, -s));
}

static int m_add(lua_State *L) { return arith(L, '+'); }
static int m_sub(lua_State *L) { return arith(L, '-'); }
static int m_mul(lua_State *L) { return arith(L, '*'); }

static int m_div(lua_State *L)
{
  pk_matrix *a = checkm(L, 1);
  double s = pkL_checknumber(L, 2);
  return pkL_made(L, pk_matrix_div_scalar(newm(L), a, s));
}

static int m_unm(lua_State *L)
{
  pk_matrix *a = checkm(L, 1);
  return pkL_made(L, pk_matrix_scale(newm(L), -1.0, a));
}

static int m_t(lua_State *L)
{
  pk_matrix *a = checkm(L, 1);
  return pkL_made(L, pk_matrix_transpose(newm(L), a));
}

static int m_hadamard(lua_State *L)
{
  pk_matrix *a = checkm(L, 1), *b = checkm(L, 2);
  return pkL_made(L, pk_matrix_hadamard(newm(L), a, b));
}

static int m_copy(lua_State *L)
{
  pk_matrix *a = checkm(L, 1);
  return pkL_made(L, pk_matrix_copy(newm(L), a));
}

/* ---- reductions and elementwise functions ---------------------------------------- */

/* the optional dim argument of a reduction: 0 when absent */
static int opt_dim(lua_State *L, int idx)
{
  lua_Integer d;
  if (lua_isnoneornil(L, idx)) return 0;
  d = pkL_checkint(L, idx, LUA_MININTEGER, "dim");
  if (d != 1 && d != 2)
    luaL_error(L, "%s: dim must be 1 (one value per column) or 2 (one per row), got %I",
               pkL_fname(L), d);
  return (int)d;
}

/* A:sum() a number; A:sum(dim) 1 x c (dim 1) or r x 1 (dim 2) */
static int m_sum(lua_State *L)
{
  pk_matrix *a = checkm(L, 1);
  int dim = opt_dim(L, 2);
  if (dim) return pkL_made(L, pk_matrix_sum_dim(newm(L), a, dim));
  lua_pushnumber(L, pk_matrix_sum(a));
  return 1;
}

static int m_mean(lua_State *L)
{
  pk_matrix *a = checkm(L, 1);
  int dim = opt_dim(L, 2);
  size_t n = pk_matrix_rows(a) * pk_matrix_cols(a);
  if (dim) return pkL_made(L, pk_matrix_mean_dim(newm(L), a, dim));
  if (n == 0)
    return luaL_error(L, "mean of an empty %dx%d matrix", (int)pk_matrix_rows(a),
                      (int)pk_matrix_cols(a));
  lua_pushnumber(L, pk_matrix_sum(a) / (double)n);
  return 1;
}

/* A:std([dim] [, { ddof = 0 }]): population std by default, as NumPy */
static int m_std(lua_State *L)
{
  static const pkL_option spec[] = {
    { "ddof", PKL_INTEGER, .offset = 0, .lo = 0, .hi = -1 }, { NULL, 0, .offset = 0 }
  };
  pk_matrix *a = checkm(L, 1);
  int oi = lua_type(L, 2) == LUA_TTABLE ? 2 : 3, dim = oi == 2 ? 0 : opt_dim(L, 2);
  lua_Integer ddof = 0;
  double v;
  pkL_options(L, oi, "std", spec, &ddof);
  if (dim) return pkL_made(L, pk_matrix_std_dim(newm(L), a, dim, (size_t)ddof));
  pkL_raise(L, pk_matrix_std(a, (size_t)ddof, &v));
  lua_pushnumber(L, v);
  return 1;
}

/* A:argmax() -> i, j of the largest entry; A:argmax(dim) -> 1-based
 * indices as a 1 x c (dim 1) or r x 1 (dim 2) matrix */
static int m_argmax(lua_State *L)
{
  pk_matrix *a = checkm(L, 1);
  int dim = opt_dim(L, 2);
  size_t n, k, *idx, r = pk_matrix_rows(a), c = pk_matrix_cols(a);
  double *d;
  if (!dim) {
    size_t i, j;
    pkL_raise(L, pk_matrix_argmax(a, &i, &j));
    lua_pushinteger(L, (lua_Integer)i + 1);
    lua_pushinteger(L, (lua_Integer)j + 1);
    return 2;
  }
  n = dim == 1 ? c : r;
  if ((dim == 1 ? r : c) == 0)         /* nothing to compare: the core says so */
    return pkL_error(L, pk_matrix_argmax_dim(a, dim, NULL));
  pkL_raise(L, pk_check_bytes(n, sizeof *idx, "argmax"));
  idx = lua_newuserdatauv(L, (n ? n : 1) * sizeof *idx, 0);    /* scratch the GC owns */
  pkL_raise(L, pk_matrix_argmax_dim(a, dim, idx));
  pkL_made(L, dim == 1 ? pk_matrix_new(newm(L), 1, n) : pk_matrix_new(newm(L), n, 1));
  d = pk_matrix_data(pkL_testbox(L, -1, &pkL_Matrix)->u.matrix);
  for (k = 0; k < n; k++) d[k] = (double)idx[k] + 1;
  return 1;
}

/* elementwise functions (IEEE outside the domain: log(-1) is NaN) */
static int map(lua_State *L, pk_map f)
{
  pk_matrix *a = checkm(L, 1);
  return pkL_made(L, pk_matrix_map(newm(L), a, f));
}

static int m_exp(lua_State *L) { return map(L, PK_MAP_EXP); }
static int m_log(lua_State *L) { return map(L, PK_MAP_LOG); }
static int m_sqrt(lua_State *L) { return map(L, PK_MAP_SQRT); }
static int m_abs(lua_State *L) { return map(L, PK_MAP_ABS); }
static int m_tanh(lua_State *L) { return map(L, PK_MAP_TANH); }

static int m_pow(lua_State *L)
{
  pk_matrix *a = checkm(L, 1);
  double p;
  if (lua_type(L, 2) != LUA_TNUMBER)
    return luaL_error(L, "pow: the exponent must be a number, got %s", luaL_typename(L, 2));
  p = lua_tonumber(L, 2);
  return pkL_made(L, pk_matrix_pow(newm(L), a, p));
}

static int m_norm(lua_State *L)
{
  lua_pushnumber(L, pk_matrix_norm(checkm(L, 1)));
  return 1;
}

static int m_max_abs(lua_State *L)
{
  lua_pushnumber(L, pk_matrix_max_abs(checkm(L, 1)));
  return 1;
}

/* ---- several matrices ---------------------------------------------------------- */

/* the matrices of the table at idx (a list), into a scratch array the GC owns */
static const pk_matrix **list_of_matrices(lua_State *L, int idx, const char *fn, size_t *n)
{
  const pk_matrix **parts;
  size_t k;
  pkL_checktype(L, idx, LUA_TTABLE);
  *n = lua_rawlen(L, idx);
  pkL_raise(L, pk_check_bytes(*n, sizeof *parts, fn));
  parts = lua_newuserdatauv(L, (*n ? *n : 1) * sizeof *parts, 0);
  for (k = 0; k < *n; k++) {
    pkL_box *b;
    lua_rawgeti(L, idx, (lua_Integer)k + 1);
    if (!(b = pkL_testbox(L, -1, &pkL_Matrix)))
      luaL_error(L, "%s: entry %d is %s, not a matrix", fn, (int)k + 1, luaL_typename(L, -1));
    if (!b->u.matrix) luaL_error(L, "%s: entry %d has been released", fn, (int)k + 1);
    parts[k] = b->u.matrix;
    lua_pop(L, 1);      /* the table keeps it alive */
  }
  return parts;
}

/* pk.hstack{A, B, ...} side by side; pk.vstack{A, B, ...} on top of each other */
static int l_hstack(lua_State *L)
{
  size_t n;
  const pk_matrix **parts = list_of_matrices(L, 1, "hstack", &n);
  return pkL_made(L, pk_matrix_hstack(newm(L), parts, n));
}

static int l_vstack(lua_State *L)
{
  size_t n;
  const pk_matrix **parts = list_of_matrices(L, 1, "vstack", &n);
  return pkL_made(L, pk_matrix_vstack(newm(L), parts, n));
}

typedef struct split_args {
  int test;           /* stack index of the test option, or 0 */
  uint64_t seed;
  int shuffle;
} split_args;

/* the size of the test set from the test option at idx (0: absent) */
static size_t test_rows(lua_State *L, int idx, size_t n)
{
  double f = 0.25;
  size_t ntest;
  if (idx && lua_isinteger(L, idx)) {      /* a count */
    lua_Integer c = lua_tointeger(L, idx);
    if (c < 1) luaL_error(L, "split: test = %I: a count of test rows must be >= 1", c);
    if ((lua_Unsigned)c >= n)
      luaL_error(L, "split: test = %I of %d rows leaves no training rows", c, (int)n);
    return (size_t)c;
  }
  if (idx && lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "split: test must be a fraction in (0, 1) or an integer count, got %s",
               luaL_typename(L, idx));
  if (idx) f = lua_tonumber(L, idx);      /* a fraction (0.25 by default): round(f n) rows */
  if (!(f > 0 && f < 1))
    luaL_error(L, "split: test = %f: a fraction must be in (0, 1) (or give an integer count)", f);
  ntest = (size_t)floor(f * (double)n + 0.5);
  if (ntest == 0 || ntest == n)
    luaL_error(L, "split: test = %f of %d rows leaves %s empty", f, (int)n,
               ntest ? "the training set" : "the test set");
  return ntest;
}

/* pk.split(X, Y [, { test = 0.25, seed =, shuffle = true }]) -> Xtrain,
 * Ytrain, Xtest, Ytest, train rows, test rows (Y may be nil: then the Y
 * results are nil) */
static int l_split(lua_State *L)
{
  static const pkL_option spec[] = {
    { "test", PKL_VALUE, .offset = offsetof(split_args, test) },
    { "seed", PKL_SEED, .offset = offsetof(split_args, seed) },
    { "shuffle", PKL_BOOLEAN, .offset = offsetof(split_args, shuffle) },
    { NULL, 0, .offset = 0 }
  };
  split_args a = { 0, 0, 1 };
  pk_matrix *X = checkm(L, 1), *Y, **s[4];
  size_t n = pk_matrix_rows(X), ntest, k, *order;
  int i, first;
  if (lua_type(L, 2) == LUA_TTABLE) {     /* pk.split(X, opts): no Y */
    lua_settop(L, 2);
    lua_pushnil(L);
    lua_insert(L, 2);
  }
  Y = lua_isnoneornil(L, 2) ? NULL : checkm(L, 2);
  lua_settop(L, 3);
  pkL_options(L, 3, "split", spec, &a);
  if (Y && pk_matrix_rows(Y) != n)
    return luaL_error(L, "split: X has %d rows, Y has %d", (int)n, (int)pk_matrix_rows(Y));
  ntest = test_rows(L, a.test, n);
  pkL_raise(L, pk_check_bytes(n, sizeof *order, "split"));
  order = lua_newuserdatauv(L, (n ? n : 1) * sizeof *order, 0);
  first = lua_gettop(L) + 1;
  for (i = 0; i < 4; i++) s[i] = newm(L);
  pkL_raise(L, pk_split(X, Y, ntest, a.shuffle, a.seed, s[0], Y ? s[1] : NULL, s[2],
                        Y ? s[3] : NULL, order));
  for (i = 0; i < 4; i++) {
    if (*s[i]) lua_pushvalue(L, first + i);
    else lua_pushnil(L);
  }
  for (i = 0; i < 2; i++) {
    size_t from = i ? n - ntest : 0, to = i ? n : n - ntest;
    lua_createtable(L, (int)(to - from), 0);
    for (k = from; k < to; k++) {
      lua_pushinteger(L, (lua_Integer)order[k] + 1);
      lua_rawseti(L, -2, (lua_Integer)(k - from) + 1);
    }
  }
  pkL_account(L);
  return 6;
}

/* pk.accuracy(logits, labels) -> fraction correct, count correct */
static int l_accuracy(lua_State *L)
{
  pk_matrix *F = checkm(L, 1), *Y = checkm(L, 2);
  size_t ok;
  pkL_raise(L, pk_accuracy(F, Y, &ok));
  lua_pushnumber(L, (double)ok / (double)pk_matrix_rows(F));
  lua_pushinteger(L, (lua_Integer)ok);
  return 2;
}

/* ---- files ---------------------------------------------------------------------- */

static int m_save(lua_State *L)
{
  pk_matrix *a = checkm(L, 1);
  return pkL_ioresult(L, pk_matrix_save(a, pkL_saveargs(L, NULL, NULL)), 0);
}

int pkL_load_matrix(lua_State *L, const char *path)
{
  return pkL_ioresult(L, pk_matrix_load(newm(L), path), 1);
}

typedef struct csv_args {
  pk_csv_opts o;
  const char *sep;
  const char *header;     /* write_csv */
} csv_args;

static int l_read_csv(lua_State *L)
{
  static const pkL_option spec[] = {
    { "header", PKL_BOOLEAN, .offset = offsetof(csv_args, o.header) },
    { "sep", PKL_STRING, .offset = offsetof(csv_args, sep) },
    { NULL, 0, .offset = 0 }
  };
  const char *path = pkL_checkpath(L, 1);
  csv_args a;
  char *header = NULL;
  pk_status st;
  pk_csv_opts_init(&a.o);
  a.sep = ",";
  pkL_options(L, 2, "read_csv", spec, &a);
  if (strlen(a.sep) != 1) return luaL_error(L, "read_csv: sep must be one character");
  a.o.sep = a.sep[0];
  st = pk_matrix_read_csv(newm(L), path, &a.o, a.o.header ? &header : NULL);
  if (st || !header) return pkL_ioresult(L, st, 1);
  lua_pushstring(L, header);   /* may raise on memory: free first */
  free(header);
  return pkL_ioresult(L, st, 2);
}

static int m_write_csv(lua_State *L)
{
  static const pkL_option spec[] = {
    { "header", PKL_STRING, .offset = offsetof(csv_args, header) }, { NULL, 0, .offset = 0 }
  };
  pk_matrix *a = checkm(L, 1);
  const char *path = pkL_checkpath(L, 2);
  csv_args o;
  o.header = NULL;
  if (lua_type(L, 3) == LUA_TSTRING) o.header = lua_tostring(L, 3);
  else if (lua_isnoneornil(L, 3) || lua_type(L, 3) == LUA_TTABLE)
    pkL_options(L, 3, "write_csv", spec, &o);
  else pkL_typeerror(L, 3, "string or table of options");
  return pkL_ioresult(L, pk_matrix_write_csv(a, path, o.header), 0);
}

static int l_read_npy(lua_State *L)
{
  const char *path = pkL_checkpath(L, 1);
  return pkL_ioresult(L, pk_matrix_read_npy(newm(L), path), 1);
}

static int m_write_npy(lua_State *L)
{
  pk_matrix *a = checkm(L, 1);
  return pkL_ioresult(L, pk_matrix_write_npy(a, pkL_saveargs(L, NULL, NULL)), 0);
}

void pkL_open_matrix(lua_State *L)
{
  static const luaL_Reg meta[] = {
    { "__tostring", m_tostring }, { "__add", m_add }, { "__sub", m_sub }, { "__mul", m_mul },
    { "__div", m_div }, { "__unm", m_unm }, { "__len", m_len }, { NULL, NULL }
  };
  static const luaL_Reg methods[] = {
    { "rows", m_rows }, { "cols", m_cols }, { "shape", m_shape }, { "get", m_get },
    { "set", m_set }, { "row", m_row }, { "slice", m_slice }, { "totable", m_totable },
    { "columns", m_columns }, { "gather", m_gather },
    { "t", m_t }, { "hadamard", m_hadamard }, { "sum", m_sum }, { "mean", m_mean },
    { "norm", m_norm }, { "max_abs", m_max_abs }, { "copy", m_copy }, { "save", m_save },
    { "write_csv", m_write_csv }, { "std", m_std }, { "argmax", m_argmax }, { "exp", m_exp },
    { "log", m_log }, { "sqrt", m_sqrt }, { "abs", m_abs }, { "tanh", m_tanh }, { "pow", m_pow },
    { "write_npy", m_write_npy }, { NULL, NULL }
  };
  static const luaL_Reg fns[] = {
    { "matrix", l_matrix }, { "zeros", l_zeros }, { "ones", l_ones }, { "eye", l_eye },
    { "randn", l_randn }, { "rand", l_rand }, { "read_csv", l_read_csv },
    { "read_npy", l_read_npy }, { "hstack", l_hstack }, { "vstack", l_vstack },
    { "split", l_split }, { "accuracy", l_accuracy }, { NULL, NULL }
  };
  pkL_newclass(L, &pkL_Matrix, methods, meta);
  pkL_setfuncs(L, fns, "");
}
