"""ChatRoomsWidget in a real JupyterLab: two rooms, chat in both, stop one, reload, switch back."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Locator, expect

from .conftest import Lab

pytestmark = pytest.mark.browser

NOTEBOOK = "chat_rooms.ipynb"
# Cells of fixtures/chat_rooms.ipynb (0 is markdown).
SETUP, WIDGET, FACTS = 1, 2, 3


def start(lab: Lab) -> Locator:
    lab.open(lab.server.add_notebook(NOTEBOOK))
    lab.run_cell(SETUP)
    expect(lab.output(SETUP)).to_have_text("ready")
    lab.run_cell(WIDGET)
    widget = lab.output(WIDGET)
    expect(widget.get_by_role("listbox", name="Rooms")).to_be_visible()
    return widget


def option(widget: Locator, name: str) -> Locator:
    return widget.get_by_role("option", name=re.compile(rf"^{re.escape(name)},"))


def send(widget: Locator, text: str) -> None:
    widget.get_by_role("textbox", name="Message").fill(text)
    widget.get_by_role("button", name="Send").click()


def transcript(widget: Locator) -> str:
    return widget.get_by_role("log", name="Conversation").evaluate("(el) => el.textContent")


def wait_growing(widget: Locator, min_chars: int, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        text = transcript(widget)
        if len(text) >= min_chars:
            return text
        assert time.monotonic() < deadline, f"only {len(text)} chars after {timeout_s} s"
        time.sleep(0.05)  # polling the DOM: there is no event to wait on from here


def test_two_rooms_chat_stop_reload_and_switch_back(lab: Lab) -> None:
    widget = start(lab)
    status = widget.get_by_role("status")
    expect(status).to_contain_text("no rooms yet")
    expect(widget.get_by_role("button", name="Send")).to_be_disabled()

    # Room 1: a short reply that completes
    widget.get_by_role("button", name="New room").click()
    expect(option(widget, "Room 1")).to_have_attribute("aria-selected", "true")
    send(widget, "hello from one")
    log = widget.get_by_role("log", name="Conversation")
    expect(log).to_contain_text("hello from one")
    expect(status).to_contain_text("ready — last reply completed", timeout=20_000)
    expect(log).to_contain_text("streamnb reply to hello from one (turn 1)")
    expect(option(widget, "Room 1")).to_have_attribute("aria-label", "Room 1, 2 messages")

    # Room 2: a long reply, stopped midway
    widget.get_by_role("button", name="New room").click()
    expect(option(widget, "Room 2")).to_have_attribute("aria-selected", "true")
    expect(log).not_to_contain_text("hello from one")  # another room, another history
    send(widget, "long story please")
    expect(widget.get_by_role("button", name="Stop")).to_be_enabled()
    expect(option(widget, "Room 2")).to_have_attribute("aria-label", re.compile("replying"))
    before = wait_growing(widget, len("long story please") + 40)
    time.sleep(0.3)  # 40 tokens/s: the reply must have grown by the second look
    assert len(transcript(widget)) > len(before)
    widget.get_by_role("button", name="Stop").click()
    expect(status).to_contain_text("ready — last reply cancelled")
    expect(log).to_contain_text("cancelled")
    stopped = transcript(widget)
    assert "streamnb reply to" not in stopped  # cut short in the lorem part

    # rename Room 2 in place
    widget.get_by_role("button", name="Rename").click()
    name_box = widget.get_by_role("textbox", name="Room name")
    name_box.fill("Stopped room")
    name_box.press("Enter")
    expect(option(widget, "Stopped room")).to_have_attribute("aria-selected", "true")
    expect(widget.get_by_role("heading", name="Stopped room")).to_be_visible()

    lab.run_cell(FACTS)
    expect(lab.output(FACTS)).to_contain_text("[('Room 1', 2), ('Stopped room', 2)]")
    expect(lab.output(FACTS)).to_contain_text("['cancelled', 'completed']")
    lab.screenshot(widget, "rooms-light.png")

    # reload the page (the kernel keeps running), then switch back to Room 1
    lab.command("docmanager:save")
    lab.open(NOTEBOOK)
    widget = lab.output(WIDGET)
    log = widget.get_by_role("log", name="Conversation")
    expect(option(widget, "Stopped room")).to_have_attribute("aria-selected", "true")
    expect(log).to_contain_text("long story please")
    expect(log).to_contain_text("cancelled")
    option(widget, "Room 1").click()
    expect(option(widget, "Room 1")).to_have_attribute("aria-selected", "true")
    expect(log).to_contain_text("hello from one")
    expect(log).to_contain_text("streamnb reply to hello from one (turn 1)")
    expect(widget.get_by_role("status")).to_contain_text("ready — last reply completed")

    # the history goes on in Room 1, while the other room's history stays its own
    send(widget, "second message")
    expect(log).to_contain_text("streamnb reply to second message (turn 2)", timeout=20_000)
    option(widget, "Stopped room").click()
    expect(log).not_to_contain_text("second message")

    # keyboard: arrows move through the list
    option(widget, "Stopped room").focus()
    widget.page.keyboard.press("ArrowUp")
    expect(option(widget, "Room 1")).to_have_attribute("aria-selected", "true")

    # clear and delete
    widget.get_by_role("button", name="Clear").click()
    expect(option(widget, "Room 1")).to_have_attribute("aria-label", "Room 1, 0 messages")
    expect(log).not_to_contain_text("hello from one")
    widget.get_by_role("button", name="Delete").click()
    expect(widget.get_by_role("option")).to_have_count(1)
    expect(option(widget, "Stopped room")).to_have_attribute("aria-selected", "true")

    lab.set_theme("dark")
    lab.screenshot(widget, "rooms-dark.png")


def test_markup_in_room_names_and_messages_is_text(lab: Lab) -> None:
    widget = start(lab)
    widget.get_by_role("button", name="New room").click()
    widget.get_by_role("button", name="Rename").click()
    box = widget.get_by_role("textbox", name="Room name")
    box.fill("<b>bold</b>")
    box.press("Enter")
    expect(widget.get_by_role("listbox", name="Rooms")).to_contain_text("<b>bold</b>")
    expect(widget.get_by_role("heading")).to_have_text("<b>bold</b>")
    send(widget, "<img src=x onerror=alert(1)>")
    log = widget.get_by_role("log", name="Conversation")
    expect(log).to_contain_text("<img src=x onerror=alert(1)>")
    expect(widget.get_by_role("status")).to_contain_text("completed", timeout=20_000)
    expect(widget.locator("img")).to_have_count(0)
    expect(widget.locator("b")).to_have_count(0)
