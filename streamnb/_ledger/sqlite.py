"""The SQLite backend: one file, one writer thread, one writer process, readers of its own.

A path is a file in WAL mode that survives restarts (``streamnb._sqlite.connect``);
``SQLiteBackend(None)`` is an in-memory ledger, kept in a private scratch file that
is deleted when it closes (``scratch.py`` says why). Every write runs on the
:class:`~streamnb._ledger.writer.Writer` thread; the writer process holds the file's
lock, and opening a file nobody holds recovers the streams a dead process left
``running`` (``recovery.py``). Frames (``record_frames``) are buffered on the caller's
side and written at the start of the next write transaction. Reads never touch the
writer: they run on read-only connections of their own with a time limit
(``readers.py``), so no query can hold back a settlement.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from .._errors import LedgerBusyError, LedgerError, LedgerQueryError
from .._frames import Frame
from .._json import dumps
from .._lifecycle import Lifecycle
from .._sqlite import DEFAULT_BUSY_TIMEOUT_S, connect, read_only_authorizer, translate_errors
from .backend import (
    FRAME_COLUMNS,
    StreamExchange,
    Table,
    select_statement,
)
from .readers import DEFAULT_QUERY_TIMEOUT_S, ReadPool, check_timeout
from .recovery import WriterLock, recover_lost_streams
from .scratch import ScratchFile
from .tx import Settlement
from .writer import Writer

__all__ = ["SQLiteBackend", "check_path"]

T = TypeVar("T")

SCHEMA = """
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

_ORDER = {"streams": "opened_at, rowid", "events": "id", "frames": "stream_ref, seq"}
_INSERT_FRAME = "INSERT OR IGNORE INTO frames VALUES (?,?,?,?,?,?,?,?,?)"


def check_path(path: Any) -> str:
    """``path`` as a str, or :class:`~streamnb.LedgerError` saying why it cannot be a ledger."""
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


