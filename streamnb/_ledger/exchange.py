"""Streams across processes: frames, cancel and input through PostgreSQL and LISTEN/NOTIFY.

With a PostgreSQL ledger every outbound frame of every stream is appended to
``frame_log`` (batched by the writer, ``pg_writer.py``) and each commit that
wrote frames announces them on the ledger's channel with ``NOTIFY`` (``f ref
seq ...``). Any process sharing the ledger can therefore read a stream another
process runs: an :class:`Exchange` *follows* it, reading its frames after a
seq and then whatever each notification announces, and hands them to a
follower (the runtime's mirror of the stream, ``streamnb/_remote.py``) on its
event loop.

The other direction goes to the one runtime that runs the stream's handler
(its ``runtime_id`` is on the ``streams`` row): a *command* (``cancel``,
``input``, ``observe``, ``unobserve``) is a row of ``stream_commands`` for that
runtime plus a ``NOTIFY`` (``c runtime_id``); the owner's exchange takes its
rows (``DELETE ... RETURNING``), the runtime applies them on its loop, and
answers ``cancel`` and ``input`` with a ``NOTIFY`` (``r sender token
reply``). A command is written through the ledger's writer (group commit) with
a token of the sender's, so a retry after a lost connection is not applied
twice. ``x runtime_id ...`` announces leases taken over (``lease.py``): their
runtimes' observers are gone.

One thread (``streamnb-exchange``) owns one connection that ``LISTEN``\\ s;
it waits on that socket and on a wake-up pipe (new follows), fetches, and
every :data:`POLL_INTERVAL_S` seconds reads everything it follows and every
command for its runtimes anyway, so a notification lost while the connection
was being re-established delays a frame but never loses it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import secrets
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .._errors import LedgerError
from .._frames import TERMINAL_KINDS
from .._json import dumps, loads
from .lease import LeaseKeeper
from .pg_connect import Backoff, Dsn, connect, is_disconnect

__all__ = [
    "POLL_INTERVAL_S",
    "REPLY_TIMEOUT_S",
    "Command",
    "Exchange",
    "ExchangeHost",
    "Follower",
    "StreamRecord",
]

logger = logging.getLogger("streamnb.ledger")

#: how often the exchange reads followed streams and commands without a notification, s
POLL_INTERVAL_S = 1.0
#: how long a cancel or input waits for the owning runtime's answer, seconds
REPLY_TIMEOUT_S = 10.0
#: frames read per stream per fetch
FETCH_PAGE = 2000
#: most bytes of a reply sent in a notification (NOTIFY payloads stay under 8000)
MAX_REPLY_CHARS = 6000

Conn = Any  # psycopg.Connection[tuple[Any, ...]]
_FRAME_SELECT = (
    "f.kind, f.stream_ref, f.seq, f.at, f.channel, f.payload, f.reason, f.error, f.terminal"
)


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """A stream's ``streams`` row as another process sees it."""

    stream_ref: str
    kind: str
    mode: str
    on_detach: str
    status: str
    opened_at: float
    runtime_id: str | None
    #: the terminal frame, when the stream settled (from ``frame_log``)
    terminal: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class Command:
    """A command for a runtime, sent by another (``sender``)."""

    token: str
    sender: str
    runtime_id: str
    stream_ref: str
    kind: str  # "cancel" | "input" | "observe" | "unobserve"
    body: Any


class ExchangeHost(Protocol):
    """A runtime as its exchange sees it; called on the runtime's loop."""

    def on_commands(self, commands: list[Command]) -> None:
        """Apply commands sent to this runtime (answer with :meth:`Exchange.reply`)."""
        ...

    def on_runtimes_lost(self, runtime_ids: list[str]) -> None:
        """These runtimes' leases were taken over: their observers are gone."""
        ...

    def on_lease_lost(self, runtime_id: str) -> None:
        """This runtime's own lease was taken over: its streams were settled elsewhere."""
        ...


class Follower(Protocol):
    """A reader of another process's stream; called on its loop."""

    def deliver(self, frames: list[tuple[Any, ...]]) -> None:
        """Frames (exact tuples of Frame's fields) with consecutive seqs, oldest first."""
        ...


