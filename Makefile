# pathkernel - build the C module, run the specs, the sanitizer build, the
# reliability tools, the demo and the benchmarks, build the library for host
# programs. `make help` lists the targets.

# ---- tools and places -----------------------------------------------------

LUA      ?= lua5.4
BUSTED   ?= /usr/bin/busted
CC       ?= cc
PKGCONF  ?= pkg-config
FUZZ_CC  ?= clang
MPICC    ?= mpicc
MPIRUN   ?= mpirun

# LuaRocks passes these; the defaults suit a Debian checkout
LUA_INCDIR  ?= $(patsubst -I%,%,$(firstword $(shell $(PKGCONF) --cflags-only-I lua5.4 2>/dev/null) -I/usr/include/lua5.4))
LIBFLAG     ?= -shared
INST_LIBDIR ?= /usr/local/lib/lua/5.4/pathkernel
INST_LUADIR ?= /usr/local/share/lua/5.4
LUA_LIBS    ?= $(shell $(PKGCONF) --libs lua5.4 2>/dev/null || echo -llua5.4)

# ---- flags ----------------------------------------------------------------

WARN    = -std=c99 -Wall -Wextra -Wpedantic -Wmissing-prototypes -Wshadow
ifdef CI
WARN   += -Werror
endif
CFLAGS  ?= -O2 -g
ALL_CFLAGS = $(WARN) $(CFLAGS) -fPIC -fvisibility=hidden -I$(LUA_INCDIR) -Ic
LIBS    = -llapacke -llapack -lblas -lz -lm -lpthread
# AddressSanitizer and UBSan: the module of `make check` and `make misuse`
ASAN_FLAGS  = -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_CFLAGS = $(WARN) $(ASAN_FLAGS) -fPIC -fvisibility=hidden -I$(LUA_INCDIR) -Ic
# libFuzzer harnesses over the C core
FUZZ_SAN    = -O1 -g -Werror=implicit-function-declaration -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
EMBED_CFLAGS = $(WARN) $(CFLAGS) -Ic

# ---- sources and what is built from them ----------------------------------

