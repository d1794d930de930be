"""``GET /streams/{ref}``'s projection summary, folded incrementally and sent in slices.

The summary is ``project_attached_stream(frames, ref).summary()``: status, frame
and output counts, omitted seqs, the text of each channel, the terminal. Built
from scratch it projects the whole log: for a stream of 3M frames that held the
event loop for seconds (7.4 s measured) on every request. Here each stream's
summary is a :class:`SummaryFold` that folds the log a few frames at a time
(:data:`FOLD_FRAMES`, giving the loop a turn every few ms), remembers where it
stopped and only folds the new frames next time; the folds of the streams asked
about last are kept (:data:`MAX_FOLDS`). The JSON response is written in pieces
too, the text of a long channel one folded slice at a time, so no single step
encodes megabytes. The result is the projection's summary, value for value.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from .._frames import TERMINAL_KINDS, Frame
from .._runtime import StreamRuntime
from .slices import LoopSlicer

__all__ = ["FOLD_FRAMES", "MAX_FOLDS", "Summaries", "SummaryFold"]

#: frames read per step of the fold. Small on purpose: the Frame objects of one step are
#: freed before the next, so the fold never makes CPython's cyclic GC run (a full
#: collection walks every frame of a 3M-frame log: ~90 ms of stall)
FOLD_FRAMES = 256
#: streams whose folds are kept (the most recently asked about)
MAX_FOLDS = 64

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def _text(payload: Any) -> str:
    return payload if type(payload) is str else json.dumps(payload, ensure_ascii=False)


class SummaryFold:
    """The projection summary of one stream's log, folded up to ``next_seq``."""

    def __init__(self, stream_ref: str) -> None:
        self.stream_ref = stream_ref
        self.next_seq = 0  # every seq below it is folded (or omitted)
        self.n_frames = 0
        self.omitted: list[int] = []
        #: channel -> its text, one string per folded slice (joined when sent)
        self.texts: dict[str, list[str]] = {}
        self.counts: dict[str, int] = {}
        self.terminal: Frame | None = None
        self.lock = asyncio.Lock()

    async def advance(self, runtime: StreamRuntime) -> None:
        """Fold every frame the log holds past ``next_seq``, a slice at a time."""
        async with self.lock:
            slicer = LoopSlicer()
            while self.terminal is None:
                frames = runtime.frame_log(self.stream_ref, self.next_seq - 1, limit=FOLD_FRAMES)
                if not frames:
                    return
                self._fold(frames)
                del frames
                await slicer.tick()

    def _fold(self, frames: list[Frame]) -> None:
        first = frames[0].seq
        if first > self.next_seq:  # trimmed by retention before this reader saw them
            self.omitted.extend(range(self.next_seq, first))
        parts: dict[str, list[str]] = {}
        for frame in frames:
            if frame.kind == "output" and frame.channel is not None:
                bucket = parts.get(frame.channel)
                if bucket is None:
                    parts[frame.channel] = bucket = []
                bucket.append(_text(frame.payload))
            elif frame.kind in TERMINAL_KINDS:
                self.terminal = frame
        for channel, bucket in parts.items():
            self.texts.setdefault(channel, []).append("".join(bucket))
            self.counts[channel] = self.counts.get(channel, 0) + len(bucket)
        self.n_frames += len(frames)
        self.next_seq = frames[-1].seq + 1

    @property
    def status(self) -> str:
        if self.terminal is not None:
            return self.terminal.kind
        return "running" if self.n_frames else "empty"

    def json_body(self, head: dict[str, Any]) -> AsyncIterator[bytes]:
        """``{**head, "projection": <summary>}`` as JSON pieces (a long text in slices).

        The summary is taken now (a later fold does not change this body).
        """
        fixed = {
            "stream_ref": self.stream_ref,
            "status": self.status,
            "n_frames": self.n_frames,
            "n_outputs": sum(self.counts.values()),
            "omitted": list(self.omitted),
        }
        texts = [(channel, list(pieces)) for channel, pieces in self.texts.items()]
        terminal = None if self.terminal is None else self.terminal.to_dict()
        return _pieces(head, fixed, texts, terminal)


async def _pieces(
    head: dict[str, Any],
    fixed: dict[str, Any],
    texts: list[tuple[str, list[str]]],
    terminal: dict[str, Any] | None,
) -> AsyncIterator[bytes]:
    slicer = LoopSlicer()
    yield _dumps(head)[:-1].encode() + b',"projection":' + _dumps(fixed)[:-1].encode()
    yield b',"texts":{'
    for i, (channel, pieces) in enumerate(texts):
        yield ("," if i else "").encode() + _dumps(channel).encode() + b':"'
        for piece in pieces:
            yield _dumps(piece)[1:-1].encode()  # each piece escaped alone: still one string
            await slicer.tick()
        yield b'"'
    yield b'},"terminal":' + _dumps(terminal).encode() + b"}}"


class Summaries:
    """The folds of the streams asked about last (one per app)."""

    def __init__(self, max_folds: int = MAX_FOLDS) -> None:
        self._folds: OrderedDict[str, SummaryFold] = OrderedDict()
        self._max = max_folds

    def fold(self, stream_ref: str) -> SummaryFold:
        """The stream's fold (a new one the first time)."""
        fold = self._folds.get(stream_ref)
        if fold is None:
            fold = self._folds[stream_ref] = SummaryFold(stream_ref)
            while len(self._folds) > self._max:
                self._folds.popitem(last=False)
        else:
            self._folds.move_to_end(stream_ref)
        return fold

    def forget(self, stream_ref: str) -> None:
        self._folds.pop(stream_ref, None)
