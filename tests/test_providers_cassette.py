"""Cassettes (streamnb/providers/cassette.py): record a real stream, replay it as a handler."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import streamnb as sn
from streamnb.providers import (
    Cassette,
    CassetteError,
    ProviderConfig,
    cassette_handler,
    chat_handler,
    record_cassette,
    roll_dice,
    shipped_cassette,
)
from streamnb.testing import assert_checkpoint
from tests.openai_server import OpenAIServer, Script

pytest_plugins = ["tests.openai_server"]

WAIT_S = 10.0
KIND = "tutorial.streaming_chatbot"
KEY_ENV = "STREAMNB_CASSETTE_TEST_KEY"
FAKE_KEY = "sk-FAKE-cassette-7d3f9a1c5e"
TOKENS = ["Replay", " is", " a", " stream", " too", "."]


def config_for(server: OpenAIServer) -> ProviderConfig:
    return ProviderConfig.resolve(
        model="test-model",
        base_url=server.base_url,
        api_key_env=KEY_ENV,
        max_retries=0,
        timeout_s=WAIT_S,
        environ={KEY_ENV: FAKE_KEY},
    )


def shape(frames: list[sn.Frame]) -> list[tuple[Any, ...]]:
    """Everything about a frame but its stream and its time."""
    return [(f.kind, f.seq, f.channel, f.payload, f.reason, f.error, f.terminal) for f in frames]


class FakeSleep:
    """A fake clock: sleeping records the delay, moves ``now`` on and returns at once."""

    def __init__(self, stall_at: int | None = None) -> None:
        self.delays: list[float] = []
        self.now = 1000.0
        self.stall_at = stall_at
        self.stalled = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def __call__(self, delay_s: float) -> None:
        self.delays.append(delay_s)
        self.now += delay_s
        if self.stall_at is not None and len(self.delays) >= self.stall_at:
            self.stalled.set()
            await asyncio.Event().wait()  # until cancelled
        await asyncio.sleep(0)


@pytest.fixture
async def recording() -> AsyncIterator[sn.StreamRuntime]:
    """A runtime whose ledger records frames, as record_cassette((ledger, ref)) needs."""
    rt = sn.StreamRuntime(ledger=sn.Ledger(record_frames=True), cancel_grace_s=5.0)
    try:
        yield rt
    finally:
        await rt.aclose()
        rt.ledger.close()


@pytest.fixture
async def replaying() -> AsyncIterator[sn.StreamRuntime]:
    rt = sn.StreamRuntime(cancel_grace_s=5.0)
    try:
        yield rt
    finally:
        await rt.aclose()
        rt.ledger.close()


async def record_chat(
    server: OpenAIServer, rt: sn.StreamRuntime, script: Script, **options: Any
) -> tuple[str, list[sn.Frame]]:
    server.script = script
    rt.register(chat_handler(KIND, config_for(server), **options))
    session = await rt.attach(KIND, {})
    await session.send("hello")
    frames = await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    return session.stream_ref, frames


async def replay(
    rt: sn.StreamRuntime, handler: sn.AttachedStreamHandler, *inputs: str
) -> list[sn.Frame]:
    rt.register(handler)
    session = await rt.attach(handler.kind, {})
    for text in inputs:
        await session.send(text)
    return await sn.read_until_terminal(session.output, timeout_s=WAIT_S)


def write_cassette(path: Path, **changes: Any) -> Path:
    data = json.loads(shipped_cassette("chat_tool_call").read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# -- round trip ----------------------------------------------------------------------


async def test_a_recorded_chat_replays_the_same_frames_and_terminal(
    openai_server: OpenAIServer,
    recording: sn.StreamRuntime,
    replaying: sn.StreamRuntime,
    tmp_path: Path,
) -> None:
    ref, frames = await record_chat(
        openai_server, recording, Script(tokens=TOKENS), system="Be brief."
    )
    path = tmp_path / "reply.json"
    written = record_cassette((recording.ledger, ref), path, meta={"purpose": "test"})
    assert written.path == path
    assert written.kind == KIND and written.mode == "bidi"
    assert written.text() == "".join(TOKENS)

    loaded = Cassette.load(path)
    assert loaded == written
    assert shape(list(loaded.frames)) == shape(frames)
    assert loaded.meta == {"purpose": "test"}

    replayed = await replay(replaying, cassette_handler(path, speed=math.inf), "anything")
    assert_checkpoint(replayed, "opened -> progress -> output* -> completed")
    assert shape(replayed) == shape(frames)
    assert replayed[-1].terminal["usage"] == frames[-1].terminal["usage"]
    events = replaying.ledger.events(kind=f"{KIND}.settled")
    assert events.payload.tolist()[0]["kind"] == "completed"


async def test_recording_frames_read_from_the_session_equals_recording_from_the_ledger(
    openai_server: OpenAIServer, recording: sn.StreamRuntime, tmp_path: Path
) -> None:
    ref, frames = await record_chat(openai_server, recording, Script(tokens=TOKENS))
    from_ledger = record_cassette((recording.ledger, ref), tmp_path / "a.json")
    from_frames = record_cassette(frames, tmp_path / "b.json")
    assert from_ledger == from_frames
    assert from_ledger.frames[0].at == 0.0
    assert all(b.at >= a.at for a, b in itertools.pairwise(from_ledger.frames))


async def test_a_recorded_tool_call_replays_its_tool_frames(
    openai_server: OpenAIServer,
    recording: sn.StreamRuntime,
    replaying: sn.StreamRuntime,
    tmp_path: Path,
) -> None:
    script = Script(tokens=["Done."], tool_calls=[{"name": "roll_dice", "arguments": {}}])
    ref, frames = await record_chat(openai_server, recording, script, tools=[roll_dice])
    record_cassette((recording.ledger, ref), tmp_path / "tool.json")
    replayed = await replay(
        replaying, cassette_handler(tmp_path / "tool.json", speed=math.inf), "x"
    )
    assert shape(replayed) == shape(frames)
    assert [f.payload["type"] for f in replayed if f.channel == "tool"][-2:] == [
        "tool-input",
        "tool-output",
    ]


async def test_a_recorded_failure_replays_as_the_same_failure(
    openai_server: OpenAIServer,
    recording: sn.StreamRuntime,
    replaying: sn.StreamRuntime,
    tmp_path: Path,
) -> None:
    script = Script(error_mid_stream=2, error_message="Context length exceeded.")
    ref, frames = await record_chat(openai_server, recording, script)
    cassette = record_cassette((recording.ledger, ref), tmp_path / "failed.json")
    assert cassette.terminal.kind == "failed"
    replayed = await replay(replaying, cassette_handler(cassette, speed=math.inf), "x")
    assert_checkpoint(replayed, "opened -> progress -> output* -> failed")
    assert "Context length exceeded." in (replayed[-1].error or "")
    assert shape(replayed) == shape(frames)


# -- timing --------------------------------------------------------------------------


def recorded_delays(cassette: Cassette, speed: float) -> list[float]:
    """The delays a replay should sleep: gaps / speed, the gap after the input capped at 1 s."""
    frames = cassette.frames
    out = []
    for i in range(1, len(frames)):
        gap = frames[i].at - frames[i - 1].at
        if frames[i - 1].kind == "progress":  # the wait for the user's input
            gap = min(gap, 1.0)
        if gap > 0:
            out.append(gap / speed)
    return out


async def test_replay_sleeps_the_recorded_gaps_divided_by_speed(
    replaying: sn.StreamRuntime,
) -> None:
    cassette = Cassette.load(shipped_cassette("chat_reply"))
    sleep = FakeSleep()
    replayed = await replay(
        replaying, cassette_handler(cassette, speed=10, sleep=sleep, clock=sleep.clock), "hi"
    )
    assert shape(replayed) == shape(list(cassette.frames))
    expected = recorded_delays(cassette, 10)
    assert sleep.delays == pytest.approx(expected)
    assert sum(sleep.delays) == pytest.approx(sum(recorded_delays(cassette, 1)) / 10)
    assert len(sleep.delays) > 40  # one pause per token


async def test_replay_at_infinite_speed_never_sleeps(replaying: sn.StreamRuntime) -> None:
    sleep = FakeSleep()
    handler = cassette_handler(
        shipped_cassette("chat_reply"), speed=math.inf, sleep=sleep, clock=sleep.clock
    )
    replayed = await replay(replaying, handler, "hi")
    assert replayed[-1].kind == "completed"
    assert sleep.delays == []


async def test_replay_at_speed_1_takes_about_the_recorded_time(
    replaying: sn.StreamRuntime,
) -> None:
    # Loose ordering only: real time is at least most of the recording, never a threshold above.
    cassette = Cassette.load(shipped_cassette("chat_tool_call"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await replay(replaying, cassette_handler(cassette), "roll")
    assert loop.time() - started >= 0.5 * sum(recorded_delays(cassette, 1))


# -- bidi and modes ------------------------------------------------------------------


async def test_a_bidi_replay_waits_for_one_input_of_any_text(
    replaying: sn.StreamRuntime,
) -> None:
    replaying.register(cassette_handler(shipped_cassette(), speed=math.inf))
    session = await replaying.attach(KIND)
    first = [await anext(session.output), await anext(session.output)]
    assert [f.kind for f in first] == ["opened", "progress"]
    for _ in range(20):  # at infinite speed it would be done by now, were it not waiting
        await asyncio.sleep(0)
    info = replaying.info(session.stream_ref)
    assert info.status == "running" and info.next_seq == 2
    await session.send({"content": "a different question"})
    rest = await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    assert_checkpoint(first + rest, "opened -> progress -> output+ -> completed")


async def test_output_only_mode_replays_without_input(replaying: sn.StreamRuntime) -> None:
    handler = cassette_handler(
        shipped_cassette(), "demo.replay", speed=math.inf, mode="output_only"
    )
    frames = await replay(replaying, handler)
    assert frames[0].payload == {"kind": "demo.replay", "mode": "output_only"}
    assert_checkpoint(frames, "opened -> progress -> output+ -> completed")
    assert not replaying.ledger.events(kind="demo.replay.settled").empty


async def test_a_multi_turn_recording_waits_at_each_turn(
    openai_server: OpenAIServer,
    recording: sn.StreamRuntime,
    replaying: sn.StreamRuntime,
    tmp_path: Path,
) -> None:
    openai_server.script = Script(tokens=TOKENS[:2])
    recording.register(chat_handler(KIND, config_for(openai_server), max_turns=2))
    session = await recording.attach(KIND, {})
    await session.send("one")
    await session.send("two")
    await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    cassette = record_cassette((recording.ledger, session.stream_ref), tmp_path / "two.json")

    replaying.register(cassette_handler(cassette, speed=math.inf))
    replay_session = await replaying.attach(KIND)
    await replay_session.send("first")
    seen = []
    async for frame in replay_session.output:
        seen.append(frame)
        if frame.kind == "progress" and len(seen) > 2:
            break
    for _ in range(20):
        await asyncio.sleep(0)
    assert replaying.info(replay_session.stream_ref).next_seq == len(seen)
    await replay_session.send("second")
    frames = seen + await sn.read_until_terminal(replay_session.output, timeout_s=WAIT_S)
    assert shape(frames) == shape(list(cassette.frames))


# -- cancel --------------------------------------------------------------------------


async def test_cancel_during_replay_settles_cancelled_at_once(
    replaying: sn.StreamRuntime,
) -> None:
    sleep = FakeSleep(stall_at=5)
    replaying.register(cassette_handler(shipped_cassette(), sleep=sleep, clock=sleep.clock))
    session = await replaying.attach(KIND)
    await session.send("hi")
    await asyncio.wait_for(sleep.stalled.wait(), WAIT_S)
    assert await session.cancel("user pressed stop") == "requested"
    frames = await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    assert_checkpoint(frames, "opened -> progress -> output* -> cancelled")
    assert frames[-1].reason == "user pressed stop"
    assert frames[-1].terminal == {"cancelled": True}  # not forced: the pause was interrupted
    assert sum(1 for f in frames if f.kind == "output") == 3  # pauses 2..4 came before outputs
    events = replaying.ledger.events(kind=f"{KIND}.settled")
    assert events.payload.tolist()[0]["kind"] == "cancelled"


async def test_cancel_while_waiting_for_input(replaying: sn.StreamRuntime) -> None:
    replaying.register(cassette_handler(shipped_cassette()))
    session = await replaying.attach(KIND)
    first = [await anext(session.output), await anext(session.output)]
    await session.cancel("never mind")
    frames = first + await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    assert_checkpoint(frames, "opened -> progress -> cancelled")
    assert frames[-1].reason == "never mind"


# -- secrets -------------------------------------------------------------------------


async def test_the_key_never_reaches_the_cassette_file(
    openai_server: OpenAIServer,
    recording: sn.StreamRuntime,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    config = ProviderConfig(
        model="test-model", base_url=openai_server.base_url, api_key_env=KEY_ENV
    )
    assert config.reveal_api_key() == FAKE_KEY
    openai_server.script = Script(tokens=TOKENS)
    recording.register(chat_handler(KIND, config))
    session = await recording.attach(KIND)
    await session.send("hello")
    await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    assert openai_server.requests[0].authorization == f"Bearer {FAKE_KEY}"

    path = tmp_path / "reply.json"
    cassette = record_cassette((recording.ledger, session.stream_ref), path, config=config)
    text = path.read_text(encoding="utf-8")
    assert FAKE_KEY not in text
    assert "7d3f9a1c5e" not in text
    assert cassette.meta["provider"]["credential"] == f"set (from env {KEY_ENV})"
    assert cassette.meta["provider"]["model"] == "test-model"


async def test_recording_refuses_to_write_the_key(
    openai_server: OpenAIServer, recording: sn.StreamRuntime, tmp_path: Path
) -> None:
    ref, _ = await record_chat(openai_server, recording, Script(tokens=TOKENS))
    path = tmp_path / "leak.json"
    with pytest.raises(CassetteError, match=f"contains the key from {KEY_ENV}") as info:
        record_cassette(
            (recording.ledger, ref),
            path,
            meta={"oops": FAKE_KEY},
            config=config_for(openai_server),
        )
    assert FAKE_KEY not in str(info.value)
    assert not path.exists()


def test_the_shipped_cassettes_hold_no_key() -> None:
    for name in ("chat_reply", "chat_tool_call"):
        text = shipped_cassette(name).read_text(encoding="utf-8")
        assert "sk-local-recording" not in text
        assert "Bearer" not in text


# -- shipped cassettes ---------------------------------------------------------------


async def test_the_shipped_chat_reply_is_a_realistic_recorded_reply(
    replaying: sn.StreamRuntime,
) -> None:
    cassette = Cassette.load(shipped_cassette("chat_reply"))
    outputs = [f for f in cassette.frames if f.kind == "output"]
    assert 40 <= len(outputs) <= 80
    gaps = [b.at - a.at for a, b in itertools.pairwise(outputs)]
    assert 0.01 < sorted(gaps)[len(gaps) // 2] < 0.1  # median 20-40 ms per token
    assert cassette.kind == KIND and cassette.mode == "bidi"
    assert cassette.terminal.terminal["finish_reason"] == "stop"
    frames = await replay(replaying, cassette_handler(cassette, speed=math.inf), "hi")
    text = sn.project_attached_stream(frames, frames[0].stream_ref).text("assistant.delta")
    assert text == cassette.text()
    assert text.startswith("An attached stream")


def test_the_shipped_tool_call_shows_call_and_result() -> None:
    cassette = Cassette.load(shipped_cassette("chat_tool_call.json"))
    types = [f.payload["type"] for f in cassette.frames if f.channel == "tool"]
    assert types[0] == "tool-input-delta" and types[-2:] == ["tool-input", "tool-output"]
    result = next(
        f.payload for f in cassette.frames if f.channel == "tool" and "output" in f.payload
    )
    assert result["tool_name"] == "roll_dice"
    assert str(result["output"]["result"]) in cassette.text()


def test_an_unknown_shipped_name_lists_the_known_ones() -> None:
    with pytest.raises(CassetteError, match="chat_reply, chat_tool_call"):
        shipped_cassette("nope")


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not JSON (line 1"),
        ("[1, 2]", "not a streamnb cassette"),
        ('{"format": "other"}', "not a streamnb cassette"),
        ('{"format": "streamnb.cassette", "version": 9}', "version 9 is not 1; upgrade"),
        ('{"format": "streamnb.cassette", "version": 1}', "lacks kind, mode, created_at, frames"),
    ],
)
def test_a_malformed_file_names_the_file_and_the_problem(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CassetteError, match=r"bad\.json") as info:
        Cassette.load(path)
    assert problem in str(info.value)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"mode": "sideways"}, "mode 'sideways' is not"),
        ({"kind": ""}, "kind '' is not a non-empty string"),
        ({"frames": {}}, '"frames" is not a list'),
        ({"frames": []}, "there are no frames"),
        ({"meta": [1]}, "meta is not a JSON object"),
    ],
)
def test_a_bad_header_is_refused(tmp_path: Path, change: dict[str, Any], problem: str) -> None:
    path = write_cassette(tmp_path / "bad.json", **change)
    with pytest.raises(CassetteError, match=r"bad\.json") as info:
        cassette_handler(path)
    assert problem in str(info.value)


def _frames() -> list[dict[str, Any]]:
    data = json.loads(shipped_cassette("chat_tool_call").read_text(encoding="utf-8"))
    frames: list[dict[str, Any]] = data["frames"]
    return frames


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda fs: fs[1:], "the first frame is 'progress', not 'opened'"),
        (lambda fs: fs[:-1], "not a terminal frame (the stream had not settled)"),
        (lambda fs: [*fs[:3], *fs[4:]], "frames[3] has seq 4, expected 3"),
        (lambda fs: [*fs[:2], {**fs[2], "kind": "bogus"}, *fs[3:]], "frames[2] is not a valid"),
        (lambda fs: [*fs[:2], {**fs[2], "at": 99.0}, *fs[3:]], "frames[3] has 'at'"),
        (lambda fs: [*fs[:2], 7, *fs[3:]], "frames[2] is not a JSON object"),
        (
            lambda fs: [*fs[:-2], {**fs[-1], "seq": len(fs) - 2}, {**fs[-2], "seq": len(fs) - 1}],
            "terminal but is not the last",
        ),
        (lambda fs: [*fs[:2], {**fs[2], "kind": "input"}, *fs[3:]], "is an input frame"),
    ],
)
def test_bad_frames_are_refused(tmp_path: Path, edit: Any, problem: str) -> None:
    path = write_cassette(tmp_path / "bad.json", frames=edit(_frames()))
    with pytest.raises(CassetteError, match=r"bad\.json") as info:
        Cassette.load(path)
    assert problem in str(info.value)


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(CassetteError, match=r"missing\.json: the file does not exist"):
        cassette_handler(tmp_path / "missing.json")


def test_speed_and_mode_are_checked() -> None:
    for speed in (0, -1.0, math.nan):
        with pytest.raises(ValueError, match="speed must be > 0"):
            cassette_handler(shipped_cassette(), speed=speed)
    with pytest.raises(ValueError, match="mode must be"):
        cassette_handler(shipped_cassette(), mode="both")  # type: ignore[arg-type]


async def test_an_unsettled_or_partial_stream_cannot_be_recorded(
    recording: sn.StreamRuntime, tmp_path: Path
) -> None:
    recording.register(cassette_handler(shipped_cassette(), speed=math.inf))
    session = await recording.attach(KIND)
    first = [await anext(session.output), await anext(session.output)]
    with pytest.raises(CassetteError, match="not a terminal frame"):
        record_cassette(first, tmp_path / "open.json")
    with pytest.raises(CassetteError, match="the first frame is not 'opened'"):
        record_cassette(first[1:], tmp_path / "late.json")
    with pytest.raises(CassetteError, match="there are no frames"):
        record_cassette([], tmp_path / "empty.json")
    await session.send("go")
    frames = first + await sn.read_until_terminal(session.output, timeout_s=WAIT_S)
    with pytest.raises(CassetteError, match="meta is not JSON"):
        record_cassette(frames, tmp_path / "meta.json", meta={"x": object()})
    assert not any(p.exists() for p in (tmp_path / "open.json", tmp_path / "meta.json"))


async def test_a_ledger_without_recorded_frames_says_how_to_record(
    replaying: sn.StreamRuntime, tmp_path: Path
) -> None:
    frames = await replay(replaying, cassette_handler(shipped_cassette(), speed=math.inf), "hi")
    with pytest.raises(CassetteError, match=r"Ledger\(record_frames=True\)"):
        record_cassette((replaying.ledger, frames[0].stream_ref), tmp_path / "x.json")
