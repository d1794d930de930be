"""How much one server may open: a cap on its open streams, and kinds HTTP may not open.

Every endpoint that opens a stream (``POST /streams``, ``/chat``, ``/api/chat``,
``POST /rooms/{id}/messages``) asks :class:`StreamCap` first. A server holds at
most ``max_open_streams`` streams it opened that have not settled; past that a
request gets ``429 too_many_streams`` (JSON error, ``Retry-After``) and opens
nothing. With the runtime's idle limit (a bidi stream nobody feeds or watches is
cancelled after ``idle_timeout_s``), a client that opens streams and walks away
can neither keep them nor pile them up.

:func:`check_public` keeps *internal* kinds (``AttachedStreamHandler(internal=True)``,
e.g. the chat rooms' reply kind, which only a room may open with its history) off
the generic endpoints: ``403 internal_kind``.
"""

from __future__ import annotations

from .._errors import UnknownStreamError
from .._runtime import StreamRuntime
from .errors import HTTPError

__all__ = ["DEFAULT_MAX_OPEN_STREAMS", "StreamCap", "check_public"]

#: streams one server may hold open (opened by its endpoints, not yet settled)
DEFAULT_MAX_OPEN_STREAMS = 2048
#: what a refused client is told to wait before it tries again, seconds
RETRY_AFTER_S = 1


class StreamCap:
    """The refs of the streams a server opened and that have not settled, at most ``limit``."""

    def __init__(self, runtime: StreamRuntime, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_open_streams must be >= 1")
        self._runtime = runtime
        self.limit = limit
        self._open: set[str] = set()

    def admit(self) -> None:
        """Raise ``429 too_many_streams`` if opening one more stream would pass the cap."""
        if len(self._open) >= self.limit:
            self._forget_settled()  # amortized: only when the set is full
        if len(self._open) >= self.limit:
            raise HTTPError(
                429,
                "too_many_streams",
                f"this server already holds {self.limit} open streams; try again when some "
                f"have settled (Retry-After: {RETRY_AFTER_S} s)",
                {"Retry-After": str(RETRY_AFTER_S)},
            )

    def add(self, stream_ref: str) -> None:
        """Count a stream the server just opened."""
        self._open.add(stream_ref)

    def _forget_settled(self) -> None:
        runtime = self._runtime
        for ref in list(self._open):
            try:
                settled = runtime.info(ref).terminal is not None
            except UnknownStreamError:  # evicted: long settled
                settled = True
            if settled:
                self._open.discard(ref)

    def __len__(self) -> int:
        self._forget_settled()
        return len(self._open)


def check_public(runtime: StreamRuntime, kind: str) -> None:
    """Raise ``403 internal_kind`` if ``kind``'s handler is internal (404 if unknown)."""
    if runtime.handler(kind).internal:
        raise HTTPError(
            403,
            "internal_kind",
            f"streams of kind {kind!r} are opened by the server itself (e.g. a chat room's "
            "reply: POST /rooms/{id}/messages), not over this endpoint",
        )
