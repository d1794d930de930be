"""One message budget shared by every streamnb widget of a kernel (issue 16, item 4).

jupyter_server counts every iopub message of a kernel, comm messages included, over
a sliding window (``rate_limit_window``, 3 s) and drops them once they average more
than ``iopub_msg_rate_limit`` (1,000 per second), telling the page "IOPub message rate
exceeded". A widget alone sends at most one delta per ``flush_interval_s`` (about 30
per second), so about 33 widgets streaming at once would pass that limit. The widgets
of one kernel therefore share a :class:`MessageBudget`: a token bucket refilled at
``messages_per_s`` (default 500, half of the server's limit, leaving room for the
cells' own output) that every comm message of a streamnb widget is charged to.

A widget's follower whose text is due for a flush asks the budget for a turn
(:meth:`MessageBudget.request`) instead of flushing; the budget grants turns first come,
first served while it has messages left, and the follower flushes everything that
arrived meanwhile as one delta. A follower is queued at most once, so under pressure
every streaming widget gets the same share of turns (round robin), its deltas grow
instead of multiplying, and no text is ever dropped: 100 widgets streaming at full
speed share 500 messages per second, about 5 deltas each. Messages no follower asks
for (a snapshot for a reloaded page, a Stop's ``stopping`` state, the transcript that
replaces a settled widget's output) are charged without waiting, so the deltas after
them wait a little longer.

There is one budget per event loop: in a kernel, the kernel's loop, which is where every
widget state change happens (see :mod:`streamnb.widget._base`).
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Callable

__all__ = [
    "BURST_S",
    "DEFAULT_MESSAGES_PER_S",
    "MessageBudget",
    "budget_for",
    "message_budget",
]

#: messages per second that all the widgets of a kernel may send together (jupyter_server
#: drops iopub messages above 1,000 per second)
DEFAULT_MESSAGES_PER_S = 500.0
#: seconds of messages a budget holds when full: a widget starting after a quiet spell
#: flushes at once
BURST_S = 0.1

_BUDGETS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, MessageBudget] = (
    weakref.WeakKeyDictionary()
)


def _check_rate(messages_per_s: float) -> float:
    value = float(messages_per_s)
    if not (math.isfinite(value) and 1.0 <= value <= 100_000.0):
        raise ValueError(
            "messages_per_s is the widget messages per second a kernel may send, "
            f"1 to 100000; got {messages_per_s!r}"
        )
    return value


class MessageBudget:
    """A token bucket of widget messages per second, granting flush turns in order.

    Use it on its event loop's thread only.

    Parameters
    ----------
    messages_per_s : float, default 500
        Messages per second granted in the long run (1 to 100,000).

    Attributes
    ----------
    sent : int
        Messages charged so far.
    granted : int
        Turns granted so far.

    Raises
    ------
    ValueError
        ``messages_per_s`` is out of range.

    Examples
    --------
    >>> import asyncio
    >>> async def demo():
    ...     budget = MessageBudget(messages_per_s=10)   # 1 message when full
    ...     order = []
    ...     for name in "abc":
    ...         budget.request(name, lambda name=name: (order.append(name), budget.spend(1)))
    ...     budget.request("a", lambda: order.append("again"))  # already queued: ignored
    ...     await asyncio.sleep(0.35)
    ...     return order
    >>> asyncio.run(demo())
    ['a', 'b', 'c']
    """

    def __init__(self, messages_per_s: float = DEFAULT_MESSAGES_PER_S) -> None:
        self._rate = _check_rate(messages_per_s)
        self._tokens = self.capacity
        self._stamp: float | None = None
        self._queue: dict[object, Callable[[], object]] = {}  # insertion order: FIFO
        self._handle: asyncio.Handle | None = None
        self.sent = 0
        self.granted = 0

    @property
    def messages_per_s(self) -> float:
        """Messages per second granted in the long run; settable (1 to 100,000)."""
        return self._rate

    @messages_per_s.setter
    def messages_per_s(self, value: float) -> None:
        self._refill()
        self._rate = _check_rate(value)
        self._tokens = min(self._tokens, self.capacity)

    @property
    def capacity(self) -> float:
        """Messages the bucket holds when full (``BURST_S`` seconds' worth, at least 1)."""
        return max(1.0, self._rate * BURST_S)

    @property
    def waiting(self) -> int:
        """Requests queued for a turn."""
        return len(self._queue)

    def _refill(self) -> None:
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:  # charged from another thread: refilled on the next turn
            return
        if self._stamp is not None:
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def spend(self, messages: int = 1) -> None:
        """Charge ``messages`` sent (the bucket may go into debt; later turns wait)."""
        self._refill()
        self._tokens -= messages
        self.sent += messages

    def request(self, key: object, flush: Callable[[], object]) -> None:
        """Queue ``flush`` for a turn under ``key`` (no-op if ``key`` is queued already).

        ``flush`` runs on the loop when its turn comes, and should :meth:`spend` what
        it sends. Call on the loop thread.
        """
        if key in self._queue:
            return
        self._queue[key] = flush
        self._schedule()

    def cancel(self, key: object) -> None:
        """Withdraw ``key``'s request, if any."""
        self._queue.pop(key, None)

    def _schedule(self) -> None:
        if self._handle is not None or not self._queue:
            return
        loop = asyncio.get_running_loop()
        self._refill()
        if self._tokens >= 1.0:
            self._handle = loop.call_soon(self._grant)
        else:
            self._handle = loop.call_later((1.0 - self._tokens) / self._rate, self._grant)

    def _grant(self) -> None:
        self._handle = None
        self._refill()
        queue = self._queue
        while queue and self._tokens >= 1.0:
            key = next(iter(queue))
            flush = queue.pop(key)
            self.granted += 1
            flush()
        self._schedule()


def budget_for(loop: asyncio.AbstractEventLoop) -> MessageBudget:
    """The budget of ``loop``'s widgets, made on first use."""
    budget = _BUDGETS.get(loop)
    if budget is None:
        budget = _BUDGETS[loop] = MessageBudget()
    return budget


def message_budget() -> MessageBudget:
    """The message budget every streamnb widget of this kernel shares.

    Call it in a cell (or anywhere the kernel's loop runs). Its ``messages_per_s``
    (default 500) caps the comm messages all the widgets send together, so that
    jupyter_server never drops them (it does above 1,000 per second):
    ``message_budget().messages_per_s = 200`` leaves more room for a notebook that
    prints a lot while its widgets stream.

    Returns
    -------
    MessageBudget

    Raises
    ------
    RuntimeError
        No event loop runs in this thread (outside a kernel cell or ``runtime.run``).

    Examples
    --------
    >>> import asyncio
    >>> async def cell():
    ...     return message_budget().messages_per_s
    >>> asyncio.run(cell())
    500.0
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "message_budget() needs the kernel's running event loop: call it in a cell"
        ) from None
    return budget_for(loop)
