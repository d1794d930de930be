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

__all__ = ["ChatWidget"]

StartPayload = Callable[[list[dict[str, Any]]], Any]


class ChatWidget(LoopWidget, MarkdownRendering):
    """A chat in one widget: each message attaches a new ``bidi`` stream of ``kind``.

    Sending a message (Send button, Enter, or :func:`streamnb.testing.press_send`)
    attaches a stream of ``kind`` with the start payload, sends the message to
    it and streams the reply into the transcript. Send is refused while a reply
    is streaming; **Stop** (or Escape) cancels the current reply with reason
    ``"user pressed stop"``. Each finished reply's stream is detached; every
    stream settles in ``runtime.ledger`` as usual. The reply text travels in
    batched deltas like :class:`StreamWidget`'s; the finished transcript is a
    synced trait, so a saved notebook shows the conversation without a kernel.

    Parameters
    ----------
    runtime : StreamRuntime
        Runs the streams; must already be bound to its loop (in Jupyter, created
        or used in the kernel) and have ``kind`` registered.
    kind : str
        A registered handler kind with ``mode="bidi"``.
    start : JSON value or callable, default ``{}``
        The start payload of each stream, or a function of the transcript so
        far (list of ``{"role", "content"}`` dicts) that returns it, so a
        handler can see the history.
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
    >>> chat.close()
    >>> runtime.close()
    """

    _esm = esm("common.js", "chat.js")
    _css = STATIC / "widget.css"
    _task_prefix = "streamnb:chat"

    kind = traitlets.Unicode("").tag(sync=True)
    transcript = traitlets.List(traitlets.Dict()).tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
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
        self._start = {} if start is None else start
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

    # --- kernel side of the buttons ------------------------------------------------

    def _handle(self, msg: InboundMsg) -> None:
        if self._closed:
            return
        if msg["type"] == "hello":
            self._hello()
        elif msg["type"] == "stop":
            self._stop_requested = self.busy
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
            self._stop_requested = False
            self._spawn(self._turn_task(msg["text"]), "turn")

    def _snapshot(self) -> ChatSnapshotMsg:
        f = self._follower
        if f is None:
            return {"type": "snapshot", "upto_seq": -1, "texts": {}, "status": "", "turn": -1}
        return {**f.snapshot(), "turn": self._turn}

    async def _turn_task(self, text: str) -> None:
        try:
            history = [{"role": m["role"], "content": m["content"]} for m in self.transcript]
            start = self._start(history) if callable(self._start) else self._start
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
                if terminal.error:
                    self.error = terminal.error

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
