"""Sessions: observers attached to a stream (read ``output``, ``send``, ``cancel``, ``detach``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._frames import Frame
from ._stream import CancelResult, SendResult, StreamInfo, _Output, _Stream

if TYPE_CHECKING:  # annotation only: the runtime imports this module, not the reverse
    from ._runtime import StreamRuntime

__all__ = ["CancelResult", "SendResult", "Session", "StreamInfo"]


class Session:
    """An observer attached to a stream: reads ``output``, may ``send``, ``cancel``, ``detach``.

    Sessions come from :meth:`StreamRuntime.attach` and :meth:`StreamRuntime.reattach`.
    ``display(session)`` in Jupyter shows a :class:`~streamnb.StreamWidget`.
    """

    __slots__ = ("_detached", "_output", "_rt", "_st", "kind", "mode", "stream_ref")

    def __init__(self, rt: StreamRuntime, st: _Stream, start_seq: int) -> None:
        self._rt = rt
        self._st = st
        self.stream_ref = st.ref
        self.kind = st.handler.kind
        self.mode = st.handler.mode
        self._output = _Output(st, start_seq)
        self._detached = False
        st.add_observer()

    @property
    def runtime(self) -> StreamRuntime:
        """The runtime this session belongs to."""
        return self._rt

    @property
    def output(self) -> _Output:
        """Outbound frames as one async iterator, consumed as it is read.

        It yields :class:`~streamnb.Frame` objects in ``seq`` order, starting
        with ``opened`` (seq 0) for a fresh attach, and stops after the
        terminal frame or when this session detaches.
        """
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
        return self._detached

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
        """
        self._st.owner.check_loop()
        return self._st.accept_input(frame)

    async def cancel(self, reason: str = "cancelled") -> CancelResult:
        """Ask the stream to stop (cooperative cancel, seed 000's Stop).

        Returns at once: ``"requested"`` the first time, ``"already_requested"``
        after that, ``"already_settled"`` once the stream has ended.
        The terminal frame follows on ``output``.

        Raises
        ------
        InvalidFrameError
            ``reason`` is not a str, or not valid Unicode text (nothing changes).
        """
        self._st.owner.check_loop()
        return self._st.request_cancel(reason)

    async def detach(self) -> None:
        """Stop observing: ``output`` ends. Not a cancel (seed 001).

        If this was the last observer of an ``on_detach="abort"`` stream, the
        stream is cancelled with reason ``"detached"``. Idempotent.
        """
        self._st.owner.check_loop()
        self._detach_now()

    def _detach_now(self) -> None:
        if self._detached:
            return
        self._detached = True
        self._output._close()
        self._st.remove_observer()

    async def wait(self, timeout_s: float | None = None) -> Frame:
        """Wait until the stream settles and return its terminal frame.

        Does not consume ``output``. Raises :class:`~streamnb.StreamTimeoutError`
        after ``timeout_s`` seconds (the stream keeps running).
        """
        self._st.owner.check_loop()
        return await self._st.wait(timeout_s)

    def frame_log(self) -> list[Frame]:
        """Every retained outbound frame so far, as a list (a snapshot; ``output`` stays)."""
        return self._st.frame_log()

    def __repr__(self) -> str:
        return (
            f"<Session {self.stream_ref} kind={self.kind!r} mode={self.mode} status={self.status}>"
        )

    def _ipython_display_(self) -> None:  # pragma: no cover - exercised in Jupyter tests
        from IPython.display import display

        from .widget import StreamWidget

        display(StreamWidget(self))  # type: ignore[no-untyped-call]
