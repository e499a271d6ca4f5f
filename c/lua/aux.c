/* aux.c - the Lua binding's ground floor: the box of every userdata type
 * and their classes, names and argument messages, option tables, the
 * result convention, long calls and the collector's accounting. It calls
 * the C library (pk.h) and Lua, never a file above it. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "aux.h"

/* ---- classes ------------------------------------------------------------ */

static void free_matrix(pkL_box *b) { pk_matrix_free(b->u.matrix); }
static void free_network(pkL_box *b) { pk_network_free(b->u.network); }
static void free_trajectory(pkL_box *b) { pk_trajectory_free(b->u.trajectory); }
static void free_machine(pkL_box *b) { pk_machine_free(b->u.machine); }
static void free_kernel(pkL_box *b) { pk_kernel_free(b->u.kernel); }
static void free_regressor(pkL_box *b) { pk_regressor_free(b->u.regressor); }

/* A trajectory has no release method: kernel machines and path kernels
 * hold the core's trajectory by reference, so __gc alone is enough. */
const pkL_class pkL_Matrix = { "pathkernel.Matrix", "matrix", "its own progress callback",
                               free_matrix, 1 };
const pkL_class pkL_Network = { "pathkernel.Network", "network", "its own training's callbacks",
                                free_network, 1 };
const pkL_class pkL_Trajectory = { "pathkernel.Trajectory", "trajectory",
                                   "its own progress callback", free_trajectory, 0 };
const pkL_class pkL_Machine = { "pathkernel.KernelMachine", "kernel machine",
                                "its own progress callback", free_machine, 1 };
const pkL_class pkL_Kernel = { "pathkernel.Kernel", "kernel", "its own progress callback",
                               free_kernel, 1 };
const pkL_class pkL_Regressor = { "pathkernel.Regressor", "model", "its own progress callback",
                                  free_regressor, 1 };

pkL_box *pkL_newbox(lua_State *L, const pkL_class *c)
{
  /* the box exists, empty, with its metatable before anything is
   * allocated for it: an error from here on leaks nothing */
  pkL_box *b = lua_newuserdatauv(L, sizeof *b, 1);
  b->u.any = NULL;
  b->busy = 0;
  luaL_setmetatable(L, c->name);
  return b;
}

pkL_box *pkL_testbox(lua_State *L, int idx, const pkL_class *c)
{
  return luaL_testudata(L, idx, c->name);
}

pkL_box *pkL_checkbox(lua_State *L, int idx, const pkL_class *c)
{
  pkL_box *b = luaL_testudata(L, idx, c->name);
  if (!b) pkL_typeerror(L, idx, c->name);
  return b;
}

void *pkL_check(lua_State *L, int idx, const pkL_class *c)
{
  pkL_box *b = pkL_checkbox(L, idx, c);
  if (!b->u.any) {
    lua_pushfstring(L, "%s has been released", c->what);
    pkL_argerror(L, idx, lua_tostring(L, -1));
  }
  return b->u.any;
}

void *pkL_idle(lua_State *L, int idx, const pkL_class *c, const char *doing)
{
  pkL_box *b = pkL_checkbox(L, idx, c);
  if (b->busy) luaL_error(L, "%s is in use: it cannot be %s from %s", c->what, doing, c->user);
  return pkL_check(L, idx, c);
}

int pkL_release(lua_State *L, int idx, const pkL_class *c)
{
  pkL_box *b = pkL_checkbox(L, idx, c);
  if (b->busy) return luaL_error(L, "%s is in use: it cannot be released from %s", c->what, c->user);
  if (b->u.any) c->release(b);
  b->u.any = NULL;
  return 0;
}

int pkL_released(lua_State *L, const pkL_class *c)
{
  lua_pushfstring(L, "%s (released)", c->name);
  return 1;
}

void pkL_keep(lua_State *L, int box, int value)
{
  box = lua_absindex(L, box);
  lua_pushvalue(L, value);
  lua_setiuservalue(L, box, 1);
}

/* __gc, __close and obj:release(): the class is the upvalue. __gc may be
 * called by hand too, so it refuses a busy object as well; the collector
 * never finds one busy: a long call holds its objects through its own
 * userdata, which, made after them, is finalized before them. */
static int box_release(lua_State *L)
{
  return pkL_release(L, 1, lua_touserdata(L, lua_upvalueindex(1)));
}

/* ---- names ---------------------------------------------------------------- */

/* luaL_argerror names the function from the calling code or by searching
 * package.loaded: neither works for a method called from C (pcall(obj.f,
 * obj, x) said "to '?'"). So every function of the module is named here,
 * keyed by the function value. */
