/* threads.c - pathkernel used from two threads at once, as a host that
 * runs two Lua states on two threads uses it: each thread keeps its own
 * error message, and the memory limit (one for the whole process) may be
 * set and read from any thread. Two tests, each with two threads that fail
 * on purpose round after round, each in its own way (one multiplies
 * matrices whose shapes do not conform, the other asks for an activation
 * that does not exist, both with sizes or names of that round), and check
 * that every message they read names their own mistake: first C calls
 * alone, then two Lua states running the module.
 *
 *   make embed              (builds build/embed_threads and runs it)
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include "pk.h"

int luaopen_pathkernel_core(lua_State *L);   /* linked in from the binding */

/* rounds per thread: enough that the two threads fail at the same moment
 * many times over, even on a busy machine (a fraction of a second each) */
enum { C_ROUNDS = 200000, LUA_ROUNDS = 50000 };

typedef struct worker {
  int id;               /* 0 or 1: which mistake this thread makes */
  long rounds;          /* messages read */
  long foreign;         /* of them, those that did not name this thread's mistake */
  char first[600];      /* the first of those, for the report */
} worker;

static void note(worker *w, const char *msg, const char *want)
{
  w->rounds++;
  if (msg && strstr(msg, want)) return;
  if (w->foreign++ == 0)
    snprintf(w->first, sizeof w->first, "\"%s\" (expected it to name \"%s\")",
             msg ? msg : "(no message)", want);
}

/* ---- C alone ---------------------------------------------------------- */

/* Round i of thread id's mistake; want gets what its message must name.
 * Both mistakes are quick (no file, nothing large allocated), so that the
 * two threads fail at the same moments as often as they can. */
static pk_status c_mistake(int id, long i, pk_matrix *a, const pk_matrix *b, char *want,
                           size_t n)
{
  pk_matrix *v = NULL, *c = NULL;
  pk_kernel *k = NULL;
  char name[64];
  pk_status st;
  if (id == 0) {
    size_t rows = 1 + (size_t)(i % 500);
    snprintf(want, n, "shapes %zux5 and 7x2", rows);
    if (!(st = pk_matrix_view_rows(&v, a, 0, rows))) st = pk_matrix_mul(&c, v, b);
  } else {
    snprintf(name, sizeof name, "thread-1-round-%ld", i);
    snprintf(want, n, "activation '%s'", name);
    st = pk_kernel_ntk(&k, 1, name, 1.0, 0.0);
  }
  pk_matrix_free(c);
  pk_matrix_free(v);
  pk_kernel_free(k);
  return st;
}

static void *c_worker(void *ud)
{
  worker *w = ud;
  size_t mine = (size_t)(w->id + 1) << 40;
  pk_matrix *a = NULL, *b = NULL;
  char want[160];
  long i;
  if (pk_matrix_zeros(&a, 500, 5) || pk_matrix_zeros(&b, 7, 2)) {
    note(w, pk_last_error(), "two small matrices");
    goto done;
  }
  for (i = 0; i < C_ROUNDS; i++) {
    pk_status st = c_mistake(w->id, i, a, b, want, sizeof want);
    note(w, st != PK_OK ? pk_last_error() : NULL, want);
    if (i % 64 == 0) {
      /* both threads set the one limit of the process: a read sees one of
       * the values set, never anything else */
      size_t lim;
      char msg[64];
      pk_set_memory_limit(mine);
      lim = pk_memory_limit();
      snprintf(msg, sizeof msg, "memory limit %zu", lim);
      if (lim != (size_t)1 << 40 && lim != (size_t)2 << 40)
        note(w, msg, "memory limit 1099511627776 or 2199023255552");
    }
  }
done:
  pk_matrix_free(a);
  pk_matrix_free(b);
  return NULL;
}

/* ---- two Lua states --------------------------------------------------- */

/* chunk(rounds, id) -> messages read, those that did not name thread id's
 * mistake, the first of those and what it should have named */
static const char *const lua_rounds =
  "local pk, rounds, id = require 'pathkernel.core', ...\n"
  "local a, b = pk.zeros(500, 5), pk.zeros(7, 2)\n"
  "local mistake = {\n"
  "  [0] = function(i)\n"
  "    local rows = 1 + i % 500\n"
  "    return function() return a:slice(1, rows) * b end,\n"
  "           string.format('shapes %dx5 and 7x2', rows)\n"
  "  end,\n"
  "  [1] = function(i)\n"
  "    local name = 'thread-1-round-' .. i\n"
  "    return function() return pk.kernel.ntk{ depth = 1, activation = name } end,\n"
  "           \"activation '\" .. name .. \"'\"\n"
  "  end,\n"
  "}\n"
  "local foreign, first, want = 0\n"
  "for i = 0, rounds - 1 do\n"
  "  local f, w = mistake[id](i)\n"
  "  local ok, msg = pcall(f)\n"
  "  if ok or not tostring(msg):find(w, 1, true) then\n"
  "    foreign = foreign + 1\n"
  "    if not first then first, want = tostring(msg), w end\n"
  "  end\n"
  "end\n"
  "return rounds, foreign, first, want\n";

static void *lua_worker(void *ud)
{
  worker *w = ud;
  lua_State *L = luaL_newstate();
  if (!L) {
    note(w, NULL, "a Lua state");
    return NULL;
  }
  luaL_openlibs(L);
  luaL_requiref(L, "pathkernel.core", luaopen_pathkernel_core, 0);
  lua_pop(L, 1);
  if (luaL_loadstring(L, lua_rounds) != LUA_OK) {
    note(w, lua_tostring(L, -1), "a chunk that loads");
  } else {
    lua_pushinteger(L, LUA_ROUNDS);
    lua_pushinteger(L, w->id);
    if (lua_pcall(L, 2, 4, 0) != LUA_OK) {
      note(w, lua_tostring(L, -1), "no error outside pcall");
    } else {
      w->rounds = (long)lua_tointeger(L, -4);
      w->foreign = (long)lua_tointeger(L, -3);
      if (w->foreign)
        snprintf(w->first, sizeof w->first, "\"%s\" (expected it to name \"%s\")",
                 lua_tostring(L, -2), lua_tostring(L, -1));
    }
  }
  lua_close(L);
  return NULL;
}

/* both workers at once; 0 when every message each read was its own */
static int run(const char *what, void *(*fn)(void *))
{
  worker w[2];
  pthread_t t[2];
  int k, bad = 0;
  memset(w, 0, sizeof w);
  for (k = 0; k < 2; k++) {
    w[k].id = k;
    if (pthread_create(&t[k], NULL, fn, &w[k]) != 0) {
      fprintf(stderr, "embed_threads: cannot start a thread\n");
      return 1;
    }
  }
  for (k = 0; k < 2; k++) pthread_join(t[k], NULL);
  for (k = 0; k < 2; k++)
    if (w[k].foreign) {
      fprintf(stderr, "embed_threads: %s, thread %d: %ld of %ld messages were not its own; the "
              "first: %s\n", what, k, w[k].foreign, w[k].rounds, w[k].first);
      bad = 1;
    }
  if (!bad)
    printf("%s: %ld + %ld failures on two threads at once, every message its own\n", what,
           w[0].rounds, w[1].rounds);
  return bad;
}

int main(void)
{
  int bad = run("C calls", c_worker);
  pk_set_memory_limit(0);
  bad |= run("two Lua states", lua_worker);
  if (bad) return 1;
  printf("embed_threads: ok\n");
  return 0;
}
