"""Big streams never stall the loop; settled streams that left memory replay from the ledger.

Before: replaying a settled 3M-frame stream over SSE held the server's event loop
(an unrelated live stream stalled 11.9 s); ``GET /streams/{ref}`` on it projected
the whole log (7.4 s). Replays now yield in slices (``streamnb/server/slices.py``)
and the status summary is folded incrementally (``streamnb/server/summary.py``);
the stall itself is a benchmark figure (``server.loop_stall_ms``), never a timing
assertion here: these tests check that the loop *ran* meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import streamnb as sn
from streamnb.server import ServerHandle, serve_in_background
from streamnb.server.summary import FOLD_FRAMES

pytestmark = pytest.mark.timeout(120)

N = 150_000


async def burst(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
    for i in range(int(start["n"])):
        yield {"kind": "output", "channel": "c" if i % 3 else "d", "payload": "tok "}
    yield sn.progress({"done": True})
    yield sn.completed()


@pytest.fixture
async def served() -> AsyncIterator[tuple[sn.StreamRuntime, ServerHandle]]:
    runtime = sn.StreamRuntime(retain_settled_bytes=None)
    runtime.register(sn.AttachedStreamHandler(kind="t.burst", run=burst, on_detach="continue"))
    handle = await serve_in_background(runtime)
    try:
        yield runtime, handle
    finally:
        await handle.aclose()
        await runtime.aclose()
        runtime.ledger.close()


class Ticker:
    """Counts the turns the loop gives to other tasks (a task that only yields)."""

    def __init__(self) -> None:
        self.turns = 0
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0)
            self.turns += 1

    def stop(self) -> None:
        self._task.cancel()


def scope_for(handle: ServerHandle, path: str, kind: str = "http") -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": kind,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", handle.port),
        "scheme": "http" if kind == "http" else "ws",
        "http_version": "1.1",
        "app": handle.app,
    }
    if kind == "http":
        scope["method"] = "GET"
    else:
        scope["subprotocols"] = []
    return scope


async def turns_while_writing(
    handle: ServerHandle, path: str, kind: str = "http"
) -> tuple[int, int]:
    """Run the app for one request whose client never pushes back (its ``send`` never
    waits, as a socket that keeps up); (turns other tasks got between its first and its
    last frame, frames sent)."""
    ticker = Ticker()
    marks: list[int] = []
    frames = 0
    forever = asyncio.Event()
    connected = False

    async def receive() -> dict[str, Any]:
        nonlocal connected
        if kind == "websocket" and not connected:
            connected = True
            return {"type": "websocket.connect"}
        await forever.wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal frames
        body = message.get("body") or (message.get("text") or "").encode()
        if body:
            frames += body.count(b'"seq":')
            marks.append(ticker.turns)

    try:
        await asyncio.wait_for(handle.app(scope_for(handle, path, kind), receive, send), 60)
    finally:
        ticker.stop()
    return marks[-1] - marks[0], frames


async def test_sse_replay_of_a_big_settled_stream_yields_the_loop_between_chunks(
    served: tuple[sn.StreamRuntime, ServerHandle],
) -> None:
    # Regression: nothing on the replay path ever waited while the client kept up, so
    # the writer ran the whole replay in one go and every other stream stalled.
    runtime, handle = served
    session = await runtime.attach("t.burst", {"n": N})
    await session.wait(60)
    turns, frames = await turns_while_writing(handle, f"/streams/{session.stream_ref}/events")
    assert frames == N + 3
    assert turns >= 1, "the replay never gave the loop a turn"


async def test_websocket_replay_of_a_big_settled_stream_yields_the_loop(
    served: tuple[sn.StreamRuntime, ServerHandle],
) -> None:
    runtime, handle = served
    session = await runtime.attach("t.burst", {"n": N})
    await session.wait(60)
    path = f"/streams/{session.stream_ref}/ws"
    turns, frames = await turns_while_writing(handle, path, "websocket")
    assert frames == N + 3
    assert turns >= 1, "the replay never gave the loop a turn"


async def test_status_of_a_big_stream_is_folded_in_slices_and_equals_the_projection(
    served: tuple[sn.StreamRuntime, ServerHandle],
) -> None:
    runtime, handle = served
    session = await runtime.attach("t.burst", {"n": N})
    await session.wait(60)
    ref = session.stream_ref
    # Regression: the endpoint copied the whole log and projected it on every request
    largest = 0
    frame_log = runtime.frame_log

    def spy(*args: Any, **kwargs: Any) -> list[sn.Frame]:
        nonlocal largest
        frames = frame_log(*args, **kwargs)
        largest = max(largest, len(frames))
        return frames

    runtime.frame_log = spy  # type: ignore[method-assign]
    async with httpx.AsyncClient(base_url=handle.url, timeout=60) as client:
        status = (await client.get(f"/streams/{ref}")).json()
        assert largest <= FOLD_FRAMES  # the log is read a slice at a time
        del runtime.frame_log
        expected = sn.project_attached_stream(runtime.frame_log(ref), ref).summary()
        assert status["projection"] == json.loads(json.dumps(expected))
        again = (await client.get(f"/streams/{ref}")).json()  # folded already: same answer
        assert again["projection"] == status["projection"]
        assert (again["status"], again["next_seq"]) == ("completed", N + 3)


async def test_status_summary_folds_new_frames_of_a_live_stream() -> None:
    async def paced(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
        async for frame in input:
            if frame.payload == "end":
                yield sn.completed({"ok": True})
                return
            yield sn.output(frame.payload, "assistant.delta")
            yield sn.output({"echo": frame.payload}, "tool")

    async with sn.StreamRuntime(max_retained_frames=4) as runtime:
        runtime.register(sn.AttachedStreamHandler(kind="t.paced", mode="bidi", run=paced))
        handle = await serve_in_background(runtime)
        try:
            async with httpx.AsyncClient(base_url=handle.url, timeout=10) as client:
                ref = (await client.post("/streams", json={"kind": "t.paced"})).json()["stream_ref"]
                for word in ("a", "b"):
                    await client.post(f"/streams/{ref}/input", json={"payload": word})
                await asyncio.sleep(0.1)
                first = (await client.get(f"/streams/{ref}")).json()["projection"]
                expected = sn.project_attached_stream(runtime.frame_log(ref), ref).summary()
                assert first == json.loads(json.dumps(expected))  # opened was trimmed: omitted
                assert first["omitted"] == [0]
                await client.post(f"/streams/{ref}/input", json={"payload": "end"})
                await runtime.wait(ref, timeout_s=10)
                final = (await client.get(f"/streams/{ref}")).json()["projection"]
                assert final["status"] == "completed"
                assert final["texts"]["assistant.delta"] == "ab"
                assert final["n_frames"] == first["n_frames"] + 1
        finally:
            await handle.aclose()


async def test_a_settled_stream_that_left_memory_replays_from_the_ledger() -> None:
    # Settled streams are bounded by bytes too (retain_settled_bytes); one that left
    # memory replays from the frames the ledger recorded, with the same events and resume.
    runtime = sn.StreamRuntime(sn.Ledger(record_frames=True), retain_settled_bytes=0)
    runtime.register(sn.AttachedStreamHandler(kind="t.burst", run=burst, on_detach="continue"))
    handle = await serve_in_background(runtime)
    try:
        session = await runtime.attach("t.burst", {"n": 5000})
        live = await sn.read_until_terminal(session.output, timeout_s=30)
        ref = session.stream_ref
        with pytest.raises(sn.UnknownStreamError):
            runtime.info(ref)  # evicted at once: bigger than the bound
        url = f"{handle.url}/streams/{ref}/events"
        async with httpx.AsyncClient(timeout=30) as client:
            body = (await client.get(url)).content
            resumed = (await client.get(url, headers={"Last-Event-ID": "4990"})).content
            past = await client.get(url, headers={"Last-Event-ID": "5002"})
        events = [e for e in body.decode().split("\n\n") if e.strip()]
        assert [json.loads(e.split("data: ", 1)[1]) for e in events] == [f.to_dict() for f in live]
        assert [int(e.split("\n")[0][4:]) for e in resumed.decode().split("\n\n") if e] == list(
            range(4991, 5003)
        )
        assert past.status_code == 204
    finally:
        await handle.aclose()
        await runtime.aclose()
        runtime.ledger.close()
