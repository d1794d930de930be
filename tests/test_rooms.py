"""streamnb.rooms: the registry, isolation, replies, cancel, resume, faults and the SQL join."""

from __future__ import annotations

import asyncio
import gc
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import streamnb as sn
import streamnb.rooms
from streamnb._frames import Frame
from streamnb._handler import AttachedStreamHandler, ParseError
from streamnb.providers import ProviderConfig, chat_handler
from streamnb.rooms import (
    SETTLED_EVENT,
    ChatRooms,
    RoomBusyError,
    RoomError,
    RoomEvent,
    RoomNameError,
    UnknownRoomError,
    room_reply_handler,
)
from streamnb.testing import FakeTokenSource, fake_tokens, lorem_tokens
from tests.openai_server import OpenAIServer, Script

pytest_plugins = ["tests.openai_server"]

WAIT_S = 10.0


@pytest.fixture
async def rt() -> AsyncIterator[sn.StreamRuntime]:
    runtime = sn.StreamRuntime(cancel_grace_s=0.2, force_wait_s=0.2)
    try:
        yield runtime
    finally:
        await runtime.aclose()
        runtime.ledger.close()


@pytest.fixture
async def rooms(rt: sn.StreamRuntime) -> AsyncIterator[ChatRooms]:
    registry = ChatRooms(runtime=rt)
    try:
        yield registry
    finally:
        await registry.aclose()


def slow(n_tokens: int = 120, rate: float = 300.0) -> Callable[[str], AttachedStreamHandler]:
    """A handler factory whose replies take ``n_tokens / rate`` seconds."""
    source = FakeTokenSource(lorem_tokens(n_tokens), rate_tokens_per_s=rate)
    return lambda kind: room_reply_handler(kind, source)


@pytest.fixture
async def slow_rooms(rt: sn.StreamRuntime) -> AsyncIterator[ChatRooms]:
    registry = ChatRooms(runtime=rt, handler_factory=slow())
    try:
        yield registry
    finally:
        await registry.aclose()


async def read_outputs(session: sn.Session, n: int) -> list[Frame]:
    """Read ``session.output`` until ``n`` output frames arrived; returns every frame read."""
    frames: list[Frame] = []

    async def read() -> None:
        outputs = 0
        async for frame in session.output:
            frames.append(frame)
            outputs += frame.kind == "output"
            if outputs >= n:
                return

    await asyncio.wait_for(read(), WAIT_S)
    return frames


def recording_factory(starts: list[Any]) -> Callable[[str], AttachedStreamHandler]:
    """The default handler, remembering every start payload it is given."""

    def factory(kind: str) -> AttachedStreamHandler:
        inner = room_reply_handler(kind)

        def parse_start(raw: Any) -> Any:
            starts.append(raw)
            return inner.parse_start(raw)

        return AttachedStreamHandler(kind=kind, mode="bidi", run=inner.run, parse_start=parse_start)

    return factory


# --- the registry ------------------------------------------------------------------------


async def test_create_rename_and_list_most_recent_first(rooms: ChatRooms) -> None:
    empty = rooms.rooms()
    assert list(empty.columns) == ["id", "name", "message_count", "created_at", "last_active_at"]
    a = rooms.create_room("  Alpha  ")
    b = rooms.create_room("Beta")
    assert a.startswith("rm_") and len(a) == 15 and a != b
    assert rooms.rooms()["name"].tolist() == ["Beta", "Alpha"]  # stripped, newest first
    await rooms.room(a).send("hi")
    await rooms.room(a).wait(WAIT_S)
    df = rooms.rooms()
    assert df["name"].tolist() == ["Alpha", "Beta"]  # Alpha was active last
    assert df["message_count"].tolist() == [2, 0]
    assert str(df["message_count"].dtype) == "int64"
    assert str(df["last_active_at"].dtype) == "datetime64[ns, UTC]"
    rooms.rename_room(b, "Gamma")
    assert rooms.room(b).name == "Gamma"
    assert rooms.room(a) is rooms.room(a)
    assert len(rooms) == 2 and a in rooms
    assert "rooms=2" in repr(rooms)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 101, "101 characters"),
        ("two\nlines", "control character U\\+000A"),
        ("bell\x07", "control character U\\+0007"),
        ("half \ud83d", "lone surrogate"),
        (None, "not a str"),
    ],
)
async def test_bad_room_names_are_refused(rooms: ChatRooms, name: Any, problem: str) -> None:
    with pytest.raises(RoomNameError, match=problem) as info:
        rooms.create_room(name)
    assert isinstance(info.value, RoomError) and isinstance(info.value, sn.StreamnbError)
    assert isinstance(info.value, ValueError)
    assert len(rooms) == 0
    room_id = rooms.create_room("x" * 100)  # the limit itself is fine
    with pytest.raises(RoomNameError):
        rooms.rename_room(room_id, name)
    assert rooms.room(room_id).name == "x" * 100