class SQLiteBackend:
    """A :class:`~streamnb._ledger.backend.LedgerBackend` on sqlite3 (see the module doc).

    Raises
    ------
    LedgerError
        The file cannot be opened or is not a streamnb ledger.
    LedgerBusyError
        ``read_only=False`` and another live process writes the file.
    """

    def __init__(
        self,
        path: str | None,
        *,
        record_frames: bool = False,
        read_only: bool | None = None,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        query_timeout_s: float | None = DEFAULT_QUERY_TIMEOUT_S,
        lock: WriterLock | None = None,
    ) -> None:
        self.path = path
        self.where = path or ":memory:"
        self.record_frames = record_frames
        self.busy_timeout_s = busy_timeout_s
        #: the time limit of a read that names none, seconds (None: no limit)
        self.query_timeout_s = query_timeout_s
        #: the writer lock was handed over by a ledger of this process being replaced,
        #: whose runtime still settles its running streams: recovery leaves them alone
        self._adopted = lock is not None
        if lock is not None:
            self._lock: WriterLock | None = lock
            self.read_only = False
        else:
            self._lock = None if path is None else WriterLock(path)
            self.read_only = self._take_writer_lock(read_only)
        self._scratch = None if path is not None else ScratchFile()
        #: the SQLite file every connection opens (the scratch file when in memory)
        self.file = path if self._scratch is None else self._scratch.path
        self._frame_buf: deque[Frame] = deque()
        self._flush_queued = False
        try:
            self.writer = Writer(self._connect, self._drain_frames, lambda: bool(self._frame_buf))
        except BaseException:
            self._release_lock()
            raise
        self.readers = ReadPool(self._connect_reader, read_only_authorizer)
        #: streams stay in one process: no exchange
        self.exchange: StreamExchange | None = None
        self.state = Lifecycle.OPEN

    # --- lifecycle ------------------------------------------------------------------------

    def _take_writer_lock(self, read_only: bool | None) -> bool:
        if self._lock is None:
            if read_only:
                raise LedgerError("an in-memory ledger cannot be read-only; give a file path")
            return False
        if read_only:
            return True
        return not self._lock.acquire(required=read_only is False)

    @property
    def holder_pid(self) -> int | None:
        """The id of the process found holding the file's writer lock (read-only ledgers)."""
        return None if self._lock is None else self._lock.holder_pid

    def hand_over_lock(self) -> WriterLock | None:
        """Give the writer lock to a new ledger of this process (a takeover); this ledger
        keeps writing until it closes, but no longer releases the lock."""
        lock, self._lock = self._lock, None
        return lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
        if self._scratch is not None:
            self._scratch.remove()

    def _cannot_open(self, why: str) -> LedgerError:
        return LedgerError(
            f"cannot open ledger {self.where!r}: {why}; is it a streamnb ledger file?"
        )

    def _connect(self) -> sqlite3.Connection:
        """The writer thread's connection (read-only when another process writes)."""
        if self.read_only and self.path is not None and not os.path.exists(self.path):
            raise LedgerError(f"cannot read ledger {self.path!r}: no such file")
        conn = connect(
            self.file,
            schema=None if self.read_only else SCHEMA,
            busy_timeout_s=self.busy_timeout_s,
            read_only=self.read_only,
            error=self._cannot_open,
        )
        if self._scratch is not None:
            conn.execute("PRAGMA synchronous=OFF")  # a scratch file never outlives a crash
        if self.read_only:
            with translate_errors(self._cannot_open):
                conn.execute("SELECT count(*) FROM streams").fetchone()
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        """One more read connection (``mode=ro``), used by one thread at a time."""
        return connect(
            self.file,
            busy_timeout_s=self.busy_timeout_s,
            read_only=True,
            check_same_thread=False,  # the pool hands it to one thread at a time
            error=self._cannot_open,
        )

    def recover(self) -> list[str]:
        if self.read_only or self.path is None or self._adopted:
            return []
        return self.writer.call(recover_lost_streams)

    def close(self) -> None:
        if self.state is not Lifecycle.OPEN:
            return
        self.state = Lifecycle.CLOSED
        self.readers.close()
        self.writer.close()
        self._release_lock()

    def _check_open(self, write: bool) -> None:
        self.state.check_open(_closed_error)
        if write and self.read_only:
            raise LedgerBusyError(self.where, self.holder_pid)

    # --- writes ---------------------------------------------------------------------------

    def check_writable(self) -> None:
        if self.read_only:
            raise LedgerBusyError(self.where, self.holder_pid)
        self.state.check_open(_closed_error)

    def open_stream(
        self,
        stream_ref: str,
        kind: str,
        mode: str,
        opened_at: float,
        *,
        on_detach: str = "abort",
        owner: str | None = None,
    ) -> asyncio.Future[None]:
        # a future of the writer's, not a coroutine: no task per stream (see Writer.write)
        try:
            self._check_open(True)
        except LedgerError as exc:
            return _failed(exc)

        row = (stream_ref, kind, mode, opened_at)
        return self.writer.write(_OpenRow(row), atomic=True)  # one statement

    def record_frame(self, frame: Frame) -> None:
        if not self.record_frames or self.state is not Lifecycle.OPEN:
            return
        self._frame_buf.append(frame)
        if not self._flush_queued:
            self._flush_queued = True
            self.writer.wake()

    def _drain_frames(self, conn: sqlite3.Connection) -> None:
        """On the writer thread, first thing in a write transaction: the buffered frames."""
        self._flush_queued = False
        buf = self._frame_buf
        if not buf:
            return
        rows = []
        while buf:
            rows.append(_frame_row(buf.popleft()))
        try:
            conn.executemany(_INSERT_FRAME, rows)
        except UnicodeEncodeError:
            # a handler's text with a lone surrogate: store it backslash-escaped (in the JSON
            # columns that is the same value) rather than fail the batch it shares with
            # other streams' settlements
            for row in rows:
                conn.execute(_INSERT_FRAME, tuple(_utf8_safe(v) for v in row))

    def settle(self, settlement: Settlement) -> asyncio.Future[Settlement]:
        try:
            self._check_open(True)
        except LedgerError as exc:
            return _failed(exc)
        # one small object, not three closures and their cells: every stream settles here
        return self.writer.write(_SettleRows(settlement, self.record_frames), atomic=True)

    # --- reads ----------------------------------------------------------------------------

    def _limit(self, timeout_s: float | None) -> float | None:
        return self.query_timeout_s if timeout_s is None else check_timeout(timeout_s)

    def select(
        self,
        table: Table,
        columns: Sequence[str],
        where: Mapping[str, str] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> list[tuple[Any, ...]]:
        self._check_open(False)
        query, params = select_statement(
            table, columns, where, placeholder="?", order=_ORDER[table]
        )

        def run(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            with translate_errors(lambda why: LedgerError(f"cannot read {table}: {why}")):
                return conn.execute(query, params).fetchall()

        return self.readers.run(run, self._limit(timeout_s), lambda: query)

    def select_frames(
        self,
        stream_ref: str,
        after_seq: int = -1,
        limit: int | None = None,
        *,
        timeout_s: float | None = None,
    ) -> list[tuple[Any, ...]]:
        self._check_open(False)
        query = (
            f"SELECT {', '.join(FRAME_COLUMNS)} FROM frames WHERE stream_ref=? AND seq>? "
            "ORDER BY seq LIMIT ?"
        )
        params = (stream_ref, after_seq, -1 if limit is None else limit)

        def run(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            with translate_errors(lambda why: LedgerError(f"cannot read frames: {why}")):
                return conn.execute(query, params).fetchall()

        return self.readers.run(run, self._limit(timeout_s), lambda: query)

    def sql(
        self,
        query: str,
        params: Sequence[Any] | Mapping[str, Any] = (),
        *,
        timeout_s: float | None = None,
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        self._check_open(False)

        def run(conn: sqlite3.Connection) -> tuple[list[str], list[tuple[Any, ...]]]:
            with translate_errors(lambda why: LedgerQueryError(query, why)):
                cur = conn.execute(query, params)
                cols = [d[0] for d in cur.description or ()]
                return cols, cur.fetchall()

        return self.readers.run(run, self._limit(timeout_s), lambda: f"query {query[:200]!r}")

    async def run_read(self, fn: Callable[[], T]) -> T:
        self._check_open(False)
        return await self.readers.run_async(fn)


class _OpenRow:
    """The writer-thread half of ``open_stream``: insert the ``running`` row."""

    __slots__ = ("row",)

    def __init__(self, row: tuple[str, str, str, float]) -> None:
        self.row = row

    def __call__(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO streams (stream_ref, kind, mode, status, opened_at) "
            "VALUES (?,?,?,'running',?)",
            self.row,
        )


class _SettleRows:
    """The writer-thread half of ``settle``: one atomic write (see ``Writer.write``).

    Updates the ``streams`` row and writes the handler's ``tx`` inside a savepoint;
    if the handler's writes fail they are rolled back and a ``failed`` record
    (``settlement_error``) is written instead; if even that fails, nothing of the
    settlement stays and the error propagates.
    """

    __slots__ = ("record", "s")

    def __init__(self, settlement: Settlement, record: bool) -> None:
        self.s = settlement
        self.record = record

    def __call__(self, conn: sqlite3.Connection) -> Settlement:
        conn.execute("SAVEPOINT settle")
        try:
            settled = self._write_all(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK TO settle")
                conn.execute("RELEASE settle")
            raise
        conn.execute("RELEASE settle")
        return settled

    def _apply(
        self, conn: sqlite3.Connection, status: str, reason: str | None, terminal: Any
    ) -> None:
        s = self.s
        cur = conn.execute(
            "UPDATE streams SET status=?, reason=?, settled_at=?, terminal=? "
            "WHERE stream_ref=? AND status='running'",
            (status, reason, s.settled_at, dumps(terminal), s.stream_ref),
        )
        if cur.rowcount != 1:
            raise LedgerError(f"stream {s.stream_ref!r} is not running in the ledger")
        if self.record and s.terminal_frame is not None:
            conn.execute(_INSERT_FRAME, _frame_row(s.terminal_frame))

    def _write_all(self, conn: sqlite3.Connection) -> Settlement:
        s = self.s
        try:
            self._apply(conn, s.status, s.reason, s.terminal)
            if s.tx is not None:
                for kind, payload in s.tx._events:
                    conn.execute(
                        "INSERT INTO events (stream_ref, kind, payload, created_at) "
                        "VALUES (?,?,?,?)",
                        (s.stream_ref, kind, payload, s.settled_at),
                    )
                if s.tx._statements:
                    # the handler's own SQL may not touch the runtime's tables or the
                    # transaction (a COMMIT or ROLLBACK here would end the group commit)
                    conn.set_authorizer(_handler_authorizer)
                    try:
                        for sql, params in s.tx._statements:
                            conn.execute(sql, params)
                    finally:
                        conn.set_authorizer(None)
        except Exception as exc:  # sqlite3.Error, or a value sqlite cannot bind
            if not conn.in_transaction:  # the whole transaction is gone (disk full)
                raise
            conn.execute("ROLLBACK TO settle")  # the savepoint stays open
            s.fallback_error = f"commit_terminal's writes failed: {exc}"
            terminal = {"ok": False, "settlement_error": s.fallback_error}
            self._apply(conn, "failed", "settlement_error", terminal)
            s.committed = ("failed", "settlement_error", terminal)
            return s
        s.committed = (s.status, s.reason, s.terminal)
        return s


def _failed(exc: LedgerError) -> asyncio.Future[Any]:
    """A future already failed with ``exc`` (a write refused before it was queued)."""
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_exception(exc)
    return fut


def _closed_error() -> LedgerError:
    return LedgerError("the ledger is closed; open a new Ledger (or give the runtime an open one)")


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


def _utf8_safe(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


#: tables the runtime owns: a handler's ``tx.execute`` may read them, never change them
#: (the Durable Streams endpoint keeps its ``ds_*`` tables in the same file)
_RUNTIME_TABLES = frozenset({"streams", "events", "frames"})
_TABLE_WRITES = frozenset(
    {
        sqlite3.SQLITE_INSERT,
        sqlite3.SQLITE_UPDATE,
        sqlite3.SQLITE_DELETE,
        sqlite3.SQLITE_DROP_TABLE,
        sqlite3.SQLITE_DROP_TEMP_TABLE,
    }
)
#: (action) whose second argument is the table: indexes and triggers on it, ALTER TABLE
_ON_TABLE = frozenset(
    {
        sqlite3.SQLITE_CREATE_INDEX,
        sqlite3.SQLITE_DROP_INDEX,
        sqlite3.SQLITE_CREATE_TEMP_INDEX,
        sqlite3.SQLITE_DROP_TEMP_INDEX,
        sqlite3.SQLITE_CREATE_TRIGGER,
        sqlite3.SQLITE_DROP_TRIGGER,
        sqlite3.SQLITE_CREATE_TEMP_TRIGGER,
        sqlite3.SQLITE_DROP_TEMP_TRIGGER,
        sqlite3.SQLITE_ALTER_TABLE,
    }
)
_NEVER = frozenset(
    {
        sqlite3.SQLITE_TRANSACTION,
        sqlite3.SQLITE_SAVEPOINT,
        sqlite3.SQLITE_ATTACH,
        sqlite3.SQLITE_DETACH,
    }
)


def _runtime_table(name: Any) -> bool:
    if not isinstance(name, str):
        return False
    low = name.lower()
    # sqlite_master is written by SQLite itself for the handler's own CREATE TABLE (a
    # direct write needs writable_schema, refused below); sqlite_sequence numbers events
    return low in _RUNTIME_TABLES or low.startswith("ds_") or low == "sqlite_sequence"


def _handler_authorizer(action: int, arg1: Any, arg2: Any, _db: Any, _trigger: Any) -> int:
    """What ``tx.execute`` may do: anything to the handler's own tables, nothing else."""
    if action in _NEVER:
        return sqlite3.SQLITE_DENY
    if action in _TABLE_WRITES and _runtime_table(arg1):
        return sqlite3.SQLITE_DENY
    if action in _ON_TABLE and _runtime_table(arg2):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and arg2 is not None:
        return sqlite3.SQLITE_DENY  # setting a PRAGMA (writable_schema, journal_mode...)
    return sqlite3.SQLITE_OK
