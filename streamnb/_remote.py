"""Streams another process runs, reached through a shared ledger (PostgreSQL).

A runtime whose ledger has an exchange (``Ledger("postgresql://...")``) can
read, resume, cancel and feed any stream of that ledger, whichever process
runs it. :class:`RemoteStreams` is that runtime's side of it:

* a stream it does not run is **mirrored**: a :class:`Mirror` is a ``_Stream``
  whose frame log is filled from the database (every frame the owner appends
  is committed there and announced with ``NOTIFY``; the exchange reads and
  delivers them in order), so sessions (``reattach``), cursors (``follow``),
  ``info``, ``frame_log`` and ``wait`` work on it unchanged, and every
  transport built on them (SSE with ``Last-Event-ID``, WebSocket, the AI SDK
  resume, Durable Streams reads) serves it from any worker. Its terminal frame
  is the one the owner committed with the settlement (settle, then announce);
* ``send`` and ``cancel`` on a mirror are commands to the owning runtime,
  answered by it (it stays the only one running the handler); a mirror's
  sessions count as observers at the owner (``observe`` / ``unobserve``), so
  ``on_detach="abort"`` sees them, and they stop counting when this runtime's
  lease is taken over;
* commands from other runtimes to this one are applied here, on the loop.

If the owning runtime's process dies, its lease expires and a survivor settles
its streams ``failed``/``runtime_lost`` with a terminal frame: mirrors end with
it like any other terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ._errors import (
    InputNotAcceptedError,
    InvalidFrameError,
    StreamnbError,
    StreamSettledError,
    UnknownStreamError,
)
from ._frames import TERMINAL_KINDS, Frame, tuple_new
from ._handler import AttachedStreamHandler
from ._ledger.backend import StreamExchange
from ._ledger.exchange import REPLY_TIMEOUT_S, Command, StreamRecord
from ._stream import CancelResult, SendResult, _check_reason, _parse_input, _Stream

if TYPE_CHECKING:
    from ._runtime import StreamRuntime

__all__ = ["Mirror", "RemoteStreams"]

logger = logging.getLogger("streamnb.runtime")


async def _runs_elsewhere(start: Any, input: Any, ctx: Any) -> AsyncIterator[Any]:
    """The ``run`` of a mirror's stand-in handler: the stream runs in another process."""
    raise RuntimeError("this stream runs in another process")
    yield  # pragma: no cover - makes this an async generator


class Mirror(_Stream):
    """A stream another runtime runs, mirrored from the shared ledger.

    Read like any stream; ``send_input`` and ``cancel`` go to the owner.
    """

    __slots__ = ("loaded", "owner_id", "remote")

    def __init__(self, remote: RemoteStreams, rec: StreamRecord) -> None:
        rt = remote.rt
        loop = asyncio.get_running_loop()
        handler = AttachedStreamHandler(
            kind=rec.kind,
            run=_runs_elsewhere,
            mode=rec.mode,  # type: ignore[arg-type]
            on_detach=rec.on_detach,  # type: ignore[arg-type]
        )
        super().__init__(
            rt._owner,
            handler,
            rec.stream_ref,
            rec.opened_at,
            cap=rt.max_retained_frames,
        )
        self.remote = remote
        #: the runtime (lease) that runs it
        self.owner_id = rec.runtime_id
        #: resolved once the frames committed so far are in the log
        self.loaded: asyncio.Future[None] = loop.create_future()

    @property
    def runtime_id(self) -> str | None:
        return self.owner_id

    # --- frames in from the exchange -------------------------------------------------------

    def deliver(self, frames: list[tuple[Any, ...]]) -> None:
        """Append frames read from the ledger (consecutive seqs; the terminal announces)."""
        for raw in frames:
            if self.terminal is not None:
                break
            seq = raw[2]
            if seq < self.next_seq:
                continue  # read twice (a poll crossed a notification)
            if seq > self.next_seq:  # never written (its owner lost its lease): a gap
                self.log.clear()
                self.base = seq
            if raw[0] in TERMINAL_KINDS:
                self.announce(tuple_new(Frame, raw))
                self.remote.settled(self)
            else:
                self.append(raw)
        if not self.loaded.done():
            self.loaded.set_result(None)

    # --- to the owner ------------------------------------------------------------------------

    async def send_input(self, frame: Any) -> SendResult:
        ref = self.ref
        if self.handler.mode != "bidi":
            raise InputNotAcceptedError(
                ref, "it is an output_only stream; only 'bidi' handlers read input"
            )
        if self.terminal is not None:
            raise StreamSettledError(ref, self.terminal.kind)
        seq, payload = _parse_input(frame, ref)
        body: dict[str, Any] = {"kind": "input", "payload": payload}
        if seq is not None:
            body["seq"] = seq
        answer = await self.remote.request(self, "input", body)
        if "result" in answer:
            result: SendResult = answer["result"]
            return result
        if "settled" in answer:
            raise StreamSettledError(ref, answer["settled"])
        if "gone" in answer:
            raise StreamSettledError(ref, None)
        if "timeout" in answer:
            raise InputNotAcceptedError(
                ref,
                f"the runtime running it in another process did not answer within "
                f"{REPLY_TIMEOUT_S:g} s; send it again with the same seq (a repeat is ignored)",
            )
        raise _error_from(ref, answer.get("error") or {})

    async def cancel(self, reason: Any) -> CancelResult:
        _check_reason(reason)
        if self.terminal is not None:
            return "already_settled"
        answer = await self.remote.request(self, "cancel", {"reason": reason})
        if "result" in answer:
            result: CancelResult = answer["result"]
            return result
        if "settled" in answer or "gone" in answer:
            return "already_settled"
        if "timeout" in answer:
            # queued for the owner: it cancels when it reads it, or its lease runs out
            return "requested"
        raise _error_from(self.ref, answer.get("error") or {})

    def request_cancel(self, reason: Any) -> CancelResult:
        raise RuntimeError("a mirrored stream is cancelled with 'await cancel()'")  # never used

    def add_observer(self) -> None:
        self.observers += 1
        if self.observers == 1 and self.terminal is None:
            self.remote.post(self, "observe")

    def remove_observer(self) -> None:
        self.observers -= 1
        if self.observers == 0 and self.terminal is None:
            self.remote.post(self, "unobserve")

    def check_idle(self) -> None:
        """A mirror has no idle timer: its owner keeps it."""


