"""A page of another local origin, in Debian's chromium, can create nothing on the server.

Before: a page served from another origin on this machine (another local server, a
notebook's output) created a room and a stream on ``streamnb serve`` with
``fetch(url, {method: "POST", mode: "no-cors", body})``: a CORS-simple request that
needs no preflight (the browser only hides the response). Form posts and WebSockets
worked the same way, and a page using DNS rebinding could read everything. The
server now refuses them all (``streamnb/server/guard.py``); here a real browser
tries every route a page has.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import streamnb as sn
from streamnb.rooms import ChatRooms
from streamnb.server import ServerHandle, serve_in_background
from tests._chromium import chromium_page, skip_without_chromium

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

skip_without_chromium()

from playwright.async_api import Page  # noqa: E402

#: what the attacker's page runs against the target; returns what it could observe
ATTACK_JS = """
async ({target, ref}) => {
  const seen = {};
  const body = (o) => JSON.stringify(o);
  // 1. fetch in no-cors mode: text/plain bodies, no preflight
  for (const [path, payload] of [
      ["/streams", {kind: "tutorial.output_only"}],
      ["/rooms", {name: "pwned"}],
      ["/chat", {message: "pwned"}],
      [`/streams/${ref}/cancel`, {reason: "pwned"}],
      ["/v1/stream/pwned", "pwned"]]) {
    try {
      await fetch(target + path, {method: "POST", mode: "no-cors", body: body(payload)});
      seen[path] = "sent";
    } catch (e) { seen[path] = "network error"; }
  }
  try {
    await fetch(target + "/v1/stream/pwned-put", {method: "PUT", mode: "no-cors"});
  } catch (e) {}
  // 2. a form post of JSON-looking text (enctype text/plain), into a hidden frame
  await new Promise((resolve) => {
    const frame = document.createElement("iframe");
    frame.name = "sink";
    frame.onload = () => resolve();
    document.body.appendChild(frame);
    const form = document.createElement("form");
    form.method = "POST";
    form.enctype = "text/plain";
    form.target = "sink";
    form.action = target + "/rooms";
    const field = document.createElement("input");
    field.name = '{"name": "form-pwned", "x": "';
    field.value = '"}';
    form.appendChild(field);
    document.body.appendChild(form);
    form.submit();
    setTimeout(resolve, 5000);
  });
  // 3. a WebSocket to a stream whose ref the page learnt: send a cancel
  seen.ws = await new Promise((resolve) => {
    const ws = new WebSocket(target.replace("http", "ws") + `/streams/${ref}/ws`);
    ws.onopen = () => { ws.send(body({type: "cancel", reason: "pwned"})); resolve("open"); };
    ws.onerror = () => resolve("refused");
    setTimeout(() => resolve("timeout"), 5000);
  });
  return seen;
}
"""


@pytest.fixture
async def target() -> AsyncIterator[tuple[sn.StreamRuntime, ChatRooms, ServerHandle]]:
    from streamnb.demo import demo_handlers

    runtime = sn.StreamRuntime(cancel_grace_s=0.5, force_wait_s=0.5)
    for handler in demo_handlers(rate_tokens_per_s=None):
        runtime.register(handler)
    rooms = ChatRooms(runtime=runtime)
    handle = await serve_in_background(runtime, rooms=rooms)
    try:
        yield runtime, rooms, handle
    finally:
        await handle.aclose()
        await rooms.aclose()
        await runtime.aclose()
        runtime.ledger.close()


@pytest.fixture
async def attacker_origin() -> AsyncIterator[str]:
    """Another local origin (``http://localhost:<port>``) serving an empty page."""
    page = b"<!doctype html><html><body><p>an ordinary page</p></body></html>"

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
            + f"Content-Length: {len(page)}\r\n\r\n".encode()
            + page
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://localhost:{port}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    # rebind.example resolves to 127.0.0.1, as a DNS rebinding attack makes it
    async with chromium_page(["--host-resolver-rules=MAP rebind.example 127.0.0.1"]) as page:
        yield page  # type: ignore[misc]


async def test_a_page_of_another_local_origin_creates_no_room_and_no_stream(
    target: tuple[sn.StreamRuntime, ChatRooms, ServerHandle], attacker_origin: str, page: Page
) -> None:
    runtime, rooms, handle = target
    victim = await runtime.attach("tutorial.streaming_chatbot", {})  # the page learnt its ref
    await page.goto(attacker_origin)
    seen = await page.evaluate(ATTACK_JS, {"target": handle.url, "ref": victim.stream_ref})
    assert seen["/streams"] == "sent"  # the browser did send it: the server refused it
    assert seen["ws"] == "refused"
    await asyncio.sleep(0.5)  # let anything the server accepted settle into its state
    assert runtime.ledger.streams().stream_ref.tolist() == [victim.stream_ref]
    assert len(rooms) == 0
    assert runtime.info(victim.stream_ref).status == "running"
    assert not runtime.info(victim.stream_ref).cancel_requested
    assert handle.app.state.streamnb.durable is not None
    durable = await page.request.get(f"{handle.url}/v1/stream/pwned")
    assert durable.status == 404  # no Durable Stream was created either
    await victim.cancel("test over")


async def test_a_dns_rebinding_page_reads_nothing(
    target: tuple[sn.StreamRuntime, ChatRooms, ServerHandle], page: Page
) -> None:
    runtime, _, handle = target
    session = await runtime.attach("tutorial.output_only", {})
    await session.wait(10)
    # rebind.example resolves to 127.0.0.1: to the browser this page is same-origin with
    # the server, so it could read any response the server gave it
    response = await page.goto(f"http://rebind.example:{handle.port}/ledger/streams")
    assert response is not None and response.status == 403
    assert session.stream_ref not in await page.content()
    read = await page.evaluate(
        "async () => { const r = await fetch('/ledger/streams');"
        " return [r.status, await r.text()] }"
    )
    assert read[0] == 403 and session.stream_ref not in read[1]
    # the real name still works, in the same browser
    ok = await page.goto(f"{handle.url}/ledger/streams")
    assert ok is not None and ok.status == 200
    assert session.stream_ref in await page.content()
