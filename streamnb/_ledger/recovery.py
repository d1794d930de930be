"""Recovery of a SQLite file ledger whose writer died: the lock file and ``runtime_lost``.

A file ledger's writer holds an exclusive ``flock`` on ``<path>.lock`` for as long
as it is open; the operating system drops the lock when the process dies, however
it dies. So opening a file for writing *and getting the lock* proves no live
runtime writes it: every stream still ``running`` there belonged to a dead process
and can never settle, and is settled ``failed`` with reason ``runtime_lost``
(terminal ``{"ok": false, "runtime_lost": true}``). A second process that finds the
lock taken opens the file read-only; the holder wrote its process id into the lock
file, so errors can name it. (A second ``Ledger`` on the same file *in the same
process* takes the file over instead, see :mod:`streamnb._takeover`.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time

from .._errors import LedgerBusyError, LedgerError
from .._json import dumps

__all__ = [
    "RUNTIME_LOST_TERMINAL",
    "WriterLock",
    "read_holder_pid",
    "recover_lost_streams",
    "write_holder_pid",
]

RUNTIME_LOST_TERMINAL = {"ok": False, "runtime_lost": True}


class WriterLock:
    """The exclusive lock on ``<path>.lock`` that makes one process a file's writer.

    Attributes
    ----------
    holder_pid : int or None
        After :meth:`acquire` found the lock taken: the process id the holder wrote
        into the lock file (None if it could not be read).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.holder_pid: int | None = None
        self._fd: int | None = None

    def acquire(self, required: bool) -> bool:
        """Take the lock; False if a live process holds it.

        Raises
        ------
        LedgerBusyError
            ``required`` and another live process holds it.
        LedgerError
            The directory does not exist or the lock file cannot be created.
        """
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise LedgerError(
                f"cannot open ledger {self.path!r}: directory {parent!r} does not exist"
            )
        lock_path = self.path + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerError(
                f"cannot open ledger {self.path!r}: cannot create its lock file "
                f"{lock_path!r} ({exc.strerror}); choose a writable directory "
                "or open it with read_only=True"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.holder_pid = read_holder_pid(fd)
            os.close(fd)
            if required:
                raise LedgerBusyError(self.path, self.holder_pid) from None
            return False
        write_holder_pid(fd)
        self._fd = fd
        return True

    def release(self) -> None:
        """Give the lock up (idempotent)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                os.close(self._fd)
            self._fd = None


def write_holder_pid(fd: int) -> None:
    """Write this process's id into a lock file it just locked (best effort)."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)


def read_holder_pid(fd: int) -> int | None:
    """The process id written into a lock file by its holder, or None."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def recover_lost_streams(conn: sqlite3.Connection) -> list[str]:
    """Settle every ``running`` stream ``failed``/``runtime_lost``; return their refs.

    Only call this holding the :class:`WriterLock` (no live writer exists).
    """
    rows = conn.execute("SELECT stream_ref FROM streams WHERE status='running'").fetchall()
    if not rows:
        return []
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "UPDATE streams SET status='failed', reason='runtime_lost', settled_at=?, "
        "terminal=? WHERE status='running'",
        (time.time(), dumps(RUNTIME_LOST_TERMINAL)),
    )
    conn.execute("COMMIT")
    return [r[0] for r in rows]
