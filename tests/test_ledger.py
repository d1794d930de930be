"""The sqlite3 ledger: tables, DataFrames, file mode, recovery, read-only readers."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

import streamnb as sn
from streamnb.demo import chatbot_handler, output_only_handler


async def run_chat(rt: sn.StreamRuntime, message: str = "hi") -> sn.Session:
    session = await rt.attach("tutorial.streaming_chatbot", {})
    await session.send(message)
    await session.wait(5)
    return session


def test_empty_ledger_queries_have_their_columns():
    with sn.Ledger() as ledger:
        assert list(ledger.events().columns) == [
            "id",
            "stream_ref",
            "kind",
            "payload",
            "created_at",
        ]
        assert list(ledger.streams().columns) == [
            "stream_ref",
            "kind",
            "mode",
            "status",
            "opened_at",
            "settled_at",
            "reason",
            "terminal",
        ]
        assert list(ledger.frames().columns)[:3] == ["stream_ref", "seq", "kind"]
        assert str(ledger.events()["created_at"].dtype) == "datetime64[ns, UTC]"


async def test_streams_row_is_open_until_settled(runtime):
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    row = runtime.ledger.streams().iloc[0]
    assert row.status == "running" and pd.isna(row.settled_at)
    assert row["kind"] == "tutorial.streaming_chatbot" and row["mode"] == "bidi"
    await session.send("x")
    await session.wait(5)
    row = runtime.ledger.streams().iloc[0]
    assert row.status == "completed" and row.settled_at >= row.opened_at


async def test_events_filters_and_payload_is_parsed(runtime):
    await run_chat(runtime)
    s = await runtime.attach("tutorial.output_only", {})
    await s.wait(5)
    ev = runtime.ledger.events(kind="tutorial.output_only.completed")
    assert len(ev) == 1 and ev.stream_ref[0] == s.stream_ref
    assert isinstance(ev.payload[0], dict) and ev.payload[0]["kind"] == "completed"
    assert len(runtime.ledger.events(stream_ref=s.stream_ref)) == 1


async def test_sql_is_read_only_and_reports_errors(runtime):
    await run_chat(runtime)
    df = runtime.ledger.sql(
        "SELECT s.status, count(e.id) AS n FROM streams s LEFT JOIN events e USING (stream_ref) "
        "GROUP BY s.status"
    )
    assert df.to_dict("records") == [{"status": "completed", "n": 1}]
    with pytest.raises(sn.LedgerQueryError, match="read-only"):
        runtime.ledger.sql("DELETE FROM events")
    with pytest.raises(sn.LedgerQueryError, match="no such table"):
        runtime.ledger.sql("SELECT * FROM nope")
    assert len(runtime.ledger.events()) == 1  # nothing lost


async def test_record_frames_stores_every_outbound_frame():
    ledger = sn.Ledger(record_frames=True)
    async with sn.StreamRuntime(ledger) as rt:
        rt.register(chatbot_handler())
        session = await rt.attach("tutorial.streaming_chatbot", {})
        await session.send("hello")
        frames = await sn.read_until_terminal(session.output, timeout_s=5)
    stored = ledger.frames(session.stream_ref)
    assert stored.seq.tolist() == [f.seq for f in frames]
    assert stored.kind.tolist() == [f.kind for f in frames]
    assert ledger.frame_log(session.stream_ref) == frames
    ledger.close()


def test_insert_event_rejects_non_json_and_accepts_seed_form():
    tx = sn.LedgerTx("st_x")
    tx.insert_event({"kind": "seed.form", "payload": {"a": 1}})
    with pytest.raises(sn.LedgerError, match="JSON"):
        tx.insert_event("bad", {"x": object()})
    with pytest.raises(sn.LedgerError, match="non-empty"):
        tx.insert_event("", {})


async def test_file_ledger_survives_restart(tmp_path):
    path = tmp_path / "runs.db"
    rt = sn.StreamRuntime(sn.Ledger(path))
    rt.register(chatbot_handler())
    await run_chat(rt)
    await rt.aclose()
    rt.ledger.close()
    with sn.Ledger(path) as again:
        assert again.streams().status.tolist() == ["completed"]
        assert again.recovered == []
        assert len(again.events()) == 1


def test_file_ledger_of_a_killed_process_recovers_open_streams_as_runtime_lost(tmp_path):
    path = tmp_path / "lost.db"
    script = textwrap.dedent(f"""
        import asyncio, os, streamnb as sn
        from streamnb.demo import chatbot_handler
        async def main():
            rt = sn.StreamRuntime(sn.Ledger({str(path)!r}))
            rt.register(chatbot_handler())
            done = await rt.attach("tutorial.streaming_chatbot", {{}})
            await done.send("x"); await done.wait(5)
            await rt.attach("tutorial.streaming_chatbot", {{}})   # left open
            os._exit(9)                                           # dies without cleanup
        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
    assert proc.returncode == 9, proc.stderr
    with sn.Ledger(path) as ledger:
        streams = ledger.streams()
        assert sorted(streams.status) == ["completed", "failed"]
        lost = streams[streams.status == "failed"].iloc[0]
        assert lost.reason == "runtime_lost"
        assert ledger.recovered == [lost.stream_ref]
        assert len(ledger.events()) == 1  # the completed one's event is intact


