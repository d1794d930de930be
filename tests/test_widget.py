"""StreamWidget and ChatWidget without a browser: batching, snapshots, buttons, threads."""

from __future__ import annotations

import asyncio
import gc
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import streamnb as sn
from streamnb.demo import chatbot_handler, output_only_handler
from streamnb.testing import (
    FakeTokenSource,
    fake_tokens,
    lorem_tokens,
    press_hello,
    press_send,
    press_stop,
    press_stop_shortcut,
    recorded_messages,
)
from streamnb.widget import ChatWidget, StreamWidget
from streamnb.widget._batcher import Follower

STATIC = Path(sn.__file__).parent / "static"
CHAT = "tutorial.streaming_chatbot"
XSS = "<img src=x onerror=alert(1)><b>bold</b>"


class View:
    """What widget.js does with custom messages (the per-model store), in Python."""

    def __init__(self, *, synced_from_start: bool) -> None:
        self.last_seq: int | None = None
        self.texts: dict[str, str] = {}
        self.applied: list[tuple[int, int]] = []
        self.hellos = 0
        self.synced_from_start = synced_from_start

    def receive(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "snapshot":
            if self.last_seq is not None and msg["upto_seq"] <= self.last_seq:
                return
            self.texts = dict(msg["texts"])
            self.last_seq = msg["upto_seq"]
        elif msg["type"] == "delta":
            if self.last_seq is None:
                if msg["from_seq"] != 0 or not self.synced_from_start:
                    return
                self.last_seq = -1
            if msg["to_seq"] <= self.last_seq:
                return
            assert msg["from_seq"] == self.last_seq + 1, "gap between deltas"
            for channel, text in msg["chunks"].items():
                self.texts[channel] = self.texts.get(channel, "") + text
            self.applied.append((msg["from_seq"], msg["to_seq"]))
            self.last_seq = msg["to_seq"]


def deltas(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "delta"]


def joined(messages: list[dict[str, Any]], channel: str = "assistant.delta") -> str:
    return "".join(m["chunks"].get(channel, "") for m in deltas(messages))


def assert_contiguous(messages: list[dict[str, Any]]) -> None:
    expected_from = 0
    for m in deltas(messages):
        assert m["from_seq"] == expected_from
        assert m["to_seq"] >= m["from_seq"]
        expected_from = m["to_seq"] + 1


async def until(widget: Any, predicate: Any, timeout_s: float = 5.0) -> None:
    """Wait until ``predicate()`` holds, re-checking each time the widget sends a message."""
    event = asyncio.Event()
    original = widget.send
    wrapped_already = "send" in vars(widget)

    def send(content: Any, buffers: Any = None) -> None:
        original(content, buffers)
        event.set()

    async def check() -> None:
        while not predicate():
            event.clear()
            await event.wait()

    widget.send = send
    try:
        await asyncio.wait_for(check(), timeout_s)
    finally:
        if wrapped_already:
            widget.send = original
        else:
            del widget.send


async def actions_done(widget: Any) -> None:
    """Wait for the Stop/Send work the widget handed to the loop (their errors are in traits)."""
    await asyncio.gather(*list(widget._tasks), return_exceptions=True)


def runtime_cancel_reason(rt: sn.StreamRuntime, session: sn.Session) -> str | None:
    return rt.info(session.stream_ref).cancel_reason


def chat_runtime(tokens: Any = fake_tokens, rate: float | None = None) -> sn.StreamRuntime:
    rt = sn.StreamRuntime(cancel_grace_s=0.2, force_wait_s=0.2)
    rt.register(chatbot_handler(source=FakeTokenSource(tokens, rate_tokens_per_s=rate)))
    rt.register(output_only_handler())
    return rt


@pytest.fixture
async def slow_rt() -> Any:
    rt = chat_runtime(lorem_tokens(400), rate=200)
    yield rt
    await rt.aclose()
    rt.ledger.close()


@pytest.fixture
async def flood_rt() -> Any:
    rt = chat_runtime(lorem_tokens(5_000))
    yield rt
    await rt.aclose()
    rt.ledger.close()


# --- following a stream -------------------------------------------------------------------


async def test_widget_shows_reply_and_settles(runtime: sn.StreamRuntime) -> None:
    session = await runtime.attach(CHAT, {})
    widget = StreamWidget(session)
    assert widget.status == "running"
    assert not widget.settled
    with recorded_messages(widget) as sent:
        await session.send("hello")
        assert await widget.wait(timeout_s=5) == "completed"
    assert widget.settled
    assert widget.final_texts == {"assistant.delta": "streamnb reply to hello"}
    assert widget.text() == "streamnb reply to hello"
    assert widget.progress == {"phase": "waiting_for_user"}
    assert widget.reason == ""
    assert widget.error == ""
    assert joined(sent) == "streamnb reply to hello"
    assert deltas(sent)[-1]["status"] == "completed"
    assert_contiguous(sent)
    assert repr(widget).startswith(f"<StreamWidget {session.stream_ref} ")
    widget.close()


async def test_flood_is_batched_and_exact(flood_rt: sn.StreamRuntime) -> None:
    session = await flood_rt.attach(CHAT, {})
    widget = StreamWidget(session, flush_interval_s=0.033)
    expected = "".join(lorem_tokens(5_000)("go"))
    with recorded_messages(widget) as sent:
        t0 = time.monotonic()
        await session.send("go")
        await widget.wait(timeout_s=30)
        duration_s = time.monotonic() - t0
    n = len(deltas(sent))
    assert n <= duration_s / 0.033 + 3, (n, duration_s)
    assert n < 5_000 / 50  # never anything like one message per token
    assert joined(sent) == expected
    assert_contiguous(sent)
    assert widget.final_texts["assistant.delta"] == expected
    widget.close()


async def test_paced_stream_sends_at_most_one_delta_per_interval() -> None:
    rt = chat_runtime(lorem_tokens(300), rate=1_000)
    try:
        session = await rt.attach(CHAT, {})
        widget = StreamWidget(session, flush_interval_s=0.05)
        with recorded_messages(widget) as sent:
            t0 = time.monotonic()
            await session.send("x")
            await widget.wait(10)
            duration_s = time.monotonic() - t0
        n = len(deltas(sent))
        assert 2 <= n <= duration_s / 0.05 + 3, (n, duration_s)
        assert joined(sent) == "".join(lorem_tokens(300)("x"))
        widget.close()
    finally:
        await rt.aclose()
        rt.ledger.close()


async def test_late_hello_gets_snapshot_then_deltas_without_gaps_or_duplicates(
    slow_rt: sn.StreamRuntime,
) -> None:
    session = await slow_rt.attach(CHAT, {})
    widget = StreamWidget(session, flush_interval_s=0.02)
    expected = "".join(lorem_tokens(400)("hi"))
    early = View(synced_from_start=True)  # the view rendered when the widget was created
    late = View(synced_from_start=False)  # a page reloaded mid-stream
    with recorded_messages(widget) as sent:
        await session.send("hi")
        await until(widget, lambda: len(widget.text()) >= 200)
        for msg in list(sent):
            early.receive(msg)
        seen = len(sent)
        # the late view's model gets a delta before its snapshot; it must drop it
        await until(widget, lambda: len(sent) > seen)
        press_hello(widget)
        press_hello(widget)  # a second late view: the snapshot is harmless to the others
        await widget.wait(timeout_s=10)
    snapshots = [m for m in sent if m["type"] == "snapshot"]
    assert len(snapshots) == 2
    assert snapshots[0]["upto_seq"] > 0
    assert snapshots[0]["texts"]["assistant.delta"]
    for msg in sent[seen:]:
        early.receive(msg)
        late.receive(msg)
    assert early.texts["assistant.delta"] == expected
    assert late.texts["assistant.delta"] == expected
    assert late.applied[0][0] == snapshots[0]["upto_seq"] + 1
    assert early.last_seq == late.last_seq == deltas(sent)[-1]["to_seq"]
    widget.close()


async def test_snapshot_of_settled_widget_equals_final_texts(runtime: sn.StreamRuntime) -> None:
    session = await runtime.attach(CHAT, {})
    widget = StreamWidget(session)
    await session.send("again")
    await widget.wait(5)
    with recorded_messages(widget) as sent:
        press_hello(widget)
    assert sent == [
        {
            "type": "snapshot",
            "upto_seq": session.terminal.seq,  # type: ignore[union-attr]
            "texts": widget.final_texts,
            "status": "completed",
        }
    ]
    widget.close()


async def test_widget_does_not_consume_session_output(runtime: sn.StreamRuntime) -> None:
    session = await runtime.attach(CHAT, {})
    widget = StreamWidget(session)
    await session.send("hey")
    frames = await sn.read_until_terminal(session.output, timeout_s=5)
    sn.testing.assert_checkpoint(frames, "opened -> progress -> output* -> completed")
    await widget.wait(5)
    assert widget.text() == "streamnb reply to hey"
    widget.close()


async def test_late_widget_replays_from_the_frame_log(runtime: sn.StreamRuntime) -> None:
    session = await runtime.attach(CHAT, {})
    await session.send("before")
    await session.wait(5)
    widget = StreamWidget(await runtime.reattach(session.stream_ref, after_seq=3))
    assert await widget.wait(5) == "completed"
    assert widget.final_texts["assistant.delta"] == "streamnb reply to before"
    widget.close()


async def test_other_channels_and_json_payloads_are_text(runtime: sn.StreamRuntime) -> None:
    async def run(_start: Any, _input: Any, _ctx: Any) -> Any:
        yield sn.output("main ")
        yield sn.output("log line\n", channel="stdout")
        yield sn.output({"tool": "search", "n": 1}, channel="tool")
        yield sn.completed()

    runtime.register(
        sn.AttachedStreamHandler(
            kind="multi", mode="output_only", run=run, commit_terminal=lambda t, tx: None
        )
    )
    widget = StreamWidget(await runtime.attach("multi", {}))
    await widget.wait(5)
    assert widget.final_texts == {
        "assistant.delta": "main ",
        "stdout": "log line\n",
        "tool": '{"tool": "search", "n": 1}',
    }
    widget.close()


async def test_trimmed_frames_leave_contiguous_deltas() -> None:
    rt = sn.StreamRuntime(max_retained_frames=8)
    rt.register(chatbot_handler(source=FakeTokenSource(lorem_tokens(2_000))))
    try:
        session = await rt.attach(CHAT, {})
        widget = StreamWidget(session)
        assert not widget._flushed
        with recorded_messages(widget) as sent:
            await session.send("trim")
            assert await widget.wait(10) == "completed"
        assert widget._flushed  # a model created from now on asks for a snapshot
        assert_contiguous(sent)  # frames trimmed before the widget read them fall in a range
        assert deltas(sent)[-1]["to_seq"] == session.terminal.seq  # type: ignore[union-attr]
        widget.close()
    finally:
        await rt.aclose()
        rt.ledger.close()


# --- buttons ----------------------------------------------------------------------------


async def test_press_stop_cancels_and_ledger_has_cancelled_settlement(
    slow_rt: sn.StreamRuntime,
) -> None:
    session = await slow_rt.attach(CHAT, {})
    widget = StreamWidget(session)
    press_send(widget, "please stop me")
    await until(widget, widget.text)
    press_stop(widget)
    assert await widget.wait(timeout_s=5) == "cancelled"
    assert widget.reason == "user pressed stop"
    assert widget.settled
    assert 0 < len(widget.final_texts["assistant.delta"]) < len("".join(lorem_tokens(400)("x")))
    streams = slow_rt.ledger.streams()
    assert streams["status"].tolist() == ["cancelled"]
    assert runtime_cancel_reason(slow_rt, session) == "user pressed stop"
    events = slow_rt.ledger.events(kind=f"{CHAT}.settled")
    assert events["payload"].tolist()[0]["kind"] == "cancelled"
    press_stop(widget)  # after the end: changes nothing, raises nothing
    await actions_done(widget)
    assert widget.error == ""
    widget.close()


async def test_text_after_the_pages_stop_point_is_not_in_the_settled_text(
    slow_rt: sn.StreamRuntime,
) -> None:
    """Stop that the eye believes: text kept appearing for ~200 ms after a click on Stop
    (deltas in flight, then the transcript with everything written before the handler saw
    the cancel). The page now says what it showed (``shown_seq``); the settled text ends
    there, and the frames written after it stay in ``texts()``."""
    session = await slow_rt.attach(CHAT, {})
    widget = StreamWidget(session, flush_interval_s=0.01)
    with recorded_messages(widget) as sent:
        press_send(widget, "stop me after two deltas")
        await until(widget, lambda: len([m for m in deltas(sent) if m["chunks"]]) >= 2)
        shown = deltas(sent)[-1]
        await until(widget, lambda: widget.text() != joined(sent))  # more written, unshown
        widget._handle_custom_msg({"type": "stop", "shown_seq": shown["to_seq"]}, [])
        assert await widget.wait(timeout_s=5) == "cancelled"
    seen = joined([m for m in deltas(sent) if m["to_seq"] <= shown["to_seq"]])
    assert widget.final_texts == {"assistant.delta": seen}
    assert len(widget.texts()["assistant.delta"]) > len(seen)  # the log keeps the rest
    assert widget.texts()["assistant.delta"].startswith(seen)
    widget.close()


async def test_a_stop_point_is_ignored_when_the_stream_completes_anyway(
    runtime: sn.StreamRuntime,
) -> None:
    session = await runtime.attach(CHAT, {})
    widget = StreamWidget(session)
    await session.send("hello")
    await widget.wait(timeout_s=5)
    widget._handle_custom_msg({"type": "stop", "shown_seq": -1}, [])
    await actions_done(widget)
    assert widget.final_texts == {"assistant.delta": "streamnb reply to hello"}
    widget.close()


async def test_a_stop_message_with_a_bad_shown_seq_is_refused(
    slow_rt: sn.StreamRuntime,
) -> None:
    session = await slow_rt.attach(CHAT, {})
    widget = StreamWidget(session)
    widget._handle_custom_msg({"type": "stop", "shown_seq": "12"}, [])
    await asyncio.sleep(0.05)
    assert "shown_seq" in widget.error
    assert slow_rt.info(session.stream_ref).cancel_requested is False
    widget.close()


async def test_stop_shortcut_is_stop(slow_rt: sn.StreamRuntime) -> None:
    session = await slow_rt.attach(CHAT, {})
    widget = StreamWidget(session)
    press_stop_shortcut(widget)
    assert await widget.wait(5) == "cancelled"
    widget.close()


async def test_stop_and_send_from_another_thread(slow_rt: sn.StreamRuntime) -> None:
    session = await slow_rt.attach(CHAT, {})
    widget = StreamWidget(session)
    main_thread = threading.get_ident()
    seen_threads: list[int] = []
    original = widget._handle

    def spy(msg: Any) -> None:
        seen_threads.append(threading.get_ident())
        original(msg)

    widget._handle = spy
    # like a kernel subshell thread delivering the widget message
    sender = threading.Thread(target=press_send, args=(widget, "from a thread"))
    sender.start()
    await asyncio.to_thread(sender.join)
    await until(widget, widget.text)
    assert seen_threads == [main_thread]  # handed to the loop thread
    stopper = threading.Thread(target=press_stop, args=(widget,))
    stopper.start()
    await asyncio.to_thread(stopper.join)
    assert await widget.wait(5) == "cancelled"
    assert widget.reason == "user pressed stop"
    assert seen_threads == [main_thread, main_thread]
    widget.close()


async def test_send_after_settle_reports_error_in_widget(runtime: sn.StreamRuntime) -> None:
    session = await runtime.attach(CHAT, {})
    widget = StreamWidget(session)
    press_send(widget, "once")
    await widget.wait(5)
    press_send(widget, "twice")
    await actions_done(widget)
    assert "settled" in widget.error
    assert widget.status == "completed"
    widget.close()


async def test_send_on_output_only_stream_reports_error(runtime: sn.StreamRuntime) -> None:
    widget = StreamWidget(await runtime.attach("tutorial.output_only", {}))
    assert widget.mode == "output_only"
    press_send(widget, "nobody reads this")
    await actions_done(widget)
    assert "output_only" in widget.error
    widget.close()


async def test_malformed_widget_message_reports_error(runtime: sn.StreamRuntime) -> None:
    widget = StreamWidget(await runtime.attach(CHAT, {}))
    widget._handle_custom_msg({"type": "explode"}, [])
    widget._handle_custom_msg({"type": "send", "text": 3}, [])
    assert "string 'text'" in widget.error
    widget._handle_custom_msg("stop", [])
    assert "unknown widget message" in widget.error
    widget.close()


async def test_html_in_tokens_stays_a_string(runtime: sn.StreamRuntime) -> None:
    runtime.register(chatbot_handler(source=FakeTokenSource(lambda m: [XSS, " & ", str(m)])))
    session = await runtime.attach(CHAT, {})
    widget = StreamWidget(session)
    with recorded_messages(widget) as sent:
        press_send(widget, "<script>x</script>")
        await widget.wait(5)
    text = f"{XSS} & <script>x</script>"
    assert widget.text() == text
    assert widget.final_texts["assistant.delta"] == text
    assert joined(sent) == text
    widget.close()


# --- lifecycle ---------------------------------------------------------------------------


async def test_close_stops_reading_and_detaches(slow_rt: sn.StreamRuntime) -> None:
    session = await slow_rt.attach(CHAT, {})
    widget = StreamWidget(session)
    await session.send("go")
    await until(widget, widget.text)
    widget.close()
    widget.close()  # idempotent
    terminal = await session.wait(5)
    assert session.detached
    # chatbot is on_detach="abort": the widget's session was the last observer
    assert terminal.kind == "cancelled"
    assert runtime_cancel_reason(slow_rt, session) == "detached"
    assert not widget.settled  # closed before the end: no more updates
    assert not widget._tasks


async def test_creating_the_widget_returns_at_once(slow_rt: sn.StreamRuntime) -> None:
    session = await slow_rt.attach(CHAT, {})
    t0 = time.monotonic()
    widget = StreamWidget(session)
    assert time.monotonic() - t0 < 0.5
    assert widget.status == "running"
    widget.close()


def test_widget_in_a_script_starts_with_the_runtime_loop() -> None:
    rt = chat_runtime()
    try:
        session = rt.run(rt.attach(CHAT, {}))
        widget = StreamWidget(session)  # no loop is running here
        press_send(widget, "sync")  # queued for the runtime's loop
        assert rt.run(widget.wait(timeout_s=5)) == "completed"
        assert widget.final_texts["assistant.delta"] == "streamnb reply to sync"
        widget.close()
    finally:
        rt.close()
        rt.ledger.close()


async def test_bad_arguments_raise(runtime: sn.StreamRuntime) -> None:
    with pytest.raises(TypeError, match="Session"):
        StreamWidget("st_123")  # type: ignore[arg-type]
    session = await runtime.attach(CHAT, {})
    with pytest.raises(ValueError, match="flush_interval_s"):
        StreamWidget(session, flush_interval_s=0)
    with pytest.raises(ValueError, match="bidi"):
        ChatWidget(runtime, "tutorial.output_only")
    with pytest.raises(sn.UnknownKindError):
        ChatWidget(runtime, "no.such.kind")
    with pytest.raises(TypeError, match="text"):
        press_send(StreamWidget(session), 42)  # type: ignore[arg-type]


async def test_lazy_attributes_and_display_hook(runtime: sn.StreamRuntime) -> None:
    assert sn.StreamWidget is StreamWidget
    assert sn.ChatWidget is ChatWidget
    shown: list[Any] = []
    import IPython.display

    original = IPython.display.display
    IPython.display.display = lambda obj: shown.append(obj)  # type: ignore[assignment]
    try:
        session = await runtime.attach(CHAT, {})
        session._ipython_display_()
    finally:
        IPython.display.display = original
    assert isinstance(shown[0], StreamWidget)
    assert shown[0].stream_ref == session.stream_ref
    shown[0].close()


# --- ChatWidget --------------------------------------------------------------------------


async def test_chat_two_turns_grow_the_transcript(runtime: sn.StreamRuntime) -> None:
    starts: list[Any] = []

    def start(history: list[dict[str, Any]]) -> dict[str, Any]:
        starts.append(history)
        return {}

    chat = ChatWidget(runtime, CHAT, start=start)
    with recorded_messages(chat) as sent:
        press_send(chat, "first")
        assert chat.busy
        assert await chat.wait(timeout_s=5) == "completed"
        press_send(chat, "second")
        await chat.wait(timeout_s=5)
    assert [(m["role"], m["content"], m["status"]) for m in chat.transcript] == [
        ("user", "first", "sent"),
        ("assistant", "streamnb reply to first", "completed"),
        ("user", "second", "sent"),
        ("assistant", "streamnb reply to second", "completed"),
    ]
    assert starts[1] == [  # the conversation so far, the new message included
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "streamnb reply to first"},
        {"role": "user", "content": "second"},
    ]
    refs = {m["stream_ref"] for m in chat.transcript}
    assert len(refs) == 2
    assert runtime.ledger.streams()["status"].tolist() == ["completed", "completed"]
    assert {m["turn"] for m in deltas(sent)} == {1, 3}
    assert not chat.busy
    chat.close()


