"""``ChatRooms``: a registry of chat rooms, each with its own SQLite history (seed 004).

Seed 004's ``OverseerAgent`` keeps the room list in its own SQLite and gives each
room a sub-agent with an isolated SQLite. Here the registry is a ``registry.db``
and each room a ``rooms/<room_id>.db`` file in one directory (or private
in-memory databases), and every reply is an attached stream of one
:class:`~streamnb.StreamRuntime`, so Stop, resume and the ledger work as for any
stream.

Joining rooms, messages and streams. Every settled reply writes its assistant
message into the room's database *and* commits a ledger event
``room.reply.settled {"room_id", "message_id", "kind"}`` in the stream's
settlement transaction; both messages of a turn carry the reply's
``stream_ref``. :meth:`ChatRooms.sql` runs one read-only query over
``rooms``, ``messages`` (all rooms, with a ``room_id`` column) and the ledger
attached as schema ``ledger`` (``ledger.streams``, ``ledger.events``)::

    rooms.sql('''
        SELECT r.name, m.status, s.status AS stream_status, s.reason
        FROM messages m
        JOIN rooms r ON r.id = m.room_id
        JOIN ledger.streams s ON s.stream_ref = m.stream_ref
        WHERE m.role = 'assistant'
    ''')

Outside Python the same join is plain SQLite on the files::

    ATTACH 'chat/rooms/rm_0123456789ab.db' AS room;
    ATTACH 'chat/ledger.db' AS ledger;
    SELECT m.id, m.status, s.status FROM room.messages m
    JOIN ledger.streams s USING (stream_ref);

Departures from seed 004: a room holds at most one streaming reply (a second
``send`` raises :class:`RoomBusyError` rather than interleaving two replies in one
history); assistant messages have a ``status`` (``streaming``, ``completed``,
``cancelled``, ``failed``, ``interrupted``) and the partial text of a stopped
reply is kept; a streaming reply's text is checkpointed into the room's file
(:mod:`.checkpoint`), so a killed process leaves it ``interrupted`` with its text
rather than losing it; resume replays from the stream's frame log rather than a
relay's buffer. The two databases of one settlement (the room file and the ledger) are
not one transaction: the room row is written first; if the process dies between
the two writes, the ledger recovers the stream as ``failed``/``runtime_lost``
while the room keeps the finished message.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import secrets
import time
import unicodedata
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from .. import _takeover
from .._dataframes import utc_column
from .._frames import Frame
from .._handler import AttachedStreamHandler
from .._ledger import Ledger, LedgerTx
from .._ledger.readers import DEFAULT_QUERY_TIMEOUT_S
from .._ledger.recovery import read_holder_pid, write_holder_pid
from .._lifecycle import Lifecycle
from .._runtime import StreamRuntime
from ._host import RoomHost
from .checkpoint import CHECKPOINT_BYTES, CHECKPOINT_S
from .errors import RoomError, RoomExistsError, RoomNameError, UnknownRoomError
from .events import RoomEvent, RoomListener
from .query import run_query
from .reply import DEFAULT_KIND, SettleHook, bind_reply_handler
from .reply import room_reply_handler as _default_handler
from .room import Room
from .store import ConnectionPool, RegistryStore, RoomRow, RoomStore

__all__ = ["MAX_NAME_CHARS", "ChatRooms", "HandlerFactory"]

#: the longest room name accepted, in characters
MAX_NAME_CHARS = 100
#: how long a takeover from another thread waits beyond the runtime's grace periods, seconds
REPLACE_WAIT_S = 30.0
#: ``handler_factory(kind)`` returns the handler that writes replies
HandlerFactory = Callable[[str], AttachedStreamHandler]
ROOM_COLUMNS = ["id", "name", "message_count", "created_at", "last_active_at"]
_ROOM_ID = re.compile(r"rm_[0-9a-f]{12}")


def check_room_name(name: object) -> str:
    """The name, stripped of surrounding white space, or :class:`RoomNameError`.

    A name is 1 to :data:`MAX_NAME_CHARS` characters with no control character
    (Unicode category ``Cc``: seed 004 shows names in a one-line sidebar) and no
    lone surrogate (not text: it cannot be stored). Format characters such as the
    zero-width joiner of an emoji sequence are text and are kept.

    Examples
    --------
    >>> check_room_name("  Ideas ")
    'Ideas'
    >>> check_room_name("Family \U0001f468\u200d\U0001f469\u200d\U0001f467")  # ZWJ emoji
    'Family 👨\u200d👩\u200d👧'
    >>> check_room_name("Ideas" + chr(7))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamnb.rooms.errors.RoomNameError: invalid room name ...: ... control character U+0007; ...
    """
    if not isinstance(name, str):
        raise RoomNameError(name, f"it is a {type(name).__name__}, not a str", MAX_NAME_CHARS)
    stripped = name.strip()
    if not stripped:
        raise RoomNameError(name, "it is empty", MAX_NAME_CHARS)
    if len(stripped) > MAX_NAME_CHARS:
        raise RoomNameError(
            stripped[:20] + "...", f"it has {len(stripped)} characters", MAX_NAME_CHARS
        )
    for ch in stripped:
        category = unicodedata.category(ch)
        if category == "Cc":
            raise RoomNameError(
                name, f"it contains the control character U+{ord(ch):04X}", MAX_NAME_CHARS
            )
        if category == "Cs":
            raise RoomNameError(
                name,
                f"it contains U+{ord(ch):04X}, a lone surrogate (half of a character, not text)",
                MAX_NAME_CHARS,
            )
    return stripped


class ChatRooms:
    """A registry of chat rooms, each with an isolated history and streaming replies.

    Parameters
    ----------
    path : str or os.PathLike, optional
        A directory (created if missing) holding ``registry.db``, one
        ``rooms/<room_id>.db`` per room and, when this registry makes its own
        runtime, ``ledger.db``. ``None`` (default) keeps everything in memory.
        Opening a directory marks replies a dead process left ``streaming`` as
        ``interrupted`` (their ids are in :attr:`recovered`). A directory another
        ``ChatRooms`` of *this* process has open (a re-run notebook cell) is taken
        over: that registry's streaming replies settle ``cancelled`` with reason
        ``"replaced"`` and it closes first (with the runtime it made).
    handler_factory : callable ``kind -> AttachedStreamHandler``, optional
        Makes the handler that writes replies, e.g.
        ``lambda kind: sn.providers.chat_handler(kind, config)`` for a live
        model. Default: :func:`room_reply_handler` (the seeds' fake tokens).
        The handler gets ``{"messages": history}`` as its start payload and, if
        ``bidi``, the user's text as input (see :mod:`streamnb.rooms.reply`).
    runtime : StreamRuntime, optional
        Run replies in this runtime (its ledger gets the settlements). Default:
        a new runtime, with an in-memory ledger or ``<path>/ledger.db``, that
        :meth:`aclose` also closes.
    kind : str, default ``"streamnb.rooms.reply"``
        The stream kind registered for replies.
    checkpoint_s : float or None, default 0.25
        While a reply streams, its new text is written to the room's file at
        most this many seconds after it arrived (:mod:`streamnb.rooms.checkpoint`),
        so a killed process loses at most that much of it (the reply reopens
        ``interrupted`` with the text checkpointed so far). ``None`` turns
        checkpoints off: the text is written only when the reply settles.
    checkpoint_bytes : int, default 4096
        A checkpoint is written as soon as this many bytes (UTF-8) of new text
        accumulated, even before ``checkpoint_s``.

    Raises
    ------
    RoomError
        The directory is used by another live process (the message names its
        process id), or a file in it is not a rooms database.
    ValueError
        ``runtime`` trims frames (``max_retained_frames``): a reply's text is
        read from its frame log, so the whole log must be kept; or
        ``checkpoint_s`` is not > 0 (nor None), or ``checkpoint_bytes`` < 1.
    TypeError
        ``handler_factory`` did not return an :class:`~streamnb.AttachedStreamHandler`.

    Examples
    --------
    In memory, with the seeds' fake replies; in a notebook cell, ``await`` the
    coroutines instead of passing them to ``runtime.run``:

    >>> rooms = ChatRooms()
    >>> room = rooms.room(rooms.create_room("Ideas"))
    >>> async def turn(text):
    ...     await room.send(text)
    ...     return await room.wait()
    >>> rooms.runtime.run(turn("hello")).content
    'streamnb reply to hello (turn 1)'
    >>> rooms.rooms()[["name", "message_count"]]
        name  message_count
    0  Ideas              2
    >>> rooms.sql("SELECT m.role, s.status FROM messages m "
    ...           "JOIN ledger.streams s USING (stream_ref) ORDER BY m.role DESC")
            role     status
    0       user  completed
    1  assistant  completed
    >>> rooms.close()
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        handler_factory: HandlerFactory | None = None,
        runtime: StreamRuntime | None = None,
        *,
        kind: str = DEFAULT_KIND,
        checkpoint_s: float | None = CHECKPOINT_S,
        checkpoint_bytes: int = CHECKPOINT_BYTES,
    ) -> None:
        if checkpoint_s is not None and not 0 < checkpoint_s < float("inf"):
            raise ValueError("checkpoint_s must be > 0 (seconds) or None (no checkpoints)")
        if not isinstance(checkpoint_bytes, int) or checkpoint_bytes < 1:
            raise ValueError("checkpoint_bytes must be an int >= 1 (bytes)")
        if runtime is not None and not isinstance(runtime, StreamRuntime):
            raise TypeError(f"runtime must be a StreamRuntime, got {type(runtime).__name__}")
        if runtime is not None and runtime.max_retained_frames is not None:
            raise ValueError(
                "ChatRooms needs a runtime that keeps every frame of a reply "
                "(max_retained_frames=None); the reply's text is read from its frame log"
            )
        handler = _default_handler(kind) if handler_factory is None else handler_factory(kind)
        if not isinstance(handler, AttachedStreamHandler):
            raise TypeError(
                "handler_factory(kind) must return an sn.AttachedStreamHandler, "
                f"got {type(handler).__name__}"
            )
        self.kind = kind
        self.path = None if path is None else Path(path)
        self.recovered: list[str] = []
        #: the directory's lock (shared with the finalizer; a takeover hands it over)
        self._dir_lock = _DirectoryLock()
        self._close_reason = "rooms closed"
        self._key = None if self.path is None else _takeover.file_key(self.path)
        handed_fd: int | None = None
        settling: set[str] = set()
        if self._key is not None:
            previous = _takeover.current("rooms", self._key)
            if previous is not None:
                handed_fd, settling = previous._replace()
        self._rooms: dict[str, Room] = {}
        #: the room files open right now (at most DEFAULT_MAX_OPEN_ROOMS; see store.py)
        self._pool = ConnectionPool()
        #: every room's store, for closing them (also from the finalizer)
        self._stores: dict[str, RoomStore] = {}
        self._owns_runtime = runtime is None
        opened: list[tuple[RoomRow, RoomStore]] = []
        try:
            self._registry = self._open_stores(opened, handed_fd, settling)
            if runtime is None:
                ledger = None if self.path is None else Ledger(self.path / "ledger.db")
                runtime = StreamRuntime(ledger)
        except BaseException:
            for _, store in opened:
                store.close()
            self._close_stores()
            raise
        # weakly: the runtime (perhaps the user's, kept alive) must not keep these rooms
        # alive, so that dropped rooms are collected and their finalizer runs
        runtime.register(bind_reply_handler(handler, kind, _weak_settle(self)))
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamnb-rooms")
        self._host = RoomHost(
            runtime,
            kind,
            self._registry,
            self._executor,
            checkpoint_s=checkpoint_s,
            checkpoint_bytes=checkpoint_bytes,
        )
        for row, store in opened:
            self._add(row, store)
        # dropped without aclose(): release the directory's lock and close the files when
        # collected (a re-run notebook cell). Only what owns no way back to self is kept.
        self._finalizer = weakref.finalize(
            self, _release, self._dir_lock, self._registry, self._stores, self._executor
        )
        if self._key is not None:
            _takeover.register("rooms", self._key, self)

    def _add(self, row: RoomRow, store: RoomStore) -> Room:
        room = Room(self._host, row.id, store)
        self._rooms[row.id] = room
        self._stores[row.id] = store
        self._host.names[row.id] = row.name
        return room

    def _open_stores(
        self,
        opened: list[tuple[RoomRow, RoomStore]],
        handed_fd: int | None = None,
        settling: set[str] | None = None,
    ) -> RegistryStore:
        """Open ``registry.db`` and every room's file (appended to ``opened``), recovering
        replies a dead process left ``streaming``.

        ``handed_fd``: the directory's lock, handed over by a registry of this process
        being replaced, which is still settling the replies ``settling`` (left alone).
        """
        if self.path is None:
            return RegistryStore(None)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "rooms").mkdir(exist_ok=True)
        if handed_fd is not None:
            self._dir_lock.fd = handed_fd
        else:
            self._dir_lock.fd = self._lock_directory(self.path)
        registry_path = self.path / "registry.db"
        registry = RegistryStore(registry_path)
        now = time.time()
        try:
            for row in registry.rows():
                if _ROOM_ID.fullmatch(row.id) is None:  # never a path outside rooms/
                    raise RoomError(
                        f"{registry_path} lists a room id {row.id!r} that is not "
                        "rm_ and 12 hex digits; is it a streamnb rooms registry?"
                    )
                store = RoomStore(row.id, self._room_file(row.id), self._pool)
                self.recovered += store.recover(now, settling or ())
                opened.append((row, store))
        except BaseException:
            registry.close()
            raise
        return registry

    @staticmethod
    def _lock_directory(path: Path) -> int:
        """Take the directory's ``registry.db.lock``; returns its file descriptor.

        Raises
        ------
        RoomError
            Another live process holds it (the message names its process id).
        """
        fd = os.open(path / "registry.db.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = read_holder_pid(fd)
            os.close(fd)
            who = "another live process" if pid is None else f"another live process (pid {pid})"
            raise RoomError(
                f"the rooms directory {os.fspath(path)!r} is open in {who}; "
                "close that ChatRooms (or that process) first"
            ) from None
        write_holder_pid(fd)
        return fd

    def _room_file(self, room_id: str) -> Path | None:
        return None if self.path is None else self.path / "rooms" / f"{room_id}.db"

    # --- properties -----------------------------------------------------------------------

    @property
    def runtime(self) -> StreamRuntime:
        """The runtime replies run in."""
        return self._host.runtime

    @property
    def ledger(self) -> Ledger:
        """The ledger replies settle in (``runtime.ledger``)."""
        return self._host.runtime.ledger

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` (or :meth:`close`) finished."""
        return self._host.state is Lifecycle.CLOSED

    def __contains__(self, room_id: object) -> bool:
        """True if a room with this id exists (created and not deleted)."""
        return room_id in self._rooms

    def __iter__(self) -> Iterator[str]:
        """The ids of the rooms (a snapshot: rooms may be created or deleted meanwhile)."""
        return iter(list(self._rooms))

    def __len__(self) -> int:
        """How many rooms exist."""
        return len(self._rooms)

    def __repr__(self) -> str:
        where = "memory" if self.path is None else os.fspath(self.path)
        busy = sum(1 for r in self._rooms.values() if r.busy)
        state = " closed" if self.closed else ""
        return f"<ChatRooms {where} rooms={len(self._rooms)} busy={busy}{state}>"

    # --- rooms ----------------------------------------------------------------------------

    def create_room(self, name: str, *, exist_ok: bool = False) -> str:
        """Create an empty room (seed 004's "new room"); returns its id.

        Room names are unique, so re-running a notebook cell that creates a room does
        not make a look-alike second room: with ``exist_ok=True`` it returns the id of
        the room that already has the name (as ``Path.mkdir(exist_ok=True)`` does),
        else it raises :class:`RoomExistsError`.

        Parameters
        ----------
        name : str
            Shown in the room list; surrounding white space is stripped.
        exist_ok : bool, default False
            Return the existing room's id when a room already has this name.

        Returns
        -------
        str
            ``rm_`` and 12 hex digits (also the room file's name, ``<id>.db``).

        Raises
        ------
        RoomNameError
            ``name`` is empty, longer than 100 characters or has control characters.
        RoomExistsError
            A room already has this name and ``exist_ok`` is False.
        RoomError
            The registry is closed, or its database could not be written.

        Examples
        --------
        >>> rooms = ChatRooms()
        >>> room_id = rooms.create_room(" Ideas ")
        >>> room_id in rooms, rooms.room(room_id).name
        (True, 'Ideas')
        >>> rooms.create_room("Ideas", exist_ok=True) == room_id   # a re-run cell
        True
        >>> rooms.create_room("Ideas")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        streamnb.rooms.errors.RoomExistsError: a room named 'Ideas' already exists (rm_...); ...
        >>> rooms.close()
        """
        self._host.check_open()
        clean = check_room_name(name)
        existing = self._named(clean)
        if existing is not None:
            if exist_ok:
                return existing
            raise RoomExistsError(clean, existing)
        room_id = "rm_" + secrets.token_hex(6)
        now = time.time()
        row = RoomRow(room_id, clean, now, now)
        store = RoomStore(room_id, self._room_file(room_id), self._pool)
        try:
            self._registry.insert(row)
        except BaseException:
            store.delete_files()
            raise
        self._add(row, store)
        self._host.emit(RoomEvent("created", room_id))
        return room_id

    def _named(self, name: str) -> str | None:
        """The id of the room called ``name`` (already checked), or None."""
        for room_id, room_name in self._host.names.items():
            if room_name == name and room_id in self._rooms:
                return room_id
        return None

    def room(self, room_id: str) -> Room:
        """The :class:`Room` with this id (the same object on every call).

        Raises
        ------
        UnknownRoomError
            No such room (never created, or deleted); the message lists some
            existing ids.
        RoomError
            The registry is closed.

        Examples
        --------
        >>> rooms = ChatRooms()
        >>> rooms.room("rm_000000000000")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        streamnb.rooms.errors.UnknownRoomError: no room with id 'rm_000000000000' (there are ...)...
        >>> rooms.close()
        """
        self._host.check_open()
        try:
            return self._rooms[room_id]
        except (KeyError, TypeError):
            raise UnknownRoomError(room_id, self._rooms) from None

    def rename_room(self, room_id: str, name: str) -> None:
        """Rename a room (also while a reply streams).

        Raises
        ------
        UnknownRoomError
            No such room.
        RoomNameError
            ``name`` is not a valid room name (see :meth:`create_room`).
        RoomExistsError
            Another room already has this name.

        Examples
        --------
        >>> rooms = ChatRooms()
        >>> room_id = rooms.create_room("Ideas")
        >>> rooms.rename_room(room_id, "Plans")
        >>> rooms.room(room_id).name
        'Plans'
        >>> rooms.close()
        """
        self.room(room_id)
        clean = check_room_name(name)
        other = self._named(clean)
        if other is not None and other != room_id:
            raise RoomExistsError(clean, other)
        self._registry.rename(room_id, clean)
        self._host.names[room_id] = clean
        self._host.emit(RoomEvent("renamed", room_id))

    def clear_room(self, room_id: str) -> int:
        """Delete every message of a room; returns how many were deleted.

        The ledger keeps the settlements of the room's past replies.

        Returns
        -------
        int
            The number of messages deleted (user and assistant).

        Raises
        ------
        UnknownRoomError
            No such room.
        RoomBusyError
            A reply is streaming; stop it (``await room.cancel()``) or wait first.

        Examples
        --------
        >>> rooms = ChatRooms()
        >>> room = rooms.room(rooms.create_room("Ideas"))
        >>> _ = rooms.runtime.run(room.send("hello"))
        >>> _ = rooms.runtime.run(room.wait())
        >>> rooms.clear_room(room.id), room.message_count()
        (2, 0)
        >>> rooms.close()
        """
        removed = self.room(room_id)._clear()
        self._host.emit(RoomEvent("cleared", room_id))
        return removed

    async def delete_room(self, room_id: str, *, reason: str = "room deleted") -> None:
        """Delete a room and its history (its file), cancelling its reply first.

        A streaming reply is cancelled with ``reason`` and waited for (its
        settlement reaches the ledger; up to the runtime's ``cancel_grace_s +
        force_wait_s`` for a handler that ignores cancel), then the room is
        removed from the registry and its database file is deleted. New sends
        to the room are refused from the moment this is called.

        Parameters
        ----------
        room_id : str
        reason : str, default ``"room deleted"``
            The cancel reason of a streaming reply (its ledger ``reason``).

        Raises
        ------
        UnknownRoomError
            No such room.

        Examples
        --------
        >>> rooms = ChatRooms()
        >>> room_id = rooms.create_room("Ideas")
        >>> rooms.runtime.run(rooms.delete_room(room_id))
        >>> room_id in rooms, len(rooms)
        (False, 0)
        >>> rooms.close()
        """
        room = self.room(room_id)
        try:
            await room._wind_down(reason)
        finally:
            self._rooms.pop(room_id, None)
            self._stores.pop(room_id, None)
            self._host.names.pop(room_id, None)
            await self._host.io(self._registry.delete, room_id)
            await room._delete_files()
            self._host.emit(RoomEvent("deleted", room_id))

    def rooms(self) -> pd.DataFrame:
        """Every room, most recently active first.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, name`` (text: object on pandas 2, str on pandas 3),
            ``message_count`` (int64; a streaming
            reply counts), ``created_at, last_active_at`` (datetime64[ns, UTC];
            a room is active when a message is sent or a reply settles).

        Examples
        --------
        >>> rooms = ChatRooms()
        >>> _ = rooms.create_room("Ideas")
        >>> df = rooms.rooms()
        >>> df[["name", "message_count"]]
            name  message_count
        0  Ideas              0
        >>> df.dtypes["last_active_at"]
        datetime64[ns, UTC]
        >>> rooms.close()
        """
        self._host.check_open()
        rows = [
            (row.id, row.name, room._count(), row.created_at, row.last_active_at)
            for row, room in self._listing()
        ]
        df = pd.DataFrame.from_records(rows, columns=ROOM_COLUMNS)
        df["message_count"] = df["message_count"].astype("int64")
        df["created_at"] = utc_column(df["created_at"])
        df["last_active_at"] = utc_column(df["last_active_at"])
        return df

    def room_infos(self) -> list[dict[str, Any]]:
        """The rooms as JSON-ready dicts (what the widget and ``GET /rooms`` show).

        Each has ``id, name, message_count, created_at, last_active_at`` (epoch
        seconds) and ``busy``; most recently active first.

        Examples
        --------
        >>> rooms = ChatRooms()
        >>> _ = rooms.create_room("Ideas")
        >>> sorted(rooms.room_infos()[0])
        ['busy', 'created_at', 'id', 'last_active_at', 'message_count', 'name']
        >>> rooms.close()
        """
        self._host.check_open()
        return [_info(row, room) for row, room in self._listing()]

    def room_info(self, room_id: str) -> dict[str, Any]:
        """One room as :meth:`room_infos` shows it (reads one registry row).

        Raises
        ------
        UnknownRoomError
            No such room.
        """
        room = self.room(room_id)
        row = self._registry.row(room_id)
        if row is None:
            raise UnknownRoomError(room_id, self._rooms)
        return _info(row, room)

    def _listing(self) -> list[tuple[RoomRow, Room]]:
        """Every room with its registry row, most recently active first."""
        rooms = self._rooms
        return [(row, rooms[row.id]) for row in self._registry.rows() if row.id in rooms]

    def sql(
        self, query: str, params: Any = (), *, timeout_s: float | None = DEFAULT_QUERY_TIMEOUT_S
    ) -> pd.DataFrame:
        """One read-only SQL query over rooms, messages of all rooms, and the ledger.

        Tables: ``rooms(id, name, created_at, last_active_at)``, ``messages(room_id,
        id, role, content, status, created_at, settled_at, stream_ref)`` (a
        snapshot of every room's history) and ``ledger.streams``,
        ``ledger.events`` (the ledger file attached read-only, or a copy of an
        in-memory ledger). Times are epoch seconds. See the module docstring.

        Parameters
        ----------
        query : str
            One SQLite statement (a ``SELECT``; writes are refused).
        params : sequence or mapping, optional
            Values for the statement's ``?`` or ``:name`` placeholders.
        timeout_s : float or None, default 10.0
            Stop the query after this many seconds (None: no limit).

        Returns
        -------
        pandas.DataFrame
            The result rows, with SQLite's column names and types (times stay
            floats).

        Raises
        ------
        LedgerQueryError
            The statement failed or tried to write, or to create a file
            (``ATTACH``, ``VACUUM INTO``), as :meth:`Ledger.sql` refuses.
        LedgerTimeoutError
            It ran longer than ``timeout_s``.

        Examples
        --------
        >>> rooms = ChatRooms()
        >>> _ = rooms.create_room("Ideas")
        >>> rooms.sql("SELECT name, (SELECT count(*) FROM messages) AS n FROM rooms")
            name  n
        0  Ideas  0
        >>> rooms.sql("DELETE FROM rooms")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        streamnb._errors.LedgerQueryError: ...
        >>> rooms.close()
        """
        self._host.check_open()
        histories = [(room_id, room._history) for room_id, room in self._rooms.items()]
        return run_query(self._registry, histories, self.ledger, query, params, timeout_s)

    # --- notifications --------------------------------------------------------------------

    def subscribe(self, listener: RoomListener) -> Callable[[], None]:
        """Call ``listener(event)`` on every :class:`RoomEvent`; returns the unsubscribe function.

        Listeners run on the thread that made the change and must not raise
        (an exception is swallowed so one listener cannot break a reply).
        :class:`~streamnb.ChatRoomsWidget` follows the registry this way.

        Examples
        --------
        >>> rooms = ChatRooms()
        >>> seen = []
        >>> unsubscribe = rooms.subscribe(lambda event: seen.append(event.kind))
        >>> rooms.rename_room(rooms.create_room("Ideas"), "Plans")
        >>> unsubscribe()
        >>> seen
        ['created', 'renamed']
        >>> rooms.close()
        """
        return self._host.subscribe(listener)

    # --- a reply's settlement -----------------------------------------------------------

    async def _settle(self, terminal: Frame, tx: LedgerTx, commit_failed: bool) -> None:
        """The rooms' part of a reply's ``commit_terminal`` (see :func:`bind_reply_handler`)."""
        reply = self._host.replies.pop(terminal.stream_ref, None)
        if reply is None:  # a stream of this kind attached directly, not through a room
            return
        room = self._rooms.get(reply.room_id)
        if room is not None:
            await room._finish(reply, terminal, tx, commit_failed)

    # --- lifecycle ------------------------------------------------------------------------

    def _replace(self) -> tuple[int | None, set[str]]:
        """A new ``ChatRooms`` of this process opens the same directory (a re-run cell).

        Every streaming reply is cancelled with reason ``"replaced"`` and this registry
        closes (with the runtime it made). Without a running loop, or with no reply in
        flight, that happens now. On the runtime's running loop (a notebook cell) with
        replies in flight, a task owned by :mod:`streamnb._takeover` settles them and
        closes; the directory's lock goes to the new registry at once.

        Returns
        -------
        (int or None, set of str)
            The lock's file descriptor handed over (None when released) and the ids of
            the assistant messages still being settled here.
        """
        if self._host.state is not Lifecycle.OPEN:
            return None, set()
        self._close_reason = _takeover.REPLACED_REASON
        runtime = self.runtime
        loop = runtime.loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or loop.is_closed() or running is not loop:
            if running is None and loop is not None and not loop.is_closed() and loop.is_running():
                limit_s = runtime.cancel_grace_s + runtime.force_wait_s + REPLACE_WAIT_S
                asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(limit_s)
            elif running is None:
                self.close()
            else:  # pragma: no cover - its loop is stopped while another one runs here
                self._close_now()
            return None, set()
        replies = [r for r in (room._in_flight() for room in self._rooms.values()) if r]
        if not replies and not (self._owns_runtime and runtime.active_refs()):
            self._close_now()
            return None, set()
        fd = self._dir_lock.hand_over()
        task = loop.create_task(self.aclose(), name="streamnb:replaced-rooms")
        _takeover.retire(task)
        return fd, {reply.message_id for reply in replies}

    def _close_now(self) -> None:
        """Close with nothing left to settle, without waiting on the loop."""
        host = self._host
        host.state = Lifecycle.CLOSING
        try:
            if self._owns_runtime:
                self.runtime._replace()
                self.runtime.ledger.close()
        finally:
            self._close_stores()
            host.state = Lifecycle.CLOSED

    async def aclose(self) -> None:
        """Stop every streaming reply (reason ``"rooms closed"``), then close the databases.

        Each reply settles as usual (its partial text is stored ``cancelled``).
        A runtime this registry made is closed with its ledger; one passed in is
        left open. Idempotent.
        """
        host = self._host
        if host.state is not Lifecycle.OPEN:
            return
        host.state = Lifecycle.CLOSING
        runtime = host.runtime
        try:
            replies = [r for r in (room._in_flight() for room in self._rooms.values()) if r]
            for reply in replies:
                if reply.stream_ref is not None:
                    with contextlib.suppress(Exception):
                        await runtime.cancel(reply.stream_ref, self._close_reason)
            for reply in replies:
                await reply.done.wait()
            if self._owns_runtime:
                await runtime.aclose()
                runtime.ledger.close()
        finally:
            self._close_stores()
            host.state = Lifecycle.CLOSED

    def close(self) -> None:
        """Synchronous :meth:`aclose` (through ``runtime.run``); a runtime this registry
        made is closed too. Idempotent."""
        if self.closed:
            return
        self.runtime.run(self.aclose())
        if self._owns_runtime:
            self.runtime.close()

    def _close_stores(self) -> None:
        try:
            finalizer = getattr(self, "_finalizer", None)
            if finalizer is not None:
                finalizer()
                return
            # __init__ failed half way: close what it opened
            for room in self._rooms.values():
                room._close()
            _release(self._dir_lock, getattr(self, "_registry", None), {}, None)
        finally:
            if self._key is not None:
                _takeover.release("rooms", self._key, self)

    async def __aenter__(self) -> ChatRooms:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _info(row: RoomRow, room: Room) -> dict[str, Any]:
    """A room as ``room_infos`` shows it (its count is cached: no file opens)."""
    return {
        "id": row.id,
        "name": row.name,
        "message_count": room._count(),
        "created_at": row.created_at,
        "last_active_at": row.last_active_at,
        "busy": room.busy,
    }


class _DirectoryLock:
    """The file descriptor of a directory's ``registry.db.lock`` while it is held.

    Shared by a :class:`ChatRooms` and its finalizer, so that a lock handed over to the
    registry replacing it (a re-run cell) is not released when the old one closes.
    """

    __slots__ = ("fd",)

    def __init__(self) -> None:
        self.fd: int | None = None

    def hand_over(self) -> int | None:
        """Give the descriptor away (a takeover); this holder no longer releases it."""
        fd, self.fd = self.fd, None
        return fd

    def release(self) -> None:
        """Unlock and close the descriptor, if still held. Idempotent."""
        fd, self.fd = self.fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def _release(
    lock: _DirectoryLock,
    registry: RegistryStore | None,
    stores: dict[str, RoomStore],
    executor: ThreadPoolExecutor | None,
) -> None:
    """Close a registry's files and release its directory (``aclose``, or the finalizer)."""
    if executor is not None:
        executor.shutdown(wait=True)
    for store in list(stores.values()):
        store.close()
    if registry is not None:
        registry.close()
    lock.release()


def _weak_settle(rooms: ChatRooms) -> SettleHook:
    """``rooms._settle`` through a weak reference: a no-op once the registry is gone."""
    ref = weakref.WeakMethod(rooms._settle)

    async def settle(terminal: Frame, tx: LedgerTx, commit_failed: bool) -> None:
        method = ref()
        if method is not None:
            await method(terminal, tx, commit_failed)

    return settle
