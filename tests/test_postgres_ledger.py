"""What only a shared PostgreSQL ledger does: leases, a server restart, credentials, guards.

The contract both backends share is in ``test_ledger.py``, ``test_runtime.py`` and the
server suites (parametrized); here:

* leases: several survivors race to recover a dead runtime and each of its streams
  settles ``runtime_lost`` exactly once; a runtime cut off for longer than its lease
  finds its streams settled elsewhere, stops their handlers and announces that end;
* a restart of the PostgreSQL server mid-run: the runtime reconnects, settlements that
  could not commit are committed once it is back and announced only then, streams
  other processes follow arrive gap-free, reads in between fail clearly;
* credentials: the DSN's password is in no ``repr``, message, log line or table;
* an unreachable server is a clear error naming the host;
* a handler's ``tx.execute`` cannot change the runtime's tables or end the
  transaction; ``sql()`` runs one statement, read-only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import streamnb as sn
from streamnb._ledger.lease import recover_expired
from streamnb.demo import chatbot_handler
from tests._postgres import Cluster

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent


def gated_handler(kind: str = "t.gated") -> tuple[sn.AttachedStreamHandler, asyncio.Event]:
    """Outputs one token, then waits for ``gate`` before completing (or a cancel)."""
    gate = asyncio.Event()

    async def run(start: Any, _input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
        yield sn.output("working ")
        waiting = asyncio.ensure_future(gate.wait())
        cancelled = asyncio.ensure_future(ctx.signal.wait())
        try:
            await asyncio.wait({waiting, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            cancelled.cancel()
        if ctx.signal.aborted:
            yield sn.cancelled(ctx.signal.reason or "cancelled")
            return
        yield sn.output("done")
        yield sn.completed()

    def commit(terminal: sn.Frame, tx: sn.LedgerTx) -> None:
        tx.insert_event(f"{kind}.settled", {"kind": terminal.kind})

    return sn.AttachedStreamHandler(kind=kind, run=run, commit_terminal=commit), gate


def committing(commit: Any) -> sn.AttachedStreamHandler:
    """``t.commit``: one output, completed; its settlement runs ``commit``."""

    async def run(start: Any, _input: Any, _ctx: sn.StreamContext) -> AsyncIterator[Any]:
        yield sn.output("hello")
        yield sn.completed()

    return sn.AttachedStreamHandler(kind="t.commit", run=run, commit_terminal=commit)


def status_of(dsn: str, ref: str) -> tuple[str, str | None]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT status, reason FROM streams WHERE stream_ref = %s", (ref,)
        ).fetchone()
    assert row is not None
    return row[0], row[1]


# --- leases --------------------------------------------------------------------------------


def test_racing_survivors_settle_a_dead_runtimes_streams_exactly_once(pg_dsn: str) -> None:
    script = (
        "import asyncio, os, streamnb as sn\n"
        "from streamnb.demo import chatbot_handler\n"
        "async def main():\n"
        f"    rt = sn.StreamRuntime(sn.Ledger({pg_dsn!r}, lease_s=0.5))\n"
        "    rt.register(chatbot_handler())\n"
        "    for _ in range(20):\n"
        "        await rt.attach('tutorial.streaming_chatbot', {})\n"
        "    print('OPEN', flush=True)\n"
        "    os._exit(9)\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 9 and b"OPEN" in proc.stdout, proc.stderr
    time.sleep(0.6)  # the lease runs out; now several processes race to recover it
    racers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"import streamnb as sn; l = sn.Ledger({pg_dsn!r}); "
                "print(len(l.recovered), flush=True); l.close()",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    counts = [int(p.communicate(timeout=60)[0].strip()) for p in racers]
    assert sum(counts) == 20, counts  # each stream recovered by exactly one of them
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT status, reason FROM streams").fetchall()
        terminals = conn.execute(
            "SELECT stream_ref, count(*) FROM frame_log WHERE kind = 'failed' GROUP BY 1"
        ).fetchall()
        runtimes = conn.execute("SELECT count(*) FROM runtimes").fetchone()
    assert rows == [("failed", "runtime_lost")] * 20
    assert len(terminals) == 20 and all(n == 1 for _, n in terminals)
    assert runtimes == (0,)


async def test_a_runtime_cut_off_past_its_lease_announces_the_end_settled_elsewhere(
    pg_dsn: str,
) -> None:
    handler, _gate = gated_handler()
    ledger = sn.Ledger(pg_dsn, lease_s=1.0)
    async with sn.StreamRuntime(ledger, cancel_grace_s=0.2, force_wait_s=0.2) as rt:
        rt.register(handler)
        session = await rt.attach("t.gated")
        first_lease = rt.runtime_id
        assert first_lease is not None
        other = sn.Ledger(pg_dsn, lease_s=1.0)  # a live survivor
        try:
            # what a survivor does when this process was cut off for longer than its lease:
            # the lease is taken (deleted) and its streams settled runtime_lost
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute("DELETE FROM runtimes WHERE runtime_id = %s", (first_lease,))
                refs, _ = recover_expired(conn, ledger.backend.channel, orphans=True)
            assert refs == [session.stream_ref]
            terminal = await asyncio.wait_for(session.wait(), 30)
            assert (terminal.kind, terminal.reason) == ("failed", "runtime_lost")
            assert terminal.seq == session.frame_log()[-1].seq  # this log's own order
            assert status_of(pg_dsn, session.stream_ref) == ("failed", "runtime_lost")
            assert ledger.events().empty  # the handler's commit never ran: settled elsewhere
            # the runtime goes on under a new lease
            again = await rt.attach("t.gated")
            assert rt.runtime_id not in (None, first_lease)
            await again.cancel("done")
            assert (await asyncio.wait_for(again.wait(), 10)).kind == "cancelled"
        finally:
            other.close()
    ledger.close()


# --- a server restart ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Cluster]:
    """A PostgreSQL server of this module's own, to restart without disturbing others."""
    cluster = Cluster({"fsync": "off"})
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def test_a_postgres_restart_mid_run_loses_nothing_and_announces_only_commits(
    own_cluster: Cluster,
) -> None:
    dsn = own_cluster.fresh_dsn()
    handler, gate = gated_handler()
    writer = sn.Ledger(dsn, record_frames=True)
    reader = sn.Ledger(dsn)
    rt = sn.StreamRuntime(writer)
    follower = sn.StreamRuntime(reader)
    rt.register(handler)
    try:
        before = await rt.attach("t.gated")
        gate.set()
        assert (await asyncio.wait_for(before.wait(), 10)).kind == "completed"
        gate.clear()
        sessions = [await rt.attach("t.gated") for _ in range(5)]
        mirrors = [await follower.reattach(s.stream_ref) for s in sessions]  # other "process"
        down = time.monotonic()
        own_cluster.stop_server("fast")
        try:
            gate.set()  # the handlers end while the database is down
            await asyncio.sleep(1.0)
            assert all(s.terminal is None for s in sessions)  # nothing announced: not committed
            with pytest.raises(sn.LedgerUnavailableError, match=r"host '127\.0\.0\.1'"):
                await writer.asql("SELECT count(*) FROM streams", timeout_s=5)
        finally:
            own_cluster.start_server()
        up = time.monotonic()
        ends = [await asyncio.wait_for(s.wait(), 60) for s in sessions]
        assert [e.kind for e in ends] == ["completed"] * 5
        for mirror, session in zip(mirrors, sessions, strict=True):
            frames = await asyncio.wait_for(sn.read_until_terminal(mirror.output), 60)
            assert frames == session.frame_log()  # every frame, once, across the restart
        print(f"outage {up - down:.2f} s; settled after it")
        streams = await writer.astreams()
        assert streams.status.tolist() == ["completed"] * 6
        events = await writer.aevents()
        assert sorted(events.stream_ref) == sorted(
            [before.stream_ref] + [s.stream_ref for s in sessions]
        )  # one settlement each
        assert len(await writer.aframes()) == 6 * 4
    finally:
        await follower.aclose()
        await rt.aclose()
        reader.close()
        writer.close()


