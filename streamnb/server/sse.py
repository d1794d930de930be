"""Server-Sent Events for attached streams: framing, batching, heartbeats, disconnects.

An SSE response here is one writer and one disconnect watcher, both owned by the
response: the writer runs in the request's own task, the watcher in a task group
around it, and whichever finishes first cancels the other (as Starlette's
``StreamingResponse.__call__`` does). When the response ends, for any reason,
both are gone and ``on_close`` runs (the endpoints pass ``session.detach``:
a dropped client is a *detach*, and the handler's ``on_detach`` decides what that
means; the server never cancels a stream because a connection closed).

The writer reads frames from the session's cursor into the stream's frame log
(:class:`FrameReader`): it waits for one frame, then takes every frame already
in the log (up to a cap) and sends them as **one** ASGI body message, so a fast
stream costs one ``send`` per batch rather than per event. The bytes on the wire
are exactly the per-event framing; only the TCP writes are coarser. A client
that stops reading makes ``send`` block once the socket buffers fill; after
``send_timeout_s`` the response is dropped (uvicorn closes the connection and
logs "returned without completing response") and the session detaches. The
handler is never slowed by a reader: the reader only falls behind in the log.

Heartbeats are SSE comments (``: ping``) sent when no event went out for
``heartbeat_s`` seconds; they come from the writer's own wait (a timeout around
the cancel-safe cursor read), so there is no separate heartbeat task and no
lock between two writers.

Deliberate departure: this module does not use sse-starlette's
``EventSourceResponse``. That class monkey-patches ``uvicorn.Server.handle_exit``
at import time, starts a process-wide shutdown watcher task that polls every
0.5 s and is owned by nobody (the orphan-task family of sse-starlette issue
#152), runs a separate ping task that must share a lock with the writer, and
sends one ASGI message per event (it cannot batch without giving up its own
framing). Here every task has an owner, server shutdown is an explicit
:meth:`Connections.close_all`, and batching keeps the framing byte-identical.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .._errors import UnknownStreamError
from .._frames import TERMINAL_KINDS, Frame
from .._runtime import Session
from .slices import LoopSlicer

__all__ = [
    "HEARTBEAT",
    "SSE_HEADERS",
    "ChunkSource",
    "Connections",
    "FrameEvents",
    "FrameReader",
    "RenderedFrames",
    "SSEResponse",
    "dumps",
    "frame_event",
    "frame_json",
    "sse_event",
]

logger = logging.getLogger("streamnb.server")

#: the heartbeat: an SSE comment line, ignored by every SSE parser
HEARTBEAT = b": ping\n\n"
#: most frames read into one batch (one ASGI send)
MAX_BATCH = 512
#: how long a closing server waits to finish a response politely, seconds
_FINISH_TIMEOUT_S = 1.0

SSE_HEADERS: Mapping[str, str] = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


def sse_event(data: str, *, event: str | None = None, id: int | str | None = None) -> str:
    """One SSE event: optional ``id:`` and ``event:`` lines, one ``data:`` line, a blank line.

    ``data`` must be a single line (compact JSON always is).
    """
    head = ""
    if id is not None:
        head = f"id: {id}\n"
    if event is not None:
        head += f"event: {event}\n"
    return f"{head}data: {data}\n\n"


#: compact JSON with non-ASCII kept, built once (``json.dumps`` with options builds an
#: encoder per call)
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_string = json.encoder.encode_basestring  # the C string encoder json.dumps uses here


def frame_json(frame: Frame) -> str:
    """``frame.to_json()``, byte for byte, with a fast path for text ``output`` frames.

    Token frames (``output`` with a string payload and channel) are most of any
    stream; they are formatted directly around the C string encoder instead of
    going through ``to_dict`` and a dict encoder.
    """
    payload = frame.payload
    if (
        frame.kind == "output"
        and type(payload) is str
        and type(frame.channel) is str
        and frame.reason is None
        and frame.error is None
        and frame.terminal is None
    ):
        return (
            f'{{"kind":"output","stream_ref":{_string(frame.stream_ref)},"seq":{frame.seq},'
            f'"at":{float(frame.at)!r},"channel":{_string(frame.channel)},'
            f'"payload":{_string(payload)}}}'
        )
    return dumps(frame.to_dict())


def frame_event(frame: Frame) -> str:
    """A frame as an SSE event: ``id:`` = seq, ``event:`` = kind, ``data:`` = the frame's JSON."""
    return f"id: {frame.seq}\nevent: {frame.kind}\ndata: {frame_json(frame)}\n\n"


