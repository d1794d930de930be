"""streamnb's own attached streams, readable as Durable Streams at ``/v1/stream/streamnb/{ref}``.

Every stream of the runtime is a read-only Durable Stream in JSON mode
(PROTOCOL.md §9.1): one message per frame, the frame's JSON form
(``Frame.to_dict``). The offset after frame ``seq`` has position ``seq + 1``
(:mod:`.offsets`), so resuming from an offset is reading from ``seq + 1``:
no frame twice, none skipped. The stream is closed (``Stream-Closed``,
``streamClosed``) once its terminal frame is in the log, which the runtime
appends only after the settlement committed (settle, then announce): a
reader that sees the close can find the settlement in ``runtime.ledger``.

Frames come from the runtime while it holds the stream (with a shared ledger,
also a stream another worker runs: ``runtime.ainfo`` mirrors it); for a settled stream
it evicted, from ``ledger.frames`` when the ledger records frames. A reader
whose offset is before the first retained frame (``max_retained_frames``),
or of an evicted stream whose frames were not recorded, gets ``410 Gone``
(§5.6: "before the earliest retained position"). Writes are refused by the
routes (403, ``read_only_stream``): input and cancel go through
``/streams/{ref}``. A reader here is not an observer: it does not keep an
``on_detach="abort"`` stream alive (like ``runtime.follow``).

:class:`RuntimeStreams` calls the runtime in one block only (``info``,
``follow``, ``ledger.frame_log``, ``ledger.stream_status``; see
"runtime API" below), so a rename in the runtime is a one-line change here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..._errors import UnknownStreamError
from ..._frames import TERMINAL_KINDS, Frame
from ..._runtime import StreamRuntime
from ..._stream import StreamInfo
from ..slices import LoopSlicer
from ..sse import frame_json
from .errors import ProtocolError, not_found
from .offsets import Offset, Sentinel, resolve
from .protocol import JSON_CONTENT_TYPE
from .store import ReadResult, StreamMeta

__all__ = ["RuntimeStreams"]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    tail: int  # next seq: the position after the last frame
    first_retained: int  # seq of the first frame still readable
    closed: bool
    recorded: list[Frame] | None  # an evicted stream's frames from the ledger, else None


class RuntimeStreams:
    """A :class:`~.store.StreamReader` over a runtime's streams; keys are stream refs.

    Parameters
    ----------
    runtime : StreamRuntime

    Examples
    --------
    >>> import json
    >>> from streamnb.demo import output_only_handler
    >>> from streamnb.server.durable.offsets import START
    >>> runtime = sn.StreamRuntime()
    >>> _ = runtime.register(output_only_handler())
    >>> session = runtime.run(runtime.attach("tutorial.output_only", {}))
    >>> _ = runtime.run(session.wait(timeout_s=10))
    >>> streams = RuntimeStreams(runtime)
    >>> result = runtime.run(streams.read(session.stream_ref, START, max_bytes=1 << 20))
    >>> [json.loads(c)["kind"] for c in result.chunks]
    ['opened', 'progress', 'output', 'completed']
    >>> runtime.close()
    """

    def __init__(self, runtime: StreamRuntime) -> None:
        self._runtime = runtime

    # --- runtime API: every call into the runtime and its ledger --------------------------

    async def _info(self, ref: str) -> StreamInfo | None:
        try:
            return await self._runtime.ainfo(ref)  # also a stream another worker runs
        except UnknownStreamError:
            return None

    def _follow(self, ref: str, after_seq: int) -> AsyncIterator[Frame]:
        return self._runtime.follow(ref, after_seq)

    async def _ledger_frames(self, ref: str) -> list[Frame] | None:
        ledger = self._runtime.ledger
        if not ledger.record_frames:
            return None
        return await ledger.aframe_log(ref)

    async def _ledger_knows(self, ref: str) -> bool:
        ledger = self._runtime.ledger
        return await ledger.astream_status(ref) is not None

    # --- snapshots ------------------------------------------------------------------------

    async def _snapshot(self, ref: str) -> _Snapshot:
        info = await self._info(ref)
        if info is not None:
            return _Snapshot(
                info.next_seq, info.first_retained_seq, info.terminal is not None, None
            )
        frames = await self._ledger_frames(ref)
        if frames:
            last = frames[-1]
            return _Snapshot(last.seq + 1, frames[0].seq, last.kind in TERMINAL_KINDS, frames)
        if await self._ledger_knows(ref):
            raise ProtocolError(
                410,
                "stream_gone",
                f"stream {ref!r} settled and left memory, and its frames were not recorded "
                "(its settlement is in the ledger); open the ledger with record_frames=True "
                "to keep frames readable",
            )
        raise not_found(f"streamnb/{ref}")

    # --- StreamReader ---------------------------------------------------------------------

    async def head(self, key: str) -> StreamMeta:
        """``HEAD`` (§5.5): the tail is the next frame's position; closed once settled."""
        snap = await self._snapshot(key)
        return StreamMeta(
            content_type=JSON_CONTENT_TYPE,
            tail=Offset(snap.tail),
            closed=snap.closed,
            ttl_s=None,
            expires_at=None,
            etag_id=f"streamnb:{key}",
        )

    async def read(self, key: str, start: Offset | Sentinel, *, max_bytes: int) -> ReadResult:
        """Frames from ``start`` as JSON messages (§5.6, §9.1); 410 before the retained ones."""
        snap = await self._snapshot(key)
        p = resolve(start, snap.tail)
        if p < snap.tail and p < snap.first_retained:
            raise _trimmed(key, snap.first_retained)
        chunks: list[bytes] = []
        size = 0
        end = p
        source = self._source(key, snap, p)
        slicer = LoopSlicer()  # frames already in memory: no await here ever waits
        while end < snap.tail and size < max_bytes:
            frame = await anext(source)  # already in the log: returns without waiting
            if frame.seq != end:  # trimmed by retention since the snapshot
                if chunks:
                    break
                raise _trimmed(key, frame.seq)
            data = frame_json(frame).encode("utf-8")  # Frame.to_json, byte for byte
            await slicer.tick()
            if chunks and size + len(data) > max_bytes:
                break
            chunks.append(data)
            size += len(data)
            end = frame.seq + 1
        up_to_date = end == snap.tail
        return ReadResult(
            content_type=JSON_CONTENT_TYPE,
            etag_id=f"streamnb:{key}",
            start=Offset(p),
            chunks=tuple(chunks),
            next_offset=Offset(end),
            up_to_date=up_to_date,
            closed=up_to_date and snap.closed,
        )

    def _source(self, ref: str, snap: _Snapshot, p: int) -> AsyncIterator[Frame]:
        """Frames from seq ``p`` on: the ledger's copy of an evicted stream, else a cursor."""
        if snap.recorded is None:
            return self._follow(ref, p - 1)
        return _aiter([f for f in snap.recorded if f.seq >= p])

    async def wait(self, key: str, after: Offset, timeout_s: float) -> None:
        """Return once a frame past ``after`` is in the log, the stream settled, or at timeout."""
        info = await self._info(key)
        if info is None or info.terminal is not None or info.next_seq > after.position:
            return
        cursor = self._runtime.follow(key, after.position - 1)
        with contextlib.suppress(StopAsyncIteration):
            await cursor.next_within(timeout_s)  # not wait_for: it can lose a cancellation


def _trimmed(ref: str, first_retained: int) -> ProtocolError:
    return ProtocolError(
        410,
        "stream_gone",
        f"frames before seq {first_retained} of stream {ref!r} are no longer kept "
        "(the runtime's max_retained_frames); read from offset=now",
    )


async def _aiter(frames: list[Frame]) -> AsyncIterator[Frame]:
    for frame in frames:
        yield frame
