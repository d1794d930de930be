"""Markdown replies in real widgets: StreamWidget, ChatWidget and ChatRoomsWidget in JupyterLab.

Fixture: ``fixtures/markdown_widget.ipynb`` (its setup cell defines ``REPLY`` and
``HOSTILE``, read back here so the test and the notebook cannot drift apart). A settled
StreamWidget's output becomes its saved transcript (``widget/_saved.py``), so the live
renderer is checked on ``md.hold`` streams, which stream the whole reply and then wait for
"finish"; the transcript a settled reply leaves is checked too.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

import pytest
from playwright.sync_api import Locator, expect

from .conftest import FIXTURES, Lab

pytestmark = pytest.mark.browser

NOTEBOOK = "markdown_widget.ipynb"
# Cells of fixtures/markdown_widget.ipynb (0 is markdown).
SETUP, MARKDOWN, TEXT, HOSTILE, HOSTILE_FACTS, CHAT, ROOMS, TO_TEXT, TO_MARKDOWN, FINISH = range(
    1, 11
)


def _setup_constants() -> dict[str, Any]:
    cells = json.loads((FIXTURES / NOTEBOOK).read_text())["cells"]
    tree = ast.parse("".join(cells[SETUP]["source"]))
    return {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id in ("REPLY", "HOSTILE")
    }


CONSTANTS = _setup_constants()
REPLY: str = CONSTANTS["REPLY"]

# The page's one-shot render of `text` with the renderer the widgets loaded (same module).
ONE_SHOT = """
async (text) => {
  const modules = globalThis[Symbol.for("streamnb.markdown.modules")];
  const module = await [...modules.values()][0];
  const box = document.createElement("div");
  module.renderMarkdown(box, text);
  return box.innerHTML;
}
"""

# WCAG contrast ratio between an element's text colour and the first opaque background
# behind it.
CONTRAST = """
(el) => {
  const rgb = (s) => s.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  let node = el;
  let bg = null;
  while (node) {
    const c = rgb(getComputedStyle(node).backgroundColor);
    if (c.length === 3 || c[3] > 0.5) { bg = c.slice(0, 3); break; }
    node = node.parentElement;
  }
  const a = lum(rgb(getComputedStyle(el).color));
  const b = lum(bg || [255, 255, 255]);
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}
"""


def start(lab: Lab, *cells: int) -> None:
    lab.open(lab.server.add_notebook(NOTEBOOK))
    lab.run_cell(SETUP)
    expect(lab.output(SETUP)).to_have_text("ready")
    for index in cells:
        lab.run_cell(index)


def completed(widget: Locator) -> None:
    expect(widget.get_by_role("status")).to_contain_text("completed", timeout=30_000)


def streamed(widget: Locator) -> None:
    """The whole reply is in the live view (an md.hold stream, still running)."""
    expect(main(widget)).to_contain_text("for more.", timeout=30_000)
    expect(widget.get_by_role("status")).to_have_text("running")


def main(widget: Locator) -> Locator:
    """The reply: the live view's last text segment (after the message sent), or the saved
    transcript's main text once settled."""
    return widget.locator(".streamnb-main .streamnb-segment, .streamnb-saved-main").last


def test_markdown_reply_renders_lists_tables_code_and_emphasis(lab: Lab) -> None:
    start(lab, MARKDOWN)
    widget = lab.output(MARKDOWN)
    streamed(widget)
    body = main(widget)
    expect(body.locator("h1")).to_have_text("Plan")
    expect(body.locator("strong")).to_have_text("bold")
    expect(body.locator("em")).to_have_text("italic")
    expect(body.locator("s")).to_have_text("old")
    expect(body.locator("p > code")).to_have_text("inline code")
    expect(body.locator("ul > li")).to_have_text(["first item", "second item"])
    expect(body.locator("blockquote")).to_have_text("A quoted line.")
    expect(body.locator("th")).to_have_text(["name", "value"])
    expect(body.locator("td")).to_have_text(["alpha", "1", "beta", "2"])
    assert body.locator("td").last.evaluate("(el) => getComputedStyle(el).textAlign") == "right"
    code = body.locator("pre > code")
    expect(code).to_have_text('print("copy me")\n')
    font = code.evaluate("(el) => getComputedStyle(el).fontFamily")
    assert "mono" in font.lower(), font
    link = body.get_by_role("link", name="https://example.com")
    expect(link).to_have_attribute("href", "https://example.com/")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    assert "**" not in body.inner_text()  # no raw Markdown left

    # streamed in 3-character tokens, it ends in the DOM of a one-shot render
    assert body.evaluate("(el) => el.innerHTML") == lab.page.evaluate(ONE_SHOT, REPLY)

    # Copy puts the code on the clipboard
    lab.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.server.url)
    copy = body.get_by_role("button", name="Copy code")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert lab.page.evaluate("() => navigator.clipboard.readText()") == 'print("copy me")\n'


