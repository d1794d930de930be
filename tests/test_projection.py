"""Projections: any order, duplicates, other streams and gaps fold to the same answer."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamnb as sn


def make_stream(ref: str, n_out: int, terminal: str = "completed", t0: float = 1000.0):
    frames = [sn.Frame("opened", ref, 0, t0, payload={"kind": "k"})]
    frames.append(sn.Frame("progress", ref, 1, t0 + 0.1, payload={"phase": "p"}))
    for i in range(n_out):
        ch = "assistant.delta" if i % 3 else "tool"
        frames.append(sn.Frame("output", ref, 2 + i, t0 + 0.2 + i, channel=ch, payload=f"t{i} "))
    frames.append(sn.Frame(terminal, ref, 2 + n_out, t0 + 1 + n_out, terminal={"ok": True}))
    return frames


def test_projection_of_a_complete_stream():
    frames = make_stream("st_a", 4)
    proj = sn.project_attached_stream(frames, "st_a")
    assert proj.status == "completed" and proj.omitted == ()
    assert proj.terminal == frames[-1]
    assert proj.text("assistant.delta") == "t1 t2 "
    assert proj.text("tool") == "t0 t3 "
    assert proj.text(None) == "t0 t1 t2 t3 "
    assert proj.text("never") == ""
    assert list(proj.frames.columns) == ["seq", "kind", "channel", "payload", "at", "dt"]
    assert proj.frames.dt.tolist()[:2] == [0.0, proj.frames.dt[1]]
    assert math.isclose(proj.frames.dt[1], 0.1, abs_tol=1e-6)
    assert proj.outputs.to_dict("list")["n_frames"] == [2, 2]
    assert proj.outputs.channel.tolist() == ["tool", "assistant.delta"]
    html = proj._repr_html_()
    assert "completed" in html and "st_a" in html


def test_projection_escapes_html_in_text():
    frames = [
        sn.Frame("opened", "r", 0, 1.0),
        sn.Frame("output", "r", 1, 2.0, channel="c", payload="<script>alert(1)</script>"),
    ]
    html = sn.project_attached_stream(frames, "r")._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_empty_and_open_statuses():
    assert sn.project_attached_stream([], "x").status == "empty"
    opened = [sn.Frame("opened", "x", 0, 1.0)]
    assert sn.project_attached_stream(opened, "x").status == "running"
    running = make_stream("x", 2)[:-1]
    assert sn.project_attached_stream(running, "x").status == "running"
    empty = sn.project_attached_stream([], "x")
    assert list(empty.frames.columns) == ["seq", "kind", "channel", "payload", "at", "dt"]
    assert len(empty.outputs) == 0


@settings(max_examples=200, deadline=None)
@given(
    n_out=st.integers(0, 20),
    data=st.data(),
)
def test_projection_is_invariant_to_order_duplicates_and_foreign_frames(n_out, data):
    frames = make_stream("st_a", n_out)
    other = make_stream("st_b", 3)
    reference = sn.project_attached_stream(frames, "st_a")
    dupes = data.draw(st.lists(st.sampled_from(frames), max_size=10))
    mixed = data.draw(st.permutations(frames + dupes + other))
    proj = sn.project_attached_stream(mixed, "st_a")
    assert proj.status == reference.status
    assert proj.omitted == ()
    pd.testing.assert_frame_equal(proj.frames, reference.frames)
    pd.testing.assert_frame_equal(proj.outputs, reference.outputs)


@settings(max_examples=200, deadline=None)
@given(n_out=st.integers(0, 20), data=st.data())
def test_dropped_frames_are_listed_as_omitted(n_out, data):
    frames = make_stream("st_a", n_out)
    keep = data.draw(st.lists(st.booleans(), min_size=len(frames), max_size=len(frames)))
    kept = [f for f, k in zip(frames, keep, strict=True) if k]
    proj = sn.project_attached_stream(data.draw(st.permutations(kept)), "st_a")
    last = max((f.seq for f in kept), default=-1)
    expected = tuple(f.seq for f, k in zip(frames, keep, strict=True) if not k and f.seq < last)
    assert proj.omitted == expected
    assert len(proj.frames) == len(kept)
    if kept and kept[-1].is_terminal:
        assert proj.status == "completed"


def test_project_streams_one_row_per_stream():
    a = make_stream("st_a", 3, t0=10.0)
    b = make_stream("st_b", 0, terminal="cancelled", t0=5.0)
    df = sn.project_streams(a + b + a[:2])
    assert df.stream_ref.tolist() == ["st_b", "st_a"]
    assert df.status.tolist() == ["cancelled", "completed"]
    assert df.n_outputs.tolist() == [0, 3]
    assert math.isnan(df.ttfo_s[0]) and math.isclose(df.ttfo_s[1], 0.2, abs_tol=1e-6)
    assert df.n_omitted.tolist() == [0, 0]
    assert str(df.opened_at.dtype) == "datetime64[ns, UTC]"


def reference_outputs(frames: list[sn.Frame]) -> tuple[list[tuple], dict[str, str]]:
    """The outputs table folded one frame at a time (what the projection must equal)."""
    rows: dict[str, list] = {}
    for f in frames:
        if f.kind != "output" or f.channel is None:
            continue
        text = f.payload if type(f.payload) is str else json.dumps(f.payload, ensure_ascii=False)
        row = rows.setdefault(f.channel, [f.channel, [], 0, f.at, f.at])
        row[1].append(text)
        row[2] += 1
        row[4] = f.at
    table = [(ch, "".join(t), n, a, b) for ch, t, n, a, b in rows.values()]
    return table, {ch: text for ch, text, *_ in table}


frame_specs = st.lists(
    st.tuples(
        st.sampled_from(["output", "output", "output", "progress", "input"]),
        st.sampled_from(["a", "b", None]),
        st.one_of(
            st.text(max_size=3), st.none(), st.dictionaries(st.text(max_size=2), st.integers())
        ),
        st.booleans(),  # skip this seq (a gap)
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(specs=frame_specs, terminal=st.sampled_from([None, "completed", "failed"]))
def test_vectorised_fold_equals_a_frame_by_frame_fold(specs, terminal) -> None:
    # the projection takes a fast path for one stream in seq order; a foreign frame or
    # a shuffled list takes the general one: both must give the frame-by-frame answer
    frames = [sn.Frame("opened", "st_v", 0, 50.0)]
    seq = 1
    for i, (kind, channel, payload, gap) in enumerate(specs):
        seq += 1 + gap
        frames.append(sn.Frame(kind, "st_v", seq, 50.0 + i, channel, payload))
    if terminal:
        frames.append(sn.Frame(terminal, "st_v", seq + 1, 99.0, terminal={"ok": True}))
    outbound = [f for f in frames if f.kind != "input"]
    table, texts = reference_outputs(outbound)
    fast = sn.project_attached_stream(frames, "st_v")
    general = sn.project_attached_stream(
        [*reversed(frames), sn.Frame("output", "other", 0, 0.0, "a", "x")], "st_v"
    )
    for proj in (fast, general):
        got = list(proj.outputs.itertuples(index=False, name=None))
        assert [r[:3] for r in got] == [r[:3] for r in table]
        assert [(a.timestamp(), b.timestamp()) for *_, a, b in got] == pytest.approx(
            [(a, b) for *_, a, b in table]
        )
        assert {ch: proj.text(ch) for ch in texts} == texts
        assert proj.frames.seq.tolist() == [f.seq for f in outbound]
        assert proj.frames.payload.tolist() == [f.payload for f in outbound]
        present = {f.seq for f in outbound}
        assert proj.omitted == tuple(s for s in range(max(present) + 1) if s not in present)
        assert proj.status == (terminal or "running")
    pd.testing.assert_frame_equal(fast.frames, general.frames)
    pd.testing.assert_frame_equal(fast.outputs, general.outputs)


def test_numpy_integer_seqs_fold_like_ints() -> None:
    # frames rebuilt from a DataFrame carry numpy integers as seqs
    frames = [
        sn.Frame("opened", "st_n", np.int64(0), 1.0),
        sn.Frame("output", "st_n", np.int64(2), 2.0, "c", "x"),
        sn.Frame("output", "st_n", np.int64(3), 3.0, "c", "y"),
    ]
    proj = sn.project_attached_stream(frames, "st_n")
    assert proj.frames.seq.tolist() == [0, 2, 3]
    assert proj.omitted == (1,)
    assert proj.text("c") == "xy"
