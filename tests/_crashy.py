"""A process that runs streams against a durable ledger until it is killed (for crash tests).

``python -m tests._crashy <ledger path or postgresql:// DSN> <seed> [lease_s]`` keeps about
64 streams in flight,
most of them short, so the ledger's writer is almost always inside a group-commit
transaction. It prints one flushed line per fact it has *observed*:

``STARTING``
    imports done; the ledger is about to be opened (and recovered).
``READY``
    the ledger is open.
``OPENED <ref>``
    ``attach`` returned: the stream's ``streams`` row is committed.
``ANNOUNCED <ref> <kind>``
    this process read the terminal frame on ``session.output``: the settlement
    committed before the frame was announced, so it must survive the kill.

Every settlement inserts two events (``crash.settled`` with the terminal kind and
``crash.audit``), so a half-written settlement would show as one event without
the other. Used by ``tests/test_crash_recovery.py``.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import AsyncIterator
from typing import Any

import streamnb as sn

KIND = "crash.stream"
IN_FLIGHT = 64


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def run(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
    n, fail = start["n"], start["fail"]
    yield sn.progress({"n": n})
    for i in range(n):
        if ctx.signal.aborted:
            yield sn.cancelled(ctx.signal.reason or "cancelled")
            return
        if fail and i == n // 2:
            raise RuntimeError("injected failure")
        yield sn.output(f"t{i} ", "c")
        if i % 8 == 7:
            await asyncio.sleep(0)
    yield sn.completed({"n": n})


def commit(terminal: sn.Frame, tx: sn.LedgerTx) -> None:
    tx.insert_event("crash.settled", {"kind": terminal.kind})
    tx.insert_event("crash.audit", {"seq": terminal.seq, "reason": terminal.reason})


async def main(path: str, seed: int, lease_s: float) -> None:
    rng = random.Random(seed)
    say("STARTING")
    ledger = sn.Ledger(path, record_frames=True, read_only=False, lease_s=lease_s)
    rt = sn.StreamRuntime(ledger, cancel_grace_s=0.05, force_wait_s=0.05)
    rt.register(sn.AttachedStreamHandler(kind=KIND, run=run, commit_terminal=commit))
    say("READY")

    async def one() -> None:
        n = rng.choice([0, 1, 2, 5, 30, 300])
        session = await rt.attach(KIND, {"n": n, "fail": rng.random() < 0.1})
        say(f"OPENED {session.stream_ref}")
        if rng.random() < 0.2:
            await asyncio.sleep(rng.random() * 0.002)
            await session.cancel("crash-test")
        frames = await sn.read_until_terminal(session.output)
        say(f"ANNOUNCED {session.stream_ref} {frames[-1].kind}")

    slots = asyncio.Semaphore(IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()

    def done(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        slots.release()
        if not task.cancelled() and task.exception() is not None:
            print(f"ERROR {task.exception()!r}", file=sys.stderr, flush=True)

    while True:  # until SIGKILL
        await slots.acquire()
        task = asyncio.get_running_loop().create_task(one())
        tasks.add(task)
        task.add_done_callback(done)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) if sys.argv[3:] else 10.0))
