"""The seam between the public :class:`~streamnb.Ledger` and where its rows live.

A backend stores three tables with the same meaning everywhere:

* ``streams`` (:data:`STREAM_COLUMNS`): one row per opened stream, written at
  attach with status ``running`` and updated once at settlement;
* ``events`` (:data:`EVENT_COLUMNS`): facts handlers commit through ``tx.insert_event``;
* ``frames`` (:data:`FRAME_COLUMNS`): outbound frames, when ``record_frames``.

Writes come from the runtime, on its event loop, and must never block that loop
(the SQLite backend queues them for its writer thread and group-commits them).
Reads come from any thread (a notebook cell, a server's thread pool) and return
plain rows; the query API (``queries.py``) turns them into DataFrames. A read
never waits for a write and never holds one back: it runs on a connection of its
own, never the writer's, and has a time limit (``timeout_s``; past it the
backend stops the statement and raises :class:`~streamnb.LedgerTimeoutError`).
SQLite does this with read-only connections in WAL mode and a progress handler
(``readers.py``); PostgreSQL would use a pool of connections and
``statement_timeout``. :meth:`LedgerBackend.run_read` runs a read off the event
loop for the awaitable query forms (``Ledger.asql`` ...); cancelling the awaiting
task stops the statement.

``streamnb/_ledger/sqlite.py`` is the SQLite backend (one writer process, a lock
file, WAL); ``streamnb/_ledger/postgres.py`` the PostgreSQL one (many runtimes in
many processes, each holding a lease; ``recover`` settles the streams whose
runtime's lease expired). A backend whose streams other processes can reach
also has an :attr:`LedgerBackend.exchange` (:class:`StreamExchange`): the
runtime mirrors other processes' streams through it and takes their cancel
and input (``streamnb/_remote.py``); it is None for SQLite.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar

from .._errors import LedgerError
from .._frames import Frame
from .._lifecycle import Lifecycle
from .exchange import Command, ExchangeHost, Follower, StreamRecord
from .tx import Settlement

__all__ = [
    "EVENT_COLUMNS",
    "FRAME_COLUMNS",
    "STREAM_COLUMNS",
    "LedgerBackend",
    "StreamExchange",
    "Table",
    "select_statement",
]

Table = Literal["streams", "events", "frames"]
T = TypeVar("T")

#: the columns of each table, in the order ``select`` returns them
STREAM_COLUMNS = (
    "stream_ref",
    "kind",
    "mode",
    "status",
    "opened_at",
    "settled_at",
    "reason",
    "terminal",
)
EVENT_COLUMNS = ("id", "stream_ref", "kind", "payload", "created_at")
FRAME_COLUMNS = (
    "stream_ref",
    "seq",
    "kind",
    "channel",
    "payload",
    "reason",
    "error",
    "terminal",
    "at",
)
_COLUMNS: dict[str, tuple[str, ...]] = {
    "streams": STREAM_COLUMNS,
    "events": EVENT_COLUMNS,
    "frames": FRAME_COLUMNS,
}


def select_statement(
    table: Table,
    columns: Sequence[str],
    where: Mapping[str, str] | None,
    *,
    placeholder: str,
    order: str,
) -> tuple[str, tuple[str, ...]]:
    """The ``SELECT`` of :meth:`LedgerBackend.select` and its parameters.

    ``placeholder`` is the driver's (``?`` for sqlite3, ``%s`` for psycopg),
    ``order`` the backend's ``ORDER BY`` of ``table``.

    Raises
    ------
    LedgerError
        A column that is not ``table``'s (names are interpolated, values are not).

    Examples
    --------
    >>> select_statement("events", ["id"], {"kind": "x"}, placeholder="?", order="id")
    ('SELECT id FROM events WHERE kind = ? ORDER BY id', ('x',))
    """
    known = _COLUMNS[table]
    filters = dict(where or {})
    unknown = [c for c in [*columns, *filters] if c not in known]
    if unknown:  # names are interpolated below: only the table's own columns
        raise LedgerError(f"no column(s) {unknown} in table {table!r}")
    clause = " AND ".join(f"{c} = {placeholder}" for c in filters)
    query = (
        f"SELECT {', '.join(columns)} FROM {table}"
        f"{' WHERE ' + clause if clause else ''} ORDER BY {order}"
    )
    return query, tuple(filters.values())


class StreamExchange(Protocol):
    """How a runtime reaches streams other processes run, and is reached (``exchange.py``)."""

    async def join(self, host: ExchangeHost) -> str:
        """Take a lease for the runtime ``host``; its ``runtime_id``."""
        ...

    async def leave(self, runtime_id: str) -> None:
        """Give the lease up (the runtime closed)."""
        ...

    async def record(self, ref: str) -> StreamRecord | None:
        """The stream's row (and terminal frame once settled), or None."""
        ...

    def follow(
        self, ref: str, after_seq: int, follower: Follower, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Deliver the stream's frames after ``after_seq`` to ``follower``, as they commit."""
        ...

    def unfollow(self, follower: Follower) -> None: ...

    def send(
        self,
        sender: str,
        target: str,
        ref: str,
        kind: str,
        body: Any = None,
        *,
        expect_reply: bool,
    ) -> tuple[str, asyncio.Future[Any] | None, concurrent.futures.Future[Any]]:
        """Queue a command for runtime ``target``: ``(token, reply, written)``."""
        ...

    def forget_reply(self, token: str) -> None: ...

    def reply(self, command: Command, answer: Any) -> None:
        """Answer a command to its sender."""
        ...

    async def put_name(self, scope: str, name: str, ref: str, meta: Any = None) -> None: ...

    async def get_name(self, scope: str, name: str) -> tuple[str, Any] | None: ...

    async def forget_name(self, scope: str, name: str) -> None: ...


class LedgerBackend(Protocol):
    """What the runtime writes through and the query API reads from.

    Times are float seconds since the Unix epoch; ``payload`` and ``terminal``
    columns hold JSON text. Every method raises :class:`~streamnb.LedgerError`
    (or a subclass) for a failure of the store, never a driver's own exception.
    """

    #: where the rows live, for messages and ``repr``: a file path, ``:memory:``...
    where: str
    #: this backend refuses writes (another process writes the store)
    read_only: bool
    #: every outbound frame is stored in ``frames``
    record_frames: bool
    #: OPEN until :meth:`close`
    state: Lifecycle
    #: the cross-process side (PostgreSQL), or None (SQLite: streams stay in one process)
    exchange: StreamExchange | None

    # --- written by the runtime -------------------------------------------------------

    def check_writable(self) -> None:
        """Raise :class:`~streamnb.LedgerBusyError` (read-only) or ``LedgerError`` (closed)."""
        ...

    def open_stream(
        self,
        stream_ref: str,
        kind: str,
        mode: str,
        opened_at: float,
        *,
        on_detach: str = "abort",
        owner: str | None = None,
    ) -> Awaitable[None]:
        """Insert the ``streams`` row (status ``running``); resolve once it is committed.

        ``owner`` is the runtime (lease) running it, for a backend with an
        :attr:`exchange` (which may need it); ``on_detach`` is its handler's.
        Called on the event loop; an ``async def`` does, or a method returning an
        ``asyncio.Future`` of that loop (the SQLite backend: no task per stream).
        """
        ...

    def record_frame(self, frame: Frame) -> None:
        """Queue a non-terminal frame for ``frames`` (no-op unless ``record_frames``).

        Called for every frame a handler yields: it must not block, and its rows
        commit with the next write at the latest.
        """
        ...

    def settle(self, settlement: Settlement) -> Awaitable[Settlement]:
        """Commit the settlement and the handler's ``tx`` in one transaction.

        Awaitable like :meth:`open_stream` (an ``async def`` or a future).

        If the handler's writes fail they are rolled back and a ``failed`` record
        (reason ``settlement_error``) is committed instead; ``fallback_error`` and
        ``committed`` say what happened. Raises ``LedgerError`` only when not even
        that could be written (the row then stays ``running`` until recovered).
        """
        ...

    def recover(self) -> list[str]:
        """Settle ``failed`` (reason ``runtime_lost``) the streams whose runtime is gone.

        Returns their refs. SQLite: every ``running`` row of a file no live process
        holds, when it is opened for writing.
        """
        ...

    # --- read by the query API ----------------------------------------------------------

    #: the time limit of a read that names none, seconds (None: no limit)
    query_timeout_s: float | None

    def select(
        self,
        table: Table,
        columns: Sequence[str],
        where: Mapping[str, str] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> list[tuple[Any, ...]]:
        """Rows of ``table`` whose columns equal ``where``'s values, in the table's order.

        The order: ``streams`` as opened, ``events`` by ``id``, ``frames`` by
        ``stream_ref`` then ``seq``. Blocks only the calling thread, on a
        connection of its own; ``timeout_s`` (default :attr:`query_timeout_s`)
        bounds it (:class:`~streamnb.LedgerTimeoutError`).
        """
        ...

    def sql(
        self,
        query: str,
        params: Sequence[Any] | Mapping[str, Any] = (),
        *,
        timeout_s: float | None = None,
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one read-only statement in the backend's own SQL; ``(columns, rows)``.

        As :meth:`select`: its own connection, a time limit. Raises
        :class:`~streamnb.LedgerQueryError` when it fails or tries to write,
        :class:`~streamnb.LedgerTimeoutError` past ``timeout_s``.
        """
        ...

    def select_frames(
        self,
        stream_ref: str,
        after_seq: int = -1,
        limit: int | None = None,
        *,
        timeout_s: float | None = None,
    ) -> list[tuple[Any, ...]]:
        """``frames`` rows of one stream with ``seq > after_seq``, by seq, at most ``limit``.

        Columns :data:`FRAME_COLUMNS`. A long stream is read a page at a time
        (replay from the ledger); as :meth:`select` otherwise.
        """
        ...

    async def run_read(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` (a function calling :meth:`select` / :meth:`sql`) off the event loop.

        The awaitable query forms use it. Cancelling the awaiting task stops the
        statement ``fn`` is running.
        """
        ...

    def close(self) -> None:
        """Finish queued writes and release the store (idempotent)."""
        ...
