"""``WS /streams/{ref}/ws``: one WebSocket per observer, frames out, input and cancel in.

Out (server -> client), JSON text messages:

* every frame of the stream, as ``Frame.to_dict()`` (has a ``"kind"`` key), from
  seq 0 or from ``?after_seq=n`` + 1 (a reconnecting client passes the last seq
  it read); after the terminal frame the server closes with code 1000;
* replies to client messages, which have a ``"type"`` key instead:
  ``{"type": "input_result", "result": "accepted"|"duplicate", "seq"?}``,
  ``{"type": "cancel_result", "result": "requested"|...}``,
  ``{"type": "error", "error": {"type", "message"}}`` (the same error objects as
  the HTTP endpoints; the socket stays open).

In (client -> server): ``{"type": "input", "payload": ..., "seq"?: n}`` and
``{"type": "cancel", "reason"?: "..."}``.

An unknown ref (or a bad ``after_seq``) is answered by accepting, sending one
error message and closing with ``4000 + status`` (4404, 4400).

Detach or drop (:mod:`.parking`). A client that closes the socket with code
**1000** (normal closure) detaches its session at once: the handler's
``on_detach`` decides; it is never a cancel. Any other ending on the client's
side (a close without a close frame, 1006, 1001 "going away" from a page that
is reloading or navigating, any other code, or a client that does not read
for ``send_timeout_s`` and is cut off) is a *drop*: the session is parked for
``reconnect_grace_s`` and a reconnection with ``?after_seq=`` takes it over.
``?observer=<id>`` names the client's observer (see :mod:`.parking`). Server
shutdown closes with 1001 (going away) and detaches.

Tasks: the writer runs in the connection's own task and the reader in a task
group around it; the first to finish cancels the other, and both are gone when
the endpoint returns. One lock orders the writer's frames and the reader's
replies on the socket.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .._errors import StreamnbError
from .._runtime import Session
from .body import cancel_reason, expect_object, input_frame, optional_int, parse_json_text
from .errors import HTTPError, error_body, status_for
from .parking import observer_id_of
from .slices import LoopSlicer
from .sse import FrameReader, frame_json
from .state import ServerState, state_of

__all__ = ["stream_ws"]

logger = logging.getLogger("streamnb.server")

_CLOSE_TIMEOUT_S = 1.0
#: the close code with which a client detaches explicitly (RFC 6455 normal closure)
DETACH_CLOSE_CODE = 1000
#: what sending on a closed socket raises: Starlette's WebSocketDisconnect when the client
#: went away, and the ASGI server's RuntimeError when it closed the socket itself (uvicorn
#: does after an unanswered ping) without the app knowing yet
_CLOSED = (WebSocketDisconnect, RuntimeError)


async def stream_ws(websocket: WebSocket) -> None:
    """The WebSocket endpoint (see the module docstring for the protocol)."""
    state = state_of(websocket)
    ref = websocket.path_params["ref"]
    try:
        after_seq = optional_int(
            websocket.query_params.get("after_seq"),
            "the after_seq query parameter",
            minimum=-1,
            status=400,
        )
        observer_id = observer_id_of(websocket.query_params.get("observer"))
        # 404 for an unknown ref, before anything changes; with a shared ledger also
        # another worker's stream
        await state.runtime.ainfo(ref)
    except (HTTPError, StreamnbError) as exc:
        await websocket.accept()
        await websocket.send_text(json.dumps({"type": "error", "error": error_body(exc)}))
        await websocket.close(code=4000 + status_for(exc)[0])
        return
    session = await state.observe(ref, after_seq, observer_id)
    observer = state.parking.connect(session, observer_id)
    connection = _Connection(websocket, session, state)
    try:
        await websocket.accept()
        await connection.run()
    finally:
        with anyio.CancelScope(shield=True):
            await state.parking.release(observer, dropped=connection.dropped)


class _Connection:
    def __init__(self, websocket: WebSocket, session: Session, state: ServerState) -> None:
        self.ws = websocket
        self.session = session
        self.state = state
        self.lock = anyio.Lock()
        #: how the connection ended, for parking: False only once the terminal frame was
        #: sent, the client closed with DETACH_CLOSE_CODE, or the server shut down
        self.dropped = True

    async def run(self) -> None:
        connections = self.state.connections
        with anyio.CancelScope() as scope:
            connections.add(scope)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._read, tg.cancel_scope)
                    await self._write()
                    tg.cancel_scope.cancel()
            finally:
                connections.discard(scope)
        if scope.cancelled_caught:  # server shutdown
            self.dropped = False
            with anyio.move_on_after(_CLOSE_TIMEOUT_S, shield=True):
                await self._close(1001)

    def _open(self) -> bool:
        ws = self.ws
        return (
            ws.application_state is WebSocketState.CONNECTED
            and ws.client_state is WebSocketState.CONNECTED
        )

    async def _close(self, code: int) -> None:
        """Close the socket unless either side already did (a race in normal use, not an
        error: the client may close at the moment the stream ends)."""
        if self._open():
            with contextlib.suppress(*_CLOSED):
                await self.ws.close(code=code)

    async def _send(self, text: str) -> bool:
        """Send one text message; False if the client is gone or was dropped (it blocked too
        long)."""
        async with self.lock:
            if not self._open():
                return False
            with anyio.move_on_after(self.state.config.send_timeout_s) as timeout:
                try:
                    await self.ws.send_text(text)
                except _CLOSED:  # the connection closed while we wrote
                    return False
        if timeout.cancelled_caught:
            logger.warning(
                "dropping a WebSocket client of %s: a write blocked for %.3g s",
                self.session.stream_ref,
                self.state.config.send_timeout_s,
            )
            return False
        return True

    async def _write(self) -> None:
        reader = FrameReader(self.session)
        slicer = LoopSlicer()  # a replay never waits on its own: give the loop turns
        while True:
            batch = await reader.next_batch()
            if not batch:
                break
            for frame in batch:
                if not await self._send(frame_json(frame)):
                    return
            await slicer.tick()
        self.dropped = False  # every frame was sent (or the session was detached)
        with anyio.move_on_after(_CLOSE_TIMEOUT_S):
            await self._close(1000)

    async def _read(self, scope: anyio.CancelScope) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                if message.get("code") == DETACH_CLOSE_CODE:
                    self.dropped = False
                scope.cancel()
                return
            text = message.get("text")
            if text is None:
                raw = message.get("bytes") or b""
                try:
                    text = raw.decode()
                except UnicodeDecodeError:
                    text = None
            reply = await self._handle(text)
            if not await self._send(json.dumps(reply, ensure_ascii=False)):
                scope.cancel()
                return

    async def _handle(self, text: str | None) -> dict[str, Any]:
        runtime = self.state.runtime
        ref = self.session.stream_ref
        limit = self.state.config.max_body_bytes
        try:
            if text is None:
                raise HTTPError(400, "malformed_json", "the message is not UTF-8 text")
            if len(text) > limit:
                raise HTTPError(
                    413,
                    "body_too_large",
                    f"the message has {len(text)} characters; this server accepts at most {limit}",
                )
            message = expect_object(parse_json_text(text, "the message"), "a message")
            kind = message.get("type")
            if kind == "input":
                frame = input_frame(message, "an input message", envelope=("type",))
                reply: dict[str, Any] = {
                    "type": "input_result",
                    "result": await runtime.send(ref, frame),
                }
                if "seq" in frame:
                    reply["seq"] = frame["seq"]
                return reply
            if kind == "cancel":
                reason = cancel_reason(message, "a cancel message", envelope=("type",))
                return {"type": "cancel_result", "result": await runtime.cancel(ref, reason)}
            raise HTTPError(
                422,
                "invalid_request",
                f"unknown message type {kind!r}; send {{'type': 'input', 'payload': ...}} "
                "or {'type': 'cancel', 'reason': ...}",
            )
        except (HTTPError, StreamnbError) as exc:
            return {"type": "error", "error": error_body(exc)}
