"""``create_app(runtime)``: the streamnb HTTP layer as one Starlette application.

Routes (see each module for the wire format):

====================================  =========================================
``GET /``                             chat page (:mod:`.chat`), no auth
``POST /chat``                        seed 002's SSE chat (:mod:`.chat`)
``GET /chat/{ref}/stream``            resume it after ``Last-Event-ID``
``POST /streams``                     open a stream (:mod:`.streams`)
``GET /streams/{ref}``                status and projection summary
``GET /streams/{ref}/events``         SSE of frames, resumable (``Last-Event-ID``)
``POST /streams/{ref}/input``         input to a bidi stream
``POST /streams/{ref}/cancel``        cancel
``POST /streams/{ref}/detach``        explicit detach (:mod:`.parking`)
``WS /streams/{ref}/ws``              frames out, input and cancel in (:mod:`.ws`)
``POST /api/chat``                    AI SDK UI message stream (:mod:`.aisdk`)
``POST /api/chat/{id}/stop``          cancel a chat's stream
``GET /api/chat/{id}/stream``         resume a chat's stream (204 when none)
``/rooms...``                         with ``rooms=``: the rooms' HTTP API (:mod:`.rooms`),
                                      ``WS /rooms/ws`` (seed 004's protocol,
                                      :mod:`.rooms_ws`) and the page ``GET /rooms/``
                                      (:mod:`.rooms_page`)
``GET /ledger/events``                ledger events as JSON (:mod:`.ledger_api`)
``GET /ledger/streams``               ledger streams as JSON
``/v1/stream/{path}``                 Durable Streams (:mod:`.durable`): PUT,
                                      POST, GET, HEAD, DELETE; streamnb's own
                                      streams at ``/v1/stream/streamnb/{ref}``
====================================  =========================================

The app runs on the runtime's event loop (a :class:`~streamnb.StreamRuntime` is
bound to one loop): serve it with :func:`~streamnb.server.serve_in_background`
from a notebook, or ``streamnb serve`` from a shell.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route, WebSocketRoute

from .._runtime import StreamRuntime
from .aisdk import ai_chat, ai_chat_resume, ai_chat_stop
from .auth import BearerAuth
from .chat import chat, chat_page, chat_resume
from .durable import LONG_POLL_TIMEOUT_S, durable_routes
from .durable.protocol import CORS_ALLOW_HEADERS, CORS_EXPOSE_HEADERS
from .errors import exception_handlers
from .guard import RequestGuard
from .ledger_api import ledger_events, ledger_streams
from .limits import DEFAULT_MAX_OPEN_STREAMS
from .state import ServerConfig, ServerState
from .streams import (
    cancel_stream,
    create_stream,
    detach_stream,
    send_input,
    stream_events,
    stream_status,
)
from .timeouts import BODY_TIMEOUT_S
from .ws import stream_ws

if TYPE_CHECKING:
    from ..rooms import ChatRooms

__all__ = ["create_app"]


def create_app(
    runtime: StreamRuntime,
    *,
    token: str | None = None,
    cors_origins: Sequence[str] | None = None,
    max_body_bytes: int = 1_000_000,
    heartbeat_s: float = 15.0,
    send_timeout_s: float = 10.0,
    claim_timeout_s: float = 30.0,
    chat_kind: str = "tutorial.streaming_chatbot",
    rooms: ChatRooms | None = None,
    durable_streams: bool = True,
    long_poll_timeout_s: float = LONG_POLL_TIMEOUT_S,
    reconnect_grace_s: float = 30.0,
    allowed_hosts: Sequence[str] = (),
    max_open_streams: int = DEFAULT_MAX_OPEN_STREAMS,
    body_timeout_s: float = BODY_TIMEOUT_S,
) -> Starlette:
    """Build the ASGI app serving ``runtime``'s handlers over HTTP.

    Parameters
    ----------
    runtime : StreamRuntime
        The runtime whose handlers and streams are served (the same object a
        notebook queries: ``runtime.ledger`` shows what the server settled).
    token : str, optional
        Require ``Authorization: Bearer <token>`` (or ``?token=``) on every
        endpoint except ``GET /``. Default: no auth (bind to 127.0.0.1).
    cors_origins : sequence of str, optional
        Origins allowed to call the API from a browser (``["*"]`` for any).
        Default: CORS off.
    max_body_bytes : int, default 1_000_000
        Larger request bodies (and WebSocket messages) get 413.
    heartbeat_s : float, default 15.0
        Seconds of idle time before an SSE response sends a ``: ping`` comment;
        0 disables heartbeats.
    send_timeout_s : float, default 10.0
        A client whose socket accepts nothing for this many seconds is dropped
        (its session detaches); the stream itself is never slowed by a reader.
    claim_timeout_s : float, default 30.0
        How long a stream opened by ``POST /streams`` is held for its first
        SSE/WebSocket observer before the server lets go (then the handler's
        ``on_detach`` applies).
    chat_kind : str, default "tutorial.streaming_chatbot"
        The handler kind behind ``POST /chat`` and ``POST /api/chat``.
    rooms : ChatRooms, optional
        Also serve these chat rooms under ``/rooms``: the JSON/SSE API
        (:mod:`.rooms`), ``WS /rooms/ws`` (:mod:`.rooms_ws`) and the page at
        ``GET /rooms/`` (:mod:`.rooms_page`); their ``runtime`` must be ``runtime``.
    durable_streams : bool, default True
        Serve the Durable Streams protocol under ``/v1/stream/`` (:mod:`.durable`),
        storing streams in the ledger's file (in memory for an in-memory ledger).
    long_poll_timeout_s : float, default 20.0
        How long a Durable Streams long-poll waits for data before ``204``, seconds.
    reconnect_grace_s : float, default 30.0
        A dropped SSE or WebSocket connection is not a detach: its session stays
        attached (parked) this many seconds for a reconnection to take it over
        (:mod:`.parking`); then it detaches and ``on_detach`` applies. ``0``
        detaches at once. ``POST /streams/{ref}/detach`` detaches without waiting.
    allowed_hosts : sequence of str, default ()
        ``Host`` names served besides ``localhost``, ``127.0.0.1`` and ``[::1]``
        (:func:`~streamnb.server.serve_in_background` and ``streamnb serve`` add
        the bound host); ``["*"]`` serves any. Every request is also checked by
        :mod:`.guard`: a state-changing request or WebSocket from a browser page
        of another origin (not in ``cors_origins``) gets ``403``, and a body to
        streamnb's own endpoints must be ``application/json`` (``415``).
    max_open_streams : int, default 2048
        Most streams the endpoints may hold open at once (opened here, not yet
        settled); past it ``POST /streams``, ``/chat``, ``/api/chat`` and room
        messages get ``429 too_many_streams`` (:mod:`.limits`). A bidi stream
        nobody feeds or watches settles ``cancelled``/``idle`` after the
        runtime's ``idle_timeout_s``.
    body_timeout_s : float, default 30.0
        Seconds a client has to send a request body (``408 request_timeout``
        after); the headers' limit is the server's (``serve_in_background``'s
        ``header_timeout_s``, :mod:`.timeouts`).

    Returns
    -------
    starlette.applications.Starlette
        ``app.state.streamnb`` holds the shared server state.

    Examples
    --------
    Serve it with uvicorn (``streamnb serve``, or
    :func:`~streamnb.server.serve_in_background` in a notebook); any ASGI
    client works, here httpx's in-process transport:

    >>> import httpx
    >>> import streamnb as sn
    >>> from streamnb.demo import demo_handlers
    >>> runtime = sn.StreamRuntime()
    >>> for handler in demo_handlers():
    ...     _ = runtime.register(handler)
    >>> app = create_app(runtime, token="s3cret")
    >>> async def get(path, token):
    ...     transport = httpx.ASGITransport(app)
    ...     auth = {"Authorization": f"Bearer {token}"}
    ...     base = "http://localhost"  # a name the server answers to (allowed_hosts)
    ...     async with httpx.AsyncClient(transport=transport, base_url=base) as client:
    ...         response = await client.get(path, headers=auth)
    ...     return response.status_code, response.json()
    >>> runtime.run(get("/ledger/streams", "s3cret"))
    (200, {'streams': []})
    >>> runtime.run(get("/ledger/streams", "guess"))[1]["error"]["type"]
    'unauthorized'
    >>> runtime.close()
    """
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be >= 1")
    if heartbeat_s < 0 or send_timeout_s <= 0 or claim_timeout_s < 0:
        raise ValueError("heartbeat_s, claim_timeout_s must be >= 0 and send_timeout_s > 0")
    if not long_poll_timeout_s > 0:
        raise ValueError("long_poll_timeout_s must be > 0 (seconds)")
    if not reconnect_grace_s >= 0:
        raise ValueError("reconnect_grace_s must be >= 0 (seconds)")
    if max_open_streams < 1:
        raise ValueError("max_open_streams must be >= 1")
    if not body_timeout_s > 0:
        raise ValueError("body_timeout_s must be seconds > 0")
    config = ServerConfig(
        token=token or None,
        max_body_bytes=int(max_body_bytes),
        heartbeat_s=float(heartbeat_s),
        send_timeout_s=float(send_timeout_s),
        claim_timeout_s=float(claim_timeout_s),
        chat_kind=chat_kind,
        durable_streams=bool(durable_streams),
        long_poll_timeout_s=float(long_poll_timeout_s),
        reconnect_grace_s=float(reconnect_grace_s),
        max_open_streams=int(max_open_streams),
    )
    state = ServerState(runtime, config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await state.aclose()

    routes = [
        Route("/", chat_page, methods=["GET"]),
        Route("/chat", chat, methods=["POST"]),
        Route("/chat/{ref}/stream", chat_resume, methods=["GET"]),
        Route("/streams", create_stream, methods=["POST"]),
        Route("/streams/{ref}", stream_status, methods=["GET"]),
        Route("/streams/{ref}/events", stream_events, methods=["GET"]),
        Route("/streams/{ref}/input", send_input, methods=["POST"]),
        Route("/streams/{ref}/cancel", cancel_stream, methods=["POST"]),
        Route("/streams/{ref}/detach", detach_stream, methods=["POST"]),
        WebSocketRoute("/streams/{ref}/ws", stream_ws),
        Route("/api/chat", ai_chat, methods=["POST"]),
        Route("/api/chat/{id}/stop", ai_chat_stop, methods=["POST"]),
        Route("/api/chat/{id}/stream", ai_chat_resume, methods=["GET"]),
        Route("/ledger/events", ledger_events, methods=["GET"]),
        Route("/ledger/streams", ledger_streams, methods=["GET"]),
    ]
    if state.durable is not None:
        routes += durable_routes()
    public_paths: frozenset[str] = frozenset()
    if rooms is not None:
        from .rooms import room_routes
        from .rooms_page import PAGE_PATHS, rooms_page_routes
        from .rooms_ws import rooms_ws_routes

        # the page and its assets first: /rooms/static/... is not a room
        routes += rooms_page_routes() + rooms_ws_routes(rooms) + room_routes(rooms, runtime)
        public_paths = PAGE_PATHS
    # outermost: a request from a page of another site is refused before anything runs
    middleware: list[Middleware] = [
        Middleware(
            RequestGuard,
            allowed_hosts=[str(h) for h in allowed_hosts],
            cors_origins=list(cors_origins or ()),
        )
    ]
    if cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors_origins),
                allow_methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Last-Event-ID", *CORS_ALLOW_HEADERS],
                expose_headers=[
                    "X-Stream-Ref",
                    "x-vercel-ai-ui-message-stream",
                    *CORS_EXPOSE_HEADERS,
                ],
                max_age=600,
            )
        )
    if config.token:
        middleware.append(Middleware(BearerAuth, token=config.token, public_paths=public_paths))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    app.state.streamnb = state
    app.state.body_timeout_s = float(body_timeout_s)  # read by server/body.py
    return app
