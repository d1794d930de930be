"""Pages of other sites get nothing: the Host allow-list, the Origin check, JSON bodies.

Before: with no token, any ``Host`` was served (``Host: evil.example`` read
``/ledger/streams``: DNS rebinding), POST endpoints took ``text/plain`` and form
bodies (CORS-simple requests, no preflight) and a WebSocket took any ``Origin``.
The refusals themselves are rows of ``tests/test_server_errors.py``; here: what
must keep working, WebSockets, and the options. The browser proof is
``tests/test_server_cross_site_browser.py``.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import streamnb as sn
from streamnb.server import ServerHandle
from tests._server_util import open_stream

pytest_plugins = ["tests._server"]

pytestmark = pytest.mark.timeout(30)

CREATE = {"kind": "tutorial.output_only"}


async def raw_handshake(server: ServerHandle, path: str, host: str) -> str:
    """The status line a WebSocket handshake with this ``Host`` gets (a client library
    will not send a Host that is not the URL's)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        await writer.drain()
        return (await reader.readline()).decode().strip()
    finally:
        writer.close()


async def test_own_origin_and_clients_without_origin_are_served(server: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.post("/streams", json=CREATE)).status_code == 201  # no Origin
        same = {"Origin": server.url}  # the server's own page (GET / posts /chat like this)
        assert (await client.post("/streams", json=CREATE, headers=same)).status_code == 201
        local = {"Host": f"localhost:{server.port}", "Origin": f"http://localhost:{server.port}"}
        assert (await client.post("/streams", json=CREATE, headers=local)).status_code == 201
        # a cross-origin GET is harmless (the browser hides the response) and still served
        reads = await client.get("/ledger/streams", headers={"Origin": "http://evil.example"})
        assert reads.status_code == 200
        # JSON with a charset or a +json type is JSON; a body-less cancel needs no type
        typed = {"content-type": "application/json; charset=utf-8"}
        made = await client.post(
            "/streams", content=b'{"kind": "tutorial.output_only"}', headers=typed
        )
        assert made.status_code == 201
        ref = await open_stream(client, "tutorial.streaming_chatbot")
        assert (await client.post(f"/streams/{ref}/cancel")).status_code == 200


async def test_host_refusal_changes_nothing_and_reads_nothing(
    server: ServerHandle, server_runtime: sn.StreamRuntime
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        await open_stream(client, "tutorial.output_only")
        before = len(server_runtime.ledger.streams())
        evil = {"Host": "evil.example"}
        listed = await client.get("/ledger/streams", headers=evil)
        assert listed.status_code == 403
        assert "streams" not in listed.json()  # the rebinding page reads nothing
        assert (await client.post("/streams", json=CREATE, headers=evil)).status_code == 403
        assert len(server_runtime.ledger.streams()) == before


async def test_websocket_from_another_origin_is_refused_before_the_handshake(
    server: ServerHandle,
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        ref = await open_stream(client, "tutorial.streaming_chatbot")
    url = f"ws://{server.host}:{server.port}/streams/{ref}/ws"
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{server.port + 1}"):
        with pytest.raises(InvalidStatus) as info:
            async with connect(url, origin=origin):  # type: ignore[arg-type]
                pass
        assert info.value.response.status_code == 403
    status = await raw_handshake(server, f"/streams/{ref}/ws", host="evil.example")
    assert status.startswith("HTTP/1.1 403")
    async with connect(url, origin=server.url) as ws:  # type: ignore[arg-type]
        assert '"opened"' in str(await ws.recv())
    async with connect(url) as ws:  # a non-browser client sends no Origin
        assert '"opened"' in str(await ws.recv())


async def test_allowed_hosts_and_cors_origins_widen_the_rules(start_server) -> None:
    handle: ServerHandle = await start_server(
        allowed_hosts=["notebook.lan"], cors_origins=["http://localhost:5173"]
    )
    async with httpx.AsyncClient(base_url=handle.url) as client:
        lan = await client.get("/ledger/streams", headers={"Host": "notebook.lan:9999"})
        assert lan.status_code == 200
        vite = {"Origin": "http://localhost:5173"}
        created = await client.post("/streams", json=CREATE, headers=vite)
        assert created.status_code == 201
        assert created.headers["access-control-allow-origin"] == "http://localhost:5173"
        other = await client.post("/streams", json=CREATE, headers={"Origin": "http://x.example"})
        assert other.status_code == 403
    anything: ServerHandle = await start_server(allowed_hosts=["*"], cors_origins=["*"])
    async with httpx.AsyncClient(base_url=anything.url) as client:
        headers = {"Host": "whatever.example", "Origin": "http://x.example"}
        assert (await client.post("/streams", json=CREATE, headers=headers)).status_code == 201


async def test_durable_streams_keep_their_content_types_but_not_foreign_origins(
    server: ServerHandle,
) -> None:
    text = {"content-type": "text/plain"}
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.put("/v1/stream/notes", headers=text)).status_code == 201
        appended = await client.post("/v1/stream/notes", content=b"hello", headers=text)
        assert appended.status_code == 204
        evil = {**text, "Origin": "http://evil.example"}
        refused = await client.post("/v1/stream/notes", content=b"injected", headers=evil)
        assert refused.status_code == 403
        assert (await client.put("/v1/stream/other", headers=evil)).status_code == 403
        read = await client.get("/v1/stream/notes", params={"offset": "-1"})
        assert read.text == "hello"
