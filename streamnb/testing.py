"""Test helpers: checkpoint paths, a fake token source, and pressing widget buttons.

The widget helpers (:func:`press_stop`, :func:`press_send`, ...) drive a
:class:`~streamnb.StreamWidget` or :class:`~streamnb.ChatWidget` through the same
custom-message path the browser uses, so notebooks run under nbval can show the
Stop and Send paths without a browser (see :mod:`streamnb.testing_widget`).

Checkpoint paths are the seeds' notation for an expected frame sequence
(seed 000 and 001)::

    opened -> progress -> output* -> completed
    opened -> progress? -> output+ -> completed|cancelled

Each step is a frame kind or alternatives ``a|b`` (``terminal`` stands for
``completed|cancelled|failed``), optionally followed by ``*`` (zero or more),
``+`` (one or more) or ``?`` (optional). :func:`assert_checkpoint` matches the
whole sequence of frame kinds against the path.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from ._errors import StreamnbError
from ._frames import Frame
from .testing_widget import (
    WidgetLike,
    press_enter,
    press_escape,
    press_hello,
    press_send,
    press_stop,
    recorded_messages,
)

__all__ = [
    "CheckpointMismatch",
    "CheckpointSyntaxError",
    "FakeTokenSource",
    "WidgetLike",
    "assert_checkpoint",
    "checkpoint_path",
    "fake_tokens",
    "lorem_tokens",
    "press_enter",
    "press_escape",
    "press_hello",
    "press_send",
    "press_stop",
    "recorded_messages",
]

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

    ``[opened, progress, output, output, output, completed]`` gives
    ``"opened -> progress -> output×3 -> completed"``.
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


def fake_tokens(message: Any) -> list[str]:
    """The seeds' fake token generator: ``["streamnb ", "reply to ", message]`` (seed 000)."""
    return ["streamnb ", "reply to ", str(message)]


_LOREM = (
    "Attached streams keep long work observable: every token arrives in order, Stop asks "
    "the handler to finish, and the ledger keeps exactly one settlement for each stream. "
)


def lorem_tokens(n_tokens: int) -> Callable[[Any], list[str]]:
    """A token function giving ``n_tokens`` word tokens followed by the seed reply.

    Useful for demos that should stream visibly for a while.
    """
    words = [w + " " for w in _LOREM.split()]

    def tokens(message: Any) -> list[str]:
        body = [words[i % len(words)] for i in range(max(0, n_tokens - 3))]
        return body + fake_tokens(message)

    return tokens


class FakeTokenSource:
    """A deterministic token source with the seeds' shape and an optional rate.

    Parameters
    ----------
    tokens : callable ``message -> iterable of str``, default :func:`fake_tokens`
    rate_tokens_per_s : float, optional
        Pace tokens at this rate (tokens per second) against a monotonic
        schedule, so timing does not drift. ``None`` yields as fast as possible
        (still giving the loop a turn every 64 tokens).
    sleep : coroutine function, default ``asyncio.sleep``
        Replace with a fake clock's sleep in tests.

    Examples
    --------
    >>> source = FakeTokenSource(rate_tokens_per_s=20)
    >>> async def demo():                                # doctest: +SKIP
    ...     return [t async for t in source.stream("hi")]
    """

    def __init__(
        self,
        tokens: Callable[[Any], Iterable[str]] = fake_tokens,
        *,
        rate_tokens_per_s: float | None = None,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        if rate_tokens_per_s is not None and rate_tokens_per_s <= 0:
            raise ValueError("rate_tokens_per_s must be > 0 or None")
        self.tokens = tokens
        self.rate_tokens_per_s = rate_tokens_per_s
        self._sleep = sleep

    async def stream(self, message: Any) -> AsyncIterator[str]:
        """Yield the tokens for ``message`` at the configured rate."""
        rate = self.rate_tokens_per_s
        start = time.monotonic()
        for i, token in enumerate(self.tokens(message)):
            if rate is not None:
                delay = start + i / rate - time.monotonic()
                await self._sleep(max(0.0, delay))
            elif i % 64 == 63:
                await self._sleep(0)
            yield token

    def __repr__(self) -> str:
        return f"FakeTokenSource(rate_tokens_per_s={self.rate_tokens_per_s})"
