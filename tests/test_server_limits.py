"""Nothing opened over HTTP stays open for ever or piles up: idle limit, stream cap, internal kinds.

Before: ``POST /streams`` on a bidi ``on_detach="continue"`` kind that nobody fed stayed
open for ever (2,000 posts: 2,000 ``running`` rows, RSS +23 MB), any number of them;
with ``--rooms`` the rooms' internal reply kind was reachable the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

import streamnb as sn
from streamnb.cli import build_parser
from streamnb.demo import chatbot_handler
from streamnb.rooms import ChatRooms
from streamnb.server import serve_in_background
from streamnb.testing import FakeTokenSource, lorem_tokens

pytestmark = pytest.mark.timeout(60)

CONTINUE = "test.chat_continue"


@pytest.fixture
async def runtime() -> AsyncIterator[sn.StreamRuntime]:
    rt = sn.StreamRuntime(cancel_grace_s=0.3, force_wait_s=0.3, idle_timeout_s=0.3)
    source = FakeTokenSource(lorem_tokens(5))
    rt.register(chatbot_handler(kind=CONTINUE, source=source, on_detach="continue"))
    rt.register(chatbot_handler(source=source))
    try:
        yield rt
    finally:
        await rt.aclose()
        rt.ledger.close()


async def test_unfed_bidi_streams_over_http_settle_idle_instead_of_staying_open(
    runtime: sn.StreamRuntime,
) -> None:
    handle = await serve_in_background(runtime, claim_timeout_s=0.2)
    try:
        async with httpx.AsyncClient(base_url=handle.url, timeout=10) as client:
            refs = []
            for _ in range(20):
                created = await client.post("/streams", json={"kind": CONTINUE})
                assert created.status_code == 201
                refs.append(created.json()["stream_ref"])
            # a fed one is not idle: it completes
            fed = (await client.post("/streams", json={"kind": CONTINUE})).json()["stream_ref"]
            assert (await client.post(f"/streams/{fed}/input", json={"payload": "hi"})).is_success
        for ref in refs:
            terminal = await runtime.wait(ref, timeout_s=10)
            assert (terminal.kind, terminal.reason) == ("cancelled", "idle")
        assert (await runtime.wait(fed, timeout_s=10)).kind == "completed"
        statuses = runtime.ledger.streams().status.tolist()
        assert statuses == ["cancelled"] * 20 + ["completed"]
        assert runtime.active_refs() == []
    finally:
        await handle.aclose()


async def test_open_stream_cap_answers_429_with_a_json_error_and_opens_nothing(
    runtime: sn.StreamRuntime,
) -> None:
    handle = await serve_in_background(runtime, max_open_streams=3)
    try:
        async with httpx.AsyncClient(base_url=handle.url, timeout=10) as client:
            refs = [
                (await client.post("/streams", json={"kind": CONTINUE})).json()["stream_ref"]
                for _ in range(3)
            ]
            for path, body in [
                ("/streams", {"kind": CONTINUE}),
                ("/chat", {"message": "hi"}),
                (
                    "/api/chat",
                    {"id": "c", "messages": [{"role": "user", "content": "hi"}]},
                ),
            ]:
                refused = await client.post(path, json=body)
                assert refused.status_code == 429, refused.text
                assert refused.json()["error"]["type"] == "too_many_streams"
                assert refused.headers["retry-after"] == "1"
            assert len(runtime.ledger.streams()) == 3  # nothing was opened
            await client.post(f"/streams/{refs[0]}/cancel", json={"reason": "make room"})
            await runtime.wait(refs[0], timeout_s=10)
            again = await client.post("/streams", json={"kind": CONTINUE})
            assert again.status_code == 201  # a settled stream frees its place
    finally:
        await handle.aclose()


async def test_rooms_reply_kind_is_refused_by_the_generic_endpoints(
    runtime: sn.StreamRuntime,
) -> None:
    rooms = ChatRooms(runtime=runtime)
    handle = await serve_in_background(runtime, rooms=rooms, chat_kind=rooms.kind)
    try:
        async with httpx.AsyncClient(base_url=handle.url, timeout=10) as client:
            direct = await client.post(
                "/streams", json={"kind": rooms.kind, "payload": {"messages": []}}
            )
            assert direct.status_code == 403
            assert direct.json()["error"]["type"] == "internal_kind"
            chat = await client.post("/chat", json={"message": "hi"})
            assert chat.status_code == 403
            assert len(runtime.ledger.streams()) == 0
            # the room itself still opens its replies
            room = (await client.post("/rooms", json={"name": "Lobby"})).json()["id"]
            sent = await client.post(f"/rooms/{room}/messages", json={"text": "hello"})
            assert sent.status_code == 202
            await runtime.wait(sent.json()["stream_ref"], timeout_s=10)
        assert runtime.handler(rooms.kind).internal
    finally:
        await handle.aclose()
        await rooms.aclose()


def test_cli_takes_the_limits() -> None:
    args = build_parser().parse_args(
        ["serve", "--max-open-streams", "10", "--idle-timeout-s", "0", "--allowed-host", "x.lan"]
    )
    assert (args.max_open_streams, args.idle_timeout_s, args.allowed_host) == (10, None, ["x.lan"])
    defaults = build_parser().parse_args(["serve"])
    assert defaults.idle_timeout_s == 600.0 and defaults.max_open_streams == 2048
    for bad in (["--max-open-streams", "0"], ["--idle-timeout-s", "-1"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["serve", *bad])
