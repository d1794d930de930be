"""Batched reading of a stream's log: ``cursor.batches()``, ``read_available()``, FrameBatch.

The property that matters: a reader taking batches sees exactly the frames a reader
taking one frame per step sees (same seqs, same order, same retention gaps), whatever
the handler's pace and the batch bound.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamnb as sn


def pacing_handler(kind: str = "paced") -> sn.AttachedStreamHandler:
    """Yields ``start["n"]`` tokens on two channels; pauses where ``start["pauses"]`` says."""

    async def run(start: Any, _input: Any, ctx: sn.StreamContext) -> Any:
        pauses = set(start["pauses"])
        for i in range(start["n"]):
            yield sn.output(f"t{i} ", "a" if i % 3 else "b")
            if i in pauses:
                await asyncio.sleep(0)
            if i == start.get("progress_at"):
                yield sn.progress({"i": i})
        yield sn.completed({"n": start["n"]})

    return sn.AttachedStreamHandler(kind=kind, run=run)


async def per_frame(cursor: sn.FrameCursor) -> list[sn.Frame]:
    return [frame async for frame in cursor]


async def batched(cursor: sn.FrameCursor, max_frames: int | None) -> list[sn.Frame]:
    frames: list[sn.Frame] = []
    async for batch in cursor.batches(max_frames):
        assert len(batch) > 0  # batches() never hands out an empty batch
        if max_frames is not None:
            assert len(batch) <= max_frames
        frames += list(batch)
    return frames


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 600),
    pauses=st.lists(st.integers(0, 600), max_size=20),
    max_frames=st.one_of(st.none(), st.integers(1, 50)),
    retained=st.one_of(st.none(), st.integers(1, 40)),
    progress_at=st.one_of(st.none(), st.integers(0, 600)),
)
def test_batched_reader_sees_exactly_the_frames_a_per_frame_reader_sees(
    n: int, pauses: list[int], max_frames: int | None, retained: int | None, progress_at: Any
) -> None:
    async def main() -> None:
        async with sn.StreamRuntime(max_retained_frames=retained) as rt:
            rt.register(pacing_handler())
            start = {"n": n, "pauses": pauses, "progress_at": progress_at}
            session = await rt.attach("paced", start)
            ref = session.stream_ref
            # live: both readers follow the stream while it runs, side by side
            one, many = await asyncio.gather(
                per_frame(rt.follow(ref)), batched(rt.follow(ref), max_frames)
            )
            if retained is None:
                assert one == many
                progressed = progress_at is not None and progress_at < n
                assert [f.seq for f in many] == list(range(n + 2 + progressed))
            else:  # both may lose frames to retention; never order, never the terminal
                for frames in (one, many):
                    seqs = [f.seq for f in frames]
                    assert seqs == sorted(set(seqs))
                    assert frames[-1].kind == "completed"
            # replayed after the end: the same retained frames, byte for byte
            assert await per_frame(rt.follow(ref)) == await batched(rt.follow(ref), max_frames)
            assert await batched(session.output, max_frames) == session.frame_log()

    asyncio.run(main())


async def test_read_available_takes_what_is_there_and_never_waits() -> None:
    gate = asyncio.Event()

    async def run(start: Any, _input: Any, ctx: sn.StreamContext) -> Any:
        yield sn.output("a", "c")
        yield sn.output("b", "c")
        await gate.wait()
        yield sn.output("c", "c")
        yield sn.completed()

    async with sn.StreamRuntime() as rt:
        rt.register(sn.AttachedStreamHandler(kind="gated", run=run))
        session = await rt.attach("gated")
        cursor = rt.follow(session.stream_ref)
        assert cursor.read_available().first_seq == 0  # opened, before the handler ran
        await asyncio.sleep(0.01)
        batch = cursor.read_available()
        assert [f.payload for f in batch] == ["a", "b"]
        assert batch.text("c") == "ab" and batch.terminal is None
        assert len(cursor.read_available()) == 0 and not cursor.done  # nothing new yet
        gate.set()
        await session.wait()
        rest = cursor.read_available(max_frames=1)
        assert [f.payload for f in rest] == ["c"]
        assert cursor.read_available().terminal.kind == "completed"
        assert cursor.done and len(cursor.read_available()) == 0


async def test_per_frame_and_batched_reads_share_one_position() -> None:
    async with sn.StreamRuntime() as rt:
        rt.register(pacing_handler())
        session = await rt.attach("paced", {"n": 10, "pauses": []})
        await session.wait()
        out = session.output
        first = await out.__anext__()
        batch = out.read_available(max_frames=4)
        after = await out.__anext__()
        rest = [f async for b in out.batches() for f in b]
        seqs = [first.seq, *(f.seq for f in batch), after.seq, *(f.seq for f in rest)]
        assert seqs == list(range(12))


async def test_batches_end_when_the_session_detaches() -> None:
    async def run(start: Any, input: Any, ctx: sn.StreamContext) -> Any:
        yield sn.progress("waiting")
        async for _ in input:
            pass
        yield sn.cancelled("stopped")

    async with sn.StreamRuntime() as rt:
        idle = sn.AttachedStreamHandler(kind="idle", run=run, mode="bidi", on_detach="continue")
        rt.register(idle)
        session = await rt.attach("idle")
        out = session.output
        seen: list[str] = []

        async def read() -> None:
            async for batch in out.batches():
                seen.extend(f.kind for f in batch)

        reader = asyncio.ensure_future(read())
        await asyncio.sleep(0.01)
        await session.detach()
        await asyncio.wait_for(reader, 5)  # ended, not hung
        assert seen == ["opened", "progress"]
        assert out.done and len(out.read_available()) == 0
        await rt.cancel(session.stream_ref)


async def test_frame_batch_is_a_sequence_whose_text_matches_output_text() -> None:
    async with sn.StreamRuntime() as rt:
        rt.register(pacing_handler())
        session = await rt.attach("paced", {"n": 30, "pauses": [5, 17]})
        await session.wait()
        batch = rt.follow(session.stream_ref, after_seq=3).read_available()
        log = rt.frame_log(session.stream_ref, after_seq=3)
        assert list(batch) == log and len(batch) == len(log)
        assert batch[0] == log[0] and batch[-1] == log[-1]
        assert list(batch[2:5]) == log[2:5]
        assert (batch.first_seq, batch.last_seq) == (4, 31)
        assert batch.terminal == log[-1]
        for channel in ("a", "b"):
            assert batch.text(channel) == rt.output_text(session.stream_ref, channel, 3)[0]
        assert "31" in repr(batch)


async def test_frame_batch_texts_and_last_fold_like_a_frame_by_frame_reader() -> None:
    async def run(start: Any, _input: Any, ctx: sn.StreamContext) -> Any:
        yield sn.output("x ", "b")
        yield sn.progress({"step": 1})
        yield sn.output({"k": "é"}, "a")  # a non-string payload shows as JSON
        yield sn.output("y", "b")
        yield sn.progress({"step": 2})
        yield sn.output(" z", "a")
        yield sn.completed()

    async with sn.StreamRuntime() as rt:
        rt.register(sn.AttachedStreamHandler(kind="mixed", run=run))
        session = await rt.attach("mixed", {})
        await session.wait()
        batch = rt.follow(session.stream_ref).read_available()
        folded: dict[str, str] = {}
        for frame in session.frame_log():
            if frame.kind == "output":
                text = (
                    frame.payload
                    if isinstance(frame.payload, str)
                    else json.dumps(frame.payload, ensure_ascii=False)
                )
                folded[frame.channel] = folded.get(frame.channel, "") + text
        assert batch.texts() == folded == {"b": "x y", "a": '{"k": "é"} z'}
        assert list(batch.texts()) == ["b", "a"]  # channels in order of first appearance
        assert batch.last("progress").payload == {"step": 2}
        assert batch.last("completed") == batch.terminal
        assert batch.last("failed") is None
        assert batch[:2].texts() == {
            "b": "x "
        }  # "opened", then the first token and sn.FrameBatch([]).texts() == {}


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True])
async def test_max_frames_must_be_a_positive_int(bad: Any) -> None:
    async with sn.StreamRuntime() as rt:
        rt.register(pacing_handler())
        session = await rt.attach("paced", {"n": 1, "pauses": []})
        with pytest.raises(ValueError, match="max_frames"):
            session.output.read_available(bad)
        with pytest.raises(ValueError, match="max_frames"):
            session.output.batches(bad)
