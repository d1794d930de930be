"""Reading a Durable Stream over HTTP: catch-up, long-poll and SSE responses.

Works on any :class:`~.store.StreamReader` (the SQLite store, or streamnb's
own streams), so both speak the same read protocol (PROTOCOL.md §5.6-5.8):

* **catch-up** (§5.6): ``200`` with the data from the offset (at most about
  ``max_read_bytes``), ``Stream-Next-Offset``, ``Stream-Up-To-Date`` when it
  reached the tail, ``Stream-Closed`` when that tail is the end of a closed
  stream, an ``ETag`` that changes with closure, ``304`` for a matching
  ``If-None-Match`` (§10.1). ``offset=now`` answers at once with the tail
  and ``Cache-Control: no-store`` (§8).
* **long-poll** (§5.7): data at once if there is any; otherwise wait up to
  the server's long-poll timeout for an append (``200``) or a close (``204``
  with ``Stream-Closed``), else ``204`` with ``Stream-Up-To-Date``. A closed
  stream at its tail answers at once. Every response carries a
  ``Stream-Cursor`` (§10.1).
* **SSE** (§5.8): one ``data`` event per batch read (a JSON array for JSON
  streams, text for ``text/*``, base64 otherwise with
  ``Stream-SSE-Data-Encoding: base64``), each followed by a ``control``
  event (``streamNextOffset``, ``streamCursor``, ``upToDate``); the last
  control of a closed stream has ``streamClosed: true`` and the response
  ends. Payload line breaks (CR, LF, CRLF) become separate ``data:`` lines,
  so a payload cannot inject events. The server ends an SSE response after
  :data:`SSE_CONNECTION_S` seconds (§10.2); clients reconnect from the last
  ``streamNextOffset``.

Caching: data responses are ``Cache-Control: private, max-age=60,
stale-while-revalidate=300`` (§10.1's form for streams that may be
user-specific: this server may sit behind a bearer token); responses
without data, and ``HEAD``, are ``no-store`` (§5.5, §8), so an empty read
at the tail is never served stale.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response

from ..sse import Connections, SSEResponse
from .errors import ProtocolError
from .offsets import NOW, Offset, Sentinel
from .protocol import (
    CURSOR,
    ETAG,
    NEXT_OFFSET,
    SECURITY_HEADERS,
    SSE_DATA_ENCODING,
    STREAM_CLOSED,
    UP_TO_DATE,
    cursor_for,
    is_json,
    is_sse_text,
)
from .store import ReadResult, StreamReader

__all__ = [
    "LONG_POLL_TIMEOUT_S",
    "SSE_CONNECTION_S",
    "ReadOptions",
    "body_of",
    "catch_up",
    "long_poll",
    "sse",
]

#: the default long-poll timeout (an idle SSE response re-checks as often), seconds
LONG_POLL_TIMEOUT_S: Final = 20.0
#: §10.2: the server closes an SSE response after about this long, seconds
SSE_CONNECTION_S: Final = 60.0
CACHE_DATA: Final = "private, max-age=60, stale-while-revalidate=300"
NO_STORE: Final = "no-store"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_dumps = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """Server settings for reads.

    Attributes
    ----------
    long_poll_timeout_s : float
        How long a long-poll (and an idle SSE wait) lasts, seconds.
    max_read_bytes : int
        About how much one response (or SSE batch) carries, bytes.
    heartbeat_s, send_timeout_s : float
        As for every SSE response of the app (:class:`~streamnb.server.sse.SSEResponse`).
    """

    long_poll_timeout_s: float
    max_read_bytes: int
    heartbeat_s: float
    send_timeout_s: float


def body_of(result: ReadResult) -> bytes:
    """A read's response body: the bytes, or a JSON array of the messages (§9.1.5)."""
    if is_json(result.content_type):
        return b"[" + b",".join(result.chunks) + b"]"
    return b"".join(result.chunks)


def _etag(result: ReadResult) -> str:
    closed = ":c" if result.closed else ""
    return f'"{result.etag_id}:{result.start.position}:{result.next_offset.position}{closed}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return etag in tags or "*" in tags


def _data_response(
    result: ReadResult, request: Request, *, cursor: str | None, no_store: bool
) -> Response:
    headers = {
        **SECURITY_HEADERS,
        "Content-Type": result.content_type,
        NEXT_OFFSET: result.next_offset.text,
        "Cache-Control": NO_STORE if no_store or not result.chunks else CACHE_DATA,
    }
    if result.up_to_date:
        headers[UP_TO_DATE] = "true"
    if result.closed:
        headers[STREAM_CLOSED] = "true"
    if cursor is not None:
        headers[CURSOR] = cursor
    if not no_store:  # §10.1: an ETag on every GET except offset=now
        etag = _etag(result)
        headers[ETAG] = etag
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers)
    return Response(body_of(result), status_code=200, headers=headers)


def _empty_response(result: ReadResult, cursor: str | None) -> Response:
    """``204`` of a long-poll that found nothing (timeout, or a closed stream's end)."""
    headers = {
        **SECURITY_HEADERS,
        NEXT_OFFSET: result.next_offset.text,
        UP_TO_DATE: "true",
        "Cache-Control": NO_STORE,
    }
    if result.closed:
        headers[STREAM_CLOSED] = "true"
    elif cursor is not None:
        headers[CURSOR] = cursor
    return Response(status_code=204, headers=headers)


