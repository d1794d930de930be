"""Stateful property test: random interleavings of everything an observer or a fault can do.

A hypothesis ``RuleBasedStateMachine`` drives one runtime on a fresh event loop per
example (rules are synchronous; each runs the loop with ``run_until_complete``).
Rules: attach a stream whose handler misbehaves in a random way at a random point
(cooperative, ignores cancel, swallows the force-cancel once, raises, returns
without a terminal, yields a terminal twice, yields an invalid frame, has a
``commit_terminal`` that raises, is slow with an async ``commit_terminal``, or is an
output-only flood), send, cancel, detach, reattach, read (some readers read every
tick, some every third tick, some never), tick, wait for every stream that must
end to settle, and ``aclose``.

Invariants, checked after every step: seq runs 0, 1, 2, ... in each log; at most one
terminal frame, last; once ended exactly one, and the ledger's ``streams`` row has
its kind and the handler's event agrees (none when ``commit_terminal`` raised);
the ledger is never ahead of a running stream; every reader saw a gap-free,
duplicate-free run of the log with at most one terminal; ``observers`` counts the
sessions not detached; the outcome of each ``send`` and ``cancel`` is the one the
stream's state predicts. After ``aclose``: every stream settled, no task left on
the loop, ``_drivers`` and ``_zombies`` empty. Readers that never read never keep a
stream from settling.

The default profile runs about 60 examples on each ledger backend (SQLite in
memory, and PostgreSQL with a fresh schema per example); ``STREAMNB_SOAK=1`` runs
the ``slow`` variant with many more and longer ones.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import streamnb as sn

T = TypeVar("T")

BEHAVIOURS = [
    "cooperative",
    "ignores_cancel",
    "swallows_cancel",
    "raises",
    "no_terminal",
    "double_terminal",
    "invalid_frame",
    "commit_raises",
    "slow",
    "flood",  # output_only
]
GRACE_S = 0.02
FORCE_WAIT_S = 0.02


def make_handler(behaviour: str, on_detach: str) -> sn.AttachedStreamHandler:
    """A handler that misbehaves as ``behaviour`` after ``start["k"]`` outputs."""

    async def run(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
        k = start["k"]
        if behaviour == "flood":
            for i in range(40 * (k + 1)):
                if ctx.signal.aborted:
                    yield sn.cancelled(ctx.signal.reason or "cancelled")
                    return
                yield sn.output(f"f{i} ", "stdout")
                if i % 16 == 15:
                    await asyncio.sleep(0)
            yield sn.completed({"n": 40 * (k + 1)})
            return
        yield sn.progress({"behaviour": behaviour, "k": k})
        n = 0
        async for frame in input:
            for i in range(2):
                if n == k:
                    if behaviour == "raises":
                        raise RuntimeError(f"injected after {n} outputs")
                    if behaviour == "invalid_frame":
                        yield {"kind": "output", "payload": "no channel"}
                    if behaviour == "no_terminal":
                        return
                if ctx.signal.aborted and behaviour not in ("ignores_cancel", "swallows_cancel"):
                    yield sn.cancelled(ctx.signal.reason or "cancelled")
                    return
                yield sn.output(f"{frame.payload}{i} ")
                n += 1
                await asyncio.sleep(0.002 if behaviour == "slow" else 0)
            if frame.payload == "end":
                break
        if ctx.signal.aborted:  # the input ended because of a cancel
            if behaviour == "ignores_cancel":
                await asyncio.Event().wait()  # until forced
            if behaviour == "swallows_cancel":
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    pass  # swallowed: the runtime settles without it (a zombie)
                await asyncio.Event().wait()  # aclose() cancels it again
            if behaviour != "no_terminal":
                yield sn.cancelled(ctx.signal.reason or "cancelled")
            return
        if behaviour == "no_terminal":
            return
        yield sn.completed({"n": n})
        if behaviour == "double_terminal":
            yield sn.completed({"second": True})

    def commit(terminal: sn.Frame, tx: sn.LedgerTx) -> None:
        if behaviour == "commit_raises":
            raise ValueError("commit_terminal bug")
        tx.insert_event("sm.settled", {"kind": terminal.kind, "terminal": terminal.terminal})

    async def slow_commit(terminal: sn.Frame, tx: sn.LedgerTx) -> None:
        await asyncio.sleep(0.002)
        commit(terminal, tx)

    return sn.AttachedStreamHandler(
        kind=f"sm.{behaviour}.{on_detach}",
        mode="output_only" if behaviour == "flood" else "bidi",
        on_detach=on_detach,  # type: ignore[arg-type]
        run=run,
        commit_terminal=slow_commit if behaviour == "slow" else commit,
    )


@dataclass
class Reader:
    session: sn.Session
    start: int  # the first seq it may see
    period: int  # reads on every period-th tick; 0 = never reads
    seen: list[sn.Frame] = field(default_factory=list)
    detached: bool = False


@dataclass
class Model:
    ref: str
    behaviour: str
    on_detach: str
    readers: list[Reader]
    sent_end: bool = False


class RuntimeMachine(RuleBasedStateMachine):
    #: where each example's ledger lives: None (SQLite in memory) or a new PostgreSQL schema
    new_target: ClassVar[Callable[[], str | None]] = staticmethod(lambda: None)

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        ledger = sn.Ledger(type(self).new_target())
        self.rt = sn.StreamRuntime(ledger, cancel_grace_s=GRACE_S, force_wait_s=FORCE_WAIT_S)
        for behaviour in BEHAVIOURS:
            for on_detach in ("abort", "continue"):
                self.rt.register(make_handler(behaviour, on_detach))
        self.streams: list[Model] = []
        self.closed = False
        self.ticks = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, 20))

    def pick(self, i: int) -> Model:
        return self.streams[i % len(self.streams)]

    # --- rules -----------------------------------------------------------------------

    @precondition(lambda self: len(self.streams) < 6)
    @rule(
        behaviour=st.sampled_from(BEHAVIOURS),
        on_detach=st.sampled_from(["abort", "continue"]),
        k=st.integers(0, 3),
        period=st.sampled_from([1, 3, 0]),
    )
    def attach(self, behaviour: str, on_detach: str, k: int, period: int) -> None:
        kind = f"sm.{behaviour}.{on_detach}"
        if self.closed:
            with pytest.raises(sn.RuntimeClosedError, match="closed"):
                self.run(self.rt.attach(kind, {"k": k}))
            return
        session = self.run(self.rt.attach(kind, {"k": k}))
        self.streams.append(
            Model(session.stream_ref, behaviour, on_detach, [Reader(session, 0, period)])
        )

    @precondition(lambda self: len(self.streams) < 6 and not self.closed)
    @rule(behaviour=st.sampled_from(BEHAVIOURS), on_detach=st.sampled_from(["abort", "continue"]))
    def attach_cancelled_while_its_row_is_written(self, behaviour: str, on_detach: str) -> None:
        """The caller goes away mid-attach: a committed row still gets its stream (and so
        its settlement), as if its only observer had detached."""
        known = set(self.rt._streams)
        task = self.loop.create_task(self.rt.attach(f"sm.{behaviour}.{on_detach}", {"k": 1}))
        self.loop.call_soon(task.cancel)  # right after its first step: its row is on the way
        self.run(asyncio.gather(task, return_exceptions=True))
        assert task.cancelled()
        for ref in set(self.rt._streams) - known:
            self.streams.append(Model(ref, behaviour, on_detach, readers=[]))
            info = self.rt.info(ref)
            assert info.observers == 0
            assert info.cancel_requested == (on_detach == "abort")

    @precondition(lambda self: len(self.streams) < 6 and not self.closed)
    @rule(behaviour=st.sampled_from(BEHAVIOURS), period=st.sampled_from([1, 0]))
    def attach_racing_close(self, behaviour: str, period: int) -> None:
        """aclose() while an attach is writing its row: aclose waits for it, and the new
        stream is cancelled (runtime_closed) and settled before aclose returns."""
        kind = f"sm.{behaviour}.continue"
        attach = self.loop.create_task(self.rt.attach(kind, {"k": 0}))
        closing = self.loop.create_task(self.rt.aclose())  # runs while the row is written
        session, _ = self.run(asyncio.gather(attach, closing))
        self.streams.append(
            Model(session.stream_ref, behaviour, "continue", [Reader(session, 0, period)])
        )
        assert session.terminal is not None
        assert self.rt.info(session.stream_ref).cancel_reason == "runtime_closed"
        self.close()

    # send, cancel and detach read the stream's state and act in one loop step (none of
    # them suspends), so the outcome the state predicts is the outcome we must get

    @precondition(lambda self: self.streams)
    @rule(i=st.integers(0, 20), payload=st.sampled_from(["hi", "hi", "end"]), by_ref=st.booleans())
    def send(self, i: int, payload: str, by_ref: bool) -> None:
        m = self.pick(i)
        reader = None if by_ref or not m.readers else m.readers[0]

        async def act() -> tuple[sn.StreamInfo, Any]:
            info = self.rt.info(m.ref)
            try:
                if reader is None:
                    return info, await self.rt.send(m.ref, payload)
                return info, await reader.session.send(payload)
            except sn.StreamnbError as exc:
                return info, exc

        info, outcome = self.run(act())
        if reader is not None and reader.detached:
            assert type(outcome) is sn.SessionDetachedError
        elif info.mode == "output_only":
            assert type(outcome) is sn.InputNotAcceptedError
        elif info.terminal is not None or info.settling:
            assert type(outcome) is sn.StreamSettledError
        elif info.cancel_requested:
            assert type(outcome) is sn.InputNotAcceptedError
        else:
            assert outcome == "accepted"
            m.sent_end = m.sent_end or payload == "end"

    @precondition(lambda self: self.streams)
    @rule(i=st.integers(0, 20), j=st.integers(0, 5), by_ref=st.booleans())
    def cancel(self, i: int, j: int, by_ref: bool) -> None:
        m = self.pick(i)
        reader = None if by_ref or not m.readers else m.readers[j % len(m.readers)]

        async def act() -> tuple[sn.StreamInfo, Any]:
            info = self.rt.info(m.ref)
            try:
                if reader is None:
                    return info, await self.rt.cancel(m.ref, "sm")
                return info, await reader.session.cancel("sm")
            except sn.StreamnbError as exc:
                return info, exc

        info, result = self.run(act())
        if reader is not None and reader.detached:
            assert type(result) is sn.SessionDetachedError
        elif info.terminal is not None or info.settling:
            assert result == "already_settled"
        elif info.cancel_requested:
            assert result == "already_requested"
        else:
            assert result == "requested"

    @precondition(lambda self: self.streams)
    @rule(i=st.integers(0, 20), j=st.integers(0, 5))
    def detach(self, i: int, j: int) -> None:
        m = self.pick(i)
        if not m.readers:  # its attach was cancelled: nobody holds a session
            return
        reader = m.readers[j % len(m.readers)]

        async def act() -> tuple[sn.StreamInfo, sn.StreamInfo]:
            before = self.rt.info(m.ref)
            await reader.session.detach()
            return before, self.rt.info(m.ref)

        before, after = self.run(act())
        reader.detached = True
        last = not any(not r.detached for r in m.readers)
        running = before.terminal is None and not before.settling
        if last and m.on_detach == "abort" and running:
            assert after.cancel_requested
            if not before.cancel_requested:
                assert after.cancel_reason == "detached"
        if m.on_detach == "continue":
            assert after.cancel_requested == before.cancel_requested  # detach is not cancel

    @precondition(lambda self: self.streams)
    @rule(
        i=st.integers(0, 20),
        after_seq=st.sampled_from([None, -1, 0, 1, 3, 50]),
        period=st.sampled_from([1, 3, 0]),
    )
    def reattach(self, i: int, after_seq: int | None, period: int) -> None:
        m = self.pick(i)
        session = self.run(self.rt.reattach(m.ref, after_seq=after_seq))
        m.readers.append(Reader(session, 0 if after_seq is None else after_seq + 1, period))

    @precondition(lambda self: self.streams)
    @rule(i=st.integers(0, 20), j=st.integers(0, 5), n=st.integers(1, 50))
    def read(self, i: int, j: int, n: int) -> None:
        m = self.pick(i)
        if m.readers:
            self.run(self._read(m, m.readers[j % len(m.readers)], n))

    @rule(ms=st.sampled_from([0, 0, 1, 5, 30]))
    def tick(self, ms: int) -> None:
        self.run(asyncio.sleep(ms / 1000))
        self.ticks += 1
        for m in self.streams:  # periodic readers; period 0 never reads
            for reader in m.readers:
                if reader.period and self.ticks % reader.period == 0:
                    self.run(self._read(m, reader, 10_000))

    @precondition(lambda self: self.streams)
    @rule()
    def streams_that_must_end_settle(self) -> None:
        """No reader blocks a writer: cancelled and output-only streams settle in bounded time,
        however many of their sessions never read."""
        for m in self.streams:
            info = self.rt.info(m.ref)
            if info.cancel_requested or m.behaviour == "flood":
                self.run(self.rt.wait(m.ref, timeout_s=5))

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self) -> None:
        self.run(self.rt.aclose())  # idempotent
        self.closed = True
        for m in self.streams:
            assert self.rt.info(m.ref).terminal is not None, m
        assert not asyncio.all_tasks(self.loop), asyncio.all_tasks(self.loop)
        assert not self.rt._drivers and not self.rt._zombies
        assert self.rt.active_refs() == []

    async def _read(self, m: Model, reader: Reader, n: int) -> None:
        """Read up to ``n`` frames that are already there (never waits)."""
        if reader.detached:  # detach ended its output: reading it now is refused
            with pytest.raises(sn.SessionDetachedError):
                reader.session.output  # noqa: B018
            return
        for _ in range(n):
            last = reader.seen[-1].seq if reader.seen else reader.start - 1
            if reader.seen and reader.seen[-1].is_terminal:
                return
            if not self.rt.frame_log(m.ref, last):
                return
            reader.seen.append(await reader.session.output.__anext__())

    # --- invariants --------------------------------------------------------------------

    @invariant()
    def logs_ledger_and_readers_agree(self) -> None:
        if not self.streams:
            return
        ledger = self.rt.ledger
        # one statement, so one snapshot: reads run beside the writer, and a settlement may
        # commit between two queries
        rows: dict[str, tuple[str, str | None]] = {}
        events: dict[str, list[Any]] = {}
        for ref, status, reason, kind, payload in ledger.sql(
            "SELECT s.stream_ref, s.status, s.reason, e.kind, e.payload "
            "FROM streams s LEFT JOIN events e USING (stream_ref) ORDER BY e.id"
        ).itertuples(index=False):
            rows[ref] = (status, reason)
            if isinstance(kind, str):  # None (no event) comes back as NaN
                assert kind == "sm.settled"
                events.setdefault(ref, []).append(json.loads(payload))
        assert len(rows) == len(self.streams)
        for m in self.streams:
            self._check_stream(m, rows[m.ref], events.get(m.ref, []))

    def _check_stream(self, m: Model, row: tuple[str, str | None], events: list[Any]) -> None:
        log = self.rt.frame_log(m.ref)
        info = self.rt.info(m.ref)
        assert [f.seq for f in log] == list(range(len(log)))
        assert log[0].kind == "opened"
        terminals = [f for f in log if f.is_terminal]
        assert len(terminals) <= 1
        status, _reason = row
        if info.terminal is None:
            assert not terminals
            if not info.settling:  # settle, then announce: never the other way
                assert status == "running", (m, status)
            if status == "running":
                assert events == []  # the events commit with the settlement, not before
        else:
            terminal = info.terminal
            assert terminals == [terminal] and log[-1] == terminal
            assert status == terminal.kind
            self._check_terminal(m, info, terminal, events)
        assert info.observers == sum(not r.detached for r in m.readers)
        for reader in m.readers:
            seqs = [f.seq for f in reader.seen]
            assert seqs == list(range(reader.start, reader.start + len(seqs)))
            assert all(f == log[f.seq] for f in reader.seen)  # the same frames, uncorrupted
            assert sum(f.is_terminal for f in reader.seen) <= 1
            if reader.seen and reader.seen[-1].is_terminal:
                assert reader.seen[-1] == info.terminal

    def _check_terminal(
        self, m: Model, info: sn.StreamInfo, terminal: sn.Frame, events: list[Any]
    ) -> None:
        b = m.behaviour
        if b == "commit_raises":
            assert events == []
            assert terminal.kind == "failed" and terminal.reason == "commit_terminal_error"
            return
        assert events == [{"kind": terminal.kind, "terminal": terminal.terminal}]
        if terminal.kind == "cancelled":
            assert info.cancel_requested  # nothing settles cancelled without a cancel
            if (terminal.terminal or {}).get("forced"):
                assert terminal.reason == info.cancel_reason
        elif terminal.kind == "completed":
            assert b not in ("no_terminal",)
            assert terminal.terminal != {"second": True}  # the first terminal wins
            if b != "flood":
                assert m.sent_end
        else:
            allowed = {
                "raises": {"handler_error"},
                "invalid_frame": {"invalid_frame"},
                "no_terminal": {"no_terminal"},
            }.get(b, set())
            assert terminal.reason in allowed, (b, terminal)
            if terminal.reason == "invalid_frame":
                assert "channel" in (terminal.error or "")

    def teardown(self) -> None:
        try:
            if not self.closed:
                self.close()
        finally:
            self.rt.ledger.close()
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()


def run_machine(
    max_examples: int, steps: int, backend: str, request: pytest.FixtureRequest
) -> None:
    machine: type[RuntimeMachine] = RuntimeMachine
    if backend == "postgres":
        cluster = request.getfixturevalue("pg_cluster")

        class PostgresMachine(RuntimeMachine):
            new_target = staticmethod(cluster.fresh_dsn)

        machine = PostgresMachine
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_random_interleavings_keep_every_guarantee(
    backend: str, request: pytest.FixtureRequest
) -> None:
    run_machine(max_examples=60, steps=25, backend=backend, request=request)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_random_interleavings_keep_every_guarantee_soak(
    backend: str, request: pytest.FixtureRequest
) -> None:
    run_machine(max_examples=500, steps=50, backend=backend, request=request)