static const char NAMEKEY = 'N';

static void setname(lua_State *L, int fidx, const char *name)
{
  fidx = lua_absindex(L, fidx);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMEKEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMEKEY);
  }
  lua_pushvalue(L, fidx);
  /* the first name stays: K:gram is also K(...) */
  if (lua_rawget(L, -2) == LUA_TNIL) {
    lua_pushvalue(L, fidx);
    lua_pushstring(L, name);
    lua_rawset(L, -4);
  }
  lua_pop(L, 2);
}

void pkL_setfuncs(lua_State *L, const luaL_Reg *l, const char *prefix)
{
  for (; l->name; l++) {
    /* metamethods by the operation's name, as Lua says it ("add") */
    const char *n = strncmp(l->name, "__", 2) == 0 ? l->name + 2 : l->name;
    lua_pushcfunction(L, l->func);
    lua_pushfstring(L, "%s%s", prefix, n);
    setname(L, -2, lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_setfield(L, -2, l->name);
  }
}

const char *pkL_fname(lua_State *L)
{
  lua_Debug ar;
  const char *name = NULL;
  if (!lua_getstack(L, 0, &ar) || !lua_checkstack(L, 4)) return "pathkernel";
  lua_getinfo(L, "nf", &ar);                        /* pushes the function */
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMEKEY) == LUA_TTABLE) {
    lua_pushvalue(L, -2);
    /* the string stays alive in the registry's table */
    if (lua_rawget(L, -2) == LUA_TSTRING) name = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  if (!name) name = ar.name;
  return name ? name : "pathkernel";
}

void pkL_newclass(lua_State *L, const pkL_class *c, const luaL_Reg *methods,
                  const luaL_Reg *meta)
{
  luaL_newmetatable(L, c->name);                    /* sets __name */
  lua_newtable(L);
  pkL_setfuncs(L, methods, "");
  lua_pushlightuserdata(L, (void *)c);
  lua_pushcclosure(L, box_release, 1);
  setname(L, -1, "release");
  if (c->method) {
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, "release");
  }
  lua_pushvalue(L, -1);
  lua_setfield(L, -4, "__gc");
  lua_setfield(L, -3, "__close");
  lua_setfield(L, -2, "__index");
  pkL_setfuncs(L, meta, "");
  lua_pop(L, 1);
}

void pkL_subtable(lua_State *L, const char *name) { luaL_getsubtable(L, -1, name); }

void pkL_setnumber(lua_State *L, const char *key, double v)
{
  lua_pushnumber(L, v);
  lua_setfield(L, -2, key);
}

/* ---- argument messages ----------------------------------------------------- */

int pkL_argerror(lua_State *L, int arg, const char *msg)
{
  lua_Debug ar;
  const char *name = pkL_fname(L);
  /* a value the function pushed (an option's field) is no argument */
  if (arg <= 0 && arg > LUA_REGISTRYINDEX) return luaL_error(L, "%s: %s", name, msg);
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.namewhat &&
      strcmp(ar.namewhat, "method") == 0) {
    arg--;                                          /* obj:f(x): x is #1 */
    if (arg == 0) return luaL_error(L, "calling '%s' on bad self (%s)", name, msg);
  }
  return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, name, msg);
}

const char *pkL_typeof(lua_State *L, int idx)
{
  idx = lua_absindex(L, idx);
  if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) return lua_tostring(L, -1);
  if (lua_type(L, idx) == LUA_TLIGHTUSERDATA) return "light userdata";
  return luaL_typename(L, idx);
}

int pkL_typeerror(lua_State *L, int arg, const char *tname)
{
  const char *got = pkL_typeof(L, arg);
  return pkL_argerror(L, arg, lua_pushfstring(L, "%s expected, got %s", tname, got));
}

void pkL_checktype(lua_State *L, int arg, int t)
{
  if (lua_type(L, arg) != t) pkL_typeerror(L, arg, lua_typename(L, t));
}

double pkL_checknumber(lua_State *L, int arg)
{
  int isnum;
  double v = (double)lua_tonumberx(L, arg, &isnum);
  if (!isnum) pkL_typeerror(L, arg, "number");
  return v;
}

const char *pkL_checkstring(lua_State *L, int arg)
{
  const char *s = lua_tostring(L, arg);
  if (!s) pkL_typeerror(L, arg, "string");
  return s;
}

