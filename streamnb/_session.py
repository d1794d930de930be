"""Sessions: observers attached to a stream (read ``output``, ``send``, ``cancel``, ``detach``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._cursor import FrameCursor
from ._errors import OutputConsumedError, SessionDetachedError, WaitInterruptedError
from ._frames import Frame
from ._interrupt import cell_interrupted
from ._lifecycle import Lifecycle
from ._stream import CancelResult, SendResult, StreamInfo, _Stream

if TYPE_CHECKING:  # annotation only: the runtime imports this module, not the reverse
    from ._runtime import StreamRuntime

__all__ = ["CancelResult", "SendResult", "Session", "StreamInfo", "set_display_hook"]

# How display(session) shows a session in Jupyter. The package (streamnb/__init__.py)
# sets it to show a StreamWidget; the core itself imports nothing from Jupyter.
_display_hook: Callable[[Session], None] | None = None


def set_display_hook(hook: Callable[[Session], None]) -> None:
    """Make ``display(session)`` in Jupyter call ``hook(session)``."""
    global _display_hook
    _display_hook = hook


class Session:
    """An observer attached to a stream: reads ``output``, may ``send``, ``cancel``, ``detach``.

    Sessions come from :meth:`StreamRuntime.attach` and :meth:`StreamRuntime.reattach`.
    ``display(session)`` in Jupyter shows a :class:`~streamnb.StreamWidget`.
    After :meth:`detach`, using it (``send``, ``cancel``, ``wait``, ``output``,
    ``frame_log``) raises :class:`~streamnb.SessionDetachedError`.

    Examples
    --------
    >>> import streamnb as sn
    >>> from streamnb.demo import chatbot_handler
    >>> runtime = sn.StreamRuntime()
    >>> handler = runtime.register(chatbot_handler())
    >>> session = runtime.run(runtime.attach("tutorial.streaming_chatbot", {}))
    >>> session.status
    'running'
    >>> runtime.run(session.send("hello"))
    'accepted'
    >>> runtime.run(session.wait(timeout_s=10)).kind
    'completed'
    >>> [f.kind for f in session.frame_log()][:3]
    ['opened', 'progress', 'output']
    >>> runtime.run(session.detach())
    >>> runtime.run(session.send("again"))
    Traceback (most recent call last):
    ...
    streamnb._errors.SessionDetachedError: cannot send: this session detached from stream ...
    >>> runtime.close()
    """

    __slots__ = ("_output", "_rt", "_st", "_state", "kind", "mode", "stream_ref")

    def __init__(self, rt: StreamRuntime, st: _Stream, start_seq: int) -> None:
        self._rt = rt
        self._st = st
        self.stream_ref = st.ref
        self.kind = st.handler.kind
        self.mode = st.handler.mode
        self._output = FrameCursor(st, start_seq)
        self._output.on_interrupt = self._interrupted
        self._state = Lifecycle.OPEN  # CLOSED once detached
        st.add_observer()

    @property
    def runtime(self) -> StreamRuntime:
        """The runtime this session belongs to."""
        return self._rt

    @property
    def output(self) -> FrameCursor:
        """Outbound frames as one async iterator, consumed as it is read.

        It yields :class:`~streamnb.Frame` objects in ``seq`` order, starting
        with ``opened`` (seq 0) for a fresh attach, and stops after the
        terminal frame or when this session detaches (a reader already
        iterating it then sees it end). It is a :class:`~streamnb.FrameCursor`:
        ``output.batches()`` and ``output.read_available()`` take every
        available frame in one step instead.

        In a notebook, interrupting a cell that waits on it (Kernel -> Interrupt)
        detaches this session, so the handler's ``on_detach`` decides what happens
        to the stream, and the cell ends with :class:`~streamnb.WaitInterruptedError`.

        Raises
        ------
        SessionDetachedError
            The session detached: there is no output to read any more.
        OutputConsumedError
            The terminal frame was already read from it (a re-run cell): use
            :meth:`frame_log`, or ``runtime.reattach(ref)`` for a new iterator.
        """
        self._check_attached("read output")
        if self._output.consumed:
            raise OutputConsumedError(self.stream_ref, self.status)
        return self._output

    @property
    def status(self) -> str:
        """``running`` until the stream settled, then its terminal kind.

        (``completed``, ``cancelled`` or ``failed``; the ledger's ``streams.status``
        uses the same words.)
        """
        return self._st.status

    @property
    def terminal(self) -> Frame | None:
        """The terminal frame once the stream settled, else None."""
        return self._st.terminal

    @property
    def detached(self) -> bool:
        """True once :meth:`detach` was called."""
        return self._state is not Lifecycle.OPEN

    def _check_attached(self, action: str) -> None:
        if self._state is not Lifecycle.OPEN:
            raise SessionDetachedError(self.stream_ref, action)

    async def send(self, frame: Any) -> SendResult:
        """Send input to a ``bidi`` stream.

        Parameters
        ----------
        frame : dict, Frame or JSON value
            A full input frame ``{"kind": "input", "seq": 0, "payload": ...}``
            (``stream_ref`` optional, must match) or just the payload. A frame
            whose ``seq`` was already accepted is a retry and is ignored.

        Returns
        -------
        "accepted" or "duplicate"

        Raises
        ------
        InputNotAcceptedError
            The stream is ``output_only``, is being cancelled, or its inbox
            (1024 unread inputs) is full.
        StreamSettledError
            The stream already settled.
        InvalidFrameError
            Malformed frame or non-JSON payload. Nothing is queued.
        SessionDetachedError
            This session detached (``runtime.send(ref, ...)`` still works).
        """
        self._check_attached("send")
        self._st.owner.check_loop()
        return await self._st.send_input(frame)

    async def cancel(self, reason: str = "cancelled") -> CancelResult:
        """Ask the stream to stop (cooperative cancel, seed 000's Stop).

        Returns at once: ``"requested"`` the first time, ``"already_requested"``
        after that, ``"already_settled"`` once the stream has ended.
        The terminal frame follows on ``output``.

        Raises
        ------
        InvalidFrameError
            ``reason`` is not a str, or not valid Unicode text (nothing changes).
        SessionDetachedError
            This session detached (``runtime.cancel(ref)`` still works).
        """
        self._check_attached("cancel")
        self._st.owner.check_loop()
        return await self._st.cancel(reason)

    async def detach(self) -> None:
        """Stop observing: ``output`` ends. Not a cancel (seed 001).

        If this was the last observer of an ``on_detach="abort"`` stream, the
        stream is cancelled with reason ``"detached"``. Idempotent.
        """
        self._st.owner.check_loop()
        if self._state is not Lifecycle.OPEN:
            return
        self._state = Lifecycle.CLOSED
        self._output._close()
        self._st.remove_observer()

    async def wait(self, timeout_s: float | None = None) -> Frame:
        """Wait until the stream settles and return its terminal frame.

        Does not consume ``output``. In a notebook, interrupting the cell that
        waits (Kernel -> Interrupt) detaches this session (``on_detach`` decides the
        stream's fate) and raises :class:`~streamnb.WaitInterruptedError`.

        Raises
        ------
        StreamTimeoutError
            ``timeout_s`` seconds passed first (the stream keeps running).
        SessionDetachedError
            This session detached (``runtime.wait(ref)`` still works).
        WaitInterruptedError
            The notebook cell awaiting this was interrupted.
        """
        self._check_attached("wait")
        self._st.owner.check_loop()
        try:
            return await self._st.wait(timeout_s)
        except asyncio.CancelledError:
            if not cell_interrupted():
                raise
            raise self._interrupted() from None

    def _interrupted(self) -> WaitInterruptedError:
        """A cell waiting on this session was interrupted: detach now, say what followed."""
        st = self._st
        detached = self._state is Lifecycle.OPEN
        if detached:
            self._state = Lifecycle.CLOSED
            self._output._close()
            st.remove_observer()  # on_detach decides, as for any detach
        return WaitInterruptedError(
            self.stream_ref,
            self.kind,
            detached=detached,
            stream_cancelled=st.signal.reason == "detached" and st.terminal is None,
        )

    def frame_log(self) -> list[Frame]:
        """Every retained outbound frame so far, as a list (a snapshot; ``output`` stays).

        Raises
        ------
        SessionDetachedError
            This session detached (``runtime.frame_log(ref)`` still works).
        """
        self._check_attached("read the frame log")
        return self._st.frame_log()

    def __repr__(self) -> str:
        detached = "" if self._state is Lifecycle.OPEN else " detached"
        return (
            f"<Session {self.stream_ref} kind={self.kind!r} mode={self.mode} "
            f"status={self.status}{detached}>"
        )

    def _ipython_display_(self) -> None:  # pragma: no cover - exercised in Jupyter tests
        if _display_hook is None:
            print(repr(self))
        else:
            _display_hook(self)
