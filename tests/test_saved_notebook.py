"""Saved notebooks show their transcripts: executed with nbclient (as ``jupyter nbconvert
--execute`` does), exported with ``nbconvert --to html``, and read as raw ``.ipynb`` JSON.

In the browser (JupyterLab and Notebook 7, reopened without a kernel) the same is checked
by ``tests/browser/test_saved_browser.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter

REPO = Path(__file__).resolve().parent.parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

CELLS = [
    """
import asyncio
import streamnb as sn
from streamnb.demo import chatbot_handler, output_only_handler
from streamnb.testing import FakeTokenSource, press_send
runtime = sn.StreamRuntime()
reply = ["**bold** ", "reply ", "<img src=x onerror=alert(1)>"]
runtime.register(chatbot_handler(source=FakeTokenSource(lambda m: reply, rate_tokens_per_s=20)))
runtime.register(output_only_handler(source=FakeTokenSource(lambda m: ["out ", "put"])))
""",
    # a bidi StreamWidget: the message sent and its reply
    """
session = await runtime.attach("tutorial.streaming_chatbot", {})
session
""",
    """
await session.send("what was sent")
print((await session.wait(30)).kind)
""",
    # an output-only stream writing stdout
    """
out = await runtime.attach("tutorial.output_only", {"message": "m"})
out
""",
    "print((await out.wait(30)).kind)",
    # a chat: live, with its saved copy kept up to date
    """
chat = sn.ChatWidget(runtime, "tutorial.streaming_chatbot")
chat
""",
    """
press_send(chat, "first question")
print(await chat.wait(timeout_s=30))
""",
    # a chat closed in a final cell: its own output becomes the transcript
    """
closed_chat = sn.ChatWidget(runtime, "tutorial.streaming_chatbot")
closed_chat
""",
    """
press_send(closed_chat, "closing question")
print(await closed_chat.wait(timeout_s=30))
closed_chat.close()
""",
    # the rooms: a saved copy while open, the transcript once closed
    """
rooms = sn.ChatRooms(runtime=runtime)
room = rooms.room(rooms.create_room("Saved room"))
rooms_widget = sn.ChatRoomsWidget(rooms)
rooms_widget
""",
    """
await room.send("the room question")
await rooms_widget.wait(timeout_s=30)
await asyncio.sleep(1)  # the saved copy is refreshed at most every 0.5 s
rooms_widget.close()
print("closed")
""",
]


def outputs_of(nb: Any, index: int) -> list[dict[str, Any]]:
    return [dict(o) for o in nb.cells[index].outputs]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src.strip()) for src in CELLS]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    os.environ["PYTHONPATH"] = path  # the kernel imports this checkout
    client = NotebookClient(nb, timeout=120, kernel_name="python3", store_widget_state=False)
    client.execute()
    target = tmp_path_factory.mktemp("saved") / "saved.ipynb"
    nbformat.write(nb, target)
    return nbformat.read(target, as_version=4)


def test_a_settled_stream_widget_is_saved_as_its_transcript(executed: Any) -> None:
    [output] = outputs_of(executed, 1)
    data = output["data"]
    assert WIDGET_VIEW not in data  # nothing a reader without the kernel cannot show
    html = data["text/html"]
    assert "what was sent" in html  # the message sent, above the reply
    assert html.index("what was sent") < html.index("<strong>bold</strong>")
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "<img" not in html
    assert 'role="status">completed' in html
    plain = data["text/plain"]
    assert "You: what was sent" in plain and "**bold** reply <img" in plain


def test_an_output_only_stream_shows_the_channel_it_writes(executed: Any) -> None:
    [output] = outputs_of(executed, 3)
    assert WIDGET_VIEW not in output["data"]
    assert "out put" in output["data"]["text/plain"]
    assert "out put" in output["data"]["text/html"]


def test_an_open_chat_is_saved_with_a_copy_of_its_conversation(executed: Any) -> None:
    live, copy = outputs_of(executed, 5)
    assert WIDGET_VIEW in live["data"]  # still open: live while the kernel runs
    html = copy["data"]["text/html"]
    assert "data-streamnb-saved=" in html  # hidden by the live view while it is on the page
    assert "first question" in html and "<strong>bold</strong>" in html
    assert "You: first question" in copy["data"]["text/plain"]


def test_a_closed_chat_is_saved_as_its_conversation_only(executed: Any) -> None:
    own, copy = outputs_of(executed, 7)
    assert WIDGET_VIEW not in own["data"]
    assert "closing question" in own["data"]["text/html"]
    assert copy["data"] == {"text/plain": ""}


def test_a_closed_rooms_widget_is_saved_as_every_room_s_transcript(executed: Any) -> None:
    own, copy = outputs_of(executed, 9)
    assert WIDGET_VIEW not in own["data"]
    html = own["data"]["text/html"]
    assert "Saved room" in html and "the room question" in html
    assert "streamnb reply to the room question" in own["data"]["text/plain"]
    assert copy["data"] == {"text/plain": ""}


def test_nbconvert_html_shows_every_transcript_and_runs_no_reply_markup(executed: Any) -> None:
    body, _ = HTMLExporter().from_notebook_node(executed)
    for text in ("what was sent", "out put", "first question", "closing question"):
        assert text in body
    assert "<strong>bold</strong>" in body
    assert "onerror=alert(1)>" not in body  # the reply's markup is text, not a tag


def test_the_raw_ipynb_holds_the_transcripts_as_text(executed: Any, tmp_path: Path) -> None:
    raw = json.dumps(executed)
    for text in ("You: what was sent", "out put", "You: first question", "You: closing question"):
        assert text in raw
