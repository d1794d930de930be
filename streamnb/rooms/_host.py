"""What a :class:`~streamnb.rooms.Room` may use of its registry: :class:`RoomHost`.

A :class:`~streamnb.rooms.ChatRooms` makes one host and hands it to each of its
rooms; a room reaches nothing else of the registry. The host holds what the rooms
of one registry share: the runtime and reply kind, the registry's lifecycle, the
room names, the rooms' I/O thread, the change listeners, and the index of
streaming replies by stream ref (read when a reply settles). It imports nothing
from the registry or the room modules, so the import graph has no circle:
``registry -> room -> _host``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .._lifecycle import Lifecycle
from .._runtime import Session, StreamRuntime
from .errors import RoomError, UnknownRoomError
from .events import RoomEvent, RoomListener
from .store import RegistryStore

__all__ = ["Reply", "RoomHost"]

T = TypeVar("T")


@dataclass(slots=True)
class Reply:
    """The reply a room is streaming (owned by its room; indexed by stream ref in the host).

    Claimed by ``room.send`` before its first ``await``; ``stream_ref`` and
    ``session`` are set once the stream is attached; ``done`` is set once the
    terminal frame was announced.
    """

    room_id: str
    user_id: str
    message_id: str
    stream_ref: str | None = None
    session: Session | None = None
    watch: asyncio.Task[None] | None = None
    #: the task checkpointing the reply's text (:mod:`.checkpoint`), None when off
    checkpoint: asyncio.Task[int] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class RoomHost:
    """The part of a :class:`~streamnb.rooms.ChatRooms` its rooms use.

    Parameters
    ----------
    runtime : StreamRuntime
        Runs the replies.
    kind : str
        The registered reply kind.
    registry : RegistryStore
        The ``rooms`` table (a room bumps its ``last_active_at``).
    executor : ThreadPoolExecutor
        The rooms' one I/O thread (owned and shut down by the registry).
    checkpoint_s : float or None
        Checkpoint a streaming reply's text at most this many seconds after it
        arrived (:mod:`.checkpoint`); None: no checkpoints.
    checkpoint_bytes : int
        ... or as soon as this many bytes of new text accumulated.
    """

    def __init__(
        self,
        runtime: StreamRuntime,
        kind: str,
        registry: RegistryStore,
        executor: ThreadPoolExecutor,
        checkpoint_s: float | None = None,
        checkpoint_bytes: int = 4096,
    ) -> None:
        self.runtime = runtime
        self.checkpoint_s = checkpoint_s
        self.checkpoint_bytes = checkpoint_bytes
        self.kind = kind
        #: the registry's lifecycle: ``CLOSING`` from ``aclose`` on, then ``CLOSED``
        self.state = Lifecycle.OPEN
        #: room id -> name, for every room not deleted
        self.names: dict[str, str] = {}
        #: stream ref -> the streaming reply, until its settlement is written
        self.replies: dict[str, Reply] = {}
        self._registry = registry
        self._executor = executor
        self._listeners: list[RoomListener] = []

    # --- the registry's state ------------------------------------------------------------

    def check_open(self) -> None:
        """Raise :class:`RoomError` once the registry is closing or closed."""
        self.state.check_open(
            lambda: RoomError(
                "this ChatRooms is closed; open a new ChatRooms(path) to use the rooms"
            )
        )

    def room_ids(self) -> list[str]:
        """The ids of the rooms not deleted."""
        return list(self.names)

    def name_of(self, room_id: str) -> str:
        """The room's name; :class:`UnknownRoomError` for a deleted room."""
        try:
            return self.names[room_id]
        except KeyError:
            raise UnknownRoomError(room_id, self.names) from None

    # --- I/O ---------------------------------------------------------------------------

    async def io(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking store call on the rooms' I/O thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def touch(self, room_id: str, at: float) -> None:
        """Mark the room active at ``at`` (epoch seconds); blocking: call through :meth:`io`."""
        self._registry.touch(room_id, at)

    # --- notifications -------------------------------------------------------------------

    def subscribe(self, listener: RoomListener) -> Callable[[], None]:
        """Call ``listener(event)`` on every event; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def emit(self, event: RoomEvent) -> None:
        """Tell every listener; a listener's exception is swallowed."""
        for listener in list(self._listeners):
            with contextlib.suppress(Exception):
                listener(event)