async def test_iterating_the_registry_gives_room_ids_and_tolerates_deletes(
    rooms: ChatRooms,
) -> None:
    a, b, c = (rooms.create_room(name) for name in ("A", "B", "C"))
    assert list(rooms) == [a, b, c]  # creation order, like a dict
    for room_id in rooms:  # a snapshot: deleting while iterating is fine
        if room_id != b:
            await rooms.delete_room(room_id)
    assert list(rooms) == [b]


def test_rooms_imports_no_jupyter_package_and_no_openai() -> None:
    # the widget lives in streamnb.widget; the default reply's fake source does not need
    # the openai SDK (streamnb.providers loads its names on first use)
    code = (
        "import sys, streamnb.rooms, streamnb.demo; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'anywidget', 'ipywidgets', 'IPython', 'traitlets', 'openai', 'starlette'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
    assert not hasattr(streamnb.rooms, "ChatRoomsWidget")


async def test_unknown_room_ids_raise_a_clear_error(rooms: ChatRooms) -> None:
    real = rooms.create_room("Real")
    for bad in ("rm_000000000000", "../registry", 42):
        with pytest.raises(UnknownRoomError, match="no room with id") as info:
            rooms.room(bad)  # type: ignore[arg-type]
        assert real in str(info.value)
    with pytest.raises(UnknownRoomError):
        rooms.rename_room("nope", "x")
    with pytest.raises(UnknownRoomError):
        rooms.clear_room("nope")
    with pytest.raises(UnknownRoomError):
        await rooms.delete_room("nope")
    assert rooms.rooms()["id"].tolist() == [real]


async def test_two_rooms_never_see_each_others_history(rt: sn.StreamRuntime) -> None:
    starts: list[Any] = []
    async with ChatRooms(runtime=rt, handler_factory=recording_factory(starts)) as rooms:
        a, b = rooms.room(rooms.create_room("A")), rooms.room(rooms.create_room("B"))
        await a.send("one")
        assert (await a.wait(WAIT_S)).content == "streamnb reply to one (turn 1)"  # type: ignore[union-attr]
        await a.send("two")
        await a.wait(WAIT_S)
        await b.send("three")
        assert (await b.wait(WAIT_S)).content == "streamnb reply to three (turn 1)"  # type: ignore[union-attr]
        assert starts == [
            {"messages": []},
            {
                "messages": [
                    {"role": "user", "content": "one"},
                    {"role": "assistant", "content": "streamnb reply to one (turn 1)"},
                ]
            },
            {"messages": []},  # room B starts empty
        ]
        assert a.messages()["content"].tolist() == [
            "one",
            "streamnb reply to one (turn 1)",
            "two",
            "streamnb reply to two (turn 2)",
        ]
        assert b.messages()["content"].tolist() == ["three", "streamnb reply to three (turn 1)"]
        assert set(a.messages()["stream_ref"]).isdisjoint(set(b.messages()["stream_ref"]))


async def test_each_room_is_one_file_and_reopening_keeps_history(tmp_path: Path) -> None:
    async with ChatRooms(tmp_path / "chat") as rooms:
        a, b = rooms.create_room("A"), rooms.create_room("B")
        await rooms.room(a).send("for A")
        await rooms.room(a).wait(WAIT_S)
        await rooms.room(b).send("for B")
        await rooms.room(b).wait(WAIT_S)
        assert rooms.room(a).path == str(tmp_path / "chat" / "rooms" / f"{a}.db")
    files = sorted(p.name for p in (tmp_path / "chat").iterdir() if p.suffix == ".db")
    assert files == ["ledger.db", "registry.db"]
    assert sorted(p.name for p in (tmp_path / "chat" / "rooms").glob("*.db")) == sorted(
        [f"{a}.db", f"{b}.db"]
    )
    # a room's history is its own file: copy it and read it with plain sqlite3
    copy = tmp_path / "copy.db"
    copy.write_bytes((tmp_path / "chat" / "rooms" / f"{a}.db").read_bytes())
    with sqlite3.connect(copy) as conn:
        rows = conn.execute("SELECT role, content FROM messages ORDER BY pos").fetchall()
    conn.close()
    assert rows == [("user", "for A"), ("assistant", "streamnb reply to for A (turn 1)")]

    async with ChatRooms(tmp_path / "chat") as again:
        assert again.rooms()["name"].tolist() == ["B", "A"]
        assert again.room(b).messages()["content"].tolist() == [
            "for B",
            "streamnb reply to for B (turn 1)",
        ]
        assert again.recovered == []
        await again.room(a).send("more")
        assert (await again.room(a).wait(WAIT_S)).content.endswith("(turn 2)")  # type: ignore[union-attr]
        # settlements from both sessions are in the one ledger file
        assert len(again.ledger.events(kind=SETTLED_EVENT)) == 3


async def test_a_directory_is_released_on_close(tmp_path: Path) -> None:
    # one registry per directory: another process gets an error, a second registry of
    # this process takes over (tests/test_rerun.py)
    async with ChatRooms(tmp_path):
        pass
    async with ChatRooms(tmp_path) as again:
        assert len(again) == 0


# --- replies ---------------------------------------------------------------------------


async def test_send_streams_a_reply_and_settles_it_in_room_and_ledger(rooms: ChatRooms) -> None:
    room = rooms.room(rooms.create_room("Chat"))
    session = await room.send("hello")
    assert room.busy and room.active_stream() is session
    assert room.messages()["status"].tolist() == ["sent", "streaming"]
    frames = await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    sn.testing.assert_checkpoint(frames, "opened -> progress -> output* -> completed")
    message = await room.wait(WAIT_S)
    assert message is not None
    assert (message.role, message.status) == ("assistant", "completed")
    assert message.content == "".join(fake_tokens("hello")) + " (turn 1)"
    assert message.stream_ref == session.stream_ref
    assert not room.busy and room.active_stream() is None
    events = rooms.ledger.events(kind=SETTLED_EVENT)
    assert events["payload"].tolist() == [
        {"room_id": room.id, "message_id": message.id, "kind": "completed"}
    ]
    assert events["stream_ref"].tolist() == [session.stream_ref]
    assert rooms.ledger.stream_status(session.stream_ref) == "completed"
    df = room.messages()
    assert list(df.columns) == ["id", "role", "content", "status", "created_at", "stream_ref"]
    assert str(df["created_at"].dtype) == "datetime64[ns, UTC]"


async def test_sending_while_a_reply_streams_raises_busy(slow_rooms: ChatRooms) -> None:
    room = slow_rooms.room(slow_rooms.create_room("Busy"))
    session = await room.send("first")
    with pytest.raises(RoomBusyError, match="busy") as info:
        await room.send("second")
    assert info.value.stream_ref == session.stream_ref
    send_twice = await asyncio.gather(
        slow_rooms.room(slow_rooms.create_room("Race")).send("a"),
        slow_rooms.room(slow_rooms.rooms()["id"][0]).send("b"),
        return_exceptions=True,
    )
    assert sum(isinstance(r, RoomBusyError) for r in send_twice) == 1
    assert room.messages()["content"].tolist() == ["first", ""]
    with pytest.raises(RoomError, match="empty"):
        await slow_rooms.room(slow_rooms.create_room("Empty")).send("   ")


async def test_stop_stores_the_partial_text_as_cancelled(slow_rooms: ChatRooms) -> None:
    room = slow_rooms.room(slow_rooms.create_room("Stop"))
    session = await room.send("long please")
    seen = await read_outputs(session, 5)
    assert await room.cancel("user pressed stop") == "requested"
    assert await room.cancel() == "already_requested"
    message = await room.wait(WAIT_S)
    assert message is not None and message.status == "cancelled"
    frames = session.frame_log()
    streamed = "".join(f.payload for f in frames if f.kind == "output")
    assert message.content == streamed  # exactly what observers saw
    assert message.content.startswith("".join(f.payload for f in seen if f.kind == "output"))
    assert 0 < len(message.content) < len("".join(lorem_tokens(120)("long please")))
    assert frames[-1].kind == "cancelled"
    payload = slow_rooms.ledger.events(kind=SETTLED_EVENT)["payload"].tolist()
    assert payload == [{"room_id": room.id, "message_id": message.id, "kind": "cancelled"}]
    assert await room.cancel() is None  # nothing streams any more
    # the next turn sees the partial reply in its history
    await room.send("again")
    await room.cancel()
    await room.wait(WAIT_S)
    assert room.messages()["status"].tolist() == ["sent", "cancelled", "sent", "cancelled"]


async def test_resume_replays_then_continues_live_without_duplicates(
    slow_rooms: ChatRooms,
) -> None:
    room = slow_rooms.room(slow_rooms.create_room("Resume"))
    assert await room.resume() is None  # nothing streaming
    session = await room.send("resume me")
    first = await read_outputs(session, 10)
    await session.detach()  # the client went away: the reply goes on (on_detach=continue)
    assert room.active_stream() is session and room.busy
    resumed = await room.resume(after_seq=first[-1].seq)
    assert resumed is not None
    rest = await sn.read_until_terminal(resumed.output, timeout_s=WAIT_S)
    seqs = [f.seq for f in first + rest]
    assert seqs == list(range(len(seqs)))  # every frame once, in order
    message = await room.wait(WAIT_S)
    assert message is not None and message.status == "completed"
    text = "".join(f.payload for f in first + rest if f.kind == "output")
    assert text == message.content


async def test_resume_from_the_start_replays_everything(slow_rooms: ChatRooms) -> None:
    room = slow_rooms.room(slow_rooms.create_room("Replay"))
    session = await room.send("x")
    await read_outputs(session, 3)
    replay = await room.resume()
    assert replay is not None
    frames = await sn.read_until_terminal(replay.output, timeout_s=WAIT_S)
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert frames[0].kind == "opened"


async def test_clear_refuses_while_busy_then_empties_the_room(slow_rooms: ChatRooms) -> None:
    room_id = slow_rooms.create_room("Clear")
    room = slow_rooms.room(room_id)
    await room.send("x")
    with pytest.raises(RoomBusyError):
        slow_rooms.clear_room(room_id)
    await room.cancel()
    await room.wait(WAIT_S)
    assert slow_rooms.clear_room(room_id) == 2
    assert room.messages().empty
    assert slow_rooms.rooms()["message_count"].tolist() == [0]
    assert len(slow_rooms.ledger.events(kind=SETTLED_EVENT)) == 1  # the ledger keeps it


async def test_delete_cancels_the_active_reply_first_and_removes_the_file(
    tmp_path: Path,
) -> None:
    runtime = sn.StreamRuntime(sn.Ledger(tmp_path / "ledger.db"), cancel_grace_s=0.2)
    async with ChatRooms(tmp_path / "chat", handler_factory=slow(), runtime=runtime) as rooms:
        keep = rooms.create_room("Keep")
        doomed_id = rooms.create_room("Doomed")
        doomed = rooms.room(doomed_id)
        session = await doomed.send("bye")
        await read_outputs(session, 3)
        await rooms.delete_room(doomed_id)
        assert session.terminal is not None and session.terminal.kind == "cancelled"
        assert runtime.info(session.stream_ref).cancel_reason == "room deleted"
        assert not (tmp_path / "chat" / "rooms" / f"{doomed_id}.db").exists()
        assert rooms.rooms()["id"].tolist() == [keep]
        with pytest.raises(UnknownRoomError):
            rooms.room(doomed_id)
        with pytest.raises(UnknownRoomError):
            await doomed.send("still there?")
        with pytest.raises(UnknownRoomError):
            doomed.messages()
        assert "deleted" in repr(doomed)
        payload = runtime.ledger.events(kind=SETTLED_EVENT)["payload"].tolist()
        assert payload == [
            {"room_id": doomed_id, "message_id": payload[0]["message_id"], "kind": "cancelled"}
        ]
    await runtime.aclose()
    runtime.ledger.close()


async def test_deleting_a_room_while_a_send_starts_leaves_no_stream_running(
    rt: sn.StreamRuntime,
) -> None:
    async with ChatRooms(runtime=rt, handler_factory=slow()) as rooms:
        room_id = rooms.create_room("Racy")
        sending = asyncio.ensure_future(rooms.room(room_id).send("x"))
        await asyncio.sleep(0)  # one loop turn: the send has claimed the room
        assert rooms.room(room_id).busy
        await rooms.delete_room(room_id)
        with pytest.raises(RoomError):
            await sending
        for ref in rt.active_refs():
            terminal = await rt.wait(ref, timeout_s=WAIT_S)
            assert terminal.kind == "cancelled"
        assert rt.ledger.streams()["status"].tolist() in ([], ["cancelled"])


async def test_failed_attach_stores_nothing(rt: sn.StreamRuntime) -> None:
    def rejecting(kind: str) -> AttachedStreamHandler:
        inner = room_reply_handler(kind)
        return AttachedStreamHandler(
            kind=kind, mode="bidi", run=inner.run, parse_start=lambda raw: ParseError(["no"])
        )

    async with ChatRooms(runtime=rt, handler_factory=rejecting) as rooms:
        room = rooms.room(rooms.create_room("Refused"))
        with pytest.raises(sn.StartRejectedError, match="no"):
            await room.send("hello")
        assert room.messages().empty and not room.busy


async def test_output_only_handler_gets_the_message_in_its_history(
    rt: sn.StreamRuntime,
) -> None:
    def echo(kind: str) -> AttachedStreamHandler:
        async def run(start: Any, _input: Any, _ctx: Any) -> AsyncIterator[Any]:
            history = start["messages"]
            yield {"kind": "output", "channel": "assistant.delta", "payload": str(len(history))}
            yield {"kind": "output", "channel": "tool", "payload": "not part of the reply"}
            yield {
                "kind": "output",
                "channel": "assistant.delta",
                "payload": ":" + history[-1]["content"],
            }
            yield {"kind": "completed", "terminal": {"ok": True}}

        return AttachedStreamHandler(kind=kind, mode="output_only", run=run)

    async with ChatRooms(runtime=rt, handler_factory=echo) as rooms:
        room = rooms.room(rooms.create_room("Echo"))
        await room.send("ping")
        assert (await room.wait(WAIT_S)).content == "1:ping"  # type: ignore[union-attr]
        await room.send("pong")
        assert (await room.wait(WAIT_S)).content == "3:pong"  # type: ignore[union-attr]


async def test_a_failing_handler_commit_marks_the_message_failed(rt: sn.StreamRuntime) -> None:
    def broken(kind: str) -> AttachedStreamHandler:
        def commit_terminal(terminal: Frame, tx: Any) -> None:
            raise RuntimeError("boom")

        inner = room_reply_handler(kind)
        return AttachedStreamHandler(
            kind=kind,
            mode="bidi",
            run=inner.run,
            parse_start=inner.parse_start,
            commit_terminal=commit_terminal,
        )

    async with ChatRooms(runtime=rt, handler_factory=broken) as rooms:
        room = rooms.room(rooms.create_room("Broken"))
        session = await room.send("x")
        message = await room.wait(WAIT_S)
        assert message is not None and message.status == "failed"
        assert session.terminal is not None and session.terminal.reason == "commit_terminal_error"
        assert rooms.ledger.events(kind=SETTLED_EVENT).empty


async def test_a_live_provider_gets_the_rooms_history(
    openai_server: OpenAIServer, rt: sn.StreamRuntime
) -> None:
    openai_server.script = Script(tokens=["Hi", " there"])
    config = ProviderConfig.resolve(
        model="test-model",
        base_url=openai_server.base_url,
        api_key_env="STREAMNB_TEST_KEY",
        max_retries=0,
        timeout_s=WAIT_S,
        environ={"STREAMNB_TEST_KEY": "sk-local-test-key"},
    )

    def live(kind: str) -> AttachedStreamHandler:
        return chat_handler(kind, config, system="Each room is its own conversation.")

    async with ChatRooms(runtime=rt, handler_factory=live) as rooms:
        a = rooms.room(rooms.create_room("A"))
        b = rooms.room(rooms.create_room("B"))
        await a.send("hello")
        assert (await a.wait(WAIT_S)).content == "Hi there"  # type: ignore[union-attr]
        await a.send("again")
        await a.wait(WAIT_S)
        await b.send("elsewhere")
        await b.wait(WAIT_S)
    system = {"role": "system", "content": "Each room is its own conversation."}
    bodies = [r.body["messages"] for r in openai_server.requests]
    assert bodies == [
        [system, {"role": "user", "content": "hello"}],
        [
            system,
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "Hi there"},
            {"role": "user", "content": "again"},
        ],
        [system, {"role": "user", "content": "elsewhere"}],
    ]
    kinds = rt.ledger.events()["kind"].tolist()
    assert kinds.count(SETTLED_EVENT) == 3
    assert kinds.count("streamnb.rooms.reply.settled") == 3  # the handler's own event too


