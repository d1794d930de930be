"""The ``/rooms`` endpoints: a :class:`~streamnb.rooms.ChatRooms` over HTTP (seed 004).

Mounted by :func:`~streamnb.server.create_app` when it is given ``rooms=``:

================================  =================================================
``GET /rooms``                    ``{"rooms": [room, ...]}``, most recently active first
``POST /rooms``                   ``{"name"}`` -> 201 room
``GET /rooms/{id}``               room with ``"messages"`` and ``"active_reply"``
``PATCH /rooms/{id}``             ``{"name"}`` -> room (rename)
``DELETE /rooms/{id}``            204 (a streaming reply is cancelled first)
``GET /rooms/{id}/messages``      ``{"messages": [...]}``
``POST /rooms/{id}/messages``     ``{"text"}`` -> 202 ``{"stream_ref", "message_id", ...}``
``POST /rooms/{id}/clear``        ``{"removed": n}`` (409 while a reply streams)
``POST /rooms/{id}/cancel``       ``{"reason"?}`` -> ``{"result"}`` (null when idle)
``GET /rooms/{id}/stream``        SSE of the streaming reply (204 when none)
================================  =================================================

A room is ``{"id", "name", "message_count", "busy", "created_at",
"last_active_at"}`` (times in epoch seconds); a message ``{"id", "role",
"content", "status", "created_at", "settled_at", "stream_ref"}``.

Streaming and resume (seed 004's ``resume-request``). ``GET /rooms/{id}/stream``
first sends one ``event: reply`` naming the reply (``room_id``, ``message_id``,
``user_message_id``, ``stream_ref``), then the reply's frames exactly as
``/streams/{ref}/events`` does, except that each ``id:`` is ``<stream_ref>:<seq>``.
An ``EventSource`` that reconnects sends it back as ``Last-Event-ID``; the server
then replays from the next frame of *that* reply (each frame once), or, if that
reply is over and another one streams, that one from its start. With nothing
left to stream the answer is ``204 No Content`` (an ``EventSource`` stops
reconnecting); read the stored messages instead. Closing the connection never
stops a reply (replies are ``on_detach="continue"``; a dropped connection's
observer is parked and taken over on resume like any other, :mod:`.parking`);
``POST /rooms/{id}/cancel`` does.

Errors use the server's JSON error body: ``unknown_room`` (404), ``room_busy``
(409), ``invalid_room_name`` (422), ``room_error`` (400).

Every room's SQLite work runs in a worker thread, never on the event loop (a
listing of many rooms reads one registry query and each room's cached count).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .._frames import Frame
from .._runtime import StreamRuntime
from ..rooms import (
    ActiveReply,
    ChatRooms,
    Room,
    RoomBusyError,
    RoomError,
    RoomNameError,
    UnknownRoomError,
)
from .body import cancel_reason, check_keys, expect_object, optional_int, read_json
from .errors import HTTPError
from .sse import dumps, frame_json, sse_event
from .state import state_of

__all__ = ["room_error", "room_routes"]

Endpoint = Callable[[Request], Awaitable[Response]]
T = TypeVar("T")


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` (a blocking rooms call: SQLite) in a worker thread, awaited."""
    return await run_in_threadpool(fn, *args)


def room_error(exc: RoomError) -> HTTPError:
    """The HTTP error (status, code, message) for a rooms error."""
    if isinstance(exc, UnknownRoomError):
        return HTTPError(404, "unknown_room", str(exc))
    if isinstance(exc, RoomBusyError):
        return HTTPError(409, "room_busy", str(exc))
    if isinstance(exc, RoomNameError):
        return HTTPError(422, "invalid_room_name", str(exc))
    return HTTPError(400, "room_error", str(exc))


def _translated(endpoint: Endpoint) -> Endpoint:
    """Room errors become the server's JSON errors with rooms' own codes."""

    async def call(request: Request) -> Response:
        try:
            return await endpoint(request)
        except RoomError as exc:
            raise room_error(exc) from exc

    call.__name__ = endpoint.__name__
    call.__doc__ = endpoint.__doc__
    return call


def _reply_event(active: ActiveReply) -> str:
    data = {
        "room_id": active.room_id,
        "stream_ref": active.stream_ref,
        "message_id": active.message_id,
        "user_message_id": active.user_message_id,
    }
    return sse_event(dumps(data), event="reply")


def _reply_frame(frame: Frame) -> str:
    """A frame as ``/streams/{ref}/events`` sends it, but with the id ``<ref>:<seq>``."""
    return f"id: {frame.stream_ref}:{frame.seq}\nevent: {frame.kind}\ndata: {frame_json(frame)}\n\n"


def _last_event(request: Request) -> tuple[str | None, int | None]:
    """``Last-Event-ID`` (or ``?after=``) as (stream_ref, seq); a bare number has no ref."""
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or ""
    raw = raw.strip()
    if not raw:
        return None, None
    ref, _, seq = raw.rpartition(":")
    after = optional_int(seq, "the Last-Event-ID", minimum=-1, status=400)
    return (ref or None), after


