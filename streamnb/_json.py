"""JSON as streamnb stores and sends it: one encoder, one lenient decoder.

Stored JSON (ledger payloads and terminals, cassettes, room messages) is UTF-8
text without NaN or Infinity (which JSON cannot carry), and a
:class:`~streamnb.Frame` inside a value is written as its JSON object
(:meth:`~streamnb.Frame.to_dict`), not as the array ``json`` would make of a tuple.

Examples
--------
>>> dumps({"text": "héllo", "n": [1, 2]})
'{"text":"héllo","n":[1,2]}'
>>> dumps({"a": 1}, readable=True)
'{"a": 1}'
>>> loads('{"a": 1}'), loads(None)
({'a': 1}, None)
"""

from __future__ import annotations

import json
from typing import Any

from ._frames import Frame

__all__ = ["dumps", "loads", "to_jsonable"]

_COMPACT = (",", ":")
_READABLE = (", ", ": ")
# built once: json.dumps with options builds a new encoder per call (it cost more than
# encoding a settlement's small terminal, bench/bench_core.py core.file_ledger)
_COMPACT_ENCODER = json.JSONEncoder(separators=_COMPACT, ensure_ascii=False, allow_nan=False)
_READABLE_ENCODER = json.JSONEncoder(separators=_READABLE, ensure_ascii=False, allow_nan=False)


def to_jsonable(value: Any) -> Any:
    """``value`` with every :class:`~streamnb.Frame` inside replaced by its JSON object.

    Needed because a Frame is a tuple, which ``json`` would write as an array.
    """
    if isinstance(value, Frame):
        return {k: to_jsonable(v) for k, v in value.to_dict().items()}
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def dumps(value: Any, *, readable: bool = False) -> str:
    """``value`` as JSON text: compact (or ``readable``, with a space after ``,`` and ``:``).

    Raises
    ------
    TypeError
        ``value`` holds something JSON cannot represent (a set, an object...).
    ValueError
        ``value`` holds NaN or an infinity.
    """
    if not isinstance(value, (str, int, float, bool)):
        value = to_jsonable(value)
    return (_READABLE_ENCODER if readable else _COMPACT_ENCODER).encode(value)


def loads(text: Any) -> Any:
    """Parse stored JSON text; anything that is not a ``str`` (NULL, a NaN pandas put in an
    all-NULL column) is "no value" and gives ``None``."""
    return json.loads(text) if isinstance(text, str) else None
