/* aux.h - the Lua binding's ground floor (prefix pkL_, all hidden): one
 * userdata box for every type, classes, argument and option-table
 * checking with messages that name the function, one result convention,
 * long calls (busy marks, progress, pinned data) and the collector's
 * accounting of what the C library allocates. Every file of c/lua/
 * includes this and pk.h, nothing else of the library. */
#ifndef PKL_AUX_H
#define PKL_AUX_H

#include <lua.h>
#include <lauxlib.h>
#include "pk.h"

/* ---- boxes and classes ------------------------------------------------ */

/* The userdata behind every object: a pointer to the core's object (NULL
 * once released) and the long calls running on it. */
typedef struct pkL_box {
  union {
    void *any;
    pk_matrix *matrix;
    pk_network *network;
    pk_trajectory *trajectory;
    pk_machine *machine;
    pk_kernel *kernel;
    pk_regressor *regressor;
  } u;
  int busy;
} pkL_box;

typedef struct pkL_class {
  const char *name;             /* metatable and type name: "pathkernel.Matrix" */
  const char *what;             /* in messages: "matrix has been released" */
  const char *user;             /* who runs while it is busy: "its own progress callback" */
  void (*release)(pkL_box *b);  /* frees b's object */
  int method;                   /* 1: obj:release() as well as __gc and __close */
} pkL_class;

/* Every class is described here, so that a file can push another type's
 * object without calling the file that defines its methods. */
extern const pkL_class pkL_Matrix, pkL_Network, pkL_Trajectory, pkL_Machine, pkL_Kernel,
  pkL_Regressor;

/* The metatable of c (built once by the type's open function): __gc and
 * __close release (idempotent, refused while busy), __index is a table of
 * the methods, __name the type. Names every function for messages. */
void pkL_newclass(lua_State *L, const pkL_class *c, const luaL_Reg *methods,
                  const luaL_Reg *meta);
/* Push an empty box of class c with its metatable (safe to collect before
 * it holds anything) and one user value; fill b->u afterwards. */
pkL_box *pkL_newbox(lua_State *L, const pkL_class *c);
/* The box at idx if it is of class c, else NULL / a type error. */
pkL_box *pkL_testbox(lua_State *L, int idx, const pkL_class *c);
pkL_box *pkL_checkbox(lua_State *L, int idx, const pkL_class *c);
/* The object in the box at idx: "bad argument #1 to 'forward' (network has
 * been released)" once released. */
void *pkL_check(lua_State *L, int idx, const pkL_class *c);
/* The same, refused while a long call runs on it ("network is in use: it
 * cannot be trained from its own training's callbacks"). */
void *pkL_idle(lua_State *L, int idx, const pkL_class *c, const char *doing);
/* Free the object at idx (a second time does nothing); refused while busy. */
int pkL_release(lua_State *L, int idx, const pkL_class *c);
/* For __tostring of a released box: "pathkernel.Matrix (released)". */
int pkL_released(lua_State *L, const pkL_class *c);
/* Make the value at `value` the user value of the box at `box`: what the
 * object borrows (a view's parent, a kernel's network) stays alive. */
void pkL_keep(lua_State *L, int box, int value);

/* ---- matrices every type uses ----------------------------------------- */

/* Push a view of all of the matrix at idx and return it: long work reads
 * the view, so a callback that releases the matrix at idx cannot free
 * what the work reads. */
pk_matrix *pkL_pin(lua_State *L, int idx);

/* ---- results ---------------------------------------------------------- */

/* Raise the core's message for st (never returns). */
int pkL_error(lua_State *L, pk_status st);
/* Raise unless st is PK_OK. */
void pkL_raise(lua_State *L, pk_status st);
/* The core call that filled the box on top returned st: raise, or tell the
 * collector what it allocated; returns 1 (the box). */
int pkL_made(lua_State *L, pk_status st);
/* Saves and loads, one convention (as luaL_fileresult): PK_OK returns the
 * nres values on top (0: pushes true); PK_EIO returns nil and the message;
 * anything else (a programming error, a corrupt file, no memory) raises. */
int pkL_ioresult(lua_State *L, pk_status st, int nres);
/* Tell the collector about the bytes the C library allocated in this
 * thread since the last call, as debt (a step of work in proportion), so
 * that a loop of temporaries keeps a few temporaries' worth. Call it last,
 * when every result is in its box: the step may run finalizers. */
