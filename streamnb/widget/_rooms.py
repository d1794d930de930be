"""``ChatRoomsWidget``: every room of a :class:`~streamnb.rooms.ChatRooms` in one widget.

The Jupyter side of seed 004's client: a sidebar listing the rooms (``listbox``;
**New room**), the selected room's transcript (``log``), **Rename**, **Clear**,
**Delete**, and the **Message** box with **Send** and **Stop**. The room list is
a small synced trait (``room_list``, message counts and busy flags included), so
it updates live in every view. Which room a view shows is that view's own state
in the browser (seed 004's per-connection ``activeRoomId``): two views of one
widget, or a view after a page reload, may show different rooms.

Transcripts travel as custom messages (:mod:`streamnb.widget._protocol`): a view
asks for its room's messages with ``open``; a streaming reply is followed with the
stream widget's batcher (:class:`~streamnb.widget._batcher.Follower`), at most one
delta per ``flush_interval_s`` per reply, tagged with its room and message, and
never the whole text again. Like the other widgets it is a
:class:`~streamnb.widget._base.LoopWidget`: requests are checked where they
arrive and acted on on the runtime's loop. The widget only observes: closing it
neither stops replies nor closes the rooms.

Saved notebooks (see ``_saved.py``): like :class:`~streamnb.ChatWidget` it is shown as
the live widget plus a copy of every room's transcript, refreshed (at most every
``SAVE_INTERVAL_S``) when a reply settles or a room changes; the live view hides the
copy, which is what a notebook saved meanwhile shows without a kernel. ``close()``
turns the live output into that transcript.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from typing import Any

import traitlets

from .._errors import StreamnbError
from ..rooms import REPLY_CHANNEL, ChatRooms, RoomEvent
from ._assets import css, esm
from ._base import STOP_REASON, LoopWidget, error_text
from ._batcher import DEFAULT_FLUSH_INTERVAL_S, Follower, check_flush_interval
from ._markdown import MarkdownRendering, render_traits
from ._protocol import (
    CreatedMsg,
    DeltaMsg,
    ErrorMsg,
    MessagesMsg,
    ReplySnapshot,
    RoomDeltaMsg,
    RoomRequest,
    parse_room_request,
)
from ._saved import LiveWithSavedCopy
from ._transcript import Bundle, rooms_bundle

__all__ = ["SAVE_INTERVAL_S", "ChatRoomsWidget"]

#: seconds between two refreshes of the saved transcript copy
SAVE_INTERVAL_S = 0.5


class ChatRoomsWidget(LoopWidget, MarkdownRendering, LiveWithSavedCopy):
    """Chat rooms in JupyterLab: switch, create, rename, clear, delete; send and stop.

    Parameters
    ----------
    rooms : ChatRooms
        The registry to show. Its runtime should run on the kernel's loop
        (create the widget in a notebook cell).
    render : {"markdown", "text"}, default "markdown"
        ``"markdown"``: replies render as CommonMark + GFM (tables, strikethrough,
        autolinks, code blocks with a Copy button), streamed block by block; the user's
        messages stay text. ``"text"``: every character as written. Raw HTML is never
        interpreted either way.
    flush_interval_s : float, default 0.033
        Seconds between two deltas of one reply (0.001 to 5).

    Attributes
    ----------
    room_list : list of dict
        ``{"id", "name", "message_count", "busy", "created_at",
        "last_active_at"}`` per room, most recently active first (synced, live).
    error : str
        The last error not tied to one view (e.g. the kernel's loop is closed).

    Raises
    ------
    TypeError
        ``rooms`` is not a :class:`ChatRooms`.
    ValueError
        ``flush_interval_s`` is out of range, or ``render`` is not ``"markdown"`` or
        ``"text"``.

    Examples
    --------
    Shown by ending a cell with ``widget``; without a front end the room list
    still follows the registry:

    >>> import streamnb as sn
    >>> from streamnb.rooms import ChatRooms
    >>> rooms = ChatRooms()
    >>> room = rooms.room(rooms.create_room("Ideas"))
    >>> async def chat_in(room, text):
    ...     widget = sn.ChatRoomsWidget(rooms)
    ...     await room.send(text)
    ...     return widget, await widget.wait(timeout_s=30)
    >>> widget, state = rooms.runtime.run(chat_in(room, "hello"))
    >>> state, [(r["name"], r["message_count"], r["busy"]) for r in widget.room_list]
    ('idle', [('Ideas', 2, False)])
    >>> widget.close()
    >>> rooms.close()
    """

    _esm = esm("common.js", "rooms.js")
    _css = css("widget.css", "rooms.css")  # the stream widgets' base styles, then the layout
    _task_prefix = "streamnb:rooms-widget"
    _loop_closed_error = "the runtime's event loop is closed; the rooms cannot be reached"

    room_list = traitlets.List(traitlets.Dict()).tag(sync=True)
    main_channel = traitlets.Unicode(REPLY_CHANNEL).tag(sync=True)
    _uid = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        rooms: ChatRooms,
        *,
        render: str = "markdown",
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        **kwargs: Any,
    ) -> None:
        if not isinstance(rooms, ChatRooms):
            raise TypeError(f"ChatRoomsWidget takes a ChatRooms, got {type(rooms).__name__}")
        interval_s = check_flush_interval(flush_interval_s)
        super().__init__(
            _uid=uuid.uuid4().hex, room_list=rooms.room_infos(), **render_traits(render), **kwargs
        )
        self._rooms = rooms
        self._interval = interval_s
        #: room_id -> (message_id, follower) of each streaming reply
        self._followers: dict[str, tuple[str, Follower]] = {}
        self._attach_loop(rooms.runtime)
        self._unsubscribe = rooms.subscribe(self._on_event_any_thread)
        self._bridge.call(self._follow_active)

    # --- public ------------------------------------------------------------------------

    @property
    def rooms(self) -> ChatRooms:
        """The registry this widget shows."""
        return self._rooms

    async def wait(self, timeout_s: float | None = None) -> str:
        """Wait until no room has a streaming reply and every reply was flushed.

        Returns ``"idle"``. Raises :class:`TimeoutError` after ``timeout_s`` seconds.
        """

        async def idle() -> None:
            while True:
                busy = [room_id for room_id in self._rooms if self._rooms.room(room_id).busy]
                for room_id in busy:
                    await self._rooms.room(room_id).wait()
                for _, follower in list(self._followers.values()):
                    await follower.wait()
                if not busy and not self._followers:
                    return

        try:
            await asyncio.wait_for(idle(), timeout_s)
        except asyncio.TimeoutError:
            raise TimeoutError(f"replies were still streaming after {timeout_s} s") from None
        return "idle"

    def close(self) -> None:
        """Stop following replies and close the widget's views (the rooms keep running);
        a displayed widget's output becomes the rooms' transcript."""
        was_closed = self._closed
        if not self._closed and hasattr(self, "_unsubscribe"):
            self._unsubscribe()
        super().close()
        rooms = getattr(self, "_rooms", None)  # None when __init__ failed half way
        if not was_closed and rooms is not None and not rooms.closed:
            self._show_closed()

    # --- display (see _saved.py): the live widget, and a saved copy of every room ------

    _save_timer: asyncio.TimerHandle | None = None

    def transcript_bundle(self, saved: bool = False) -> Bundle:
        """Every room and its settled messages as ``text/html`` and ``text/plain``.

        ``saved``: the copy shown below the live widget, which its live view hides.
        """
        rooms = self._rooms
        listing = [] if rooms.closed else rooms.room_infos()
        return rooms_bundle(
            [
                (
                    info["name"],
                    [
                        m.to_dict()
                        for m in rooms.room(info["id"]).message_list()
                        if m.status != "streaming"
                    ],
                )
                for info in listing
            ],
            render=self.render,
            saved_for=self._uid if saved else None,
        )

    def _schedule_save(self) -> None:
        if not self._displayed or self._closed or self._save_timer is not None:
            return
        loop = self._bridge.loop
        if loop is None:
            return
        self._save_timer = loop.call_later(SAVE_INTERVAL_S, self._save_transcript)

    def _save_transcript(self) -> None:
        self._save_timer = None
        if not self._rooms.closed:
            self._save_copy()

    def __repr__(self) -> str:
        return f"<ChatRoomsWidget rooms={len(self.room_list)}>"

    # --- registry events -----------------------------------------------------------------

    def _on_event_any_thread(self, event: RoomEvent) -> None:
        self._bridge.call(self._on_event, event)

    def _on_event(self, event: RoomEvent) -> None:
        if self._closed or self._rooms.closed:
            return
        self._refresh_list()
        if event.kind != "reply_started":
            self._schedule_save()
        room_id = event.room_id
        if event.kind == "reply_started":
            assert event.message_id is not None and event.stream_ref is not None
            # follow first, so the pushed messages carry the reply's (empty) snapshot
            self._follow(room_id, event.message_id, event.stream_ref)
            self._push_messages(room_id, None)
        elif event.kind == "reply_settled":
            entry = self._followers.get(room_id)
            if entry is not None and entry[0] == event.message_id:
                # the pushed messages hold the final text; a last delta is not needed
                entry[1].stop()
                del self._followers[room_id]
            if room_id in self._rooms:
                self._push_messages(room_id, None)
        elif event.kind == "cleared":
            self._push_messages(room_id, None)

    def _refresh_list(self) -> None:
        if not self._rooms.closed:
            self.room_list = self._rooms.room_infos()

    def _follow_active(self) -> None:
        for room_id in self._rooms:
            active = self._rooms.room(room_id).active_reply()
            if active is not None:
                self._follow(room_id, active.message_id, active.stream_ref)

    def _follow(self, room_id: str, message_id: str, stream_ref: str) -> None:
        old = self._followers.pop(room_id, None)
        if old is not None:
            old[1].stop()

        def emit(delta: DeltaMsg, _settled: bool) -> None:
            if self._closed:
                return
            msg: RoomDeltaMsg = {
                "type": "delta",
                "room_id": room_id,
                "message_id": message_id,
                "from_seq": delta["from_seq"],
                "to_seq": delta["to_seq"],
                "text": delta["chunks"].get(REPLY_CHANNEL, ""),
                "status": delta["status"],
            }
            self.send(msg)

        follower = Follower(self._rooms.runtime, stream_ref, emit, self._interval)
        self._followers[room_id] = (message_id, follower)
        follower.start()

    def _push_messages(self, room_id: str, view: str | None) -> None:
        room = self._rooms.room(room_id)
        reply: ReplySnapshot | None = None
        entry = self._followers.get(room_id)
        if entry is not None and room.busy:
            message_id, follower = entry
            reply = {
                "message_id": message_id,
                "upto_seq": follower.upto_seq,
                "text": follower.texts().get(REPLY_CHANNEL, ""),
                "status": follower.status,
            }
        msg: MessagesMsg = {
            "type": "messages",
            "view": view,
            "room_id": room_id,
            "messages": [
                {k: v for k, v in m.to_dict().items() if k != "settled_at"}
                for m in room.message_list()
            ],
            "reply": reply,
        }
        self.send(msg)

    # --- requests from the views ---------------------------------------------------------

    def _parse(self, content: Any) -> RoomRequest:
        return parse_room_request(content)

    def _refuse(self, content: Any, exc: ValueError) -> None:
        view = content.get("view") if isinstance(content, dict) else None
        self._bridge.call(self._send_error, view if isinstance(view, str) else None, None, exc)

    def _handle(self, request: RoomRequest) -> None:
        if self._closed:
            return
        view, room_id = request["view"], request["room_id"]
        try:
            kind = request["type"]
            if kind == "open":
                self._push_messages(room_id, view)
            elif kind == "send":
                room = self._rooms.room(room_id)
                self._spawn_for(room.send(request["text"]), view, room_id)
            elif kind == "stop":
                self._spawn_for(self._rooms.room(room_id).cancel(STOP_REASON), view, room_id)
            elif kind == "create":
                new_id = self._rooms.create_room(request["name"] or self._default_name())
                created: CreatedMsg = {"type": "created", "view": view, "room_id": new_id}
                self.send(created)
            elif kind == "rename":
                self._rooms.rename_room(room_id, request["name"])
            elif kind == "clear":
                self._rooms.clear_room(room_id)
            else:
                self._rooms.room(room_id)
                self._spawn_for(self._rooms.delete_room(room_id), view, room_id)
        except (StreamnbError, ValueError) as exc:
            self._send_error(view, room_id or None, exc)

    def _default_name(self) -> str:
        names = {r["name"] for r in self.room_list}
        n = len(names) + 1
        for i in range(1, n + 1):
            if f"Room {i}" not in names:
                return f"Room {i}"
        return f"Room {n}"  # pragma: no cover - the loop always finds one

    def _spawn_for(self, coro: Coroutine[Any, Any, Any], view: str, room_id: str) -> None:
        self._spawn(coro, room_id, lambda exc: self._send_error(view, room_id, exc))

    def _send_error(self, view: str | None, room_id: str | None, exc: BaseException) -> None:
        text = error_text(exc)
        if self._closed:
            return
        msg: ErrorMsg = {"type": "error", "view": view, "room_id": room_id, "message": text}
        self.send(msg)
        if view is None:
            self.error = text

    def _shutdown(self) -> None:
        if self._save_timer is not None:
            self._save_timer.cancel()
            self._save_timer = None
        for _, follower in self._followers.values():
            follower.stop()
        self._followers.clear()
        for task in list(self._tasks):
            task.cancel()
