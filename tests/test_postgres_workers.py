"""Several ``streamnb serve`` processes on one PostgreSQL ledger: every stream from anywhere.

Real processes on 127.0.0.1, a real PostgreSQL (the session's cluster, a schema per
test), real clients (httpx, httpx-sse, websockets):

* two separate ``streamnb serve`` processes, A and B: a stream opened on A is read
  and resumed on B (SSE with ``Last-Event-ID``, WebSocket, ``GET /streams/{ref}``,
  ``/api/chat/{id}/stream``, Durable Streams), cancelled on B and fed input on B; the
  handler runs on A only. Then A is killed with SIGKILL mid-stream: B's observer
  gets ``failed``/``runtime_lost`` once A's lease (1 s here) ran out, and the ledger
  holds exactly one settlement per stream, none left running;
* ``streamnb serve --workers 2`` (one port, the kernel picks the worker): the same
  calls on fresh connections, then SIGKILL of the worker that runs a stream while a
  client reads it; the client resumes with ``Last-Event-ID`` and sees the end once,
  and the supervisor starts a new worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from tests._durable import Served, streamnb_serve

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent
LEASE_S = 1.0
#: how long a client waits for a frame it is owed (a bound, not a speed target), seconds
OWED_S = 30.0


@contextlib.contextmanager
def serve(dsn: str, *args: str) -> Iterator[Served]:
    """``streamnb serve`` on a free port with the test handlers and ``dsn``'s ledger."""
    with streamnb_serve(
        "--ledger", dsn, "--lease-s", str(LEASE_S), "--handlers", "tests._pg_handlers:handlers",
        "--chat-kind", "test.slow_chat", *args,
    ) as served:  # fmt: skip
        yield served


async def open_stream(client: httpx.AsyncClient, kind: str, payload: Any = None) -> str:
    response = await client.post("/streams", json={"kind": kind, "payload": payload})
    assert response.status_code == 201, response.text
    ref: str = response.json()["stream_ref"]
    return ref


async def read_sse(
    base: str,
    path: str,
    *,
    last_id: int | None = None,
    stop_after_seq: int | None = None,
) -> list[dict[str, Any]]:
    """Frames of one SSE response (a fresh connection), until it ends or ``stop_after_seq``."""
    headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
    frames: list[dict[str, Any]] = []
    async with (
        httpx.AsyncClient(base_url=base, timeout=OWED_S) as client,
        aconnect_sse(client, "GET", path, headers=headers) as source,
    ):
        assert source.response.status_code == 200, source.response.status_code
        async for event in source.aiter_sse():
            frame = json.loads(event.data)
            assert int(event.id) == frame["seq"]
            frames.append(frame)
            if stop_after_seq is not None and frame["seq"] >= stop_after_seq:
                break
    return frames


def rows(dsn: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query, params).fetchall()


def check_settled_once(dsn: str) -> dict[str, tuple[str, str | None]]:
    """Every stream settled (none running), each with exactly one terminal frame, last."""
    streams = {
        r[0]: (r[1], r[2]) for r in rows(dsn, "SELECT stream_ref, status, reason FROM streams")
    }
    assert streams and all(status != "running" for status, _ in streams.values()), streams
    log: dict[str, list[tuple[int, str]]] = {}
    for ref, seq, kind in rows(dsn, "SELECT stream_ref, seq, kind FROM frame_log ORDER BY 1, 2"):
        log.setdefault(ref, []).append((seq, kind))
    for ref, (status, _) in streams.items():
        frames = log.get(ref, [])
        assert [s for s, _ in frames] == list(range(len(frames))), (ref, frames)
        terminals = [k for _, k in frames if k in ("completed", "cancelled", "failed")]
        assert terminals == [status] and frames[-1][1] == status, (ref, frames)
    return streams


