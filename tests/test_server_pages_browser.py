"""The served pages survive the network in Debian's chromium: ``GET /`` and ``GET /rooms/``.

The browser reaches the server through :class:`tests._proxy.DropProxy`, so a drop
is real: the proxy cuts every TCP connection and refuses new ones until the
network is "up" again, so the page's reconnection attempts fail meanwhile
(Playwright's ``set_offline`` cannot do this: Chromium keeps a streaming
``fetch`` running, and a WebSocket may miss its close or reconnect "offline").
What the page shows is compared with the stream's frame log, the stored
messages and the ledger: the whole reply, each token once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect

import streamnb as sn
from streamnb.demo import chatbot_handler
from streamnb.rooms import ChatRooms, room_reply_handler
from streamnb.server import ServerHandle
from streamnb.testing import FakeTokenSource, lorem_tokens
from tests._chromium import CHROMIUM, CHROMIUM_ARGS, skip_without_chromium
from tests._proxy import DropProxy
from tests._server_util import cancel_reason

skip_without_chromium()

pytest_plugins = ["tests._server"]

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

TOKEN = "page-token"
#: long enough that no parked observer expires during a test
GRACE_S = 120.0
HOSTILE = ["<img src=x onerror=alert(1)> ", "<script>alert(2)</script> ", "**not bold** "]


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


async def drop_network(proxy: DropProxy, handle: ServerHandle, ref: str) -> None:
    """Take the network down; return once the server parked the page's observer."""
    proxy.down()
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
    await drop_network(proxy, handle, ref)
    await expect(page.get_by_role("status")).to_have_text("reconnecting")
    assert not server_runtime.info(ref).cancel_requested  # the abort chatbot lives on
    proxy.up()
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
    await drop_network(proxy, handle, ref)
    proxy.up()
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
    await drop_network(proxy, handle, ref)
    proxy.up()
    await expect(page.get_by_role("status")).to_have_text("completed", timeout=60_000)
    projection = sn.project_attached_stream(server_runtime.frame_log(ref), ref)
    assert await reply_text(page).text_content() == projection.text()
    assert await page.locator("#log img, #log script, #log i, #log strong").count() == 0
    assert dialogs == []


async def test_seed_page_closed_mid_reply_detaches_at_once(
    serve: Serve, context: BrowserContext, server_runtime: sn.StreamRuntime
) -> None:
    """Leaving the page is not a drop: its beacon detaches, the abort chatbot stops now
    (the grace is 120 s)."""
    handle, proxy = await serve("page.slow_chat")
    page = await chat_page(context, proxy, "hello")
    await expect(page.get_by_role("log")).to_contain_text("Attached streams keep long")
    ref = await the_only_ref(server_runtime)
    await page.goto("about:blank")
    terminal = await server_runtime.wait(ref, timeout_s=20)
    assert (terminal.kind, cancel_reason(server_runtime, ref)) == ("cancelled", "detached")
    assert (await status_of(handle, ref))["parked"] == 0


# --- the rooms page (GET /rooms/, WS /rooms/ws) --------------------------------------------

SLOW_ROOM_REPLY = FakeTokenSource(lorem_tokens(160), rate_tokens_per_s=30)  # about 6 s
RoomsServe = Callable[[FakeTokenSource], Awaitable[tuple[ChatRooms, ServerHandle, DropProxy]]]


