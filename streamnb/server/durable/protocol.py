"""Durable Streams wire vocabulary: header names, content types, header values, cursors.

Pure functions over request values, shared by the routes and by every store
backend; each cites the section of the Durable Streams protocol (PROTOCOL.md,
ElectricSQL, draft v1.0) it implements. Nothing here does I/O.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from datetime import datetime
from typing import Any, Final

from ..._text import mend
from ..body import parse_json_text
from ..errors import HTTPError
from .errors import ProtocolError

__all__ = [
    "CORS_ALLOW_HEADERS",
    "CORS_EXPOSE_HEADERS",
    "CURSOR",
    "DEFAULT_CONTENT_TYPE",
    "ETAG",
    "EXPIRES_AT",
    "FORKED_FROM",
    "FORK_OFFSET",
    "FORK_SUB_OFFSET",
    "IF_NONE_MATCH",
    "JSON_CONTENT_TYPE",
    "MAX_SAFE_INTEGER",
    "NEXT_OFFSET",
    "PRODUCER_EPOCH",
    "PRODUCER_EXPECTED_SEQ",
    "PRODUCER_ID",
    "PRODUCER_RECEIVED_SEQ",
    "PRODUCER_SEQ",
    "SECURITY_HEADERS",
    "SSE_DATA_ENCODING",
    "STREAM_CLOSED",
    "STREAM_SEQ",
    "TTL",
    "UP_TO_DATE",
    "cursor_for",
    "is_json",
    "is_sse_text",
    "json_messages",
    "media_type",
    "parse_closed",
    "parse_content_type",
    "parse_expires_at",
    "parse_non_negative",
    "parse_ttl",
]

# --- header names (§13.2, §5.2.1) -------------------------------------------------------
NEXT_OFFSET: Final = "Stream-Next-Offset"
UP_TO_DATE: Final = "Stream-Up-To-Date"
STREAM_CLOSED: Final = "Stream-Closed"
CURSOR: Final = "Stream-Cursor"
TTL: Final = "Stream-TTL"
EXPIRES_AT: Final = "Stream-Expires-At"
STREAM_SEQ: Final = "Stream-Seq"
FORKED_FROM: Final = "Stream-Forked-From"
FORK_OFFSET: Final = "Stream-Fork-Offset"
FORK_SUB_OFFSET: Final = "Stream-Fork-Sub-Offset"
PRODUCER_ID: Final = "Producer-Id"
PRODUCER_EPOCH: Final = "Producer-Epoch"
PRODUCER_SEQ: Final = "Producer-Seq"
PRODUCER_EXPECTED_SEQ: Final = "Producer-Expected-Seq"
PRODUCER_RECEIVED_SEQ: Final = "Producer-Received-Seq"
SSE_DATA_ENCODING: Final = "Stream-SSE-Data-Encoding"
ETAG: Final = "ETag"
IF_NONE_MATCH: Final = "If-None-Match"

#: §12.7: on every response of the endpoint
SECURITY_HEADERS: Final = {
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Resource-Policy": "cross-origin",
}
#: request headers a browser may send cross-origin (when the app enables CORS)
CORS_ALLOW_HEADERS: Final = (
    "Content-Type",
    "If-None-Match",
    TTL,
    EXPIRES_AT,
    STREAM_SEQ,
    STREAM_CLOSED,
    FORKED_FROM,
    FORK_OFFSET,
    FORK_SUB_OFFSET,
    PRODUCER_ID,
    PRODUCER_EPOCH,
    PRODUCER_SEQ,
)
#: response headers a cross-origin page may read
CORS_EXPOSE_HEADERS: Final = (
    NEXT_OFFSET,
    UP_TO_DATE,
    STREAM_CLOSED,
    CURSOR,
    TTL,
    EXPIRES_AT,
    PRODUCER_EPOCH,
    PRODUCER_SEQ,
    PRODUCER_EXPECTED_SEQ,
    PRODUCER_RECEIVED_SEQ,
    SSE_DATA_ENCODING,
    ETAG,
    "Location",
)

# --- content types (§9) -----------------------------------------------------------------
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
JSON_CONTENT_TYPE: Final = "application/json"
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CONTENT_TYPE = re.compile(rf"({_TOKEN})/({_TOKEN})\s*(;.*)?", re.ASCII | re.DOTALL)

#: §5.2.1: producer epochs and sequence numbers fit a JavaScript number
MAX_SAFE_INTEGER: Final = 2**53 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*", re.ASCII)


def media_type(content_type: str) -> str:
    """The media type of a Content-Type, lower-cased, without parameters.

    Content types compare by media type (§5.2: ``TEXT/PLAIN`` appends to a
    ``text/plain`` stream; ``application/json; charset=utf-8`` is JSON mode).

    >>> media_type("Application/JSON; charset=utf-8")
    'application/json'
    """
    return content_type.split(";", 1)[0].strip().lower()


def is_json(content_type: str) -> bool:
    """True for JSON mode (§9.1): media type ``application/json``."""
    return media_type(content_type) == JSON_CONTENT_TYPE


def is_sse_text(content_type: str) -> bool:
    """True when SSE data events carry text; otherwise they are base64 (§5.8)."""
    mt = media_type(content_type)
    return mt.startswith("text/") or mt == JSON_CONTENT_TYPE


def parse_content_type(value: str | None) -> str | None:
    """A request's Content-Type as given, None when absent or blank.

    Raises
    ------
    ProtocolError
        400 ``invalid_header`` when it is not ``type/subtype[; params]``.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    if _CONTENT_TYPE.fullmatch(value) is None:
        raise ProtocolError(
            400,
            "invalid_header",
            f"Content-Type {value!r} is not a media type such as text/plain or application/json",
        )
    return value


