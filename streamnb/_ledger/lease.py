"""Leases: no stream of a shared (PostgreSQL) ledger stays open when its process dies.

Each runtime that writes a PostgreSQL ledger holds a *lease*, a row of
``runtimes`` whose ``expires_at`` its ledger renews every ``lease_s / 5``
seconds (:data:`HEARTBEATS_PER_LEASE`) from a thread of its own
(``streamnb-lease``, its own connection, so a busy writer never lets a lease
lapse). Times are the database server's clock (``clock_timestamp()``), so the
machines' clocks do not matter.

A lease past its time belongs to a dead (or cut-off) runtime. Every live
ledger looks for such leases every :data:`CHECK_INTERVAL_S` seconds (and once
when it opens): :func:`recover_expired` deletes the expired rows and settles
every ``running`` stream they held ``failed`` with reason ``runtime_lost``
(terminal ``{"ok": false, "runtime_lost": true}``), appends that terminal frame
to the stream's frame log and announces it, all in one transaction. The
``DELETE ... RETURNING`` is the claim: of several survivors racing, exactly one
deletes a given row (the others' ``FOR UPDATE SKIP LOCKED`` skip it), so each
stream settles exactly once. Streams whose lease row is missing altogether
(their runtime closed, or crashed before it ever renewed) are settled the same
way.

After a restart of the database server nobody could renew for a while: a
lease only counts as expired once the server has been up for longer than
that lease's ``lease_s``, so every live runtime gets a full lease period to
reconnect first.

A runtime that finds its own lease gone (it was cut off for longer than
``lease_s`` and a survivor settled its streams) is told through ``on_lost``;
its streams are already settled, and it stops their handlers.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from .._errors import LedgerError
from .._json import dumps
from .pg_connect import Backoff, Dsn, connect, is_disconnect
from .recovery import RUNTIME_LOST_TERMINAL

__all__ = [
    "CHECK_INTERVAL_S",
    "DEFAULT_LEASE_S",
    "HEARTBEATS_PER_LEASE",
    "LeaseKeeper",
    "LeaseLostError",
    "recover_expired",
]

logger = logging.getLogger("streamnb.ledger")

#: default lease length, seconds
DEFAULT_LEASE_S = 10.0
#: renewals per lease period (lease_s 10 s: every 2 s)
HEARTBEATS_PER_LEASE = 5
#: how often a live ledger looks for expired leases, seconds
CHECK_INTERVAL_S = 0.5
#: how often transit frames and answered commands of long-settled streams are deleted, s
JANITOR_INTERVAL_S = 60.0
#: transit frames (``recorded = false``) are kept this long after their stream settled, s
TRANSIT_RETAIN_S = 3600.0
#: stream names (``stream_names``) are kept this long after their last update, s
NAMES_RETAIN_S = 86400.0
#: the error text of a ``runtime_lost`` terminal frame
LOST_ERROR = "the runtime running this stream stopped renewing its lease (its process died)"

Conn = Any  # psycopg.Connection[tuple[Any, ...]]


class LeaseLostError(LedgerError):
    """The runtime's lease was taken over (it was cut off longer than ``lease_s``)."""

    def __init__(self, runtime_id: str) -> None:
        self.runtime_id = runtime_id
        super().__init__(
            f"the lease of runtime {runtime_id} was taken over (it could not reach the "
            "database for longer than lease_s); its streams were settled runtime_lost"
        )


def note_frames(conn: Conn, channel: str, last_seq: dict[str, int]) -> None:
    """Announce committed frames: ``f <ref> <seq> ...`` (payloads under 8000 bytes)."""
    parts: list[str] = []
    size = 0
    for ref, seq in last_seq.items():
        item = f"{ref} {seq}"
        if parts and size + len(item) > 7000:
            conn.execute("SELECT pg_notify(%s, %s)", (channel, "f " + " ".join(parts)))
            parts, size = [], 0
        parts.append(item)
        size += len(item) + 1
    if parts:
        conn.execute("SELECT pg_notify(%s, %s)", (channel, "f " + " ".join(parts)))


def recover_expired(
    conn: Conn, channel: str, *, orphans: bool = False
) -> tuple[list[str], list[str]]:
    """Settle the streams of expired leases ``failed``/``runtime_lost``, once.

    With ``orphans``, also the ``running`` streams whose lease row is missing
    altogether. Returns ``(stream refs settled, runtime ids whose lease was
    taken)``. ``conn`` is outside a transaction; this runs one.
    """
    now = time.time()
    with conn.transaction():
        dead = [
            r[0]
            for r in conn.execute(
                "DELETE FROM runtimes WHERE runtime_id IN ("
                " SELECT runtime_id FROM runtimes"
                " WHERE expires_at < clock_timestamp()"
                " AND pg_postmaster_start_time() + make_interval(secs => lease_s)"
                "     < clock_timestamp()"
                " FOR UPDATE SKIP LOCKED) RETURNING runtime_id"
            ).fetchall()
        ]
        if not dead and not orphans:
            return [], []
        lost = conn.execute(
            "UPDATE streams SET status = 'failed', reason = 'runtime_lost', settled_at = %s, "
            "terminal = %s WHERE status = 'running' AND (runtime_id = ANY(%s) "
            " OR (%s AND (runtime_id IS NULL OR NOT EXISTS ("
            "   SELECT 1 FROM runtimes r WHERE r.runtime_id = streams.runtime_id)))) "
            "RETURNING stream_ref",
            (now, dumps(RUNTIME_LOST_TERMINAL), dead, orphans),
        ).fetchall()
        refs = [r[0] for r in lost]
        if refs:
            rows = conn.execute(
                "INSERT INTO frame_log (stream_ref, seq, kind, reason, error, terminal, at, "
                "recorded) "
                "SELECT s.ref, COALESCE(m.seq, -1) + 1, 'failed', 'runtime_lost', %s, %s, %s, "
                "COALESCE(m.recorded, false) "
                "FROM unnest(%s::text[]) AS s(ref) LEFT JOIN LATERAL ("
                " SELECT max(seq) AS seq, bool_or(recorded) AS recorded FROM frame_log f"
                " WHERE f.stream_ref = s.ref) m ON true "
                "ON CONFLICT DO NOTHING RETURNING stream_ref, seq",
                (LOST_ERROR, dumps(RUNTIME_LOST_TERMINAL), now, refs),
            ).fetchall()
            note_frames(conn, channel, {r[0]: int(r[1]) for r in rows})
        if dead:
            conn.execute("DELETE FROM stream_commands WHERE runtime_id = ANY(%s)", (dead,))
            for i in range(0, len(dead), 100):
                conn.execute(
                    "SELECT pg_notify(%s, %s)", (channel, "x " + " ".join(dead[i : i + 100]))
                )
    return refs, dead