lua_Integer pkL_checkint(lua_State *L, int idx, lua_Integer lo, const char *what)
{
  int isint;
  lua_Integer v;
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "%s: %s must be an integer, got %s", pkL_fname(L), what, luaL_typename(L, idx));
  v = lua_tointegerx(L, idx, &isint);
  if (!isint)
    luaL_error(L, "%s: %s must be an integer, got %s", pkL_fname(L), what, lua_tostring(L, idx));
  if (v < lo) luaL_error(L, "%s: %s must be >= %I, got %I", pkL_fname(L), what, lo, v);
  return v;
}

size_t pkL_checksize(lua_State *L, int idx, const char *what)
{
  lua_Integer v = pkL_checkint(L, idx, 0, what);
  if ((lua_Unsigned)v > PK_MAX_DIM)
    luaL_error(L, "%s: %s of %I is too large (the limit is %d)", pkL_fname(L), what, v,
               PK_MAX_DIM);
  return (size_t)v;
}

const char *pkL_checkpath(lua_State *L, int idx)
{
  size_t n;
  const char *p;
  /* not luaL_checkstring: a number would quietly become a file name */
  if (lua_type(L, idx) != LUA_TSTRING) pkL_typeerror(L, idx, "string (a path)");
  p = lua_tolstring(L, idx, &n);
  if (strlen(p) != n) pkL_argerror(L, idx, "path contains a NUL byte");
  if (n == 0) pkL_argerror(L, idx, "empty path");
  return p;
}

/* ---- the seed stream of a Lua state -------------------------------------- */

static const char SEEDKEY = 'S';

static pk_rng *seedstream(lua_State *L)
{
  pk_rng *r;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &SEEDKEY) == LUA_TUSERDATA) {
    r = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return r;
  }
  lua_pop(L, 1);
  r = lua_newuserdatauv(L, sizeof *r, 0);
  pk_rng_seed(r, 0);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &SEEDKEY);
  return r;
}

uint64_t pkL_nextseed(lua_State *L) { return pk_rng_next(seedstream(L)); }
void pkL_setseed(lua_State *L, uint64_t seed) { pk_rng_seed(seedstream(L), seed); }

uint64_t pkL_optseed(lua_State *L, int idx)
{
  if (lua_isnoneornil(L, idx)) return pkL_nextseed(L);
  return (uint64_t)pkL_checkint(L, idx, LUA_MININTEGER, "seed");
}

/* ---- option tables ----------------------------------------------------------- */

int pkL_opterror(lua_State *L, int value, const char *fname, const char *key,
                 const char *expected)
{
  return luaL_error(L, "%s: option '%s' must be %s, got %s", fname, key, expected,
                    pkL_typeof(L, value));
}

/* keys the spec does not list, and keys that are not names (a list where
 * options belong) */
static void checkkeys(lua_State *L, int idx, const char *fname, const pkL_option *spec)
{
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const pkL_option *o;
    const char *k;
    if (lua_type(L, -2) != LUA_TSTRING) {
      /* a copy: the key itself must not be converted inside lua_next */
      int kt = lua_type(L, -2);
      lua_pushvalue(L, -2);
      if (kt == LUA_TNUMBER)
        luaL_error(L, "%s: options must have string keys, got a number key %s", fname,
                   lua_tostring(L, -1));
      luaL_error(L, "%s: options must have string keys, got a %s key", fname, pkL_typeof(L, -1));
    }
    k = lua_tostring(L, -2);
    for (o = spec; o->key; o++)
      if (strcmp(k, o->key) == 0) break;
    if (!o->key) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (o = spec; o->key; o++) {
        if (o != spec) luaL_addstring(&b, ", ");
        luaL_addstring(&b, o->key);
      }
      if (!spec->key) luaL_addstring(&b, "none");
      luaL_pushresult(&b);
      luaL_error(L, "%s: unknown option '%s' (valid options: %s)", fname, k, lua_tostring(L, -1));
    }
    lua_pop(L, 1);
  }
}

static lua_Integer optinteger(lua_State *L, int v, const char *fname, const pkL_option *o)
{
  int isint = 0;
  lua_Integer x = lua_type(L, v) == LUA_TNUMBER ? lua_tointegerx(L, v, &isint) : 0;
  if (!isint && lua_type(L, v) == LUA_TNUMBER)      /* say which number */
    luaL_error(L, "%s: option '%s' must be an integer, got %s", fname, o->key, lua_tostring(L, v));
  if (!isint) pkL_opterror(L, v, fname, o->key, "an integer");
  if (o->lo != 0 || o->hi != 0) {
    const char *note = o->note ? o->note : "";
    if (o->hi >= o->lo && ((double)x < o->lo || (double)x > o->hi))
      luaL_error(L, "%s: %s%s must be in %I..%I, got %I", fname, o->key, note,
                 (lua_Integer)o->lo, (lua_Integer)o->hi, x);
    if ((double)x < o->lo)
      luaL_error(L, "%s: %s%s must be >= %I, got %I", fname, o->key, note, (lua_Integer)o->lo, x);
  }
  return x;
}

