"""The PostgreSQL ledger's writer thread: group commit that survives a lost connection.

As the SQLite writer (``writer.py``), one thread owns one connection and
group-commits the runtime's queued writes: one transaction, each operation in
its own savepoint (a failing one is rolled back alone and its caller gets the
error), the buffered frames written first, the callers' futures resolved only
after ``COMMIT``.

The difference is the network. When the connection breaks (the server
restarted, a network blip), the whole batch is kept, the thread reconnects
with a growing back-off (0.05 s to 1 s) and runs the batch again, for as long
as the ledger is open: a settlement waits for the database to come back rather
than being announced unwritten. Every operation is written so that running it
twice is the same as once (a commit whose answer was lost may have happened):
``INSERT ... ON CONFLICT DO NOTHING``, a settlement's ``UPDATE`` guarded by
``status = 'running'``, commands deduplicated by their token. Only when the
ledger closes while the database is unreachable do the operations fail, with
:class:`~streamnb.LedgerUnavailableError`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import LedgerError, LedgerUnavailableError
from .pg_connect import Backoff, Dsn, connect, is_disconnect
from .writer import BatchWriter, Op, ledger_error

if TYPE_CHECKING:
    import psycopg

__all__ = ["FrameFlush", "PgWriter", "in_fast_batch", "savepoint"]

logger = logging.getLogger("streamnb.ledger")

Conn = Any  # psycopg.Connection[tuple[Any, ...]], kept loose for the thread's reconnects

_batch = threading.local()


def in_fast_batch() -> bool:
    """True while this thread runs a batch without savepoints (see the module doc)."""
    return bool(getattr(_batch, "fast", False))


def savepoint(conn: Conn) -> contextlib.AbstractContextManager[Any]:
    """``conn.transaction()`` (a savepoint), or nothing inside a fast batch."""
    return contextlib.nullcontext() if in_fast_batch() else conn.transaction()


class _Redo(Exception):
    """The fast run of a batch failed: run it again with savepoints."""


class FrameFlush(Protocol):
    """The frames a backend buffers between writes (written first in each transaction)."""

    def due(self) -> bool:
        """Frames are waiting."""
        ...

    def take(self) -> Any:
        """Remove and return what is waiting (kept by the writer until it commits)."""
        ...

    def write(self, conn: Conn, taken: Any) -> None:
        """Insert ``taken`` in the current transaction (called again on a retry)."""
        ...


class PgWriter(BatchWriter[Any]):
    """The thread (``streamnb-ledger``) that owns the ledger's write connection.

    Parameters
    ----------
    dsn : Dsn
        Where to connect.
    setup : callable ``(conn) -> None``
        Runs on every new connection (the first one and each reconnect).
    frames : FrameFlush
        The backend's frame buffer.

    Raises
    ------
    LedgerUnavailableError
        The first connection cannot be opened.
    """

    def __init__(self, dsn: Dsn, setup: Callable[[Conn], None], frames: FrameFlush) -> None:
        self._dsn = dsn
        self._setup = setup
        self._frames = frames
        super().__init__(self._connect)

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn = connect(self._dsn, autocommit=True)
        try:
            self._setup(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _close_conn(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()

    def _reconnect(self) -> bool:
        """Replace a broken connection; False if the writer is closing (gave up)."""
        backoff = Backoff(self.closing)
        self._close_conn()
        while not self.closing.is_set():
            try:
                self.conn = self._connect()
            except LedgerError as exc:
                logger.warning("streamnb ledger: reconnecting to %s: %s", self._dsn.safe, exc)
                if not backoff.wait():
                    return False
                continue
            logger.warning("streamnb ledger: reconnected to %s", self._dsn.safe)
            return True
        return False

    def _commit(
        self,
        ops: list[Op],
        done: list[tuple[Op, Any, BaseException | None]],
        end_of_batch: bool = False,
    ) -> None:
        if not ops and not (end_of_batch and self._frames.due()):
            return
        taken = self._frames.take()
        fast = bool(ops)
        while True:
            conn = self.conn
            results: list[tuple[Op, Any, BaseException | None]] = []
            try:
                with conn.transaction():
                    self._frames.write(conn, taken)
                    if fast:
                        self._run_fast(conn, ops, results)
                    else:
                        self._run_careful(conn, ops, results)
            except Exception as exc:
                if not is_disconnect(exc, conn) and fast:
                    fast = False  # rolled back: run the batch again, each op in a savepoint
                    continue
                if is_disconnect(exc, conn):
                    logger.warning(
                        "streamnb ledger: lost the connection to %s (%s); %d write(s) wait",
                        self._dsn.safe,
                        self._dsn.scrub(str(exc).strip().splitlines()[0] if str(exc) else ""),
                        len(ops),
                    )
                    if self._reconnect():
                        continue
                    err: LedgerError = LedgerUnavailableError(
                        self._dsn.safe,
                        self._dsn.host,
                        "the ledger closed while the database was unreachable; "
                        "these writes were not committed",
                    )
                else:
                    err = LedgerError(
                        f"ledger write failed and was rolled back: {self._dsn.scrub(str(exc))}"
                    )
                    err.__cause__ = exc
                done.extend((op, None, err) for op in ops)
                return
            done.extend(results)
            return

    @staticmethod
    def _run_fast(conn: Conn, ops: list[Op], results: list[Any]) -> None:
        from psycopg.pq import TransactionStatus

        _batch.fast = True
        try:
            results.extend((op, op.fn(conn), None) for op in ops)
        finally:
            _batch.fast = False
        if conn.info.transaction_status == TransactionStatus.INERROR:
            raise _Redo("a statement failed in the fast run")

    @staticmethod
    def _run_careful(conn: Conn, ops: list[Op], results: list[Any]) -> None:
        for op in ops:
            try:
                with conn.transaction():  # a savepoint
                    value = op.fn(conn)
            except Exception as exc:  # this thread must not die
                if is_disconnect(exc, conn):
                    raise
                results.append((op, None, ledger_error(exc)))
            else:
                results.append((op, value, None))