async def wait_for(predicate: Any, timeout_s: float = OWED_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_two_serve_processes_share_every_stream_and_survive_a_sigkill(pg_dsn: str) -> None:
    with serve(pg_dsn) as a, serve(pg_dsn) as b:
        ca = httpx.AsyncClient(base_url=a.url, timeout=OWED_S)
        cb = httpx.AsyncClient(base_url=b.url, timeout=OWED_S)
        try:
            # --- read and resume on B a stream A runs -------------------------------------
            ticker = await open_stream(ca, "test.ticker", {"n": 30, "every_s": 0.02})
            status = (await cb.get(f"/streams/{ticker}")).json()
            assert status["kind"] == "test.ticker" and status["runtime_id"] != status["served_by"]
            head = await read_sse(b.url, f"/streams/{ticker}/events", stop_after_seq=5)
            tail = await read_sse(b.url, f"/streams/{ticker}/events", last_id=5)
            seqs = [f["seq"] for f in head + tail]
            assert seqs == list(range(len(seqs))) and tail[-1]["kind"] == "completed"
            assert head + tail == await read_sse(a.url, f"/streams/{ticker}/events")
            resumed_after_end = await cb.get(
                f"/streams/{ticker}/events", headers={"Last-Event-ID": str(seqs[-1])}
            )
            assert resumed_after_end.status_code == 204
            durable = (
                await cb.get(f"/v1/stream/streamnb/{ticker}", params={"offset": "-1"})
            ).json()
            assert durable == head + tail

            # --- input and the end of a bidi stream, from B (HTTP and WebSocket) -----------
            echo = await open_stream(ca, "test.echo")
            sent = await cb.post(f"/streams/{echo}/input", json={"payload": "one", "seq": 0})
            assert sent.json() == {"result": "accepted"}
            again = await cb.post(f"/streams/{echo}/input", json={"payload": "one", "seq": 0})
            assert again.json() == {"result": "duplicate"}
            ws_url = b.url.replace("http", "ws") + f"/streams/{echo}/ws"
            async with connect(ws_url) as ws:
                got: list[dict[str, Any]] = []
                while not any(m.get("payload") == "echo one" for m in got):
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), OWED_S)))
                await ws.send(json.dumps({"type": "input", "payload": "bye", "seq": 1}))
                while got[-1].get("kind") != "completed":
                    got.append(json.loads(await asyncio.wait_for(ws.recv(), OWED_S)))
            frames = [m for m in got if "kind" in m]
            assert [f["seq"] for f in frames] == list(range(len(frames)))
            replies = [m for m in got if m.get("type") == "input_result"]
            assert replies == [{"type": "input_result", "result": "accepted", "seq": 1}]

            # --- cancel on B: both processes' observers see the same end -------------------
            victim = await open_stream(ca, "test.ticker", {"n": 2000, "every_s": 0.02})
            on_a = asyncio.ensure_future(read_sse(a.url, f"/streams/{victim}/events"))
            on_b = asyncio.ensure_future(read_sse(b.url, f"/streams/{victim}/events"))
            await asyncio.sleep(0.3)
            cancel = await cb.post(f"/streams/{victim}/cancel", json={"reason": "stop from B"})
            assert cancel.json() == {"result": "requested"}
            seen_a, seen_b = await asyncio.wait_for(asyncio.gather(on_a, on_b), OWED_S)
            assert seen_a == seen_b
            assert (seen_b[-1]["kind"], seen_b[-1]["reason"]) == ("cancelled", "stop from B")

            # --- the AI SDK's resume and stop of a chat A answers, on B --------------------
            chat = asyncio.ensure_future(
                ca.post(
                    "/api/chat",
                    json={
                        "id": "chat-1",
                        "messages": [
                            {"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
                        ],
                    },
                )
            )

            first = ""
            deadline = time.monotonic() + OWED_S
            while not first:  # until A has named the chat's stream in the ledger
                assert time.monotonic() < deadline
                async with cb.stream("GET", "/api/chat/chat-1/stream") as resumed:
                    if resumed.status_code == 200:
                        assert resumed.headers["x-vercel-ai-ui-message-stream"] == "v1"
                        async for line in resumed.aiter_lines():  # the first event's data
                            if line.startswith("data:"):
                                first = line
                                break
                        continue
                await asyncio.sleep(0.05)
            assert '"type":"start"' in first
            stop = await cb.post("/api/chat/chat-1/stop")
            assert stop.json()["result"] in ("requested", "already_settled")
            assert (await chat).status_code == 200

            # --- SIGKILL A mid-stream: B's observer sees runtime_lost once -----------------
            doomed = await open_stream(ca, "test.ticker", {"n": 5000, "every_s": 0.02})
            watcher = asyncio.ensure_future(read_sse(b.url, f"/streams/{doomed}/events"))
            await asyncio.sleep(0.5)
            a.proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            a.proc.wait()
            seen = await asyncio.wait_for(watcher, OWED_S)
            print(f"runtime_lost reached B {time.monotonic() - killed_at:.2f} s after SIGKILL")
            assert (seen[-1]["kind"], seen[-1]["reason"]) == ("failed", "runtime_lost")
            assert [f["seq"] for f in seen] == list(range(len(seen)))
            # a client reconnecting to B after the end gets the rest once
            last = seen[-3]["seq"]
            rest = await read_sse(b.url, f"/streams/{doomed}/events", last_id=last)
            assert rest == seen[-2:]
        finally:
            await ca.aclose()
            await cb.aclose()
        assert "Traceback" not in b.output(), b.output()
    streams = check_settled_once(pg_dsn)
    assert streams[ticker] == ("completed", None)
    assert streams[echo] == ("completed", None)
    assert streams[victim] == ("cancelled", "stop from B")
    assert streams[doomed] == ("failed", "runtime_lost")
    # one settlement each: the handlers' events once per stream that settled on A
    events = rows(pg_dsn, "SELECT stream_ref, count(*) FROM events GROUP BY 1")
    assert all(n == 1 for _, n in events) and {r for r, _ in events} >= {ticker, echo, victim}


async def test_two_workers_on_one_port_serve_every_stream_and_replace_a_killed_one(
    pg_dsn: str,
) -> None:
    with serve(pg_dsn, "--workers", "2") as served:
        base = served.url

        async def fresh(method: str, path: str, **kw: Any) -> httpx.Response:
            async with httpx.AsyncClient(base_url=base, timeout=OWED_S) as client:
                return await client.request(method, path, **kw)

        # streams opened on whichever worker; every call on a fresh connection
        tickers = [
            (
                await fresh("POST", "/streams", json={"kind": "test.ticker", "payload": {"n": 25}})
            ).json()["stream_ref"]
            for _ in range(4)
        ]
        for ref in tickers:
            head = await read_sse(base, f"/streams/{ref}/events", stop_after_seq=3)
            tail = await read_sse(base, f"/streams/{ref}/events", last_id=3)
            seqs = [f["seq"] for f in head + tail]
            assert seqs == list(range(len(seqs))) and tail[-1]["kind"] == "completed"
        echo = (await fresh("POST", "/streams", json={"kind": "test.echo"})).json()["stream_ref"]
        for i, word in enumerate(["a", "b", "bye"]):
            sent = await fresh("POST", f"/streams/{echo}/input", json={"payload": word, "seq": i})
            assert sent.json() == {"result": "accepted"}
        frames = await read_sse(base, f"/streams/{echo}/events")
        assert [f.get("payload") for f in frames if f["kind"] == "output"] == ["echo a", "echo b"]
        cancelled = (
            await fresh("POST", "/streams", json={"kind": "test.ticker", "payload": {"n": 9999}})
        ).json()["stream_ref"]
        assert (await fresh("POST", f"/streams/{cancelled}/cancel", json={})).json()["result"] in (
            "requested",
        )
        ended = await read_sse(base, f"/streams/{cancelled}/events")
        assert ended[-1]["kind"] == "cancelled"
        served_by = {
            (await fresh("GET", f"/streams/{ref}")).json()["runtime_id"] for ref in tickers
        }
        workers = {r[0]: r[1] for r in rows(pg_dsn, "SELECT runtime_id, pid FROM runtimes")}

        # SIGKILL the worker running a stream while a client reads it
        doomed = (
            await fresh("POST", "/streams", json={"kind": "test.ticker", "payload": {"n": 9999}})
        ).json()["stream_ref"]
        owner = (await fresh("GET", f"/streams/{doomed}")).json()["runtime_id"]
        ((pid,),) = rows(pg_dsn, "SELECT pid FROM runtimes WHERE runtime_id = %s", (owner,))
        seen: list[dict[str, Any]] = []
        reader = asyncio.ensure_future(read_sse(base, f"/streams/{doomed}/events"))
        await asyncio.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        try:
            seen = await asyncio.wait_for(reader, OWED_S)
        except (httpx.HTTPError, httpx_sse_error()):  # its connection was on the killed worker
            seen = []
        while not seen or seen[-1]["kind"] not in ("completed", "cancelled", "failed"):
            last = seen[-1]["seq"] if seen else None
            seen += await read_sse(base, f"/streams/{doomed}/events", last_id=last)
        assert (seen[-1]["kind"], seen[-1]["reason"]) == ("failed", "runtime_lost")
        assert [f["seq"] for f in seen] == list(range(len(seen)))

        async def replaced() -> bool:  # the supervisor started another worker
            live = rows(pg_dsn, "SELECT pid FROM runtimes WHERE pid <> %s", (pid,))
            return bool(live) and "starting another" in served.output()

        await wait_for(replaced)
        again = await fresh("POST", "/streams", json={"kind": "test.ticker", "payload": {"n": 3}})
        done = await read_sse(base, f"/streams/{again.json()['stream_ref']}/events")
        assert done[-1]["kind"] == "completed"
    print(f"workers seen: {sorted(workers.values())}; tickers ran on {len(served_by)} of them")
    streams = check_settled_once(pg_dsn)
    assert streams[doomed] == ("failed", "runtime_lost")
    assert sum(1 for status, _ in streams.values() if status == "completed") >= 6


async def test_a_connection_dropped_on_a_and_resumed_on_b_keeps_an_abort_stream_running(
    pg_dsn: str,
) -> None:
    """Parking across workers: the reconnection on B counts as the stream's observer at A."""
    grace = ("--reconnect-grace-s", "0.5")
    with serve(pg_dsn, *grace) as a, serve(pg_dsn, *grace) as b:
        async with httpx.AsyncClient(base_url=a.url, timeout=OWED_S) as ca:
            # dropped on A, resumed on B: A's parked observer expires, the stream goes on
            moved = await open_stream(ca, "test.ticker_abort", {"n": 80, "every_s": 0.03})
            head = await read_sse(a.url, f"/streams/{moved}/events?observer=o1", stop_after_seq=3)
            tail = await read_sse(
                b.url, f"/streams/{moved}/events?observer=o1", last_id=head[-1]["seq"]
            )
            seqs = [f["seq"] for f in head + tail]
            assert seqs == list(range(len(seqs)))
            assert tail[-1]["kind"] == "completed", tail[-1]  # outlived A's grace (0.5 s)
            # dropped on A and resumed nowhere: after the grace on_detach="abort" ends it
            alone = await open_stream(ca, "test.ticker_abort", {"n": 2000, "every_s": 0.03})
            await read_sse(a.url, f"/streams/{alone}/events?observer=o2", stop_after_seq=3)

            async def aborted() -> bool:
                status = rows(pg_dsn, "SELECT status FROM streams WHERE stream_ref = %s", (alone,))
                return status == [("cancelled",)]

            await wait_for(aborted)
        assert "Traceback" not in a.output() + b.output(), a.output() + b.output()
    streams = check_settled_once(pg_dsn)
    assert streams[moved] == ("completed", None)


def httpx_sse_error() -> type[Exception]:
    from httpx_sse import SSEError

    return SSEError


def test_serve_refuses_workers_without_a_shared_ledger(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streamnb.cli", "serve", "--workers", "2",
         "--ledger", str(tmp_path / "l.db")],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--workers needs a shared ledger: --ledger postgresql://" in proc.stderr


def test_serve_with_an_unreachable_database_is_one_clear_line(pg_cluster: Any) -> None:
    dsn = f"postgresql://someone:s3cr3t-pw@127.0.0.1:{free_port()}/nowhere"
    proc = subprocess.run(
        [sys.executable, "-m", "streamnb.cli", "serve", "--ledger", dsn],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "cannot reach the PostgreSQL ledger on host '127.0.0.1'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "s3cr3t-pw" not in proc.stderr + proc.stdout


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
