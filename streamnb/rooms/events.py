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
    """

    kind: RoomEventKind
    room_id: str
    message_id: str | None = None
    stream_ref: str | None = None


#: called with each event on the thread that made the change (the runtime's loop
#: thread for replies; the caller's thread for create/rename/clear)
RoomListener = Callable[[RoomEvent], None]
