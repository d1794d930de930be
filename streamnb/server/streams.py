"""The ``/streams`` endpoints: open, observe (SSE), send input, cancel, inspect.

===========================  ==================================================
``POST /streams``            ``{"kind", "payload"?}`` -> 201 ``{"stream_ref", ...}``
``GET /streams/{ref}/events`` SSE: ``id:`` seq, ``event:`` kind, ``data:`` frame JSON
``POST /streams/{ref}/input`` ``{"payload", "seq"?}`` -> ``{"result"}``
``POST /streams/{ref}/cancel`` ``{"reason"?}`` -> ``{"result"}``
``POST /streams/{ref}/detach`` ``{"observer"?}`` -> ``{"detached": n}``
``GET /streams/{ref}``        status, counters, parked observers, projection summary
===========================  ==================================================

Resume: ``GET /streams/{ref}/events`` with ``Last-Event-ID: n`` (what
``EventSource`` sends when it reconnects) or ``?after_seq=n`` replays from seq
``n + 1`` out of the stream's frame log, so a reconnecting client receives each
frame exactly once. The header wins over the query parameter, because an
``EventSource`` reconnects to the same URL with the header added. A client that
asks to resume after the terminal frame gets ``204 No Content``, which tells an
``EventSource`` to stop reconnecting. A stream that left memory is replayed from
the frames the ledger recorded (:mod:`.ledger_replay`; ``410`` if it recorded none).

Disconnect is not detach (:mod:`.parking`): a dropped connection parks its
session for ``reconnect_grace_s`` and a reconnection takes it over, so an
``on_detach="abort"`` stream survives a blip. ``POST /streams/{ref}/detach`` is
the explicit detach: it detaches at once every observer this server holds for
the stream (the hold of ``POST /streams``, parked observers, live connections,
which then end), or only those of ``{"observer": id}`` (the id a client gave
as ``?observer=`` on its connections); then ``on_detach`` applies as usual.
``GET /streams/{ref}`` shows ``parked`` (how many) and ``parked_until`` (epoch
seconds when the last one detaches unless taken over, or null); ``observers``
counts every attached session, parked ones included.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .._errors import UnknownStreamError
from .body import cancel_reason, check_keys, expect_object, input_frame, optional_int, read_json
from .errors import HTTPError
from .ledger_replay import ledger_replay
from .limits import check_public
from .parking import observer_id_of
from .sse import SSE_HEADERS, FrameEvents, SSEResponse
from .state import ServerState, state_of

__all__ = [
    "cancel_stream",
    "create_stream",
    "detach_stream",
    "send_input",
    "stream_events",
    "stream_status",
]


def after_seq_of(request: Request) -> int | None:
    """The resume point: ``Last-Event-ID`` header, else ``?after_seq=``, else None (from 0)."""
    header = request.headers.get("last-event-id")
    if header is not None and header.strip():
        return optional_int(header, "the Last-Event-ID header", minimum=-1, status=400)
    return optional_int(
        request.query_params.get("after_seq"),
        "the after_seq query parameter",
        minimum=-1,
        status=400,
    )


async def create_stream(request: Request) -> Response:
    """``POST /streams``: open a stream; the server holds it until an observer attaches."""
    state = state_of(request)
    body = expect_object(await read_json(request, state.config.max_body_bytes))
    check_keys(body, ("kind", "payload"))
    kind = body.get("kind")
    if not isinstance(kind, str) or not kind:
        raise HTTPError(422, "invalid_request", "'kind' must be a non-empty string")
    check_public(state.runtime, kind)
    state.cap.admit()
    session = await state.runtime.attach(kind, body.get("payload"))
    state.cap.add(session.stream_ref)
    state.holds.hold(session)
    ref = session.stream_ref
    return JSONResponse(
        {
            "stream_ref": ref,
            "kind": session.kind,
            "mode": session.mode,
            "events": f"/streams/{ref}/events",
            "ws": f"/streams/{ref}/ws",
        },
        status_code=201,
        headers={"Location": f"/streams/{ref}"},
    )


async def stream_events(request: Request) -> Response:
    """``GET /streams/{ref}/events``: the stream's frames as Server-Sent Events."""
    state = state_of(request)
    ref = request.path_params["ref"]
    after_seq = after_seq_of(request)
    runtime = state.runtime
    try:
        info = await runtime.ainfo(ref)  # with a shared ledger, also another worker's stream
    except UnknownStreamError:  # settled and evicted: its recorded frames, if any (else 404)
        if request.method == "HEAD":
            raise
        return await ledger_replay(state, ref, after_seq)
    if info.terminal is not None and after_seq is not None and after_seq >= info.terminal.seq:
        return Response(status_code=204)
    if request.method == "HEAD":  # headers only: never open an endless body nobody reads
        return Response(headers=dict(SSE_HEADERS), media_type=SSEResponse.media_type)
    observer_id = observer_id_of(request.query_params.get("observer"))
    session = await state.observe(ref, after_seq, observer_id)
    return state.sse_response(session, FrameEvents(ref), observer_id=observer_id)