async def test_chat_stop_cancels_current_reply_and_send_waits(
    slow_rt: sn.StreamRuntime,
) -> None:
    chat = ChatWidget(slow_rt, CHAT)
    press_send(chat, "long one")
    press_send(chat, "too soon")
    assert "still streaming" in chat.error
    await until(chat, chat.reply_text)
    press_stop(chat)
    assert await chat.wait(5) == "cancelled"
    assert chat.reason == "user pressed stop"
    last = chat.transcript[-1]
    assert last["status"] == "cancelled"
    assert 0 < len(last["content"]) < 2_000
    assert slow_rt.ledger.streams()["status"].tolist() == ["cancelled"]
    press_send(chat, "   ")
    assert "type a message" in chat.error
    chat.close()


async def test_chat_late_hello_gets_current_partial_reply(slow_rt: sn.StreamRuntime) -> None:
    chat = ChatWidget(slow_rt, CHAT, flush_interval_s=0.02)
    with recorded_messages(chat) as sent:
        press_hello(chat)
        press_send(chat, "hi")
        await until(chat, lambda: len(chat.reply_text()) >= 100)
        seen = len(sent)
        await until(chat, lambda: len(sent) > seen)
        press_hello(chat)  # within SNAPSHOT_INTERVAL_S of the first: answered a moment later
        await until(chat, lambda: sum(m["type"] == "snapshot" for m in sent) == 2)
        press_stop(chat)
        await chat.wait(5)
    first, second = (m for m in sent if m["type"] == "snapshot")
    assert first == {"type": "snapshot", "upto_seq": -1, "texts": {}, "status": "", "turn": -1}
    assert second["turn"] == 1
    partial = second["texts"]["assistant.delta"]
    final = chat.transcript[1]["content"]
    assert final.startswith(partial)
    after = [m for m in deltas(sent) if m["from_seq"] > second["upto_seq"]]
    assert after[0]["from_seq"] == second["upto_seq"] + 1
    assert partial + joined(after) == final
    chat.close()