static int optenum(lua_State *L, int v, const char *fname, const pkL_option *o)
{
  const char *s;
  luaL_Buffer b;
  int i;
  if (lua_type(L, v) != LUA_TSTRING) pkL_opterror(L, v, fname, o->key, "a string");
  s = lua_tostring(L, v);
  for (i = 0; o->names[i]; i++)
    if (strcmp(s, o->names[i]) == 0) return i;
  luaL_buffinit(L, &b);
  for (i = 0; o->names[i]; i++) {
    if (i) luaL_addstring(&b, ", ");
    luaL_addstring(&b, o->names[i]);
  }
  luaL_pushresult(&b);
  return luaL_error(L, "%s: unknown %s '%s' (valid: %s)", fname, o->noun ? o->noun : o->key, s,
                    lua_tostring(L, -1));
}

/* fill one field of out from the value at v; 1 when the value stays pushed */
static int fill(lua_State *L, int v, void *out, const pkL_option *o, const char *fname)
{
  void *field = (char *)out + o->offset;
  pkL_box *b;
  switch (o->type & 0xff) {
  case PKL_NUMBER:
    if (lua_type(L, v) != LUA_TNUMBER) pkL_opterror(L, v, fname, o->key, "a number");
    *(double *)field = lua_tonumber(L, v);
    break;
  case PKL_INTEGER: *(lua_Integer *)field = optinteger(L, v, fname, o); break;
  case PKL_SIZE: *(size_t *)field = (size_t)optinteger(L, v, fname, o); break;
  case PKL_SEED: *(uint64_t *)field = (uint64_t)optinteger(L, v, fname, o); break;
  case PKL_BOOLEAN:
    if (lua_type(L, v) != LUA_TBOOLEAN) pkL_opterror(L, v, fname, o->key, "a boolean");
    *(int *)field = lua_toboolean(L, v);
    break;
  case PKL_STRING:
    if (lua_type(L, v) != LUA_TSTRING) pkL_opterror(L, v, fname, o->key, "a string");
    *(const char **)field = lua_tostring(L, v);
    break;
  case PKL_MATRIX:
    if (!(b = pkL_testbox(L, v, &pkL_Matrix))) pkL_opterror(L, v, fname, o->key, "a pathkernel.Matrix");
    if (!b->u.matrix) luaL_error(L, "%s: option '%s': matrix has been released", fname, o->key);
    *(pk_matrix **)field = b->u.matrix;
    break;
  case PKL_ENUM: *(int *)field = optenum(L, v, fname, o); break;
  case PKL_FUNCTION:
    if (lua_type(L, v) != LUA_TFUNCTION) pkL_opterror(L, v, fname, o->key, "a function");
    *(int *)field = v;
    return 1;
  case PKL_VALUE: *(int *)field = v; return 1;
  case PKL_CUSTOM: o->set(L, v, out, o, fname); break;
  }
  return 0;
}

void pkL_options(lua_State *L, int idx, const char *fname, const pkL_option *spec, void *out)
{
  int t = lua_type(L, idx);
  const pkL_option *o;
  if (!fname) fname = pkL_fname(L);
  idx = lua_absindex(L, idx);
  if (t != LUA_TNONE && t != LUA_TNIL && t != LUA_TTABLE) pkL_typeerror(L, idx, "table of options");
  if (t == LUA_TTABLE) checkkeys(L, idx, fname, spec);
  for (o = spec; o->key; o++) {
    void *field = (char *)out + o->offset;
    int kind = o->type & 0xff;
    if (t != LUA_TTABLE) lua_pushnil(L);
    else lua_getfield(L, idx, o->key);
    if (lua_isnil(L, -1)) {
      if (o->type & PKL_REQUIRED)
        luaL_error(L, "%s: option '%s'%s is required", fname, o->key, o->note ? o->note : "");
      if (kind == PKL_SEED) *(uint64_t *)field = pkL_nextseed(L);
      if (kind == PKL_FUNCTION || kind == PKL_VALUE) {
        *(int *)field = 0;      /* the nil stays: the stack's layout is fixed */
        continue;
      }
      lua_pop(L, 1);
      continue;
    }
    if (!fill(L, lua_gettop(L), out, o, fname)) lua_pop(L, 1);
  }
}

