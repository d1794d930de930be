"""Fault injection: the ledger, the loop, observers, widgets and providers misbehaving.

Whatever fails, each stream still ends with exactly one terminal frame that says
what went wrong, nothing committed earlier is lost, and the runtime keeps working
once the fault is gone. Faults are injected for real where the machine allows it:

* disk full: ``PRAGMA max_page_count`` on the ledger's writer connection (SQLite
  answers ``SQLITE_FULL`` exactly as on a full disk, and rolls the transaction back);
* read-only database: ``PRAGMA query_only`` on the writer connection (SQLite answers
  ``SQLITE_READONLY`` as for a file that turned read-only; as root, ``chmod`` would
  not stop the writes);
* ``database is locked``: a second sqlite3 connection holding a write transaction
  longer than the ledger's ``busy_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sqlite3
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

import streamnb as sn
from streamnb.demo import chatbot_handler
from streamnb.providers import ProviderConfig, chat_handler
from streamnb.testing import FakeTokenSource, lorem_tokens
from tests.openai_server import OpenAIServer, Script

pytest_plugins = ["tests.openai_server"]

pytestmark = pytest.mark.timeout(60)


def settled_event(terminal: sn.Frame, tx: sn.LedgerTx) -> None:
    tx.insert_event("fault.settled", {"kind": terminal.kind, "pad": "p" * 200_000})


async def until_cancelled(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
    yield sn.output("working")
    await ctx.signal.wait()
    yield sn.cancelled(ctx.signal.reason or "cancelled")


async def quick(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
    yield sn.output("done")
    yield sn.completed()


def fault_runtime(ledger: sn.Ledger) -> sn.StreamRuntime:
    rt = sn.StreamRuntime(ledger, cancel_grace_s=1.0, force_wait_s=0.5)
    rt.register(
        sn.AttachedStreamHandler(kind="long", run=until_cancelled, commit_terminal=settled_event)
    )
    rt.register(sn.AttachedStreamHandler(kind="quick", run=quick, commit_terminal=settled_event))
    return rt


def on_writer(ledger: sn.Ledger, sql: str) -> Any:
    """Run one statement on the ledger's own writer connection (its thread)."""
    return ledger.backend.writer.call(lambda conn: conn.execute(sql).fetchall())


@contextlib.contextmanager
def disk_full(ledger: sn.Ledger) -> Iterator[None]:
    (pages,) = on_writer(ledger, "PRAGMA page_count")[0]
    on_writer(ledger, f"PRAGMA max_page_count={pages}")
    try:
        yield
    finally:
        on_writer(ledger, "PRAGMA max_page_count=1073741823")


async def committed_state(ledger: sn.Ledger) -> tuple[list[Any], list[Any]]:
    streams = ledger.sql("SELECT stream_ref, status, reason FROM streams ORDER BY rowid")
    events = ledger.sql("SELECT id, stream_ref, kind FROM events ORDER BY id")
    return streams.values.tolist(), events.values.tolist()


async def one_terminal(session: sn.Session) -> sn.Frame:
    frames = await sn.read_until_terminal(session.output, timeout_s=10)
    terminals = [f for f in frames if f.is_terminal]
    assert len(terminals) == 1 and frames[-1] is terminals[0]
    assert [f.seq for f in frames] == list(range(len(frames)))
    return terminals[0]


# --- the ledger cannot write ---------------------------------------------------------------


async def test_disk_full_settlement_gives_one_failed_terminal_and_loses_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "full.db"
    rt = fault_runtime(sn.Ledger(path))
    done = await rt.attach("quick")
    await done.wait(5)
    stuck = await rt.attach("long")
    reader = await rt.reattach(stuck.stream_ref)
    before = await committed_state(rt.ledger)
    with disk_full(rt.ledger):
        await stuck.cancel("stop")
        terminal = await one_terminal(stuck)
        assert terminal == await one_terminal(reader)  # every observer sees the same one
        assert terminal.kind == "failed" and terminal.reason == "ledger_error"
        assert "database or disk is full" in (terminal.error or "")
        assert terminal.terminal == {"ok": False, "ledger_error": True}
        assert await committed_state(rt.ledger) == before  # nothing lost, nothing half-written
        assert rt.ledger.stream_status(stuck.stream_ref) == "running"
    # space again: later writes succeed
    again = await rt.attach("quick")
    assert (await one_terminal(again)).kind == "completed"
    assert rt.ledger.events(stream_ref=again.stream_ref).payload[0]["kind"] == "completed"
    await rt.aclose()
    rt.ledger.close()
    with sn.Ledger(path) as reopened:  # the unsettled row is recovered, the rest intact
        assert reopened.recovered == [stuck.stream_ref]
        rows = dict(zip(*reopened.streams()[["stream_ref", "status"]].T.values, strict=True))
        assert rows == {
            done.stream_ref: "completed",
            stuck.stream_ref: "failed",
            again.stream_ref: "completed",
        }
        assert sorted(reopened.events().stream_ref) == sorted([done.stream_ref, again.stream_ref])