# --- credentials ---------------------------------------------------------------------------


async def test_the_password_is_in_no_repr_message_log_or_table(
    pg_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    password = pg_cluster.password
    schema_dsn = pg_cluster.fresh_dsn()
    options = schema_dsn.split("?", 1)[1]
    dsn = pg_cluster.dsn(user=pg_cluster.password_role, password=password) + "?" + options
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    ledger = sn.Ledger(dsn, record_frames=True)
    async with sn.StreamRuntime(ledger) as rt:
        rt.register(chatbot_handler())
        session = await rt.attach("tutorial.streaming_chatbot", {})
        await session.send("hello")
        await session.wait(10)
        texts += [repr(ledger), str(ledger.dsn), repr(rt), repr(ledger.backend.where)]
        for bad in ("SELECT * FROM nope", "DELETE FROM events"):
            with pytest.raises(sn.LedgerQueryError) as error:
                ledger.sql(bad)
            texts.append(str(error.value))
    wrong = dsn.replace(password, "not-" + password[4:])
    with pytest.raises(sn.LedgerUnavailableError) as refused:
        sn.Ledger(wrong)
    texts.append(str(refused.value))
    assert "password authentication failed" in str(refused.value)
    unreachable = dsn.replace(f":{pg_cluster.port}/", ":1/")
    with pytest.raises(sn.LedgerUnavailableError) as unreached:
        sn.Ledger(unreachable)
    texts.append(str(unreached.value))
    serve = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "streamnb.cli", "serve", "--ledger", unreachable],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    texts += [serve.stdout, serve.stderr]
    texts += [r.getMessage() for r in caplog.records]
    with psycopg.connect(schema_dsn) as conn:  # every table of the ledger, every cell
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            ).fetchall()
        ]
        for table in tables:
            texts += [repr(row) for row in conn.execute(f"SELECT * FROM {table}").fetchall()]
    ledger.close()
    assert len(tables) >= 8 and any("hello" in t for t in texts)  # the dump has content
    leaked = [t for t in texts if password in t]
    assert not leaked, leaked