const char *pkL_saveargs(lua_State *L, const pkL_option *spec, void *out)
{
  static const pkL_option none[] = { { NULL, 0, .offset = 0 } };
  const char *path = pkL_checkpath(L, 2);
  pkL_options(L, 3, NULL, spec ? spec : none, out);
  return path;
}

/* ---- quadrature rules ---------------------------------------------------------- */

#define DEFAULT_NODES 4

void pkL_setrule(lua_State *L, int value, void *out, const pkL_option *o, const char *fname)
{
  pk_rule *field = (pk_rule *)((char *)out + o->offset);
  const char *r;
  if (lua_type(L, value) != LUA_TSTRING) pkL_opterror(L, value, fname, o->key, "a string");
  r = lua_tostring(L, value);
  if (strcmp(r, "gauss") == 0) *field = PK_RULE_GAUSS;
  else if (strcmp(r, "left") == 0) *field = PK_RULE_LEFT;
  else luaL_error(L, "%s: unknown rule '%s' (valid: gauss, left)", fname, r);
}

const pk_comm *pkL_tocomm(lua_State *L, int idx, const char *fname, const char *key)
{
  const pk_comm *c;
  idx = lua_absindex(L, idx);
  if (lua_isnil(L, idx)) return NULL;
  if (lua_type(L, idx) == LUA_TTABLE) {
    lua_getfield(L, idx, "comm");
    c = luaL_testudata(L, -1, PKL_COMM);
    lua_pop(L, 1);   /* the table keeps it alive */
  } else {
    c = luaL_testudata(L, idx, PKL_COMM);
  }
  if (!c)
    pkL_opterror(L, idx, fname, key, "a communicator (the module of require \"pathkernel.mpi\")");
  if (c->size < 1 || c->rank < 0 || c->rank >= c->size)
    luaL_error(L, "%s: option '%s': the communicator is not initialised", fname, key);
  return c;
}

void pkL_setcomm(lua_State *L, int value, void *out, const pkL_option *o, const char *fname)
{
  *(const pk_comm **)((char *)out + o->offset) = pkL_tocomm(L, value, fname, o->key);
}

int pkL_rulenodes(lua_State *L, const char *fname, pk_rule rule, lua_Integer nodes)
{
  if (nodes == 0) return rule == PK_RULE_LEFT ? 1 : DEFAULT_NODES;
  if (rule == PK_RULE_LEFT && nodes != 1)
    luaL_error(L, "%s: the left rule has exactly 1 node", fname);
  return (int)nodes;
}

void pkL_quadargs_init(pkL_quadargs *a)
{
  a->rule = -1;
  a->nodes = 0;
  a->tol = 0;
}

void pkL_setquadrule(lua_State *L, int value, void *out, const pkL_option *o, const char *fname)
{
  int *field = (int *)((char *)out + o->offset);
  const char *r;
  if (lua_type(L, value) != LUA_TSTRING) pkL_opterror(L, value, fname, o->key, "a string");
  r = lua_tostring(L, value);
  if (strcmp(r, "exact") == 0) *field = PK_RULE_EXACT;
  else if (strcmp(r, "gauss") == 0) *field = PK_RULE_GAUSS;
  else if (strcmp(r, "left") == 0) *field = PK_RULE_LEFT;
  else luaL_error(L, "%s: unknown rule '%s' (valid: exact, gauss, left)", fname, r);
}

void pkL_settol(lua_State *L, int value, void *out, const pkL_option *o, const char *fname)
{
  double tol;
  if (lua_type(L, value) != LUA_TNUMBER) pkL_opterror(L, value, fname, o->key, "a number");
  tol = lua_tonumber(L, value);
  if (!(tol > 0) || !isfinite(tol))
    luaL_error(L, "%s: tol must be a positive finite number, got %f", fname, (lua_Number)tol);
  *(double *)((char *)out + o->offset) = tol;
}

void pkL_quad(lua_State *L, const char *fname, const pkL_quadargs *a, pk_quad *q)
{
  pk_quad_init(q);
  q->rule = a->rule >= 0 ? (pk_rule)a->rule : a->nodes ? PK_RULE_GAUSS : PK_RULE_EXACT;
  if (q->rule == PK_RULE_EXACT) {
    if (a->nodes)
      luaL_error(L, "%s: nodes is an option of the gauss rule; the exact rule chooses its nodes "
                 "per step (its option is tol)", fname);
    q->nodes = 0;
    q->tol = a->tol ? a->tol : PK_DEFAULT_TOL;
    return;
  }
  if (a->tol)
    luaL_error(L, "%s: tol is an option of the exact rule, not of the %s rule", fname,
               q->rule == PK_RULE_GAUSS ? "gauss" : "left");
  q->nodes = pkL_rulenodes(L, fname, q->rule, a->nodes);
  q->tol = 0;
}

