"""The ledger over HTTP: ``GET /ledger/events`` and ``GET /ledger/streams`` as JSON.

``GET /ledger/events?kind=&stream_ref=&limit=`` ->
``{"events": [{"id", "stream_ref", "kind", "payload", "created_at"}, ...]}``;
``GET /ledger/streams?kind=&status=&limit=`` ->
``{"streams": [{"stream_ref", "kind", "mode", "status", "opened_at", "settled_at",
"reason", "terminal"}, ...]}``. Rows are oldest first; ``limit`` keeps the
newest ``limit`` rows. Times are ISO 8601 strings in UTC (``null`` while a stream
is open). The queries use the ledger's awaitable forms: off the event loop, on
read connections of their own (never the writer's), within the ledger's
``query_timeout_s`` (past it: ``504 ledger_timeout``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pandas as pd
from starlette.requests import Request
from starlette.responses import Response

from .body import check_keys, optional_int
from .errors import HTTPError
from .state import state_of

__all__ = ["ledger_events", "ledger_streams"]


def _records(df: pd.DataFrame, limit: int | None) -> str:
    if limit is not None:
        df = df.tail(limit) if limit else df.iloc[0:0]
    text: str = df.to_json(orient="records", date_format="iso", date_unit="ms", force_ascii=False)
    return text


async def _query(
    request: Request,
    key: str,
    filters: tuple[str, ...],
    query: Callable[..., Awaitable[pd.DataFrame]],
) -> Response:
    params = dict(request.query_params)
    params.pop("token", None)  # the bearer token may travel in the query string
    check_keys(params, (*filters, "limit"), "the query string")
    limit = optional_int(params.pop("limit", None), "limit", status=422)
    for name, value in params.items():
        if not value:
            raise HTTPError(422, "invalid_request", f"the {name!r} filter is empty")
    df = await query(**params)
    body = f'{{"{key}":{_records(df, limit)}}}'
    return Response(body, media_type="application/json")


async def ledger_events(request: Request) -> Response:
    """``GET /ledger/events``: events committed by handlers' ``commit_terminal``."""
    ledger = state_of(request).runtime.ledger
    return await _query(request, "events", ("kind", "stream_ref"), ledger.aevents)


async def ledger_streams(request: Request) -> Response:
    """``GET /ledger/streams``: the runtime's record of every stream (one row each)."""
    ledger = state_of(request).runtime.ledger
    return await _query(request, "streams", ("kind", "status"), ledger.astreams)
