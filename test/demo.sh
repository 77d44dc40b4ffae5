#!/usr/bin/env bash
# Walk through test/demo.sql on a throwaway cluster, printing each statement
# (and its comments) before its result. The extension must be installed.
#
# Usage: test/demo.sh [FILE.sql]      (default: test/demo.sql)
# demo.sql runs in database "shop"; PGHOST/PGPORT/PGUSER, EVENT_LOG_TMP (a
# scratch dir), EVENT_LOG_ROOT (the repo) and PATH (PostgreSQL bin first) are
# exported, so its \! lines can run e.g. pg_recvlogical -d shop against the
# same server.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SQL=${1:-$ROOT/test/demo.sql}
[[ -f $SQL ]] || { echo "demo.sh: $SQL not found" >&2; exit 1; }

source "$ROOT/test/cluster.sh"
trap cluster_stop EXIT
trap 'exit 130' INT TERM
cluster_start

psql -X -q -c 'CREATE DATABASE shop'
export PGDATABASE=shop EVENT_LOG_ROOT=$ROOT
# -a echoes every input line (comments too) before its output.
psql -X -a -v ON_ERROR_STOP=1 -P pager=off -d shop -f "$SQL"
