#!/usr/bin/env bash
# Run all event_log tests (pg_regress, isolation, TAP) against a throwaway
# cluster, through PGXS: this script starts the cluster (test/cluster.sh),
# then runs `make installcheck-regress`, `installcheck-isolation` and
# `installcheck-tap` (together: `make installcheck`) against it as the
# postgres user. The extension must already be installed (make install).
#
# Inputs (environment; REGRESS/ISOLATION/PROVE_TESTS fall back to the
# Makefile if unset):
#   PG_CONFIG      the pg_config of the PostgreSQL to test with (default:
#                  pg_config on PATH); every path is derived from it
#   REGRESS        pg_regress tests:  sql/NAME.sql, expected/NAME.out
#   ISOLATION      isolation specs:   test/specs/NAME.spec, test/expected/NAME.out
#   PROVE_TESTS    TAP scripts, relative to the top directory (test/t/*.pl)
#   EXTRA_REGRESS_OPTS  extra options for pg_regress and
#                  pg_isolation_regress (PGXS's variable)
#   PROVE_FLAGS    extra prove options (e.g. -v)
#   KEEP_CLUSTER=1 keep the temp dir (logs, results) afterwards
#   EVENT_LOG_SANITIZE=1  the installed extension is a SANITIZE=1 build: run
#                  every server with the sanitizer runtimes (test/cluster.sh;
#                  TAP nodes through test/perl/EventLogTest.pm) and fail if
#                  any sanitizer report was written, even when every test
#                  passed (`make test-sanitize` sets this)
# All suites always run: regress, isolation, TAP, then regress and isolation
# again with event_log in shared_preload_libraries ("preloaded"; not the tests
# in PRELOADED_SKIP, from the Makefile unless set); exits 1 if any failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_CONFIG=${PG_CONFIG:-pg_config}
if ! PG_BINDIR=$("$PG_CONFIG" --bindir) || ! PKGLIBDIR=$("$PG_CONFIG" --pkglibdir); then
    echo "run_tests: $PG_CONFIG does not work; set PG_CONFIG (make test PG_CONFIG=...)" >&2
    exit 1
fi
export PG_CONFIG PG_BINDIR  # test/cluster.sh starts the cluster with PG_BINDIR

# Value of a Makefile variable (empty if make or the Makefile can't say).
from_makefile() {
    [[ -f $ROOT/Makefile ]] || return 0
    # shellcheck disable=SC2016  # $($*) is for make, not bash
    make -s --no-print-directory -C "$ROOT" -f Makefile -f - "print-$1" \
        PG_CONFIG="$PG_CONFIG" <<<'print-%: ; @echo $($*)' 2>/dev/null || true
}
[[ -n ${REGRESS+set} ]] || REGRESS=$(from_makefile REGRESS)
[[ -n ${ISOLATION+set} ]] || ISOLATION=$(from_makefile ISOLATION)
[[ -n ${PROVE_TESTS+set} ]] || PROVE_TESTS=$(from_makefile PROVE_TESTS)
[[ -n ${PRELOADED_SKIP+set} ]] || PRELOADED_SKIP=$(from_makefile PRELOADED_SKIP)
read -ra regress_tests <<<"$REGRESS"
read -ra isolation_tests <<<"$ISOLATION"
# The same regress and isolation tests, but for PRELOADED_SKIP, run again
# with the server preloading event_log (suite "preloaded", last).
preloaded_regress=() preloaded_isolation=()
for t in "${regress_tests[@]}"; do
    [[ " $PRELOADED_SKIP " == *" $t "* ]] || preloaded_regress+=("$t")
done
for t in "${isolation_tests[@]}"; do
    [[ " $PRELOADED_SKIP " == *" $t "* ]] || preloaded_isolation+=("$t")
done
# The TAP scripts, as prove will get them (globs expanded here, to count).
tap_tests=()
read -ra tap_patterns <<<"$PROVE_TESTS"
shopt -s nullglob
for p in "${tap_patterns[@]}"; do
    # shellcheck disable=SC2206  # the pattern is meant to be expanded
    matches=("$ROOT"/$p)
    tap_tests+=("${matches[@]#"$ROOT"/}")
