"""Connecting to PostgreSQL the streamnb way: a DSN whose password never shows, clear errors.

:class:`Dsn` holds a connection string (a ``postgresql://`` URL or libpq
``key=value`` pairs) and shows only a *safe* form of it, the URL without its
password and query string (``postgresql://user@host:5432/db``), in ``repr``,
messages and logs. :func:`connect` opens one psycopg connection and translates
psycopg's errors into :class:`~streamnb.LedgerUnavailableError` naming the host
(the password is also scrubbed from any text that reaches a message, in case a
driver ever echoed it). psycopg is imported here, on first use only: the core
imports and runs without it (it is the optional extra ``streamnb[postgres]``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._errors import LedgerError, LedgerUnavailableError

if TYPE_CHECKING:
    import psycopg

__all__ = ["CONNECT_TIMEOUT_S", "Dsn", "connect", "is_postgres_url", "require_psycopg"]

#: how long opening one connection may take before it counts as unreachable, seconds
CONNECT_TIMEOUT_S = 10.0
#: libpq keys that carry a secret (never shown)
_SECRET_KEYS = ("password", "sslpassword")


def is_postgres_url(text: object) -> bool:
    """True for a ``postgresql://`` or ``postgres://`` URL (what selects the PostgreSQL ledger)."""
    return isinstance(text, str) and text.lower().startswith(("postgresql://", "postgres://"))


def require_psycopg() -> None:
    """Raise :class:`~streamnb.LedgerError` saying how to install psycopg, if it is missing."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise LedgerError(
            "a PostgreSQL ledger needs psycopg 3: pip install 'streamnb[postgres]' "
            "(psycopg[binary] and psycopg-pool)"
        ) from exc


class Dsn:
    """A PostgreSQL connection string whose password is never shown.

    Parameters
    ----------
    text : str
        ``postgresql://user:password@host:port/dbname?param=value`` or libpq
        ``key=value`` pairs.

    Attributes
    ----------
    safe : str
        ``postgresql://user@host:port/dbname``: for ``repr``, logs and messages.
    host : str
        The host (or socket directory) it connects to, as given (``localhost``
        when none is).

    Raises
    ------
    LedgerError
        The string cannot be parsed (the message does not repeat it).

    Examples
    --------
    >>> dsn = Dsn("postgresql://app:hunter2@db.example:5433/ledger?sslmode=require")
    >>> dsn
    <Dsn postgresql://app@db.example:5433/ledger>
    >>> dsn.host, "hunter2" in repr(dsn) + dsn.safe + str(dsn)
    ('db.example', False)
    >>> dsn.scrub("login failed for hunter2")
    'login failed for ***'
    """

    __slots__ = ("_params", "_secrets", "host", "safe")

    def __init__(self, text: str) -> None:
        require_psycopg()
        from psycopg.conninfo import conninfo_to_dict

        if not isinstance(text, str) or not text.strip():
            raise LedgerError("a PostgreSQL ledger needs a non-empty DSN (postgresql://...)")
        try:
            params = conninfo_to_dict(text)
        except Exception:  # psycopg.ProgrammingError; its text may quote the DSN
            raise LedgerError(
                "cannot parse the PostgreSQL DSN (the text is not repeated here: it may hold a "
                "password); write it as postgresql://user:password@host:port/dbname"
            ) from None
        self._params: dict[str, Any] = params
        self._secrets = tuple(
            str(params[k]) for k in _SECRET_KEYS if params.get(k) not in (None, "")
        )
        self.host = str(params.get("host") or os.environ.get("PGHOST") or "localhost")
        user = params.get("user")
        port = params.get("port")
        dbname = params.get("dbname")
        self.safe = (
            "postgresql://"
            + (f"{user}@" if user else "")
            + self.host
            + (f":{port}" if port else "")
            + (f"/{dbname}" if dbname else "")
        )

    @property
    def params(self) -> dict[str, Any]:
        """The libpq parameters (a copy; holds the password: never print it)."""
        return dict(self._params)

    def scrub(self, text: str) -> str:
        """``text`` with every secret of this DSN replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def __repr__(self) -> str:
        return f"<Dsn {self.safe}>"

    def __str__(self) -> str:
        return self.safe


def connect(
    dsn: Dsn,
    *,
    autocommit: bool = False,
    read_only: bool = False,
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> psycopg.Connection[tuple[Any, ...]]:
    """One new connection to ``dsn``.

    Raises
    ------
    LedgerUnavailableError
        The server cannot be reached or refused the login (the message names
        the host and user, never the password).
    """
    import psycopg

    params = dsn.params
    params.setdefault("connect_timeout", max(1, round(timeout_s)))
    params.setdefault("application_name", "streamnb")
    if read_only:
        options = str(params.get("options") or "")
        params["options"] = (options + " -c default_transaction_read_only=on").strip()
    try:
        conn = psycopg.connect(autocommit=autocommit, **params)
    except psycopg.Error as exc:
        raise LedgerUnavailableError(dsn.safe, dsn.host, dsn.scrub(_first_line(exc))) from None
    return conn


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())


def translate(dsn: Dsn, what: str, exc: BaseException) -> LedgerError:
    """A psycopg error met while doing ``what`` as a :class:`~streamnb.LedgerError` (scrubbed)."""
    import psycopg

    why = dsn.scrub(_first_line(exc))
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return LedgerUnavailableError(dsn.safe, dsn.host, why)
    return LedgerError(f"{what} failed on {dsn.safe}: {why}")


def is_disconnect(exc: BaseException, conn: Any = None) -> bool:
    """True if ``exc`` means the connection is gone (server restart, network), not bad SQL."""
    import psycopg

    if conn is not None and (conn.closed or conn.broken):
        return True
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        sqlstate = getattr(exc, "sqlstate", None)
        # admin shutdown / crash shutdown / cannot connect now: the server is going away
        return sqlstate is None or sqlstate.startswith("08") or sqlstate in _GONE_STATES
    return False


_GONE_STATES = frozenset({"57P01", "57P02", "57P03"})


class Backoff:
    """Waits between reconnect attempts: 0.05 s doubling to ``max_s``; interruptible."""

    def __init__(self, stop: threading.Event, max_s: float = 1.0) -> None:
        self._stop = stop
        self._max_s = max_s
        self._next_s = 0.05

    def wait(self) -> bool:
        """Sleep the next interval; False if ``stop`` was set meanwhile."""
        stopped = self._stop.wait(self._next_s)
        self._next_s = min(self._max_s, self._next_s * 2)
        return not stopped

    def reset(self) -> None:
        self._next_s = 0.05


def retry_connect(
    dsn: Dsn,
    stop: threading.Event,
    on_error: Callable[[LedgerError], None] | None = None,
    **kwargs: Any,
) -> psycopg.Connection[tuple[Any, ...]] | None:
    """Connect, retrying with :class:`Backoff` until it works or ``stop`` is set (then None)."""
    backoff = Backoff(stop)
    while not stop.is_set():
        try:
            return connect(dsn, **kwargs)
        except LedgerError as exc:
            if on_error is not None:
                on_error(exc)
            if not backoff.wait():
                return None
    return None
