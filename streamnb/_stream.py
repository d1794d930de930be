"""Internal per-stream state: the frame log, the input inbox and the two iterators.

Owned by :class:`~streamnb._runtime.StreamRuntime` (one ``_Stream`` per stream_ref).
A session's ``output`` is an :class:`_Output` cursor into ``_Stream.log``; a bidi
handler's ``input`` is an :class:`_Input` reading ``_Stream.inbox``.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from typing import Any

from ._frames import Frame, tuple_new
from ._handler import AbortSignal, AttachedStreamHandler


class _State(enum.Enum):
    RUNNING = "running"
    SETTLING = "settling"
    SETTLED = "settled"


class _Stream:
    """Mutable state of one stream, owned by the runtime (one per stream_ref)."""

    __slots__ = (
        "base",
        "driver",
        "forced",
        "halt",
        "handler",
        "inbox",
        "inbox_waiter",
        "input_seqs",
        "log",
        "next_input_seq",
        "next_seq",
        "observers",
        "opened_at",
        "outcome",
        "pump",
        "ref",
        "settled",
        "signal",
        "state",
        "terminal",
        "timer",
        "waiters",
    )

    def __init__(self, handler: AttachedStreamHandler, ref: str, opened_at: float) -> None:
        self.handler = handler
        self.ref = ref
        self.opened_at = opened_at
        # Frames are stored as *exact* tuples (Frame's fields in order) and turned into
        # Frame objects as readers take them: CPython untracks exact tuples of atomic
        # values from the cyclic GC, tuple subclasses never. A log of a million
        # NamedTuples made full GC passes cost about half the throughput
        # (bench/bench_core.py core.throughput: 0.50x with, 0.8x without).
        self.log: list[tuple[Any, ...]] = []
        self.base = 0  # seq of log[0] (frames before it were trimmed)
        self.next_seq = 0
        self.state = _State.RUNNING
        self.signal = AbortSignal()
        self.inbox: deque[Frame] = deque()
        self.inbox_waiter: asyncio.Future[None] | None = None
        self.input_seqs: set[int] = set()
        self.next_input_seq = 0
        self.waiters: list[asyncio.Future[None]] = []
        self.observers = 0
        self.forced = False
        self.halt = False  # the pump must stop publishing (forced, or settling began)
        self.terminal: Frame | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.driver: asyncio.Task[None] | None = None
        self.pump: asyncio.Task[Frame | None] | None = None
        self.outcome: asyncio.Future[None] | None = None
        self.settled: asyncio.Future[Frame] | None = None

    @property
    def status(self) -> str:
        """``running`` until settled, then the terminal kind (the ledger's words too)."""
        terminal = self.terminal
        return "running" if terminal is None else terminal.kind

    def wake_readers(self) -> None:
        waiters = self.waiters
        if waiters:
            self.waiters = []
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def wake_input(self) -> None:
        w = self.inbox_waiter
        if w is not None and not w.done():
            w.set_result(None)


class _Input:
    """The ``input`` iterator a bidi handler reads; ends on cancel or settlement."""

    __slots__ = ("_st",)

    def __init__(self, st: _Stream) -> None:
        self._st = st

    def __aiter__(self) -> _Input:
        return self

    async def __anext__(self) -> Frame:
        st = self._st
        while True:
            if st.signal.aborted or st.state is not _State.RUNNING:
                raise StopAsyncIteration
            if st.inbox:
                return st.inbox.popleft()
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            st.inbox_waiter = fut
            try:
                await fut
            finally:
                st.inbox_waiter = None


class _Output:
    """``session.output``: a cursor into the stream's frame log (one iterator per session)."""

    __slots__ = ("_detached", "_next", "_st", "_waiter")

    def __init__(self, st: _Stream, start_seq: int) -> None:
        self._st = st
        self._next = start_seq
        self._detached = False
        self._waiter: asyncio.Future[None] | None = None

    def __aiter__(self) -> _Output:
        return self

    async def __anext__(self) -> Frame:
        st = self._st
        while True:
            if self._detached:
                raise StopAsyncIteration
            i = self._next - st.base
            if i < 0:  # trimmed by retention: skip ahead; the seq gap shows it
                self._next = st.base
                i = 0
            log = st.log
            if i < len(log):
                self._next += 1
                return tuple_new(Frame, log[i])
            if st.terminal is not None:
                raise StopAsyncIteration
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = fut
            st.waiters.append(fut)
            try:
                await fut
            finally:
                self._waiter = None

    @property
    def next_seq(self) -> int:
        """The seq this cursor will read next."""
        return self._next

    def _close(self) -> None:
        self._detached = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
