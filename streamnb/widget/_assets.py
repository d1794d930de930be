"""The widgets' front-end sources: ``esm`` and ``css`` join files of ``streamnb/static/``.

anywidget takes a widget's ``_esm`` as one ES module, given either as a path or,
as here, as the module's source text. It loads that module in the browser from
a blob URL, where a relative ``import`` has nothing to resolve against, so the
widgets cannot import a shared file; and streamnb ships without a JavaScript
bundler. Instead the shared prelude ``common.js`` (plain functions, no
``export``) is concatenated in front of each widget's own module:
``esm("common.js", "widget.js")``. Being a string, the result is not watched for
anywidget's hot reload; restart the kernel after editing a ``.js`` file. A widget
takes one stylesheet too: ``css("widget.css", "rooms.css")`` joins the stream
widgets' base styles and the rooms layout; a single sheet is given as its path,
``STATIC / "widget.css"``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC", "css", "esm"]

#: the front-end files: ``*.js`` modules and ``*.css`` sheets
STATIC = Path(__file__).resolve().parent.parent / "static"


def esm(*names: str) -> str:
    """Return the source of ``streamnb/static/<name>`` for each name, joined in order.

    Parameters
    ----------
    *names : str
        File names in ``streamnb/static/``, the prelude first.

    Returns
    -------
    str
        One module's source, for a widget's ``_esm``.

    Raises
    ------
    FileNotFoundError
        A file does not exist.

    Examples
    --------
    >>> source = esm("common.js", "widget.js")
    >>> "export default" in source
    True
    """
    return _joined(names)


def css(*names: str) -> str:
    """Like :func:`esm`, for stylesheets: the sheets joined in order (later rules win).

    Examples
    --------
    >>> ".streamnb-rooms-option" in css("widget.css", "rooms.css")
    True
    """
    return _joined(names)


def _joined(names: tuple[str, ...]) -> str:
    return "\n".join((STATIC / name).read_text(encoding="utf-8") for name in names)