async def catch_up(
    request: Request, reader: StreamReader, key: str, start: Offset | Sentinel, opts: ReadOptions
) -> Response:
    """``GET`` without ``live`` (§5.6); ``offset=now`` is answered ``no-store`` (§8)."""
    result = await reader.read(key, start, max_bytes=opts.max_read_bytes)
    return _data_response(result, request, cursor=None, no_store=start is NOW)


async def long_poll(
    request: Request,
    reader: StreamReader,
    key: str,
    start: Offset | Sentinel,
    cursor: str | None,
    opts: ReadOptions,
    stop: asyncio.Event,
) -> Response:
    """``GET ?live=long-poll`` (§5.7); ``stop`` (server shutdown) ends the wait with a 204."""
    deadline = time.monotonic() + opts.long_poll_timeout_s
    result = await reader.read(key, start, max_bytes=opts.max_read_bytes)
    while True:
        if result.chunks:
            return _data_response(result, request, cursor=cursor_for(cursor), no_store=False)
        remaining = deadline - time.monotonic()
        if result.closed or remaining <= 0 or stop.is_set():
            return _empty_response(result, cursor_for(cursor))
        await _wait_or_stop(reader.wait(key, result.next_offset, remaining), stop)
        result = await reader.read(key, result.next_offset, max_bytes=opts.max_read_bytes)


async def _wait_or_stop(wait: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Await ``wait`` unless ``stop`` is set first; the other one is cancelled and awaited."""
    waiting = asyncio.ensure_future(wait)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiting, stopping):
            task.cancel()
        await asyncio.gather(waiting, stopping, return_exceptions=True)


def _data_lines(text: str) -> str:
    # a line starting with a space gets one more: SSE parsers strip one after "data:"
    return "".join(
        f"data: {line}\n" if line.startswith(" ") else f"data:{line}\n"
        for line in _LINE_BREAK.split(text)
    )


class _Events:
    """A :class:`~streamnb.server.sse.ChunkSource` of Durable Streams SSE events.

    ``next_chunk`` reads from the current offset, waits when there is
    nothing new, and returns one ``data`` + ``control`` pair (or the first
    ``control`` of an up-to-date reader). It changes its offset only when it
    returns, so a cancelled call (the heartbeat timer) loses nothing.
    """

    def __init__(
        self,
        reader: StreamReader,
        key: str,
        start: Offset | Sentinel,
        cursor: str | None,
        text: bool,
        opts: ReadOptions,
    ) -> None:
        self._reader = reader
        self._key = key
        self._offset: Offset | Sentinel = start
        self._cursor = cursor
        self._text = text
        self._opts = opts
        self._announced = False  # sent a control event on this connection
        self._done = False
        self._deadline = time.monotonic() + SSE_CONNECTION_S

    def _control(self, result: ReadResult) -> str:
        control: dict[str, object] = {"streamNextOffset": result.next_offset.text}
        if result.closed:
            control["streamClosed"] = True
            control["upToDate"] = True
        else:
            control["streamCursor"] = cursor_for(self._cursor)
            if result.up_to_date:
                control["upToDate"] = True
        return f"event: control\n{_data_lines(_dumps(control))}\n"

    def _data(self, result: ReadResult) -> str:
        if is_json(result.content_type):
            payload = body_of(result).decode("utf-8", errors="replace")
        elif self._text:
            payload = b"".join(result.chunks).decode("utf-8", errors="replace")
        else:
            payload = base64.b64encode(b"".join(result.chunks)).decode("ascii")
        return f"event: data\n{_data_lines(payload)}\n"

    async def next_chunk(self) -> bytes | None:
        opts = self._opts
        while not self._done:
            try:
                result = await self._reader.read(
                    self._key, self._offset, max_bytes=opts.max_read_bytes
                )
            except ProtocolError:  # deleted or expired while read: end the response
                self._done = True
                break
            if result.chunks or result.closed or not self._announced:
                text = self._data(result) if result.chunks else ""
                text += self._control(result)
                self._offset = result.next_offset
                self._announced = True
                self._done = result.closed
                return text.encode("utf-8")
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                return None  # §10.2: end the response; the client reconnects from its offset
            await self._reader.wait(
                self._key, result.next_offset, min(remaining, opts.long_poll_timeout_s)
            )
            self._offset = result.next_offset
        return None


async def sse(
    request: Request,
    reader: StreamReader,
    key: str,
    start: Offset | Sentinel,
    cursor: str | None,
    opts: ReadOptions,
    connections: Connections,
) -> Response:
    """``GET ?live=sse`` (§5.8): an :class:`~streamnb.server.sse.SSEResponse` of events.

    The stream must exist (a missing one is a 404, not an empty event stream),
    so its metadata is read before the response starts.
    """
    meta = await reader.head(key)
    text = is_sse_text(meta.content_type)
    headers = {**SECURITY_HEADERS, "Content-Type": "text/event-stream"}
    if not text:
        headers[SSE_DATA_ENCODING] = "base64"
    return SSEResponse(
        _Events(reader, key, start, cursor, text, opts),
        connections=connections,
        heartbeat_s=opts.heartbeat_s,
        send_timeout_s=opts.send_timeout_s,
        headers=headers,
        label=key,
    )