async def test_chat_close_cancels_the_reply(slow_rt: sn.StreamRuntime) -> None:
    chat = ChatWidget(slow_rt, CHAT)
    press_send(chat, "bye")
    await until(chat, chat.reply_text)
    session = chat.session
    assert session is not None
    chat.close()
    terminal = await session.wait(5)
    assert terminal.kind == "cancelled"


# --- front-end files ---------------------------------------------------------------------


def test_front_end_files_never_insert_html() -> None:
    for widget in (StreamWidget, ChatWidget):
        source = str(widget._esm)  # common.js + widget.js / chat.js: the module the browser loads
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", source)
        assert "export default { initialize, render }" in source
    css = (STATIC / "widget.css").read_text()
    for var in (
        "--jp-ui-font-color1",
        "--jp-layout-color1",
        "--jp-border-color1",
        "--jp-brand-color1",
    ):
        assert var in css


async def test_chat_third_turn_handler_sees_the_conversation_so_far(
    runtime: sn.StreamRuntime,
) -> None:
    seen: list[Any] = []

    async def run(start: Any, input: Any, ctx: Any) -> Any:
        seen.append(start)
        async for _frame in input:
            yield sn.output(f"reply {len(seen)}", channel="assistant.delta")
            yield sn.completed()
            return

    runtime.register(sn.AttachedStreamHandler(kind="memory", mode="bidi", run=run))
    chat = ChatWidget(runtime, "memory")  # the default start payload
    for text in ("first", "second", "third"):
        press_send(chat, text)
        assert await chat.wait(timeout_s=5) == "completed"
    assert seen[2] == {
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply 1"},
            {"role": "user", "content": "second"},
            {"role": "assistant", "content": "reply 2"},
            {"role": "user", "content": "third"},
        ]
    }


