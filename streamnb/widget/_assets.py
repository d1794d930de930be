"""The widgets' front-end sources: ``esm`` joins files of ``streamnb/static/`` into one module.

anywidget takes a widget's ``_esm`` as one ES module, given either as a path or,
as here, as the module's source text. It loads that module in the browser from
a blob URL, where a relative ``import`` has nothing to resolve against, so the
widgets cannot import a shared file; and streamnb ships without a JavaScript
bundler. Instead the shared prelude ``common.js`` (plain functions, no
``export``) is concatenated in front of each widget's own module:
``esm("common.js", "widget.js")``. Being a string, the result is not watched for
anywidget's hot reload; restart the kernel after editing a ``.js`` file.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["esm"]

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
    """
    return "\n".join((STATIC / name).read_text(encoding="utf-8") for name in names)
