"""PostgreSQL ledger benchmarks (issue 13). Prints one JSON line per figure.

    python -m bench.bench_postgres [--quick]
    STREAMNB_BENCH_DSN=postgresql://... python -m bench.bench_postgres   # your own server

Without ``STREAMNB_BENCH_DSN`` a throwaway cluster is started (``initdb`` in a
temporary directory, on 127.0.0.1 and a free port, default durability settings:
``fsync`` and ``synchronous_commit`` on) and stopped at the end. Without psycopg or
PostgreSQL's server binaries the suite prints why and produces no figure.

Figures, each against a baseline measured in the same run:

* pg.settlements    settlements/s of 8 writer processes, each a ``StreamRuntime`` on
                    one ``Ledger("postgresql://...")`` (every stream opened, then
                    settled with an event, 50 open at a time per process), vs 8 processes of
                    raw psycopg doing the same inserts and updates (the stream row, its
                    ``opened`` and terminal frames, the update, the event) with one commit
                    per settlement. Target: >= 0.5x.
* pg.frame_latency  median ms from a frame's ``at`` (appended by the runtime that runs
                    the stream, in ``streamnb serve`` process A) to its arrival at an SSE
                    reader of ``streamnb serve`` process B; baseline: a reader of the
                    same stream on A. Target: median < 20 ms.
* pg.cancel_latency median ms from ``POST /streams/{ref}/cancel`` on B to the terminal
                    frame at an SSE observer on B, the stream running on A; baseline:
                    the cancel and the observer on A. Target: median < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from bench.common import Figure, emit

ROOT = Path(__file__).resolve().parent.parent
WRITERS = 8
#: streams each writer process keeps open at once
CONCURRENCY = 50
#: how long a client waits for something it is owed (a bound, not a target), seconds
OWED_S = 60.0


# --- the database -----------------------------------------------------------------------------


def skip_reason() -> str | None:
    """Why the suite cannot run here (None: it can)."""
    if os.environ.get("STREAMNB_BENCH_DSN"):
        return None
    from tests._postgres import unavailable_reason

    return unavailable_reason()


@contextlib.contextmanager
def database() -> Iterator[Any]:
    """A callable returning the DSN of a fresh schema (own server, or STREAMNB_BENCH_DSN)."""
    given = os.environ.get("STREAMNB_BENCH_DSN")
    if given:
        import psycopg

        def fresh_given() -> str:
            schema = "bench_" + secrets.token_hex(5)
            with psycopg.connect(given, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            sep = "&" if "?" in given else "?"
            return f"{given}{sep}options=-csearch_path%3D{schema}"

        yield fresh_given
        return
    from tests._postgres import Cluster

    cluster = Cluster({"max_connections": "400"})
    try:
        cluster.start()
        yield cluster.fresh_dsn
    finally:
        cluster.stop()


# --- 1. settlements/s, 8 writer processes -----------------------------------------------------

_RAW_SETTLE = [
    (
        "INSERT INTO streams (stream_ref, kind, mode, status, opened_at, on_detach, runtime_id) "
        "VALUES (%s, 'bench.quick', 'output', 'running', %s, 'abort', %s)"
    ),
    (
        "UPDATE streams SET status = 'completed', reason = NULL, settled_at = %s, terminal = %s "
        "WHERE stream_ref = %s AND status = 'running'"
    ),
    "INSERT INTO events (stream_ref, kind, payload, created_at) VALUES (%s, %s, %s, %s)",
    (
        "INSERT INTO frame_log (stream_ref, seq, kind, channel, payload, reason, error, "
        "terminal, at, recorded) VALUES (%s, %s, %s, NULL, %s, NULL, NULL, NULL, %s, false)"
    ),
]


async def _quick(start: Any, _input: Any, ctx: Any) -> AsyncIterator[Any]:
    import streamnb as sn

    yield sn.completed({"ok": True})


def _settled(terminal: Any, tx: Any) -> None:
    tx.insert_event("bench.settled", {"kind": terminal.kind})


def _writer_streamnb(dsn: str, n: int) -> tuple[float, float]:
    import streamnb as sn

    async def main() -> tuple[float, float]:
        ledger = sn.Ledger(dsn)
        async with sn.StreamRuntime(ledger) as rt:
            rt.register(
                sn.AttachedStreamHandler(kind="bench.quick", run=_quick, commit_terminal=_settled)
            )
            await (await rt.attach("bench.quick")).wait(OWED_S)  # connections warm
            print("READY", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
            slots = asyncio.Semaphore(CONCURRENCY)

            async def one() -> None:
                async with slots:
                    s = await rt.attach("bench.quick")
                    assert (await s.wait(OWED_S)).kind == "completed"

            t0 = time.time()
            await asyncio.gather(*(one() for _ in range(n)))
            t1 = time.time()
        ledger.close()
        return t0, t1

    return asyncio.run(main())


def _writer_raw(dsn: str, n: int) -> tuple[float, float]:
    import psycopg

    me = "raw-" + secrets.token_hex(4)
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT 1")
        conn.commit()
        print("READY", flush=True)
        sys.stdin.readline()
        t0 = time.time()
        for i in range(n):
            ref = f"{me}-{i}"
            now = time.time()
            with conn.transaction():
                conn.execute(_RAW_SETTLE[0], (ref, now, me))
                conn.execute(_RAW_SETTLE[3], (ref, 0, "opened", '{"kind": "bench.quick"}', now))
                conn.execute(_RAW_SETTLE[1], (now, '{"ok": true}', ref))
                conn.execute(_RAW_SETTLE[2], (ref, "bench.settled", '{"kind": "completed"}', now))
                conn.execute(_RAW_SETTLE[3], (ref, 1, "completed", '{"ok": true}', now))
        t1 = time.time()
    return t0, t1


def writers_rate(dsn: str, how: str, n: int) -> float:
    """Settlements/s of WRITERS processes (``how``: streamnb or raw), n settlements each."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.bench_postgres", "--writer", how, dsn, str(n)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(WRITERS)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "READY"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("GO\n")
            p.stdin.flush()
        spans = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    start = min(s[0] for s in spans)
    end = max(s[1] for s in spans)
    return WRITERS * n / (end - start)


