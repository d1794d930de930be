"""Reading and checking request bodies: bounded, strict JSON, clear 4xx errors.

Every check raises :class:`~streamnb.server.errors.HTTPError` *before* the
endpoint touches the runtime, so a bad request changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import anyio
from starlette.requests import Request

from .errors import HTTPError
from .timeouts import BODY_TIMEOUT_S

__all__ = [
    "cancel_reason",
    "check_keys",
    "expect_object",
    "input_frame",
    "json_type",
    "optional_int",
    "optional_str",
    "parse_json_text",
    "read_bytes",
    "read_json",
]


def json_type(value: Any) -> str:
    """The JSON name of a Python value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_text(data: bytes | str, what: str = "the request body") -> Any:
    """Parse strict JSON (no NaN/Infinity) or raise a 400 ``malformed_json``."""
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise HTTPError(400, "malformed_json", f"{what} is not valid JSON ({exc})") from exc


async def read_bytes(request: Request, max_bytes: int, timeout_s: float | None = None) -> bytes:
    """Read the whole body, at most ``max_bytes`` bytes (chunked bodies too), in time.

    Parameters
    ----------
    request : Request
    max_bytes : int
    timeout_s : float, optional
        Seconds the client has to send the whole body; default the app's
        ``body_timeout_s`` (:data:`~.timeouts.BODY_TIMEOUT_S`).

    Raises
    ------
    HTTPError
        413 ``body_too_large`` (from ``Content-Length`` before reading, or while
        reading); 400 ``invalid_request`` for a non-integer ``Content-Length``;
        408 ``request_timeout`` when the body took longer than ``timeout_s``.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise HTTPError(400, "invalid_request", "Content-Length is not an integer") from None
        if size > max_bytes:
            raise _too_large(size, max_bytes)
    if timeout_s is None:
        timeout_s = getattr(request.app.state, "body_timeout_s", BODY_TIMEOUT_S)
    body = bytearray()
    with anyio.move_on_after(timeout_s) as deadline:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise _too_large(len(body), max_bytes)
    if deadline.cancelled_caught:
        raise HTTPError(
            408,
            "request_timeout",
            f"the request body did not arrive within {timeout_s:g} s; send it at once",
        )
    return bytes(body)


async def read_json(request: Request, max_bytes: int, *, allow_empty: bool = False) -> Any:
    """Read the body (at most ``max_bytes`` bytes) and parse it as JSON.

    Returns None for an empty body when ``allow_empty``.

    Raises
    ------
    HTTPError
        413 ``body_too_large``; 400 ``malformed_json`` (also for an empty body).
    """
    body = await read_bytes(request, max_bytes)
    if not body.strip():
        if allow_empty:
            return None
        raise HTTPError(400, "malformed_json", "the request body is empty; send a JSON object")
    return parse_json_text(body)


def _too_large(size: int, limit: int) -> HTTPError:
    return HTTPError(
        413,
        "body_too_large",
        f"the request body has at least {size} bytes; this server accepts at most {limit}",
    )


def expect_object(value: Any, what: str = "the request body") -> dict[str, Any]:
    """``value`` if it is a JSON object, else a 422 ``invalid_request``."""
    if not isinstance(value, dict):
        raise HTTPError(
            422, "invalid_request", f"{what} must be a JSON object, got {json_type(value)}"
        )
    return value


def check_keys(
    obj: dict[str, Any], allowed: Collection[str], what: str = "the request body"
) -> None:
    """422 ``invalid_request`` if ``obj`` has keys outside ``allowed``."""
    extra = sorted(set(obj) - set(allowed))
    if extra:
        raise HTTPError(
            422,
            "invalid_request",
            f"unknown keys {extra} in {what}; allowed keys are {sorted(allowed)}",
        )


def optional_str(obj: dict[str, Any], key: str, what: str = "the request body") -> str | None:
    """``obj[key]`` if it is a string, None if absent or null, else a 422."""
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise HTTPError(
        422, "invalid_request", f"{key!r} in {what} must be a string, got {json_type(value)}"
    )


def optional_int(value: Any, name: str, *, minimum: int = 0, status: int = 422) -> int | None:
    """An integer >= ``minimum`` from JSON or a query string, None if absent."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise HTTPError(
                status, "invalid_request", f"{name} must be an integer, got {value!r}"
            ) from None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise HTTPError(
            status, "invalid_request", f"{name} must be an integer >= {minimum}, got {value!r}"
        )
    return value


def input_frame(
    message: dict[str, Any], what: str = "the request body", *, envelope: Collection[str] = ()
) -> dict[str, Any]:
    """The input frame a client sent: ``{"payload": any JSON, "seq"?: int >= 0}``.

    One parser for ``POST /streams/{ref}/input`` (the body) and the WebSocket's
    ``{"type": "input", ...}`` message (``envelope=("type",)``).

    Parameters
    ----------
    message : dict
        The JSON object received.
    what : str
        Names it in error messages (``"the request body"``, ``"an input message"``).
    envelope : collection of str
        Further keys the transport allows beside ``payload`` and ``seq``.

    Returns
    -------
    dict
        ``{"kind": "input", "payload": ..., "seq"?: int}``, ready for
        ``runtime.send(ref, frame)``.

    Raises
    ------
    HTTPError
        422 ``invalid_request``: unknown keys, no ``payload``, or ``seq`` not an
        integer >= 0.

    Examples
    --------
    >>> input_frame({"payload": "hi", "seq": 3})
    {'kind': 'input', 'payload': 'hi', 'seq': 3}
    >>> input_frame({"type": "input", "payload": None}, "an input message", envelope=("type",))
    {'kind': 'input', 'payload': None}
    """
    check_keys(message, (*envelope, "payload", "seq"), what)
    if "payload" not in message:
        raise HTTPError(422, "invalid_request", f"{what} needs 'payload' (any JSON value)")
    frame: dict[str, Any] = {"kind": "input", "payload": message["payload"]}
    seq = optional_int(message.get("seq"), "'seq'")
    if seq is not None:
        frame["seq"] = seq
    return frame


def cancel_reason(
    message: dict[str, Any],
    what: str = "the request body",
    *,
    envelope: Collection[str] = (),
    default: str = "cancelled",
) -> str:
    """The reason of a cancel request ``{"reason"?: str}``; ``default`` when absent or empty.

    One parser for ``POST /streams/{ref}/cancel``, ``POST /rooms/{id}/cancel`` and
    the WebSocket's ``{"type": "cancel", ...}`` message (``envelope=("type",)``).

    Raises
    ------
    HTTPError
        422 ``invalid_request``: unknown keys, or ``reason`` not a string.

    Examples
    --------
    >>> cancel_reason({})
    'cancelled'
    >>> cancel_reason({"type": "cancel", "reason": "enough"}, envelope=("type",))
    'enough'
    """
    check_keys(message, (*envelope, "reason"), what)
    return optional_str(message, "reason", what) or default
