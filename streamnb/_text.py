"""Text at the boundary: lone UTF-16 surrogates mended once, so every transport can send it.

A Python ``str`` may hold *surrogate* code points (U+D800 to U+DFFF) that are not
Unicode text: UTF-8 cannot encode them, so SSE, WebSocket, the widget's comm,
JSON responses and SQLite all fail on them. They arrive from providers that split
an emoji's ``\\ud83d\\ude00`` JSON escape across two chunks (each chunk then
decodes to half a pair), from ``json.loads`` of an escaped lone half, and from
``bytes.decode(errors="surrogateescape")``.

streamnb mends them where text enters the stream, once, for every consumer:

* :func:`mend` joins a high and a low surrogate that stand next to each other
  into the one character they encode, and replaces every surrogate left alone
  with U+FFFD (the replacement character), as a UTF-8 decoder does with broken
  bytes;
* :class:`SurrogateMender` does the same across the output frames of one
  stream: a token that *ends* with a high surrogate keeps it back, and the next
  token on the same channel starts with it, so a pair split across two tokens
  becomes one character; a half that stays alone becomes U+FFFD;
* :func:`mend_json` mends every string (keys too) inside a JSON value.

The runtime's pump runs every outbound frame through them (``_runtime.py``), the
chat rooms mend a message before storing it (``rooms/room.py``), and the Durable
Streams endpoint mends JSON messages before storing them. Inbound frames keep
being refused with a clear error (``_frames.check_json``): a caller can fix its
own input, a reader cannot fix a handler's output.

Examples
--------
>>> mend("\\ud83d\\ude00 ok")  # a pair written as two code points: one emoji
'😀 ok'
>>> mend("half \\ud83d")  # a lone half
'half \\ufffd'
>>> mender = SurrogateMender()
>>> mender.token("assistant.delta", "smile \\ud83d"), mender.token("assistant.delta", "\\ude00!")
('smile ', '😀!')
>>> mender.token("c", "\\ud83d"), mender.pending()
('', ['c'])
>>> mender.flush()
[('c', '\\ufffd')]
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SurrogateMender", "has_surrogates", "mend", "mend_json"]

#: any surrogate code point
_SURROGATE = re.compile("[\ud800-\udfff]")
#: what a lone surrogate becomes
REPLACEMENT = "\ufffd"


def has_surrogates(text: str) -> bool:
    """True if ``text`` holds a surrogate code point (then it cannot be encoded as UTF-8)."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def mend(text: str) -> str:
    """``text`` with adjacent surrogate pairs joined and lone surrogates replaced by U+FFFD.

    Text without surrogates is returned as it is (the same object).
    """
    if not has_surrogates(text):
        return text
    # UTF-16 holds surrogates as themselves: encoding lets pairs through as code units,
    # decoding turns each well-formed pair into its character and each lone half into U+FFFD
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def mend_json(value: Any) -> Any:
    """``value`` (a JSON value) with every string mended (see :func:`mend`).

    Returns ``value`` itself when nothing needed mending, else a mended copy
    (dicts and lists are copied, never changed in place).
    """
    if isinstance(value, str):
        return mend(value)
    if isinstance(value, dict):
        items = [(mend_json(k), mend_json(v)) for k, v in value.items()]
        if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
            return value
        return dict(items)
    if isinstance(value, list | tuple):
        mended = [mend_json(v) for v in value]
        if all(a is b for a, b in zip(mended, value, strict=True)):
            return value
        return mended
    return value


def _is_high(ch: str) -> bool:
    return "\ud800" <= ch <= "\udbff"


class SurrogateMender:
    """Mends the text tokens of one stream, pairing halves split across two tokens.

    One per stream, used by the runtime's pump only (not thread-safe). A token
    is keyed by its channel: the half a token ends with waits for the next token
    of the same channel.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        #: channel -> the high surrogate the last token of that channel ended with
        self._held: dict[str, str] = {}

    @property
    def holding(self) -> dict[str, str]:
        """The channels with a held-back half (empty almost always); do not change it."""
        return self._held

    def token(self, channel: str, text: str) -> str:
        """The token to publish for ``text`` on ``channel`` (may be ``""``)."""
        held = self._held.pop(channel, None)
        if held is not None:
            text = held + text
        if text and _is_high(text[-1]):
            self._held[channel] = text[-1]
            text = text[:-1]
        return mend(text)

    def pending(self) -> list[str]:
        """The channels holding back half a pair."""
        return list(self._held)

    def flush(self) -> list[tuple[str, str]]:
        """``(channel, "\\ufffd")`` for every half still held back (the stream is ending)."""
        out = [(channel, REPLACEMENT) for channel in self._held]
        self._held.clear()
        return out
