"""Checkpoint paths: the seeds' notation for an expected frame sequence (seed 000 and 001).

::

    opened -> progress -> output* -> completed
    opened -> progress? -> output+ -> completed|cancelled

Each step is a frame kind or alternatives ``a|b`` (``terminal`` stands for
``completed|cancelled|failed``), optionally followed by ``*`` (zero or more),
``+`` (one or more) or ``?`` (optional). :func:`assert_checkpoint` matches the
whole sequence of frame kinds against the path; :func:`checkpoint_path` writes
an actual sequence in the same notation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .._errors import StreamnbError
from .._frames import Frame

__all__ = ["CheckpointMismatch", "CheckpointSyntaxError", "assert_checkpoint", "checkpoint_path"]

_LETTERS = {
    "opened": "O",
    "progress": "P",
    "output": "U",
    "completed": "C",
    "cancelled": "X",
    "failed": "F",
    "input": "I",
}
_STEP = re.compile(r"^([a-z_|]+)([*+?]?)$")


class CheckpointSyntaxError(StreamnbError, ValueError):
    """A checkpoint path could not be parsed."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"cannot read checkpoint path {path!r}: {problem}; write it like "
            "'opened -> progress -> output* -> completed|cancelled'"
        )


class CheckpointMismatch(AssertionError):
    """The frames did not follow the expected checkpoint path."""


def _kind_of(item: Any) -> str:
    if isinstance(item, Frame):
        return item.kind
    if isinstance(item, dict):
        return str(item.get("kind"))
    if isinstance(item, str):
        return item
    raise TypeError(f"expected Frame, dict or kind string, got {type(item).__name__}")


def checkpoint_path(frames: Iterable[Any]) -> str:
    """The actual path of ``frames`` in checkpoint notation, runs compressed.

    Parameters
    ----------
    frames : iterable of Frame (or dicts with ``kind``, or kind strings)

    Returns
    -------
    str
        The kinds joined by ``" -> "``, a run of one kind written ``kind×n``;
        ``"(no frames)"`` for none.

    Examples
    --------
    >>> checkpoint_path(["opened", "progress", "output", "output", "output", "completed"])
    'opened -> progress -> output×3 -> completed'
    >>> checkpoint_path([])
    '(no frames)'
    """
    out: list[str] = []
    prev, count = None, 0
    for item in frames:
        kind = _kind_of(item)
        if kind == prev:
            count += 1
            continue
        if prev is not None:
            out.append(prev if count == 1 else f"{prev}×{count}")
        prev, count = kind, 1
    if prev is not None:
        out.append(prev if count == 1 else f"{prev}×{count}")
    return " -> ".join(out) or "(no frames)"


def _compile(path: str) -> re.Pattern[str]:
    steps = [s.strip() for s in path.split("->")]
    parts = []
    for step in steps:
        m = _STEP.match(step.replace(" ", ""))
        if not step or m is None:
            raise CheckpointSyntaxError(path, f"step {step!r} is not 'kind', 'a|b' or 'kind*'")
        names, quant = m.groups()
        letters = []
        for name in names.split("|"):
            if name == "terminal":
                letters += ["C", "X", "F"]
            elif name in _LETTERS:
                letters.append(_LETTERS[name])
            else:
                raise CheckpointSyntaxError(
                    path, f"unknown frame kind {name!r} (kinds: {', '.join(_LETTERS)}, terminal)"
                )
        parts.append(f"[{''.join(letters)}]{quant}")
    return re.compile("".join(parts))


def assert_checkpoint(frames: Iterable[Any], path: str) -> None:
    """Assert that the kinds of ``frames`` follow the checkpoint ``path`` exactly.

    Parameters
    ----------
    frames : iterable of Frame (or dicts with ``kind``, or kind strings)
    path : str
        Seed notation, e.g. ``"opened -> progress -> output* -> completed"``.

    Raises
    ------
    CheckpointMismatch
        (an ``AssertionError``) showing the expected and the actual path.
    CheckpointSyntaxError
        ``path`` is not valid notation.

    Examples
    --------
    >>> kinds = ["opened", "progress", "output", "cancelled"]
    >>> assert_checkpoint(kinds, "opened -> progress? -> output* -> completed|cancelled")
    >>> assert_checkpoint(kinds, "opened -> progress -> output* -> completed")
    Traceback (most recent call last):
    ...
    streamnb.testing._checkpoints.CheckpointMismatch: frames do not follow the checkpoint path
      expected: opened -> progress -> output* -> completed
      actual:   opened -> progress -> output -> cancelled
    """
    items = list(frames)
    pattern = _compile(path)
    word = "".join(_LETTERS.get(_kind_of(f), "?") for f in items)
    if pattern.fullmatch(word) is None:
        raise CheckpointMismatch(
            f"frames do not follow the checkpoint path\n"
            f"  expected: {path}\n"
            f"  actual:   {checkpoint_path(items)}"
        )