def _error_from(ref: str, error: dict[str, Any]) -> StreamnbError:
    """The owner's refusal as the error ``send`` raises locally."""
    kind = error.get("type")
    message = str(error.get("message") or "refused by the runtime running it")
    if kind == "StreamSettledError":
        return StreamSettledError(ref, error.get("status"))
    if kind == "InvalidFrameError":
        return InvalidFrameError(message)
    if kind == "UnknownStreamError":
        return UnknownStreamError(ref, "the runtime running it no longer has it")
    return InputNotAcceptedError(ref, str(error.get("why") or message))


def _error_answer(exc: StreamnbError) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, StreamSettledError):
        body["status"] = exc.status
    elif isinstance(exc, InvalidFrameError):
        body["message"] = exc.problem
    elif isinstance(exc, InputNotAcceptedError):
        prefix = f"input to stream {exc.stream_ref!r} was not accepted: "
        text = str(exc)
        body["why"] = text[len(prefix) :] if text.startswith(prefix) else text
    return {"error": body}


class RemoteStreams:
    """A runtime's part in a shared ledger: its mirrors, its lease, its commands."""

    def __init__(self, rt: StreamRuntime, exchange: StreamExchange) -> None:
        self.rt = rt
        self.exchange = exchange
        #: this runtime's lease (None until the first attach or command)
        self.runtime_id: str | None = None
        self._joining: asyncio.Future[str] | None = None
        self.mirrors: dict[str, Mirror] = {}
        self._settled_order: deque[str] = deque()
        #: (runtime id, ref) -> observers that runtime has of our stream ``ref``
        self._observers: dict[tuple[str, str], int] = {}
        self._resolving: dict[str, asyncio.Future[Mirror | None]] = {}

    # --- the lease ---------------------------------------------------------------------------

    async def ensure_joined(self) -> str:
        """This runtime's ``runtime_id``, taking a lease on first use."""
        if self.runtime_id is not None:
            return self.runtime_id
        if self._joining is None:
            self._joining = asyncio.ensure_future(self.exchange.join(self))
        joining = self._joining
        try:
            runtime_id = await asyncio.shield(joining)
        except BaseException:
            if joining.done() and self._joining is joining:
                self._joining = None  # failed: the next call tries again
            raise
        self.runtime_id = runtime_id
        return runtime_id

    def on_lease_lost(self, runtime_id: str) -> None:
        """Our lease was taken over: our streams are settled elsewhere; stop their handlers."""
        if runtime_id != self.runtime_id:
            return
        self.runtime_id = None
        self._joining = None  # the next attach takes a new lease
        self.rt._lease_lost()

    def on_runtimes_lost(self, runtime_ids: list[str]) -> None:
        """Those runtimes are dead: their observers of our streams are gone."""
        dead = set(runtime_ids)
        for key in [k for k in self._observers if k[0] in dead]:
            count = self._observers.pop(key)
            st = self.rt._local(key[1])
            if st is not None:
                for _ in range(count):
                    st.remove_observer()

    # --- commands to our streams ---------------------------------------------------------

    def on_commands(self, commands: list[Command]) -> None:
        for command in commands:
            try:
                self._apply(command)
            except Exception:  # one bad command must not lose the others
                logger.exception("streamnb: a command from %s failed", command.sender)

    def _apply(self, c: Command) -> None:
        rt = self.rt
        st = rt._local(c.stream_ref)
        if c.kind in ("observe", "unobserve"):
            if st is None or st.terminal is not None:
                return
            key = (c.sender, c.stream_ref)
            if c.kind == "observe":
                self._observers[key] = self._observers.get(key, 0) + 1
                st.add_observer()
            elif self._observers.get(key, 0) > 0:
                self._observers[key] -= 1
                if not self._observers[key]:
                    del self._observers[key]
                st.remove_observer()
            return
        body = c.body if isinstance(c.body, dict) else {}
        answer: dict[str, Any]
        try:
            if st is None:
                ended = rt._evicted_terminal(c.stream_ref)
                if ended is None:
                    raise UnknownStreamError(c.stream_ref)
                answer = {"settled": ended.kind}
            elif c.kind == "cancel":
                answer = {"result": st.request_cancel(body.get("reason", "cancelled"))}
            elif c.kind == "input":
                frame = {k: body[k] for k in ("kind", "seq", "payload") if k in body}
                answer = {"result": st.accept_input(frame)}
            else:
                raise InvalidFrameError(f"unknown command {c.kind!r}")
        except StreamnbError as exc:
            answer = _error_answer(exc)
        self.exchange.reply(c, answer)

    # --- mirrors -------------------------------------------------------------------------

    def get(self, ref: str) -> Mirror | None:
        try:
            return self.mirrors.get(ref)
        except TypeError:  # an unhashable ref
            return None

    async def resolve(self, ref: str) -> Mirror | None:
        """The mirror of ``ref`` (its frames so far loaded), or None if the ledger lacks it."""
        if not isinstance(ref, str):
            return None
        mirror = self.mirrors.get(ref)
        if mirror is None:
            pending = self._resolving.get(ref)
            if pending is None:
                pending = asyncio.ensure_future(self._open_mirror(ref))
                self._resolving[ref] = pending
                pending.add_done_callback(lambda _: self._resolving.pop(ref, None))
            mirror = await asyncio.shield(pending)
            if mirror is None:
                return None
        if not mirror.loaded.done():
            await asyncio.shield(mirror.loaded)
        return mirror

    async def _open_mirror(self, ref: str) -> Mirror | None:
        rec = await self.exchange.record(ref)
        if rec is None or (rec.status != "running" and rec.terminal is None):
            return None  # unknown, or settled before its frames were kept
        if rec.runtime_id is not None and rec.runtime_id == self.runtime_id:
            local = self.rt._local(ref)
            if local is not None and local.terminal is None:
                return None  # ours and running: the runtime holds it (a race at attach)
        mirror = Mirror(self, rec)
        self.mirrors[ref] = mirror
        self.exchange.follow(ref, -1, mirror, asyncio.get_running_loop())
        return mirror

    def settled(self, mirror: Mirror) -> None:
        """Keep at most ``retain_settled`` settled mirrors (the oldest leave first)."""
        order = self._settled_order
        order.append(mirror.ref)
        while len(order) > self.rt.retain_settled:
            gone = order.popleft()
            m = self.mirrors.pop(gone, None)
            if m is not None:
                self.exchange.unfollow(m)

    async def request(self, mirror: Mirror, kind: str, body: Any) -> dict[str, Any]:
        """Send a command to ``mirror``'s owner and wait for its answer (see :class:`Mirror`)."""
        sender = await self.ensure_joined()
        target = mirror.owner_id
        if target is None:
            return {"gone": True}
        token, reply, written = self.exchange.send(
            sender, target, mirror.ref, kind, body, expect_reply=True
        )
        assert reply is not None
        try:
            if not await asyncio.wrap_future(written):
                return {"gone": True}  # the owner holds no lease: it is being settled
            settled = asyncio.shield(mirror.settled_future())
            done, _ = await asyncio.wait(
                {reply, settled}, timeout=REPLY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
            if reply in done:
                answer: dict[str, Any] = reply.result()
                return answer
            if mirror.terminal is not None:
                return {"settled": mirror.terminal.kind}
            return {"timeout": True}
        finally:
            self.exchange.forget_reply(token)
            if not reply.done():
                reply.cancel()

    def post(self, mirror: Mirror, kind: str) -> None:
        """Send ``observe``/``unobserve`` to ``mirror``'s owner without waiting."""
        target = mirror.owner_id
        if target is None:
            return
        if self.runtime_id is None:
            # not joined yet: join first (an owned task), then send
            self.rt._own(self._post_later(mirror, kind))
            return
        _, _, written = self.exchange.send(
            self.runtime_id, target, mirror.ref, kind, expect_reply=False
        )
        written.add_done_callback(_log_send_failure)

    async def _post_later(self, mirror: Mirror, kind: str) -> None:
        await self.ensure_joined()
        self.post(mirror, kind)

    async def aclose(self) -> None:
        """Stop following every mirror and give this runtime's lease up."""
        for mirror in self.mirrors.values():
            self.exchange.unfollow(mirror)
        self.mirrors.clear()
        joining, self._joining = self._joining, None
        if joining is not None and not joining.done():
            with contextlib.suppress(BaseException):
                await joining
        if self.runtime_id is not None:
            runtime_id, self.runtime_id = self.runtime_id, None
            with contextlib.suppress(StreamnbError):
                await self.exchange.leave(runtime_id)


def _log_send_failure(fut: Any) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        logger.warning("streamnb: an observer change was not sent: %s", fut.exception())