def test_bad_constructor_arguments_raise() -> None:
    with pytest.raises(TypeError, match="AttachedStreamHandler"):
        ChatRooms(handler_factory=lambda kind: "not a handler")  # type: ignore[arg-type,return-value]
    trimming = sn.StreamRuntime(max_retained_frames=10)
    with pytest.raises(ValueError, match="max_retained_frames"):
        ChatRooms(runtime=trimming)
    trimming.ledger.close()
    with pytest.raises(TypeError, match="StreamRuntime"):
        ChatRooms(runtime="rt")  # type: ignore[arg-type]


async def test_listeners_see_every_change(slow_rooms: ChatRooms) -> None:
    events: list[RoomEvent] = []
    unsubscribe = slow_rooms.subscribe(events.append)
    slow_rooms.subscribe(lambda event: 1 / 0)  # a broken listener breaks nothing
    room_id = slow_rooms.create_room("Watched")
    slow_rooms.rename_room(room_id, "Renamed")
    room = slow_rooms.room(room_id)
    session = await room.send("x")
    await room.cancel()
    await room.wait(WAIT_S)
    slow_rooms.clear_room(room_id)
    await slow_rooms.delete_room(room_id)
    unsubscribe()
    slow_rooms.create_room("Unseen")
    message_id = events[2].message_id
    assert events == [
        RoomEvent("created", room_id),
        RoomEvent("renamed", room_id),
        RoomEvent("reply_started", room_id, message_id, session.stream_ref),
        RoomEvent("reply_settled", room_id, message_id, session.stream_ref),
        RoomEvent("cleared", room_id),
        RoomEvent("deleted", room_id),
    ]