def test_a_settled_markdown_reply_leaves_its_rendered_transcript(lab: Lab) -> None:
    start(lab, MARKDOWN)
    widget = lab.output(MARKDOWN)
    streamed(widget)
    lab.run_cell(FINISH)
    expect(lab.output(FINISH)).to_have_text("completed")
    completed(widget)
    body = widget.locator(".streamnb-saved-main")  # rendered in the kernel (markdown-it-py)
    expect(body.locator("h1")).to_have_text("Plan")
    expect(body.locator("strong")).to_have_text("bold")
    expect(body.locator("s")).to_have_text("old")
    expect(body.locator("td")).to_have_text(["alpha", "1", "beta", "2"])
    expect(body.locator("pre > code")).to_have_text('print("copy me")\n')
    link = body.get_by_role("link", name="https://example.com")
    expect(link).to_have_attribute("href", "https://example.com")
    # the transcript says rel="noopener noreferrer"; JupyterLab's HTML renderer sets its own
    # rel="noopener" on every external link of an output
    expect(link).to_have_attribute("rel", re.compile("noopener"))
    expect(link).to_have_attribute("target", "_blank")
    assert "**" not in body.inner_text()
    lab.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.server.url)
    copy = widget.get_by_role("button", name="Copy code")  # the transcript's own script
    copy.click()
    expect(copy).to_have_text("Copied")
    assert lab.page.evaluate("() => navigator.clipboard.readText()") == 'print("copy me")\n'


def test_render_text_shows_the_raw_characters(lab: Lab) -> None:
    start(lab, TEXT)
    widget = lab.output(TEXT)
    expect(main(widget)).to_contain_text("for more.", timeout=30_000)
    body = main(widget)
    assert body.evaluate("(el) => el.textContent") == REPLY
    for tag in ("strong", "table", "pre", "a", "h1"):
        expect(body.locator(tag)).to_have_count(0)


def test_no_script_in_a_token_runs(lab: Lab) -> None:
    dialogs: list[str] = []
    lab.page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    start(lab, HOSTILE)
    widget = lab.output(HOSTILE)
    completed(widget)
    lab.run_cell(HOSTILE_FACTS)  # status, and the text came in 20 deltas or more
    expect(lab.output(HOSTILE_FACTS)).to_have_text("completed True")
    body = main(widget)
    # the tag split over two deltas, and the others, are shown as characters
    expect(body).to_contain_text('<img src=x onerror="window.__pwned=1"> split tag')
    for raw in (
        "<script>window.__pwned=1</script></script>",
        '<svg onload="window.__pwned=1"></svg>',
        "<!-- a comment -->",
        '<iframe src="javascript:window.__pwned=1"></iframe>',
        '<b onmouseover="window.__pwned=1">bold html</b>',
        "[js](javascript:window.__pwned=1)",
        "[case](JaVaScRiPt:window.__pwned=1)",
        "[data](data:text/html,<script>window.__pwned=1</script>)",
    ):
        expect(body).to_contain_text(raw)
    for tag in ("img", "svg", "script", "iframe", "b", "style"):
        expect(body.locator(tag)).to_have_count(0)
    # Markdown around them still renders; the only link is the safe one
    expect(body.locator("em").first).to_have_text("after the image")
    hrefs = body.locator("a").evaluate_all("(links) => links.map((a) => a.href)")
    assert hrefs == ["https://example.com/safe"]
    # hover everything (an onmouseover payload would run now), give an onerror time to fire
    body.locator("*").evaluate_all(
        "(els) => els.forEach((e) => e.dispatchEvent(new MouseEvent('mouseover', {bubbles: true})))"
    )
    lab.page.wait_for_timeout(300)
    assert lab.page.evaluate("() => window.__pwned") is None
    assert dialogs == []


