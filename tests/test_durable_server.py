"""The Durable Streams endpoint in the app: streamnb's streams, auth, limits, CORS, storage.

Against uvicorn on 127.0.0.1 with httpx (the conformance suite covers the
protocol itself: tests/test_durable_conformance.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import streamnb as sn
from streamnb.cli import build_parser
from streamnb.demo import output_only_handler
from streamnb.server import ServerHandle, serve_in_background
from streamnb.testing import FakeTokenSource, lorem_tokens
from tests._server_util import open_stream

pytest_plugins = ["tests._server"]
pytestmark = pytest.mark.timeout(60)

JSON_FRAMES = "application/json"


def ds(ref: str) -> str:
    return f"/v1/stream/streamnb/{ref}"


def kinds(response: httpx.Response) -> list[str]:
    return [frame["kind"] for frame in response.json()]


async def test_a_streamnb_stream_reads_as_json_frames_closed_after_settlement(
    client: httpx.AsyncClient, server_runtime: sn.StreamRuntime
) -> None:
    ref = await open_stream(client, "tutorial.output_only", {"message": "hi"})
    await server_runtime.wait(ref, timeout_s=10)
    response = await client.get(ds(ref), params={"offset": "-1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == JSON_FRAMES
    assert response.headers["stream-closed"] == "true"
    frames = response.json()
    assert [f["seq"] for f in frames] == list(range(len(frames)))
    assert frames[0]["kind"] == "opened" and frames[-1]["kind"] == "completed"
    assert frames == [f.to_dict() for f in server_runtime.frame_log(ref)]
    tail = response.headers["stream-next-offset"]
    assert tail == f"{0:016d}_{len(frames):016d}"
    # resuming after frame 2 gives frame 3 onwards
    after2 = await client.get(ds(ref), params={"offset": f"{0:016d}_{3:016d}"})
    assert [f["seq"] for f in after2.json()] == list(range(3, len(frames)))
    head = await client.head(ds(ref))
    assert head.headers["stream-next-offset"] == tail and head.headers["stream-closed"] == "true"


async def test_a_reader_that_sees_the_close_finds_the_settlement(
    client: httpx.AsyncClient, server_runtime: sn.StreamRuntime
) -> None:
    """Long-poll a live stream to its end: when the close arrives, the ledger has it."""
    ref = await open_stream(client, "test.slow_output", {"message": "hi"})
    offset, frames = "-1", []
    while True:
        response = await client.get(ds(ref), params={"offset": offset, "live": "long-poll"})
        if response.status_code == 200:
            frames += response.json()
        closed = response.headers.get("stream-closed") == "true"
        if closed:
            status = server_runtime.ledger.stream_status(ref)  # at once, before anything else
            break
        offset = response.headers["stream-next-offset"]
    assert status == "completed" and frames[-1]["kind"] == "completed"
    assert [f["seq"] for f in frames] == list(range(len(frames)))


async def test_sse_on_a_streamnb_stream_ends_with_stream_closed(
    client: httpx.AsyncClient, server_runtime: sn.StreamRuntime
) -> None:
    ref = await open_stream(client, "test.slow_output", {"message": "hi"})
    events: list[tuple[str, Any]] = []
    async with client.stream("GET", ds(ref), params={"offset": "-1", "live": "sse"}) as response:
        assert response.headers["content-type"] == "text/event-stream"
        event = None
        async for line in response.aiter_lines():  # the server ends the response at the close
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data:"):
                events.append((event, json.loads(line[5:])))
    frames = [f for kind, batch in events if kind == "data" for f in batch]
    assert [f["seq"] for f in frames] == list(range(len(frames)))
    assert frames[-1]["kind"] == "completed"
    assert events[-1] == ("control", {**events[-1][1], "streamClosed": True})
    assert "streamCursor" not in events[-1][1]
    assert server_runtime.ledger.stream_status(ref) == "completed"


async def test_writes_to_streamnb_streams_are_refused_and_change_nothing(
    client: httpx.AsyncClient, server_runtime: sn.StreamRuntime
) -> None:
    ref = await open_stream(client, "tutorial.output_only", {"message": "hi"})
    await server_runtime.wait(ref, timeout_s=10)
    before = (await client.get(ds(ref))).content
    for method, headers in (
        ("PUT", {"content-type": "application/json"}),
        ("POST", {"content-type": "application/json"}),
        ("POST", {"stream-closed": "true"}),
        ("DELETE", {}),
    ):
        response = await client.request(method, ds(ref), headers=headers, content=b"[1]")
        assert response.status_code == 403, method
        assert response.json()["error"]["type"] == "read_only_stream"
        assert response.headers["x-content-type-options"] == "nosniff"
    assert (await client.get(ds(ref))).content == before
    fork = await client.put("/v1/stream/copy", headers={"stream-forked-from": ds(ref)})
    assert fork.status_code == 400


async def test_unknown_refs_are_404(client: httpx.AsyncClient) -> None:
    for path in (ds("st_nope"), "/v1/stream/streamnb", "/v1/stream/streamnb/a/b"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["type"] == "stream_not_found"


async def test_frames_dropped_by_retention_are_410() -> None:
    runtime = sn.StreamRuntime(max_retained_frames=3)
    runtime.register(output_only_handler(source=FakeTokenSource(lorem_tokens(20))))
    async with runtime:
        handle = await serve_in_background(runtime)
        try:
            async with httpx.AsyncClient(base_url=handle.url) as client:
                session = await runtime.attach("tutorial.output_only", {"message": "hi"})
                await session.wait(timeout_s=10)
                gone = await client.get(ds(session.stream_ref), params={"offset": "-1"})
                assert gone.status_code == 410
                assert "max_retained_frames" in gone.json()["error"]["message"]
                tail = await client.get(ds(session.stream_ref), params={"offset": "now"})
                assert tail.status_code == 200 and tail.headers["stream-closed"] == "true"
        finally:
            await handle.aclose()
    runtime.ledger.close()


@pytest.mark.parametrize("record_frames", [True, False])
async def test_evicted_streams_read_from_recorded_frames_or_are_410(record_frames: bool) -> None:
    runtime = sn.StreamRuntime(sn.Ledger(record_frames=record_frames), retain_settled=1)
    runtime.register(output_only_handler(source=FakeTokenSource()))
    async with runtime:
        handle = await serve_in_background(runtime)
        try:
            async with httpx.AsyncClient(base_url=handle.url) as client:
                first = await runtime.attach("tutorial.output_only", {"message": "one"})
                await first.wait(timeout_s=10)
                frames = [f.to_dict() for f in runtime.frame_log(first.stream_ref)]
                second = await runtime.attach("tutorial.output_only", {"message": "two"})
                await second.wait(timeout_s=10)  # first is evicted from memory now
                with pytest.raises(sn.UnknownStreamError):
                    runtime.info(first.stream_ref)
                response = await client.get(ds(first.stream_ref), params={"offset": "-1"})
                if record_frames:
                    assert response.status_code == 200
                    assert response.headers["stream-closed"] == "true"
                    assert response.json() == frames
                else:
                    assert response.status_code == 410
                    assert "record_frames" in response.json()["error"]["message"]
        finally:
            await handle.aclose()
    runtime.ledger.close()


async def test_bearer_token_guards_the_endpoint(start_server: Any) -> None:
    handle: ServerHandle = await start_server(token="t0ken")
    async with httpx.AsyncClient(base_url=handle.url) as client:
        assert (await client.put("/v1/stream/s")).status_code == 401
        assert (await client.get("/v1/stream/s")).status_code == 401
        ok = await client.put("/v1/stream/s", headers={"authorization": "Bearer t0ken"})
        assert ok.status_code == 201
        assert (await client.get("/v1/stream/s", params={"token": "t0ken"})).status_code == 200


async def test_body_cap_applies_to_creates_and_appends(start_server: Any) -> None:
    handle: ServerHandle = await start_server(max_body_bytes=100)
    async with httpx.AsyncClient(base_url=handle.url) as client:
        text = {"content-type": "text/plain"}
        assert (
            await client.put("/v1/stream/s", headers=text, content=b"x" * 101)
        ).status_code == 413
        assert (
            await client.put("/v1/stream/s", headers=text, content=b"x" * 100)
        ).status_code == 201

        async def chunks() -> Any:  # a chunked body: no Content-Length to check first
            for _ in range(5):
                yield b"y" * 30

        too_big = await client.post("/v1/stream/s", headers=text, content=chunks())
        assert too_big.status_code == 413
        assert too_big.json()["error"]["type"] == "body_too_large"
        assert (await client.get("/v1/stream/s")).content == b"x" * 100


async def test_cors_is_off_by_default_and_allows_the_protocol_when_on(
    start_server: Any,
) -> None:
    preflight = {
        "origin": "https://app.example",
        "access-control-request-method": "PUT",
        "access-control-request-headers": "stream-ttl, producer-id, if-none-match",
    }
    plain: ServerHandle = await start_server()
    async with httpx.AsyncClient(base_url=plain.url) as client:
        response = await client.options("/v1/stream/s", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    cors: ServerHandle = await start_server(cors_origins=["https://app.example"])
    async with httpx.AsyncClient(base_url=cors.url) as client:
        response = await client.options("/v1/stream/s", headers=preflight)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        allowed = response.headers["access-control-allow-headers"].lower()
        assert {"stream-ttl", "producer-id", "if-none-match"} <= set(allowed.split(", "))
        put = await client.put("/v1/stream/s", headers={"origin": "https://app.example"})
        exposed = put.headers["access-control-expose-headers"].lower()
        assert "stream-next-offset" in exposed and "stream-closed" in exposed


async def test_the_endpoint_can_be_turned_off(start_server: Any) -> None:
    handle: ServerHandle = await start_server(durable_streams=False)
    async with httpx.AsyncClient(base_url=handle.url) as client:
        assert (await client.put("/v1/stream/s")).status_code == 404
    assert handle.app.state.streamnb.durable is None


def test_cli_flags() -> None:
    args = build_parser().parse_args(["serve"])
    assert (args.durable_streams, args.long_poll_timeout_s) == (True, 20.0)
    args = build_parser().parse_args(
        ["serve", "--no-durable-streams", "--long-poll-timeout-s", "2"]
    )
    assert (args.durable_streams, args.long_poll_timeout_s) == (False, 2.0)
    for bad in ("0", "-1", "nan", "soon"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", "--long-poll-timeout-s", bad])


async def test_streams_persist_in_a_file_ledger_across_restarts(tmp_path: Path) -> None:
    path = str(tmp_path / "ledger.db")
    for round_ in range(2):
        runtime = sn.StreamRuntime(sn.Ledger(path))
        async with runtime:
            handle = await serve_in_background(runtime)
            try:
                async with httpx.AsyncClient(base_url=handle.url) as client:
                    if round_ == 0:
                        created = await client.put(
                            "/v1/stream/notes", headers={"content-type": "text/plain"}, content=b"a"
                        )
                        assert created.status_code == 201
                        closed = await client.post(
                            "/v1/stream/notes",
                            headers={"content-type": "text/plain", "stream-closed": "true"},
                            content=b"b",
                        )
                        assert closed.status_code == 204
                    else:
                        read = await client.get("/v1/stream/notes")
                        assert read.content == b"ab"
                        assert read.headers["stream-closed"] == "true"
            finally:
                await handle.aclose()
        runtime.ledger.close()


async def test_long_poll_returns_when_data_is_appended(start_server: Any) -> None:
    handle: ServerHandle = await start_server(long_poll_timeout_s=30)
    async with httpx.AsyncClient(base_url=handle.url, timeout=30) as client:
        text = {"content-type": "text/plain"}
        tail = (await client.put("/v1/stream/lp", headers=text)).headers["stream-next-offset"]
        poll = asyncio.create_task(
            client.get("/v1/stream/lp", params={"offset": tail, "live": "long-poll"})
        )
        await asyncio.sleep(0.2)
        assert not poll.done()
        await client.post("/v1/stream/lp", headers=text, content=b"news")
        response = await asyncio.wait_for(poll, 5)
        assert (response.status_code, response.content) == (200, b"news")
        assert response.headers["stream-cursor"].isdigit()


async def test_bad_paths_and_parameters_are_400(client: httpx.AsyncClient) -> None:
    for path in (
        "/v1/stream/a//b",
        "/v1/stream/a/%2E%2E/b",
        "/v1/stream/a%00b",
        "/v1/stream/" + "x" * 1100,
    ):
        assert (await client.put(path)).status_code == 400, path
    await client.put("/v1/stream/ok", headers={"content-type": "text/plain"})
    for params in ({"offset": "abc"}, {"offset": "-1", "live": "forever"}, {"live": "sse"}):
        response = await client.get("/v1/stream/ok", params=params)
        assert response.status_code == 400, params
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_server_shutdown_answers_waiting_long_polls(start_server: Any) -> None:
    handle: ServerHandle = await start_server(long_poll_timeout_s=60)
    async with httpx.AsyncClient(base_url=handle.url, timeout=30) as client:
        tail = (await client.put("/v1/stream/idle")).headers["stream-next-offset"]
        poll = asyncio.create_task(
            client.get("/v1/stream/idle", params={"offset": tail, "live": "long-poll"})
        )
        await asyncio.sleep(0.2)
        await handle.aclose()
        response = await asyncio.wait_for(poll, 10)
    assert response.status_code == 204  # answered, not dropped when the server stopped
    assert response.headers["stream-up-to-date"] == "true"