async def test_closing_stops_replies_and_refuses_further_use(rt: sn.StreamRuntime) -> None:
    rooms = ChatRooms(runtime=rt, handler_factory=slow())
    room = rooms.room(rooms.create_room("Closing"))
    session = await room.send("x")
    await read_outputs(session, 2)
    await rooms.aclose()
    assert rooms.closed and "closed" in repr(rooms)
    assert session.terminal is not None and session.terminal.kind == "cancelled"
    with pytest.raises(RoomError, match="closed"):
        rooms.create_room("Late")
    with pytest.raises(RoomError, match="closed"):
        room.messages()
    await rooms.aclose()  # idempotent


def test_sync_close_in_a_script() -> None:
    rooms = ChatRooms()
    room = rooms.room(rooms.create_room("Script"))
    rooms.runtime.run(room.send("hi"))
    message = rooms.runtime.run(room.wait(WAIT_S))
    assert message is not None and message.status == "completed"
    rooms.close()
    rooms.close()
    assert rooms.closed


# --- SQL across rooms and the ledger -------------------------------------------------------

JOIN = """
    SELECT r.name AS room, m.role, m.status, s.status AS stream_status,
           json_extract(e.payload, '$.kind') AS settled_kind
    FROM messages m
    JOIN rooms r ON r.id = m.room_id
    JOIN ledger.streams s ON s.stream_ref = m.stream_ref
    LEFT JOIN ledger.events e
        ON e.stream_ref = m.stream_ref AND e.kind = 'room.reply.settled'
        AND json_extract(e.payload, '$.message_id') = m.id
    WHERE m.role = 'assistant'
    ORDER BY r.name
"""