/* ---- training options ------------------------------------------------------------ */

pk_loss pkL_checkloss(lua_State *L, const char *fname, const char *name)
{
  int l = pk_loss_from_name(name);
  if (l < 0) luaL_error(L, "%s: unknown loss '%s' (valid: %s)", fname, name, pk_loss_names());
  return (pk_loss)l;
}

void pkL_setloss(lua_State *L, int value, void *out, const pkL_option *o, const char *fname)
{
  if (lua_type(L, value) != LUA_TSTRING) pkL_opterror(L, value, fname, o->key, "a string");
  *(pk_loss *)((char *)out + o->offset) = pkL_checkloss(L, fname, lua_tostring(L, value));
}

void pkL_setoptimizer(lua_State *L, int value, void *out, const pkL_option *o,
                      const char *fname)
{
  pk_train_opts *t = (pk_train_opts *)((char *)out + o->offset);
  int k;
  if (lua_type(L, value) != LUA_TSTRING) pkL_opterror(L, value, fname, o->key, "a string");
  if ((k = pk_optimizer_from_name(lua_tostring(L, value))) < 0)
    luaL_error(L, "%s: unknown optimizer '%s' (valid: %s)", fname, lua_tostring(L, value),
               pk_optimizer_names());
  t->optimizer = (pk_optimizer)k;
  if (t->optimizer == PK_OPT_ADAMW) t->hyper.weight_decay = 0.01;   /* torch's default */
}

void pkL_sethyper(lua_State *L, int value, void *out, const pkL_option *o, const char *fname)
{
  static const struct { const char *name; unsigned mask; } hp[] = {
    { "momentum", 1u << PK_OPT_MOMENTUM | 1u << PK_OPT_NESTEROV },
    { "dampening", 1u << PK_OPT_MOMENTUM },
    { "beta1", 1u << PK_OPT_ADAM | 1u << PK_OPT_ADAMW },
    { "beta2", 1u << PK_OPT_ADAM | 1u << PK_OPT_ADAMW },
    { "eps", 1u << PK_OPT_ADAM | 1u << PK_OPT_ADAMW },
    { "weight_decay", 0x3fu },
  };
  static const char *const valid[] = {
    "weight_decay", "weight_decay", "momentum, dampening, weight_decay", "momentum, weight_decay",
    "beta1, beta2, eps, weight_decay", "beta1, beta2, eps, weight_decay"
  };
  pk_optimizer opt = ((pk_train_opts *)out)->optimizer;
  size_t k;
  for (k = 0; strcmp(hp[k].name, o->key) != 0; k++) {}
  if (!(hp[k].mask & (1u << opt)))
    luaL_error(L, "%s: %s is not a hyperparameter of %s (its hyperparameters: %s)", fname, o->key,
               pk_optimizer_name(opt), valid[opt]);
  if (lua_type(L, value) != LUA_TNUMBER) pkL_opterror(L, value, fname, o->key, "a number");
  *(double *)((char *)out + o->offset) = lua_tonumber(L, value);
}

size_t pkL_trainsteps(lua_State *L, const char *fname, pk_train_opts *o, size_t rows,
                      lua_Integer steps, lua_Integer epochs)
{
  if (steps && epochs) luaL_error(L, "%s: give steps or epochs, not both", fname);
  if (o->optimizer == PK_OPT_SGD && o->batch_size == 0) o->batch_size = 32;
  if (epochs) {
    size_t b = o->optimizer != PK_OPT_GD && o->batch_size ? o->batch_size : rows;
    size_t per = b && rows ? (rows + b - 1) / b : 1;
    if ((lua_Unsigned)epochs > (lua_Unsigned)LUA_MAXINTEGER / per)
      luaL_error(L, "%s: too many epochs", fname);
    steps = epochs * (lua_Integer)per;
  }
  return steps ? (size_t)steps : 100;
}

/* ---- results --------------------------------------------------------------------- */

int pkL_error(lua_State *L, pk_status st)
{
  const char *msg = pk_last_error();
  if (!msg || !*msg) msg = pk_status_name(st);
  return luaL_error(L, "%s", msg);
}

void pkL_raise(lua_State *L, pk_status st)
{
  if (st) pkL_error(L, st);
}

int pkL_made(lua_State *L, pk_status st)
{
  pkL_raise(L, st);
  pkL_account(L);
  return 1;
}

