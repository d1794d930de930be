"""Wire messages between the widgets' Python side and their front end (custom messages).

Outbound (kernel -> browser) messages carry a ``type`` discriminator:

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
asks for a snapshot), ``stop`` (the Stop button or Escape) and ``send`` (the
Send button or Enter, with the text box's ``text``).

:class:`~streamnb.ChatWidget` adds ``turn`` (the transcript index of the reply
being streamed) to ``delta`` and ``snapshot``.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = [
    "ChatDeltaMsg",
    "ChatSnapshotMsg",
    "DeltaMsg",
    "HelloMsg",
    "InboundMsg",
    "SendMsg",
    "SnapshotMsg",
    "StopMsg",
    "parse_inbound",
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


class HelloMsg(TypedDict):
    """A view that missed deltas asks for a snapshot."""

    type: Literal["hello"]


class StopMsg(TypedDict):
    """The user pressed Stop (or Escape in the message box)."""

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
