"""Durable Streams for streamnb: ElectricSQL's HTTP protocol for durable, resumable streams.

The Durable Streams protocol (``PROTOCOL.md`` of the Durable Streams project,
draft v1.0) addresses append-only streams by URL; clients read from any
offset, catch up, tail live (long-poll or SSE) and resume after a drop with
no gap and no duplicate. ``create_app`` serves it under ``/v1/stream/``:

* ``/v1/stream/{path}``: streams clients create, append to, close, fork and
  delete, stored in the ledger's database (tables ``ds_*``): its SQLite file,
  in memory with an in-memory ledger, or its PostgreSQL database (shared by
  every worker serving that ledger);
* ``/v1/stream/streamnb/{ref}``: every attached stream of the runtime,
  read-only, one JSON message per frame, closed once its settlement
  committed.

Modules (one job each):

==========================  ==================================================
:mod:`.offsets`             offsets and the ``-1`` / ``now`` sentinels (§8)
:mod:`.protocol`            header names, content types, header values,
                            JSON-mode bodies, cursors (§5, §9, §10)
:mod:`.errors`              refusals with protocol headers
:mod:`.store`               the store interface (a Protocol) and its records
:mod:`.rules`               the append checks and PUT matching every backend
                            applies (§5.1, §5.2)
:mod:`.sql_store`           the tables and every request's transaction, in SQL
:mod:`.sqlite_store`        the SQLite backend (own thread and connection)
:mod:`.pg_store`            the PostgreSQL backend (serializable transactions,
                            readers woken across processes by NOTIFY)
:mod:`.runtime_streams`     streamnb's streams as read-only Durable Streams
:mod:`.reading`             catch-up, long-poll and SSE responses (§5.6-5.8)
:mod:`.routes`              the endpoint
==========================  ==================================================
"""

from __future__ import annotations

from ..._ledger.postgres import PostgresBackend
from ..._runtime import StreamRuntime
from ..sse import Connections
from .offsets import NOW, START, Offset, Sentinel, parse_offset
from .pg_store import PgStreamStore
from .reading import LONG_POLL_TIMEOUT_S, ReadOptions
from .routes import MOUNT, DurableStreams, durable_routes
from .runtime_streams import RuntimeStreams
from .sqlite_store import SQLiteStreamStore
from .store import (
    AppendRequest,
    AppendResult,
    CreateRequest,
    CreateResult,
    Producer,
    ReadResult,
    StreamMeta,
    StreamReader,
    StreamStore,
)

__all__ = [
    "LONG_POLL_TIMEOUT_S",
    "MAX_READ_BYTES",
    "MOUNT",
    "NOW",
    "START",
    "AppendRequest",
    "AppendResult",
    "CreateRequest",
    "CreateResult",
    "DurableStreams",
    "Offset",
    "PgStreamStore",
    "Producer",
    "ReadOptions",
    "ReadResult",
    "RuntimeStreams",
    "SQLiteStreamStore",
    "Sentinel",
    "StreamMeta",
    "StreamReader",
    "StreamStore",
    "durable_routes",
    "open_durable_streams",
    "parse_offset",
]

#: about how much one read response (or SSE batch) carries, bytes
MAX_READ_BYTES = 1 << 20


def open_durable_streams(
    runtime: StreamRuntime,
    connections: Connections,
    *,
    max_body_bytes: int,
    long_poll_timeout_s: float,
    heartbeat_s: float,
    send_timeout_s: float,
) -> DurableStreams:
    """The endpoint's parts for ``runtime``: a store in its ledger's database.

    Parameters
    ----------
    runtime : StreamRuntime
        Its ledger's database holds the streams: the SQLite file
        (``ledger.path``; an in-memory ledger gets an in-memory store) or the
        PostgreSQL database, shared with the other workers.
    connections : Connections
        The app's live connections.
    max_body_bytes : int
        Body cap for ``PUT``/``POST`` (413 above it).
    long_poll_timeout_s : float
        Long-poll timeout, seconds (§5.7).
    heartbeat_s, send_timeout_s : float
        The app's SSE settings.

    Returns
    -------
    DurableStreams
        Close it with ``await service.aclose()`` (the app does at shutdown).
    """
    backend = runtime.ledger.backend
    store: StreamStore
    if isinstance(backend, PostgresBackend):
        store = PgStreamStore(backend.dsn)
    else:
        store = SQLiteStreamStore(runtime.ledger.path)
    return DurableStreams(
        store=store,
        runtime_streams=RuntimeStreams(runtime),
        read_options=ReadOptions(
            long_poll_timeout_s=long_poll_timeout_s,
            max_read_bytes=MAX_READ_BYTES,
            heartbeat_s=heartbeat_s,
            send_timeout_s=send_timeout_s,
        ),
        max_body_bytes=max_body_bytes,
        connections=connections,
    )
