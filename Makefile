# chatd: build, run and test. See docs/development.md.
#
#   make            build/chatd and build/chatd-fcgi (optimised)
#   make asan       build/asan/chatd and build/asan/chatd-fcgi (ASan + UBSan, what the tests run)
#   make run        deps, build, dev services, migrate, run chatd in the foreground
#   make test       deps, asan build, fuzz-smoke, test services, migrate, pytest
#   make stop       stop the dev and test services
#   make migrate    apply sql/ to $DATABASE_URL (default: the dev services)
#   make check      build/chatd -t -c chatd.conf
#   make unit       the C unit tests, tests/unit/test_*.c, on the ASan build
#   make fuzz-build build/fuzz/fuzz_{proto,token,config,ws_frame,http} (clang + libFuzzer)
#   make fuzz       run each fuzz target FUZZ_SECONDS (60) seconds, in parallel
#   make fuzz-smoke the same for FUZZ_SMOKE_SECONDS (10) seconds (part of make test)
#   make bench      build/chatd and build/bench/loadgen, then bench/run.py:
#                   the scenarios of issue 5 (< ~10 min; bench/README.md)
#   make bench-quick the same in 1-2 minutes
#   make clean      rm -rf build assets/monitoring/vendor
#
# `all` and `asan` also build the dashboard's vendor files: `npm ci --prefix
# scripts/web` when scripts/web/package-lock.json changed (stamp in build/web/),
# then uPlot's built files copied into assets/monitoring/vendor/ (what chatd serves).
#
# `make run` (set dev) and `make test` (set test) use separate services and
# build directories, so both can run at the same time.

PKGS := libuv hiredis libpq jansson libjwt libconfig libcrypto
# chatd-fcgi only: Debian's libfcgi (its fcgi.pc gives -lfcgi).
FCGI_PKGS := fcgi

# Empty when a package is missing: the `pkgs-ok` check below then says so.
# `run` and `test` call scripts/deps.sh first and build in a sub-make, which
# evaluates these again after any installation.
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
FCGI_LIBS  := $(shell pkg-config --libs $(FCGI_PKGS) 2>/dev/null) -pthread

CC       ?= cc
WARNINGS := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -Isrc $(WARNINGS)
CFLAGS   := $(BASE_CFLAGS) -g -O2 $(PKG_CFLAGS)
LDFLAGS  :=
LDLIBS   := $(PKG_LIBS) -lhttp_parser -lm

SAN_FLAGS   := -fsanitize=address,undefined -fno-sanitize-recover=undefined
ASAN_CFLAGS := $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer $(SAN_FLAGS) $(PKG_CFLAGS)
ASAN_LDFLAGS := $(SAN_FLAGS)

SRCS      := $(wildcard src/*/*.c)
# Assembler sources: src/store/redis_lua.S embeds the .lua scripts (.incbin).
ASM_SRCS  := $(wildcard src/*/*.S)
# Two programs of the same modules: chatd (proc/main.c) and chatd-fcgi
# (proc/fcgi_main.c with the FastCGI transport, net/fcgi*.c, and libfcgi).
FCGI_SRCS   := src/proc/fcgi_main.c $(wildcard src/net/fcgi*.c)
CHATD_SRCS  := src/proc/main.c
COMMON_SRCS := $(filter-out $(FCGI_SRCS) $(CHATD_SRCS),$(SRCS))
objs_of = $(patsubst src/%.c,$(1)/%.o,$(2))
OBJS      := $(call objs_of,build/obj,$(COMMON_SRCS) $(CHATD_SRCS)) $(ASM_SRCS:src/%.S=build/obj/%.o)
ASAN_OBJS := $(call objs_of,build/asan/obj,$(COMMON_SRCS) $(CHATD_SRCS)) \
             $(ASM_SRCS:src/%.S=build/asan/obj/%.o)
FCGI_OBJS := $(call objs_of,build/obj,$(COMMON_SRCS) $(FCGI_SRCS)) $(ASM_SRCS:src/%.S=build/obj/%.o)
ASAN_FCGI_OBJS := $(call objs_of,build/asan/obj,$(COMMON_SRCS) $(FCGI_SRCS)) \
             $(ASM_SRCS:src/%.S=build/asan/obj/%.o)
BIN       := build/chatd
ASAN_BIN  := build/asan/chatd
FCGI_BIN  := build/chatd-fcgi
ASAN_FCGI_BIN := build/asan/chatd-fcgi

