"""A dropped connection is not a detach: this server's observers, live and parked.

Every SSE response and WebSocket of the app observes its stream through a
:class:`~streamnb.Session`. When its connection ends, what happens to that
session depends on *how* it ended:

* the response finished (the terminal frame was sent), the client asked to
  detach (``POST /streams/{ref}/detach``, or a WebSocket closed by the client
  with code 1000), or the server is shutting down: the session **detaches** at
  once, as :meth:`Session.detach` always did, and the handler's ``on_detach``
  applies;
* the connection **dropped** (the client went away without saying so: a
  network blip, a closed laptop lid, a WebSocket closed abnormally or with any
  code but 1000, a client that stopped reading and was cut off): the session is
  **parked** for ``reconnect_grace_s`` seconds. It stays attached, so an
  ``on_detach="abort"`` stream keeps running. A reconnection for the same stream
  within the grace (SSE with ``Last-Event-ID`` or ``?after_seq=``, a WebSocket
  with ``?after_seq=``, ``GET /api/chat/{id}/stream``, the rooms' resume)
  **takes the parked observer over**: the new connection's session attaches
  first, then the parked one detaches, so the stream never sees zero observers
  and the client reads every frame exactly once from where it says it stopped.
  If no reconnection comes, the parked session detaches when the grace runs
  out, and only then does ``on_detach`` apply (the ledger's ``reason`` reads
  ``detached`` only for a detach that really happened).

A dropped observer stays parked for the whole grace even when its stream
settles meanwhile: a client that lost the end of a reply can still come back
for it (the AI SDK's resume answers ``204`` only when nothing is parked and
the stream is over).

Observers can carry an id chosen by the client (``?observer=<id>``, at most
:data:`MAX_OBSERVER_ID_CHARS` characters): a reconnection with that id takes
over the parked observer with the same id (else the oldest parked one of the
stream), a connection that drops while another connection with its id is live
is detached rather than parked (the client already came back), and
``POST /streams/{ref}/detach {"observer": id}`` detaches only that client's
observers.

Ownership: :class:`Parking` (one per app, in ``ServerState``) owns one timer
task per parked observer; a take-over, an explicit detach and
:meth:`Parking.aclose` (server shutdown, which detaches every parked observer)
cancel and await it. Nothing here is in the core: the core's
:meth:`Session.detach` is simply called later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from .._runtime import Session
from .errors import HTTPError

__all__ = ["MAX_OBSERVER_ID_CHARS", "Observer", "Parking", "observer_id_of"]

#: the longest client-chosen observer id accepted, in characters
MAX_OBSERVER_ID_CHARS = 128


def observer_id_of(value: object) -> str | None:
    """A client's observer id (``?observer=`` or a detach body's ``"observer"``), checked.

    Raises
    ------
    HTTPError
        422 when it is not a string of 1 to :data:`MAX_OBSERVER_ID_CHARS` printable
        characters.
    """
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_OBSERVER_ID_CHARS
        or not value.isprintable()
    ):
        raise HTTPError(
            422,
            "invalid_request",
            f"'observer' must be a string of 1 to {MAX_OBSERVER_ID_CHARS} printable "
            "characters (an id the client chose for itself)",
        )
    return value


@dataclass(eq=False, slots=True)
class Observer:
    """One connection's session, live or parked (owned by :class:`Parking`).

    ``parked_until`` is the time (epoch seconds) the parked session detaches
    unless taken over; None while the connection is live.
    """

    session: Session
    observer_id: str | None
    parked_until: float | None = None
    timer: asyncio.Task[None] | None = None

    @property
    def stream_ref(self) -> str:
        return self.session.stream_ref


class Parking:
    """The app's observers: live connections, and dropped ones parked for the grace.

    Parameters
    ----------
    grace_s : float
        ``reconnect_grace_s``: how long a dropped connection's session stays
        attached waiting for a reconnection, seconds; ``0`` detaches at once.

    Examples
    --------
    >>> from streamnb.demo import chatbot_handler
    >>> runtime = sn.StreamRuntime()
    >>> _ = runtime.register(chatbot_handler())
    >>> async def drop_then_reconnect():
    ...     parking = Parking(grace_s=30.0)
    ...     session = await runtime.attach("tutorial.streaming_chatbot", {})
    ...     ref = session.stream_ref
    ...     await parking.release(parking.connect(session), dropped=True)
    ...     parked = len(parking.parked(ref)), runtime.info(ref).observers
    ...     again = await runtime.reattach(ref, after_seq=1)  # the client is back
    ...     taken = await parking.take_over(ref)
    ...     after = runtime.info(ref).observers, runtime.info(ref).cancel_requested
    ...     await parking.aclose()
    ...     return parked, taken, after
    >>> runtime.run(drop_then_reconnect())
    ((1, 1), 1, (1, False))
    >>> runtime.close()
    """

    def __init__(self, grace_s: float) -> None:
        if not grace_s >= 0:
            raise ValueError("reconnect_grace_s must be >= 0 (seconds)")
        self.grace_s = float(grace_s)
        self._live: dict[str, list[Observer]] = {}
        self._parked: dict[str, list[Observer]] = {}
        self._closing = False

    # --- connections ---------------------------------------------------------------------

    def connect(self, session: Session, observer_id: str | None = None) -> Observer:
        """Register a live connection's session; call :meth:`release` when it ends."""
        observer = Observer(session, observer_id)
        self._live.setdefault(session.stream_ref, []).append(observer)
        return observer

    async def release(self, observer: Observer, *, dropped: bool) -> None:
        """The connection ended: park its session if it ``dropped``, else detach it now.

        Not parked (detached at once) even when dropped: with a grace of 0, while
        the server shuts down, or when a live connection with the same observer
        id exists (the client already reconnected).
        """
        ref = observer.stream_ref
        _remove(self._live, ref, observer)
        session = observer.session
        if session.detached:
            return
        if (
            not dropped
            or self.grace_s <= 0
            or self._closing
            or (
                observer.observer_id is not None
                and any(o.observer_id == observer.observer_id for o in self._live.get(ref, ()))
            )
        ):
            await session.detach()
            return
        observer.parked_until = time.time() + self.grace_s
        observer.timer = asyncio.get_running_loop().create_task(
            self._expire(observer), name=f"streamnb-server:parked:{ref}"
        )
        self._parked.setdefault(ref, []).append(observer)

    async def _expire(self, observer: Observer) -> None:
        await asyncio.sleep(self.grace_s)
        _remove(self._parked, observer.stream_ref, observer)
        observer.timer = None
        await observer.session.detach()

    async def _unpark(self, observer: Observer) -> None:
        """Stop ``observer``'s timer and detach its session (take-over or explicit detach)."""
        _remove(self._parked, observer.stream_ref, observer)
        timer, observer.timer = observer.timer, None
        if timer is not None:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        await observer.session.detach()

    # --- reconnection and explicit detach ----------------------------------------------------

    async def take_over(self, stream_ref: str, observer_id: str | None = None) -> int:
        """A new connection observes ``stream_ref``: release one parked observer of it.

        Call it *after* the new connection's session attached, so the stream's
        observer count never drops to zero. Takes the parked observer with
        ``observer_id`` if there is one, else the oldest parked one.

        Returns
        -------
        int
            1 if a parked observer was taken over, else 0.
        """
        parked = self._parked.get(stream_ref)
        if not parked:
            return 0
        match = [o for o in parked if observer_id is not None and o.observer_id == observer_id]
        await self._unpark(match[0] if match else parked[0])
        return 1

    async def detach(self, stream_ref: str, observer_id: str | None = None) -> int:
        """Explicit detach: every observer of ``stream_ref`` (or only ``observer_id``'s), now.

        Parked observers detach at once; live connections have their session
        detached, which ends them (an SSE response finishes, a WebSocket closes).

        Returns
        -------
        int
            How many observers were detached.
        """

        def chosen(observers: list[Observer]) -> list[Observer]:
            return [o for o in observers if observer_id is None or o.observer_id == observer_id]

        parked = chosen(self._parked.get(stream_ref, []))
        live = chosen(self._live.get(stream_ref, []))
        for observer in parked:
            await self._unpark(observer)
        for observer in live:
            await observer.session.detach()
        return len(parked) + len(live)

    # --- inspection and shutdown ---------------------------------------------------------------

    def parked(self, stream_ref: str) -> list[float]:
        """When each parked observer of ``stream_ref`` detaches (epoch seconds), soonest first."""
        return sorted(o.parked_until or 0.0 for o in self._parked.get(stream_ref, ()))

    def __len__(self) -> int:
        """How many observers are parked (all streams)."""
        return sum(len(v) for v in self._parked.values())

    async def aclose(self) -> None:
        """Server shutdown: park nothing more, detach every parked observer (``on_detach``)."""
        self._closing = True
        parked = [o for observers in self._parked.values() for o in observers]
        for observer in parked:
            await self._unpark(observer)


def _remove(index: dict[str, list[Observer]], ref: str, observer: Observer) -> None:
    observers = index.get(ref)
    if observers is None:
        return
    with contextlib.suppress(ValueError):
        observers.remove(observer)
    if not observers:
        del index[ref]