done
shopt -u nullglob

# The installed build must match the mode: an instrumented event_log.so
# cannot load without the sanitizer runtimes, and a plain one would make a
# sanitizer run check nothing.
sanitize=${EVENT_LOG_SANITIZE:-0}
installed=$PKGLIBDIR/event_log.so
if grep -q __asan_init "$installed" 2>/dev/null; then
    if [[ $sanitize != 1 ]]; then
        echo "run_tests: $installed is a SANITIZE=1 build; reinstall with make build," >&2
        echo "run_tests: or run it with EVENT_LOG_SANITIZE=1 (make test-sanitize)" >&2
        exit 1
    fi
elif [[ $sanitize == 1 ]]; then
    echo "run_tests: EVENT_LOG_SANITIZE=1 but $installed is not a SANITIZE=1 build" >&2
    exit 1
fi

source "$ROOT/test/cluster.sh"
trap cluster_stop EXIT
trap 'exit 130' INT TERM
cluster_start
TMP=$EVENT_LOG_TMP
SRC=$TMP/src

# A copy of the tree the postgres user owns: PGXS runs the suites in it and
# writes their results there (results/ and regression.diffs, output_iso/,
# tmp_check/ for TAP). Build products are not needed: installcheck builds
# nothing. docs/ is there for test/t/015_client_examples.pl, which checks
# that the docs show test/clients/ as it is.
mkdir -p "$SRC" "$TMP/tmp"
for f in Makefile event_log.control sql expected src test docs; do
    [[ -e $ROOT/$f ]] && cp -r "$ROOT/$f" "$SRC/"
done
chown -R postgres: "$SRC" "$TMP/tmp"

# make TARGET VAR=VALUE... in the copy, as postgres, against the cluster.
# The TAP tests start their own servers (PostgreSQL::Test::Cluster); TMPDIR
# keeps their socket dirs inside $TMP, so an interrupted run leaves none. In
# sanitizer mode EVENT_LOG_SANITIZE and EVENT_LOG_PG_CTL (the wrapper) reach
# test/perl/EventLogTest.pm, which starts those servers with the runtimes.
suite_make() {
    (cd "$SRC" && runuser -u postgres -- env \
        PATH="$PATH" PGHOST="$PGHOST" PGPORT="$PGPORT" PGUSER="$PGUSER" \
        TMPDIR="$TMP/tmp" EVENT_LOG_SANITIZE="$sanitize" \
        EVENT_LOG_PG_CTL="$EVENT_LOG_PG_CTL" \
        make --no-print-directory PG_CONFIG="$PG_CONFIG" "$@")
}

