"""``ChatWidget``: a multi-turn chat where every user message opens a new bidi stream."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import traitlets

from .._errors import InvalidFrameError, StreamnbError
from .._frames import check_json
from .._runtime import Session, StreamRuntime
from ._assets import STATIC, esm
from ._base import STOP_REASON, LoopWidget, error_text
from ._batcher import DEFAULT_FLUSH_INTERVAL_S, Follower, check_flush_interval
from ._markdown import MarkdownRendering, render_traits
from ._protocol import ChatDeltaMsg, ChatSnapshotMsg, DeltaMsg, InboundMsg
from ._saved import LiveWithSavedCopy
from ._transcript import Bundle, chat_bundle

__all__ = ["ChatWidget"]

StartPayload = Callable[[list[dict[str, Any]]], Any]


class ChatWidget(LoopWidget, MarkdownRendering, LiveWithSavedCopy):
    """A chat in one widget: each message attaches a new ``bidi`` stream of ``kind``.

    Sending a message (Send button, Enter, or :func:`streamnb.testing.press_send`)
    attaches a stream of ``kind`` with the start payload, sends the message to
    it and streams the reply into the transcript. The default start payload is the
    conversation so far in the OpenAI chat shape, the new message included:
    ``{"messages": [{"role": "user"|"assistant", "content": str}, ...]}`` (assistant
    replies with no text left out), so a handler such as
    :func:`streamnb.providers.chat_handler` answers with the whole conversation in
    mind: a chat with memory in one line. Send is refused while a reply is
    streaming; **Stop** (or Ctrl+. / Cmd+.) cancels the current reply with reason
    ``"user pressed stop"``, the status reads ``stopping…`` until it settled, and a
    forced stop says so. Each finished reply's stream is detached; every stream
    settles in ``runtime.ledger`` as usual. The reply text travels in batched deltas
    like :class:`StreamWidget`'s.

    Saved notebooks: the chat stays live while it is open, so it is displayed as two
    outputs, the widget and a copy of its conversation (``text/html``,
    ``text/plain``) updated after every settled reply; the live view hides the copy
    while it is on the page. A notebook saved meanwhile shows that copy without a
    kernel. :meth:`close` turns the widget's own output into the conversation too.

    Parameters
    ----------
    runtime : StreamRuntime
        Runs the streams; must already be bound to its loop (in Jupyter, created
        or used in the kernel) and have ``kind`` registered.
    kind : str
        A registered handler kind with ``mode="bidi"``.
    start : JSON value or callable, optional
        Overrides the start payload of each stream: a fixed JSON value, or a
        function of the conversation (the list of ``{"role", "content"}`` dicts
        above, ending with the new user message) that returns it. Default:
        ``{"messages": conversation}``.
    render : {"markdown", "text"}, default "markdown"
        ``"markdown"``: the assistant's replies render as CommonMark + GFM (tables,
        strikethrough, autolinks, code blocks with a Copy button), streamed block by
        block; the user's messages stay text. ``"text"``: every character as written.
        Raw HTML is never interpreted either way.
    flush_interval_s : float, default 0.033
        Seconds between two deltas (0.001 to 5).

    Attributes
    ----------
    transcript : list of dict
        ``{"role": "user"|"assistant", "content", "status", "stream_ref"}`` per
        message. A reply being streamed has status ``running`` and empty
        content (its text is in :meth:`reply_text`); both are filled in when
        it settles (``completed``, ``cancelled`` or ``failed``).
    busy : bool
        True while a reply streams (Send is disabled).
    stopping, forced : bool
        Stop was pressed and the reply has not settled yet; the last reply was
        stopped by force.
    status, reason, error : str
        The current (or last) reply's status and terminal reason; the last
        error (empty when none).

    Raises
    ------
    UnknownKindError
        ``kind`` is not registered.
    ValueError
        ``kind`` is not a ``bidi`` handler, ``flush_interval_s`` is out of range, or
        ``render`` is not ``"markdown"`` or ``"text"``.

    Examples
    --------
    Shown by ending a cell with ``chat``; here the Send button is pressed from
    Python (:mod:`streamnb.testing`), as a notebook under nbval does:

    >>> import streamnb as sn
    >>> from streamnb.demo import chatbot_handler
    >>> from streamnb.testing import press_send
    >>> runtime = sn.StreamRuntime()
    >>> _ = runtime.register(chatbot_handler())
    >>> async def chat_once(text):
    ...     chat = sn.ChatWidget(runtime, "tutorial.streaming_chatbot")
    ...     press_send(chat, text)
    ...     return chat, await chat.wait(timeout_s=30)
    >>> chat, status = runtime.run(chat_once("hello"))
    >>> status, [(m["role"], m["content"]) for m in chat.transcript]
    ('completed', [('user', 'hello'), ('assistant', 'streamnb reply to hello')])
    >>> [m["role"] for m in chat.conversation()]   # the next reply's start payload
    ['user', 'assistant']
    >>> chat.close()
    >>> runtime.close()
    """

    _esm = esm("common.js", "chat.js")
    _css = STATIC / "widget.css"
    _task_prefix = "streamnb:chat"

    kind = traitlets.Unicode("").tag(sync=True)
    transcript = traitlets.List(traitlets.Dict()).tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    stopping = traitlets.Bool(False).tag(sync=True)
    forced = traitlets.Bool(False).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    reason = traitlets.Unicode("").tag(sync=True)
    progress = traitlets.Any(None, allow_none=True).tag(sync=True)
    main_channel = traitlets.Unicode("assistant.delta").tag(sync=True)
    _uid = traitlets.Unicode("").tag(sync=True)

    def __init__(
        self,
        runtime: StreamRuntime,
        kind: str,
        *,
        start: Any = None,
        render: str = "markdown",
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        **kwargs: Any,
    ) -> None:
        if not isinstance(runtime, StreamRuntime):
            raise TypeError(f"ChatWidget takes a StreamRuntime, got {type(runtime).__name__}")
        handler = runtime.handler(kind)
        if handler.mode != "bidi":
            raise ValueError(
                f"ChatWidget needs a 'bidi' handler to send messages to; {kind!r} is "
                f"{handler.mode!r}. Show output-only streams with StreamWidget(session)."
            )
        interval_s = check_flush_interval(flush_interval_s)
        super().__init__(kind=kind, _uid=uuid.uuid4().hex, **render_traits(render), **kwargs)
        self._runtime = runtime
        self._start = start
        self._interval = interval_s
        self._session: Session | None = None
        self._follower: Follower | None = None
        self._turn = -1
        self._stop_requested = False
        self._idle: list[asyncio.Future[None]] = []
        self._attach_loop(runtime)

    # --- public ----------------------------------------------------------------------

    @property
    def runtime(self) -> StreamRuntime:
        """The runtime the replies run in."""
        return self._runtime

    @property
    def session(self) -> Session | None:
        """The session of the reply being streamed, or None."""
        return self._session

    def conversation(self) -> list[dict[str, str]]:
        """The transcript in the OpenAI chat shape: ``[{"role", "content"}, ...]``.

        A reply still streaming, or one that ended with no text, is left out.
        """
        return [
            {"role": m["role"], "content": m["content"]}
            for m in self.transcript
            if m["role"] != "assistant" or (m["content"] and m["status"] != "running")
        ]

    def reply_text(self) -> str:
        """The text of the reply being streamed (or the last reply), so far."""
        if self._follower is None:
            return ""
        return self._follower.live_texts().get(self.main_channel, "")

    async def wait(self, timeout_s: float | None = None) -> str:
        """Wait until no reply is streaming; return the last reply's status ('' if none).

        Raises
        ------
        TimeoutError
            ``timeout_s`` seconds passed first.
        """
        if self.busy:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle.append(fut)
            try:
                await asyncio.wait_for(asyncio.shield(fut), timeout_s)
            except asyncio.TimeoutError:
                raise TimeoutError(f"the chat reply did not finish within {timeout_s} s") from None
        return self.status

    def __repr__(self) -> str:
        return f"<ChatWidget kind={self.kind!r} messages={len(self.transcript)} busy={self.busy}>"

    # --- display (see _saved.py): the live chat, and a saved copy of its conversation ---

    def transcript_bundle(self, saved: bool = False) -> Bundle:
        """The conversation as ``text/html`` and ``text/plain`` (what a saved notebook shows).

        ``saved``: the copy shown below the live chat, which its live view hides.
        """
        return chat_bundle(
            kind=self.kind,
            transcript=[m for m in self.transcript if m.get("status") != "running"],
            render=self.render,
            saved_for=self._uid if saved else None,
        )

    @traitlets.observe("render")
    def _rerender_transcript(self, change: Any) -> None:
        self._save_copy()

    # --- kernel side of the buttons ------------------------------------------------

    def _handle(self, msg: InboundMsg) -> None:
        if self._closed:
            return
        if msg["type"] == "hello":
            self._hello()
        elif msg["type"] == "stop":
            self._stop_requested = self.busy
            if self.busy:
                self.stopping = True
            if self._session is not None and self.busy:
                self._spawn(self._session.cancel(STOP_REASON), "stop")
        elif msg["type"] == "ack":
            return  # the transcript is a synced trait; nothing is held back for a chat
        elif self.busy:
            self.error = "a reply is still streaming; press Stop or wait for it to finish"
        elif not msg["text"].strip():
            self.error = "type a message first"
        elif (refused := _refused(msg["text"])) is not None:
            self.error = refused  # nothing opened: the stream would refuse it as input
        else:
            with self.hold_sync():
                self.busy = True  # set now, so a second Send before the task runs is refused
                self.status = "running"
                self.reason = ""
                self.error = ""
                self.stopping = False
                self.forced = False
            self._stop_requested = False
            self._spawn(self._turn_task(msg["text"]), "turn")

    def _snapshot(self) -> ChatSnapshotMsg:
        f = self._follower
        if f is None:
            return {"type": "snapshot", "upto_seq": -1, "texts": {}, "status": "", "turn": -1}
        return {**f.snapshot(), "turn": self._turn}

    async def _turn_task(self, text: str) -> None:
        try:
            conversation = [*self.conversation(), {"role": "user", "content": text}]
            if self._start is None:
                start: Any = {"messages": conversation}
            elif callable(self._start):
                start = self._start(conversation)
            else:
                start = self._start
            session = await self._runtime.attach(self.kind, start)
            self._session = session
            ref = session.stream_ref
            turn = len(self.transcript) + 1
            self._turn = turn
            self.transcript = [
                *self.transcript,
                {"role": "user", "content": text, "status": "sent", "stream_ref": ref},
                {"role": "assistant", "content": "", "status": "running", "stream_ref": ref},
            ]
            follower = Follower(
                self._runtime, ref, lambda d, s: self._on_flush(turn, d, s), self._interval
            )
            self._follower = follower
            follower.start()
            if self._stop_requested:
                await session.cancel(STOP_REASON)
            else:
                try:
                    await session.send(text)
                except StreamnbError as exc:
                    # the stream refused the message (it ended, or is ending, on its own):
                    # stop it, so it settles and the transcript entry gets its final status
                    self.error = error_text(exc)
                    with contextlib.suppress(StreamnbError):
                        await session.cancel("input refused")
            await follower.wait()
            await session.detach()
        finally:
            self._session = None
            self.stopping = False
            self.busy = False
            idle, self._idle = self._idle, []
            for fut in idle:
                if not fut.done():
                    fut.set_result(None)

    def _on_flush(self, turn: int, delta: DeltaMsg, settled: bool) -> None:
        if self._closed:
            return
        msg: ChatDeltaMsg = {**delta, "turn": turn}
        self._send_delta(msg)
        follower = self._follower
        assert follower is not None
        with self.hold_sync():
            self.status = follower.status
            self.progress = follower.progress
            terminal = follower.terminal
            if settled and terminal is not None:
                entries = list(self.transcript)
                entries[turn] = {
                    **entries[turn],
                    "content": follower.texts().get(self.main_channel, ""),
                    "status": terminal.kind,
                }
                self.transcript = entries
                self.reason = follower.reason()
                self.forced = isinstance(terminal.terminal, dict) and bool(
                    terminal.terminal.get("forced")
                )
                if terminal.error:
                    self.error = terminal.error
        if settled:
            self._save_copy()

    def close(self) -> None:
        """Cancel a streaming reply, close the views; the output becomes the conversation
        and the saved copy below it empties (see "Saved notebooks"). Idempotent."""
        was_closed = self._closed
        super().close()
        if not was_closed:
            self._show_closed()

    def _shutdown(self) -> None:
        """Cancel the reply being streamed (if any) and detach it; runs on the loop."""
        if self._follower is not None:
            self._follower.stop()
        session = self._session
        for task in list(self._tasks):
            task.cancel()
        if session is not None:
            self._spawn(self._cancel_and_detach(session), "close")

    async def _cancel_and_detach(self, session: Session) -> None:
        await session.cancel("widget closed")
        await session.detach()


def _refused(text: str) -> str | None:
    """Why the stream would refuse ``text`` as input (a lone surrogate), or None."""
    try:
        check_json(text, "the message")
    except InvalidFrameError as exc:
        return error_text(exc)
    return None
