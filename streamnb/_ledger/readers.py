"""The SQLite ledger's read path: connections of its own, off the writer, with a time limit.

Reads never run on the writer thread, so a long query cannot hold back a single
``attach`` or settlement: the file is in WAL mode, where readers and the one
writer never block each other and a reader sees the last committed state
(each statement reads one consistent snapshot). A :class:`ReadPool` keeps at
most :data:`MAX_READERS` read-only connections (``mode=ro``, ``query_only``, an
authorizer that allows reading only); a query borrows one for its duration, in
the caller's thread, or on one of the pool's own threads for the awaitable forms
(:meth:`ReadPool.run_async`).

Every read has a time limit. SQLite calls a progress handler every
:data:`PROGRESS_OPS` virtual-machine instructions; once the deadline passed (or
the awaiting task was cancelled) it returns non-zero, SQLite abandons the
statement, and the caller gets :class:`~streamnb.LedgerTimeoutError`. A single
instruction that takes long (one huge ``randomblob``) finishes before the
handler sees the deadline, so the limit is checked between instructions, not
to the microsecond.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .._errors import LedgerError, LedgerTimeoutError

__all__ = ["DEFAULT_QUERY_TIMEOUT_S", "MAX_READERS", "PROGRESS_OPS", "ReadPool", "check_timeout"]

T = TypeVar("T")

#: how long a ledger query may run before it is interrupted, seconds
DEFAULT_QUERY_TIMEOUT_S = 10.0
#: most read connections (and reader threads) one ledger opens
MAX_READERS = 4
#: SQLite instructions between two looks at the deadline (~0.1 ms of work)
PROGRESS_OPS = 1000


def check_timeout(timeout_s: Any) -> float | None:
    """``timeout_s`` as seconds (> 0); None or ``inf`` is no limit; LedgerError otherwise."""
    if timeout_s is None:
        return None
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not timeout_s > 0:
        raise LedgerError(
            f"timeout_s must be a number of seconds > 0 (float('inf') for no limit), "
            f"got {timeout_s!r}"
        )
    return None if timeout_s == float("inf") else float(timeout_s)


class _Call:
    """One read in flight: its deadline, and whether the awaiting task gave up on it."""

    __slots__ = ("cancelled", "deadline")

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.cancelled = False

    def expired(self) -> int:
        """The progress handler: non-zero stops the statement."""
        if self.cancelled:
            return 1
        deadline = self.deadline
        return 1 if deadline is not None and time.monotonic() > deadline else 0


class ReadPool:
    """Read-only connections to one database, borrowed one query at a time.

    Parameters
    ----------
    connect : callable ``() -> sqlite3.Connection``
        Opens one read connection (any thread may use it afterwards); the pool
        sets ``query_only`` and the authorizer.
    authorizer : callable
        SQLite authorizer installed on every connection (allow reads only).
    size : int
        Most connections open at once; a query waits (within its time limit)
        for one to come back.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        authorizer: Callable[[int, Any, Any, Any, Any], int],
        size: int = MAX_READERS,
    ) -> None:
        self._connect = connect
        self._authorizer = authorizer
        self._size = size
        self._idle: list[sqlite3.Connection] = []
        self._open = 0
        self._closed = False
        self._cond = threading.Condition()
        self._local = threading.local()
        self._executor: ThreadPoolExecutor | None = None

    # --- connections ----------------------------------------------------------------------

    def _borrow(self, call: _Call, timeout_s: float | None) -> sqlite3.Connection:
        with self._cond:
            while True:
                if self._closed:
                    raise LedgerError("the ledger is closed; open a new Ledger")
                if self._idle:
                    return self._idle.pop()
                if self._open < self._size:
                    self._open += 1
                    break
                wait_s = None if call.deadline is None else call.deadline - time.monotonic()
                if wait_s is not None and wait_s <= 0:
                    raise LedgerTimeoutError(
                        timeout_s or 0.0, f"all {self._size} read connections stayed busy"
                    )
                self._cond.wait(wait_s)
        try:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            conn.set_authorizer(self._authorizer)
        except BaseException:
            with self._cond:
                self._open -= 1
                self._cond.notify()
            raise
        return conn

    def _give_back(self, conn: sqlite3.Connection) -> None:
        with self._cond:
            if self._closed:
                self._open -= 1
                conn.close()
            else:
                self._idle.append(conn)
            self._cond.notify()

    # --- reads ----------------------------------------------------------------------------

    def run(
        self,
        fn: Callable[[sqlite3.Connection], T],
        timeout_s: float | None,
        describe: Callable[[], str],
    ) -> T:
        """``fn(conn)`` on a read connection, in this thread, within ``timeout_s`` seconds.

        Raises
        ------
        LedgerTimeoutError
            The time ran out (the statement was interrupted), or the awaiting
            task of :meth:`run_async` was cancelled.
        """
        call: _Call | None = getattr(self._local, "call", None)
        if call is None:
            call = _Call(None if timeout_s is None else time.monotonic() + timeout_s)
        elif timeout_s is not None:  # run_async's deadline, or this one if it is sooner
            mine = time.monotonic() + timeout_s
            call.deadline = mine if call.deadline is None else min(call.deadline, mine)
        conn = self._borrow(call, timeout_s)
        conn.set_progress_handler(call.expired, PROGRESS_OPS)
        try:
            return fn(conn)
        except Exception:
            # the progress handler stopped the statement (fn may have translated SQLite's
            # "interrupted" into its own error already)
            if call.expired():
                what = "cancelled" if call.cancelled else "out of time"
                raise LedgerTimeoutError(timeout_s or 0.0, f"{what}: {describe()}") from None
            raise
        finally:
            conn.set_progress_handler(None, 0)
            self._give_back(conn)

    async def run_async(self, fn: Callable[[], T]) -> T:
        """``fn()`` (which calls :meth:`run`) on one of the pool's threads, awaited.

        Cancelling the awaiting task interrupts the query at once (its
        connection goes back to the pool); the loop never waits on SQLite.
        """
        with self._cond:
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

        future = asyncio.get_running_loop().run_in_executor(executor, in_thread)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            call.cancelled = True  # the progress handler stops the statement
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(future, timeout=1.0)
            raise

    def close(self) -> None:
        """Close the idle connections now, the busy ones when their query ends (idempotent)."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            executor, self._executor = self._executor, None
            self._cond.notify_all()
        for conn in idle:
            conn.close()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
