"""The public :class:`Ledger`: one queryable API over a storage backend (SQLite today)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from .. import _takeover
from .._frames import Frame
from .._sqlite import DEFAULT_BUSY_TIMEOUT_S
from . import queries
from .backend import LedgerBackend
from .recovery import WriterLock
from .sqlite import SQLiteBackend, check_path

__all__ = ["Ledger"]


class Ledger:
    """Durable store of settlements, events and (optionally) frames.

    ``Ledger()`` keeps everything in memory; ``Ledger("runs.db")`` is a SQLite
    file in WAL mode that survives restarts. All SQLite work happens on one writer
    thread per ledger (``streamnb-ledger``), so the event loop never waits on disk
    I/O; a query from a notebook cell blocks only that call. Settlements are
    group-committed, and a runtime announces a terminal frame only after its
    settlement committed. A file ledger's writer holds ``<path>.lock``; opening a
    file no live process holds settles the streams a dead process left ``running``
    as ``failed``/``runtime_lost`` (listed in :attr:`recovered`), and a second
    process that finds the lock taken opens the file read-only.

    Re-running a notebook cell: a second ``Ledger`` on the same file *in the same
    process* (``read_only`` None or False) takes it over: the runtime writing the
    previous one settles its running streams ``cancelled`` with reason
    ``"replaced"`` and closes, the previous ledger closes, and the new one is the
    file's writer. ``Ledger(path, read_only=True)`` only reads and takes nothing over.

    Tables (query them with :meth:`sql`): ``streams`` (the runtime's own record,
    one row per opened stream), ``events`` (what handlers commit with
    ``tx.insert_event``) and ``frames`` (every outbound frame, with
    ``record_frames=True``).

    Parameters
    ----------
    path : str or os.PathLike, optional
        SQLite file to use (WAL mode, created if missing). ``None`` (default)
        keeps the ledger in memory for the life of this object.
    record_frames : bool, default False
        Also store every outbound frame, queryable with :meth:`frames`.
    read_only : bool or None, default None
        ``None`` opens the file for writing if no other live process holds it,
        read-only otherwise; ``True`` always reads only; ``False`` raises
        :class:`~streamnb.LedgerBusyError` when another process holds the file
        (the error names its process id). Within one process, ``None`` and ``False``
        take the file over from an earlier ``Ledger`` (see above).
    busy_timeout_s : float, default 5.0
        How long SQLite waits for a lock held by another connection, seconds.

    Raises
    ------
    LedgerError
        The file cannot be opened or is not a streamnb ledger.
    LedgerBusyError
        ``read_only=False`` and another live process writes the file.

    Examples
    --------
    >>> ledger = Ledger()
    >>> ledger
    <Ledger :memory: writer open>
    >>> ledger.streams().columns.tolist()
    ['stream_ref', 'kind', 'mode', 'status', 'opened_at', 'settled_at', 'reason', 'terminal']
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
    ) -> None:
        checked = None if path is None else check_path(path)
        #: the takeover key (the file's real path) while this ledger writes a file
        self._key: str | None = None
        adopted = None
        if checked is not None and read_only is not True:
            adopted = _take_over(_takeover.file_key(checked))
        self._backend = SQLiteBackend(
            checked,
            record_frames=record_frames,
            read_only=read_only,
            busy_timeout_s=busy_timeout_s,
            lock=adopted,
        )
        try:
            recovered = self._backend.recover()
        except BaseException:
            self._backend.close()
            raise
        #: refs of the streams a dead process left running, settled ``runtime_lost`` at open
        self.recovered: list[str] = recovered
        if checked is not None and not self._backend.read_only:
            self._key = _takeover.file_key(checked)
            _takeover.register("ledger", self._key, self)

    # --- what it is -------------------------------------------------------------------------

    @property
    def backend(self) -> LedgerBackend:
        """The storage backend the runtime writes through (SQLite); not needed for queries."""
        return self._backend

    @property
    def path(self) -> str | None:
        """The SQLite file, or None for an in-memory ledger."""
        return self._backend.path

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

    def close(self) -> None:
        """Finish queued writes, close the SQLite connection and release the file lock.

        Idempotent. Queries after ``close`` raise :class:`~streamnb.LedgerError`.
        """
        self._backend.close()
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

    # --- queries --------------------------------------------------------------------------

    def events(self, kind: str | None = None, stream_ref: str | None = None) -> pd.DataFrame:
        """Events committed by handlers, oldest first.

        Parameters
        ----------
        kind, stream_ref : str, optional
            Keep only events of this kind / of this stream.

        Returns
        -------
        pandas.DataFrame
            Columns ``id`` (int64), ``stream_ref`` (object), ``kind`` (object),
            ``payload`` (object: parsed JSON), ``created_at`` (datetime64[ns, UTC]).

        Raises
        ------
        LedgerError
            A filter is not a str, or the ledger is closed.
        """
        return queries.events(self._backend, kind=kind, stream_ref=stream_ref)

    def streams(self, kind: str | None = None, status: str | None = None) -> pd.DataFrame:
        """The runtime's record of every stream, in the order they were opened.

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
        """
        return queries.streams(self._backend, kind=kind, status=status)

    def frames(self, stream_ref: str | None = None) -> pd.DataFrame:
        """Recorded frames (``record_frames=True``), by stream then seq, as a DataFrame.

        Returns
        -------
        pandas.DataFrame
            Columns ``stream_ref, seq`` (int64), ``kind, channel``, ``payload``
            and ``terminal`` (parsed JSON), ``reason, error``, ``at``
            (datetime64[ns, UTC]). Empty, with these columns, when frames are
            not recorded.
        """
        return queries.frames(self._backend, stream_ref=stream_ref)

    def frame_log(self, stream_ref: str) -> list[Frame]:
        """Recorded frames of one stream as a list of :class:`~streamnb.Frame`, by seq.

        The same rows as ``frames(stream_ref)``, as the objects observers receive
        (e.g. to replay them, or to project them with ``project_attached_stream``).
        """
        return queries.frame_log(self._backend, stream_ref)

    def sql(self, query: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> pd.DataFrame:
        """Run a read-only SQL query and return its rows as a DataFrame.

        Parameters
        ----------
        query : str
            One SQLite ``SELECT`` (or ``WITH ... SELECT``) over ``streams``,
            ``events`` and ``frames``. Use ``?`` or ``:name`` placeholders.
        params : sequence or dict
            Values for the placeholders.

        Raises
        ------
        LedgerQueryError
            The statement failed or tried to change the ledger (nothing changes).

        Examples
        --------
        >>> with Ledger() as ledger:
        ...     ledger.sql("SELECT count(*) AS n FROM streams WHERE status = ?", ["running"])
           n
        0  0
        """
        return queries.sql(self._backend, query, params)

    def stream_status(self, stream_ref: str) -> str | None:
        """The ``streams.status`` of one stream, or None if the ledger has no such row."""
        return queries.stream_status(self._backend, stream_ref)


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
    lock = previous._backend.hand_over_lock()
    winding.add_done_callback(lambda _: previous.close())
    return lock
