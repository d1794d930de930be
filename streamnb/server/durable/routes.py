"""The ``/v1/stream/{path}`` endpoint: Durable Streams requests mapped to a store.

=======================================  ==========================================
``PUT /v1/stream/{path}``                create, or confirm (§5.1); fork (§4.2)
``POST /v1/stream/{path}``               append and/or close (§5.2, §5.3)
``GET /v1/stream/{path}``                read: catch-up, ``live=long-poll``,
                                         ``live=sse`` (§5.6-5.8)
``HEAD /v1/stream/{path}``               metadata (§5.5)
``DELETE /v1/stream/{path}``             delete (§5.4)
``GET|HEAD /v1/stream/streamnb/{ref}``   streamnb's own stream ``ref``, read-only
                                         (:mod:`.runtime_streams`); writes: 403
=======================================  ==========================================

Paths are 1-1024 characters, no control characters, no empty, ``.`` or
``..`` segments (§12.2); ``streamnb/...`` is reserved for streamnb's streams.
Every response carries ``X-Content-Type-Options: nosniff`` and
``Cross-Origin-Resource-Policy: cross-origin`` (§12.7); refusals have the
server's JSON error body plus the protocol's headers (:mod:`.errors`).
Authentication, body size caps and CORS are the app's (bearer token,
``max_body_bytes`` -> 413, CORS off unless ``cors_origins``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..body import read_bytes
from ..errors import HTTPError, error_response
from ..sse import Connections
from .errors import ProtocolError
from .offsets import START, Offset, Sentinel, parse_offset
from .protocol import (
    EXPIRES_AT,
    FORK_OFFSET,
    FORK_SUB_OFFSET,
    FORKED_FROM,
    MAX_SAFE_INTEGER,
    NEXT_OFFSET,
    PRODUCER_EPOCH,
    PRODUCER_ID,
    PRODUCER_SEQ,
    SECURITY_HEADERS,
    STREAM_CLOSED,
    STREAM_SEQ,
    TTL,
    parse_closed,
    parse_content_type,
    parse_expires_at,
    parse_non_negative,
    parse_ttl,
)
from .reading import ReadOptions, catch_up, long_poll, sse
from .runtime_streams import RuntimeStreams
from .store import AppendRequest, CreateRequest, Producer, StreamReader, StreamStore

__all__ = ["MOUNT", "RUNTIME_PREFIX", "DurableStreams", "durable_routes"]

#: where the endpoint is mounted
MOUNT: Final = "/v1/stream"
#: paths under the mount that name streamnb's own streams
RUNTIME_PREFIX: Final = "streamnb/"
MAX_PATH_CHARS: Final = 1024
_METHODS: Final = ["GET", "HEAD", "PUT", "POST", "DELETE"]


@dataclass(slots=True)
class DurableStreams:
    """What the endpoint uses, held by the app's state (``state.durable``).

    Attributes
    ----------
    store : StreamStore
        Streams created by clients (:class:`~.sqlite_store.SQLiteStreamStore`).
    runtime_streams : RuntimeStreams
        The runtime's streams, read-only.
    read_options : ReadOptions
    max_body_bytes : int
        Larger ``PUT``/``POST`` bodies get 413.
    connections : Connections
        The app's live connections (SSE responses join it; shutdown ends them).
    closing : asyncio.Event
        Set when the server begins to shut down: waiting long-polls answer at once.
    """

    store: StreamStore
    runtime_streams: RuntimeStreams
    read_options: ReadOptions
    max_body_bytes: int
    connections: Connections
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    def begin_shutdown(self) -> None:
        """End waiting long-polls (with ``204``) so the server can stop promptly."""
        self.closing.set()

    async def aclose(self) -> None:
        """Close the store (server shutdown)."""
        self.closing.set()
        await self.store.aclose()


def durable_routes() -> list[BaseRoute]:
    """The Starlette routes of the endpoint (``app.state.streamnb.durable`` must be set)."""
    return [Route(MOUNT + "/{key:path}", stream_endpoint, methods=_METHODS)]


def _check_key(key: str) -> None:
    bad = (
        not key
        or len(key) > MAX_PATH_CHARS
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key)
        or any(part in ("", ".", "..") for part in key.split("/"))
    )
    if bad:
        raise ProtocolError(
            400,
            "invalid_path",
            f"{key[:80]!r} is not a stream path: use 1-{MAX_PATH_CHARS} characters, "
            "segments separated by '/', none empty, '.' or '..', no control characters",
        )


def _runtime_ref(key: str) -> str | None:
    """The stream ref of a ``streamnb/{ref}`` key, else None."""
    if key == RUNTIME_PREFIX.rstrip("/") or key.startswith(RUNTIME_PREFIX):
        ref = key[len(RUNTIME_PREFIX) :]
        return ref if ref and "/" not in ref else ""
    return None


async def stream_endpoint(request: Request) -> Response:
    """Every request to ``/v1/stream/{path}`` (see the module docstring)."""
    service: DurableStreams = request.app.state.streamnb.durable
    key: str = request.path_params["key"]
    try:
        _check_key(key)
        ref = _runtime_ref(key)
        if ref is not None:
            if request.method not in ("GET", "HEAD"):
                raise ProtocolError(
                    403,
                    "read_only_stream",
                    "streams under /v1/stream/streamnb/ are streamnb's attached streams and "
                    "are read-only here; send input with POST /streams/{ref}/input and "
                    "cancel with POST /streams/{ref}/cancel",
                )
            return await _read(request, service, service.runtime_streams, ref)
        if request.method == "PUT":
            return await _create(request, service, key)
        if request.method == "POST":
            return await _append(request, service, key)
        if request.method == "DELETE":
            await service.store.delete(key)
            return Response(status_code=204, headers=SECURITY_HEADERS)
        return await _read(request, service, service.store, key)
    except HTTPError as exc:
        return error_response(exc, {**SECURITY_HEADERS, **getattr(exc, "headers", {})})


# --- reads ------------------------------------------------------------------------------


async def _read(
    request: Request, service: DurableStreams, reader: StreamReader, key: str
) -> Response:
    if request.method == "HEAD":
        return await _head(reader, key)
    params = request.query_params
    offsets = params.getlist("offset")
    if len(offsets) > 1:
        raise ProtocolError(400, "invalid_offset", "give the offset query parameter once")
    start: Offset | Sentinel | None = None
    if offsets:
        start = parse_offset(offsets[0], "the offset query parameter")
    live = params.get("live")
    if live is not None and live not in ("long-poll", "sse"):
        raise ProtocolError(400, "invalid_request", f"live must be long-poll or sse, got {live!r}")
    if live is not None and start is None:
        raise ProtocolError(
            400,
            "invalid_offset",
            f"live={live} needs an offset (-1 for the start, now for the tail, or a "
            "Stream-Next-Offset value)",
        )
    opts = service.read_options
    cursor = params.get("cursor")
    if live == "sse":
        assert start is not None
        return await sse(request, reader, key, start, cursor, opts, service.connections)
    if live == "long-poll":
        assert start is not None
        return await long_poll(request, reader, key, start, cursor, opts, service.closing)
    return await catch_up(request, reader, key, START if start is None else start, opts)


async def _head(reader: StreamReader, key: str) -> Response:
    meta = await reader.head(key)
    headers = {
        **SECURITY_HEADERS,
        "Content-Type": meta.content_type,
        NEXT_OFFSET: meta.tail.text,
        "Cache-Control": "no-store",
    }
    if meta.closed:
        headers[STREAM_CLOSED] = "true"
    if meta.ttl_s is not None:
        headers[TTL] = str(meta.ttl_s)
    if meta.expires_at is not None:
        headers[EXPIRES_AT] = meta.expires_at
    return Response(status_code=200, headers=headers)


# --- writes -----------------------------------------------------------------------------


def _fork_source(request: Request, value: str) -> str:
    """The store key a ``Stream-Forked-From`` path names (§4.2: a path on this server)."""
    path = unquote(value.strip())
    root = request.scope.get("root_path", "") + MOUNT + "/"
    for prefix in (root, MOUNT + "/"):
        if path.startswith(prefix):
            key = path[len(prefix) :]
            break
    else:
        raise ProtocolError(
            404,
            "stream_not_found",
            f"{FORKED_FROM} {value!r} is not a stream of this server (paths start with {MOUNT}/)",
        )
    _check_key(key)
    if _runtime_ref(key) is not None:
        raise ProtocolError(
            400,
            "invalid_header",
            "streamnb's own streams cannot be forked; read one and PUT its messages into a "
            "new stream",
        )
    return key


async def _create(request: Request, service: DurableStreams, key: str) -> Response:
    h = request.headers
    ttl_s = parse_ttl(h.get(TTL))
    expires_at = parse_expires_at(h.get(EXPIRES_AT))
    if ttl_s is not None and expires_at is not None:
        raise ProtocolError(400, "invalid_header", f"give {TTL} or {EXPIRES_AT}, not both (§5.1)")
    forked_from = h.get(FORKED_FROM)
    fork_offset_text = h.get(FORK_OFFSET)
    sub_text = h.get(FORK_SUB_OFFSET)
    if forked_from is None and (fork_offset_text is not None or sub_text is not None):
        raise ProtocolError(
            400,
            "invalid_header",
            f"{FORK_OFFSET} and {FORK_SUB_OFFSET} need {FORKED_FROM} (the stream to fork)",
        )
    request_body = CreateRequest(
        content_type=parse_content_type(h.get("content-type")),
        ttl_s=ttl_s,
        expires_at=expires_at,
        closed=parse_closed(h.get(STREAM_CLOSED)),
        body=await read_bytes(request, service.max_body_bytes),
        forked_from=None if forked_from is None else _fork_source(request, forked_from),
        fork_offset=(
            None if fork_offset_text is None else parse_offset(fork_offset_text, FORK_OFFSET)
        ),
        fork_sub_offset=0 if sub_text is None else parse_non_negative(sub_text, FORK_SUB_OFFSET),
    )
    result = await service.store.create(key, request_body)
    meta = result.meta
    headers = {**SECURITY_HEADERS, "Content-Type": meta.content_type, NEXT_OFFSET: meta.tail.text}
    if result.created:
        headers["Location"] = str(request.url.replace(query=None, fragment=None))
    if meta.closed:
        headers[STREAM_CLOSED] = "true"
    return Response(status_code=201 if result.created else 200, headers=headers)


def _producer(request: Request) -> Producer | None:
    h = request.headers
    values = (h.get(PRODUCER_ID), h.get(PRODUCER_EPOCH), h.get(PRODUCER_SEQ))
    if all(v is None for v in values):
        return None
    producer_id, epoch, seq = values
    if producer_id is None or epoch is None or seq is None:
        raise ProtocolError(
            400,
            "invalid_header",
            f"{PRODUCER_ID}, {PRODUCER_EPOCH} and {PRODUCER_SEQ} go together: send all three "
            "or none (§5.2.1)",
        )
    if not producer_id.strip():
        raise ProtocolError(400, "invalid_header", f"{PRODUCER_ID} must not be empty")
    return Producer(
        producer_id,
        parse_non_negative(epoch, PRODUCER_EPOCH, MAX_SAFE_INTEGER),
        parse_non_negative(seq, PRODUCER_SEQ, MAX_SAFE_INTEGER),
    )


async def _append(request: Request, service: DurableStreams, key: str) -> Response:
    h = request.headers
    producer = _producer(request)
    stream_seq = h.get(STREAM_SEQ)
    if stream_seq is not None and not stream_seq:
        raise ProtocolError(400, "invalid_header", f"{STREAM_SEQ} must not be empty")
    body = await read_bytes(request, service.max_body_bytes)
    close = parse_closed(h.get(STREAM_CLOSED))
    content_type = parse_content_type(h.get("content-type")) if body else None
    result = await service.store.append(
        key, AppendRequest(content_type, body, close, stream_seq, producer)
    )
    headers = {**SECURITY_HEADERS, NEXT_OFFSET: result.tail.text}
    if result.closed:
        headers[STREAM_CLOSED] = "true"
    if producer is not None:
        headers[PRODUCER_EPOCH] = str(producer.epoch)
        if result.producer_seq is not None:
            headers[PRODUCER_SEQ] = str(result.producer_seq)
    # §5.2.1: 200 for a producer's new data; 204 for plain appends, closes and duplicates
    status = 200 if producer is not None and body and not result.duplicate else 204
    return Response(status_code=status, headers=headers)
