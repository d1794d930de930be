"""How long a client may take to send a request: headers and body, each with a time limit.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``), but a client
that sends half a request line, or headers a byte a minute, or a body that never
ends, kept its connection (and a file descriptor) for ever: a few hundred such
clients used every descriptor of the process. Two limits close them:

* **headers** (:data:`HEADER_TIMEOUT_S`): from the moment a connection opens, or
  its previous response ended, the next request's headers must be complete
  within this time, or the connection is closed. A streaming response (SSE) and
  a WebSocket are not affected: their headers are long complete. It lives in the
  HTTP protocol (:func:`header_timeout_protocol`, given to uvicorn as ``http=``),
  the only place that sees a request before it has headers.
* **body** (:data:`BODY_TIMEOUT_S`): an endpoint reads a request body within this
  time or answers ``408 request_timeout`` (``server/body.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = ["BODY_TIMEOUT_S", "HEADER_TIMEOUT_S", "header_timeout_protocol"]

#: time a client has to send a request's headers (from connect, or the last response), seconds
HEADER_TIMEOUT_S = 10.0
#: time a client has to send a request's body, seconds
BODY_TIMEOUT_S = 30.0


def header_timeout_protocol(timeout_s: float = HEADER_TIMEOUT_S) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (httptools or h11) with a time limit on headers.

    Parameters
    ----------
    timeout_s : float
        Seconds a request's headers may take; the connection is closed after that.

    Returns
    -------
    type
        A subclass of uvicorn's ``AutoHTTPProtocol``, for ``uvicorn.Config(http=...)``.
    """
    if not timeout_s > 0:
        raise ValueError("header_timeout_s must be seconds > 0")

    class HeaderTimeoutProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _header_timer: asyncio.TimerHandle | None = None
        _armed_cycle: Any = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()  # a keep-alive connection: the next request's turn

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            self._cancel_header_timer()
            # a request's cycle begins once its headers are complete: the same cycle
            # when the timer fires means no request got that far meanwhile
            self._armed_cycle = self.cycle
            self._header_timer = self.loop.call_later(timeout_s, self._headers_too_slow)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_too_slow(self) -> None:
            self._header_timer = None
            transport = self.transport
            if (
                self.cycle is self._armed_cycle
                and transport.get_protocol() is self  # not upgraded to a WebSocket
                and not transport.is_closing()
            ):
                transport.close()

    return HeaderTimeoutProtocol
