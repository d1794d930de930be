#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, then runs pytest.
#
#   bash scripts/test.sh            # default profile (what CI runs)
#   STREAMNB_SOAK=1 bash scripts/test.sh   # also the long soak runs (marker "slow")
#   bash scripts/test.sh -k ledger  # extra arguments go to pytest
#
# Installs: this package with its [dev] extra (pip), Debian's chromium for the
# browser tests (apt, root), and the `ai` npm package for the AI SDK protocol test.
set -euo pipefail
cd "$(dirname "$0")/.."

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
python3 -m pip install -q -e ".[dev]"
bash .ci/install-browser.sh
if [ -f tests/js/package.json ] && [ ! -d tests/js/node_modules ]; then
    (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

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
