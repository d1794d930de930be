"""Batching stream frames into widget deltas, and handing work to the runtime's loop.

A :class:`Follower` reads one stream's frame log through ``runtime.follow`` (a
cursor that is not an observer, so the user's ``session.output`` is never
consumed) and folds the frames into text per channel. It wakes once per flush, not
once per frame: a frame after what was flushed asks for a flush, and the flush takes
every frame the log then holds in one slice (a :class:`~streamnb.FrameBatch`, folded
with no object per frame); the terminal is watched apart (``runtime.wait``). It does
not send one message per frame either: the first frame after a quiet spell is flushed
on the next loop turn, later ones at most every ``flush_interval_s``, and the terminal
frame as soon as possible. So a widget sends at most ``1 / flush_interval_s`` deltas per
second whatever the token rate, and each delta carries only the new text. A flush
that is due waits for its turn in the kernel-wide :class:`~streamnb.widget._budget.MessageBudget`
(jupyter_server drops iopub messages above 1000/s, counted for all widgets together):
while it waits, more frames join the same delta.

:class:`LoopBridge` runs a callable on the runtime's loop thread: directly when
already there, else through ``loop.call_soon_threadsafe``. Widget messages may
arrive on a kernel subshell thread (ipykernel 7 with JupyterLab 4.4), and all
widget state is only touched on the loop thread.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import math
from collections.abc import Callable, Coroutine
from typing import Any

from .._cursor import FrameBatch, FrameCursor
from .._errors import UnknownStreamError
from .._frames import Frame
from .._runtime import StreamRuntime
from ._budget import MessageBudget, budget_for
from ._protocol import DeltaMsg, SentMsg, SnapshotMsg

__all__ = [
    "DEFAULT_FLUSH_INTERVAL_S",
    "Follower",
    "LoopBridge",
    "check_flush_interval",
    "input_text",
    "spawn",
]

#: an empty batch: nothing read ahead
_EMPTY = FrameBatch([])
#: seconds between two deltas of one widget (about 30 messages per second)
DEFAULT_FLUSH_INTERVAL_S = 0.033


def check_flush_interval(flush_interval_s: float) -> float:
    """Validate ``flush_interval_s`` (seconds, 0.001 to 5); returns it as a float."""
    value = float(flush_interval_s)
    if not (math.isfinite(value) and 0.001 <= value <= 5.0):
        raise ValueError(
            f"flush_interval_s is seconds between deltas, 0.001 to 5.0; got {flush_interval_s!r}"
        )
    return value


def input_text(payload: Any) -> str:
    """What a widget shows for a sent input: the text, a message's ``content``, else JSON."""
    if isinstance(payload, str):
        return payload
    if isinstance(payload, dict) and isinstance(payload.get("content"), str):
        return str(payload["content"])
    return json.dumps(payload, ensure_ascii=False)


class LoopBridge:
    """Run callables on a runtime's loop thread, from any thread.

    Parameters
    ----------
    runtime : StreamRuntime
        Its loop is looked up at each call. A runtime not bound to a loop yet
        (nothing attached so far) uses the loop that was running when the bridge
        was made, which in Jupyter is the kernel's loop the runtime will bind to.
    """

    __slots__ = ("_fallback", "runtime")

    def __init__(self, runtime: StreamRuntime) -> None:
        self.runtime = runtime
        try:
            self._fallback: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._fallback = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The runtime's loop, else the loop running when the bridge was made, else None."""
        return self.runtime.loop or self._fallback

    @property
    def usable(self) -> bool:
        """True while the loop exists and is not closed."""
        return self.loop is not None and not self.loop.is_closed()

    def on_loop_thread(self) -> bool:
        """True when called from inside the running loop (its own thread)."""
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def call(self, fn: Callable[..., object], *args: Any) -> bool:
        """Run ``fn(*args)`` on the loop thread; returns False if the loop is gone.

        On the loop thread it runs now; from elsewhere it is queued with
        ``call_soon_threadsafe`` (and runs when that loop next runs, which for a
        script's runtime is its next ``runtime.run``).
        """
        loop = self.loop
        if loop is None or loop.is_closed():
            return False
        if self.on_loop_thread():
            fn(*args)
            return True
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # closed between the check and the call
            return False
        return True


