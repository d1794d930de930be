#!/usr/bin/env bash
# Install Debian's PostgreSQL server for the shared-ledger tests and benchmarks.
#
# The tests start throwaway clusters themselves (tests/_postgres.py: initdb in a
# temporary directory, pg_ctl on 127.0.0.1 and a free port, stopped at the end),
# from the binaries under /usr/lib/postgresql/*/bin (or pg_config --bindir, or PATH).
# Only the binaries are needed: the package's own cluster is not used. Idempotent:
# does nothing but print the version when initdb is already there. Runs as root
# with no stdin (CI, Docker build); as root the tests run initdb as the 'postgres'
# user the package creates.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

find_initdb() {
    compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -n 1
}

if [ -z "$(find_initdb || true)" ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo -n"
    fi
    $SUDO apt-get update -qq </dev/null
    $SUDO apt-get install -y -qq --no-install-recommends postgresql </dev/null
fi

"$(find_initdb)" --version
