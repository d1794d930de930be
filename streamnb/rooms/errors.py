"""Exceptions raised by :mod:`streamnb.rooms`.

The tree (under the package root :class:`~streamnb.StreamnbError`)::

    StreamnbError
    └── RoomError                  a chat-rooms operation could not be done
        ├── UnknownRoomError       no room with that id (never created, or deleted)
        ├── RoomBusyError          the room already has a reply streaming
        └── RoomNameError          a room name is empty, too long or has control characters
            │                      (also a ValueError)
            └── RoomExistsError    another room already has that name
"""

from __future__ import annotations

from collections.abc import Iterable

from .._errors import StreamnbError

__all__ = ["RoomBusyError", "RoomError", "RoomExistsError", "RoomNameError", "UnknownRoomError"]


class RoomError(StreamnbError):
    """A chat-rooms operation could not be done; the message says why and what to do."""


class UnknownRoomError(RoomError, KeyError):
    """No room with this id: it was never created here, or it was deleted."""

    def __init__(self, room_id: object, known: Iterable[str] = ()) -> None:
        self.room_id = room_id
        ids = sorted(known)
        shown = ", ".join(repr(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
        hint = f"existing rooms: {shown}" if ids else "there are no rooms yet"
        super().__init__(
            f"no room with id {room_id!r} ({hint}); list them with rooms.rooms() "
            "or create one with rooms.create_room(name)"
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RoomBusyError(RoomError):
    """The room already has a reply streaming (one active reply per room)."""

    def __init__(self, room_id: str, stream_ref: str | None) -> None:
        self.room_id = room_id
        self.stream_ref = stream_ref
        super().__init__(
            f"room {room_id!r} is busy: a reply is still streaming (stream {stream_ref}); "
            "await room.wait() for it to finish or await room.cancel() to stop it first"
        )


class RoomNameError(RoomError, ValueError):
    """A room name is not a non-empty string of at most ``max_len`` printable characters."""

    def __init__(self, name: object, problem: str, max_len: int) -> None:
        self.name = name
        super().__init__(
            f"invalid room name {name!r}: {problem}; give a name of 1 to {max_len} characters "
            "without line breaks or control characters"
        )


class RoomExistsError(RoomNameError):
    """Another room already has this name (names are unique, so a re-run cell that creates
    a room does not make a look-alike second one)."""

    def __init__(self, name: str, room_id: str) -> None:
        self.name = name
        self.room_id = room_id
        RoomError.__init__(
            self,
            f"a room named {name!r} already exists ({room_id}); use that room "
            f"(rooms.create_room(name, exist_ok=True) returns its id) or choose another name",
        )
