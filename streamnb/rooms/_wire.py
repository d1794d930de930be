"""Custom messages between :class:`~streamnb.rooms.ChatRoomsWidget` and ``static/rooms.js``.

Every view of the widget keeps its own selected room and sends that room's id
with each request, plus its own random ``view`` id; answers meant for one view
carry that id, updates for everybody carry ``view: None``, and each view keeps
only what concerns the room it shows.

Inbound (browser -> kernel), each with ``view``:
``open`` (show ``room_id``: answer ``messages``), ``send`` (``room_id``, ``text``),
``stop`` (``room_id``), ``create`` (optional ``name``; answer ``created``),
``rename`` (``room_id``, ``name``), ``clear`` (``room_id``), ``delete`` (``room_id``).

Outbound (kernel -> browser):
``messages``
    A room's stored messages and, while a reply streams, ``reply``: the text
    flushed so far up to frame ``upto_seq``. Sent to the view that asked, and to
    every view when the room's messages change.
``delta``
    Frames ``from_seq..to_seq`` of the streaming reply ``message_id`` in
    ``room_id``, their text joined (contiguous per reply, as in
    :mod:`streamnb.widget._protocol`). A view applies one only when
    ``from_seq`` is its ``last_seq + 1``; after a gap it sends ``open`` again.
``created``
    The room a view's **New room** made (that view switches to it).
``error``
    A refused request, for one view (or every view when ``view`` is None).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = [
    "CreatedMsg",
    "ErrorMsg",
    "MessagesMsg",
    "ReplySnapshot",
    "RoomDeltaMsg",
    "RoomRequest",
    "parse_request",
]

RequestType = Literal["open", "send", "stop", "create", "rename", "clear", "delete"]
_NEEDS_ROOM = {"open", "send", "stop", "rename", "clear", "delete"}


class RoomRequest(TypedDict):
    """A checked inbound message (fields a type does not use are empty strings)."""

    type: RequestType
    view: str
    room_id: str
    text: str
    name: str


class ReplySnapshot(TypedDict):
    """The streaming reply's text flushed so far."""

    message_id: str
    upto_seq: int
    text: str
    status: str


class MessagesMsg(TypedDict):
    type: Literal["messages"]
    view: str | None
    room_id: str
    messages: list[dict[str, Any]]
    reply: ReplySnapshot | None


class RoomDeltaMsg(TypedDict):
    type: Literal["delta"]
    room_id: str
    message_id: str
    from_seq: int
    to_seq: int
    text: str
    status: str


class CreatedMsg(TypedDict):
    type: Literal["created"]
    view: str
    room_id: str


class ErrorMsg(TypedDict):
    type: Literal["error"]
    view: str | None
    room_id: str | None
    message: str


def parse_request(content: Any) -> RoomRequest:
    """Check an inbound custom message.

    Raises
    ------
    ValueError
        Not one of the requests above, or a field has the wrong type.
    """
    if not isinstance(content, dict):
        raise ValueError(f"a rooms widget message is a dict, got {type(content).__name__}")
    kind = content.get("type")
    if kind not in ("open", "send", "stop", "create", "rename", "clear", "delete"):
        raise ValueError(
            f"unknown rooms widget message type {kind!r}; expected open, send, stop, "
            "create, rename, clear or delete"
        )
    fields: dict[str, str] = {}
    for key in ("view", "room_id", "text", "name"):
        value = content.get(key, "")
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ValueError(f"'{key}' of a {kind!r} message must be a string")
        fields[key] = value
    if kind in _NEEDS_ROOM and not fields["room_id"]:
        raise ValueError(f"a {kind!r} message needs the 'room_id' of the view's room")
    return {
        "type": kind,
        "view": fields["view"],
        "room_id": fields["room_id"],
        "text": fields["text"],
        "name": fields["name"],
    }
