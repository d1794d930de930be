"""Replaying a stream that left memory from the frames its ledger recorded.

A settled stream leaves the runtime's memory after ``retain_settled`` newer ones,
or once the settled streams pass ``retain_settled_bytes``. Its settlement stays
in the ledger, and with ``Ledger(record_frames=True)`` so do its frames: then
``GET /streams/{ref}/events`` replays them from there, a page at a time (the
ledger's awaitable reads, off the loop), with the same events, ids and resume
rules as a replay from memory. Without recorded frames the answer is ``410
stream_gone``; a ref the ledger never saw stays ``404``.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response

from .._errors import UnknownStreamError
from .._frames import TERMINAL_KINDS, Frame
from .._ledger import Ledger
from .errors import HTTPError
from .sse import FrameEvents, SSEResponse
from .state import ServerState

__all__ = ["PAGE_FRAMES", "LedgerFrames", "ledger_replay"]

#: frames read from the ledger per page (one SSE chunk each)
PAGE_FRAMES = 2048


class LedgerFrames:
    """A :class:`~streamnb.server.sse.ChunkSource` of recorded frames, a page at a time."""

    def __init__(
        self,
        ledger: Ledger,
        stream_ref: str,
        after_seq: int,
        render: Callable[[Frame], str],
        first_page: list[Frame],
    ) -> None:
        self._ledger = ledger
        self._ref = stream_ref
        self._after = after_seq
        self._render = render
        self._page: list[Frame] | None = first_page
        self._done = False

    async def next_chunk(self) -> bytes | None:
        if self._done:
            return None
        page = self._page
        self._page = None
        if page is None:
            page = await self._ledger.aframe_log(
                self._ref, after_seq=self._after, limit=PAGE_FRAMES
            )
        if not page:
            self._done = True
            return None
        self._after = page[-1].seq
        if page[-1].kind in TERMINAL_KINDS:
            self._done = True
        return "".join(self._render(f) for f in page).encode()


async def ledger_replay(state: ServerState, stream_ref: str, after_seq: int | None) -> Response:
    """The SSE response replaying ``stream_ref`` from the ledger (it left memory).

    Raises
    ------
    UnknownStreamError
        The ledger has no such stream (404).
    HTTPError
        410 ``stream_gone``: it settled, but its frames were not recorded.
    """
    ledger = state.runtime.ledger
    after = -1 if after_seq is None else after_seq
    if ledger.record_frames:
        page = await ledger.aframe_log(stream_ref, after_seq=after, limit=PAGE_FRAMES)
        if page:
            source = LedgerFrames(ledger, stream_ref, after, FrameEvents(stream_ref), page)
            return SSEResponse(
                source,
                connections=state.connections,
                heartbeat_s=state.config.heartbeat_s,
                send_timeout_s=state.config.send_timeout_s,
                label=stream_ref,
            )
    if await ledger.astream_status(stream_ref) is None:
        raise UnknownStreamError(stream_ref, "the ledger has no such stream either")
    if ledger.record_frames and after_seq is not None:
        return Response(status_code=204)  # resumed after the last recorded frame
    raise HTTPError(
        410,
        "stream_gone",
        f"stream {stream_ref!r} settled and left memory, and its frames were not recorded "
        "(its settlement is at GET /streams/{ref}); serve a Ledger(record_frames=True) to "
        "replay settled streams",
    )
