#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for event_log tests, demos and benchmarks.
#
# As a library (callers set their own trap, before starting, so the cluster
# is always stopped and its temp dir removed, even if the start fails):
#     source test/cluster.sh
#     trap cluster_stop EXIT; trap 'exit 130' INT TERM
#     cluster_start ["guc = value" ...]
#     ... psql, pg_regress, pgbench ...
#
# As a command:
#     test/cluster.sh [COMMAND ARGS...]  run COMMAND (default: a shell) against
#                                        a throwaway cluster, then stop it
#     eval "$(test/cluster.sh start)"    start one, keep it, print its exports
#     test/cluster.sh stop               stop the one named by $EVENT_LOG_TMP
#
# cluster_start exports PGHOST PGPORT PGUSER PGDATABASE, PATH (PG bin first),
# EVENT_LOG_TMP (temp dir), EVENT_LOG_DATA (data dir) and EVENT_LOG_HAS_OPL
# (1 if the server knows output_plugin_libraries, i.e. 15.19+, else 0).
# The other functions only read those exported variables, so they also work
# from child scripts. KEEP_CLUSTER=1 keeps the temp dir after cluster_stop.
#
# EVENT_LOG_SANITIZE=1 (set by `make test-sanitize`, for an extension built
# with SANITIZE=1): servers are started through a pg_ctl wrapper that
# preloads the AddressSanitizer runtime and sends its reports (UBSan's too)
# to files in $EVENT_LOG_SANITIZER_DIR. The wrapper's directory comes first
# in PATH, so servers that tests start themselves (TAP) run the same way.
# cluster_sanitizer_reports lists the reports. See docs/security.md,
# "Sanitizer builds".

# The server binaries: PG_BINDIR, or those of PG_CONFIG (default: the
# pg_config on PATH); `make test` sets PG_CONFIG, and make passes on a
# PG_CONFIG given on its command line to demo and bench.
if [[ -z ${PG_BINDIR:-} ]]; then
    PG_BINDIR=$("${PG_CONFIG:-pg_config}" --bindir) || {
        echo "cluster.sh: set PG_BINDIR or PG_CONFIG (no working ${PG_CONFIG:-pg_config})" >&2
        return 1 2>/dev/null || exit 1
    }
fi

# Run a command as the postgres user, from a directory it can enter
# (binaries fail with "could not identify current directory" otherwise).
as_postgres() {
    (cd "${EVENT_LOG_TMP:-/tmp}" && runuser -u postgres -- "$@")
}

# Print a TCP port in 54320-54999 that nothing listens on.
cluster_free_port() {
    local start=$((54320 + RANDOM % 680)) i port
    for ((i = 0; i < 680; i++)); do
        port=$((54320 + (start - 54320 + i) % 680))
        if command -v ss >/dev/null; then
            ss -Hltn "sport = :$port" | grep -q . && continue
        elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            continue
        fi
        # Our socket directory is private, but skip stray socket files too.
        [[ -e /tmp/.s.PGSQL.$port || -e /var/run/postgresql/.s.PGSQL.$port ]] && continue
        echo "$port"
        return 0
    done
    echo "cluster.sh: no free port in 54320-54999" >&2
    return 1
}

# 1 if this server has the output_plugin_libraries parameter (15.19+), else 0.
# postgres -C fails with "unrecognized configuration parameter" on older ones.
cluster_has_opl() {
    if as_postgres "$PG_BINDIR/postgres" -D "$EVENT_LOG_DATA" \
            -C output_plugin_libraries >/dev/null 2>&1; then
        echo 1
    else
        echo 0
    fi
}