@pytest.mark.parametrize("on_disk", [False, True])
async def test_one_sql_query_joins_rooms_messages_and_streams(
    tmp_path: Path, on_disk: bool
) -> None:
    async with ChatRooms(tmp_path / "chat" if on_disk else None, handler_factory=slow()) as rooms:
        a = rooms.room(rooms.create_room("A"))
        b = rooms.room(rooms.create_room("B"))
        await a.send("x")
        await a.wait(WAIT_S)
        session = await b.send("y")
        await read_outputs(session, 2)
        await b.cancel()
        await b.wait(WAIT_S)
        df = rooms.sql(JOIN)
        assert df.to_dict("records") == [
            {
                "room": "A",
                "role": "assistant",
                "status": "completed",
                "stream_status": "completed",
                "settled_kind": "completed",
            },
            {
                "room": "B",
                "role": "assistant",
                "status": "cancelled",
                "stream_status": "cancelled",
                "settled_kind": "cancelled",
            },
        ]
        with pytest.raises(sn.LedgerQueryError):
            rooms.sql("DELETE FROM ledger.streams")
        with pytest.raises(sn.LedgerQueryError):
            rooms.sql("SELECT nope FROM rooms")
        assert rooms.sql("SELECT count(*) AS n FROM rooms WHERE name = ?", ("A",))["n"][0] == 1
        assert len(rooms.ledger.streams()) == 2  # nothing changed