void pkL_account(lua_State *L);

/* ---- names and arguments ---------------------------------------------- */

/* luaL_setfuncs (no upvalues) that also names each function prefix..name
 * for messages ("kernel." for pk.kernel.rbf). */
void pkL_setfuncs(lua_State *L, const luaL_Reg *l, const char *prefix);
/* The running function's name: as registered, else as the caller calls
 * it; never "?". */
const char *pkL_fname(lua_State *L);
/* Lua's argument messages ("bad argument #2 to 'forward' (...)"), naming
 * the function even when C calls it (pcall(net.forward, net, x)). A
 * pushed value (arg <= 0) is no argument: "forward: msg". */
int pkL_argerror(lua_State *L, int arg, const char *msg);
int pkL_typeerror(lua_State *L, int arg, const char *tname);
/* a metatable's __name or the basic type; may push one value */
const char *pkL_typeof(lua_State *L, int idx);
void pkL_checktype(lua_State *L, int arg, int t);
double pkL_checknumber(lua_State *L, int arg);
const char *pkL_checkstring(lua_State *L, int arg);
/* An integer >= lo ("zeros: rows must be an integer, got 1.5"). */
lua_Integer pkL_checkint(lua_State *L, int idx, lua_Integer lo, const char *what);
/* A dimension: an integer in 0..PK_MAX_DIM. */
size_t pkL_checksize(lua_State *L, int idx, const char *what);
/* A path: a string (a number is refused, not turned into a file name),
 * not empty, without NUL bytes. */
const char *pkL_checkpath(lua_State *L, int idx);
/* The seed argument at idx; absent: the next of this state's stream. */
uint64_t pkL_optseed(lua_State *L, int idx);
uint64_t pkL_nextseed(lua_State *L);
void pkL_setseed(lua_State *L, uint64_t seed);

/* ---- option tables ---------------------------------------------------- */

/* One option of a table, filling one field of a C struct at `offset`. The
 * field's type follows the option's:
 *   PKL_NUMBER double       PKL_INTEGER lua_Integer   PKL_SIZE size_t
 *   PKL_BOOLEAN int         PKL_STRING const char * (the table keeps it)
 *   PKL_MATRIX pk_matrix *  PKL_SEED uint64_t (absent: the state's stream)
 *   PKL_ENUM int: the index of the value in `names`
 *   PKL_FUNCTION, PKL_VALUE int: the value is pushed on the stack (nil when
 *     absent) and the field gets its index (0 when absent)
 *   PKL_CUSTOM: set(L, value index, the struct, option, function name)
 * A field keeps what it held when the option is absent: initialize the
 * struct with the defaults. Integers and sizes are checked against
 * lo..hi (hi < lo: no upper bound; both 0: no check). PKL_REQUIRED may be
 * or'ed into the type. Options are read in the spec's order, so a setter
 * may look at fields filled before it. */
enum {
  PKL_NUMBER = 1, PKL_INTEGER, PKL_SIZE, PKL_BOOLEAN, PKL_STRING, PKL_MATRIX, PKL_SEED,
  PKL_ENUM, PKL_FUNCTION, PKL_VALUE, PKL_CUSTOM
};
#define PKL_REQUIRED 0x100

struct pkL_option;
typedef void (*pkL_setter)(lua_State *L, int value, void *out, const struct pkL_option *o,
                           const char *fname);

/* Entries read { "lr", PKL_NUMBER, .offset = offsetof(s, lr) } with the
 * other fields they need designated too (the rest are zero); the spec
 * ends with { NULL, 0, .offset = 0 }. */
typedef struct pkL_option {
  const char *key;
  int type;
  size_t offset;
  double lo, hi;
  const char *const *names;   /* PKL_ENUM: NULL-terminated */
  pkL_setter set;             /* PKL_CUSTOM */
  const char *noun;           /* messages: "unknown <noun> 'x'" (default: the key) */
  const char *note;           /* messages: "option 'X' (the inputs) is required" */
} pkL_option;