PYTHON   := /usr/bin/python3
PYTEST_ARGS ?=
# Leak detection is on: every chatd process a test stops checks its heap at
# exit, and the harness fails the test on any LeakSanitizer report.
TEST_ASAN_OPTIONS  := detect_leaks=1:abort_on_error=0
TEST_UBSAN_OPTIONS := print_stacktrace=1

# Fuzzing: libFuzzer targets in tests/fuzz/, built with clang into build/fuzz/
# (scripts/deps.sh fuzz installs clang and libFuzzer). Each target links only
# the src/ objects it needs, compiled again with the fuzzer's instrumentation.
FUZZ_CC      := clang
FUZZ_PKGS    := jansson libjwt libconfig
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) \
                -fsanitize=fuzzer-no-link $(shell pkg-config --cflags $(FUZZ_PKGS) 2>/dev/null)
FUZZ_LDFLAGS := -fsanitize=fuzzer $(FUZZ_SAN)
FUZZ_LIBS    := $(shell pkg-config --libs $(FUZZ_PKGS) 2>/dev/null)
FUZZ_TARGETS := fuzz_proto fuzz_token fuzz_config fuzz_ws_frame fuzz_http fuzz_cursor
FUZZ_BINS    := $(FUZZ_TARGETS:%=build/fuzz/%)
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 10
# libFuzzer options; inputs it finds go to build/fuzz/corpus-<target>,
# crashing inputs to build/fuzz/artifacts/<target>-crash-*.
FUZZ_ARGS    ?= -max_len=65536 -timeout=10 -print_final_stats=1
FUZZ_UBSAN_OPTIONS := print_stacktrace=1
fuzz_objs = $(1:%=build/fuzz/obj/%.o)

# Print one variable of a set's env file (written by scripts/services.sh).
env_of = $$(sed -n 's/^$(2)=//p' .run/$(1)/env)

.PHONY: all asan deps run test stop migrate clean check pkgs-ok web
.PHONY: fuzz-build fuzz fuzz-smoke fuzz-ok bench bench-quick

all: $(BIN) $(FCGI_BIN) web

asan: $(ASAN_BIN) $(ASAN_FCGI_BIN) web

# The dashboard's front-end packages (scripts/web/package.json, pinned by its
# lockfile): uPlot for the charts, playwright-core for tests/browser/.
WEB_DIR     := scripts/web
WEB_STAMP   := build/web/npm-ci.stamp
VENDOR_DIR  := assets/monitoring/vendor
VENDOR_FILES := $(VENDOR_DIR)/uPlot.iife.min.js $(VENDOR_DIR)/uPlot.min.css

web: $(VENDOR_FILES)

$(WEB_STAMP): $(WEB_DIR)/package-lock.json $(WEB_DIR)/package.json
	@command -v npm >/dev/null || { \
	  echo "npm missing: run scripts/deps.sh (Debian's npm package)" >&2; exit 1; }
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix $(WEB_DIR) --no-audit --no-fund
	@mkdir -p $(@D) && touch $@

$(VENDOR_DIR)/%: $(WEB_STAMP)
	@mkdir -p $(@D)
	cp $(WEB_DIR)/node_modules/uplot/dist/$* $@

$(BIN): $(OBJS)
	$(if $(SRCS),,$(error no sources in src/))
	$(CC) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(ASAN_BIN): $(ASAN_OBJS)
	$(if $(SRCS),,$(error no sources in src/))
	$(CC) $(LDFLAGS) $(ASAN_LDFLAGS) -o $@ $(ASAN_OBJS) $(LDLIBS)

$(FCGI_BIN): $(FCGI_OBJS)
	$(CC) $(LDFLAGS) -o $@ $(FCGI_OBJS) $(LDLIBS) $(FCGI_LIBS)

$(ASAN_FCGI_BIN): $(ASAN_FCGI_OBJS)
	$(CC) $(LDFLAGS) $(ASAN_LDFLAGS) -o $@ $(ASAN_FCGI_OBJS) $(LDLIBS) $(FCGI_LIBS)

build/obj/%.o: src/%.c | pkgs-ok
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

build/asan/obj/%.o: src/%.c | pkgs-ok
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ASAN_CFLAGS) -MMD -MP -c $< -o $@

# .incbin names files relative to the .S file's directory (-Wa,-I); -MMD
# sees only #include, so the scripts are named as prerequisites.
build/obj/%.o: src/%.S | pkgs-ok
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wa,-I$(<D) -MMD -MP -c $< -o $@