# the MPI module's sources build only with `make mpi` (mpicc)
MPI_SRC  = $(wildcard c/lua/mpi*.c)
SRC      = $(filter-out $(MPI_SRC),$(wildcard c/*.c c/lua/*.c))
HDR      = $(wildcard c/*.h c/lua/*.h)
CORE_SRC = $(filter-out c/lua_%.c c/lua/%.c,$(SRC))

BUILD    = build
MODULE   = $(BUILD)/pathkernel/core.so
OBJ      = $(patsubst c/%.c,$(BUILD)/obj/%.o,$(SRC))
CORE_OBJ = $(patsubst c/%.c,$(BUILD)/obj/%.o,$(CORE_SRC))
LIB      = $(BUILD)/libpathkernel.a
ASAN_DIR = build-asan
ASAN_MOD = $(ASAN_DIR)/pathkernel/core.so
ASAN_OBJ = $(patsubst c/%.c,$(ASAN_DIR)/obj/%.o,$(SRC))
FUZZ_DIR = build-fuzz
FUZZERS  = $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_BINS = $(patsubst %,$(FUZZ_DIR)/fuzz_%,$(FUZZERS))
FUZZ_OBJ = $(patsubst c/%.c,$(FUZZ_DIR)/obj/%.o,$(CORE_SRC))
MPI_MOD  = $(BUILD)/pathkernel/mpi.so
MPI_OBJ  = $(patsubst c/%.c,$(BUILD)/obj/%.o,$(MPI_SRC))
EMBEDS   = $(BUILD)/embed_capi $(BUILD)/embed_host $(BUILD)/embed_threads

# ---- the environments things run in ---------------------------------------

LUA_PATH_HERE  = $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua
LUA_CPATH_HERE = $(CURDIR)/$(BUILD)/?.so
# lua5.4 with the front module and the C module of this checkout
RUN_HERE = LUA_PATH="$(LUA_PATH_HERE);;" LUA_CPATH="$(LUA_CPATH_HERE);;"
# the interpreter is not instrumented, so the ASan runtime is preloaded
ASAN_ENV = LD_PRELOAD="$$($(CC) -print-file-name=libasan.so)" \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	LSAN_OPTIONS=suppressions=$(CURDIR)/.ci/lsan.supp:print_suppressions=0 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

.PHONY: all env deps test check demo bench install uninstall clean help \
	fuzz fuzz-build fuzz-corpus misuse valgrind lib embed mpi test-mpi

# ---- building --------------------------------------------------------------

all: $(MODULE)

$(MODULE): $(OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) -o $@ $(OBJ) $(LIBS)

$(BUILD)/obj/%.o: c/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(ASAN_MOD): $(ASAN_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -fsanitize=address,undefined -o $@ $(ASAN_OBJ) $(LIBS)

$(ASAN_DIR)/obj/%.o: c/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(CC) $(ASAN_CFLAGS) -c -o $@ $<

# The C core as a static library for host programs (no Lua in it)
lib: $(LIB)

$(LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $(CORE_OBJ)

# The optional MPI module, pathkernel.mpi: its own sources compiled by
# mpicc, with a copy of the core and the binding's ground floor (the plain
# module never links MPI), ScaLAPACK for the distributed solver.
MPI_LIBS = -lscalapack-openmpi

MPI_DEPS = openmpi-bin libopenmpi-dev libscalapack-openmpi-dev

mpi: deps all
	@sh .ci/deps $(MPI_DEPS)
	@$(MAKE) --no-print-directory $(MPI_MOD)

$(MPI_MOD): $(MPI_OBJ) $(CORE_OBJ) $(BUILD)/obj/lua/aux.o
	@mkdir -p $(dir $@)
	$(MPICC) $(LIBFLAG) -o $@ $^ $(MPI_LIBS) $(LIBS)

$(MPI_OBJ): $(BUILD)/obj/lua/%.o: c/lua/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(MPICC) $(ALL_CFLAGS) -c -o $@ $<

# ---- running ---------------------------------------------------------------

# eval "$(make -s env)" points lua5.4 at this checkout
env:
	@echo 'export LUA_PATH="$(LUA_PATH_HERE);;"'
	@echo 'export LUA_CPATH="$(LUA_CPATH_HERE);;"'

deps:
	@sh .ci/deps

test: deps
	@$(MAKE) --no-print-directory all
	$(LUA) $(BUSTED) $(BUSTED_ARGS)

# The MPI specs (spec/mpi/*_mpi.lua) under 2 ranks and under 3 on this
# machine's 2 cores; root needs Open MPI's two consent variables.
MPI_RANKS ?= 2 3
test-mpi: mpi
	@for n in $(MPI_RANKS); do \
	  echo "== mpirun -np $$n"; \
	  env OPENBLAS_NUM_THREADS=1 $$( [ "$$(id -u)" = 0 ] && echo OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ) \
	    $(MPIRUN) -np $$n --oversubscribe sh spec/mpi/rank.sh $(BUILD) || exit 1; \
	done

# The specs again with the module under AddressSanitizer and UBSan.
check: deps $(ASAN_MOD)
	$(ASAN_ENV) $(LUA) $(BUSTED) --cpath="$(CURDIR)/$(ASAN_DIR)/?.so" $(BUSTED_ARGS)

demo: deps
	@sh .ci/deps gnuplot-nox 2>/dev/null || echo "(gnuplot-nox is optional: without it the demo writes CSV files instead of pictures)"
	@$(MAKE) --no-print-directory all
	$(RUN_HERE) $(LUA) examples/kernel_machine.lua

# Each benchmark runs its competitor (PyTorch, scikit-learn, NumPy under
# /usr/bin/python3) in the same run and prints ratios; `make bench B=ntk`
# runs one.
BENCHES = $(if $(B),bench/$(B).lua,$(filter-out bench/util.lua,$(wildcard bench/*.lua)))
bench: all
	@for b in $(BENCHES); do \
	  LUA_PATH="$(CURDIR)/?.lua;$(LUA_PATH_HERE);;" LUA_CPATH="$(LUA_CPATH_HERE);;" $(LUA) $$b || exit 1; \
	done

# ---- reliability: fuzzing, the misuse fuzzer, valgrind (README,
# "Guarantees"). Every fuzz/fuzz_NAME.c is a libFuzzer harness over the C
# core; fuzz/seeds.lua writes its seed corpus, fuzz/regress/NAME/ holds
# inputs that once failed (replayed first on every run).
FUZZ_TIME  ?= 60
FUZZ_DEPS  ?= clang libclang-rt-14-dev

# kept between runs: the harnesses share them
.SECONDARY: $(FUZZ_OBJ)

$(FUZZ_DIR)/obj/%.o: c/%.c $(HDR)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(WARN) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -Ic -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz.h $(FUZZ_OBJ)
	$(FUZZ_CC) $(WARN) $(FUZZ_SAN) -fsanitize=fuzzer -Ic -o $@ $< $(FUZZ_OBJ) $(LIBS)

fuzz-build:
	@sh .ci/deps $(FUZZ_DEPS)
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

fuzz-corpus: all
	$(RUN_HERE) $(LUA) fuzz/seeds.lua $(FUZZ_DIR)/corpus $(FUZZERS)

# each harness for FUZZ_TIME seconds; a crash leaves its input in
# build-fuzz/artifacts/ (copy it to fuzz/regress/NAME/ with a spec)
fuzz: fuzz-build fuzz-corpus
	@mkdir -p $(FUZZ_DIR)/artifacts
	@for f in $(FUZZERS); do \
	  echo "== fuzz_$$f for $(FUZZ_TIME) s"; \
	  reg=; [ -d fuzz/regress/$$f ] && reg=fuzz/regress/$$f; \
	  $(FUZZ_DIR)/fuzz_$$f -max_total_time=$(FUZZ_TIME) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts/$$f- $(FUZZ_DIR)/corpus/$$f $$reg \
	    2>$(FUZZ_DIR)/$$f.log || { tail -n 60 $(FUZZ_DIR)/$$f.log; exit 1; }; \
	  grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' $(FUZZ_DIR)/$$f.log; \
	done

# the misuse fuzzer under AddressSanitizer and UBSan, from a scratch folder
N           ?= 100000
MISUSE_SEED ?= 1
misuse: deps $(ASAN_MOD)
	@d=$$(mktemp -d); cd $$d && $(ASAN_ENV) \
	  LUA_PATH="$(LUA_PATH_HERE);;" LUA_CPATH="$(CURDIR)/$(ASAN_DIR)/?.so;;" \
	  $(LUA) $(CURDIR)/fuzz/misuse.lua $(N) --seed $(MISUSE_SEED) --trace $$d/trace \
	  || { echo "misuse: died at call $$(tail -n 1 $$d/trace)"; exit 1; }; rm -rf $$d

# the specs under valgrind memcheck: no errors, no definite leaks (specs
# tagged #children do their work in child processes valgrind does not trace).
# .ci/valgrind.supp holds only third-party noise (see its comments)
VALGRIND_FLAGS = --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	--show-leak-kinds=definite --track-origins=yes --num-callers=30 \
	--suppressions=$(CURDIR)/.ci/valgrind.supp
valgrind: deps all
	@sh .ci/deps valgrind
	OPENBLAS_NUM_THREADS=1 PK_MISUSE_COUNT=300 valgrind $(VALGRIND_FLAGS) \
	  $(LUA) $(BUSTED) --ignore-lua --exclude-tags=children $(BUSTED_ARGS)

# ---- embedding: a C-only program against the library, a Lua host with the
# module linked in, and both used from two threads at once

$(BUILD)/embed_capi: examples/embed/capi.c $(LIB) c/pk.h
	$(CC) $(EMBED_CFLAGS) -o $@ $< $(LIB) $(LIBS)

$(BUILD)/embed_host: examples/embed/host.c $(OBJ) c/pk.h
	$(CC) $(EMBED_CFLAGS) -I$(LUA_INCDIR) -DPK_SOURCE_DIR='"$(CURDIR)"' -o $@ $< $(OBJ) $(LUA_LIBS) $(LIBS)

$(BUILD)/embed_threads: examples/embed/threads.c $(OBJ) c/pk.h
	$(CC) $(EMBED_CFLAGS) -I$(LUA_INCDIR) -o $@ $< $(OBJ) $(LUA_LIBS) $(LIBS)

embed: $(EMBEDS)
	@for e in $(EMBEDS); do echo "== $$e"; $$e || exit 1; done

# ---- installing and cleaning up ---------------------------------------------

install: $(MODULE)
	mkdir -p $(INST_LIBDIR) $(INST_LUADIR)/pathkernel
	cp $(MODULE) $(INST_LIBDIR)/core.so
	if [ -f $(MPI_MOD) ]; then cp $(MPI_MOD) $(INST_LIBDIR)/mpi.so; fi
	cp lua/pathkernel/*.lua $(INST_LUADIR)/pathkernel/

uninstall:
	rm -f $(INST_LIBDIR)/core.so $(INST_LIBDIR)/mpi.so
	rm -rf $(INST_LUADIR)/pathkernel

clean:
	rm -rf $(BUILD) $(ASAN_DIR) $(FUZZ_DIR)

help:
	@echo "make [target] (all when none is named)"
	@echo "  all          the Lua module, $(MODULE)"
	@echo "  env          shell exports that point lua5.4 here: eval \"\$$(make -s env)\""
	@echo "  deps         check (as root: install) the Debian packages"
	@echo "  test         the specs (BUSTED_ARGS=spec/x_spec.lua for one file)"
	@echo "  check        the specs with the module under AddressSanitizer and UBSan"
	@echo "  demo         examples/kernel_machine.lua (pictures with gnuplot)"
	@echo "  bench        the benchmarks against their competitors (B=name for one)"
	@echo "  install      the module into INST_LIBDIR and INST_LUADIR"
	@echo "  uninstall    remove what install copied"
	@echo "  clean        remove every build folder ($(BUILD), $(ASAN_DIR), $(FUZZ_DIR))"
	@echo "  help         this list"
	@echo "  fuzz         each libFuzzer harness for FUZZ_TIME seconds (default $(FUZZ_TIME))"
	@echo "  fuzz-build   build the harnesses (clang)"
	@echo "  fuzz-corpus  write their seed corpus"
	@echo "  misuse       the misuse fuzzer under ASan, N calls (default $(N)), MISUSE_SEED"
	@echo "  valgrind     the specs under valgrind memcheck"
	@echo "  lib          the C core as a static library, $(LIB)"
	@echo "  embed        build and run the host programs of examples/embed"
	@echo "  mpi          the optional MPI module, $(MPI_MOD) (mpicc, ScaLAPACK)"
	@echo "  test-mpi     the MPI specs under mpirun -np 2 and -np 3 (MPI_RANKS)"
