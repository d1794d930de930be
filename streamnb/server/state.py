"""What one app instance keeps: its settings, held and parked sessions, chat ids, connections.

Held sessions. ``POST /streams`` opens a stream and returns only its ref; the
client attaches a moment later over SSE or WebSocket. If the server let go of
the session ``attach`` returned at once, an ``on_detach="abort"`` stream would
lose its last observer and be cancelled before anyone could watch it. So the
server *holds* that session until the first SSE/WebSocket observer claims the
stream (then the hold is released: from there on, that observer's disconnect is
what counts), until the stream settles, or for at most ``claim_timeout_s``
seconds (then the hold detaches and ``on_detach`` applies). Each hold has one
timer task owned by :class:`Holds` and cancelled on claim or at shutdown.

Parked sessions. A dropped SSE or WebSocket connection parks its session for
``reconnect_grace_s`` instead of detaching it (:mod:`.parking`); every streaming
response made by :meth:`ServerState.sse_response` hands its session to the
app's :class:`~.parking.Parking` when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from .._errors import StreamTimeoutError, UnknownStreamError
from .._frames import Frame
from .._runtime import Session, StreamRuntime
from .durable import DurableStreams, open_durable_streams
from .limits import DEFAULT_MAX_OPEN_STREAMS, StreamCap
from .parking import Observer, Parking
from .sse import Connections, FrameReader, RenderedFrames, SSEResponse
from .summary import Summaries

__all__ = ["DROPPED", "ChatIndex", "Holds", "ServerConfig", "ServerState", "state_of"]

#: how an SSE response ended when its client dropped (see ``SSEResponse.outcome``): the
#: client went away, or stopped reading and was cut off
DROPPED = frozenset({"disconnected", "dropped"})


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Settings of one app (see :func:`~streamnb.server.create_app`)."""

    token: str | None
    max_body_bytes: int
    heartbeat_s: float
    send_timeout_s: float
    claim_timeout_s: float
    chat_kind: str
    #: serve the Durable Streams endpoint under /v1/stream/ (:mod:`.durable`)
    durable_streams: bool = True
    #: how long a Durable Streams long-poll waits for data, seconds
    long_poll_timeout_s: float = 20.0
    #: how long a dropped connection's session stays parked for a reconnection, seconds
    reconnect_grace_s: float = 30.0
    #: most streams this server holds open (429 beyond), see :mod:`.limits`
    max_open_streams: int = DEFAULT_MAX_OPEN_STREAMS


class Holds:
    """Sessions the server holds on streams opened by ``POST /streams`` until claimed."""

    def __init__(self, runtime: StreamRuntime, claim_timeout_s: float) -> None:
        self._runtime = runtime
        self._claim_timeout_s = claim_timeout_s
        self._held: dict[str, tuple[Session, asyncio.Task[None]]] = {}

    def hold(self, session: Session) -> None:
        """Keep ``session`` attached until claimed, settled or timed out."""
        ref = session.stream_ref
        task = asyncio.get_running_loop().create_task(
            self._expire(session), name=f"streamnb-server:hold:{ref}"
        )
        self._held[ref] = (session, task)

    async def _expire(self, session: Session) -> None:
        ref = session.stream_ref
        with contextlib.suppress(StreamTimeoutError, UnknownStreamError):
            await self._runtime.wait(ref, timeout_s=self._claim_timeout_s)
        if self._held.get(ref, (None,))[0] is session:
            del self._held[ref]
        await session.detach()

    async def claim(self, ref: str) -> None:
        """An observer attached: release the hold (its timer is cancelled)."""
        entry = self._held.pop(ref, None)
        if entry is None:
            return
        session, task = entry
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await session.detach()

    def __contains__(self, ref: object) -> bool:
        return ref in self._held

    def __len__(self) -> int:
        return len(self._held)

    async def aclose(self) -> None:
        """Release every hold (server shutdown); ``on_detach`` applies to each stream."""
        held, self._held = self._held, {}
        for _, task in held.values():
            task.cancel()
        if held:
            await asyncio.gather(*(t for _, t in held.values()), return_exceptions=True)
        for session, _ in held.values():
            await session.detach()


