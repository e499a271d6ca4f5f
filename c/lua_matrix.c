/* lua_matrix.c - the pathkernel.Matrix userdata: constructors, views that
 * keep their parent alive, arithmetic metamethods, elementwise functions
 * and reductions, stacking, splitting, CSV, .npy and files. */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "lua_pk.h"

typedef struct { pk_matrix *m; } mbox;

pk_matrix *pk_lua_testmatrix(lua_State *L, int idx)
{
  mbox *b = luaL_testudata(L, idx, PK_MATRIX_MT);
  return b ? b->m : NULL;
}

pk_matrix *pk_lua_checkmatrix(lua_State *L, int idx)
{
  mbox *b = pk_lua_checkudata(L, idx, PK_MATRIX_MT);
  if (!b->m) pk_lua_argerror(L, idx, "matrix has been released");
  return b->m;
}

pk_matrix *pk_lua_checkoptmatrix(lua_State *L, int idx, const char *key)
{
  mbox *b = luaL_testudata(L, idx, PK_MATRIX_MT);
  if (!b)
    luaL_error(L, "%s: option '%s' must be a %s, got %s", pk_lua_fname(L), key, PK_MATRIX_MT,
               pk_lua_typeof(L, lua_absindex(L, idx)));
  if (!b->m) luaL_error(L, "%s: option '%s': matrix has been released", pk_lua_fname(L), key);
  return b->m;
}

pk_matrix **pk_lua_newmatrix(lua_State *L)
{
  mbox *b = lua_newuserdatauv(L, sizeof *b, 1);
  b->m = NULL;
  luaL_setmetatable(L, PK_MATRIX_MT);
  return &b->m;
}

void pk_lua_pushmatrix(lua_State *L, pk_matrix *m)
{
  /* lua_newuserdatauv may raise on memory: do not leak m then */
  mbox *b;
  if (!lua_checkstack(L, 2)) { pk_matrix_free(m); luaL_error(L, "stack overflow"); }
  b = lua_newuserdatauv(L, sizeof *b, 1);
  b->m = m;
  luaL_setmetatable(L, PK_MATRIX_MT);
}

/* Run a core constructor into a fresh userdata already on the stack. */
#define NEWM(L, call)                                   \
  do {                                                  \
    pk_matrix **slot_ = pk_lua_newmatrix(L);            \
    pk_status st_ = (call);                             \
    if (st_) return pk_lua_error(L, st_);               \
    (void)slot_;                                        \
  } while (0)

static int m_release(lua_State *L)
{
  mbox *b = pk_lua_checkudata(L, 1, PK_MATRIX_MT);
  pk_matrix_free(b->m);
  b->m = NULL;
  return 0;
}

static void check_size2(lua_State *L, int i, size_t *r, size_t *c)
{
  *r = pk_lua_checksize(L, i, "rows");
  *c = pk_lua_checksize(L, i + 1, "cols");
}

static int l_zeros(lua_State *L)
{
  size_t r, c;
  check_size2(L, 1, &r, &c);
  NEWM(L, pk_matrix_zeros(slot_, r, c));
  return 1;
}

static int l_ones(lua_State *L)
{
  size_t r, c;
  check_size2(L, 1, &r, &c);
  NEWM(L, pk_matrix_fill(slot_, r, c, 1.0));
  return 1;
}

static int l_eye(lua_State *L)
{
  size_t n = pk_lua_checksize(L, 1, "size");
  NEWM(L, pk_matrix_eye(slot_, n));
  return 1;
}

static int l_randn(lua_State *L)
{
  size_t r, c;
  uint64_t seed;
  check_size2(L, 1, &r, &c);
  seed = pk_lua_optseed(L, 3);
  NEWM(L, pk_matrix_randn(slot_, r, c, seed));
  return 1;
}