class FrameEvents:
    """:func:`frame_event` for the frames of one stream, with the per-stream parts cached.

    The ref's and the current channel's JSON are encoded once, and a token frame
    becomes its whole event in one format step; the output is byte-identical to
    :func:`frame_event`.
    """

    __slots__ = ("_channel", "_channel_json", "_head", "_ref")

    def __init__(self, stream_ref: str) -> None:
        self._ref = stream_ref
        self._head = f',"stream_ref":{_string(stream_ref)},"seq":'
        self._channel: str | None = None
        self._channel_json = ""

    def __call__(self, frame: Frame) -> str:
        payload = frame.payload
        if (
            frame.kind != "output"
            or type(payload) is not str
            or frame.stream_ref != self._ref
            or frame.reason is not None
            or frame.error is not None
            or frame.terminal is not None
        ):
            return frame_event(frame)
        channel = frame.channel
        if channel != self._channel:
            if type(channel) is not str:
                return frame_event(frame)
            self._channel = channel
            self._channel_json = _string(channel)
        seq = frame.seq
        return (
            f'id: {seq}\nevent: output\ndata: {{"kind":"output"{self._head}{seq},'
            f'"at":{float(frame.at)!r},"channel":{self._channel_json},"payload":{_string(payload)}}}'
            "\n\n"
        )


class FrameReader:
    """Reads a session's frames in batches; every wait is cancel-safe.

    :meth:`next_batch` waits for one frame, then takes the frames already in
    the stream's log without waiting again. Cancelled while waiting, it has
    consumed nothing, so a timeout around it loses no frame.
    """

    __slots__ = ("_done", "_out", "_ref", "_rt", "session")

    def __init__(self, session: Session) -> None:
        self.session = session
        self._out = session.output
        self._rt = session.runtime
        self._ref = session.stream_ref
        self._done = False

    def _ready(self) -> int:
        """Frames the cursor can read now without waiting."""
        try:
            info = self._rt.info(self._ref)
        except UnknownStreamError:  # evicted from memory: read one at a time
            return 0
        return info.next_seq - max(self._out.next_seq, info.first_retained_seq)

    async def next_batch(self, limit: int = MAX_BATCH) -> list[Frame]:
        """The next frames (at least one), or ``[]`` once the terminal was read or the
        session detached."""
        if self._done:
            return []
        out = self._out
        try:
            frame = await out.__anext__()  # the only await that can wait
        except StopAsyncIteration:
            self._done = True
            return []
        batch = [frame]
        if frame.kind in TERMINAL_KINDS:
            self._done = True
            return batch
        for _ in range(min(self._ready(), limit - 1)):
            frame = await out.__anext__()  # already in the log: returns without waiting
            batch.append(frame)
            if frame.kind in TERMINAL_KINDS:
                self._done = True
                break
        return batch


class ChunkSource(Protocol):
    """What :class:`SSEResponse` writes: encoded chunks, ``None`` at the end.

    ``next_chunk`` must be cancel-safe: cancelled while it waits, it loses nothing.
    """

    async def next_chunk(self) -> bytes | None: ...


class RenderedFrames:
    """A :class:`ChunkSource` rendering each batch of frames with ``render(frame) -> str``.

    ``render`` may return ``""`` to skip a frame; it is called once per frame,
    in seq order, so it may keep state (the AI SDK renderer does). A
    ``preamble`` (already rendered events, e.g. the rooms' ``event: reply``) is
    sent first, as its own chunk.
    """

    __slots__ = ("_preamble", "_reader", "_render")

    def __init__(
        self, reader: FrameReader, render: Callable[[Frame], str], preamble: str = ""
    ) -> None:
        self._reader = reader
        self._render = render
        self._preamble = preamble

    async def next_chunk(self) -> bytes | None:
        if self._preamble:
            preamble, self._preamble = self._preamble, ""
            return preamble.encode()
        render = self._render
        while True:
            batch = await self._reader.next_batch()
            if not batch:
                return None
            text = "".join([render(f) for f in batch])
            if text:
                return text.encode()


