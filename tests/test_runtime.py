"""The runtime's guarantees (README.md, "Guarantees")."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref

import pytest

import streamnb as sn
from streamnb.demo import output_only_handler
from streamnb.testing import assert_checkpoint, checkpoint_path


def handler(kind: str, run, **kw) -> sn.AttachedStreamHandler:
    return sn.AttachedStreamHandler(kind=kind, run=run, **kw)


# --- seed 000: streaming chatbot -----------------------------------------------------


async def test_chatbot_completed_path_matches_seed_checkpoint(runtime):
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    assert await session.send({"kind": "input", "seq": 0, "payload": "hello"}) == "accepted"
    frames = await sn.read_until_terminal(session.output, timeout_s=5)
    assert_checkpoint(frames, "opened -> progress -> output* -> completed")
    assert [f.seq for f in frames] == list(range(len(frames)))
    proj = sn.project_attached_stream(frames, session.stream_ref)
    assert proj.status == "completed"
    assert proj.text("assistant.delta") == "streamnb reply to hello"
    events = runtime.ledger.events(kind="tutorial.streaming_chatbot.settled")
    assert len(events) == 1
    assert events.payload[0]["kind"] == "completed"
    assert events.payload[0]["terminal"]["terminal"] == {"ok": True}


async def test_chatbot_cancel_path_matches_seed_checkpoint(runtime):
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    first = [await session.output.__anext__(), await session.output.__anext__()]
    assert [f.kind for f in first] == ["opened", "progress"]
    assert await session.cancel("user pressed stop") == "requested"
    frames = first + await sn.read_until_terminal(session.output, timeout_s=5)
    assert_checkpoint(frames, "opened -> progress -> cancelled")
    assert frames[-1].reason == "user pressed stop"
    assert frames[-1].terminal == {"cancelled": True}
    events = runtime.ledger.events(kind="tutorial.streaming_chatbot.settled")
    assert events.payload.tolist()[0]["kind"] == "cancelled"
    assert await session.cancel("again") == "already_settled"


async def test_cancel_twice_is_already_requested(runtime):
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    assert await session.cancel("a") == "requested"
    assert await session.cancel("b") == "already_requested"
    terminal = await session.wait(timeout_s=5)
    assert terminal.reason == "a"


# --- seed 001: output-only stream ---------------------------------------------------


async def test_detached_session_no_longer_accepts_send(runtime):
    # Regression: a detached session still accepted send (and cancel, wait, output...).
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    first = [await session.output.__anext__(), await session.output.__anext__()]
    assert [f.kind for f in first] == ["opened", "progress"]  # now it waits for input
    reader = asyncio.ensure_future(sn.read_until_terminal(session.output))
    await asyncio.sleep(0)
    await session.detach()
    assert await asyncio.wait_for(reader, 5) == []  # the waiting reader sees output end
    for action, use in [
        ("send", lambda: session.send("hello")),
        ("cancel", lambda: session.cancel("stop")),
        ("wait", lambda: session.wait(1)),
    ]:
        with pytest.raises(sn.SessionDetachedError, match=f"cannot {action}: .*reattach"):
            await use()
    with pytest.raises(sn.SessionDetachedError, match="read output"):
        session.output  # noqa: B018
    with pytest.raises(sn.SessionDetachedError, match="frame log"):
        session.frame_log()
    await session.detach()  # idempotent
    assert session.detached and "detached" in repr(session)
    assert session.stream_ref and session.status in ("running", "cancelled")
    # the stream is still there for anyone holding its ref: on_detach="abort" cancelled it
    terminal = await runtime.wait(session.stream_ref, timeout_s=5)
    assert terminal.kind == "cancelled" and terminal.reason == "detached"
    assert session.terminal == terminal


async def test_output_only_completed_path(runtime):
    session = await runtime.attach("tutorial.output_only", {})
    frames = await sn.read_until_terminal(session.output, timeout_s=5)
    assert checkpoint_path(frames) == "opened -> progress -> output -> completed"
    proj = sn.project_attached_stream(frames, session.stream_ref)
    assert proj.status == "completed" and proj.omitted == ()
    assert list(runtime.ledger.events().kind) == ["tutorial.output_only.completed"]


async def test_output_only_detach_continue_still_settles(runtime):
    session = await runtime.attach("tutorial.output_only", {})
    output = session.output
    await session.detach()
    assert [f async for f in output] == []  # detach ends this observer's output
    terminal = await runtime.wait(session.stream_ref, timeout_s=5)
    assert terminal.kind == "completed"
    assert list(runtime.ledger.events().kind) == ["tutorial.output_only.completed"]


async def test_output_only_explicit_cancel_commits_cancelled_event():
    gate = asyncio.Event()

    async def run(start, _input, ctx):
        yield sn.progress({"step": "started"})
        await gate.wait()
        if ctx.signal.aborted:
            yield {"kind": "cancelled", "reason": "cancelled", "terminal": {"cancelled": True}}
            return
        yield sn.completed()

    def commit(terminal, tx):
        tx.insert_event(f"oo.{terminal.kind}", terminal)

    async with sn.StreamRuntime() as rt:
        rt.register(handler("oo", run, on_detach="continue", commit_terminal=commit))
        session = await rt.attach("oo")
        assert await session.cancel("user") == "requested"
        gate.set()
        frames = await sn.read_until_terminal(session.output, timeout_s=5)
        assert_checkpoint(frames, "opened -> progress -> cancelled")
        ev = rt.ledger.events()
        assert list(ev.kind) == ["oo.cancelled"]
        assert ev.payload[0]["kind"] == "cancelled"  # the Frame stored as its JSON form


# --- guarantee 1: exactly one terminal, one settlement ---------------------------


async def _settle_one(run, **kw):
    async with sn.StreamRuntime(cancel_grace_s=0.1, force_wait_s=0.1) as rt:
        rt.register(handler("k", run, **kw))
        session = await rt.attach("k")
        frames = await sn.read_until_terminal(session.output, timeout_s=5)
        streams = rt.ledger.streams()
        return frames, streams


async def test_handler_exception_settles_failed():
    async def run(start, _input, ctx):
        yield sn.output("partial")
        raise ValueError("boom")

    frames, streams = await _settle_one(run)
    assert frames[-1].kind == "failed" and frames[-1].reason == "handler_error"
    assert "ValueError: boom" in frames[-1].error
    assert streams.status.tolist() == ["failed"]


async def test_return_without_terminal_settles_failed():
    async def run(start, _input, ctx):
        yield sn.output("x")

    frames, streams = await _settle_one(run)
    assert frames[-1].reason == "no_terminal"
    assert streams.status.tolist() == ["failed"]


async def test_terminal_yielded_twice_gives_one_terminal():
    async def run(start, _input, ctx):
        yield sn.completed({"n": 1})
        yield sn.completed({"n": 2})

    frames, streams = await _settle_one(run)
    assert [f.kind for f in frames] == ["opened", "completed"]
    assert frames[-1].terminal == {"n": 1}
    assert len(streams) == 1


async def test_commit_terminal_raising_settles_failed_without_events():
    async def run(start, _input, ctx):
        yield sn.completed()

    def commit(terminal, tx):
        tx.insert_event("never", {})
        raise RuntimeError("ledger logic bug")

    async with sn.StreamRuntime() as rt:
        rt.register(handler("k", run, commit_terminal=commit))
        session = await rt.attach("k")
        frames = await sn.read_until_terminal(session.output, timeout_s=5)
        assert frames[-1].kind == "failed"
        assert frames[-1].reason == "commit_terminal_error"
        assert len(rt.ledger.events()) == 0
        assert rt.ledger.streams().status.tolist() == ["failed"]


async def test_handler_sql_error_rolls_back_its_writes_and_settles_failed():
    async def run(start, _input, ctx):
        yield sn.completed()

    def commit(terminal, tx):
        tx.insert_event("kept?", {"a": 1})
        tx.execute("INSERT INTO no_such_table VALUES (1)")

    async with sn.StreamRuntime() as rt:
        rt.register(handler("k", run, commit_terminal=commit))
        session = await rt.attach("k")
        frames = await sn.read_until_terminal(session.output, timeout_s=5)
        assert frames[-1].reason == "settlement_error"
        assert len(rt.ledger.events()) == 0
        row = rt.ledger.streams().iloc[0]
        assert row.status == "failed" and row.reason == "settlement_error"


async def test_invalid_frame_settles_failed_naming_the_frame():
    async def run(start, _input, ctx):
        yield {"kind": "output", "payload": "no channel"}

    frames, _ = await _settle_one(run)
    assert frames[-1].reason == "invalid_frame"
    assert "channel" in frames[-1].error and "no channel" in frames[-1].error


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "bogus"},
        {"kind": "output", "channel": "c", "payload": object()},
        {"kind": "progress", "payload": float("nan")},
        {"kind": "opened"},
        {"kind": "output", "channel": "c", "payload": "x", "extra": 1},
        "just a string",
    ],
)
async def test_each_invalid_frame_kind_fails_the_stream(bad):
    async def run(start, _input, ctx):
        yield bad

    frames, streams = await _settle_one(run)
    assert frames[-1].kind == "failed" and frames[-1].reason == "invalid_frame"
    assert streams.status.tolist() == ["failed"]


async def test_stubborn_handler_is_forced_and_marked_forced():
    async def run(start, _input, ctx):
        yield sn.progress("working")
        await asyncio.Event().wait()  # ignores the signal
        yield sn.completed()

    async with sn.StreamRuntime(cancel_grace_s=0.05, force_wait_s=0.05) as rt:
        rt.register(handler("k", run))
        session = await rt.attach("k")
        assert (await session.output.__anext__()).kind == "opened"
        assert (await session.output.__anext__()).kind == "progress"
        await session.cancel("stop")
        frames = await sn.read_until_terminal(session.output, timeout_s=5)
        assert frames[-1].kind == "cancelled"
        assert frames[-1].terminal == {"cancelled": True, "forced": True}
        assert rt.ledger.streams().terminal[0]["forced"] is True


async def test_handler_swallowing_cancellation_is_settled_anyway():
    release = asyncio.Event()

    async def run(start, _input, ctx):
        yield sn.progress("x")
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # a badly behaved handler
        yield sn.output("late")

    async with sn.StreamRuntime(cancel_grace_s=0.05, force_wait_s=0.05) as rt:
        rt.register(handler("k", run))
        session = await rt.attach("k")
        await session.cancel("stop")
        frames = await sn.read_until_terminal(session.output, timeout_s=5)
        assert frames[-1].terminal["forced"] is True
        release.set()
    assert "late" not in [f.payload for f in session.frame_log()]


async def test_aclose_returns_when_a_handler_swallows_its_forced_stop():
    # aclose() waits for the streams' tasks; a handler that swallows even the forced
    # stop is settled by a settler task of its own while its task is kept aside (and
    # cancelled again at the end). aclose() waited on the stubborn task forever when it
    # did not look again at the tasks it waits for (found by the state machine).
    async def run(start, _input, ctx):
        yield sn.progress("x")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass  # swallowed once
        await asyncio.Event().wait()  # until aclose() cancels it again

    rt = sn.StreamRuntime(cancel_grace_s=0.02, force_wait_s=0.02)
    rt.register(handler("stubborn", run))
    session = await rt.attach("stubborn")
    await asyncio.wait_for(rt.aclose(), 5)
    assert session.terminal is not None
    assert session.terminal.terminal == {"cancelled": True, "forced": True}
    assert session.terminal.reason == "runtime_closed"
    assert rt.ledger.streams().status.tolist() == ["cancelled"]
    assert not rt._drivers and not rt._zombies


async def test_aclose_settles_every_open_stream_once():
    rt = sn.StreamRuntime(cancel_grace_s=0.05, force_wait_s=0.05)

    async def waits(start, input, ctx):
        yield sn.progress("waiting")
        async for _ in input:
            pass

    rt.register(handler("w", waits, mode="bidi"))
    sessions = [await rt.attach("w") for _ in range(5)]
    await rt.aclose()
    streams = rt.ledger.streams()
    assert streams.status.tolist() == ["cancelled"] * 5
    assert set(streams.reason) == {"runtime_closed"}
    for s in sessions:
        frames = [f async for f in s.output]
        assert sum(f.is_terminal for f in frames) == 1
    with pytest.raises(sn.RuntimeClosedError):
        await rt.attach("w")
    rt.ledger.close()


# --- guarantee 2: settle, then announce -------------------------------------------


async def test_terminal_is_announced_only_after_commit(runtime):
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    assert runtime.ledger.stream_status(session.stream_ref) == "running"
    await session.send("hi")
    before_terminal = []
    async for frame in session.output:
        if frame.is_terminal:
            # a fresh query (other thread, same ledger) already sees the settlement
            assert runtime.ledger.stream_status(session.stream_ref) == "completed"
            assert len(runtime.ledger.events(stream_ref=session.stream_ref)) == 1
        else:
            before_terminal.append(runtime.ledger.stream_status(session.stream_ref))
    # Before the end the row says running. The commit precedes the announcement, not
    # the reader: a reader still behind the log (the stream's task goes from the last
    # frame straight to settling) may already find the row settled, never unsettled
    # again afterwards.
    assert before_terminal[0] == "running"
    assert set(before_terminal) <= {"running", "completed"}
    assert before_terminal == sorted(before_terminal, key=["running", "completed"].index)


# --- guarantee 3: cooperative cancel wakes input -----------------------------------


async def test_cancel_wakes_handler_blocked_on_input():
    seen = []

    async def run(start, input, ctx):
        yield sn.progress("waiting")
        seen.extend([frame async for frame in input])
        seen.append(("ended", ctx.signal.aborted, ctx.signal.reason))
        yield sn.cancelled(ctx.signal.reason or "?")

    async with sn.StreamRuntime(cancel_grace_s=5) as rt:
        rt.register(handler("b", run, mode="bidi"))
        session = await rt.attach("b")
        await session.output.__anext__()
        await session.output.__anext__()
        assert await session.cancel("stop now") == "requested"
        frames = await sn.read_until_terminal(session.output, timeout_s=2)
        assert seen == [("ended", True, "stop now")]
        assert frames[-1].terminal == {"cancelled": True}  # cooperative, not forced


# --- guarantee 4: detach is not cancel ---------------------------------------------


async def test_detach_last_observer_aborts_when_on_detach_abort(runtime):
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    await session.detach()
    terminal = await runtime.wait(session.stream_ref, timeout_s=5)
    assert terminal.kind == "cancelled"
    assert runtime.ledger.streams().reason.tolist() == ["detached"]


async def test_detach_with_another_observer_does_not_abort(runtime):
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    other = await runtime.reattach(session.stream_ref)
    await session.detach()
    assert runtime.info(session.stream_ref).cancel_requested is False
    await other.send("x")
    frames = await sn.read_until_terminal(other.output, timeout_s=5)
    assert frames[-1].kind == "completed"


# --- guarantee 5: ordered, gap-aware, replay ----------------------------------------


async def test_reattach_replays_after_seq(runtime):
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    await session.send("hello")
    frames = await sn.read_until_terminal(session.output, timeout_s=5)
    again = await runtime.reattach(session.stream_ref, after_seq=2)
    replay = [f async for f in again.output]
    assert [f.seq for f in replay] == [f.seq for f in frames if f.seq > 2]
    assert replay == frames[3:]


async def test_retention_gap_is_visible_as_omitted():
    async def run(start, _input, ctx):
        for i in range(50):
            yield sn.output(str(i), "c")
        yield sn.completed()

    async with sn.StreamRuntime(max_retained_frames=10) as rt:
        rt.register(handler("r", run))
        session = await rt.attach("r")
        await rt.wait(session.stream_ref, timeout_s=5)
        frames = [f async for f in session.output]
        proj = sn.project_attached_stream(frames, session.stream_ref)
        assert proj.status == "completed"
        assert proj.omitted == tuple(range(frames[0].seq))
        assert len(frames) == 11  # ten retained outputs plus the terminal, always kept
        assert frames[-1].kind == "completed"


async def test_slow_reader_does_not_stall_handler_or_other_streams():
    async def run(start, _input, ctx):
        for i in range(10_000):
            yield sn.output(i, "n")
        yield sn.completed()

    async with sn.StreamRuntime() as rt:
        rt.register(handler("f", run))
        slow = await rt.attach("f")  # never read while the others run
        fast = await rt.attach("f")
        fast_frames = await sn.read_until_terminal(fast.output, timeout_s=10)
        assert len(fast_frames) == 10_002
        terminal = await rt.wait(slow.stream_ref, timeout_s=10)
        assert terminal.kind == "completed"
        slow_frames = await sn.read_until_terminal(slow.output, timeout_s=10)
        assert [f.seq for f in slow_frames] == list(range(10_002))


# --- guarantee 6: bad input, clear errors, nothing changes ---------------------------


async def test_unknown_kind_names_the_known_kinds(runtime):
    with pytest.raises(sn.UnknownKindError, match=r"tutorial\.output_only"):
        await runtime.attach("nope")
    assert len(runtime.ledger.streams()) == 0


async def test_rejected_start_carries_issues_and_opens_nothing():
    def parse(raw):
        return sn.ParseError(["'topic' is required"]) if "topic" not in raw else sn.ParseOk(raw)

    async def run(start, _input, ctx):
        yield sn.completed({"topic": start["topic"]})

    async with sn.StreamRuntime() as rt:
        rt.register(handler("p", run, parse_start=parse))
        with pytest.raises(sn.StartRejectedError) as info:
            await rt.attach("p", {})
        assert info.value.issues == ["'topic' is required"]
        assert len(rt.ledger.streams()) == 0
        session = await rt.attach("p", {"topic": "x"})
        assert (await session.wait(5)).terminal == {"topic": "x"}


async def test_send_to_output_only_is_refused(runtime):
    session = await runtime.attach("tutorial.output_only", {})
    with pytest.raises(sn.InputNotAcceptedError, match=r"output_only"):
        await session.send("x")


async def test_send_after_settlement_raises_stream_settled(runtime):
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    await session.send("x")
    await session.wait(5)
    with pytest.raises(sn.StreamSettledError, match="completed"):
        await session.send("y")


@pytest.mark.parametrize(
    "frame",
    [
        {"kind": "input", "seq": -1, "payload": "x"},
        {"kind": "input", "seq": "0", "payload": "x"},
        {"kind": "input", "payload": "x", "streamRef": "st_x"},
        {"kind": "input", "stream_ref": "st_other", "payload": "x"},
        {"kind": "input", "payload": {1, 2}},
        object(),
    ],
)
async def test_malformed_input_is_rejected_and_queues_nothing(runtime, frame):
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    with pytest.raises(sn.InvalidFrameError):
        await session.send(frame)
    assert await session.send("ok") == "accepted"
    frames = await sn.read_until_terminal(session.output, timeout_s=5)
    assert sn.project_attached_stream(frames, session.stream_ref).text().endswith("ok")


async def test_input_seq_makes_retries_idempotent():
    got = []

    async def run(start, input, ctx):
        async for frame in input:
            got.append((frame.seq, frame.payload))
            if len(got) == 2:
                break
        yield sn.completed()

    async with sn.StreamRuntime() as rt:
        rt.register(handler("i", run, mode="bidi"))
        s = await rt.attach("i")
        assert await s.send({"kind": "input", "seq": 0, "payload": "a"}) == "accepted"
        assert await s.send({"kind": "input", "seq": 0, "payload": "a"}) == "duplicate"
        assert await s.send("b") == "accepted"
        await s.wait(5)
        assert got == [(0, "a"), (1, "b")]


def test_handler_definition_errors():
    async def gen(start, input, ctx):
        yield sn.completed()

    async def coro(start, input, ctx):
        return None

    with pytest.raises(sn.HandlerDefinitionError, match="mode"):
        sn.AttachedStreamHandler(kind="k", run=gen, mode="duplex")
    with pytest.raises(sn.HandlerDefinitionError, match="async generator"):
        sn.AttachedStreamHandler(kind="k", run=coro)
    with pytest.raises(sn.HandlerDefinitionError, match="on_detach"):
        sn.AttachedStreamHandler(kind="k", run=gen, on_detach="ignore")


# --- sync facade and loops ----------------------------------------------------------


def test_run_facade_in_a_plain_script_keeps_streams_alive_between_calls():
    from streamnb.demo import chatbot_handler

    rt = sn.StreamRuntime()
    rt.register(chatbot_handler())
    session = rt.run(rt.attach("tutorial.streaming_chatbot", {}))
    rt.run(session.send("hello"))
    frames = rt.run(sn.read_until_terminal(session.output, timeout_s=5))
    assert_checkpoint(frames, "opened -> progress -> output* -> completed")
    rt.close()
    rt.ledger.close()


NESTED_CELL = """
import asyncio, streamnb as sn
from streamnb.demo import output_only_handler