static int l_rand(lua_State *L)
{
  size_t r, c;
  uint64_t seed;
  check_size2(L, 1, &r, &c);
  seed = pk_lua_optseed(L, 3);
  NEWM(L, pk_matrix_rand(slot_, r, c, seed));
  return 1;
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
  size_t rows, cols, i, j;
  pk_matrix **slot, *m;
  pk_status st;
  if (pk_lua_testmatrix(L, 1)) {
    NEWM(L, pk_matrix_copy(slot_, pk_lua_checkmatrix(L, 1)));
    return 1;
  }
  pk_lua_checktype(L, 1, LUA_TTABLE);
  rows = lua_rawlen(L, 1);
  cols = 0;
  if (rows > 0) {
    int t = lua_rawgeti(L, 1, 1);
    cols = t == LUA_TTABLE ? lua_rawlen(L, -1) : 0;
    lua_pop(L, 1);
    if (t == LUA_TNUMBER) {        /* column vector */
      slot = pk_lua_newmatrix(L);
      if ((st = pk_matrix_new(slot, rows, 1))) return pk_lua_error(L, st);
      m = *slot;
      for (i = 0; i < rows; i++) {
        lua_rawgeti(L, 1, (lua_Integer)i + 1);
        m->data[i] = table_number(L, (int)i + 1, 0);
      }
      return 1;
    }
    if (t != LUA_TTABLE)
      return luaL_error(L, "matrix: row 1 is %s, expected a table of numbers", lua_typename(L, t));
  }
  slot = pk_lua_newmatrix(L);
  if ((st = pk_matrix_new(slot, rows, cols))) return pk_lua_error(L, st);
  m = *slot;
  for (i = 0; i < rows; i++) {
    if (lua_rawgeti(L, 1, (lua_Integer)i + 1) != LUA_TTABLE)
      return luaL_error(L, "matrix: row %d is %s, expected a table of numbers", (int)i + 1,
                        luaL_typename(L, -1));
    if (lua_rawlen(L, -1) != cols)
      return luaL_error(L, "matrix: ragged rows: row %d has %d entries, row 1 has %d",
                        (int)i + 1, (int)lua_rawlen(L, -1), (int)cols);
    for (j = 0; j < cols; j++) {
      lua_rawgeti(L, -1, (lua_Integer)j + 1);
      m->data[i * cols + j] = table_number(L, (int)i + 1, (int)j + 1);
    }
    lua_pop(L, 1);
  }
  return 1;
}

pk_matrix *pk_lua_pinmatrix(lua_State *L, int idx)
{
  pk_matrix *m = pk_lua_checkmatrix(L, idx);
  pk_matrix **slot = pk_lua_newmatrix(L);
  pk_status st = pk_matrix_view_rows(slot, m, 0, m->rows);
  if (st) pk_lua_error(L, st);
  return *slot;
}

static int m_rows(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)pk_matrix_rows(pk_lua_checkmatrix(L, 1)));
  return 1;
}

static int m_cols(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)pk_matrix_cols(pk_lua_checkmatrix(L, 1)));
  return 1;
}

static int m_shape(lua_State *L)
{
  pk_matrix *m = pk_lua_checkmatrix(L, 1);
  lua_pushinteger(L, (lua_Integer)m->rows);
  lua_pushinteger(L, (lua_Integer)m->cols);
  return 2;
}

static size_t check_index(lua_State *L, int idx, size_t n, const char *what)
{
  lua_Integer v = pk_lua_checkint(L, idx, LUA_MININTEGER, what);
  if (v < 1 || (lua_Unsigned)v > n) {
    if (n == 0) luaL_error(L, "%s %I out of range (the matrix has no %ss)", what, v, what);
    luaL_error(L, "%s %I out of range 1..%d", what, v, (int)n);
  }
  return (size_t)v - 1;
}

static int m_get(lua_State *L)
{
  pk_matrix *m = pk_lua_checkmatrix(L, 1);
  size_t i = check_index(L, 2, m->rows, "row");
  size_t j = check_index(L, 3, m->cols, "column");
  lua_pushnumber(L, m->data[i * m->cols + j]);
  return 1;
}

static int m_set(lua_State *L)
{
  pk_matrix *m = pk_lua_checkmatrix(L, 1);
  size_t i = check_index(L, 2, m->rows, "row");
  size_t j = check_index(L, 3, m->cols, "column");
  double v = pk_lua_checknumber(L, 4);
  m->data[i * m->cols + j] = v;
  return 0;
}

static int push_view(lua_State *L, pk_matrix *m, size_t r0, size_t r1)
{
  pk_matrix **slot = pk_lua_newmatrix(L);
  pk_status st = pk_matrix_view_rows(slot, m, r0, r1);
  if (st) return pk_lua_error(L, st);
  lua_pushvalue(L, 1);             /* the view keeps its parent alive */
  lua_setiuservalue(L, -2, 1);
  return 1;
}

