#!/usr/bin/env bash
# Install Debian's chromium for the Playwright browser tests (tests/browser).
#
# Playwright cannot download its own browsers in CI, so the tests launch
# /usr/bin/chromium. Idempotent: does nothing but print the version when the
# browser is already there. Runs as root with no stdin (CI, Docker build).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo -n"
    fi
    $SUDO apt-get update -qq </dev/null
    $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core </dev/null
fi

# Debian's launcher (/etc/chromium.d/dev-shm) prints "[: ...: unexpected operator" when
# findmnt lists /dev/shm twice (containers); harmless, so that one line is filtered out.
/usr/bin/chromium --headless=new --no-sandbox --disable-gpu --version \
    2> >(grep -v 'unexpected operator' >&2)
