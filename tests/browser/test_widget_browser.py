"""StreamWidget and ChatWidget in a real JupyterLab and Notebook 7, found by role and name.

A StreamWidget is live while its stream runs; once it settles its output becomes the
transcript a saved notebook keeps (``widget/_saved.py``): status, sent messages and text,
without the buttons.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Locator, expect

from .conftest import Lab

pytestmark = pytest.mark.browser

NOTEBOOK = "stream_widget.ipynb"
# Cells of fixtures/stream_widget.ipynb (0 is markdown).
SETUP, SLOW, LEDGER, FLOOD, XSS_CELL, CHAT, AWAITING = 1, 2, 3, 4, 5, 6, 7
XSS = "<img src=x onerror=alert(1)><b>bold</b>"
FLOOD_TEXT = "".join(f"{i} " for i in range(20_000))


def start(lab: Lab, *cells: int) -> None:
    lab.open(lab.server.add_notebook(NOTEBOOK))
    lab.run_cell(SETUP)
    expect(lab.output(SETUP)).to_have_text("ready")
    for index in cells:
        lab.run_cell(index)


# The reply text of a stream's main channel: the sent messages ("You" + text) left out,
# and the line break ending the transcript's last paragraph
REPLY_TEXT = """(el) => {
  const copy = el.cloneNode(true);
  copy.querySelectorAll(".streamnb-sent, .streamnb-saved-sent").forEach((n) => n.remove());
  return copy.textContent.replace(/\\n$/, "");
}"""


def main_text(widget: Locator) -> str:
    """The main text of the live view, or of the transcript once the stream settled."""
    main = widget.locator(".streamnb-main, .streamnb-saved-main").first
    return main.evaluate(REPLY_TEXT)


def send_message(widget: Locator, text: str, *, enter: bool = False) -> None:
    box = widget.get_by_role("textbox", name="Message")
    box.fill(text)
    if enter:
        box.press("Enter")
    else:
        widget.get_by_role("button", name="Send").click()


def wait_for_text(widget: Locator, min_chars: int, timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        text = main_text(widget)
        if len(text) >= min_chars:
            return text
        assert time.monotonic() < deadline, f"only {len(text)} chars after {timeout_s} s"
        time.sleep(0.05)  # polling the DOM: there is no event to wait on from here


def test_tokens_stream_and_stop_cancels(nb: Lab) -> None:
    lab = nb
    start(lab, SLOW)
    widget = lab.output(SLOW)
    status = widget.get_by_role("status")
    expect(status).to_have_text("running")  # unsettled
    expect(widget).to_contain_text("phase: waiting_for_user")  # its progress frame arrived
    expect(widget.get_by_role("log")).to_be_visible()
    send_message(widget, "hello")

    first = wait_for_text(widget, 20)
    time.sleep(0.5)  # 40 tokens/s: the text must have grown by the second look
    second = main_text(widget)
    assert len(second) > len(first)
    assert second.startswith(first)

    widget.get_by_role("button", name="Stop").click()
    expect(status).to_contain_text("cancelled")
    expect(status).to_contain_text("user pressed stop")
    # settled: the output is the saved transcript, the sent message above the reply
    expect(widget.get_by_role("button", name="Stop")).to_have_count(0)
    expect(widget.get_by_role("textbox", name="Message")).to_have_count(0)
    expect(widget.locator(".streamnb-saved-sent")).to_have_text("Youhello")  # above the reply
    stopped = main_text(widget)
    assert 0 < len(stopped) < 1_000  # 200 tokens were never all sent

    lab.run_cell(LEDGER)
    expect(lab.output(LEDGER)).to_have_text("['cancelled']")

    lab.screenshot(widget, f"widget-light-{lab.server.app}.png")
    if lab.server.app == "lab":
        lab.set_theme("dark")
        lab.screenshot(widget, "widget-dark.png")


def test_message_and_enter_stream_a_reply(nb: Lab) -> None:
    lab = nb
    start(lab, SLOW)
    widget = lab.output(SLOW)
    send_message(widget, "ping from the browser", enter=True)
    expect(widget.get_by_role("status")).to_contain_text("completed", timeout=20_000)
    assert main_text(widget).endswith("streamnb reply to ping from the browser")
    expect(widget.get_by_role("textbox", name="Message")).to_have_count(0)  # the transcript
    lab.run_cell(LEDGER)
    expect(lab.output(LEDGER)).to_have_text("['completed']")


def test_widget_streams_while_its_cell_awaits_the_end(lab: Lab) -> None:
    start(lab)
    lab.cell(AWAITING).locator(".jp-InputPrompt").click()  # select it, command mode
    lab.page.keyboard.press("Control+Enter")  # run it; returns while the cell runs
    widget = lab.output(AWAITING)
    first = wait_for_text(widget, 20)
    time.sleep(0.5)
    second = main_text(widget)
    assert len(second) > len(first)
    # the cell is still awaiting session.wait(): the kernel is busy, the widget streams
    expect(lab.cell(AWAITING).locator(".jp-InputPrompt")).to_contain_text("*")
    lab.wait_idle(30)
    expect(widget.get_by_role("status")).to_have_text("completed")
    expect(widget.locator(".jp-OutputArea-output").last).to_have_text("completed")  # print()
    assert main_text(widget).endswith("streamnb reply to while the cell awaits")


def test_reload_mid_stream_brings_the_text_back(nb: Lab) -> None:
    lab = nb
    start(lab, SLOW)
    widget = lab.output(SLOW)
    send_message(widget, "survive a reload")
    before = wait_for_text(widget, 40)
    lab.command("docmanager:save")  # the reopened notebook shows the saved widget output

    lab.open(NOTEBOOK)  # a full page load, the kernel keeps running
    widget = lab.output(SLOW)
    after = wait_for_text(widget, len(before) + 1)
    assert after.startswith(before)
    expect(widget.get_by_role("status")).to_contain_text("completed", timeout=20_000)
    assert main_text(widget).endswith("streamnb reply to survive a reload")


def test_flood_renders_completely_and_in_order(lab: Lab) -> None:
    start(lab, FLOOD)
    widget = lab.output(FLOOD)
    expect(widget.get_by_role("status")).to_contain_text("completed", timeout=30_000)
    text = main_text(widget)
    # one Markdown paragraph (the default render): CommonMark drops its trailing space
    assert len(text) == len(FLOOD_TEXT.rstrip())
    assert text == FLOOD_TEXT.rstrip()
    expect(widget.locator(".streamnb-saved-main p")).to_have_count(1)  # the transcript


def test_markup_in_tokens_is_shown_as_text(lab: Lab) -> None:
    start(lab, XSS_CELL)
    widget = lab.output(XSS_CELL)
    log = widget.get_by_role("log")
    expect(widget.get_by_role("status")).to_contain_text("completed")
    expect(log).to_contain_text(XSS + " after")
    expect(log.locator("img")).to_have_count(0)
    expect(log.locator("b")).to_have_count(0)


def test_chat_widget_turn_and_stop(nb: Lab) -> None:
    lab = nb
    start(lab, CHAT)
    chat = lab.output(CHAT)
    send_message(chat, "first question")
    log = chat.get_by_role("log", name="Conversation")
    expect(log).to_contain_text("first question")
    expect(chat.get_by_role("button", name="Send")).to_be_disabled()
    expect(log).to_contain_text("Attached streams", timeout=10_000)
    chat.get_by_role("button", name="Stop").click()
    expect(chat.get_by_role("status")).to_contain_text("cancelled")
    expect(chat.get_by_role("button", name="Send")).to_be_enabled()
    send_message(chat, "second", enter=True)
    expect(log).to_contain_text("second")
    expect(chat.get_by_role("button", name="Stop")).to_be_enabled()
    lab.screenshot(chat, f"chat-light-{lab.server.app}.png")
    box = chat.get_by_role("textbox", name="Message")
    box.focus()
    box.press("Escape")  # leaves the box; does not stop the reply
    lab.page.wait_for_timeout(500)
    expect(chat.get_by_role("button", name="Stop")).to_be_enabled()
    expect(chat.get_by_role("status")).not_to_contain_text("cancelled")
    box.press("Control+Period")  # Stop's shortcut
    expect(chat.get_by_role("status")).to_contain_text("cancelled")
    if lab.server.app == "lab":
        lab.set_theme("dark")
        lab.screenshot(chat, "chat-dark.png")
