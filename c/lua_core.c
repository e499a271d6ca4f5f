/* lua_core.c - luaopen_pathkernel_core: the module table, shared binding
 * helpers, pk.load and the memory limit. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include <signal.h>
#include <pthread.h>
#include "lua_pk.h"

int pk_lua_error(lua_State *L, pk_status st)
{
  const char *msg = pk_last_error();
  if (!msg || !*msg) msg = pk_status_name(st);
  return luaL_error(L, "%s", msg);
}

int pk_lua_fail(lua_State *L, pk_status st)
{
  const char *msg = pk_last_error();
  lua_pushnil(L);
  lua_pushstring(L, msg && *msg ? msg : pk_status_name(st));
  return 2;
}

/* ---- names of functions, for messages ----------------------------------
 *
 * luaL_argerror names the function from the calling code, or by searching
 * package.loaded; neither works for a method or a pk.kernel.x function
 * called from C (pcall(net.forward, net, x) said "bad argument #2 to '?'").
 * So every function the module registers is named in a registry table,
 * keyed by the function itself, and the checkers below use that name. */
static const char NAMEKEY = 'N';

void pk_lua_setname(lua_State *L, lua_CFunction f, const char *name)
{
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &NAMEKEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &NAMEKEY);
  }
  lua_pushcfunction(L, f);
  lua_pushstring(L, name);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

void pk_lua_setfuncs(lua_State *L, const luaL_Reg *l, const char *prefix)
{
  luaL_setfuncs(L, l, 0);
  for (; l->name; l++) {
    /* metamethods by the operation's name, as Lua itself says ("add") */
    const char *n = strncmp(l->name, "__", 2) == 0 ? l->name + 2 : l->name;
    lua_pushfstring(L, "%s%s", prefix, n);
    pk_lua_setname(L, l->func, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
}

const char *pk_lua_fname(lua_State *L)
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

int pk_lua_argerror(lua_State *L, int arg, const char *msg)
{
  lua_Debug ar;
  const char *name = pk_lua_fname(L);
  /* a value pushed by the function (an option's field), not an argument */
  if (arg <= 0 && arg > LUA_REGISTRYINDEX) return luaL_error(L, "%s: %s", name, msg);
  if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.namewhat &&
      strcmp(ar.namewhat, "method") == 0) {
    arg--;                                          /* obj:f(x): x is #1 */
    if (arg == 0) return luaL_error(L, "calling '%s' on bad self (%s)", name, msg);
  }
  return luaL_error(L, "bad argument #%d to '%s' (%s)", arg, name, msg);
}

const char *pk_lua_typeof(lua_State *L, int idx)
{
  idx = lua_absindex(L, idx);
  if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING) return lua_tostring(L, -1);
  if (lua_type(L, idx) == LUA_TLIGHTUSERDATA) return "light userdata";
  return luaL_typename(L, idx);
}

int pk_lua_typeerror(lua_State *L, int arg, const char *tname)
{
  const char *got = pk_lua_typeof(L, lua_absindex(L, arg));
  return pk_lua_argerror(L, arg, lua_pushfstring(L, "%s expected, got %s", tname, got));
}

void *pk_lua_checkudata(lua_State *L, int arg, const char *tname)
{
  void *p = luaL_testudata(L, arg, tname);
  if (!p) pk_lua_typeerror(L, arg, tname);
  return p;
}

void pk_lua_checktype(lua_State *L, int arg, int t)
{
  if (lua_type(L, arg) != t) pk_lua_typeerror(L, arg, lua_typename(L, t));
}

double pk_lua_checknumber(lua_State *L, int arg)
{
  int isnum;
  double v = (double)lua_tonumberx(L, arg, &isnum);
  if (!isnum) pk_lua_typeerror(L, arg, "number");
  return v;
}

const char *pk_lua_checkstring(lua_State *L, int arg)
{
  const char *s = lua_tostring(L, arg);
  if (!s) pk_lua_typeerror(L, arg, "string");
  return s;
}

lua_Integer pk_lua_checkint(lua_State *L, int idx, lua_Integer lo, const char *what)
{
  int isint;
  lua_Integer v;
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "%s: %s must be an integer, got %s", pk_lua_fname(L), what, luaL_typename(L, idx));
  v = lua_tointegerx(L, idx, &isint);
  if (!isint)
    luaL_error(L, "%s: %s must be an integer, got %s", pk_lua_fname(L), what, lua_tostring(L, idx));
  if (v < lo) luaL_error(L, "%s: %s must be >= %I, got %I", pk_lua_fname(L), what, lo, v);
  return v;
}

