"""SQLite storage of chat rooms: the registry database and one database per room.

With a directory (``ChatRooms(path)``)::

    <path>/registry.db          rooms(id, name, created_at, last_active_at)
    <path>/registry.db.lock     held (flock) by the one live process using the directory
    <path>/ledger.db            the runtime's ledger, when ChatRooms made the runtime
    <path>/rooms/<room_id>.db   messages(id, role, content, status, created_at, stream_ref, ...)
                                reply_checkpoints(message_id, pos, text)

so one room's history is one file (plus its ``-wal``/``-shm`` while open): it can be
copied, inspected with ``sqlite3`` or deleted on its own. Without a directory each
database is a private in-memory SQLite connection, so rooms stay isolated in memory
too. Files use WAL mode with ``synchronous=NORMAL``: a committed message survives a
killed process (not a power loss), which is what the ``interrupted`` recovery needs.

Checkpoints. While a reply streams, its text is appended to ``reply_checkpoints``
piece by piece (:mod:`.checkpoint`), one short transaction per piece, so a
checkpoint costs the size of the new text, never the size of the reply so far.
The placeholder message keeps ``content = ''`` while it streams; when the reply
settles, :meth:`RoomStore.finish` writes the final text and deletes its pieces
in one transaction; when a dead process left it ``streaming``,
:meth:`RoomStore.recover` joins its pieces into ``content`` and marks it
``interrupted`` (also one transaction).

Each :class:`_Db` is one ``sqlite3`` connection used from several threads, the
caller's (a notebook cell reading ``messages()``), the rooms' I/O thread (writes
made while a reply streams) and the server's worker threads, always under the
connection's lock. Statements are short (one row, or one room's history), so the
lock is never held for long.

Room files are opened on demand. An open SQLite file in WAL mode holds three file
descriptors (the database, ``-wal`` and ``-shm``), so keeping every room open made
the 337th room fail at ``ulimit -n 1024``. A :class:`ConnectionPool` keeps at most
``max_open`` room databases open, closing the least recently used idle one when
another must open; the registry stays open, and in-memory rooms (which would lose
their data) are never closed. A room's message count is cached beside its
connection, so listing rooms opens no room file.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from .._sqlite import connect, translate_errors
from .errors import RoomError

__all__ = [
    "DEFAULT_MAX_OPEN_ROOMS",
    "ConnectionPool",
    "Message",
    "RegistryStore",
    "RoomRow",
    "RoomStore",
]

#: room databases kept open at once (three file descriptors each)
DEFAULT_MAX_OPEN_ROOMS = 64

T = TypeVar("T")

Role = Literal["user", "assistant"]
#: statuses of an assistant message: ``streaming`` until its stream settles, then the
#: terminal kind, or ``interrupted`` when the process died mid-reply
REPLY_STATUSES = ("streaming", "completed", "cancelled", "failed", "interrupted")

_REGISTRY_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    created_at     REAL NOT NULL,
    last_active_at REAL NOT NULL
);
"""