async def cell():  # what a Jupyter cell calling runtime.run(...) looks like
    rt = sn.StreamRuntime()
    rt.register(output_only_handler())
    session = rt.run(rt.attach("tutorial.output_only", {}))
    frames = rt.run(sn.read_until_terminal(session.output, timeout_s=5))
    await rt.aclose()
    rt.ledger.close()
    print(sn.testing.checkpoint_path(frames))

loop = asyncio.new_event_loop()
loop.run_until_complete(cell())
loop.close()
"""


def test_run_facade_inside_a_running_loop_uses_nest_asyncio():
    # a subprocess: nest_asyncio patches asyncio for the whole process, as it does in Jupyter
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", NESTED_CELL], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "opened -> progress -> output -> completed"


async def test_runtime_used_from_another_loop_is_a_clear_error(runtime):
    await runtime.attach("tutorial.output_only", {})
    errors = []

    def other_thread():
        async def use():
            await runtime.attach("tutorial.output_only", {})

        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(use())
        except sn.RuntimeClosedError as exc:
            errors.append(exc)
        finally:
            loop.close()

    t = threading.Thread(target=other_thread)
    t.start()
    t.join(10)
    assert errors and "another event loop" in str(errors[0])


async def test_read_until_terminal_timeout_keeps_stream_running(runtime):
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    with pytest.raises(sn.StreamTimeoutError) as info:
        await sn.read_until_terminal(session.output, timeout_s=0.05)
    assert [f.kind for f in info.value.frame_log] == ["opened", "progress"]
    assert runtime.info(session.stream_ref).status == "running"


# --- API edges (issue 15) -----------------------------------------------------------


async def test_wait_cancel_send_by_ref_after_eviction_know_the_terminal(runtime):
    # Regression: once a settled stream left memory (retain_settled), runtime.wait(ref),
    # what a detached session's error points to, raised UnknownStreamError although the
    # session's own terminal held the answer.
    rt = sn.StreamRuntime(retain_settled=1)
    rt.register(handler("quick", _quick))
    first = await rt.attach("quick")
    terminal = await first.wait(5)
    await first.detach()
    second = await rt.attach("quick")
    await second.wait(5)
    with pytest.raises(sn.UnknownStreamError):
        rt.info(first.stream_ref)  # evicted
    assert await rt.wait(first.stream_ref, timeout_s=5) == terminal == first.terminal
    assert await rt.cancel(first.stream_ref, "late") == "already_settled"
    with pytest.raises(sn.StreamSettledError, match="completed"):
        await rt.send(first.stream_ref, "late")
    with pytest.raises(sn.InvalidFrameError):
        await rt.cancel(first.stream_ref, 42)  # a bad reason is still refused
    await rt.aclose()
    rt.ledger.close()


async def _quick(start, input, ctx):
    yield sn.output("x")
    yield sn.completed()


def test_generator_commit_terminal_is_refused_where_the_handler_is_defined():
    # Regression: a commit_terminal written with 'yield' was called, made a generator
    # and was silently never run: its events were lost.
    def commit(terminal, tx):
        tx.insert_event("lost", {})
        yield

    async def acommit(terminal, tx):
        tx.insert_event("lost", {})
        yield

    for bad in (commit, acommit):
        with pytest.raises(sn.HandlerDefinitionError, match=r"generator.*never run"):
            handler("gen.commit", _quick, commit_terminal=bad)


async def test_commit_terminal_returning_a_generator_settles_failed():
    class Sneaky:  # a callable object inspect cannot see through
        def __call__(self, terminal, tx):
            yield

    async with sn.StreamRuntime() as rt:
        rt.register(handler("sneaky", _quick, commit_terminal=Sneaky()))
        session = await rt.attach("sneaky")
        terminal = await session.wait(5)
        assert (terminal.kind, terminal.reason) == ("failed", "commit_terminal_error")
        assert "generator" in terminal.error


def test_run_from_a_foreign_thread_runs_on_the_bound_loop():
    # Regression: runtime.run() from a worker thread while the runtime's loop ran in
    # another thread raised a raw RuntimeError ("This event loop is already running").
    rt = sn.StreamRuntime()
    rt.register(handler("quick", _quick))
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        asyncio.run_coroutine_threadsafe(rt.__aenter__(), loop).result(10)  # bind to it
        results: list[str] = []

        def worker() -> None:
            session = rt.run(rt.attach("quick"))
            results.append(rt.run(session.wait(5)).kind)

        workers = [threading.Thread(target=worker) for _ in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
        assert results == ["completed"] * 3
        assert rt.loop is loop
    finally:
        asyncio.run_coroutine_threadsafe(rt.aclose(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        rt.ledger.close()


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE streams",
        "UPDATE streams SET status = 'completed'",
        "DELETE FROM events",
        "INSERT INTO frames VALUES ('x', 0, 'output', NULL, NULL, NULL, NULL, NULL, 0)",
        "ALTER TABLE streams RENAME TO old_streams",
        "CREATE TRIGGER t AFTER INSERT ON events BEGIN DELETE FROM streams; END",
        "CREATE INDEX i ON streams(kind)",
        "COMMIT",
        "ROLLBACK",
        "SAVEPOINT s",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA writable_schema = ON",
        "UPDATE sqlite_sequence SET seq = 0",
    ],
)
async def test_commit_terminal_sql_cannot_change_the_runtime_tables(statement):
    # Regression: tx.execute ran any SQL inside the settlement's transaction: a handler
    # could rewrite or drop the runtime's own streams table (or COMMIT the group commit).
    def commit(terminal, tx):
        tx.execute("CREATE TABLE IF NOT EXISTS mine (v)")
        tx.execute("INSERT INTO mine VALUES (1)")
        tx.execute(statement)

    def fine(terminal, tx):
        tx.execute("CREATE TABLE IF NOT EXISTS mine (v)")
        tx.execute("INSERT INTO mine SELECT count(*) FROM streams")  # reading them is fine

    async with sn.StreamRuntime() as rt:
        rt.register(handler("bad.sql", _quick, commit_terminal=commit))
        rt.register(handler("good.sql", _quick, commit_terminal=fine))
        bad = await rt.attach("bad.sql")
        terminal = await bad.wait(5)
        assert (terminal.kind, terminal.reason) == ("failed", "settlement_error")
        assert "not authorized" in terminal.error or "denied" in terminal.error
        good = await rt.attach("good.sql")
        assert (await good.wait(5)).kind == "completed"
        streams = rt.ledger.streams()
        assert streams.status.tolist() == ["failed", "completed"]
        assert rt.ledger.sql("SELECT v FROM mine")["v"].tolist() == [2]  # bad's rows rolled back
        tables = rt.ledger.sql("SELECT name FROM sqlite_master WHERE type = 'table'")
        assert {"streams", "events", "frames", "mine"} <= set(tables["name"])


# --- resource bounds (issue 15) ------------------------------------------------------


async def test_bidi_stream_waiting_with_no_observer_is_cancelled_idle(runtime):
    # Regression: a bidi on_detach="continue" stream nobody fed stayed open for ever
    # (2,000 of them over HTTP: 2,000 'running' rows, +23 MB).
    async def echo(start, input, ctx):
        async for frame in input:
            yield sn.output(str(frame.payload))
        yield sn.cancelled(ctx.signal.reason or "cancelled")

    rt = sn.StreamRuntime(idle_timeout_s=0.2, cancel_grace_s=0.5)
    rt.register(handler("t.echo", echo, mode="bidi", on_detach="continue"))
    left = await rt.attach("t.echo")
    watched = await rt.attach("t.echo")
    fed = await rt.attach("t.echo")
    await left.detach()  # nobody observes it any more
    terminal = await rt.wait(left.stream_ref, timeout_s=10)
    assert (terminal.kind, terminal.reason) == ("cancelled", "idle")
    assert rt.ledger.stream_status(left.stream_ref) == "cancelled"
    # an observed stream is not idle, however long it waits; input resets the clock
    await fed.detach()
    for i in range(3):
        await asyncio.sleep(0.1)
        await rt.send(fed.stream_ref, f"tick {i}")
    assert rt.info(watched.stream_ref).status == "running"
    assert rt.info(fed.stream_ref).status == "running"
    assert (await rt.wait(fed.stream_ref, timeout_s=10)).reason == "idle"
    assert rt.info(watched.stream_ref).status == "running"
    await watched.cancel("done")
    await rt.aclose()
    rt.ledger.close()
    with pytest.raises(ValueError, match="idle_timeout_s"):
        sn.StreamRuntime(idle_timeout_s=0)


async def test_settled_streams_in_memory_are_bounded_by_bytes_too():
    # Regression: settled streams kept their whole frame log in memory, bounded only by
    # their number (300 x 1 MB chat messages: about 300 MB).
    async def big(start, input, ctx):
        for _ in range(10):
            yield sn.output("x" * 100_000)
        yield sn.completed()

    rt = sn.StreamRuntime(sn.Ledger(record_frames=True), retain_settled_bytes=2_500_000)
    rt.register(handler("t.big", big))
    sessions = [await rt.attach("t.big") for _ in range(5)]
    terminals = [await s.wait(10) for s in sessions]
    in_memory = [s.stream_ref for s in sessions if s.stream_ref in rt._streams]
    assert in_memory == [s.stream_ref for s in sessions[-2:]]  # 1 MB each: two fit
    for s, terminal in zip(sessions, terminals, strict=True):
        assert await rt.wait(s.stream_ref) == terminal
        assert rt.ledger.stream_status(s.stream_ref) == "completed"
    # the ledger kept every frame of the evicted ones
    frames = rt.ledger.frame_log(sessions[0].stream_ref)
    assert sn.project_attached_stream(frames, sessions[0].stream_ref).text() == "x" * 1_000_000
    # one stream larger than the bound leaves memory as soon as it settled
    rt.retain_settled_bytes = 500_000
    huge = await rt.attach("t.big")
    await huge.wait(10)
    assert huge.stream_ref not in rt._streams
    assert (await rt.wait(huge.stream_ref)).kind == "completed"
    await rt.aclose()
    rt.ledger.close()


async def test_a_retained_settled_stream_lets_go_of_its_finished_task() -> None:
    """A settled stream stays in memory (``retain_settled``) for readers by ref; it kept its
    finished task (with its coroutine and context) and its resolved settled future, objects
    the cyclic GC walked for every retained stream (bench_core core.file_ledger)."""
    async with sn.StreamRuntime() as rt:
        rt.register(output_only_handler())
        session = await rt.attach("tutorial.output_only", {})
        ref = session.stream_ref
        (driver,) = [t for t in asyncio.all_tasks() if t.get_name() == f"streamnb:{ref}:run"]
        gone_task = weakref.ref(driver)
        waiting = asyncio.ensure_future(session.wait())
        await asyncio.sleep(0)
        del driver
        assert (await waiting).kind == "completed"
        await asyncio.sleep(0)
        gc.collect()
        assert gone_task() is None
        assert rt.info(ref).terminal is not None  # still retained, still answers by ref
        assert (await session.wait()).kind == "completed"  # a later wait is answered at once
        assert (await rt.wait(ref)).kind == "completed"