size_t pk_lua_checksize(lua_State *L, int idx, const char *what)
{
  lua_Integer v = pk_lua_checkint(L, idx, 0, what);
  if ((lua_Unsigned)v > PK_MAX_DIM)
    luaL_error(L, "%s: %s of %I is too large (the limit is %d)", pk_lua_fname(L), what, v,
               PK_MAX_DIM);
  return (size_t)v;
}

const char *pk_lua_checkpath(lua_State *L, int idx)
{
  size_t n;
  const char *p;
  /* not luaL_checkstring: a number would quietly become a file name */
  if (lua_type(L, idx) != LUA_TSTRING) pk_lua_typeerror(L, idx, "string (a path)");
  p = lua_tolstring(L, idx, &n);
  if (strlen(p) != n) pk_lua_argerror(L, idx, "path contains a NUL byte");
  if (n == 0) pk_lua_argerror(L, idx, "empty path");
  return p;
}

int pk_lua_optfield(lua_State *L, int idx, const char *key)
{
  if (lua_type(L, idx) != LUA_TTABLE) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  return lua_getfield(L, idx, key);
}

double pk_lua_optnumber(lua_State *L, int idx, const char *key, double def)
{
  double v = def;
  int t = pk_lua_optfield(L, idx, key);
  if (t == LUA_TNUMBER) v = lua_tonumber(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "%s: option '%s' must be a number, got %s", pk_lua_fname(L), key, lua_typename(L, t));
  lua_pop(L, 1);
  return v;
}

lua_Integer pk_lua_optinteger(lua_State *L, int idx, const char *key, lua_Integer def)
{
  lua_Integer v = def;
  int t = pk_lua_optfield(L, idx, key), isint;
  if (t == LUA_TNUMBER) {
    v = lua_tointegerx(L, -1, &isint);
    if (!isint)
      luaL_error(L, "%s: option '%s' must be an integer, got %s", pk_lua_fname(L), key,
                 lua_tostring(L, -1));
  } else if (t != LUA_TNIL) {
    luaL_error(L, "%s: option '%s' must be an integer, got %s", pk_lua_fname(L), key,
               lua_typename(L, t));
  }
  lua_pop(L, 1);
  return v;
}

int pk_lua_optboolean(lua_State *L, int idx, const char *key, int def)
{
  int v = def, t = pk_lua_optfield(L, idx, key);
  if (t == LUA_TBOOLEAN) v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "%s: option '%s' must be a boolean, got %s", pk_lua_fname(L), key, lua_typename(L, t));
  lua_pop(L, 1);
  return v;
}

const char *pk_lua_optstring(lua_State *L, int idx, const char *key, const char *def)
{
  /* the string stays reachable through the option table */
  const char *v = def;
  int t = pk_lua_optfield(L, idx, key);
  if (t == LUA_TSTRING) v = lua_tostring(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "%s: option '%s' must be a string, got %s", pk_lua_fname(L), key, lua_typename(L, t));
  lua_pop(L, 1);
  return v;
}

void pk_lua_checkkeys(lua_State *L, int idx, const char *fn, const char *const *valid)
{
  if (lua_type(L, idx) != LUA_TTABLE) return;
  if (!fn) fn = pk_lua_fname(L);
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    int i, ok = 0;
    if (lua_type(L, -2) != LUA_TSTRING) {
      /* a list where options belong: say what the key is (a copy: the
       * key itself must not be converted in the middle of lua_next) */
      int kt = lua_type(L, -2);
      lua_pushvalue(L, -2);
      if (kt == LUA_TNUMBER)
        luaL_error(L, "%s: options must have string keys, got a number key %s", fn,
                   lua_tostring(L, -1));
      luaL_error(L, "%s: options must have string keys, got a %s key", fn, pk_lua_typeof(L, -1));
    }
    {
      const char *k = lua_tostring(L, -2);
      for (i = 0; valid[i]; i++)
        if (strcmp(k, valid[i]) == 0) { ok = 1; break; }
    }
    if (!ok) {
      char list[512];
      size_t used = 0;
      const char *k = lua_tostring(L, -2);
      list[0] = '\0';
      for (i = 0; valid[i] && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", valid[i]);
      luaL_error(L, "%s: unknown option '%s' (valid options: %s)", fn, k, list);
    }
    lua_pop(L, 1);
  }
}

