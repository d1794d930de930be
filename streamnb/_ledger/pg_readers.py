"""The PostgreSQL ledger's read path: a pool of read-only connections with a time limit.

Reads never use the writer's connection: a :class:`PgReadPool` (psycopg-pool,
at most :data:`~streamnb._ledger.readers.MAX_READERS` connections, each opened
with ``default_transaction_read_only``) lends one connection per query, and
each query runs in its own read-only transaction. Under PostgreSQL's MVCC a
read never waits for a write and never holds one back.

The time limit is the server's: ``statement_timeout`` is set for the
transaction (``set_config(..., true)``), and waiting for a free connection
counts against the same deadline. Cancelling the task that awaits a read
(:meth:`PgReadPool.run_async`) sends a cancel request for its statement
(``cancel_safe``), so the server stops working on it at once. A connection
broken by a server restart is checked out of the pool before use (the pool's
``check_connection``), so the next read after a restart just works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .._errors import LedgerError, LedgerTimeoutError, LedgerUnavailableError
from .pg_connect import CONNECT_TIMEOUT_S, Dsn, connect, is_disconnect
from .readers import MAX_READERS

__all__ = ["PgReadPool"]

T = TypeVar("T")
Conn = Any  # psycopg.Connection[tuple[Any, ...]]

logger = logging.getLogger("streamnb.ledger")

#: how long close() waits for reads in flight, seconds
CLOSE_TIMEOUT_S = 5.0


class _Call:
    """One read in flight: its deadline, its connection, whether its awaiter gave up."""

    __slots__ = ("cancelled", "conn", "deadline")

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.cancelled = False
        self.conn: Conn | None = None


class PgReadPool:
    """Read-only connections to the ledger's database, lent one query at a time.

    Parameters
    ----------
    dsn : Dsn
        Where to connect.
    size : int
        Most connections open at once; a query waits (within its time limit)
        for one to come back.
    """

    def __init__(self, dsn: Dsn, size: int = MAX_READERS) -> None:
        from psycopg_pool import ConnectionPool

        self._dsn = dsn
        self._size = size
        params = dsn.params
        params.setdefault("connect_timeout", round(CONNECT_TIMEOUT_S))
        params.setdefault("application_name", "streamnb-read")
        params["options"] = (
            str(params.get("options") or "") + " -c default_transaction_read_only=on"
        ).strip()
        self._pool = ConnectionPool(
            kwargs=params,
            min_size=1,
            max_size=size,
            open=False,
            num_workers=1,
            check=ConnectionPool.check_connection,
            name="streamnb-ledger-read",
        )
        self._pool.open(wait=False)
        self._local = threading.local()
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def run(
        self,
        fn: Callable[[Conn], T],
        timeout_s: float | None,
        describe: Callable[[], str],
    ) -> T:
        """``fn(conn)`` in a read-only transaction, in this thread, within ``timeout_s`` seconds.

        Raises
        ------
        LedgerTimeoutError
            The time ran out (the server stopped the statement), or the awaiting
            task of :meth:`run_async` was cancelled.
        LedgerUnavailableError
            No connection could be made within the time limit.
        """
        from psycopg import errors
        from psycopg_pool import PoolTimeout

        if self._closed:
            raise LedgerError("the ledger is closed; open a new Ledger")
        call: _Call | None = getattr(self._local, "call", None)
        if call is None:
            call = _Call(None if timeout_s is None else time.monotonic() + timeout_s)
        elif timeout_s is not None:
            mine = time.monotonic() + timeout_s
            call.deadline = mine if call.deadline is None else min(call.deadline, mine)
        for attempt in (1, 2):  # once more on a connection a server restart broke
            wait_s = None if call.deadline is None else max(0.0, call.deadline - time.monotonic())
            try:
                with self._pool.connection(timeout=wait_s) as conn:
                    call.conn = conn
                    try:
                        if call.cancelled:
                            raise LedgerTimeoutError(timeout_s or 0.0, f"cancelled: {describe()}")
                        with conn.transaction():
                            if call.deadline is not None:
                                ms = max(1, int((call.deadline - time.monotonic()) * 1000))
                                conn.execute(
                                    "SELECT set_config('statement_timeout', %s, true)", (str(ms),)
                                )
                            return fn(conn)
                    finally:
                        call.conn = None
            except PoolTimeout:
                self._check_reachable()  # the server is gone: say so (LedgerUnavailableError)
                raise LedgerTimeoutError(
                    timeout_s or 0.0, f"all {self._size} read connections stayed busy"
                ) from None
            except errors.QueryCanceled:
                what = "cancelled" if call.cancelled else "out of time"
                raise LedgerTimeoutError(timeout_s or 0.0, f"{what}: {describe()}") from None
            except LedgerError:
                raise
            except Exception as exc:
                if attempt == 1 and is_disconnect(exc) and not call.cancelled:
                    continue
                if is_disconnect(exc):
                    raise LedgerUnavailableError(
                        self._dsn.safe, self._dsn.host, self._dsn.scrub(str(exc).strip())
                    ) from None
                raise
        raise AssertionError("unreachable")

    def _check_reachable(self) -> None:
        """Raise :class:`~streamnb.LedgerUnavailableError` if the server takes no connection."""
        conn = connect(self._dsn, timeout_s=2.0)  # raises LedgerUnavailableError
        conn.close()

    async def run_async(self, fn: Callable[[], T]) -> T:
        """``fn()`` (which calls :meth:`run`) on one of the pool's threads, awaited.

        Cancelling the awaiting task sends a cancel request for the statement
        (its connection goes back to the pool); the loop never waits on it.
        """
        with self._lock:
            if self._closed:
                raise LedgerError("the ledger is closed; open a new Ledger")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._size, thread_name_prefix="streamnb-ledger-read"
                )
            executor = self._executor
        call = _Call(None)

        def in_thread() -> T:
            self._local.call = call
            try:
                return fn()
            finally:
                self._local.call = None

        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(executor, in_thread)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            call.cancelled = True
            conn = call.conn
            if conn is not None:
                with contextlib.suppress(Exception):
                    await loop.run_in_executor(None, conn.cancel_safe)
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(future, timeout=1.0)
            raise

    def close(self) -> None:
        """Close the pool (idempotent); reads in flight finish first (up to 5 s)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        self._pool.close(timeout=CLOSE_TIMEOUT_S)
