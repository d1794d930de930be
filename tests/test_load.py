"""Load: thousands of streams through one runtime, each settled exactly once.

Bounded and in-process (loopback only). The default profile runs 2,000 streams on
an in-memory ledger; ``STREAMNB_SOAK=1`` adds 10,000 on a file ledger. About 256
streams are in flight at a time and one in ten is cancelled right after attach.
Latency (attach called -> terminal frame read) and peak traced memory are printed
(``pytest -s`` shows them), not asserted: they depend on the machine. What is
asserted: every stream settles exactly once, with exactly one event, and the
runtime keeps at most ``retain_settled`` settled streams in memory.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import streamnb as sn

IN_FLIGHT = 256


async def tokens(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
    for i in range(start["n"]):
        if ctx.signal.aborted:
            yield sn.cancelled(ctx.signal.reason or "cancelled")
            return
        yield sn.output(f"token {i} ")
        await asyncio.sleep(0)
    yield sn.completed({"n": start["n"]})


def commit(terminal: sn.Frame, tx: sn.LedgerTx) -> None:
    tx.insert_event("load.settled", {"kind": terminal.kind})


async def drive(rt: sn.StreamRuntime, n: int, seed: int) -> list[float]:
    """Run ``n`` streams, ``IN_FLIGHT`` at a time; return attach-to-terminal latencies (s)."""
    rng = random.Random(seed)
    slots = asyncio.Semaphore(IN_FLIGHT)
    latencies: list[float] = []

    async def one() -> None:
        async with slots:
            t0 = time.perf_counter()
            session = await rt.attach("load", {"n": rng.randint(0, 8)})
            if rng.random() < 0.1:
                await session.cancel("load-test")
            frames = await sn.read_until_terminal(session.output, timeout_s=60)
            latencies.append(time.perf_counter() - t0)
            assert sum(f.is_terminal for f in frames) == 1 and frames[-1].is_terminal
            assert [f.seq for f in frames] == list(range(len(frames)))

    await asyncio.gather(*(one() for _ in range(n)))
    return latencies


def check_exactly_once(rt: sn.StreamRuntime, n: int) -> dict[str, int]:
    ledger = rt.ledger
    by_status = dict(
        ledger.sql("SELECT status, count(*) FROM streams GROUP BY status").itertuples(index=False)
    )
    assert sum(by_status.values()) == n and set(by_status) <= {"completed", "cancelled"}
    # one event per stream, and it names the stream's own status
    (mismatched,) = ledger.sql(
        "SELECT count(*) FROM streams s WHERE (SELECT count(*) FROM events e "
        "WHERE e.stream_ref = s.stream_ref AND json_extract(e.payload, '$.kind') = s.status) != 1"
    ).iloc[0]
    assert mismatched == 0
    assert ledger.sql("SELECT count(*) FROM events").iloc[0, 0] == n
    assert rt.active_refs() == []
    assert len(rt._streams) <= rt.retain_settled  # settled streams are evicted from memory
    return {str(k): int(v) for k, v in by_status.items()}


async def load(n: int, ledger: sn.Ledger) -> None:
    rt = sn.StreamRuntime(ledger)
    rt.register(sn.AttachedStreamHandler(kind="load", run=tokens, commit_terminal=commit))
    try:
        t0 = time.perf_counter()
        latencies = await drive(rt, n, seed=1)
        wall = time.perf_counter() - t0
        by_status = check_exactly_once(rt, n)

        gc.collect()  # a second batch, measured for memory (tracemalloc slows it down)
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            await drive(rt, n, seed=2)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        check_exactly_once(rt, 2 * n)
    finally:
        await rt.aclose()
        ledger.close()
    q = statistics.quantiles(latencies, n=100)
    print(
        f"\nload: {n} streams ({IN_FLIGHT} in flight, {ledger.path or 'in-memory'} ledger) "
        f"in {wall:.2f} s = {n / wall:,.0f} streams/s; {by_status}; attach->terminal "
        f"p50 {q[49] * 1e3:.1f} ms, p99 {q[98] * 1e3:.1f} ms; peak traced memory "
        f"{peak / 1e6:.1f} MB for the second {n}"
    )


async def test_two_thousand_streams_each_settle_exactly_once() -> None:
    await load(2_000, sn.Ledger())


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_ten_thousand_streams_on_a_file_ledger(tmp_path: Path) -> None:
    await load(10_000, sn.Ledger(tmp_path / "load.db"))
