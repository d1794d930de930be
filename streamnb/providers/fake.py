"""The fake provider: deterministic tokens with the seeds' shape, at a chosen pace.

Seed 000's chatbot answers every message with ``["streamnb ", "reply to ",
message]``; :func:`fake_tokens` is that generator, :func:`lorem_tokens` makes
longer replies that stream visibly for a while, and :class:`FakeTokenSource`
paces either at a rate in tokens per second. The demo handlers
(:mod:`streamnb.demo`) and the default room reply
(:func:`streamnb.rooms.room_reply_handler`) stream from it, so tutorials, tests
and served demos run with no model at all. :mod:`streamnb.testing` re-exports
the three names.

This module imports nothing but the standard library: ``import
streamnb.providers.fake`` does not load the ``openai`` SDK.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

__all__ = ["FakeTokenSource", "fake_tokens", "lorem_tokens"]

#: a rate-less source gives the event loop a turn after this many tokens
_YIELD_EVERY_TOKENS = 64

_LOREM = (
    "Attached streams keep long work observable: every token arrives in order, Stop asks "
    "the handler to finish, and the ledger keeps exactly one settlement for each stream. "
)


def fake_tokens(message: Any) -> list[str]:
    """The seeds' fake token generator (seed 000).

    Parameters
    ----------
    message : Any
        The user's message; turned into text with ``str``.

    Returns
    -------
    list of str
        Three tokens: ``["streamnb ", "reply to ", str(message)]``.

    Examples
    --------
    >>> fake_tokens("hello")
    ['streamnb ', 'reply to ', 'hello']
    """
    return ["streamnb ", "reply to ", str(message)]


def lorem_tokens(n_tokens: int) -> Callable[[Any], list[str]]:
    """A token function giving ``n_tokens`` tokens: words, then the seed reply.

    Useful for demos that should stream visibly for a while (pair it with
    ``FakeTokenSource(..., rate_tokens_per_s=...)``).

    Parameters
    ----------
    n_tokens : int
        Tokens per reply; the last three are :func:`fake_tokens`' (fewer than 3
        gives just those three).

    Returns
    -------
    callable ``message -> list of str``
        Each token is one word followed by a space.

    Examples
    --------
    >>> tokens = lorem_tokens(5)
    >>> tokens("hi")
    ['Attached ', 'streams ', 'streamnb ', 'reply to ', 'hi']
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
        Makes the tokens of one reply.
    rate_tokens_per_s : float, optional
        Pace tokens at this rate (tokens per second) against a monotonic
        schedule, so timing does not drift. ``None`` yields as fast as possible
        (still giving the loop a turn every 64 tokens).
    sleep : coroutine function, default ``asyncio.sleep``
        Called with seconds to wait; replace with a fake clock's sleep in tests.

    Raises
    ------
    ValueError
        ``rate_tokens_per_s`` is zero or negative.

    Examples
    --------
    >>> import asyncio
    >>> source = FakeTokenSource(lorem_tokens(4), rate_tokens_per_s=1000)
    >>> async def reply():
    ...     return [token async for token in source.stream("hi")]
    >>> asyncio.run(reply())
    ['Attached ', 'streamnb ', 'reply to ', 'hi']
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
        """Yield the tokens for ``message`` at the configured rate.

        Parameters
        ----------
        message : Any
            Passed to ``tokens``.

        Yields
        ------
        str
            One token at a time; the ``i``-th no earlier than ``i /
            rate_tokens_per_s`` seconds after the first.
        """
        rate = self.rate_tokens_per_s
        start = time.monotonic()
        for i, token in enumerate(self.tokens(message)):
            if rate is not None:
                delay = start + i / rate - time.monotonic()
                await self._sleep(max(0.0, delay))
            elif i % _YIELD_EVERY_TOKENS == _YIELD_EVERY_TOKENS - 1:
                await self._sleep(0)
            yield token

    def __repr__(self) -> str:
        return f"FakeTokenSource(rate_tokens_per_s={self.rate_tokens_per_s})"
