"""Unfinished requests do not hold a connection for ever: header and body time limits.

Before: a client that sent half a request (or headers a byte at a time, or a body
that never ends) kept its connection and a file descriptor for as long as it
liked; a few hundred of them used up the process's descriptors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

import streamnb as sn
from streamnb.demo import output_only_handler
from streamnb.server import ServerHandle, serve_in_background
from streamnb.testing import FakeTokenSource, lorem_tokens

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def handle() -> AsyncIterator[ServerHandle]:
    runtime = sn.StreamRuntime()
    slow = FakeTokenSource(lorem_tokens(12), rate_tokens_per_s=10)
    runtime.register(output_only_handler(source=slow))
    server = await serve_in_background(runtime, header_timeout_s=0.5, body_timeout_s=0.5)
    try:
        yield server
    finally:
        await server.aclose()
        await runtime.aclose()
        runtime.ledger.close()


async def closed_by_server(handle: ServerHandle, sent: bytes) -> bytes:
    """What the server answers before it closes a connection that sent only ``sent``."""
    reader, writer = await asyncio.open_connection(handle.host, handle.port)
    try:
        writer.write(sent)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)  # b"..." then EOF: closed
    finally:
        writer.close()


async def test_a_request_whose_headers_never_finish_is_closed(handle: ServerHandle) -> None:
    assert await closed_by_server(handle, b"") == b""  # connected, sent nothing
    partial = b"GET /ledger/streams HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a"
    assert await closed_by_server(handle, partial) == b""


async def test_a_body_that_never_finishes_gets_408(handle: ServerHandle) -> None:
    head = (
        b"POST /streams HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n"
    )
    answer = await closed_by_server(handle, head + b'{"kind": "tut')
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 408"), answer
    body = rest.split(b"\r\n\r\n", 1)[1]
    assert json.loads(body)["error"]["type"] == "request_timeout"


async def test_long_responses_and_keep_alive_requests_are_not_cut(handle: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=handle.url, timeout=10) as client:
        created = await client.post("/streams", json={"kind": "tutorial.output_only"})
        ref = created.json()["stream_ref"]
        events = await client.get(f"/streams/{ref}/events")  # streams for over 1 s
        assert events.text.count("event: output") == 12
        assert "event: completed" in events.text.rstrip().splitlines()[-2:]
        await asyncio.sleep(0.2)
        again = await client.get("/ledger/streams")  # the same keep-alive connection
        assert again.status_code == 200
