"""A dropped connection is not a detach: parking, reconnection, the grace, explicit detach.

Real drops against uvicorn on 127.0.0.1: an httpx (httpx-sse) client closes its
connection mid-stream, a WebSocket client aborts its TCP connection without a
close frame. Waits are on events (the stream's settlement, a status condition);
no timing is asserted. Each transport's drop-and-resume is written once, as a reader
(:class:`SseReader`, :class:`WsReader`, :class:`ChatReader`) that the tests drive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import streamnb as sn
from streamnb.server import ServerHandle
from tests._proxy import DropProxy
from tests._server_util import cancel_reason, eventually, open_stream

if TYPE_CHECKING:
    from tests._server import StartServer  # (pytest_plugins loads it as a plugin)

pytest_plugins = ["tests._server"]

pytestmark = pytest.mark.timeout(60)

#: long enough that nothing in a test expires by itself
LONG_GRACE_S = 120.0
#: short enough that a test can wait for it to run out
SHORT_GRACE_S = 0.3
CLIENT_TIMEOUT_S = 10.0
SETTLE_TIMEOUT_S = 20.0
PARKED_TIMEOUT_S = 10.0
#: connections a reader with random drops may open: far more than a reply has frames
MAX_CONNECTIONS = 200

Event = tuple[int, str, dict[str, Any]]


@contextlib.asynccontextmanager
async def served(
    start_server: StartServer, **options: Any
) -> AsyncIterator[tuple[ServerHandle, httpx.AsyncClient]]:
    """A server (``create_app`` ``options``; a long grace unless given) and an httpx client."""
    options.setdefault("reconnect_grace_s", LONG_GRACE_S)
    handle: ServerHandle = await start_server(**options)
    async with httpx.AsyncClient(base_url=handle.url, timeout=CLIENT_TIMEOUT_S) as client:
        yield handle, client


async def read_events(
    client: httpx.AsyncClient,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    params: dict[str, str] | None = None,
    stop_after: int | None = None,
) -> list[Event]:
    """(seq, event, data) of each SSE event; the connection is dropped after ``stop_after``
    (0: as soon as one arrived, keeping none)."""
    events: list[Event] = []
    async with aconnect_sse(
        client, "GET", path, headers=dict(headers or {}), params=params
    ) as source:
        assert source.response.status_code == 200, source.response.status_code
        async for sse in source.aiter_sse():
            if stop_after == 0:
                break
            events.append((int(sse.id), sse.event, json.loads(sse.data)))
            if stop_after is not None and len(events) >= stop_after:
                break  # leaving the context closes the connection mid-stream
    return events


async def status(client: httpx.AsyncClient, ref: str) -> dict[str, Any]:
    response = await client.get(f"/streams/{ref}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def parked_count(client: httpx.AsyncClient, ref: str, n: int) -> None:
    """Wait until the server says ``n`` observers of ``ref`` are parked."""
    deadline = time.monotonic() + PARKED_TIMEOUT_S
    while (await status(client, ref))["parked"] != n:
        assert time.monotonic() < deadline, f"never {n} parked observers"
        await asyncio.sleep(0.02)


def ledger_reason(runtime: sn.StreamRuntime, ref: str) -> tuple[str, str | None]:
    df = runtime.ledger.streams()
    row = df[df.stream_ref == ref].iloc[0]
    return row["status"], (None if pd.isna(row["reason"]) else row["reason"])


async def assert_detached(runtime: sn.StreamRuntime, client: httpx.AsyncClient, ref: str) -> None:
    """``ref`` settles cancelled because its observer was detached; nothing stays parked."""
    terminal = await runtime.wait(ref, timeout_s=SETTLE_TIMEOUT_S)
    assert (await status(client, ref))["parked"] == 0
    assert (terminal.kind, cancel_reason(runtime, ref)) == ("cancelled", "detached")


# --- one reader per transport: each read is one connection, resumed after what was kept ---


class SseReader:
    """``GET /streams/{ref}/events``, resumed with ``Last-Event-ID`` (the last seq kept)."""

    def __init__(self, client: httpx.AsyncClient, ref: str) -> None:
        self.client, self.ref = client, ref
        self.events: list[Event] = []

    async def read(self, stop_after: int | None = None) -> None:
        """One connection; dropped after ``stop_after`` events (0: once one arrived,
        keeping none), else read until the server ends the response."""
        header = {"Last-Event-ID": str(self.events[-1][0])} if self.events else {}
        path = f"/streams/{self.ref}/events"
        self.events += await read_events(self.client, path, header, stop_after=stop_after)

    @property
    def done(self) -> bool:
        return bool(self.events) and self.events[-1][1] == "completed"

    def assert_every_frame_once(self, runtime: sn.StreamRuntime) -> None:
        assert [s for s, _, _ in self.events] == [f.seq for f in runtime.frame_log(self.ref)]
        assert self.events[-1][1] == "completed"


async def recv(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await ws.recv())
    return message


def ws_url(handle: ServerHandle, ref: str, query: str = "") -> str:
    return f"ws://{handle.host}:{handle.port}/streams/{ref}/ws{query}"


class WsReader:
    """``/streams/{ref}/ws``, resumed with ``?after_seq=`` (the last seq kept); a drop is an
    aborted TCP connection (no close frame)."""

    def __init__(self, handle: ServerHandle, ref: str, first_input: str | None = None) -> None:
        self.handle, self.ref = handle, ref
        #: sent as an input message on the first connection
        self.first_input = first_input
        self.frames: list[dict[str, Any]] = []

    async def read(self, stop_after: int | None = None) -> None:
        """One connection; dropped after ``stop_after`` frames (0: once one arrived, keeping
        none) or after the terminal frame, else read until the server closes it (1000)."""
        query = f"?after_seq={self.frames[-1]['seq']}" if self.frames else ""
        ws = await connect(ws_url(self.handle, self.ref, query))
        try:
            if self.first_input is not None:
                await ws.send(json.dumps({"type": "input", "payload": self.first_input}))
                self.first_input = None
            kept = 0
            while True:
                try:
                    message = await recv(ws)
                except ConnectionClosed:
                    assert stop_after is None, "closed by the server before the drop"
                    assert ws.close_code == 1000
                    return
                if "kind" not in message:
                    continue
                if stop_after == 0:
                    return
                self.frames.append(message)
                kept += 1
                if stop_after is not None and (kept == stop_after or self.done):
                    return
        finally:
            ws.transport.abort()  # a real drop: TCP reset, no close frame (a no-op once closed)

    @property
    def done(self) -> bool:
        return bool(self.frames) and self.frames[-1]["kind"] == "completed"

    def assert_every_frame_once(self, runtime: sn.StreamRuntime) -> None:
        assert [f["seq"] for f in self.frames] == [f.seq for f in runtime.frame_log(self.ref)]
        assert self.frames[-1]["kind"] == "completed"


class ChatReader:
    """``POST /chat`` (the seed chat server's reply), resumed with ``GET /chat/{ref}/stream``
    and ``Last-Event-ID`` (the last event's id)."""

    def __init__(self, client: httpx.AsyncClient, message: str) -> None:
        self.client, self.message = client, message
        self.ref = ""
        self.contents: list[str] = []
        self.last_id: str | None = None
        self.done = False

    async def read(self, stop_after: int | None = None) -> None:
        """The POST, then one resume per call; dropped after ``stop_after`` contents (0: once
        an event arrived, keeping none), else read to ``[DONE]``. A 204 resume: nothing more."""
        if not self.ref:
            request = aconnect_sse(self.client, "POST", "/chat", json={"message": self.message})
        else:
            headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
            path = f"/chat/{self.ref}/stream"
            request = aconnect_sse(self.client, "GET", path, headers=headers)
        async with request as source:
            self.ref = source.response.headers.get("x-stream-ref", self.ref)
            if source.response.status_code == 204:
                self.done = True
                return
            kept = 0
            async for sse in source.aiter_sse():
                if stop_after == 0:
                    break
                self.last_id = sse.id
                if sse.data == "[DONE]":
                    self.done = True
                    break
                self.contents.append(json.loads(sse.data)["content"])
                kept += 1
                if kept == stop_after:
                    break  # dropped mid-reply

    def assert_every_frame_once(self, runtime: sn.StreamRuntime) -> None:
        projection = sn.project_attached_stream(runtime.frame_log(self.ref), self.ref)
        assert projection.status == "completed"
        assert "".join(self.contents) == projection.text()  # every token once


Reader = SseReader | WsReader | ChatReader


async def start_reply(
    transport: str, handle: ServerHandle, client: httpx.AsyncClient, kind: str
) -> Reader:
    """A reply of ``kind`` to read over ``transport``: ``sse`` or ``ws`` (a chatbot's input
    goes over the WebSocket, or by POST for SSE), or ``chat`` (the server's chat kind)."""
    if transport == "chat":
        return ChatReader(client, "long")
    chatbot = "chat" in kind
    ref = await open_stream(client, kind, None if chatbot else {"message": "resume"})
    if transport == "ws":
        return WsReader(handle, ref, first_input="go" if chatbot else None)
    if chatbot:
        await client.post(f"/streams/{ref}/input", json={"payload": "go", "seq": 0})
    return SseReader(client, ref)


# --- the tests ----------------------------------------------------------------------------


async def test_dropped_sse_connection_of_an_abort_stream_is_not_a_detach(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    """The issue's scenario: a chatbot (on_detach="abort"), a drop after two events,
    input sent, a reconnection with Last-Event-ID: 1 gets the reply, each frame once."""
    async with served(start_server) as (_, client):
        reader = SseReader(client, await open_stream(client, "tutorial.streaming_chatbot"))
        ref = reader.ref
        await reader.read(stop_after=2)
        first = list(reader.events)
        assert [e for _, e, _ in first] == ["opened", "progress"]
        await parked_count(client, ref, 1)
        sent = await client.post(f"/streams/{ref}/input", json={"payload": "hello", "seq": 0})
        assert sent.json() == {"result": "accepted"}
        await reader.read()  # resumes with Last-Event-ID: 1
        rest = reader.events[len(first) :]
        assert (await status(client, ref))["parked"] == 0  # taken over
    seqs = [s for s, _, _ in first + rest]
    assert seqs == list(range(len(seqs)))
    assert rest[-1][1] == "completed"
    text = "".join(d["payload"] for _, e, d in rest if e == "output")
    assert text == sn.project_attached_stream(server_runtime.frame_log(ref), ref).text()
    assert ledger_reason(server_runtime, ref) == ("completed", None)
    assert not server_runtime.info(ref).cancel_requested


@pytest.mark.parametrize(
    ("transport", "kind"),
    [
        pytest.param("sse", "test.slow_output_abort", id="sse-abort"),
        pytest.param("sse", "test.slow_output", id="sse-continue"),
        # a chatbot (on_detach="abort") whose input went over the socket
        pytest.param("ws", "test.slow_chat", id="ws"),
        # POST /chat of the chatbot, resumed with GET /chat/{ref}/stream
        pytest.param("chat", "test.slow_chat", id="chat"),
    ],
)
async def test_reconnect_within_the_grace_gives_every_frame_once(
    start_server: StartServer, server_runtime: sn.StreamRuntime, transport: str, kind: str
) -> None:
    """Three drops mid-reply (an SSE response closed by the client, a WebSocket's TCP
    connection aborted without a close frame): each parks the observer, the stream is not
    cancelled, and each reconnection resumes after the last frame kept (Last-Event-ID,
    ?after_seq=): the client gets every frame once and the reply completes."""
    async with served(start_server, chat_kind="test.slow_chat") as (handle, client):
        reader = await start_reply(transport, handle, client, kind)
        for stop_after in (4, 3, 5):  # three drops at different points
            await reader.read(stop_after)
            await parked_count(client, reader.ref, 1)
            assert not server_runtime.info(reader.ref).cancel_requested
        await reader.read()  # to the end (a WebSocket: closed by the server with 1000)
        if isinstance(reader, ChatReader):
            assert reader.done
            after_end = await client.get(
                f"/chat/{reader.ref}/stream", headers={"Last-Event-ID": str(reader.last_id)}
            )
            assert after_end.status_code == 204
            unknown = await client.get("/chat/st_nope/stream")
            assert unknown.status_code == 404
    reader.assert_every_frame_once(server_runtime)
    assert ledger_reason(server_runtime, reader.ref) == ("completed", None)


async def test_status_says_an_observer_is_parked_and_until_when(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    async with served(start_server) as (_, client):
        ref = await open_stream(client, "test.slow_chat")
        live = await status(client, ref)
        assert (live["parked"], live["parked_until"]) == (0, None)
        before = time.time()
        await read_events(client, f"/streams/{ref}/events", stop_after=2)
        await parked_count(client, ref, 1)
        after = time.time()
        parked = await status(client, ref)
        assert before + LONG_GRACE_S <= parked["parked_until"] <= after + LONG_GRACE_S
        assert parked["observers"] == 1  # the parked session is still attached
        assert parked["status"] == "running"
        async with aconnect_sse(
            client, "GET", f"/streams/{ref}/events", headers={"Last-Event-ID": "1"}
        ):
            taken = await status(client, ref)
            assert (taken["parked"], taken["parked_until"], taken["observers"]) == (0, None, 1)


async def test_no_reconnection_detaches_when_the_grace_runs_out(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    async with served(start_server, reconnect_grace_s=SHORT_GRACE_S) as (_, client):
        abort = await open_stream(client, "test.slow_chat")
        keep = await open_stream(client, "test.slow_chat_continue")
        for ref in (abort, keep):
            await read_events(client, f"/streams/{ref}/events", stop_after=2)
            await client.post(f"/streams/{ref}/input", json={"payload": "go"})
    aborted = await server_runtime.wait(abort, timeout_s=SETTLE_TIMEOUT_S)
    assert (aborted.kind, cancel_reason(server_runtime, abort)) == ("cancelled", "detached")
    assert ledger_reason(server_runtime, abort) == ("cancelled", "detached")
    assert (await server_runtime.wait(keep, timeout_s=SETTLE_TIMEOUT_S)).kind == "completed"
    assert ledger_reason(server_runtime, keep) == ("completed", None)
    await eventually(lambda: server_runtime.info(keep).observers == 0)


async def test_a_zero_grace_detaches_at_disconnect(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    async with served(start_server, reconnect_grace_s=0) as (_, client):
        ref = await open_stream(client, "test.slow_output_abort", {"message": "x"})
        await read_events(client, f"/streams/{ref}/events", stop_after=3)
        await assert_detached(server_runtime, client, ref)


async def test_explicit_detach_of_a_dropped_observer_is_immediate(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    async with served(start_server) as (_, client):
        ref = await open_stream(client, "test.slow_output_abort", {"message": "x"})
        await read_events(client, f"/streams/{ref}/events", stop_after=3)
        detached = await client.post(f"/streams/{ref}/detach")
        assert detached.status_code == 200
        assert detached.json()["detached"] >= 1
        # well before the grace (120 s): the detach applied at once
        await assert_detached(server_runtime, client, ref)


async def test_explicit_detach_ends_a_live_connection_and_applies_on_detach(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    async with served(start_server) as (_, client):
        ref = await open_stream(client, "test.slow_chat")
        kinds = []
        async with aconnect_sse(client, "GET", f"/streams/{ref}/events") as source:
            async for sse in source.aiter_sse():
                kinds.append(sse.event)
                if sse.event == "progress":
                    response = await client.post(f"/streams/{ref}/detach", json={})
                    assert response.json() == {"detached": 1}
        # the response ended by itself: no terminal frame for a detached observer
        assert kinds == ["opened", "progress"]
        await assert_detached(server_runtime, client, ref)


async def test_detach_with_an_observer_id_detaches_only_that_observer(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    async with served(start_server) as (_, client):
        ref = await open_stream(client, "test.slow_chat")
        path = f"/streams/{ref}/events"
        await read_events(client, path, params={"observer": "tab-a"}, stop_after=2)
        await parked_count(client, ref, 1)
        async with aconnect_sse(client, "GET", path, params={"observer": "tab-b"}) as source:
            events = source.aiter_sse()
            assert (await anext(events)).event == "opened"
            # tab-b's connection took tab-a's parked observer over
            assert (await status(client, ref))["parked"] == 0
            unknown = await client.post(f"/streams/{ref}/detach", json={"observer": "tab-c"})
            assert unknown.json() == {"detached": 0}
            assert server_runtime.info(ref).observers == 1
            assert (await anext(events)).event == "progress"
            mine = await client.post(f"/streams/{ref}/detach", json={"observer": "tab-b"})
            assert mine.json() == {"detached": 1}
            assert [sse.event async for sse in events] == []
        bad = await client.post(f"/streams/{ref}/detach", json={"observer": 7})
        assert (bad.status_code, bad.json()["error"]["type"]) == (422, "invalid_request")
        missing = await client.post("/streams/st_nope/detach")
        assert (missing.status_code, missing.json()["error"]["type"]) == (404, "unknown_stream")
    terminal = await server_runtime.wait(ref, timeout_s=SETTLE_TIMEOUT_S)
    assert (terminal.kind, cancel_reason(server_runtime, ref)) == ("cancelled", "detached")


async def test_reconnecting_observer_id_is_not_parked_twice(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    """A client back with the same id before its old connection was seen dropping:
    the old connection detaches instead of parking, nothing lingers."""
    async with served(start_server) as (handle, client):
        state = handle.app.state.streamnb
        ref = await open_stream(client, "test.slow_chat")
        path = f"/streams/{ref}/events"
        async with aconnect_sse(client, "GET", path, params={"observer": "me"}) as old:
            old_events = old.aiter_sse()
            assert (await anext(old_events)).event == "opened"
            async with aconnect_sse(client, "GET", path, params={"observer": "me"}) as new:
                new_events = new.aiter_sse()
                assert (await anext(new_events)).event == "opened"
                await old.response.aclose()  # the old connection drops now
                await eventually(lambda: server_runtime.info(ref).observers == 1)
                assert len(state.parking) == 0
                assert not server_runtime.info(ref).cancel_requested
                assert (await anext(new_events)).event == "progress"  # still live


async def test_settled_stream_stays_resumable_while_its_observer_is_parked(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    async with served(start_server) as (_, client):
        ref = await open_stream(client, "test.slow_output_abort", {"message": "end"})
        reader = SseReader(client, ref)
        await reader.read(stop_after=3)
        terminal = await server_runtime.wait(ref, timeout_s=SETTLE_TIMEOUT_S)
        assert terminal.kind == "completed"  # the abort stream ran to its end while parked
        assert (await status(client, ref))["parked"] == 1
        await reader.read()  # resumes with Last-Event-ID: the third event's seq
    assert [s for s, _, _ in reader.events] == [f.seq for f in server_runtime.frame_log(ref)]


async def test_ws_close_codes_other_than_1000_are_drops(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    async with served(start_server) as (handle, client):
        going_away = await open_stream(client, "test.slow_chat")
        normal = await open_stream(client, "test.slow_chat")
        for ref, code in ((going_away, 1001), (normal, 1000)):
            ws = await connect(ws_url(handle, ref))
            assert (await recv(ws))["kind"] == "opened"
            await ws.close(code=code)
        await parked_count(client, going_away, 1)  # 1001 (a page reloading): parked
        assert not server_runtime.info(going_away).cancel_requested
        # 1000: the client detached explicitly, at once
        await assert_detached(server_runtime, client, normal)


async def test_server_shutdown_detaches_parked_observers(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    async with served(start_server) as (handle, client):
        ref = await open_stream(client, "test.slow_chat")
        await read_events(client, f"/streams/{ref}/events", stop_after=2)
        await parked_count(client, ref, 1)
    await handle.aclose()
    terminal = await server_runtime.wait(ref, timeout_s=SETTLE_TIMEOUT_S)
    assert (terminal.kind, cancel_reason(server_runtime, ref)) == ("cancelled", "detached")


async def ai_events(
    response: httpx.Response, stop_after_deltas: int | None = None
) -> list[tuple[int, dict[str, Any] | str]]:
    """(id, chunk) of an AI SDK UI message stream (``[DONE]`` as a string); the connection
    is dropped once ``stop_after_deltas`` text deltas were read."""
    out: list[tuple[int, dict[str, Any] | str]] = []
    block_id = -1
    deltas = 0
    async for line in response.aiter_lines():
        if line.startswith("id: "):
            block_id = int(line[4:])
        elif line.startswith("data: "):
            data = line[6:]
            chunk = data if data == "[DONE]" else json.loads(data)
            out.append((block_id, chunk))
            if isinstance(chunk, dict) and chunk["type"] == "text-delta":
                deltas += 1
                if deltas == stop_after_deltas:
                    break  # dropped mid-reply
    return out


def ui_text(chunks: list[dict[str, Any] | str]) -> str:
    return "".join(c["delta"] for c in chunks if isinstance(c, dict) and c["type"] == "text-delta")


async def ai_chat_dropped_after(
    client: httpx.AsyncClient, chat_id: str, deltas: int
) -> tuple[str, list[tuple[int, Any]]]:
    """POST /api/chat for ``chat_id``; drop the connection after ``deltas`` text deltas.

    Returns the stream ref and the (id, chunk) pairs read before the drop.
    """
    body = {
        "id": chat_id,
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "go"}]}],
    }
    async with client.stream("POST", "/api/chat", json=body) as response:
        return response.headers["x-stream-ref"], await ai_events(response, deltas)


async def test_ai_chat_resume_after_a_drop_replays_then_follows(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    async with served(start_server, chat_kind="test.slow_chat") as (_, client):
        ref, first = await ai_chat_dropped_after(client, "chat-drop", 3)
        await parked_count(client, ref, 1)
        assert not server_runtime.info(ref).cancel_requested  # an abort chatbot survived
        async with client.stream("GET", "/api/chat/chat-drop/stream") as response:
            assert response.status_code == 200
            replay = await ai_events(response)
        chunks = [c for _, c in replay]
        assert isinstance(chunks[0], dict) and chunks[0]["type"] == "start"  # from the start
        assert chunks[-2] == {"type": "finish"} and chunks[-1] == "[DONE]"
        projection = sn.project_attached_stream(server_runtime.frame_log(ref), ref)
        assert ui_text(chunks) == projection.text()
        before_drop = ui_text([c for _, c in first])
        assert projection.text().startswith(before_drop)
        # over, nothing parked any more: 204, the client has it all
        assert (await client.get("/api/chat/chat-drop/stream")).status_code == 204


async def test_ai_chat_resume_from_last_event_id_sends_only_what_follows(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    async with served(start_server, chat_kind="test.slow_chat") as (_, client):
        ref, seen = await ai_chat_dropped_after(client, "chat-after", 3)
        last = seen[-1][0]
        async with client.stream(
            "GET", "/api/chat/chat-after/stream", headers={"Last-Event-ID": str(last)}
        ) as response:
            rest = await ai_events(response)
    assert all(i > last for i, _ in rest)
    chunks = [c for _, c in seen + rest]
    assert [c["type"] for c in chunks if isinstance(c, dict)].count("start") == 1
    assert [c["type"] for c in chunks if isinstance(c, dict)].count("text-start") == 1
    projection = sn.project_attached_stream(server_runtime.frame_log(ref), ref)
    assert ui_text(chunks) == projection.text()


# --- the real `ai` npm client resuming /api/chat after a drop ---------------------------


async def run_resume_chat(js: Path, api: str, chat_id: str, text: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        "node",
        str(js / "resume_chat.mjs"),
        api,
        chat_id,
        text,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 45)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def texts_of(message: dict[str, Any]) -> list[str]:
    return [p["text"] for p in message["parts"] if p["type"] == "text"]


@pytest.mark.browser
async def test_ai_package_resumes_a_reply_cut_off_by_a_dropped_connection(
    start_server, server_runtime: sn.StreamRuntime, ai_package: Path
) -> None:
    handle: ServerHandle = await start_server(
        chat_kind="test.slow_chat", reconnect_grace_s=LONG_GRACE_S
    )
    async with DropProxy(handle.host, handle.port) as proxy:
        # the network drops once three text deltas reached the client
        proxy.cut_when(lambda seen: seen.count(b'"text-delta"') >= 3)
        result = await run_resume_chat(ai_package, f"{proxy.url}/api/chat", "chat-net", "go")
        assert proxy.cuts >= 1
    (ref,) = server_runtime.ledger.streams()["stream_ref"]
    projection = sn.project_attached_stream(server_runtime.frame_log(ref), ref)
    assert projection.status == "completed"
    assert ledger_reason(server_runtime, ref) == ("completed", None)  # never detached
    user, partial = result["partial"]
    assert (user["role"], partial["role"]) == ("user", "assistant")
    cut_text = "".join(texts_of(partial))
    assert cut_text and projection.text().startswith(cut_text) and cut_text != projection.text()
    assert result["sendError"] is not None  # the drop reached the client as an error
    user_again, reply = result["final"]
    assert user_again["id"] == user["id"]
    assert reply["id"] == partial["id"] == f"msg_{ref}"  # the same message, replaced
    assert texts_of(reply) == [projection.text()]  # the whole reply, each token once
    assert result["status"] == "ready"
    assert result["errors"] == [result["sendError"]]


async def test_ai_chat_resume_replays_a_reply_whose_end_was_missed(
    start_server: StartServer, server_runtime: sn.StreamRuntime
) -> None:
    async with served(start_server, chat_kind="test.slow_chat") as (_, client):
        ref, _ = await ai_chat_dropped_after(client, "chat-missed", 1)
        assert (await server_runtime.wait(ref, timeout_s=SETTLE_TIMEOUT_S)).kind == "completed"
        async with client.stream("GET", "/api/chat/chat-missed/stream") as response:
            assert response.status_code == 200  # over, but its dropped observer is parked
            replay = [c for _, c in await ai_events(response)]
        assert replay[-2:] == [{"type": "finish"}, "[DONE]"]
        projection = sn.project_attached_stream(server_runtime.frame_log(ref), ref)
        assert ui_text(replay) == projection.text()
        assert (await client.get("/api/chat/chat-missed/stream")).status_code == 204


@pytest.mark.parametrize("seed", range(6))
async def test_random_drops_on_every_transport_give_every_frame_once(
    start_server: StartServer, server_runtime: sn.StreamRuntime, seed: int
) -> None:
    """Drops after a random number of events (0 included), several per stream, on SSE,
    WebSocket and /chat; what the client kept equals the frame log and the ledger."""
    rng = random.Random(seed)
    async with served(start_server) as (handle, client):
        transport = rng.choice(["sse", "ws", "chat"])
        if transport == "chat":
            reader: Reader = ChatReader(client, "go")
            # the POST may be dropped before its first content; a resume keeps at least one
            budgets = [[0, 1, 3, 7]] + [[1, 3, 7, 10_000]] * (MAX_CONNECTIONS - 1)
        else:
            ref = await open_stream(client, "test.slow_chat")
            await client.post(f"/streams/{ref}/input", json={"payload": "go", "seq": 0})
            reader = SseReader(client, ref) if transport == "sse" else WsReader(handle, ref)
            budgets = [[0, 1, 2, 5, 9, 10_000]] * MAX_CONNECTIONS
        for choices in budgets:
            await reader.read(rng.choice(choices))
            if reader.done:
                break
        else:
            raise AssertionError("the stream never completed")
    reader.assert_every_frame_once(server_runtime)
    assert server_runtime.frame_log(reader.ref)[-1].kind == "completed"
    assert ledger_reason(server_runtime, reader.ref) == ("completed", None)


def test_the_grace_is_a_server_option_in_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    from streamnb.cli import build_parser
    from streamnb.server import create_app

    parser = build_parser()
    assert parser.parse_args(["serve"]).reconnect_grace_s == 30.0
    assert parser.parse_args(["serve", "--reconnect-grace-s", "0"]).reconnect_grace_s == 0.0
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--reconnect-grace-s", "-1"])
    assert "a duration in seconds, >= 0" in capsys.readouterr().err
    runtime = sn.StreamRuntime()
    try:
        with pytest.raises(ValueError, match="reconnect_grace_s"):
            create_app(runtime, reconnect_grace_s=-0.5)
        app = create_app(runtime, reconnect_grace_s=2.5)
        assert app.state.streamnb.parking.grace_s == 2.5
    finally:
        runtime.close()
