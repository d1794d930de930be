"""Change notifications of a :class:`~streamnb.rooms.ChatRooms` (what the widget listens to)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["RoomEvent", "RoomEventKind", "RoomListener"]

RoomEventKind = Literal[
    "created", "renamed", "cleared", "deleted", "reply_started", "reply_settled"
]


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """Something changed in the registry or in one room.

    ``reply_started`` comes once the user message and the reply's placeholder are
    stored and the stream is attached; ``reply_settled`` once its terminal frame
    was announced (the assistant message and the ledger settlement are both
    committed). ``message_id`` and ``stream_ref`` are set for those two only.

    Examples
    --------
    >>> from streamnb.rooms import ChatRooms
    >>> rooms = ChatRooms()
    >>> events = []
    >>> _ = rooms.subscribe(events.append)
    >>> room = rooms.room(rooms.create_room("Ideas"))
    >>> _ = rooms.runtime.run(room.send("hello"))
    >>> _ = rooms.runtime.run(room.wait())
    >>> [event.kind for event in events]
    ['created', 'reply_started', 'reply_settled']
    >>> events[-1].message_id == room.message_list()[-1].id
    True
    >>> rooms.close()
    """

    kind: RoomEventKind
    room_id: str
    message_id: str | None = None
    stream_ref: str | None = None


#: called with each event on the thread that made the change (the runtime's loop
#: thread for replies; the caller's thread for create/rename/clear)
RoomListener = Callable[[RoomEvent], None]
