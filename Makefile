# event_log: PGXS build, plus the README's two commands (demo, test) and bench.

EXTENSION  = event_log
MODULE_big = event_log
# src/ by layer, bottom up (docs/design/architecture.md)
OBJS       = src/catalog.o src/key.o src/wake.o \
             src/registry.o \
             src/immutable.o src/schema_compile.o src/schema_validate.o src/schema_compat.o src/schema.o src/schema_registry.o src/schema_upcast.o src/personal.o src/personal_read.o src/personal_shred.o src/erasure.o \
             src/event.o src/commit.o src/shard_end.o src/append.o src/append_batch.o src/read.o src/decoder.o \
             src/stream.o src/segment.o src/archive.o src/retention.o src/retention_segment.o src/conversation.o \
             src/projection_setplan.o src/projection_handler.o src/projection_inline.o \
             src/projection_build.o src/projection_async.o src/projection_deadletter.o src/projection_progress.o \
             src/projection_upcast.o src/projection.o \
             src/consumer_group.o src/consumer_member.o src/consumer_deadletter.o src/consumer_retention.o src/consumer.o \
             src/worker.o \
             src/event_log.o
DATA       = sql/event_log--0.1.sql sql/event_log--0.1--0.2.sql sql/event_log--0.2--0.3.sql sql/event_log--0.3--0.4.sql sql/event_log--0.4--0.5.sql sql/event_log--0.5--0.6.sql sql/event_log--0.6--0.7.sql sql/event_log--0.7--0.8.sql
PGFILEDESC = "event_log - event streams with commit-order offsets"

# pg_regress suites (sql/NAME.sql, expected/NAME.out)
REGRESS    = streams append append_calls append_events read_by_time read_all conversations immutability \
             bad_input privileges hostile_streams cdc projections hostile_projections \
             projection_builds consumers hostile_consumers commit_polled type_filters \
             schemas commit_modes dead_letters dead_letter_builds upcast_reads erasure retention archive \
             retention_readers archive_builds segments segments_attack
# isolation specs (test/specs/NAME.spec, test/expected/NAME.out): pg_regress
# reads INPUTDIR/specs and INPUTDIR/expected, and the last --inputdir wins
# over the one PGXS passes (docs/testing.md says why they live in test/)
ISOLATION_OPTS = --inputdir=test
ISOLATION  = commit_order shard_lock_spin append_personal_lock grouped_commit grouped_mode_switch grouped_serializable grouped_deadlock append_events read_all_resume rollback repeatable_read prepared shards_independent version_cache \
             projection_async projection_rebuild projection_inline_rr projection_drop_race \
             consumer_members consumer_settle_stale consumer_member_race consumer_commit consumer_poll_race consumer_group_drop consumer_member_commit \
             stream_drop_race schema_register dead_letter_retry nack_retry upcast_reads_cache erase_inflight retention_race archive_race segment_roll segment_fk_race
# The regress and isolation tests run a second time against the same cluster
# restarted with event_log in shared_preload_libraries, where appends take a
# shard's end from shared memory (docs/design/offsets.md); except these, which
# make async projections, retention policies or segmented streams and drive
# them by hand: the background worker that preloading starts would race them
# (docs/testing.md)
PRELOADED_SKIP = streams projections hostile_projections dead_letters dead_letter_builds upcast_reads \
             retention retention_readers archive archive_builds segments segments_attack \
             projection_async projection_drop_race dead_letter_retry retention_race archive_race segment_roll segment_fk_race
# TAP tests (test/t/NNN_name.pl), which share test/perl/EventLogTest.pm;
# PROVE_FLAGS gets that directory below, after PGXS has set its default
TAP_TESTS  = 1
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= $(shell command -v pg_config >/dev/null 2>&1 && echo pg_config || echo /usr/lib/postgresql/15/bin/pg_config)

# Our warnings on top of PGXS's; WERROR=1 (set by `make test`) makes them fatal.
PG_CFLAGS  = -Wall -Wextra -Wno-unused-parameter
ifeq ($(WERROR),1)
PG_CFLAGS += -Werror
endif

# SANITIZE=1 builds with AddressSanitizer and UBSan (whose checks trap, for
# ASan to report); only a server started with libasan preloaded can load
# that build, as `make test-sanitize` does (docs/security.md, "Sanitizer
# builds"). The stamp file records the kind of build, so switching SANITIZE
# rebuilds every object.
SANITIZE_CFLAGS = -fsanitize=address,undefined -fsanitize-undefined-trap-on-error \
                  -fno-omit-frame-pointer
ifeq ($(SANITIZE),1)
PG_CFLAGS += $(SANITIZE_CFLAGS)
BUILD_KIND = sanitize
else
BUILD_KIND = plain
endif
BUILD_STAMP = src/.build-kind
EXTRA_CLEAN = $(BUILD_STAMP)

# No LLVM bitcode: JIT inlining of these functions is not worth a clang dependency.
override with_llvm = no

# Rebuild the objects whose headers changed (PGXS tracks no header by
# default): gcc writes each object's dependencies into .deps/.
override autodepend = yes

# The Kafka bridge (docs/kafka.md): a client program beside the extension,
# linking libpq and librdkafka and no backend code. `make` builds it, `make
# install` puts it in pg_config --bindir. The mock Kafka cluster the TAP
# tests and the bench run it against (test/kafka/) is built for them only.
BRIDGE       = src/bridge/event_log_kafka
BRIDGE_OBJS  = src/bridge/event_json.o src/bridge/positions.o src/bridge/pgstream.o \
               src/bridge/kafka.o src/bridge/main.o
