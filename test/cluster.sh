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

PG_BINDIR=${PG_BINDIR:-/usr/lib/postgresql/15/bin}

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

cluster_start() {
    local tmp port
    tmp=$(mktemp -d /tmp/event_log.XXXXXX) || return 1
    chown postgres: "$tmp"
    chmod 755 "$tmp"
    export EVENT_LOG_TMP=$tmp EVENT_LOG_DATA=$tmp/data

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

    if ! as_postgres "$PG_BINDIR/pg_ctl" -D "$EVENT_LOG_DATA" -w \
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
}

# Restart the running cluster; MODE is a pg_ctl shutdown mode (default fast).
cluster_restart() {
    local mode=${1:-fast}
    if ! as_postgres "$PG_BINDIR/pg_ctl" -D "$EVENT_LOG_DATA" -w -m "$mode" \
            -l "$EVENT_LOG_TMP/server.log" restart >/dev/null; then
        echo "cluster.sh: restart failed; server.log:" >&2
        cat "$EVENT_LOG_TMP/server.log" >&2 || true
        return 1
    fi
}

# Stop the cluster and remove its temp dir. Safe to call more than once,
# and after a cluster_start that failed half way.
cluster_stop() {
    local tmp=${EVENT_LOG_TMP:-}
    [[ -n $tmp && -d $tmp ]] || return 0
    if [[ -f $EVENT_LOG_DATA/postmaster.pid ]]; then
        as_postgres "$PG_BINDIR/pg_ctl" -D "$EVENT_LOG_DATA" -w -m fast stop \
            >/dev/null || echo "cluster.sh: pg_ctl stop failed" >&2
    fi
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