# --- a process killed mid-reply -----------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from streamnb.rooms import ChatRooms, room_reply_handler
    from streamnb.testing import FakeTokenSource, fake_tokens, lorem_tokens

    def tokens(message):
        return fake_tokens(message) if message == "quick" else lorem_tokens(100_000)(message)

    async def main():
        source = FakeTokenSource(tokens, rate_tokens_per_s=200)
        rooms = ChatRooms(sys.argv[1], handler_factory=lambda k: room_reply_handler(k, source))
        room = rooms.room(rooms.create_room("Doomed"))
        await room.send("quick")
        await room.wait()
        session = await room.send("slow")
        outputs = 0
        async for frame in session.output:
            outputs += frame.kind == "output"
            if outputs == 5:
                print(room.id, session.stream_ref, flush=True)
                await asyncio.sleep(60)

    asyncio.run(main())
    """
)


async def test_a_process_killed_mid_reply_leaves_the_reply_interrupted(tmp_path: Path) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(tmp_path / "chat"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stderr is not None
        line = await asyncio.wait_for(child.stdout.readline(), 30)
        if not line:
            pytest.fail((await child.stderr.read()).decode())
        room_id, stream_ref = line.decode().split()
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGKILL)
        await asyncio.wait_for(child.wait(), 10)
    assert child.returncode == -signal.SIGKILL

    async with ChatRooms(tmp_path / "chat") as rooms:
        df = rooms.room(room_id).messages()
        assert df[["role", "content", "status"]].values.tolist()[:3] == [
            ["user", "quick", "sent"],
            ["assistant", "streamnb reply to quick (turn 1)", "completed"],
            ["user", "slow", "sent"],
        ]
        # the reply keeps the text checkpointed before the kill (tests/test_rooms_checkpoint.py)
        assert df[["role", "status"]].values.tolist()[3] == ["assistant", "interrupted"]
        assert "".join(lorem_tokens(100_000)("slow")).startswith(df["content"][3])
        assert rooms.recovered == [df["id"][3]]
        assert not rooms.room(room_id).busy
        streams = rooms.ledger.streams()
        lost = streams[streams.stream_ref == stream_ref]
        assert lost[["status", "reason"]].values.tolist() == [["failed", "runtime_lost"]]
        # the room works again
        await rooms.room(room_id).send("quick")
        assert (await rooms.room(room_id).wait(WAIT_S)).content.endswith("(turn 3)")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "name",
    [
        "Family \U0001f468\u200d\U0001f469\u200d\U0001f467",  # ZWJ sequence
        "\u0645\u0631\u062d\u0628\u0627\u200c\u0633",  # zero-width non-joiner (Persian)
        "flag \U0001f3f3\ufe0f\u200d\U0001f308",  # variation selector + ZWJ
        "soft\u00adhyphen",
    ],
)
async def test_room_names_with_zwj_emoji_and_joiners_are_accepted(
    rooms: ChatRooms, name: str
) -> None:
    # Regression: every Unicode category C character was refused as "control character",
    # also the zero-width joiners of emoji sequences and scripts that need them (Cf).
    room_id = rooms.create_room(name)
    assert rooms.room(room_id).name == name
    assert rooms.rooms().name.tolist() == [name]


@pytest.mark.parametrize(
    "statement",
    [
        "ATTACH DATABASE '{path}' AS other",
        "VACUUM INTO '{path}'",
        "SELECT 1; ATTACH DATABASE '{path}' AS other",
    ],
)
async def test_rooms_sql_refuses_attach_and_vacuum_into(
    rooms: ChatRooms, tmp_path: Path, statement: str
) -> None:
    # Regression: rooms.sql() ran ATTACH and VACUUM INTO, which create (empty) files at
    # any path the caller names; ledger.sql() refused them.
    target = tmp_path / "created-by-a-query.db"
    with pytest.raises(sn.LedgerQueryError):
        rooms.sql(statement.format(path=target))
    assert not target.exists()
    assert rooms.sql("SELECT count(*) AS n FROM rooms")["n"].tolist() == [0]


async def test_rooms_sql_has_a_time_limit(rooms: ChatRooms) -> None:
    endless = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    )
    with pytest.raises(sn.LedgerTimeoutError):
        rooms.sql(endless, timeout_s=0.3)


# --- handles (issue 15) ----------------------------------------------------------------


async def test_dropped_unclosed_chat_rooms_release_their_directory(tmp_path: Path) -> None:
    # Regression: ChatRooms(path) dropped without aclose() (a re-run notebook cell) kept
    # registry.db.lock until the kernel restarted: every later ChatRooms(path) raised
    # "open in another live process".
    rooms = ChatRooms(tmp_path / "chat")
    room = rooms.room(rooms.create_room("Ideas"))
    await room.send("hello")
    await room.wait(timeout_s=10)
    runtime = rooms.runtime
    del rooms, room
    gc.collect()
    again = ChatRooms(tmp_path / "chat", runtime=sn.StreamRuntime())
    try:
        (room_id,) = list(again)
        assert again.room(room_id).message_list()[0].content == "hello"
    finally:
        await again.aclose()
        await again.runtime.aclose()
        again.runtime.ledger.close()
    await runtime.aclose()


def test_a_thousand_rooms_fit_in_a_small_file_descriptor_limit(tmp_path: Path) -> None:
    # Regression: every room kept its SQLite file open (3 descriptors in WAL mode), so at
    # ulimit -n 1024 the 337th room failed with a misleading "is it a rooms database?".
    # Room files now open on demand, at most DEFAULT_MAX_OPEN_ROOMS at once.
    script = textwrap.dedent(f"""
        import asyncio, os, resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        from streamnb.rooms import ChatRooms
        def fds():
            return len(os.listdir("/proc/self/fd"))
        async def main():
            rooms = ChatRooms({str(tmp_path / "many")!r})
            ids = [rooms.create_room(f"room {{i}}") for i in range(400)]
            for room_id in ids[::40]:
                await rooms.room(room_id).send("hi")
                await rooms.room(room_id).wait(timeout_s=10)
            infos = rooms.room_infos()
            assert len(infos) == 400, len(infos)
            assert sum(i["message_count"] for i in infos) == 20
            peak = fds()
            await rooms.aclose()
            again = ChatRooms({str(tmp_path / "many")!r})
            assert len(again) == 400
            assert again.room(ids[0]).message_count() == 2
            await again.aclose()
            print("ok", peak)
        asyncio.run(main())
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "ok"
    assert int(proc.stdout.split()[1]) < 256


