"""``WS /streams/{ref}/ws``: bidi over one WebSocket, with input, cancel and detach."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import streamnb as sn
from streamnb.server import ServerHandle
from streamnb.testing import assert_checkpoint
from tests._server_util import cancel_reason, open_stream

pytest_plugins = ["tests._server"]

pytestmark = pytest.mark.timeout(30)


def ws_url(server: ServerHandle, ref: str, query: str = "") -> str:
    return f"ws://{server.host}:{server.port}/streams/{ref}/ws{query}"


async def recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def read_to_close(ws: ClientConnection) -> list[dict[str, Any]]:
    messages = []
    try:
        while True:
            messages.append(await recv(ws))
    except ConnectionClosed:
        pass
    return messages


async def test_ws_bidi_input_then_completion(
    server: ServerHandle,
    client: httpx.AsyncClient,
    server_runtime: sn.StreamRuntime,
) -> None:
    ref = await open_stream(client, "tutorial.streaming_chatbot")
    async with connect(ws_url(server, ref)) as ws:
        assert (await recv(ws))["kind"] == "opened"
        assert (await recv(ws))["kind"] == "progress"
        await ws.send(json.dumps({"type": "input", "payload": "hello", "seq": 0}))
        messages = await read_to_close(ws)
        assert ws.close_code == 1000
    replies = [m for m in messages if "type" in m]
    frames = [m for m in messages if "kind" in m]
    assert replies == [{"type": "input_result", "result": "accepted", "seq": 0}]
    assert_checkpoint(frames, "output+ -> completed")
    assert [f["seq"] for f in frames] == list(range(2, 2 + len(frames)))
    text = "".join(f["payload"] for f in frames if f["kind"] == "output")
    assert text.endswith("streamnb reply to hello")
    assert (await server_runtime.wait(ref, timeout_s=5)).kind == "completed"


async def test_ws_cancel_ends_with_cancelled_frame(
    server: ServerHandle,
    client: httpx.AsyncClient,
    server_runtime: sn.StreamRuntime,
) -> None:
    ref = await open_stream(client, "test.slow_chat")
    async with connect(ws_url(server, ref)) as ws:
        await ws.send(json.dumps({"type": "input", "payload": "go"}))
        while (await recv(ws)).get("kind") != "output":
            pass
        await ws.send(json.dumps({"type": "cancel", "reason": "user pressed Stop"}))
        messages = await read_to_close(ws)
    assert {"type": "cancel_result", "result": "requested"} in messages
    terminal = [m for m in messages if "kind" in m][-1]
    assert terminal["kind"] == "cancelled"
    assert cancel_reason(server_runtime, ref) == "user pressed Stop"


async def test_ws_bad_messages_get_error_replies_and_the_socket_stays_open(
    server: ServerHandle,
    client: httpx.AsyncClient,
) -> None:
    ref = await open_stream(client, "test.slow_chat")
    bad = [
        ("not json", "malformed_json"),
        ("[1, 2]", "invalid_request"),
        (json.dumps({"type": "shout"}), "invalid_request"),
        (json.dumps({"type": "input"}), "invalid_request"),
        (json.dumps({"type": "input", "payload": 1, "seq": "x"}), "invalid_request"),
        (json.dumps({"type": "cancel", "reason": 5}), "invalid_request"),
        (json.dumps({"type": "input", "payload": "x" * 2_000_000}), "body_too_large"),
    ]
    async with connect(ws_url(server, ref), max_size=None) as ws:
        await recv(ws)  # opened
        await recv(ws)  # progress
        for text, error_type in bad:
            await ws.send(text)
            reply = await recv(ws)
            assert reply["type"] == "error", reply
            assert reply["error"]["type"] == error_type
        await ws.send(json.dumps({"type": "input", "payload": "fine"}))
        assert (await recv(ws)) == {"type": "input_result", "result": "accepted"}


async def test_ws_input_to_output_only_stream_is_an_error_message(
    server: ServerHandle,
    client: httpx.AsyncClient,
) -> None:
    ref = await open_stream(client, "test.slow_output", {"message": "x"})
    async with connect(ws_url(server, ref)) as ws:
        await ws.send(json.dumps({"type": "input", "payload": "x"}))
        messages = []
        while True:
            message = await recv(ws)
            messages.append(message)
            if message.get("type") == "error":
                break
    assert message["error"]["type"] == "input_not_accepted"


async def test_ws_close_is_a_detach(
    server: ServerHandle,
    client: httpx.AsyncClient,
    server_runtime: sn.StreamRuntime,
) -> None:
    abort = await open_stream(client, "test.slow_chat")
    keep = await open_stream(client, "test.slow_chat_continue")
    for ref in (abort, keep):
        async with connect(ws_url(server, ref)) as ws:
            await ws.send(json.dumps({"type": "input", "payload": "go"}))
            while (await recv(ws)).get("kind") != "output":
                pass
    aborted = await server_runtime.wait(abort, timeout_s=10)
    assert aborted.kind == "cancelled"
    assert cancel_reason(server_runtime, abort) == "detached"
    assert (await server_runtime.wait(keep, timeout_s=10)).kind == "completed"


async def test_ws_resume_with_after_seq_and_unknown_ref(
    server: ServerHandle,
    client: httpx.AsyncClient,
    server_runtime: sn.StreamRuntime,
) -> None:
    ref = await open_stream(client, "tutorial.output_only")
    await server_runtime.wait(ref, timeout_s=5)
    async with connect(ws_url(server, ref, "?after_seq=3")) as ws:
        frames = await read_to_close(ws)
    assert [f["seq"] for f in frames] == [f.seq for f in server_runtime.frame_log(ref)][4:]
    async with connect(ws_url(server, "st_nope")) as ws:
        messages = await read_to_close(ws)
        assert ws.close_code == 4404
    assert messages[0]["error"]["type"] == "unknown_stream"


async def test_client_closing_while_frames_flow_logs_no_asgi_exception(
    server: ServerHandle,
    client: httpx.AsyncClient,
    server_runtime: sn.StreamRuntime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Regression: a client closing its socket while the server wrote (or closed) raced
    # into WebSocketDisconnect / "Unexpected ASGI message" and uvicorn logged "Exception
    # in ASGI application" with a traceback, in normal use.
    caplog.set_level(logging.ERROR)
    refs = []
    for _ in range(15):
        ref = await open_stream(client, "test.big", {"n": 3000, "size": 20})
        refs.append(ref)
        async with connect(ws_url(server, ref)) as ws:
            await recv(ws)  # one frame, then close while the rest are being written
    for ref in refs:
        await server_runtime.wait(ref, timeout_s=10)
    await asyncio.sleep(0.2)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