@dataclass(slots=True)
class _Follow:
    ref: str
    after: int
    follower: Follower
    loop: asyncio.AbstractEventLoop
    done: bool = False


@dataclass(slots=True)
class _Host:
    host: ExchangeHost
    loop: asyncio.AbstractEventLoop


class Exchange:
    """The cross-process side of one PostgreSQL ledger (see the module docstring).

    Its thread starts when a runtime joins or a stream is first followed.

    Parameters
    ----------
    dsn : Dsn
        Where to connect (the thread's own connection).
    channel : str
        The ledger's notification channel.
    write : callable ``(fn) -> concurrent.futures.Future``
        Queues ``fn(conn)`` on the ledger's writer (the next group commit).
    read : callable ``(fn) -> awaitable``
        Runs ``fn(conn)`` on a read connection, off the loop.
    leases : LeaseKeeper
        Renews the leases of the runtimes that join.
    """

    def __init__(
        self,
        dsn: Dsn,
        channel: str,
        write: Callable[[Callable[[Conn], Any]], concurrent.futures.Future[Any]],
        read: Callable[[Callable[[Conn], Any]], Any],
        leases: LeaseKeeper,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._write = write
        self._read = read
        self._leases = leases
        self._lock = threading.Lock()
        self._follows: dict[int, _Follow] = {}
        self._fresh: set[int] = set()  # follows not fetched yet
        self._hosts: dict[str, _Host] = {}
        self._replies: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._conn: Conn | None = None
        self.thread: threading.Thread | None = None

    def _start(self) -> None:
        with self._lock:
            if self.thread is not None or self._stop.is_set():
                return
            self.thread = threading.Thread(
                target=self._serve, name="streamnb-exchange", daemon=True
            )
            self.thread.start()

    # --- called from event loops ----------------------------------------------------------------

    async def join(self, host: ExchangeHost) -> str:
        """A new lease for a runtime (``host``); returns its ``runtime_id``.

        Commands for it are delivered to ``host`` on the running loop from now on.
        """
        runtime_id = f"rt_{os.getpid()}_{secrets.token_hex(5)}"
        self._leases.start()
        lease_s = self._leases.lease_s
        await asyncio.wrap_future(
            self._write(lambda conn: LeaseKeeper.insert_lease(conn, runtime_id, lease_s))
        )
        self._leases.keep(runtime_id)
        self.host(runtime_id, host, asyncio.get_running_loop())
        return runtime_id

    async def leave(self, runtime_id: str) -> None:
        """Give ``runtime_id``'s lease up (its runtime closed; its streams settled)."""
        self._leases.drop(runtime_id)
        self.unhost(runtime_id)

        def delete(conn: Conn) -> None:
            conn.execute("DELETE FROM runtimes WHERE runtime_id = %s", (runtime_id,))

        await asyncio.wrap_future(self._write(delete))

    async def record(self, ref: str) -> StreamRecord | None:
        """The ``streams`` row of ``ref`` (None if there is none), off the loop."""
        result: StreamRecord | None = await self._read(lambda conn: self.lookup(conn, ref))
        return result

    async def put_name(self, scope: str, name: str, ref: str, meta: Any = None) -> None:
        """Name ``ref`` ``name`` in ``scope`` for every process (replacing an older one)."""
        text = None if meta is None else dumps(meta)
        now = time.time()

        def upsert(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO stream_names (scope, name, stream_ref, meta, updated_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (scope, name) DO UPDATE SET "
                "stream_ref = excluded.stream_ref, meta = excluded.meta, "
                "updated_at = excluded.updated_at",
                (scope, name, ref, text, now),
            )

        await asyncio.wrap_future(self._write(upsert))

    async def get_name(self, scope: str, name: str) -> tuple[str, Any] | None:
        """``(ref, meta)`` named ``name`` in ``scope``, or None."""

        def get(conn: Conn) -> tuple[str, Any] | None:
            row = conn.execute(
                "SELECT stream_ref, meta FROM stream_names WHERE scope = %s AND name = %s",
                (scope, name),
            ).fetchone()
            return None if row is None else (row[0], loads(row[1]))

        found: tuple[str, Any] | None = await self._read(get)
        return found

    async def forget_name(self, scope: str, name: str) -> None:
        def delete(conn: Conn) -> None:
            conn.execute("DELETE FROM stream_names WHERE scope = %s AND name = %s", (scope, name))

        await asyncio.wrap_future(self._write(delete))

    def host(self, runtime_id: str, host: ExchangeHost, loop: asyncio.AbstractEventLoop) -> None:
        """Deliver commands for ``runtime_id`` to ``host`` on ``loop``."""
        self._start()
        with self._lock:
            self._hosts[runtime_id] = _Host(host, loop)
        self._wake()

    def unhost(self, runtime_id: str) -> None:
        with self._lock:
            self._hosts.pop(runtime_id, None)

    def follow(
        self, ref: str, after_seq: int, follower: Follower, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Deliver ``ref``'s frames with ``seq > after_seq`` to ``follower``, as they commit.

        Ends by itself after the terminal frame; :meth:`unfollow` ends it earlier.
        """
        self._start()
        with self._lock:
            self._follows[id(follower)] = _Follow(ref, after_seq, follower, loop)
            self._fresh.add(id(follower))
        self._wake()

    def unfollow(self, follower: Follower) -> None:
        with self._lock:
            self._follows.pop(id(follower), None)
            self._fresh.discard(id(follower))

    def send(
        self,
        sender: str,
        target: str,
        ref: str,
        kind: str,
        body: Any = None,
        *,
        expect_reply: bool,
    ) -> tuple[str, asyncio.Future[Any] | None, concurrent.futures.Future[Any]]:
        """Queue a command for the runtime ``target``; ``(token, reply future, written)``.

        ``written`` resolves once the command committed: to True, or to False
        when ``target`` holds no lease (its runtime is gone). With
        ``expect_reply``, the reply future resolves with the owner's answer.
        """
        token = secrets.token_hex(8)
        reply: asyncio.Future[Any] | None = None
        if expect_reply:
            loop = asyncio.get_running_loop()
            reply = loop.create_future()
            with self._lock:
                self._replies[token] = (loop, reply)
        text = None if body is None else dumps(body)
        channel = self._channel

        def insert(conn: Conn) -> bool:
            cur = conn.execute(
                "INSERT INTO stream_commands (token, runtime_id, sender, stream_ref, kind, body) "
                "SELECT %s, %s, %s, %s, %s, %s WHERE EXISTS ("
                " SELECT 1 FROM runtimes WHERE runtime_id = %s) "
                "ON CONFLICT (token) DO NOTHING",
                (token, target, sender, ref, kind, text, target),
            )
            conn.execute("SELECT pg_notify(%s, %s)", (channel, f"c {target}"))
            return cur.rowcount == 1 or _command_exists(conn, token)

        return token, reply, self._write(insert)

    def forget_reply(self, token: str) -> None:
        with self._lock:
            self._replies.pop(token, None)

    def reply(self, command: Command, answer: Any) -> None:
        """Answer ``command`` (a ``cancel`` or ``input``) to its sender."""
        text = dumps(answer)
        if len(text) > MAX_REPLY_CHARS:
            text = dumps({"error": {"type": "StreamnbError", "message": text[:MAX_REPLY_CHARS]}})
        payload = f"r {command.sender} {command.token} {text}"
        channel = self._channel

        def notify(conn: Conn) -> None:
            conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))

        _log_failure(self._write(notify), "reply to a command")

    def lookup(self, conn: Conn, ref: str) -> StreamRecord | None:
        """``ref``'s row (and terminal frame if settled), on a read connection ``conn``."""
        row = conn.execute(
            "SELECT stream_ref, kind, mode, on_detach, status, opened_at, runtime_id "
            "FROM streams WHERE stream_ref = %s",
            (ref,),
        ).fetchone()
        if row is None:
            return None
        terminal = None
        if row[4] != "running":
            found = conn.execute(
                f"SELECT {_FRAME_SELECT} FROM frame_log f WHERE f.stream_ref = %s "
                "AND f.kind IN ('completed', 'cancelled', 'failed') ORDER BY f.seq DESC LIMIT 1",
                (ref,),
            ).fetchone()
            terminal = None if found is None else _frame(found)
        ref_, kind, mode, on_detach, status, opened_at, runtime_id = row
        return StreamRecord(
            ref_, kind, mode, on_detach, status, opened_at, runtime_id, terminal=terminal
        )

    def close(self) -> None:
        """Stop the thread (idempotent); pending replies are cancelled."""
        with self._lock:
            self._stop.set()
            thread = self.thread
        self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        with self._lock:
            replies, self._replies = self._replies, {}
        for loop, fut in replies.values():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_cancel, fut)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full pipe: the thread is awake already
            os.write(self._wake_w, b"\0")

    # --- the thread ---------------------------------------------------------------------------

    def _serve(self) -> None:
        backoff = Backoff(self._stop)
        while not self._stop.is_set():
            try:
                if self._conn is None:
                    conn = connect(self._dsn, autocommit=True)
                    conn.execute(f'LISTEN "{self._channel}"')
                    self._conn = conn
                    backoff.reset()
                    self._poll_all(conn)  # whatever was missed while disconnected
                self._loop_once(self._conn)
            except Exception as exc:
                if isinstance(exc, LedgerError) or is_disconnect(exc, self._conn):
                    if self._conn is not None:  # log the loss once, not every retry
                        logger.warning("streamnb ledger: exchange lost %s", self._dsn.safe)
                else:
                    logger.exception("streamnb ledger: exchange failed on %s", self._dsn.safe)
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                backoff.wait()
        if self._conn is not None:
            self._conn.close()

    def _loop_once(self, conn: Conn) -> None:
        next_poll = time.monotonic() + POLL_INTERVAL_S
        while not self._stop.is_set():
            with self._lock:
                fresh = bool(self._fresh)
            if fresh:
                self._fetch_frames(conn, only_fresh=True)
            # notifications that arrived while this connection ran a query (a fetch) are
            # already read off the socket: take them before waiting on it again
            notes = list(conn.notifies(timeout=0))
            if notes:
                self._handle(conn, [n.payload for n in notes])
            else:
                timeout = max(0.0, next_poll - time.monotonic())
                ready, _, _ = select.select([conn.fileno(), self._wake_r], [], [], timeout)
                if self._wake_r in ready:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
            if time.monotonic() >= next_poll:
                self._poll_all(conn)
                next_poll = time.monotonic() + POLL_INTERVAL_S

    def _poll_all(self, conn: Conn) -> None:
        self._fetch_frames(conn)
        self._fetch_commands(conn)

    def _handle(self, conn: Conn, payloads: list[str]) -> None:
        refs: set[str] = set()
        commands = False
        with self._lock:
            followed = {f.ref for f in self._follows.values()}
            ours = set(self._hosts)
        lost: list[str] = []
        for payload in payloads:
            head, _, rest = payload.partition(" ")
            if head == "f":
                words = rest.split(" ")
                refs.update(r for r in words[::2] if r in followed)
            elif head == "c":
                commands = commands or rest in ours
            elif head == "r":
                self._on_reply(rest)
            elif head == "x":
                lost.extend(rest.split(" "))
        if refs:
            self._fetch_frames(conn, refs=refs)
        if commands:
            self._fetch_commands(conn)
        if lost:
            with self._lock:
                hosts = list(self._hosts.values())
            for h in hosts:
                _call_soon(h.loop, h.host.on_runtimes_lost, lost)

    def _on_reply(self, rest: str) -> None:
        sender, _, rest = rest.partition(" ")
        token, _, text = rest.partition(" ")
        with self._lock:
            if sender not in self._hosts:
                return
            entry = self._replies.pop(token, None)
        if entry is None:
            return
        loop, fut = entry
        _call_soon(loop, _resolve, fut, loads(text))

    def _fetch_frames(
        self, conn: Conn, *, refs: set[str] | None = None, only_fresh: bool = False
    ) -> None:
        while True:
            with self._lock:
                if only_fresh:
                    keys = [k for k in self._fresh if k in self._follows]
                    self._fresh.clear()
                else:
                    keys = [
                        k
                        for k, f in self._follows.items()
                        if not f.done and (refs is None or f.ref in refs)
                    ]
                follows = [self._follows[k] for k in keys]
            if not follows:
                return
            rows = conn.execute(
                f"SELECT w.i, {_FRAME_SELECT} "
                "FROM unnest(%s::int[], %s::text[], %s::bigint[]) AS w(i, ref, after) "
                "JOIN LATERAL (SELECT * FROM frame_log f WHERE f.stream_ref = w.ref "
                " AND f.seq > w.after ORDER BY f.seq LIMIT %s) f ON true "
                "ORDER BY w.i, f.seq",
                (
                    list(range(len(follows))),
                    [f.ref for f in follows],
                    [f.after for f in follows],
                    FETCH_PAGE,
                ),
            ).fetchall()
            per: dict[int, list[tuple[Any, ...]]] = {}
            if only_fresh:  # a first read is delivered even when empty: "loaded so far"
                per = {i: [] for i in range(len(follows))}
            for row in rows:
                per.setdefault(row[0], []).append(_frame(row[1:]))
            again: set[str] = set()
            with self._lock:
                for i, frames in per.items():
                    f = follows[i]
                    if self._follows.get(id(f.follower)) is not f:
                        continue  # unfollowed meanwhile
                    frames = [fr for fr in frames if fr[2] > f.after]
                    if not frames:
                        if only_fresh:
                            _call_soon(f.loop, f.follower.deliver, frames)
                        continue
                    f.after = frames[-1][2]
                    if frames[-1][0] in TERMINAL_KINDS:
                        f.done = True
                        del self._follows[id(f.follower)]
                    elif len(frames) >= FETCH_PAGE:
                        again.add(f.ref)
                    _call_soon(f.loop, f.follower.deliver, frames)
            if not again:
                return
            refs, only_fresh = again, False

    def _fetch_commands(self, conn: Conn) -> None:
        with self._lock:
            ours = list(self._hosts)
        if not ours:
            return
        rows = conn.execute(
            "DELETE FROM stream_commands WHERE runtime_id = ANY(%s) "
            "RETURNING id, token, sender, runtime_id, stream_ref, kind, body",
            (ours,),
        ).fetchall()
        if not rows:
            return
        rows.sort(key=lambda r: r[0])
        per: dict[str, list[Command]] = {}
        for _, token, sender, runtime_id, ref, kind, body in rows:
            per.setdefault(runtime_id, []).append(
                Command(token, sender, runtime_id, ref, kind, loads(body))
            )
        with self._lock:
            hosts = {rid: self._hosts.get(rid) for rid in per}
        for rid, commands in per.items():
            h = hosts[rid]
            if h is not None:
                _call_soon(h.loop, h.host.on_commands, commands)

    def lease_lost(self, runtime_ids: list[str]) -> None:
        """Called by the lease keeper (its thread): tell the hosts whose lease is gone."""
        with self._lock:
            hosts = [(rid, self._hosts.get(rid)) for rid in runtime_ids]
        for rid, h in hosts:
            if h is not None:
                _call_soon(h.loop, h.host.on_lease_lost, rid)


def _frame(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A ``frame_log`` row (Frame's field order) with its JSON columns parsed."""
    kind, ref, seq, at, channel, payload, reason, error, terminal = row
    return (kind, ref, int(seq), at, channel, loads(payload), reason, error, loads(terminal))


def _command_exists(conn: Conn, token: str) -> bool:
    found = conn.execute("SELECT 1 FROM stream_commands WHERE token = %s", (token,))
    return found.fetchone() is not None


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
        loop.call_soon_threadsafe(fn, *args)


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _cancel(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.cancel()


def _log_failure(fut: concurrent.futures.Future[Any], what: str) -> None:
    def done(f: concurrent.futures.Future[Any]) -> None:
        if not f.cancelled() and f.exception() is not None:
            logger.warning("streamnb ledger: %s failed: %s", what, f.exception())

    fut.add_done_callback(done)
