"""Shared fixtures. Async tests run on pytest-asyncio's per-test loop (asyncio_mode=auto).

The ledger's contract holds on both backends: the ``backend`` fixture is
parametrized ``sqlite`` / ``postgres``, and ``runtime``, ``ledger_target`` and
``make_ledger`` follow it. PostgreSQL runs for real, in a throwaway cluster this
session starts (``pg_cluster``, ``tests/_postgres.py``); each test gets a schema
of its own. Without PostgreSQL binaries or psycopg the ``postgres`` cases are
skipped with the reason, unless ``STREAMNB_REQUIRE_POSTGRES=1`` (CI sets it):
then they fail.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import streamnb as sn
from streamnb.demo import chatbot_handler, output_only_handler
from tests._postgres import Cluster, unavailable_reason

BACKENDS = ["sqlite", "postgres"]

collect_ignore_glob: list[str] = []
if os.environ.get("STREAMNB_SKIP_BROWSER") == "1":
    collect_ignore_glob.append("browser/*")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("STREAMNB_SOAK") == "1":
        return
    # soak runs are deselected (not skipped) in the default profile; STREAMNB_SOAK=1 runs them
    slow = [i for i in items if "slow" in i.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [i for i in items if "slow" not in i.keywords]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A PostgreSQL server for this test session (fsync off: it only has to survive a test)."""
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("STREAMNB_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here (STREAMNB_REQUIRE_POSTGRES=1): {reason}")
        pytest.skip(reason)
    cluster = Cluster({"fsync": "off", "full_page_writes": "off"})
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_dsn(pg_cluster: Cluster) -> str:
    """The DSN of a fresh schema in the session's PostgreSQL (a ledger of its own)."""
    return pg_cluster.fresh_dsn()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgres"``: the ledger backend this test runs on."""
    return str(request.param)


@pytest.fixture
def ledger_target(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a durable ledger of ``backend`` lives: a SQLite file path or a PostgreSQL DSN."""
    if backend == "postgres":
        return str(request.getfixturevalue("pg_dsn"))
    return str(tmp_path / "ledger.db")


@pytest.fixture
def make_ledger(backend: str, ledger_target: str) -> Iterator[Callable[..., sn.Ledger]]:
    """``make_ledger(durable=False, **options)``: a Ledger of ``backend``, closed at teardown.

    SQLite: in memory unless ``durable``; PostgreSQL: always the test's schema
    (so two ledgers of one test share their streams).
    """
    made: list[sn.Ledger] = []

    def make(durable: bool = False, **options: Any) -> sn.Ledger:
        target = ledger_target if backend == "postgres" or durable else None
        ledger = sn.Ledger(target, **options)
        made.append(ledger)
        return ledger

    try:
        yield make
    finally:
        for ledger in made:
            ledger.close()


@pytest.fixture
async def runtime(make_ledger: Callable[..., sn.Ledger]) -> AsyncIterator[sn.StreamRuntime]:
    """A runtime with the seeds' two handlers and a short cancel grace (0.2 s), on each backend."""
    rt = sn.StreamRuntime(make_ledger(), cancel_grace_s=0.2, force_wait_s=0.2)
    rt.register(chatbot_handler())
    rt.register(output_only_handler())
    try:
        yield rt
    finally:
        await rt.aclose()
        rt.ledger.close()