async def test_read_only_open_of_a_live_file_ledger_takes_nothing_over(tmp_path):
    path = tmp_path / "live.db"
    writer = sn.Ledger(path)
    rt = sn.StreamRuntime(writer)
    rt.register(chatbot_handler())
    session = await rt.attach("tutorial.streaming_chatbot", {})
    reader = sn.Ledger(path, read_only=True)  # a reader while the runtime writes
    assert reader.read_only
    assert reader.streams().status.tolist() == ["running"]  # not recovered: the writer is alive
    with pytest.raises(sn.LedgerBusyError):
        sn.StreamRuntime(reader)
    await session.send("x")
    await session.wait(5)
    assert reader.streams().status.tolist() == ["completed"]
    reader.close()
    await rt.aclose()
    writer.close()


HOLD_LEDGER = """
import sys, time, streamnb as sn
ledger = sn.Ledger(sys.argv[1])
print("held", flush=True)
sys.stdin.readline()
ledger.close()
"""


def test_a_file_ledger_held_by_another_process_opens_read_only_and_errors_name_its_pid(
    tmp_path,
):
    path = tmp_path / "held.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LEDGER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        reader = sn.Ledger(path)  # another process writes it: read-only, no takeover
        assert reader.read_only
        with pytest.raises(sn.LedgerBusyError, match=f"pid {holder.pid}") as caught:
            sn.StreamRuntime(reader)
        assert caught.value.pid == holder.pid
        with pytest.raises(sn.LedgerBusyError, match=f"another live process .pid {holder.pid}"):
            sn.Ledger(path, read_only=False)
        reader.close()
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0


def test_reader_in_another_process_sees_settlements(tmp_path):
    path = tmp_path / "shared.db"

    async def write():
        rt = sn.StreamRuntime(sn.Ledger(path))
        rt.register(output_only_handler())
        for _ in range(3):
            s = await rt.attach("tutorial.output_only", {})
            await s.wait(5)
        return rt

    import asyncio

    loop = asyncio.new_event_loop()
    try:
        rt = loop.run_until_complete(write())
        code = (
            f"import streamnb as sn; l = sn.Ledger({str(path)!r}); "
            "print(l.read_only, len(l.events()), l.streams().status.tolist())"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert out.stdout.split(" ", 2)[:2] == ["True", "3"], out.stderr
        loop.run_until_complete(rt.aclose())
        rt.ledger.close()
    finally:
        loop.close()


def test_bad_paths_are_clear_errors(tmp_path):
    with pytest.raises(sn.LedgerError, match="does not exist"):
        sn.Ledger(tmp_path / "no" / "dir" / "x.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(sn.LedgerError, match="streamnb ledger"):
        sn.Ledger(junk)
    with pytest.raises(sn.LedgerError, match="no such file"):
        sn.Ledger(tmp_path / "missing.db", read_only=True)


def test_closed_ledger_raises():
    ledger = sn.Ledger()
    ledger.close()
    ledger.close()  # idempotent
    with pytest.raises(sn.LedgerError, match="closed"):
        ledger.events()


def test_dropped_unclosed_ledger_releases_its_file_lock(tmp_path):
    # Regression: a Ledger dropped without close() (a re-run notebook cell) kept its
    # writer thread and <path>.lock until the kernel restarted: every later open of the
    # file was read-only, and read_only=False raised LedgerBusyError.
    path = tmp_path / "runs.db"
    ledger = sn.Ledger(path)
    assert not ledger.read_only
    del ledger
    gc.collect()
    again = sn.Ledger(path, read_only=False)
    assert not again.read_only
    rt = sn.StreamRuntime(again)
    rt.register(output_only_handler())
    rt.run(rt.attach("tutorial.output_only", {}))
    rt.close()
    del rt, again  # a dropped runtime with its ledger releases it too
    gc.collect()
    with sn.Ledger(path, read_only=False) as third:
        assert third.streams().status.tolist() == ["completed"]


@pytest.mark.parametrize("name", ["Project #1.db", "what?.db", "100%20done.db", "a&b=c.db"])
def test_read_only_open_of_a_path_with_uri_characters_reads_that_file(tmp_path, name):
    # Regression: the read-only open built "file:<path>?mode=ro" unquoted; for
    # "Project #1.db" SQLite opened "Project " (an empty file it created in the parent
    # directory) and the read failed.
    path = tmp_path / name
    rt = sn.StreamRuntime(sn.Ledger(path))
    rt.register(output_only_handler())
    session = rt.run(rt.attach("tutorial.output_only", {}))
    rt.run(session.wait(5))
    before = sorted(p.name for p in tmp_path.iterdir())
    with sn.Ledger(path, read_only=True) as reader:
        assert reader.read_only
        assert reader.streams().status.tolist() == ["completed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no stray file created
    rt.close()
    rt.ledger.close()