async def send_input(request: Request) -> Response:
    """``POST /streams/{ref}/input``: ``{"payload": ..., "seq"?: n}`` to a bidi stream."""
    state = state_of(request)
    ref = request.path_params["ref"]
    frame = input_frame(expect_object(await read_json(request, state.config.max_body_bytes)))
    result = await state.runtime.send(ref, frame)
    return JSONResponse({"result": result})


async def cancel_stream(request: Request) -> Response:
    """``POST /streams/{ref}/cancel``: ``{"reason"?: str}`` -> ``{"result": ...}``."""
    state = state_of(request)
    ref = request.path_params["ref"]
    body = await read_json(request, state.config.max_body_bytes, allow_empty=True)
    reason = cancel_reason({} if body is None else expect_object(body))
    result = await state.runtime.cancel(ref, reason)
    return JSONResponse({"result": result})


async def detach_stream(request: Request) -> Response:
    """``POST /streams/{ref}/detach``: ``{"observer"?: str}`` -> ``{"detached": n}``.

    The explicit detach: this server's observers of the stream (all of them, or
    the client's own with ``"observer"``) detach now, not after a grace.
    """
    state = state_of(request)
    ref = request.path_params["ref"]
    body = await read_json(request, state.config.max_body_bytes, allow_empty=True)
    body = {} if body is None else expect_object(body)
    check_keys(body, ("observer",))
    observer_id = observer_id_of(body.get("observer"))
    await state.runtime.ainfo(ref)  # 404 for an unknown ref; also another worker's stream
    detached = await state.parking.detach(ref, observer_id)
    if observer_id is None and ref in state.holds:
        await state.holds.claim(ref)  # the hold of POST /streams is this server's too
        detached += 1
    return JSONResponse({"detached": detached})


async def stream_status(request: Request) -> Response:
    """``GET /streams/{ref}``: the runtime's view plus the projection summary.

    The summary is folded incrementally and written in slices
    (:mod:`.summary`): a stream of millions of frames never stalls the loop. A
    stream no longer held in memory (evicted, or from an earlier process with a
    file ledger) is answered from the ledger with ``"in_memory": false``.
    """
    state = state_of(request)
    ref = request.path_params["ref"]
    runtime = state.runtime
    try:
        await runtime.ainfo(ref)  # with a shared ledger, also another worker's stream
        fold = state.summaries.fold(ref)
        await fold.advance(runtime)  # only the frames it has not folded yet, in slices
        info = runtime.info(ref)
    except UnknownStreamError:  # evicted (perhaps while folding): the ledger's record
        state.summaries.forget(ref)
        row = await _ledger_row(state, ref)
        if row is None:
            raise
        return JSONResponse(row)
    parked = state.parking.parked(ref)
    head = {
        "stream_ref": ref,
        "kind": info.kind,
        "mode": info.mode,
        "status": info.status,
        "on_detach": info.on_detach,
        "opened_at": info.opened_at,
        "next_seq": info.next_seq,
        "first_retained_seq": info.first_retained_seq,
        "observers": info.observers,
        "parked": len(parked),
        "parked_until": parked[-1] if parked else None,
        "cancel_requested": info.cancel_requested,
        "cancel_reason": info.cancel_reason,
        "terminal": None if info.terminal is None else info.terminal.to_dict(),
        "in_memory": True,
        # with a shared ledger: the runtime running the handler, and the one answering
        "runtime_id": info.runtime_id,
        "served_by": runtime.runtime_id,
    }
    return StreamingResponse(fold.json_body(head), media_type="application/json")


async def _ledger_row(state: ServerState, ref: str) -> dict[str, Any] | None:
    df = await state.runtime.ledger.asql(
        "SELECT stream_ref, kind, mode, status, opened_at, settled_at, reason, terminal "
        "FROM streams WHERE stream_ref = ?",
        (ref,),
    )
    if df.empty:
        return None
    row = df.iloc[0]
    return {
        "stream_ref": ref,
        "kind": row["kind"],
        "mode": row["mode"],
        "status": row["status"],
        "opened_at": _seconds(row["opened_at"]),
        "settled_at": _seconds(row["settled_at"]),
        "reason": row["reason"],
        "terminal": None if row["terminal"] is None else json.loads(row["terminal"]),
        "in_memory": False,
    }


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number
