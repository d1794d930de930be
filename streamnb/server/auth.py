"""Optional bearer-token auth for every endpoint except the pages (``GET /``, ``GET /rooms/``).

A request is let through when it carries ``Authorization: Bearer <token>`` or
``?token=<token>`` (the query form exists because browsers' ``EventSource`` and
``WebSocket`` cannot set headers, and because the page at ``GET /`` reads its
token from its own URL). Tokens are compared in constant time. A refused HTTP
request gets ``401`` with the usual JSON error and ``WWW-Authenticate: Bearer``;
a refused WebSocket is closed before the handshake completes (HTTP 403).

Note that a token in a URL can end up in proxy and access logs; prefer the
header where the client can set it.
"""

from __future__ import annotations

import json
import secrets
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["BearerAuth"]

#: (method, path) pairs served without a token
PUBLIC = frozenset({("GET", "/"), ("HEAD", "/")})


class BearerAuth:
    """ASGI middleware: require ``token`` on every request except :data:`PUBLIC` ones.

    ``public_paths`` adds paths served without a token to ``GET`` and ``HEAD``
    (pages and their static assets, which carry no data).
    """

    def __init__(
        self, app: ASGIApp, token: str, public_paths: frozenset[str] = frozenset()
    ) -> None:
        if not token:
            raise ValueError("the bearer token must be a non-empty string")
        self.app = app
        self._token = token.encode()
        self._public = PUBLIC | {(m, p) for p in public_paths for m in ("GET", "HEAD")}

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, credential = value.partition(b" ")
                if scheme.lower() == b"bearer" and secrets.compare_digest(
                    credential.strip(), self._token
                ):
                    return True
        query = scope.get("query_string", b"")
        if b"token=" in query:
            # percent-escapes decode as UTF-8 (what a browser sends for any character), so
            # compare UTF-8 bytes: a token outside Latin-1 is a wrong token, not an error
            for key, value in parse_qsl(query.decode("latin-1"), errors="replace"):
                if key == "token" and secrets.compare_digest(value.encode("utf-8"), self._token):
                    return True
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if kind == "http" and (scope["method"], scope["path"]) in self._public:
            await self.app(scope, receive, send)
            return
        if self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "unauthorized"})
            return
        body = json.dumps(
            {
                "error": {
                    "type": "unauthorized",
                    "message": "this server needs a bearer token: send 'Authorization: Bearer "
                    "<token>' or add ?token=<token> to the URL",
                }
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="streamnb"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
