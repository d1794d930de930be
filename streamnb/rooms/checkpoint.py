"""A streaming reply's text, checkpointed into its room's SQLite file as it streams.

Without checkpoints a reply's text is written once, when its stream settles, so
a process killed mid-reply leaves the reply ``interrupted`` and empty. With them
(the default), :func:`checkpoint_reply` follows the reply's stream (a cursor on
its frame log, not an observer) and appends the new text to the room's
``reply_checkpoints`` table whenever :data:`CHECKPOINT_S` seconds have passed
since the oldest text not yet written arrived, or :data:`CHECKPOINT_BYTES` of it
(UTF-8) accumulated, whichever comes first. Each write is one transaction of the
room's file, on the rooms' I/O thread; while it runs the stream goes on and the
text piles up for the next one, so at most one write per reply is in flight and
the handler is never held up. A SIGKILL loses at most the text of that window
(plus a write in flight); reopening the rooms marks the reply ``interrupted``
with every checkpointed piece, in order (:meth:`RoomStore.recover`).

The text is the reply's text exactly as the settled message would hold it:
``output`` frames on :data:`~streamnb.rooms.REPLY_CHANNEL` with string payloads,
read from the stream's log with :meth:`StreamRuntime.output_text` (no frame
objects are built: a cursor reading every frame would cost as much as the
handler producing them). A piece holds the text of every frame available when
the follower woke, so it can exceed :data:`CHECKPOINT_BYTES` by what arrived
while the previous write ran.
The follower is a task owned by the reply's room: it ends after the terminal
frame, and the room's settlement (``commit_terminal``) cancels it before writing
the final text, which replaces the pieces in one transaction; a piece written
after that is refused by the store (the reply is no longer ``streaming``).

The cost is measured by ``bench/bench_rooms.py`` (frames per second of a reply
with and without checkpoints, in the same run).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .._frames import TERMINAL_KINDS
from .._runtime import StreamRuntime
from .reply import REPLY_CHANNEL

__all__ = ["CHECKPOINT_BYTES", "CHECKPOINT_S", "checkpoint_reply"]

#: the longest a reply's new text waits before it is checkpointed, seconds
CHECKPOINT_S = 0.25
#: a checkpoint is written as soon as this much new text (UTF-8 bytes) accumulated
CHECKPOINT_BYTES = 4096

#: ``write(pos, text)``: append piece ``pos`` to the reply's checkpoints (off the loop)
Write = Callable[[int, str], Awaitable[object]]


async def checkpoint_reply(
    runtime: StreamRuntime,
    stream_ref: str,
    write: Write,
    *,
    interval_s: float = CHECKPOINT_S,
    max_bytes: int = CHECKPOINT_BYTES,
) -> int:
    """Follow ``stream_ref`` to its terminal frame, checkpointing its reply text.

    Parameters
    ----------
    runtime : StreamRuntime
        The runtime the reply streams in.
    stream_ref : str
        The reply's stream.
    write : coroutine function ``(pos, text) -> Any``
        Appends piece ``pos`` (0, 1, 2, ...) of the text; awaited before the next.
    interval_s : float, default :data:`CHECKPOINT_S`
        New text is written at most this many seconds after it arrived.
    max_bytes : int, default :data:`CHECKPOINT_BYTES`
        New text is written as soon as this many UTF-8 bytes of it accumulated.

    Returns
    -------
    int
        How many pieces were written, once the stream ended (text still pending
        then is in the settled message). Cancelling the task drops pending text.

    Examples
    --------
    >>> from streamnb.rooms import ChatRooms
    >>> rooms = ChatRooms()
    >>> room = rooms.room(rooms.create_room("Ideas"))
    >>> async def turn():
    ...     session = await room.send("hi")
    ...     pieces = []
    ...     async def write(pos, text):
    ...         pieces.append(text)
    ...     await checkpoint_reply(rooms.runtime, session.stream_ref, write, max_bytes=1)
    ...     return pieces
    >>> "".join(rooms.runtime.run(turn()))
    'streamnb reply to hi (turn 1)'
    >>> rooms.close()
    """
    loop = asyncio.get_running_loop()
    pending: list[str] = []
    size = 0
    due = 0.0  # when the oldest pending text must be written (loop time)
    seen = -1  # the text of frames up to this seq was taken
    written = 0
    while True:
        if pending and (size >= max_bytes or loop.time() >= due):
            text = "".join(pending)
            pending.clear()
            size = 0
            await write(written, text)
            written += 1
            continue
        # Wait for a frame after `seen` (until the pending text is due), then take the text
        # of every frame already in the log at once: the log is read without a Frame per
        # frame (output_text), so a fast reply costs one wake per batch of frames.
        cursor = runtime.follow(stream_ref, seen)
        try:
            if pending:
                # not asyncio.wait_for: before Python 3.12 it can lose the cancellation
                # that stops this task (the room's settlement awaits that stop)
                next_frame = await cursor.next_within(due - loop.time())
                if next_frame is None:
                    continue  # the pending text is due
                frame = next_frame
            else:
                frame = await anext(cursor)
        except StopAsyncIteration:
            return written
        if frame.kind in TERMINAL_KINDS:
            return written  # the settlement writes the whole text
        text, seen = runtime.output_text(stream_ref, REPLY_CHANNEL, seen)
        if text:
            if not pending:
                due = loop.time() + interval_s
            pending.append(text)
            size += len(text) if text.isascii() else len(text.encode())
