"""The stream runtime: runs handlers, fans frames out to sessions, settles exactly once.

Inside (see ARCHITECTURE.md): each stream has one append-only frame log; every
session is a cursor into it, so replay, ``reattach`` and late widgets read the
same list and a slow reader never stalls the handler (it only falls behind in
the log). Each stream is owned by one task, created by the runtime, which
first *pumps* the handler's ``run`` generator into the log, then decides the
terminal, commits the settlement to the ledger and only then appends the
terminal frame to the log (settle, then announce). The runtime keeps
attach, those tasks and the settlement; every change to a stream's state
(appending a frame, accepting input, requesting cancel, announcing the end) is a
method of the stream itself (``_stream.py``), which sessions call directly.

Cancellation follows the seeds' cooperative model (seed 000/001): ``cancel``
sets ``ctx.signal.aborted``, ends the handler's ``input`` iterator and returns
``"requested"`` at once. A handler still running ``cancel_grace_s`` seconds
later has its task cancelled; if even that does not end it within
``force_wait_s``, the stream is settled anyway from a task of its own, and the
stubborn task is kept aside and cancelled again at :meth:`StreamRuntime.aclose`.
Either way the stream settles ``cancelled`` with ``terminal["forced"] = True``.
Departure from the seeds: when the input iterator ends because of a cancel, a
seed handler never reaches its ``if (ctx.signal.aborted)`` check; the runtime
settles such a return as ``cancelled`` with the cancel's reason, which is the
same outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Coroutine, Generator
from typing import Any, Literal, TypeVar

from . import _takeover
from ._cursor import FrameCursor
from ._errors import (
    HandlerDefinitionError,
    InvalidFrameError,
    LedgerError,
    RuntimeClosedError,
    StartRejectedError,
    StreamSettledError,
    StreamTimeoutError,
    UnknownKindError,
    UnknownStreamError,
    WaitInterruptedError,
)
from ._frames import TERMINAL_KINDS, Frame, build_frame
from ._handler import AttachedStreamHandler, ParseError, ParseOk, StreamContext
from ._interrupt import cell_interrupted
from ._ledger import Ledger, LedgerBackend, LedgerTx, Settlement
from ._ledger.lease import LeaseLostError
from ._ledger.tx import failed_instead
from ._lifecycle import Lifecycle
from ._remote import RemoteStreams
from ._session import Session
from ._stream import (
    CancelResult,
    SendResult,
    StreamInfo,
    _check_reason,
    _Input,
    _State,
    _Stream,
)
from ._text import SurrogateMender, has_surrogates, mend

__all__ = [
    "CancelResult",
    "Session",
    "StreamInfo",
    "StreamRuntime",
    "read_until_terminal",
]

T = TypeVar("T")

#: frames the pump publishes before it yields to the event loop once (~1 ms of work)
_FAIRNESS_BATCH = 256
#: how long a cancelled attach() or driver still waits for the ledger write it already
#: started (the stream's row, its settlement) to commit before giving up on it, seconds
LEDGER_WRITE_WAIT_S = 30.0
#: default bound of the frames settled streams keep in memory, bytes (approximate)
DEFAULT_RETAIN_SETTLED_BYTES = 256 * 1024 * 1024
#: what one frame costs in memory beside its payload's text, bytes (tuple, time, seq)
FRAME_OVERHEAD_BYTES = 200
#: default time a bidi stream may wait for input with no observer, seconds
DEFAULT_IDLE_TIMEOUT_S = 600.0
#: how many evicted streams' terminal frames the runtime remembers
MAX_EVICTED_TERMINALS = 10_000

_Ending = Literal[
    "cancelled", "forced", "no_terminal", "invalid_frame", "handler_error", "runtime_error"
]
#: how a stream can end without a terminal of its own -> (kind, reason, terminal); a reason
#: of None is the cancel's reason. The driver builds every such terminal from this table.
_ENDINGS: dict[_Ending, tuple[str, str | None, dict[str, Any]]] = {
    "cancelled": ("cancelled", None, {"cancelled": True}),
    "forced": ("cancelled", None, {"cancelled": True, "forced": True}),
    "no_terminal": ("failed", "no_terminal", {"ok": False}),
    "invalid_frame": ("failed", "invalid_frame", {"ok": False}),
    "handler_error": ("failed", "handler_error", {"ok": False}),
    "runtime_error": ("failed", "runtime_error", {"ok": False}),
}


def _ending(st: _Stream, ending: _Ending, error: str | None = None) -> Frame:
    """The terminal frame for ``ending`` (see ``_ENDINGS``), at the stream's next seq."""
    kind, reason, terminal = _ENDINGS[ending]
    return Frame(
        kind,
        st.ref,
        st.next_seq,
        time.time(),
        reason=reason or st.signal.reason or "cancelled",
        error=None if error is None else mend(error),  # an exception's text may be anything
        terminal=dict(terminal),
    )


class _Owner:
    """The runtime as its streams and sessions see it (a ``StreamOwner``)."""

    __slots__ = ("_rt",)

    def __init__(self, rt: StreamRuntime) -> None:
        self._rt = rt

    def check_loop(self) -> asyncio.AbstractEventLoop:
        return self._rt._check_loop()

    def cancel_requested(self, st: _Stream) -> None:
        self._rt._arm_force(st)

    @property
    def runtime_id(self) -> str | None:
        return self._rt.runtime_id


