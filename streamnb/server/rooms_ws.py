"""``WS /rooms/ws``: seed 004's chat rooms over one WebSocket, resumable after a drop.

Seed 004's ``OverseerAgent`` talks to its clients over one WebSocket: typed
server messages, ``cancel`` and ``resume-request`` client messages, and the room
operations as ``@callable`` methods (the Agents SDK's RPC). This endpoint speaks
the same protocol over a :class:`~streamnb.rooms.ChatRooms` (mounted with
``create_app(runtime, rooms=rooms)``). Every message is a JSON text message.

Server -> client
----------------
================================================  ==========================================
``{"type": "cf_agent_state",                      the room list, to every connection, on
"state": {"rooms": [RoomInfo]}}``                 connect and whenever it changes (create,
                                                  rename, clear, delete, a reply starts or
                                                  ends: counts change)
``{"type": "messages", "roomId",                  a room's stored transcript (after
"messages": [ChatMessage]}``                      ``switchRoom``/``createRoom``, and to every
                                                  viewer of a room that was cleared)
``{"type": "stream-start", "roomId",              a reply starts streaming in the
"requestId", "messageId"}``                       connection's active room
``{"type": "stream-event", "requestId",           one AI SDK UI message chunk, as JSON text
"event", "index", "seq", "replay"?}``             (:mod:`.ui_chunks`); ``index`` counts the
                                                  reply's chunks from 0, ``seq`` is the frame's
``{"type": "stream-done", "requestId",            the reply settled; its stored message
"message": ChatMessage}``
``{"type": "stream-resuming", "requestId",        answer to ``resume-request``: the chunks
"roomId", "messageId"}``                          follow, ``replay: true`` up to where the
                                                  reply was when it was asked
``{"type": "rpc", "id", "success": true,          the result of a call ...
"result", "done": true}``
``{"type": "rpc", "id", "success": false,         ... or its error (``errorType``: the HTTP
"error", "errorType"}``                           API's codes, e.g. ``unknown_room``)
``{"type": "error", "error": {"type",             a client message that is not valid
"message"}}``
================================================  ==========================================

``RoomInfo`` is ``{"id", "name", "messageCount", "createdAt", "lastActiveAt",
"busy"}`` and ``ChatMessage`` ``{"id", "role", "content", "createdAt", "status"}``
(times as ISO 8601 UTC text).

Client -> server
----------------
``{"type": "rpc", "id": str, "method": str, "args": [...]}`` calls one of
``createRoom(name) -> id`` (and switches to it), ``switchRoom(roomId)``,
``renameRoom(roomId, name)``, ``clearRoom(roomId)``, ``deleteRoom(roomId)``,
``sendMessage(text, requestId) -> {"requestId", "streamRef", "messageId"}`` (in
the active room). ``{"type": "cancel", "requestId"}`` stops that reply (Stop).
``{"type": "resume-request", "requestId"?, "afterIndex"?}`` asks for the reply
streaming in the active room.

The active room is per connection, as in the seed (``switchRoom``,
``createRoom``); a new connection has none until it switches.

Resume. After a reconnection a client switches back to its room (``messages``
brings the stored transcript) and sends ``resume-request``: the server answers
``stream-resuming`` and replays the reply's chunks (``replay: true``), then
continues live. As in the seed, a client that gives nothing gets the reply from
its first chunk and starts the message again at ``stream-resuming``; a client
that kept its partial text gives the ``requestId`` and the ``index`` of the last
chunk it applied as ``afterIndex`` and gets only the chunks after it, so every
chunk reaches it exactly once. The connection's observer of the reply is
parked when the connection drops (:mod:`.parking`) and taken over by the
resume; a close with code 1000 is an explicit detach. Replies are
``on_detach="continue"``: a drop never stops one; ``cancel`` does.

Deliberate departures from seed 004, each written for a reason:

* ``sendMessage`` answers once the reply *started* (the seed's answers when it
  ended); the reply itself arrives as ``stream-*`` messages.
* ``cancel`` stops the reply (its stream is cancelled and the partial text is
  stored ``cancelled``); the seed's only stops relaying chunks to that client.
* ``stream-event`` carries ``index`` and ``seq``, ``resume-request`` takes an
  optional ``requestId`` and ``afterIndex`` (exactly-once resume), and several
  connections can follow one reply: every connection viewing a room sees a
  reply that starts there (``stream-start``), not only the sender's.
* ``resume-request`` when no reply streams in the active room is answered with
  the room's ``messages`` (the seed sends nothing), so a client whose reply
  ended while it was away finds it stored.
* ``messages`` holds stored messages only: a reply still streaming is not in it
  (it comes as ``stream-start``/``stream-resuming``), as the seed stores a reply
  only when it is done. Messages and rooms carry ``status`` and ``busy``.
* A reply started elsewhere (the HTTP API, the widget) has its stream ref as
  its ``requestId``.
* Times are ISO 8601 UTC text, not SQLite's ``CURRENT_TIMESTAMP`` format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import anyio
import anyio.abc
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .._errors import StreamnbError, UnknownStreamError
from .._frames import TERMINAL_KINDS
from .._runtime import Session
from ..rooms import ChatRooms, Message, RoomError, RoomEvent
from .body import expect_object, parse_json_text
from .errors import HTTPError, error_body
from .parking import Observer
from .rooms import room_error
from .slices import LoopSlicer
from .sse import FrameReader, dumps
from .state import ServerState, state_of
from .ui_chunks import UIMessageChunks

__all__ = ["RoomSockets", "rooms_ws_routes"]

logger = logging.getLogger("streamnb.server")

#: the close code with which a client detaches explicitly (RFC 6455 normal closure)
DETACH_CLOSE_CODE = 1000
#: most request ids remembered (request id <-> stream ref), oldest forgotten first
MAX_REQUESTS = 10_000
_CLOSE_TIMEOUT_S = 1.0
#: the reason recorded when a client's ``cancel`` stops a reply
CANCEL_REASON = "user pressed stop"


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def chat_message(m: Message) -> dict[str, Any]:
    """A stored message as seed 004's ``ChatMessage`` (plus ``status``)."""
    return {
        "id": m.id,
        "role": m.role,
        "content": m.content,
        "createdAt": _iso(m.created_at),
        "status": m.status,
    }


