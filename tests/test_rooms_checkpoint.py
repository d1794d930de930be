"""A streaming room reply's text is checkpointed: a killed process keeps it, in order, once.

The SIGKILL loop runs ``tests/_crashy_rooms.py`` against one rooms directory,
kills it at a random moment (often mid-checkpoint, sometimes while it opens the
rooms and recovers the previous child's reply) and reopens the directory:
every reply is ``completed`` with its whole text or ``interrupted`` with a
prefix of it (no piece lost in the middle, none twice) at least as long as
what the child saw committed, nothing settled earlier changes, and no
checkpoint row is left behind.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import streamnb as sn
from streamnb.rooms import ChatRooms, room_reply_handler
from streamnb.rooms.checkpoint import checkpoint_reply
from streamnb.testing import FakeTokenSource, lorem_tokens
from tests._crashy_rooms import REPLY_TOKENS, reply_text

ROOT = Path(__file__).resolve().parent.parent
#: kills per run (STREAMNB_SOAK=1: the long variant)
KILLS = 6
SOAK_KILLS = 60
TURN = re.compile(r" \(turn \d+\)$")

pytestmark = pytest.mark.timeout(300)


def wait_for(out: Path, pattern: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if re.search(pattern, out.read_text(), flags=re.M):
            return
        if proc.poll() is not None:
            raise AssertionError(f"the child exited ({proc.returncode}) before {pattern!r}")
        time.sleep(0.005)
    raise AssertionError(f"no {pattern!r} line within {timeout_s} s")


def kill_child(directory: Path, seed: int, work: Path, rng: random.Random) -> str:
    """Run a child, SIGKILL it at a random moment; return its stdout."""
    out, err = work / f"out{seed}.txt", work / f"err{seed}.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests._crashy_rooms", str(directory), str(seed)],
            stdout=stdout,
            stderr=stderr,
            cwd=ROOT,
        )
    try:
        moment = rng.random()
        if moment < 0.15:  # while it opens the rooms, recovering the previous child
            time.sleep(rng.random() * 0.3)
        elif moment < 0.6:  # once something was checkpointed
            wait_for(out, r"^CHECKPOINT \S+ [1-9]", proc, 60)
            time.sleep(rng.random() * 0.3)
        else:  # anywhere in the stream
            wait_for(out, r"^SENT ", proc, 60)
            time.sleep(rng.random() * 1.5)
        assert proc.poll() is None, err.read_text()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    return out.read_text()


def announced(stdout: str) -> dict[str, int]:
    """message id -> the most characters the child saw checkpointed."""
    seen: dict[str, int] = {}
    for message_id, chars in re.findall(r"^CHECKPOINT (\S+) (\d+)$", stdout, flags=re.M):
        seen[message_id] = max(seen.get(message_id, 0), int(chars))
    return seen


def reopen(directory: Path) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Open the rooms (recovering them) and close them again.

    Returns (message id -> (status, content) of every reply, the ids recovered).
    """
    rooms = ChatRooms(directory)
    try:
        found = {}
        for room_id in rooms:
            for m in rooms.room(room_id).message_list():
                if m.role == "assistant":
                    found[m.id] = (m.status, m.content)
        return found, list(rooms.recovered)
    finally:
        rooms.close()


def leftover_checkpoints(directory: Path) -> int:
    total = 0
    for path in (directory / "rooms").glob("*.db"):
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            total += conn.execute("SELECT count(*) FROM reply_checkpoints").fetchone()[0]
        finally:
            conn.close()
    return total


def check_prefix(content: str, full: str) -> None:
    """``content`` is ``full`` cut somewhere (the last token, " (turn N)", may follow it)."""
    body = TURN.sub("", content) if len(content) > len(full) else content
    assert full.startswith(body), (len(body), body[-40:])
    assert body == content or body == full


