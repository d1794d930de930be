"""Markdown replies in the widgets: the ``render`` trait and the renderer sent once per kernel.

Assistant text renders as CommonMark + GFM (tables, strikethrough, autolinks, fenced
code with a Copy button) by ``streamnb/static/markdown.bundle.js``, built with esbuild
from ``js/markdown.js`` and markdown-it (``npm run build``). The renderer builds DOM
nodes from markdown-it's tokens and never hands reply text to the HTML parser: raw
HTML is shown as text, links keep only ``http``, ``https`` and ``mailto`` targets and
open in a new tab with ``rel="noopener noreferrer"``, images are shown as links.

Loading: anywidget sends each widget's ``_esm`` in that widget's model state and
imports it once per model (a blob URL per model, no cache across models), so a
100 KB renderer inside ``_esm`` would travel and be evaluated once per widget. It
travels instead in one :class:`MarkdownLibrary` model per kernel, which every widget
in ``render="markdown"`` references (``_markdown``, an ``IPY_MODEL_`` reference);
the front end (``common.js``, ``loadMarkdown``) imports its source once per page,
keyed by its digest, and later widgets reuse that module.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import ipywidgets
import traitlets
from ipywidgets import widget_serialization

__all__ = [
    "RENDER_MODES",
    "MarkdownLibrary",
    "MarkdownRendering",
    "check_render",
    "markdown_library",
    "render_traits",
]

#: the values of a widget's ``render``
RENDER_MODES = ("markdown", "text")
BUNDLE = Path(__file__).resolve().parent.parent / "static" / "markdown.bundle.js"


def check_render(render: object) -> str:
    """Validate a widget's ``render`` value; returns it.

    Raises
    ------
    ValueError
        ``render`` is not ``"markdown"`` or ``"text"``.
    """
    if not isinstance(render, str) or render not in RENDER_MODES:
        raise ValueError(
            f"render must be 'markdown' (assistant text as Markdown) or 'text' (every "
            f"character as written); got {render!r}"
        )
    return render


class MarkdownLibrary(ipywidgets.Widget):  # type: ignore[misc]
    """The Markdown renderer's source, one model per kernel (see :func:`markdown_library`).

    A model without a view (``@jupyter-widgets/base`` ``WidgetModel``): the widgets'
    front ends read ``source`` from it and import it once per page, keyed by ``digest``.

    Attributes
    ----------
    source : str
        ``streamnb/static/markdown.bundle.js`` (an ES module, about 100 KB).
    digest : str
        The first 16 hex digits of the source's SHA-256.
    """

    source = traitlets.Unicode("").tag(sync=True)
    digest = traitlets.Unicode("").tag(sync=True)


_library: MarkdownLibrary | None = None
_library_lock = threading.Lock()


def markdown_library() -> MarkdownLibrary:
    """The kernel's :class:`MarkdownLibrary`, created on first use (again after a close).

    Returns
    -------
    MarkdownLibrary
        The same model for every widget while it is open, so the page receives the
        renderer once per kernel.

    Raises
    ------
    FileNotFoundError
        ``streamnb/static/markdown.bundle.js`` is missing (rebuild it: ``npm run build``).
    """
    global _library
    with _library_lock:
        if _library is None or _library.comm is None:  # closed, e.g. by Widget.close_all()
            source = BUNDLE.read_text(encoding="utf-8")
            digest = hashlib.sha256(source.encode()).hexdigest()[:16]
            _library = MarkdownLibrary(source=source, digest=digest)
        return _library


def render_traits(render: str) -> dict[str, Any]:
    """A widget's constructor keywords for ``render``: the mode and, for Markdown, the library.

    Raises
    ------
    ValueError
        ``render`` is not ``"markdown"`` or ``"text"`` (checked before any comm opens).
    """
    check_render(render)
    return {"render": render, "_markdown": markdown_library() if render == "markdown" else None}


class RenderMode(traitlets.Unicode):  # type: ignore[type-arg]
    """A ``render`` trait: any bad value (``None``, ``1``, ``"html"``) raises
    :func:`check_render`'s ValueError naming the choices, not a bare TraitError."""

    info_text = "'markdown' or 'text'"

    def validate(self, obj: Any, value: Any) -> str:
        return check_render(value)


class MarkdownRendering(traitlets.HasTraits):
    """The ``render`` trait of the streamnb widgets (a mixin).

    ``render="markdown"`` (default) shows assistant channels (``assistant`` and
    ``assistant.*``, e.g. ``assistant.delta``) as Markdown and every other channel
    (``stdout``, ``tool``, the user's messages) as text; ``render="text"`` shows every
    character as written. It can be changed on a live widget; the views re-render.
    """

    render = RenderMode("markdown").tag(sync=True)
    _markdown = traitlets.Instance(MarkdownLibrary, allow_none=True).tag(
        sync=True, **widget_serialization
    )

    @traitlets.observe("render")
    def _render_changed(self, change: Any) -> None:
        if change["new"] == "markdown" and self._markdown is None:
            self._markdown = markdown_library()