async def test_chat_widget_refused_send_leaves_no_stream_running_and_no_entry_running() -> None:
    # Regression: a message the stream refused as input (here a lone surrogate, which is
    # not text) killed the turn's task after the stream was attached: the stream waited
    # for input for ever (its session never detached) and the transcript entry stayed
    # "running". Now the message is refused before anything opens, and any other refusal
    # cancels the stream so that it settles.
    async with sn.StreamRuntime(cancel_grace_s=0.2) as rt:
        rt.register(chatbot_handler())
        chat = ChatWidget(rt, CHAT)
        chat._handle_custom_msg({"type": "send", "text": "half \ud83d"}, [])
        await actions_done(chat)
        assert "surrogate" in chat.error
        assert not chat.busy and chat.transcript == []
        assert rt.active_refs() == []
        press_send(chat, "hello")  # the widget still works
        assert await chat.wait(10) == "completed"
        assert [m["status"] for m in chat.transcript] == ["sent", "completed"]
        chat.close()


async def test_a_flood_of_hello_messages_gets_a_few_snapshots_not_one_each(
    runtime: sn.StreamRuntime,
) -> None:
    # Regression: each {"type": "hello"} queued a full snapshot (the whole text) for every
    # view: 500 hellos queued 101 MB in a second.
    from streamnb.widget._base import SNAPSHOT_INTERVAL_S

    session = await runtime.attach(CHAT, {})
    await session.send("hello")
    widget = StreamWidget(session)
    await widget.wait(10)
    with recorded_messages(widget) as sent:
        for _ in range(500):
            press_hello(widget)
        assert [m["type"] for m in sent] == ["snapshot"]  # the first, at once
        await asyncio.sleep(SNAPSHOT_INTERVAL_S * 2)
        assert [m["type"] for m in sent] == ["snapshot", "snapshot"]  # the rest: one more
        assert sent[1] == sent[0]  # the same state: nothing was lost
    chat = ChatWidget(runtime, CHAT)
    with recorded_messages(chat) as sent:
        for _ in range(100):
            press_hello(chat)
        await asyncio.sleep(SNAPSHOT_INTERVAL_S * 2)
        assert [m["type"] for m in sent] == ["snapshot", "snapshot"]
    widget.close()
    chat.close()


