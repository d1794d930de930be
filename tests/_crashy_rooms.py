"""A chat-rooms process that streams replies into a room directory until it is killed.

``python -m tests._crashy_rooms <rooms dir> <seed>`` opens the rooms (recovering
what the previous process left), then sends one message after another to the
room named ``Crash``, each answered by a long fake reply at a rate chosen from the
seed (slow replies are checkpointed by time, fast ones by size). A watcher reads
the room's file through its *own* read-only SQLite connection and announces what
it sees committed. One flushed line per fact:

``READY <room id>``
    the rooms are open (the previous process's replies recovered).
``SENT <message id>``
    ``room.send`` returned: the reply's placeholder is stored.
``CHECKPOINT <message id> <chars>``
    another connection sees this many characters of the reply's text committed
    in ``reply_checkpoints``: they must survive the kill.
``SETTLED <message id> <status>``
    the reply settled.

Used by ``tests/test_rooms_checkpoint.py``.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import sys
from pathlib import Path

from streamnb.rooms import ChatRooms, room_reply_handler
from streamnb.testing import FakeTokenSource, lorem_tokens

#: tokens of every reply (about 7 characters each)
REPLY_TOKENS = 3000
MESSAGE = "go"
POLL_S = 0.002


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def reply_text() -> str:
    """The text of every reply but its last token, ``" (turn N)"``."""
    return "".join(lorem_tokens(REPLY_TOKENS)(MESSAGE))


async def watch(path: Path, message_id: str, stop: asyncio.Event) -> None:
    """Announce the committed checkpoints of one reply, as another connection sees them."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        seen = -1
        while not stop.is_set():
            rows = conn.execute(
                "SELECT text FROM reply_checkpoints WHERE message_id=? ORDER BY pos",
                (message_id,),
            ).fetchall()
            chars = sum(len(r[0]) for r in rows)
            if chars != seen:
                seen = chars
                say(f"CHECKPOINT {message_id} {chars}")
            await asyncio.sleep(POLL_S)
    finally:
        conn.close()


async def main(directory: str, seed: int) -> None:
    rng = random.Random(seed)
    rate = rng.choice([400.0, 3000.0, 30000.0])  # tokens/s: time- or size-triggered
    source = FakeTokenSource(lorem_tokens(REPLY_TOKENS), rate_tokens_per_s=rate)
    rooms = ChatRooms(directory, handler_factory=lambda kind: room_reply_handler(kind, source))
    by_name = {r["name"]: r["id"] for r in rooms.room_infos()}
    room = rooms.room(by_name.get("Crash") or rooms.create_room("Crash"))
    assert room.path is not None
    say(f"READY {room.id}")
    while True:  # until SIGKILL
        session = await room.send(MESSAGE)
        message_id = room.active_reply().message_id  # type: ignore[union-attr]
        say(f"SENT {message_id}")
        stop = asyncio.Event()
        watcher = asyncio.ensure_future(watch(Path(room.path), message_id, stop))
        message = await room.wait()
        stop.set()
        await watcher
        await session.detach()
        assert message is not None
        say(f"SETTLED {message.id} {message.status}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
