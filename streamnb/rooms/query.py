"""``ChatRooms.sql``: one read-only SQL query across the registry, every room and the ledger.

The query runs on a scratch in-memory SQLite connection holding a snapshot of
``rooms`` and of every room's ``messages`` (with a ``room_id`` column), with the
ledger attached as schema ``ledger``: a file ledger is attached read-only (the
live data), an in-memory ledger is copied (``streams`` and ``events``). Snapshots
are taken under each database's lock, so a query never sees half a turn.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from .._errors import LedgerQueryError, LedgerTimeoutError
from .._ledger import Ledger
from .._ledger.readers import DEFAULT_QUERY_TIMEOUT_S, PROGRESS_OPS
from .._sqlite import file_uri, read_only_authorizer, translate_errors
from .store import Message, RegistryStore

__all__ = ["run_query"]

_SCRATCH = """
CREATE TABLE rooms (id TEXT PRIMARY KEY, name TEXT, created_at REAL, last_active_at REAL);
CREATE TABLE messages (
    room_id TEXT, id TEXT, role TEXT, content TEXT, status TEXT,
    created_at REAL, settled_at REAL, stream_ref TEXT
);
"""
_LEDGER_TABLES = {
    "streams": "stream_ref, kind, mode, status, opened_at, settled_at, reason, terminal",
    "events": "id, stream_ref, kind, payload, created_at",
}


def _attach_ledger(conn: sqlite3.Connection, ledger: Ledger) -> None:
    if ledger.path is not None:
        conn.execute("ATTACH DATABASE ? AS ledger", (file_uri(ledger.path, mode="ro"),))
        return
    conn.execute("ATTACH DATABASE ':memory:' AS ledger")
    for table, columns in _LEDGER_TABLES.items():
        copy = ledger.sql(f"SELECT {columns} FROM {table}")
        conn.execute(f"CREATE TABLE ledger.{table} ({columns})")
        marks = ",".join("?" * len(copy.columns))
        rows = copy.astype(object).where(copy.notna(), None).itertuples(index=False, name=None)
        conn.executemany(f"INSERT INTO ledger.{table} VALUES ({marks})", rows)


def run_query(
    registry: RegistryStore,
    histories: Sequence[tuple[str, Callable[[], list[Message]]]],
    ledger: Ledger,
    query: str,
    params: Any = (),
    timeout_s: float | None = DEFAULT_QUERY_TIMEOUT_S,
) -> pd.DataFrame:
    """Run ``query`` over a snapshot of the rooms and the ledger; rows as a DataFrame.

    ``histories`` pairs each room id with a function returning its messages
    (taken when the snapshot is made).

    Raises
    ------
    LedgerQueryError
        The statement failed or tried to write or create a file (nothing changes
        anywhere).
    LedgerTimeoutError
        It ran longer than ``timeout_s`` seconds (None: no limit).
    """
    conn = sqlite3.connect("file:streamnb-rooms-query?mode=memory", uri=True)
    try:
        conn.executescript(_SCRATCH)
        conn.executemany(
            "INSERT INTO rooms VALUES (?,?,?,?)",
            [(r.id, r.name, r.created_at, r.last_active_at) for r in registry.rows()],
        )
        for room_id, history in histories:
            conn.executemany(
                "INSERT INTO messages VALUES (?,?,?,?,?,?,?,?)",
                [
                    (
                        room_id,
                        m.id,
                        m.role,
                        m.content,
                        m.status,
                        m.created_at,
                        m.settled_at,
                        m.stream_ref,
                    )
                    for m in history()
                ],
            )
        conn.commit()
        _attach_ledger(conn, ledger)
        conn.commit()
        conn.execute("PRAGMA query_only=ON")
        # as ledger.sql: reading only (no ATTACH or VACUUM INTO, which create files), and a
        # time limit checked every PROGRESS_OPS SQLite instructions
        conn.set_authorizer(read_only_authorizer)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if deadline is not None:
            conn.set_progress_handler(lambda: time.monotonic() > deadline, PROGRESS_OPS)
        try:
            with translate_errors(lambda why: LedgerQueryError(query, why)):
                cur = conn.execute(query, params)
                cols = [d[0] for d in cur.description or ()]
                rows = cur.fetchall()
        except LedgerQueryError:
            if deadline is not None and time.monotonic() > deadline:
                assert timeout_s is not None
                raise LedgerTimeoutError(timeout_s, f"query {query[:200]!r}") from None
            raise
    finally:
        conn.close()
    return pd.DataFrame.from_records(rows, columns=cols)