# Sanitizer mode: write $EVENT_LOG_TMP/sanitizer/bin/pg_ctl, a pg_ctl whose
# servers run with libasan preloaded (it must come first in the process, or
# the instrumented event_log.so refuses to load), and create the report
# directory. Exports EVENT_LOG_SANITIZER_DIR and points EVENT_LOG_PG_CTL at
# the wrapper.
cluster_sanitizer_setup() {
    local dir=$EVENT_LOG_TMP/sanitizer cc=${CC:-gcc} asan
    # gcc prints the bare name back when it has no such library.
    asan=$("$cc" -print-file-name=libasan.so)
    if [[ $asan != /* || ! -e $asan ]]; then
        echo "cluster.sh: $cc has no libasan.so (Debian: libasan8, from gcc)" >&2
        return 1
    fi
    asan=$(readlink -f "$asan")
    mkdir -p "$dir/bin" "$dir/lib" "$dir/reports"
    # A preloaded libasan initialises lazily, on the first malloc. In the
    # Debian server that malloc happens inside libgpg-error's constructor,
    # in bindtextdomain() with glibc's gettext lock held; the runtime's
    # start-up then looks up swift_demangle, the failed dlsym() makes
    # dlerror() call gettext, which takes that same lock again, and the
    # process hangs (even `postgres -V`). With the symbol defined, the
    # lookup succeeds and gettext is never called. ASan only calls it for
    # Swift names, which never occur here; NULL means "not demangled".
    "$cc" -shared -fPIC -O2 -x c -o "$dir/lib/swift_demangle_stub.so" - <<'EOF' || return 1
#include <stddef.h>
char *swift_demangle(const char *name, size_t len, char *out, size_t *outlen,
                     unsigned flags);
char *
swift_demangle(const char *name, size_t len, char *out, size_t *outlen,
               unsigned flags)
{
    return NULL;
}
EOF
    # halt_on_error, abort_on_error: the first report kills the process (and
    # the postmaster then restarts the cluster, so the test fails too).
    # handle_sigill: UBSan checks are built to trap (SIGILL); ASan reports
    # the trap with its stack. (UBSan's own runtime would read its options
    # from /proc/self/environ only at the first report, after the server
    # has overwritten that area with its process title: no stack, no log.)
    # detect_leaks=0: backends leave their memory to process exit on purpose.
    # log_path: each process writes its reports to PREFIX.PID, which
    # survives the process and is listed by cluster_sanitizer_reports.
    {
        echo '#!/bin/sh'
        echo '# Written by test/cluster.sh (EVENT_LOG_SANITIZE=1): servers started'
        echo '# by this pg_ctl run with the AddressSanitizer runtime preloaded.'
        echo "LD_PRELOAD=\"$asan $dir/lib/swift_demangle_stub.so\${LD_PRELOAD:+ \$LD_PRELOAD}\""
        echo "ASAN_OPTIONS='detect_leaks=0:halt_on_error=1:abort_on_error=1:handle_sigill=1:log_path=$dir/reports/asan'"
        echo 'export LD_PRELOAD ASAN_OPTIONS'
        echo "exec '$PG_BINDIR/pg_ctl' \"\$@\""
    } >"$dir/bin/pg_ctl"
    chmod 755 "$dir/bin/pg_ctl"
    chown -R postgres: "$dir"
    export EVENT_LOG_SANITIZER_DIR=$dir/reports EVENT_LOG_PG_CTL=$dir/bin/pg_ctl
}

# Fail unless the server of $EVENT_LOG_DATA runs with libasan mapped: a
# wrapper that did not take effect must not pass for a sanitized run.
cluster_sanitizer_check() {
    local pid
    pid=$(head -n 1 "$EVENT_LOG_DATA/postmaster.pid" 2>/dev/null) || pid=
    if [[ -z $pid ]] || ! grep -q '/libasan\.so' "/proc/$pid/maps" 2>/dev/null; then
        echo "cluster.sh: the server (pid ${pid:-?}) runs without libasan" >&2
        return 1
    fi
}

# Print the paths of the sanitizer reports written so far (none: nothing):
# the report files, and any server log under $EVENT_LOG_TMP (TAP nodes'
# too) in which a sanitizer wrote to stderr instead, as it does when it
# cannot start (e.g. "ASan runtime does not come first").
cluster_sanitizer_reports() {
    [[ -n ${EVENT_LOG_SANITIZER_DIR:-} ]] || return 0
    find "$EVENT_LOG_SANITIZER_DIR" -type f | sort
    find "$EVENT_LOG_TMP" -name '*.log' -type f -not -path '*/pgdata/*' \
        -exec grep -lE 'AddressSanitizer|ASan runtime|runtime error:' {} + 2>/dev/null | sort
}

cluster_start() {
    local tmp port
    tmp=$(mktemp -d /tmp/event_log.XXXXXX) || return 1
    chown postgres: "$tmp"
    chmod 755 "$tmp"
    export EVENT_LOG_TMP=$tmp EVENT_LOG_DATA=$tmp/data
    export EVENT_LOG_PG_CTL=$PG_BINDIR/pg_ctl
    if [[ ${EVENT_LOG_SANITIZE:-0} == 1 ]]; then
        cluster_sanitizer_setup || return 1
    fi

    if ! as_postgres "$PG_BINDIR/initdb" -D "$EVENT_LOG_DATA" -A trust \
            -U postgres --no-sync --locale=C -E UTF8 >"$tmp/initdb.log" 2>&1; then
        echo "cluster.sh: initdb failed:" >&2
        cat "$tmp/initdb.log" >&2
        return 1
    fi

    port=$(cluster_free_port) || return 1
    export EVENT_LOG_HAS_OPL
    EVENT_LOG_HAS_OPL=$(cluster_has_opl)

    {
        echo
        echo "# added by test/cluster.sh"
        echo "listen_addresses = ''"
        echo "unix_socket_directories = '$tmp'"
        echo "port = $port"
        echo "wal_level = logical"
        echo "max_replication_slots = 20"
        echo "max_wal_senders = 20"
        echo "max_prepared_transactions = 20"
        echo "shared_buffers = 256MB"
        echo "max_connections = 100"
        echo "log_min_messages = warning"
        # A list value must be quoted in postgresql.conf (unquoted is a
        # syntax error there, though SET accepts it).
        if [[ $EVENT_LOG_HAS_OPL == 1 ]]; then
            echo "output_plugin_libraries = 'pgoutput, test_decoding, event_log, wal2json'"
        fi
        local line
        for line in "$@"; do echo "$line"; done
    } >>"$EVENT_LOG_DATA/postgresql.conf"

    if ! as_postgres "$EVENT_LOG_PG_CTL" -D "$EVENT_LOG_DATA" -w \
            -l "$tmp/server.log" start >/dev/null; then
        echo "cluster.sh: server failed to start; server.log:" >&2
        cat "$tmp/server.log" >&2 || true
        return 1
    fi

    export PGHOST=$tmp PGPORT=$port PGUSER=postgres PGDATABASE=postgres
    case ":$PATH:" in
        *":$PG_BINDIR:"*) ;;
        *) export PATH=$PG_BINDIR:$PATH ;;
    esac
    if [[ ${EVENT_LOG_SANITIZE:-0} == 1 ]]; then
        export PATH=${EVENT_LOG_PG_CTL%/pg_ctl}:$PATH
        cluster_sanitizer_check || return 1
    fi
}

# Restart the running cluster; MODE is a pg_ctl shutdown mode (default fast).
cluster_restart() {
    local mode=${1:-fast}
    if ! as_postgres "${EVENT_LOG_PG_CTL:-$PG_BINDIR/pg_ctl}" -D "$EVENT_LOG_DATA" -w -m "$mode" \
            -l "$EVENT_LOG_TMP/server.log" restart >/dev/null; then
        echo "cluster.sh: restart failed; server.log:" >&2
        cat "$EVENT_LOG_TMP/server.log" >&2 || true
        return 1
    fi
}

# Stop the server (fast shutdown) but keep the temp dir; cluster_stop
# still removes it. A no-op when the server is not running.
cluster_stop_server() {
    if [[ -f ${EVENT_LOG_DATA:-}/postmaster.pid ]]; then
        as_postgres "$PG_BINDIR/pg_ctl" -D "$EVENT_LOG_DATA" -w -m fast stop \
            >/dev/null || echo "cluster.sh: pg_ctl stop failed" >&2
    fi
}

# Stop the cluster and remove its temp dir. Safe to call more than once,
# and after a cluster_start that failed half way.
cluster_stop() {
    local tmp=${EVENT_LOG_TMP:-}
    [[ -n $tmp && -d $tmp ]] || return 0
    cluster_stop_server
    # Servers that tests started under our temp dir (e.g. TAP nodes of an
    # interrupted run) would outlive their deleted data dirs: stop them too.
    local pidfile
    while IFS= read -r pidfile; do
        as_postgres "$PG_BINDIR/pg_ctl" -D "${pidfile%/postmaster.pid}" \
            -w -m immediate stop >/dev/null 2>&1 || true
    done < <(find "$tmp" -name postmaster.pid 2>/dev/null)
    if [[ ${KEEP_CLUSTER:-0} == 1 ]]; then
        echo "cluster.sh: kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    unset EVENT_LOG_TMP EVENT_LOG_DATA
}

# Command mode: only when executed, not when sourced.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
        start)
            shift
            cluster_start "$@" >&2
            for v in PGHOST PGPORT PGUSER PGDATABASE EVENT_LOG_TMP EVENT_LOG_DATA EVENT_LOG_HAS_OPL; do
                printf 'export %s=%q\n' "$v" "${!v}"
            done
            if [[ ${EVENT_LOG_SANITIZE:-0} == 1 ]]; then
                for v in EVENT_LOG_SANITIZER_DIR EVENT_LOG_PG_CTL PATH; do
                    printf 'export %s=%q\n' "$v" "${!v}"
                done
            fi
            ;;
        stop)
            [[ -n ${EVENT_LOG_TMP:-} ]] || { echo "cluster.sh: EVENT_LOG_TMP not set" >&2; exit 1; }
            export EVENT_LOG_DATA=${EVENT_LOG_DATA:-$EVENT_LOG_TMP/data}
            cluster_stop
            ;;
        *)
            trap cluster_stop EXIT
            trap 'exit 130' INT TERM
            cluster_start
            echo "cluster.sh: cluster at PGHOST=$PGHOST PGPORT=$PGPORT" >&2
            # Not exec: the EXIT trap has to run afterwards.
            if (($#)); then "$@"; else "${SHELL:-bash}"; fi
            ;;
    esac
fi
