"""stream_chat and run_tool_loop against the local OpenAI-compatible server.

chat_handler is tested in test_providers_chat.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest

from streamnb.providers import (
    Finish,
    LoopEvent,
    ProviderConfig,
    ProviderError,
    ProviderEvent,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolDefinitionError,
    ToolResult,
    Usage,
    get_current_time,
    make_client,
    roll_dice,
    run_tool_loop,
    stream_chat,
    tool,
)
from tests.openai_server import TEST_KEY, WAIT_S, OpenAIServer, Script, config_for

pytest_plugins = ["tests.openai_server"]

KEY = TEST_KEY
USER = [{"role": "user", "content": "hello there"}]


async def collect(events: AsyncIterator[Any]) -> list[Any]:
    async with aclosing(events) as stream:  # type: ignore[type-var]
        return [event async for event in stream]


async def collect_until_error(events: AsyncIterator[Any], seen: list[Any]) -> None:
    async with aclosing(events) as stream:  # type: ignore[type-var]
        async for event in stream:
            seen.append(event)  # noqa: PERF401  (keep what arrived before the error)


# -- stream_chat ---------------------------------------------------------------------


async def test_text_stream_yields_deltas_then_one_finish_with_usage(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script = Script(tokens=["Hi", " you"])
    events = await collect(stream_chat(config_for(openai_server), USER))
    assert events == [
        TextDelta("Hi"),
        TextDelta(" you"),
        Finish("stop", Usage(prompt_tokens=2, completion_tokens=2, total_tokens=4)),
    ]
    (record,) = openai_server.requests
    assert record.body["model"] == "test-model"
    assert record.body["stream"] is True
    assert record.body["stream_options"] == {"include_usage": True}
    assert record.body["messages"] == USER
    assert record.authorization == f"Bearer {KEY}"
    assert "tools" not in record.body


async def test_options_are_sent_but_cannot_turn_streaming_off(
    openai_server: OpenAIServer,
) -> None:
    options = {"temperature": 0.25, "stream": False}
    await collect(stream_chat(config_for(openai_server), USER, options=options))
    body = openai_server.requests[0].body
    assert body["temperature"] == 0.25
    assert body["stream"] is True


async def test_tool_call_deltas_carry_id_and_name_first_then_argument_pieces(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script = Script(tool_calls=[{"name": "roll_dice", "arguments": {"sides": 20}}])
    events = await collect(stream_chat(config_for(openai_server), USER, tools=[roll_dice.spec()]))
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0].call_id
    assert deltas[0].name == "roll_dice"
    assert all(d.call_id is None and d.name is None for d in deltas[1:])
    assert len(deltas) > 2  # arguments arrive in several pieces
    assert json.loads("".join(d.arguments_delta for d in deltas)) == {"sides": 20}
    assert events[-1] == Finish("tool_calls", events[-1].usage)
    assert openai_server.requests[0].body["tools"] == [roll_dice.spec()]


async def test_aclose_closes_the_upstream_response_at_once(openai_server: OpenAIServer) -> None:
    openai_server.script = Script(stall_after=1)
    events = stream_chat(config_for(openai_server), USER)
    first = await events.__anext__()
    assert first == TextDelta(Script().tokens[0])
    await events.aclose()
    assert await openai_server.disconnected.wait(WAIT_S)
    assert openai_server.requests[0].disconnected.is_set()


async def test_cancelling_the_consumer_task_closes_the_upstream_response(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script = Script(stall_after=2)
    got_tokens = asyncio.Event()
    seen: list[ProviderEvent] = []

    async def consume() -> None:
        async with aclosing(stream_chat(config_for(openai_server), USER)) as events:
            async for event in events:
                seen.append(event)
                if len(seen) == 2:
                    got_tokens.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(got_tokens.wait(), WAIT_S)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await openai_server.disconnected.wait(WAIT_S)
    assert [e.text for e in seen if isinstance(e, TextDelta)] == Script().tokens[:2]


async def test_http_error_becomes_provider_error_with_the_providers_message(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script = Script(error_status=400, error_message="Unknown model 'x'.")
    with pytest.raises(ProviderError) as info:
        await collect(stream_chat(config_for(openai_server), USER))
    assert info.value.status == 400
    assert not info.value.retryable
    assert info.value.provider_message == "Unknown model 'x'."
    assert "Unknown model 'x'." in str(info.value)


async def test_server_error_is_retryable_but_not_retried_with_max_retries_0(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script = Script(error_status=503, error_message="Overloaded.")
    with pytest.raises(ProviderError) as info:
        await collect(stream_chat(config_for(openai_server), USER))
    assert info.value.status == 503
    assert info.value.retryable
    assert len(openai_server.requests) == 1


async def test_error_object_mid_stream_becomes_provider_error(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script = Script(error_mid_stream=2, error_message="Context length exceeded.")
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError, match="Context length exceeded") as info:
        await collect_until_error(stream_chat(config_for(openai_server), USER), seen)
    assert info.value.status is None
    assert seen == [TextDelta(t) for t in Script().tokens[:2]]


async def test_connection_dropped_mid_stream_becomes_provider_error(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script = Script(drop_after=1)
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError, match="dropped mid-stream") as info:
        await collect_until_error(stream_chat(config_for(openai_server), USER), seen)
    assert info.value.retryable
    assert seen == [TextDelta(Script().tokens[0])]


async def test_stalled_stream_times_out_and_is_closed(openai_server: OpenAIServer) -> None:
    openai_server.script = Script(stall_after=1)
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError, match="did not answer in time mid-stream"):
        await collect_until_error(stream_chat(config_for(openai_server, timeout_s=0.5), USER), seen)
    assert len(seen) == 1
    assert await openai_server.disconnected.wait(WAIT_S)


async def test_refused_connection_becomes_retryable_provider_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = ProviderConfig.resolve(
        model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=None, max_retries=0
    )
    with pytest.raises(ProviderError, match=r"connection to .* failed") as info:
        await collect(stream_chat(cfg, USER))
    assert info.value.retryable


async def test_retryable_error_before_first_token_is_retried(
    openai_server: OpenAIServer,
) -> None:
    openai_server.enqueue(Script(error_status=503), Script(drop_after=0))
    openai_server.script = Script(tokens=["ok"])
    events = await collect(stream_chat(config_for(openai_server, max_retries=2), USER))
    assert events[0] == TextDelta("ok")
    assert len(openai_server.requests) == 3


async def test_retries_stop_after_max_retries(openai_server: OpenAIServer) -> None:
    openai_server.script = Script(error_status=429, error_message="Rate limited.")
    with pytest.raises(ProviderError, match="Rate limited"):
        await collect(stream_chat(config_for(openai_server, max_retries=1), USER))
    assert len(openai_server.requests) == 2


async def test_client_errors_are_not_retried(openai_server: OpenAIServer) -> None:
    openai_server.script = Script(error_status=401, error_message="Bad key.")
    with pytest.raises(ProviderError, match="Bad key"):
        await collect(stream_chat(config_for(openai_server, max_retries=3), USER))
    assert len(openai_server.requests) == 1


async def test_nothing_is_retried_after_the_first_token(openai_server: OpenAIServer) -> None:
    openai_server.enqueue(Script(drop_after=2))
    seen: list[ProviderEvent] = []
    with pytest.raises(ProviderError, match="dropped mid-stream"):
        await collect_until_error(stream_chat(config_for(openai_server, max_retries=3), USER), seen)
    assert len(openai_server.requests) == 1
    assert len(seen) == 2


async def test_a_given_client_is_reused_and_left_open(openai_server: OpenAIServer) -> None:
    cfg = config_for(openai_server)
    client = make_client(cfg)
    try:
        for _ in range(2):
            events = await collect(stream_chat(cfg, USER, client=client))
            assert isinstance(events[-1], Finish)
        assert not client.is_closed()
    finally:
        await client.close()


# -- tools ---------------------------------------------------------------------------


def test_tool_decorator_derives_schema_from_signature() -> None:
    @tool
    def add(a: int, b: float = 1.5, label: str = "sum") -> float:
        """Add two numbers.

        More text that the model does not need.
        """
        return a + b

    assert add.name == "add"
    assert add.description == "Add two numbers."
    params = add.spec()["function"]["parameters"]
    assert params["properties"] == {
        "a": {"type": "integer"},
        "b": {"type": "number", "default": 1.5},
        "label": {"type": "string", "default": "sum"},
    }
    assert params["required"] == ["a"]


def test_tool_decorator_with_options() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}

    @tool(name="search-web", description="Search.", parameters=schema)
    async def search(q: str) -> str:
        return q

    assert search.name == "search-web"
    assert search.spec()["function"] == {
        "name": "search-web",
        "description": "Search.",
        "parameters": schema,
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "has space"}, "name must be"),
        ({"parameters": {"type": "string"}}, '"type": "object"'),
        ({"fn": 42}, "callable"),
    ],
)
def test_bad_tool_definitions_are_rejected(kwargs: dict[str, Any], match: str) -> None:
    fields: dict[str, Any] = {
        "name": "ok",
        "description": "d",
        "parameters": {"type": "object", "properties": {}},
        "fn": lambda: None,
    }
    fields.update(kwargs)
    with pytest.raises(ToolDefinitionError, match=match):
        Tool(**fields)


def test_varargs_need_an_explicit_schema() -> None:
    with pytest.raises(ToolDefinitionError, match=r"\*args"):
        tool(lambda *args: None)


async def test_seed_004_tools_run() -> None:
    now = await get_current_time.invoke({})
    assert isinstance(now, str)
    assert "T" in now
    rolled = await roll_dice.invoke({})
    assert rolled["sides"] == 6
    assert 1 <= rolled["result"] <= 6
    rolled = await roll_dice.invoke({"sides": 20})
    assert 1 <= rolled["result"] <= 20


async def test_tool_loop_runs_the_tool_then_streams_the_answer(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script = Script(
        tokens=["You", " rolled", " it."],
        tool_calls=[{"name": "roll_dice", "arguments": {"sides": 20}, "id": "call_dice"}],
    )
    messages: list[dict[str, Any]] = [{"role": "user", "content": "roll a d20"}]
    events = await collect(
        run_tool_loop(config_for(openai_server), messages, [get_current_time, roll_dice])
    )
    kinds = [e.type for e in events]
    first_finish = kinds.index("finish")
    assert set(kinds[:first_finish]) == {"tool-call-delta"}
    assert kinds[first_finish : first_finish + 3] == ["finish", "tool-call", "tool-result"]
    assert kinds[-4:] == ["text-delta", "text-delta", "text-delta", "finish"]
    call = next(e for e in events if isinstance(e, ToolCall))
    assert call == ToolCall("call_dice", "roll_dice", '{"sides": 20}')
    result = next(e for e in events if isinstance(e, ToolResult))
    assert result.call_id == "call_dice"
    assert not result.is_error
    assert result.result["sides"] == 20
    assert 1 <= result.result["result"] <= 20

    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[1]["tool_calls"][0]["function"] == {
        "name": "roll_dice",
        "arguments": '{"sides": 20}',
    }
    assert messages[2]["tool_call_id"] == "call_dice"
    assert json.loads(messages[2]["content"]) == result.result
    assert messages[3] == {"role": "assistant", "content": "You rolled it."}
    second = openai_server.requests[1].body
    assert second["messages"] == messages[:3]
    assert [t["function"]["name"] for t in second["tools"]] == ["get_current_time", "roll_dice"]


async def _loop_results(server: OpenAIServer, tools: list[Tool], **call: Any) -> list[ToolResult]:
    server.script = Script(tokens=["fine"], tool_calls=[call])
    events = await collect(run_tool_loop(config_for(server), list(USER), tools))
    assert events[-1] == Finish("stop", events[-1].usage)  # the loop went on to an answer
    return [e for e in events if isinstance(e, ToolResult)]


async def test_bad_json_arguments_become_an_error_result(openai_server: OpenAIServer) -> None:
    (result,) = await _loop_results(openai_server, [roll_dice], name="roll_dice", arguments="{no")
    assert result.is_error
    assert "not valid JSON" in result.result["error"]
    tool_message = openai_server.requests[1].body["messages"][-1]
    assert "not valid JSON" in json.loads(tool_message["content"])["error"]


async def test_arguments_that_do_not_fit_the_function_become_an_error_result(
    openai_server: OpenAIServer,
) -> None:
    (result,) = await _loop_results(
        openai_server, [roll_dice], name="roll_dice", arguments={"faces": 3}
    )
    assert result.is_error
    assert "bad arguments" in result.result["error"]


async def test_a_raising_tool_becomes_an_error_result(openai_server: OpenAIServer) -> None:
    (result,) = await _loop_results(
        openai_server, [roll_dice], name="roll_dice", arguments={"sides": 0}
    )
    assert result.is_error
    assert result.result == {"error": "ValueError: a die needs at least 1 side, got 0"}


async def test_an_unknown_tool_becomes_an_error_result(openai_server: OpenAIServer) -> None:
    (result,) = await _loop_results(openai_server, [roll_dice], name="launch", arguments={})
    assert result.is_error
    assert "unknown tool 'launch'" in result.result["error"]


async def test_async_tools_are_awaited(openai_server: OpenAIServer) -> None:
    @tool
    async def shout(text: str) -> str:
        """Upper-case the text."""
        await asyncio.sleep(0)
        return text.upper()

    (result,) = await _loop_results(openai_server, [shout], name="shout", arguments={"text": "hi"})
    assert result.result == "HI"
    assert openai_server.requests[1].body["messages"][-1]["content"] == "HI"


async def test_step_limit_stops_a_model_that_keeps_calling_tools(
    openai_server: OpenAIServer,
) -> None:
    openai_server.script = Script(
        tool_calls=[{"name": "get_current_time", "arguments": {}}], tool_calls_when="always"
    )
    events: list[LoopEvent] = await collect(
        run_tool_loop(config_for(openai_server), list(USER), [get_current_time], max_steps=3)
    )
    assert len(openai_server.requests) == 3
    finishes = [e for e in events if isinstance(e, Finish)]
    assert [f.finish_reason for f in finishes] == ["tool_calls"] * 3
    assert sum(isinstance(e, ToolResult) for e in events) == 3


async def test_duplicate_tool_names_are_rejected(openai_server: OpenAIServer) -> None:
    with pytest.raises(ToolDefinitionError, match="two tools"):
        await collect(run_tool_loop(config_for(openai_server), list(USER), [roll_dice] * 2))


async def test_max_steps_below_one_is_rejected(openai_server: OpenAIServer) -> None:
    with pytest.raises(ValueError, match="max_steps"):
        await collect(run_tool_loop(config_for(openai_server), list(USER), [], max_steps=0))


async def test_closing_the_tool_loop_closes_the_upstream_response(
    openai_server: OpenAIServer,
) -> None:
    openai_server.enqueue(Script(tool_calls=[{"name": "get_current_time", "arguments": {}}]))
    openai_server.script = Script(stall_after=1)
    loop = run_tool_loop(config_for(openai_server), list(USER), [get_current_time])
    async for event in loop:
        if isinstance(event, TextDelta):
            break
    await loop.aclose()
    assert await openai_server.disconnected.wait(WAIT_S)
    assert openai_server.requests[1].disconnected.is_set()