@pytest.mark.parametrize(
    "kills",
    [
        KILLS,
        pytest.param(SOAK_KILLS, marks=pytest.mark.slow),
    ],
)
def test_sigkill_loop_keeps_every_announced_partial_text_once(tmp_path: Path, kills: int) -> None:
    directory = tmp_path / "chat"
    rng = random.Random(int(os.environ.get("STREAMNB_CRASH_SEED", "11")))
    full = reply_text()
    settled_before: dict[str, tuple[str, str]] = {}
    checkpointed_replies = 0
    for i in range(kills):
        stdout = kill_child(directory, i, tmp_path, rng)
        seen = announced(stdout)
        found, recovered = reopen(directory)
        assert leftover_checkpoints(directory) == 0
        for message_id, chars in seen.items():
            status, content = found[message_id]
            if status == "completed":
                assert TURN.sub("", content) == full
            else:
                assert status == "interrupted", status
                assert message_id in recovered
                assert len(content) >= chars  # every announced checkpoint survived
                check_prefix(content, full)  # in order, no piece twice
                checkpointed_replies += chars > 0
        for status, content in found.values():
            assert status in ("completed", "interrupted"), status
            if status == "interrupted":
                check_prefix(content, full)
        for message_id, before in settled_before.items():
            assert found[message_id] == before  # nothing settled earlier changes
        settled_before = found
    assert checkpointed_replies >= 1  # the loop did kill replies with checkpointed text


async def test_checkpoints_hold_the_reply_text_in_order_and_settling_replaces_them(
    tmp_path: Path,
) -> None:
    source = FakeTokenSource(lorem_tokens(REPLY_TOKENS), rate_tokens_per_s=2000)
    rooms = ChatRooms(
        tmp_path / "chat",
        handler_factory=lambda kind: room_reply_handler(kind, source),
        checkpoint_s=0.05,
    )
    room = rooms.room(rooms.create_room("Crash"))
    session = await room.send("go")
    message_id = room.active_reply().message_id  # type: ignore[union-attr]
    assert room.path is not None
    conn = sqlite3.connect(f"file:{room.path}?mode=ro", uri=True)  # another reader

    def committed() -> str:
        rows = conn.execute(
            "SELECT text FROM reply_checkpoints WHERE message_id=? ORDER BY pos", (message_id,)
        ).fetchall()
        return "".join(r[0] for r in rows)

    try:
        for _ in range(4000):
            if len(committed()) > 1000:
                break
            await asyncio.sleep(0.005)
        checkpointed = committed()
        assert len(checkpointed) > 1000
        (status,) = conn.execute("SELECT status FROM messages WHERE id=?", (message_id,)).fetchone()
        assert status == "streaming"
        text = "".join(
            f.payload for f in rooms.runtime.frame_log(session.stream_ref) if f.kind == "output"
        )
        assert text.startswith(checkpointed)  # the pieces are the reply's text, in order
        await rooms.aclose()  # stops the reply: it settles cancelled with its partial text
        row = conn.execute(
            "SELECT status, content FROM messages WHERE id=?", (message_id,)
        ).fetchone()
        text = "".join(
            f.payload for f in rooms.runtime.frame_log(session.stream_ref) if f.kind == "output"
        )
        assert row == ("cancelled", text)
        assert text.startswith(checkpointed)
        assert committed() == ""  # the settlement replaced the pieces
    finally:
        conn.close()


def test_checkpoints_can_be_turned_off_and_bad_settings_raise(tmp_path: Path) -> None:
    for bad in ({"checkpoint_s": 0}, {"checkpoint_s": -1.0}, {"checkpoint_bytes": 0}):
        with pytest.raises(ValueError, match="checkpoint"):
            ChatRooms(**bad)  # type: ignore[arg-type]
    rooms = ChatRooms(checkpoint_s=None)
    try:
        room = rooms.room(rooms.create_room("Quiet"))

        async def turn() -> sn.Frame:
            session = await room.send("hi")
            assert room._in_flight().checkpoint is None  # type: ignore[union-attr]
            return await session.wait()

        assert rooms.runtime.run(turn()).kind == "completed"
    finally:
        rooms.close()


