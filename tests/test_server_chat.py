"""Seed 002's ``POST /chat`` SSE format and the page at ``GET /``."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import httpx
import pytest

import streamnb as sn
from streamnb.server import ServerHandle
from tests._server_util import cancel_reason

pytest_plugins = ["tests._server"]

pytestmark = pytest.mark.timeout(30)


async def chat_blocks(client: httpx.AsyncClient, message: str) -> tuple[str, list[str]]:
    """(ref, the SSE blocks without their ``id:`` lines); ids are checked to be frame seqs."""
    async with client.stream("POST", "/chat", json={"message": message}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        raw = b"".join([chunk async for chunk in response.aiter_raw()]).decode()
    blocks = raw.split("\n\n")
    assert blocks[-1] == ""
    ids = [int(m) for m in re.findall(r"^id: (\d+)$", raw, flags=re.M)]
    assert ids == sorted(ids) and len(ids) == sum(1 for b in blocks if b.startswith("id: "))
    return response.headers["x-stream-ref"], [re.sub(r"^id: \d+\n", "", b) for b in blocks[:-1]]


async def test_chat_streams_content_events_then_done(
    client: httpx.AsyncClient, server_runtime: sn.StreamRuntime
) -> None:
    ref, blocks = await chat_blocks(client, "hello")
    assert blocks[-1] == "data: [DONE]"
    contents = [json.loads(b.removeprefix("data: "))["content"] for b in blocks[:-1]]
    assert all(b.startswith("data: {") for b in blocks[:-1])
    assert "".join(contents).endswith("streamnb reply to hello")
    projection = sn.project_attached_stream(server_runtime.frame_log(ref), ref)
    assert projection.status == "completed"
    assert projection.text() == "".join(contents)


async def test_chat_failure_is_an_error_event_then_done(start_server) -> None:
    handle: ServerHandle = await start_server(chat_kind="test.failing")
    async with httpx.AsyncClient(base_url=handle.url) as client:
        _, blocks = await chat_blocks(client, "hi")
    assert blocks == [
        'data: {"content":"partial "}',
        'data: {"type":"error","error":"RuntimeError: the model went away"}',
        "data: [DONE]",
    ]


async def test_chat_with_an_output_only_kind(start_server) -> None:
    handle: ServerHandle = await start_server(chat_kind="tutorial.output_only")
    async with httpx.AsyncClient(base_url=handle.url) as client:
        _, blocks = await chat_blocks(client, "world")
    text = "".join(json.loads(b[6:])["content"] for b in blocks[:-1])
    assert text.endswith("streamnb reply to world")


async def test_stop_cancels_the_chat_stream_server_side(
    start_server, server_runtime: sn.StreamRuntime
) -> None:
    handle: ServerHandle = await start_server(chat_kind="test.slow_chat")
    async with (
        httpx.AsyncClient(base_url=handle.url) as client,
        client.stream("POST", "/chat", json={"message": "long"}) as response,
    ):
        ref = response.headers["x-stream-ref"]
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith("data: {"):
                break
        stop = await client.post(f"/streams/{ref}/cancel", json={"reason": "user pressed Stop"})
        assert stop.json() == {"result": "requested"}
        rest = [line async for line in lines if line and not line.startswith("id: ")]
    assert rest[-2].startswith(": cancelled")
    assert rest[-1] == "data: [DONE]"
    terminal = await server_runtime.wait(ref, timeout_s=5)
    assert terminal.kind == "cancelled"
    assert cancel_reason(server_runtime, ref) == "user pressed Stop"


async def test_closing_a_chat_connection_detaches_after_the_grace(
    start_server, server_runtime: sn.StreamRuntime
) -> None:
    handle: ServerHandle = await start_server(chat_kind="test.slow_chat", reconnect_grace_s=0.2)
    async with (
        httpx.AsyncClient(base_url=handle.url) as client,
        client.stream("POST", "/chat", json={"message": "long"}) as response,
    ):
        ref = response.headers["x-stream-ref"]
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                break
    terminal = await server_runtime.wait(ref, timeout_s=5)
    assert terminal.kind == "cancelled"
    assert cancel_reason(server_runtime, ref) == "detached"


async def test_page_is_html_with_a_hash_pinned_script(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    for needle in ['role="log"', ">Send<", ">Stop<", '<label for="message">Message</label>']:
        assert needle in html
    assert "innerHTML" not in html
    (script,) = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = page.headers["content-security-policy"]
    assert f"script-src 'sha256-{digest}'" in csp
    assert "connect-src 'self'" in csp
