"""``POST /api/chat``: the Vercel AI SDK UI message stream protocol (v1) over a streamnb handler.

An existing ``useChat`` front end (``DefaultChatTransport``, ``api: "/api/chat"``)
works against any streamnb chat handler. The request is ``useChat``'s body
``{"id", "messages": [{"id", "role", "parts": [{"type": "text", "text"}]}],
"trigger"?, "messageId"?, ...}`` (extra fields from the transport's ``body``
option are accepted and ignored). The text parts of the last ``user`` message
are joined and sent to a stream of the app's ``chat_kind`` exactly as ``POST
/chat`` does (input for ``bidi``, ``{"message": ...}`` start payload for
``output_only``).

The response is SSE with the header ``x-vercel-ai-ui-message-stream: v1``; each
event is ``id: <frame seq>`` and ``data: <chunk JSON>``, and the stream ends with
``data: [DONE]``. Frames map to chunks as follows, using only the fields the
protocol defines (strict clients reject unknown keys):

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

``POST /api/chat/{id}/stop`` cancels the chat's latest stream;
``GET /api/chat/{id}/stream`` is the AI SDK's resume: it replays the chat's
active stream from its first frame (the client's ``resumeStreamIsReplay``
default) with the same message id, or answers ``204`` when no stream of that
chat is running. A dropped ``/api/chat`` connection detaches the session: with
an ``on_detach="abort"`` handler the reply is cancelled, with ``"continue"`` it
runs on and can be resumed.

Deliberate departures: ``abort`` and ``finish`` carry no ``reason`` /
``finishReason`` (newer clients accept them, AI SDK 5's strict schema does not);
the ``start`` chunk's ``messageId`` is ``msg_<stream ref>`` unless the request
regenerates a given ``messageId``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._errors import UnknownStreamError
from .._frames import Frame
from .._runtime import Session
from .._tool_frames import is_tool_channel
from .body import expect_object, optional_str, read_json
from .chat import open_chat_stream
from .errors import HTTPError
from .sse import SSEResponse, dumps
from .state import ServerState, state_of

__all__ = ["UIMessageRenderer", "ai_chat", "ai_chat_resume", "ai_chat_stop", "last_user_text"]

UI_STREAM_HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
DONE = "data: [DONE]\n\n"


def _event(chunk: dict[str, Any], seq: int) -> str:
    return f"id: {seq}\ndata: {dumps(chunk)}\n\n"


class UIMessageRenderer:
    """Renders one stream's frames as UI message stream chunks (stateful, in seq order)."""

    def __init__(self, message_id: str, stream_ref: str) -> None:
        self.message_id = message_id
        self.stream_ref = stream_ref
        self._started = False
        self._text_id: str | None = None
        self._n_text = 0
        self._tools: dict[str, str] = {}  # tool call id -> tool name

    def __call__(self, frame: Frame) -> str:
        seq = frame.seq
        out = ""
        if not self._started:
            self._started = True
            out = _event(
                {
                    "type": "start",
                    "messageId": self.message_id,
                    "messageMetadata": {"streamRef": self.stream_ref},
                },
                seq,
            )
        kind = frame.kind
        if kind == "opened":
            return out
        if kind == "progress":
            return out + _event(
                {"type": "data-progress", "id": "progress", "data": frame.payload}, seq
            )
        if kind == "output":
            payload = frame.payload
            if is_tool_channel(frame.channel):
                return out + self._tool(frame)
            if isinstance(payload, str):
                if self._text_id is None:
                    self._text_id = f"text-{self._n_text}"
                    self._n_text += 1
                    out += _event({"type": "text-start", "id": self._text_id}, seq)
                return out + _event(
                    {"type": "text-delta", "id": self._text_id, "delta": payload}, seq
                )
            return out + self._data_output(frame)
        out += self._end_text(seq)
        if kind == "completed":
            return out + _event({"type": "finish"}, seq) + DONE
        if kind == "cancelled":
            return out + _event({"type": "abort"}, seq) + DONE
        error = frame.error or frame.reason or "the stream failed"
        return out + _event({"type": "error", "errorText": error}, seq) + DONE

    def _end_text(self, seq: int) -> str:
        if self._text_id is None:
            return ""
        text_id, self._text_id = self._text_id, None
        return _event({"type": "text-end", "id": text_id}, seq)

    def _data_output(self, frame: Frame) -> str:
        data = {"channel": frame.channel, "payload": frame.payload}
        return _event({"type": "data-output", "data": data}, frame.seq)

    def _tool(self, frame: Frame) -> str:
        payload = frame.payload
        seq = frame.seq
        if not isinstance(payload, dict):
            return self._data_output(frame)
        call_id = payload.get("tool_call_id", payload.get("toolCallId"))
        name = payload.get("tool_name", payload.get("toolName"))
        if not isinstance(call_id, str) or (
            call_id not in self._tools and not isinstance(name, str)
        ):
            return self._data_output(frame)
        out = self._end_text(seq)
        if call_id not in self._tools:
            assert isinstance(name, str)
            self._tools[call_id] = name
            out += _event(
                {"type": "tool-input-start", "toolCallId": call_id, "toolName": name}, seq
            )
            if (
                "input_delta" not in payload
                and "inputTextDelta" not in payload
                and ("input" not in payload)
            ):
                out += _event(
                    {
                        "type": "tool-input-available",
                        "toolCallId": call_id,
                        "toolName": name,
                        "input": None,
                    },
                    seq,
                )
        name = self._tools[call_id]
        delta = payload.get("input_delta", payload.get("inputTextDelta"))
        if delta is not None and delta != "":
            out += _event(
                {"type": "tool-input-delta", "toolCallId": call_id, "inputTextDelta": str(delta)},
                seq,
            )
        if "input" in payload:
            out += _event(
                {
                    "type": "tool-input-available",
                    "toolCallId": call_id,
                    "toolName": name,
                    "input": payload["input"],
                },
                seq,
            )
        if "output" in payload:
            out += _event(
                {
                    "type": "tool-output-available",
                    "toolCallId": call_id,
                    "output": payload["output"],
                },
                seq,
            )
        elif isinstance(payload.get("error"), str):
            out += _event(
                {"type": "tool-output-error", "toolCallId": call_id, "errorText": payload["error"]},
                seq,
            )
        return out


