"""``StreamWidget``: one attached stream in a notebook, with Stop and (for bidi) a message box."""

from __future__ import annotations

import uuid
from typing import Any

import traitlets

from .._errors import UnknownStreamError
from .._runtime import Session, StreamRuntime
from ._assets import STATIC, esm
from ._base import STOP_REASON, LoopWidget
from ._batcher import (
    DEFAULT_FLUSH_INTERVAL_S,
    Follower,
    check_flush_interval,
)
from ._markdown import MarkdownRendering, render_traits
from ._protocol import DeltaMsg, InboundMsg, SnapshotMsg
from ._saved import SavedDisplay, display_bundle, live_bundle, update_bundle
from ._transcript import Bundle, main_channel, stream_bundle

__all__ = ["StreamWidget"]


class StreamWidget(LoopWidget, MarkdownRendering, SavedDisplay):
    """Watch an attached stream in Jupyter: status, progress, text as it arrives, Stop, Send.

    ``display(session)`` shows one of these. Creating it returns at once: a task
    on the runtime's loop (the kernel's loop in Jupyter) reads the stream's
    frame log and sends the new text to the browser in batched deltas, at most
    one per ``flush_interval_s``. It reads through ``runtime.follow``, so it
    never consumes ``session.output``: a cell may still ``await session.wait()``
    or ``read_until_terminal(session.output)``.

    The **Stop** button (or Ctrl+. / Cmd+. anywhere in the widget) calls
    ``session.cancel("user pressed stop")``; the status then reads ``stopping…``
    until the terminal frame arrives, and a stop the runtime had to force (the
    handler ignored the cancel for ``cancel_grace_s``) says so. For ``bidi``
    streams the **Message** box and **Send** button (Enter sends; Escape only leaves
    the box) call ``session.send(text)``, and each message sent to the stream, from
    the widget or from code, is shown above the reply that followed it. Both work
    while the kernel is idle and from a kernel subshell thread. Errors of those calls
    (for example :class:`~streamnb.StreamSettledError`) go to the ``error`` trait,
    which the widget shows. A progress payload with ``fraction`` (0 to 1),
    ``percent`` or ``done``/``total`` is drawn as a progress bar.

    The main text is the ``main_channel``'s; by default the stream's first assistant
    channel (``assistant``, ``assistant.*``), else the first channel it writes (an
    output-only stream writing ``stdout`` shows it). Other channels get a labelled
    section each.

    Saved notebooks: the widget is displayed under a display id of its own; once the
    stream settles (or the widget is closed) its output becomes a static transcript
    (``text/html`` and ``text/plain``: status, messages, text rendered as Markdown
    server-side), which is what a notebook saved afterwards shows without a kernel,
    in ``jupyter nbconvert --to html`` and on GitHub.

    Parameters
    ----------
    session : Session
        From ``runtime.attach`` or ``runtime.reattach``. The widget shows the
        stream from its first retained frame, whatever the session has read.
    render : {"markdown", "text"}, default "markdown"
        ``"markdown"``: assistant channels (``assistant``, ``assistant.*``) render as
        CommonMark + GFM (tables, strikethrough, autolinks, code blocks with a Copy
        button), streamed block by block; other channels (``stdout``, ``tool``, ...) as
        text. ``"text"``: every character as written. Either way raw HTML in the stream
        is shown as text, never interpreted, and links keep only http, https and mailto
        targets. Can be changed later (``widget.render = "text"``).
    flush_interval_s : float, default 0.033
        Seconds between two deltas (0.001 to 5).
    main_channel : str, default ""
        The channel shown as the main text; ``""`` picks it as described above.

    Attributes
    ----------
    stream_ref, kind, mode : str
        The stream's identity.
    status : str
        ``running``, then ``completed``, ``cancelled`` or ``failed`` (the words of
        ``session.status`` and the ledger).
    reason, error : str
        Why the stream ended (for a cancel, the reason given to ``cancel``,
        e.g. ``"user pressed stop"``) and the error; ``error`` also shows a rejected Stop or
        Send (the last error wins). Empty when there is none.
    progress : JSON value
        Payload of the latest ``progress`` frame (None before any).
    final_texts : dict of str to str
        Text per channel, set once when the stream settles, so a saved
        notebook shows the result without a kernel.
    settled : bool
        True once the terminal frame reached the widget.
    stopping : bool
        True from a Stop press (or any cancel) until the stream settled.
    forced : bool
        True when the stream was cancelled by force (``terminal["forced"]``).
    sent : list of dict
        The messages sent to the stream: ``{"text", "offsets"}`` (``offsets``: the
        characters each channel held when it arrived).

    Raises
    ------
    TypeError
        ``session`` is not a :class:`~streamnb.Session`.
    ValueError
        ``flush_interval_s`` is out of range, or ``render`` is not ``"markdown"`` or
        ``"text"``.

    Examples
    --------
    In a notebook, ``display(session)`` (or a cell ending in ``session``) shows
    the widget; here it runs without a front end, as under nbval:

    >>> import streamnb as sn
    >>> from streamnb.demo import chatbot_handler
    >>> runtime = sn.StreamRuntime()
    >>> _ = runtime.register(chatbot_handler())
    >>> async def watch(text):
    ...     session = await runtime.attach("tutorial.streaming_chatbot", {})
    ...     widget = sn.StreamWidget(session)
    ...     await session.send(text)
    ...     return widget, await widget.wait(timeout_s=30)
    >>> widget, status = runtime.run(watch("hello"))
    >>> status, widget.text()
    ('completed', 'streamnb reply to hello')
    >>> widget.final_texts
    {'assistant.delta': 'streamnb reply to hello'}
    >>> widget.close()
    >>> runtime.close()
    """

    _esm = esm("common.js", "widget.js")
    _css = STATIC / "widget.css"

    stream_ref = traitlets.Unicode("").tag(sync=True)
    kind = traitlets.Unicode("").tag(sync=True)
    mode = traitlets.Unicode("output_only").tag(sync=True)
    status = traitlets.Unicode("running").tag(sync=True)
    reason = traitlets.Unicode("").tag(sync=True)
    progress = traitlets.Any(None, allow_none=True).tag(sync=True)
    final_texts = traitlets.Dict(value_trait=traitlets.Unicode()).tag(sync=True)
    settled = traitlets.Bool(False).tag(sync=True)
    stopping = traitlets.Bool(False).tag(sync=True)
    forced = traitlets.Bool(False).tag(sync=True)
    sent = traitlets.List(traitlets.Dict()).tag(sync=True)
    #: the channel shown as the main text ("": the first assistant channel, else the first)
    main_channel = traitlets.Unicode("").tag(sync=True)
    #: ties the browser's per-model text store to its views
    _uid = traitlets.Unicode("").tag(sync=True)
    #: a delta was sent: a model created from now on (page reload) must ask for a snapshot
    _flushed = traitlets.Bool(False).tag(sync=True)

    def __init__(
        self,
        session: Session,
        *,
        render: str = "markdown",
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        **kwargs: Any,
    ) -> None:
        if not isinstance(session, Session):
            raise TypeError(
                f"StreamWidget takes a streamnb Session (from runtime.attach), "
                f"got {type(session).__name__}"
            )
        interval_s = check_flush_interval(flush_interval_s)
        runtime = session.runtime
        super().__init__(
            stream_ref=session.stream_ref,
            kind=session.kind,
            mode=session.mode,
            _uid=uuid.uuid4().hex,
            **render_traits(render),
            **kwargs,
        )
        self._session = session
        self._runtime = runtime
        self._task_prefix = f"streamnb:widget:{session.stream_ref}"
        self._attach_loop(runtime)
        self._frontend_has_text = False
        self._displayed = False
        self._follower = Follower(runtime, session.stream_ref, self._on_flush, interval_s)
        if not self._bridge.call(self._follower.start):
            self.error = "the runtime's event loop is closed; this widget cannot follow the stream"

    # --- public ----------------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The session this widget shows (detached on :meth:`close`)."""
        return self._session

    @property
    def runtime(self) -> StreamRuntime:
        """The runtime the stream runs in."""
        return self._runtime

    @property
    def flush_interval_s(self) -> float:
        """Seconds between two deltas."""
        return self._follower.flush_interval_s

    def text(self, channel: str | None = None) -> str:
        """The stream's text on ``channel`` (default: the main channel) so far, including
        frames not flushed yet."""
        texts = self._follower.live_texts()
        if channel is None:
            channel = main_channel(texts, self.main_channel)
        return texts.get(channel, "") if channel is not None else ""

    def texts(self) -> dict[str, str]:
        """Text per channel so far (see :meth:`text`)."""
        return self._follower.live_texts()

    async def wait(self, timeout_s: float | None = None) -> str:
        """Wait until the terminal frame reached the widget; return the status.

        Raises
        ------
        TimeoutError
            ``timeout_s`` seconds passed first (the stream keeps running).
        """
        await self._follower.wait(timeout_s)
        return self.status

    def __repr__(self) -> str:
        return f"<StreamWidget {self.stream_ref} kind={self.kind!r} status={self.status}>"

    # --- display (see _saved.py) ----------------------------------------------------

    def _ipython_display_(self) -> None:
        """Live while the stream runs; the static transcript once it settled or closed."""
        self._displayed = True
        if not self.settled and not self._closed and self._bridge.on_loop_thread():
            self._follower.catch_up()  # a stream that already ended shows its transcript now
        final = self.settled or self._closed
        display_bundle(self.transcript_bundle() if final else live_bundle(self), self._display_id)

    def transcript_bundle(self, saved: bool = False) -> Bundle:
        """The static transcript (``text/html``, ``text/plain``) a saved notebook shows."""
        texts = self.final_texts if self.settled else self.texts()
        return stream_bundle(
            kind=self.kind,
            status=self.status,
            reason=self.reason,
            forced=self.forced,
            error=self.error,
            progress=self.progress,
            texts=texts,
            sent=self.sent,
            render=self.render,
            preferred_channel=self.main_channel,
        )

    def _show_transcript(self) -> None:
        if self._displayed:
            update_bundle(self.transcript_bundle(), self._display_id)

    @traitlets.observe("render")
    def _rerender_transcript(self, change: Any) -> None:
        if self.settled:
            self._show_transcript()

    # --- kernel side of the buttons ------------------------------------------------

    def _handle(self, msg: InboundMsg) -> None:
        if self._closed:
            return
        if msg["type"] == "hello":
            self._hello()
        elif msg["type"] == "ack":
            self._frontend_has_text = True
        elif msg["type"] == "stop":
            self._spawn(self._stop(), "stop")
        else:
            self._spawn(self._send_text(msg["text"]), "send")

    async def _stop(self) -> None:
        if await self._session.cancel(STOP_REASON) != "already_settled" and not self.settled:
            self.stopping = True

    def _snapshot(self) -> SnapshotMsg:
        return self._follower.snapshot()

    async def _send_text(self, text: str) -> None:
        await self._session.send(text)
        if self.error:
            self.error = ""
        if self._follower.place_inputs():
            self.sent = [dict(m) for m in self._follower.sent]

    def _on_flush(self, delta: DeltaMsg, settled: bool) -> None:
        if self._closed:
            return
        follower = self._follower
        if len(follower.sent) != len(self.sent):  # before the text that followed them
            self.sent = [dict(m) for m in follower.sent]
        self._send_delta(delta)
        with self.hold_sync():
            self._flushed = True
            self.status = follower.status
            self.progress = follower.progress
            terminal = follower.terminal
            if not settled and not self.stopping and self._cancel_requested():
                self.stopping = True
            if settled and terminal is not None:
                self.reason = follower.reason()
                self.forced = isinstance(terminal.terminal, dict) and bool(
                    terminal.terminal.get("forced")
                )
                self.stopping = False
                if terminal.error:
                    self.error = terminal.error
                texts = follower.texts()
                if self._frontend_has_text:
                    # A front end applied every delta and keeps final_texts itself: set the
                    # kernel's value without sending the whole text a second time.
                    with self._lock_property(final_texts=texts):
                        self.final_texts = texts
                else:
                    self.final_texts = texts
                self.settled = True
        if settled:
            self._show_transcript()

    def _cancel_requested(self) -> bool:
        try:
            return self._runtime.info(self.stream_ref).cancel_requested
        except UnknownStreamError:
            return False

    def close(self) -> None:
        """Stop following, detach the session and close the views; an output still live
        becomes the transcript so far (see "Saved notebooks"). Idempotent."""
        was_closed = self._closed
        super().close()
        if not was_closed and not self.settled and hasattr(self, "_follower"):
            self._show_transcript()

    def _shutdown(self) -> None:
        """Stop following, cancel the widget's tasks and detach its session (on the loop)."""
        self._follower.stop()
        for task in list(self._tasks):
            task.cancel()
        # detach() does not suspend; run it as a task so it binds to the running loop.
        self._spawn(self._session.detach(), "detach")