def test_an_unreachable_server_is_a_clear_error_naming_the_host() -> None:
    with pytest.raises(sn.LedgerUnavailableError) as error:
        sn.Ledger("postgresql://app:hunter2@127.0.0.1:1/ledger")
    message = str(error.value)
    assert "cannot reach the PostgreSQL ledger on host '127.0.0.1'" in message
    assert "postgresql://app@127.0.0.1:1/ledger" in message and "hunter2" not in message
    assert error.value.host == "127.0.0.1"
    assert isinstance(error.value, sn.LedgerError)


def test_a_postgres_url_without_psycopg_says_how_to_install_it(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "import streamnb as sn\n"
        "try:\n"
        "    sn.Ledger('postgresql://u:pw@localhost/db')\n"
        "except sn.LedgerError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "pip install 'streamnb[postgres]'" in out.stdout, out.stderr


# --- guards --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM streams",
        "UPDATE events SET kind = 'x'",
        "INSERT INTO frame_log (stream_ref, seq, kind, at, recorded) VALUES ('x', 0, 'x', 0, true)",
        "DELETE FROM runtimes",
        "COMMIT",
        "SAVEPOINT x",
        "SET ROLE postgres",
    ],
)
async def test_handler_sql_cannot_touch_the_runtimes_tables_or_the_transaction(
    pg_dsn: str, statement: str
) -> None:
    def commit(terminal: sn.Frame, tx: sn.LedgerTx) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS notes (ref text, kind text)")
        tx.execute("INSERT INTO notes VALUES (?, ?)", (terminal.stream_ref, terminal.kind))
        tx.execute(statement)

    ledger = sn.Ledger(pg_dsn)
    async with sn.StreamRuntime(ledger) as rt:
        rt.register(committing(commit))
        session = await rt.attach("t.commit")
        terminal = await session.wait(10)
        assert (terminal.kind, terminal.reason) == ("failed", "settlement_error")
        assert "commit_terminal's writes failed" in (terminal.error or "")
        # nothing of the handler's transaction stayed, the runtime's record did
        assert ledger.stream_status(session.stream_ref) == "failed"
        assert ledger.sql("SELECT count(*) AS n FROM runtimes").n.tolist() == [1]
        with pytest.raises(sn.LedgerQueryError):
            ledger.sql("SELECT count(*) FROM notes")  # created in the rolled-back savepoint
    ledger.close()


