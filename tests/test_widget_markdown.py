"""The widgets' ``render`` trait and how the Markdown renderer reaches the page (kernel side).

The rendering itself is tested in chromium: ``tests/browser/test_markdown_renderer.py``
(the renderer alone) and ``tests/browser/test_markdown_browser.py`` (real widgets).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import streamnb as sn
from streamnb.rooms import ChatRooms
from streamnb.widget import ChatRoomsWidget, ChatWidget, StreamWidget
from streamnb.widget._markdown import RENDER_MODES, MarkdownLibrary, markdown_library

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "streamnb" / "static" / "markdown.bundle.js"
# What a widget's own front end (its _esm) may weigh: the renderer is not in it.
ESM_LIMIT_BYTES = 40_000


@pytest.fixture
def rooms() -> Iterator[ChatRooms]:
    registry = ChatRooms()
    try:
        yield registry
    finally:
        registry.close()


async def widgets(runtime: sn.StreamRuntime, rooms: ChatRooms, **kwargs: Any) -> list[Any]:
    """One StreamWidget, ChatWidget and ChatRoomsWidget, each made with ``kwargs``."""
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    return [
        StreamWidget(session, **kwargs),
        ChatWidget(runtime, "tutorial.streaming_chatbot", **kwargs),
        ChatRoomsWidget(rooms, **kwargs),
    ]


def close_all(items: list[Any]) -> None:
    for widget in items:
        widget.close()


async def test_render_defaults_to_markdown_and_takes_text(
    runtime: sn.StreamRuntime, rooms: ChatRooms
) -> None:
    default = await widgets(runtime, rooms)
    text = await widgets(runtime, rooms, render="text")
    try:
        for widget in default:
            assert widget.render == "markdown"
            assert widget.get_state()["render"] == "markdown"
        for widget in text:
            assert widget.render == "text"
            assert widget.get_state()["_markdown"] is None  # nothing to load in text mode
    finally:
        close_all(default + text)


@pytest.mark.parametrize("bad", ["html", "Markdown", "", None, 1])
async def test_bad_render_value_names_the_choices(
    runtime: sn.StreamRuntime, rooms: ChatRooms, bad: Any
) -> None:
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    makers = [
        lambda: StreamWidget(session, render=bad),
        lambda: ChatWidget(runtime, "tutorial.streaming_chatbot", render=bad),
        lambda: ChatRoomsWidget(rooms, render=bad),
    ]
    for make in makers:
        with pytest.raises(ValueError, match=r"render must be 'markdown' .* or 'text'"):
            make()
    # and on a live widget, which keeps its mode
    live = await widgets(runtime, rooms)
    try:
        for widget in live:
            with pytest.raises(ValueError, match="render must be"):
                widget.render = bad
            assert widget.render == "markdown"
    finally:
        close_all(live)


async def test_one_renderer_model_per_kernel_referenced_by_every_widget(
    runtime: sn.StreamRuntime, rooms: ChatRooms
) -> None:
    first = await widgets(runtime, rooms)
    second = await widgets(runtime, rooms)
    try:
        library = markdown_library()
        assert isinstance(library, MarkdownLibrary)
        refs = {widget.get_state()["_markdown"] for widget in first + second}
        assert refs == {f"IPY_MODEL_{library.model_id}"}
        source = BUNDLE.read_text(encoding="utf-8")
        assert library.source == source
        assert library.digest == hashlib.sha256(source.encode()).hexdigest()[:16]
    finally:
        close_all(first + second)


async def test_a_closed_renderer_model_is_replaced(
    runtime: sn.StreamRuntime, rooms: ChatRooms
) -> None:
    old = markdown_library()
    old.close()  # as ipywidgets.Widget.close_all() would
    created = await widgets(runtime, rooms)
    try:
        new = markdown_library()
        assert new is not old and new.comm is not None
        assert {w.get_state()["_markdown"] for w in created} == {f"IPY_MODEL_{new.model_id}"}
    finally:
        close_all(created)


async def test_switching_to_markdown_later_references_the_renderer(
    runtime: sn.StreamRuntime, rooms: ChatRooms
) -> None:
    created = await widgets(runtime, rooms, render="text")
    try:
        for widget in created:
            widget.render = "markdown"
            assert widget.get_state()["_markdown"] == f"IPY_MODEL_{markdown_library().model_id}"
    finally:
        close_all(created)


def test_widget_modules_stay_small_without_the_renderer() -> None:
    bundle = BUNDLE.read_text(encoding="utf-8")
    assert len(bundle.encode()) > 50_000  # markdown-it is in the bundle ...
    for widget in (StreamWidget, ChatWidget, ChatRoomsWidget):
        esm = str(widget._esm)
        assert len(esm.encode()) < ESM_LIMIT_BYTES  # ... not in each widget's module
        assert "MarkdownIt" not in esm and "linkify" not in esm
        assert "markdownSupport(model)" in esm  # which loads it once per page


def test_renderer_builds_dom_never_html() -> None:
    for path in (BUNDLE, ROOT / "js" / "markdown.js"):
        source = path.read_text(encoding="utf-8")
        assert not re.search(
            r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment",
            source,
        ), path
    source = (ROOT / "js" / "markdown.js").read_text(encoding="utf-8")
    assert "html: false" in source  # raw HTML in a reply is text
    assert 'SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"])' in source
    bundle = BUNDLE.read_text(encoding="utf-8")
    assert bundle.startswith("// streamnb Markdown renderer: built from js/markdown.js")
    assert re.search(r"export\{[^}]*\bMarkdownView\b", bundle)
    assert re.search(r"export\{[^}]*\brenderMarkdown\b", bundle)


def test_render_modes_are_documented() -> None:
    assert RENDER_MODES == ("markdown", "text")
    for widget in (StreamWidget, ChatWidget, ChatRoomsWidget):
        doc = widget.__doc__ or ""
        assert 'render : {"markdown", "text"}, default "markdown"' in doc