@pytest.fixture
async def serve_rooms(start_server, server_runtime: sn.StreamRuntime) -> AsyncIterator[RoomsServe]:
    """``await serve_rooms(source)``: rooms answering with ``source``, served behind a proxy."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(source: FakeTokenSource) -> tuple[ChatRooms, ServerHandle, DropProxy]:
            rooms = ChatRooms(
                runtime=server_runtime, handler_factory=lambda k: room_reply_handler(k, source)
            )
            stack.push_async_callback(rooms.aclose)
            handle: ServerHandle = await start_server(
                token=TOKEN, rooms=rooms, reconnect_grace_s=GRACE_S
            )
            proxy = await stack.enter_async_context(DropProxy(handle.host, handle.port))
            return rooms, handle, proxy

        yield start


async def rooms_page(context: BrowserContext, proxy: DropProxy) -> Page:
    page = await context.new_page()
    await page.goto(f"{proxy.url}/rooms/?token={TOKEN}")
    await expect(page.get_by_role("status")).to_have_text("connected")
    return page


async def new_room(page: Page, name: str) -> None:
    await page.get_by_label("Room name").fill(name)
    await page.get_by_role("button", name="New", exact=True).click()
    await expect(page.get_by_role("heading", name=name)).to_be_visible()


async def send(page: Page, text: str) -> None:
    await page.get_by_label("Message").fill(text)
    await page.get_by_role("button", name="Send").click()


def assistant_bodies(page: Page) -> object:
    return page.locator("#transcript .message.assistant .body")


async def shown_replies(page: Page) -> list[str]:
    """The assistant messages as the page shows them, white space normalized (Markdown
    rendering drops a paragraph's trailing space)."""
    return [" ".join(t.split()) for t in await assistant_bodies(page).all_inner_texts()]


def words(text: str) -> str:
    return " ".join(text.split())


async def active_reply_ref(rooms: ChatRooms) -> str:
    for _ in range(1000):
        for room_id in rooms:
            active = rooms.room(room_id).active_reply()
            if active is not None:
                return active.stream_ref
        await asyncio.sleep(0.01)
    raise AssertionError("no reply started")


async def test_rooms_page_survives_a_network_drop_mid_reply(
    serve_rooms: RoomsServe, context: BrowserContext
) -> None:
    rooms, handle, proxy = await serve_rooms(
        FakeTokenSource(lorem_tokens(160), rate_tokens_per_s=30)
    )
    page = await rooms_page(context, proxy)
    await new_room(page, "Lobby")
    await send(page, "hello")
    await expect(page.get_by_role("log")).to_contain_text("Attached streams keep long")
    ref = await active_reply_ref(rooms)
    await drop_network(proxy, handle, ref)
    await expect(page.get_by_role("status")).to_have_text("reconnecting")
    proxy.up()
    await expect(page.get_by_role("status")).to_have_text("completed", timeout=60_000)
    (room_id,) = list(rooms)
    stored = rooms.room(room_id).message_list()
    assert [(m.role, m.status) for m in stored] == [("user", "sent"), ("assistant", "completed")]
    assert await shown_replies(page) == [words(stored[1].content)]  # the whole reply, once
    assert stored[1].content.endswith("streamnb reply to hello (turn 1)")
    assert (await status_of(handle, ref))["parked"] == 0  # taken over by the resume
    await expect(page.get_by_role("button", name="Lobby 2")).to_be_visible()


async def test_rooms_page_stop_works_after_a_reconnect(
    serve_rooms: RoomsServe, context: BrowserContext, server_runtime: sn.StreamRuntime
) -> None:
    rooms, handle, proxy = await serve_rooms(
        FakeTokenSource(lorem_tokens(160), rate_tokens_per_s=30)
    )
    page = await rooms_page(context, proxy)
    await new_room(page, "Stoppable")
    await send(page, "hello")
    await expect(page.get_by_role("log")).to_contain_text("Attached streams keep long")
    ref = await active_reply_ref(rooms)
    await drop_network(proxy, handle, ref)
    proxy.up()
    await expect(page.get_by_role("status")).to_have_text("streaming")
    before = len("".join(await assistant_bodies(page).all_inner_texts()))
    for _ in range(500):  # tokens flow again on the new connection
        if len("".join(await assistant_bodies(page).all_inner_texts())) > before:
            break
        await asyncio.sleep(0.01)
    await page.get_by_role("button", name="Stop", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("cancelled")
    terminal = await server_runtime.wait(ref, timeout_s=10)
    assert terminal.kind == "cancelled"
    assert cancel_reason(server_runtime, ref) == "user pressed stop"
    (room_id,) = list(rooms)
    stored = rooms.room(room_id).message_list()[-1]
    assert stored.status == "cancelled"
    assert await shown_replies(page) == [words(stored.content)]
    assert not stored.content.endswith("(turn 1)")


async def test_rooms_page_shows_hostile_tokens_as_text(
    serve_rooms: RoomsServe, context: BrowserContext
) -> None:
    tokens = [
        "<img src=x onerror=alert(1)> ",
        "<script>alert(2)</script> ",
        "[click](javascript:alert(3)) ",
        "**bold** ",
    ]
    rooms, handle, proxy = await serve_rooms(
        FakeTokenSource(lambda m: tokens * 30, rate_tokens_per_s=30)
    )
    dialogs: list[str] = []
    page = await rooms_page(context, proxy)
    page.on("dialog", lambda d: dialogs.append(d.message))
    await new_room(page, "<b>Hostile</b>")
    await send(page, "<i>me</i>")
    log = page.get_by_role("log")
    await expect(log).to_contain_text("<img src=x onerror=alert(1)>")
    ref = await active_reply_ref(rooms)
    await drop_network(proxy, handle, ref)
    proxy.up()
    await expect(page.get_by_role("status")).to_have_text("completed", timeout=60_000)
    await expect(log).to_contain_text("<script>alert(2)</script>")
    await expect(log).to_contain_text("<i>me</i>")
    await expect(page.get_by_role("button", name="<b>Hostile</b> 2")).to_be_visible()
    assert await page.locator("#transcript img, #transcript script, #transcript i").count() == 0
    assert await page.locator("#transcript a[href^='javascript']").count() == 0
    assert await page.locator("#transcript strong").count() == 30  # Markdown still renders
    assert await page.locator("#room-list b").count() == 0
    assert dialogs == []


async def test_rooms_page_new_rename_clear_and_delete_with_confirmation(
    serve_rooms: RoomsServe, context: BrowserContext
) -> None:
    rooms, _, proxy = await serve_rooms(FakeTokenSource(lorem_tokens(4), rate_tokens_per_s=None))
    page = await rooms_page(context, proxy)
    await new_room(page, "First")
    await send(page, "hi")
    await expect(page.get_by_role("status")).to_have_text("completed")
    await new_room(page, "Second")
    await expect(page.get_by_role("log")).to_be_empty()
    await page.get_by_role("button", name="First 2").click()
    await expect(page.get_by_role("log")).to_contain_text("streamnb reply to hi")

    await page.get_by_role("button", name="Rename").click()
    await page.get_by_label("New name").fill("Renamed")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("heading", name="Renamed")).to_be_visible()

    await page.get_by_role("button", name="Clear").click()
    await expect(page.get_by_role("log")).to_be_empty()
    await expect(page.get_by_role("button", name="Renamed 0")).to_be_visible()

    await page.get_by_role("button", name="Delete", exact=True).click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("Delete the room “Renamed” and all its messages?")
    await dialog.get_by_role("button", name="Cancel").click()
    await expect(page.get_by_role("button", name="Renamed 0")).to_be_visible()
    assert sorted(r["name"] for r in rooms.room_infos()) == ["Renamed", "Second"]

    await page.get_by_role("button", name="Delete", exact=True).click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete room").click()
    await expect(page.get_by_role("button", name="Renamed 0")).to_have_count(0)
    await expect(page.get_by_role("heading", name="No room selected")).to_be_visible()
    assert [r["name"] for r in rooms.room_infos()] == ["Second"]


@pytest.mark.parametrize(("scheme", "dark"), [("light", False), ("dark", True)])
async def test_rooms_page_follows_the_color_scheme(
    serve_rooms: RoomsServe, scheme: str, dark: bool
) -> None:
    _, _, proxy = await serve_rooms(FakeTokenSource(lorem_tokens(4), rate_tokens_per_s=None))
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(color_scheme=scheme)
            page = await rooms_page(context, proxy)
            background = await page.locator("body").evaluate(
                "el => getComputedStyle(el).backgroundColor"
            )
        finally:
            await browser.close()
    channels = [int(c) for c in background[background.index("(") + 1 : -1].split(",")[:3]]
    assert (sum(channels) / 3 < 100) is dark, background
