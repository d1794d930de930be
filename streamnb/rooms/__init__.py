"""streamnb.rooms: many conversations, each with its own SQLite history (seed 004).

* :class:`ChatRooms` - the registry: ``create_room``, ``rename_room``,
  ``clear_room``, ``delete_room``, ``rooms()``, ``room(id)`` and ``sql()``; in
  memory, or a directory with ``registry.db`` and one ``rooms/<room_id>.db`` per room.
* :class:`Room` - one room: ``messages()``, ``await send(text)``, ``await wait()``,
  ``await cancel()``, ``active_stream()``, ``await resume(after_seq)``.
* :func:`room_reply_handler` - the default reply (the seeds' fake tokens, told the
  room's history); any handler works through ``handler_factory``.

The rooms in JupyterLab are :class:`streamnb.ChatRoomsWidget` (in the widget layer,
:mod:`streamnb.widget`): this package imports only the core and the fake provider,
nothing from Jupyter.

Replies run as attached streams of one :class:`~streamnb.StreamRuntime`; each
settled reply is a ledger settlement with a ``room.reply.settled`` event. While a
reply streams, its text is checkpointed into the room's file
(:mod:`streamnb.rooms.checkpoint`), so a killed process loses at most the last
0.25 s (or 4 KB) of it.
"""

from __future__ import annotations

from .errors import RoomBusyError, RoomError, RoomExistsError, RoomNameError, UnknownRoomError
from .events import RoomEvent
from .registry import MAX_NAME_CHARS, ChatRooms
from .reply import DEFAULT_KIND, REPLY_CHANNEL, SETTLED_EVENT, room_reply_handler
from .room import ActiveReply, Room
from .store import Message

__all__ = [
    "DEFAULT_KIND",
    "MAX_NAME_CHARS",
    "REPLY_CHANNEL",
    "SETTLED_EVENT",
    "ActiveReply",
    "ChatRooms",
    "Message",
    "Room",
    "RoomBusyError",
    "RoomError",
    "RoomEvent",
    "RoomExistsError",
    "RoomNameError",
    "UnknownRoomError",
    "room_reply_handler",
]
