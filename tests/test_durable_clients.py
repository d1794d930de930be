"""Real Durable Streams clients read a live streamnb chat reply, are cut off, and resume.

A reply of the chat kind is opened with ``POST /chat`` (its SSE response is
the observer that keeps the stream alive, as in the browser page). Meanwhile
a Durable Streams client reads ``/v1/stream/streamnb/{ref}`` live from the
start, is cut off after a few output frames (the reply still streaming),
and resumes from the offset it had reached until the stream closes. Across
both reads every frame arrives exactly once (seq 0, 1, 2, ... with no gap and
no repeat) and the output text equals what ``/chat`` sent.

Clients: ``@durable-streams/client`` (npm, ``tests/durable/read_cut_resume.mjs``)
and ``durable-streams`` (PyPI), each in SSE and long-poll mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import durable_streams
import httpx
import pytest

import streamnb as sn
from streamnb.demo import chatbot_handler
from streamnb.server import ServerHandle
from streamnb.testing import FakeTokenSource, lorem_tokens
from tests._durable import npm_folder

pytest_plugins = ["tests._server"]
pytestmark = pytest.mark.timeout(120)

CHAT_KIND = "test.durable_chat"
TOKEN = "durable-s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: output frames a client reads before it is cut off
CUT_AFTER_OUTPUTS = 5
#: how long a reply may take to arrive in full, seconds
REPLY_TIMEOUT_S = 60.0
TERMINAL = {"completed", "cancelled", "failed"}


@pytest.fixture
async def chat_server(server_runtime: sn.StreamRuntime, start_server: Any) -> ServerHandle:
    """A server whose chat kind streams 60 tokens at 15 tokens/s (about 4 s) behind a token."""
    source = FakeTokenSource(lorem_tokens(60), rate_tokens_per_s=15)
    server_runtime.register(chatbot_handler(kind=CHAT_KIND, source=source))
    return await start_server(chat_kind=CHAT_KIND, token=TOKEN)


@contextlib.asynccontextmanager
async def live_chat(url: str) -> AsyncIterator[tuple[str, asyncio.Task[str]]]:
    """``POST /chat``: yields the stream ref and a task that returns the reply text."""
    async with (
        httpx.AsyncClient(timeout=REPLY_TIMEOUT_S, headers=AUTH) as client,
        client.stream("POST", f"{url}/chat", json={"message": "tell me"}) as response,
    ):
        assert response.status_code == 200

        async def text() -> str:
            parts = []
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    break
                if line.startswith("data: "):
                    parts.append(json.loads(line[6:])["content"])
            return "".join(parts)

        task = asyncio.create_task(text())
        try:
            yield response.headers["x-stream-ref"], task
        finally:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, REPLY_TIMEOUT_S)


def check_exactly_once(first: list[Any], second: list[Any], chat_text: str) -> None:
    frames = first + second
    assert [f["seq"] for f in frames] == list(range(len(frames))), "a gap or a duplicate"
    assert sum(f["kind"] == "output" for f in first) >= CUT_AFTER_OUTPUTS
    assert not TERMINAL & {f["kind"] for f in first}, "cut off after the reply had ended"
    assert any(f["kind"] == "output" for f in second), "nothing left to resume"
    assert frames[-1]["kind"] == "completed"
    assert "".join(f["payload"] for f in frames if f["kind"] == "output") == chat_text


@pytest.mark.parametrize("live", ["sse", "long-poll"])
async def test_typescript_client_resumes_a_chat_reply_exactly_once(
    chat_server: ServerHandle, server_runtime: sn.StreamRuntime, live: str
) -> None:
    folder = npm_folder()
    async with live_chat(chat_server.url) as (ref, reply):
        node = await asyncio.create_subprocess_exec(
            "node",
            "read_cut_resume.mjs",
            f"{chat_server.url}/v1/stream/streamnb/{ref}",
            live,
            str(CUT_AFTER_OUTPUTS),
            TOKEN,
            cwd=folder,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(node.communicate(), REPLY_TIMEOUT_S)
        assert node.returncode == 0, err.decode()
        result = json.loads(out)
        chat_text = await reply
    assert result["closed"] is True
    check_exactly_once(result["first"], result["second"], chat_text)
    assert server_runtime.ledger.stream_status(ref) == "completed"


async def _python_read(
    url: str, offset: str, live: str, until: Any, ledger_check: Any
) -> tuple[list[Any], str]:
    """Read with ``durable_streams.astream`` until ``until(frames)``; returns frames, offset."""
    frames: list[Any] = []
    offset_reached = offset
    async with durable_streams.astream(url, offset=offset, live=live, headers=AUTH) as res:
        async for event in res.iter_events(mode="json"):
            frames.extend(event.data)
            offset_reached = event.next_offset
            if any(f["kind"] in TERMINAL for f in event.data):
                ledger_check()
            if until(frames):
                break
    return frames, offset_reached


@pytest.mark.parametrize("live", ["sse", "long-poll"])
async def test_python_client_resumes_a_chat_reply_exactly_once(
    chat_server: ServerHandle, server_runtime: sn.StreamRuntime, live: str
) -> None:
    settled_when_seen: list[str | None] = []

    async with live_chat(chat_server.url) as (ref, reply):
        url = f"{chat_server.url}/v1/stream/streamnb/{ref}"

        def ledger_check() -> None:  # runs the moment the client sees the terminal frame
            settled_when_seen.append(server_runtime.ledger.stream_status(ref))

        first, offset = await asyncio.wait_for(
            _python_read(
                url,
                "-1",
                live,
                lambda fs: sum(f["kind"] == "output" for f in fs) >= CUT_AFTER_OUTPUTS,
                ledger_check,
            ),
            REPLY_TIMEOUT_S,
        )
        # the client 0.1.0 does not know Stream-Closed: stop at the terminal frame
        second, _ = await asyncio.wait_for(
            _python_read(
                url, offset, live, lambda fs: any(f["kind"] in TERMINAL for f in fs), ledger_check
            ),
            REPLY_TIMEOUT_S,
        )
        chat_text = await reply
    check_exactly_once(first, second, chat_text)
    assert settled_when_seen == ["completed"], "the close was announced before the settlement"