class RoomsAPI:
    """The endpoints, bound to one registry (see the module docstring)."""

    def __init__(self, rooms: ChatRooms, runtime: StreamRuntime) -> None:
        if rooms.runtime is not runtime:
            raise ValueError(
                "create_app(runtime, rooms=rooms) needs rooms.runtime to be that runtime; "
                "make the rooms with ChatRooms(..., runtime=runtime)"
            )
        self.rooms = rooms

    async def _body(self, request: Request, allowed: tuple[str, ...]) -> dict[str, Any]:
        limit = state_of(request).config.max_body_bytes
        body = await read_json(request, limit, allow_empty=True)
        obj = {} if body is None else expect_object(body)
        check_keys(obj, allowed)
        return obj

    def _room_json(self, room_id: str) -> dict[str, Any]:
        return self.rooms.room_info(room_id)

    def _room(self, request: Request) -> Room:
        return self.rooms.room(request.path_params["room_id"])

    # --- collection -------------------------------------------------------------------

    async def list_rooms(self, request: Request) -> Response:
        """``GET /rooms``."""
        return JSONResponse({"rooms": await off_loop(self.rooms.room_infos)})

    async def create_room(self, request: Request) -> Response:
        """``POST /rooms`` ``{"name"}``."""
        body = await self._body(request, ("name",))

        def create() -> tuple[str, dict[str, Any]]:
            room_id = self.rooms.create_room(body.get("name", ""))
            return room_id, self._room_json(room_id)

        room_id, info = await off_loop(create)
        return JSONResponse(info, status_code=201, headers={"Location": f"/rooms/{room_id}"})

    # --- one room ---------------------------------------------------------------------

    async def get_room(self, request: Request) -> Response:
        """``GET /rooms/{id}``."""
        room = self._room(request)
        active = room.active_reply()
        info, messages = await off_loop(lambda: (self._room_json(room.id), room.message_list()))
        return JSONResponse(
            {
                **info,
                "messages": [m.to_dict() for m in messages],
                "active_reply": None
                if active is None
                else {
                    "stream_ref": active.stream_ref,
                    "message_id": active.message_id,
                    "user_message_id": active.user_message_id,
                },
            }
        )

    async def rename_room(self, request: Request) -> Response:
        """``PATCH /rooms/{id}`` ``{"name"}``."""
        room = self._room(request)
        body = await self._body(request, ("name",))

        def rename() -> dict[str, Any]:
            self.rooms.rename_room(room.id, body.get("name", ""))
            return self._room_json(room.id)

        return JSONResponse(await off_loop(rename))

    async def delete_room(self, request: Request) -> Response:
        """``DELETE /rooms/{id}``."""
        room = self._room(request)
        await self.rooms.delete_room(room.id)
        return Response(status_code=204)

    async def messages(self, request: Request) -> Response:
        """``GET /rooms/{id}/messages``."""
        room = self._room(request)
        messages = await off_loop(room.message_list)
        return JSONResponse({"messages": [m.to_dict() for m in messages]})

    async def send(self, request: Request) -> Response:
        """``POST /rooms/{id}/messages`` ``{"text"}``: start a reply."""
        room = self._room(request)
        body = await self._body(request, ("text",))
        text = body.get("text")
        if not isinstance(text, str):
            raise HTTPError(422, "invalid_request", "'text' must be a string (the message)")
        cap = state_of(request).cap
        cap.admit()
        session = await room.send(text)
        ref = session.stream_ref
        cap.add(ref)
        ids = {m.role: m.id for m in await off_loop(room.message_list) if m.stream_ref == ref}
        return JSONResponse(
            {
                "room_id": room.id,
                "stream_ref": ref,
                "message_id": ids.get("assistant"),
                "user_message_id": ids.get("user"),
                "stream": f"/rooms/{room.id}/stream",
            },
            status_code=202,
        )

    async def clear(self, request: Request) -> Response:
        """``POST /rooms/{id}/clear``."""
        room = self._room(request)
        return JSONResponse({"removed": await off_loop(self.rooms.clear_room, room.id)})

    async def cancel(self, request: Request) -> Response:
        """``POST /rooms/{id}/cancel`` ``{"reason"?}``."""
        room = self._room(request)
        reason = cancel_reason(await self._body(request, ("reason",)))
        return JSONResponse({"result": await room.cancel(reason)})

    async def stream(self, request: Request) -> Response:
        """``GET /rooms/{id}/stream``: the streaming reply as SSE, resumable."""
        state = state_of(request)
        room = self._room(request)
        runtime = self.rooms.runtime
        last_ref, after_seq = _last_event(request)
        active = room.active_reply()
        if active is None:
            return Response(status_code=204)
        if last_ref is not None and last_ref != active.stream_ref:
            after_seq = None  # the client read an earlier reply: this one from its start
        info = runtime.info(active.stream_ref)
        if info.terminal is not None and after_seq is not None and after_seq >= info.terminal.seq:
            return Response(status_code=204)
        session = await state.observe(active.stream_ref, after_seq)
        return state.sse_response(
            session, _reply_frame, preamble=_reply_event(active), label=f"room {room.id}"
        )


def room_routes(rooms: ChatRooms, runtime: StreamRuntime) -> list[BaseRoute]:
    """The ``/rooms`` routes for ``rooms`` (whose runtime must be the app's ``runtime``).

    Raises
    ------
    ValueError
        ``rooms.runtime`` is not ``runtime``.
    """
    api = RoomsAPI(rooms, runtime)
    t = _translated
    return [
        Route("/rooms", t(api.list_rooms), methods=["GET"]),
        Route("/rooms", t(api.create_room), methods=["POST"]),
        Route("/rooms/{room_id}", t(api.get_room), methods=["GET"]),
        Route("/rooms/{room_id}", t(api.rename_room), methods=["PATCH"]),
        Route("/rooms/{room_id}", t(api.delete_room), methods=["DELETE"]),
        Route("/rooms/{room_id}/messages", t(api.messages), methods=["GET"]),
        Route("/rooms/{room_id}/messages", t(api.send), methods=["POST"]),
        Route("/rooms/{room_id}/clear", t(api.clear), methods=["POST"]),
        Route("/rooms/{room_id}/cancel", t(api.cancel), methods=["POST"]),
        Route("/rooms/{room_id}/stream", t(api.stream), methods=["GET"]),
    ]
