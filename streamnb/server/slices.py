"""Long replies yield the event loop in bounded slices, so a big stream never stalls the others.

Replaying a settled stream reads frames that are all in memory already: no
``await`` on the way ever waits, and while the client's socket keeps up, neither
does ``send``. Such a writer would run to the end without giving the loop a turn:
replaying a 3M-frame stream over SSE once held every other stream of the server
for 11.9 s. Every writer that can run long (SSE and WebSocket replays, Durable
Streams reads, ``GET /streams/{ref}``'s summary) asks a :class:`LoopSlicer` after
each piece of work, and yields once its slice (:data:`SLICE_S`) is used up. The
loop's worst stall under a 3M-frame replay is a benchmark figure
(``bench/bench_server.py``, ``server.loop_stall_ms``, target < 50 ms).
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["SLICE_S", "LoopSlicer"]

#: the most time a reply runs before it gives the event loop a turn, seconds
SLICE_S = 0.005


class LoopSlicer:
    """Yields to the event loop once ``slice_s`` seconds of work went by without a yield.

    Examples
    --------
    >>> async def replay(frames):
    ...     slicer = LoopSlicer()
    ...     sent = 0
    ...     for _ in frames:
    ...         sent += 1  # the work (render, send)
    ...         await slicer.tick()  # a yield at most every 5 ms
    ...     return sent
    >>> asyncio.run(replay(range(100_000)))
    100000
    """

    __slots__ = ("_since", "slice_s")

    def __init__(self, slice_s: float = SLICE_S) -> None:
        self.slice_s = slice_s
        self._since = time.perf_counter()

    async def tick(self) -> None:
        """Yield once if this slice is used up (cheap otherwise: one clock read)."""
        if time.perf_counter() - self._since >= self.slice_s:
            await asyncio.sleep(0)
            self._since = time.perf_counter()

    def reset(self) -> None:
        """A real wait just happened (the loop ran): start a new slice."""
        self._since = time.perf_counter()
