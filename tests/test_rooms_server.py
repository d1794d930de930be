"""``/rooms`` over HTTP, end to end against uvicorn on 127.0.0.1: CRUD, SSE, resume, cancel."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

import streamnb as sn
from streamnb.rooms import SETTLED_EVENT, ChatRooms, room_reply_handler
from streamnb.server import create_app, serve_in_background
from streamnb.testing import FakeTokenSource, lorem_tokens

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def rooms() -> AsyncIterator[ChatRooms]:
    source = FakeTokenSource(lorem_tokens(80), rate_tokens_per_s=200)
    runtime = sn.StreamRuntime(cancel_grace_s=0.3, force_wait_s=0.3)
    registry = ChatRooms(runtime=runtime, handler_factory=lambda k: room_reply_handler(k, source))
    try:
        yield registry
    finally:
        await registry.aclose()
        await runtime.aclose()
        runtime.ledger.close()


@pytest.fixture
async def client(rooms: ChatRooms) -> AsyncIterator[httpx.AsyncClient]:
    handle = await serve_in_background(rooms.runtime, rooms=rooms, heartbeat_s=5.0)
    try:
        async with httpx.AsyncClient(base_url=handle.url, timeout=10.0) as c:
            yield c
    finally:
        await handle.aclose()


Event = tuple[str, str, dict[str, Any]]


async def read_stream(
    client: httpx.AsyncClient,
    room_id: str,
    headers: dict[str, str] | None = None,
    *,
    stop_after_frames: int | None = None,
) -> list[Event]:
    """(id, event, data) for each SSE event, until the response ends or enough frames."""
    events: list[Event] = []
    async with aconnect_sse(
        client, "GET", f"/rooms/{room_id}/stream", headers=dict(headers or {})
    ) as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            events.append((sse.id, sse.event, json.loads(sse.data)))
            frames = sum(1 for _, kind, _ in events if kind != "reply")
            if stop_after_frames is not None and frames >= stop_after_frames:
                break
    return events


def error_type(response: httpx.Response) -> str:
    return str(response.json()["error"]["type"])


async def make_room(client: httpx.AsyncClient, name: str) -> str:
    response = await client.post("/rooms", json={"name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_rooms_crud_and_errors(client: httpx.AsyncClient, rooms: ChatRooms) -> None:
    assert (await client.get("/rooms")).json() == {"rooms": []}
    created = await client.post("/rooms", json={"name": " Lobby "})
    assert created.status_code == 201
    room = created.json()
    assert created.headers["location"] == f"/rooms/{room['id']}"
    assert (room["name"], room["message_count"], room["busy"]) == ("Lobby", 0, False)
    other = await make_room(client, "Other")
    assert [r["id"] for r in (await client.get("/rooms")).json()["rooms"]] == [other, room["id"]]

    renamed = await client.patch(f"/rooms/{room['id']}", json={"name": "Hall"})
    assert renamed.json()["name"] == "Hall" and rooms.room(room["id"]).name == "Hall"
    detail = (await client.get(f"/rooms/{room['id']}")).json()
    assert detail["messages"] == [] and detail["active_reply"] is None

    for body, status, kind in [
        ({"name": ""}, 422, "invalid_room_name"),
        ({"name": "x" * 101}, 422, "invalid_room_name"),
        ({"name": "ok", "color": "red"}, 422, "invalid_request"),
        ([1, 2], 422, "invalid_request"),
    ]:
        response = await client.post("/rooms", json=body)
        assert (response.status_code, error_type(response)) == (status, kind), body
    for method, path in [
        ("GET", "/rooms/rm_nope"),
        ("PATCH", "/rooms/rm_nope"),
        ("DELETE", "/rooms/rm_nope"),
        ("POST", "/rooms/rm_nope/messages"),
        ("GET", "/rooms/rm_nope/stream"),
        ("POST", "/rooms/rm_nope/cancel"),
    ]:
        response = await client.request(method, path, json={"text": "x", "name": "x"})
        assert (response.status_code, error_type(response)) == (404, "unknown_room"), path
    empty = await client.post(f"/rooms/{other}/messages", json={"text": "  "})
    assert (empty.status_code, error_type(empty)) == (400, "room_error")
    not_text = await client.post(f"/rooms/{other}/messages", json={"text": 3})
    assert (not_text.status_code, error_type(not_text)) == (422, "invalid_request")

    assert (await client.delete(f"/rooms/{other}")).status_code == 204
    assert [r["name"] for r in (await client.get("/rooms")).json()["rooms"]] == ["Hall"]


async def test_a_reply_streams_over_sse_and_is_stored(
    client: httpx.AsyncClient, rooms: ChatRooms
) -> None:
    room_id = await make_room(client, "Chat")
    assert (await client.get(f"/rooms/{room_id}/stream")).status_code == 204  # idle
    started = await client.post(f"/rooms/{room_id}/messages", json={"text": "hello"})
    assert started.status_code == 202
    reply = started.json()
    assert reply["stream"] == f"/rooms/{room_id}/stream"
    busy = await client.post(f"/rooms/{room_id}/messages", json={"text": "again"})
    assert (busy.status_code, error_type(busy)) == (409, "room_busy")
    clear = await client.post(f"/rooms/{room_id}/clear")
    assert (clear.status_code, error_type(clear)) == (409, "room_busy")

    events = await read_stream(client, room_id)
    assert events[0][1] == "reply"
    assert events[0][2] == {
        "room_id": room_id,
        "stream_ref": reply["stream_ref"],
        "message_id": reply["message_id"],
        "user_message_id": reply["user_message_id"],
    }
    frames = events[1:]
    assert [i for i, _, _ in frames] == [f"{reply['stream_ref']}:{n}" for n in range(len(frames))]
    assert frames[-1][1] == "completed"
    text = "".join(d["payload"] for _, kind, d in frames if kind == "output")
    await rooms.room(room_id).wait(10)
    messages = (await client.get(f"/rooms/{room_id}/messages")).json()["messages"]
    assert [(m["role"], m["status"]) for m in messages] == [
        ("user", "sent"),
        ("assistant", "completed"),
    ]
    assert messages[1]["content"] == text and text.endswith("reply to hello (turn 1)")
    assert messages[1]["id"] == reply["message_id"]
    events_json = (await client.get("/ledger/events")).json()
    assert any(e["kind"] == SETTLED_EVENT for e in events_json["events"])
    assert (await client.post(f"/rooms/{room_id}/clear")).json() == {"removed": 2}


async def test_resume_with_last_event_id_gives_every_frame_once(
    client: httpx.AsyncClient, rooms: ChatRooms
) -> None:
    room_id = await make_room(client, "Resume")
    await client.post(f"/rooms/{room_id}/messages", json={"text": "resume"})
    first = await read_stream(client, room_id, stop_after_frames=6)  # connection dropped
    last_id = first[-1][0]
    rest = await read_stream(client, room_id, headers={"Last-Event-ID": last_id})
    assert rest[0][1] == "reply"
    frames = [e for e in first + rest if e[1] != "reply"]
    seqs = [d["seq"] for _, _, d in frames]
    assert seqs == list(range(len(seqs)))  # no duplicates, no gaps
    assert frames[-1][1] == "completed"
    message = await rooms.room(room_id).wait(10)
    assert message is not None
    assert "".join(d["payload"] for _, k, d in frames if k == "output") == message.content
    # after the end there is nothing to resume
    again = await client.get(f"/rooms/{room_id}/stream", headers={"Last-Event-ID": last_id})
    assert again.status_code == 204


async def test_cancel_and_delete_stop_the_reply(
    client: httpx.AsyncClient, rooms: ChatRooms
) -> None:
    room_id = await make_room(client, "Stop")
    assert (await client.post(f"/rooms/{room_id}/cancel")).json() == {"result": None}
    await client.post(f"/rooms/{room_id}/messages", json={"text": "stop me"})
    first = await read_stream(client, room_id, stop_after_frames=4)
    cancel = await client.post(f"/rooms/{room_id}/cancel", json={"reason": "user pressed stop"})
    assert cancel.json() == {"result": "requested"}
    message = await rooms.room(room_id).wait(10)
    assert message is not None and message.status == "cancelled"
    assert first[-1][2]["payload"] in message.content

    doomed = await make_room(client, "Doomed")
    started = (await client.post(f"/rooms/{doomed}/messages", json={"text": "x"})).json()
    assert (await client.delete(f"/rooms/{doomed}")).status_code == 204
    assert rooms.ledger.stream_status(started["stream_ref"]) == "cancelled"
    assert (await client.get(f"/rooms/{doomed}")).status_code == 404


async def test_rooms_must_share_the_apps_runtime(rooms: ChatRooms) -> None:
    other = sn.StreamRuntime()
    with pytest.raises(ValueError, match=r"rooms\.runtime"):
        create_app(other, rooms=rooms)
    other.ledger.close()
