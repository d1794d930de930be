"""The public :class:`Ledger`: one queryable API over a storage backend (SQLite or PostgreSQL)."""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from .. import _takeover
from .._frames import Frame
from .._sqlite import DEFAULT_BUSY_TIMEOUT_S
from . import queries
from .backend import LedgerBackend
from .lease import DEFAULT_LEASE_S
from .pg_connect import is_postgres_url
from .readers import DEFAULT_QUERY_TIMEOUT_S, check_timeout
from .recovery import WriterLock
from .sqlite import SQLiteBackend, check_path

if TYPE_CHECKING:
    from .postgres import PostgresBackend

__all__ = ["Ledger"]


class Ledger:
    """Durable store of settlements, events and (optionally) frames.

    ``Ledger()`` keeps everything for the life of this object only (a private
    scratch file, deleted when it closes); ``Ledger("runs.db")`` is a SQLite file
    in WAL mode that survives restarts; ``Ledger("postgresql://user:pw@host/db")``
    is a PostgreSQL database shared by many runtimes in many processes and
    machines (``pip install "streamnb[postgres]"``; see "PostgreSQL" below).
    Writes run on one writer thread per
    ledger (``streamnb-ledger``), so the event loop never waits on disk I/O;
    settlements are group-committed, and a runtime announces a terminal frame only
    after its settlement committed. A file ledger's writer holds ``<path>.lock``;
    opening a file no live process holds settles the streams a dead process left
    ``running`` as ``failed``/``runtime_lost`` (listed in :attr:`recovered`), and a
    second process that finds the lock taken opens the file read-only. A ledger
    dropped without :meth:`close` is closed when it is garbage-collected (its
    lock is released).

    Queries never hold back a write: they run on read-only connections of their
    own (never the writer's) and each has a time limit, ``timeout_s`` (default
    ``query_timeout_s``, 10 s); past it the query is stopped and raises
    :class:`~streamnb.LedgerTimeoutError`. Every query has an awaitable twin, its
    name with an ``a`` in front (as ``aclose``): :meth:`asql`, :meth:`astreams`,
    :meth:`aevents`, :meth:`aframes`, :meth:`aframe_log`, :meth:`astream_status`.
    They run off the event loop; use them in async code and notebook cells
    (``df = await ledger.asql(...)``), where the plain forms would stop the
    kernel's loop (and every Stop button) while they run. Cancelling the awaiting
    task stops the query.

    Re-running a notebook cell: a second ``Ledger`` on the same file *in the same
    process* (``read_only`` None or False) takes it over: the runtime writing the
    previous one settles its running streams ``cancelled`` with reason
    ``"replaced"`` and closes, the previous ledger closes, and the new one is the
    file's writer. ``Ledger(path, read_only=True)`` only reads and takes nothing over.

    Tables (query them with :meth:`sql`): ``streams`` (the runtime's own record,
    one row per opened stream), ``events`` (what handlers commit with
    ``tx.insert_event``) and ``frames`` (every outbound frame, with
    ``record_frames=True``).

    PostgreSQL: the same queries return the same DataFrames (columns and
    dtypes); :meth:`sql` takes the same ``?`` and ``:name`` placeholders (in
    PostgreSQL's SQL) and runs in a read-only transaction with
    ``statement_timeout``. The tables are created (and migrated) in the first
    schema of the DSN's ``search_path`` on first open. Every runtime holds a
    lease renewed every ``lease_s / 5`` seconds; when a process dies, a live
    one settles its open streams ``failed``/``runtime_lost`` within about
    ``lease_s`` (exactly once), and opening a ledger does the same for leases
    already expired (listed in :attr:`recovered`). Frames of every stream go to
    the database too, so any process sharing it can read, resume, cancel and
    feed any stream (``runtime.reattach``, ``runtime.ainfo``...). The password
    never appears in ``repr``, messages or logs.

    Parameters
    ----------
    path : str or os.PathLike, optional
        SQLite file to use (WAL mode, created if missing), or a
        ``postgresql://`` URL. ``None`` (default) keeps the ledger for the
        life of this object only.
    record_frames : bool, default False
        Also store every outbound frame, queryable with :meth:`frames`.
    read_only : bool or None, default None
        ``None`` opens the file for writing if no other live process holds it,
        read-only otherwise; ``True`` always reads only; ``False`` raises
        :class:`~streamnb.LedgerBusyError` when another process holds the file
        (the error names its process id). Within one process, ``None`` and ``False``
        take the file over from an earlier ``Ledger`` (see above). (PostgreSQL has
        many writers: only ``True`` changes anything.)
    busy_timeout_s : float, default 5.0
        How long a write waits for a lock held by another connection, seconds.
    query_timeout_s : float or None, default 10.0
        The time limit of a query that gives no ``timeout_s``, seconds (None:
        no limit).
    lease_s : float, default 10.0
        PostgreSQL: how long a runtime's lease lasts without renewal, seconds;
        a process that dies has its open streams settled ``runtime_lost``
        about this long after.

    Raises
    ------
    LedgerError
        The file cannot be opened or is not a streamnb ledger; a PostgreSQL
        URL without psycopg installed.
    LedgerBusyError
        ``read_only=False`` and another live process writes the file.
    LedgerUnavailableError
        The PostgreSQL server cannot be reached (the message names the host,
        never the password).

    Examples
    --------
    >>> ledger = Ledger()
    >>> ledger
    <Ledger :memory: writer open>
    >>> ledger.streams().columns.tolist()
    ['stream_ref', 'kind', 'mode', 'status', 'opened_at', 'settled_at', 'reason', 'terminal']
    >>> endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
    >>> ledger.sql(endless + "SELECT count(*) FROM n", timeout_s=0.2)
    Traceback (most recent call last):
    ...
    streamnb._errors.LedgerTimeoutError: the ledger read was stopped after 0.2 s (out of time: ...
    >>> import asyncio
    >>> asyncio.run(ledger.asql("SELECT count(*) AS n FROM streams"))
       n
    0  0
    >>> ledger.close()

    A re-run cell: the second ledger on the file takes it over from the first.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "runs.db")
    >>> first = Ledger(path)
    >>> second = Ledger(path)
    >>> first, second
    (<Ledger ...runs.db writer closed>, <Ledger ...runs.db writer open>)
    >>> second.close()
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        record_frames: bool = False,
        read_only: bool | None = None,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        query_timeout_s: float | None = DEFAULT_QUERY_TIMEOUT_S,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        query_timeout_s = check_timeout(query_timeout_s)  # checked before any takeover
        #: the takeover key (the file's real path) while this ledger writes a file
        self._key: str | None = None
        checked: str | None = None
        self._backend: SQLiteBackend | PostgresBackend
        if is_postgres_url(path):
            from .postgres import PostgresBackend

            assert isinstance(path, str)
            # PostgreSQL has many writers: nothing to take over on a re-run
            self._backend = PostgresBackend(
                path,
                record_frames=record_frames,
                read_only=read_only,
                busy_timeout_s=busy_timeout_s,
                query_timeout_s=query_timeout_s,
                lease_s=lease_s,
            )
        else:
            checked = None if path is None else check_path(path)
            adopted = None
            if checked is not None and read_only is not True:
                adopted = _take_over(_takeover.file_key(checked))
            self._backend = SQLiteBackend(
                checked,
                record_frames=record_frames,
                read_only=read_only,
                busy_timeout_s=busy_timeout_s,
                lock=adopted,
                query_timeout_s=query_timeout_s,
            )
        # dropped without close(): stop the writer and release the file lock when collected
        # (the backend holds no reference back to this object)
        self._finalizer = weakref.finalize(self, self._backend.close)
        try:
            recovered = self._backend.recover()
        except BaseException:
            self._finalizer()
            raise
        #: refs of the streams a dead process left running, settled ``runtime_lost`` at open
        self.recovered: list[str] = recovered
        if checked is not None and not self._backend.read_only:
            self._key = _takeover.file_key(checked)
            _takeover.register("ledger", self._key, self)

    # --- what it is -------------------------------------------------------------------------

    @property
    def backend(self) -> LedgerBackend:
        """The storage backend the runtime writes through; not needed for queries."""
        return self._backend

    @property
    def path(self) -> str | None:
        """The SQLite file, or None for an in-memory (or a PostgreSQL) ledger."""
        return self._backend.path

    @property
    def dsn(self) -> str | None:
        """A PostgreSQL ledger's URL without its password (None for SQLite)."""
        backend = self._backend
        return None if isinstance(backend, SQLiteBackend) else backend.where

    @property
    def shared(self) -> bool:
        """True if other processes can share this ledger's streams (PostgreSQL)."""
        return not isinstance(self._backend, SQLiteBackend)

    @property
    def record_frames(self) -> bool:
        """True if every outbound frame is stored (see :meth:`frames`)."""
        return self._backend.record_frames

    @property
    def read_only(self) -> bool:
        """True if this ledger only reads (another live process writes the file)."""
        return self._backend.read_only

    @property
    def busy_timeout_s(self) -> float:
        """How long SQLite waits for a lock held by another connection, seconds."""
        return self._backend.busy_timeout_s

    @property
    def query_timeout_s(self) -> float | None:
        """The time limit of a query that gives no ``timeout_s``, seconds (None: no limit)."""
        return self._backend.query_timeout_s

    def close(self) -> None:
        """Finish queued writes, close the connections (and release a file's lock).

        Idempotent. Queries after ``close`` raise :class:`~streamnb.LedgerError`.
        """
        self._finalizer()
        if self._key is not None:
            _takeover.release("ledger", self._key, self)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        backend = self._backend
        mode = "read-only" if backend.read_only else "writer"
        return f"<Ledger {backend.where} {mode} {backend.state.value}>"

    # --- queries (each blocks its caller; the a* twins below are awaitable) ------------------

    def events(
        self,
        kind: str | None = None,
        stream_ref: str | None = None,
        *,
        timeout_s: float | None = None,
    ) -> pd.DataFrame:
        """Events committed by handlers, oldest first.

        Parameters
        ----------
        kind, stream_ref : str, optional
            Keep only events of this kind / of this stream.
        timeout_s : float, optional
            Stop the query after this many seconds (default :attr:`query_timeout_s`).

        Returns
        -------
        pandas.DataFrame
            Columns ``id`` (int64), ``stream_ref`` (object), ``kind`` (object),
            ``payload`` (object: parsed JSON), ``created_at`` (datetime64[ns, UTC]).

        Raises
        ------
        LedgerError
            A filter is not a str, or the ledger is closed.
        LedgerTimeoutError
            The query ran longer than ``timeout_s``.
        """
        return queries.events(self._backend, kind, stream_ref, self._limit(timeout_s))

    def streams(
        self, kind: str | None = None, status: str | None = None, *, timeout_s: float | None = None
    ) -> pd.DataFrame:
        """The runtime's record of every stream, in the order they were opened.

        Parameters
        ----------
        kind, status : str, optional
            Keep only streams of this kind / with this status.
        timeout_s : float, optional
            Stop the query after this many seconds (default :attr:`query_timeout_s`).

        Returns
        -------
        pandas.DataFrame
            Columns ``stream_ref, kind, mode, status`` (object; status is
            ``running`` until settled, then the terminal kind), ``opened_at``,
            ``settled_at`` (datetime64[ns, UTC], NaT while running), ``reason``
            (object) and ``terminal`` (object: the parsed terminal value).

        Raises
        ------
        LedgerError
            A filter is not a str, or the ledger is closed.
        LedgerTimeoutError
            The query ran longer than ``timeout_s``.
        """
        return queries.streams(self._backend, kind, status, self._limit(timeout_s))

    def frames(
        self, stream_ref: str | None = None, *, timeout_s: float | None = None
    ) -> pd.DataFrame:
        """Recorded frames (``record_frames=True``), by stream then seq, as a DataFrame.

        Returns
        -------
        pandas.DataFrame
            Columns ``stream_ref, seq`` (int64), ``kind, channel``, ``payload``
            and ``terminal`` (parsed JSON), ``reason, error``, ``at``
            (datetime64[ns, UTC]). Empty, with these columns, when frames are
            not recorded.

        Raises
        ------
        LedgerTimeoutError
            The query ran longer than ``timeout_s`` (default :attr:`query_timeout_s`).
        """
        return queries.frames(self._backend, stream_ref, self._limit(timeout_s))

    def frame_log(
        self,
        stream_ref: str,
        *,
        after_seq: int = -1,
        limit: int | None = None,
        timeout_s: float | None = None,
    ) -> list[Frame]:
        """Recorded frames of one stream as a list of :class:`~streamnb.Frame`, by seq.

        The same rows as ``frames(stream_ref)``, as the objects observers receive
        (e.g. to replay them, or to project them with ``project_attached_stream``).
        ``after_seq`` and ``limit`` read a page: the frames with ``seq > after_seq``,
        at most ``limit`` of them. ``timeout_s`` as for :meth:`frames`.
        """
        return queries.frame_log(
            self._backend, stream_ref, self._limit(timeout_s), after_seq, limit
        )

    def sql(
        self,
        query: str,
        params: Sequence[Any] | Mapping[str, Any] = (),
        *,
        timeout_s: float | None = None,
    ) -> pd.DataFrame:
        """Run a read-only SQL query and return its rows as a DataFrame.

        Parameters
        ----------
        query : str
            One SQLite ``SELECT`` (or ``WITH ... SELECT``) over ``streams``,
            ``events`` and ``frames``. Use ``?`` or ``:name`` placeholders.
        params : sequence or dict
            Values for the placeholders.
        timeout_s : float, optional
            Stop the query after this many seconds (default :attr:`query_timeout_s`);
            ``float("inf")`` for no limit.

        Raises
        ------
        LedgerQueryError
            The statement failed or tried to change the ledger (nothing changes).
        LedgerTimeoutError
            It ran longer than ``timeout_s`` and was stopped (nothing changes;
            settlements went on meanwhile).

        Examples
        --------
        >>> with Ledger() as ledger:
        ...     ledger.sql("SELECT count(*) AS n FROM streams WHERE status = ?", ["running"])
           n
        0  0
        """
        return queries.sql(self._backend, query, params, self._limit(timeout_s))

    def stream_status(self, stream_ref: str, *, timeout_s: float | None = None) -> str | None:
        """The ``streams.status`` of one stream, or None if the ledger has no such row."""
        return queries.stream_status(self._backend, stream_ref, self._limit(timeout_s))

    # --- the same queries, awaitable (off the event loop) ---------------------------------

    async def aevents(
        self,
        kind: str | None = None,
        stream_ref: str | None = None,
        *,
        timeout_s: float | None = None,
    ) -> pd.DataFrame:
        """:meth:`events`, awaitable: runs off the event loop; cancelling stops the query."""
        limit = self._limit(timeout_s)
        return await self._backend.run_read(
            lambda: queries.events(self._backend, kind, stream_ref, limit)
        )

    async def astreams(
        self, kind: str | None = None, status: str | None = None, *, timeout_s: float | None = None
    ) -> pd.DataFrame:
        """:meth:`streams`, awaitable: runs off the event loop; cancelling stops the query."""
        limit = self._limit(timeout_s)
        return await self._backend.run_read(
            lambda: queries.streams(self._backend, kind, status, limit)
        )

    async def aframes(
        self, stream_ref: str | None = None, *, timeout_s: float | None = None
    ) -> pd.DataFrame:
        """:meth:`frames`, awaitable: runs off the event loop; cancelling stops the query."""
        limit = self._limit(timeout_s)
        return await self._backend.run_read(
            lambda: queries.frames(self._backend, stream_ref, limit)
        )

    async def aframe_log(
        self,
        stream_ref: str,
        *,
        after_seq: int = -1,
        limit: int | None = None,
        timeout_s: float | None = None,
    ) -> list[Frame]:
        """:meth:`frame_log`, awaitable: runs off the event loop; cancelling stops the query."""
        time_limit = self._limit(timeout_s)
        return await self._backend.run_read(
            lambda: queries.frame_log(self._backend, stream_ref, time_limit, after_seq, limit)
        )

    async def asql(
        self,
        query: str,
        params: Sequence[Any] | Mapping[str, Any] = (),
        *,
        timeout_s: float | None = None,
    ) -> pd.DataFrame:
        """:meth:`sql`, awaitable: runs off the event loop; cancelling stops the query.

        Examples
        --------
        In a notebook cell: ``df = await runtime.ledger.asql("SELECT ...")``.
        """
        limit = self._limit(timeout_s)
        return await self._backend.run_read(
            lambda: queries.sql(self._backend, query, params, limit)
        )

    async def astream_status(
        self, stream_ref: str, *, timeout_s: float | None = None
    ) -> str | None:
        """:meth:`stream_status`, awaitable: runs off the event loop."""
        limit = self._limit(timeout_s)
        return await self._backend.run_read(
            lambda: queries.stream_status(self._backend, stream_ref, limit)
        )

    def _limit(self, timeout_s: float | None) -> float | None:
        """A per-call limit, checked; None keeps the backend's ``query_timeout_s``."""
        if timeout_s is None:
            return None
        check_timeout(timeout_s)
        return float(timeout_s)  # inf stays inf here: the backend reads it as "no limit"


def _take_over(key: str) -> WriterLock | None:
    """Close what this process has open on the file ``key`` (a re-run cell): the runtime
    writing it (its running streams settle ``cancelled``/``replaced``), then the ledger.

    Returns the previous ledger's writer lock when its runtime is still settling streams
    on the running loop (see :mod:`streamnb._takeover`): the new ledger writes with that
    lock at once, and the previous one closes when its runtime has closed.
    """
    runtime = _takeover.current("runtime", key)
    winding = None if runtime is None else runtime._replace()
    previous: Ledger | None = _takeover.current("ledger", key)
    if previous is None:
        return None
    if winding is None:
        previous.close()
        return None
    backend = previous._backend
    assert isinstance(backend, SQLiteBackend)  # only file ledgers are registered
    lock = backend.hand_over_lock()
    winding.add_done_callback(lambda _: previous.close())
    return lock
