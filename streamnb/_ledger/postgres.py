"""The PostgreSQL backend: one database shared by many runtimes in many processes.

``Ledger("postgresql://user:password@host/db")`` opens it (psycopg 3, the
optional extra ``streamnb[postgres]``). The tables are the SQLite backend's
(``streams``, ``events``, ``frames``) plus what sharing needs (``pg_schema.py``),
created and migrated on first open. Per open ledger:

* a **writer** thread and connection (``pg_writer.py``): the runtime's writes,
  group-committed, retried across a lost connection;
* a **read pool** (``pg_readers.py``): queries, read-only transactions with
  ``statement_timeout``;
* a **lease** thread and connection (``lease.py``): this process's runtimes'
  leases, and the recovery of dead runtimes' streams;
* an **exchange** thread and connection (``exchange.py``, started by the first
  runtime): ``LISTEN``, frames of other processes' streams, commands.

Every outbound frame goes to ``frame_log`` (buffered, written first in the
writer's next transaction, announced with ``NOTIFY``): that is how another
process reads a stream. ``recorded`` marks those a ``record_frames=True``
ledger keeps (the ``frames`` view); the others are deleted an hour after their
stream settled. Settle, then announce holds across processes: a terminal
frame is in ``frame_log`` in the same transaction as the settlement, so no
process can read it before the settlement committed.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from .._errors import LedgerBusyError, LedgerError, LedgerQueryError
from .._frames import Frame
from .._json import dumps, loads
from .._lifecycle import Lifecycle
from .backend import (
    FRAME_COLUMNS,
    StreamExchange,
    Table,
    select_statement,
)
from .exchange import Exchange
from .lease import DEFAULT_LEASE_S, LeaseKeeper, LeaseLostError, note_frames, recover_expired
from .pg_connect import Dsn, connect, is_disconnect, translate
from .pg_readers import PgReadPool
from .pg_schema import LATEST_VERSION, migrate
from .pg_sql import check_handler_statement, to_pyformat
from .pg_writer import PgWriter, in_fast_batch, savepoint
from .readers import DEFAULT_QUERY_TIMEOUT_S, check_timeout
from .tx import Settlement, failed_instead

__all__ = ["PostgresBackend"]

T = TypeVar("T")
Conn = Any  # psycopg.Connection[tuple[Any, ...]]

_ORDER = {"streams": "opened_at, opened_no", "events": "id", "frames": "stream_ref, seq"}
_INSERT_FRAME = (
    "INSERT INTO frame_log (stream_ref, seq, kind, channel, payload, reason, error, terminal, "
    "at, recorded) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


def channel_name(schema: str) -> str:
    """The ledger's NOTIFY channel: one per schema (identifiers stay under 64 bytes)."""
    name = f"streamnb:{schema}"
    if len(name.encode()) > 63:
        name = "streamnb:" + hashlib.sha1(schema.encode()).hexdigest()[:20]
    return name


class _Taken:
    """Frames the writer took for one transaction, kept across its retries."""

    __slots__ = ("frames", "tries")

    def __init__(self, frames: list[Frame]) -> None:
        self.frames = frames
        self.tries = 0


class _Frames:
    """Frames waiting for the writer's next transaction (a :class:`~.pg_writer.FrameFlush`)."""

    def __init__(self, backend: PostgresBackend) -> None:
        self._buf: deque[Frame] = deque()
        self._backend = backend

    def due(self) -> bool:
        return bool(self._buf)

    def take(self) -> _Taken:
        buf = self._buf
        taken = []
        while buf:
            taken.append(buf.popleft())
        return _Taken(taken)

    def append(self, frame: Frame) -> None:
        self._buf.append(frame)

    def write(self, conn: Conn, taken: _Taken) -> None:
        frames = taken.frames
        if not frames:
            return
        taken.tries += 1
        owners = self._backend.owners
        ids = {owners.get(f.stream_ref) for f in frames} - {None}
        alive: set[str] = set()
        if ids:
            # FOR KEY SHARE: a survivor cannot take these leases over (and append their
            # streams' runtime_lost terminals) until this transaction ends
            alive = {
                r[0]
                for r in conn.execute(
                    "SELECT runtime_id FROM runtimes WHERE runtime_id = ANY(%s) FOR KEY SHARE",
                    (list(ids),),
                ).fetchall()
            }
        recorded = self._backend.record_frames
        rows = [
            _frame_row(f, recorded)
            for f in frames
            if owners.get(f.stream_ref) is None or owners.get(f.stream_ref) in alive
        ]
        if taken.tries > 1:  # a retry: the first try may have committed after all
            rows = _not_written(conn, rows)
        if not rows:
            return
        _copy_frames(conn, rows)
        last: dict[str, int] = {}
        for row in rows:
            last[row[0]] = row[1]
        note_frames(conn, self._backend.channel, last)