def last_user_text(messages: Any) -> str:
    """The text of the last ``user`` message of a ``useChat`` request (422 if there is none)."""
    if not isinstance(messages, list) or not messages:
        raise HTTPError(422, "invalid_request", "'messages' must be a non-empty array of messages")
    for message in reversed(messages):
        if not isinstance(message, dict):
            raise HTTPError(422, "invalid_request", "every entry of 'messages' must be an object")
        if message.get("role") != "user":
            continue
        parts = message.get("parts")
        if isinstance(parts, list):
            texts = [
                p["text"]
                for p in parts
                if isinstance(p, dict)
                and p.get("type") == "text"
                and isinstance(p.get("text"), str)
            ]
            if texts:
                return "".join(texts)
        content = message.get("content")
        if isinstance(content, str):
            return content
        raise HTTPError(
            422,
            "invalid_request",
            "the last user message has no text: send parts like [{'type': 'text', 'text': '...'}]",
        )
    raise HTTPError(422, "invalid_request", "'messages' has no message with role 'user'")


def _response(state: ServerState, session: Session, message_id: str) -> SSEResponse:
    renderer = UIMessageRenderer(message_id, session.stream_ref)
    headers = {**UI_STREAM_HEADERS, "X-Stream-Ref": session.stream_ref}
    return state.sse_response(session, renderer, headers=headers)


async def ai_chat(request: Request) -> Response:
    """``POST /api/chat``: one assistant reply as a UI message stream."""
    state = state_of(request)
    body = expect_object(await read_json(request, state.config.max_body_bytes))
    chat_id = body.get("id")
    if not isinstance(chat_id, str) or not chat_id:
        raise HTTPError(422, "invalid_request", "'id' (the chat id) must be a non-empty string")
    trigger = optional_str(body, "trigger")
    message_id = optional_str(body, "messageId")
    text = last_user_text(body.get("messages"))
    state.cap.admit()
    session = await open_chat_stream(state.runtime, state.config.chat_kind, text)
    state.cap.add(session.stream_ref)
    if trigger != "regenerate-message" or not message_id:
        message_id = f"msg_{session.stream_ref}"
    await state.chats.set(chat_id, session.stream_ref, message_id)
    return _response(state, session, message_id)


async def ai_chat_stop(request: Request) -> Response:
    """``POST /api/chat/{id}/stop`` (``{"reason"?}``): cancel the chat's latest stream."""
    state = state_of(request)
    chat_id = request.path_params["id"]
    body = await read_json(request, state.config.max_body_bytes, allow_empty=True)
    reason = optional_str(expect_object(body), "reason") if body is not None else None
    entry = await state.chats.get(chat_id)
    if entry is None:
        raise HTTPError(404, "unknown_chat", f"no stream was started for chat {chat_id!r}")
    try:
        result = await state.runtime.cancel(entry[0], reason or "stopped")
    except UnknownStreamError:
        result = "already_settled"
    return JSONResponse({"result": result, "stream_ref": entry[0]})


async def ai_chat_resume(request: Request) -> Response:
    """``GET /api/chat/{id}/stream``: replay the chat's running stream, or 204."""
    state = state_of(request)
    chat_id = request.path_params["id"]
    entry = await state.chats.get(chat_id)
    if entry is None:
        return Response(status_code=204)
    ref, message_id = entry
    try:
        info = await state.runtime.ainfo(ref)  # with a shared ledger, from any worker
    except UnknownStreamError:
        info = None
    if info is None or info.terminal is not None:
        await state.chats.forget(chat_id)
        return Response(status_code=204)
    if request.method == "HEAD":
        return Response(headers=dict(UI_STREAM_HEADERS), media_type=SSEResponse.media_type)
    session = await state.runtime.reattach(ref, after_seq=None)
    return _response(state, session, message_id)