class ChatIndex:
    """AI SDK chat id -> (ref, assistant message id) of its latest stream.

    In memory, bounded (past ``max_chats`` ids the oldest are forgotten); with a
    shared ledger (PostgreSQL) in the ledger instead, so ``/api/chat/{id}/stream``
    and ``/stop`` find the chat's stream from any worker.
    """

    #: the ledger's name scope of chat ids
    SCOPE = "aisdk.chat"

    def __init__(self, runtime: StreamRuntime, max_chats: int = 10_000) -> None:
        self._chats: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._max = max_chats
        self._shared = runtime.ledger.backend.exchange

    async def set(self, chat_id: str, ref: str, message_id: str) -> None:
        if self._shared is not None:
            await self._shared.put_name(self.SCOPE, chat_id, ref, {"message_id": message_id})
            return
        self._chats[chat_id] = (ref, message_id)
        self._chats.move_to_end(chat_id)
        while len(self._chats) > self._max:
            self._chats.popitem(last=False)

    async def get(self, chat_id: str) -> tuple[str, str] | None:
        if self._shared is not None:
            found = await self._shared.get_name(self.SCOPE, chat_id)
            if found is None:
                return None
            ref, meta = found
            return ref, str((meta or {}).get("message_id") or f"msg_{ref}")
        return self._chats.get(chat_id)

    async def forget(self, chat_id: str) -> None:
        if self._shared is not None:
            await self._shared.forget_name(self.SCOPE, chat_id)
            return
        self._chats.pop(chat_id, None)


class ServerState:
    """Everything the endpoints of one app share (``app.state.streamnb``)."""

    def __init__(self, runtime: StreamRuntime, config: ServerConfig) -> None:
        self.runtime = runtime
        self.config = config
        self.connections = Connections()
        self.holds = Holds(runtime, config.claim_timeout_s)
        self.parking = Parking(config.reconnect_grace_s)
        self.chats = ChatIndex(runtime)
        #: the streams this server opened and that have not settled (429 past the cap)
        self.cap = StreamCap(runtime, config.max_open_streams)
        #: GET /streams/{ref}'s summaries, folded incrementally
        self.summaries = Summaries()
        self.durable: DurableStreams | None = None
        if config.durable_streams:
            self.durable = open_durable_streams(
                runtime,
                self.connections,
                max_body_bytes=config.max_body_bytes,
                long_poll_timeout_s=config.long_poll_timeout_s,
                heartbeat_s=config.heartbeat_s,
                send_timeout_s=config.send_timeout_s,
            )

    def begin_shutdown(self) -> None:
        """End every live SSE/WebSocket connection and long-poll (the server is stopping)."""
        self.connections.close_all()
        if self.durable is not None:
            self.durable.begin_shutdown()

    def sse_response(
        self,
        session: Session,
        render: Callable[[Frame], str],
        *,
        preamble: str = "",
        headers: Mapping[str, str] | None = None,
        label: str | None = None,
        observer_id: str | None = None,
    ) -> SSEResponse:
        """The SSE response of every streaming endpoint: ``session``'s frames, rendered.

        The response joins this app's live connections (shutdown ends it), uses
        its ``heartbeat_s`` and ``send_timeout_s``, and hands ``session`` to the
        app's :class:`~.parking.Parking` when it ends: a response that finished
        detaches it, a dropped client parks it for ``reconnect_grace_s`` (never a
        cancel, and not a detach unless the grace runs out).

        Parameters
        ----------
        session : Session
            The observer whose frames are sent, from its cursor's position.
        render : callable ``Frame -> str``
            One frame as SSE text (``""`` skips it); called in seq order.
        preamble : str
            Events sent before the first frame.
        headers : mapping, optional
            Extra response headers.
        label : str, optional
            Names the response in log messages; default the stream ref.
        observer_id : str, optional
            The client's own id for this observer (``?observer=``, see :mod:`.parking`).
        """
        observer = self.parking.connect(session, observer_id)
        response = SSEResponse(
            RenderedFrames(FrameReader(session), render, preamble),
            connections=self.connections,
            heartbeat_s=self.config.heartbeat_s,
            send_timeout_s=self.config.send_timeout_s,
            headers=headers,
            label=session.stream_ref if label is None else label,
        )
        response.on_close = lambda: self._release(observer, response)
        return response

    async def observe(
        self, ref: str, after_seq: int | None = None, observer_id: str | None = None
    ) -> Session:
        """A new observer of ``ref`` for a connection, reading from ``after_seq + 1``.

        Attaches a session (``runtime.reattach``), then releases the server's
        hold on the stream and takes over a parked observer of it, in that
        order, so the stream's observer count never passes through zero.

        Raises
        ------
        UnknownStreamError
            ``ref`` is not held in memory.
        """
        session = await self.runtime.reattach(ref, after_seq=after_seq)
        await self.holds.claim(ref)
        await self.parking.take_over(ref, observer_id)
        return session

    async def _release(self, observer: Observer, response: SSEResponse) -> None:
        await self.parking.release(observer, dropped=response.outcome in DROPPED)

    async def aclose(self) -> None:
        """Shutdown: close connections, release holds (sessions detach), close stores."""
        self.begin_shutdown()
        await self.holds.aclose()
        await self.parking.aclose()
        if self.durable is not None:
            await self.durable.aclose()


def state_of(conn: HTTPConnection) -> ServerState:
    """The :class:`ServerState` of the app serving ``conn`` (a request or a WebSocket)."""
    state: ServerState = conn.app.state.streamnb
    return state
