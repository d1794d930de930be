"""The Durable Streams store's rules in SQL, shared by the SQLite and PostgreSQL stores.

:class:`SQLStreamStore` keeps streams in three tables, the same on both
databases::

    ds_streams    one row per stream: path, content type, tail (a position),
                  closed, TTL/expiry, last access, fork source and fork
                  position, live fork count, soft-deleted flag, and the
                  create request's configuration (for idempotent PUT)
    ds_messages   one row per append: stream id, [start, end) positions,
                  message count, data (bytes, or JSON messages joined by ",")
    ds_producers  (stream id, producer id) -> epoch, last accepted seq

and applies every request in one transaction: an append, its producer state
and its ``Stream-Seq`` commit together (PROTOCOL.md §5.2.1 "Atomicity
Requirements"): a crash cannot keep the data and lose the dedupe state.

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

A subclass says how to run an operation (its thread, its connection: the
statements here use ``?`` placeholders), what a transaction is (:meth:`_tx`),
and how a change reaches readers waiting in other processes
(:meth:`_changed`); readers waiting in this process are woken here
(:meth:`_notify`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
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

__all__ = ["SWEEP_INTERVAL_S", "SQLStreamStore"]

T = TypeVar("T")
#: a DB-API connection whose ``execute`` takes ``?`` placeholders
Conn = Any

#: how often (at most) a PUT or DELETE sweeps every expired stream, seconds
SWEEP_INTERVAL_S: Final = 10.0

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


class SQLStreamStore:
    """A :class:`~.store.StreamStore` over SQL (see the module docstring); subclass it."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._closed = False
        self._next_sweep = 0.0

    # --- what a subclass provides ---------------------------------------------------------

    async def _run(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn(conn)`` on the store's connection, off the loop."""
        raise NotImplementedError

    def _tx(self, conn: Conn) -> AbstractContextManager[None]:
        """One transaction. A refusal (:class:`ProtocolError`) still commits: every check
        runs before the request's own writes, so what is written by then is the expiry
        of streams found expired on the way, which must stick."""
        raise NotImplementedError

    def _changed(self, conn: Conn, key: str) -> None:
        """Inside the transaction that changed ``key``: tell other processes' readers."""

    def _notify(self, key: str) -> None:
        """Wake the readers of ``key`` waiting in this process."""
        for fut in self._waiters.pop(key, ()):
            if not fut.done():
                fut.set_result(None)

    def _closed_error(self) -> ProtocolError:
        return ProtocolError(
            503, "store_closed", "the Durable Streams store is closed (server shutting down)"
        )

    @staticmethod
    def _row(conn: Conn, where: str, value: Any) -> _Row | None:
        r = conn.execute(f"SELECT {_COLUMNS} FROM ds_streams WHERE {where}=?", (value,)).fetchone()
        return None if r is None else _Row(*r)

    def _live(self, conn: Conn, key: str, now: float) -> _Row:
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

    def _expire(self, conn: Conn, row: _Row) -> bool:
        """Delete an expired stream; True if it was only soft-deleted (forks remain)."""
        if row.forks > 0:
            conn.execute("UPDATE ds_streams SET deleted=1 WHERE id=?", (row.id,))
            return True
        self._remove(conn, row)
        return False

    def _remove(self, conn: Conn, row: _Row) -> None:
        """Drop a stream and its data; release its source (and cascade, §4.2)."""
        conn.execute("DELETE FROM ds_messages WHERE stream_id=?", (row.id,))
        conn.execute("DELETE FROM ds_producers WHERE stream_id=?", (row.id,))
        conn.execute("DELETE FROM ds_streams WHERE id=?", (row.id,))
        if row.source_id is not None:
            conn.execute("UPDATE ds_streams SET forks=forks-1 WHERE id=?", (row.source_id,))
            source = self._row(conn, "id", row.source_id)
            if source is not None and source.deleted and source.forks <= 0:
                self._remove(conn, source)

    def _sweep(self, conn: Conn, now: float) -> None:
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

    def _touch(self, conn: Conn, row: _Row, now: float) -> None:
        if row.ttl_s is not None:  # only a sliding window needs the access time (§5.1)
            conn.execute("UPDATE ds_streams SET last_access=? WHERE id=?", (now, row.id))

    # --- reading --------------------------------------------------------------------------

    def _chain(self, conn: Conn, row: _Row) -> list[tuple[int, int]]:
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

    def _visible(self, conn: Conn, row: _Row, after: int) -> Iterator[_Visible]:
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

    def _accessed(self, conn: Conn, key: str, touch: bool) -> _Row:
        """The live stream at ``key`` for a read; renews its TTL when ``touch``.

        Most reads write nothing (no TTL, not expired) and, with SQLite, take no write
        lock on the file the ledger also writes; the rest run in a transaction. (SQLite:
        the store's thread is the only writer of the ``ds_*`` tables, so nothing changes
        between its statements; PostgreSQL: every operation is one transaction.)
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

    def _read(self, conn: Conn, key: str, start: Offset | Sentinel, max_bytes: int) -> ReadResult:
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
        its forks' readers (§5.7, "Long-poll on forked streams"). A wake-up that
        brought nothing new (another stream's change, a notification that
        crossed the check) goes back to waiting.
        """

        def peek(conn: Conn) -> bool:
            r = conn.execute(
                "SELECT tail, closed, deleted FROM ds_streams WHERE path=?", (key,)
            ).fetchone()
            return r is None or r[0] > after.position or bool(r[1]) or bool(r[2])

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(key, set()).add(fut)  # before the check: no lost wake-up
            try:
                if await self._run(peek):
                    return
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                await asyncio.wait({fut}, timeout=remaining)
                if not fut.done() or self._closed:
                    return  # timed out, or the store is closing
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

    def _create(self, conn: Conn, key: str, req: CreateRequest) -> CreateResult:
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
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
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
            stream_id = cur.fetchone()[0]
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
            self._changed(conn, key)
            row = self._row(conn, "id", stream_id)
            assert row is not None
            return CreateResult(True, row.meta())

    @staticmethod
    def _insert(conn: Conn, stream_id: Any, start: int, data: bytes, n: int) -> None:
        conn.execute(
            'INSERT INTO ds_messages (stream_id, start, "end", count, data) VALUES (?,?,?,?,?)',
            (stream_id, start, start + len(data), n, data),
        )

    def _fork_point(
        self, conn: Conn, req: CreateRequest, now: float
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

    def _append(self, conn: Conn, key: str, req: AppendRequest) -> AppendResult:
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
            self._changed(conn, key)
            return AppendResult(
                Offset(tail),
                bool(row.closed) or req.close,
                producer_seq=None if plan.producer is None else plan.producer.last_seq,
            )

    async def delete(self, key: str) -> None:
        """``DELETE`` (§5.4): remove, or soft-delete while forks read the stream."""

        def fn(conn: Conn) -> None:
            now = self._clock()
            with self._tx(conn):
                row = self._live(conn, key, now)
                if row.forks > 0:
                    conn.execute("UPDATE ds_streams SET deleted=1 WHERE id=?", (row.id,))
                else:
                    self._remove(conn, row)
                self._sweep(conn, now)
                self._changed(conn, key)

        await self._run(fn)
        self._notify(key)


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
