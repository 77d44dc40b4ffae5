#!/usr/bin/env bash
# Install the Debian packages needed to build and test event_log.
# Idempotent: does nothing (but say so) when everything is already there.
set -euo pipefail

packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-wal2json
          libipc-run-perl make gcc
          python3-psycopg python3-psycopg2   # test/t/015_client_examples.pl
          libpq-dev librdkafka-dev)          # the Kafka bridge (docs/kafka.md)
# `make bench` only: instruction counts (test/bench/11_append_instructions.sh)
if [[ ${EVENT_LOG_BENCH_DEPS:-0} == 1 ]]; then
    packages+=(valgrind)
fi

# node-postgres for the same test: Debian's nodejs and node-pg where there is
# no Node.js yet. Debian's node-pg cannot go with a Node.js from elsewhere
# (such as NodeSource's nodejs package); then npm, which comes with those,
# installs pg into test/clients/node_modules (not in git), where the test
# looks too.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
node_modules=$ROOT/test/clients/node_modules
has_node_pg() {
    NODE_PATH=$node_modules:/usr/share/nodejs node -e 'require("pg")' >/dev/null 2>&1
}
npm_pg=0
if ! command -v node >/dev/null; then
    packages+=(nodejs node-pg)
elif ! has_node_pg; then
    if apt-get install -s -qq node-pg >/dev/null 2>&1; then
        packages+=(node-pg)
    else
        npm_pg=1
    fi
fi

# A package counts as present only when dpkg says "install ok installed".
missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$pkg")
done

if (( ${#missing[@]} == 0 )); then
    did="all packages already installed"
elif (( EUID != 0 )); then
    echo "deps.sh: missing packages: ${missing[*]}" >&2
    echo "deps.sh: run as root, or: sudo apt-get install ${missing[*]}" >&2
    exit 1
else
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    did="installed ${missing[*]}"
fi

if (( npm_pg )); then
    if (( EUID != 0 )) && [[ ! -w $ROOT/test/clients ]]; then
        echo "deps.sh: node-postgres missing; run as root, or: npm install --prefix test/clients pg@8" >&2
        exit 1
    fi
    # Not fatal: without node-postgres the client examples test runs the
    # Python examples only, and says so.
    if npm install --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
        --prefix "$ROOT/test/clients" pg@8 >/dev/null && has_node_pg; then
        did+="; npm installed pg into test/clients/node_modules"
    else
        echo "deps.sh: could not install node-postgres with npm; its examples will not be tested" >&2
    fi
fi

# test_decoding and pgcrypto (personal fields, docs/erasure.md) ship inside
# postgresql-15 on Debian; make sure the server we build for (PG_CONFIG, as
# the Makefile passes it) has them.
pkglibdir=$("${PG_CONFIG:-pg_config}" --pkglibdir) || {
    echo "deps.sh: ${PG_CONFIG:-pg_config} does not work; set PG_CONFIG" >&2
    exit 1
}
for lib in test_decoding pgcrypto; do
    if [[ ! -f $pkglibdir/$lib.so ]]; then
        echo "deps.sh: $pkglibdir/$lib.so not found" >&2
        exit 1
    fi
done

echo "deps.sh: $did; test_decoding and pgcrypto present"
