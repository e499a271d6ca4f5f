/* lua_pk.h - what the Lua binding files share: checkers, pushers, turning a
 * status into a Lua error, and the per-type open functions. */
#ifndef LUA_PK_H
#define LUA_PK_H

#include <lua.h>
#include <lauxlib.h>
#include "pk_traj.h"
#include "pk_machine.h"
#include "pk_kern.h"
#include "lua/aux.h"     /* the new binding's floor, while the files move there */


/* Raise the core's message as a Lua error (never returns). */
int pk_lua_error(lua_State *L, pk_status st);
/* For I/O: push nil, message and return 2. */
int pk_lua_fail(lua_State *L, pk_status st);

/* Names for messages. pk_lua_setfuncs is luaL_setfuncs (no upvalues) that
 * also records each function as prefix..name ("kernel." for pk.kernel.x;
 * metamethods without their "__"); pk_lua_setname records one. */
void pk_lua_setfuncs(lua_State *L, const luaL_Reg *l, const char *prefix);
void pk_lua_setname(lua_State *L, lua_CFunction f, const char *name);
/* The running C function's name: as recorded, else as the caller's code
 * calls it; never "?". */
const char *pk_lua_fname(lua_State *L);
/* luaL_argerror, luaL_typeerror, luaL_checkudata, ... that name the
 * function even when it is called from C (pcall(obj.method, obj, ...)).
 * Use them for every argument check: Lua's own print '?' there. A
 * negative arg is a value the function pushed, not an argument: the
 * message is then "fname: msg" (never "#-1"); check option fields with
 * the pk_lua_opt* / pk_lua_checkoptmatrix helpers, which name the option. */
int pk_lua_argerror(lua_State *L, int arg, const char *msg);
int pk_lua_typeerror(lua_State *L, int arg, const char *tname);
void *pk_lua_checkudata(lua_State *L, int arg, const char *tname);
void pk_lua_checktype(lua_State *L, int arg, int t);
double pk_lua_checknumber(lua_State *L, int arg);
const char *pk_lua_checkstring(lua_State *L, int arg);
/* the type of the value at idx as messages name it: a metatable's __name
 * ("pathkernel.Network") or the basic type; may push one value */
const char *pk_lua_typeof(lua_State *L, int idx);

/* An integer argument >= lo (rejecting floats with a fraction). */
lua_Integer pk_lua_checkint(lua_State *L, int idx, lua_Integer lo, const char *what);
/* a size argument: a non-negative integer */
size_t pk_lua_checksize(lua_State *L, int idx, const char *what);

/* A file path argument: a string (not a number) without NUL bytes, not empty. */
const char *pk_lua_checkpath(lua_State *L, int idx);

/* Fields of an option table at idx (idx may be none/nil: then defaults). */
int pk_lua_optfield(lua_State *L, int idx, const char *key); /* pushes it; returns its type */
double pk_lua_optnumber(lua_State *L, int idx, const char *key, double def);
lua_Integer pk_lua_optinteger(lua_State *L, int idx, const char *key, lua_Integer def);
int pk_lua_optboolean(lua_State *L, int idx, const char *key, int def);
const char *pk_lua_optstring(lua_State *L, int idx, const char *key, const char *def);
/* Reject keys of an option table that are not in the NULL-terminated list
 * (fn names the function in the message; NULL: the running function). */
void pk_lua_checkkeys(lua_State *L, int idx, const char *fn, const char *const *valid);

/* The default random seed stream of this Lua state (pk.manual_seed). */
uint64_t pk_lua_nextseed(lua_State *L);
/* A seed argument or field: integer; absent -> the default stream */
uint64_t pk_lua_optseed(lua_State *L, int idx);

/* Progress of long work: a Lua function progress(done, total) and/or a bar
 * on stderr (only when it is a terminal, only after the first second). */
typedef struct pk_lua_progress {
  lua_State *L;
  int fn;           /* stack index of a Lua function, or 0 */
  int bar;          /* draw a terminal bar on stderr */
  const char *label;
  double start, last;
  int drawn;        /* the bar is on the screen */
  int show_loss;    /* training: print the last loss */
  double loss;
  int failed;       /* the Lua callback raised: its error is on the stack */
  void *guard;      /* the interrupt guard on the stack */
} pk_lua_progress;

/* Set p up from the value at idx: nil/true (bar), false (nothing), or a
 * function; idx 0: no progress at all. opts is filled to call p.
 * Interrupts: unless pk.handle_interrupts(false) was called in this state,
 * a SIGINT handler is installed until _done (or until the call ends,
 * however it ends) and opts->cancel points at the flag it sets, so that
 * Ctrl-C stops the work with an "interrupted" error. Pushes one value (a
 * to-be-closed guard) that must stay where it is until the call returns. */
void pk_lua_progress_init(lua_State *L, pk_lua_progress *p, int idx, const char *label,
                          pk_call_opts *opts);
/* Restore SIGINT; clear the bar; if the callback failed, re-raise its
 * error. Call after the C work returns, before raising any status error
 * (more than once is harmless). */
void pk_lua_progress_done(pk_lua_progress *p);
int pk_lua_progress_cb(void *ud, double done, double total);
double pk_lua_now(void);

#endif
