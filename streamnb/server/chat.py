"""Seed 002's streaming chat server: ``POST /chat`` (SSE), its resume, and the page at ``GET /``.

``POST /chat`` takes ``{"message": "..."}``, opens a stream of the app's
``chat_kind`` (for a ``bidi`` handler: attach, then send the message as input;
for an ``output_only`` handler: attach with ``{"message": ...}`` as the start
payload) and answers with the seeds' SSE format:

* ``data: {"content": "<token>"}`` for every ``output`` frame (non-string
  payloads are sent as their JSON text),
* ``data: {"type": "error", "error": "..."}`` when the stream fails (seed 003's
  error event), then ``data: [DONE]``,
* ``data: [DONE]`` at the end.

Departures from the seed, all invisible to a seed client: the response carries
the stream's ref in the ``X-Stream-Ref`` header, so a page can cancel it with
``POST /streams/{ref}/cancel`` (the Stop button does); every event has an
``id:`` line, the seq of the frame it came from, so a client can resume; a
cancelled stream ends with an SSE comment ``: cancelled`` (with the reason, if
any) before ``[DONE]`` (comments are ignored by parsers, and seed clients treat
any non-error event as content); idle heartbeats are comments too.

Resume. A dropped connection is not a detach (:mod:`.parking`): the session is
parked for ``reconnect_grace_s``, so the default chatbot (``on_detach="abort"``)
keeps answering. ``GET /chat/{ref}/stream`` with ``Last-Event-ID: <last id>``
(or ``?after_seq=``) continues the reply in the same format from the next frame,
taking the parked observer over; ``204`` once there is nothing after that id,
``404`` for a stream no longer held. The page reconnects this way by itself.
When no reconnection comes within the grace, the session detaches and the
abort chatbot is cancelled (reason ``detached``); ``POST /streams/{ref}/detach``
does that at once (the page sends it when it is closed mid-reply).

``GET /`` serves ``static/chat.html`` with a Content-Security-Policy that
allows only its own inline script (by hash) and connections to this origin.
The page reads ``?token=`` from its URL and sends it as a bearer token.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .._frames import Frame
from .._runtime import Session, StreamRuntime
from .body import check_keys, expect_object, read_json
from .errors import HTTPError
from .limits import check_public
from .sse import dumps
from .state import state_of
from .streams import after_seq_of

__all__ = ["chat", "chat_page", "chat_resume", "open_chat_stream", "render_chat_frame"]

PAGE = Path(__file__).parent / "static" / "chat.html"
DONE = "data: [DONE]\n\n"


@cache
def _page() -> tuple[bytes, str]:
    html = PAGE.read_text(encoding="utf-8")
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.encode()).digest()).decode() + "'"
        for m in re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    )
    csp = (
        f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return html.encode("utf-8"), csp


async def chat_page(request: Request) -> Response:
    """``GET /``: the chat page (no auth needed; it sends ``?token=`` as a bearer token)."""
    body, csp = _page()
    return HTMLResponse(
        body,
        headers={
            "Content-Security-Policy": csp,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


async def open_chat_stream(runtime: StreamRuntime, kind: str, message: str) -> Session:
    """Open a chat stream of ``kind`` for one user ``message``.

    ``bidi`` handlers are attached with an empty start payload and get the
    message as their first input; ``output_only`` handlers get
    ``{"message": message}`` as the start payload. An internal kind is refused
    (``403 internal_kind``, :mod:`.limits`).
    """
    check_public(runtime, kind)
    handler = runtime.handler(kind)
    if handler.mode != "bidi":
        return await runtime.attach(kind, {"message": message})
    session = await runtime.attach(kind, {})
    try:
        await session.send(message)
    except BaseException:
        await session.cancel("input_refused")
        await session.detach()
        raise
    return session


def _content(payload: object) -> str:
    return payload if isinstance(payload, str) else dumps(payload)


def render_chat_frame(frame: Frame) -> str:
    """One frame in seed 002's SSE format, ``id:`` = its seq ('' when the format has no event)."""
    kind = frame.kind
    head = f"id: {frame.seq}\n"
    done = head + DONE
    if kind == "output":
        return f"{head}data: {dumps({'content': _content(frame.payload)})}\n\n"
    if kind == "completed":
        return done
    if kind == "failed":
        error = frame.error or frame.reason or "the stream failed"
        return f"{head}data: {dumps({'type': 'error', 'error': error})}\n\n{done}"
    if kind == "cancelled":
        reason = (frame.reason or "").replace("\n", " ").replace("\r", " ")
        detail = f" ({reason})" if reason and reason != "cancelled" else ""
        return f": cancelled{detail}\n\n{done}"
    return ""


async def chat(request: Request) -> Response:
    """``POST /chat``: ``{"message": str}`` -> seed 002's token stream."""
    state = state_of(request)
    body = expect_object(await read_json(request, state.config.max_body_bytes))
    check_keys(body, ("message",))
    message = body.get("message")
    if not isinstance(message, str):
        raise HTTPError(422, "invalid_request", "'message' must be a string")
    state.cap.admit()
    session = await open_chat_stream(state.runtime, state.config.chat_kind, message)
    state.cap.add(session.stream_ref)
    return state.sse_response(
        session, render_chat_frame, headers={"X-Stream-Ref": session.stream_ref}
    )


async def chat_resume(request: Request) -> Response:
    """``GET /chat/{ref}/stream``: the rest of a ``POST /chat`` reply after ``Last-Event-ID``."""
    state = state_of(request)
    ref = request.path_params["ref"]
    after_seq = after_seq_of(request)
    info = await state.runtime.ainfo(ref)  # 404 for an unknown ref; also another worker's
    if info.terminal is not None and after_seq is not None and after_seq >= info.terminal.seq:
        return Response(status_code=204)
    session = await state.observe(ref, after_seq)
    return state.sse_response(session, render_chat_frame, headers={"X-Stream-Ref": ref})