build/asan/obj/%.o: src/%.S | pkgs-ok
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ASAN_CFLAGS) -Wa,-I$(<D) -MMD -MP -c $< -o $@

build/obj/store/redis_lua.o build/asan/obj/store/redis_lua.o: $(wildcard src/store/*.lua)

pkgs-ok:
	@pkg-config --exists $(PKGS) $(FCGI_PKGS) || { \
	  pkg-config --print-errors --exists $(PKGS) $(FCGI_PKGS); \
	  echo "missing development packages: run scripts/deps.sh (or make deps)" >&2; \
	  exit 1; }

-include $(sort $(OBJS:.o=.d) $(ASAN_OBJS:.o=.d) $(FCGI_OBJS:.o=.d) $(ASAN_FCGI_OBJS:.o=.d))

# C unit tests: tests/unit/test_<module>.c #includes the .c under test (as
# H2O's t/00unit does), is built with ASan + UBSan into build/unit/ and links
# only the objects named on its line below. `make unit` runs them all and
# fails if any fails; each prints "N passed, N failed" last.
UNIT_BINS := $(patsubst tests/unit/%.c,build/unit/%,$(wildcard tests/unit/test_*.c))
UNIT_ASAN_OPTIONS := detect_leaks=1:abort_on_error=0
unit_objs = $(1:%=build/asan/obj/%.o)
# Libraries a test needs, set per test below (none by default).
UNIT_LIBS :=

build/unit/test_utf8:     $(call unit_objs,lib/util proc/log)
build/unit/test_ws_frame: $(call unit_objs,lib/utf8 lib/util proc/log)
build/unit/test_http_req: $(call unit_objs,lib/utf8 lib/util proc/log)
build/unit/test_http_req: UNIT_LIBS += -lhttp_parser
build/unit/test_outbuf:   $(call unit_objs,net/ws_frame lib/utf8 lib/util proc/log)
build/unit/test_cidr:     $(call unit_objs,lib/utf8 lib/util proc/log)
build/unit/test_proto:    $(call unit_objs,lib/utf8 lib/util proc/log)
build/unit/test_proto:    UNIT_LIBS += -ljansson
build/unit/test_history:  $(call unit_objs,net/outbuf net/ws_frame lib/utf8 lib/util proc/log)
build/unit/test_history:  UNIT_LIBS += -ljansson -lpq
build/unit/test_config:   $(call unit_objs,lib/cidr lib/utf8 lib/util proc/log)
build/unit/test_config:   UNIT_LIBS += -lconfig
build/unit/test_fcgi_req: $(call unit_objs,lib/utf8 lib/util proc/log)

$(UNIT_BINS): build/unit/%: tests/unit/%.c | pkgs-ok
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ASAN_CFLAGS) -MMD -MP -o $@ $< $(filter %.o,$^) $(ASAN_LDFLAGS) $(UNIT_LIBS)

.PHONY: unit
unit: $(UNIT_BINS)
	@rc=0; for t in $(UNIT_BINS); do \
	  ASAN_OPTIONS="$(UNIT_ASAN_OPTIONS)" UBSAN_OPTIONS="$(TEST_UBSAN_OPTIONS)" ./$$t \
	    || { rc=1; echo "unit: $$t FAILED" >&2; }; \
	done; exit $$rc

-include $(UNIT_BINS:=.d)

fuzz-build: $(FUZZ_BINS)

build/fuzz/fuzz_proto:  $(call fuzz_objs,proto/proto chat/msgextra lib/utf8 lib/util proc/log)
build/fuzz/fuzz_token:  $(call fuzz_objs,net/auth proc/config lib/cidr lib/utf8 lib/util proc/log)
build/fuzz/fuzz_config: $(call fuzz_objs,proc/config lib/cidr lib/utf8 lib/util proc/log)
build/fuzz/fuzz_ws_frame: $(call fuzz_objs,net/ws_frame lib/utf8 lib/util proc/log)
build/fuzz/fuzz_http: $(call fuzz_objs,net/http_req lib/utf8 lib/util proc/log)
build/fuzz/fuzz_http: FUZZ_LIBS += -lhttp_parser
build/fuzz/fuzz_cursor: $(call fuzz_objs,proto/cursor lib/utf8 lib/util proc/log)

$(FUZZ_BINS): build/fuzz/%: build/fuzz/harness/%.o
	$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $^ $(FUZZ_LIBS)

build/fuzz/obj/%.o: src/%.c | fuzz-ok
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

build/fuzz/harness/%.o: tests/fuzz/%.c | fuzz-ok
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

fuzz-ok:
	@command -v $(FUZZ_CC) >/dev/null && pkg-config --exists $(FUZZ_PKGS) || { \
	  pkg-config --print-errors --exists $(FUZZ_PKGS); \
	  echo "missing $(FUZZ_CC) or development packages: run scripts/deps.sh fuzz" >&2; \
	  exit 1; }

-include $(wildcard build/fuzz/obj/*/*.d build/fuzz/harness/*.d)

# Run every target for $(1) seconds, in parallel, on its seed corpus
# (tests/fuzz/corpus/<target>) plus build/fuzz/corpus-<target>; the output of
# each goes to build/fuzz/<target>.log. Fails when any target finds a crash,
# a leak, a timeout or a broken invariant (the log's end is printed then).
define fuzz_run
	@mkdir -p build/fuzz/artifacts $(FUZZ_TARGETS:%=build/fuzz/corpus-%)
	@pids=""; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz: $$t for $(1) s (log: build/fuzz/$$t.log)"; \
	  UBSAN_OPTIONS="$(FUZZ_UBSAN_OPTIONS)" build/fuzz/$$t $(FUZZ_ARGS) -max_total_time=$(1) \
	    $$(test -f tests/fuzz/$$t.dict && echo -dict=tests/fuzz/$$t.dict) \
	    -artifact_prefix=build/fuzz/artifacts/$$t- \
	    build/fuzz/corpus-$$t tests/fuzz/corpus/$$t >build/fuzz/$$t.log 2>&1 </dev/null & \
	  pids="$$pids $$!"; \
	done; \
	rc=0; set -- $(FUZZ_TARGETS); for p in $$pids; do \
	  if wait $$p; then \
	    echo "fuzz: $$1 ok: $$(grep -h '^stat::number_of_executed_units' build/fuzz/$$1.log | sed 's/.*: *//') runs"; \
	  else \
	    rc=1; tail -n 40 build/fuzz/$$1.log; \
	    echo "fuzz: $$1 FAILED (log: build/fuzz/$$1.log, input: build/fuzz/artifacts/$$1-*)" >&2; \
	  fi; shift; \
	done; exit $$rc
endef

fuzz: fuzz-build
	$(call fuzz_run,$(FUZZ_SECONDS))

fuzz-smoke: fuzz-build
	$(call fuzz_run,$(FUZZ_SMOKE_SECONDS))

deps:
	scripts/deps.sh

run:
	@scripts/deps.sh
	@$(MAKE) --no-print-directory all
	@scripts/services.sh start dev
	@scripts/migrate.sh "$(call env_of,dev,DATABASE_URL)"
	@echo "make run: $(BIN) -c chatd.conf (REDIS_URL/DATABASE_URL from .run/dev/env)"
	@set -a && . ./.run/dev/env && set +a && exec ./$(BIN) -c chatd.conf

# The test services stay up afterwards so that reruns are fast (make stop).
# pytest's exit status is the recipe's, so a failing test fails make.
test:
	@scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory asan all
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory -f bench/Makefile loadgen
	@$(MAKE) --no-print-directory fuzz-smoke
	@scripts/services.sh start test
	@scripts/migrate.sh "$(call env_of,test,DATABASE_URL)"
	@set -a && . ./.run/test/env && set +a && \
	  export CHATD_BIN="$(CURDIR)/$(ASAN_BIN)" \
	         ASAN_OPTIONS="$(TEST_ASAN_OPTIONS)" UBSAN_OPTIONS="$(TEST_UBSAN_OPTIONS)" && \
	  echo "make test: $(PYTHON) -m pytest tests/ -q -rfE $(PYTEST_ARGS)" && \
	  exec $(PYTHON) -m pytest tests/ -q -rfE $(PYTEST_ARGS)

stop:
	@rc=0; \
	scripts/services.sh stop dev || rc=1; \
	scripts/services.sh stop test || rc=1; \
	exit $$rc

migrate:
	scripts/migrate.sh $${DATABASE_URL:-}

check: $(BIN)
	./$(BIN) -t -c chatd.conf

# The benchmark lives in bench/ (its own Makefile); it starts the `bench`
# services (Redis 6392, PostgreSQL 5442) itself.
bench: all
	@$(MAKE) --no-print-directory -f bench/Makefile run

bench-quick: all
	@$(MAKE) --no-print-directory -f bench/Makefile quick

clean:
	rm -rf build $(VENDOR_DIR)