/* ---- progress ---------------------------------------------------------- */

double pk_lua_now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- interrupts --------------------------------------------------------- */

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

/* The guard of one call: a to-be-closed userdata, so that an error raised
 * anywhere between pk_lua_progress_init and _done still restores SIGINT
 * (__gc covers a coroutine that dies and is never closed). */
#define GUARD_MT "pathkernel.interrupt_guard"
typedef struct { int armed; } guard;

static int guard_close(lua_State *L)
{
  guard *g = lua_touserdata(L, 1);     /* only this type has this metamethod */
  if (g && g->armed) {
    g->armed = 0;
    sig_release();
  }
  return 0;
}

/* pk.handle_interrupts(on): this state's setting, true by default */
static int interrupts_on(lua_State *L) { return pkL_interrupts(L); }

static int l_handle_interrupts(lua_State *L)
{
  int old = interrupts_on(L);
  if (!lua_isnone(L, 1)) {
    pk_lua_checktype(L, 1, LUA_TBOOLEAN);
    pkL_setinterrupts(L, lua_toboolean(L, 1));
  }
  lua_pushboolean(L, old);
  return 1;
}

void pk_lua_progress_init(lua_State *L, pk_lua_progress *p, int idx, const char *label,
                          pk_call_opts *opts)
{
  int t = idx ? lua_type(L, idx) : LUA_TBOOLEAN;
  guard *g;
  memset(p, 0, sizeof *p);
  p->L = L;
  p->label = label;
  p->start = p->last = pk_lua_now();
  if (t == LUA_TFUNCTION) p->fn = lua_absindex(L, idx);
  else if (t == LUA_TNIL || t == LUA_TNONE || (t == LUA_TBOOLEAN && idx && lua_toboolean(L, idx)))
    p->bar = isatty(fileno(stderr));
  else if (t != LUA_TBOOLEAN)
    luaL_error(L, "%s: option 'progress' must be a boolean or a function, got %s",
               pk_lua_fname(L), lua_typename(L, t));
  opts->progress = (p->fn || p->bar) ? pk_lua_progress_cb : NULL;
  opts->progress_ud = p;
  opts->cancel = NULL;
  /* the guard goes on the stack first (it may raise on memory), the
   * handler after */
  g = lua_newuserdatauv(L, sizeof *g, 0);
  g->armed = 0;
  luaL_setmetatable(L, GUARD_MT);
  lua_toclose(L, -1);
  p->guard = g;
  if (interrupts_on(L) && sig_acquire()) {
    g->armed = 1;
    opts->cancel = &sigint_flag;
  }
}

int pk_lua_progress_cb(void *ud, double done, double total)
{
  pk_lua_progress *p = ud;
  if (p->failed) return 1;
  if (p->fn) {
    lua_State *L = p->L;
    lua_pushvalue(L, p->fn);
    lua_pushnumber(L, done);
    lua_pushnumber(L, total);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
      p->failed = 1;        /* the error stays on the stack for _done */
      return 1;
    }
    if (lua_toboolean(L, -1) == 0 && !lua_isnil(L, -1)) {   /* returned false: stop */
      lua_pop(L, 1);
      return 1;
    }
    lua_pop(L, 1);
  }
  if (p->bar) {
    double now = pk_lua_now(), el = now - p->start;
    if (el >= 1.0 && (now - p->last >= 0.1 || done >= total)) {
      int w = 30, k = total > 0 ? (int)(w * done / total) : 0, i;
      char bar[32];
      double eta = done > 0 ? el * (total - done) / done : 0;
      for (i = 0; i < w; i++) bar[i] = i < k ? '#' : '.';
      bar[w] = 0;
      char loss[40] = "";
      if (p->show_loss) snprintf(loss, sizeof loss, " loss %.4g", p->loss);
      fprintf(stderr, "\r%s [%s] %3.0f%% %.0f/%.0f%s %.1f/s %.0fs left ", p->label, bar,
              total > 0 ? 100 * done / total : 0.0, done, total, loss, el > 0 ? done / el : 0.0,
              eta);
      fflush(stderr);
      p->last = now;
      p->drawn = 1;
    }
  }
  return 0;
}

