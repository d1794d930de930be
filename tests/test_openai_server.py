"""The local OpenAI-compatible test server speaks the real wire format."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from tests.openai_server import OpenAIServer, Script

pytest_plugins = ["tests.openai_server"]

WAIT_S = 10.0
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
async def client(openai_server: OpenAIServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=openai_server.base_url, api_key="sk-test-123", max_retries=0, timeout=WAIT_S
    ) as sdk:
        yield sdk


async def _drain(stream: AsyncIterator[Any]) -> None:
    async for _ in stream:
        pass


async def _sse_lines(server: OpenAIServer, body: dict[str, Any]) -> list[str]:
    async with (
        httpx.AsyncClient(timeout=WAIT_S) as http,
        http.stream("POST", f"{server.base_url}/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line async for line in response.aiter_lines() if line]


async def test_stream_has_openai_chunk_shape_usage_and_done(openai_server: OpenAIServer) -> None:
    openai_server.script = Script(tokens=["Hi", " there"])
    lines = await _sse_lines(
        openai_server,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hello you"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "m" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hi there"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}


async def test_stream_without_include_usage_has_no_usage_chunk(
    openai_server: OpenAIServer,
) -> None:
    lines = await _sse_lines(
        openai_server,
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all(c["choices"] and "usage" not in c for c in chunks)


async def test_sdk_streams_text_and_records_request(
    openai_server: OpenAIServer, client: openai.AsyncOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, usage = [], None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
        usage = chunk.usage or usage
    assert "".join(parts) == "".join(Script().tokens)
    assert usage is not None
    assert usage.completion_tokens == len(Script().tokens)
    (record,) = openai_server.requests
    assert record.authorization == "Bearer sk-test-123"
    assert record.body["messages"] == [{"role": "user", "content": "hello"}]
    assert await record.ended.wait(WAIT_S)
    assert record.completed
    assert not record.disconnected.is_set()


async def test_non_streaming_request_is_answered(
    openai_server: OpenAIServer, client: openai.AsyncOpenAI
) -> None:
    openai_server.script = Script(tokens=["a", "b"])
    reply = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}]
    )
    assert reply.choices[0].message.content == "ab"
    assert reply.usage is not None
    assert reply.usage.completion_tokens == 2


async def test_tool_calls_stream_as_deltas_then_text_after_tool_result(
    openai_server: OpenAIServer, client: openai.AsyncOpenAI
) -> None:
    openai_server.script = Script(
        tokens=["Sunny."], tool_calls=[{"name": "get_weather", "arguments": {"city": "Paris"}}]
    )
    messages: list[Any] = [{"role": "user", "content": "weather?"}]
    stream = await client.chat.completions.create(
        model="m", messages=messages, tools=[WEATHER_TOOL], stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            call["name"] += (delta.function and delta.function.name) or ""
            call["arguments"] += (delta.function and delta.function.arguments) or ""
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert calls[0]["id"]
    messages += [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": calls[0]["id"],
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": calls[0]["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
    ]
    reply = await client.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    assert reply.choices[0].message.content == "Sunny."


async def test_enqueued_scripts_answer_in_order(
    openai_server: OpenAIServer, client: openai.AsyncOpenAI
) -> None:
    openai_server.enqueue(Script(tokens=["one"]), Script(tokens=["two"]))
    answers = []
    for _ in range(3):
        reply = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "q"}]
        )
        answers.append(reply.choices[0].message.content)
    assert answers == ["one", "two", "".join(Script().tokens)]


async def test_error_status_returns_openai_error_body(
    openai_server: OpenAIServer, client: openai.AsyncOpenAI
) -> None:
    openai_server.script = Script(error_status=429, error_message="Slow down.")
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "q"}], stream=True
        )
    assert info.value.status_code == 429
    assert isinstance(info.value.body, dict)
    assert info.value.body["message"] == "Slow down."


async def test_missing_model_is_a_400(openai_server: OpenAIServer) -> None:
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        response = await http.post(f"{openai_server.base_url}/chat/completions", json={})
    assert response.status_code == 400
    assert "model" in response.json()["error"]["message"]


async def test_error_mid_stream_raises_in_the_sdk(
    openai_server: OpenAIServer, client: openai.AsyncOpenAI
) -> None:
    openai_server.script = Script(error_mid_stream=2, error_message="Model overloaded.")
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}], stream=True
    )
    seen: list[str | None] = []

    async def consume() -> None:
        async for chunk in stream:
            seen.append(chunk.choices[0].delta.content)  # noqa: PERF401

    with pytest.raises(openai.APIError, match="Model overloaded"):
        await consume()
    assert seen[1:] == Script().tokens[:2]


async def test_drop_after_breaks_the_connection(
    openai_server: OpenAIServer, client: openai.AsyncOpenAI
) -> None:
    openai_server.script = Script(drop_after=1)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}], stream=True
    )
    with pytest.raises(openai.APIConnectionError):
        await _drain(stream)
    assert await openai_server.requests[0].ended.wait(WAIT_S)
    assert openai_server.requests[0].tokens_sent == 1


async def test_closing_a_stalled_stream_is_recorded_as_disconnect(
    openai_server: OpenAIServer, client: openai.AsyncOpenAI
) -> None:
    openai_server.script = Script(stall_after=1)
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}], stream=True
    )
    first = [await stream.__anext__(), await stream.__anext__()]
    assert first[1].choices[0].delta.content == Script().tokens[0]
    await stream.close()
    assert await openai_server.disconnected.wait(WAIT_S)
    record = openai_server.requests[0]
    assert record.disconnected.is_set()
    assert not record.completed


async def test_complete_stream_is_not_a_disconnect(
    openai_server: OpenAIServer, client: openai.AsyncOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "q"}], stream=True
    )
    async for _ in stream:
        pass
    assert await openai_server.requests[0].ended.wait(WAIT_S)
    assert not openai_server.disconnected.is_set()


async def test_models_endpoint_lists_the_model(openai_server: OpenAIServer) -> None:
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        response = await http.get(f"{openai_server.base_url}/models")
    assert response.json()["data"][0]["id"] == openai_server.model