async def test_listing_rooms_opens_no_room_file_and_the_server_lists_off_the_loop(
    tmp_path: Path,
) -> None:
    # Regression: GET /rooms did one SQLite query per room, on the event loop.
    from streamnb.rooms import store
    from streamnb.server import serve_in_background

    rooms = ChatRooms(tmp_path / "chat")
    try:
        for i in range(5):
            rooms.create_room(f"r{i}")
        rooms._pool.max_open = 1  # only the newest room's file may stay open
        opened: list[str] = []
        connect = store.connect

        def spy(path: Any, **kwargs: Any) -> Any:
            opened.append(str(path))
            return connect(path, **kwargs)

        store.connect = spy  # type: ignore[assignment]
        threads: list[str] = []
        rows = rooms._registry.rows

        def rows_spy() -> Any:
            threads.append(threading.current_thread().name)
            return rows()

        rooms._registry.rows = rows_spy  # type: ignore[method-assign]
        try:
            assert [i["message_count"] for i in rooms.room_infos()] == [0] * 5
            assert opened == []  # counts are cached: no room file opened to list them
            handle = await serve_in_background(rooms.runtime, rooms=rooms)
            try:
                async with httpx.AsyncClient(base_url=handle.url) as client:
                    assert len((await client.get("/rooms")).json()["rooms"]) == 5
            finally:
                await handle.aclose()
            assert threads[0] == threading.main_thread().name  # the direct call
            assert threads[-1] != threading.main_thread().name  # the server's: a worker
        finally:
            store.connect = connect  # type: ignore[assignment]
    finally:
        await rooms.aclose()
