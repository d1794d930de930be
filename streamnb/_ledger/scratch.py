"""Where an in-memory ledger keeps its tables: a private scratch file, deleted when it closes.

An in-memory ledger (``Ledger()``) must still answer queries on connections of
their own, off the writer thread, without ever blocking a settlement. SQLite's
in-memory databases cannot give that: a private ``:memory:`` database has one
connection; a shared-cache one (``file::memory:?cache=shared``) serializes its
connections on one cache, so a long read blocks the writer (or reads
uncommitted rows with ``read_uncommitted``); a ``memdb`` database uses rollback
locking, where a reader holds back the writer's commit. WAL mode does: readers
see the last committed snapshot and never block the writer. WAL needs a file, so
an in-memory ledger is a WAL database in a private directory of the temporary
directory (``synchronous=OFF``: it never needs to survive a crash), removed when
the ledger closes, is collected, or the process exits.

A process killed with SIGKILL cannot remove its directory; each directory holds
a lock file its process keeps ``flock``-ed, and the next in-memory ledger of any
process removes the directories whose lock nobody holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile

__all__ = ["ScratchFile"]

_PREFIX = "streamnb-memory-ledger-"
_PENDING = "streamnb-new-ledger-"


class ScratchFile:
    """A fresh directory holding ``ledger.db`` for one in-memory ledger."""

    def __init__(self) -> None:
        root = tempfile.gettempdir()
        _remove_stale(root)
        # made under another name and renamed once locked, so no other process can take
        # it for a dead one's in between
        pending = tempfile.mkdtemp(prefix=_PENDING, dir=root)
        self._fd: int | None = os.open(os.path.join(pending, "lock"), os.O_RDWR | os.O_CREAT)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.dir = os.path.join(root, _PREFIX + os.path.basename(pending)[len(_PENDING) :])
        os.rename(pending, self.dir)
        self.path = os.path.join(self.dir, "ledger.db")

    def remove(self) -> None:
        """Delete the directory and its files (idempotent)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def _remove_stale(root: str) -> None:
    """Remove scratch directories of dead processes (their lock is free)."""
    try:
        names = [n for n in os.listdir(root) if n.startswith(_PREFIX)]
    except OSError:
        return
    for name in names:
        path = os.path.join(root, name)
        try:
            fd = os.open(os.path.join(path, "lock"), os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live process holds it
        finally:
            os.close(fd)
        shutil.rmtree(path, ignore_errors=True)
