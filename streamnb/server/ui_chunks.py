"""Frames as AI SDK UI message chunks (protocol v1), the one mapping every transport uses.

``POST /api/chat`` sends these chunks as SSE (:mod:`.aisdk`); ``WS /rooms/ws``
sends them as seed 004's ``stream-event`` messages (:mod:`.rooms_ws`). Frames map
to chunks as follows, using only the fields the protocol defines (strict clients
reject unknown keys):

====================================  ===============================================
frame                                 chunks
====================================  ===============================================
``opened``                            ``start`` {messageId, messageMetadata: {streamRef}}
``progress``                          ``data-progress`` {id: "progress", data: payload}
``output`` with a string payload      ``text-start`` {id} (when no text part is open),
                                      ``text-delta`` {id, delta}
``output`` on channel ``tool``        ``tool-input-start``, ``tool-input-delta``,
(or ``tool.*``), see below            ``tool-input-available``, ``tool-output-available``,
                                      ``tool-output-error``
other ``output``                      ``data-output`` {data: {channel, payload}}
``completed``                         ``text-end`` (if open), ``finish``
``cancelled``                         ``text-end`` (if open), ``abort``
``failed``                            ``text-end`` (if open), ``error`` {errorText}
====================================  ===============================================

The first frame rendered, whatever its kind, is preceded by ``start``.

Tool frames use the vocabulary of :mod:`streamnb._tool_frames` (built with its
``tool_input_delta`` / ``tool_input`` / ``tool_output`` / ``tool_output_error``, as
:func:`streamnb.providers.chat_handler` does); the protocol's camelCase keys
(``toolCallId``, ``toolName``, ``inputTextDelta``) are accepted too:
``{"tool_call_id", "tool_name", "input_delta": str}`` streams the tool's input
text (``tool-input-delta``, none for an empty piece), ``{"tool_call_id",
"tool_name", "input": ...}`` makes it available, ``{"tool_call_id", "output": ...}``
(or ``"error": str``) gives its result. Chunks are chosen by these keys, not by
``type``. The first frame of a call emits ``tool-input-start``; an output for a call
whose input was never sent first emits ``tool-input-available`` with ``input: null``.
A tool payload without a string ``tool_call_id`` (or without ``tool_name`` on
the call's first frame) is sent as ``data-output`` instead.

Deliberate departure: ``abort`` and ``finish`` carry no ``reason`` /
``finishReason`` (newer clients accept them, AI SDK 5's strict schema does not).
"""

from __future__ import annotations

from typing import Any

from .._frames import Frame
from .._tool_frames import is_tool_channel

__all__ = ["Chunk", "UIMessageChunks"]

Chunk = dict[str, Any]


class UIMessageChunks:
    """One stream's frames as UI message chunks (stateful: call it once per frame, in seq order).

    Parameters
    ----------
    message_id : str
        The assistant message's id, sent in the ``start`` chunk.
    stream_ref : str
        Sent as ``messageMetadata.streamRef`` in the ``start`` chunk.

    Examples
    --------
    >>> chunks = UIMessageChunks("msg_1", "st_1")
    >>> chunks(sn.Frame("opened", "st_1", 0, 1.0))
    [{'type': 'start', 'messageId': 'msg_1', 'messageMetadata': {'streamRef': 'st_1'}}]
    >>> chunks(sn.Frame("output", "st_1", 1, 1.1, "assistant.delta", "Hi"))
    [{'type': 'text-start', 'id': 'text-0'}, {'type': 'text-delta', 'id': 'text-0', 'delta': 'Hi'}]
    >>> chunks(sn.Frame("completed", "st_1", 2, 1.2, terminal={"ok": True}))
    [{'type': 'text-end', 'id': 'text-0'}, {'type': 'finish'}]
    """

    def __init__(self, message_id: str, stream_ref: str) -> None:
        self.message_id = message_id
        self.stream_ref = stream_ref
        self._started = False
        self._text_id: str | None = None
        self._n_text = 0
        self._tools: dict[str, str] = {}  # tool call id -> tool name

    def __call__(self, frame: Frame) -> list[Chunk]:
        out: list[Chunk] = []
        if not self._started:
            self._started = True
            out.append(
                {
                    "type": "start",
                    "messageId": self.message_id,
                    "messageMetadata": {"streamRef": self.stream_ref},
                }
            )
        kind = frame.kind
        if kind == "opened":
            return out
        if kind == "progress":
            out.append({"type": "data-progress", "id": "progress", "data": frame.payload})
            return out
        if kind == "output":
            payload = frame.payload
            if is_tool_channel(frame.channel):
                self._tool(frame, out)
            elif isinstance(payload, str):
                if self._text_id is None:
                    self._text_id = f"text-{self._n_text}"
                    self._n_text += 1
                    out.append({"type": "text-start", "id": self._text_id})
                out.append({"type": "text-delta", "id": self._text_id, "delta": payload})
            else:
                out.append(_data_output(frame))
            return out
        self._end_text(out)
        if kind == "completed":
            out.append({"type": "finish"})
        elif kind == "cancelled":
            out.append({"type": "abort"})
        else:
            out.append(
                {"type": "error", "errorText": frame.error or frame.reason or "the stream failed"}
            )
        return out

    def _end_text(self, out: list[Chunk]) -> None:
        if self._text_id is not None:
            out.append({"type": "text-end", "id": self._text_id})
            self._text_id = None

    def _tool(self, frame: Frame, out: list[Chunk]) -> None:
        payload = frame.payload
        if not isinstance(payload, dict):
            out.append(_data_output(frame))
            return
        call_id = payload.get("tool_call_id", payload.get("toolCallId"))
        name = payload.get("tool_name", payload.get("toolName"))
        if not isinstance(call_id, str) or (
            call_id not in self._tools and not isinstance(name, str)
        ):
            out.append(_data_output(frame))
            return
        self._end_text(out)
        if call_id not in self._tools:
            assert isinstance(name, str)
            self._tools[call_id] = name
            out.append({"type": "tool-input-start", "toolCallId": call_id, "toolName": name})
            if not any(k in payload for k in ("input_delta", "inputTextDelta", "input")):
                out.append(
                    {
                        "type": "tool-input-available",
                        "toolCallId": call_id,
                        "toolName": name,
                        "input": None,
                    }
                )
        name = self._tools[call_id]
        delta = payload.get("input_delta", payload.get("inputTextDelta"))
        if delta is not None and delta != "":
            out.append(
                {"type": "tool-input-delta", "toolCallId": call_id, "inputTextDelta": str(delta)}
            )
        if "input" in payload:
            out.append(
                {
                    "type": "tool-input-available",
                    "toolCallId": call_id,
                    "toolName": name,
                    "input": payload["input"],
                }
            )
        if "output" in payload:
            out.append(
                {
                    "type": "tool-output-available",
                    "toolCallId": call_id,
                    "output": payload["output"],
                }
            )
        elif isinstance(payload.get("error"), str):
            out.append(
                {"type": "tool-output-error", "toolCallId": call_id, "errorText": payload["error"]}
            )


def _data_output(frame: Frame) -> Chunk:
    return {"type": "data-output", "data": {"channel": frame.channel, "payload": frame.payload}}
