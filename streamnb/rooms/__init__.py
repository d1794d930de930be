"""streamnb.rooms: many conversations, each with its own SQLite history (seed 004).

* :class:`ChatRooms` - the registry: ``create_room``, ``rename_room``,
  ``clear_room``, ``delete_room``, ``rooms()``, ``room(id)`` and ``sql()``; in
  memory, or a directory with ``registry.db`` and one ``rooms/<room_id>.db`` per room.
* :class:`Room` - one room: ``messages()``, ``await send(text)``, ``await wait()``,
  ``await cancel()``, ``active_stream()``, ``await resume(after_seq)``.
* :func:`room_reply_handler` - the default reply (the seeds' fake tokens, told the
  room's history); any handler works through ``handler_factory``.
* :class:`ChatRoomsWidget` - the rooms in JupyterLab (loaded on first use, so this
  package imports nothing from Jupyter).

Replies run as attached streams of one :class:`~streamnb.StreamRuntime`; each
settled reply is a ledger settlement with a ``room.reply.settled`` event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import RoomBusyError, RoomError, RoomNameError, UnknownRoomError
from .events import RoomEvent
from .registry import MAX_NAME_CHARS, ChatRooms
from .reply import DEFAULT_KIND, SETTLED_EVENT, room_reply_handler
from .room import ActiveReply, Room
from .store import Message

if TYPE_CHECKING:
    from .widget import ChatRoomsWidget

__all__ = [
    "DEFAULT_KIND",
    "MAX_NAME_CHARS",
    "SETTLED_EVENT",
    "ActiveReply",
    "ChatRooms",
    "ChatRoomsWidget",
    "Message",
    "Room",
    "RoomBusyError",
    "RoomError",
    "RoomEvent",
    "RoomNameError",
    "UnknownRoomError",
    "room_reply_handler",
]


def __getattr__(name: str) -> Any:
    """Load :class:`ChatRoomsWidget` (anywidget, Jupyter) on first use."""
    if name == "ChatRoomsWidget":
        from .widget import ChatRoomsWidget

        globals()[name] = ChatRoomsWidget
        return ChatRoomsWidget
    raise AttributeError(f"module 'streamnb.rooms' has no attribute {name!r}")
