"""``/api/chat``: the AI SDK UI message stream, checked by hand and by the real ``ai`` package."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

import streamnb as sn
from streamnb.server import ServerHandle
from tests._server_util import cancel_reason, eventually

pytest_plugins = ["tests._server"]

pytestmark = pytest.mark.timeout(60)

JS = Path(__file__).parent / "js"

# the fields the protocol defines for each chunk type we send (AI SDK 5 rejects others)
ALLOWED = {
    "start": {"type", "messageId", "messageMetadata"},
    "text-start": {"type", "id"},
    "text-delta": {"type", "id", "delta"},
    "text-end": {"type", "id"},
    "tool-input-start": {"type", "toolCallId", "toolName"},
    "tool-input-delta": {"type", "toolCallId", "inputTextDelta"},
    "tool-input-available": {"type", "toolCallId", "toolName", "input"},
    "tool-output-available": {"type", "toolCallId", "output"},
    "data-progress": {"type", "id", "data"},
    "finish": {"type"},
    "abort": {"type"},
    "error": {"type", "errorText"},
}


def user(text: str) -> list[dict[str, Any]]:
    return [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": text}]}]


def parse(raw: str) -> list[tuple[int | None, Any]]:
    """(id, chunk) per SSE event; the final ``[DONE]`` as (None, "[DONE]")."""
    events = []
    for block in raw.split("\n\n"):
        if not block:
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        data = fields["data"]
        events.append(
            (
                int(fields["id"]) if "id" in fields else None,
                data if data == "[DONE]" else json.loads(data),
            )
        )
    return events


async def post_chat(
    client: httpx.AsyncClient, chat_id: str, text: str
) -> tuple[httpx.Response, str]:
    async with client.stream(
        "POST",
        "/api/chat",
        json={"id": chat_id, "messages": user(text), "trigger": "submit-message"},
    ) as response:
        raw = b"".join([chunk async for chunk in response.aiter_raw()]).decode()
    return response, raw


async def test_ui_message_stream_chunks(start_server, server_runtime: sn.StreamRuntime) -> None:
    handle: ServerHandle = await start_server(chat_kind="test.tools")
    async with httpx.AsyncClient(base_url=handle.url) as client:
        response, raw = await post_chat(client, "chat-1", "streams")
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["content-type"].startswith("text/event-stream")
    ref = response.headers["x-stream-ref"]
    events = parse(raw)
    assert events[-1] == (None, "[DONE]")
    chunks = [c for _, c in events[:-1]]
    for chunk in chunks:
        assert set(chunk) <= ALLOWED[chunk["type"]], chunk
    assert [c["type"] for c in chunks] == [
        "start", "data-progress", "text-start", "text-delta", "text-delta", "text-end",
        "tool-input-start", "tool-input-delta", "tool-input-delta", "tool-input-available",
        "tool-output-available", "data-progress", "text-start", "text-delta", "text-end",
        "finish",
    ]  # fmt: skip
    assert chunks[0] == {
        "type": "start", "messageId": f"msg_{ref}", "messageMetadata": {"streamRef": ref}
    }  # fmt: skip
    seqs = [seq for seq, _ in events[:-1]]
    assert seqs == sorted(seqs)
    assert seqs[0] == 0
    assert seqs[-1] == server_runtime.frame_log(ref)[-1].seq


async def test_stop_endpoint_aborts_and_resume_replays(
    start_server, server_runtime: sn.StreamRuntime
) -> None:
    handle: ServerHandle = await start_server(chat_kind="test.slow_chat_continue")
    async with httpx.AsyncClient(base_url=handle.url) as client:
        assert (await client.get("/api/chat/none/stream")).status_code == 204
        body = {"id": "chat-2", "messages": user("resume me")}
        async with client.stream("POST", "/api/chat", json=body) as response:
            ref = response.headers["x-stream-ref"]
            async for line in response.aiter_lines():
                if '"text-delta"' in line:
                    break  # drop the connection mid-reply: the handler continues
        async with client.stream("GET", "/api/chat/chat-2/stream") as resumed:
            assert resumed.status_code == 200
            assert resumed.headers["x-vercel-ai-ui-message-stream"] == "v1"
            lines = resumed.aiter_lines()
            seen = []
            async for line in lines:
                if line.startswith("data: "):
                    seen.append(json.loads(line[6:]))
                    if seen[-1]["type"] == "text-delta":
                        break
            stop = await client.post("/api/chat/chat-2/stop", json={"reason": "user stop"})
            assert stop.json() == {"result": "requested", "stream_ref": ref}
            rest = [line async for line in lines if line.startswith("data: ")]
        assert seen[0] == {
            "type": "start", "messageId": f"msg_{ref}", "messageMetadata": {"streamRef": ref}
        }  # fmt: skip
        assert [json.loads(r[6:])["type"] for r in rest[-3:-1]] == ["text-end", "abort"]
        assert rest[-1] == "data: [DONE]"
        terminal = await server_runtime.wait(ref, timeout_s=5)
        assert terminal.kind == "cancelled"
        assert cancel_reason(server_runtime, ref) == "user stop"
        assert (await client.get("/api/chat/chat-2/stream")).status_code == 204


async def test_failure_is_an_error_chunk(start_server) -> None:
    handle: ServerHandle = await start_server(chat_kind="test.failing")
    async with httpx.AsyncClient(base_url=handle.url) as client:
        _, raw = await post_chat(client, "chat-3", "x")
    chunks = [c for _, c in parse(raw)]
    assert [c if isinstance(c, str) else c["type"] for c in chunks] == [
        "start", "text-start", "text-delta", "text-end", "error", "[DONE]"
    ]  # fmt: skip
    assert chunks[-2] == {"type": "error", "errorText": "RuntimeError: the model went away"}


# --- the real `ai` npm package ---------------------------------------------------------


async def run_node(js: Path, *args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        "node",
        str(js / "read_ui_stream.mjs"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


@pytest.mark.browser
async def test_ai_package_reads_the_stream_into_the_expected_message(
    start_server, ai_package: Path
) -> None:
    handle: ServerHandle = await start_server(chat_kind="test.tools", token="tok")
    result = await run_node(
        ai_package, "send", f"{handle.url}/api/chat", "chat-js", "streams", "tok"
    )
    assert result["errors"] == []
    message = result["message"]
    assert message["role"] == "assistant"
    assert message["id"].startswith("msg_st_")
    assert message["metadata"]["streamRef"] == message["id"].removeprefix("msg_")
    texts = [p["text"] for p in message["parts"] if p["type"] == "text"]
    assert texts == ["Let me look that up. ", "Found 3 hits."]
    assert all(p["state"] == "done" for p in message["parts"] if p["type"] == "text")
    (tool,) = [p for p in message["parts"] if p["type"] == "tool-search"]
    assert tool["toolCallId"] == "call_1"
    assert tool["state"] == "output-available"
    assert tool["input"] == {"q": "streams"}
    assert tool["output"] == {"hits": 3}
    (progress,) = [p for p in message["parts"] if p["type"] == "data-progress"]
    assert progress["data"] == {"phase": "answering"}  # reconciled by id: the latest
    resumed = await run_node(ai_package, "resume", f"{handle.url}/api/chat", "chat-js", "tok")
    assert resumed == {"message": None, "errors": []}  # 204: nothing running


@pytest.mark.browser
async def test_ai_package_reads_an_aborted_stream(
    start_server, server_runtime: sn.StreamRuntime, ai_package: Path
) -> None:
    handle: ServerHandle = await start_server(chat_kind="test.slow_chat_continue")
    node = asyncio.ensure_future(
        run_node(ai_package, "send", f"{handle.url}/api/chat", "chat-stop", "stop me")
    )
    try:
        await eventually(lambda: bool(server_runtime.active_refs()), timeout_s=20)
        (ref,) = server_runtime.active_refs()
        await eventually(lambda: any(f.kind == "output" for f in server_runtime.frame_log(ref)))
        async with httpx.AsyncClient(base_url=handle.url) as client:
            await client.post("/api/chat/chat-stop/stop")
        result = await node
    finally:
        node.cancel()
    assert result["errors"] == []
    (text,) = [p for p in result["message"]["parts"] if p["type"] == "text"]
    assert text["text"]
    assert not text["text"].endswith("stop me")  # cut short
