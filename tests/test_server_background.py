"""``serve_in_background``: runs on the runtime's loop, free ports, clean stop, no signals."""

from __future__ import annotations

import asyncio
import signal
import socket

import httpx
import pytest
from httpx_sse import aconnect_sse

import streamnb as sn
from streamnb.server import serve_in_background
from streamnb.server.background import bind_socket
from tests._server_util import cancel_reason, open_stream

pytest_plugins = ["tests._server"]

pytestmark = pytest.mark.timeout(30)


async def test_serves_on_a_free_port_and_stops(server_runtime: sn.StreamRuntime) -> None:
    sigint = signal.getsignal(signal.SIGINT)
    handle = await serve_in_background(server_runtime, port=0)
    try:
        assert handle.port > 0
        assert handle.url == f"http://127.0.0.1:{handle.port}"
        assert handle.running
        assert server_runtime.loop is asyncio.get_running_loop()
        assert signal.getsignal(signal.SIGINT) is sigint
        async with httpx.AsyncClient(base_url=handle.url) as client:
            ref = await open_stream(client, "tutorial.output_only")
            # the notebook's view of the same runtime
            terminal = await server_runtime.wait(ref, timeout_s=5)
            assert terminal.kind == "completed"
            streams = (await client.get("/ledger/streams")).json()["streams"]
            assert streams[0]["stream_ref"] == ref
    finally:
        await handle.aclose()
    assert not handle.running
    assert "stopped" in repr(handle)
    assert signal.getsignal(signal.SIGINT) is sigint
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", handle.port), timeout=1).close()


async def test_aclose_ends_live_streams_and_detaches(server_runtime: sn.StreamRuntime) -> None:
    handle = await serve_in_background(server_runtime)
    async with httpx.AsyncClient(base_url=handle.url) as client:
        ref = await open_stream(client, "test.slow_chat")  # waits for input forever
        async with aconnect_sse(client, "GET", f"/streams/{ref}/events") as source:
            events = source.aiter_sse()
            assert (await anext(events)).event == "opened"
            closing = asyncio.ensure_future(handle.aclose())
            rest = [sse async for sse in events]  # the response ends cleanly
            await asyncio.wait_for(closing, 10)
    assert [sse.event for sse in rest] == ["progress"]
    terminal = await server_runtime.wait(ref, timeout_s=5)
    assert terminal.kind == "cancelled"
    assert cancel_reason(server_runtime, ref) == "detached"


async def test_stop_is_a_sync_request(server_runtime: sn.StreamRuntime) -> None:
    async with await serve_in_background(server_runtime) as handle:
        handle.stop()
        await asyncio.wait_for(handle._task, 10)
        assert not handle.running


async def test_busy_port_raises_oserror(server_runtime: sn.StreamRuntime) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="in use"):
            await serve_in_background(server_runtime, port=taken.getsockname()[1])


def test_runtime_bound_to_another_loop_is_refused() -> None:
    runtime = sn.StreamRuntime()
    runtime.run(runtime.__aenter__())  # binds the runtime to its own loop
    try:
        with pytest.raises(sn.RuntimeClosedError, match="another event loop"):
            asyncio.run(serve_in_background(runtime))
    finally:
        runtime.close()
        runtime.ledger.close()


def test_listening_socket_is_tcp_so_asyncio_sets_nodelay() -> None:
    # asyncio enables TCP_NODELAY only when sock.proto is IPPROTO_TCP; without it a
    # small SSE event can sit ~40 ms behind Nagle's algorithm (cancel latency)
    with bind_socket("127.0.0.1", 0) as sock:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockname()[1] > 0
