"""The PostgreSQL ledger's tables, created and migrated on first open (a version table).

Every table is created unqualified, so it lands in the first schema of the
connection's ``search_path`` (``?options=-csearch_path%3Dmyschema`` in the DSN
keeps one ledger per schema). :func:`migrate` runs under a transaction-scoped
advisory lock, so processes opening a new database at once create it once;
``streamnb_schema`` holds the version, and each step of :data:`MIGRATIONS`
moves it up by one. A database written by a newer streamnb is refused.

Tables beside the three every backend has (``streams``, ``events``, ``frames``):

``runtimes``
    one row per live runtime: its lease (``expires_at``, renewed every
    ``lease_s / 5`` seconds); a row past its time is a dead runtime, whose
    ``running`` streams the first live runtime to notice settles
    ``failed``/``runtime_lost`` (``lease.py``).
``frame_log``
    every outbound frame of every stream (``recorded`` says whether the
    runtime recorded it, ``record_frames=True``): other processes read
    streams from here; ``frames`` is the view of the recorded rows, so
    ``ledger.frames()`` is the same on both backends. Rows that were only
    in transit are deleted an hour after their stream settled.
``stream_commands``
    cancel, input and observer changes sent to the runtime that runs a
    stream, by other processes (``exchange.py``).
``stream_names``
    names for streams shared by every worker (the AI SDK chat id of
    ``/api/chat/{id}/stream``).

A statement-level trigger on each runtime table refuses changes while a
handler's own SQL (``tx.execute``) runs (``streamnb.handler_sql`` is set for
its duration): a guard against mistakes, as the SQLite backend's authorizer.
"""

from __future__ import annotations

from typing import Any

from .._errors import LedgerError

__all__ = ["LATEST_VERSION", "MIGRATIONS", "RUNTIME_TABLES", "migrate"]

#: tables a handler's ``tx.execute`` may read but never change
RUNTIME_TABLES = ("streams", "events", "frame_log", "runtimes", "stream_commands", "stream_names")

_V1 = [
    """
    CREATE TABLE runtimes (
        runtime_id text PRIMARY KEY,
        host       text NOT NULL,
        pid        integer NOT NULL,
        started_at double precision NOT NULL,
        lease_s    double precision NOT NULL,
        expires_at timestamptz NOT NULL
    )
    """,
    """
    CREATE TABLE streams (
        stream_ref text PRIMARY KEY,
        kind       text NOT NULL,
        mode       text NOT NULL,
        status     text NOT NULL,
        opened_at  double precision NOT NULL,
        settled_at double precision,
        reason     text,
        terminal   text,
        on_detach  text NOT NULL DEFAULT 'abort',
        runtime_id text,
        opened_no  bigint GENERATED ALWAYS AS IDENTITY
    )
    """,
    "CREATE INDEX streams_status ON streams (status)",
    "CREATE INDEX streams_order ON streams (opened_at, opened_no)",
    "CREATE INDEX streams_running ON streams (runtime_id) WHERE status = 'running'",
    """
    CREATE TABLE events (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        stream_ref text,
        kind       text NOT NULL,
        payload    text,
        created_at double precision NOT NULL
    )
    """,
    "CREATE INDEX events_stream ON events (stream_ref)",
    "CREATE INDEX events_kind ON events (kind)",
    """
    CREATE TABLE frame_log (
        stream_ref text NOT NULL,
        seq        bigint NOT NULL,
        kind       text NOT NULL,
        channel    text,
        payload    text,
        reason     text,
        error      text,
        terminal   text,
        at         double precision NOT NULL,
        recorded   boolean NOT NULL,
        PRIMARY KEY (stream_ref, seq)
    )
    """,
    """
    CREATE VIEW frames AS
        SELECT stream_ref, seq, kind, channel, payload, reason, error, terminal, at
        FROM frame_log WHERE recorded
    """,
    """
    CREATE TABLE stream_commands (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        token      text NOT NULL UNIQUE,
        runtime_id text NOT NULL,
        sender     text NOT NULL,
        stream_ref text NOT NULL,
        kind       text NOT NULL,
        body       text,
        created_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )
    """,
    "CREATE INDEX stream_commands_for ON stream_commands (runtime_id, id)",
    """
    CREATE TABLE stream_names (
        scope      text NOT NULL,
        name       text NOT NULL,
        stream_ref text NOT NULL,
        meta       text,
        updated_at double precision NOT NULL,
        PRIMARY KEY (scope, name)
    )
    """,
    """
    CREATE FUNCTION streamnb_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF current_setting('streamnb.handler_sql', true) = 'on' THEN
            RAISE EXCEPTION 'a handler''s tx.execute may not change table % (the runtime''s own; '
                'use tx.insert_event for events)', TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN NULL;
    END
    $$
    """,
    *(
        f"CREATE TRIGGER streamnb_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t} "
        "FOR EACH STATEMENT EXECUTE FUNCTION streamnb_guard()"
        for t in RUNTIME_TABLES
    ),
]

#: MIGRATIONS[i] takes a database from version i to i + 1
MIGRATIONS: list[list[str]] = [_V1]
LATEST_VERSION = len(MIGRATIONS)


def migrate(conn: Any) -> int:
    """Create or upgrade the ledger's tables in the current schema; return the version.

    ``conn`` is a psycopg connection outside any transaction. Runs in one
    transaction under an advisory lock (so concurrent first opens create the
    tables once).

    Raises
    ------
    LedgerError
        The database was written by a newer streamnb, or has no schema to
        create tables in.
    """
    with conn.transaction():
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        if schema is None:
            raise LedgerError(
                "the PostgreSQL ledger has no schema to create its tables in: the DSN's "
                "search_path names none that exists; create it or fix the DSN's options"
            )
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"streamnb:{schema}",))
        conn.execute("CREATE TABLE IF NOT EXISTS streamnb_schema (version integer NOT NULL)")
        row = conn.execute("SELECT version FROM streamnb_schema").fetchone()
        version = 0 if row is None else int(row[0])
        if version > LATEST_VERSION:
            raise LedgerError(
                f"the PostgreSQL ledger in schema {schema!r} has version {version}, newer than "
                f"this streamnb knows ({LATEST_VERSION}); upgrade streamnb"
            )
        if version == LATEST_VERSION:
            return version
        if version == 0 and _has_foreign_streams(conn):
            raise LedgerError(
                f"schema {schema!r} already has a table 'streams' that streamnb did not create; "
                "give the ledger a schema of its own (search_path in the DSN's options)"
            )
        for steps in MIGRATIONS[version:]:
            for statement in steps:
                conn.execute(statement)
        if row is None:
            conn.execute("INSERT INTO streamnb_schema VALUES (%s)", (LATEST_VERSION,))
        else:
            conn.execute("UPDATE streamnb_schema SET version = %s", (LATEST_VERSION,))
    return LATEST_VERSION


def _has_foreign_streams(conn: Any) -> bool:
    row = conn.execute(
        "SELECT 1 FROM information_schema.tables "
        "WHERE table_schema = current_schema() AND table_name = 'streams'"
    ).fetchone()
    return row is not None
