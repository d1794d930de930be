"""One thread per ledger that owns its write connection; the SQLite ledger's group commit.

The event loop never waits on disk I/O: the runtime's writes are queued as
operations and awaited as asyncio futures; reads from another thread (a notebook
cell) block only that caller. The thread drains whatever is queued (up to
:data:`MAX_BATCH` operations) and **group-commits** the consecutive writes: one
``BEGIN IMMEDIATE``, each operation inside its own ``SAVEPOINT`` (a failing one is
rolled back alone and its caller gets the error), then one ``COMMIT``; only after
the commit are the callers' futures resolved, one ``call_soon_threadsafe`` per loop
per batch. A ``flush`` hook runs first in every write transaction, and at the end
of every batch whenever ``flush_due()`` says it has rows to write (the ledger
writes the frames it buffered there).

:class:`BatchWriter` is that thread and queue without the database: a backend
subclasses it with its own ``_commit`` (this module's :class:`Writer` for SQLite,
``pg_writer.PgWriter`` for PostgreSQL).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .._errors import LedgerError

__all__ = ["MAX_BATCH", "THREAD_STOP_TIMEOUT_S", "BatchWriter", "Op", "Writer"]

T = TypeVar("T")
C = TypeVar("C")  # the connection type

#: most operations the thread takes from its queue per batch
MAX_BATCH = 2048
#: how long close() waits for queued writes to finish before leaving the thread, seconds
THREAD_STOP_TIMEOUT_S = 30.0

_STOP = object()
_WAKE = object()  # "look at flush_due()", with no operation of its own


@dataclass(slots=True)
class Op:
    """One queued operation: ``fn(conn)``, a write (in a transaction) or a plain call."""

    fn: Callable[[Any], Any]
    #: a concurrent future for sync callers, or an asyncio future (resolved on its loop)
    future: concurrent.futures.Future[Any] | asyncio.Future[Any]
    write: bool
    loop: asyncio.AbstractEventLoop | None = None
    #: fn leaves nothing behind when it raises (one statement, or its own savepoint):
    #: it runs without the savepoint of its own every other write gets
    atomic: bool = False


class BatchWriter(Generic[C]):
    """The thread (``streamnb-ledger``) that owns one connection and runs queued operations.

    Parameters
    ----------
    connect : callable ``() -> connection``
        Opens the connection, on the thread. Its exception (a ``LedgerError``)
        propagates from the constructor.

    Subclasses implement :meth:`_commit` (run consecutive writes in one
    transaction) and :meth:`_close_conn`.
    """

    #: the connection, opened on the thread (only the thread uses it)
    conn: C

    def __init__(self, connect: Callable[[], C], *, name: str = "streamnb-ledger") -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.thread = threading.Thread(
            target=self._serve, args=(connect, ready), name=name, daemon=True
        )
        #: set when the writer is asked to stop (a backend retrying a lost connection gives up)
        self.closing = threading.Event()
        self.thread.start()
        ready.result()
        self._finalizer = weakref.finalize(
            self, _stop_thread, self._queue, self.thread, self.closing
        )

    def call(self, fn: Callable[[C], T]) -> T:
        """Run ``fn`` on the thread, outside any write transaction; block for its result."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(Op(fn, fut, False))
        return fut.result()

    def write(self, fn: Callable[[C], T], *, atomic: bool = False) -> asyncio.Future[T]:
        """Queue ``fn`` for the next write transaction; the future resolves after its commit.

        A plain future on the running loop, not a coroutine: awaiting it costs no
        task (the runtime opens and settles every stream through here,
        bench/bench_core.py core.file_ledger).

        Parameters
        ----------
        fn : callable ``(conn) -> T``
            Runs on the writer thread inside the batch's transaction.
        atomic : bool, default False
            ``fn`` undoes its own writes when it raises (a single statement, which
            the database rolls back by itself, or a savepoint of its own): a backend
            may run it without the savepoint that isolates every other write (the
            SQLite writer does). Each statement saved is one less release of the GIL
            on the writer thread, which the event loop then waits for.

        Returns
        -------
        asyncio.Future
            Resolves to ``fn``'s result once the transaction committed, or fails
            with :class:`~streamnb.LedgerError`: ``fn`` failed (its writes were
            rolled back, other writes committed), or the whole transaction failed
            and was rolled back.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put(Op(fn, fut, True, loop, atomic))
        return fut

    def submit(self, fn: Callable[[C], T]) -> concurrent.futures.Future[T]:
        """Queue ``fn`` for the next write transaction without waiting: a future of its result."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._queue.put(Op(fn, fut, True))
        return fut

    def wake(self) -> None:
        """Have the thread look at ``flush_due()`` soon even if nothing else is queued."""
        self._queue.put(_WAKE)

    def close(self) -> None:
        """Finish what is queued, close the connection, stop the thread (idempotent)."""
        self._finalizer()

    # --- on the thread --------------------------------------------------------------------

    def _serve(self, connect: Callable[[], C], ready: concurrent.futures.Future[None]) -> None:
        try:
            self.conn = connect()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if self._run_batch(batch):
                    return
        finally:
            self._close_conn()

    def _run_batch(self, batch: list[Any]) -> bool:
        """Run a drained batch; consecutive writes share one transaction. True = stop."""
        pending: list[Op] = []
        done: list[tuple[Op, Any, BaseException | None]] = []
        stop = False
        for item in batch:
            if item is _STOP:
                stop = True
                continue
            if item is _WAKE:
                continue
            if item.write:
                pending.append(item)
            else:
                self._commit(pending, done)
                pending = []
                try:
                    done.append((item, item.fn(self.conn), None))
                except BaseException as exc:
                    done.append((item, None, exc))
        self._commit(pending, done, end_of_batch=True)
        _deliver(done)
        return stop

    def _commit(
        self,
        ops: list[Op],
        done: list[tuple[Op, Any, BaseException | None]],
        end_of_batch: bool = False,
    ) -> None:
        """Run ``ops`` in one transaction; append ``(op, value, error)`` to ``done``."""
        raise NotImplementedError

    def _close_conn(self) -> None:
        raise NotImplementedError


