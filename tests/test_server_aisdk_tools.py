"""``/api/chat`` end to end with a live provider's tool call (issue 5).

The local OpenAI-compatible server scripts a ``roll_dice`` call then a text answer;
the real :func:`streamnb.providers.chat_handler` runs the tool and reports it in the
:mod:`streamnb._tool_frames` vocabulary; the AI SDK endpoint must turn that into
``tool-input-*`` / ``tool-output-*`` chunks. Only protocol fields are checked.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import pytest

import streamnb as sn
from streamnb.providers import ProviderConfig, chat_handler, roll_dice
from streamnb.server import ServerHandle
from tests.openai_server import OpenAIServer, Script
from tests.test_server_aisdk import ALLOWED, parse, post_chat

pytest_plugins = ["tests._server", "tests.openai_server"]

pytestmark = pytest.mark.timeout(60)

KIND = "test.live_tools"
CHUNK_FIELDS = ALLOWED | {"tool-output-error": {"type", "toolCallId", "errorText"}}


def config_for(server: OpenAIServer) -> ProviderConfig:
    return ProviderConfig.resolve(
        model="test-model",
        base_url=server.base_url,
        api_key_env="STREAMNB_TEST_KEY",
        max_retries=0,
        timeout_s=10.0,
        environ={"STREAMNB_TEST_KEY": "sk-local-test-key"},
    )


async def chat_chunks(
    start_server: Any, runtime: sn.StreamRuntime, server: OpenAIServer, script: Script
) -> list[Any]:
    """Serve ``chat_handler(KIND, tools=[roll_dice])``, POST one message, parse the reply."""
    server.script = script
    runtime.register(chat_handler(KIND, config_for(server), tools=[roll_dice]))
    handle: ServerHandle = await start_server(chat_kind=KIND)
    async with httpx.AsyncClient(base_url=handle.url, timeout=10.0) as client:
        response, raw = await post_chat(client, "chat-dice", "Roll a 20-sided die.")
    assert response.status_code == 200
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    chunks = [chunk for _, chunk in parse(raw)]
    for chunk in chunks[:-1]:
        assert set(chunk) <= CHUNK_FIELDS[chunk["type"]], chunk
    return chunks


def collapsed(chunks: list[Any]) -> list[str]:
    """Chunk types with runs of the same type folded into one."""
    types = [c if c == "[DONE]" else c["type"] for c in chunks]
    return [t for t, _ in itertools.groupby(types)]


async def test_a_live_tool_call_becomes_tool_input_and_output_chunks(
    start_server: Any, server_runtime: sn.StreamRuntime, openai_server: OpenAIServer
) -> None:
    script = Script(
        tokens=["You", " rolled", " it", "."],
        tool_calls=[{"name": "roll_dice", "arguments": {"sides": 20}}],
        argument_piece_chars=4,
    )
    chunks = await chat_chunks(start_server, server_runtime, openai_server, script)
    assert collapsed(chunks) == [
        "start", "data-progress",
        "tool-input-start", "tool-input-delta", "tool-input-available",
        "tool-output-available",
        "text-start", "text-delta", "text-end",
        "finish", "[DONE]",
    ]  # fmt: skip
    by_type: dict[str, list[dict[str, Any]]] = {}
    for chunk in chunks[:-1]:
        by_type.setdefault(chunk["type"], []).append(chunk)
    (begin,) = by_type["tool-input-start"]
    call_id = begin["toolCallId"]
    assert call_id and begin["toolName"] == "roll_dice"
    deltas = by_type["tool-input-delta"]
    assert len(deltas) > 1 and {d["toolCallId"] for d in deltas} == {call_id}
    assert json.loads("".join(d["inputTextDelta"] for d in deltas)) == {"sides": 20}
    (available,) = by_type["tool-input-available"]
    assert available == {
        "type": "tool-input-available",
        "toolCallId": call_id,
        "toolName": "roll_dice",
        "input": {"sides": 20},
    }
    (result,) = by_type["tool-output-available"]
    assert result["toolCallId"] == call_id
    assert result["output"]["sides"] == 20 and 1 <= result["output"]["result"] <= 20
    text = "".join(c["delta"] for c in by_type["text-delta"])
    assert text == "You rolled it."
    (text_start,) = by_type["text-start"]
    assert by_type["text-end"] == [{"type": "text-end", "id": text_start["id"]}]
    # the model was sent the tool's result before it answered
    assert len(openai_server.requests) == 2
    tool_message = openai_server.requests[1].body["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == call_id
    assert json.loads(tool_message["content"]) == result["output"]


async def test_a_failing_tool_call_becomes_a_tool_output_error_chunk(
    start_server: Any, server_runtime: sn.StreamRuntime, openai_server: OpenAIServer
) -> None:
    script = Script(
        tokens=["Sorry", "."], tool_calls=[{"name": "roll_dice", "arguments": {"sides": 0}}]
    )
    chunks = await chat_chunks(start_server, server_runtime, openai_server, script)
    assert collapsed(chunks) == [
        "start", "data-progress",
        "tool-input-start", "tool-input-delta", "tool-input-available",
        "tool-output-error",
        "text-start", "text-delta", "text-end",
        "finish", "[DONE]",
    ]  # fmt: skip
    (error,) = [c for c in chunks[:-1] if c["type"] == "tool-output-error"]
    assert "at least 1 side" in error["errorText"]
