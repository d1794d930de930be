"""The ledger's read path: queries never stall settlements, and every query has a time limit.

Before: ``ledger.sql()`` ran on the ledger's single writer thread, so one long query
held every ``attach`` and settlement (cancels included) behind it, with no time
limit; ``GET /ledger/*`` queued behind it too, and from a notebook cell the call
blocked the kernel's loop. Now reads run on read-only connections of their own
(``streamnb/_ledger/readers.py``), each has a time limit (``timeout_s``), and every
query has an awaitable twin (``asql``, ``astreams`` ...) that runs off the loop.
"""

from __future__ import annotations

import asyncio
import gc
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import streamnb as sn
from streamnb._ledger.readers import MAX_READERS
from streamnb._ledger.scratch import ScratchFile
from streamnb.server import serve_in_background

pytestmark = pytest.mark.timeout(120)

#: a query that takes seconds: counts to ? with a recursive CTE
SLOW = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
    "SELECT count(*) AS c FROM n"
)
SLOW_N = 10_000_000
#: a query that never ends on its own
ENDLESS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"


async def until_cancelled(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
    yield sn.progress({"phase": "working"})
    await ctx.signal.wait()
    yield sn.cancelled(ctx.signal.reason or "cancelled")


def handler() -> sn.AttachedStreamHandler:
    return sn.AttachedStreamHandler(kind="t.wait", run=until_cancelled)


@pytest.mark.parametrize("file_ledger", [False, True], ids=["memory", "file"])
async def test_long_query_does_not_stall_attach_cancel_or_settlement(
    tmp_path: Path, file_ledger: bool
) -> None:
    ledger = sn.Ledger(tmp_path / "l.db" if file_ledger else None)
    async with sn.StreamRuntime(ledger, cancel_grace_s=1.0) as rt:
        rt.register(handler())
        query = asyncio.ensure_future(asyncio.to_thread(ledger.sql, SLOW, [SLOW_N]))
        await asyncio.sleep(0.2)  # the query is on its way (it runs for seconds)
        assert not query.done()
        session = await asyncio.wait_for(rt.attach("t.wait"), 30)
        assert await session.cancel("stop") == "requested"
        terminal = await asyncio.wait_for(session.wait(), 30)
        assert terminal.kind == "cancelled"
        # settled and committed while the query still runs: reads never hold a write back
        assert not query.done()
        assert ledger.stream_status(session.stream_ref) == "cancelled"
        assert (await query)["c"].tolist() == [SLOW_N]
    ledger.close()


async def test_endless_query_is_stopped_with_ledger_timeout_error_and_changes_nothing() -> None:
    async with sn.StreamRuntime() as rt:
        rt.register(handler())
        session = await rt.attach("t.wait")
        with pytest.raises(sn.LedgerTimeoutError, match=r"stopped after 0\.3 s") as info:
            rt.ledger.sql(ENDLESS, timeout_s=0.3)
        assert isinstance(info.value, TimeoutError)
        with pytest.raises(sn.LedgerTimeoutError):
            await rt.ledger.asql(ENDLESS, timeout_s=0.3)
        # the ledger's default limit applies to every query form
        short = sn.Ledger(query_timeout_s=0.3)
        with pytest.raises(sn.LedgerTimeoutError):
            short.sql(ENDLESS)
        short.close()
        # nothing stuck: the readers and the writer both still work
        for _ in range(MAX_READERS + 1):
            assert rt.ledger.sql("SELECT count(*) AS n FROM streams")["n"].tolist() == [1]
        await session.cancel("done")
        assert (await asyncio.wait_for(session.wait(), 10)).kind == "cancelled"


async def test_awaitable_query_leaves_the_loop_free_and_cancelling_it_stops_the_query() -> None:
    async with sn.StreamRuntime(cancel_grace_s=1.0) as rt:
        rt.register(handler())
        session = await rt.attach("t.wait")
        query = asyncio.ensure_future(rt.ledger.asql(SLOW, [SLOW_N]))
        await asyncio.sleep(0.2)
        # the loop runs: a Stop press reaches the stream and it settles during the query
        assert await session.cancel("user pressed stop") == "requested"
        assert (await asyncio.wait_for(session.wait(), 30)).kind == "cancelled"
        assert not query.done()
        frames_df = await rt.ledger.astreams()
        assert frames_df.status.tolist() == ["cancelled"]
        # cancelling the awaiting task stops the statement and frees its connection
        endless = [asyncio.ensure_future(rt.ledger.asql(ENDLESS)) for _ in range(MAX_READERS)]
        await asyncio.sleep(0.2)
        for task in endless:
            task.cancel()
        for task in endless:
            with pytest.raises(asyncio.CancelledError):
                await task
        assert (await query)["c"].tolist() == [SLOW_N]
        assert (await rt.ledger.asql("SELECT 1 AS one", timeout_s=5))["one"].tolist() == [1]
        assert await rt.ledger.astream_status(session.stream_ref) == "cancelled"
        assert (await rt.ledger.aevents()).empty and (await rt.ledger.aframes()).empty
        assert await rt.ledger.aframe_log(session.stream_ref) == []


async def test_ledger_endpoints_answer_while_a_long_query_runs() -> None:
    async with sn.StreamRuntime() as rt:
        rt.register(handler())
        handle = await serve_in_background(rt)
        try:
            query = asyncio.ensure_future(asyncio.to_thread(rt.ledger.sql, SLOW, [SLOW_N]))
            await asyncio.sleep(0.2)
            async with httpx.AsyncClient(base_url=handle.url, timeout=30) as client:
                created = await client.post("/streams", json={"kind": "t.wait"})
                assert created.status_code == 201
                listed = await client.get("/ledger/streams")
                assert listed.status_code == 200
                assert [s["status"] for s in listed.json()["streams"]] == ["running"]
            assert not query.done()
            await query
        finally:
            await handle.aclose()


def test_query_timeout_arguments_are_checked() -> None:
    with sn.Ledger() as ledger:
        for bad in (0, -1, "5", True, float("nan")):
            with pytest.raises(sn.LedgerError, match="timeout_s must be"):
                ledger.sql("SELECT 1", timeout_s=bad)
        assert ledger.sql("SELECT 1 AS one", timeout_s=float("inf"))["one"].tolist() == [1]
        with pytest.raises(sn.LedgerError, match="timeout_s must be"):
            sn.Ledger(query_timeout_s=0)
    assert sn.Ledger(query_timeout_s=None).query_timeout_s is None


def test_in_memory_ledger_scratch_file_is_removed_on_close_and_after_a_dead_process() -> None:
    ledger = sn.Ledger()
    where = ledger.backend.file  # type: ignore[attr-defined]
    assert os.path.exists(where) and ledger.path is None
    ledger.close()
    assert not os.path.exists(os.path.dirname(where))
    dropped = sn.Ledger()
    where = dropped.backend.file  # type: ignore[attr-defined]
    del dropped
    gc.collect()
    assert not os.path.exists(os.path.dirname(where))
    # a killed process leaves its directory, with a lock nobody holds: the next one removes it
    stale = Path(tempfile.gettempdir()) / "streamnb-memory-ledger-deadbeef"
    stale.mkdir(exist_ok=True)
    (stale / "lock").write_text("")
    (stale / "ledger.db").write_bytes(b"x")
    scratch = ScratchFile()
    try:
        assert not stale.exists()
        assert os.path.isdir(scratch.dir)
    finally:
        scratch.remove()
