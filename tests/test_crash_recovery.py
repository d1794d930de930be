"""Crash recovery: SIGKILL a process mid-traffic, reopen its ledger, find nothing half-written.

A child process (``tests/_crashy.py``) runs ~64 streams at a time against one durable
ledger (``record_frames=True``; a SQLite file, or a PostgreSQL schema) and prints
every terminal it has *observed*. The test kills it with SIGKILL at a random moment:
often while its writer is inside a group-commit transaction, sometimes while the
ledger is being opened and the previous child's streams recovered. The same ledger
is reused across iterations, so each child starts by recovering the one before it
(PostgreSQL: once that child's lease, 0.3 s here, ran out). After each kill the
ledger is read as it is, directly with the driver (no recovery):

* SQLite's ``PRAGMA integrity_check`` is ``ok``;
* every row is ``running`` (the dead process's), ``failed``/``runtime_lost``
  (recovered) or settled *with all its events* (two per settlement) and its
  terminal frame; open and lost streams have no events, and no terminal frame
  but, with PostgreSQL, the recovery's own ``failed`` one, last;
* each stream's recorded frames are a gap-free prefix ``0, 1, 2, ...``;
* every terminal the child announced is there with that kind, every stream it
  saw opened has a row, and nothing settled earlier ever changes.

Then, every other iteration, opening a :class:`~streamnb.Ledger` recovers exactly
the open rows as ``failed``/``runtime_lost``.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import streamnb as sn
from streamnb._frames import TERMINAL_KINDS

ROOT = Path(__file__).resolve().parent.parent
EVENT_KINDS = ["crash.audit", "crash.settled"]


def wait_for_line(log: Path, word: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if word in log.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the child exited ({proc.returncode}) before {word}")
        time.sleep(0.005)
    raise AssertionError(f"no {word} line within {timeout_s} s")


#: the children's lease with a PostgreSQL ledger, seconds
LEASE_S = 0.3


def kill_child_at_random(target: str, seed: int, work: Path, rng: random.Random) -> tuple[str, str]:
    """Run a child, SIGKILL it at a random moment; return its stdout and stderr."""
    out, err = work / f"out{seed}.txt", work / f"err{seed}.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests._crashy", target, str(seed), str(LEASE_S)],
            stdout=stdout,
            stderr=stderr,
            cwd=ROOT,
        )
    try:
        if rng.random() < 0.25:  # during Ledger() open: recovering the previous child
            wait_for_line(out, "STARTING", proc, 60)
            time.sleep(rng.random() * 0.05)
        else:  # mid-traffic (PostgreSQL: its first settlements take a few hundred ms)
            wait_for_line(out, "READY", proc, 60)
            pg = target.startswith("postgresql://")
            time.sleep((0.1 if pg else 0.02) + rng.random() * (1.0 if pg else 0.5))
        assert proc.poll() is None, err.read_text()
    finally:
        proc.kill()  # SIGKILL
        proc.wait(30)
    return out.read_text(), err.read_text()


def parse(stdout: str) -> tuple[set[str], dict[str, str]]:
    opened: set[str] = set()
    announced: dict[str, str] = {}
    for line in stdout.splitlines(keepends=True):
        if not line.endswith("\n"):
            continue  # a line cut by the kill
        parts = line.split()
        if parts[0] == "OPENED":
            opened.add(parts[1])
        elif parts[0] == "ANNOUNCED":
            announced[parts[1]] = parts[2]
    return opened, announced


def read_as_left(target: str) -> tuple[list[Any], list[Any], list[Any]]:
    """(streams, events, frames) rows straight from the driver: nothing is recovered."""
    queries = [
        "SELECT stream_ref, status, reason FROM streams",
        "SELECT stream_ref, kind, payload FROM events ORDER BY id",
        "SELECT stream_ref, seq, kind FROM frames ORDER BY stream_ref, seq",
    ]
    if target.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(target) as pg:
            return tuple(pg.execute(q).fetchall() for q in queries)  # type: ignore[return-value]
    conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return tuple(conn.execute(q).fetchall() for q in queries)  # type: ignore[return-value]
    finally:
        conn.close()


def check_file_as_left(
    target: str, opened: set[str], announced: dict[str, str], settled_before: dict[str, Any]
) -> set[str]:
    """Check the ledger exactly as the dead process left it; return the open refs."""
    stream_rows, event_rows, frame_rows = read_as_left(target)
    rows = {ref: (status, reason) for ref, status, reason in stream_rows}
    events: dict[str, list[tuple[str, Any]]] = {}
    for ref, kind, payload in event_rows:
        events.setdefault(ref, []).append((kind, json.loads(payload)))
    frames: dict[str, list[tuple[int, str]]] = {}
    for ref, seq, kind in frame_rows:
        frames.setdefault(ref, []).append((seq, kind))
    postgres = target.startswith("postgresql://")
    assert set(events) <= set(rows) and set(frames) <= set(rows)
    open_refs = set()
    for ref, (status, reason) in rows.items():
        evs, frs = events.get(ref, []), frames.get(ref, [])
        assert [seq for seq, _ in frs] == list(range(len(frs))), (ref, frs)
        terminal_frames = [kind for _, kind in frs if kind in TERMINAL_KINDS]
        if status == "running" or reason == "runtime_lost":
            assert status in ("running", "failed"), (ref, status, reason)
            assert evs == [], (ref, evs)  # no half-written settlement
            if postgres and reason == "runtime_lost" and terminal_frames:
                # the survivor's runtime_lost terminal, appended after the frames written
                assert terminal_frames == ["failed"] and frs[-1][1] == "failed", (ref, frs)
            else:
                assert terminal_frames == [], (ref, frs)
            if status == "running":
                open_refs.add(ref)
        else:
            assert sorted(kind for kind, _ in evs) == EVENT_KINDS, (ref, status, evs)
            assert dict(evs)["crash.settled"] == {"kind": status}
            assert terminal_frames == [status] and frs[-1][1] == status, (ref, frs)
        if ref in settled_before:
            assert (status, reason) == settled_before[ref], ref  # nothing committed is lost
    for ref in opened:
        assert ref in rows, ref
    for ref, kind in announced.items():  # announced means committed
        assert rows[ref][0] == kind and rows[ref][1] != "runtime_lost", (ref, kind, rows[ref])
    settled_before.update({r: v for r, v in rows.items() if v[0] != "running"})
    return open_refs


def crash_loop(target: str, work: Path, iterations: int, seed: int) -> None:
    rng = random.Random(seed)
    postgres = target.startswith("postgresql://")
    settled_before: dict[str, Any] = {}
    totals = {"announced": 0, "open_at_kill": 0, "recovered": 0}
    for i in range(iterations):
        stdout, stderr = kill_child_at_random(target, seed * 1000 + i, work, rng)
        assert "Traceback" not in stderr and "ERROR" not in stderr, stderr
        opened, announced = parse(stdout)
        if not postgres and not Path(target).exists():  # killed before the file was created
            assert not opened
            continue
        open_refs = check_file_as_left(target, opened, announced, settled_before)
        totals["announced"] += len(announced)
        totals["open_at_kill"] += len(open_refs)
        if i % 2 == 1 or i == iterations - 1:  # else the next child recovers them
            if postgres:
                time.sleep(LEASE_S + 0.2)  # the dead child's lease runs out
            with sn.Ledger(target) as ledger:
                assert set(ledger.recovered) == open_refs
                streams = ledger.streams()
                assert "running" not in set(streams.status)
                lost = streams[streams.stream_ref.isin(open_refs)]
                assert set(lost.status) <= {"failed"} and set(lost.reason) <= {"runtime_lost"}
            totals["recovered"] += len(open_refs)
            check_file_as_left(target, set(), announced, settled_before)
    print(f"{iterations} kills: {totals}")
    assert totals["announced"] > 0  # the kills did land among settlements


def crash_target(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "postgres":
        return str(request.getfixturevalue("pg_dsn"))
    return str(tmp_path / "crash.db")


def test_sigkill_at_random_moments_leaves_no_half_written_settlement(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    target = crash_target(backend, request, tmp_path)
    seed = int(os.environ.get("STREAMNB_CRASH_SEED", "7"))
    crash_loop(target, tmp_path, iterations=8, seed=seed)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_sigkill_soak(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    target = crash_target(backend, request, tmp_path)
    crash_loop(target, tmp_path, iterations=200, seed=random.randrange(1_000_000))
