"""The ledger's query API: rows from a backend, as pandas DataFrames with fixed columns.

Each query returns its columns even when it finds nothing, with stable dtypes:
times as ``datetime64[ns, UTC]``, JSON columns parsed back into Python values.
The functions here are backend-neutral; the backend only returns rows, on a
connection of its own and within ``timeout_s`` seconds (None: the backend's
``query_timeout_s``). They block their thread; ``Ledger``'s awaitable forms run
them whole (rows and DataFrame) off the loop through ``backend.run_read``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .._dataframes import utc_column
from .._errors import LedgerError, LedgerQueryError
from .._frames import Frame
from .._json import loads
from .backend import EVENT_COLUMNS, FRAME_COLUMNS, STREAM_COLUMNS, LedgerBackend

__all__ = ["events", "frame_log", "frames", "sql", "stream_status", "streams"]


def _filters(**given: str | None) -> dict[str, str]:
    for name, value in given.items():
        if value is not None and not isinstance(value, str):
            raise LedgerError(
                f"the {name} filter must be a str or None, got {type(value).__name__}"
            )
    return {name: value for name, value in given.items() if value is not None}


def events(
    backend: LedgerBackend,
    kind: str | None = None,
    stream_ref: str | None = None,
    timeout_s: float | None = None,
) -> pd.DataFrame:
    where = _filters(kind=kind, stream_ref=stream_ref)
    rows = backend.select("events", EVENT_COLUMNS, where, timeout_s=timeout_s)
    df = pd.DataFrame.from_records(rows, columns=list(EVENT_COLUMNS))
    df["id"] = df["id"].astype("int64")
    df["payload"] = [loads(p) for p in df["payload"]]
    df["created_at"] = utc_column(df["created_at"])
    return df


def streams(
    backend: LedgerBackend,
    kind: str | None = None,
    status: str | None = None,
    timeout_s: float | None = None,
) -> pd.DataFrame:
    where = _filters(kind=kind, status=status)
    rows = backend.select("streams", STREAM_COLUMNS, where, timeout_s=timeout_s)
    df = pd.DataFrame.from_records(rows, columns=list(STREAM_COLUMNS))
    df["opened_at"] = utc_column(df["opened_at"])
    df["settled_at"] = utc_column(df["settled_at"])
    df["terminal"] = [loads(t) for t in df["terminal"]]
    return df


def frames(
    backend: LedgerBackend, stream_ref: str | None = None, timeout_s: float | None = None
) -> pd.DataFrame:
    where = _filters(stream_ref=stream_ref)
    rows = backend.select("frames", FRAME_COLUMNS, where, timeout_s=timeout_s)
    df = pd.DataFrame.from_records(rows, columns=list(FRAME_COLUMNS))
    df["seq"] = df["seq"].astype("int64")
    df["payload"] = [loads(p) for p in df["payload"]]
    df["terminal"] = [loads(t) for t in df["terminal"]]
    df["at"] = utc_column(df["at"])
    return df


def frame_log(
    backend: LedgerBackend,
    stream_ref: str,
    timeout_s: float | None = None,
    after_seq: int = -1,
    limit: int | None = None,
) -> list[Frame]:
    _filters(stream_ref=stream_ref)
    if type(after_seq) is not int or (limit is not None and (type(limit) is not int or limit < 0)):
        raise LedgerError(
            f"after_seq must be an int and limit an int >= 0 or None, got {after_seq!r}, {limit!r}"
        )
    rows = backend.select_frames(stream_ref, after_seq, limit, timeout_s=timeout_s)
    return [
        Frame(k, r, s, at, ch, loads(p), rs, er, loads(t)) for r, s, k, ch, p, rs, er, t, at in rows
    ]


def stream_status(
    backend: LedgerBackend, stream_ref: str, timeout_s: float | None = None
) -> str | None:
    where = _filters(stream_ref=stream_ref)
    rows = backend.select("streams", ("status",), where, timeout_s=timeout_s)
    return None if not rows else str(rows[0][0])


def sql(
    backend: LedgerBackend,
    query: str,
    params: Sequence[Any] | Mapping[str, Any] = (),
    timeout_s: float | None = None,
) -> pd.DataFrame:
    if not isinstance(query, str):
        raise LedgerQueryError(repr(query), f"the query must be a str, got {type(query).__name__}")
    cols, rows = backend.sql(query, params, timeout_s=timeout_s)
    return pd.DataFrame.from_records(rows, columns=cols)
