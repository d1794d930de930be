"""Wire messages between the widgets' Python side and their front ends (custom messages).

Every message is a dict with a ``type`` discriminator; each shape is a ``TypedDict``
here (anywidget ``_protocols.py``), and inbound messages are checked by
:func:`parse_inbound` (stream and chat widgets) or :func:`parse_room_request`
(rooms widget) before the kernel acts on them.

StreamWidget and ChatWidget (``static/widget.js``, ``static/chat.js``)
---------------------------------------------------------------------
Outbound (kernel -> browser):

``delta``
    One batch of frames ``from_seq..to_seq`` (inclusive) folded into text per
    channel. Deltas of one stream are contiguous: each ``from_seq`` is the
    previous ``to_seq + 1``. A view applies a delta only when its ``from_seq``
    is its own ``last_seq + 1`` (a ``to_seq <= last_seq`` is a duplicate and is
    dropped; anything else is a gap and the view asks for a snapshot again).
``snapshot``
    Everything flushed so far (``texts``) up to ``upto_seq``; the answer to
    ``hello``. A view takes it only if ``upto_seq`` is past what it has.

Inbound (browser -> kernel): ``hello`` (a view or page that missed the start
asks for a snapshot), ``stop`` (the Stop button, or Ctrl+. / Cmd+. in the widget),
``send`` (the Send button or Enter, with the text box's ``text``) and ``ack`` (the
view holds the whole text).

:class:`~streamnb.ChatWidget` adds ``turn`` (the transcript index of the reply
being streamed) to ``delta`` and ``snapshot``.

ChatRoomsWidget (``static/rooms.js``)
-------------------------------------
Every view of the widget keeps its own selected room and sends that room's id
with each request, plus its own random ``view`` id; answers meant for one view
carry that id, updates for everybody carry ``view: None``, and each view keeps
only what concerns the room it shows.

Inbound, each with ``view``: ``open`` (show ``room_id``: answer ``messages``),
``send`` (``room_id``, ``text``), ``stop`` (``room_id``), ``create`` (optional
``name``; answer ``created``), ``rename`` (``room_id``, ``name``), ``clear``
(``room_id``), ``delete`` (``room_id``).

Outbound:

``messages``
    A room's stored messages and, while a reply streams, ``reply``: the text
    flushed so far up to frame ``upto_seq``. Sent to the view that asked, and to
    every view when the room's messages change.
``delta``
    Frames ``from_seq..to_seq`` of the streaming reply ``message_id`` in
    ``room_id``, their text joined (contiguous per reply, as above). A view
    applies one only when ``from_seq`` is its ``last_seq + 1``; after a gap it
    sends ``open`` again.
``created``
    The room a view's **New room** made (that view switches to it).
``error``
    A refused request, for one view (or every view when ``view`` is None).
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = [
    "AckMsg",
    "ChatDeltaMsg",
    "ChatSnapshotMsg",
    "CreatedMsg",
    "DeltaMsg",
    "ErrorMsg",
    "HelloMsg",
    "InboundMsg",
    "MessagesMsg",
    "ReplySnapshot",
    "RoomDeltaMsg",
    "RoomRequest",
    "SendMsg",
    "SentMsg",
    "SnapshotMsg",
    "StopMsg",
    "parse_inbound",
    "parse_room_request",
]


class DeltaMsg(TypedDict):
    """Frames ``from_seq..to_seq`` of a stream, output text concatenated per channel."""

    type: Literal["delta"]
    from_seq: int
    to_seq: int
    chunks: dict[str, str]
    status: str


class SnapshotMsg(TypedDict):
    """All text flushed so far, up to and including frame ``upto_seq`` (-1: none yet)."""

    type: Literal["snapshot"]
    upto_seq: int
    texts: dict[str, str]
    status: str


class ChatDeltaMsg(DeltaMsg):
    """A :class:`DeltaMsg` for the reply at transcript index ``turn``."""

    turn: int


class ChatSnapshotMsg(SnapshotMsg):
    """A :class:`SnapshotMsg` of the reply at transcript index ``turn`` (-1: no reply yet)."""

    turn: int


class SentMsg(TypedDict):
    """A message sent to a bidi stream, as :class:`~streamnb.StreamWidget` shows it (its
    ``sent`` trait): the ``text`` and, per channel, how many characters (code points) the
    channel held when it arrived (``offsets``; a channel not listed held none)."""

    text: str
    offsets: dict[str, int]


class HelloMsg(TypedDict):
    """A view that missed deltas asks for a snapshot."""

    type: Literal["hello"]


class StopMsg(TypedDict):
    """The user pressed Stop (or its shortcut, Ctrl+. / Cmd+.)."""

    type: Literal["stop"]


class SendMsg(TypedDict):
    """The user sent ``text`` (Send button or Enter)."""

    type: Literal["send"]
    text: str


class AckMsg(TypedDict):
    """The front end holds the whole text so far and keeps ``final_texts`` itself, so the
    kernel need not send the text a second time when the stream settles."""

    type: Literal["ack"]


InboundMsg = HelloMsg | StopMsg | SendMsg | AckMsg


def parse_inbound(content: Any) -> InboundMsg:
    """Check a custom message from the front end.

    Raises
    ------
    ValueError
        Not one of the inbound messages (the message says which shapes exist).
    """
    kind = content.get("type") if isinstance(content, dict) else None
    if kind == "hello":
        return {"type": "hello"}
    if kind == "stop":
        return {"type": "stop"}
    if kind == "ack":
        ack: AckMsg = {"type": "ack"}
        return ack
    if kind == "send":
        text = content.get("text")
        if not isinstance(text, str):
            raise ValueError("a 'send' widget message needs a string 'text'")
        return {"type": "send", "text": text}
    raise ValueError(
        f"unknown widget message {content!r}; expected {{'type': 'hello'|'stop'|'send'}}"
    )


# --- ChatRoomsWidget ---------------------------------------------------------------

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


def parse_room_request(content: Any) -> RoomRequest:
    """Check an inbound custom message of the rooms widget.

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