/* Check the option table at idx (none or nil: all absent; anything else
 * but a table: "bad argument #2 to 'save' (table of options expected, got
 * number)"), refuse keys the spec (ended by a NULL key) does not list
 * ("train: unknown option 'stpes' (valid options: ...)"), check each
 * value ("train: option 'lr' must be a number, got string") and fill out.
 * fname: the name in messages (NULL: the running function's). */
void pkL_options(lua_State *L, int idx, const char *fname, const pkL_option *spec, void *out);
/* The arguments of every save, X:save(path [, options]): the path at 2
 * (pkL_checkpath) and the options at 3 filled by spec (NULL: a save that
 * takes none, so only nil or an empty table pass). */
const char *pkL_saveargs(lua_State *L, const pkL_option *spec, void *out);
/* The field of an option value that is no table option: "fname: option
 * 'key' must be a <expected>, got <type>". */
int pkL_opterror(lua_State *L, int value, const char *fname, const char *key,
                 const char *expected);

/* A setter for the quadrature rule ("gauss" | "left") into a pk_rule, and
 * the check of nodes against it (0: the rule's default). */
void pkL_setrule(lua_State *L, int value, void *out, const pkL_option *o, const char *fname);
int pkL_rulenodes(lua_State *L, const char *fname, pk_rule rule, lua_Integer nodes);

/* ---- communicators (data-parallel runs) -------------------------------- */

/* The metatable name of a userdata whose block starts with a pk_comm: the
 * pathkernel.mpi module (built apart, linked with MPI) makes one as
 * mpi.comm, so this module accepts `comm = mpi` without linking MPI. */
#define PKL_COMM "pathkernel.Comm"
/* The communicator at idx: such a userdata, or a table holding one as its
 * field comm (the mpi module itself); NULL for nil; else an error naming
 * fname and the option. */
const pk_comm *pkL_tocomm(lua_State *L, int idx, const char *fname, const char *key);
/* A PKL_CUSTOM setter for a `const pk_comm *` field. */
void pkL_setcomm(lua_State *L, int value, void *out, const pkL_option *o, const char *fname);

/* The rule options of a kernel machine (from_trajectory, train's explain):
 * rule = "exact" | "gauss" | "left", nodes (gauss), tol (exact). Embed a
 * pkL_quadargs in the options' struct, start it with pkL_quadargs_init
 * (all absent), list PKL_QUAD_SPEC(the struct, the field) in the spec, and
 * turn it into a pk_quad with pkL_quad once the options are read: the
 * default is exact, nodes alone asks for gauss (the rule that has them),
 * and an option of the other rule is refused. */
typedef struct pkL_quadargs {
  int rule;                 /* a pk_rule, -1 when absent */
  lua_Integer nodes;        /* 0 when absent */
  double tol;               /* 0 when absent (a tol of 0 is refused) */
} pkL_quadargs;
void pkL_quadargs_init(pkL_quadargs *a);
void pkL_setquadrule(lua_State *L, int value, void *out, const pkL_option *o, const char *fname);
void pkL_settol(lua_State *L, int value, void *out, const pkL_option *o, const char *fname);
#define PKL_QUAD_SPEC(type, field)                                                    \
  { "rule", PKL_CUSTOM, .offset = offsetof(type, field.rule), .set = pkL_setquadrule }, \
  { "nodes", PKL_INTEGER, .offset = offsetof(type, field.nodes), .lo = 1, .hi = 16 },   \
  { "tol", PKL_CUSTOM, .offset = offsetof(type, field.tol), .set = pkL_settol }
void pkL_quad(lua_State *L, const char *fname, const pkL_quadargs *a, pk_quad *q);

/* ---- training options ------------------------------------------------- */

/* What net:train and the runs attribution retrains (pk.attribute.lds,
 * remove_top) read alike. The loss by name ("train: unknown loss 'x'
 * (valid: ...)"); setters for option specs: a pk_loss at the option's
 * offset; the pk_train_opts at the offset (the optimizer, with adamw's
 * default weight decay); a double of its hyper at the offset, refused
 * where the optimizer (read before it) has no such hyperparameter. For
 * pkL_sethyper the struct the spec fills begins with its pk_train_opts. */
pk_loss pkL_checkloss(lua_State *L, const char *fname, const char *name);
void pkL_setloss(lua_State *L, int value, void *out, const pkL_option *o, const char *fname);
void pkL_setoptimizer(lua_State *L, int value, void *out, const pkL_option *o,
                      const char *fname);