_FRAME_LOG_COLUMNS = (
    "stream_ref, seq, kind, channel, payload, reason, error, terminal, at, recorded"
)


def _not_written(conn: Conn, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``rows`` without those ``frame_log`` has already (a retried transaction's)."""
    found = conn.execute(
        "SELECT f.stream_ref, f.seq FROM frame_log f "
        "JOIN unnest(%s::text[], %s::bigint[]) AS w(ref, seq) "
        "ON f.stream_ref = w.ref AND f.seq = w.seq",
        ([r[0] for r in rows], [r[1] for r in rows]),
    ).fetchall()
    have = {(r[0], int(r[1])) for r in found}
    return [r for r in rows if (r[0], r[1]) not in have]


def _copy_frames(conn: Conn, rows: list[tuple[Any, ...]]) -> None:
    """``COPY`` frame rows in (text PostgreSQL refuses, NUL or lone surrogates, mended first)."""
    statement = f"COPY frame_log ({_FRAME_LOG_COLUMNS}) FROM STDIN"
    try:
        with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        return
    except Exception as exc:
        if is_disconnect(exc, conn):
            raise
    with conn.transaction(), conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(tuple(_pg_safe(v) for v in row))


def _insert_frames(conn: Conn, rows: list[tuple[Any, ...]]) -> None:
    """Insert a few frame rows, skipping those already there; text mended as for COPY."""
    try:
        with savepoint(conn), conn.cursor() as cur:
            cur.executemany(_INSERT_FRAME, rows)
        return
    except Exception as exc:
        if is_disconnect(exc, conn) or in_fast_batch():
            raise
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_INSERT_FRAME, [tuple(_pg_safe(v) for v in row) for row in rows])


def _pg_safe(value: Any) -> Any:
    """Text PostgreSQL can store: NUL as U+FFFD, lone surrogates backslash-escaped."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def _frame_row(f: Frame, recorded: bool) -> tuple[Any, ...]:
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
        recorded,
    )


class PostgresBackend:
    """A :class:`~streamnb._ledger.backend.LedgerBackend` on PostgreSQL (see the module doc).

    Parameters
    ----------
    dsn : str
        ``postgresql://...`` URL or libpq ``key=value`` string.
    record_frames : bool
        Keep every outbound frame (``frames``); frames always cross processes.
    read_only : bool or None
        True: queries only (no writer, no lease). None or False: a writer
        (PostgreSQL takes many).
    busy_timeout_s : float
        How long a write waits for a row or table lock another connection
        holds (``lock_timeout``), seconds.
    query_timeout_s : float or None
        The time limit of a read that names none, seconds.
    lease_s : float
        How long this process's runtimes' leases last without renewal, seconds.

    Raises
    ------
    LedgerUnavailableError
        The database cannot be reached (the message names the host).
    LedgerError
        psycopg is missing, the DSN cannot be parsed, or the schema is not a
        streamnb ledger.
    """

    def __init__(
        self,
        dsn: str,
        *,
        record_frames: bool = False,
        read_only: bool | None = None,
        busy_timeout_s: float = 5.0,
        query_timeout_s: float | None = DEFAULT_QUERY_TIMEOUT_S,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        if not lease_s > 0 or lease_s == float("inf"):
            raise LedgerError(f"lease_s must be a number of seconds > 0, got {lease_s!r}")
        self.dsn = Dsn(dsn)
        self.path: str | None = None
        self.where = self.dsn.safe
        self.record_frames = record_frames
        self.read_only = bool(read_only)
        self.busy_timeout_s = busy_timeout_s
        self.query_timeout_s = query_timeout_s
        self.lease_s = float(lease_s)
        #: stream ref -> the runtime (lease) that runs it, for this process's open streams
        self.owners: dict[str, str] = {}
        self.schema, self.version = self._open_schema()
        self.channel = channel_name(self.schema)
        self._frames = _Frames(self)
        self.readers = PgReadPool(self.dsn)
        self.writer: PgWriter | None = None
        self.leases: LeaseKeeper | None = None
        self._exchange: Exchange | None = None
        self.exchange: StreamExchange | None = None
        try:
            if not self.read_only:
                self.writer = PgWriter(self.dsn, self._setup_writer, self._frames)
                self.leases = LeaseKeeper(self.dsn, self.channel, self.lease_s, self._lease_lost)
                self._exchange = Exchange(
                    self.dsn, self.channel, self.writer.submit, self._read, self.leases
                )
                self.exchange = self._exchange
        except BaseException:
            self._shutdown()
            raise
        self.state = Lifecycle.OPEN

    # --- lifecycle ------------------------------------------------------------------------

    def _open_schema(self) -> tuple[str, int]:
        conn = connect(self.dsn, autocommit=True)
        try:
            if self.read_only:
                row = conn.execute(
                    "SELECT current_schema(), (SELECT version FROM streamnb_schema LIMIT 1)"
                ).fetchone()
                assert row is not None
                schema, version = row[0], row[1]
            else:
                version = migrate(conn)
                row = conn.execute("SELECT current_schema()").fetchone()
                assert row is not None
                schema = row[0]
        except LedgerError:
            raise
        except Exception as exc:
            if "streamnb_schema" in str(exc):
                raise LedgerError(
                    f"{self.where} has no streamnb ledger to read (open it once without "
                    "read_only=True to create one)"
                ) from None
            raise translate(self.dsn, "opening the ledger", exc) from None
        finally:
            conn.close()
        if version is None or version > LATEST_VERSION:
            raise LedgerError(f"{self.where} is not a streamnb ledger this version can read")
        return str(schema), int(version)

    def _setup_writer(self, conn: Conn) -> None:
        conn.execute(
            "SELECT set_config('lock_timeout', %s, false)",
            (str(max(1, int(self.busy_timeout_s * 1000))),),
        )

    def recover(self) -> list[str]:
        """Settle the streams of leases already expired (and orphans), then start the lease
        thread that renews ours and recovers the next ones."""
        if self.writer is None or self.leases is None:
            return []
        channel = self.channel
        try:
            return self.writer.call(lambda conn: recover_expired(conn, channel, orphans=True)[0])
        finally:
            self.leases.start()

    def _lease_lost(self, runtime_ids: list[str]) -> None:
        if self._exchange is not None:
            self._exchange.lease_lost(runtime_ids)

    def close(self) -> None:
        if self.state is not Lifecycle.OPEN:
            return
        self.state = Lifecycle.CLOSED
        self._shutdown()

    def _shutdown(self) -> None:
        if self._exchange is not None:
            self._exchange.close()
        if self.leases is not None:
            self.leases.close()
        if self.writer is not None:
            self.writer.close()
        self.readers.close()

    def _check_open(self, write: bool) -> None:
        self.state.check_open(_closed_error)
        if write:
            self.check_writable()

    # --- writes ---------------------------------------------------------------------------

    def check_writable(self) -> None:
        self.state.check_open(_closed_error)
        if self.writer is None:
            raise LedgerBusyError(
                self.where,
                why="this Ledger was opened with read_only=True; open Ledger(dsn) to write",
            )

    async def open_stream(
        self,
        stream_ref: str,
        kind: str,
        mode: str,
        opened_at: float,
        *,
        on_detach: str = "abort",
        owner: str | None = None,
    ) -> None:
        self._check_open(True)
        assert self.writer is not None
        if owner is None:
            raise LedgerError(
                "a stream in a PostgreSQL ledger needs the runtime that runs it (owner)"
            )
        self.owners[stream_ref] = owner

        def insert(conn: Conn) -> None:
            cur = conn.execute(
                "INSERT INTO streams (stream_ref, kind, mode, status, opened_at, on_detach, "
                "runtime_id) SELECT %s, %s, %s, 'running', %s, %s, %s WHERE EXISTS ("
                " SELECT 1 FROM runtimes WHERE runtime_id = %s FOR KEY SHARE) "
                "ON CONFLICT (stream_ref) DO NOTHING",
                (stream_ref, kind, mode, opened_at, on_detach, owner, owner),
            )
            if cur.rowcount == 1:
                return
            row = conn.execute(
                "SELECT runtime_id FROM streams WHERE stream_ref = %s", (stream_ref,)
            ).fetchone()
            if row is None:
                raise LeaseLostError(owner)
            if row[0] != owner:
                raise LedgerError(f"stream ref {stream_ref!r} is taken already")

        try:
            await self.writer.write(insert)
        except BaseException:
            self.owners.pop(stream_ref, None)
            raise

    def record_frame(self, frame: Frame) -> None:
        if self.state is not Lifecycle.OPEN or self.writer is None:
            return
        due = self._frames.due()
        self._frames.append(frame)
        if not due:
            self.writer.wake()

    async def settle(self, settlement: Settlement) -> Settlement:
        self._check_open(True)
        assert self.writer is not None
        s = settlement
        recorded = self.record_frames
        channel = self.channel

        def update(conn: Conn, status: str, reason: str | None, terminal: Any) -> int:
            cur = conn.execute(
                "UPDATE streams SET status = %s, reason = %s, settled_at = %s, terminal = %s "
                "WHERE stream_ref = %s AND status = 'running'",
                (status, reason, s.settled_at, dumps(terminal), s.stream_ref),
            )
            return int(cur.rowcount)

        def commit(conn: Conn) -> Settlement:
            s.committed = s.committed_frame = s.fallback_error = None  # a retry starts over
            frame = s.terminal_frame
            if not update(conn, s.status, s.reason, s.terminal):
                return _already_settled(conn, s)
            s.committed = (s.status, s.reason, s.terminal)
            if s.tx is not None and (s.tx._events or s.tx._statements):
                try:
                    with savepoint(conn):  # the handler's writes, all or none
                        _apply_tx(conn, s)
                except Exception as exc:
                    if is_disconnect(exc, conn) or in_fast_batch():
                        raise  # (a fast batch runs again, this time with the savepoint)
                    s.fallback_error = f"commit_terminal's writes failed: {_message(exc)}"
                    terminal = {"ok": False, "settlement_error": s.fallback_error}
                    conn.execute(
                        "UPDATE streams SET status = 'failed', reason = 'settlement_error', "
                        "terminal = %s WHERE stream_ref = %s",
                        (dumps(terminal), s.stream_ref),
                    )
                    s.committed = ("failed", "settlement_error", terminal)
                    if frame is not None:
                        frame = failed_instead(
                            frame,
                            "settlement_error",
                            s.fallback_error,
                            settlement_error=s.fallback_error,
                        )
            if frame is not None:
                _insert_frames(conn, [_frame_row(frame, recorded)])
                note_frames(conn, channel, {frame.stream_ref: frame.seq})
            return s

        try:
            return await self.writer.write(commit)
        finally:
            self.owners.pop(s.stream_ref, None)

    # --- reads ----------------------------------------------------------------------------

    def _limit(self, timeout_s: float | None) -> float | None:
        return self.query_timeout_s if timeout_s is None else check_timeout(timeout_s)

    def _reader(self, what: str, fn: Callable[[Conn], T]) -> Callable[[Conn], T]:
        """``fn`` with psycopg's errors (bar timeouts and disconnects) as LedgerError."""

        def run(conn: Conn) -> T:
            from psycopg import errors

            try:
                return fn(conn)
            except (errors.QueryCanceled, LedgerError):
                raise
            except Exception as exc:
                if is_disconnect(exc, conn):
                    raise
                raise LedgerError(f"cannot read {what}: {_message(exc)}") from None

        return run

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
            table, columns, where, placeholder="%s", order=_ORDER[table]
        )
        run = self._reader(table, lambda conn: conn.execute(query, params).fetchall())
        rows: list[tuple[Any, ...]] = self.readers.run(run, self._limit(timeout_s), lambda: query)
        return rows

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
            f"SELECT {', '.join(FRAME_COLUMNS)} FROM frames WHERE stream_ref = %s AND seq > %s "
            "ORDER BY seq LIMIT %s"
        )
        params = (stream_ref, after_seq, limit)
        run = self._reader("frames", lambda conn: conn.execute(query, params).fetchall())
        rows: list[tuple[Any, ...]] = self.readers.run(run, self._limit(timeout_s), lambda: query)
        return rows

    def sql(
        self,
        query: str,
        params: Sequence[Any] | Mapping[str, Any] = (),
        *,
        timeout_s: float | None = None,
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        self._check_open(False)
        converted = to_pyformat(query)
        values: Any = dict(params) if isinstance(params, Mapping) else tuple(params)

        def run(conn: Conn) -> tuple[list[str], list[tuple[Any, ...]]]:
            from psycopg import errors

            try:
                with conn.cursor() as cur:
                    # binary=True sends it over the extended protocol: one statement only
                    cur.execute(converted, values, binary=True)
                    cols = [d.name for d in cur.description or ()]
                    return cols, cur.fetchall() if cur.description else []
            except errors.QueryCanceled:
                raise
            except Exception as exc:
                if is_disconnect(exc, conn):
                    raise
                raise LedgerQueryError(query, _message(exc)) from None

        return self.readers.run(run, self._limit(timeout_s), lambda: f"query {query[:200]!r}")

    async def run_read(self, fn: Callable[[], T]) -> T:
        self._check_open(False)
        return await self.readers.run_async(fn)

    async def _read(self, fn: Callable[[Conn], T]) -> T:
        """``fn(conn)`` on a read connection, off the loop (the exchange's lookups)."""
        return await self.run_read(
            lambda: self.readers.run(fn, self.query_timeout_s, lambda: "a stream lookup")
        )


def _apply_tx(conn: Conn, s: Settlement) -> None:
    """The handler's events and statements, inside the settlement's savepoint."""
    tx = s.tx
    assert tx is not None
    if tx._events:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO events (stream_ref, kind, payload, created_at) "
                "VALUES (%s, %s, %s, %s)",
                [(s.stream_ref, kind, payload, s.settled_at) for kind, payload in tx._events],
            )
    if tx._statements:
        conn.execute("SELECT set_config('streamnb.handler_sql', 'on', true)")
        for sql, params in tx._statements:
            check_handler_statement(sql)
            with conn.cursor() as cur:
                cur.execute(to_pyformat(sql), tuple(params), binary=True)
        conn.execute("SELECT set_config('streamnb.handler_sql', 'off', true)")


