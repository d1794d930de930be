"""Re-running notebook cells: a new ledger, runtime, rooms or server for the same file or
port replaces the previous one of this process (``streamnb._takeover``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import streamnb as sn
from streamnb import _takeover
from streamnb.demo import chatbot_handler, output_only_handler
from streamnb.rooms import ChatRooms, RoomError, RoomExistsError
from streamnb.server import serve_in_background
from streamnb.testing import FakeTokenSource, lorem_tokens

WAIT_S = 10.0


def make_runtime(path: Path) -> sn.StreamRuntime:
    runtime = sn.StreamRuntime(sn.Ledger(path), cancel_grace_s=0.5)
    runtime.register(chatbot_handler())
    return runtime


async def test_creating_the_file_ledger_again_replaces_the_runtime_writing_it(tmp_path):
    path = tmp_path / "runs.db"
    first = make_runtime(path)  # the cell, run once
    waiting = await first.attach("tutorial.streaming_chatbot", {})
    old_ledger = first.ledger

    second = make_runtime(path)  # ... and again: no "another live process" error

    assert not second.ledger.read_only
    with pytest.raises(sn.RuntimeClosedError):
        await first.attach("tutorial.streaming_chatbot", {})
    # on the running loop (a notebook cell) the old stream settles once the cell yields
    terminal = await waiting.wait(WAIT_S)
    assert (terminal.kind, terminal.reason) == ("cancelled", "replaced")
    await asyncio.sleep(0)  # the wind-down task closes the old runtime, then its ledger
    assert repr(first).endswith("closed>")
    assert repr(old_ledger).endswith("closed>")
    rows = second.ledger.streams()[["status", "reason"]].values.tolist()
    assert rows == [["cancelled", "replaced"]]  # settled once, not recovered as runtime_lost
    assert second.ledger.recovered == []
    session = await second.attach("tutorial.streaming_chatbot", {})
    await session.send("works")
    assert (await session.wait(WAIT_S)).kind == "completed"
    await second.aclose()
    second.ledger.close()


async def test_a_second_runtime_on_one_file_ledger_replaces_the_first(tmp_path):
    ledger = sn.Ledger(tmp_path / "shared.db")  # made in one cell
    first = sn.StreamRuntime(ledger, cancel_grace_s=0.5)  # the runtime cell, run twice
    first.register(chatbot_handler())
    waiting = await first.attach("tutorial.streaming_chatbot", {})
    second = sn.StreamRuntime(ledger, cancel_grace_s=0.5)
    second.register(chatbot_handler())
    assert (await waiting.wait(WAIT_S)).reason == "replaced"
    session = await second.attach("tutorial.streaming_chatbot", {})
    await session.send("hi")
    assert (await session.wait(WAIT_S)).kind == "completed"
    assert ledger.streams().status.tolist() == ["cancelled", "completed"]
    await second.aclose()
    ledger.close()


def test_takeover_from_synchronous_code_settles_before_the_constructor_returns(tmp_path):
    path = tmp_path / "script.db"
    first = make_runtime(path)
    waiting = first.run(first.attach("tutorial.streaming_chatbot", {}))
    second = make_runtime(path)
    assert waiting.terminal is not None and waiting.terminal.reason == "replaced"
    assert repr(first).endswith("closed>")
    assert second.ledger.streams().reason.tolist() == ["replaced"]
    second.close()
    second.ledger.close()


def test_rooms_takeover_from_synchronous_code(tmp_path):
    from streamnb.rooms import room_reply_handler

    source = FakeTokenSource(lorem_tokens(400), rate_tokens_per_s=50)
    first = ChatRooms(tmp_path, lambda kind: room_reply_handler(kind, source))
    room_id = first.create_room("Ideas")
    first.runtime.run(first.room(room_id).send("long"))
    second = ChatRooms(tmp_path)
    assert first.closed
    assert second.room(room_id).messages()["status"].tolist() == ["sent", "cancelled"]
    second.close()


async def test_an_idle_runtime_is_replaced_at_once_on_the_running_loop(tmp_path):
    first = make_runtime(tmp_path / "idle.db")
    done = await first.attach("tutorial.streaming_chatbot", {})
    await done.send("x")
    await done.wait(WAIT_S)
    second = make_runtime(tmp_path / "idle.db")
    assert repr(first).endswith("closed>")  # nothing to settle: closed before returning
    assert second.ledger.streams().status.tolist() == ["completed"]
    await second.aclose()
    second.ledger.close()


def test_runtimes_on_in_memory_ledgers_are_independent():
    first = sn.StreamRuntime()
    second = sn.StreamRuntime()
    assert not repr(first).endswith("closed>")
    first.close()
    second.close()


async def test_reopening_a_rooms_directory_in_the_same_process_replaces_the_registry(tmp_path):
    source = FakeTokenSource(lorem_tokens(400), rate_tokens_per_s=50)
    from streamnb.rooms import room_reply_handler

    first = ChatRooms(tmp_path / "chat", lambda kind: room_reply_handler(kind, source))
    room_id = first.create_room("Ideas")
    await first.room(room_id).send("a long reply")

    second = ChatRooms(tmp_path / "chat")  # the cell again: takes the directory over

    assert second.recovered == []  # the reply in flight is the old registry's to settle
    # its wind-down task (owned by the takeover registry) settles the reply, then closes it
    await asyncio.wait_for(asyncio.gather(*_takeover._retiring), WAIT_S)
    assert first.closed
    messages = second.room(room_id).messages()
    assert messages["status"].tolist() == ["sent", "cancelled"]  # not "interrupted"
    assert second.recovered == []
    reason = second.ledger.streams()["reason"].tolist()
    assert reason == ["replaced"]
    await second.room(room_id).send("hello")
    assert (await second.room(room_id).wait(WAIT_S)).status == "completed"  # type: ignore[union-attr]
    await second.aclose()


HOLD_ROOMS = """
import sys, streamnb as sn
rooms = sn.ChatRooms(sys.argv[1])
print("held", flush=True)
sys.stdin.readline()
rooms.close()
"""


def test_a_rooms_directory_held_by_another_process_is_an_error_naming_its_pid(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_ROOMS, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RoomError, match=f"another live process .pid {holder.pid}"):
            ChatRooms(tmp_path)
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0


def test_creating_a_room_whose_name_exists_is_refused_or_returns_it():
    rooms = ChatRooms()
    ideas = rooms.create_room("Ideas")
    with pytest.raises(RoomExistsError, match="already exists") as caught:
        rooms.create_room(" Ideas ")  # the re-run cell
    assert isinstance(caught.value, ValueError)  # a RoomNameError: the name is not usable
    assert rooms.create_room("Ideas", exist_ok=True) == ideas
    other = rooms.create_room("Other")
    with pytest.raises(RoomExistsError):
        rooms.rename_room(other, "Ideas")
    rooms.rename_room(ideas, "Ideas")  # its own name is fine
    assert sorted(rooms.rooms()["name"]) == ["Ideas", "Other"]
    rooms.close()


async def test_serving_again_on_the_same_port_replaces_the_previous_server():
    runtime = sn.StreamRuntime()
    runtime.register(output_only_handler())
    first = await serve_in_background(runtime, port=0)
    again = sn.StreamRuntime()  # the cell re-run: a new runtime, the same port
    again.register(output_only_handler())
    second = await serve_in_background(again, port=first.port)
    assert not first.running
    assert second.port == first.port
    async with httpx.AsyncClient(base_url=second.url) as client:
        created = await client.post("/streams", json={"kind": "tutorial.output_only"})
        assert created.status_code == 201
    assert created.json()["stream_ref"] in set(again.ledger.streams().stream_ref)
    await second.aclose()
    await runtime.aclose()
    await again.aclose()


async def test_reading_a_consumed_output_again_says_how_to_replay():
    runtime = sn.StreamRuntime()
    runtime.register(output_only_handler())
    session = await runtime.attach("tutorial.output_only", {})
    frames = await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    with pytest.raises(sn.OutputConsumedError, match="reattach") as caught:
        await sn.read_until_terminal(session.output, timeout_s=WAIT_S)  # the cell, re-run
    assert "frame_log()" in str(caught.value)
    with pytest.raises(sn.OutputConsumedError):
        await session.output.__anext__()
    assert [f.seq for f in session.frame_log()] == [f.seq for f in frames]
    replay = await runtime.reattach(session.stream_ref)
    assert [f.seq for f in await sn.read_until_terminal(replay.output)] == [f.seq for f in frames]
    await runtime.aclose()


async def test_an_output_read_in_parts_is_not_consumed_until_its_terminal():
    runtime = sn.StreamRuntime()
    runtime.register(chatbot_handler())
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    first = await session.output.__anext__()
    await session.send("x")
    rest = await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    assert [first.seq] + [f.seq for f in rest] == list(range(len(rest) + 1))
    await runtime.aclose()


async def test_a_dropped_server_handle_is_still_replaced_on_its_port():
    import gc

    runtime = sn.StreamRuntime()
    runtime.register(output_only_handler())
    port = (await serve_in_background(runtime, port=0)).port  # the handle is not kept
    gc.collect()
    second = await serve_in_background(runtime, port=port)  # no "address already in use"
    async with httpx.AsyncClient(base_url=second.url) as client:
        assert (await client.get("/ledger/streams")).status_code == 200
    await second.aclose()
    await runtime.aclose()


TRY_OPEN = """
import sys, streamnb as sn
from streamnb.rooms import RoomError
try:
    if sys.argv[1] == "rooms":
        sn.ChatRooms(sys.argv[2]).close()
    else:
        sn.Ledger(sys.argv[2], read_only=False).close()