class Connections:
    """The live streaming connections (SSE and WebSocket) of one app.

    Each response registers its cancel scope while it runs; :meth:`close_all`
    (called when the server shuts down) ends them all, so uvicorn is not left
    waiting for endless streams.
    """

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()
        self.closing = False

    def add(self, scope: anyio.CancelScope) -> None:
        if self.closing:
            scope.cancel()
        self._scopes.add(scope)

    def discard(self, scope: anyio.CancelScope) -> None:
        self._scopes.discard(scope)

    def close_all(self) -> None:
        """End every live connection (and any opened from now on)."""
        self.closing = True
        for scope in list(self._scopes):
            scope.cancel()

    def __len__(self) -> int:
        return len(self._scopes)


class SSEResponse(Response):
    """A ``text/event-stream`` response writing a :class:`ChunkSource`.

    Parameters
    ----------
    source : ChunkSource
        The encoded events; ``None`` ends the response.
    connections : Connections
        Registry the response joins while it runs (server shutdown ends it).
    heartbeat_s : float
        Send ``: ping`` after this many idle seconds; ``0`` disables heartbeats.
    send_timeout_s : float
        Drop the client when one write blocks longer than this (a stalled reader).
    on_close : coroutine function, optional
        Awaited once when the response ends, however it ends (shielded, bounded).
    headers : mapping, optional
        Extra headers (``Cache-Control: no-cache`` and ``X-Accel-Buffering: no`` are set).
    label : str
        Names the response in log messages (e.g. the stream ref).

    Attributes
    ----------
    outcome : str
        After the response ran: ``"completed"`` (source ended), ``"disconnected"``
        (client went away), ``"dropped"`` (send timed out) or ``"closed"``
        (server shutdown).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        source: ChunkSource,
        *,
        connections: Connections,
        heartbeat_s: float,
        send_timeout_s: float,
        on_close: Callable[[], Awaitable[Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        status_code: int = 200,
        label: str = "",
    ) -> None:
        self.source = source
        self.label = label
        self.connections = connections
        self.heartbeat_s = heartbeat_s
        self.send_timeout_s = send_timeout_s
        self.on_close = on_close
        self.status_code = status_code
        self.background = None
        self.outcome = "open"
        self.init_headers({**SSE_HEADERS, **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        completed = False
        try:
            with anyio.CancelScope() as cancel_scope:
                self.connections.add(cancel_scope)
                try:
                    with anyio.fail_after(self.send_timeout_s):
                        await send(
                            {
                                "type": "http.response.start",
                                "status": self.status_code,
                                "headers": self.raw_headers,
                            }
                        )
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._watch_disconnect, receive, tg.cancel_scope)
                        completed = await self._write(send)
                        tg.cancel_scope.cancel()
                except TimeoutError:
                    self.outcome = "dropped"
                finally:
                    self.connections.discard(cancel_scope)
            if cancel_scope.cancelled_caught and self.outcome == "open":
                self.outcome = "closed"
                # server shutdown: end the body properly so the client sees a clean end
                with anyio.move_on_after(_FINISH_TIMEOUT_S, shield=True):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if completed:
                self.outcome = "completed"
            if self.on_close is not None:
                with anyio.move_on_after(self.send_timeout_s, shield=True):
                    await self.on_close()

    async def _watch_disconnect(self, receive: Receive, scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if self.outcome == "open":
                    self.outcome = "disconnected"
                scope.cancel()
                return

    async def _write(self, send: Send) -> bool:
        """Write chunks until the source ends; False if the client stalled and was dropped."""
        source = self.source
        heartbeat_s = self.heartbeat_s
        timeout_s = self.send_timeout_s
        slicer = LoopSlicer()  # a replay of frames already in memory never waits: yield
        while True:
            chunk: bytes | None = HEARTBEAT
            if heartbeat_s > 0:
                with anyio.move_on_after(heartbeat_s):
                    chunk = await source.next_chunk()
            else:
                chunk = await source.next_chunk()
            if chunk is None:
                with anyio.move_on_after(timeout_s):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return True
            with anyio.move_on_after(timeout_s) as timeout:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if timeout.cancelled_caught:
                self.outcome = "dropped"
                logger.warning(
                    "dropping an SSE client of %s: a write blocked for %.3g s",
                    self.label or "a stream",
                    timeout_s,
                )
                return False
            await slicer.tick()