async def test_the_follower_wakes_once_per_delta_not_once_per_frame() -> None:
    """The follower made a cursor and read the log at every frame (about 5 us per token
    on a stream whose tokens each take a loop turn); it now wakes once per flush and
    drains the log in one slice."""

    async def run(start: Any, _input: Any, ctx: Any) -> Any:
        for _ in range(int(start["n"])):
            yield sn.output(" t")
            await asyncio.sleep(0)
        yield sn.completed()

    rt = sn.StreamRuntime()
    rt.register(sn.AttachedStreamHandler(kind="test.per_turn", run=run))
    follows = 0
    original = rt.follow

    def counting_follow(ref: str, after_seq: int = -1) -> Any:
        nonlocal follows
        follows += 1
        return original(ref, after_seq)

    rt.follow = counting_follow  # type: ignore[method-assign]
    try:
        session = await rt.attach("test.per_turn", {"n": 5_000})
        widget = StreamWidget(session)
        with recorded_messages(widget) as sent:
            assert await widget.wait(timeout_s=30) == "completed"
        assert widget.final_texts == {"assistant.delta": " t" * 5_000}
        assert follows <= len(deltas(sent)) + 2, (follows, len(deltas(sent)))
        widget.close()
    finally:
        await rt.aclose()
        rt.ledger.close()


