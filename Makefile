# chatd: build, run and test. See docs/development.md.
#
#   make            build/chatd (optimised)
#   make asan       build/asan/chatd (ASan + UBSan, what the tests run)
#   make run        deps, build, dev services, migrate, run chatd in the foreground
#   make test       deps, asan build, test services, migrate, pytest
#   make stop       stop the dev and test services
#   make migrate    apply sql/ to $DATABASE_URL (default: the dev services)
#   make check      build/chatd -t -c chatd.conf
#   make clean      rm -rf build
#
# `make run` (set dev) and `make test` (set test) use separate services and
# build directories, so both can run at the same time.

# fcgi joins when the FastCGI transport lands.
PKGS := libwebsockets libuv hiredis libpq jansson libjwt libconfig

# Empty when a package is missing: the `pkgs-ok` check below then says so.
# `run` and `test` call scripts/deps.sh first and build in a sub-make, which
# evaluates these again after any installation.
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CC       ?= cc
WARNINGS := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARNINGS)
CFLAGS   := $(BASE_CFLAGS) -g -O2 $(PKG_CFLAGS)
LDFLAGS  :=
LDLIBS   := $(PKG_LIBS) -lm

SAN_FLAGS   := -fsanitize=address,undefined -fno-sanitize-recover=undefined
ASAN_CFLAGS := $(BASE_CFLAGS) -O1 -g -fno-omit-frame-pointer $(SAN_FLAGS) $(PKG_CFLAGS)
ASAN_LDFLAGS := $(SAN_FLAGS)

SRCS      := $(filter-out %_test.c,$(wildcard src/*.c))
OBJS      := $(SRCS:src/%.c=build/obj/%.o)
ASAN_OBJS := $(SRCS:src/%.c=build/asan/obj/%.o)
BIN       := build/chatd
ASAN_BIN  := build/asan/chatd

PYTHON   := /usr/bin/python3
PYTEST_ARGS ?=
# Leak detection stays off for now: libwebsockets and libuv leave memory
# behind on their exit paths (plugins, loop internals) that would fail every
# test on shutdown. Turn it on once chatd's own teardown is clean.
TEST_ASAN_OPTIONS  := detect_leaks=0:abort_on_error=0
TEST_UBSAN_OPTIONS := print_stacktrace=1

# Print one variable of a set's env file (written by scripts/services.sh).
env_of = $$(sed -n 's/^$(2)=//p' .run/$(1)/env)

.PHONY: all asan deps run test stop migrate clean check pkgs-ok

all: $(BIN)

asan: $(ASAN_BIN)

$(BIN): $(OBJS)
	$(if $(SRCS),,$(error no sources in src/))
	$(CC) $(LDFLAGS) -o $@ $(OBJS) $(LDLIBS)

$(ASAN_BIN): $(ASAN_OBJS)
	$(if $(SRCS),,$(error no sources in src/))
	$(CC) $(LDFLAGS) $(ASAN_LDFLAGS) -o $@ $(ASAN_OBJS) $(LDLIBS)

build/obj/%.o: src/%.c | pkgs-ok
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

build/asan/obj/%.o: src/%.c | pkgs-ok
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(ASAN_CFLAGS) -MMD -MP -c $< -o $@

pkgs-ok:
	@pkg-config --exists $(PKGS) || { \
	  pkg-config --print-errors --exists $(PKGS); \
	  echo "missing development packages: run scripts/deps.sh (or make deps)" >&2; \
	  exit 1; }

-include $(OBJS:.o=.d) $(ASAN_OBJS:.o=.d)

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
	@scripts/deps.sh
	@$(MAKE) --no-print-directory asan
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

clean:
	rm -rf build