def _already_settled(conn: Conn, s: Settlement) -> Settlement:
    """The stream was settled before: by this very settlement (a retried commit), or by a
    survivor that took this runtime's lease over (``runtime_lost``)."""
    row = conn.execute(
        "SELECT status, reason, terminal, settled_at FROM streams WHERE stream_ref = %s",
        (s.stream_ref,),
    ).fetchone()
    if row is None:
        raise LedgerError(f"stream {s.stream_ref!r} is not in the ledger")
    status, reason, terminal, settled_at = row
    if settled_at == s.settled_at and status in (s.status, "failed"):
        s.committed = (status, reason, loads(terminal))  # our own commit, retried
        if status != s.status:
            s.fallback_error = (loads(terminal) or {}).get("settlement_error")
        return s
    s.committed = (status, reason, loads(terminal))
    found = conn.execute(
        "SELECT kind, stream_ref, seq, at, channel, payload, reason, error, terminal "
        "FROM frame_log WHERE stream_ref = %s AND kind IN ('completed', 'cancelled', 'failed') "
        "ORDER BY seq DESC LIMIT 1",
        (s.stream_ref,),
    ).fetchone()
    if found is not None:
        kind, ref, seq, at, channel, payload, reason_, error, term = found
        s.committed_frame = Frame(
            kind, ref, int(seq), at, channel, loads(payload), reason_, error, loads(term)
        )
    else:
        at = settled_at or time.time()
        s.committed_frame = Frame(
            status, s.stream_ref, -1, at, reason=reason, terminal=loads(terminal)
        )
    return s


def _message(exc: BaseException) -> str:
    """A database error's own message (psycopg's primary message, without the SQL echo)."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    text = primary or str(exc).strip() or type(exc).__name__
    return " ".join(str(text).split())


def _closed_error() -> LedgerError:
    return LedgerError("the ledger is closed; open a new Ledger (or give the runtime an open one)")
