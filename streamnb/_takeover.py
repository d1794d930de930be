"""Re-running a notebook cell: at most one open instance per file or port in this process.

Re-running the cell that made a file ledger, a runtime writing one, a
:class:`~streamnb.ChatRooms` directory or a background server is the most common
notebook habit. The object the cell made last time is usually still open (its
variable was simply rebound), still holding the file's writer lock or the port. So
each of those classes registers its open instances here, keyed by what they hold
(the file's real path, ``(host, port)``), and a new instance for the same key first
*takes over*: the previous one settles its open streams ``cancelled`` with reason
``"replaced"`` (:data:`REPLACED_REASON`), releases what it holds and closes. Another
*process* holding the file is not affected: it still gets the usual error.

Inside a running event loop (a notebook cell runs on the kernel's loop) the previous
instance's streams cannot settle before the constructor returns: settling needs that
very loop, and re-entering it (``nest_asyncio``) would patch asyncio for the whole
kernel. So there the previous instance is wound down by a task (:func:`retire`; its
streams settle as soon as the cell yields to the loop) and hands its file lock
straight to the new instance, which leaves the streams being settled alone (no
``runtime_lost`` recovery for them). Without a running loop (a script) the previous
instance is closed before the constructor returns.

The registry holds weak references, so an instance nobody refers to any more is not
kept alive by it; the wind-down tasks are owned here until they end.

Examples
--------
>>> class Thing:
...     def __init__(self):
...         self.closed = False
>>> first, second = Thing(), Thing()
>>> register("thing", "/tmp/x", first)
>>> current("thing", "/tmp/x") is first
True
>>> register("thing", "/tmp/x", second)
>>> current("thing", "/tmp/x") is second
True
>>> release("thing", "/tmp/x", first)   # not registered any more: nothing happens
>>> release("thing", "/tmp/x", second)
>>> current("thing", "/tmp/x") is None
True
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Hashable
from typing import Any

__all__ = ["REPLACED_REASON", "current", "file_key", "register", "release", "retire"]

logger = logging.getLogger("streamnb")

#: the cancel reason of streams whose runtime, ledger, rooms or server was replaced
REPLACED_REASON = "replaced"

_open: dict[tuple[str, Hashable], weakref.ref[Any]] = {}
_lock = threading.Lock()
#: wind-down tasks of replaced instances, kept until they end
_retiring: set[asyncio.Task[Any]] = set()


def file_key(path: str | os.PathLike[str]) -> str:
    """The key of a file or directory: its real, absolute path (symlinks resolved)."""
    return os.path.realpath(os.fspath(path))


def current(kind: str, key: Hashable) -> Any | None:
    """The live instance registered for ``(kind, key)``, or None."""
    with _lock:
        ref = _open.get((kind, key))
        instance = None if ref is None else ref()
        if ref is not None and instance is None:
            del _open[(kind, key)]
        return instance


def register(kind: str, key: Hashable, instance: Any) -> None:
    """Make ``instance`` the open one for ``(kind, key)`` (replacing any earlier entry)."""
    with _lock:
        _open[(kind, key)] = weakref.ref(instance)


def release(kind: str, key: Hashable, instance: Any) -> None:
    """Forget ``instance`` for ``(kind, key)`` if it is the one registered (it closed)."""
    with _lock:
        ref = _open.get((kind, key))
        if ref is not None and ref() in (instance, None):
            del _open[(kind, key)]


def retire(task: asyncio.Task[Any]) -> None:
    """Own the wind-down ``task`` of a replaced instance until it ends; log its error."""
    _retiring.add(task)

    def done(t: asyncio.Task[Any]) -> None:
        _retiring.discard(t)
        if not t.cancelled() and t.exception() is not None:
            logger.error("closing a replaced streamnb object failed", exc_info=t.exception())

    task.add_done_callback(done)
