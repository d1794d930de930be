"""Refuse requests a browser page of another site could make: Host, Origin, content type.

A server on 127.0.0.1 is reachable by every web page the user opens. Without a
token, three things keep those pages out (the checks Jupyter's server makes too):

* **Host allow-list** (DNS rebinding). A page of ``evil.example`` that resolves
  its own name to 127.0.0.1 talks to this server as a *same-origin* page, so the
  browser lets it read every response; but its requests say ``Host:
  evil.example``. Only the hosts this server is known by are served: the bound
  host, ``localhost``, ``127.0.0.1``, ``[::1]``, and what ``allowed_hosts``
  (``--allowed-host``) adds; ``*`` turns the check off (e.g. behind a proxy that
  checks it). Others get ``403 host_not_allowed``.
* **Origin** (cross-site requests). A page of another origin may *send* requests
  without a CORS preflight (a ``fetch`` with ``mode: "no-cors"``, a form post) and
  open WebSockets; the browser then only hides the response. Browsers name the
  page in the ``Origin`` header, so a state-changing request (``POST``, ``PUT``,
  ``PATCH``, ``DELETE``) and every WebSocket handshake that carries an ``Origin``
  must come from this server's own origin (same host and port as ``Host``) or
  from a configured CORS origin (``cors_origins``; ``*`` for any). Requests
  without ``Origin`` (curl, httpx, the ``openai`` SDK, other servers) are not
  from a browser page and pass. Others get ``403 origin_not_allowed``; a
  WebSocket is refused before the handshake completes (HTTP 403).
* **JSON bodies** (CORS-simple requests). A request whose body is JSON must say
  so: every ``POST``, ``PUT`` and ``PATCH`` with a body to streamnb's own
  endpoints needs ``Content-Type: application/json`` (a browser cannot send that
  cross-site without a preflight). ``text/plain``, form bodies and bodies with no
  type get ``415 unsupported_media_type``. The Durable Streams endpoint
  (``/v1/stream/``) is exempt: its streams have any content type by protocol; the
  Origin rule covers it.

Every refusal happens before the app sees the request, so it changes nothing.

Why not Starlette's ``TrustedHostMiddleware``: it answers in plain text (every error
of this server is the JSON error body, which clients switch on), and the Origin and
content-type rules have no Starlette counterpart; one middleware keeps the three
checks in one place and in one order (Host, then Origin, then the body's type).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DEFAULT_ALLOWED_HOSTS", "RequestGuard", "normalize_host"]

#: hosts every server answers to (the loopback names); ``allowed_hosts`` adds to them
DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: methods that change state: their Origin is checked
_STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: methods whose body must be JSON (outside the exempt prefixes)
_WITH_JSON_BODY = frozenset({"POST", "PUT", "PATCH"})
#: paths whose bodies have their own content types (the Durable Streams protocol)
_JSON_EXEMPT = ("/v1/stream/",)


def normalize_host(host: str) -> str:
    """``host`` without its port, lower case, an IPv6 address in brackets.

    Examples
    --------
    >>> normalize_host("LocalHost:3000"), normalize_host("[::1]:80"), normalize_host("::1")
    ('localhost', '[::1]', '[::1]')
    """
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    if host.count(":") > 1:  # a bare IPv6 address
        return f"[{host}]"
    return host.partition(":")[0]


def _host_port(host: str) -> str:
    """``host:port`` as an origin compares it (lower case; no default port added)."""
    return host.strip().lower()


class RequestGuard:
    """ASGI middleware: the Host allow-list, the Origin check and JSON bodies (module doc).

    Parameters
    ----------
    app : ASGI app
    allowed_hosts : collection of str
        Host names (or addresses) served besides :data:`DEFAULT_ALLOWED_HOSTS`;
        ``"*"`` serves any ``Host``.
    cors_origins : collection of str
        Origins (``"http://localhost:5173"``) allowed beside the server's own;
        ``"*"`` allows any.
    """

    def __init__(
        self, app: ASGIApp, *, allowed_hosts: Collection[str], cors_origins: Collection[str]
    ) -> None:
        self.app = app
        hosts = [*DEFAULT_ALLOWED_HOSTS, *allowed_hosts]
        self._any_host = "*" in hosts
        self._hosts = frozenset(normalize_host(h) for h in hosts if h and h != "*")
        self._any_origin = "*" in cors_origins
        self._origins = frozenset(o.rstrip("/").lower() for o in cors_origins if o != "*")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, str] = {}
        for name, value in scope.get("headers", ()):
            if name in (b"host", b"origin", b"content-type", b"content-length"):
                headers.setdefault(name, value.decode("latin-1"))
            elif name == b"transfer-encoding":
                headers[name] = value.decode("latin-1")
        refusal = self._refusal(scope, headers)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, code, message = refusal
        if kind == "websocket":  # refused before the handshake: HTTP 403
            await send({"type": "websocket.close", "code": 1008, "reason": code})
            return
        body = json.dumps({"error": {"type": code, "message": message}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope: Scope, headers: dict[bytes, str]) -> tuple[int, str, str] | None:
        host = headers.get(b"host")
        if host is not None and not self._any_host and normalize_host(host) not in self._hosts:
            return (
                403,
                "host_not_allowed",
                f"this server does not answer to the host {host!r} (a page may be using DNS "
                "rebinding); use http://127.0.0.1 or http://localhost, or start the server "
                "with --allowed-host NAME (create_app(allowed_hosts=[...])) for this name",
            )
        method = scope.get("method", "GET")
        websocket = scope["type"] == "websocket"
        origin = headers.get(b"origin")
        if origin is not None and (websocket or method in _STATE_CHANGING):
            if not self._origin_allowed(origin, host):
                return (
                    403,
                    "origin_not_allowed",
                    f"requests from the page at {origin!r} are refused: only this server's "
                    "own pages and the origins given with --cors-origin "
                    "(create_app(cors_origins=[...])) may change anything here",
                )
        if (
            not websocket
            and method in _WITH_JSON_BODY
            and _has_body(headers)
            and not scope.get("path", "").startswith(_JSON_EXEMPT)
            and not _is_json(headers.get(b"content-type"))
        ):
            given = headers.get(b"content-type")
            return (
                415,
                "unsupported_media_type",
                f"the request body must be JSON sent with 'Content-Type: application/json' "
                f"(got {given!r})",
            )
        return None

    def _origin_allowed(self, origin: str, host: str | None) -> bool:
        if self._any_origin:
            return True
        lowered = origin.strip().rstrip("/").lower()
        if lowered in self._origins:
            return True
        if lowered == "null" or host is None:  # an opaque origin (sandbox, file://)
            return False
        parts = urlsplit(lowered)
        return parts.scheme in ("http", "https") and parts.netloc == _host_port(host)


def _has_body(headers: dict[bytes, str]) -> bool:
    if b"transfer-encoding" in headers:
        return True
    length = headers.get(b"content-length", "0").strip()
    return length not in ("", "0")


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
