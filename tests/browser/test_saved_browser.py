"""A notebook saved after running shows its transcripts without a kernel (JupyterLab and
Notebook 7, default settings: widget state is not saved).

Run, save, shut the kernel down, then read the notebook again in a new page: with a fresh
kernel (which knows none of the widgets), and with "No Kernel" (that kernel shut down,
then File -> Reload Notebook from Disk). Each settled stream's output is its static
transcript; an open chat's output is the live widget (which needs its kernel) followed
by the saved copy of its conversation.
"""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from .conftest import Lab

pytestmark = pytest.mark.browser

NOTEBOOK = "saved_widgets.ipynb"
SETUP, STREAM, STREAM_DONE, OUT, OUT_DONE, CHAT, CHAT_DONE, ROOMS, ROOMS_DONE = range(1, 10)
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def run_and_save(lab: Lab) -> None:
    lab.open(lab.server.add_notebook(NOTEBOOK))
    lab.run_all(timeout_s=120)
    expect(lab.output(STREAM_DONE)).to_have_text("completed")
    expect(lab.output(CHAT_DONE)).to_have_text("completed")
    expect(lab.output(ROOMS_DONE)).to_contain_text("completed")
    # the settled stream's output became its transcript in the live page already
    expect(lab.output(STREAM).get_by_role("status")).to_contain_text("completed")
    # an open chat's saved copy is below it, hidden while the live widget is on the page
    expect(lab.output(CHAT).get_by_role("log", name="Conversation")).to_have_count(1)
    expect(lab.output(CHAT).locator(".streamnb-saved")).to_be_hidden()
    expect(lab.output(ROOMS).locator(".streamnb-saved")).to_be_hidden()
    lab.page.wait_for_timeout(1_000)  # the rooms' saved copy is refreshed every 0.5 s
    lab.command("docmanager:save")


def check_transcripts(lab: Lab) -> None:
    stream = lab.output(STREAM)
    expect(stream.get_by_role("status")).to_contain_text("completed")
    expect(stream).to_contain_text("the saved question")  # the message sent, then the reply
    expect(stream).to_contain_text("saved reply to the saved question")
    expect(stream.locator("strong")).to_have_text("bold")  # Markdown, rendered at save time
    expect(stream.locator("td")).to_have_text(["1", "2"])
    expect(stream).to_contain_text("<img src=x onerror=alert(1)>")  # text, never a tag
    expect(stream.locator("img")).to_have_count(0)
    expect(stream).not_to_contain_text("Error displaying widget")
    expect(lab.output(OUT)).to_contain_text("stdout line")
    expect(lab.output(OUT)).not_to_contain_text("Error displaying widget")
    expect(lab.output(CHAT)).to_contain_text("the chat question")  # the saved copy
    expect(lab.output(CHAT)).to_contain_text("saved reply to the chat question")
    expect(lab.output(ROOMS)).to_contain_text("Saved room")
    expect(lab.output(ROOMS)).to_contain_text("streamnb reply to the room question")


@pytest.mark.parametrize("app", ["lab", "notebook7"])
def test_a_saved_notebook_shows_its_transcripts_without_a_kernel(
    app: str, request: pytest.FixtureRequest
) -> None:
    lab: Lab = request.getfixturevalue("lab" if app == "lab" else "notebook7")
    run_and_save(lab)

    # the file itself: every settled stream saved as text, no widget reference left
    saved = json.loads((lab.server.root_dir / NOTEBOOK).read_text())
    stream_data = saved["cells"][STREAM]["outputs"][0]["data"]
    assert WIDGET_VIEW not in stream_data
    assert "You: the saved question" in "".join(stream_data["text/plain"])
    chat_copy = saved["cells"][CHAT]["outputs"][1]["data"]
    assert "You: the chat question" in "".join(chat_copy["text/plain"])

    # a fresh kernel: the old one shut down, the notebook opened again in a new page
    lab.server.shutdown_kernels()
    lab.open(NOTEBOOK)
    check_transcripts(lab)
    print("fresh kernel, live chat output:", lab.output(CHAT).inner_text()[:200])
    lab.screenshot(lab.page.locator(".jp-Notebook").first, f"saved-fresh-kernel-{app}.png")

    # "No Kernel": that kernel shut down too, the notebook reloaded from disk
    lab.server.shutdown_kernels()
    lab.page.wait_for_function(
        "() => !window.jupyterapp.shell.currentWidget.sessionContext.session"
        " || !window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
        " || window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"
        " === 'dead'"
    )
    lab.command("docmanager:reload")
    lab.dismiss_dialogs()
    check_transcripts(lab)
    print("no kernel, live chat output:", lab.output(CHAT).inner_text()[:200])
    lab.screenshot(lab.page.locator(".jp-Notebook").first, f"saved-no-kernel-{app}.png")
