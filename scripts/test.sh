#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then runs pytest.
#
#   bash scripts/test.sh            # default profile (what CI runs)
#   STREAMNB_SOAK=1 bash scripts/test.sh   # also the long soak runs (marker "slow")
#   bash scripts/test.sh -k ledger  # extra arguments go to pytest
#
# Installs: this package with its [dev] extra (pip), Debian's chromium for the
# browser tests and Debian's PostgreSQL server for the shared-ledger tests (apt, root;
# the tests start and stop their own throwaway clusters, so STREAMNB_REQUIRE_POSTGRES=1
# makes a missing server a failure, not a skip), the `ai` npm package for the AI SDK
# protocol test, and the Durable Streams npm packages (conformance suite, reference
# server, client) in tests/durable.
set -euo pipefail
cd "$(dirname "$0")/.."

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
python3 -m pip install -q -e ".[dev]"
bash .ci/install-browser.sh
bash .ci/install-postgres.sh
export STREAMNB_REQUIRE_POSTGRES=1
# npm folders with a committed package-lock.json: tests/js (the `ai` package), tests/durable
# (the Durable Streams conformance suite, reference server and client, pinned)
for folder in tests/js tests/durable; do
    if [ -f "$folder/package-lock.json" ] && { [ ! -f "$folder/node_modules/.package-lock.json" ] \
        || [ "$folder/package-lock.json" -nt "$folder/node_modules/.package-lock.json" ]; }; then
        (cd "$folder" && npm ci --no-audit --no-fund --loglevel=error)
    fi
done

# Separate pytest processes: Playwright's sync API keeps its own event loop running in
# the main thread for the rest of a session, which breaks every asyncio test after it;
# and --doctest-modules would also import every test module as a doctest module.
status=0
python3 -m pytest -p no:cacheprovider -m "not browser" \
    --cov=streamnb --cov-report= \
    --nbval --nbval-sanitize-with notebooks/sanitize.cfg --ignore=tests/browser/fixtures \
    tests notebooks "$@" || status=$?
# Every docstring example in the package runs (they are the manual: obj? in a notebook).
python3 -m pytest -p no:cacheprovider --doctest-modules \
    --cov=streamnb --cov-append --cov-report= \
    streamnb "$@" || status=$?
python3 -m pytest -p no:cacheprovider -m browser \
    --cov=streamnb --cov-append --cov-report=term:skip-covered \
    --ignore=tests/browser/fixtures tests "$@" || status=$?
exit $status
