"""A throwaway PostgreSQL cluster for tests and benchmarks (no mock database).

:class:`Cluster` runs Debian's server binaries (``initdb``, ``pg_ctl``; found
under ``/usr/lib/postgresql/*/bin``, then ``pg_config --bindir``, then ``PATH``)
on a fresh data directory in the temporary directory, listening on 127.0.0.1
and a free port, with its socket in that directory. ``initdb`` refuses to run as
root, so as root every server command runs as the unprivileged ``postgres``
user (created by Debian's package) through ``runuser``; as anyone else it runs
as that user. :meth:`Cluster.stop` stops the server and removes the directory;
it is also registered with :mod:`atexit`, so a failing test run still stops it.

Authentication: ``trust`` for every role from 127.0.0.1 except
:attr:`Cluster.password_role`, which needs its random :attr:`Cluster.password`
(``scram-sha-256``): tests that check a password is never shown log in as it.

Tests isolate themselves with a schema each (:meth:`Cluster.fresh_dsn`): the
DSN sets ``search_path`` through libpq's ``options``, so every unqualified table
streamnb creates lands in that schema.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

__all__ = ["Cluster", "find_bindir", "unavailable_reason"]

#: how long the server may take to start or stop, seconds
START_TIMEOUT_S = 60
#: the database the tests use (created at start)
DATABASE = "streamnb"


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None when there is none."""

    def version(path: str) -> int:
        name = Path(path).parent.parent.name
        return int(name) if name.isdigit() else 0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if candidates:
        return Path(candidates[-1]).parent
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
        bindir = Path(out.stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    initdb = shutil.which("initdb")
    return None if initdb is None else Path(initdb).parent


def unavailable_reason() -> str | None:
    """Why no cluster can be started here (None: it can)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'streamnb[postgres]')"
    if find_bindir() is None:
        return "no PostgreSQL server binaries (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run initdb as"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Cluster:
    """One PostgreSQL server on 127.0.0.1 in a temporary directory (see the module doc).

    Parameters
    ----------
    settings : dict, optional
        Extra ``postgres -c`` settings (e.g. ``{"fsync": "off"}`` for tests).
    """

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError(unavailable_reason() or "no PostgreSQL binaries")
        self.bindir = bindir
        self.settings = {
            "listen_addresses": "127.0.0.1",
            "max_connections": "300",
            "shared_buffers": "64MB",
            **(settings or {}),
        }
        self.dir = Path(tempfile.mkdtemp(prefix="streamnb-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self._as_postgres = os.geteuid() == 0
        #: the role that logs in with a password (all others are trusted from 127.0.0.1)
        self.password_role = "streamnb_pw"
        #: its password (random)
        self.password = "Pw-" + secrets.token_hex(12)
        self._running = False
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        atexit.register(self.stop)

    # --- commands -------------------------------------------------------------------------

    def _cmd(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        return [*prefix, *args]

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> None:
        proc = subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=self.dir
        )
        if proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr}\n{log[-2000:]}"
            )

    def start(self) -> Cluster:
        """initdb (first time) and start the server on a free port; returns self."""
        if not self.data.exists():
            self._run(
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            )
            hba = self.data / "pg_hba.conf"
            hba.write_text(
                "local all all trust\n"
                f"host all {self.password_role} 127.0.0.1/32 scram-sha-256\n"
                "host all all 127.0.0.1/32 trust\n"
            )
        self._start_on_a_free_port()
        self.sql(f"CREATE DATABASE {DATABASE}", database="postgres")
        self.sql(
            f"CREATE ROLE {self.password_role} LOGIN SUPERUSER PASSWORD '{self.password}'",
            database="postgres",
        )
        return self

    def start_server(self) -> None:
        """Start the (stopped) server again on its port."""
        options = " ".join(
            [f"-p {self.port}", f"-k {self.dir}"]
            + [f"-c {k}={v}" for k, v in self.settings.items()]
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(START_TIMEOUT_S),
            "start",
        )
        self._running = True

    def _start_on_a_free_port(self) -> None:
        last: Exception | None = None
        for _ in range(5):  # a free port can be taken by another process in between
            self.port = _free_port()
            try:
                self.start_server()
            except RuntimeError as exc:
                last = exc
                continue
            return
        raise RuntimeError(f"the PostgreSQL server did not start: {last}")

    def restart(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl -m mode``) and start it again on the same port."""
        self.stop_server(mode)
        self.start_server()

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server, keep its data."""
        if self._running:
            self._running = False
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def stop(self) -> None:
        """Stop the server and remove its directory (idempotent)."""
        with contextlib.suppress(Exception):
            self.stop_server("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- connecting ---------------------------------------------------------------------

    def dsn(self, *, user: str = "postgres", password: str | None = None, **params: str) -> str:
        """A ``postgresql://`` URL for the test database (libpq ``params`` as query string)."""
        auth = quote(user, safe="") + ("" if password is None else ":" + quote(password, safe=""))
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())
        url = f"postgresql://{auth}@127.0.0.1:{self.port}/{DATABASE}"
        return url + (f"?{query}" if query else "")

    def fresh_dsn(self, **params: str) -> str:
        """The DSN of a new, empty schema (its own tables, its own streamnb ledger)."""
        schema = "t_" + secrets.token_hex(6)
        self.sql(f"CREATE SCHEMA {schema}")
        return self.dsn(options=f"-csearch_path={schema}", **params)

    def sql(self, statement: str, *, database: str = DATABASE) -> None:
        """Run one statement as the superuser (autocommit)."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True
        ) as conn:
            conn.execute(statement.encode())  # bytes: no placeholder parsing

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until the server accepts connections."""
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
