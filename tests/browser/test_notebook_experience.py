"""The notebook habits of issue 10 in JupyterLab and in Notebook 7, as a user meets them.

Multi-turn memory, the message sent shown above its reply, Escape leaving the Message box
without stopping (Ctrl+. stops), ``stopping…`` then a forced stop, the progress bar,
Kernel -> Interrupt on a cell awaiting a stream, and a cell making a file ledger, a
rooms directory and a server run twice. Fixture: ``fixtures/notebook_experience.ipynb``.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, expect

from .conftest import Lab, _js

pytestmark = pytest.mark.browser

NOTEBOOK = "notebook_experience.ipynb"
# Cells of fixtures/notebook_experience.ipynb (0 is markdown).
SETUP, MEMORY, SLOW, STUCK, PROGRESS, WAITED, AFTER_INTERRUPT, QUICK, RERUN, RERUN_FACTS = range(
    1, 11
)


def start(lab: Lab, *cells: int) -> None:
    lab.open(lab.server.add_notebook(NOTEBOOK))
    lab.run_cell(SETUP)
    expect(lab.output(SETUP)).to_have_text("ready")
    for index in cells:
        lab.run_cell(index)


def start_cell(lab: Lab, index: int) -> None:
    """Run a cell without waiting for it to finish."""
    lab.page.evaluate(
        _js(
            """
            const p = findPanel(null);
            p.content.activeCellIndex = arg;
            window.jupyterapp.commands.execute("notebook:run-cell");
            """
        ),
        index,
    )


def send(widget: Locator, text: str) -> None:
    box = widget.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")


def test_a_chat_remembers_the_conversation(nb: Lab) -> None:
    start(nb, MEMORY)
    chat = nb.output(MEMORY)
    for i, text in enumerate(["one", "two", "three"]):
        send(chat, text)
        expect(chat.get_by_role("log", name="Conversation")).to_contain_text(
            f"I saw {2 * i + 1} messages; the last: {text}", timeout=20_000
        )
    expect(chat.get_by_role("status")).to_contain_text("last reply completed")


def test_sent_message_above_its_reply_escape_leaves_the_box_ctrl_dot_stops(nb: Lab) -> None:
    start(nb, SLOW)
    widget = nb.output(SLOW)
    send(widget, "hello there")
    log = widget.get_by_role("log", name="Stream output")
    sent = log.locator(".streamnb-sent")
    expect(sent).to_contain_text("You")
    expect(sent).to_contain_text("hello there")
    expect(log.locator(".streamnb-sent + .streamnb-segment")).not_to_be_empty(timeout=20_000)
    box = widget.get_by_role("textbox", name="Message")
    box.focus()
    box.press("Escape")  # leaves the box, as in JupyterLab; the reply goes on
    assert nb.page.evaluate("() => document.activeElement.getAttribute('aria-label')") != "Message"
    before = log.inner_text()
    nb.page.wait_for_timeout(600)
    expect(widget.get_by_role("status")).to_have_text("running")
    assert len(log.inner_text()) > len(before)
    log.focus()
    nb.page.keyboard.press("Control+Period")  # Stop's shortcut
    status = widget.get_by_role("status")
    expect(status).to_contain_text("cancelled — user pressed stop", timeout=20_000)
    # settled: the output is now the transcript a saved notebook keeps, message included
    expect(widget).to_contain_text("hello there")
    expect(widget.get_by_role("button", name="Stop")).to_have_count(0)


def test_stop_says_stopping_then_that_the_stop_was_forced(nb: Lab) -> None:
    start(nb, STUCK)
    widget = nb.output(STUCK)
    expect(widget.get_by_role("log")).to_contain_text("tick tick")
    widget.get_by_role("button", name="Stop").click()
    status = widget.get_by_role("status")
    expect(status).to_have_text("stopping…")  # the handler ignores the cancel for 1.5 s
    expect(widget.get_by_role("button", name="Stop")).to_be_disabled()
    expect(status).to_contain_text("cancelled — user pressed stop", timeout=20_000)
    expect(status).to_contain_text("forced")


def test_progress_payloads_draw_a_bar(nb: Lab) -> None:
    start(nb, PROGRESS)
    widget = nb.output(PROGRESS)
    bar = widget.get_by_role("progressbar")
    expect(bar).to_be_visible()
    expect(widget).to_contain_text(re.compile(r"\d+ / 10 · step: part \d+"))
    value = int(bar.get_attribute("aria-valuenow") or "0")
    assert 10 <= value <= 100
    expect(widget.get_by_role("status")).to_contain_text("completed", timeout=20_000)
    expect(widget.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(widget).to_contain_text("last progress · 10 / 10 · step: part 10")


def test_interrupting_a_cell_awaiting_a_stream_detaches_it_with_a_clear_error(nb: Lab) -> None:
    start(nb)
    start_cell(nb, WAITED)
    expect(nb.output(WAITED).get_by_role("log")).to_contain_text("wait for me", timeout=20_000)
    nb.command("kernelmenu:interrupt")
    nb.wait_idle()
    output = nb.output(WAITED)
    expect(output).to_contain_text("WaitInterruptedError")
    expect(output).to_contain_text("interrupted while waiting for stream")
    expect(output).not_to_contain_text("CancelledError")
    nb.run_cell(AFTER_INTERRUPT)
    expect(nb.output(AFTER_INTERRUPT)).to_have_text("True detached")
    expect(output.get_by_role("status")).to_contain_text("cancelled — detached")


def test_a_message_sent_from_code_is_shown_in_the_settled_transcript(nb: Lab) -> None:
    start(nb, QUICK)
    output = nb.output(QUICK)
    expect(output).to_contain_text("completed")
    expect(output).to_contain_text("from code")
    expect(output.locator("strong")).to_have_text("quick")
    text = output.inner_text()
    assert text.index("from code") < text.index("reply to from code")


def test_running_a_cell_again_replaces_its_ledger_rooms_and_server(nb: Lab) -> None:
    start(nb, RERUN)
    expect(nb.output(RERUN)).to_have_text("ok 1")
    nb.run_cell(RERUN)  # the habit: run it again
    expect(nb.output(RERUN)).to_have_text("ok 1")  # no "another live process", no duplicate
    nb.run_cell(RERUN_FACTS)
    expect(nb.output(RERUN_FACTS)).to_have_text("['cancelled', 'running'] replaced True")
