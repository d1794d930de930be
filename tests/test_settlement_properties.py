"""Property: any interleaving of send/cancel/detach/faults gives exactly one settlement."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamnb as sn

FAULTS = [
    "none",
    "raise",
    "no_terminal",
    "ignore_cancel",
    "double_terminal",
    "bad_frame",
    "commit_raises",
]


def make_handler(fault: str, on_detach: str) -> sn.AttachedStreamHandler:
    async def run(start, input, ctx):
        yield sn.progress({"fault": fault})
        async for frame in input:
            if frame.payload == "fail" and fault == "raise":
                raise RuntimeError("injected")
            for i in range(3):
                if ctx.signal.aborted and fault != "ignore_cancel":
                    yield sn.cancelled(ctx.signal.reason or "x")
                    return
                yield sn.output(f"{frame.payload}{i} ")
                await asyncio.sleep(0)
            if frame.payload == "end":
                break
        if fault == "ignore_cancel":
            await asyncio.Event().wait()
        if fault == "bad_frame":
            yield {"kind": "output", "payload": "no channel"}
        if fault == "no_terminal":
            return
        yield sn.completed()
        if fault == "double_terminal":
            yield sn.completed({"second": True})

    def commit(terminal, tx):
        if fault == "commit_raises":
            raise ValueError("commit bug")
        tx.insert_event("prop.settled", {"kind": terminal.kind})

    return sn.AttachedStreamHandler(
        kind=f"prop.{fault}.{on_detach}",
        mode="bidi",
        run=run,
        on_detach=on_detach,
        commit_terminal=commit,
    )


op = st.one_of(
    st.tuples(st.just("send"), st.integers(0, 3), st.sampled_from(["hi", "end", "fail"])),
    st.tuples(st.just("cancel"), st.integers(0, 3), st.just("")),
    st.tuples(st.just("detach"), st.integers(0, 3), st.just("")),
    st.tuples(st.just("reattach"), st.integers(0, 3), st.just("")),
    st.tuples(st.just("tick"), st.integers(0, 3), st.just("")),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    streams=st.lists(
        st.tuples(st.sampled_from(FAULTS), st.sampled_from(["abort", "continue"])),
        min_size=1,
        max_size=4,
    ),
    ops=st.lists(op, max_size=25),
)
def test_any_interleaving_settles_each_stream_exactly_once(streams, ops):
    async def scenario():
        rt = sn.StreamRuntime(cancel_grace_s=0.01, force_wait_s=0.01)
        sessions: list[list[sn.Session]] = []
        for fault, on_detach in streams:
            rt.register(make_handler(fault, on_detach))
            s = await rt.attach(f"prop.{fault}.{on_detach}")
            sessions.append([s])
        for name, idx, arg in ops:
            group = sessions[idx % len(sessions)]
            s = group[-1]
            if s.detached and name in ("send", "cancel"):  # a detached session is not used
                with pytest.raises(sn.SessionDetachedError):
                    await (s.send(arg) if name == "send" else s.cancel("prop"))
                continue
            try:
                if name == "send":
                    await s.send(arg)
                elif name == "cancel":
                    assert await s.cancel("prop") in {
                        "requested",
                        "already_requested",
                        "already_settled",
                    }
                elif name == "detach":
                    await s.detach()
                elif name == "reattach":
                    group.append(await rt.reattach(s.stream_ref))
                else:
                    await asyncio.sleep(0.001)
            except sn.InputNotAcceptedError:
                pass  # settled, cancelling or output refused: allowed outcomes
        await rt.aclose()
        ledger_streams = rt.ledger.streams()
        events = rt.ledger.events()
        for (fault, _), group in zip(streams, sessions, strict=True):
            ref = group[0].stream_ref
            log = rt.frame_log(ref)
            terminals = [f for f in log if f.is_terminal]
            assert len(terminals) == 1, (fault, [f.kind for f in log])
            assert log[-1] is terminals[0]
            assert [f.seq for f in log] == list(range(len(log)))
            row = ledger_streams[ledger_streams.stream_ref == ref]
            assert len(row) == 1 and row.status.iloc[0] == terminals[0].kind
            mine = events[events.stream_ref == ref]
            if fault == "commit_raises":
                assert len(mine) == 0 and terminals[0].reason == "commit_terminal_error"
            else:
                assert mine.payload.tolist() == [{"kind": terminals[0].kind}]
            for s in group:  # every reader sees seq order and at most one terminal
                seen = [f async for f in s.output] if not s.detached else []
                assert [f.seq for f in seen] == sorted({f.seq for f in seen})
                assert sum(f.is_terminal for f in seen) <= 1
        assert not rt._drivers and not rt._zombies
        rt.ledger.close()

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), 30))
    finally:
        loop.close()
