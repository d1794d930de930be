"""Handlers: the definition of a stream kind.

An :class:`AttachedStreamHandler` is the Python spelling of the seeds'
``AttachedStreamHandler`` (seed 000, 001): ``kind``, ``mode``, ``cancellation``,
``on_detach``, ``parse_start``, ``run`` and ``commit_terminal``. ``run`` is an
async generator ``run(start, input, ctx)`` that yields frame specs; ``ctx.signal``
is the cooperative cancel signal (the seeds' ``AbortSignal``).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from ._errors import HandlerDefinitionError

if TYPE_CHECKING:
    from ._frames import Frame
    from ._ledger import LedgerTx

__all__ = [
    "AbortSignal",
    "AttachedStreamHandler",
    "ParseError",
    "ParseOk",
    "StreamContext",
    "parse_ok",
]

T = TypeVar("T")
Mode = Literal["output_only", "bidi"]
OnDetach = Literal["abort", "continue"]


@dataclass(frozen=True, slots=True)
class ParseOk(Generic[T]):
    """``parse_start`` accepted the raw start payload; ``value`` is what ``run`` receives."""

    value: T


@dataclass(frozen=True, slots=True)
class ParseError:
    """``parse_start`` rejected the raw start payload.

    ``issues`` is a list of human-readable strings; they reach the caller in
    :class:`~streamnb.StartRejectedError` (and the HTTP 422 body).
    """

    issues: Sequence[str]


def parse_ok(raw: Any) -> ParseOk[Any]:
    """Accept any start payload unchanged (the seeds' ``attachedStreamParseOk``).

    Examples
    --------
    A ``parse_start`` of one's own returns :class:`ParseOk` or :class:`ParseError`;
    the issues reach the caller of ``attach`` in a :class:`~streamnb.StartRejectedError`:

    >>> def parse_start(raw):
    ...     if not isinstance(raw, dict) or not isinstance(raw.get("topic"), str):
    ...         return sn.ParseError(["the start payload needs a 'topic' string"])
    ...     return sn.ParseOk(raw["topic"])
    >>> parse_start({"topic": "tides"}), parse_ok(42)
    (ParseOk(value='tides'), ParseOk(value=42))
    >>> async def run(topic, input, ctx):
    ...     yield sn.completed({"topic": topic})
    >>> runtime = sn.StreamRuntime()
    >>> handler = runtime.register(
    ...     sn.AttachedStreamHandler(kind="demo.topic", run=run, parse_start=parse_start))
    >>> runtime.run(runtime.attach("demo.topic", {"topic": 3}))
    Traceback (most recent call last):
    ...
    streamnb._errors.StartRejectedError: the start payload for 'demo.topic' was rejected: ...
    >>> runtime.close()
    """
    return ParseOk(raw)


class AbortSignal:
    """Cooperative cancel signal handed to ``run`` as ``ctx.signal``.

    ``aborted`` turns true once ``cancel(reason)`` was requested (or the last
    observer detached from an ``on_detach="abort"`` stream); ``reason`` says why.
    ``await signal.wait()`` sleeps until then. (The DOM ``AbortSignal`` of the seeds.)

    Examples
    --------
    A handler that works until it is cancelled, checking the signal between steps:

    >>> import asyncio
    >>> async def ticker(start, input, ctx):
    ...     n = 0
    ...     while not ctx.signal.aborted:
    ...         n += 1
    ...         yield sn.output(f"tick {n} ")
    ...         await asyncio.sleep(0.01)
    ...     yield sn.cancelled(ctx.signal.reason)
    >>> runtime = sn.StreamRuntime()
    >>> handler = runtime.register(sn.AttachedStreamHandler(kind="demo.ticker", run=ticker))
    >>> session = runtime.run(runtime.attach("demo.ticker"))
    >>> runtime.run(asyncio.sleep(0.05))
    >>> runtime.run(session.cancel("enough"))
    'requested'
    >>> runtime.run(session.wait(timeout_s=10)).reason
    'enough'
    >>> runtime.close()
    """

    __slots__ = ("_event", "aborted", "reason")

    def __init__(self) -> None:
        self.aborted = False
        self.reason: str | None = None
        self._event: asyncio.Event | None = None

    def _abort(self, reason: str) -> None:
        if self.aborted:
            return
        self.aborted = True
        self.reason = reason
        if self._event is not None:
            self._event.set()

    async def wait(self) -> str | None:
        """Wait until the stream is cancelled; return the reason."""
        if not self.aborted:
            if self._event is None:
                self._event = asyncio.Event()
            await self._event.wait()
        return self.reason

    def __repr__(self) -> str:
        return f"AbortSignal(aborted={self.aborted}, reason={self.reason!r})"


@dataclass(frozen=True, slots=True)
class StreamContext:
    """What ``run`` gets as ``ctx``: the stream's identity and its cancel signal."""

    stream_ref: str
    kind: str
    mode: str
    signal: AbortSignal


RunFn = Callable[[Any, AsyncIterator["Frame"], StreamContext], AsyncIterator[Any]]
CommitFn = Callable[["Frame", "LedgerTx"], "Awaitable[None] | None"]


def _no_commit(terminal: Frame, tx: LedgerTx) -> None:
    """Default ``commit_terminal``: the runtime's own ``streams`` record is enough."""


@dataclass(frozen=True, slots=True, repr=False)
class AttachedStreamHandler:
    """The definition of a stream kind (seed 000/001 ``AttachedStreamHandler``).

    Parameters
    ----------
    kind : str
        Unique name, e.g. ``"tutorial.streaming_chatbot"``.
    mode : {"output_only", "bidi"}
        ``bidi`` streams accept ``input`` frames through ``session.send``.
    run : async generator function ``run(start, input, ctx)``
        Yields frame specs (dicts or ``sn.progress(...)``...). ``start`` is the
        value ``parse_start`` returned; ``input`` an async iterator of inbound
        ``input`` :class:`~streamnb.Frame` objects that ends when the stream is
        cancelled; ``ctx`` a :class:`StreamContext`.
    cancellation : {"cooperative"}
        ``run`` is expected to watch ``ctx.signal.aborted``; a handler that has
        not finished ``cancel_grace_s`` seconds after cancel is stopped by force.
    on_detach : {"abort", "continue"}
        What happens when the last observer detaches: cancel with reason
        ``"detached"``, or keep running to settlement.
    parse_start : callable ``raw -> ParseOk | ParseError``
        Validates the start payload given to ``attach`` (default :func:`parse_ok`).
    commit_terminal : callable ``(terminal: Frame, tx: LedgerTx) -> None``
        Runs once, when the stream ends, inside the same ledger transaction as
        the runtime's settlement record; write facts with ``tx.insert_event``.
        May be a coroutine function, not a generator.
    internal : bool, default False
        Attached only by Python code that owns the kind (the chat rooms' reply
        kind is internal): the HTTP server's generic endpoints (``POST
        /streams``, ``/chat``, ``/api/chat``) refuse it with ``403``.

    Raises
    ------
    HandlerDefinitionError
        A field has a value outside the ones above, or ``run`` is not callable.

    Examples
    --------
    >>> async def run(start, input, ctx):
    ...     yield sn.output("hello")
    ...     yield sn.completed()
    >>> def commit_terminal(terminal, tx):
    ...     tx.insert_event("demo.settled", {"kind": terminal.kind})
    >>> handler = sn.AttachedStreamHandler(
    ...     kind="demo.hello", run=run, on_detach="continue", commit_terminal=commit_terminal)
    >>> handler
    AttachedStreamHandler(kind='demo.hello', mode='output_only', on_detach='continue')
    >>> sn.AttachedStreamHandler(kind="demo.bad", run=run, mode="duplex")
    Traceback (most recent call last):
    ...
    streamnb._errors.HandlerDefinitionError: handler 'demo.bad' is not valid: mode is 'duplex'; ...
    """

    kind: str
    run: RunFn
    mode: Mode = "output_only"
    cancellation: Literal["cooperative"] = "cooperative"
    on_detach: OnDetach = "abort"
    parse_start: Callable[[Any], ParseOk[Any] | ParseError] = field(default=parse_ok)
    commit_terminal: CommitFn = field(default=_no_commit)
    internal: bool = False

    def __repr__(self) -> str:
        return (
            f"AttachedStreamHandler(kind={self.kind!r}, mode={self.mode!r}, "
            f"on_detach={self.on_detach!r})"
        )

    def __post_init__(self) -> None:
        kind = self.kind
        if not isinstance(kind, str) or not kind.strip():
            raise HandlerDefinitionError(str(kind), "kind must be a non-empty string")
        if self.mode not in ("output_only", "bidi"):
            raise HandlerDefinitionError(
                kind, f"mode is {self.mode!r}; use 'output_only' or 'bidi'"
            )
        if self.cancellation != "cooperative":
            raise HandlerDefinitionError(
                kind, f"cancellation is {self.cancellation!r}; only 'cooperative' exists"
            )
        if self.on_detach not in ("abort", "continue"):
            raise HandlerDefinitionError(
                kind, f"on_detach is {self.on_detach!r}; use 'abort' or 'continue'"
            )
        for name in ("run", "parse_start", "commit_terminal"):
            if not callable(getattr(self, name)):
                raise HandlerDefinitionError(kind, f"{name} must be callable")
        if inspect.iscoroutinefunction(self.run):
            raise HandlerDefinitionError(
                kind,
                "run is an 'async def' coroutine function; it must be an async generator "
                "(an 'async def' that uses 'yield' to emit frames)",
            )
        commit = self.commit_terminal
        if inspect.isgeneratorfunction(commit) or inspect.isasyncgenfunction(commit):
            # calling it would only make a generator: its body, and its writes, never run
            raise HandlerDefinitionError(
                kind,
                "commit_terminal is a generator function (it uses 'yield'), so it would never "
                "run; write it as a plain 'def' or 'async def' without 'yield'",
            )
