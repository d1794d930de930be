"""The chat page at ``GET /`` in Debian's chromium (Playwright): stream, Stop, text only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import streamnb as sn
from streamnb.server import ServerHandle
from tests._chromium import chromium_page, skip_without_chromium
from tests._server_util import cancel_reason

pytest_plugins = ["tests._server"]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

TOKEN = "page-token"

skip_without_chromium()

from playwright.async_api import Page, expect  # noqa: E402


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """A fresh chromium page (the browser is closed at teardown)."""
    async with chromium_page() as page:
        yield page  # type: ignore[misc]


async def send(page: Page, handle: ServerHandle, message: str) -> None:
    await page.goto(f"{handle.url}/?token={TOKEN}")
    await page.get_by_label("Message").fill(message)
    await page.get_by_role("button", name="Send").click()


async def test_page_streams_tokens_to_completion(start_server, page: Page) -> None:
    handle: ServerHandle = await start_server(token=TOKEN)
    await send(page, handle, "hello")
    await expect(page.get_by_role("status")).to_have_text("completed")
    await expect(page.get_by_role("log")).to_contain_text("Assistant: ")
    await expect(page.get_by_role("log")).to_contain_text("streamnb reply to hello")


async def test_stop_cancels_server_side(
    start_server, page: Page, server_runtime: sn.StreamRuntime
) -> None:
    handle: ServerHandle = await start_server(token=TOKEN, chat_kind="test.slow_chat")
    await send(page, handle, "hello")
    log = page.get_by_role("log")
    await expect(log).to_contain_text("Attached streams")  # tokens are arriving
    await expect(page.get_by_role("status")).to_have_text("streaming")
    await page.get_by_role("button", name="Stop").click()
    await expect(page.get_by_role("status")).to_have_text("cancelled")
    (ref,) = server_runtime.ledger.streams()["stream_ref"]
    terminal = await server_runtime.wait(ref, timeout_s=5)
    assert terminal.kind == "cancelled"
    assert cancel_reason(server_runtime, ref) == "user pressed Stop"
    assert "streamnb reply to hello" not in await log.text_content()
    await expect(page.get_by_role("button", name="Stop")).to_be_disabled()


async def test_html_in_tokens_is_shown_as_text(start_server, page: Page) -> None:
    handle: ServerHandle = await start_server(token=TOKEN, chat_kind="test.html_chat")
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    await send(page, handle, "<i>me</i>")
    await expect(page.get_by_role("status")).to_have_text("completed")
    log = page.get_by_role("log")
    await expect(log).to_contain_text("<b>bold</b> <img src=x onerror=alert(1)> done")
    await expect(log).to_contain_text("You: <i>me</i>")
    assert await page.locator("#log b, #log img, #log i").count() == 0
    assert dialogs == []
