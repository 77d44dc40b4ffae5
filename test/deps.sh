#!/usr/bin/env bash
# Install the Debian packages needed to build and test event_log.
# Idempotent: does nothing (but say so) when everything is already there.
set -euo pipefail

packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-wal2json
          libipc-run-perl make gcc)

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

# test_decoding ships inside postgresql-15 on Debian; make sure the server
# we build for (PG_CONFIG, as the Makefile passes it) has it.
pkglibdir=$("${PG_CONFIG:-pg_config}" --pkglibdir) || {
    echo "deps.sh: ${PG_CONFIG:-pg_config} does not work; set PG_CONFIG" >&2
    exit 1
}
if [[ ! -f $pkglibdir/test_decoding.so ]]; then
    echo "deps.sh: $pkglibdir/test_decoding.so not found" >&2
    exit 1
fi

echo "deps.sh: $did; test_decoding present"