# The lists go on make's command line, where they override the Makefile's.
# EXTRA_REGRESS_OPTS reaches make through the environment; PROVE_FLAGS must
# be on the command line (PGXS sets it empty), where the Makefile appends
# -I test/perl to it.
run_regress() {
    suite_make installcheck-regress REGRESS="${regress_tests[*]}"
}
run_isolation() {
    suite_make installcheck-isolation ISOLATION="${isolation_tests[*]}"
}
run_preloaded() {
    echo "shared_preload_libraries = 'event_log'" >>"$EVENT_LOG_DATA/postgresql.conf"
    cluster_restart || return 1
    local ok=0 preload
    preload=$(psql -X -At -d postgres -c 'SHOW shared_preload_libraries') || return 1
    if [[ $preload != event_log ]]; then
        echo "run_tests: the restarted server preloads '$preload', not event_log" >&2
        return 1
    fi
    # Results go apart from the first pass's, which a failure report shows.
    if ((${#preloaded_regress[@]})); then
        suite_make installcheck-regress REGRESS="${preloaded_regress[*]}" \
            EXTRA_REGRESS_OPTS="${EXTRA_REGRESS_OPTS:-} --outputdir=preloaded_regress" || ok=1
    fi
    if ((${#preloaded_isolation[@]})); then
        suite_make installcheck-isolation ISOLATION="${preloaded_isolation[*]}" \
            EXTRA_REGRESS_OPTS="${EXTRA_REGRESS_OPTS:-} --outputdir=preloaded_iso" || ok=1
    fi
    return $ok
}
run_tap() {
    suite_make installcheck-tap PROVE_TESTS="${tap_tests[*]}" PROVE_FLAGS="${PROVE_FLAGS:-}"
}

passed=() failed=() skipped=()
npass=0 nfail=0
run_suite() {  # NAME COUNT: run run_NAME unless it has no tests
    local name=$1 count=$2 ok
    if ((count == 0)); then
        echo "== $name: no tests, skipped"
        skipped+=("$name")
        return
    fi
    echo "== $name: $count test(s)"
    if "run_$name" 2>&1 | tee "$TMP/$name.out"; then
        passed+=("$name")
        ok=$count
    else
        failed+=("$name")
        # Count passed tests: pg_regress prints "NAME ... ok", prove lists
        # each failed script in its summary as "test/t/NAME.pl (Wstat: ...".
        if [[ $name == tap ]]; then
            ok=$((count - $(grep -cE '^[^ ]+\.pl +\(Wstat' "$TMP/$name.out" || true)))
            ((ok < count)) || ok=0
        else
            ok=$(grep -cE '\.\.\. +ok( |$)' "$TMP/$name.out" || true)
        fi
    fi
    npass=$((npass + ok)) nfail=$((nfail + count - ok))
}

run_suite regress ${#regress_tests[@]}
run_suite isolation ${#isolation_tests[@]}
run_suite tap ${#tap_tests[@]}
run_suite preloaded $((${#preloaded_regress[@]} + ${#preloaded_isolation[@]}))

# Sanitizer mode: a report fails the run even if every test passed. Stop
# the server first: its processes may still write one while exiting.
if [[ $sanitize == 1 ]]; then
    cluster_stop_server
    mapfile -t reports < <(cluster_sanitizer_reports)
    if ((${#reports[@]})); then
        failed+=(sanitizer)
    else
        echo "== sanitizer: no AddressSanitizer or UBSan reports"
    fi
fi

# Show what went wrong, suite by suite. Where PGXS leaves the results:
# regress in the top directory, isolation in output_iso/, TAP logs in
# tmp_check/log/.
for name in "${failed[@]}"; do
    echo
    echo "==================== $name FAILED ===================="
    case $name in
        sanitizer)
            echo "${#reports[@]} file(s) with AddressSanitizer or UBSan reports:"
            for r in "${reports[@]}"; do
                echo "---- $r"
                if [[ $r == "$EVENT_LOG_SANITIZER_DIR"/* ]]; then
                    cat "$r"
                else  # a server log: only the sanitizer's lines
                    grep -E -A 30 'AddressSanitizer|ASan runtime|runtime error:' "$r" | head -n 200
                fi
            done
            ;;
        tap)
            # prove's summary names the failed scripts; show each one's log tail.
            scripts=$(sed -n 's|^\([^ ]*\.pl\) *(Wstat.*|\1|p' "$TMP/tap.out")
            [[ -n $scripts ]] || tail -n 40 "$TMP/tap.out"
            for t in $scripts; do
                log=$SRC/tmp_check/log/regress_log_$(basename "$t" .pl)
                echo "---- tail of $log"
                tail -n 60 "$log" 2>/dev/null || echo "(no log)"
            done
            ;;
        *)
            case $name in
                isolation) diffs=("$SRC/output_iso/regression.diffs") ;;
                preloaded) diffs=("$SRC"/preloaded_{regress,iso}/regression.diffs) ;;
                *) diffs=("$SRC/regression.diffs") ;;
            esac
            shown=0
            for d in "${diffs[@]}"; do
                [[ -f $d ]] || continue
                echo "---- $d"
                cat "$d"
                shown=1
            done
            ((shown)) || echo "(no regression.diffs; see output above)"
            ;;
    esac
done

echo
echo "run_tests: passed: ${passed[*]:-none}; failed: ${failed[*]:-none}; skipped: ${skipped[*]:-none}"
# One line per test file (regress test, isolation spec, TAP script).
echo "tests: $npass passed, $nfail failed"
((${#failed[@]} == 0))
