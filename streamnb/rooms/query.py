"""``ChatRooms.sql``: one read-only SQL query across the registry, every room and the ledger.

The query runs on a scratch in-memory SQLite connection holding a snapshot of
``rooms`` and of every room's ``messages`` (with a ``room_id`` column), with the
ledger attached as schema ``ledger``: a file ledger is attached read-only (the
live data), an in-memory ledger is copied (``streams`` and ``events``). Snapshots
are taken under each database's lock, so a query never sees half a turn.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from .._errors import LedgerQueryError
from .._ledger import Ledger
from .._sqlite import translate_errors
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


def _ro_uri(path: str) -> str:
    return "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"


def _attach_ledger(conn: sqlite3.Connection, ledger: Ledger) -> None:
    if ledger.path is not None:
        conn.execute("ATTACH DATABASE ? AS ledger", (_ro_uri(ledger.path),))
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
) -> pd.DataFrame:
    """Run ``query`` over a snapshot of the rooms and the ledger; rows as a DataFrame.

    ``histories`` pairs each room id with a function returning its messages
    (taken when the snapshot is made).

    Raises
    ------
    LedgerQueryError
        The statement failed or tried to write (nothing changes anywhere).
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
        with translate_errors(lambda why: LedgerQueryError(query, why)):
            cur = conn.execute(query, params)
            cols = [d[0] for d in cur.description or ()]
            rows = cur.fetchall()
    finally:
        conn.close()
    return pd.DataFrame.from_records(rows, columns=cols)
