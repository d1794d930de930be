"""Durable Streams in SQLite: the ledger's database file, tables ``ds_*``, one worker thread.

:class:`SQLiteStreamStore` keeps streams next to the ledger (``streamnb serve
--ledger PATH``), in its own tables, through its own connection, used only by
its own thread: every operation is one ``BEGIN IMMEDIATE`` transaction run
there, so the event loop never blocks on SQLite and operations are
serialized (PROTOCOL.md §5.2.1 asks for validation and append to be
serialized per producer; here they are per store). An append, its producer
state and its ``Stream-Seq`` commit together (§5.2.1 "Atomicity
Requirements"): a crash cannot keep the data and lose the dedupe state.

Tables::

    ds_streams    one row per stream: path, content type, tail (a position),
                  closed, TTL/expiry, last access, fork source and fork
                  position, live fork count, soft-deleted flag, and the
                  create request's configuration (for idempotent PUT)
    ds_messages   one row per append: stream id, [start, end) positions,
                  message count, data (bytes, or JSON messages joined by ",")
    ds_producers  (stream id, producer id) -> epoch, last accepted seq

Positions count bytes of stored data. Forks point at their source (§4.2: no
copy): a fork reads its source chain below its fork position, then its own
rows. A sub-offset inside a byte append moves the fork position into that
append; inside a JSON batch, the first messages are copied into the fork as
its first row (JSON cannot be cut at a byte). Deleting a stream that has
live forks soft-deletes it (410, path kept); deleting or expiring the last
fork of a soft-deleted stream removes it, up the chain.

Expiry (TTL, Expires-At) is checked on every access, and at most every
:data:`SWEEP_INTERVAL_S` seconds a ``PUT`` or ``DELETE`` also removes every
expired stream (so expired forks release their sources).

Waiting (long-poll, SSE) is an in-process notification per path: this store
assumes it is the only writer of its tables, as the SQLite ledger assumes
one writer process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from .errors import ProtocolError, gone, not_found
from .offsets import MAX_POSITION, Offset, Sentinel, resolve
from .protocol import DEFAULT_CONTENT_TYPE, FORK_OFFSET, FORKED_FROM, is_json, media_type
from .rules import (
    Action,
    ProducerState,
    StreamState,
    check_append,
    config_matches,
    create_config,
    encode_body,
)
from .store import (
    AppendRequest,
    AppendResult,
    CreateRequest,
    CreateResult,
    ReadResult,
    StreamMeta,
)

__all__ = ["SWEEP_INTERVAL_S", "SQLiteStreamStore"]

T = TypeVar("T")

#: how often (at most) a PUT or DELETE sweeps every expired stream, seconds
SWEEP_INTERVAL_S: Final = 10.0

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

_COLUMNS = (
    "id, path, content_type, last_access, ttl_s, expires_at, expires_at_text, closed, tail, "
    "last_stream_seq, source_id, fork_pos, forks, deleted, config"
)


@dataclass(slots=True)
class _Row:
    id: int
    path: str
    content_type: str
    last_access: float
    ttl_s: int | None
    expires_at: float | None
    expires_at_text: str | None
    closed: int
    tail: int
    last_stream_seq: str | None
    source_id: int | None
    fork_pos: int | None
    forks: int
    deleted: int
    config: str

    def expired(self, now: float) -> bool:
        if self.expires_at is not None and now >= self.expires_at:
            return True
        return self.ttl_s is not None and now >= self.last_access + self.ttl_s

    def meta(self) -> StreamMeta:
        return StreamMeta(
            content_type=self.content_type,
            tail=Offset(self.tail),
            closed=bool(self.closed),
            ttl_s=self.ttl_s,
            expires_at=self.expires_at_text,
            etag_id=str(self.id),
        )


@dataclass(frozen=True, slots=True)
class _Visible:
    """One stored row as a stream sees it (cut at a fork boundary)."""

    start: int
    end: int
    count: int
    data: bytes


class SQLiteStreamStore:
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
        self.path = path
        self._clock = clock
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="streamnb-durable"
        )
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._closed = False
        self._next_sweep = 0.0
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
            raise ProtocolError(
                503, "store_closed", "the Durable Streams store is closed (server shutting down)"
            )
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
        """One transaction. A refusal (:class:`ProtocolError`) still commits: every check
        runs before the request's own writes, so what is written by then is the expiry
        of streams found expired on the way, which must stick."""
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

    def _notify(self, key: str) -> None:
        for fut in self._waiters.pop(key, ()):
            if not fut.done():
                fut.set_result(None)

    @staticmethod
    def _row(conn: sqlite3.Connection, where: str, value: Any) -> _Row | None:
        r = conn.execute(f"SELECT {_COLUMNS} FROM ds_streams WHERE {where}=?", (value,)).fetchone()
        return None if r is None else _Row(*r)

    def _live(self, conn: sqlite3.Connection, key: str, now: float) -> _Row:
        """The stream at ``key``, or 404/410 (expiring it first if its time is up)."""
        row = self._row(conn, "path", key)
        if row is None:
            raise not_found(key)
        if row.deleted:
            raise gone(key)
        if row.expired(now):
            if self._expire(conn, row):
                raise gone(key)
            raise not_found(key)
        return row

    def _expire(self, conn: sqlite3.Connection, row: _Row) -> bool:
        """Delete an expired stream; True if it was only soft-deleted (forks remain)."""
        if row.forks > 0:
            conn.execute("UPDATE ds_streams SET deleted=1 WHERE id=?", (row.id,))
            return True
        self._remove(conn, row)
        return False

    def _remove(self, conn: sqlite3.Connection, row: _Row) -> None:
        """Drop a stream and its data; release its source (and cascade, §4.2)."""
        conn.execute("DELETE FROM ds_messages WHERE stream_id=?", (row.id,))
        conn.execute("DELETE FROM ds_producers WHERE stream_id=?", (row.id,))
        conn.execute("DELETE FROM ds_streams WHERE id=?", (row.id,))
        if row.source_id is not None:
            conn.execute("UPDATE ds_streams SET forks=forks-1 WHERE id=?", (row.source_id,))
            source = self._row(conn, "id", row.source_id)
            if source is not None and source.deleted and source.forks <= 0:
                self._remove(conn, source)

    def _sweep(self, conn: sqlite3.Connection, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL_S
        due = conn.execute(
            "SELECT path FROM ds_streams WHERE deleted=0 AND ("
            "(expires_at IS NOT NULL AND expires_at <= ?) OR "
            "(ttl_s IS NOT NULL AND last_access + ttl_s <= ?))",
            (now, now),
        ).fetchall()
        for (path,) in due:
            row = self._row(conn, "path", path)
            if row is not None and not row.deleted and row.expired(now):
                self._expire(conn, row)

    def _touch(self, conn: sqlite3.Connection, row: _Row, now: float) -> None:
        if row.ttl_s is not None:  # only a sliding window needs the access time (§5.1)
            conn.execute("UPDATE ds_streams SET last_access=? WHERE id=?", (now, row.id))

    # --- reading --------------------------------------------------------------------------

    def _chain(self, conn: sqlite3.Connection, row: _Row) -> list[tuple[int, int]]:
        """(stream id, cap) from the stream up its fork chain: ids whose rows it reads below cap."""
        chain = [(row.id, MAX_POSITION + 1)]
        cap = MAX_POSITION + 1
        while row.source_id is not None:
            assert row.fork_pos is not None
            cap = min(cap, row.fork_pos)
            source = self._row(conn, "id", row.source_id)
            if source is None:  # unreachable while forks hold their source; be safe
                break
            chain.append((source.id, cap))
            row = source
        return chain

    def _visible(self, conn: sqlite3.Connection, row: _Row, after: int) -> Iterator[_Visible]:
        """The stream's rows ending past ``after``, in order, cut at fork caps."""
        chain = self._chain(conn, row)
        where = " OR ".join(['(stream_id=? AND "end">? AND start<?)'] * len(chain))
        params: list[Any] = []
        caps = {}
        for stream_id, cap in chain:
            params += [stream_id, after, cap]
            caps[stream_id] = cap
        cur = conn.execute(
            f'SELECT stream_id, start, "end", count, data FROM ds_messages WHERE {where} '
            "ORDER BY start",
            params,
        )
        for stream_id, start, end, count, data in cur:
            cap = caps[stream_id]
            if end > cap:  # a byte row cut by a fork's position inside it
                data = bytes(data)[: cap - start]
                end = cap
            yield _Visible(start, end, count, bytes(data))

    def _check_boundary(self, row: _Row, first: _Visible | None, position: int, what: str) -> None:
        if first is not None and first.start < position and is_json(row.content_type):
            raise ProtocolError(
                400,
                "invalid_offset",
                f"{what} falls inside a batch of JSON messages; use an offset this server "
                "returned for this stream",
            )

    def _accessed(self, conn: sqlite3.Connection, key: str, touch: bool) -> _Row:
        """The live stream at ``key`` for a read; renews its TTL when ``touch``.

        Most reads write nothing (no TTL, not expired) and take no write lock on the
        file the ledger also writes; the rest run in a transaction. This thread is the
        only writer of the ``ds_*`` tables, so nothing changes between its statements.
        """
        now = self._clock()
        row = self._row(conn, "path", key)
        if row is not None and not row.deleted and not row.expired(now) and row.ttl_s is None:
            return row
        with self._tx(conn):
            row = self._live(conn, key, now)
            if touch:
                self._touch(conn, row, now)
        return row

    def _read(
        self, conn: sqlite3.Connection, key: str, start: Offset | Sentinel, max_bytes: int
    ) -> ReadResult:
        row = self._accessed(conn, key, touch=True)
        p = resolve(start, row.tail)
        chunks: list[bytes] = []
        end = p
        size = 0
        first = True
        for v in self._visible(conn, row, p):
            if first:
                self._check_boundary(row, v, p, f"offset {Offset(p).text}")
                first = False
            data = v.data[p - v.start :] if v.start < p else v.data
            if chunks and size + len(data) > max_bytes:
                break
            chunks.append(data)
            size += len(data)
            end = v.end
            if size >= max_bytes:
                break
        up_to_date = end == row.tail
        return ReadResult(
            content_type=row.content_type,
            etag_id=str(row.id),
            start=Offset(p),
            chunks=tuple(chunks),
            next_offset=Offset(end),
            up_to_date=up_to_date,
            closed=up_to_date and bool(row.closed),
        )

    async def head(self, key: str) -> StreamMeta:
        """Metadata for ``HEAD`` (§5.5); not an access (a sliding TTL is not renewed)."""

        return await self._run(lambda conn: self._accessed(conn, key, touch=False).meta())

    async def read(self, key: str, start: Offset | Sentinel, *, max_bytes: int) -> ReadResult:
        """A catch-up read (§5.6), stitched across the fork chain (§4.2); renews the TTL."""
        return await self._run(lambda conn: self._read(conn, key, start, max_bytes))

    async def wait(self, key: str, after: Offset, timeout_s: float) -> None:
        """Return once ``key`` has data past ``after``, is closed or gone, or at timeout.

        Waits for the stream's own appends only: a source's appends do not wake
        its forks' readers (§5.7, "Long-poll on forked streams").
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(key, set()).add(fut)  # before the check: no lost wake-up
        try:

            def peek(conn: sqlite3.Connection) -> bool:
                r = conn.execute(
                    "SELECT tail, closed, deleted FROM ds_streams WHERE path=?", (key,)
                ).fetchone()
                return r is None or r[0] > after.position or bool(r[1]) or bool(r[2])

            if await self._run(peek):
                return
            await asyncio.wait({fut}, timeout=timeout_s)
        finally:
            waiting = self._waiters.get(key)
            if waiting is not None:
                waiting.discard(fut)
                if not waiting:
                    del self._waiters[key]
            fut.cancel()

    # --- writing --------------------------------------------------------------------------

    async def create(self, key: str, request: CreateRequest) -> CreateResult:
        """``PUT``: create, idempotently confirm (§5.1) or fork (§4.2) a stream."""
        result = await self._run(lambda conn: self._create(conn, key, request))
        self._notify(key)
        return result

    def _create(self, conn: sqlite3.Connection, key: str, req: CreateRequest) -> CreateResult:
        now = self._clock()
        with self._tx(conn):
            self._sweep(conn, now)
            row = self._row(conn, "path", key)
            if row is not None and not row.deleted and row.expired(now):
                self._expire(conn, row)
                row = self._row(conn, "path", key)
            if row is not None:
                if row.deleted:
                    raise ProtocolError(
                        409,
                        "stream_exists",
                        f"{key!r} was deleted but its forks still read it; the URL can be "
                        "used again once they are deleted",
                    )
                if config_matches(json.loads(row.config), row.content_type, bool(row.closed), req):
                    return CreateResult(False, row.meta())
                raise ProtocolError(
                    409,
                    "stream_exists",
                    f"a stream already exists at {key!r} with another configuration "
                    f"({row.content_type}, closed={bool(row.closed)}, ttl={row.ttl_s}, "
                    f"expires_at={row.expires_at_text}); delete it or use another URL",
                )
            fork: tuple[_Row, int, bytes, int] | None = None
            if req.forked_from is not None:
                fork = self._fork_point(conn, req, now)
                source = fork[0]
                content_type = req.content_type or source.content_type
                ttl_s, expires = _fork_expiry(source, req)
            else:
                content_type = req.content_type or DEFAULT_CONTENT_TYPE
                ttl_s, expires = req.ttl_s, req.expires_at
            chunk, count = encode_body(content_type, req.body, allow_empty=True)
            cur = conn.execute(
                "INSERT INTO ds_streams (path, content_type, created_at, last_access, ttl_s, "
                "expires_at, expires_at_text, closed, tail, source_id, fork_pos, config) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    key,
                    content_type,
                    now,
                    now,
                    ttl_s,
                    None if expires is None else expires[1],
                    None if expires is None else expires[0],
                    int(req.closed),
                    0,
                    None if fork is None else fork[0].id,
                    None if fork is None else fork[1],
                    json.dumps(create_config(req)),
                ),
            )
            stream_id = cur.lastrowid
            tail = 0
            if fork is not None:
                source, tail, prefix, prefix_count = fork
                conn.execute("UPDATE ds_streams SET forks=forks+1 WHERE id=?", (source.id,))
                if prefix:
                    self._insert(conn, stream_id, tail, prefix, prefix_count)
                    tail += len(prefix)
            if chunk:
                self._insert(conn, stream_id, tail, chunk, count)
                tail += len(chunk)
            conn.execute("UPDATE ds_streams SET tail=? WHERE id=?", (tail, stream_id))
            row = self._row(conn, "id", stream_id)
            assert row is not None
            return CreateResult(True, row.meta())

    @staticmethod
    def _insert(conn: sqlite3.Connection, stream_id: Any, start: int, data: bytes, n: int) -> None:
        conn.execute(
            'INSERT INTO ds_messages (stream_id, start, "end", count, data) VALUES (?,?,?,?,?)',
            (stream_id, start, start + len(data), n, data),
        )

    def _fork_point(
        self, conn: sqlite3.Connection, req: CreateRequest, now: float
    ) -> tuple[_Row, int, bytes, int]:
        """Resolve a fork's source and position (§4.2).

        Returns the source row, the fork position, and for a JSON sub-offset
        the messages to copy into the fork (and their count).
        """
        assert req.forked_from is not None
        name = req.forked_from
        source = self._row(conn, "path", name)
        if source is not None and not source.deleted and source.expired(now):
            self._expire(conn, source)
            source = self._row(conn, "path", name)
        if source is None:
            raise ProtocolError(
                404, "stream_not_found", f"the fork source {name!r} ({FORKED_FROM}) does not exist"
            )
        if source.deleted:
            raise ProtocolError(
                409,
                "stream_exists",
                f"the fork source {name!r} was deleted (only its forks still read it); "
                "fork one of them instead",
            )
        if req.content_type is not None and media_type(req.content_type) != media_type(
            source.content_type
        ):
            raise ProtocolError(
                409,
                "content_type_mismatch",
                f"a fork has its source's content type ({source.content_type}); the request "
                f"says {req.content_type} (omit Content-Type to inherit it)",
            )
        anchor = resolve(req.fork_offset, source.tail, FORK_OFFSET)
        sub = req.fork_sub_offset
        first = next(self._visible(conn, source, anchor), None)
        self._check_boundary(source, first, anchor, "Stream-Fork-Offset")
        if sub == 0:
            return source, anchor, b"", 0
        if first is None or (is_json(source.content_type) and sub > first.count):
            raise _sub_offset_error(sub, 0 if first is None else first.count, source)
        if is_json(source.content_type):
            values = json.loads(b"[" + first.data + b"]")[:sub]
            prefix = b",".join(
                json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode() for v in values
            )
            return source, anchor, prefix, sub
        if anchor + sub > first.end:
            raise _sub_offset_error(sub, first.end - anchor, source)
        return source, anchor + sub, b"", 0

    async def append(self, key: str, request: AppendRequest) -> AppendResult:
        """``POST``: append and/or close (§5.2, §5.3) in one transaction with producer state."""
        result = await self._run(lambda conn: self._append(conn, key, request))
        if not result.duplicate:
            self._notify(key)
        return result

    def _append(self, conn: sqlite3.Connection, key: str, req: AppendRequest) -> AppendResult:
        now = self._clock()
        with self._tx(conn):
            row = self._live(conn, key, now)
            producer = None
            if req.producer is not None:
                r = conn.execute(
                    "SELECT epoch, last_seq FROM ds_producers WHERE stream_id=? AND producer_id=?",
                    (row.id, req.producer.id),
                ).fetchone()
                producer = None if r is None else ProducerState(*r)
            plan = check_append(
                StreamState(row.content_type, row.tail, bool(row.closed), row.last_stream_seq),
                producer,
                req,
            )
            if plan.action is Action.DUPLICATE:
                return AppendResult(
                    Offset(row.tail),
                    bool(row.closed),
                    duplicate=True,
                    producer_seq=None if producer is None else producer.last_seq,
                )
            self._touch(conn, row, now)
            if plan.action is Action.ALREADY_CLOSED:
                return AppendResult(Offset(row.tail), True)
            tail = row.tail
            if plan.chunk:
                self._insert(conn, row.id, tail, plan.chunk, plan.count)
                tail += len(plan.chunk)
            conn.execute(
                "UPDATE ds_streams SET tail=?, closed=?, last_stream_seq=? WHERE id=?",
                (
                    tail,
                    int(bool(row.closed) or req.close),
                    req.stream_seq if req.stream_seq is not None else row.last_stream_seq,
                    row.id,
                ),
            )
            if req.producer is not None and plan.producer is not None:
                conn.execute(
                    "INSERT INTO ds_producers (stream_id, producer_id, epoch, last_seq) "
                    "VALUES (?,?,?,?) ON CONFLICT (stream_id, producer_id) DO UPDATE SET "
                    "epoch=excluded.epoch, last_seq=excluded.last_seq",
                    (row.id, req.producer.id, plan.producer.epoch, plan.producer.last_seq),
                )
            return AppendResult(
                Offset(tail),
                bool(row.closed) or req.close,
                producer_seq=None if plan.producer is None else plan.producer.last_seq,
            )

    async def delete(self, key: str) -> None:
        """``DELETE`` (§5.4): remove, or soft-delete while forks read the stream."""

        def fn(conn: sqlite3.Connection) -> None:
            now = self._clock()
            with self._tx(conn):
                row = self._live(conn, key, now)
                if row.forks > 0:
                    conn.execute("UPDATE ds_streams SET deleted=1 WHERE id=?", (row.id,))
                else:
                    self._remove(conn, row)
                self._sweep(conn, now)

        await self._run(fn)
        self._notify(key)

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


def _fork_expiry(source: _Row, req: CreateRequest) -> tuple[int | None, tuple[str, float] | None]:
    """A fork's own TTL/expiry, else its source's (§4.2, the fork TTL/expiry table)."""
    if req.ttl_s is not None or req.expires_at is not None:
        return req.ttl_s, req.expires_at
    if source.ttl_s is not None:
        return source.ttl_s, None
    if source.expires_at is not None and source.expires_at_text is not None:
        return None, (source.expires_at_text, source.expires_at)
    return None, None


def _sub_offset_error(sub: int, room: int, source: _Row) -> ProtocolError:
    unit = "messages" if is_json(source.content_type) else "bytes"
    return ProtocolError(
        400,
        "invalid_header",
        f"Stream-Fork-Sub-Offset {sub} goes past the next append of the source, which has "
        f"{room} {unit} after Stream-Fork-Offset",
    )
