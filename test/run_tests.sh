#!/usr/bin/env bash
# Run all event_log tests (pg_regress, isolation, TAP) against a throwaway
# cluster. The extension must already be installed (make install).
#
# Inputs (environment; REGRESS/ISOLATION fall back to the Makefile if unset):
#   REGRESS        pg_regress tests:  sql/NAME.sql, expected/NAME.out
#   ISOLATION      isolation specs:   test/specs/NAME.spec, test/expected/NAME.out
#   REGRESS_OPTS, ISOLATION_OPTS   extra options for pg_regress / pg_isolation_regress
#   PROVE_FLAGS    extra prove options (e.g. -v); TAP tests are test/t/*.pl
#   KEEP_CLUSTER=1 keep the temp dir (logs, results) afterwards
#   EVENT_LOG_SANITIZE=1  the installed extension is a SANITIZE=1 build: run
#                  every server with the sanitizer runtimes (test/cluster.sh)
#                  and fail if any sanitizer report was written, even when
#                  every test passed (`make test-sanitize` sets this)
# All three suites always run; exits 1 if any of them failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PGXS_DIR=/usr/lib/postgresql/15/lib/pgxs
PG_REGRESS=$PGXS_DIR/src/test/regress/pg_regress
PG_ISOLATION_REGRESS=$PGXS_DIR/src/test/isolation/pg_isolation_regress
TAP_PERL=$PGXS_DIR/src/test/perl

# Value of a Makefile variable (empty if make or the Makefile can't say).
from_makefile() {
    [[ -f $ROOT/Makefile ]] || return 0
    # shellcheck disable=SC2016  # $($*) is for make, not bash
    make -s --no-print-directory -C "$ROOT" -f Makefile -f - "print-$1" \
        <<<'print-%: ; @echo $($*)' 2>/dev/null || true
}
[[ -n ${REGRESS+set} ]] || REGRESS=$(from_makefile REGRESS)
[[ -n ${ISOLATION+set} ]] || ISOLATION=$(from_makefile ISOLATION)
read -ra regress_tests <<<"$REGRESS"
read -ra isolation_tests <<<"$ISOLATION"
read -ra regress_opts <<<"${REGRESS_OPTS:-}"
read -ra isolation_opts <<<"${ISOLATION_OPTS:-}"
read -ra prove_flags <<<"${PROVE_FLAGS:-}"
shopt -s nullglob
tap_tests=("$ROOT"/test/t/*.pl)
shopt -u nullglob

# The installed build must match the mode: an instrumented event_log.so
# cannot load without the sanitizer runtimes, and a plain one would make a
# sanitizer run check nothing.
sanitize=${EVENT_LOG_SANITIZE:-0}
installed=$(dirname "$PGXS_DIR")/event_log.so
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

# Copy the test inputs where the postgres user can read them.
mkdir -p "$SRC" "$TMP/regress" "$TMP/isolation" "$TMP/tap"
for d in sql expected input output test; do
    [[ -d $ROOT/$d ]] && cp -r "$ROOT/$d" "$SRC/"
done
chown -R postgres: "$SRC" "$TMP/regress" "$TMP/isolation" "$TMP/tap"

# Run a command as postgres from inside the copy.
in_copy() { (cd "$SRC/$1" && shift && runuser -u postgres -- "$@"); }

common_opts=(--bindir="$PG_BINDIR" --host="$PGHOST" --port="$PGPORT" --user=postgres)

run_regress() {
    in_copy . "$PG_REGRESS" --inputdir=. --outputdir="$TMP/regress" \
        "${common_opts[@]}" --dbname=contrib_regression \
        "${regress_opts[@]}" "${regress_tests[@]}"
}

run_isolation() {
    in_copy . "$PG_ISOLATION_REGRESS" --inputdir=test --outputdir="$TMP/isolation" \
        "${common_opts[@]}" --dbname=isolation_regression \
        "${isolation_opts[@]}" "${isolation_tests[@]}"
}

# TAP tests start their own clusters (PostgreSQL::Test::Cluster); they run
# from the copy of test/, with logs under $TMP/tap/tmp_check/log. TMPDIR
# keeps their socket dirs inside $TMP too, so an interrupted run leaves none.
# In sanitizer mode the pg_ctl wrapper stays first in PATH: the servers the
# tests start must get the sanitizer runtimes too.
tap_path=$PG_BINDIR:$PATH
[[ $sanitize == 1 ]] && tap_path=$(dirname "$EVENT_LOG_PG_CTL"):$tap_path
run_tap() {
    in_copy test env PATH="$tap_path" PG_REGRESS="$PG_REGRESS" \
        TESTDIR="$TMP/tap" TMPDIR="$TMP/tap" PGXS="$PGXS_DIR/src/makefiles/pgxs.mk" \
        EVENT_LOG_HAS_OPL="$EVENT_LOG_HAS_OPL" EVENT_LOG_SRC="$SRC" \
        prove -I "$TAP_PERL" -I . "${prove_flags[@]}" "${tap_tests[@]#"$ROOT"/test/}"
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
        # each failed script in its summary as "t/NAME.pl (Wstat: ...".
        if [[ $name == tap ]]; then
            ok=$((count - $(grep -c '^t/.*\.pl (Wstat' "$TMP/$name.out" || true)))
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

# Show what went wrong, suite by suite.
for name in "${failed[@]}"; do
    echo
    echo "==================== $name FAILED ===================="
    if [[ $name == sanitizer ]]; then
        echo "${#reports[@]} file(s) with AddressSanitizer or UBSan reports:"
        for r in "${reports[@]}"; do
            echo "---- $r"
            if [[ $r == "$EVENT_LOG_SANITIZER_DIR"/* ]]; then
                cat "$r"
            else  # a server log: only the sanitizer's lines
                grep -E -A 30 'AddressSanitizer|ASan runtime|runtime error:' "$r" | head -n 200
            fi
        done
    elif [[ $name == tap ]]; then
        # prove's summary names the failed scripts; show each one's log tail.
        scripts=$(sed -n 's|^\(t/[^ ]*\.pl\) (Wstat.*|\1|p' "$TMP/tap.out")
        [[ -n $scripts ]] || tail -n 40 "$TMP/tap.out"
        for t in $scripts; do
            log=$TMP/tap/tmp_check/log/regress_log_$(basename "$t" .pl)
            echo "---- tail of $log"
            tail -n 60 "$log" 2>/dev/null || echo "(no log)"
        done
    elif [[ -f $TMP/$name/regression.diffs ]]; then
        cat "$TMP/$name/regression.diffs"
    else
        echo "(no regression.diffs; see output above)"
    fi
done

echo
echo "run_tests: passed: ${passed[*]:-none}; failed: ${failed[*]:-none}; skipped: ${skipped[*]:-none}"
# One line per test file (regress test, isolation spec, TAP script).
echo "tests: $npass passed, $nfail failed"
((${#failed[@]} == 0))