except (RoomError, sn.LedgerBusyError) as exc:
    print("refused:", exc)
else:
    print("opened")
"""


async def other_process_opens(what: str, path: Path) -> str:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", TRY_OPEN, what, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_a_handed_over_rooms_lock_stays_held_after_the_replaced_registry_closes(tmp_path):
    # The replaced registry's finalizer (a dropped ChatRooms releases its directory) must
    # not release the lock it handed to the registry replacing it.
    source = FakeTokenSource(lorem_tokens(400), rate_tokens_per_s=50)
    from streamnb.rooms import room_reply_handler

    first = ChatRooms(tmp_path / "chat", lambda kind: room_reply_handler(kind, source))
    room_id = first.create_room("Ideas")
    await first.room(room_id).send("a long reply")
    second = ChatRooms(tmp_path / "chat")  # a reply in flight: the lock is handed over
    await asyncio.wait_for(asyncio.gather(*_takeover._retiring), WAIT_S)
    assert first.closed
    del first  # collected: its finalizer has run (or runs now)
    refused = await other_process_opens("rooms", tmp_path / "chat")
    assert refused.startswith("refused: the rooms directory")
    assert f"pid {os.getpid()}" in refused
    await second.aclose()
    assert await other_process_opens("rooms", tmp_path / "chat") == "opened"


async def test_a_handed_over_ledger_lock_stays_held_after_the_replaced_ledger_closes(tmp_path):
    path = tmp_path / "runs.db"
    first = make_runtime(path)
    session = await first.attach("tutorial.streaming_chatbot", {})
    second = make_runtime(path)  # a stream in flight: the writer lock is handed over
    await asyncio.wait_for(session.wait(), WAIT_S)
    await asyncio.wait_for(asyncio.gather(*_takeover._retiring), WAIT_S)
    assert first.ledger.read_only is False and "closed" in repr(first.ledger)
    del first, session
    refused = await other_process_opens("ledger", path)
    assert refused.startswith("refused: the ledger") and str(os.getpid()) in refused
    await second.aclose()
    second.ledger.close()  # the runtime closes no ledger it was given
    assert await other_process_opens("ledger", path) == "opened"
