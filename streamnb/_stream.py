"""One stream's state and the transitions that change it.

A :class:`_Stream` holds the frame log, the input inbox, the cancel signal and the
settled future of one stream, and is the only code that changes them: appending
a frame (with retention trim, recording and waking readers), accepting input,
requesting cancel, the start of settling and the announcement of the terminal
frame. The runtime that owns the stream keeps attach, the stream's task (it
pumps the handler, then settles) and the settlement; sessions talk to their
stream, and to the runtime only through the small :class:`StreamOwner`
interface (the loop check, and "a cancel was requested, start the grace timer").

A session's ``output`` is a :class:`~streamnb.FrameCursor` into ``_Stream.log``; a bidi
handler's ``input`` is an :class:`_Input` reading ``_Stream.inbox``.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ._errors import (
    InputNotAcceptedError,
    InvalidFrameError,
    StreamSettledError,
    StreamTimeoutError,
)
from ._frames import Frame, check_json, tuple_new
from ._handler import AbortSignal, AttachedStreamHandler

__all__ = [
    "MAX_INBOX",
    "CancelResult",
    "SendResult",
    "StreamInfo",
    "StreamOwner",
]

CancelResult = Literal["requested", "already_requested", "already_settled"]
SendResult = Literal["accepted", "duplicate"]

#: most input frames queued for a handler that is not reading them
MAX_INBOX = 1024
_INPUT_KEYS = frozenset({"kind", "stream_ref", "seq", "payload"})


class StreamOwner(Protocol):
    """What a stream and its sessions need from the runtime that owns them."""

    def check_loop(self) -> asyncio.AbstractEventLoop:
        """The loop the runtime runs on; raises RuntimeClosedError on another loop."""
        ...

    def cancel_requested(self, st: _Stream) -> None:
        """A cancel was just requested: start the grace period before a forced stop."""
        ...

    @property
    def runtime_id(self) -> str | None:
        """The runtime's lease in a shared ledger (None: SQLite, or not taken yet)."""
        ...


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A snapshot of one stream as the runtime sees it (see :meth:`StreamRuntime.info`).

    ``status`` is ``running`` until the stream settled, then its terminal kind;
    ``settling`` is True while its end is decided and being committed to the ledger
    (input is refused and ``cancel`` answers ``already_settled`` from then on).
    ``runtime_id`` names the runtime that runs the handler when the ledger is
    shared (PostgreSQL): this one's (``runtime.runtime_id``), or another
    process's for a stream read from the ledger; None with SQLite.

    Examples
    --------
    >>> from streamnb.demo import chatbot_handler
    >>> runtime = sn.StreamRuntime()
    >>> handler = runtime.register(chatbot_handler())
    >>> session = runtime.run(runtime.attach("tutorial.streaming_chatbot", {}))
    >>> info = runtime.info(session.stream_ref)
    >>> info.status, info.settling, info.observers, info.cancel_requested
    ('running', False, 1, False)
    >>> runtime.close()
    """

    stream_ref: str
    kind: str
    mode: str
    on_detach: str
    status: str
    settling: bool
    opened_at: float
    next_seq: int
    first_retained_seq: int
    observers: int
    cancel_requested: bool
    cancel_reason: str | None
    terminal: Frame | None
    runtime_id: str | None = None


class _State(enum.Enum):
    RUNNING = "running"
    SETTLING = "settling"
    SETTLED = "settled"


class _Stream:
    """Mutable state of one stream (one per stream_ref), changed only by its methods."""

    __slots__ = (
        "base",
        "cap",
        "forced",
        "halt",
        "handler",
        "idle_s",
        "idle_timer",
        "inbox",
        "inbox_waiter",
        "input_seqs",
        "inputs",
        "log",
        "next_input_seq",
        "observers",
        "opened_at",
        "owner",
        "record",
        "ref",
        "settled",
        "signal",
        "state",
        "task",
        "terminal",
        "text_bytes",
        "timer",
        "waiters",
    )

    def __init__(
        self,
        owner: StreamOwner,
        handler: AttachedStreamHandler,
        ref: str,
        opened_at: float,
        *,
        cap: int | None = None,
        record: Callable[[Frame], None] | None = None,
        idle_s: float | None = None,
    ) -> None:
        self.owner = owner
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
        self.cap = cap  # most non-terminal frames kept in the log (None: all)
        self.record = record  # where every non-terminal frame is recorded (None: nowhere)
        self.state = _State.RUNNING
        self.signal = AbortSignal()
        # An idle stream holds nothing it does not need (bench/bench_core.py
        # core.memory_per_bidi): the inbox, the seen input seqs and the settled future
        # are created on first use.
        self.inbox: deque[Frame] | None = None
        self.inbox_waiter: asyncio.Future[None] | None = None
        self.input_seqs: set[int] | None = None
        self.next_input_seq = 0
        #: every accepted input with the outbound seq published next when it arrived
        #: (made by the first input: an idle stream has none)
        self.inputs: list[tuple[int, Frame]] | None = None
        self.waiters: list[asyncio.Future[None]] | None = None  # readers waiting for a frame
        self.observers = 0
        self.terminal: Frame | None = None
        self.settled: asyncio.Future[Frame] | None = None  # made by the first wait()
        self.forced = False  # stopped by force (mark_forced)
        self.halt = False  # the pump must stop publishing (forced, or settling began)
        # the runtime's handles on this stream's work: the grace timer and the stream's
        # task (set and cleared by the runtime only)
        self.timer: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None
        #: approximate bytes of the log's payloads, kept by the pump (retention bound)
        self.text_bytes = 0
        # the idle limit: waiting for input with no observer for idle_s seconds cancels
        # the stream with reason "idle" (None: never)
        self.idle_s = idle_s
        self.idle_timer: asyncio.TimerHandle | None = None

    # --- reading ------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """The seq of the next outbound frame (the log holds every seq below it)."""
        return self.base + len(self.log)

    @property
    def status(self) -> str:
        """``running`` until settled, then the terminal kind (the ledger's words too)."""
        terminal = self.terminal
        return "running" if terminal is None else terminal.kind

    def frame_log(self, after_seq: int = -1, limit: int | None = None) -> list[Frame]:
        """The retained frames with ``seq > after_seq``, at most ``limit`` (a snapshot)."""
        start = max(0, after_seq + 1 - self.base)
        stop = None if limit is None else start + limit
        return [tuple_new(Frame, raw) for raw in self.log[start:stop]]

    def output_text(self, channel: str, after_seq: int = -1) -> tuple[str, int]:
        """The text of ``channel`` after ``after_seq``, and the seq it reaches (see
        :meth:`StreamRuntime.output_text`)."""
        log = self.log
        end = len(log)
        # raw tuples: 0 kind, 4 channel, 5 payload (Frame's field order); no Frame is built
        text = "".join(
            [
                r[5]
                for r in log[max(0, after_seq + 1 - self.base) : end]
                if r[0] == "output" and r[4] == channel and type(r[5]) is str
            ]
        )
        return text, max(after_seq, self.base + end - 1)

    def info(self) -> StreamInfo:
        h = self.handler
        return StreamInfo(
            stream_ref=self.ref,
            kind=h.kind,
            mode=h.mode,
            on_detach=h.on_detach,
            status=self.status,
            settling=self.state is _State.SETTLING,
            opened_at=self.opened_at,
            next_seq=self.next_seq,
            first_retained_seq=self.base,
            observers=self.observers,
            cancel_requested=self.signal.aborted,
            cancel_reason=self.signal.reason,
            terminal=self.terminal,
            runtime_id=self.runtime_id,
        )

    @property
    def runtime_id(self) -> str | None:
        """The runtime running the handler (a shared ledger's lease), or None."""
        return self.owner.runtime_id

    def settled_future(self) -> asyncio.Future[Frame]:
        """The future of the terminal frame, made on first use (resolved if already settled)."""
        settled = self.settled
        if settled is None:
            settled = self.settled = asyncio.get_running_loop().create_future()
            if self.terminal is not None:
                settled.set_result(self.terminal)
        return settled

    async def wait(self, timeout_s: float | None = None) -> Frame:
        """The terminal frame, once announced (shielded: a timeout leaves the stream be)."""
        if self.terminal is not None:
            return self.terminal
        settled = self.settled_future()
        if timeout_s is None:
            return await asyncio.shield(settled)
        try:
            return await asyncio.wait_for(asyncio.shield(settled), timeout_s)
        except asyncio.TimeoutError:
            raise StreamTimeoutError(float(timeout_s), 0) from None

    # --- frames out -----------------------------------------------------------------------

    def append(self, raw: tuple[Any, ...]) -> None:
        """Publish one non-terminal frame (an exact tuple of Frame's fields).

        Records it, wakes the readers waiting for it and trims the log to ``cap``
        (readers that fell behind see the seq gap).
        """
        log = self.log
        log.append(raw)
        if self.record is not None:
            self.record(tuple_new(Frame, raw))
        if self.waiters:
            self.wake_readers()
        cap = self.cap
        if cap is not None and len(log) > cap:
            drop = len(log) - cap
            del log[:drop]
            self.base += drop

    def mark_forced(self, reason: str) -> None:
        """The handler is being stopped by force: cancelled (if not yet), publishing nothing."""
        self.signal._abort(reason)  # no-op when a cancel was already requested
        self.forced = True
        self.halt = True

    def begin_settling(self) -> None:
        """The end is decided: no more frames from the pump, no more input, no timers."""
        self.state = _State.SETTLING
        self.halt = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.check_idle()
        self.wake_input()

    def announce(self, terminal: Frame) -> None:
        """The settlement committed: append the terminal frame (always kept) and wake all."""
        self.terminal = terminal
        self.state = _State.SETTLED
        self.log.append(tuple(terminal))
        self.wake_readers()
        settled = self.settled
        if settled is not None:
            # resolved, then let go: a retained settled stream keeps no future alive
            # (settled_future() makes a resolved one if asked again)
            self.settled = None
            if not settled.done():
                settled.set_result(terminal)

    def wake_readers(self) -> None:
        waiters = self.waiters
        if waiters:
            self.waiters = None
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    # --- frames in, cancel, observers -------------------------------------------------------

    async def send_input(self, frame: Any) -> SendResult:
        """:meth:`accept_input`, as sessions and the runtime call it (a stream another
        process runs answers over the ledger: ``streamnb/_remote.py``)."""
        return self.accept_input(frame)

    async def cancel(self, reason: Any) -> CancelResult:
        """:meth:`request_cancel`, as sessions and the runtime call it (see :meth:`send_input`)."""
        return self.request_cancel(reason)

    def accept_input(self, frame: Any) -> SendResult:
        """Queue an input frame (or bare payload) for the handler.

        Raises
        ------
        InputNotAcceptedError, StreamSettledError, InvalidFrameError
            As documented on :meth:`Session.send`; nothing is queued.
        """
        ref = self.ref
        if self.handler.mode != "bidi":
            raise InputNotAcceptedError(
                ref, "it is an output_only stream; only 'bidi' handlers read input"
            )
        if self.state is not _State.RUNNING:
            raise StreamSettledError(ref, None if self.terminal is None else self.terminal.kind)
        if self.signal.aborted:
            raise InputNotAcceptedError(
                ref, f"the stream is being cancelled ({self.signal.reason}); attach a new one"
            )
        seq, payload = _parse_input(frame, ref)
        seen = self.input_seqs
        if seen is None:
            seen = self.input_seqs = set()
        inbox = self.inbox
        if inbox is None:
            inbox = self.inbox = deque()
        if seq is None:
            seq = self.next_input_seq
        elif seq in seen:
            return "duplicate"
        if len(inbox) >= MAX_INBOX:
            raise InputNotAcceptedError(
                ref, f"{MAX_INBOX} inputs are already waiting; the handler is not reading input"
            )
        seen.add(seq)
        self.next_input_seq = max(self.next_input_seq, seq + 1)
        frame = Frame("input", ref, seq, time.time(), payload=payload)
        inputs = self.inputs
        if inputs is None:
            self.inputs = [(self.next_seq, frame)]
        else:
            inputs.append((self.next_seq, frame))
        inbox.append(frame)
        self.wake_input()
        return "accepted"

    def request_cancel(self, reason: Any) -> CancelResult:
        """Cooperative cancel: set the signal, end the handler's ``input``, start the grace.

        Raises
        ------
        InvalidFrameError
            ``reason`` is not a str, or not valid Unicode text (nothing changes).
        """
        _check_reason(reason)
        if self.state is not _State.RUNNING:
            return "already_settled"
        if self.signal.aborted:
            return "already_requested"
        self.signal._abort(reason)
        self.wake_input()
        self.owner.cancel_requested(self)
        return "requested"

    def add_observer(self) -> None:
        self.observers += 1
        self.check_idle()

    def remove_observer(self) -> None:
        """One observer detached; the last one of an ``on_detach="abort"`` stream cancels it."""
        self.observers -= 1
        if (
            self.observers <= 0
            and self.handler.on_detach == "abort"
            and self.state is _State.RUNNING
        ):
            self.request_cancel("detached")
        self.check_idle()

    def check_idle(self) -> None:
        """Start or stop the idle timer: a bidi stream waiting for input, nobody observing."""
        idle = (
            self.idle_s is not None
            and self.state is _State.RUNNING
            and self.observers <= 0
            and self.inbox_waiter is not None
            and not self.inbox
            and not self.signal.aborted
        )
        timer = self.idle_timer
        if idle and timer is None:
            assert self.idle_s is not None
            loop = asyncio.get_running_loop()
            self.idle_timer = loop.call_later(self.idle_s, self._idle_expired)
        elif not idle and timer is not None:
            timer.cancel()
            self.idle_timer = None

    def _idle_expired(self) -> None:
        self.idle_timer = None
        if self.state is _State.RUNNING and self.observers <= 0 and not self.inbox:
            self.request_cancel("idle")

    def wake_input(self) -> None:
        w = self.inbox_waiter
        if w is not None and not w.done():
            w.set_result(None)


def _check_reason(reason: Any) -> None:
    """Refuse a cancel reason that is not text (it is stored and sent as text)."""
    if not isinstance(reason, str):
        raise InvalidFrameError(
            f"the cancel reason must be a str, got {type(reason).__name__} {reason!r}; "
            "e.g. cancel('user pressed stop')"
        )
    check_json(reason, "the cancel reason")


def _parse_input(frame: Any, ref: str) -> tuple[int | None, Any]:
    """``(seq or None, payload)`` of what ``send`` was given: an input frame or a bare payload.

    Raises
    ------
    InvalidFrameError
        An outbound Frame, unknown keys, another stream's ref, a bad ``seq``, or a
        payload that is not JSON.
    """
    seq: Any = None
    if isinstance(frame, Frame):
        if frame.kind != "input":
            raise InvalidFrameError(
                f"only 'input' frames can be sent, this is an outbound {frame.kind!r} "
                "frame; send its payload instead",
                frame,
            )
        frame = {
            "kind": frame.kind,
            "stream_ref": frame.stream_ref,
            "seq": frame.seq,
            "payload": frame.payload,
        }
    if isinstance(frame, dict) and frame.get("kind") == "input":
        extra = set(frame) - _INPUT_KEYS
        if extra:
            raise InvalidFrameError(
                f"unknown keys {sorted(extra)}; an input frame has kind, stream_ref, seq, payload",
                frame,
            )
        if frame.get("stream_ref", ref) != ref:
            raise InvalidFrameError(
                f"input frame is for stream {frame.get('stream_ref')!r}, not {ref!r}", frame
            )
        seq = frame.get("seq")
        payload = frame.get("payload")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
            raise InvalidFrameError("input 'seq' must be an integer >= 0", frame)
    else:
        payload = frame
    check_json(payload, "input payload", frame)
    return seq, payload


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
            inbox = st.inbox
            if inbox:
                return inbox.popleft()
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            st.inbox_waiter = fut
            st.check_idle()
            try:
                await fut
            finally:
                st.inbox_waiter = None
                st.check_idle()
