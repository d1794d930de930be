"""Lifecycle states of streamnb's closable objects (runtime, ledger, session, chat rooms).

Each such object keeps one :class:`Lifecycle` value, moving ``OPEN -> CLOSING ->
CLOSED`` (a session goes straight from ``OPEN`` to ``CLOSED`` when it detaches),
and checks it at the top of every operation: using an object that is no longer
open raises at once, with that object's own :class:`~streamnb.StreamnbError`
saying what to do. (httpx ``ClientState``, anyio ``streams/memory.py``.)

Examples
--------
>>> from streamnb._errors import RuntimeClosedError
>>> state = Lifecycle.OPEN
>>> state.check_open(lambda: RuntimeClosedError("closed; create a new one"))
>>> Lifecycle.CLOSED.check_open(lambda: RuntimeClosedError("closed; create a new one"))
Traceback (most recent call last):
...
streamnb._errors.RuntimeClosedError: closed; create a new one
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from ._errors import StreamnbError

__all__ = ["Lifecycle"]


class Lifecycle(enum.Enum):
    """Where a closable object is in its life."""

    #: usable
    OPEN = "open"
    #: ``close``/``aclose`` is under way: new work is refused, work in flight finishes
    CLOSING = "closing"
    #: closed for good; only reads of what it already holds still work
    CLOSED = "closed"

    def check_open(self, closed_error: Callable[[], StreamnbError]) -> None:
        """Raise ``closed_error()`` unless this is :attr:`OPEN`.

        ``closed_error`` builds the owner's own error (``RuntimeClosedError``,
        ``LedgerError``, ``SessionDetachedError``...), only when it is needed.
        """
        if self is not Lifecycle.OPEN:
            raise closed_error()