async def test_handler_sql_writes_its_own_tables_in_the_settlement(pg_dsn: str) -> None:
    def commit(terminal: sn.Frame, tx: sn.LedgerTx) -> None:
        tx.execute("CREATE TABLE IF NOT EXISTS notes (ref text, kind text, note text)")
        tx.execute(
            "INSERT INTO notes VALUES (?, ?, '100% done')", (terminal.stream_ref, terminal.kind)
        )

    ledger = sn.Ledger(pg_dsn)
    async with sn.StreamRuntime(ledger) as rt:
        rt.register(committing(commit))
        session = await rt.attach("t.commit")
        assert (await session.wait(10)).kind == "completed"
    notes = ledger.sql("SELECT ref, kind, note FROM notes")
    assert notes.to_dict("records") == [
        {"ref": session.stream_ref, "kind": "completed", "note": "100% done"}
    ]
    ledger.close()


def test_sql_runs_one_read_only_statement(pg_dsn: str) -> None:
    with sn.Ledger(pg_dsn) as ledger:
        for bad in (
            "SELECT 1; DELETE FROM events",
            "DELETE FROM events",
            "CREATE TABLE x (a int)",
            "SELECT nextval('events_id_seq')",
        ):
            with pytest.raises(sn.LedgerQueryError):
                ledger.sql(bad)
        assert ledger.sql("SELECT count(*) AS n FROM events").n.tolist() == [0]
        with pytest.raises(sn.LedgerTimeoutError, match=r"stopped after 0\.3 s"):
            ledger.sql("SELECT pg_sleep(5)", timeout_s=0.3)
        assert ledger.sql("SELECT 1 AS one").one.tolist() == [1]


def test_a_newer_schema_version_is_refused(pg_dsn: str) -> None:
    sn.Ledger(pg_dsn).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE streamnb_schema SET version = version + 1")
    with pytest.raises(sn.LedgerError, match="newer than this streamnb knows"):
        sn.Ledger(pg_dsn)


def test_concurrent_first_opens_create_the_tables_once(pg_dsn: str) -> None:
    code = f"import streamnb as sn; sn.Ledger({pg_dsn!r}).close(); print('ok')"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    assert [p.communicate(timeout=60)[0].strip() for p in procs] == ["ok"] * 4
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT version FROM streamnb_schema").fetchall() == [(1,)]


# --- two "kernels": serve_in_background twice on one database ------------------------------


