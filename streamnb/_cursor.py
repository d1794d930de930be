"""Readers of a stream's frame log: :class:`FrameCursor` and the :class:`FrameBatch` it reads.

A session's ``output`` and ``runtime.follow(ref)`` are cursors into ``_Stream.log``
(the log holds exact tuples of :class:`Frame`'s fields, see ``_stream.py``). A
cursor is read one frame at a time (``async for frame in cursor``) or a batch at
a time (``async for batch in cursor.batches()``, ``cursor.read_available()``): a
batch is every frame available at that moment, taken in one step as one slice of
the log, with no object per frame until a frame is looked at. Both ways move the
same cursor and see exactly the same frames, in ``seq`` order, with the same
retention gaps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, overload

from ._errors import StreamnbError
from ._frames import TERMINAL_KINDS, Frame, tuple_new
from ._interrupt import cell_interrupted

if TYPE_CHECKING:
    from ._stream import _Stream

__all__ = ["FrameBatch", "FrameCursor"]


class FrameBatch(Sequence[Frame]):
    """Consecutive frames read in one step: a read-only sequence of :class:`Frame`.

    Made by :meth:`FrameCursor.read_available` and :meth:`FrameCursor.batches`
    from one slice of the stream's log. Indexing or iterating it builds each
    :class:`Frame` as it is looked at; :meth:`text` and :attr:`last_seq` build
    none (a reader that only needs the text pays nothing per frame).

    Examples
    --------
    >>> import streamnb as sn
    >>> from streamnb.demo import output_only_handler
    >>> runtime = sn.StreamRuntime()
    >>> handler = runtime.register(output_only_handler())
    >>> session = runtime.run(runtime.attach("tutorial.output_only", {}))
    >>> _ = runtime.run(session.wait())
    >>> batch = session.output.read_available()
    >>> len(batch), batch.first_seq, batch.last_seq, batch.terminal.kind
    (4, 0, 3, 'completed')
    >>> [f.kind for f in batch]
    ['opened', 'progress', 'output', 'completed']
    >>> batch.text("stdout")
    'hello'
    >>> batch.texts(), batch.last("progress").kind
    ({'stdout': 'hello'}, 'progress')
    >>> runtime.close()
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[Any, ...]]) -> None:
        self._raw = raw

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, index: int) -> Frame: ...

    @overload
    def __getitem__(self, index: slice) -> FrameBatch: ...

    def __getitem__(self, index: int | slice) -> Frame | FrameBatch:
        if isinstance(index, slice):
            return FrameBatch(self._raw[index])
        return tuple_new(Frame, self._raw[index])

    def __iter__(self) -> Iterator[Frame]:
        for raw in self._raw:
            yield tuple_new(Frame, raw)

    def __bool__(self) -> bool:
        return bool(self._raw)

    @property
    def first_seq(self) -> int | None:
        """The ``seq`` of the first frame (None for an empty batch)."""
        return self._raw[0][2] if self._raw else None

    @property
    def last_seq(self) -> int | None:
        """The ``seq`` of the last frame (None for an empty batch): pass it as
        ``after_seq`` to read on from here later (``runtime.follow(ref, last_seq)``)."""
        return self._raw[-1][2] if self._raw else None

    @property
    def terminal(self) -> Frame | None:
        """The terminal frame if this batch ends with it (nothing follows it), else None."""
        if self._raw and self._raw[-1][0] in TERMINAL_KINDS:
            return tuple_new(Frame, self._raw[-1])
        return None

    def text(self, channel: str) -> str:
        """The string payloads of this batch's ``output`` frames on ``channel``, joined.

        The same text ``runtime.output_text`` gives for these seqs, without building
        a :class:`Frame` per frame.
        """
        # raw tuples: 0 kind, 4 channel, 5 payload (Frame's field order)
        return "".join(
            [r[5] for r in self._raw if r[0] == "output" and r[4] == channel and type(r[5]) is str]
        )

    def texts(self) -> dict[str, str]:
        """The text each channel's ``output`` frames add, joined per channel.

        What a viewer shows for this batch: string payloads as they are, any other
        payload as JSON (``json.dumps(payload, ensure_ascii=False)``), in ``seq`` order within each
        channel; channels in the order they first appear. One pass over the batch,
        no :class:`Frame` built: a widget folds a flood of tokens this way.

        Returns
        -------
        dict of str to str
            ``{channel: text}``; empty when the batch has no ``output`` frame (see the
            class's example).
        """
        parts: dict[str, list[str]] = {}
        # raw tuples: 0 kind, 4 channel, 5 payload (Frame's field order)
        for r in self._raw:
            if r[0] == "output":
                payload = r[5]
                if type(payload) is not str:
                    payload = json.dumps(payload, ensure_ascii=False)
                channel = r[4]
                chunk = parts.get(channel)
                if chunk is None:
                    parts[channel] = [payload]
                else:
                    chunk.append(payload)
        return {channel: "".join(chunk) for channel, chunk in parts.items()}

    def last(self, kind: str) -> Frame | None:
        """The last frame of ``kind`` in this batch (e.g. the latest ``"progress"``), or None."""
        for r in reversed(self._raw):
            if r[0] == kind:
                return tuple_new(Frame, r)
        return None

    def __repr__(self) -> str:
        if not self._raw:
            return "<FrameBatch empty>"
        return f"<FrameBatch {len(self._raw)} frames, seq {self.first_seq}..{self.last_seq}>"


