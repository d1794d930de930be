"""Lone UTF-16 surrogates in a handler's text reach every consumer mended, never as a crash.

A provider that splits an emoji's ``\\ud83d\\ude00`` escape across two chunks yields two
tokens, each half a pair. Before the fix the runtime published them as they were, and
every transport that encodes text as UTF-8 failed: SSE ended with 0 bytes (also on
resume), WebSocket, ``/chat`` and ``/api/chat`` aborted, ``GET /streams/{ref}`` gave
500, a room reply stayed ``streaming`` and was later mislabelled ``interrupted``, the
widget stopped sending text, and ``room.send`` raised a raw ``UnicodeEncodeError``.
Now the pump joins the split pair into its character and turns halves left alone
into U+FFFD, once, for everyone (``streamnb/_text.py``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

import streamnb as sn
from streamnb._text import SurrogateMender, mend
from streamnb.rooms import ChatRooms
from streamnb.server import ServerHandle, serve_in_background
from tests._server_util import eventually

pytestmark = pytest.mark.timeout(60)

EMOJI = "\U0001f600"  # 😀, "\ud83d\ude00" in UTF-16
HIGH, LOW = "\ud83d", "\ude00"
TOKENS = ["smile ", HIGH, LOW, " lone ", "\udc00", " end ", HIGH]
#: what every reader must see as the text of TOKENS
TEXT = f"smile {EMOJI} lone \ufffd end \ufffd"


def surrogate_tokens(text: str = "") -> list[str]:
    return [*TOKENS, text] if text else list(TOKENS)


async def split_emoji(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
    for token in surrogate_tokens():
        yield sn.output(token)
    yield sn.progress({"note": "half \udfff"})
    yield sn.completed({"ok": True, "last": HIGH})


async def split_emoji_chat(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
    """A bidi chatbot (the shape ``/chat`` and ``/api/chat`` drive) answering with TOKENS."""
    async for _frame in input:
        for token in surrogate_tokens():
            yield sn.output(token)
        yield sn.completed()
        return


def handlers() -> list[sn.AttachedStreamHandler]:
    return [
        sn.AttachedStreamHandler(kind="t.split", run=split_emoji, on_detach="continue"),
        sn.AttachedStreamHandler(kind="t.split_chat", mode="bidi", run=split_emoji_chat),
    ]


def text_of(frames: list[dict[str, Any]]) -> str:
    return "".join(f["payload"] for f in frames if f["kind"] == "output")


@pytest.fixture
async def served() -> AsyncIterator[tuple[sn.StreamRuntime, ServerHandle]]:
    runtime = sn.StreamRuntime(sn.Ledger(record_frames=True))
    for handler in handlers():
        runtime.register(handler)
    handle = await serve_in_background(runtime, chat_kind="t.split_chat")
    try:
        yield runtime, handle
    finally:
        await handle.aclose()
        await runtime.aclose()
        runtime.ledger.close()


# --- the boundary itself ---------------------------------------------------------------


async def test_split_surrogate_pair_across_tokens_is_joined_and_lone_halves_are_replaced() -> None:
    async with sn.StreamRuntime(sn.Ledger(record_frames=True)) as rt:
        rt.register(handlers()[0])
        session = await rt.attach("t.split")
        frames = await sn.read_until_terminal(session.output, timeout_s=10)
        ref = session.stream_ref
        assert [f.seq for f in frames] == list(range(len(frames)))
        assert sn.project_attached_stream(frames, ref).text() == TEXT
        assert frames[-1].terminal == {"ok": True, "last": "\ufffd"}
        for frame in frames:  # every frame encodes, as every transport must
            frame.to_json().encode("utf-8")
        # the ledger got the same, mended frames
        assert [f.to_dict() for f in rt.ledger.frame_log(ref)] == [f.to_dict() for f in frames]


@given(st.lists(st.text(alphabet=st.characters(codec=None), max_size=6), max_size=8))
def test_mender_output_always_encodes_and_keeps_every_valid_character(tokens: list[str]) -> None:
    mender = SurrogateMender()
    out = [mender.token("c", t) for t in tokens]
    out += [text for _, text in mender.flush()]
    joined = "".join(out)
    joined.encode("utf-8")  # never raises
    assert joined == mend("".join(tokens))  # the same as mending the whole text at once


# --- every HTTP consumer ---------------------------------------------------------------


async def test_sse_and_its_resume_do_not_abort_on_lone_surrogates(
    served: tuple[sn.StreamRuntime, ServerHandle],
) -> None:
    runtime, handle = served
    async with httpx.AsyncClient(base_url=handle.url, timeout=10) as client:
        ref = (await client.post("/streams", json={"kind": "t.split"})).json()["stream_ref"]
        await runtime.wait(ref, timeout_s=10)
        for after in (None, "2"):
            headers = {} if after is None else {"Last-Event-ID": after}
            async with aconnect_sse(
                client, "GET", f"/streams/{ref}/events", headers=headers
            ) as source:
                frames = [json.loads(e.data) async for e in source.aiter_sse()]
            assert frames and frames[-1]["kind"] == "completed"
            if after is None:
                assert text_of(frames) == TEXT
            else:
                assert frames[0]["seq"] == 3
        status = await client.get(f"/streams/{ref}")
        assert status.status_code == 200, status.text
        assert status.json()["projection"]["texts"]["assistant.delta"] == TEXT
        durable = await client.get(f"/v1/stream/streamnb/{ref}", params={"offset": "-1"})
        assert durable.status_code == 200
        assert text_of(durable.json()) == TEXT


async def test_websocket_chat_and_ai_sdk_do_not_abort_on_lone_surrogates(
    served: tuple[sn.StreamRuntime, ServerHandle],
) -> None:
    _, handle = served
    async with httpx.AsyncClient(base_url=handle.url, timeout=10) as client:
        ref = (await client.post("/streams", json={"kind": "t.split"})).json()["stream_ref"]
        frames = []
        async with connect(f"ws://{handle.host}:{handle.port}/streams/{ref}/ws") as ws:
            try:
                while True:
                    frames.append(json.loads(await ws.recv()))
            except ConnectionClosed:
                pass
            assert ws.close_code == 1000
        assert text_of(frames) == TEXT

        chat = await client.post("/chat", json={"message": "hi"})
        assert chat.status_code == 200
        lines = [ln[len("data: ") :] for ln in chat.text.splitlines() if ln.startswith("data: ")]
        assert lines[-1] == "[DONE]"
        assert "".join(json.loads(ln)["content"] for ln in lines[:-1]) == TEXT

        message = {"role": "user", "parts": [{"type": "text", "text": "x"}]}
        body = {"id": "c1", "messages": [message]}
        ai = await client.post("/api/chat", json=body)
        assert ai.status_code == 200
        chunks = [
            json.loads(ln[len("data: ") :])
            for ln in ai.text.splitlines()
            if ln.startswith("data: {")
        ]
        assert "".join(c["delta"] for c in chunks if c["type"] == "text-delta") == TEXT
        assert chunks[-1]["type"] == "finish"


async def test_durable_json_append_with_lone_surrogate_is_mended_not_500(
    served: tuple[sn.StreamRuntime, ServerHandle],
) -> None:
    _, handle = served
    json_type = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=handle.url, timeout=10) as client:
        assert (await client.put("/v1/stream/notes", headers=json_type)).status_code == 201
        body = b'["\\ud83d\\ude00", "\\ud800 alone", {"k\\udfff": 1}]'
        append = await client.post("/v1/stream/notes", content=body, headers=json_type)
        assert append.status_code == 204, append.text
        read = await client.get("/v1/stream/notes", params={"offset": "-1"})
        assert read.status_code == 200
        assert read.json() == [EMOJI, "\ufffd alone", {"k\ufffd": 1}]


# --- rooms and the widget --------------------------------------------------------------


async def test_room_reply_with_lone_surrogates_settles_completed_not_interrupted() -> None:
    def factory(kind: str) -> sn.AttachedStreamHandler:
        async def run(start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
            async for _ in input:
                for token in surrogate_tokens():
                    yield sn.output(token)
                yield sn.completed()
                return

        return sn.AttachedStreamHandler(kind=kind, mode="bidi", run=run)

    rooms = ChatRooms(handler_factory=factory)
    try:
        room = rooms.room(rooms.create_room("Emoji"))
        await room.send("hi")
        reply = await room.wait(timeout_s=10)
        assert reply is not None
        assert (reply.status, reply.content) == ("completed", TEXT)
    finally:
        await rooms.aclose()


async def test_room_send_with_lone_surrogate_is_mended_not_unicode_error() -> None:
    rooms = ChatRooms()
    try:
        room = rooms.room(rooms.create_room("Half"))
        await room.send(f"half {HIGH} and pair {HIGH}{LOW}")
        await room.wait(timeout_s=10)
        user = room.message_list()[0]
        assert user.content == f"half \ufffd and pair {EMOJI}"
        handle = await serve_in_background(rooms.runtime, rooms=rooms)
        try:
            async with httpx.AsyncClient(base_url=handle.url, timeout=10) as client:
                body = b'{"text": "over http \\udc00"}'
                response = await client.post(
                    f"/rooms/{room.id}/messages",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                assert response.status_code == 202, response.text
                await room.wait(timeout_s=10)
                listed = (await client.get(f"/rooms/{room.id}/messages")).json()["messages"]
                assert listed[2]["content"] == "over http \ufffd"
        finally:
            await handle.aclose()
    finally:
        await rooms.aclose()


async def test_widget_keeps_sending_text_after_lone_surrogates() -> None:
    from streamnb.widget import StreamWidget

    sent: list[Any] = []
    async with sn.StreamRuntime() as rt:
        rt.register(handlers()[0])
        session = await rt.attach("t.split")
        widget = StreamWidget(session, flush_interval_s=0.01)

        def send(content: Any, buffers: Any = None) -> None:
            # what the kernel's session does with a comm message: JSON, then UTF-8
            json.dumps(content, ensure_ascii=False).encode("utf-8")
            sent.append(content)

        widget.send = send  # type: ignore[method-assign]
        await widget.wait(10)
        await eventually(lambda: widget.status == "completed")
        assert widget.error == ""
        assert widget.text() == TEXT
        deltas = [m for m in sent if m.get("type") == "delta"]
        assert "".join(d["chunks"].get("assistant.delta", "") for d in deltas) == TEXT
        widget.close()


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["\ud800", "a\udfff", "\ud83d\ude00", "é"]),  # lone halves, a pair
    st.text(max_size=3),
)
_keys = st.one_of(st.text(max_size=3), st.sampled_from(["\udc00", "k\ud800"]))


@settings(max_examples=300, deadline=None)
@given(value=st.dictionaries(_keys, _scalars, max_size=10))
def test_small_flat_terminals_skip_encoding_with_the_same_answer(value) -> None:
    # outbound_json skips encoding a small dict of scalars; it must answer exactly what
    # encoding it would have: refuse NaN/infinity, mend lone surrogates, else keep it
    from streamnb._frames import outbound_json
    from streamnb._text import has_surrogates, mend_json

    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except ValueError:
        with pytest.raises(sn.InvalidFrameError):
            outbound_json(value, "'terminal'")
        return
    expected = mend_json(value) if has_surrogates(text) else value
    assert outbound_json(value, "'terminal'") == expected