class Writer(BatchWriter[sqlite3.Connection]):
    """The SQLite ledger's writer thread: ``BEGIN IMMEDIATE``, a ``SAVEPOINT`` per operation.

    Parameters
    ----------
    connect : callable ``() -> sqlite3.Connection``
        Opens the connection, on the thread. Its exception (a ``LedgerError``)
        propagates from the constructor.
    flush : callable ``(conn) -> None``
        Runs at the start of every write transaction.
    flush_due : callable ``() -> bool``
        Whether ``flush`` has rows to write when no operation is queued.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        flush: Callable[[sqlite3.Connection], None],
        flush_due: Callable[[], bool],
    ) -> None:
        self._flush = flush
        self._flush_due = flush_due
        super().__init__(connect)

    def _close_conn(self) -> None:
        if hasattr(self, "conn"):
            self.conn.close()

    def _commit(
        self,
        ops: list[Op],
        done: list[tuple[Op, Any, BaseException | None]],
        end_of_batch: bool = False,
    ) -> None:
        if not ops and not (end_of_batch and self._flush_due()):
            return
        conn = self.conn
        results: list[tuple[Op, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._flush(conn)
            for op in ops:
                if op.atomic:
                    try:
                        value = op.fn(conn)
                    except Exception as exc:
                        if not conn.in_transaction:
                            raise
                        results.append((op, None, ledger_error(exc)))
                    else:
                        results.append((op, value, None))
                    continue
                conn.execute("SAVEPOINT op")
                try:
                    value = op.fn(conn)
                except Exception as exc:  # not only sqlite3.Error: this thread must not die
                    if not conn.in_transaction:
                        # SQLite rolled the whole transaction back (disk full, I/O error)
                        raise
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    results.append((op, None, ledger_error(exc)))
                else:
                    conn.execute("RELEASE op")
                    results.append((op, value, None))
            conn.execute("COMMIT")
        except Exception as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            err = LedgerError(f"ledger write failed and was rolled back: {exc}")
            err.__cause__ = exc
            done.extend((op, None, err) for op in ops)
            return
        done.extend(results)


def ledger_error(exc: Exception) -> LedgerError:
    """``exc`` as a :class:`~streamnb.LedgerError` (itself if it is one)."""
    if isinstance(exc, LedgerError):
        return exc
    err = LedgerError(str(exc))
    err.__cause__ = exc
    return err


def _deliver(done: list[tuple[Op, Any, BaseException | None]]) -> None:
    """Hand results back: sync futures directly, asyncio ones in one call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
    for op, value, exc in done:
        if op.loop is None:
            fut = op.future
            assert isinstance(fut, concurrent.futures.Future)
            # a future its caller gave up on (asyncio.wrap_future cancels it with the task)
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                if exc is None:
                    fut.set_result(value)
                else:
                    fut.set_exception(exc)
        else:
            by_loop.setdefault(op.loop, []).append((op.future, value, exc))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting
            loop.call_soon_threadsafe(_resolve_all, items)


def _resolve_all(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Runs on the event loop: settle a whole batch of asyncio futures in one wake-up."""
    for fut, value, exc in results:
        if fut.done():  # the awaiting task was cancelled meanwhile
            continue
        if exc is None:
            fut.set_result(value)
        else:
            fut.set_exception(exc)


def _stop_thread(
    q: queue.SimpleQueue[Any], thread: threading.Thread, closing: threading.Event
) -> None:
    closing.set()
    q.put(_STOP)
    if thread is not threading.current_thread():
        thread.join(timeout=THREAD_STOP_TIMEOUT_S)
