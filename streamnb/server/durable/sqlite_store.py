"""Durable Streams in SQLite: the ledger's database file, tables ``ds_*``, one worker thread.

:class:`SQLiteStreamStore` keeps streams next to the ledger (``streamnb serve
--ledger PATH``), in its own tables (:mod:`.sql_store` has them and the
rules), through its own connection, used only by its own thread: every
operation is one ``BEGIN IMMEDIATE`` transaction run there, so the event loop
never blocks on SQLite and operations are serialized (PROTOCOL.md §5.2.1 asks
for validation and append to be serialized per producer; here they are per
store).

Waiting (long-poll, SSE) is an in-process notification per path: this store
assumes it is the only writer of its tables, as the SQLite ledger assumes
one writer process. (The PostgreSQL store, :mod:`.pg_store`, is shared by
processes and wakes their readers with ``NOTIFY``.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from .errors import ProtocolError
from .sql_store import SWEEP_INTERVAL_S, SQLStreamStore

__all__ = ["SWEEP_INTERVAL_S", "SQLiteStreamStore"]

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ds_streams (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    content_type TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_access REAL NOT NULL,
    ttl_s INTEGER,
    expires_at REAL,
    expires_at_text TEXT,
    closed INTEGER NOT NULL DEFAULT 0,
    tail INTEGER NOT NULL DEFAULT 0,
    last_stream_seq TEXT,
    source_id INTEGER,
    fork_pos INTEGER,
    forks INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ds_messages (
    stream_id INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    count INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (stream_id, "end")
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ds_producers (
    stream_id INTEGER NOT NULL,
    producer_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (stream_id, producer_id)
) WITHOUT ROWID;
"""


class SQLiteStreamStore(SQLStreamStore):
    """A :class:`~.store.StreamStore` on SQLite (see the module docstring).

    Parameters
    ----------
    path : str, optional
        The SQLite file (the ledger's); None keeps the streams in memory for
        the life of this object.
    busy_timeout_s : float, default 5.0
        How long a transaction waits for the ledger's writer to release the
        file, seconds.
    clock : callable, default time.time
        Unix time in seconds (TTL and expiry).

    Raises
    ------
    sqlite3.Error
        The file cannot be opened.

    Examples
    --------
    >>> import asyncio
    >>> from streamnb.server.durable.offsets import START
    >>> from streamnb.server.durable.store import CreateRequest
    >>> async def demo():
    ...     store = SQLiteStreamStore()
    ...     try:
    ...         await store.create("chat/1", CreateRequest("text/plain", body=b"hi"))
    ...         return (await store.read("chat/1", START, max_bytes=1 << 20)).chunks
    ...     finally:
    ...         await store.aclose()
    >>> asyncio.run(demo())
    (b'hi',)
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        busy_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock)
        self.path = path
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="streamnb-durable"
        )
        try:
            self._conn = self._executor.submit(self._connect, busy_timeout_s).result()
        except BaseException:
            self._executor.shutdown(wait=True)
            raise
        # a store dropped without aclose() still closes its connection and thread
        self._finalizer = weakref.finalize(self, _release, self._executor, self._conn)

    def _connect(self, busy_timeout_s: float) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path or ":memory:", isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            if self.path is not None:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        except BaseException:
            conn.close()
            raise
        return conn

    def __repr__(self) -> str:
        return f"<SQLiteStreamStore {self.path or ':memory:'}{' closed' if self._closed else ''}>"

    # --- plumbing -------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise self._closed_error()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, self._conn)
        except sqlite3.OperationalError as exc:  # "database is locked", disk errors...
            raise ProtocolError(
                503,
                "store_unavailable",
                f"the stream store could not run this request ({exc}); nothing was changed, "
                "retry shortly",
                {"Retry-After": "1"},
            ) from exc

    @contextmanager
    def _tx(self, conn: sqlite3.Connection) -> Iterator[None]:
        """``BEGIN IMMEDIATE``: this thread is the only writer of the ``ds_*`` tables."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            try:
                yield
            except ProtocolError:
                conn.execute("COMMIT")
                raise
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # the body failed, or COMMIT did
                conn.execute("ROLLBACK")
            raise

    async def aclose(self) -> None:
        """Close the connection and stop the thread; wakes every waiting reader."""
        if self._closed:
            return
        self._closed = True
        for key in list(self._waiters):
            self._notify(key)
        self._finalizer.detach()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=False)


def _release(executor: concurrent.futures.ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
    executor.submit(conn.close)  # the connection belongs to the worker thread
    executor.shutdown(wait=False)
