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
``data: [DONE]``. Frames map to chunks as :mod:`.ui_chunks` says (``start``,
``text-start``/``text-delta``/``text-end``, tool chunks, ``data-progress``,
``data-output``, ``finish``/``abort``/``error``).

``POST /api/chat/{id}/stop`` cancels the chat's latest stream.

Resume (``GET /api/chat/{id}/stream``, the AI SDK's ``resumeStream``). A dropped
``/api/chat`` connection is not a detach (:mod:`.parking`): its session is
parked for ``reconnect_grace_s``, so even an ``on_detach="abort"`` reply keeps
streaming. The resume request takes the parked observer over and replays the
chat's stream from its first frame (the client's ``resumeStreamIsReplay``
default: it starts the message again at the ``start`` chunk, so the final
message holds every chunk once) and continues live, with the same message id;
with ``Last-Event-ID: n`` (or ``?after_seq=n``) it sends only the chunks of
frames after ``n``. It answers ``204`` when the chat has no stream, or when its
stream is over and no dropped observer of it is still parked (nothing was
missed). After the grace, an abort reply is cancelled (reason ``detached``).

Deliberate departure: the ``start`` chunk's ``messageId`` is ``msg_<stream ref>``
unless the request regenerates a given ``messageId``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._errors import UnknownStreamError
from .._frames import TERMINAL_KINDS, Frame
from .._runtime import Session
from .body import expect_object, optional_str, read_json
from .chat import open_chat_stream
from .errors import HTTPError
from .sse import SSEResponse, dumps
from .state import ServerState, state_of
from .streams import after_seq_of
from .ui_chunks import Chunk, UIMessageChunks

__all__ = ["UIMessageRenderer", "ai_chat", "ai_chat_resume", "ai_chat_stop", "last_user_text"]

UI_STREAM_HEADERS = {"x-vercel-ai-ui-message-stream": "v1"}
DONE = "data: [DONE]\n\n"


def _event(chunk: Chunk, seq: int) -> str:
    return f"id: {seq}\ndata: {dumps(chunk)}\n\n"


class UIMessageRenderer:
    """One stream's frames as UI message stream SSE events (stateful, in seq order).

    Parameters
    ----------
    message_id, stream_ref : str
        As for :class:`~.ui_chunks.UIMessageChunks`.
    after_seq : int, optional
        Fold frames up to this seq into the renderer's state but send nothing for
        them (a resume from ``Last-Event-ID``).
    """

    def __init__(self, message_id: str, stream_ref: str, after_seq: int = -1) -> None:
        self._chunks = UIMessageChunks(message_id, stream_ref)
        self._after_seq = after_seq

    def __call__(self, frame: Frame) -> str:
        seq = frame.seq
        chunks = self._chunks(frame)
        if seq <= self._after_seq:
            return ""
        out = "".join([_event(c, seq) for c in chunks])
        return out + DONE if frame.kind in TERMINAL_KINDS else out


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


def _response(
    state: ServerState, session: Session, message_id: str, after_seq: int = -1
) -> SSEResponse:
    renderer = UIMessageRenderer(message_id, session.stream_ref, after_seq)
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
    """``GET /api/chat/{id}/stream``: replay and follow the chat's stream, or 204."""
    state = state_of(request)
    chat_id = request.path_params["id"]
    after_seq = after_seq_of(request)
    entry = await state.chats.get(chat_id)
    if entry is None:
        return Response(status_code=204)
    ref, message_id = entry
    try:
        info = await state.runtime.ainfo(ref)  # with a shared ledger, from any worker
    except UnknownStreamError:
        info = None
    missed = info is not None and bool(state.parking.parked(ref))
    if info is None or (info.terminal is not None and not missed):
        await state.chats.forget(chat_id)
        return Response(status_code=204)
    if info.terminal is not None and after_seq is not None and after_seq >= info.terminal.seq:
        return Response(status_code=204)
    if request.method == "HEAD":
        return Response(headers=dict(UI_STREAM_HEADERS), media_type=SSEResponse.media_type)
    session = await state.observe(ref)  # from the first frame: the renderer needs them all
    return _response(state, session, message_id, -1 if after_seq is None else after_seq)