def bench_settlements(fresh_dsn: Any, n: int, out: list[Figure]) -> None:
    import psycopg

    import streamnb as sn

    raw_dsn = fresh_dsn()
    sn.Ledger(raw_dsn).close()  # the same tables (and triggers) for the raw baseline
    base = writers_rate(raw_dsn, "raw", n)
    ours_dsn = fresh_dsn()
    value = writers_rate(ours_dsn, "streamnb", n)
    with psycopg.connect(ours_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
    assert row is not None and row[0] == WRITERS * (n + 1), row  # + each writer's warm-up
    ratio = value / base
    emit(
        Figure(
            "pg.settlements",
            round(value),
            "settlements/s",
            round(base),
            round(ratio, 2),
            ">= 0.5x raw psycopg (commit per settlement)",
            ratio >= 0.5,
            f"{WRITERS} writer processes x {n} streams ({CONCURRENCY} open at a time each), "
            "one PostgreSQL; baseline: raw psycopg, same rows, one commit per settlement",
        ),
        out,
    )


# --- 2./3. cross-worker latency: two streamnb serve processes ----------------------------------


async def _tick(start: Any, _input: Any, ctx: Any) -> AsyncIterator[Any]:
    import streamnb as sn

    n = int((start or {}).get("n", 100))
    every_s = float((start or {}).get("every_s", 0.02))
    for i in range(n):
        if ctx.signal.aborted:
            yield sn.cancelled(ctx.signal.reason or "cancelled")
            return
        yield sn.output(f"tick {i}")
        await asyncio.sleep(every_s)
    yield sn.completed({"ticks": n})


def handlers() -> list[Any]:
    """``streamnb serve --handlers bench.bench_postgres:handlers``: ``bench.ticker``."""
    import streamnb as sn

    return [sn.AttachedStreamHandler(kind="bench.ticker", run=_tick, on_detach="continue")]


@contextlib.contextmanager
def serve(dsn: str) -> Iterator[str]:
    """``streamnb serve`` on a free port with ``dsn``'s ledger; yields its base URL."""
    from tests._durable import streamnb_serve

    with streamnb_serve("--ledger", dsn, "--handlers", "bench.bench_postgres:handlers") as served:
        yield served.url


async def _open(client: Any, payload: dict[str, Any]) -> str:
    r = await client.post("/streams", json={"kind": "bench.ticker", "payload": payload})
    assert r.status_code == 201, r.text
    ref: str = r.json()["stream_ref"]
    return ref


async def _read(base: str, ref: str, arrivals: list[float], first: asyncio.Event) -> list[dict]:
    """SSE frames of ``ref`` from ``base``; the wall time each arrived goes to ``arrivals``."""
    import httpx
    from httpx_sse import aconnect_sse

    frames: list[dict] = []
    async with (
        httpx.AsyncClient(base_url=base, timeout=OWED_S) as client,
        aconnect_sse(client, "GET", f"/streams/{ref}/events") as source,
    ):
        async for event in source.aiter_sse():
            arrivals.append(time.time())
            frames.append(json.loads(event.data))
            first.set()
    return frames


async def frame_latency(a: str, b: str, n: int) -> tuple[float, float]:
    """Median ms frame ``at`` -> arrival, at a reader on B and (baseline) one on A."""
    import httpx

    async with httpx.AsyncClient(base_url=a, timeout=OWED_S) as ca:
        ref = await _open(ca, {"n": n, "every_s": 0.02})
        on_a: list[float] = []
        on_b: list[float] = []
        seen_a, seen_b = await asyncio.gather(
            _read(a, ref, on_a, asyncio.Event()), _read(b, ref, on_b, asyncio.Event())
        )
    assert [f["seq"] for f in seen_a] == [f["seq"] for f in seen_b]

    def lag(frames: list[dict], arrivals: list[float]) -> float:
        # the frames that were live when read (the first ones may be a replay of the log)
        lags = [(t - f["at"]) * 1000 for f, t in zip(frames, arrivals, strict=True)][5:]
        return statistics.median(lags)

    return lag(seen_b, on_b), lag(seen_a, on_a)


async def cancel_latency(owner: str, via: str, rounds: int) -> float:
    """Median ms from POST cancel on ``via`` to the terminal at an observer on ``via``."""
    import httpx

    times: list[float] = []
    async with (
        httpx.AsyncClient(base_url=owner, timeout=OWED_S) as co,
        httpx.AsyncClient(base_url=via, timeout=OWED_S) as cv,
    ):
        for _ in range(rounds):
            ref = await _open(co, {"n": 100_000, "every_s": 0.02})
            arrivals: list[float] = []
            first = asyncio.Event()
            reader = asyncio.ensure_future(_read(via, ref, arrivals, first))
            await asyncio.wait_for(first.wait(), OWED_S)
            await asyncio.sleep(0.1)
            t0 = time.time()
            r = await cv.post(f"/streams/{ref}/cancel", json={"reason": "bench"})
            assert r.json()["result"] == "requested", r.text
            frames = await asyncio.wait_for(reader, OWED_S)
            assert frames[-1]["kind"] == "cancelled", frames[-1]
            times.append((arrivals[-1] - t0) * 1000)
    return statistics.median(times)


def bench_cross_worker(fresh_dsn: Any, quick: bool, out: list[Figure]) -> None:
    dsn = fresh_dsn()
    with serve(dsn) as a, serve(dsn) as b:
        cross, local = asyncio.run(frame_latency(a, b, 100 if quick else 400))
        emit(
            Figure(
                "pg.frame_latency",
                round(cross, 2),
                "ms (median)",
                round(local, 2),
                round(cross / local, 2) if local > 0 else None,
                "< 20 ms",
                cross < 20,
                "frame appended by the runtime on serve process A -> SSE reader on process B "
                "(baseline: a reader on A), one PostgreSQL, LISTEN/NOTIFY",
            ),
            out,
        )
        rounds = 10 if quick else 30
        local_cancel = asyncio.run(cancel_latency(a, a, rounds))
        cross_cancel = asyncio.run(cancel_latency(a, b, rounds))
        emit(
            Figure(
                "pg.cancel_latency",
                round(cross_cancel, 2),
                "ms (median)",
                round(local_cancel, 2),
                round(cross_cancel / local_cancel, 2) if local_cancel > 0 else None,
                "< 50 ms",
                cross_cancel < 50,
                f"POST /cancel on B -> terminal at an SSE observer on B, stream run by A, "
                f"{rounds} rounds (baseline: cancel and observer on A)",
            ),
            out,
        )


# --- entry points -------------------------------------------------------------------------------


def run(quick: bool = False) -> list[Figure]:
    """Every figure of the suite (none, with a printed reason, without PostgreSQL)."""
    out: list[Figure] = []
    reason = skip_reason()
    if reason is not None:
        print(f"bench_postgres skipped: {reason}", file=sys.stderr, flush=True)
        return out
    with database() as fresh_dsn:
        bench_settlements(fresh_dsn, 200 if quick else 1000, out)
        bench_cross_worker(fresh_dsn, quick, out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--writer", nargs=3, metavar=("HOW", "DSN", "N"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.writer:
        how, dsn, n = args.writer
        span = (_writer_streamnb if how == "streamnb" else _writer_raw)(dsn, int(n))
        print(json.dumps(span), flush=True)
        return
    run(args.quick)


if __name__ == "__main__":
    main()