def janitor(conn: Conn) -> None:
    """Delete transit frames and names nobody needs any more (one transaction)."""
    now = time.time()
    with conn.transaction():
        conn.execute(
            "DELETE FROM frame_log f USING streams s WHERE NOT f.recorded "
            "AND s.stream_ref = f.stream_ref AND s.status <> 'running' AND s.settled_at < %s",
            (now - TRANSIT_RETAIN_S,),
        )
        conn.execute("DELETE FROM stream_names WHERE updated_at < %s", (now - NAMES_RETAIN_S,))


class LeaseKeeper:
    """The thread (``streamnb-lease``) that renews this process's leases and recovers others'.

    Parameters
    ----------
    dsn : Dsn
        Where to connect (its own connection).
    channel : str
        The ledger's notification channel.
    lease_s : float
        Lease length, seconds; renewed every ``lease_s / 5``.
    on_lost : callable ``(runtime_ids) -> None``
        Called (on this thread) with leases of this process found gone.
    """

    def __init__(
        self,
        dsn: Dsn,
        channel: str,
        lease_s: float,
        on_lost: Callable[[list[str]], None],
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self.lease_s = lease_s
        self._on_lost = on_lost
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conn: Conn | None = None
        self.thread = threading.Thread(target=self._serve, name="streamnb-lease", daemon=True)

    def start(self) -> None:
        """Start the thread (idempotent): after the ledger's own recovery at open, so that
        ``Ledger.recovered`` lists every stream recovered then."""
        with self._lock:
            if not self.thread.is_alive() and not self._stop.is_set():
                self.thread.start()

    # --- leases of this process ------------------------------------------------------------

    @staticmethod
    def insert_lease(conn: Conn, runtime_id: str, lease_s: float) -> None:
        """Write a new lease row (in the caller's transaction)."""
        conn.execute(
            "INSERT INTO runtimes (runtime_id, host, pid, started_at, lease_s, expires_at) "
            "VALUES (%s, %s, %s, %s, %s, clock_timestamp() + make_interval(secs => %s))",
            (runtime_id, socket.gethostname(), os.getpid(), time.time(), lease_s, lease_s),
        )

    def keep(self, runtime_id: str) -> None:
        """Renew ``runtime_id``'s lease from now on (its row was just inserted)."""
        with self._lock:
            self._ids.add(runtime_id)

    def drop(self, runtime_id: str) -> None:
        """Stop renewing ``runtime_id`` (its runtime closed)."""
        with self._lock:
            self._ids.discard(runtime_id)

    # --- the thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        backoff = Backoff(self._stop)
        heartbeat_s = self.lease_s / HEARTBEATS_PER_LEASE
        next_beat = 0.0
        next_janitor = time.monotonic() + JANITOR_INTERVAL_S
        while not self._stop.is_set():
            try:
                if self._conn is None:
                    self._conn = connect(self._dsn, autocommit=True)
                    backoff.reset()
                now = time.monotonic()
                if now >= next_beat:
                    self._renew(self._conn)
                    next_beat = now + heartbeat_s
                sweep = now >= next_janitor
                recover_expired(self._conn, self._channel, orphans=sweep)
                if sweep:
                    janitor(self._conn)
                    next_janitor = now + JANITOR_INTERVAL_S
            except Exception as exc:
                if not isinstance(exc, LedgerError) and not is_disconnect(exc, self._conn):
                    logger.exception("streamnb ledger: lease upkeep failed on %s", self._dsn.safe)
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                backoff.wait()
                continue
            self._stop.wait(min(CHECK_INTERVAL_S, heartbeat_s))
        if self._conn is not None:
            self._conn.close()

    def _renew(self, conn: Conn) -> None:
        with self._lock:
            ids = list(self._ids)
        if not ids:
            return
        kept = {
            r[0]
            for r in conn.execute(
                "UPDATE runtimes SET expires_at = clock_timestamp() + make_interval(secs => %s) "
                "WHERE runtime_id = ANY(%s) RETURNING runtime_id",
                (self.lease_s, ids),
            ).fetchall()
        }
        gone = [i for i in ids if i not in kept]
        if gone:
            with self._lock:
                self._ids.difference_update(gone)
            logger.warning(
                "streamnb ledger: the lease of runtime(s) %s on %s expired and was taken over; "
                "their streams were settled runtime_lost",
                ", ".join(gone),
                self._dsn.safe,
            )
            self._on_lost(gone)

    def close(self) -> None:
        """Stop the thread (idempotent); leases are deleted by their runtimes."""
        with self._lock:
            self._stop.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout=10)
