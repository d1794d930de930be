"""streamnb.testing: checkpoint paths and the fake token source."""

from __future__ import annotations

import pytest

import streamnb as sn
from streamnb.testing import (
    CheckpointMismatch,
    CheckpointSyntaxError,
    FakeTokenSource,
    assert_checkpoint,
    checkpoint_path,
    fake_tokens,
)

KINDS = ["opened", "progress", "output", "output", "completed"]


@pytest.mark.parametrize(
    "path",
    [
        "opened -> progress -> output* -> completed",
        "opened -> progress -> output+ -> completed|cancelled",
        "opened -> progress? -> output* -> terminal",
    ],
)
def test_matching_paths(path):
    assert_checkpoint(KINDS, path)


def test_mismatch_shows_expected_and_actual():
    with pytest.raises(CheckpointMismatch) as info:
        assert_checkpoint(KINDS, "opened -> progress -> cancelled")
    msg = str(info.value)
    assert "expected: opened -> progress -> cancelled" in msg
    assert "actual:   opened -> progress -> output×2 -> completed" in msg


def test_bad_path_syntax():
    with pytest.raises(CheckpointSyntaxError, match="unknown frame kind 'outptu'"):
        assert_checkpoint(KINDS, "opened -> outptu*")
    with pytest.raises(CheckpointSyntaxError):
        assert_checkpoint(KINDS, "opened -> -> completed")


def test_checkpoint_path_of_frames_and_dicts():
    frames = [sn.Frame("opened", "r", 0, 0.0), {"kind": "completed"}]
    assert checkpoint_path(frames) == "opened -> completed"
    assert checkpoint_path([]) == "(no frames)"


async def test_fake_token_source_shape_and_rate():
    assert fake_tokens("hello") == ["streamnb ", "reply to ", "hello"]
    slept = []

    async def fake_sleep(s):
        slept.append(s)

    source = FakeTokenSource(rate_tokens_per_s=10, sleep=fake_sleep)
    tokens = [t async for t in source.stream("x")]
    assert tokens == fake_tokens("x")
    assert len(slept) == 3 and slept[0] == 0.0
    assert 0.15 < slept[2] <= 0.2  # paced against a schedule: third token at t = 0.2 s
    with pytest.raises(ValueError, match="rate"):
        FakeTokenSource(rate_tokens_per_s=0)
