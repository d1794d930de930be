"""The ledger: a durable, queryable record of streams, settlements and events (sqlite3).

``Ledger()`` keeps everything in memory; ``Ledger("runs.db")`` is a file in WAL
mode that survives restarts. All SQLite work happens on one writer thread per
ledger (``streamnb-ledger``), so the event loop never waits on disk I/O; queries
issued from the loop thread (a notebook cell) block only that call.

Tables (see :meth:`Ledger.sql` to query them directly):

* ``streams`` - the runtime's own record: one row per opened stream, written at
  attach with ``status='running'`` and updated once at settlement.
* ``events`` - facts handlers commit with ``tx.insert_event`` inside
  ``commit_terminal``, in the same transaction as the settlement update.
* ``frames`` - every outbound frame, when ``record_frames=True``.

Settlements are group-committed: the writer drains whatever is queued, applies
each settlement inside its own ``SAVEPOINT`` (so one failing handler write
cannot undo another stream's settlement) and commits once; the runtime announces
a terminal frame only after the commit returned. A file ledger's writer holds
an exclusive ``flock`` on ``<path>.lock``; opening the file while no live
process holds it marks streams left ``running`` by a dead process as ``failed``
with reason ``runtime_lost``. A second process (or a second ``Ledger`` on the
same file) that finds the lock taken opens the file read-only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import os
import queue
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ._dataframes import utc_column
from ._errors import LedgerBusyError, LedgerError, LedgerQueryError
from ._frames import Frame
from ._json import dumps, loads
from ._lifecycle import Lifecycle
from ._sqlite import connect, translate_errors

__all__ = ["Ledger", "LedgerTx", "Settlement"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    stream_ref TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    mode       TEXT NOT NULL,
    status     TEXT NOT NULL,
    opened_at  REAL NOT NULL,
    settled_at REAL,
    reason     TEXT,
    terminal   TEXT
);
CREATE INDEX IF NOT EXISTS streams_status ON streams(status);
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_ref TEXT,
    kind       TEXT NOT NULL,
    payload    TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_stream ON events(stream_ref);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind);
CREATE TABLE IF NOT EXISTS frames (
    stream_ref TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    channel    TEXT,
    payload    TEXT,
    reason     TEXT,
    error      TEXT,
    terminal   TEXT,
    at         REAL NOT NULL,
    PRIMARY KEY (stream_ref, seq)
) WITHOUT ROWID;
"""

_MAX_BATCH = 2048
_STOP = object()
_FLUSH = object()


def _check_path(path: Any) -> str:
    try:
        text = os.fspath(path)
    except TypeError:
        text = None
    if not isinstance(text, str) or not text or "\x00" in text:
        raise LedgerError(
            f"a ledger path must be a non-empty file path (str or os.PathLike), got {path!r}; "
            "use Ledger() for an in-memory ledger"
        )
    if os.path.isdir(text):
        raise LedgerError(f"cannot open ledger {text!r}: it is a directory; give a file path")
    return text