async def test_disk_full_attach_is_a_clear_error_and_opens_nothing(tmp_path: Path) -> None:
    async def run(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
        yield sn.completed()

    rt = sn.StreamRuntime(sn.Ledger(tmp_path / "full.db"))
    fat = rt.register(sn.AttachedStreamHandler(kind="k" * 3000, run=run))  # ~3 KB per row
    with disk_full(rt.ledger):
        opened: list[sn.Session] = []

        async def fill() -> None:
            for _ in range(20):  # the page fills after a row or two
                opened.append(await rt.attach(fat.kind))  # noqa: PERF401

        with pytest.raises(sn.LedgerError, match="database or disk is full"):
            await fill()
        assert rt.active_refs() == [s.stream_ref for s in opened if s.terminal is None]
        assert len(rt.ledger.streams()) == len(opened)
    s = await rt.attach(fat.kind)
    assert (await s.wait(5)).kind == "completed"
    await rt.aclose()
    rt.ledger.close()


async def test_read_only_database_settlement_is_one_failed_terminal_then_recovers(
    tmp_path: Path,
) -> None:
    rt = fault_runtime(sn.Ledger(tmp_path / "ro.db"))
    done = await rt.attach("quick")
    await done.wait(5)
    stuck = await rt.attach("long")
    before = await committed_state(rt.ledger)
    on_writer(rt.ledger, "PRAGMA query_only=ON")
    try:
        with pytest.raises(sn.LedgerError, match="readonly database"):
            await rt.attach("quick")
        await stuck.cancel("stop")
        terminal = await one_terminal(stuck)
        assert terminal.kind == "failed" and terminal.reason == "ledger_error"
        assert "readonly database" in (terminal.error or "")
        assert await committed_state(rt.ledger) == before
        assert rt.active_refs() == []
    finally:
        on_writer(rt.ledger, "PRAGMA query_only=OFF")
    again = await rt.attach("quick")
    assert (await one_terminal(again)).kind == "completed"
    await rt.aclose()
    rt.ledger.close()


async def test_database_locked_by_another_writer_is_a_clear_error_and_loses_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    rt = fault_runtime(sn.Ledger(path, busy_timeout_s=0.2))
    done = await rt.attach("quick")
    await done.wait(5)
    stuck = await rt.attach("long")
    before = await committed_state(rt.ledger)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # holds the write lock until released
    ticks = 0

    async def ticker() -> None:  # the loop stays free while the writer thread waits
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.ensure_future(ticker())
    try:
        t0 = time.monotonic()
        with pytest.raises(sn.LedgerError, match="database is locked"):
            await rt.attach("quick")
        assert time.monotonic() - t0 >= 0.15  # it waited busy_timeout_s, then gave up
        assert ticks >= 5
        await stuck.cancel("stop")
        terminal = await one_terminal(stuck)
        assert terminal.kind == "failed" and terminal.reason == "ledger_error"
        assert "database is locked" in (terminal.error or "")
        assert await committed_state(rt.ledger) == before  # readers are not blocked (WAL)
    finally:
        tick_task.cancel()
        other.execute("ROLLBACK")
        other.close()
    again = await rt.attach("quick")
    assert (await one_terminal(again)).kind == "completed"
    assert rt.ledger.stream_status(again.stream_ref) == "completed"
    await rt.aclose()
    rt.ledger.close()


# --- the writer thread must survive whatever a handler hands it --------------------------


@pytest.mark.parametrize(
    "write",
    [
        lambda tx: tx.insert_event("bad.text", {"t": "lone \ud800 surrogate"}),
        lambda tx: tx.execute(
            "INSERT INTO events (stream_ref, kind, payload, created_at) VALUES (?,?,?,?)",
            ("r", "k", 2**70, 0.0),
        ),
        lambda tx: tx.execute("INSERT INTO nope VALUES (?)", (1,)),
    ],
    ids=["lone-surrogate", "int-too-large", "sql-error"],
)
async def test_handler_write_sqlite_cannot_bind_settles_failed_and_the_ledger_keeps_working(
    write: Any,
) -> None:
    # Regression: a UnicodeEncodeError or OverflowError (not sqlite3.Error) raised by a
    # handler's write killed the ledger's writer thread; every later settlement and
    # attach then waited for ever.
    def commit(terminal: sn.Frame, tx: sn.LedgerTx) -> None:
        tx.insert_event("good.first", {"ok": 1})
        write(tx)

    async with sn.StreamRuntime() as rt:
        rt.register(sn.AttachedStreamHandler(kind="bad", run=quick, commit_terminal=commit))
        rt.register(sn.AttachedStreamHandler(kind="good", run=quick, commit_terminal=settled_event))
        s = await rt.attach("bad")
        terminal = await asyncio.wait_for(s.wait(), 10)
        assert terminal.kind == "failed" and terminal.reason == "settlement_error"
        assert "commit_terminal's writes failed" in (terminal.error or "")
        assert rt.ledger.stream_status(s.stream_ref) == "failed"
        assert len(rt.ledger.events(stream_ref=s.stream_ref)) == 0  # all or nothing
        good = await asyncio.wait_for(rt.attach("good"), 10)
        assert (await asyncio.wait_for(good.wait(), 10)).kind == "completed"
        assert rt.ledger.backend.writer.thread.is_alive()


async def test_cancel_reason_with_lone_surrogate_is_refused_not_fatal_to_the_ledger() -> None:
    # Regression: the reason was stored as given; sqlite3 could not encode it and the
    # exception killed the writer thread, so the stream never settled.
    async with sn.StreamRuntime(cancel_grace_s=0.2, force_wait_s=0.2) as rt:
        rt.register(sn.AttachedStreamHandler(kind="long", run=until_cancelled))
        s = await rt.attach("long")
        with pytest.raises(sn.InvalidFrameError, match="surrogate"):
            await s.cancel("stop \ud800")
        assert await s.cancel("stop") == "requested"
        assert (await asyncio.wait_for(s.wait(), 10)).kind == "cancelled"


async def test_recorded_frame_with_lone_surrogate_does_not_fail_other_settlements() -> None:
    # A handler's lone surrogates (a token, a progress payload) are mended to U+FFFD where
    # the frame is built (streamnb/_text.py): every stream of the batch settles and the
    # frames table stores text every reader can encode.
    async def run(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
        yield sn.output("bad \ud800", "c")
        if start:
            yield sn.progress({"p": "\udfff"})
        yield sn.completed()

    async with sn.StreamRuntime(sn.Ledger(record_frames=True)) as rt:
        rt.register(sn.AttachedStreamHandler(kind="s", run=run, commit_terminal=settled_event))
        sessions = [await rt.attach("s", i % 2) for i in range(6)]
        kinds = [(await asyncio.wait_for(s.wait(), 10)).kind for s in sessions]
        assert kinds == ["completed"] * 6
        assert rt.ledger.streams().status.tolist() == kinds
        assert len(rt.ledger.events()) == 6
        ref = sessions[1].stream_ref
        frames = rt.ledger.frames(ref)
        # the token's trailing half waited for its pair; alone at the end, it is U+FFFD
        assert frames.kind.tolist() == ["opened", "output", "progress", "output", "completed"]
        assert frames.payload[2] == {"p": "\ufffd"}
        projection = sn.project_attached_stream(rt.ledger.frame_log(ref), ref)
        assert projection.text("c") == "bad \ufffd"


# --- the event loop, observers, widgets -------------------------------------------------


async def test_blocking_handler_delays_but_does_not_break_settlement(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The runtime has no loop-lag watchdog of its own; asyncio's debug mode names the
    # culprit, because every pump task is named streamnb:<ref>:run.
    async def blocking(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
        yield sn.output("before")
        time.sleep(0.3)  # noqa: ASYNC251 - the fault: a handler that blocks the event loop
        yield sn.completed()

    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.2
    caplog.set_level(logging.WARNING, logger="asyncio")
    try:
        async with sn.StreamRuntime() as rt:
            rt.register(sn.AttachedStreamHandler(kind="blocking", run=blocking))
            rt.register(sn.AttachedStreamHandler(kind="quick", run=quick))
            t0 = time.monotonic()
            bad = await rt.attach("blocking")
            others = [await rt.attach("quick") for _ in range(5)]
            assert (await one_terminal(bad)).kind == "completed"
            for s in others:
                assert (await one_terminal(s)).kind == "completed"
            assert time.monotonic() - t0 >= 0.3  # delayed, not broken
            assert set(rt.ledger.streams().status) == {"completed"}
    finally:
        loop.set_debug(False)
    slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert any(f"streamnb:{bad.stream_ref}:run" in m for m in slow), slow


async def test_observer_that_never_reads_is_bounded_by_retention_and_does_not_block() -> None:
    async def flood(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
        for i in range(start):
            yield sn.output(f"token {i} " * 4, "c")
        yield sn.completed()

    async def peak_bytes(max_retained: int | None, n: int) -> tuple[int, int]:
        gc.collect()
        tracemalloc.start()
        try:
            async with sn.StreamRuntime(max_retained_frames=max_retained) as rt:
                rt.register(sn.AttachedStreamHandler(kind="flood", run=flood))
                never_read = await rt.attach("flood", n)
                assert (await rt.wait(never_read.stream_ref, timeout_s=30)).kind == ("completed")
                retained = len(rt.frame_log(never_read.stream_ref))
                late = [f async for f in never_read.output]  # what it gets when it reads
                proj = sn.project_attached_stream(late, never_read.stream_ref)
                assert proj.status == "completed"
                assert late[-1].seq == n + 1
                if max_retained is not None:
                    assert len(late) == max_retained + 1
                    assert len(proj.omitted) == n + 1 - max_retained
                return tracemalloc.get_traced_memory()[1], retained
        finally:
            tracemalloc.stop()

    n = 30_000
    bounded, retained = await peak_bytes(100, n)
    assert retained == 101  # 100 frames and the terminal
    unbounded, _ = await peak_bytes(None, n)
    print(
        f"peak traced memory, {n} frames never read: {bounded / 1e6:.1f} MB with "
        f"max_retained_frames=100, {unbounded / 1e6:.1f} MB without"
    )
    assert bounded < unbounded / 3


async def test_widget_comm_that_disappears_does_not_stop_settlement(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from streamnb.widget import StreamWidget

    rt = sn.StreamRuntime(cancel_grace_s=0.2, force_wait_s=0.2)
    rt.register(chatbot_handler(source=FakeTokenSource(lorem_tokens(300), rate_tokens_per_s=2000)))
    try:
        session = await rt.attach("tutorial.streaming_chatbot", {})
        widget = StreamWidget(session, flush_interval_s=0.01)
        sent = 0
        real_send = widget.send

        def send(content: Any, buffers: Any = None) -> None:
            nonlocal sent
            sent += 1
            if sent > 2:
                raise RuntimeError("Comm is closed")  # the browser side went away
            real_send(content, buffers)

        widget.send = send  # type: ignore[method-assign]
        await session.send("go")
        terminal = await session.wait(10)
        assert terminal.kind == "completed"
        assert rt.ledger.stream_status(session.stream_ref) == "completed"
        await asyncio.wait_for(widget._follower.wait(), 5)  # the batcher task ends
        await asyncio.sleep(0)
        assert widget._follower.done
        with contextlib.suppress(RuntimeError):
            widget._follower._task.result()  # retrieved: no "never retrieved" at GC
        widget.close()
        await asyncio.gather(*list(widget._tasks))
        assert not widget._tasks
    finally:
        await rt.aclose()
        rt.ledger.close()


async def test_widget_comm_that_disappears_is_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from streamnb.widget import StreamWidget

    rt = sn.StreamRuntime(cancel_grace_s=0.2, force_wait_s=0.2)
    rt.register(chatbot_handler(source=FakeTokenSource(lorem_tokens(300), rate_tokens_per_s=2000)))
    caplog.set_level(logging.ERROR, logger="asyncio")
    try:
        session = await rt.attach("tutorial.streaming_chatbot", {})
        widget = StreamWidget(session, flush_interval_s=0.01)

        def send(content: Any, buffers: Any = None) -> None:
            raise RuntimeError("Comm is closed")

        widget.send = send  # type: ignore[method-assign]
        await session.send("go")
        await session.wait(10)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(widget._follower.wait(), 5)
        assert "Comm is closed" in widget.error
        assert not [r for r in caplog.records if "Comm is closed" in str(r.exc_info)]
        widget.close()
    finally:
        await rt.aclose()
        rt.ledger.close()


# --- a provider that stalls mid-stream ---------------------------------------------------


def provider_config(server: OpenAIServer, timeout_s: float) -> ProviderConfig:
    return ProviderConfig.resolve(
        model="test-model",
        base_url=server.base_url,
        api_key_env="STREAMNB_TEST_KEY",
        max_retries=0,
        timeout_s=timeout_s,
        environ={"STREAMNB_TEST_KEY": "sk-local"},
    )


async def test_provider_that_stalls_mid_stream_fails_with_the_timeout_message(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script = Script(tokens=["one", " two", " three"], stall_after=1)
    async with sn.StreamRuntime(cancel_grace_s=2.0) as rt:
        rt.register(chat_handler("stall", provider_config(openai_server, timeout_s=0.5)))
        session = await rt.attach("stall", {})
        await session.send("hello")
        t0 = time.monotonic()
        frames = await sn.read_until_terminal(session.output, timeout_s=15)
        elapsed = time.monotonic() - t0
        terminal = frames[-1]
        assert terminal.kind == "failed" and terminal.reason == "provider_error"
        assert "did not answer in time mid-stream" in (terminal.error or "")
        assert "read timeout 0.5 s" in (terminal.error or "")
        assert 0.4 <= elapsed < 10
        text = sn.project_attached_stream(frames, session.stream_ref).text()
        assert text == "one"  # what came before the stall is kept
        assert rt.ledger.stream_status(session.stream_ref) == "failed"
        assert await openai_server.requests[0].ended.wait(5)  # the upstream was closed