def parse_closed(value: str | None) -> bool:
    """``Stream-Closed``: true only for the value ``true``, any case (§4.1).

    Other values are treated as absent, not refused (§4.1).

    >>> parse_closed("TRUE"), parse_closed("yes"), parse_closed(None)
    (True, False, False)
    """
    return value is not None and value.strip().lower() == "true"


def parse_non_negative(value: str, name: str, maximum: int = MAX_SAFE_INTEGER) -> int:
    """A decimal integer without sign, leading zeros, point or exponent (§5.1, §5.2.1).

    Raises
    ------
    ProtocolError
        400 ``invalid_header``.
    """
    text = value.strip()
    if _DECIMAL.fullmatch(text) is None or int(text) > maximum:
        raise ProtocolError(
            400,
            "invalid_header",
            f"{name} must be a non-negative decimal integer <= {maximum} without sign, "
            f"leading zeros or exponent; got {value!r}",
        )
    return int(text)


def parse_ttl(value: str | None) -> int | None:
    """``Stream-TTL`` in seconds, None when absent (§5.1).

    Raises
    ------
    ProtocolError
        400 ``invalid_header`` (``+60``, ``060``, ``60.5``, ``1e3``, negative...).
    """
    if value is None:
        return None
    return parse_non_negative(value, TTL)


def parse_expires_at(value: str | None) -> tuple[str, float] | None:
    """``Stream-Expires-At``: the RFC 3339 text and its instant (Unix seconds), or None.

    Raises
    ------
    ProtocolError
        400 ``invalid_header``: not an RFC 3339 timestamp with a time zone.

    >>> parse_expires_at("2030-01-01T00:00:00Z")
    ('2030-01-01T00:00:00Z', 1893456000.0)
    """
    if value is None:
        return None
    text = value.strip()
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        raise ProtocolError(
            400,
            "invalid_header",
            f"{EXPIRES_AT} must be an RFC 3339 timestamp with a time zone such as "
            f"2030-01-01T00:00:00Z; got {value!r}",
        )
    return text, instant.timestamp()


# --- JSON mode (§9.1) -------------------------------------------------------------------
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def json_messages(body: bytes, *, allow_empty: bool) -> list[bytes]:
    """The messages a JSON-mode body stores, each as compact JSON text (§9.1).

    A top-level array is flattened one level (§9.1.2); any other value is one
    message. ``[]`` is no message: allowed for PUT, refused for POST (§9.1.3).

    Parameters
    ----------
    body : bytes
        The request body (UTF-8 JSON).
    allow_empty : bool
        Accept ``[]`` (PUT) or refuse it (POST).

    Returns
    -------
    list of bytes
        One compact JSON text per message, in order.

    Raises
    ------
    ProtocolError
        400 ``malformed_json`` (§9.1.4) or ``empty_json_array`` (§9.1.3).

    >>> json_messages(b'[{"a": 1}, [2]]', allow_empty=False)
    [b'{"a":1}', b'[2]']
    """
    try:
        value: Any = parse_json_text(body, "the body of this JSON stream append")
    except HTTPError as exc:
        raise ProtocolError(400, "malformed_json", exc.message) from exc
    items = value if isinstance(value, list) else [value]
    if not items and not allow_empty:
        raise ProtocolError(
            400,
            "empty_json_array",
            "appending [] to a JSON stream adds nothing; send at least one value",
        )
    # a lone surrogate (``"\\ud800"`` is valid JSON grammar) cannot be stored as UTF-8:
    # mended to U+FFFD like every other text streamnb sends (streamnb/_text.py)
    return [mend(_dumps(item)).encode() for item in items]


# --- cursors (§10.1) --------------------------------------------------------------------
#: §10.1: cursors count 20-second intervals since 2024-10-09T00:00:00Z
CURSOR_INTERVAL_S: Final = 20
CURSOR_EPOCH_S: Final = 1_728_432_000
_JITTER_MAX_S: Final = 3600


def cursor_for(client_cursor: str | None, now_s: float | None = None) -> str:
    """The ``Stream-Cursor`` / ``streamCursor`` for a live response (§10.1).

    The current interval number, or, when the client's cursor is already at
    or past it, the client's cursor plus a random 1-3600 s of intervals, so a
    cursor never repeats and never goes backwards (no CDN cache loops).

    Parameters
    ----------
    client_cursor : str or None
        The request's ``cursor`` query parameter.
    now_s : float, optional
        Unix time in seconds (default: now).

    >>> cursor_for(None, now_s=1_728_432_000 + 45)
    '2'
    >>> int(cursor_for("2", now_s=1_728_432_000 + 45)) > 2
    True
    """
    now = time.time() if now_s is None else now_s
    current = math.floor((now - CURSOR_EPOCH_S) / CURSOR_INTERVAL_S)
    if (
        client_cursor is None
        or _DECIMAL.fullmatch(client_cursor) is None
        or len(client_cursor) > 18
    ):
        return str(current)
    theirs = int(client_cursor)
    if theirs < current:
        return str(current)
    jitter_s = 1 + secrets.randbelow(_JITTER_MAX_S)
    return str(theirs + max(1, math.ceil(jitter_s / CURSOR_INTERVAL_S)))
