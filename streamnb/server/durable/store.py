"""The Durable Streams store interface: what the HTTP routes need from a backend.

A backend keeps streams (bytes or JSON messages addressed by offsets), their
producers and their lifecycle (closure, TTL/expiry, forks, soft deletion),
and applies each request atomically. :class:`StreamReader` is the read side,
also implemented by the adapter serving streamnb's own streams;
:class:`StreamStore` adds writes. The SQLite backend is
:class:`~.sqlite_store.SQLiteStreamStore`; a PostgreSQL backend implements the
same protocol (``wait`` then listens with ``LISTEN/NOTIFY``).

Refusals are :class:`~.errors.ProtocolError` (status, code, headers). The
order in which an append is checked is fixed in :mod:`.rules`, so every
backend answers the same request the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .offsets import Offset, Sentinel

__all__ = [
    "AppendRequest",
    "AppendResult",
    "CreateRequest",
    "CreateResult",
    "Producer",
    "ReadResult",
    "StreamMeta",
    "StreamReader",
    "StreamStore",
]


@dataclass(frozen=True, slots=True)
class Producer:
    """An idempotent producer's request headers (§5.2.1).

    Attributes
    ----------
    id : str
        ``Producer-Id``, non-empty.
    epoch, seq : int
        ``Producer-Epoch`` and ``Producer-Seq``, 0 .. 2**53 - 1.
    """

    id: str
    epoch: int
    seq: int


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """A ``PUT`` (§5.1), a fork when ``forked_from`` is set (§4.2).

    Attributes
    ----------
    content_type : str or None
        As sent; None when absent (default ``application/octet-stream``, or
        the source's for a fork).
    ttl_s : int or None
        ``Stream-TTL``, seconds.
    expires_at : tuple of (str, float) or None
        ``Stream-Expires-At`` as sent and as Unix seconds.
    closed : bool
        ``Stream-Closed: true``: create the stream closed.
    body : bytes
        Initial content (may be empty).
    forked_from : str or None
        Store key of the source stream.
    fork_offset : Offset, Sentinel or None
        ``Stream-Fork-Offset`` (None: the source's tail).
    fork_sub_offset : int
        ``Stream-Fork-Sub-Offset`` (0 when absent, which is the same thing).
    """

    content_type: str | None
    ttl_s: int | None = None
    expires_at: tuple[str, float] | None = None
    closed: bool = False
    body: bytes = b""
    forked_from: str | None = None
    fork_offset: Offset | Sentinel | None = None
    fork_sub_offset: int = 0


@dataclass(frozen=True, slots=True)
class StreamMeta:
    """What ``HEAD`` reports about a stream (§5.5).

    Attributes
    ----------
    content_type : str
    tail : Offset
        The offset after the last byte (``Stream-Next-Offset``).
    closed : bool
    ttl_s : int or None
        The sliding TTL window, seconds.
    expires_at : str or None
        The absolute expiry as the client sent it (RFC 3339).
    etag_id : str
        Distinguishes this stream from any other (also one re-created at the
        same URL) in ETags.
    """

    content_type: str
    tail: Offset
    closed: bool
    ttl_s: int | None
    expires_at: str | None
    etag_id: str


@dataclass(frozen=True, slots=True)
class CreateResult:
    """``created`` is False for an idempotent ``PUT`` (200) of an existing stream."""

    created: bool
    meta: StreamMeta


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """A ``POST`` (§5.2), a close when ``close`` is set (§5.3).

    Attributes
    ----------
    content_type : str or None
        As sent; required when ``body`` is not empty.
    body : bytes
    close : bool
        ``Stream-Closed: true``.
    stream_seq : str or None
        ``Stream-Seq`` (compared byte-wise, per stream).
    producer : Producer or None
    """

    content_type: str | None
    body: bytes
    close: bool = False
    stream_seq: str | None = None
    producer: Producer | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The outcome of an accepted (or deduplicated) ``POST``.

    Attributes
    ----------
    tail : Offset
        ``Stream-Next-Offset`` after the request.
    closed : bool
        The stream is closed now (by this request or before).
    duplicate : bool
        A producer retry that changed nothing (204, §5.2.1).
    producer_seq : int or None
        Highest accepted ``Producer-Seq`` of this producer and epoch.
    """

    tail: Offset
    closed: bool
    duplicate: bool = False
    producer_seq: int | None = None


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A catch-up read (§5.6): stored chunks from ``start`` up to ``next_offset``.

    Attributes
    ----------
    content_type : str
    etag_id : str
    start : Offset
        Where the read began (``-1`` and ``now`` resolved).
    chunks : tuple of bytes
        Raw bytes, or for JSON streams the compact JSON text of one or more
        messages separated by commas (a response is ``[`` + chunks joined by
        ``,`` + ``]``).
    next_offset : Offset
    up_to_date : bool
        ``next_offset`` is the tail (``Stream-Up-To-Date``).
    closed : bool
        Up to date and the stream is closed (``Stream-Closed``, EOF).
    """

    content_type: str
    etag_id: str
    start: Offset
    chunks: tuple[bytes, ...]
    next_offset: Offset
    up_to_date: bool
    closed: bool


class StreamReader(Protocol):
    """The read side of a set of streams, by key (the URL path under the mount)."""

    async def head(self, key: str) -> StreamMeta:
        """Metadata of a stream; does not count as an access for TTL (§5.1).

        Raises
        ------
        ProtocolError
            404 ``stream_not_found``, 410 ``stream_gone``.
        """
        ...

    async def read(self, key: str, start: Offset | Sentinel, *, max_bytes: int) -> ReadResult:
        """Chunks from ``start`` (at least one chunk if any, about ``max_bytes`` at most).

        Counts as an access (resets a sliding TTL, §5.1).

        Raises
        ------
        ProtocolError
            404, 410, or 400 ``invalid_offset`` (past the tail, or inside a
            JSON message batch).
        """
        ...

    async def wait(self, key: str, after: Offset, timeout_s: float) -> None:
        """Return once the stream has data past ``after``, is closed or gone, or at timeout.

        The caller reads again; a return is a hint, not a promise of data.
        Cancel-safe.
        """
        ...


class StreamStore(StreamReader, Protocol):
    """A Durable Streams backend: :class:`StreamReader` plus writes and lifecycle."""

    async def create(self, key: str, request: CreateRequest) -> CreateResult:
        """Create (or idempotently confirm) a stream or a fork (§5.1, §4.2).

        Raises
        ------
        ProtocolError
            409 ``stream_exists`` (another configuration, or a soft-deleted
            path), 404/409/400 for fork sources (§4.2), 400 for bad bodies.
        """
        ...

    async def append(self, key: str, request: AppendRequest) -> AppendResult:
        """Append and/or close, atomically with producer and ``Stream-Seq`` state (§5.2).

        Raises
        ------
        ProtocolError
            See :func:`~.rules.check_append` for the order of checks.
        """
        ...

    async def delete(self, key: str) -> None:
        """Delete a stream; soft-delete it while forks read it (§5.4).

        Raises
        ------
        ProtocolError
            404, or 410 for a stream already soft-deleted.
        """
        ...

    async def aclose(self) -> None:
        """Release the backend (threads, connections). Idempotent."""
        ...