class FrameCursor:
    """A cursor into a stream's frame log: ``session.output`` and ``runtime.follow(ref)``.

    Iterate it for one :class:`Frame` at a time (``async for frame in cursor``), or
    read what is available in one step: :meth:`read_available` (never waits) or
    :meth:`batches` (waits for at least one frame, then takes all there are). Both
    ways move the same position and yield the same frames in ``seq`` order; a
    reader that fell behind retention sees the seq gap either way. Iteration ends
    after the terminal frame, or when the session detaches.

    A batched reader does one step per wake-up instead of one per frame: a
    widget or server that forwards a flood of tokens reads hundreds per step
    (``bench/bench_core.py``, ``core.throughput``).

    ``on_interrupt`` (set by the session) detaches it when a notebook cell waiting on
    this cursor is interrupted, and returns the error the cell raises instead of a bare
    ``CancelledError`` (see :mod:`streamnb._interrupt`).
    """

    __slots__ = ("_detached", "_next", "_st", "_waiter", "on_interrupt")

    def __init__(self, st: _Stream, start_seq: int) -> None:
        self._st = st
        self._next = start_seq
        self._detached = False
        self._waiter: asyncio.Future[None] | None = None
        self.on_interrupt: Callable[[], StreamnbError] | None = None

    def __aiter__(self) -> FrameCursor:
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
            await self._wait()

    async def next_within(self, timeout_s: float) -> Frame | None:
        """The next frame, or None when none came within ``timeout_s`` seconds.

        What ``asyncio.wait_for(anext(cursor), timeout_s)`` is meant to do, without
        its flaw before Python 3.12: when the frame and a cancellation of the calling
        task arrive in the same loop iteration, ``wait_for`` returns the frame and the
        cancellation is lost (the task then waits on, and whoever cancelled it waits
        for it). Here a cancellation always raises ``CancelledError``, and no task is
        made: the wait itself has the deadline.

        Parameters
        ----------
        timeout_s : float
            How long to wait for a frame, seconds (0 or less: only what is there).

        Returns
        -------
        Frame or None
            The next frame (in ``seq`` order, as iteration gives it), or None at the
            deadline.

        Raises
        ------
        StopAsyncIteration
            The stream ended (after its terminal frame) or the session detached.

        Examples
        --------
        >>> from streamnb.demo import chatbot_handler
        >>> runtime = sn.StreamRuntime()
        >>> handler = runtime.register(chatbot_handler())
        >>> session = runtime.run(runtime.attach("tutorial.streaming_chatbot", {}))
        >>> runtime.run(session.output.next_within(1.0)).kind
        'opened'
        >>> runtime.run(session.output.next_within(1.0)).kind
        'progress'
        >>> runtime.run(session.output.next_within(0.05)) is None  # it waits for input
        True
        >>> runtime.close()
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            batch = self.read_available(1)
            if batch:
                return batch[0]
            if self.done:
                raise StopAsyncIteration
            if loop.time() >= deadline:
                return None
            await self._wait(deadline)

    async def _wait(self, deadline: float | None = None) -> None:
        """Until the log grows, the stream ends, this cursor is closed or (loop time)
        ``deadline`` passes."""
        st = self._st
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiter = fut
        waiters = st.waiters
        if waiters is None:
            st.waiters = [fut]
        else:
            waiters.append(fut)
        timer = None if deadline is None else loop.call_at(deadline, _wake, fut)
        try:
            await fut
        except asyncio.CancelledError:
            interrupted = self.interrupted()
            if interrupted is None:
                raise
            raise interrupted from None
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def interrupted(self) -> StreamnbError | None:
        """Inside ``except CancelledError``: the error to raise instead when a notebook
        cell waiting on this cursor was interrupted (this detaches the session), else None.
        """
        if self.on_interrupt is None or not cell_interrupted():
            return None
        return self.on_interrupt()

    @property
    def consumed(self) -> bool:
        """True once this cursor has returned the stream's terminal frame."""
        terminal = self._st.terminal
        return terminal is not None and self._next > terminal.seq

    def read_available(self, max_frames: int | None = None) -> FrameBatch:
        """Every frame available now (at most ``max_frames``), without waiting.

        Moves the cursor past them. An empty batch means nothing new yet, or the
        end (the terminal frame was read, or the session detached: see
        :attr:`done`).

        Parameters
        ----------
        max_frames : int >= 1 or None
            Most frames to take (None: all there are).

        Raises
        ------
        ValueError
            ``max_frames`` is not None or an int >= 1.
        """
        if max_frames is not None and (type(max_frames) is not int or max_frames < 1):
            raise ValueError(f"max_frames must be an int >= 1 or None, got {max_frames!r}")
        if self._detached:
            return FrameBatch([])
        st = self._st
        i = self._next - st.base
        if i < 0:  # trimmed by retention: skip ahead; the seq gap shows it
            i = 0
        log = st.log
        raw = log[i:] if max_frames is None else log[i : i + max_frames]
        self._next = st.base + i + len(raw)
        return FrameBatch(raw)

    def batches(self, max_frames: int | None = None) -> AsyncIterator[FrameBatch]:
        """The frames as an async iterator of non-empty :class:`FrameBatch` es.

        Each step waits until at least one frame is available, then takes every
        frame there is (at most ``max_frames``) in one slice of the log. It ends
        after the batch that holds the terminal frame, or when the session
        detaches. Frames seen this way are exactly those ``async for frame in
        cursor`` would see (the two share this cursor's position).

        Examples
        --------
        >>> import streamnb as sn
        >>> from streamnb.demo import output_only_handler
        >>> runtime = sn.StreamRuntime()
        >>> handler = runtime.register(output_only_handler())
        >>> session = runtime.run(runtime.attach("tutorial.output_only", {}))
        >>> async def read(cursor):
        ...     return [[f.kind for f in batch] async for batch in cursor.batches()]
        >>> kinds = runtime.run(read(runtime.follow(session.stream_ref)))
        >>> [k for batch in kinds for k in batch]
        ['opened', 'progress', 'output', 'completed']
        >>> runtime.close()
        """
        if max_frames is not None and (type(max_frames) is not int or max_frames < 1):
            raise ValueError(f"max_frames must be an int >= 1 or None, got {max_frames!r}")
        return _Batches(self, max_frames)

    @property
    def done(self) -> bool:
        """True once nothing more can be read (the terminal frame was read, or detached)."""
        if self._detached:
            return True
        st = self._st
        return st.terminal is not None and self._next >= st.base + len(st.log)

    @property
    def next_seq(self) -> int:
        """The seq this cursor will read next."""
        return self._next

    def _close(self) -> None:
        self._detached = True
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def __repr__(self) -> str:
        return f"<FrameCursor {self._st.ref} next_seq={self._next}{' done' if self.done else ''}>"


class _Batches:
    """``cursor.batches()``: waits for frames, then takes all there are in one step."""

    __slots__ = ("_cursor", "_max")

    def __init__(self, cursor: FrameCursor, max_frames: int | None) -> None:
        self._cursor = cursor
        self._max = max_frames

    def __aiter__(self) -> _Batches:
        return self

    async def __anext__(self) -> FrameBatch:
        cursor = self._cursor
        while True:
            batch = cursor.read_available(self._max)
            if batch:
                return batch
            if cursor.done:
                raise StopAsyncIteration
            await cursor._wait()


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
