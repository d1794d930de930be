"""Durable Streams offsets: opaque, lexicographically sortable positions (PROTOCOL.md §8).

An offset names a position in a stream. streamnb mints one shape only,
``0000000000000000_PPPPPPPPPPPPPPPP``: two 16-digit decimal fields, the second
the position. Fixed width makes the text sort like the number, so clients may
compare offsets as strings (§8, property 2). The position counts

* bytes, for a stream stored by :class:`~.sqlite_store.SQLiteStreamStore`
  (the end of the last byte read; JSON streams count the bytes of their
  stored messages), and
* frames, for streamnb's own streams (``/v1/stream/streamnb/{ref}``): the
  offset after frame ``seq`` has position ``seq + 1``.

The first field is reserved and always zero. It keeps the shape the
conformance suite writes by hand (``0000000000000000_0000000000000000`` is
the start of a stream) and leaves room for a segment number should a store
ever need one. The sentinels ``-1`` (start) and ``now`` (tail) are accepted in
requests and never minted (§8, "Reserved Values").

Examples
--------
>>> Offset(5).text
'0000000000000000_0000000000000005'
>>> parse_offset('0000000000000000_0000000000000005')
Offset(position=5)
>>> parse_offset('-1') is START, parse_offset('now') is NOW
(True, True)
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from .errors import ProtocolError

__all__ = [
    "MAX_POSITION",
    "NOW",
    "START",
    "Offset",
    "Sentinel",
    "parse_offset",
    "resolve",
]

_WIDTH: Final = 16
#: the largest position an offset can carry (16 decimal digits)
MAX_POSITION: Final = 10**_WIDTH - 1
_OFFSET = re.compile(r"([0-9]{16})_([0-9]{16})")


class Sentinel(enum.Enum):
    """The two reserved request offsets: ``-1`` (stream start) and ``now`` (tail)."""

    START = "-1"
    NOW = "now"


START: Final = Sentinel.START
NOW: Final = Sentinel.NOW


@dataclass(frozen=True, slots=True, order=True)
class Offset:
    """A position in a stream and its wire text (PROTOCOL.md §8).

    Parameters
    ----------
    position : int
        0 <= position <= :data:`MAX_POSITION`; bytes or frames, see the module
        docstring.
    """

    position: int

    def __post_init__(self) -> None:
        if not 0 <= self.position <= MAX_POSITION:
            raise ValueError(f"an offset position is 0..{MAX_POSITION}, got {self.position}")

    @property
    def text(self) -> str:
        """The offset as clients see it (``Stream-Next-Offset``, ``streamNextOffset``)."""
        return f"{0:0{_WIDTH}d}_{self.position:0{_WIDTH}d}"

    def __str__(self) -> str:
        return self.text


def parse_offset(text: str, what: str = "the offset") -> Offset | Sentinel:
    """Parse a request offset: ``-1``, ``now`` or an offset this server minted.

    Parameters
    ----------
    text : str
        The raw value (query parameter ``offset`` or header ``Stream-Fork-Offset``).
    what : str
        Names the value in the error message.

    Returns
    -------
    Offset or Sentinel

    Raises
    ------
    ProtocolError
        400 ``invalid_offset``: empty, or not one of the three shapes (this also
        rejects every character §8 forbids: ``, & = ? /``, spaces, control
        characters).
    """
    if text == START.value:
        return START
    if text == NOW.value:
        return NOW
    m = _OFFSET.fullmatch(text)
    if m is None or int(m.group(1)) != 0:
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise ProtocolError(
            400,
            "invalid_offset",
            f"{what} {shown!r} is not an offset of this server; use -1 (start), now (tail) "
            "or a Stream-Next-Offset value it returned",
        )
    return Offset(int(m.group(2)))


def resolve(offset: Offset | Sentinel | None, tail: int, what: str = "offset") -> int:
    """The position ``offset`` names in a stream whose tail position is ``tail``.

    ``-1`` is 0, ``now`` (and None) the tail (§8, "Sentinel Values").

    Raises
    ------
    ProtocolError
        400 ``invalid_offset`` for a position past the tail.

    >>> resolve(START, 7), resolve(NOW, 7), resolve(Offset(3), 7)
    (0, 7, 3)
    """
    if offset is None or offset is NOW:
        return tail
    if offset is START:
        return 0
    assert isinstance(offset, Offset)
    if offset.position > tail:
        raise ProtocolError(
            400,
            "invalid_offset",
            f"{what} {offset.text} is past the end of the stream ({Offset(tail).text}); "
            "use a Stream-Next-Offset value this stream returned",
        )
    return offset.position