_ROOM_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    pos        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content    TEXT NOT NULL,
    status     TEXT NOT NULL,
    created_at REAL NOT NULL,
    settled_at REAL,
    stream_ref TEXT
);
CREATE INDEX IF NOT EXISTS messages_stream ON messages(stream_ref);
CREATE TABLE IF NOT EXISTS reply_checkpoints (
    message_id TEXT NOT NULL,
    pos        INTEGER NOT NULL,
    text       TEXT NOT NULL,
    PRIMARY KEY (message_id, pos)
);
"""


@dataclass(frozen=True, slots=True)
class Message:
    """One stored message of a room.

    ``status`` is ``sent`` for user messages; for assistant messages ``streaming``
    while the reply runs, then ``completed``, ``cancelled`` (the partial text),
    ``failed`` or ``interrupted``. ``created_at`` and ``settled_at`` are epoch
    seconds. ``stream_ref`` names the reply's stream (on both messages of a turn).

    Examples
    --------
    >>> from streamnb.rooms import ChatRooms
    >>> rooms = ChatRooms()
    >>> room = rooms.room(rooms.create_room("Ideas"))
    >>> _ = rooms.runtime.run(room.send("hello"))
    >>> reply = rooms.runtime.run(room.wait())
    >>> reply.role, reply.status, reply.stream_ref.startswith("st_")
    ('assistant', 'completed', True)
    >>> sorted(reply.to_dict())
    ['content', 'created_at', 'id', 'role', 'settled_at', 'status', 'stream_ref']
    >>> rooms.close()
    """

    id: str
    role: Role
    content: str
    status: str
    created_at: float
    settled_at: float | None
    stream_ref: str | None

    def to_dict(self) -> dict[str, Any]:
        """The message as a JSON-ready dict (times in epoch seconds)."""
        return {
            "id": self.id,
            "role": self.role,
            "content": self.content,
            "status": self.status,
            "created_at": self.created_at,
            "settled_at": self.settled_at,
            "stream_ref": self.stream_ref,
        }


@dataclass(frozen=True, slots=True)
class RoomRow:
    """One row of the registry (times in epoch seconds)."""

    id: str
    name: str
    created_at: float
    last_active_at: float


class ConnectionPool:
    """The room databases open right now: at most ``max_open``, least recently used first.

    Shared by the rooms of one registry. A database opening past the bound closes
    the least recently used one that no thread is using (its lock is free); if
    every one is busy, the bound is passed for a moment rather than waiting.
    """

    def __init__(self, max_open: int = DEFAULT_MAX_OPEN_ROOMS) -> None:
        if max_open < 1:
            raise ValueError("max_open must be >= 1")
        self.max_open = max_open
        self._lock = threading.Lock()
        self._open: OrderedDict[_Db, None] = OrderedDict()

    def used(self, db: _Db) -> None:
        """``db`` (open, its lock held by the caller) was just used; close others past the bound."""
        with self._lock:
            self._open[db] = None
            self._open.move_to_end(db)
            if len(self._open) <= self.max_open:
                return
            for victim in list(self._open):
                if len(self._open) <= self.max_open:
                    break
                if victim is db or not victim._lock.acquire(blocking=False):
                    continue  # in use by another thread: never waited for (no deadlock)
                try:
                    victim._drop_connection()
                finally:
                    victim._lock.release()
                del self._open[victim]

    def forget(self, db: _Db) -> None:
        with self._lock:
            self._open.pop(db, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)


class _Db:
    """One SQLite database behind a lock, opened on demand (see the module docstring)."""

    def __init__(self, path: Path | None, schema: str, pool: ConnectionPool | None = None) -> None:
        self.path = path
        self._where = ":memory:" if path is None else os.fspath(path)
        self._lock = threading.Lock()
        self._closed = False
        # a file database joins the pool (closed when idle and others need to open)
        self._pool = pool if path is not None else None
        self._conn: sqlite3.Connection | None = self._connect(schema)
        if self._pool is not None:
            with self._lock:
                self._pool.used(self)

    def _connect(self, schema: str | None) -> sqlite3.Connection:
        return connect(
            self.path,
            schema=schema,
            check_same_thread=False,  # the lock serialises the threads using it
            error=lambda why: RoomError(
                f"cannot open {self._where}: {why}; is it a streamnb rooms database, and can "
                "this process open one more file (ulimit -n)?"
            ),
        )

    def _failed(self, doing: str) -> Callable[[str], RoomError]:
        return lambda why: RoomError(f"{doing} {self._where} failed: {why}")

    def _live(self) -> sqlite3.Connection:
        """The connection, opened again if the pool closed it (caller holds the lock)."""
        if self._closed:
            raise RoomError("this room's database is closed (the room was deleted or closed)")
        conn = self._conn
        if conn is None:
            conn = self._conn = self._connect(None)
        if self._pool is not None:
            self._pool.used(self)
        return conn

    def _drop_connection(self) -> None:
        """Close the connection until next use (the pool's eviction; caller holds the lock)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def is_open(self) -> bool:
        """True while a connection is open (the pool may close it when idle)."""
        return self._conn is not None

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` under the lock."""
        with (
            self._lock,
            translate_errors(lambda why: RoomError(f"reading {self._where} failed: {why}")),
        ):
            return fn(self._live())

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)`` in one transaction under the lock (rolled back if it raises)."""
        with self._lock:
            conn = self._live()
            with translate_errors(self._failed("writing")):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop_connection()
        if self._pool is not None:
            self._pool.forget(self)


class RegistryStore:
    """The ``rooms`` table: ids, names and times of every room."""

    def __init__(self, path: Path | None) -> None:
        self._db = _Db(path, _REGISTRY_SCHEMA)

    def insert(self, row: RoomRow) -> None:
        self._db.write(
            lambda c: c.execute(
                "INSERT INTO rooms (id, name, created_at, last_active_at) VALUES (?,?,?,?)",
                (row.id, row.name, row.created_at, row.last_active_at),
            )
        )

    def rename(self, room_id: str, name: str) -> None:
        self._db.write(lambda c: c.execute("UPDATE rooms SET name=? WHERE id=?", (name, room_id)))

    def touch(self, room_id: str, at: float) -> None:
        self._db.write(
            lambda c: c.execute(
                "UPDATE rooms SET last_active_at=max(last_active_at, ?) WHERE id=?", (at, room_id)
            )
        )

    def delete(self, room_id: str) -> None:
        self._db.write(lambda c: c.execute("DELETE FROM rooms WHERE id=?", (room_id,)))

    def row(self, room_id: str) -> RoomRow | None:
        """One room's row, or None."""
        found = self._db.read(
            lambda c: c.execute(
                "SELECT id, name, created_at, last_active_at FROM rooms WHERE id=?", (room_id,)
            ).fetchone()
        )
        return None if found is None else RoomRow(*found)

    def rows(self) -> list[RoomRow]:
        """Every room, most recently active first (then newest first)."""
        rows = self._db.read(
            lambda c: c.execute(
                "SELECT id, name, created_at, last_active_at FROM rooms "
                "ORDER BY last_active_at DESC, created_at DESC, rowid DESC"
            ).fetchall()
        )
        return [RoomRow(*r) for r in rows]

    def close(self) -> None:
        self._db.close()


_MESSAGE_COLUMNS = "id, role, content, status, created_at, settled_at, stream_ref"


class RoomStore:
    """One room's ``messages`` table (its own database), opened through ``pool``."""

    def __init__(self, room_id: str, path: Path | None, pool: ConnectionPool | None = None) -> None:
        self.room_id = room_id
        self.path = path
        self._db = _Db(path, _ROOM_SCHEMA, pool)
        #: the number of messages, read at open and kept with every write
        self._count: int | None = None
        stored = self._db.write(lambda c: self._claim(c, room_id))
        if stored != room_id:
            self._db.close()
            raise RoomError(
                f"{path} holds the history of room {stored!r}, not {room_id!r}; "
                "room files must keep the name <room_id>.db"
            )

    def _claim(self, conn: sqlite3.Connection, room_id: str) -> str:
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('room_id', ?)", (room_id,))
        row = conn.execute("SELECT value FROM meta WHERE key='room_id'").fetchone()
        self._count = int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
        return str(row[0])

    # --- writes ------------------------------------------------------------------------

    def add_turn(self, user: Message, reply: Message) -> list[Message]:
        """Insert a user message and its reply's placeholder (``streaming``) together.

        Returns the messages stored before them (the history the reply is given),
        read in the same transaction.
        """

        def fn(conn: sqlite3.Connection) -> list[Message]:
            rows = conn.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages ORDER BY pos").fetchall()
            for m in (user, reply):
                conn.execute(
                    f"INSERT INTO messages ({_MESSAGE_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                    (m.id, m.role, m.content, m.status, m.created_at, m.settled_at, m.stream_ref),
                )
            return [Message(*r) for r in rows]

        history = self._db.write(fn)
        self._count = len(history) + 2  # after the commit: a failed write leaves it be
        return history

    def remove(self, *message_ids: str) -> None:
        """Delete messages (a turn whose stream could not be started)."""

        cur = self._db.write(
            lambda c: c.executemany("DELETE FROM messages WHERE id=?", [(i,) for i in message_ids])
        )
        if self._count is not None:
            self._count = max(0, self._count - int(cur.rowcount))

    def set_stream_ref(self, stream_ref: str, *message_ids: str) -> None:
        self._db.write(
            lambda c: c.executemany(
                "UPDATE messages SET stream_ref=? WHERE id=?",
                [(stream_ref, i) for i in message_ids],
            )
        )

    def checkpoint(self, message_id: str, pos: int, text: str) -> bool:
        """Append piece ``pos`` of a streaming reply's text (its own transaction).

        Returns False (and stores nothing) once the reply is no longer
        ``streaming``: a piece never outlives its reply's settlement.
        """
        cur = self._db.write(
            lambda c: c.execute(
                "INSERT INTO reply_checkpoints (message_id, pos, text) SELECT ?, ?, ? "
                "WHERE EXISTS (SELECT 1 FROM messages WHERE id=? AND status='streaming')",
                (message_id, pos, text, message_id),
            )
        )
        return bool(cur.rowcount == 1)

    def checkpointed(self, message_id: str) -> str:
        """The text checkpointed so far for a streaming reply ('' when none)."""
        rows = self._db.read(
            lambda c: c.execute(
                "SELECT text FROM reply_checkpoints WHERE message_id=? ORDER BY pos",
                (message_id,),
            ).fetchall()
        )
        return "".join(r[0] for r in rows)

    def finish(
        self, message_id: str, content: str, status: str, at: float, stream_ref: str
    ) -> bool:
        """Store the reply's final text and status, drop its checkpoints; False if the
        placeholder is gone."""

        def fn(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE messages SET content=?, status=?, settled_at=?, stream_ref=? "
                "WHERE id=? AND status='streaming'",
                (content, status, at, stream_ref, message_id),
            )
            conn.execute("DELETE FROM reply_checkpoints WHERE message_id=?", (message_id,))
            return int(cur.rowcount)

        return self._db.write(fn) == 1

    def clear(self) -> int:
        """Delete every message; returns how many."""

        def fn(conn: sqlite3.Connection) -> int:
            conn.execute("DELETE FROM reply_checkpoints")
            return int(conn.execute("DELETE FROM messages").rowcount)

        removed = self._db.write(fn)
        self._count = 0
        return removed

    def recover(self, at: float, keep: Collection[str] = ()) -> list[str]:
        """Mark replies a dead process left ``streaming`` as ``interrupted``, each with its
        checkpointed text; returns their ids (one transaction).

        ``keep``: ids of replies a registry of this process is still settling (a takeover):
        they, and their checkpoints, are left alone.
        """
        kept = set(keep)

        def fn(conn: sqlite3.Connection) -> list[str]:
            ids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM messages WHERE status='streaming' ORDER BY pos"
                ).fetchall()
                if r[0] not in kept
            ]
            for message_id in ids:
                pieces = conn.execute(
                    "SELECT text FROM reply_checkpoints WHERE message_id=? ORDER BY pos",
                    (message_id,),
                ).fetchall()
                conn.execute(
                    "UPDATE messages SET status='interrupted', settled_at=?, "
                    "content = content || ? WHERE id=?",
                    (at, "".join(p[0] for p in pieces), message_id),
                )
            if kept:
                marks = ",".join("?" * len(kept))
                conn.execute(
                    f"DELETE FROM reply_checkpoints WHERE message_id NOT IN ({marks})",
                    tuple(sorted(kept)),
                )
            else:
                conn.execute("DELETE FROM reply_checkpoints")
            return ids

        return self._db.write(fn)

    # --- reads -------------------------------------------------------------------------

    def messages(self) -> list[Message]:
        rows = self._db.read(
            lambda c: c.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages ORDER BY pos").fetchall()
        )
        return [Message(*r) for r in rows]

    def get(self, message_id: str) -> Message | None:
        row = self._db.read(
            lambda c: c.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id=?", (message_id,)
            ).fetchone()
        )
        return None if row is None else Message(*row)

    def count(self) -> int:
        """How many messages the room holds (cached: listing rooms opens no room file)."""
        count = self._count
        if count is None:
            count = self._count = int(
                self._db.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone())[0]
            )
        return count

    # --- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        self._db.close()

    def delete_files(self) -> None:
        """Close the database and remove its file (and WAL side files); idempotent."""
        self.close()
        if self.path is None:
            return
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.fspath(self.path) + suffix)


def iter_room_files(rooms_dir: Path) -> Iterator[Path]:
    """The ``<room_id>.db`` files in a rooms directory (sorted)."""
    if rooms_dir.is_dir():
        yield from sorted(rooms_dir.glob("*.db"))