static int m_row(lua_State *L)
{
  pk_matrix *m = pk_lua_checkmatrix(L, 1);
  size_t i = check_index(L, 2, m->rows, "row");
  return push_view(L, m, i, i + 1);
}

static int m_slice(lua_State *L)
{
  pk_matrix *m = pk_lua_checkmatrix(L, 1);
  lua_Integer i1 = pk_lua_checkint(L, 2, LUA_MININTEGER, "first row");
  lua_Integer i2 = pk_lua_checkint(L, 3, LUA_MININTEGER, "last row");
  if (i1 < 1 || i2 > (lua_Integer)m->rows || i2 < i1 - 1)
    return luaL_error(L, "slice %I..%I out of range for %d rows", i1, i2, (int)m->rows);
  return push_view(L, m, (size_t)i1 - 1, (size_t)i2);
}

/* A:columns(j1, j2): a copy of columns j1..j2 */
static int m_columns(lua_State *L)
{
  pk_matrix *m = pk_lua_checkmatrix(L, 1);
  lua_Integer j1 = pk_lua_checkint(L, 2, LUA_MININTEGER, "first column");
  lua_Integer j2 = pk_lua_checkint(L, 3, LUA_MININTEGER, "last column");
  pk_matrix **slot, *o;
  size_t i, w;
  pk_status st;
  if (j1 < 1 || j2 > (lua_Integer)m->cols || j2 < j1 - 1)
    return luaL_error(L, "columns %I..%I out of range for %d columns", j1, j2, (int)m->cols);
  w = (size_t)(j2 - j1 + 1);
  slot = pk_lua_newmatrix(L);
  if ((st = pk_matrix_new(slot, m->rows, w))) return pk_lua_error(L, st);
  o = *slot;
  for (i = 0; i < m->rows; i++)
    if (w) memcpy(o->data + i * w, m->data + i * m->cols + (size_t)j1 - 1, w * sizeof(double));
  return 1;
}

/* A:gather{ i1, i2, ... }: a copy of the listed rows, in that order */
static int m_gather(lua_State *L)
{
  pk_matrix *m = pk_lua_checkmatrix(L, 1), *o;
  pk_matrix **slot;
  size_t n, k;
  pk_status st;
  pk_lua_checktype(L, 2, LUA_TTABLE);
  n = lua_rawlen(L, 2);
  slot = pk_lua_newmatrix(L);
  if ((st = pk_matrix_new(slot, n, m->cols))) return pk_lua_error(L, st);
  o = *slot;
  for (k = 0; k < n; k++) {
    lua_Integer i;
    int isint;
    lua_rawgeti(L, 2, (lua_Integer)k + 1);
    i = lua_tointegerx(L, -1, &isint);
    if (!isint) return luaL_error(L, "gather: entry %d is not an integer row index", (int)k + 1);
    if (i < 1 || (lua_Unsigned)i > m->rows)
      return luaL_error(L, "gather: row %I out of range 1..%d", i, (int)m->rows);
    lua_pop(L, 1);
    if (m->cols) memcpy(o->data + k * m->cols, m->data + ((size_t)i - 1) * m->cols, m->cols * sizeof(double));
  }
  return 1;
}

