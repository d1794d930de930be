"""The served pages survive the network in Debian's chromium: the seed chat page at ``GET /``.

The browser reaches the server through :class:`tests._proxy.DropProxy`, so a drop
is real: the proxy resets every TCP connection while the browser context is
offline (Playwright's ``set_offline`` alone fails new requests but leaves a
streaming ``fetch`` running); the page's reconnection attempts fail until the
context is back online. What the page shows is compared with the stream's frame
log and the ledger: the whole reply, each token once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

import streamnb as sn
from streamnb.demo import chatbot_handler
from streamnb.server import ServerHandle
from streamnb.testing import FakeTokenSource, lorem_tokens
from tests._proxy import DropProxy
from tests._server_util import cancel_reason

pytest_plugins = ["tests._server"]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [  # as in tests/browser/conftest.py
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "page-token"
#: long enough that no parked observer expires during a test
GRACE_S = 120.0
HOSTILE = ["<img src=x onerror=alert(1)> ", "<script>alert(2)</script> ", "**not bold** "]

if not Path(CHROMIUM).exists():
    pytest.skip(
        "Debian's chromium is not installed (.ci/install-browser.sh)", allow_module_level=True
    )

from playwright.async_api import BrowserContext, Page, async_playwright, expect  # noqa: E402


@pytest.fixture
async def context() -> AsyncIterator[BrowserContext]:
    """A fresh chromium context (the browser is closed at teardown)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield await browser.new_context()
        finally:
            await browser.close()


Served = tuple[ServerHandle, DropProxy]
Serve = Callable[[str], Awaitable[Served]]


@pytest.fixture
async def serve(start_server, server_runtime: sn.StreamRuntime) -> AsyncIterator[Serve]:
    """``await serve(chat_kind)``: a server with slow chat kinds behind a drop proxy."""
    slow = FakeTokenSource(lorem_tokens(160), rate_tokens_per_s=30)  # about 6 s per reply
    hostile = FakeTokenSource(lambda m: HOSTILE * 40, rate_tokens_per_s=30)
    server_runtime.register(chatbot_handler(kind="page.slow_chat", source=slow))
    server_runtime.register(chatbot_handler(kind="page.hostile_chat", source=hostile))
    async with contextlib.AsyncExitStack() as stack:

        async def start(chat_kind: str) -> Served:
            handle: ServerHandle = await start_server(
                token=TOKEN, chat_kind=chat_kind, reconnect_grace_s=GRACE_S
            )
            proxy = await stack.enter_async_context(DropProxy(handle.host, handle.port))
            return handle, proxy

        yield start


async def status_of(handle: ServerHandle, ref: str) -> dict:
    async with httpx.AsyncClient(
        base_url=handle.url, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        return (await client.get(f"/streams/{ref}")).json()


async def the_only_ref(runtime: sn.StreamRuntime) -> str:
    for _ in range(500):
        refs = list(runtime.ledger.streams()["stream_ref"])
        if refs:
            (ref,) = refs
            return str(ref)
        await asyncio.sleep(0.01)
    raise AssertionError("no stream was opened")


async def drop_network(
    context: BrowserContext, proxy: DropProxy, handle: ServerHandle, ref: str
) -> None:
    """Go offline and cut every connection; return once the server parked the observer."""
    await context.set_offline(True)
    proxy.cut()
    for _ in range(1000):
        if (await status_of(handle, ref))["parked"] == 1:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server never saw the drop")


async def chat_page(context: BrowserContext, proxy: DropProxy, message: str) -> Page:
    page = await context.new_page()
    await page.goto(f"{proxy.url}/?token={TOKEN}")
    await page.get_by_label("Message").fill(message)
    await page.get_by_role("button", name="Send").click()
    return page


def reply_text(page: Page) -> object:
    return page.locator("#log .assistant span").nth(1)


async def test_seed_page_survives_a_network_drop_mid_reply(
    serve: Serve, context: BrowserContext, server_runtime: sn.StreamRuntime
) -> None:
    handle, proxy = await serve("page.slow_chat")
    page = await chat_page(context, proxy, "hello")
    await expect(page.get_by_role("log")).to_contain_text("Attached streams keep long")
    ref = await the_only_ref(server_runtime)
    await drop_network(context, proxy, handle, ref)
    await expect(page.get_by_role("status")).to_have_text("reconnecting")
    assert not server_runtime.info(ref).cancel_requested  # the abort chatbot lives on
    await context.set_offline(False)
    await expect(page.get_by_role("status")).to_have_text("completed", timeout=60_000)
    projection = sn.project_attached_stream(server_runtime.frame_log(ref), ref)
    assert projection.status == "completed"
    assert await reply_text(page).text_content() == projection.text()  # each token once
    assert projection.text().endswith("streamnb reply to hello")
    assert (await status_of(handle, ref))["parked"] == 0  # taken over, not expired
    streams = server_runtime.ledger.streams()
    assert streams[["status"]].values.tolist() == [["completed"]]


async def test_seed_page_stop_works_after_a_reconnect(
    serve: Serve, context: BrowserContext, server_runtime: sn.StreamRuntime
) -> None:
    handle, proxy = await serve("page.slow_chat")
    page = await chat_page(context, proxy, "hello")
    await expect(page.get_by_role("log")).to_contain_text("Attached streams keep long")
    ref = await the_only_ref(server_runtime)
    await drop_network(context, proxy, handle, ref)
    await context.set_offline(False)
    await expect(page.get_by_role("status")).to_have_text("streaming")
    shown = len(await reply_text(page).text_content() or "")
    await expect(reply_text(page)).not_to_have_text(
        (await reply_text(page).text_content()) or "", timeout=10_000
    )  # tokens flow again on the new connection
    assert len(await reply_text(page).text_content() or "") > shown
    await page.get_by_role("button", name="Stop").click()
    await expect(page.get_by_role("status")).to_have_text("cancelled")
    terminal = await server_runtime.wait(ref, timeout_s=10)
    assert terminal.kind == "cancelled"
    assert cancel_reason(server_runtime, ref) == "user pressed Stop"
    projection = sn.project_attached_stream(server_runtime.frame_log(ref), ref)
    assert await reply_text(page).text_content() == projection.text()
    assert not projection.text().endswith("streamnb reply to hello")  # cut short


async def test_seed_page_shows_hostile_tokens_as_text_across_a_reconnect(
    serve: Serve, context: BrowserContext, server_runtime: sn.StreamRuntime
) -> None:
    handle, proxy = await serve("page.hostile_chat")
    dialogs: list[str] = []
    page = await context.new_page()
    page.on("dialog", lambda d: dialogs.append(d.message))
    await page.goto(f"{proxy.url}/?token={TOKEN}")
    await page.get_by_label("Message").fill("<i>me</i>")
    await page.get_by_role("button", name="Send").click()
    await expect(page.get_by_role("log")).to_contain_text("<img src=x onerror=alert(1)>")
    ref = await the_only_ref(server_runtime)
    await drop_network(context, proxy, handle, ref)
    await context.set_offline(False)
    await expect(page.get_by_role("status")).to_have_text("completed", timeout=60_000)
    projection = sn.project_attached_stream(server_runtime.frame_log(ref), ref)
    assert await reply_text(page).text_content() == projection.text()
    assert await page.locator("#log img, #log script, #log i, #log strong").count() == 0
    assert dialogs == []
