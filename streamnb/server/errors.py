"""HTTP errors: every failure the server reports, mapped to a status code in one place.

Every error response has the body ``{"error": {"type": ..., "message": ...}}``
(plus ``"issues"`` for a rejected start). ``type`` is a stable snake_case code a
client can switch on; ``message`` is the human-readable explanation.

streamnb exceptions map as follows (first match wins, so subclasses come first):

=========================  ======  =======================
exception                  status  type
=========================  ======  =======================
UnknownKindError           404     ``unknown_kind``
UnknownStreamError         404     ``unknown_stream``
StartRejectedError         422     ``start_rejected``
StreamSettledError         409     ``stream_settled``
InputNotAcceptedError      409     ``input_not_accepted``
InvalidFrameError          422     ``invalid_frame``
StreamTimeoutError         504     ``timeout``
RuntimeClosedError         503     ``runtime_closed``
LedgerTimeoutError         504     ``ledger_timeout``
LedgerQueryError           400     ``ledger_query``
LedgerError                503     ``ledger_error``
StreamnbError (any other)  400     ``streamnb_error``
=========================  ======  =======================

Request problems found by the server itself raise :class:`HTTPError` with their
own codes: ``malformed_json`` (400), ``invalid_request`` (422),
``body_too_large`` (413), ``unauthorized`` (401), ``not_found`` (404),
``method_not_allowed`` (405), ``too_many_streams`` (429), ``internal_kind`` (403);
:mod:`.guard` answers ``host_not_allowed``, ``origin_not_allowed`` (403) and
``unsupported_media_type`` (415) before a request reaches the app.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._errors import (
    InputNotAcceptedError,
    InvalidFrameError,
    LedgerError,
    LedgerQueryError,
    LedgerTimeoutError,
    RuntimeClosedError,
    StartRejectedError,
    StreamnbError,
    StreamSettledError,
    StreamTimeoutError,
    UnknownKindError,
    UnknownStreamError,
)

__all__ = ["HTTPError", "error_body", "error_response", "exception_handlers", "status_for"]

logger = logging.getLogger("streamnb.server")

_STATUS: tuple[tuple[type[StreamnbError], int, str], ...] = (
    (UnknownKindError, 404, "unknown_kind"),
    (UnknownStreamError, 404, "unknown_stream"),
    (StartRejectedError, 422, "start_rejected"),
    (StreamSettledError, 409, "stream_settled"),
    (InputNotAcceptedError, 409, "input_not_accepted"),
    (InvalidFrameError, 422, "invalid_frame"),
    (StreamTimeoutError, 504, "timeout"),
    (RuntimeClosedError, 503, "runtime_closed"),
    (LedgerTimeoutError, 504, "ledger_timeout"),
    (LedgerQueryError, 400, "ledger_query"),
    (LedgerError, 503, "ledger_error"),
)

_HTTP_TYPES = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}


class HTTPError(Exception):
    """A request the server refuses; becomes a JSON error response.

    Parameters
    ----------
    status : int
        HTTP status code (4xx).
    type : str
        Stable snake_case error code (``malformed_json``, ``invalid_request``...).
    message : str
        What was wrong and what to do.
    headers : dict, optional
        Extra response headers.
    """

    def __init__(
        self, status: int, type: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.type = type
        self.message = message
        #: extra response headers (``Retry-After`` on a 429)
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(f"{status} {type}: {message}")


def status_for(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and error code for an exception raised while serving a request."""
    if isinstance(exc, HTTPError):
        return exc.status, exc.type
    for cls, status, code in _STATUS:
        if isinstance(exc, cls):
            return status, code
    if isinstance(exc, StreamnbError):
        return 400, "streamnb_error"
    return 500, "internal_error"


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON error object for ``exc`` (WebSocket errors carry the same object)."""
    _, code = status_for(exc)
    message = exc.message if isinstance(exc, HTTPError) else str(exc)
    if code == "internal_error":
        message = f"internal server error ({type(exc).__name__}); see the server log"
    err: dict[str, Any] = {"type": code, "message": message}
    if isinstance(exc, StartRejectedError):
        err["issues"] = list(exc.issues)
    return err


def error_response(exc: BaseException, headers: dict[str, str] | None = None) -> Response:
    """A JSON error response for ``exc``."""
    status, _ = status_for(exc)
    return JSONResponse({"error": error_body(exc)}, status_code=status, headers=headers)


async def _handle(request: Request, exc: Exception) -> Response:
    return error_response(exc, (exc.headers or None) if isinstance(exc, HTTPError) else None)


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_TYPES.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": {"type": code, "message": str(exc.detail)}},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error serving %s %s", request.method, request.url.path)
    return error_response(exc)


def exception_handlers() -> dict[Any, Any]:
    """The Starlette ``exception_handlers`` mapping used by :func:`~streamnb.server.create_app`."""
    return {
        HTTPError: _handle,
        StreamnbError: _handle,
        HTTPException: _handle_http_exception,
        Exception: _handle_unexpected,
    }