KAFKA_MOCK   = test/kafka/el_kafka_mock
BRIDGE_CFLAGS = -O2 -g -Wall -Wextra -Wno-unused-parameter
ifeq ($(WERROR),1)
BRIDGE_CFLAGS += -Werror
endif
# (No SANITIZE flags: the sanitizer runs watch the server, and the bridge's
# deliberate leaks at exit would read as LeakSanitizer reports.)

# PGXS is only there once postgresql-server-dev-15 is installed; `deps` does that.
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
endif

# After the include, which sets PROVE_FLAGS empty; `override` keeps the
# helper directory when PROVE_FLAGS is given on the command line (-v ...).
override PROVE_FLAGS += -I test/perl

.PHONY: deps build demo test test-sanitize bench jsonschema-suite install-bridge uninstall-bridge kafka-mock no-bridge \
        installcheck-regress installcheck-isolation installcheck-tap

# The bridge's rules (static pattern rules win over PGXS's %.o: %.c). The
# extension builds without librdkafka; the bridge then is skipped, loudly
# (`make test` and `make demo` install librdkafka-dev through test/deps.sh).
HAVE_RDKAFKA := $(shell echo '\#include <librdkafka/rdkafka.h>' | $(CC) -E -x c - >/dev/null 2>&1 && echo yes)
ifneq ($(PGXS),)
ifeq ($(HAVE_RDKAFKA),yes)
all: $(BRIDGE)
install: install-bridge
else
all: no-bridge
install: no-bridge
endif
uninstall: uninstall-bridge

no-bridge:
	@echo "WARNING: librdkafka-dev is not installed: event_log_kafka (the Kafka bridge) is not built" >&2

EXTRA_CLEAN += $(BRIDGE) $(BRIDGE_OBJS) $(KAFKA_MOCK)

$(BRIDGE_OBJS): src/bridge/%.o: src/bridge/%.c src/bridge/bridge.h
	$(CC) $(BRIDGE_CFLAGS) -I$(shell $(PG_CONFIG) --includedir) -c -o $@ $<

$(BRIDGE): $(BRIDGE_OBJS)
	$(CC) $(BRIDGE_CFLAGS) -o $@ $(BRIDGE_OBJS) -L$(shell $(PG_CONFIG) --libdir) -lpq -lrdkafka

install-bridge: $(BRIDGE)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(BRIDGE) '$(DESTDIR)$(bindir)/'

uninstall-bridge:
	rm -f '$(DESTDIR)$(bindir)/event_log_kafka'

$(KAFKA_MOCK): $(KAFKA_MOCK).c
	$(CC) $(BRIDGE_CFLAGS) -o $@ $< -lrdkafka

kafka-mock: $(KAFKA_MOCK)
installcheck-tap: $(KAFKA_MOCK)
endif

ifneq ($(PGXS),)
$(shell echo $(BUILD_KIND) | cmp -s - $(BUILD_STAMP) || echo $(BUILD_KIND) > $(BUILD_STAMP))
$(OBJS): $(BUILD_STAMP)
endif

deps:
	@PG_CONFIG="$(PG_CONFIG)" bash test/deps.sh

build: deps
	$(MAKE) WERROR=$(WERROR) all
	$(MAKE) install

demo:
	@$(MAKE) --no-print-directory build
	@bash test/demo.sh

# `make installcheck` (PGXS) runs all three suites against the server that
# PGHOST/PGPORT name, with the extension installed in it. These run one
# suite each, with exactly the commands and options `installcheck` uses
# (PGXS's own); test/run_tests.sh calls them one by one so that each suite
# runs even when another failed, and its result is known.
#   make installcheck-regress REGRESS=cdc
#   make installcheck-isolation ISOLATION=commit_order
#   make installcheck-tap PROVE_TESTS=test/t/002_cdc_recvlogical.pl
ifneq ($(PGXS),)
installcheck-regress:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)

installcheck-isolation:
	$(pg_isolation_regress_installcheck) $(ISOLATION_OPTS) $(ISOLATION)

installcheck-tap:
	$(prove_installcheck)
endif

# Build with WERROR=1, install, and run every suite against a throwaway
# cluster (test/run_tests.sh); REGRESS=, ISOLATION=, PROVE_TESTS= pick tests.
test:
	@$(MAKE) --no-print-directory build WERROR=1
	@PG_CONFIG="$(PG_CONFIG)" REGRESS="$(REGRESS)" ISOLATION="$(ISOLATION)" \
		PROVE_TESTS="$(PROVE_TESTS)" bash test/run_tests.sh

# The whole suite against a SANITIZE=1 build; fails on any sanitizer report.
# Afterwards the plain build is installed again, whatever the outcome.
test-sanitize:
	@status=0; \
	$(MAKE) --no-print-directory build WERROR=1 SANITIZE=1 && \
	PG_CONFIG="$(PG_CONFIG)" REGRESS="$(REGRESS)" ISOLATION="$(ISOLATION)" \
		PROVE_TESTS="$(PROVE_TESTS)" EVENT_LOG_SANITIZE=1 \
		bash test/run_tests.sh || status=$$?; \
	echo "test-sanitize: reinstalling the plain build"; \
	$(MAKE) --no-print-directory build SANITIZE= >/dev/null || status=1; \
	exit $$status

# (also installs valgrind, for the instruction counts of 11_append_instructions.sh)
bench:
	@EVENT_LOG_BENCH_DEPS=1 $(MAKE) --no-print-directory build
	@bash test/bench/run.sh

# The official JSON Schema test suite against our validator, on a
# throwaway cluster: pass rates per keyword (docs/schemas.md). Not part of
# `make test`; JSON_SCHEMA_SUITE names the suite's git directory.
jsonschema-suite:
	@$(MAKE) --no-print-directory build
	@bash test/cluster.sh python3 test/jsonschema/run_suite.py