class Follower:
    """Fold one stream's frames into text per channel and emit batched deltas.

    Must be used on the runtime's loop thread. ``emit(delta, settled)`` is called
    once per flush with the delta and whether the terminal frame was in it;
    after that the follower's ``status``, ``progress``, ``terminal``, ``sent`` and
    :meth:`texts` describe everything flushed.

    ``sent`` lists the inputs the stream accepted (``runtime.input_log``) whose place
    among the flushed frames is known, each with ``offsets``: how many characters
    (code points) each channel had when it arrived, so a view shows it above the text
    that followed it.

    Parameters
    ----------
    runtime : StreamRuntime
    stream_ref : str
    emit : callable ``(DeltaMsg, bool) -> None``
    flush_interval_s : float
        Seconds between deltas.
    budget : MessageBudget, optional
        Whose turns the flushes wait for; default the running loop's
        (:func:`~streamnb.widget._budget.budget_for`), shared by every widget of the
        kernel.
    """

    def __init__(
        self,
        runtime: StreamRuntime,
        stream_ref: str,
        emit: Callable[[DeltaMsg, bool], None],
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        budget: MessageBudget | None = None,
    ) -> None:
        self.runtime = runtime
        self.budget = budget
        self.stream_ref = stream_ref
        self.flush_interval_s = check_flush_interval(flush_interval_s)
        self.upto_seq = -1
        self.status = "running"
        self.progress: Any = None
        self.terminal: Frame | None = None
        self.deltas_sent = 0
        self._emit = emit
        self._parts: dict[str, list[str]] = {}
        self._pending = _EMPTY  # frames read ahead of a flush (catch_up)
        self._cursor: FrameCursor | None = None  # flushes read the log here (_log_cursor)
        self._timer: asyncio.TimerHandle | None = None
        self._queued = False  # waiting for a turn in the budget
        self._last_flush = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._flushed: list[asyncio.Future[None]] = []  # the reading task, until a flush
        self.sent: list[SentMsg] = []
        self._lengths: dict[str, int] = {}  # flushed characters per channel
        # (upto_seq, characters per channel) after each flush: where a view's stop point is
        self._marks_seq: list[int] = []
        self._marks: list[dict[str, int]] = []
        self._inputs_read = 0
        self._unplaced: list[tuple[int, str]] = []  # (position, text) of inputs not placed yet

    # --- state ------------------------------------------------------------------------

    @property
    def settled(self) -> bool:
        """True once the terminal frame was flushed."""
        return self.terminal is not None

    def texts(self) -> dict[str, str]:
        """Flushed text per channel (joined once, then kept joined)."""
        out = {}
        for channel, parts in self._parts.items():
            if len(parts) > 1:
                parts[:] = ["".join(parts)]
            out[channel] = parts[0] if parts else ""
        return out

    def live_texts(self) -> dict[str, str]:
        """Text per channel including frames not flushed (or not read) yet."""
        texts = self.texts()
        try:
            unread = self.runtime.follow(self.stream_ref, self.upto_seq).read_available()
        except UnknownStreamError:  # evicted from memory: what was read is all there is
            unread = self._pending
        for channel, text in unread.texts().items():
            texts[channel] = texts.get(channel, "") + text
        return texts

    def texts_through(self, seq: int) -> dict[str, str]:
        """Flushed text per channel as it was once frames up to ``seq`` were flushed (the
        text a view showed at ``shown_seq``; -1: none). A ``seq`` between two flushes
        gives the earlier one's text."""
        index = bisect.bisect_right(self._marks_seq, seq) - 1
        if index < 0:
            return {}
        lengths = self._marks[index]
        return {channel: text[: lengths.get(channel, 0)] for channel, text in self.texts().items()}

    def reason(self) -> str:
        """The terminal's reason; for a bare ``cancelled`` the reason given to ``cancel``.

        Seed handlers settle a cancel with ``reason="cancelled"``; the widget
        shows why it was cancelled (``"user pressed stop"``) instead.
        """
        terminal = self.terminal
        if terminal is None:
            return ""
        reason = terminal.reason or ""
        if terminal.kind == "cancelled" and reason in ("", "cancelled"):
            try:
                reason = self.runtime.info(self.stream_ref).cancel_reason or reason
            except UnknownStreamError:
                pass
        return reason

    def place_inputs(self) -> bool:
        """Read newly accepted inputs and place those that came after everything flushed;
        True if ``sent`` grew."""
        before = len(self.sent)
        self._read_inputs()
        self._place(self.upto_seq + 1, {})
        return len(self.sent) > before

    def _read_inputs(self) -> None:
        try:
            log = self.runtime.input_log(self.stream_ref)
        except UnknownStreamError:  # evicted: what was read is all there is
            return
        for position, frame in log[self._inputs_read :]:
            self._unplaced.append((position, input_text(frame.payload)))
        self._inputs_read = len(log)

    def _place(self, limit: int, chunks: dict[str, list[str]]) -> None:
        """Place the inputs that arrived before outbound frame ``limit`` (the frames
        before it are flushed, or folded into ``chunks``)."""
        unplaced = self._unplaced
        while unplaced and unplaced[0][0] <= limit:
            _, text = unplaced.pop(0)
            offsets = dict(self._lengths)
            for channel, parts in chunks.items():
                offsets[channel] = offsets.get(channel, 0) + sum(len(part) for part in parts)
            self.sent.append({"text": text, "offsets": offsets})

    def snapshot(self) -> SnapshotMsg:
        """Everything flushed so far, for a view that asked with ``hello``."""
        return {
            "type": "snapshot",
            "upto_seq": self.upto_seq,
            "texts": self.texts(),
            "status": self.status,
        }

    # --- task -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the reading task on the running loop (call on the loop thread)."""
        if self._task is None:
            loop = asyncio.get_running_loop()
            if self.budget is None:
                self.budget = budget_for(loop)
            self._task = loop.create_task(self._read(), name=f"streamnb:widget:{self.stream_ref}")

    def stop(self) -> None:
        """Cancel the reading task and any pending flush (idempotent)."""
        self._cancel_flush()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._wake(None)

    def _cancel_flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._queued:
            self._queued = False
            if self.budget is not None:
                self.budget.cancel(self)

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ask for a turn once ``flush_interval_s`` passed since the last flush."""
        if self._timer is not None or self._queued:
            return
        due = self._last_flush + self.flush_interval_s
        if due <= loop.time():
            self._ask_turn()
        else:
            self._timer = loop.call_at(due, self._ask_turn)

    def _ask_turn(self) -> None:
        self._timer = None
        budget = self.budget
        if budget is None:  # pragma: no cover - start() sets it before anything is read
            self.flush()
            return
        self._queued = True
        budget.request(self, self.flush)

    def catch_up(self) -> bool:
        """If the stream has already ended, fold its whole log now, without waiting for the
        reading task, and stop that task; True when the terminal is flushed."""
        if self.settled:
            return True
        try:
            ended = self.runtime.info(self.stream_ref).terminal is not None
            frames = self._log_cursor().read_available() if ended else _EMPTY
        except UnknownStreamError:
            return False
        if frames.terminal is None:
            return False
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._pending = frames  # everything after what was flushed, read or not
        self.flush()
        return True

    @property
    def done(self) -> bool:
        """True once the reading task ended (settled, stopped or failed)."""
        return self._task is not None and self._task.done()

    async def wait(self, timeout_s: float | None = None) -> None:
        """Wait until the terminal frame was flushed (or the follower stopped).

        Raises
        ------
        TimeoutError
            ``timeout_s`` seconds passed first.
        """
        if self.settled or self.done:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout_s)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"stream {self.stream_ref} did not settle in the widget within {timeout_s} s"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)

    def _wake(self, _: object) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def _read(self) -> None:
        """Wake once per flush, not once per frame: wait for a frame after what was
        flushed, ask for a flush, then sleep until it happened; the flush takes every
        frame the log then holds in one slice (batch draining). The terminal frame is
        watched apart (``runtime.wait``) so it goes out without waiting for the interval.
        """
        loop = asyncio.get_running_loop()
        runtime, ref = self.runtime, self.stream_ref
        watcher = loop.create_task(self._watch_terminal(), name=f"streamnb:widget:{ref}:end")
        try:
            while not self.settled:
                cursor = runtime.follow(ref, self.upto_seq)
                try:
                    await cursor.__anext__()
                except StopAsyncIteration:
                    return
                if self.settled:
                    return
                flushed = loop.create_future()
                self._flushed.append(flushed)
                self._schedule_flush(loop)
                await flushed
        finally:
            watcher.cancel()
            self._cancel_flush()
            self._wake(None)

    async def _watch_terminal(self) -> None:
        try:
            await self.runtime.wait(self.stream_ref)
        except (UnknownStreamError, TimeoutError):  # pragma: no cover - evicted unseen
            return
        # The terminal goes out on the next turn of the budget, without the interval.
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._queued and not self.settled:
            self._ask_turn()

    # --- flushing ---------------------------------------------------------------------

    def _log_cursor(self) -> FrameCursor:
        """The cursor flushes read the log through, at ``upto_seq + 1`` (made on first use;
        it moves only as flushes and :meth:`catch_up` take frames, so it stays there).

        Raises
        ------
        UnknownStreamError
            Made after the stream left the runtime's memory.
        """
        if self._cursor is None:
            self._cursor = self.runtime.follow(self.stream_ref, self.upto_seq)
        return self._cursor

    def flush(self) -> None:
        """Fold the pending frames and emit them as one delta (no-op when none).

        The frames are one :class:`~streamnb.FrameBatch` (a slice of the log): the text
        is folded per channel in one pass (``FrameBatch.texts``) with no object per
        frame, so a flood of tokens allocates nothing per token here (a ``Frame`` per
        token made the kernel's cyclic garbage collector run a full collection during
        a 50,000-token flood: ``widget.kernel.follower_us_per_token``).
        """
        self._cancel_flush()
        batch = self._pending
        self._pending = _EMPTY
        if not batch:
            try:
                batch = self._log_cursor().read_available()
            except UnknownStreamError:  # evicted: what was flushed is all there is
                batch = _EMPTY
        flushed, self._flushed = self._flushed, []
        for fut in flushed:
            if not fut.done():
                fut.set_result(None)
        last_seq = batch.last_seq
        if last_seq is None:
            return
        self._read_inputs()
        chunks: dict[str, list[str]] = {}
        unplaced = self._unplaced
        rest = batch
        while unplaced and rest:
            # an input accepted before frame ``position`` goes between the text before
            # it and the text after it: fold up to there, then place it
            first = rest.first_seq
            assert first is not None
            cut = max(0, unplaced[0][0] - first)
            for channel, text in rest[:cut].texts().items():
                chunks.setdefault(channel, []).append(text)
            rest = rest[cut:]
            if not rest:
                break
            self._place(first + cut, chunks)
        for channel, text in rest.texts().items():
            chunks.setdefault(channel, []).append(text)
        progress = batch.last("progress")
        if progress is not None:
            self.progress = progress.payload
        terminal = batch.terminal
        if terminal is not None:
            self.terminal = terminal
            self.status = terminal.kind
        if unplaced:
            self._place(last_seq + 1, chunks)
        joined = {channel: "".join(parts) for channel, parts in chunks.items()}
        lengths = self._lengths
        for channel, text in joined.items():
            self._parts.setdefault(channel, []).append(text)
            lengths[channel] = lengths.get(channel, 0) + len(text)
        delta: DeltaMsg = {
            "type": "delta",
            "from_seq": self.upto_seq + 1,
            "to_seq": last_seq,
            "chunks": joined,
            "status": self.status,
        }
        self.upto_seq = last_seq
        self._marks_seq.append(last_seq)
        self._marks.append(dict(lengths))
        self._last_flush = asyncio.get_running_loop().time()
        self.deltas_sent += 1
        self._emit(delta, self.terminal is not None)
        if self.terminal is not None:
            self._wake(None)


def spawn(
    tasks: set[asyncio.Task[Any]],
    coro: Coroutine[Any, Any, Any],
    on_error: Callable[[BaseException], None],
    name: str,
) -> asyncio.Task[Any]:
    """Create a task on the running loop, owned by ``tasks``; report its error, if any."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    tasks.add(task)

    def _done(t: asyncio.Task[Any]) -> None:
        tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            on_error(t.exception())  # type: ignore[arg-type]

    task.add_done_callback(_done)
    return task