static int m_totable(lua_State *L)
{
  pk_matrix *m = pk_lua_checkmatrix(L, 1);
  size_t i, j;
  char what[80];
  pk_status st;
  /* Lua tables cost about 16 bytes a slot and 64 a table: a 2^31 x 0
   * matrix would make 2^31 empty rows, so check the memory limit first */
  snprintf(what, sizeof what, "totable of a %zu x %zu matrix", m->rows, m->cols);
  if ((st = pk_check_bytes(m->rows + 1, 64 + 16 * m->cols, what))) return pk_lua_error(L, st);
  lua_createtable(L, (int)m->rows, 0);
  for (i = 0; i < m->rows; i++) {
    lua_createtable(L, (int)m->cols, 0);
    for (j = 0; j < m->cols; j++) {
      lua_pushnumber(L, m->data[i * m->cols + j]);
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
  mbox *b = pk_lua_checkudata(L, 1, PK_MATRIX_MT);
  pk_matrix *m = b->m;
  luaL_Buffer buf;
  char cell[64];   /* the header line: 18 + 2 x 20 digits + x */
  int width = 1;
  size_t i, j;
  if (!m) {
    lua_pushliteral(L, "pathkernel.Matrix (released)");
    return 1;
  }
  for (i = 0; i < m->rows; i = next_shown(m->rows, i))
    for (j = 0; j < m->cols; j = next_shown(m->cols, j))
      if (shown(m->rows, i) && shown(m->cols, j)) {
        int w = snprintf(cell, sizeof cell, "%.6g", m->data[i * m->cols + j]);
        if (w > width) width = w;
      }
  luaL_buffinit(L, &buf);
  snprintf(cell, sizeof cell, "pathkernel.Matrix %zux%zu", m->rows, m->cols);
  luaL_addstring(&buf, cell);
  for (i = 0; i < m->rows; i = next_shown(m->rows, i)) {
    if (!shown(m->rows, i)) {
      if (i == 3) luaL_addstring(&buf, "\n ...");
      continue;
    }
    luaL_addstring(&buf, "\n");
    for (j = 0; j < m->cols; j = next_shown(m->cols, j)) {
      if (!shown(m->cols, j)) {
        if (j == 3) luaL_addstring(&buf, "  ...");
        continue;
      }
      snprintf(cell, sizeof cell, " %*.6g", width, m->data[i * m->cols + j]);
      luaL_addstring(&buf, cell);
    }
  }
  luaL_pushresult(&buf);
  return 1;
}

/* A + B, A + s, s + A */
static int m_add(lua_State *L)
{
  if (lua_type(L, 1) == LUA_TNUMBER) {
    double s = lua_tonumber(L, 1);
    pk_matrix *a = pk_lua_checkmatrix(L, 2);
    NEWM(L, pk_matrix_add_scalar(slot_, a, s));
  } else if (lua_type(L, 2) == LUA_TNUMBER) {
    double s = lua_tonumber(L, 2);
    pk_matrix *a = pk_lua_checkmatrix(L, 1);
    NEWM(L, pk_matrix_add_scalar(slot_, a, s));
  } else {
    pk_matrix *a = pk_lua_checkmatrix(L, 1), *b = pk_lua_checkmatrix(L, 2);
    NEWM(L, pk_matrix_add(slot_, a, b));
  }
  return 1;
}

/* A - B, A - s (as A + (-s): the same IEEE result), s - A */
static int m_sub(lua_State *L)
{
  if (lua_type(L, 1) == LUA_TNUMBER) {
    double s = lua_tonumber(L, 1);
    pk_matrix *a = pk_lua_checkmatrix(L, 2);
    NEWM(L, pk_matrix_scalar_sub(slot_, s, a));
  } else if (lua_type(L, 2) == LUA_TNUMBER) {
    double s = lua_tonumber(L, 2);
    pk_matrix *a = pk_lua_checkmatrix(L, 1);
    NEWM(L, pk_matrix_add_scalar(slot_, a, -s));
  } else {
    pk_matrix *a = pk_lua_checkmatrix(L, 1), *b = pk_lua_checkmatrix(L, 2);
    NEWM(L, pk_matrix_sub(slot_, a, b));
  }
  return 1;
}

static int m_mul(lua_State *L)
{
  if (lua_type(L, 1) == LUA_TNUMBER) {
    double s = lua_tonumber(L, 1);
    pk_matrix *a = pk_lua_checkmatrix(L, 2);
    NEWM(L, pk_matrix_scale(slot_, s, a));
  } else if (lua_type(L, 2) == LUA_TNUMBER) {
    double s = lua_tonumber(L, 2);
    pk_matrix *a = pk_lua_checkmatrix(L, 1);
    NEWM(L, pk_matrix_scale(slot_, s, a));
  } else {
    pk_matrix *a = pk_lua_checkmatrix(L, 1), *b = pk_lua_checkmatrix(L, 2);
    NEWM(L, pk_matrix_mul(slot_, a, b));
  }
  return 1;
}

static int m_div(lua_State *L)
{
  pk_matrix *a = pk_lua_checkmatrix(L, 1);
  double s = pk_lua_checknumber(L, 2);
  NEWM(L, pk_matrix_div_scalar(slot_, a, s));
  return 1;
}

static int m_unm(lua_State *L)
{
  pk_matrix *a = pk_lua_checkmatrix(L, 1);
  NEWM(L, pk_matrix_scale(slot_, -1.0, a));
  return 1;
}

static int m_t(lua_State *L)
{
  pk_matrix *a = pk_lua_checkmatrix(L, 1);
  NEWM(L, pk_matrix_transpose(slot_, a));
  return 1;
}

static int m_hadamard(lua_State *L)
{
  pk_matrix *a = pk_lua_checkmatrix(L, 1), *b = pk_lua_checkmatrix(L, 2);
  NEWM(L, pk_matrix_hadamard(slot_, a, b));
  return 1;
}

static int m_copy(lua_State *L)
{
  pk_matrix *a = pk_lua_checkmatrix(L, 1);
  NEWM(L, pk_matrix_copy(slot_, a));
  return 1;
}

/* the optional dim argument of a reduction: 0 when absent */
static int opt_dim(lua_State *L, int idx, const char *fn)
{
  lua_Integer d;
  if (lua_isnoneornil(L, idx)) return 0;
  d = pk_lua_checkint(L, idx, LUA_MININTEGER, "dim");
  if (d != 1 && d != 2)
    luaL_error(L, "%s: dim must be 1 (one value per column) or 2 (one per row), got %I", fn, d);
  return (int)d;
}

/* A:sum() a number; A:sum(dim) 1 x c (dim 1) or r x 1 (dim 2) */
static int m_sum(lua_State *L)
{
  pk_matrix *a = pk_lua_checkmatrix(L, 1);
  int dim = opt_dim(L, 2, "sum");
  if (!dim) {
    lua_pushnumber(L, pk_matrix_sum(a));
    return 1;
  }
  NEWM(L, pk_matrix_sum_dim(slot_, a, dim));
  return 1;
}

static int m_mean(lua_State *L)
{
  pk_matrix *a = pk_lua_checkmatrix(L, 1);
  int dim = opt_dim(L, 2, "mean");
  if (dim) {
    NEWM(L, pk_matrix_mean_dim(slot_, a, dim));
    return 1;
  }
  if (a->rows * a->cols == 0) return luaL_error(L, "mean of an empty %dx%d matrix", (int)a->rows, (int)a->cols);
  lua_pushnumber(L, pk_matrix_sum(a) / (double)(a->rows * a->cols));
  return 1;
}

/* A:std([dim] [, { ddof = 0 }]): population std by default, as NumPy */
static int m_std(lua_State *L)
{
  static const char *const keys[] = { "ddof", NULL };
  pk_matrix *a = pk_lua_checkmatrix(L, 1);
  int oi = lua_type(L, 2) == LUA_TTABLE ? 2 : 3, dim = oi == 2 ? 0 : opt_dim(L, 2, "std");
  lua_Integer ddof;
  pk_status st;
  if (!lua_isnoneornil(L, oi)) pk_lua_checktype(L, oi, LUA_TTABLE);
  pk_lua_checkkeys(L, oi, "std", keys);
  ddof = pk_lua_optinteger(L, oi, "ddof", 0);
  if (ddof < 0) return luaL_error(L, "std: ddof must be >= 0, got %I", ddof);
  if (!dim) {
    double v;
    if ((st = pk_matrix_std(a, (size_t)ddof, &v))) return pk_lua_error(L, st);
    lua_pushnumber(L, v);
    return 1;
  }
  NEWM(L, pk_matrix_std_dim(slot_, a, dim, (size_t)ddof));
  return 1;
}

/* A:argmax() -> i, j of the largest entry; A:argmax(dim) -> 1-based
 * indices as a 1 x c (dim 1) or r x 1 (dim 2) matrix */
static int m_argmax(lua_State *L)
{
  pk_matrix *a = pk_lua_checkmatrix(L, 1), **slot;
  int dim = opt_dim(L, 2, "argmax");
  size_t n, k, *idx;
  pk_status st;
  if (!dim) {
    size_t i, j;
    if ((st = pk_matrix_argmax(a, &i, &j))) return pk_lua_error(L, st);
    lua_pushinteger(L, (lua_Integer)i + 1);
    lua_pushinteger(L, (lua_Integer)j + 1);
    return 2;
  }
  n = dim == 1 ? a->cols : a->rows;
  if ((dim == 1 ? a->rows : a->cols) == 0)         /* nothing to compare: the core says so */
    return pk_lua_error(L, pk_matrix_argmax_dim(a, dim, NULL));
  if ((st = pk_check_bytes(n, sizeof *idx, "argmax"))) return pk_lua_error(L, st);
  idx = lua_newuserdatauv(L, (n ? n : 1) * sizeof *idx, 0);    /* scratch the GC owns */
  if ((st = pk_matrix_argmax_dim(a, dim, idx))) return pk_lua_error(L, st);
  slot = pk_lua_newmatrix(L);
  if ((st = dim == 1 ? pk_matrix_new(slot, 1, n) : pk_matrix_new(slot, n, 1))) return pk_lua_error(L, st);
  for (k = 0; k < n; k++) (*slot)->data[k] = (double)idx[k] + 1;
  return 1;
}

/* elementwise functions (IEEE outside the domain: log(-1) is NaN) */
static int map(lua_State *L, pk_map f)
{
  pk_matrix *a = pk_lua_checkmatrix(L, 1);
  NEWM(L, pk_matrix_map(slot_, a, f));
  return 1;
}

static int m_exp(lua_State *L) { return map(L, PK_MAP_EXP); }
static int m_log(lua_State *L) { return map(L, PK_MAP_LOG); }
static int m_sqrt(lua_State *L) { return map(L, PK_MAP_SQRT); }
static int m_abs(lua_State *L) { return map(L, PK_MAP_ABS); }
static int m_tanh(lua_State *L) { return map(L, PK_MAP_TANH); }

static int m_pow(lua_State *L)
{
  pk_matrix *a = pk_lua_checkmatrix(L, 1);
  double p;
  if (lua_type(L, 2) != LUA_TNUMBER)
    return luaL_error(L, "pow: the exponent must be a number, got %s", luaL_typename(L, 2));
  p = lua_tonumber(L, 2);
  NEWM(L, pk_matrix_pow(slot_, a, p));
  return 1;
}

/* the matrices of the table at idx (a list), into a scratch array the GC owns */
static const pk_matrix **list_of_matrices(lua_State *L, int idx, const char *fn, size_t *n)
{
  const pk_matrix **parts;
  size_t k;
  pk_status st;
  pk_lua_checktype(L, idx, LUA_TTABLE);
  *n = lua_rawlen(L, idx);
  if ((st = pk_check_bytes(*n, sizeof *parts, fn))) pk_lua_error(L, st);
  parts = lua_newuserdatauv(L, (*n ? *n : 1) * sizeof *parts, 0);
  for (k = 0; k < *n; k++) {
    pk_matrix *m;
    lua_rawgeti(L, idx, (lua_Integer)k + 1);
    m = pk_lua_testmatrix(L, -1);
    if (!m) {
      if (luaL_testudata(L, -1, PK_MATRIX_MT)) luaL_error(L, "%s: entry %d has been released", fn, (int)k + 1);
      luaL_error(L, "%s: entry %d is %s, not a matrix", fn, (int)k + 1, luaL_typename(L, -1));
    }
    parts[k] = m;
    lua_pop(L, 1);      /* the table keeps it alive */
  }
  return parts;
}

/* pk.hstack{A, B, ...} side by side; pk.vstack{A, B, ...} on top of each other */
static int l_hstack(lua_State *L)
{
  size_t n;
  const pk_matrix **parts = list_of_matrices(L, 1, "hstack", &n);
  NEWM(L, pk_matrix_hstack(slot_, parts, n));
  return 1;
}

static int l_vstack(lua_State *L)
{
  size_t n;
  const pk_matrix **parts = list_of_matrices(L, 1, "vstack", &n);
  NEWM(L, pk_matrix_vstack(slot_, parts, n));
  return 1;
}

/* pk.split(X, Y [, { test = 0.25, seed =, shuffle = true }]) -> Xtrain,
 * Ytrain, Xtest, Ytest, train rows, test rows (Y may be nil: then the Y
 * results are nil) */
static int l_split(lua_State *L)
{
  static const char *const keys[] = { "test", "seed", "shuffle", NULL };
  pk_matrix *X = pk_lua_checkmatrix(L, 1), *Y;
  pk_matrix **s[4];
  size_t n = X->rows, ntest, k, *order;
  uint64_t seed;
  int shuffle, i;
  pk_status st;
  if (lua_type(L, 2) == LUA_TTABLE) {     /* pk.split(X, opts): no Y */
    lua_settop(L, 2);
    lua_pushnil(L);
    lua_insert(L, 2);
  }
  Y = lua_isnoneornil(L, 2) ? NULL : pk_lua_checkmatrix(L, 2);
  if (!lua_isnoneornil(L, 3)) pk_lua_checktype(L, 3, LUA_TTABLE);
  lua_settop(L, 3);
  pk_lua_checkkeys(L, 3, "split", keys);
  shuffle = pk_lua_optboolean(L, 3, "shuffle", 1);
  if (Y && Y->rows != n) return luaL_error(L, "split: X has %d rows, Y has %d", (int)n, (int)Y->rows);
  switch (pk_lua_optfield(L, 3, "test")) {
  case LUA_TNIL:
  case LUA_TNUMBER:
    if (lua_isinteger(L, -1)) {      /* a count */
      lua_Integer c = lua_tointeger(L, -1);
      if (c < 1) return luaL_error(L, "split: test = %I: a count of test rows must be >= 1", c);
      if ((lua_Unsigned)c >= n)
        return luaL_error(L, "split: test = %I of %d rows leaves no training rows", c, (int)n);
      ntest = (size_t)c;
    } else {                         /* a fraction (0.25 by default): round(f n) rows */
      double f = lua_isnil(L, -1) ? 0.25 : lua_tonumber(L, -1);
      if (!(f > 0 && f < 1))
        return luaL_error(L, "split: test = %f: a fraction must be in (0, 1) (or give an integer count)", f);
      ntest = (size_t)floor(f * (double)n + 0.5);
      if (ntest == 0 || ntest == n)
        return luaL_error(L, "split: test = %f of %d rows leaves %s empty", f, (int)n,
                          ntest ? "the training set" : "the test set");
    }
    break;
  default:
    return luaL_error(L, "split: test must be a fraction in (0, 1) or an integer count, got %s",
                      luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  pk_lua_optfield(L, 3, "seed");
  seed = pk_lua_optseed(L, -1);
  lua_pop(L, 1);
  if ((st = pk_check_bytes(n, sizeof *order, "split"))) return pk_lua_error(L, st);
  order = lua_newuserdatauv(L, (n ? n : 1) * sizeof *order, 0);    /* index 4 */
  for (i = 0; i < 4; i++) s[i] = pk_lua_newmatrix(L);              /* indices 5..8 */
  if ((st = pk_split(X, Y, ntest, shuffle, seed, s[0], Y ? s[1] : NULL, s[2], Y ? s[3] : NULL,
                     order)))
    return pk_lua_error(L, st);
  for (i = 0; i < 4; i++) {
    if (*s[i]) lua_pushvalue(L, 5 + i);
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
  return 6;
}

/* pk.accuracy(logits, labels) -> fraction correct, count correct */
static int l_accuracy(lua_State *L)
{
  pk_matrix *F = pk_lua_checkmatrix(L, 1), *Y = pk_lua_checkmatrix(L, 2);
  size_t ok;
  pk_status st = pk_accuracy(F, Y, &ok);
  if (st) return pk_lua_error(L, st);
  lua_pushnumber(L, (double)ok / (double)F->rows);
  lua_pushinteger(L, (lua_Integer)ok);
  return 2;
}

static int m_norm(lua_State *L)
{
  lua_pushnumber(L, pk_matrix_norm(pk_lua_checkmatrix(L, 1)));
  return 1;
}

static int m_max_abs(lua_State *L)
{
  lua_pushnumber(L, pk_matrix_max_abs(pk_lua_checkmatrix(L, 1)));
  return 1;
}

static int m_len(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)pk_lua_checkmatrix(L, 1)->rows);
  return 1;
}

static int m_save(lua_State *L)
{
  pk_matrix *a = pk_lua_checkmatrix(L, 1);
  pk_status st = pk_matrix_save(a, pk_lua_checkpath(L, 2));
  if (st == PK_EIO) return pk_lua_fail(L, st);
  if (st) return pk_lua_error(L, st);
  lua_pushboolean(L, 1);
  return 1;
}

int pk_lua_load_matrix(lua_State *L, const char *path)
{
  pk_matrix **slot = pk_lua_newmatrix(L);
  pk_status st = pk_matrix_load(slot, path);
  if (st == PK_EIO) return pk_lua_fail(L, st);
  if (st) return pk_lua_error(L, st);
  return 1;
}

static int l_read_csv(lua_State *L)
{
  const char *path = pk_lua_checkpath(L, 1);
  static const char *const keys[] = { "header", "sep", NULL };
  pk_csv_opts o;
  const char *sep;
  char *header = NULL;
  pk_matrix **slot;
  pk_status st;
  if (!lua_isnoneornil(L, 2)) pk_lua_checktype(L, 2, LUA_TTABLE);
  pk_lua_checkkeys(L, 2, "read_csv", keys);
  o.header = pk_lua_optboolean(L, 2, "header", 0);
  sep = pk_lua_optstring(L, 2, "sep", ",");
  if (strlen(sep) != 1) return luaL_error(L, "read_csv: sep must be one character");
  o.sep = sep[0];
  slot = pk_lua_newmatrix(L);
  st = pk_matrix_read_csv(slot, path, &o, o.header ? &header : NULL);
  if (st == PK_EIO) return pk_lua_fail(L, st);
  if (st) return pk_lua_error(L, st);
  if (header) {
    lua_pushstring(L, header);   /* may raise on memory: free first */
    free(header);
    return 2;
  }
  return 1;
}

static int l_read_npy(lua_State *L)
{
  const char *path = pk_lua_checkpath(L, 1);
  pk_matrix **slot = pk_lua_newmatrix(L);
  pk_status st = pk_matrix_read_npy(slot, path);
  if (st == PK_EIO) return pk_lua_fail(L, st);
  if (st) return pk_lua_error(L, st);
  return 1;
}

static int m_write_npy(lua_State *L)
{
  pk_matrix *a = pk_lua_checkmatrix(L, 1);
  pk_status st = pk_matrix_write_npy(a, pk_lua_checkpath(L, 2));
  if (st == PK_EIO) return pk_lua_fail(L, st);
  if (st) return pk_lua_error(L, st);
  lua_pushboolean(L, 1);
  return 1;
}

static int m_write_csv(lua_State *L)
{
  pk_matrix *a = pk_lua_checkmatrix(L, 1);
  const char *path = pk_lua_checkpath(L, 2);
  static const char *const keys[] = { "header", NULL };
  const char *header = NULL;
  pk_status st;
  if (lua_type(L, 3) == LUA_TTABLE) {
    pk_lua_checkkeys(L, 3, "write_csv", keys);
    header = pk_lua_optstring(L, 3, "header", NULL);
  } else if (!lua_isnoneornil(L, 3)) {
    header = pk_lua_checkstring(L, 3);
  }
  st = pk_matrix_write_csv(a, path, header);
  if (st == PK_EIO) return pk_lua_fail(L, st);
  if (st) return pk_lua_error(L, st);
  lua_pushboolean(L, 1);
  return 1;
}

void pk_lua_open_matrix(lua_State *L)
{
  static const luaL_Reg meta[] = {
    { "__gc", m_release }, { "__close", m_release }, { "__tostring", m_tostring },
    { "__add", m_add }, { "__sub", m_sub }, { "__mul", m_mul }, { "__div", m_div },
    { "__unm", m_unm }, { "__len", m_len }, { NULL, NULL }
  };
  static const luaL_Reg methods[] = {
    { "rows", m_rows }, { "cols", m_cols }, { "shape", m_shape }, { "get", m_get },
    { "set", m_set }, { "row", m_row }, { "slice", m_slice }, { "totable", m_totable },
    { "columns", m_columns }, { "gather", m_gather },
    { "t", m_t }, { "hadamard", m_hadamard }, { "sum", m_sum }, { "mean", m_mean },
    { "norm", m_norm }, { "max_abs", m_max_abs }, { "copy", m_copy }, { "save", m_save },
    { "write_csv", m_write_csv }, { "release", m_release },
    { "std", m_std }, { "argmax", m_argmax }, { "exp", m_exp }, { "log", m_log },
    { "sqrt", m_sqrt }, { "abs", m_abs }, { "tanh", m_tanh }, { "pow", m_pow },
    { "write_npy", m_write_npy }, { NULL, NULL }
  };
  static const luaL_Reg fns[] = {
    { "matrix", l_matrix }, { "zeros", l_zeros }, { "ones", l_ones }, { "eye", l_eye },
    { "randn", l_randn }, { "rand", l_rand }, { "read_csv", l_read_csv },
    { "read_npy", l_read_npy }, { "hstack", l_hstack }, { "vstack", l_vstack },
    { "split", l_split }, { "accuracy", l_accuracy }, { NULL, NULL }
  };
  luaL_newmetatable(L, PK_MATRIX_MT);
  pk_lua_setfuncs(L, meta, "");
  lua_newtable(L);
  pk_lua_setfuncs(L, methods, "");
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "pathkernel.Matrix");
  lua_setfield(L, -2, "__name");
  lua_pop(L, 1);
  pk_lua_setfuncs(L, fns, "");
}
