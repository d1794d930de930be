"""Exceptions raised by streamnb.

Every error streamnb raises derives from :class:`StreamnbError`. Messages are
built in ``__init__`` and say what was wrong and what to do about it; errors
from third-party libraries (sqlite3, json) are translated at the boundary with
``raise ... from exc``. (Modelled on httpx ``_exceptions.py``.)

The tree::

    StreamnbError
    ├── HandlerDefinitionError     a handler is defined wrongly (register time)
    ├── UnknownKindError           attach() names a kind nobody registered
    ├── StartRejectedError         parse_start returned ParseError (carries .issues)
    ├── UnknownStreamError         a stream_ref the runtime does not know
    ├── InputNotAcceptedError      send() on an output_only stream, or while cancelling
    │   └── StreamSettledError     send() on a stream that already settled
    ├── InvalidFrameError          a frame (dict or Frame) is malformed or not JSON
    ├── RuntimeClosedError         the runtime was closed (aclose) or is bound to another loop
    ├── SessionDetachedError       a session was used after detach()
    ├── OutputConsumedError        session.output read again after its terminal frame
    ├── WaitInterruptedError       a notebook cell awaiting a stream was interrupted
    ├── StreamTimeoutError         read_until_terminal(timeout_s=...) ran out of time
    └── LedgerError                the ledger could not be opened, written or queried
        ├── LedgerBusyError        another process holds the file ledger's writer lock
        ├── LedgerQueryError       ledger.sql() was given a bad or writing statement
        └── LedgerTimeoutError     a ledger read ran past its time limit (timeout_s)

Examples
--------
>>> import streamnb as sn
>>> with sn.Ledger() as ledger:
...     try:
...         ledger.sql("DELETE FROM events")
...     except sn.StreamnbError as exc:
...         print(type(exc).__name__, isinstance(exc, sn.LedgerError))
LedgerQueryError True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "HandlerDefinitionError",
    "InputNotAcceptedError",
    "InvalidFrameError",
    "LedgerBusyError",
    "LedgerError",
    "LedgerQueryError",
    "LedgerTimeoutError",
    "OutputConsumedError",
    "RuntimeClosedError",
    "SessionDetachedError",
    "StartRejectedError",
    "StreamSettledError",
    "StreamTimeoutError",
    "StreamnbError",
    "UnknownKindError",
    "UnknownStreamError",
    "WaitInterruptedError",
]


class StreamnbError(Exception):
    """Root of every exception raised by streamnb."""


class HandlerDefinitionError(StreamnbError):
    """An :class:`~streamnb.AttachedStreamHandler` is defined wrongly."""

    def __init__(self, kind: str, problem: str) -> None:
        self.kind = kind
        super().__init__(f"handler {kind!r} is not valid: {problem}")


class UnknownKindError(StreamnbError):
    """``attach`` named a stream kind that no registered handler provides."""

    def __init__(self, kind: str, known: Iterable[str]) -> None:
        self.kind = kind
        self.known = sorted(known)
        listed = ", ".join(repr(k) for k in self.known) or "none"
        super().__init__(
            f"no handler is registered for kind {kind!r} (registered kinds: {listed}); "
            "call runtime.register(handler) first or check the spelling"
        )


class StartRejectedError(StreamnbError):
    """``parse_start`` rejected the start payload; ``issues`` lists why."""

    def __init__(self, kind: str, issues: Sequence[str]) -> None:
        self.kind = kind
        self.issues = list(issues)
        joined = "; ".join(self.issues) or "no reason given"
        super().__init__(
            f"the start payload for {kind!r} was rejected: {joined}; "
            "fix the payload passed to attach() and try again (no stream was opened)"
        )


class UnknownStreamError(StreamnbError):
    """A ``stream_ref`` the runtime does not know (never opened, or evicted)."""

    def __init__(self, stream_ref: str, hint: str = "") -> None:
        self.stream_ref = stream_ref
        extra = f"; {hint}" if hint else ""
        super().__init__(f"no stream with ref {stream_ref!r} in this runtime{extra}")


class InputNotAcceptedError(StreamnbError):
    """``send`` was refused: the stream takes no input now (nothing was queued)."""

    def __init__(self, stream_ref: str, why: str) -> None:
        self.stream_ref = stream_ref
        super().__init__(f"input to stream {stream_ref!r} was not accepted: {why}")


class StreamSettledError(InputNotAcceptedError):
    """``send`` on a stream that has settled, or whose settlement is being committed.

    ``status`` is the terminal kind, or None while the settlement is being committed.
    """

    def __init__(self, stream_ref: str, status: str | None) -> None:
        self.status = status
        ended = (
            "the stream is ending (its settlement is being committed)"
            if status is None
            else f"the stream already settled as {status!r}"
        )
        super().__init__(stream_ref, f"{ended}; attach a new stream to continue")


class InvalidFrameError(StreamnbError):
    """A frame is malformed (unknown kind, missing channel, non-JSON payload, ...)."""

    def __init__(self, problem: str, frame: object = None) -> None:
        self.problem = problem
        self.frame = frame
        shown = "" if frame is None else f" in frame {_short(frame)}"
        super().__init__(f"invalid frame{shown}: {problem}")


class RuntimeClosedError(StreamnbError):
    """The runtime cannot be used: it was closed, or it belongs to another event loop."""

    def __init__(self, why: str) -> None:
        super().__init__(why)


class SessionDetachedError(StreamnbError):
    """A :class:`~streamnb.Session` was used after ``detach()``: it observes nothing any more.

    ``send``, ``cancel``, ``wait``, ``output`` and ``frame_log`` raise it; ``detach``
    again does nothing, and ``stream_ref``, ``status`` and ``terminal`` stay readable.
    """

    def __init__(self, stream_ref: str, action: str) -> None:
        self.stream_ref = stream_ref
        self.action = action
        super().__init__(
            f"cannot {action}: this session detached from stream {stream_ref!r}; "
            f"attach a new observer with runtime.reattach({stream_ref!r}), or use "
            f"runtime.send/cancel/wait({stream_ref!r}, ...) by ref"
        )


class OutputConsumedError(StreamnbError):
    """``session.output`` was used again after its terminal frame was read.

    ``output`` is one async iterator, consumed as it is read (a cell that read it to
    the end and is run again would otherwise see nothing at all).
    """

    def __init__(self, stream_ref: str, status: str) -> None:
        self.stream_ref = stream_ref
        super().__init__(
            f"session.output of stream {stream_ref!r} was already read to its end (the "
            f"stream settled {status!r}); it is one iterator, consumed as it is read. Get "
            "the frames again with session.frame_log(), or replay them with a new session: "
            f"(await runtime.reattach({stream_ref!r})).output"
        )


class WaitInterruptedError(StreamnbError):
    """A notebook cell awaiting a stream was interrupted (Kernel -> Interrupt).

    The cell's observer detached, so the handler's ``on_detach`` decided the stream's
    fate: ``stream_cancelled`` is True when the stream is being cancelled (reason
    ``"detached"``), False when it keeps running.
    """

    def __init__(
        self, stream_ref: str, kind: str, *, detached: bool, stream_cancelled: bool
    ) -> None:
        self.stream_ref = stream_ref
        self.kind = kind
        self.detached = detached
        self.stream_cancelled = stream_cancelled
        what = f"interrupted while waiting for stream {stream_ref!r} (kind {kind!r})"
        if stream_cancelled:
            fate = (
                "this cell's session detached and, as the stream's last observer of an "
                "on_detach='abort' handler, that cancels the stream (reason 'detached'); "
                "attach a new stream to start again"
            )
        else:
            who = "this cell's session detached; " if detached else ""
            fate = (
                f"{who}the stream keeps running: watch it again with "
                f"await runtime.reattach({stream_ref!r}), wait for it with "
                f"await runtime.wait({stream_ref!r}), or stop it with "
                f"await runtime.cancel({stream_ref!r})"
            )
        super().__init__(f"{what}: {fate}")


class StreamTimeoutError(StreamnbError, TimeoutError):
    """Waiting for a stream ran out of time; the stream itself is untouched.

    ``frame_log`` holds the frames :func:`~streamnb.read_until_terminal` read
    before the time ran out (a list of :class:`~streamnb.Frame`; empty for ``wait``).
    """

    def __init__(
        self, timeout_s: float, frames_read: int, *, frame_log: Sequence[Any] = ()
    ) -> None:
        self.timeout_s = timeout_s
        self.frames_read = frames_read
        self.frame_log = list(frame_log)
        super().__init__(
            f"no terminal frame within {timeout_s:g} s ({frames_read} frames read); "
            "the stream keeps running: cancel it or wait longer"
        )


class LedgerError(StreamnbError):
    """The ledger could not be opened, written or queried."""


class LedgerBusyError(LedgerError):
    """Another live process holds the writer lock of a file ledger.

    ``pid`` is that process's id when it could be read from the lock file, else None.
    """

    def __init__(self, path: str, pid: int | None = None) -> None:
        self.path = path
        self.pid = pid
        who = "another live process" if pid is None else f"another live process (pid {pid})"
        super().__init__(
            f"the ledger {path!r} is being written by {who}; open it with "
            "Ledger(path, read_only=True) to read it, or stop the other runtime first"
        )


class LedgerQueryError(LedgerError):
    """``ledger.sql`` was given a statement that failed or tried to write."""

    def __init__(self, query: str, reason: str) -> None:
        self.query = query
        super().__init__(
            f"ledger query failed: {reason} (query: {query.strip()[:200]!r}); "
            "ledger.sql() runs read-only SELECT statements"
        )


class LedgerTimeoutError(LedgerError, TimeoutError):
    """A ledger read ran longer than its time limit (``timeout_s``) and was interrupted.

    Nothing changed: reads never hold back writes, and the interrupted read left
    no state behind.
    """

    def __init__(self, timeout_s: float, why: str) -> None:
        self.timeout_s = timeout_s
        super().__init__(
            f"the ledger read was stopped after {timeout_s:g} s ({why}); nothing changed; "
            "narrow the query (WHERE, LIMIT) or pass a larger timeout_s"
        )


def _short(obj: object, limit: int = 120) -> str:
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."