class StreamRuntime:
    """Runs attached streams and settles each exactly once in a ledger.

    Parameters
    ----------
    ledger : Ledger, optional
        Where settlements go; default an in-memory :class:`~streamnb.Ledger`.
    cancel_grace_s : float, default 2.0
        Seconds a cooperative handler gets after ``cancel`` before it is
        stopped by force (settled ``cancelled`` with ``terminal["forced"]``).
    force_wait_s : float, default 1.0
        Seconds to wait for a force-cancelled handler to unwind before the
        stream is settled without it.
    max_retained_frames : int, optional
        Keep at most this many non-terminal frames per stream in memory
        (oldest dropped; readers that fall behind see a seq gap, listed as
        ``omitted`` by the projection); the terminal frame is always kept.
        Default: keep all.
    retain_settled : int, default 1000
        How many settled streams stay in memory for ``reattach`` and replay.
    retain_settled_bytes : int or None, default 256 MiB
        Also keep the settled streams in memory under about this many bytes
        in all (payload text plus ~200 bytes a frame; a non-text payload counts
        256 bytes); the oldest leave first, even the one that just settled if it
        alone is larger. ``None``: no byte bound. An evicted stream's settlement
        stays in the ledger (and its frames, with ``record_frames``: the HTTP
        endpoints replay them from there); :meth:`wait`, :meth:`cancel` and
        :meth:`send` by ref still know how it ended (the last 10,000 evicted).
    idle_timeout_s : float or None, default 600.0
        A ``bidi`` stream that waits for input while nobody observes it (no
        session: every observer detached, an ``on_detach="continue"`` stream
        left behind by a dropped HTTP client) is cancelled with reason ``idle``
        after this many seconds. ``None``: wait for ever.

    Re-running a notebook cell: a runtime on a file ledger replaces any other runtime
    of this process writing the same file (and ``Ledger(path)`` made again does the
    same): the previous runtime's running streams settle ``cancelled`` with reason
    ``"replaced"`` (each within its ``cancel_grace_s + force_wait_s``) and it closes,
    before this constructor returns. Runtimes on in-memory ledgers are independent.

    Raises
    ------
    LedgerBusyError
        ``ledger`` was opened read-only (another process writes the file; the error
        names its process id).
    ValueError
        A limit is out of range.

    Examples
    --------
    A bidi handler (seed 000's chatbot, shortened), attached, fed and read. In a
    notebook, ``await`` each call instead of ``runtime.run(...)``.

    >>> import streamnb as sn
    >>> async def echo(start, input, ctx):
    ...     yield sn.progress({"phase": "waiting_for_user"})
    ...     async for frame in input:
    ...         yield sn.output(f"you said {frame.payload}")
    ...         yield sn.completed()
    ...         return
    >>> runtime = sn.StreamRuntime(cancel_grace_s=1.0)
    >>> runtime.register(sn.AttachedStreamHandler(kind="demo.echo", mode="bidi", run=echo))
    AttachedStreamHandler(kind='demo.echo', mode='bidi', on_detach='abort')
    >>> session = runtime.run(runtime.attach("demo.echo"))
    >>> runtime.run(session.send("hi"))
    'accepted'
    >>> frames = runtime.run(sn.read_until_terminal(session.output, timeout_s=10))
    >>> [f.kind for f in frames]
    ['opened', 'progress', 'output', 'completed']
    >>> frames[2].payload
    'you said hi'
    >>> runtime.ledger.streams()[["kind", "status"]]
            kind     status
    0  demo.echo  completed
    >>> runtime.close()
    """

    def __init__(
        self,
        ledger: Ledger | None = None,
        *,
        cancel_grace_s: float = 2.0,
        force_wait_s: float = 1.0,
        max_retained_frames: int | None = None,
        retain_settled: int = 1000,
        retain_settled_bytes: int | None = DEFAULT_RETAIN_SETTLED_BYTES,
        idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
    ) -> None:
        self.ledger = Ledger() if ledger is None else ledger
        # the runtime writes only through the backend interface; users query self.ledger
        self._store: LedgerBackend = self.ledger.backend
        self._store.check_writable()
        if cancel_grace_s < 0 or force_wait_s < 0:
            raise ValueError("cancel_grace_s and force_wait_s are seconds >= 0")
        if max_retained_frames is not None and max_retained_frames < 1:
            raise ValueError("max_retained_frames must be >= 1 or None")
        self.cancel_grace_s = float(cancel_grace_s)
        self.force_wait_s = float(force_wait_s)
        if retain_settled_bytes is not None and retain_settled_bytes < 0:
            raise ValueError("retain_settled_bytes must be >= 0 or None")
        if idle_timeout_s is not None and not idle_timeout_s > 0:
            raise ValueError("idle_timeout_s must be seconds > 0, or None")
        self.max_retained_frames = max_retained_frames
        self.retain_settled = retain_settled
        self.retain_settled_bytes = retain_settled_bytes
        self.idle_timeout_s = None if idle_timeout_s is None else float(idle_timeout_s)
        self._handlers: dict[str, AttachedStreamHandler] = {}
        self._streams: dict[str, _Stream] = {}
        self._settled_order: deque[str] = deque()
        self._settled_bytes = 0  # approximate bytes of the settled streams in _streams
        # the terminal frames of evicted streams, newest last (wait/cancel/send by ref)
        self._evicted: OrderedDict[str, Frame] = OrderedDict()
        self._drivers: set[asyncio.Task[None]] = set()
        self._driver_done = self._driver_finished  # one bound method, not one per stream
        self._drivers_idle: asyncio.Future[None] | None = None  # see aclose()
        self._zombies: set[asyncio.Task[Any]] = set()
        self._helpers: set[asyncio.Task[Any]] = set()  # small owned tasks (_own)
        # streams of other processes, through a shared ledger (None: SQLite, one process)
        exchange = self._store.exchange
        self._remote = None if exchange is None else RemoteStreams(self, exchange)
        self._opening: set[asyncio.Future[None]] = set()  # attach() calls writing their row
        self._loop: asyncio.AbstractEventLoop | None = None
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._state = Lifecycle.OPEN
        self._owner = _Owner(self)
        # refs: a random prefix per runtime (unique across processes sharing a file
        # ledger) plus a counter (cheap, and sorts in attach order)
        self._ref_prefix = secrets.token_hex(5)
        self._ref_counter = 0
        #: the cancel reason aclose() gives running streams
        self._close_reason = "runtime_closed"
        #: the task closing this runtime after a takeover (see _replace)
        self._retiring: asyncio.Task[None] | None = None
        #: the takeover key (the ledger file's real path) of a runtime writing a file
        self._key: str | None = None
        if self.ledger.path is not None:
            key = _takeover.file_key(self.ledger.path)
            previous = _takeover.current("runtime", key)
            if previous is not None and previous is not self:
                previous._replace()
            self._key = key
            _takeover.register("runtime", key, self)

    # --- registry -----------------------------------------------------------------------

    def register(self, handler: AttachedStreamHandler) -> AttachedStreamHandler:
        """Make ``handler.kind`` attachable; returns the handler.

        Registering a kind again replaces its handler for new streams (running
        streams keep theirs), so re-running a notebook cell is harmless.
        """
        if not isinstance(handler, AttachedStreamHandler):
            raise TypeError(
                f"register() takes an sn.AttachedStreamHandler, got {type(handler).__name__}"
            )
        self._handlers[handler.kind] = handler
        return handler

    @property
    def kinds(self) -> list[str]:
        """The registered kinds, sorted."""
        return sorted(self._handlers)

    def handler(self, kind: str) -> AttachedStreamHandler:
        """The handler registered for ``kind`` (raises :class:`UnknownKindError`)."""
        try:
            return self._handlers[kind]
        except (KeyError, TypeError):  # TypeError: an unhashable kind such as a list
            raise UnknownKindError(kind, self._handlers) from None

    # --- loop handling ---------------------------------------------------------------

    @property
    def runtime_id(self) -> str | None:
        """This runtime's lease in a shared (PostgreSQL) ledger; None with SQLite.

        Taken at the first ``attach`` (or the first command to another process's
        stream); other processes address this runtime's streams by it.
        """
        return None if self._remote is None else self._remote.runtime_id

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop this runtime's streams run on (bound at first use)."""
        return self._loop

    def _check_loop(self) -> asyncio.AbstractEventLoop:
        running = asyncio.get_running_loop()
        if self._loop is None or self._loop.is_closed():
            self._loop = running
        elif running is not self._loop:
            raise RuntimeClosedError(
                "this StreamRuntime runs on another event loop; use it from that loop "
                "(in Jupyter: the kernel's loop; in scripts: runtime.run(...)) or create "
                "one StreamRuntime per loop"
            )
        return running

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` to completion from synchronous code and return its result.

        The sync facade (the seeds' ``runtime.runPromise``). In a plain script
        the runtime keeps one event loop of its own, so streams attached in one
        ``run`` call keep running in the next. Inside Jupyter, where the
        kernel's loop is already running, it re-enters that loop with
        ``nest_asyncio``; prefer ``await`` in cells, which needs no nesting.
        From another thread (a worker thread of a notebook or a server) it runs
        ``awaitable`` on the loop the runtime is bound to, with
        :func:`asyncio.run_coroutine_threadsafe`, and waits for it in the
        calling thread (never call it that way from a task that loop waits on).
        """
        coro = awaitable if inspect.iscoroutine(awaitable) else _await(awaitable)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            if self._loop is not None and self._loop is not running and not self._loop.is_closed():
                coro.close()
                raise RuntimeClosedError(
                    "runtime.run() was called on a different running loop than the one "
                    "this runtime is bound to"
                )
            import nest_asyncio

            nest_asyncio.apply(running)
            result: T = running.run_until_complete(coro)
            return result
        loop = self._loop
        if loop is not None and loop.is_running() and not loop.is_closed():
            # bound to a loop running in another thread (a kernel's, a server's): run
            # there and wait here; running it in this thread could only fail
            elsewhere: T = asyncio.run_coroutine_threadsafe(coro, loop).result()
            return elsewhere
        if loop is None or loop.is_closed():
            if self._own_loop is None or self._own_loop.is_closed():
                self._own_loop = asyncio.new_event_loop()
            loop = self._own_loop
        value: T = loop.run_until_complete(coro)
        return value

    # --- attach ------------------------------------------------------------------------

    async def attach(self, kind: str, payload: Any = None) -> Session:
        """Open a stream of ``kind`` with start ``payload`` and return its first session.

        The stream's ``streams`` row is committed before this returns; its
        ``opened`` frame (seq 0) is the first frame on ``session.output``.

        Parameters
        ----------
        kind : str
            A registered handler's kind.
        payload : JSON value, optional
            The raw start payload, checked by the handler's ``parse_start``.

        Returns
        -------
        Session
            The stream's first observer (``on_detach`` counts it).

        Raises
        ------
        UnknownKindError
            No handler is registered for ``kind``.
        StartRejectedError
            ``parse_start`` returned :class:`ParseError` or raised (nothing opened).
        RuntimeClosedError
            The runtime was closed.
        LedgerError
            The ledger could not record the new stream (nothing opened).

        Examples
        --------
        >>> from streamnb.demo import output_only_handler
        >>> runtime = sn.StreamRuntime()
        >>> handler = runtime.register(output_only_handler())
        >>> session = runtime.run(runtime.attach("tutorial.output_only", {}))
        >>> session.kind, session.mode, session.status
        ('tutorial.output_only', 'output_only', 'running')
        >>> runtime.run(runtime.attach("no.such.kind"))
        Traceback (most recent call last):
        ...
        streamnb._errors.UnknownKindError: no handler is registered for kind 'no.such.kind' ...
        >>> runtime.close()
        """
        loop = self._check_loop()
        self._state.check_open(_closed_error)
        handler = self.handler(kind)
        try:
            parsed = handler.parse_start(payload)
        except Exception as exc:
            raise StartRejectedError(
                kind, [f"parse_start raised {type(exc).__name__}: {exc}"]
            ) from exc
        if isinstance(parsed, ParseError):
            raise StartRejectedError(kind, [str(i) for i in parsed.issues])
        if not isinstance(parsed, ParseOk):
            raise StartRejectedError(
                kind, [f"parse_start must return ParseOk or ParseError, got {parsed!r}"]
            )
        self._ref_counter += 1
        ref = f"st_{self._ref_prefix}{self._ref_counter:06x}"
        opened_at = time.time()
        # Once the row is committed the stream must settle, whatever happens to this call
        # meanwhile: aclose() waits for attaches in flight, and a cancelled attach still
        # starts the stream, as if its only observer had detached.
        write = asyncio.ensure_future(self._open_row(ref, handler, opened_at))
        in_flight: asyncio.Future[None] = loop.create_future()
        self._opening.add(in_flight)
        try:
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(write), LEDGER_WRITE_WAIT_S)
                if write.done() and not write.cancelled() and write.exception() is None:
                    # its only observer is gone before it could read: on_detach decides
                    st = self._start(handler, ref, opened_at, parsed.value)
                    st.add_observer()
                    st.remove_observer()
                raise
            st = self._start(handler, ref, opened_at, parsed.value)
            session = Session(self, st, 0)
            if self._state is not Lifecycle.OPEN:  # aclose() began while the row was written
                st.request_cancel("runtime_closed")
        finally:
            self._opening.discard(in_flight)
            in_flight.set_result(None)
        return session

    async def _open_row(self, ref: str, handler: AttachedStreamHandler, opened_at: float) -> None:
        """Commit the stream's ``streams`` row (with a shared ledger: under our lease)."""
        store = self._store
        remote = self._remote
        if remote is None:
            await store.open_stream(ref, handler.kind, handler.mode, opened_at)
            return
        for attempt in (1, 2):
            owner = await remote.ensure_joined()
            try:
                await store.open_stream(
                    ref,
                    handler.kind,
                    handler.mode,
                    opened_at,
                    on_detach=handler.on_detach,
                    owner=owner,
                )
                return
            except LeaseLostError:
                remote.on_lease_lost(owner)  # a new lease, then once more
                if attempt == 2:
                    raise

    def _start(
        self, handler: AttachedStreamHandler, ref: str, opened_at: float, start: Any
    ) -> _Stream:
        """Create the stream whose row is committed, publish ``opened``, start its driver."""
        loop = self._loop
        assert loop is not None
        store = self._store
        st = _Stream(
            self._owner,
            handler,
            ref,
            opened_at,
            cap=self.max_retained_frames,
            # a shared ledger takes every frame: other processes read streams from it
            record=store.record_frame
            if store.record_frames or store.exchange is not None
            else None,
            idle_s=self.idle_timeout_s if handler.mode == "bidi" else None,
        )
        self._streams[ref] = st
        opened = Frame(
            "opened", ref, 0, opened_at, payload={"kind": handler.kind, "mode": handler.mode}
        )
        st.append(tuple(opened))
        driver = loop.create_task(self._drive(st, start), name=f"streamnb:{ref}:run")
        st.task = driver
        self._drivers.add(driver)
        driver.add_done_callback(self._driver_done)
        return st

    async def reattach(self, stream_ref: str, after_seq: int | None = None) -> Session:
        """A new session on an existing stream, reading from ``after_seq + 1``.

        ``after_seq=None`` replays from the first retained frame. Works on
        settled streams still held in memory (replay ends at the terminal).
        With a shared ledger (PostgreSQL) it also works on a stream another
        process runs (or ran): its frames come from the ledger as they commit,
        and ``send``/``cancel`` on the session go to the runtime running it.

        Raises
        ------
        UnknownStreamError
            The ref was never opened here (nor in the shared ledger), or it
            settled and was evicted (its settlement is in ``runtime.ledger``).
        InvalidFrameError
            ``after_seq`` is not an int >= -1.

        Examples
        --------
        A reader that lost its connection after seq 1 resumes without gaps or repeats:

        >>> from streamnb.demo import output_only_handler
        >>> runtime = sn.StreamRuntime()
        >>> handler = runtime.register(output_only_handler())
        >>> first = runtime.run(runtime.attach("tutorial.output_only", {}))
        >>> frames = runtime.run(sn.read_until_terminal(first.output))
        >>> again = runtime.run(runtime.reattach(first.stream_ref, after_seq=1))
        >>> [f.seq for f in runtime.run(sn.read_until_terminal(again.output))]
        [2, 3]
        >>> runtime.close()
        """
        self._check_loop()
        start = 0 if after_seq is None else _after_seq(after_seq) + 1
        st = await self._resolve(stream_ref)
        return Session(self, st, start)

    def _evicted_terminal(self, stream_ref: str) -> Frame | None:
        """The terminal frame of a stream evicted from memory, if it is remembered."""
        try:
            return self._evicted.get(stream_ref)
        except TypeError:  # an unhashable ref such as a list
            return None

    def _local(self, stream_ref: str) -> _Stream | None:
        """The stream this runtime runs (held in memory), or None."""
        try:
            return self._streams.get(stream_ref)
        except TypeError:  # an unhashable ref such as a list
            return None

    def _get(self, stream_ref: str) -> _Stream:
        st = self._local(stream_ref)
        if st is None and self._remote is not None:
            st = self._remote.get(stream_ref)
        if st is None:
            raise UnknownStreamError(
                stream_ref,
                "if it settled, its settlement is in runtime.ledger.streams()",
            )
        return st

    async def _resolve(self, stream_ref: str) -> _Stream:
        """:meth:`_get`, also finding a stream another process runs (a shared ledger)."""
        st = self._local(stream_ref)
        if st is not None:
            return st
        remote = self._remote
        if remote is not None:
            mirror = await remote.resolve(stream_ref)
            if mirror is not None:
                return mirror
        return self._get(stream_ref)  # raises UnknownStreamError

    def info(self, stream_ref: str) -> StreamInfo:
        """A :class:`StreamInfo` snapshot of a stream held in memory.

        A stream another process runs is held here once :meth:`ainfo`,
        :meth:`reattach`, :meth:`wait`, :meth:`cancel` or :meth:`send` found it.
        """
        return self._get(stream_ref).info()

    def input_log(self, stream_ref: str) -> list[tuple[int, Frame]]:
        """Every input frame the stream accepted, in order, with where it arrived.

        Returns
        -------
        list of (int, Frame)
            ``(position, frame)``: ``frame`` is the accepted ``input`` frame (its own
            input ``seq``, ``payload``, ``at``); ``position`` is the seq of the first
            outbound frame published after it arrived, so outbound frames with a lower
            seq came before it. (A widget shows each sent message above its reply.)

        Examples
        --------
        >>> from streamnb.demo import chatbot_handler
        >>> runtime = sn.StreamRuntime()
        >>> handler = runtime.register(chatbot_handler())
        >>> session = runtime.run(runtime.attach("tutorial.streaming_chatbot", {}))
        >>> runtime.run(session.send("hello"))
        'accepted'
        >>> [(position, frame.payload) for position, frame in runtime.input_log(session.stream_ref)]
        [(2, 'hello')]
        >>> runtime.close()
        """
        return list(self._get(stream_ref).inputs or ())

    async def ainfo(self, stream_ref: str) -> StreamInfo:
        """:meth:`info`, also for a stream another process runs (a shared ledger).

        With a PostgreSQL ledger, a ref this runtime does not hold is looked
        up in the ledger; a stream found there is mirrored here (its frames
        so far loaded), so :meth:`info`, :meth:`frame_log` and :meth:`follow`
        work on it from then on. ``status`` is the owner's committed view:
        ``running`` until its settlement is in the ledger. ``observers``
        counts this process's observers of a mirrored stream.

        Raises
        ------
        UnknownStreamError
            Neither this runtime nor the ledger has the stream (or it settled
            and its frames are no longer kept).
        """
        self._check_loop()
        return (await self._resolve(stream_ref)).info()

    def frame_log(
        self, stream_ref: str, after_seq: int = -1, *, limit: int | None = None
    ) -> list[Frame]:
        """The stream's retained outbound frames with ``seq > after_seq``, as a list (a snapshot).

        ``frame_log`` is a list of :class:`~streamnb.Frame`; ``ledger.frames()``
        is the DataFrame of recorded frames. ``limit`` returns at most that many
        (the oldest first): a long log is read in slices, so that no single
        call holds the event loop for long.

        Examples
        --------
        >>> from streamnb.demo import output_only_handler
        >>> runtime = sn.StreamRuntime()
        >>> handler = runtime.register(output_only_handler())
        >>> ref = runtime.run(runtime.attach("tutorial.output_only", {})).stream_ref
        >>> _ = runtime.run(runtime.wait(ref, timeout_s=10))
        >>> [f.seq for f in runtime.frame_log(ref, 0, limit=2)]
        [1, 2]
        >>> runtime.close()
        """
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidFrameError(f"limit must be an int >= 0 or None, got {limit!r}")
        return self._get(stream_ref).frame_log(_after_seq(after_seq), limit)

    def output_text(self, stream_ref: str, channel: str, after_seq: int = -1) -> tuple[str, int]:
        """The text a stream sent on ``channel`` after ``after_seq``, read straight from its log.

        Joins the string payloads of the ``output`` frames on ``channel`` with
        ``seq > after_seq`` (a snapshot, without building a :class:`Frame` per
        frame: a reader that only needs the text, such as the chat rooms'
        checkpoints, costs a fraction of a cursor).

        Returns
        -------
        (str, int)
            The text, and the seq of the last frame looked at (``after_seq`` when
            there was none): pass it as ``after_seq`` next time to get only what
            followed.

        Raises
        ------
        UnknownStreamError
            The ref is not held in memory.

        Examples
        --------
        >>> from streamnb.demo import chatbot_handler
        >>> runtime = sn.StreamRuntime()
        >>> handler = runtime.register(chatbot_handler())
        >>> session = runtime.run(runtime.attach("tutorial.streaming_chatbot", {}))
        >>> _ = runtime.run(session.send("hi"))
        >>> terminal = runtime.run(session.wait())
        >>> runtime.output_text(session.stream_ref, "assistant.delta")
        ('streamnb reply to hi', 5)
        >>> runtime.output_text(session.stream_ref, "assistant.delta", after_seq=2)
        ('reply to hi', 5)
        >>> runtime.close()
        """
        return self._get(stream_ref).output_text(channel, _after_seq(after_seq))

    def follow(self, stream_ref: str, after_seq: int = -1) -> FrameCursor:
        """A read-only cursor over a stream's frames with ``seq > after_seq``.

        Like ``(await reattach(ref, after_seq)).output`` but not an observer: it
        does not count for ``on_detach`` and has nothing to detach. It ends after
        the terminal frame; stop reading it early by cancelling the reading task.
        Widgets use it so they never consume the ``output`` of the user's session.

        A :class:`~streamnb.FrameCursor`: iterate it for one frame per step, or
        take every available frame in one step with ``cursor.batches()`` (an async
        iterator of :class:`~streamnb.FrameBatch`) or ``cursor.read_available()``
        (never waits); a reader forwarding a flood of tokens should.

        Raises
        ------
        UnknownStreamError
            The ref is not held in memory (a stream another process runs is,
            once :meth:`ainfo` found it).

        Examples
        --------
        >>> from streamnb.demo import output_only_handler
        >>> runtime = sn.StreamRuntime()
        >>> handler = runtime.register(output_only_handler())
        >>> session = runtime.run(runtime.attach("tutorial.output_only", {}))
        >>> cursor = runtime.follow(session.stream_ref)
        >>> [f.kind for f in runtime.run(sn.read_until_terminal(cursor))]
        ['opened', 'progress', 'output', 'completed']
        >>> runtime.info(session.stream_ref).observers  # the cursor is not an observer
        1
        >>> runtime.close()
        """
        return FrameCursor(self._get(stream_ref), _after_seq(after_seq) + 1)

    def active_refs(self) -> list[str]:
        """Refs of streams that have not settled yet, oldest first."""
        return [r for r, st in self._streams.items() if st.terminal is None]

    async def wait(self, stream_ref: str, timeout_s: float | None = None) -> Frame:
        """Wait until a stream settles and return its terminal frame.

        Consumes no session's ``output``. Raises :class:`~streamnb.StreamTimeoutError`
        after ``timeout_s`` seconds (the stream keeps running), and
        :class:`~streamnb.WaitInterruptedError` when the notebook cell awaiting it is
        interrupted (this observes nothing, so the stream keeps running). A stream
        evicted from memory (``retain_settled``, ``retain_settled_bytes``) still
        answers with its terminal frame.
        """
        self._check_loop()
        ended = self._evicted_terminal(stream_ref)
        if ended is not None:
            return ended
        st = await self._resolve(stream_ref)
        try:
            return await st.wait(timeout_s)
        except asyncio.CancelledError:
            if not cell_interrupted():
                raise
            raise WaitInterruptedError(
                stream_ref, st.handler.kind, detached=False, stream_cancelled=False
            ) from None

    async def cancel(self, stream_ref: str, reason: str = "cancelled") -> CancelResult:
        """Cancel a stream by ref (same as ``session.cancel``).

        Examples
        --------
        >>> from streamnb.demo import chatbot_handler
        >>> runtime = sn.StreamRuntime()
        >>> handler = runtime.register(chatbot_handler())
        >>> ref = runtime.run(runtime.attach("tutorial.streaming_chatbot", {})).stream_ref
        >>> async def stop_twice():  # the second cancel before the handler reacted
        ...     return await runtime.cancel(ref, "stop"), await runtime.cancel(ref, "again")
        >>> runtime.run(stop_twice())
        ('requested', 'already_requested')
        >>> terminal = runtime.run(runtime.wait(ref, timeout_s=10))
        >>> terminal.kind, terminal.reason, runtime.info(ref).status
        ('cancelled', 'stop', 'cancelled')
        >>> runtime.run(runtime.cancel(ref))
        'already_settled'
        >>> runtime.close()
        """
        self._check_loop()
        ended = self._evicted_terminal(stream_ref)
        if ended is not None:
            _check_reason(reason)
            return "already_settled"
        return await (await self._resolve(stream_ref)).cancel(reason)

    async def send(self, stream_ref: str, frame: Any) -> SendResult:
        """Send input to a stream by ref (same as ``session.send``)."""
        self._check_loop()
        ended = self._evicted_terminal(stream_ref)
        if ended is not None:
            raise StreamSettledError(stream_ref, ended.kind)
        return await (await self._resolve(stream_ref)).send_input(frame)

    # --- frames out -------------------------------------------------------------------

    async def _drive(self, st: _Stream, start: Any) -> None:
        """The stream's one task: pump the handler's frames into the log, then settle.

        One task and one coroutine per stream (not a driver task waiting on a
        separate pump task): an idle stream holds no futures of its own
        (bench/bench_core.py core.memory_per_bidi). A forced stop cancels this
        task; a handler that ignores even that is given up on by :meth:`_give_up`,
        which settles the stream from a task of its own and keeps this one aside.
        """
        result: Frame | None = None  # the handler's own terminal frame, if any
        error: Exception | None = None
        cancelled = False
        interrupted: asyncio.CancelledError | None = None
        try:
            # --- the pump: iterate the handler, publish its non-terminal frames ---
            h = st.handler
            agen = h.run(start, _Input(st), StreamContext(st.ref, h.kind, h.mode, st.signal))
            if not hasattr(agen, "__anext__"):
                raise InvalidFrameError(
                    f"run() of {h.kind!r} returned {type(agen).__name__}, not an async "
                    "generator; define run with 'async def' and 'yield'"
                )
            ref = st.ref
            # _Stream.append inlined when it has nothing to trim or record (the common
            # case): the method call alone costs ~5% of core.throughput
            log = st.log if st.cap is None and st.record is None else None
            seq = st.next_seq  # the pump is the only writer until settling: count locally
            text_bytes = 0  # payload characters published (the retention bound's estimate)
            now = time.time
            budget = _FAIRNESS_BATCH
            # lone surrogates are mended here, once for every reader (streamnb/_text.py);
            # ``holding`` is non-empty only while a token's trailing half waits for its
            # pair. The mender is made by the first frame off the fast path.
            mender: SurrogateMender | None = None
            holding: dict[str, str] | tuple[()] = ()
            try:
                async for spec in agen:
                    if st.halt:
                        break
                    if (
                        type(spec) is dict
                        and len(spec) == 3
                        and spec.get("kind") == "output"
                        and type(channel := spec.get("channel")) is str
                        and type(payload := spec.get("payload")) is str
                        and channel
                        and not holding
                        and (payload.isascii() or not has_surrogates(payload))
                    ):  # build_frame's fast path, inlined: the common token frame
                        raw: tuple[Any, ...] = (
                            "output",
                            ref,
                            seq,
                            now(),
                            channel,
                            payload,
                            None,
                            None,
                            None,
                        )
                        text_bytes += len(payload)
                    else:
                        if mender is None:
                            mender = SurrogateMender()
                            holding = mender.holding
                        frame = build_frame(spec, ref, seq, now(), mender)
                        if frame.kind in TERMINAL_KINDS:
                            result = frame
                            break
                        raw = tuple(frame)
                        payload = frame.payload
                        text_bytes += len(payload) if type(payload) is str else 256
                        # an idle stream keeps no garbage alive while it waits
                        del spec, frame
                    if log is not None:
                        log.append(raw)
                        if st.waiters:
                            st.wake_readers()
                    else:
                        st.append(raw)
                    seq += 1
                    budget -= 1
                    if not budget:
                        budget = _FAIRNESS_BATCH
                        await asyncio.sleep(0)
            finally:
                if mender is not None and mender.holding and not st.halt:
                    # half a pair never completed: U+FFFD, before the end
                    for channel, text in mender.flush():
                        st.append(
                            ("output", ref, st.next_seq, now(), channel, text, None, None, None)
                        )
                st.text_bytes += text_bytes
                aclose = getattr(agen, "aclose", None)
                if aclose is not None:
                    # bounded: a handler's cleanup must not hold the settlement hostage
                    with contextlib.suppress(Exception):
                        await _close_bounded(aclose(), self.cancel_grace_s + self.force_wait_s)
        except asyncio.CancelledError as exc:
            cancelled = True
            task = asyncio.current_task()
            if st.forced:  # our own forced stop (_force): it did its job, settle now
                if task is not None and hasattr(task, "uncancel"):
                    task.uncancel()
            elif task is not None and getattr(task, "cancelling", lambda: 1)():
                # cancelled from outside: the loop is shutting down under us
                interrupted = exc
                st.mark_forced("runtime_closed")
            # else the handler raised CancelledError itself: settled as a forced stop
        except Exception as exc:
            error = exc
        if st.state is _State.RUNNING:  # else _give_up settled it: this task was a zombie
            try:
                terminal = self._decide(st, result, error, cancelled)
            except Exception as exc:  # a bug here must still end in exactly one settlement
                terminal = _ending(st, "runtime_error", f"{type(exc).__name__}: {exc}")
            interrupted = await self._settle(st, terminal) or interrupted
        # Settled: nothing stops this task any more. Let go of it, so a retained settled
        # stream does not keep its finished task, coroutine and context alive (three
        # objects per stream the cyclic GC walks: bench_core's core.file_ledger).
        st.task = None
        if interrupted is not None:
            raise interrupted

    async def _settle_given_up(self, st: _Stream) -> None:
        """Settle a stream whose handler ignored its forced stop (see :meth:`_give_up`)."""
        interrupted = await self._settle(st, _ending(st, "forced"))
        if interrupted is not None:
            raise interrupted

    def _decide(
        self, st: _Stream, result: Frame | None, error: Exception | None, cancelled: bool
    ) -> Frame:
        """The terminal frame from how the pump ended (its own, or one from ``_ENDINGS``)."""
        if cancelled or st.forced:
            return _ending(st, "forced")
        if error is None:
            if result is not None:
                return result._replace(seq=st.next_seq, at=time.time())
            if st.signal.aborted:
                return _ending(st, "cancelled")
            kind = st.handler.kind
            return _ending(st, "no_terminal", f"handler {kind!r} returned without a terminal frame")
        if isinstance(error, InvalidFrameError):
            return _ending(st, "invalid_frame", str(error))
        message = f"{type(error).__name__}: {error}"
        return _ending(st, "cancelled" if st.signal.aborted else "handler_error", message)

    async def _settle(self, st: _Stream, frame: Frame) -> asyncio.CancelledError | None:
        """Commit the settlement, then announce the terminal frame (exactly once).

        A cancellation of the driver while the commit is under way is held
        back until the terminal is announced, and returned for re-raising.
        """
        interrupted: asyncio.CancelledError | None = None
        st.begin_settling()
        tx: LedgerTx | None = LedgerTx(st.ref)
        try:
            result = st.handler.commit_terminal(frame, tx)  # type: ignore[arg-type]
            if inspect.isawaitable(result):
                await asyncio.wait_for(_await(result), self.cancel_grace_s + self.force_wait_s)
            elif inspect.isgenerator(result) or inspect.isasyncgen(result):
                # a generator's body would never run: its writes would be lost silently
                raise HandlerDefinitionError(
                    st.handler.kind, "commit_terminal returned a generator; do not 'yield' in it"
                )
        except Exception as exc:
            tx = None
            error = f"commit_terminal raised {type(exc).__name__}: {exc}"
            frame = failed_instead(frame, "commit_terminal_error", error, was=frame.kind)
        settlement = Settlement(
            stream_ref=st.ref,
            status=frame.kind,
            reason=frame.reason,
            terminal=frame.terminal,
            settled_at=frame.at,
            tx=tx,
            terminal_frame=frame,
        )
        commit = asyncio.ensure_future(self._store.settle(settlement))
        try:
            try:
                done = await asyncio.shield(commit)
            except asyncio.CancelledError as exc:  # finish the commit, then re-raise
                interrupted = exc
                done = await asyncio.wait_for(commit, LEDGER_WRITE_WAIT_S)
        except (LedgerError, asyncio.TimeoutError) as exc:
            # Not even a failed record could be written: announce the failure; the
            # ledger row stays 'running' and is recovered as runtime_lost on reopen.
            frame = failed_instead(frame, "ledger_error", str(exc), ledger_error=True)
        else:
            if done.committed_frame is not None:
                # another process settled it first (our lease was taken over): announce what
                # was committed, in this log's own order
                frame = done.committed_frame._replace(stream_ref=st.ref, seq=frame.seq)
            elif done.fallback_error is not None:
                error = done.fallback_error
                frame = failed_instead(frame, "settlement_error", error, settlement_error=error)
        st.announce(frame)
        self._retain(st)
        return interrupted

    def _retain(self, st: _Stream) -> None:
        """Keep the settled ``st`` in memory; evict the oldest settled streams past the bounds.

        Evicted streams leave their terminal frame behind (``_evicted``) for
        ``wait``/``cancel``/``send`` by ref.
        """
        order = self._settled_order
        st.text_bytes += FRAME_OVERHEAD_BYTES * len(st.log)
        order.append(st.ref)
        self._settled_bytes += st.text_bytes
        max_bytes = self.retain_settled_bytes
        while order and (
            len(order) > self.retain_settled
            or (max_bytes is not None and self._settled_bytes > max_bytes)
        ):
            gone = self._streams.pop(order.popleft(), None)
            if gone is None:
                continue
            self._settled_bytes -= gone.text_bytes
            if gone.terminal is not None:
                self._evicted[gone.ref] = gone.terminal
                if len(self._evicted) > MAX_EVICTED_TERMINALS:
                    self._evicted.popitem(last=False)

    # --- frames in, cancel ----------------------------------------------------------

    def _driver_finished(self, task: asyncio.Task[None]) -> None:
        """A stream task (or settler) ended: forget it; wake aclose() once none is left."""
        self._drivers.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: it is a CancelledError re-raised, or None
        idle = self._drivers_idle
        if not self._drivers and idle is not None and not idle.done():
            idle.set_result(None)

    def _arm_force(self, st: _Stream) -> None:
        """A cancel was requested: stop the handler by force after ``cancel_grace_s``."""
        loop = self._loop
        assert loop is not None
        st.timer = loop.call_later(self.cancel_grace_s, self._force, st)

    def _force(self, st: _Stream) -> None:
        st.timer = None
        task = st.task
        if st.state is not _State.RUNNING or task is None or task.done():
            return
        st.mark_forced("cancelled")  # the signal is already set: the reason stays
        task.cancel()
        assert self._loop is not None
        st.timer = self._loop.call_later(self.force_wait_s, self._give_up, st)

    def _give_up(self, st: _Stream) -> None:
        """The handler ignored its forced stop: settle without it, keep its task aside."""
        st.timer = None
        task = st.task
        loop = self._loop
        if st.state is not _State.RUNNING or task is None or task.done() or loop is None:
            return
        settler = loop.create_task(self._settle_given_up(st), name=f"streamnb:{st.ref}:settle")
        self._drivers.add(settler)
        self._drivers.discard(task)  # aclose() must not wait for it: cancelled again there
        self._zombies.add(task)
        task.add_done_callback(self._zombies.discard)
        settler.add_done_callback(self._driver_done)

    # --- a shared ledger ---------------------------------------------------------------

    def _lease_lost(self) -> None:
        """Our lease was taken over: every running stream was settled ``runtime_lost`` by
        another process. Stop the handlers now; their settlements find the committed
        end and announce it."""
        for st in list(self._streams.values()):
            if st.state is _State.RUNNING:
                st.request_cancel("runtime_lost")
                if st.timer is not None:
                    st.timer.cancel()
                self._force(st)

    def _own(self, coro: Awaitable[Any]) -> None:
        """Run a small helper task owned by the runtime (awaited at :meth:`aclose`)."""
        loop = self._loop
        assert loop is not None
        task = loop.create_task(_await(coro), name="streamnb:helper")
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    # --- shutdown ---------------------------------------------------------------------

    async def aclose(self) -> None:
        """Cancel every running stream (reason ``runtime_closed``) and wait for each to settle.

        Handlers get the usual grace period, then are stopped by force, so this
        returns within about ``cancel_grace_s + force_wait_s`` seconds plus the
        ledger's commit time. Every stream ends with exactly one settlement.
        New ``attach`` calls raise :class:`~streamnb.RuntimeClosedError`. The
        ledger stays open for queries; close it with ``runtime.ledger.close()``.
        """
        if self._loop is not None and not self._loop.is_closed():
            self._check_loop()
        if self._state is Lifecycle.OPEN:
            self._state = Lifecycle.CLOSING
        if self._opening:  # their streams start, see the runtime closed and cancel
            await asyncio.wait(list(self._opening))
        for st in list(self._streams.values()):
            if st.state is _State.RUNNING:
                st.request_cancel(self._close_reason)
        if self._drivers:
            # until the set is empty, not a snapshot of it: a stream whose handler
            # ignores its forced stop moves from _drivers to _zombies and gets a
            # settler task in _drivers (_give_up)
            idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._drivers_idle = idle
            try:
                await idle
            finally:
                self._drivers_idle = None
        for task in list(self._zombies):
            task.cancel()
        if self._zombies:
            await asyncio.wait(list(self._zombies), timeout=self.force_wait_s)
        if self._helpers:
            await asyncio.gather(*list(self._helpers), return_exceptions=True)
        if self._remote is not None:
            await self._remote.aclose()
        self._mark_closed()

    def _mark_closed(self) -> None:
        self._state = Lifecycle.CLOSED
        if self._key is not None:
            _takeover.release("runtime", self._key, self)

    def _replace(self) -> asyncio.Task[None] | None:
        """A new runtime or ledger took this runtime's file over (a re-run notebook cell).

        Every running stream is cancelled with reason ``"replaced"`` and the runtime
        closes. Without a running loop this happens now, through :meth:`close` (a
        script). On this runtime's running loop (a notebook cell) nothing can settle
        before this returns: the streams are cancelled now and a task, owned by
        :mod:`streamnb._takeover` and returned here, waits for them and closes the
        runtime (None when nothing was left to settle and it closed at once). When the
        loop runs in another thread, this waits for it there.
        """
        if self._state is Lifecycle.CLOSED:
            return None
        if self._retiring is not None:
            return self._retiring
        self._close_reason = _takeover.REPLACED_REASON
        loop = self._loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or loop.is_closed():
            self._mark_closed()
        elif running is None and not loop.is_running():
            self.close()
        elif running is loop:
            self._state = Lifecycle.CLOSING
            unsettled = [st for st in self._streams.values() if st.terminal is None]
            if not unsettled and not self._opening:
                for task in self._zombies:
                    task.cancel()
                self._mark_closed()
                return None
            for st in unsettled:
                if st.state is _State.RUNNING:
                    st.request_cancel(self._close_reason)
            self._retiring = loop.create_task(self.aclose(), name="streamnb:replaced-runtime")
            _takeover.retire(self._retiring)
            return self._retiring
        elif loop.is_running():
            limit_s = self.cancel_grace_s + self.force_wait_s + LEDGER_WRITE_WAIT_S
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(limit_s)
        else:  # pragma: no cover - bound to a stopped loop while another loop runs here
            self._mark_closed()
        return None

    def close(self) -> None:
        """Synchronous :meth:`aclose` (via :meth:`run`); also closes the runtime's own loop."""
        if self._loop is not None and self._loop.is_closed():
            self._mark_closed()
            return
        self.run(self.aclose())
        own = self._own_loop
        if own is not None and not own.is_running():
            own.run_until_complete(own.shutdown_asyncgens())
            own.close()

    async def __aenter__(self) -> StreamRuntime:
        self._check_loop()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        active = len(self.active_refs())
        state = "" if self._state is Lifecycle.OPEN else f" {self._state.value}"
        return f"<StreamRuntime kinds={self.kinds} active={active} ledger={self.ledger!r}{state}>"


def _closed_error() -> RuntimeClosedError:
    return RuntimeClosedError("the runtime is closed; create a new StreamRuntime")


def _after_seq(after_seq: Any) -> int:
    if type(after_seq) is not int or after_seq < -1:  # not bool, float or str: no guessing
        raise InvalidFrameError(
            f"after_seq must be an int >= -1 (the last seq already seen), got {after_seq!r}"
        )
    return after_seq


async def _close_bounded(closer: Awaitable[Any], timeout_s: float) -> None:
    """Await a generator's ``aclose()``, for at most ``timeout_s`` seconds.

    The first step runs here, synchronously: a generator whose cleanup awaits
    nothing (almost all) closes without the task ``wait_for`` would need.
    """
    if not isinstance(closer, Coroutine):
        await asyncio.wait_for(closer, timeout_s)
        return
    try:
        first = closer.send(None)
    except StopIteration:
        return  # closed at once
    await asyncio.wait_for(_Resumed(closer, first), timeout_s)


class _Resumed:
    """A coroutine that already took its first step, awaitable for the rest of it."""

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value = self._coro, self._first
        while True:
            try:
                sent = yield value
            except BaseException as exc:  # a cancellation: hand it to the coroutine
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _await(aw: Awaitable[T]) -> T:
    return await aw


async def read_until_terminal(
    output: AsyncIterator[Frame], timeout_s: float | None = None
) -> list[Frame]:
    """Read frames from ``output`` up to and including the terminal frame.

    Parameters
    ----------
    output : async iterator of Frame
        Usually ``session.output``.
    timeout_s : float, optional
        Give up after this many seconds.

    Returns
    -------
    list of Frame
        Every frame read. If the iterator ended without a terminal (the
        session detached) the list simply has none.

    Raises
    ------
    StreamTimeoutError
        ``timeout_s`` passed before the terminal frame; ``.frame_log`` holds what
        was read. The stream itself is not cancelled.

    Examples
    --------
    >>> from streamnb.demo import chatbot_handler
    >>> runtime = sn.StreamRuntime(cancel_grace_s=1.0)
    >>> handler = runtime.register(chatbot_handler())
    >>> session = runtime.run(runtime.attach("tutorial.streaming_chatbot", {}))
    >>> try:  # the chatbot waits for input: nothing ends it within 0.1 s
    ...     runtime.run(sn.read_until_terminal(session.output, timeout_s=0.1))
    ... except sn.StreamTimeoutError as exc:
    ...     print([f.kind for f in exc.frame_log])
    ['opened', 'progress']
    >>> runtime.run(session.cancel("user pressed stop"))
    'requested'
    >>> [(f.kind, f.reason) for f in runtime.run(sn.read_until_terminal(session.output))]
    [('cancelled', 'user pressed stop')]
    >>> runtime.close()
    """
    frames: list[Frame] = []

    async def collect() -> None:
        async for frame in output:
            frames.append(frame)
            if frame.kind in TERMINAL_KINDS:
                return

    try:
        if timeout_s is None:
            await collect()
        else:
            await asyncio.wait_for(collect(), timeout_s)
    except asyncio.TimeoutError:
        assert timeout_s is not None
        raise StreamTimeoutError(timeout_s, len(frames), frame_log=frames) from None
    except asyncio.CancelledError:
        # A notebook cell interrupted while waiting (the cursor itself converts this when
        # it is awaited in the cell's own task; with timeout_s it runs in a task of its own)
        interrupted = output.interrupted() if isinstance(output, FrameCursor) else None
        if interrupted is None:
            raise
        raise interrupted from None
    return frames