def test_chat_and_rooms_render_replies_as_markdown_and_user_text_as_text(lab: Lab) -> None:
    start(lab, CHAT, ROOMS)
    chat = lab.output(CHAT)
    chat.get_by_role("textbox", name="Message").fill("**not bold** <b>x</b>")
    chat.get_by_role("button", name="Send").click()
    log = chat.get_by_role("log", name="Conversation")
    expect(chat.get_by_role("status")).to_contain_text("last reply completed", timeout=30_000)
    user = log.locator('[data-role="user"] .streamnb-message-text')
    expect(user).to_have_text("**not bold** <b>x</b>")
    expect(user.locator("b, strong")).to_have_count(0)
    reply = log.locator('[data-role="assistant"] .streamnb-message-text')
    expect(reply.locator("table td")).to_have_text(["alpha", "1", "beta", "2"])
    expect(reply.locator("ul > li")).to_have_count(2)
    expect(reply.get_by_role("button", name="Copy code")).to_be_visible()

    rooms = lab.output(ROOMS)
    rooms.get_by_role("button", name="New room").click()
    expect(rooms.get_by_role("button", name="Send")).to_be_enabled()
    rooms.get_by_role("textbox", name="Message").fill("*plain*")
    rooms.get_by_role("button", name="Send").click()
    transcript = rooms.get_by_role("log", name="Conversation")
    expect(transcript.locator('[data-role="assistant"] h1')).to_have_text("Plan", timeout=30_000)
    expect(transcript.locator('[data-role="assistant"] td')).to_have_count(4)
    expect(transcript.locator('[data-role="user"] .streamnb-message-text')).to_have_text("*plain*")


def test_switching_render_mode_rerenders_the_text(lab: Lab) -> None:
    start(lab, MARKDOWN)
    widget = lab.output(MARKDOWN)
    streamed(widget)
    body = main(widget)
    expect(body.locator("table")).to_have_count(1)
    lab.run_cell(TO_TEXT)
    expect(body.locator("table")).to_have_count(0)
    assert body.evaluate("(el) => el.textContent") == REPLY
    lab.run_cell(TO_MARKDOWN)
    expect(body.locator("table")).to_have_count(1)
    assert body.evaluate("(el) => el.innerHTML") == lab.page.evaluate(ONE_SHOT, REPLY)


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_markdown_is_readable_in_light_and_dark_themes(lab: Lab, theme: str) -> None:
    start(lab, MARKDOWN)
    widget = lab.output(MARKDOWN)
    streamed(widget)
    lab.set_theme(theme)
    body = main(widget)
    for part in ("p", "pre > code", "td", "th", "blockquote", "a", "li", "p > code"):
        ratio = body.locator(part).first.evaluate(CONTRAST)
        assert ratio >= 4.5, f"{part} contrast {ratio:.2f} in the {theme} theme"
    lab.screenshot(widget, f"markdown-{theme}.png")


def test_markdown_reply_renders_in_notebook7(notebook7: Lab) -> None:
    start(notebook7, MARKDOWN, CHAT)
    assert notebook7.page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"
    widget = notebook7.output(MARKDOWN)
    streamed(widget)
    body = main(widget)
    expect(body.locator("h1")).to_have_text("Plan")
    expect(body.locator("td")).to_have_text(["alpha", "1", "beta", "2"])
    expect(body.locator("pre > code")).to_have_text('print("copy me")\n')
    assert body.evaluate("(el) => el.innerHTML") == notebook7.page.evaluate(ONE_SHOT, REPLY)
    chat = notebook7.output(CHAT)
    chat.get_by_role("textbox", name="Message").fill("hello")
    chat.get_by_role("button", name="Send").click()
    reply = chat.locator('[data-role="assistant"] .streamnb-message-text')
    expect(reply.locator("ul > li")).to_have_text(["first item", "second item"], timeout=30_000)
