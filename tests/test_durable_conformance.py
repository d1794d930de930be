"""The official Durable Streams conformance suite against ``streamnb serve``.

``@durable-streams/server-conformance-tests`` (pinned in
``tests/durable/package.json``) runs with vitest from
``tests/durable/conformance.test.js`` against a real ``streamnb serve`` on
127.0.0.1 with a 2-second long-poll timeout, once with its streams in SQLite (an
in-memory ledger) and once in PostgreSQL (``--ledger postgresql://...``, the store
workers share). Every test must pass except
:data:`EXCLUDED`, and only tests that also fail against the reference server
``@durable-streams/server`` (pinned too, started by
``tests/durable/reference_server.mjs``) may be excluded: the second test runs
the suite against it and checks each exclusion fails there.

The suite's optional group "Reserved subscription APIs" (webhooks,
PROTOCOL.md §6-7) runs only when a server opts in; neither server does, so
its tests are skipped in both runs (:data:`OPTIONAL_GROUP`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._durable import (
    failure_messages,
    pinned_versions,
    reference_server,
    run_conformance,
    streamnb_serve,
)

pytestmark = pytest.mark.timeout(900)

#: tests streamnb fails that the reference server fails too, with why (measured: see README)
EXCLUDED: dict[str, str] = {
    "Caching and ETag > should allow If-None-Match in CORS preflight responses": (
        "CORS is off by default in streamnb serve, so an OPTIONS preflight gets 405; with "
        "--cors-origin it passes. The reference server answers the preflight without "
        "if-none-match in Access-Control-Allow-Headers."
    ),
}
#: the suite's optional group, skipped unless a server opts in
OPTIONAL_GROUP = "Reserved subscription APIs"


def _summary(results: dict[str, str]) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for status in results.values():
        counts[status] += 1
    return counts


def test_versions_are_pinned() -> None:
    versions = pinned_versions()
    for name in (
        "@durable-streams/server-conformance-tests",
        "@durable-streams/server",
        "@durable-streams/client",
    ):
        assert versions[name][0].isdigit(), f"{name} must be pinned to one version"


def test_streamnb_serve_passes_the_conformance_suite(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    ledger = ["--ledger", request.getfixturevalue("pg_dsn")] if backend == "postgres" else []
    with streamnb_serve("--long-poll-timeout-s", "2", *ledger) as server:
        results = run_conformance(server.url, tmp_path / "streamnb.json")
        log = server.output()
    assert "Traceback" not in log and "ERROR" not in log, log
    messages = failure_messages(tmp_path / "streamnb.json")
    failed = {name for name, status in results.items() if status == "failed"}
    unexpected = {name: messages.get(name, "") for name in failed - EXCLUDED.keys()}
    assert not unexpected, f"conformance tests failing against streamnb serve: {unexpected}"
    stale = [name for name in EXCLUDED if results.get(name) != "failed"]
    assert not stale, f"excluded tests that do not fail (any more): {stale}; update EXCLUDED"
    skipped = [name for name, status in results.items() if status == "skipped"]
    assert all(name.startswith(OPTIONAL_GROUP + " > ") for name in skipped), skipped
    counts = _summary(results)
    assert counts["passed"] == len(results) - len(EXCLUDED) - len(skipped)
    assert counts["passed"] > 300, counts  # the suite ran (0.3.6 has 338 tests)


def test_every_exclusion_fails_against_the_reference_server(tmp_path: Path) -> None:
    with reference_server() as server:
        results = run_conformance(server.url, tmp_path / "reference.json")
    assert _summary(results)["passed"] > 300, _summary(results)  # the suite ran
    not_failing = {name: results.get(name) for name in EXCLUDED if results.get(name) != "failed"}
    assert not not_failing, (
        f"only tests the reference server fails too may be excluded: {not_failing}"
    )
