"""``WS /rooms/ws``: seed 004's protocol against uvicorn on 127.0.0.1, with real drops."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

import streamnb as sn
from streamnb.rooms import ChatRooms, room_reply_handler
from streamnb.server import ServerHandle, serve_in_background
from streamnb.testing import FakeTokenSource, lorem_tokens

pytestmark = pytest.mark.timeout(60)

#: long enough that no parked observer expires during a test
GRACE_S = 120.0
Msg = dict[str, Any]


@pytest.fixture
async def rooms() -> AsyncIterator[ChatRooms]:
    source = FakeTokenSource(lorem_tokens(120), rate_tokens_per_s=120)  # about a second
    runtime = sn.StreamRuntime(cancel_grace_s=0.3, force_wait_s=0.3)
    registry = ChatRooms(runtime=runtime, handler_factory=lambda k: room_reply_handler(k, source))
    try:
        yield registry
    finally:
        await registry.aclose()
        await runtime.aclose()
        runtime.ledger.close()


@pytest.fixture
async def server(rooms: ChatRooms) -> AsyncIterator[ServerHandle]:
    handle = await serve_in_background(rooms.runtime, rooms=rooms, reconnect_grace_s=GRACE_S)
    try:
        yield handle
    finally:
        await handle.aclose()


class Client:
    """A seed 004 client: sends rpc calls and reads typed messages in order."""

    _ids = itertools.count()

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[Msg] = []

    async def recv(self) -> Msg:
        message: Msg = json.loads(await asyncio.wait_for(self.ws.recv(), 20))
        self.seen.append(message)
        return message

    async def until(self, predicate: Callable[[Msg], bool]) -> Msg:
        while True:
            message = await self.recv()
            if predicate(message):
                return message

    async def call(self, method: str, *args: Any) -> Msg:
        call_id = f"c{next(self._ids)}"
        await self.ws.send(
            json.dumps({"type": "rpc", "id": call_id, "method": method, "args": args})
        )
        return await self.until(lambda m: m.get("type") == "rpc" and m.get("id") == call_id)

    async def send(self, message: Msg) -> None:
        await self.ws.send(json.dumps(message))


def url(handle: ServerHandle) -> str:
    return f"ws://{handle.host}:{handle.port}/rooms/ws"


def kind(t: str) -> Callable[[Msg], bool]:
    return lambda m: m.get("type") == t


def text_of(events: list[Msg]) -> str:
    chunks = [json.loads(m["event"]) for m in events]
    return "".join(c["delta"] for c in chunks if c["type"] == "text-delta")


async def test_connect_create_send_and_the_reply_streams_to_done(
    server: ServerHandle, rooms: ChatRooms
) -> None:
    async with connect(url(server)) as ws, connect(url(server)) as other_ws:
        client, other = Client(ws), Client(other_ws)
        state = await client.until(kind("cf_agent_state"))
        assert state["state"] == {"rooms": []}
        await other.until(kind("cf_agent_state"))
        created = await client.call("createRoom", "Lobby")
        assert created["success"] is True and created["done"] is True
        room_id = created["result"]
        assert {"type": "messages", "roomId": room_id, "messages": []} in client.seen
        listed = await other.until(lambda m: kind("cf_agent_state")(m) and m["state"]["rooms"])
        (info,) = listed["state"]["rooms"]
        assert (info["id"], info["name"], info["messageCount"], info["busy"]) == (
            room_id, "Lobby", 0, False
        )  # fmt: skip
        assert info["createdAt"].endswith("Z")

        sent = await client.call("sendMessage", "hello", "req-1")
        assert sent["success"] is True
        ref = sent["result"]["streamRef"]
        assert sent["result"]["requestId"] == "req-1"
        done = await client.until(kind("stream-done"))
    start = next(m for m in client.seen if m.get("type") == "stream-start")
    assert (start["roomId"], start["requestId"]) == (room_id, "req-1")
    events = [m for m in client.seen if m.get("type") == "stream-event"]
    assert [m["index"] for m in events] == list(range(len(events)))
    assert all(m["requestId"] == "req-1" and "replay" not in m for m in events)
    chunks = [json.loads(m["event"]) for m in events]
    assert chunks[0]["type"] == "start" and chunks[-1] == {"type": "finish"}
    message = done["message"]
    assert (message["role"], message["status"]) == ("assistant", "completed")
    assert text_of(events) == message["content"]
    assert message["content"].endswith("streamnb reply to hello (turn 1)")
    assert (await rooms.room(room_id).wait()).content == message["content"]  # type: ignore[union-attr]
    frames = rooms.runtime.frame_log(ref)
    assert [m["seq"] for m in events][-1] == frames[-1].seq


async def test_cancel_by_request_id_stops_the_reply(server: ServerHandle, rooms: ChatRooms) -> None:
    async with connect(url(server)) as ws:
        client = Client(ws)
        room_id = (await client.call("createRoom", "Stop"))["result"]
        sent = await client.call("sendMessage", "long", "req-stop")
        ref = sent["result"]["streamRef"]
        await client.until(lambda m: kind("stream-event")(m) and '"text-delta"' in m["event"])
        await client.send({"type": "cancel", "requestId": "req-stop"})
        done = await client.until(kind("stream-done"))
    assert done["message"]["status"] == "cancelled"
    chunks = [json.loads(m["event"]) for m in client.seen if m.get("type") == "stream-event"]
    assert chunks[-1] == {"type": "abort"}
    assert rooms.runtime.info(ref).cancel_reason == "user pressed stop"
    assert rooms.room(room_id).message_list()[-1].status == "cancelled"


async def test_a_dropped_client_resumes_the_reply_each_chunk_once(
    server: ServerHandle, rooms: ChatRooms
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        ws = await connect(url(server))
        first = Client(ws)
        room_id = (await first.call("createRoom", "Drop"))["result"]
        sent = await first.call("sendMessage", "hello", "req-drop")
        ref = sent["result"]["streamRef"]
        while sum('"text-delta"' in m.get("event", "") for m in first.seen) < 5:
            await first.recv()
        ws.transport.abort()  # a real drop: TCP reset, no close frame
        for _ in range(500):
            if (await http.get(f"/streams/{ref}")).json()["parked"] == 1:
                break
            await asyncio.sleep(0.01)
        assert (await http.get(f"/streams/{ref}")).json()["parked"] == 1
        kept = [m for m in first.seen if m.get("type") == "stream-event"]
        last = kept[-1]["index"]
        # the reply goes on while its client is away: wait for a frame the client missed
        # (without it a fast reconnection may find nothing to replay)
        for _ in range(500):
            if rooms.runtime.info(ref).next_seq > kept[-1]["seq"] + 1:
                break
            await asyncio.sleep(0.01)
        async with connect(url(server)) as ws2:
            second = Client(ws2)
            await second.call("switchRoom", room_id)
            messages = next(m for m in second.seen if m.get("type") == "messages")
            assert [m["role"] for m in messages["messages"]] == ["user"]  # not the streaming one
            await second.send(
                {"type": "resume-request", "requestId": "req-drop", "afterIndex": last}
            )
            resuming = await second.until(kind("stream-resuming"))
            assert (resuming["requestId"], resuming["roomId"]) == ("req-drop", room_id)
            assert (await http.get(f"/streams/{ref}")).json()["parked"] == 0  # taken over
            done = await second.until(kind("stream-done"))
        rest = [m for m in second.seen if m.get("type") == "stream-event"]
    assert [m["index"] for m in kept + rest] == list(range(len(kept) + len(rest)))  # each once
    assert any(m.get("replay") for m in rest)  # what was produced while away is a replay
    replayed = [m["index"] for m in rest if m.get("replay")]
    assert replayed == [m["index"] for m in rest][: len(replayed)]  # replay first, then live
    assert text_of(kept + rest) == done["message"]["content"]
    assert done["message"]["status"] == "completed"
    assert rooms.runtime.info(ref).observers == 0


async def test_resume_without_a_position_replays_the_reply_from_its_start(
    server: ServerHandle, rooms: ChatRooms
) -> None:
    async with connect(url(server)) as ws:
        client = Client(ws)
        room_id = (await client.call("createRoom", "Again"))["result"]
        await client.call("sendMessage", "hello", "req-a")
        await client.until(lambda m: kind("stream-event")(m) and '"text-delta"' in m["event"])
    async with connect(url(server)) as ws:
        client = Client(ws)
        await client.call("switchRoom", room_id)
        await client.send({"type": "resume-request"})  # as seed 004's client does
        await client.until(kind("stream-resuming"))
        done = await client.until(kind("stream-done"))
    events = [m for m in client.seen if m.get("type") == "stream-event"]
    assert events[0]["index"] == 0 and events[0]["replay"] is True
    assert [m["index"] for m in events] == list(range(len(events)))
    assert text_of(events) == done["message"]["content"]


async def test_viewers_of_a_room_see_its_new_reply_and_its_clearing(server: ServerHandle) -> None:
    async with connect(url(server)) as ws, connect(url(server)) as other_ws:
        client, viewer = Client(ws), Client(other_ws)
        room_id = (await client.call("createRoom", "Shared"))["result"]
        await viewer.call("switchRoom", room_id)
        await client.call("sendMessage", "hi", "req-v")
        start = await viewer.until(kind("stream-start"))
        assert start["requestId"] == "req-v"
        done = await viewer.until(kind("stream-done"))
        await client.until(kind("stream-done"))
        events = [m for m in viewer.seen if m.get("type") == "stream-event"]
        assert text_of(events) == done["message"]["content"]
        cleared = await client.call("clearRoom", room_id)
        assert cleared["success"] is True
        emptied = await viewer.until(lambda m: kind("messages")(m) and m["messages"] == [])
        assert emptied["roomId"] == room_id


async def test_bad_calls_get_errors_and_change_nothing(
    server: ServerHandle, rooms: ChatRooms
) -> None:
    async with connect(url(server)) as ws:
        client = Client(ws)
        no_room = await client.call("sendMessage", "hi", "req-x")
        assert (no_room["success"], no_room["errorType"]) == (False, "room_error")
        assert "switchRoom" in no_room["error"]
        unknown = await client.call("switchRoom", "rm_000000000000")
        assert unknown["errorType"] == "unknown_room"
        method = await client.call("dropTables")
        assert method["errorType"] == "unknown_method"
        args = await client.call("renameRoom", "only one arg")
        assert args["errorType"] == "invalid_request"
        typed = await client.call("switchRoom", 42)
        assert typed["errorType"] == "invalid_request"
        name = await client.call("createRoom", "")
        assert name["errorType"] == "invalid_room_name"
        await client.send({"type": "shout"})
        error = await client.until(kind("error"))
        assert error["error"]["type"] == "invalid_request"
        await ws.send("not json")
        error = await client.until(kind("error"))
        assert error["error"]["type"] == "malformed_json"
        room_id = (await client.call("createRoom", "Busy"))["result"]
        await client.call("sendMessage", "long", "req-b")
        busy = await client.call("clearRoom", room_id)
        assert busy["errorType"] == "room_busy"
        again = await client.call("sendMessage", "more", "req-c")
        assert again["errorType"] == "room_busy"
        await client.until(kind("stream-done"))
    assert len(rooms) == 1
    assert [m.role for m in rooms.room(room_id).message_list()] == ["user", "assistant"]


async def test_rename_and_delete_are_broadcast(server: ServerHandle, rooms: ChatRooms) -> None:
    async with connect(url(server)) as ws, connect(url(server)) as other_ws:
        client, other = Client(ws), Client(other_ws)
        room_id = (await client.call("createRoom", "Old"))["result"]
        assert (await client.call("renameRoom", room_id, "New"))["result"] is None
        await other.until(
            lambda m: (
                kind("cf_agent_state")(m) and [r["name"] for r in m["state"]["rooms"]] == ["New"]
            )
        )
        assert (await client.call("deleteRoom", room_id))["success"] is True
        await other.until(lambda m: kind("cf_agent_state")(m) and m["state"]["rooms"] == [])
        gone = await client.call("sendMessage", "hi", "req-d")
        assert gone["errorType"] == "room_error"  # the active room was deleted
    assert len(rooms) == 0


async def test_close_1000_while_following_is_an_explicit_detach(
    server: ServerHandle, rooms: ChatRooms
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http, connect(url(server)) as ws:
        client = Client(ws)
        await client.call("createRoom", "Bye")
        ref = (await client.call("sendMessage", "long", "req-e"))["result"]["streamRef"]
        await client.until(kind("stream-event"))
        await ws.close(code=1000)
        for _ in range(500):
            if rooms.runtime.info(ref).observers == 0:
                break
            await asyncio.sleep(0.01)
        status = (await http.get(f"/streams/{ref}")).json()
        assert (status["observers"], status["parked"]) == (0, 0)
        assert status["status"] == "running"  # a reply is on_detach="continue"


async def test_the_page_and_its_assets_need_no_token_but_the_socket_does(
    rooms: ChatRooms,
) -> None:
    handle = await serve_in_background(rooms.runtime, rooms=rooms, token="s3cret")
    try:
        async with httpx.AsyncClient(base_url=handle.url) as client:
            page = await client.get("/rooms/")
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "connect-src 'self'" in csp
            assert "unsafe-inline" not in csp
            html = page.text
            for needle in ['role="log"', 'for="message">Message<', ">Send<", ">Stop<", ">New<"]:
                assert needle in html
            for asset, media in [
                ("/rooms/static/rooms_page.js", "text/javascript"),
                ("/rooms/static/rooms_page.css", "text/css"),
                ("/rooms/static/markdown.bundle.js", "text/javascript"),
            ]:
                response = await client.get(asset)
                assert response.status_code == 200, asset
                assert response.headers["content-type"].startswith(media)
            script = (await client.get("/rooms/static/rooms_page.js")).text
            assert "innerHTML" not in script and "insertAdjacentHTML" not in script
            assert (await client.get("/rooms")).status_code == 401  # the API still needs it
        with pytest.raises(Exception, match="403"):
            async with connect(url(handle)):
                pass
        async with connect(url(handle) + "?token=s3cret") as ws:
            assert (await Client(ws).recv())["type"] == "cf_agent_state"
    finally:
        await handle.aclose()
