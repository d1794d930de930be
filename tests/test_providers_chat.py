"""chat_handler (streamnb/providers/chat.py) against the local OpenAI-compatible server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

import streamnb as sn
from streamnb.providers import ProviderConfigError, chat_handler, roll_dice
from streamnb.testing import assert_checkpoint
from tests.openai_server import TEST_KEY, WAIT_S, OpenAIServer, Script, config_for

pytest_plugins = ["tests.openai_server"]

KEY = TEST_KEY
KIND = "tutorial.streaming_chatbot"


@pytest.fixture
async def live_runtime() -> AsyncIterator[sn.StreamRuntime]:
    rt = sn.StreamRuntime(cancel_grace_s=5.0)
    try:
        yield rt
    finally:
        await rt.aclose()
        rt.ledger.close()


async def test_chat_handler_completed_path_matches_the_seed_checkpoint(
    openai_server: OpenAIServer, live_runtime: sn.StreamRuntime
) -> None:
    openai_server.script = Script(tokens=["Hi", " there"])
    live_runtime.register(chat_handler(KIND, config_for(openai_server), system="Be brief."))
    session = await live_runtime.attach(KIND, {})
    await session.send("hello")
    frames = await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    assert_checkpoint(frames, "opened -> progress -> output* -> completed")
    assert sn.project_attached_stream(frames, session.stream_ref).text("assistant.delta") == (
        "Hi there"
    )
    assert frames[-1].terminal == {
        "ok": True,
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        "model": "test-model",
        "steps": 1,
    }
    assert openai_server.requests[0].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
    ]
    events = live_runtime.ledger.events(kind=f"{KIND}.settled")
    assert events.payload.tolist()[0]["kind"] == "completed"


async def test_chat_handler_streams_tool_frames_then_the_answer(
    openai_server: OpenAIServer, live_runtime: sn.StreamRuntime
) -> None:
    openai_server.script = Script(
        tokens=["Rolled."], tool_calls=[{"name": "roll_dice", "arguments": {"sides": 6}}]
    )
    handler = chat_handler(KIND, config_for(openai_server), tools=[roll_dice])
    live_runtime.register(handler)
    session = await live_runtime.attach(KIND)
    await session.send({"content": "roll"})
    frames = await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    assert_checkpoint(frames, "opened -> progress -> output* -> completed")
    tool_payloads = [f.payload for f in frames if f.channel == "tool"]
    types = [p["type"] for p in tool_payloads]
    assert types[-2:] == ["tool-input", "tool-output"]
    assert set(types[:-2]) == {"tool-input-delta"}
    call_id = tool_payloads[0]["tool_call_id"]
    assert call_id
    assert {(p["tool_call_id"], p["tool_name"]) for p in tool_payloads} == {(call_id, "roll_dice")}
    deltas = "".join(p["input_delta"] for p in tool_payloads[:-2])
    assert json.loads(deltas) == tool_payloads[-2]["input"] == {"sides": 6}
    assert tool_payloads[-1]["output"]["sides"] == 6
    text_at = [i for i, f in enumerate(frames) if f.channel == "assistant.delta"]
    tool_at = [i for i, f in enumerate(frames) if f.channel == "tool"]
    assert max(tool_at) < min(text_at)
    assert frames[-1].terminal["steps"] == 2
    assert frames[-1].terminal["usage"]["completion_tokens"] > 1


async def test_chat_handler_cancel_closes_the_upstream_at_once(
    openai_server: OpenAIServer, live_runtime: sn.StreamRuntime
) -> None:
    openai_server.script = Script(stall_after=1)
    live_runtime.register(chat_handler(KIND, config_for(openai_server)))
    session = await live_runtime.attach(KIND, {})
    await session.send("hello")
    seen = []
    async for frame in session.output:
        seen.append(frame)
        if frame.channel == "assistant.delta":
            break
    assert await session.cancel("user pressed stop") == "requested"
    assert await openai_server.disconnected.wait(WAIT_S)
    frames = seen + await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    assert_checkpoint(frames, "opened -> progress -> output* -> cancelled")
    assert frames[-1].reason == "user pressed stop"
    assert "forced" not in frames[-1].terminal  # the handler stopped within the grace period
    events = live_runtime.ledger.events(kind=f"{KIND}.settled")
    assert events.payload.tolist()[0]["kind"] == "cancelled"


async def test_chat_handler_settles_failed_with_the_providers_message(
    openai_server: OpenAIServer, live_runtime: sn.StreamRuntime
) -> None:
    openai_server.script = Script(error_mid_stream=1, error_message="Context length exceeded.")
    live_runtime.register(chat_handler(KIND, config_for(openai_server)))
    session = await live_runtime.attach(KIND, {})
    await session.send("hello")
    frames = await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    assert_checkpoint(frames, "opened -> progress -> output* -> failed")
    assert "Context length exceeded." in (frames[-1].error or "")
    assert frames[-1].reason == "provider_error"
    assert frames[-1].terminal["ok"] is False
    assert frames[-1].terminal["status"] is None


async def test_chat_handler_http_error_settles_failed_with_status(
    openai_server: OpenAIServer, live_runtime: sn.StreamRuntime
) -> None:
    openai_server.script = Script(error_status=404, error_message="The model does not exist.")
    live_runtime.register(chat_handler(KIND, config_for(openai_server)))
    session = await live_runtime.attach(KIND, {})
    await session.send("hello")
    frames = await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    assert_checkpoint(frames, "opened -> progress -> failed")
    assert frames[-1].terminal["status"] == 404
    assert "The model does not exist." in (frames[-1].error or "")


async def test_chat_handler_start_messages_and_turns(
    openai_server: OpenAIServer, live_runtime: sn.StreamRuntime
) -> None:
    live_runtime.register(chat_handler(KIND, config_for(openai_server), max_turns=2))
    earlier = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    session = await live_runtime.attach(KIND, {"messages": earlier})
    await session.send("one")
    first = []
    async for frame in session.output:
        first.append(frame)
        if frame.kind == "progress" and len(first) > 2:
            break
    await session.send("two")
    frames = first + await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    assert_checkpoint(frames, "opened -> progress -> output* -> progress -> output* -> completed")
    second = openai_server.requests[1].body["messages"]
    assert second[:3] == [*earlier, {"role": "user", "content": "one"}]
    assert second[3] == {"role": "assistant", "content": "".join(Script().tokens)}
    assert second[4] == {"role": "user", "content": "two"}


async def test_chat_handler_rejects_a_bad_start_payload(
    openai_server: OpenAIServer, live_runtime: sn.StreamRuntime
) -> None:
    live_runtime.register(chat_handler(KIND, config_for(openai_server)))
    with pytest.raises(sn.StartRejectedError, match="messages"):
        await live_runtime.attach(KIND, {"messages": [{"role": "wizard", "content": "x"}]})


def test_chat_handler_without_config_fails_at_configuration_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in ("STREAMNB_MODEL", "STREAMNB_BASE_URL", "STREAMNB_API_KEY_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProviderConfigError, match="no model is configured"):
        chat_handler(KIND)


async def test_chat_widget_with_chat_handler_is_a_chat_with_memory(
    openai_server: OpenAIServer, live_runtime: sn.StreamRuntime
) -> None:
    from streamnb.testing import press_send

    openai_server.script = Script(tokens=["ok"])
    live_runtime.register(chat_handler(KIND, config_for(openai_server), system="Be brief."))
    chat = sn.ChatWidget(live_runtime, KIND)  # no start=: the conversation is the default
    for text in ("one", "two", "three"):
        press_send(chat, text)
        assert await chat.wait(timeout_s=WAIT_S) == "completed"
    third = openai_server.requests[2].body["messages"]
    assert third == [  # four earlier messages and the new one, each once
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "three"},
    ]
    chat.close()