void pk_lua_progress_done(pk_lua_progress *p)
{
  guard *g = p->guard;
  if (g && g->armed) {          /* SIGINT is the host's again */
    g->armed = 0;
    sig_release();
  }
  if (p->drawn) {
    fprintf(stderr, "\r%*s\r", 100, "");
    fflush(stderr);
    p->drawn = 0;
  }
  if (p->failed) lua_error(p->L);
}

/* ---- the default seed stream ----------------------------------------- */

/* the state's one stream, the aux layer's, while the files move there */
uint64_t pk_lua_nextseed(lua_State *L) { return pkL_nextseed(L); }

uint64_t pk_lua_optseed(lua_State *L, int idx)
{
  if (lua_isnoneornil(L, idx)) return pk_lua_nextseed(L);
  return (uint64_t)pk_lua_checkint(L, idx, LUA_MININTEGER, "seed");
}

static int l_manual_seed(lua_State *L)
{
  pkL_setseed(L, (uint64_t)pk_lua_checkint(L, 1, LUA_MININTEGER, "seed"));
  return 0;
}

/* ---- module functions ------------------------------------------------- */

typedef struct load_args {
  pk_matrix *X, *Y;
} load_args;

/* pk.load(path [, { X =, Y = }]): opens any saved object by its tag */
static int l_load(lua_State *L)
{
  static const pkL_option spec[] = {
    { "X", PKL_MATRIX, .offset = offsetof(load_args, X) },
    { "Y", PKL_MATRIX, .offset = offsetof(load_args, Y) },
    { NULL, 0, .offset = 0 }
  };
  const char *path = pkL_checkpath(L, 1);
  load_args a = { NULL, NULL };
  pk_tag tag;
  pk_status st;
  pkL_options(L, 2, "load", spec, &a);
  if ((a.X != NULL) != (a.Y != NULL)) return luaL_error(L, "load: give both X and Y, or neither");
  lua_settop(L, 2);
  if ((st = pk_file_tag(path, &tag))) return pkL_ioresult(L, st, 0);
  switch (tag) {
  case PK_TAG_MATRIX: return pkL_load_matrix(L, path);
  case PK_TAG_NETWORK: return pkL_load_network(L, path);
  case PK_TAG_TRAJECTORY: return pkL_load_trajectory(L, path, a.X, a.Y);
  case PK_TAG_MACHINE: return pkL_load_machine(L, path);
  case PK_TAG_REGRESSOR: return pkL_load_regressor(L, path);
  }
  return luaL_error(L, "%s: this build cannot load objects with tag %d", path, (int)tag);
}

/* pk.clock(): a monotonic wall clock in seconds, for timing experiments */
static int l_clock(lua_State *L)
{
  lua_pushnumber(L, pk_lua_now());
  return 1;
}

static int l_set_memory_limit(lua_State *L)
{
  lua_Integer v = pk_lua_checkint(L, 1, 0, "memory limit");
  pk_set_memory_limit((size_t)v);
  return 0;
}

static int l_memory_limit(lua_State *L)
{
  lua_pushinteger(L, (lua_Integer)pk_memory_limit());
  return 1;
}

#if defined(__GNUC__)
__attribute__((visibility("default")))
#endif
int luaopen_pathkernel_core(lua_State *L);

int luaopen_pathkernel_core(lua_State *L)
{
  static const luaL_Reg fns[] = {
    { "load", l_load },
    { "set_memory_limit", l_set_memory_limit },
    { "memory_limit", l_memory_limit },
    { "manual_seed", l_manual_seed },
    { "clock", l_clock },
    { "handle_interrupts", l_handle_interrupts },
    { NULL, NULL }
  };
  static const luaL_Reg guard_meta[] = { { "__close", guard_close }, { "__gc", guard_close },
                                          { NULL, NULL } };
  luaL_newmetatable(L, GUARD_MT);
  luaL_setfuncs(L, guard_meta, 0);
  lua_pop(L, 1);
  luaL_checkversion(L);
  lua_newtable(L);
  pk_lua_setfuncs(L, fns, "");
  pkL_open_matrix(L);
  pkL_open_kernel(L);
  pkL_open_network(L);
  pkL_open_trajectory(L);
  pkL_open_machine(L);
  lua_pushliteral(L, "0.1.0");
  lua_setfield(L, -2, "version");
  pkL_open_kernels(L);
  pkL_open_regressor(L);
  pkL_open_analysis(L);
  return 1;
}