async def test_checkpoint_reply_writes_by_size_and_by_time() -> None:
    runtime = sn.StreamRuntime()
    fast = FakeTokenSource(lorem_tokens(4000), rate_tokens_per_s=None)
    runtime.register(room_reply_handler("size.reply", fast))
    slow = FakeTokenSource(lorem_tokens(6), rate_tokens_per_s=20)  # a token every 50 ms
    runtime.register(room_reply_handler("time.reply", slow))
    settings = {  # (interval_s, max_bytes): only one of the two can trigger
        "size.reply": (3600.0, 1024),
        "time.reply": (0.01, 10**9),
    }
    try:
        pieces: dict[str, list[str]] = {kind: [] for kind in settings}
        for kind, (interval_s, max_bytes) in settings.items():
            session = await runtime.attach(kind, {"messages": []})
            await session.send("go")

            async def write(pos: int, text: str, kind: str = kind) -> None:
                assert pos == len(pieces[kind])
                pieces[kind].append(text)

            written = await checkpoint_reply(
                runtime, session.stream_ref, write, interval_s=interval_s, max_bytes=max_bytes
            )
            assert written == len(pieces[kind])
            text, _ = runtime.output_text(session.stream_ref, "assistant.delta")
            assert text.startswith("".join(pieces[kind]))  # in order, nothing twice
        # a fast reply: a piece whenever 1 KB accumulated (a piece holds a whole batch)
        assert len(pieces["size.reply"]) >= 10
        assert all(len(p.encode()) >= 1024 for p in pieces["size.reply"])
        # a slow reply (a token every 50 ms): written by time, 10 ms after the text
        # arrived, not held until a size is reached (the last tokens may be left to
        # the settlement)
        assert len(pieces["time.reply"]) >= 2
    finally:
        await runtime.aclose()
        runtime.ledger.close()


async def test_checkpoint_task_cancelled_as_a_frame_arrives_stops_instead_of_waiting_on() -> None:
    # The rooms' settlement cancels the checkpoint task and awaits it. A cancel that
    # arrived in the same loop iteration as a frame was lost by asyncio.wait_for before
    # Python 3.12 (it returned the frame): the task waited on for frames that could only
    # come after the settlement, which then hung until its own time limit (3 s per
    # reply; a paced room reply ran at a quarter of its pace, bench rooms).
    checkpoint: asyncio.Task[int] | None = None

    async def run(start: Any, input: Any, ctx: Any) -> Any:
        async for _ in input:
            yield {"kind": "output", "channel": "assistant.delta", "payload": "a"}
            await asyncio.sleep(0.05)  # the checkpoint holds "a" and waits until it is due
            # no await in between: frame c wakes the checkpoint's wait, then the cancel
            # comes, both before the checkpoint task runs again
            yield {"kind": "output", "channel": "assistant.delta", "payload": "c"}
            assert checkpoint is not None
            checkpoint.cancel()
            yield {"kind": "output", "channel": "assistant.delta", "payload": "d"}
            await asyncio.Event().wait()  # the reply goes on until cancelled

    runtime = sn.StreamRuntime()
    runtime.register(sn.AttachedStreamHandler(kind="race.reply", run=run, mode="bidi"))
    try:
        session = await runtime.attach("race.reply", {})
        pieces: list[str] = []

        async def write(pos: int, text: str) -> None:
            pieces.append(text)

        checkpoint = asyncio.create_task(
            checkpoint_reply(runtime, session.stream_ref, write, interval_s=3600.0, max_bytes=10**9)
        )
        await asyncio.sleep(0.05)  # the checkpoint task waits for the first frame
        await session.send("go")
        done, _ = await asyncio.wait({checkpoint}, timeout=10)
        assert checkpoint in done, "the cancelled checkpoint task is still waiting for frames"
        assert checkpoint.cancelled()
        assert pieces == []  # nothing was due: the settlement writes the text
    finally:
        await runtime.aclose()
        runtime.ledger.close()