async def test_serve_in_background_in_two_kernels_shares_every_stream(pg_dsn: str) -> None:
    """Two runtimes with ledgers of their own (as two kernels would have) on one database,
    each serving in the background: a stream opened on A is read, resumed, fed and
    cancelled through B's server; only A runs it."""
    import httpx
    from httpx_sse import aconnect_sse

    from streamnb.server import serve_in_background

    handler, _gate = gated_handler()
    ledgers = [sn.Ledger(pg_dsn), sn.Ledger(pg_dsn)]
    a, b = (sn.StreamRuntime(ledger) for ledger in ledgers)
    a.register(handler)
    b.register(handler)
    a.register(chatbot_handler())
    b.register(chatbot_handler())
    server_a = await serve_in_background(a)
    server_b = await serve_in_background(b)

    async def sse(ref: str, last_id: int | None = None, stop_kind: str | None = None) -> list[Any]:
        headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
        frames: list[Any] = []
        async with (
            httpx.AsyncClient(base_url=server_b.url, timeout=30) as client,
            aconnect_sse(client, "GET", f"/streams/{ref}/events", headers=headers) as source,
        ):
            async for event in source.aiter_sse():
                frames.append(sn.Frame.from_dict(json.loads(event.data)))
                if stop_kind is not None and frames[-1].kind == stop_kind:
                    break
        return frames

    try:
        async with (
            httpx.AsyncClient(base_url=server_a.url, timeout=30) as ca,
            httpx.AsyncClient(base_url=server_b.url, timeout=30) as cb,
        ):
            # a bidi chat opened on A, fed and read on B
            opened = await ca.post("/streams", json={"kind": "tutorial.streaming_chatbot"})
            chat = opened.json()["stream_ref"]
            sent = await cb.post(f"/streams/{chat}/input", json={"payload": "hello", "seq": 0})
            assert sent.json() == {"result": "accepted"}
            head = await sse(chat, stop_kind="output")
            tail = await sse(chat, last_id=head[-1].seq, stop_kind="progress")
            assert [f.seq for f in head + tail] == list(range(len(head + tail)))
            assert "".join(str(f.payload) for f in head + tail if f.kind == "output") == (
                "streamnb reply to hello"
            )
            # a stream opened on A, cancelled through B
            gated = (await ca.post("/streams", json={"kind": "t.gated"})).json()["stream_ref"]
            watcher = asyncio.ensure_future(sse(gated))
            await asyncio.sleep(0.2)
            cancel = await cb.post(f"/streams/{gated}/cancel", json={"reason": "from B"})
            assert cancel.json() == {"result": "requested"}
            seen = await asyncio.wait_for(watcher, 30)
            assert (seen[-1].kind, seen[-1].reason) == ("cancelled", "from B")
            status = (await cb.get(f"/streams/{gated}")).json()
            assert status["runtime_id"] == a.runtime_id != b.runtime_id
            await ca.post(f"/streams/{chat}/cancel", json={})
    finally:
        await server_b.aclose()
        await server_a.aclose()
        await b.aclose()
        await a.aclose()
        for ledger in ledgers:
            ledger.close()
    streams = sn.Ledger(pg_dsn)
    try:
        rows = streams.streams()
        assert dict(zip(rows.stream_ref, rows.status, strict=True))[gated] == "cancelled"
        assert (rows.status != "running").all()
        assert streams.events().stream_ref.tolist().count(gated) == 1  # settled once, on A
    finally:
        streams.close()


async def test_a_failing_settlement_in_a_group_commit_leaves_the_others_committed(
    pg_dsn: str,
) -> None:
    """The writer runs a batch without savepoints first; when one settlement's handler SQL
    fails, the batch runs again with them: only that one is ``settlement_error``."""

    def commit(terminal: sn.Frame, tx: sn.LedgerTx) -> None:
        tx.insert_event("t.note", {"ref": terminal.stream_ref})
        tx.execute("CREATE TABLE IF NOT EXISTS notes (ref text)")
        tx.execute("INSERT INTO notes VALUES (?)", (terminal.stream_ref,))
        if int(terminal.stream_ref[-1], 16) % 3 == 0:
            tx.execute("SELECT 1/0")

    ledger = sn.Ledger(pg_dsn)
    async with sn.StreamRuntime(ledger) as rt:
        rt.register(committing(commit))
        sessions = await asyncio.gather(*(rt.attach("t.commit") for _ in range(30)))
        ends = await asyncio.gather(*(s.wait(30) for s in sessions))
    bad = {s.stream_ref for s in sessions if int(s.stream_ref[-1], 16) % 3 == 0}
    assert bad and len(bad) < 30
    for session, end in zip(sessions, ends, strict=True):
        failed = session.stream_ref in bad
        expected = ("failed", "settlement_error") if failed else ("completed", None)
        assert (end.kind, end.reason) == expected
        assert status_of(pg_dsn, session.stream_ref) == expected
    notes = set(ledger.sql("SELECT ref FROM notes").ref)
    events = set(ledger.events().stream_ref)
    good = {s.stream_ref for s in sessions} - bad
    assert notes == good and events == good  # the failed ones' writes rolled back, alone
    ledger.close()
