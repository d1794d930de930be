"""``/streams``: SSE framing, resume with Last-Event-ID, detach on disconnect, stalls, tasks."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from httpx_sse import aconnect_sse

import streamnb as sn
from streamnb.demo import output_only_handler
from streamnb.server import ServerHandle, serve_in_background
from streamnb.server.sse import FrameEvents, frame_json
from streamnb.testing import assert_checkpoint
from tests._server_util import cancel_reason, eventually, open_stream

pytest_plugins = ["tests._server"]

pytestmark = pytest.mark.timeout(30)


async def read_events(
    client: httpx.AsyncClient,
    ref: str,
    headers: dict[str, str] | None = None,
    *,
    params: dict[str, str] | None = None,
    stop_after: int | None = None,
) -> list[tuple[int, str, dict]]:
    """(seq, event, frame dict) for each event, until the response ends or ``stop_after``."""
    events = []
    async with aconnect_sse(
        client, "GET", f"/streams/{ref}/events", headers=dict(headers or {}), params=params
    ) as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            events.append((int(sse.id), sse.event, json.loads(sse.data)))
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


async def test_sse_frames_have_seq_ids_kinds_and_frame_json(
    client: httpx.AsyncClient, server_runtime: sn.StreamRuntime
) -> None:
    ref = await open_stream(client, "tutorial.output_only", {"message": "hi"})
    async with client.stream("GET", f"/streams/{ref}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        raw = b"".join([chunk async for chunk in response.aiter_raw()]).decode()
    blocks = raw.split("\n\n")
    assert blocks[-1] == ""
    frames = server_runtime.frame_log(ref)
    assert blocks[:-1] == [f"id: {f.seq}\nevent: {f.kind}\ndata: {f.to_json()}" for f in frames]
    assert_checkpoint(frames, "opened -> progress -> output+ -> completed")


async def test_resume_after_dropped_connection_gives_every_frame_once(
    client: httpx.AsyncClient, server_runtime: sn.StreamRuntime
) -> None:
    ref = await open_stream(client, "test.slow_output", {"message": "resume"})
    first = await read_events(client, ref, stop_after=5)  # connection dropped here
    last_id = first[-1][0]
    rest = await read_events(client, ref, headers={"Last-Event-ID": str(last_id)})
    seqs = [seq for seq, _, _ in first + rest]
    assert seqs == list(range(len(seqs)))
    assert rest[-1][1] == "completed"
    assert [f.seq for f in server_runtime.frame_log(ref)] == seqs
    # ?after_seq= resumes the same way, and the header wins over it
    again = await read_events(client, ref, params={"after_seq": "2"})
    assert [s for s, _, _ in again] == seqs[3:]
    header_wins = await read_events(
        client, ref, headers={"Last-Event-ID": str(seqs[-3])}, params={"after_seq": "0"}
    )
    assert [s for s, _, _ in header_wins] == seqs[-2:]


async def test_resume_after_the_terminal_is_204(client: httpx.AsyncClient) -> None:
    ref = await open_stream(client, "tutorial.output_only")
    events = await read_events(client, ref)
    response = await client.get(
        f"/streams/{ref}/events", headers={"Last-Event-ID": str(events[-1][0])}
    )
    assert response.status_code == 204


async def test_disconnect_with_on_detach_abort_cancels_as_detached_after_the_grace(
    start_server, server_runtime: sn.StreamRuntime
) -> None:
    handle: ServerHandle = await start_server(reconnect_grace_s=0.2)
    async with httpx.AsyncClient(base_url=handle.url) as client:
        ref = await open_stream(client, "test.slow_output_abort", {"message": "x"})
        await read_events(client, ref, stop_after=4)
    terminal = await server_runtime.wait(ref, timeout_s=10)
    assert terminal.kind == "cancelled"
    assert cancel_reason(server_runtime, ref) == "detached"


async def test_disconnect_with_on_detach_continue_completes(
    start_server, server_runtime: sn.StreamRuntime
) -> None:
    handle: ServerHandle = await start_server(reconnect_grace_s=0.2)
    async with httpx.AsyncClient(base_url=handle.url) as client:
        ref = await open_stream(client, "test.slow_output", {"message": "x"})
        await read_events(client, ref, stop_after=4)
    await eventually(lambda: server_runtime.info(ref).observers == 0)
    terminal = await server_runtime.wait(ref, timeout_s=10)
    assert terminal.kind == "completed"


async def test_input_cancel_and_status_over_http(
    client: httpx.AsyncClient, server_runtime: sn.StreamRuntime
) -> None:
    ref = await open_stream(client, "test.slow_chat")
    async with aconnect_sse(client, "GET", f"/streams/{ref}/events") as source:
        events = source.aiter_sse()
        assert (await anext(events)).event == "opened"
        assert (await anext(events)).event == "progress"
        sent = await client.post(f"/streams/{ref}/input", json={"payload": "hello", "seq": 0})
        assert sent.json() == {"result": "accepted"}
        again = await client.post(f"/streams/{ref}/input", json={"payload": "hello", "seq": 0})
        assert again.json() == {"result": "duplicate"}
        assert (await anext(events)).event == "output"
        status = (await client.get(f"/streams/{ref}")).json()
        assert status["status"] == "running"
        assert status["observers"] == 1
        assert status["projection"]["n_outputs"] >= 1
        cancelled = await client.post(f"/streams/{ref}/cancel", json={"reason": "enough"})
        assert cancelled.json() == {"result": "requested"}
        kinds = [sse.event async for sse in events]
    assert kinds[-1] == "cancelled"
    status = (await client.get(f"/streams/{ref}")).json()
    assert status["status"] == "cancelled"
    assert status["cancel_reason"] == "enough"
    assert status["projection"]["omitted"] == []
    again = await client.post(f"/streams/{ref}/cancel")
    assert again.json() == {"result": "already_settled"}
    streams = (await client.get("/ledger/streams")).json()["streams"]
    assert [(s["stream_ref"], s["status"]) for s in streams] == [(ref, "cancelled")]
    events = (await client.get("/ledger/events", params={"stream_ref": ref})).json()["events"]
    assert [e["kind"] for e in events] == ["test.slow_chat.settled"]
    assert events[0]["payload"]["kind"] == "cancelled"


async def test_heartbeat_comments_while_idle(start_server) -> None:
    handle: ServerHandle = await start_server(heartbeat_s=0.05)
    async with httpx.AsyncClient(base_url=handle.url) as client:
        ref = await open_stream(client, "test.slow_chat")  # waits for input: idle
        async with client.stream("GET", f"/streams/{ref}/events") as response:
            comments = []
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    comments.append(line)
                    if len(comments) == 2:
                        break
    assert comments == [": ping", ": ping"]


async def test_unclaimed_stream_is_released_after_claim_timeout(
    start_server,
    server_runtime: sn.StreamRuntime,
) -> None:
    handle: ServerHandle = await start_server(claim_timeout_s=0.1)
    async with httpx.AsyncClient(base_url=handle.url) as client:
        ref = await open_stream(client, "test.slow_chat")  # on_detach="abort"
    terminal = await server_runtime.wait(ref, timeout_s=10)
    assert terminal.kind == "cancelled"
    assert cancel_reason(server_runtime, ref) == "detached"


async def test_stalled_client_is_dropped_and_does_not_stall_the_stream(
    start_server,
    server_runtime: sn.StreamRuntime,
) -> None:
    handle: ServerHandle = await start_server(send_timeout_s=0.3, reconnect_grace_s=0.2)
    async with httpx.AsyncClient(base_url=handle.url) as client:
        ref = await open_stream(client, "test.big", {"n": 400, "size": 65_536})
    _reader, writer = await asyncio.open_connection(handle.host, handle.port)
    try:
        writer.write(f"GET /streams/{ref}/events HTTP/1.1\r\nHost: {handle.host}\r\n\r\n".encode())
        await writer.drain()
        # never read: the server's socket buffers fill and its send blocks
        terminal = await server_runtime.wait(ref, timeout_s=10)
        assert terminal.kind == "completed"  # the handler was never held up
        await eventually(lambda: server_runtime.info(ref).observers == 0, timeout_s=10)
        assert len(handle.app.state.streamnb.connections) == 0
    finally:
        writer.close()


async def test_no_task_outlives_its_response(
    start_server, server_runtime: sn.StreamRuntime
) -> None:
    handle: ServerHandle = await start_server(reconnect_grace_s=0.1)  # parked observers too
    async with httpx.AsyncClient(base_url=handle.url, timeout=10.0) as client:
        await check_no_task_outlives_its_response(client, server_runtime)


async def check_no_task_outlives_its_response(
    client: httpx.AsyncClient, server_runtime: sn.StreamRuntime
) -> None:
    await client.get("/ledger/streams")  # warm up the connection
    baseline = {t for t in asyncio.all_tasks() if not t.done()}
    refs = [await open_stream(client, "test.slow_output", {"message": "t"}) for _ in range(3)]
    for ref in refs[:2]:
        await read_events(client, ref, stop_after=2)  # dropped mid-stream
    await read_events(client, refs[2])  # read to the end
    for ref in refs:
        await server_runtime.wait(ref, timeout_s=10)

    def settled() -> bool:
        extra = {t for t in asyncio.all_tasks() if not t.done()} - baseline
        return extra <= {asyncio.current_task()}

    await eventually(settled)


@pytest.mark.parametrize(
    "frame",
    [
        sn.Frame("output", "st_1", 7, 1795217584.0548408, "assistant.delta", "tok "),
        sn.Frame("output", "st_1", 8, 1.5, "stdout", 'quote " back\\slash\nnew\tline \x00 é 🚀'),
        sn.Frame("output", "st_1", 9, 2.0, "tool", {"tool_call_id": "c", "input": [1, 2.5]}),
        sn.Frame("output", "st_1", 10, 3.0, "x", "", reason="odd"),
        sn.Frame("opened", "st_1", 0, 1.0, payload={"kind": "k", "mode": "bidi"}),
        sn.Frame("failed", "st_1", 11, 4.0, reason="handler_error", error="E: ü", terminal={}),
    ],
)
def test_frame_json_is_frame_to_json_byte_for_byte(frame: sn.Frame) -> None:
    assert frame_json(frame) == frame.to_json()
    events = FrameEvents("st_1")
    expected = f"id: {frame.seq}\nevent: {frame.kind}\ndata: {frame.to_json()}\n\n"
    assert events(frame) == expected
    assert events(frame) == expected  # cached channel
    assert FrameEvents("st_other")(frame) == expected


async def test_status_of_an_evicted_stream_comes_from_the_ledger() -> None:
    runtime = sn.StreamRuntime(retain_settled=1)
    runtime.register(output_only_handler())
    handle = await serve_in_background(runtime)
    try:
        async with httpx.AsyncClient(base_url=handle.url) as client:
            first = await open_stream(client, "tutorial.output_only")
            await runtime.wait(first, timeout_s=5)
            second = await open_stream(client, "tutorial.output_only")
            await runtime.wait(second, timeout_s=5)  # evicts the first from memory
            status = (await client.get(f"/streams/{first}")).json()
            assert status["in_memory"] is False
            assert (status["stream_ref"], status["status"]) == (first, "completed")
            assert status["settled_at"] >= status["opened_at"]
            # its frames were not recorded: gone (the Durable Streams endpoint says the same)
            gone = await client.get(f"/streams/{first}/events")
            assert gone.status_code == 410
            assert gone.json()["error"]["type"] == "stream_gone"
            never = await client.get("/streams/st_never_opened/events")
            assert never.status_code == 404
    finally:
        await handle.aclose()
        await runtime.aclose()
        runtime.ledger.close()


async def test_head_on_an_endless_stream_answers_headers_only(
    client: httpx.AsyncClient, server_runtime: sn.StreamRuntime
) -> None:
    ref = await open_stream(client, "test.slow_chat")  # waits for input forever
    response = await client.head(f"/streams/{ref}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    info = server_runtime.info(ref)
    assert info.terminal is None
    assert (info.observers, info.cancel_requested) == (1, False)  # only the server's hold
