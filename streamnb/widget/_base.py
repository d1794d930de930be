"""The kernel side shared by the widgets (``StreamWidget``, ``ChatWidget``, ``ChatRoomsWidget``).

Button messages from the browser may arrive on a kernel subshell thread
(ipykernel 7 / JupyterLab 4.4): they are parsed where they arrive and handed to
the runtime's loop through a :class:`~streamnb.widget._batcher.LoopBridge`; all
widget state changes happen on that loop's thread. Tasks the widget starts are
owned by it (``_tasks``) and cancelled by :meth:`LoopWidget.close`; their errors
are shown in the widget's ``error`` trait instead of being lost. A subclass says how
its inbound messages are checked (:meth:`LoopWidget._parse`, default
:func:`~streamnb.widget._protocol.parse_inbound`), what a malformed one gets back
(:meth:`LoopWidget._refuse`) and what each checked one does (``_handle``, on the loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import anywidget
import traitlets

from .._errors import StreamnbError
from .._runtime import StreamRuntime
from ._batcher import LoopBridge, spawn
from ._budget import budget_for
from ._protocol import parse_inbound

__all__ = ["STOP_REASON", "LoopWidget", "error_text"]

#: the reason a Stop press gives to ``session.cancel``
STOP_REASON = "user pressed stop"
#: the least time between two snapshots sent for "hello" messages, seconds
SNAPSHOT_INTERVAL_S = 0.25


def error_text(exc: BaseException) -> str:
    """What a widget shows for ``exc``: the message of a streamnb or value error, else
    the exception's type and message."""
    if isinstance(exc, (StreamnbError, ValueError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class LoopWidget(anywidget.AnyWidget):
    """Base of the streamnb widgets: messages to the runtime's loop, owned tasks, errors."""

    _closed = False
    #: set once sending to the front end failed (its comm is gone)
    _front_end_gone = False
    #: task names are "<_task_prefix>:<what>"
    _task_prefix = "streamnb:widget"
    #: shown in ``error`` when a message arrives after the runtime's loop closed
    _loop_closed_error = "the runtime's event loop is closed; Stop and Send cannot reach it"

    error = traitlets.Unicode("").tag(sync=True)

    _snapshot_timer: asyncio.TimerHandle | None = None
    _last_snapshot_at = float("-inf")

    def _attach_loop(self, runtime: StreamRuntime) -> None:
        """Bind to ``runtime``'s loop and start listening to the front end's messages."""
        self._bridge = LoopBridge(runtime)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.on_msg(self._on_custom_msg)

    def close(self) -> None:
        """Stop following, cancel the widget's tasks and close its views. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if hasattr(self, "_bridge"):  # not when __init__ failed half way
            self._bridge.call(self._shutdown)
        timer = self._snapshot_timer
        if timer is not None:
            timer.cancel()
            self._snapshot_timer = None
        super().close()

    def _on_custom_msg(self, _widget: object, content: Any, _buffers: object) -> None:
        # May run on a subshell thread: parse here, touch state only on the loop thread.
        try:
            msg = self._parse(content)
        except ValueError as exc:
            self._refuse(content, exc)
            return
        if not self._bridge.call(self._handle, msg):
            self.error = self._loop_closed_error

    def _parse(self, content: Any) -> Any:
        """Check an inbound message (any thread); raise ``ValueError`` if malformed."""
        return parse_inbound(content)

    def _refuse(self, content: Any, exc: ValueError) -> None:
        """Answer a malformed inbound message (any thread): show why in ``error``."""
        self._bridge.call(self._report, exc)

    def _send(self, msg: Any, buffers: Any = None) -> None:
        """Send a comm message (state or custom) and charge it to the kernel's budget."""
        super()._send(msg, buffers)
        bridge: LoopBridge | None = getattr(self, "_bridge", None)
        loop = bridge.loop if bridge is not None else None
        if loop is not None and not loop.is_closed():
            budget_for(loop).spend(1)

    def _send_delta(self, msg: Any) -> None:
        """Send text to the front end; after a failure stop sending it and show why.

        A comm can disappear under a live widget (the kernel's connection to the
        page dropped); the stream itself is unaffected, so the widget keeps
        following it (status and ``final_texts`` still settle) but sends no more
        deltas, and says so once in ``error`` instead of raising on every flush.
        """
        if self._front_end_gone:
            return
        try:
            self.send(msg)
        except Exception as exc:
            self._front_end_gone = True
            self.error = (
                f"the widget could not reach its front end ({type(exc).__name__}: {exc}) and "
                "stopped sending text; the stream goes on: display the session again to watch it"
            )

    def _spawn(
        self,
        coro: Coroutine[Any, Any, Any],
        what: str,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """Run ``coro`` as a task the widget owns; its error goes to ``on_error`` (default
        the ``error`` trait)."""
        spawn(self._tasks, coro, on_error or self._report, f"{self._task_prefix}:{what}")

    def _report(self, exc: BaseException) -> None:
        self.error = error_text(exc)

    def _hello(self) -> None:
        """A view asked for the full state (a page loaded or reloaded); on the loop.

        A snapshot carries the whole text, and every view gets it. The first
        ``hello`` is answered at once; more within :data:`SNAPSHOT_INTERVAL_S`
        share one snapshot sent when the interval ends (it holds everything the
        earlier one did): a page that floods ``hello`` (500 of them queued 101 MB
        of snapshots in a second) gets a few snapshots a second, not one each.
        """
        if self._snapshot_timer is not None:
            return  # a snapshot is on its way: it answers this hello too
        loop = asyncio.get_running_loop()
        wait_s = self._last_snapshot_at + SNAPSHOT_INTERVAL_S - loop.time()
        if wait_s <= 0:
            self._send_snapshot()
        else:
            self._snapshot_timer = loop.call_later(wait_s, self._send_snapshot)

    def _send_snapshot(self) -> None:
        self._snapshot_timer = None
        if self._closed:
            return
        self._last_snapshot_at = asyncio.get_running_loop().time()
        self.send(self._snapshot())

    def _snapshot(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _handle(self, msg: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _shutdown(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
