"""One chat room: its messages, and at most one reply streaming at a time.

A turn (seed 004's ``chatStream``): ``await room.send(text)`` stores the user
message together with a placeholder assistant message (status ``streaming``),
attaches a reply stream whose start payload is the room's history, hands it the
text, and returns the stream's :class:`~streamnb.Session` once the reply has
started. While it streams, its text is checkpointed into the room's file
(:mod:`.checkpoint`), so a killed process leaves the reply ``interrupted`` with
the text checkpointed so far. When the stream settles, the reply's text (the
partial text when it was stopped) and its status are written into the
placeholder from the handler's ``commit_terminal``, together with a
``room.reply.settled`` ledger event; the room is free again once the terminal
frame is announced.

A room reaches its registry only through the :class:`~streamnb.rooms._host.RoomHost`
it is given (runtime, I/O thread, names, listeners, the index of streaming replies).
The registry drives a room through the methods under "driven by the registry"
(clear, delete, settle, close); it changes no attribute of a room itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass

import pandas as pd

from .._dataframes import utc_column
from .._errors import StreamnbError, StreamTimeoutError, UnknownStreamError
from .._frames import Frame
from .._ledger import LedgerTx
from .._lifecycle import Lifecycle
from .._runtime import CancelResult, Session
from .._text import mend
from ._host import Reply, RoomHost
from .checkpoint import checkpoint_reply
from .errors import RoomBusyError, RoomError, UnknownRoomError
from .events import RoomEvent
from .reply import REPLY_CHANNEL, SETTLED_EVENT
from .store import Message, RoomStore

__all__ = ["ActiveReply", "Room"]

MESSAGE_COLUMNS = ["id", "role", "content", "status", "created_at", "stream_ref"]


def new_message_id() -> str:
    """A fresh message id, ``msg_`` and 16 hex digits."""
    return "msg_" + secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class ActiveReply:
    """The reply a room is streaming: its stream and the two messages of the turn.

    ``GET /rooms/{id}`` shows it as ``active_reply``; ``GET /rooms/{id}/stream``
    sends it as the first event (seed 004's resume names the reply the same way).
    """

    room_id: str
    stream_ref: str
    message_id: str
    user_message_id: str


class Room:
    """A chat room: isolated history, one streaming reply at a time, cancel and resume.

    Get one from :meth:`ChatRooms.room` (never construct it). All methods raise
    :class:`~streamnb.rooms.UnknownRoomError` once the room was deleted and
    :class:`~streamnb.rooms.RoomError` once the registry was closed.

    Examples
    --------
    A turn, then a stopped turn (a slow fake source, so Stop lands mid-reply):

    >>> from streamnb.providers import FakeTokenSource, lorem_tokens
    >>> from streamnb.rooms import ChatRooms, room_reply_handler
    >>> slow = FakeTokenSource(lorem_tokens(200), rate_tokens_per_s=200)
    >>> rooms = ChatRooms(handler_factory=lambda kind: room_reply_handler(kind, slow))
    >>> room = rooms.room(rooms.create_room("Ideas"))
    >>> async def stopped_turn(text):
    ...     session = await room.send(text)
    ...     async for frame in session.output:  # Stop after the first token
    ...         if frame.kind == "output":
    ...             await room.cancel("enough")
    ...             break
    ...     return await room.wait(timeout_s=10)
    >>> message = rooms.runtime.run(stopped_turn("tell me everything"))
    >>> message.status, 0 < len(message.content) < len("".join(lorem_tokens(200)("x")))
    ('cancelled', True)
    >>> room.messages()[["role", "status"]]
            role     status
    0       user       sent
    1  assistant  cancelled
    >>> rooms.close()
    """

    def __init__(self, host: RoomHost, room_id: str, store: RoomStore) -> None:
        self._host = host
        self.id = room_id
        self._store = store
        self._reply: Reply | None = None
        self._last_message_id: str | None = None
        #: ``CLOSING`` from ``delete_room`` on (sends refused), ``CLOSED`` once deleted
        self._state = Lifecycle.OPEN

    # --- state --------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The room's current name."""
        self._check()
        return self._host.name_of(self.id)

    @property
    def busy(self) -> bool:
        """True from :meth:`send` until the reply's terminal frame is announced."""
        return self._reply is not None

    @property
    def path(self) -> str | None:
        """The room's database file, or None for an in-memory registry."""
        return None if self._store.path is None else str(self._store.path)

    def _check(self) -> None:
        self._host.check_open()
        if self._state is not Lifecycle.OPEN:
            raise UnknownRoomError(self.id, self._host.room_ids())

    def messages(self) -> pd.DataFrame:
        """The room's messages, oldest first.

        Returns
        -------
        pandas.DataFrame
            Columns ``id, role, content, status`` (text: object on pandas 2, str
            on pandas 3), ``created_at``
            (datetime64[ns, UTC]) and ``stream_ref`` (object: the turn's reply
            stream, for joins with the ledger). ``status`` is ``sent`` for user
            messages; for replies ``streaming``, then ``completed``,
            ``cancelled`` (the text produced before Stop), ``failed`` or
            ``interrupted`` (the process died mid-reply).
        """
        self._check()
        rows = [
            (m.id, m.role, m.content, m.status, m.created_at, m.stream_ref)
            for m in self._store.messages()
        ]
        df = pd.DataFrame.from_records(rows, columns=MESSAGE_COLUMNS)
        df["created_at"] = utc_column(df["created_at"])
        return df

    def message_list(self) -> list[Message]:
        """The room's messages as :class:`~streamnb.rooms.Message` objects, oldest first.

        Examples
        --------
        >>> from streamnb.rooms import ChatRooms
        >>> rooms = ChatRooms()
        >>> room = rooms.room(rooms.create_room("Ideas"))
        >>> _ = rooms.runtime.run(room.send("hi"))
        >>> [(m.role, m.content) for m in rooms.runtime.run(room.wait()) and room.message_list()]
        [('user', 'hi'), ('assistant', 'streamnb reply to hi (turn 1)')]
        >>> rooms.close()
        """
        self._check()
        return self._store.messages()

    def message_count(self) -> int:
        """How many messages the room holds (a streaming reply counts)."""
        self._check()
        return self._store.count()

    def active_stream(self) -> Session | None:
        """The session of the reply streaming now (the one :meth:`send` returned), or None.

        Show it with ``display(session)`` or read ``session.output``.
        """
        reply = self._reply
        return None if reply is None else reply.session

    def active_reply(self) -> ActiveReply | None:
        """Ids of the reply streaming now (stream, assistant and user message), or None."""
        reply = self._reply
        if reply is None or reply.stream_ref is None:
            return None
        return ActiveReply(self.id, reply.stream_ref, reply.message_id, reply.user_id)

    # --- a turn --------------------------------------------------------------------------

    async def send(self, text: str) -> Session:
        """Store ``text`` as a user message and start the reply; returns its session.

        Returns once the reply stream is attached and has the message, not when
        it ends: read ``session.output``, show it with a widget, or ``await
        room.wait()``. The session is the reply's first observer; detaching it
        does not stop the reply (use :meth:`cancel`).

        Parameters
        ----------
        text : str
            The message; must contain more than white space. Lone UTF-16
            surrogates (half an emoji) are stored as U+FFFD, a split pair as
            its character (:mod:`streamnb._text`).

        Returns
        -------
        Session
            The reply stream's session (``stream_ref`` is stored on both messages).

        Raises
        ------
        RoomBusyError
            A reply is already streaming in this room.
        RoomError
            ``text`` is empty, or the room's database could not be written.
        TypeError
            ``text`` is not a ``str``.
        UnknownRoomError
            The room was deleted (also while this call was starting the reply:
            the reply is then cancelled).
        StartRejectedError, RuntimeClosedError
            The reply stream could not be attached; nothing is stored.
        """
        self._check()
        if not isinstance(text, str):
            raise TypeError(f"send() takes the message text as a str, got {type(text).__name__}")
        text = mend(text)  # lone surrogates (half an emoji) cannot be stored: U+FFFD
        if not text.strip():
            raise RoomError("the message is empty; type some text to send")
        if self._reply is not None:
            raise RoomBusyError(self.id, self._reply.stream_ref)
        host = self._host
        runtime = host.runtime
        now = time.time()
        user = Message(new_message_id(), "user", text, "sent", now, None, None)
        placeholder = Message(new_message_id(), "assistant", "", "streaming", now, None, None)
        reply = Reply(self.id, user.id, placeholder.id)
        self._reply = reply  # claimed before the first await: a second send is refused
        stored = False
        try:
            history = await host.io(self._store.add_turn, user, placeholder)
            stored = True
            prior = [{"role": m.role, "content": m.content} for m in history if m.content]
            bidi = runtime.handler(host.kind).mode == "bidi"
            new = [] if bidi else [{"role": "user", "content": text}]
            session = await runtime.attach(host.kind, {"messages": prior + new})
        except BaseException:
            self._reply = None
            if stored:
                with contextlib.suppress(StreamnbError):
                    await asyncio.shield(host.io(self._store.remove, user.id, placeholder.id))
            raise
        # No await between attach and here: the stream cannot settle before it is indexed.
        ref = session.stream_ref
        reply.stream_ref = ref
        reply.session = session
        self._last_message_id = placeholder.id
        host.replies[ref] = reply
        written = False
        try:
            await host.io(self._started_write, ref, user.id, placeholder.id, now)
            written = True
        finally:
            # started before settled: the watcher that announces the end comes second
            host.emit(RoomEvent("reply_started", self.id, placeholder.id, ref))
            loop = asyncio.get_running_loop()
            if written and host.checkpoint_s is not None:
                reply.checkpoint = loop.create_task(
                    self._checkpoint(reply), name=f"streamnb:room:{self.id}:{ref}:checkpoint"
                )
            reply.watch = loop.create_task(
                self._watch(reply), name=f"streamnb:room:{self.id}:{ref}"
            )
            deleted = self._state is not Lifecycle.OPEN
            if deleted or not written:  # deleted meanwhile, or the write failed
                with contextlib.suppress(StreamnbError):
                    await runtime.cancel(ref, "room deleted" if deleted else "room error")
        if self._state is not Lifecycle.OPEN:
            raise UnknownRoomError(self.id, host.room_ids())
        if bidi:
            # Refused only if the reply is already ending (e.g. a delete cancelled it); the
            # stream settles either way and the placeholder gets its final status.
            with contextlib.suppress(StreamnbError):
                await session.send(text)
        return session

    def _started_write(self, stream_ref: str, user_id: str, message_id: str, at: float) -> None:
        """Store the turn's stream ref and mark the room active (on the I/O thread)."""
        self._store.set_stream_ref(stream_ref, user_id, message_id)
        self._host.touch(self.id, at)

    async def _checkpoint(self, reply: Reply) -> int:
        """Checkpoint the reply's text while it streams (a task of the room's; see
        _stop_checkpoint)."""
        host = self._host
        assert reply.stream_ref is not None and host.checkpoint_s is not None
        message_id = reply.message_id

        async def write(pos: int, text: str) -> None:
            await host.io(self._store.checkpoint, message_id, pos, text)

        try:
            return await checkpoint_reply(
                host.runtime,
                reply.stream_ref,
                write,
                interval_s=host.checkpoint_s,
                max_bytes=host.checkpoint_bytes,
            )
        except StreamnbError:  # a failed write: the settlement still writes the text
            return -1

    @staticmethod
    async def _stop_checkpoint(reply: Reply) -> None:
        """Cancel and await the reply's checkpoint task (the settlement writes the text)."""
        task, reply.checkpoint = reply.checkpoint, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _watch(self, reply: Reply) -> None:
        """Free the room once the reply's terminal frame is announced (owned by the room)."""
        assert reply.stream_ref is not None
        try:
            with contextlib.suppress(UnknownStreamError):
                await self._host.runtime.wait(reply.stream_ref)
        finally:
            await self._stop_checkpoint(reply)
            if self._reply is reply:
                self._reply = None
            reply.done.set()
            self._host.emit(RoomEvent("reply_settled", self.id, reply.message_id, reply.stream_ref))

    async def wait(self, timeout_s: float | None = None) -> Message | None:
        """Wait until no reply is streaming; return the last reply's stored message.

        When it returns, the message has its final status and text and the
        stream's settlement is in the ledger.

        Parameters
        ----------
        timeout_s : float, optional
            Seconds to wait at most (the reply keeps streaming after a timeout).

        Returns
        -------
        Message or None
            The assistant message of the latest reply sent through this object
            (else the room's last assistant message); None if there is none.

        Raises
        ------
        StreamTimeoutError
            ``timeout_s`` passed first.

        Examples
        --------
        >>> from streamnb.rooms import ChatRooms
        >>> rooms = ChatRooms()
        >>> room = rooms.room(rooms.create_room("Ideas"))
        >>> rooms.runtime.run(room.wait()) is None  # no reply yet
        True
        >>> _ = rooms.runtime.run(room.send("hello"))
        >>> rooms.runtime.run(room.wait(timeout_s=10)).status
        'completed'
        >>> rooms.close()
        """
        self._check()
        reply = self._reply
        if reply is not None:
            try:
                await asyncio.wait_for(reply.done.wait(), timeout_s)
            except asyncio.TimeoutError:
                raise StreamTimeoutError(float(timeout_s or 0), 0) from None
        if self._state is not Lifecycle.OPEN:
            return None
        if self._last_message_id is not None:
            found = self._store.get(self._last_message_id)
            if found is not None:
                return found
        replies = [m for m in self._store.messages() if m.role == "assistant"]
        return replies[-1] if replies else None

    async def cancel(self, reason: str = "cancelled") -> CancelResult | None:
        """Stop the streaming reply (cooperative cancel); None when nothing streams.

        Returns at once with the runtime's answer (``"requested"``, ...); the
        partial text is stored with status ``cancelled`` when the stream settles
        (``await room.wait()``). Seed 004 has no Stop; this is streamnb's cancel
        (see the class example).

        Parameters
        ----------
        reason : str, default ``"cancelled"``
            Recorded as the stream's cancel reason (the widget's Stop gives
            ``"user pressed stop"``).

        Returns
        -------
        str or None
            ``"requested"``, ``"already_requested"`` or ``"already_settled"``;
            None when no reply streams.
        """
        self._check()
        reply = self._reply
        if reply is None or reply.stream_ref is None:
            return None
        return await self._host.runtime.cancel(reply.stream_ref, reason)

    async def resume(self, after_seq: int | None = None) -> Session | None:
        """Re-attach to the streaming reply (seed 004's resume-request); None when idle.

        The new session first replays the frames already produced after
        ``after_seq`` (all of them for ``None``) and then continues live, each
        frame once: pass the ``seq`` of the last frame you saw to get no
        duplicates. Detaching it does not stop the reply.

        Parameters
        ----------
        after_seq : int, optional
            The last frame seq already seen; ``None`` replays from ``opened``.

        Returns
        -------
        Session or None
            A new observer of the reply stream; None when no reply streams.

        Examples
        --------
        >>> from streamnb.rooms import ChatRooms
        >>> rooms = ChatRooms()
        >>> room = rooms.room(rooms.create_room("Ideas"))
        >>> rooms.runtime.run(room.resume()) is None  # idle: nothing to resume
        True
        >>> rooms.close()
        """
        self._check()
        reply = self._reply
        if reply is None or reply.stream_ref is None:
            return None
        return await self._host.runtime.reattach(reply.stream_ref, after_seq)

    def __repr__(self) -> str:
        if self._state is not Lifecycle.OPEN:
            return f"<Room {self.id} deleted>"
        state = "busy" if self.busy else "idle"
        try:
            return f"<Room {self.id} {self._host.name_of(self.id)!r} {state}>"
        except StreamnbError:
            return f"<Room {self.id} closed>"

    # --- driven by the registry (ChatRooms) ----------------------------------------------
    # Unchecked on purpose: the registry calls them while the room is being deleted or the
    # registry is closing, when the public methods above refuse.

    def _count(self) -> int:
        """How many messages the room holds."""
        return self._store.count()

    def _history(self) -> list[Message]:
        """Every message, oldest first."""
        return self._store.messages()

    def _clear(self) -> int:
        """Delete every message; returns how many.

        Raises
        ------
        RoomBusyError
            A reply is streaming.
        """
        if self._reply is not None:
            raise RoomBusyError(self.id, self._reply.stream_ref)
        removed = self._store.clear()
        self._last_message_id = None
        return removed

    async def _wind_down(self, reason: str) -> None:
        """Refuse new sends from now on; cancel the streaming reply and wait for it to settle."""
        self._state = Lifecycle.CLOSING
        reply = self._reply
        if reply is not None and reply.stream_ref is not None:
            await self._host.runtime.cancel(reply.stream_ref, reason)
            await reply.done.wait()

    async def _delete_files(self) -> None:
        """Close the room's database and delete its file (on the I/O thread)."""
        await self._host.io(self._store.delete_files)
        self._state = Lifecycle.CLOSED

    def _in_flight(self) -> Reply | None:
        """The reply claimed by a ``send`` and not yet announced settled, or None."""
        return self._reply

    async def _finish(
        self, reply: Reply, terminal: Frame, tx: LedgerTx, commit_failed: bool
    ) -> None:
        """Write the settled reply: its text and status, and the ``room.reply.settled`` event.

        Runs inside the reply stream's ``commit_terminal`` (see
        :func:`~streamnb.rooms.reply.bind_reply_handler`); the event joins the
        stream's settlement transaction.
        """
        await self._stop_checkpoint(reply)
        ref = terminal.stream_ref
        text, _ = self._host.runtime.output_text(ref, REPLY_CHANNEL)
        status = "failed" if commit_failed else terminal.kind
        # shielded: if the runtime's commit timeout fires, the row is still written
        await asyncio.shield(
            self._host.io(self._finished_write, reply.message_id, text, status, terminal.at, ref)
        )
        if not commit_failed:
            tx.insert_event(
                SETTLED_EVENT,
                {"room_id": self.id, "message_id": reply.message_id, "kind": terminal.kind},
            )

    def _finished_write(
        self, message_id: str, text: str, status: str, at: float, stream_ref: str
    ) -> None:
        self._store.finish(message_id, text, status, at, stream_ref)
        self._host.touch(self.id, at)

    def _close(self) -> None:
        """Close the room's database (the registry is closing)."""
        self._store.close()