async def test_folding_a_flood_of_tokens_builds_no_frame_per_token() -> None:
    """A 50,000-token flood made the widget's follower build a ``Frame`` per token at each
    flush (``runtime.frame_log``); those allocations ran the cyclic garbage collector's
    young generation once per ~700 tokens and pushed a full collection into the flood.
    The flush folds one slice of the log instead: no collection runs while it folds."""
    n = 20_000

    async def run(start: Any, _input: Any, ctx: sn.StreamContext) -> Any:
        for i in range(n):
            yield sn.output(f" t{i}")
        yield sn.completed()

    async with sn.StreamRuntime() as rt:
        rt.register(sn.AttachedStreamHandler(kind="flood", run=run))
        session = await rt.attach("flood", {})
        await session.wait()
        sent: list[Any] = []
        follower = Follower(rt, session.stream_ref, lambda delta, settled: sent.append(delta))
        collections: list[int] = []

        def count(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                collections.append(info["generation"])

        gc.collect()
        gc.callbacks.append(count)
        try:
            follower.flush()
        finally:
            gc.callbacks.remove(count)
        assert len(sent) == 1 and sent[0]["to_seq"] == n + 1
        assert sent[0]["chunks"] == {"assistant.delta": "".join(f" t{i}" for i in range(n))}
        assert follower.status == "completed"
        assert collections == []  # a Frame per token ran ~28 young collections here
