"""sqlite3 at the boundary: opening a connection the streamnb way, translating its errors.

Every SQLite database streamnb writes (the ledger, the chat rooms' registry and
room files) is opened by :func:`connect`: autocommit mode (transactions are
explicit ``BEGIN IMMEDIATE``), a ``busy_timeout``, and for files WAL mode with
``synchronous=NORMAL`` (durable against a process crash, which the ledger's
``runtime_lost`` recovery relies on, not against power loss). Every
``sqlite3.Error`` leaves streamnb through :func:`translate_errors`, as the
caller's own :class:`~streamnb.StreamnbError` with the original as ``__cause__``
(also the ``UnicodeEncodeError`` and ``OverflowError`` sqlite3 raises for values it
cannot bind).
(httpx ``map_httpcore_exceptions``.)

Examples
--------
>>> from streamnb._errors import LedgerError
>>> conn = connect(None, schema="CREATE TABLE t (x INTEGER)", error=LedgerError)
>>> conn.execute("PRAGMA busy_timeout").fetchone()
(5000,)
>>> with translate_errors(lambda why: LedgerError(f"cannot read t: {why}")):
...     conn.execute("SELECT y FROM t")
Traceback (most recent call last):
...
streamnb._errors.LedgerError: cannot read t: no such column: y
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ._errors import StreamnbError

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_S",
    "SQLITE_ERRORS",
    "connect",
    "file_uri",
    "read_only_authorizer",
    "translate_errors",
]

#: how long a connection waits for a lock another connection holds, seconds
DEFAULT_BUSY_TIMEOUT_S = 5.0
#: what sqlite3 raises for a statement: its own errors, plus UnicodeEncodeError for text
#: that is not valid Unicode (a lone surrogate) and OverflowError for an int beyond 64 bits
SQLITE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, UnicodeEncodeError, OverflowError)


#: PRAGMAs a read-only connection may run with an argument (they only read)
_READ_PRAGMAS = frozenset(
    {
        "table_info",
        "table_xinfo",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "integrity_check",
        "quick_check",
    }
)
_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


def read_only_authorizer(action: int, arg1: Any, arg2: Any, _db: Any, _trigger: Any) -> int:
    """A ``set_authorizer`` callback that lets a connection read and nothing else.

    ``PRAGMA query_only`` stops writes to the data, but not ``BEGIN`` (which would
    leave a shared connection inside a transaction), ``ATTACH`` and ``VACUUM INTO``
    (which create files), or setting a PRAGMA: this allows ``SELECT`` (with CTEs
    and functions), reading a setting, and the read-only PRAGMAs above.
    """
    if action in _READ_ACTIONS:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_PRAGMA and (arg2 is None or arg1 in _READ_PRAGMAS):
        return sqlite3.SQLITE_OK  # reading a setting; setting one is denied
    return sqlite3.SQLITE_DENY


def file_uri(path: str | os.PathLike[str], **params: str) -> str:
    """An SQLite ``file:`` URI for ``path`` with ``params`` (``mode="ro"``...), properly quoted.

    A path may hold ``?``, ``#`` or ``%`` (``"Project #1.db"``): unquoted, SQLite would
    read them as the query, the fragment or an escape and open another file.

    Examples
    --------
    >>> file_uri("/data/Project #1?.db", mode="ro")
    'file:/data/Project%20%231%3F.db?mode=ro'
    """
    quoted = urllib.parse.quote(os.path.abspath(os.fspath(path)))
    query = urllib.parse.urlencode(params)
    return f"file:{quoted}" + (f"?{query}" if query else "")


@contextmanager
def translate_errors(error: Callable[[str], StreamnbError]) -> Iterator[None]:
    """Re-raise an error of :data:`SQLITE_ERRORS` from the block as ``error(message)``, chained.

    ``error`` gets SQLite's message (``"database or disk is full"``, ``"no such
    table: x"``...) and builds the caller's error around it; the caller's message
    says what was being done and what to do.
    """
    try:
        yield
    except SQLITE_ERRORS as exc:
        raise error(str(exc)) from exc


def connect(
    path: str | os.PathLike[str] | None,
    *,
    schema: str | None = None,
    busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    read_only: bool = False,
    check_same_thread: bool = True,
    error: Callable[[str], StreamnbError],
) -> sqlite3.Connection:
    """Open ``path`` (``None``: a private in-memory database) as streamnb opens every database.

    Parameters
    ----------
    path : str, os.PathLike or None
        The database file; ``None`` for ``:memory:``.
    schema : str, optional
        ``CREATE ... IF NOT EXISTS`` script run once opened (not when ``read_only``).
    busy_timeout_s : float
        Seconds to wait for a lock another connection holds.
    read_only : bool
        Open the existing file with ``mode=ro`` (no WAL switch, no schema).
    check_same_thread : bool
        sqlite3's own check; ``False`` when a lock serialises the threads using it.
    error : callable ``str -> StreamnbError``
        Builds the error raised when the file cannot be opened, from SQLite's
        message; the caller's message names the file and what to do.

    Raises
    ------
    StreamnbError
        Whatever ``error`` builds: the file is not a SQLite database, cannot be
        created, or (``read_only``) cannot be read.
    """
    where = ":memory:" if path is None else os.fspath(path)
    try:
        if path is None:
            conn = sqlite3.connect(
                ":memory:", isolation_level=None, check_same_thread=check_same_thread
            )
        elif read_only:
            conn = sqlite3.connect(
                file_uri(where, mode="ro"),
                uri=True,
                isolation_level=None,
                check_same_thread=check_same_thread,
            )
        else:
            conn = sqlite3.connect(where, isolation_level=None, check_same_thread=check_same_thread)
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        if not read_only:
            if path is not None:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            if schema is not None:
                conn.executescript(schema)
    except sqlite3.DatabaseError as exc:
        raise error(str(exc)) from exc
    return conn