int pkL_ioresult(lua_State *L, pk_status st, int nres)
{
  if (st == PK_EIO) {
    const char *msg = pk_last_error();
    lua_pushnil(L);
    lua_pushstring(L, msg && *msg ? msg : pk_status_name(st));
    return 2;
  }
  pkL_raise(L, st);
  if (nres == 0) {
    lua_pushboolean(L, 1);
    nres = 1;
  }
  pkL_account(L);
  return nres;
}

/* KiB accounted since the collector last finished a cycle, per state */
static const char DEBTKEY = 'D';
/* at most this many KiB of C memory between two full collections, unless
 * the Lua heap is larger */
#define FULL_KIB (16 * 1024)

/* Lua 5.4 has no call that adds outside bytes to the heap's size, but
 * LUA_GCSTEP with n adds n KiB of debt and works it off as if Lua had
 * allocated them: in incremental mode the collector then runs a cycle in
 * proportion to what the C library allocates, and the finalizers of dead
 * temporaries free them. In generational mode (lua.c's default) the step
 * is a minor collection, and an object that lived through two of them
 * (a temporary in an expression does) waits for a major one, which the
 * debt never brings about (it moves no byte count): so when steps end no
 * cycle, a full collection follows every FULL_KIB (or a Lua heap's worth)
 * of C memory. */
void pkL_account(lua_State *L)
{
  static __thread size_t carry;     /* bytes below a KiB, for the next time */
  size_t b = pk_memory_take_allocated() + carry, kib = b / 1024, since, heap;
  carry = b % 1024;
  /* a collector the host stopped stays stopped (a step would run it) */
  if (!kib || lua_gc(L, LUA_GCISRUNNING, 0) != 1) return;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &DEBTKEY);
  since = (size_t)lua_tointeger(L, -1) + kib;
  lua_pop(L, 1);
  heap = (size_t)lua_gc(L, LUA_GCCOUNT, 0);
  if (lua_gc(L, LUA_GCSTEP, kib > INT_MAX ? INT_MAX : (int)kib) == 1) since = 0;
  else if (since > FULL_KIB && since > heap) {
    lua_gc(L, LUA_GCCOLLECT, 0);
    since = 0;
  }
  lua_pushinteger(L, (lua_Integer)since);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &DEBTKEY);
}

/* ---- matrices ------------------------------------------------------------------- */

pk_matrix *pkL_pin(lua_State *L, int idx)
{
  pk_matrix *m = pkL_check(L, idx, &pkL_Matrix);
  pkL_box *b = pkL_newbox(L, &pkL_Matrix);
  pkL_raise(L, pk_matrix_view_rows(&b->u.matrix, m, 0, pk_matrix_rows(m)));
  return b->u.matrix;
}

/* ---- interrupts ---------------------------------------------------------------------- */

/* SIGINT during long work sets this flag, which the core reads through
 * pk_call_opts.cancel. The handler is installed only while some call runs
 * long work: the first such call (of any Lua state, on any thread) saves
 * the disposition it finds and the last one restores it. */
static volatile sig_atomic_t sigint_flag;
static pthread_mutex_t sig_mu = PTHREAD_MUTEX_INITIALIZER;
static int sig_users;                 /* calls with the handler in place */
static struct sigaction sig_saved;    /* what the first of them found */

static void on_sigint(int sig)
{
  (void)sig;
  sigint_flag = 1;
}

/* 1 when the handler is in place for this call. A process that ignores
 * SIGINT (a background job, nohup) keeps ignoring it. */
static int sig_acquire(void)
{
  int ok = 1;
  pthread_mutex_lock(&sig_mu);
  if (sig_users == 0) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;     /* a callback's read() is not cut short */
    sigint_flag = 0;
    ok = sigaction(SIGINT, NULL, &sig_saved) == 0 && sig_saved.sa_handler != SIG_IGN &&
         sigaction(SIGINT, &sa, NULL) == 0;
  }
  if (ok) sig_users++;
  pthread_mutex_unlock(&sig_mu);
  return ok;
}

static void sig_release(void)
{
  pthread_mutex_lock(&sig_mu);
  if (sig_users > 0 && --sig_users == 0) {
    sigaction(SIGINT, &sig_saved, NULL);
    sigint_flag = 0;
  }
  pthread_mutex_unlock(&sig_mu);
}

static const char INTKEY = 'I';

int pkL_interrupts(lua_State *L)
{
  int on = lua_rawgetp(L, LUA_REGISTRYINDEX, &INTKEY) == LUA_TNIL || lua_toboolean(L, -1);
  lua_pop(L, 1);
  return on;
}

void pkL_setinterrupts(lua_State *L, int on)
{
  lua_pushboolean(L, on);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &INTKEY);
}