def _utf8_safe(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _frame_row(f: Frame) -> tuple[Any, ...]:
    return (
        f.stream_ref,
        f.seq,
        f.kind,
        f.channel,
        None if f.payload is None else dumps(f.payload),
        f.reason,
        f.error,
        None if f.terminal is None else dumps(f.terminal),
        f.at,
    )


class LedgerTx:
    """The write buffer ``commit_terminal(terminal, tx)`` receives.

    Writes made here are applied in the same SQLite transaction as the
    runtime's settlement record for ``stream_ref``: all of them commit, or (if
    one fails) none do and the stream settles ``failed`` with reason
    ``settlement_error``.
    """

    __slots__ = ("_events", "_statements", "stream_ref")

    def __init__(self, stream_ref: str) -> None:
        self.stream_ref = stream_ref
        self._events: list[tuple[str, str | None]] = []
        self._statements: list[tuple[str, tuple[Any, ...]]] = []

    def insert_event(self, kind: str | dict[str, Any], payload: Any = None) -> None:
        """Record an event ``kind`` with a JSON ``payload`` for this stream.

        Accepts ``tx.insert_event("x.settled", {...})`` or the seeds' single
        object ``tx.insert_event({"kind": "x.settled", "payload": {...}})``.
        A :class:`~streamnb.Frame` inside the payload is stored as its JSON form.

        Raises
        ------
        LedgerError
            ``kind`` is not a non-empty string or ``payload`` is not JSON.
        """
        if isinstance(kind, dict):
            if payload is not None or "kind" not in kind:
                raise LedgerError(
                    "insert_event takes (kind, payload) or one {'kind': ..., 'payload': ...} dict"
                )
            spec = kind
            kind, payload = spec["kind"], spec.get("payload")
        if not isinstance(kind, str) or not kind:
            raise LedgerError(f"event kind must be a non-empty string, got {kind!r}")
        try:
            text = None if payload is None else dumps(payload)
        except (TypeError, ValueError) as exc:
            raise LedgerError(
                f"payload of event {kind!r} is not JSON-serializable ({exc}); "
                "store plain dicts, lists, strings and numbers"
            ) from exc
        self._events.append((kind, text))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Queue one SQL statement (for a handler's own tables) in this transaction."""
        self._statements.append((sql, tuple(params)))


@dataclass(slots=True)
class Settlement:
    """One stream's settlement as the runtime hands it to the writer thread."""

    stream_ref: str
    status: str
    reason: str | None
    terminal: Any
    settled_at: float
    tx: LedgerTx | None = None
    terminal_frame: Frame | None = None
    #: filled by the writer: (status, reason, terminal) actually committed
    committed: tuple[str, str | None, Any] | None = field(default=None)
    fallback_error: str | None = None


@dataclass(slots=True)
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    #: a concurrent future for sync callers, or an asyncio future (resolved on its loop)
    future: concurrent.futures.Future[Any] | asyncio.Future[Any]
    write: bool
    loop: asyncio.AbstractEventLoop | None = None


def _resolve_all(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Runs on the event loop: settle a whole batch of asyncio futures in one wake-up."""
    for fut, value, exc in results:
        if fut.done():  # the awaiting task was cancelled meanwhile
            continue
        if exc is None:
            fut.set_result(value)
        else:
            fut.set_exception(exc)


class Ledger:
    """Durable store of settlements, events and (optionally) frames.

    Parameters
    ----------
    path : str or os.PathLike, optional
        SQLite file to use (WAL mode, created if missing). ``None`` (default)
        keeps the ledger in memory for the life of this object.
    record_frames : bool, default False
        Also store every outbound frame, queryable with :meth:`frames`.
    read_only : bool or None, default None
        ``None`` opens the file for writing if no other live process holds it,
        read-only otherwise; ``True`` always reads only; ``False`` raises
        :class:`~streamnb.LedgerBusyError` when the file is held.
    busy_timeout_s : float, default 5.0
        How long SQLite waits for a lock held by another connection, seconds.

    Raises
    ------
    LedgerError
        The file cannot be opened or is not a streamnb ledger.
    LedgerBusyError
        ``read_only=False`` and another live process writes the file.

    Examples
    --------
    >>> ledger = Ledger()                       # doctest: +SKIP
    >>> ledger.streams()                        # doctest: +SKIP
    Empty DataFrame
    Columns: [stream_ref, kind, mode, status, opened_at, settled_at, reason, terminal]
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        record_frames: bool = False,
        read_only: bool | None = None,
        busy_timeout_s: float = 5.0,
    ) -> None:
        self.path = None if path is None else _check_path(path)
        self.record_frames = record_frames
        self.busy_timeout_s = busy_timeout_s
        self.recovered: list[str] = []
        self._lock_fd: int | None = None
        self.read_only = self._take_writer_lock(read_only)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._frame_buf: deque[Frame] = deque()
        self._flush_queued = False
        self._state = Lifecycle.OPEN
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._serve, args=(ready,), name="streamnb-ledger", daemon=True
        )
        self._thread.start()
        try:
            ready.result()
        except BaseException:
            self._release_lock()
            raise
        self._finalizer = weakref.finalize(self, Ledger._stop_thread, self._queue, self._thread)

    # --- lifecycle ------------------------------------------------------------------------

    def _take_writer_lock(self, read_only: bool | None) -> bool:
        if self.path is None:
            if read_only:
                raise LedgerError("an in-memory ledger cannot be read-only; give a file path")
            return False
        if read_only:
            return True
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise LedgerError(
                f"cannot open ledger {self.path!r}: directory {parent!r} does not exist"
            )
        try:
            fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerError(
                f"cannot open ledger {self.path!r}: cannot create its lock file "
                f"{self.path + '.lock'!r} ({exc.strerror}); choose a writable directory "
                "or open it with read_only=True"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if read_only is False:
                raise LedgerBusyError(self.path) from None
            return True
        self._lock_fd = fd
        return False

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
            self._lock_fd = None

    def _connect(self) -> sqlite3.Connection:
        where = self.path or ":memory:"

        def cannot_open(why: str) -> LedgerError:
            return LedgerError(
                f"cannot open ledger {where!r}: {why}; is it a streamnb ledger file?"
            )

        if self.read_only and self.path is not None and not os.path.exists(self.path):
            raise LedgerError(f"cannot read ledger {self.path!r}: no such file")
        conn = connect(
            self.path,
            schema=None if self.read_only else _SCHEMA,
            busy_timeout_s=self.busy_timeout_s,
            read_only=self.read_only,
            error=cannot_open,
        )
        if self.read_only:
            with translate_errors(cannot_open):
                conn.execute("SELECT count(*) FROM streams").fetchone()
        return conn

    def _recover(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute("SELECT stream_ref FROM streams WHERE status='running'").fetchall()
        if not rows:
            return
        terminal = dumps({"ok": False, "runtime_lost": True})
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "UPDATE streams SET status='failed', reason='runtime_lost', settled_at=?, "
            "terminal=? WHERE status='running'",
            (time.time(), terminal),
        )
        conn.execute("COMMIT")
        self.recovered = [r[0] for r in rows]

    def close(self) -> None:
        """Finish queued writes, close the SQLite connection and release the file lock.

        Idempotent. Queries after ``close`` raise :class:`~streamnb.LedgerError`.
        """
        if self._state is not Lifecycle.OPEN:
            return
        self._state = Lifecycle.CLOSED
        self._finalizer.detach()
        self._stop_thread(self._queue, self._thread)
        self._release_lock()

    @staticmethod
    def _stop_thread(q: queue.SimpleQueue[Any], thread: threading.Thread) -> None:
        q.put(_STOP)
        if thread is not threading.current_thread():
            thread.join(timeout=30)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or ":memory:"
        mode = "read-only" if self.read_only else "writer"
        state = self._state.value
        return f"<Ledger {where} {mode} {state}>"

    # --- the writer thread -------------------------------------------------------------

    def _serve(self, ready: concurrent.futures.Future[None]) -> None:
        try:
            conn = self._connect()
            if not self.read_only and self.path is not None:
                self._recover(conn)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            while True:
                batch = [self._queue.get()]
                while len(batch) < _MAX_BATCH:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if self._run_batch(conn, batch):
                    return
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[Any]) -> bool:
        """Run a drained batch; consecutive writes share one transaction. True = stop."""
        pending: list[_Op] = []
        done: list[tuple[_Op, Any, BaseException | None]] = []
        stop = False
        for item in batch:
            if item is _STOP:
                stop = True
                continue
            if item is _FLUSH:
                continue
            if item.write:
                pending.append(item)
            else:
                self._commit_writes(conn, pending, done)
                pending = []
                try:
                    done.append((item, item.fn(conn), None))
                except BaseException as exc:
                    done.append((item, None, exc))
        self._commit_writes(conn, pending, done, flush_frames=True)
        self._deliver(done)
        return stop

    @staticmethod
    def _deliver(done: list[tuple[_Op, Any, BaseException | None]]) -> None:
        """Hand results back: sync futures directly, asyncio ones in one call per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for op, value, exc in done:
            if op.loop is None:
                fut = op.future
                assert isinstance(fut, concurrent.futures.Future)
                if exc is None:
                    fut.set_result(value)
                else:
                    fut.set_exception(exc)
            else:
                by_loop.setdefault(op.loop, []).append((op.future, value, exc))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting
                loop.call_soon_threadsafe(_resolve_all, items)

    def _drain_frames(self, conn: sqlite3.Connection) -> None:
        self._flush_queued = False
        buf = self._frame_buf
        if not buf:
            return
        rows = []
        while buf:
            rows.append(_frame_row(buf.popleft()))
        sql = "INSERT OR IGNORE INTO frames VALUES (?,?,?,?,?,?,?,?,?)"
        try:
            conn.executemany(sql, rows)
        except UnicodeEncodeError:
            # a handler's text with a lone surrogate: store it backslash-escaped (in the JSON
            # columns that is the same value) rather than fail the batch it shares with
            # other streams' settlements
            for row in rows:
                conn.execute(sql, tuple(_utf8_safe(v) for v in row))

    def _commit_writes(
        self,
        conn: sqlite3.Connection,
        ops: list[_Op],
        done: list[tuple[_Op, Any, BaseException | None]],
        flush_frames: bool = False,
    ) -> None:
        if not ops and not (flush_frames and self._frame_buf):
            return
        results: list[tuple[_Op, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            self._drain_frames(conn)
            for op in ops:
                conn.execute("SAVEPOINT op")
                try:
                    value = op.fn(conn)
                except Exception as exc:  # not only sqlite3.Error: this thread must not die
                    if not conn.in_transaction:
                        # SQLite rolled the whole transaction back (disk full, I/O error)
                        raise
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    wrapped = exc if isinstance(exc, LedgerError) else LedgerError(str(exc))
                    if wrapped is not exc:
                        wrapped.__cause__ = exc
                    results.append((op, None, wrapped))
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

    def _check_open(self, write: bool) -> None:
        self._state.check_open(_closed_error)
        if write and self.read_only:
            raise LedgerBusyError(self.path or ":memory:")

    def _query(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn`` on the ledger thread and block this (calling) thread for the result."""
        self._check_open(False)
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._queue.put(_Op(fn, fut, False))
        return fut.result()

    async def _awrite(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn`` in the next write transaction; await its commit on this loop."""
        self._check_open(True)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Op(fn, fut, True, loop))
        return await fut

    # --- writes used by the runtime ---------------------------------------------------

    def check_writable(self) -> None:
        """Raise :class:`~streamnb.LedgerBusyError` if this ledger cannot be written."""
        if self.read_only:
            raise LedgerBusyError(self.path or ":memory:")
        self._state.check_open(_closed_error)

    async def open_stream(self, stream_ref: str, kind: str, mode: str, opened_at: float) -> None:
        """Insert the ``streams`` row (status ``open``) and wait for its commit."""

        def fn(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO streams (stream_ref, kind, mode, status, opened_at) "
                "VALUES (?,?,?,'running',?)",
                (stream_ref, kind, mode, opened_at),
            )

        await self._awrite(fn)

    def record_frame(self, frame: Frame) -> None:
        """Queue ``frame`` for the ``frames`` table (no-op unless ``record_frames``)."""
        if not self.record_frames or self._state is not Lifecycle.OPEN:
            return
        self._frame_buf.append(frame)
        if not self._flush_queued:
            self._flush_queued = True
            self._queue.put(_FLUSH)

    async def settle(self, s: Settlement) -> Settlement:
        """Commit a settlement (runtime record + the handler's tx) and wait for it.

        If the handler's writes fail, they are rolled back and the stream is
        settled ``failed`` (reason ``settlement_error``) instead, in the same
        transaction. ``s.committed`` says what was stored.

        Raises
        ------
        LedgerError
            Not even the fallback could be written (disk full, read-only file...).
        """
        record = self.record_frames

        def apply(conn: sqlite3.Connection, status: str, reason: str | None, terminal: Any) -> None:
            cur = conn.execute(
                "UPDATE streams SET status=?, reason=?, settled_at=?, terminal=? "
                "WHERE stream_ref=? AND status='running'",
                (status, reason, s.settled_at, dumps(terminal), s.stream_ref),
            )
            if cur.rowcount != 1:
                raise LedgerError(f"stream {s.stream_ref!r} is not open in the ledger")
            if record and s.terminal_frame is not None:
                conn.execute(
                    "INSERT OR IGNORE INTO frames VALUES (?,?,?,?,?,?,?,?,?)",
                    _frame_row(s.terminal_frame),
                )

        def fn(conn: sqlite3.Connection) -> Settlement:
            conn.execute("SAVEPOINT settle")
            try:
                apply(conn, s.status, s.reason, s.terminal)
                if s.tx is not None:
                    for kind, payload in s.tx._events:
                        conn.execute(
                            "INSERT INTO events (stream_ref, kind, payload, created_at) "
                            "VALUES (?,?,?,?)",
                            (s.stream_ref, kind, payload, s.settled_at),
                        )
                    for sql, params in s.tx._statements:
                        conn.execute(sql, params)
            except Exception as exc:  # sqlite3.Error, or a value sqlite cannot bind
                if not conn.in_transaction:  # the whole transaction is gone (disk full)
                    raise
                conn.execute("ROLLBACK TO settle")
                conn.execute("RELEASE settle")
                s.fallback_error = f"commit_terminal's writes failed: {exc}"
                terminal = {"ok": False, "settlement_error": s.fallback_error}
                apply(conn, "failed", "settlement_error", terminal)
                s.committed = ("failed", "settlement_error", terminal)
                return s
            conn.execute("RELEASE settle")
            s.committed = (s.status, s.reason, s.terminal)
            return s

        result: Settlement = await self._awrite(fn)
        return result

    # --- queries -------------------------------------------------------------------------

    def events(self, kind: str | None = None, stream_ref: str | None = None) -> pd.DataFrame:
        """Events committed by handlers, oldest first.

        Parameters
        ----------
        kind, stream_ref : str, optional
            Keep only events of this kind / of this stream.

        Returns
        -------
        pandas.DataFrame
            Columns ``id`` (int64), ``stream_ref`` (object), ``kind`` (object),
            ``payload`` (object: parsed JSON), ``created_at`` (datetime64[ns, UTC]).
        """
        where, params = _where(kind=kind, stream_ref=stream_ref)
        rows = self._query(
            lambda c: c.execute(
                f"SELECT id, stream_ref, kind, payload, created_at FROM events{where} ORDER BY id",
                params,
            ).fetchall()
        )
        df = pd.DataFrame.from_records(
            rows, columns=["id", "stream_ref", "kind", "payload", "created_at"]
        )
        df["id"] = df["id"].astype("int64")
        df["payload"] = [loads(p) for p in df["payload"]]
        df["created_at"] = utc_column(df["created_at"])
        return df

    def streams(self, kind: str | None = None, status: str | None = None) -> pd.DataFrame:
        """The runtime's record of every stream, in the order they were opened.

        Returns
        -------
        pandas.DataFrame
            Columns ``stream_ref, kind, mode, status`` (object; status is
            ``running`` until settled, then the terminal kind), ``opened_at``,
            ``settled_at`` (datetime64[ns, UTC], NaT while open), ``reason``
            (object) and ``terminal`` (object: the parsed terminal value).
        """
        where, params = _where(kind=kind, status=status)
        cols = ["stream_ref", "kind", "mode", "status", "opened_at", "settled_at", "reason"]
        rows = self._query(
            lambda c: c.execute(
                f"SELECT {', '.join(cols)}, terminal FROM streams{where} ORDER BY opened_at, rowid",
                params,
            ).fetchall()
        )
        df = pd.DataFrame.from_records(rows, columns=[*cols, "terminal"])
        df["opened_at"] = utc_column(df["opened_at"])
        df["settled_at"] = utc_column(df["settled_at"])
        df["terminal"] = [loads(t) for t in df["terminal"]]
        return df

    def frames(self, stream_ref: str | None = None) -> pd.DataFrame:
        """Recorded frames (``record_frames=True``), by stream then seq.

        Returns
        -------
        pandas.DataFrame
            Columns ``stream_ref, seq`` (int64), ``kind, channel``, ``payload``
            and ``terminal`` (parsed JSON), ``reason, error``, ``at``
            (datetime64[ns, UTC]). Empty, with these columns, when frames are
            not recorded.
        """
        where, params = _where(stream_ref=stream_ref)
        cols = [
            "stream_ref",
            "seq",
            "kind",
            "channel",
            "payload",
            "reason",
            "error",
            "terminal",
            "at",
        ]
        rows = self._query(
            lambda c: c.execute(
                f"SELECT {', '.join(cols)} FROM frames{where} ORDER BY stream_ref, seq", params
            ).fetchall()
        )
        df = pd.DataFrame.from_records(rows, columns=cols)
        df["seq"] = df["seq"].astype("int64")
        df["payload"] = [loads(p) for p in df["payload"]]
        df["terminal"] = [loads(t) for t in df["terminal"]]
        df["at"] = utc_column(df["at"])
        return df

    def frame_log(self, stream_ref: str) -> list[Frame]:
        """Recorded frames of one stream as a list of :class:`~streamnb.Frame`, by seq.

        The same rows as ``frames(stream_ref)``, as the objects observers receive
        (e.g. to replay them, or to project them with ``project_attached_stream``).
        """
        rows = self._query(
            lambda c: c.execute(
                "SELECT stream_ref, seq, kind, channel, payload, reason, error, terminal, at "
                "FROM frames WHERE stream_ref=? ORDER BY seq",
                (stream_ref,),
            ).fetchall()
        )
        return [
            Frame(k, r, s, at, ch, loads(p), rs, er, loads(t))
            for r, s, k, ch, p, rs, er, t, at in rows
        ]

    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] = ()) -> pd.DataFrame:
        """Run a read-only SQL query and return its rows as a DataFrame.

        Parameters
        ----------
        query : str
            One SQLite ``SELECT`` (or ``WITH ... SELECT``) over ``streams``,
            ``events`` and ``frames``. Use ``?`` or ``:name`` placeholders.
        params : sequence or dict
            Values for the placeholders.

        Raises
        ------
        LedgerQueryError
            The statement failed or tried to change the ledger (nothing changes).
        """

        if not isinstance(query, str):
            raise LedgerQueryError(
                repr(query), f"the query must be a str, got {type(query).__name__}"
            )

        def fn(conn: sqlite3.Connection) -> tuple[list[str], list[tuple[Any, ...]]]:
            conn.execute("PRAGMA query_only=ON")
            # query_only stops writes to the data, not BEGIN (which would leave the writer's
            # connection inside a transaction), ATTACH or PRAGMA settings: allow reads only
            conn.set_authorizer(_read_only_authorizer)
            try:
                cur = conn.execute(query, params)
                cols = [d[0] for d in cur.description or ()]
                return cols, cur.fetchall()
            except Exception as exc:  # sqlite3.Error, or params sqlite cannot bind
                raise LedgerQueryError(query, str(exc)) from exc
            finally:
                conn.set_authorizer(None)
                conn.execute("PRAGMA query_only=OFF")

        cols, rows = self._query(fn)
        return pd.DataFrame.from_records(rows, columns=cols)

    def stream_status(self, stream_ref: str) -> str | None:
        """The ``streams.status`` of one stream, or None if the ledger has no such row."""
        row = self._query(
            lambda c: c.execute(
                "SELECT status FROM streams WHERE stream_ref=?", (stream_ref,)
            ).fetchone()
        )
        return None if row is None else str(row[0])


def _closed_error() -> LedgerError:
    return LedgerError("the ledger is closed; open a new Ledger (or give the runtime an open one)")


#: PRAGMAs ledger.sql may run with an argument (they only read)
_READ_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "integrity_check",
        "quick_check",
    }
)
_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


def _read_only_authorizer(action: int, arg1: Any, arg2: Any, _db: Any, _trigger: Any) -> int:
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (arg2 is None or arg1 in _READ_PRAGMAS):
        return sqlite3.SQLITE_OK  # reading a setting; setting one is denied
    return sqlite3.SQLITE_DENY


def _where(**filters: Any) -> tuple[str, tuple[Any, ...]]:
    for k, v in filters.items():
        if v is not None and not isinstance(v, str):
            raise LedgerError(f"the {k} filter must be a str or None, got {type(v).__name__}")
    parts = [(k, v) for k, v in filters.items() if v is not None]
    if not parts:
        return "", ()
    return " WHERE " + " AND ".join(f"{k}=?" for k, _ in parts), tuple(v for _, v in parts)