void pkL_sethyper(lua_State *L, int value, void *out, const pkL_option *o, const char *fname);
/* The steps of a run on rows examples from the options steps and epochs
 * (0 when absent; not both), sgd's default batch of 32 set in o. */
size_t pkL_trainsteps(lua_State *L, const char *fname, pk_train_opts *o, size_t rows,
                      lua_Integer steps, lua_Integer epochs);

/* ---- module tables ---------------------------------------------------- */

/* t[key] = v for the table on top (results that are tables of numbers) */
void pkL_setnumber(lua_State *L, const char *key, double v);

/* pk[name] (pk.kernel, pk.machine): the module table is on top; pushes the
 * sub-table, creating it the first time. */
void pkL_subtable(lua_State *L, const char *name);

/* ---- long calls ------------------------------------------------------- */

/* The state of a call that does long work: the core's options (progress
 * through a Lua function or a bar on a terminal), the boxes it marks
 * busy, and a callback's error. It lives in a to-be-closed userdata, so
 * an error raised anywhere before pkL_end still undoes the busy marks. */
#define PKL_MAXBUSY 3
typedef struct pkL_call {
  pk_call_opts opts;        /* hand &c->opts to the core */
  lua_State *L;
  int self;                 /* the call's own stack index */
  const char *label;        /* the bar's label */
  int fn;                   /* stack index of a progress function, or 0 */
  int bar, drawn;           /* draw a bar on stderr; it is drawn */
  int show_loss;            /* training: the bar shows the last loss */
  double loss;
  double start, last;
  int failed;               /* a Lua callback raised: its error is on top */
  int armed;                /* the SIGINT handler is in place for the call */
  int ended;
  int nbusy;
  pkL_box *busy[PKL_MAXBUSY];
} pkL_call;

/* Start a long call. progress: the stack index of the progress option's
 * value (nil or true: a bar when stderr is a terminal; false: nothing; a
 * function progress(done, total) that may return false to stop), or 0 for
 * no progress. Unless pk.handle_interrupts(false) was called in this
 * state, a SIGINT handler is in place until the call ends (however it
 * ends) and c->opts.cancel points at the flag it sets: Ctrl-C stops the
 * work with an "interrupted" error. Pushes the call's userdata (to be
 * closed): leave it where it is. */
pkL_call *pkL_begin(lua_State *L, const char *label, int progress);
/* Mark the box at idx busy until the call ends (releasing it, or using it
 * where that says so, is refused meanwhile). */
void pkL_hold(pkL_call *c, int idx);
/* After the core returns: undo the busy marks, clear the bar, and re-raise
 * a callback's error (before any status error of the call). A callback
 * that failed left its error on top of the stack: between the core's
 * return and pkL_end, use no index relative to the top. */
void pkL_end(pkL_call *c);
/* The progress callback behind c->opts, for callers that chain it. */
int pkL_progress(void *ud, double done, double total);
/* A monotonic clock in seconds. */
double pkL_now(void);
/* pk.handle_interrupts: this state's setting (on by default). */
int pkL_interrupts(lua_State *L);
void pkL_setinterrupts(lua_State *L, int on);

/* ---- the floors above (called by init.c only) ------------------------- */

void pkL_open_matrix(lua_State *L);
void pkL_open_network(lua_State *L);
void pkL_open_trajectory(lua_State *L);
void pkL_open_machine(lua_State *L);
void pkL_open_kernel(lua_State *L);
void pkL_open_kernels(lua_State *L);
void pkL_open_regressor(lua_State *L);
void pkL_open_analysis(lua_State *L);
void pkL_open_attribute(lua_State *L);
/* pk.load by the file's tag: each pushes its object (or nil, message) and
 * returns the count. A trajectory may be given its training data. */
int pkL_load_matrix(lua_State *L, const char *path);
int pkL_load_network(lua_State *L, const char *path);
int pkL_load_trajectory(lua_State *L, const char *path, pk_matrix *X, pk_matrix *Y);
int pkL_load_machine(lua_State *L, const char *path);
int pkL_load_regressor(lua_State *L, const char *path);

#endif