def room_info(info: dict[str, Any]) -> dict[str, Any]:
    """A room of ``ChatRooms.room_infos()`` as seed 004's ``RoomInfo`` (plus ``busy``)."""
    return {
        "id": info["id"],
        "name": info["name"],
        "messageCount": info["message_count"],
        "createdAt": _iso(info["created_at"]),
        "lastActiveAt": _iso(info["last_active_at"]),
        "busy": info["busy"],
    }


@dataclass(eq=False, slots=True)
class _Follow:
    """The reply a connection follows: its observer, where to start, its cancel scope."""

    room_id: str
    request_id: str
    message_id: str
    observer: Observer
    after_index: int = -1
    replay_before: int = 0  # frames with a lower seq are sent as replay
    scope: anyio.CancelScope | None = None


class RoomSockets:
    """The connections of ``WS /rooms/ws`` for one registry (one per app).

    Holds the request ids (``requestId`` <-> stream ref, bounded) and the live
    connections; follows the registry's events while a connection is open
    (subscribed with the first connection, unsubscribed with the last), and
    hands each change to the connections on the server's loop.
    """

    def __init__(self, rooms: ChatRooms) -> None:
        self.rooms = rooms
        self._requests: OrderedDict[str, str] = OrderedDict()  # request id -> stream ref
        self._request_of: dict[str, str] = {}  # stream ref -> request id
        self._connections: set[_RoomsConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # --- request ids ---------------------------------------------------------------------

    def remember(self, request_id: str, stream_ref: str) -> None:
        self._requests[request_id] = stream_ref
        self._request_of[stream_ref] = request_id
        while len(self._requests) > MAX_REQUESTS:
            _, ref = self._requests.popitem(last=False)
            self._request_of.pop(ref, None)

    def request_id(self, stream_ref: str) -> str:
        """The client's id for a reply (its stream ref when started elsewhere)."""
        return self._request_of.get(stream_ref, stream_ref)

    def stream_ref(self, request_id: str) -> str | None:
        return self._requests.get(request_id) or (
            request_id if request_id.startswith("st_") else None
        )

    # --- connections and the registry's events --------------------------------------------

    def add(self, connection: _RoomsConnection) -> None:
        self._loop = asyncio.get_running_loop()
        self._connections.add(connection)
        if self._unsubscribe is None:
            self._unsubscribe = self.rooms.subscribe(self._on_event)

    def discard(self, connection: _RoomsConnection) -> None:
        self._connections.discard(connection)
        if not self._connections and self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _on_event(self, event: RoomEvent) -> None:
        """A registry listener: runs on the thread that made the change."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._changed, event)

    def _changed(self, event: RoomEvent) -> None:
        for connection in list(self._connections):
            connection.room_changed(event)


class _RoomsConnection:
    """One client of ``WS /rooms/ws``: its active room, the reply it follows, its sends."""

    def __init__(self, websocket: WebSocket, hub: RoomSockets, state: ServerState) -> None:
        self.ws = websocket
        self.hub = hub
        self.rooms = hub.rooms
        self.state = state
        self.active_room: str | None = None
        self.follow: _Follow | None = None
        self.sending = False  # a sendMessage call is starting a reply
        self.lock = anyio.Lock()
        self.events: list[RoomEvent] = []  # registry changes not handled yet
        self.changed = asyncio.Event()
        self.tasks: anyio.abc.TaskGroup | None = None
        #: how the connection ended, for parking (see ws.py): False only for a close with
        #: DETACH_CLOSE_CODE or a server shutdown
        self.dropped = True

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        connections = self.state.connections
        with anyio.CancelScope() as scope:
            connections.add(scope)
            try:
                async with anyio.create_task_group() as tg:
                    self.tasks = tg
                    tg.start_soon(self._watch_rooms)
                    await self._read()
                    tg.cancel_scope.cancel()
            finally:
                connections.discard(scope)
                self.tasks = None
        if scope.cancelled_caught:  # server shutdown
            self.dropped = False
            with anyio.move_on_after(_CLOSE_TIMEOUT_S, shield=True):
                await self.ws.close(code=1001)

    async def release(self) -> None:
        """The connection ended: park (dropped) or detach the reply it followed."""
        follow, self.follow = self.follow, None
        if follow is not None:
            await self.state.parking.release(follow.observer, dropped=self.dropped)

    async def send(self, message: dict[str, Any]) -> None:
        """Send one message; a client that does not take it within send_timeout_s is dropped."""
        text = dumps(message)
        try:
            async with self.lock:
                with anyio.move_on_after(self.state.config.send_timeout_s) as timeout:
                    await self.ws.send_text(text)
        except (WebSocketDisconnect, OSError, RuntimeError):
            # the client went away (uvicorn's ClientDisconnected is an OSError; starlette
            # raises RuntimeError after a close): the reader sees it too; end the tasks
            self._end()
            return
        if timeout.cancelled_caught:
            logger.warning("dropping a rooms WebSocket client: a write blocked")
            self._end()

    def _end(self) -> None:
        if self.tasks is not None:
            self.tasks.cancel_scope.cancel()

    # --- the room list ------------------------------------------------------------------

    def room_changed(self, event: RoomEvent) -> None:
        """A registry change (a callback on the server's loop): handled by _watch_rooms."""
        self.events.append(event)
        self.changed.set()

    async def _watch_rooms(self) -> None:
        """Send the room list on connect and after every change; follow new replies in the
        active room, send its transcript again when it is cleared (a task of the connection)."""
        while True:
            self.changed.clear()
            events, self.events = self.events, []
            try:  # SQLite: in a worker thread, never on the loop
                rooms = [room_info(r) for r in await run_in_threadpool(self.rooms.room_infos)]
            except RoomError:  # the registry was closed
                return
            await self.send({"type": "cf_agent_state", "state": {"rooms": rooms}})
            for event in events:
                if event.room_id != self.active_room:
                    continue
                if event.kind == "reply_started" and event.stream_ref is not None:
                    await self._follow_new(event.room_id, event.stream_ref)
                elif event.kind == "cleared":
                    await self._send_messages(event.room_id)
                elif event.kind == "deleted":
                    self.active_room = None
            await self.changed.wait()

    async def _send_messages(self, room_id: str) -> None:
        try:
            stored = await run_in_threadpool(self.rooms.room(room_id).message_list)
        except RoomError:
            return
        messages = [chat_message(m) for m in stored if m.status != "streaming"]
        await self.send({"type": "messages", "roomId": room_id, "messages": messages})

    # --- client messages ----------------------------------------------------------------

    async def _read(self) -> None:
        limit = self.state.config.max_body_bytes
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                if message.get("code") == DETACH_CLOSE_CODE:
                    self.dropped = False
                return
            text = message.get("text")
            if text is None:
                with contextlib.suppress(UnicodeDecodeError):
                    text = (message.get("bytes") or b"").decode()
            try:
                if text is None:
                    raise HTTPError(400, "malformed_json", "the message is not UTF-8 text")
                if len(text) > limit:
                    raise HTTPError(413, "body_too_large", f"a message has at most {limit} chars")
                await self._handle(expect_object(parse_json_text(text, "the message"), "a message"))
            except (HTTPError, StreamnbError) as exc:
                await self.send({"type": "error", "error": error_body(exc)})

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "rpc":
            await self._rpc(message)
        elif kind == "cancel":
            request_id = message.get("requestId")
            if not isinstance(request_id, str):
                raise HTTPError(422, "invalid_request", "'cancel' needs a string 'requestId'")
            ref = self.hub.stream_ref(request_id)
            if ref is not None:
                with contextlib.suppress(UnknownStreamError):
                    await self.state.runtime.cancel(ref, CANCEL_REASON)
        elif kind == "resume-request":
            await self._resume(message.get("requestId"), message.get("afterIndex"))
        else:
            raise HTTPError(
                422,
                "invalid_request",
                f"unknown message type {kind!r}; send 'rpc', 'cancel' or 'resume-request'",
            )

    async def _rpc(self, message: dict[str, Any]) -> None:
        call_id = message.get("id")
        method = message.get("method")
        args = message.get("args", [])
        if (
            not isinstance(call_id, str)
            or not isinstance(method, str)
            or not isinstance(args, list)
        ):
            raise HTTPError(
                422,
                "invalid_request",
                "an rpc message is {'type': 'rpc', 'id': str, 'method': str, 'args': [...]}",
            )
        try:
            call = self._methods().get(method)
            if call is None:
                raise HTTPError(
                    404,
                    "unknown_method",
                    f"no method {method!r}; call one of {sorted(self._methods())}",
                )
            try:
                result = await call(*args)
            except TypeError as exc:
                if isinstance(exc, RoomError):
                    raise
                raise HTTPError(422, "invalid_request", f"{method}: {exc}") from exc
        except RoomError as exc:
            error = room_error(exc)
            reply = {"type": "rpc", "id": call_id, "success": False}
            await self.send({**reply, "error": error.message, "errorType": error.type})
        except (HTTPError, StreamnbError) as exc:
            body = error_body(exc)
            reply = {"type": "rpc", "id": call_id, "success": False}
            await self.send({**reply, "error": body["message"], "errorType": body["type"]})
        else:
            await self.send(
                {"type": "rpc", "id": call_id, "success": True, "result": result, "done": True}
            )

    def _methods(self) -> dict[str, Callable[..., Awaitable[Any]]]:
        return {
            "createRoom": self.create_room,
            "switchRoom": self.switch_room,
            "renameRoom": self.rename_room,
            "clearRoom": self.clear_room,
            "deleteRoom": self.delete_room,
            "sendMessage": self.send_message,
        }

    # --- the callable methods (seed 004's @callable) -------------------------------------

    async def create_room(self, name: str) -> str:
        room_id = await run_in_threadpool(self.rooms.create_room, name)
        await self.switch_room(room_id)
        return room_id

    async def switch_room(self, room_id: str) -> None:
        self.rooms.room(_text(room_id, "roomId"))  # UnknownRoomError first: nothing changes
        await self._stop_following()
        self.active_room = room_id
        await self._send_messages(room_id)

    async def rename_room(self, room_id: str, name: str) -> None:
        await run_in_threadpool(self.rooms.rename_room, _text(room_id, "roomId"), name)

    async def clear_room(self, room_id: str) -> None:
        # viewers get messages (event)
        await run_in_threadpool(self.rooms.clear_room, _text(room_id, "roomId"))

    async def delete_room(self, room_id: str) -> None:
        await self.rooms.delete_room(_text(room_id, "roomId"))
        if self.active_room == room_id:
            self.active_room = None

    async def send_message(self, text: str, request_id: str) -> dict[str, Any]:
        request_id = _text(request_id, "requestId")
        if self.active_room is None:
            raise RoomError("no active room: call switchRoom(roomId) or createRoom(name) first")
        room = self.rooms.room(self.active_room)
        cap = self.state.cap
        cap.admit()  # at most max_open_streams open streams per server (server/limits.py)
        self.sending = True
        try:
            session = await room.send(text)
            ref = session.stream_ref
            cap.add(ref)
            self.hub.remember(request_id, ref)
            active = room.active_reply()
            message_id = active.message_id if active is not None else ""
            await self._stop_following()
            await self._start(room.id, request_id, message_id, session, "stream-start")
        finally:
            self.sending = False  # from here on, self.follow names this reply
        return {"requestId": request_id, "streamRef": ref, "messageId": message_id}

    # --- following a reply --------------------------------------------------------------

    async def _resume(self, request_id: Any, after_index: Any) -> None:
        if request_id is not None and not isinstance(request_id, str):
            raise HTTPError(422, "invalid_request", "'requestId' must be a string")
        if after_index is not None and (type(after_index) is not int or after_index < -1):
            raise HTTPError(422, "invalid_request", "'afterIndex' must be an integer >= -1")
        if self.active_room is None:
            return  # as in the seed: nothing to resume without an active room
        active = self.rooms.room(self.active_room).active_reply()
        if active is None:  # it ended meanwhile: the stored transcript has it
            await self._send_messages(self.active_room)
            return
        ref = active.stream_ref
        known = self.hub.request_id(ref)
        after = after_index if after_index is not None and request_id == known else -1
        await self._stop_following()
        session = await self.state.observe(ref)  # takes over this client's parked observer
        await self._start(
            active.room_id, known, active.message_id, session, "stream-resuming", after
        )

    async def _follow_new(self, room_id: str, stream_ref: str) -> None:
        """A reply started in the active room by someone else: follow it from its start."""
        if self.sending:
            return  # this connection's own sendMessage follows it
        try:
            room = self.rooms.room(room_id)
            active = room.active_reply()
            if active is None or active.stream_ref != stream_ref or self.active_room != room_id:
                return
            current = self.follow
            if current is not None and current.observer.stream_ref == stream_ref:
                return  # already following it (its sender, or a resume)
            session = await self.state.observe(stream_ref)
        except (RoomError, UnknownStreamError):
            return
        await self._stop_following()
        request_id = self.hub.request_id(stream_ref)
        await self._start(room_id, request_id, active.message_id, session, "stream-start")

    async def _start(
        self,
        room_id: str,
        request_id: str,
        message_id: str,
        session: Session,
        announce: str,
        after_index: int = -1,
    ) -> None:
        info = self.state.runtime.info(session.stream_ref)
        follow = _Follow(
            room_id,
            request_id,
            message_id,
            self.state.parking.connect(session),
            after_index=after_index,
            replay_before=info.next_seq if announce == "stream-resuming" else 0,
        )
        self.follow = follow
        await self.send(
            {"type": announce, "roomId": room_id, "requestId": request_id, "messageId": message_id}
        )
        assert self.tasks is not None
        self.tasks.start_soon(self._relay, follow)

    async def _stop_following(self) -> None:
        """Stop following the current reply: an explicit detach (not a drop)."""
        follow, self.follow = self.follow, None
        if follow is None:
            return
        if follow.scope is not None:
            follow.scope.cancel()
        await self.state.parking.release(follow.observer, dropped=False)

    async def _relay(self, follow: _Follow) -> None:
        """Send the reply's chunks (a task of the connection), then ``stream-done``."""
        if self.follow is not follow:  # stopped before this task started
            return
        session = follow.observer.session
        chunks = UIMessageChunks(follow.message_id, session.stream_ref)
        index = -1
        with anyio.CancelScope() as scope:
            follow.scope = scope
            reader = FrameReader(session)
            slicer = LoopSlicer()  # a long reply replayed never holds the loop
            while batch := await reader.next_batch():
                await slicer.tick()
                for frame in batch:
                    for chunk in chunks(frame):
                        index += 1
                        if index <= follow.after_index:
                            continue
                        event: dict[str, Any] = {
                            "type": "stream-event",
                            "requestId": follow.request_id,
                            "event": json.dumps(chunk, ensure_ascii=False),
                            "index": index,
                            "seq": frame.seq,
                        }
                        if frame.seq < follow.replay_before:
                            event["replay"] = True
                        await self.send(event)
                    if frame.kind in TERMINAL_KINDS:
                        await self._done(follow)
                        return

    async def _done(self, follow: _Follow) -> None:
        stored = None
        with contextlib.suppress(RoomError):
            for m in await run_in_threadpool(self.rooms.room(follow.room_id).message_list):
                if m.id == follow.message_id:
                    stored = m
        message = (
            chat_message(stored)
            if stored is not None
            else {"id": follow.message_id, "role": "assistant", "content": "", "status": "deleted"}
        )
        await self.send({"type": "stream-done", "requestId": follow.request_id, "message": message})
        if self.follow is follow:
            self.follow = None
            await self.state.parking.release(follow.observer, dropped=False)


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise HTTPError(422, "invalid_request", f"'{name}' must be a string")
    return value


def rooms_ws_routes(rooms: ChatRooms) -> list[BaseRoute]:
    """The ``WS /rooms/ws`` route for ``rooms`` (see the module docstring)."""
    hub = RoomSockets(rooms)

    async def rooms_ws(websocket: WebSocket) -> None:
        state = state_of(websocket)
        await websocket.accept()
        connection = _RoomsConnection(websocket, hub, state)
        hub.add(connection)
        try:
            await connection.run()
        finally:
            hub.discard(connection)
            with anyio.CancelScope(shield=True):
                await connection.release()

    return [WebSocketRoute("/rooms/ws", rooms_ws)]
