"""``GET /rooms/``: the chat rooms page, a client of ``WS /rooms/ws`` (:mod:`.rooms_ws`).

The page (``static/rooms.html`` with ``static/rooms_page.js`` and
``static/rooms_page.css``) shows the room list with message counts, the active
room's transcript, a ``Message`` box with ``Send`` and ``Stop``, and ``New``,
``Rename``, ``Clear``, ``Delete`` (with a confirmation) for rooms. Assistant
text is rendered as Markdown by the same renderer as the widgets
(``streamnb/static/markdown.bundle.js``, which builds DOM nodes and never parses
reply text as HTML); everything else is set as text. Colours follow the
browser's ``prefers-color-scheme``.

It reconnects by itself after a drop (backoff from 0.25 s up to 4 s), switches
back to its room and resumes the reply in progress from the last chunk it
applied (``resume-request`` with ``afterIndex``), so a reply is shown whole and
once. Closing the page closes the socket with code 1000 (an explicit detach).

Like ``GET /``, the page and its assets are served without a token; the page
reads ``?token=`` from its own URL and passes it to the WebSocket. The
Content-Security-Policy allows scripts and styles from this origin only and
connections back to it.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

__all__ = ["PAGE_PATHS", "rooms_page_routes"]

SERVER_STATIC = Path(__file__).parent / "static"
SHARED_STATIC = Path(__file__).parent.parent / "static"

#: URL path -> (file, media type) of the page and its assets
ASSETS: dict[str, tuple[Path, str]] = {
    "/rooms/": (SERVER_STATIC / "rooms.html", "text/html; charset=utf-8"),
    "/rooms/static/rooms_page.js": (
        SERVER_STATIC / "rooms_page.js",
        "text/javascript; charset=utf-8",
    ),
    "/rooms/static/rooms_page.css": (SERVER_STATIC / "rooms_page.css", "text/css; charset=utf-8"),
    "/rooms/static/markdown.bundle.js": (
        SHARED_STATIC / "markdown.bundle.js",
        "text/javascript; charset=utf-8",
    ),
}
#: the paths served without a bearer token (the page reads its token from its URL)
PAGE_PATHS = frozenset(ASSETS)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(path: Path) -> bytes:
    return path.read_bytes()


def _asset(url_path: str) -> Route:
    file, media_type = ASSETS[url_path]

    async def serve(request: Request) -> Response:
        return Response(_read(file), media_type=media_type, headers=HEADERS)

    serve.__name__ = f"rooms_page_{file.stem.replace('.', '_')}"
    return Route(url_path, serve, methods=["GET"])


def rooms_page_routes() -> list[BaseRoute]:
    """The page and its assets (mount them before ``/rooms/{room_id}``)."""
    return [_asset(path) for path in ASSETS]
