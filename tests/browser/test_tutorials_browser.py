"""The shipped tutorials, as a reader opens them in JupyterLab (and two in Notebook 7).

Run All with default settings: no cell raises, every widget shows and the settled ones
end as transcripts. The streams the tutorials offer to stop by hand (01's 20 s stream,
02's and 04's 10 s replies, 07's slowed room replies) are run cell by cell up to their
widget and stopped by a click on **Stop**, as a reader would.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Locator, expect

from .conftest import Lab

pytestmark = pytest.mark.browser

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("0*.ipynb"))
RUN_ALL_TIMEOUT_S = 180.0
SETTLE_TIMEOUT_MS = 20_000


def by_stem(*stems: str) -> list[Path]:
    return [p for p in NOTEBOOKS if p.stem in stems]


def run_all(lab: Lab, path: Path) -> None:
    lab.open(lab.server.add_notebook(path))
    lab.run_all(timeout_s=RUN_ALL_TIMEOUT_S)  # raises with the cells' errors, if any
    notebook = lab.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook")
    expect(notebook).not_to_contain_text("Error displaying widget")
    expect(notebook).not_to_contain_text("Traceback")


def run_up_to(lab: Lab, name: str, last: int) -> Locator:
    """Open tutorial ``name``, run its cells 0..``last`` one by one; ``last``'s output."""
    lab.open(lab.server.add_notebook(NOTEBOOKS[[p.stem for p in NOTEBOOKS].index(name)]))
    for index in range(last + 1):
        lab.run_cell(index)
    return lab.output(last)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_tutorial_runs_top_to_bottom_in_jupyterlab(lab: Lab, path: Path) -> None:
    run_all(lab, path)
    if path.stem in ("01_output_only_stream", "02_streaming_chatbot", "04_chat_widget"):
        # its streams settled and its chats were closed: transcripts, no live widget left
        saved = lab.page.locator(".streamnb-saved")
        expect(saved.first).to_be_visible()
        expect(lab.page.locator(".streamnb")).to_have_count(0)


@pytest.mark.parametrize("path", by_stem("04_chat_widget", "07_chat_rooms"), ids=lambda p: p.stem)
def test_a_tutorial_runs_top_to_bottom_in_notebook7(notebook7: Lab, path: Path) -> None:
    run_all(notebook7, path)


def test_tutorial_01_stream_is_stopped_by_a_click(lab: Lab) -> None:
    widget = run_up_to(lab, "01_output_only_stream", 14)  # the 600-token, 20 s stream
    status = widget.get_by_role("status")
    expect(widget.get_by_role("log")).not_to_be_empty(timeout=SETTLE_TIMEOUT_MS)
    expect(status).to_have_text("running")
    widget.get_by_role("button", name="Stop").click()
    expect(status).to_contain_text("cancelled — user pressed stop", timeout=SETTLE_TIMEOUT_MS)


def test_tutorial_02_slow_reply_is_stopped_by_a_click(lab: Lab) -> None:
    widget = run_up_to(lab, "02_streaming_chatbot", 9)  # 200 tokens at 20/s
    log = widget.get_by_role("log", name="Stream output")
    expect(log).to_contain_text("tell me a long story")
    expect(log.locator(".streamnb-sent + .streamnb-segment")).not_to_be_empty(
        timeout=SETTLE_TIMEOUT_MS
    )
    widget.get_by_role("button", name="Stop").click()
    status = widget.get_by_role("status")
    expect(status).to_contain_text("cancelled — user pressed stop", timeout=SETTLE_TIMEOUT_MS)


def test_tutorial_04_long_reply_is_stopped_by_a_click(lab: Lab) -> None:
    chat = run_up_to(lab, "04_chat_widget", 9)  # 400 tokens at 40/s
    box = chat.get_by_role("textbox", name="Message")
    box.fill("tell me everything")
    box.press("Enter")
    stop = chat.get_by_role("button", name="Stop")
    expect(stop).to_be_enabled(timeout=SETTLE_TIMEOUT_MS)
    conversation = chat.get_by_role("log", name="Conversation")
    expect(conversation).to_contain_text("Attached", timeout=SETTLE_TIMEOUT_MS)
    stop.click()
    expect(chat.get_by_role("status")).to_contain_text(
        "last reply cancelled", timeout=SETTLE_TIMEOUT_MS
    )


def test_tutorial_07_room_reply_is_stopped_by_a_click(lab: Lab) -> None:
    widget = run_up_to(lab, "07_chat_rooms", 19)  # replies slowed to 200 words at 15/s
    widget.get_by_role("textbox", name="Message").fill("a long answer, please")
    widget.get_by_role("button", name="Send").click()
    stop = widget.get_by_role("button", name="Stop")
    expect(stop).to_be_enabled(timeout=SETTLE_TIMEOUT_MS)
    expect(widget.get_by_role("log", name="Conversation")).to_contain_text(
        "Attached", timeout=SETTLE_TIMEOUT_MS
    )
    stop.click()
    expect(widget.get_by_role("status")).to_contain_text(
        "last reply cancelled", timeout=SETTLE_TIMEOUT_MS
    )
    lab.run_cell(22)  # the tutorial's clean-up cell, as a reader ends it
    expect(lab.output(22)).to_contain_text("closed: True")