/* ---- long calls --------------------------------------------------------------------- */

#define CALL_MT "pathkernel.call"

double pkL_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* the call's end without its error: SIGINT the host's again, busy marks
 * off, the bar cleared */
static void finish(pkL_call *c)
{
  int i;
  if (c->ended) return;
  c->ended = 1;
  if (c->armed) {
    c->armed = 0;
    sig_release();
  }
  for (i = 0; i < c->nbusy; i++) c->busy[i]->busy--;
  c->nbusy = 0;
  if (c->drawn) {
    fprintf(stderr, "\r%*s\r", 100, "");
    fflush(stderr);
    c->drawn = 0;
  }
}

/* __close (the function returned or raised) and __gc (a coroutine that
 * died in the middle and was never closed) */
static int call_close(lua_State *L)
{
  pkL_call *c = luaL_testudata(L, 1, CALL_MT);
  if (c) finish(c);
  return 0;
}

pkL_call *pkL_begin(lua_State *L, const char *label, int progress)
{
  int t = progress ? lua_type(L, progress) : LUA_TBOOLEAN;
  pkL_call *c;
  if (t != LUA_TFUNCTION && t != LUA_TNIL && t != LUA_TNONE && t != LUA_TBOOLEAN)
    pkL_opterror(L, progress, pkL_fname(L), "progress", "a boolean or a function");
  if (progress) progress = lua_absindex(L, progress);
  c = lua_newuserdatauv(L, sizeof *c, PKL_MAXBUSY);
  memset(c, 0, sizeof *c);
  if (luaL_newmetatable(L, CALL_MT)) {
    lua_pushcfunction(L, call_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, call_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_toclose(L, -1);
  c->L = L;
  c->self = lua_gettop(L);
  c->label = label;
  c->start = c->last = pkL_now();
  if (t == LUA_TFUNCTION) c->fn = progress;
  else if (t != LUA_TBOOLEAN || (progress && lua_toboolean(L, progress)))
    c->bar = isatty(fileno(stderr));
  pk_call_opts_init(&c->opts);
  c->opts.progress = c->fn || c->bar ? pkL_progress : NULL;
  c->opts.progress_ud = c;
  /* the call is on the stack (closed however the function ends) before
   * the handler goes in */
  if (pkL_interrupts(L) && sig_acquire()) {
    c->armed = 1;
    c->opts.cancel = &sigint_flag;
  }
  return c;
}

void pkL_hold(pkL_call *c, int idx)
{
  lua_State *L = c->L;
  pkL_box *b = lua_touserdata(L, idx);
  if (c->nbusy == PKL_MAXBUSY) luaL_error(L, "pkL_hold: too many objects");
  lua_pushvalue(L, idx);                    /* the call keeps the box alive */
  lua_setiuservalue(L, c->self, c->nbusy + 1);
  b->busy++;
  c->busy[c->nbusy++] = b;
}

void pkL_end(pkL_call *c)
{
  finish(c);
  if (c->failed) {
    c->failed = 0;
    lua_error(c->L);          /* the callback's error is on top */
  }
}

int pkL_progress(void *ud, double done, double total)
{
  pkL_call *c = ud;
  if (c->failed) return 1;
  if (c->fn) {
    lua_State *L = c->L;
    lua_pushvalue(L, c->fn);
    lua_pushnumber(L, done);
    lua_pushnumber(L, total);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
      c->failed = 1;           /* the error stays on the stack for pkL_end */
      return 1;
    }
    if (lua_toboolean(L, -1) == 0 && !lua_isnil(L, -1)) {   /* returned false: stop */
      lua_pop(L, 1);
      return 1;
    }
    lua_pop(L, 1);
  }
  if (c->bar) {
    double now = pkL_now(), el = now - c->start;
    if (el >= 1.0 && (now - c->last >= 0.1 || done >= total)) {
      int w = 30, k = total > 0 ? (int)(w * done / total) : 0, i;
      char bar[32], loss[40] = "";
      double eta = done > 0 ? el * (total - done) / done : 0;
      for (i = 0; i < w; i++) bar[i] = i < k ? '#' : '.';
      bar[w] = 0;
      if (c->show_loss) snprintf(loss, sizeof loss, " loss %.4g", c->loss);
      fprintf(stderr, "\r%s [%s] %3.0f%% %.0f/%.0f%s %.1f/s %.0fs left ", c->label, bar,
              total > 0 ? 100 * done / total : 0.0, done, total, loss, el > 0 ? done / el : 0.0,
              eta);
      fflush(stderr);
      c->last = now;
      c->drawn = 1;
    }
  }
  return 0;
}
