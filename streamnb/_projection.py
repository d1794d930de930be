"""Projections: fold frames into a summary and pandas DataFrames.

:func:`project_attached_stream` is the seeds' ``projectAttachedStream`` (seed
001): given the frames an observer read (in any order, with duplicates, with
frames of other streams mixed in) it reports the stream's ``status``, its
``terminal``, the seq numbers it never saw (``omitted``), and tables of frames
and outputs. :func:`project_streams` summarises many streams at once.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd

from ._dataframes import utc_column
from ._errors import InvalidFrameError
from ._frames import TERMINAL_KINDS, Frame

__all__ = ["StreamProjection", "project_attached_stream", "project_streams"]

_FRAME_COLUMNS = ["seq", "kind", "channel", "payload", "at", "dt"]
_OUTPUT_COLUMNS = ["channel", "text", "n_frames", "first_at", "last_at"]


def _text(payload: Any) -> str:
    if type(payload) is str:
        return payload
    return json.dumps(payload, ensure_ascii=False)


def _columns(frames: Iterable[Frame], stream_ref: str) -> tuple[Sequence[Frame], np.ndarray]:
    """The frames of ``stream_ref`` as :func:`_select` picks them, and their seqs as an
    int64 array.

    The usual input (the list a reader read: one stream, seqs increasing, no
    ``input`` frames) is checked at C speed, with no Python step per frame;
    anything else goes through :func:`_select` first.
    """
    items = frames if type(frames) is list else list(frames)
    if items and set(map(type, items)) == {Frame}:
        seqs = list(map(_SEQ, items))
        if (
            set(map(type, seqs)) == {int}
            and "input" not in map(_KIND, items)
            and list(map(_REF, items)).count(stream_ref) == len(items)
        ):
            seq_arr = np.fromiter(seqs, dtype=np.int64, count=len(seqs))
            if seq_arr[0] >= 0 and bool((seq_arr[1:] > seq_arr[:-1]).all()):
                return items, seq_arr
    picked = _select(items, stream_ref)
    seqs = [f.seq for f in picked]
    bad = sorted({type(s).__name__ for s in seqs if not isinstance(s, (int, np.integer))})
    if bad:
        raise TypeError(f"seq must be an int, got {bad}")
    return picked, np.fromiter(seqs, dtype=np.int64, count=len(seqs))


def _column(frames: Sequence[Frame], field: int, dtype: Any) -> np.ndarray:
    """Field number ``field`` of every frame as a 1-D array (object arrays never 2-D)."""
    return np.fromiter(map(itemgetter(field), frames), dtype=dtype, count=len(frames))


_KIND, _REF, _SEQ = itemgetter(0), itemgetter(1), itemgetter(2)


def _select(frames: Iterable[Frame], stream_ref: str | None) -> list[Frame]:
    """Frames of ``stream_ref`` (outbound only), one per seq, ordered by seq."""
    picked = [
        f
        for f in frames
        if (stream_ref is None or f.stream_ref == stream_ref) and f.kind != "input"
    ]
    prev = -1
    for f in picked:  # fast path: already strictly increasing (the usual case)
        if f.seq <= prev:
            break
        prev = f.seq
    else:
        return picked
    by_seq: dict[int, Frame] = {}
    for f in picked:
        by_seq.setdefault(f.seq, f)
    return [by_seq[s] for s in sorted(by_seq)]


@dataclass(frozen=True)
class StreamProjection:
    """What :func:`project_attached_stream` returns.

    Attributes
    ----------
    stream_ref : str
    status : str
        ``"empty"`` (no frames), ``"running"`` (frames but no terminal yet) or
        the terminal kind (``completed``/``cancelled``/``failed``): the words of
        ``session.status`` and the ledger's ``streams.status``.
    terminal : Frame or None
        The terminal frame, if seen.
    omitted : tuple of int
        Seq numbers between 0 and the last seq seen that are missing (frames
        not delivered to this reader: retention, late attach, a lost connection).
    frames : pandas.DataFrame
        One row per frame: ``seq`` (int64), ``kind``, ``channel``, ``payload``
        (object), ``at`` (datetime64[ns, UTC]), ``dt`` (float64 seconds since
        the ``opened`` frame, or since the first frame seen).
    outputs : pandas.DataFrame
        One row per output channel, in order of first appearance: ``channel``,
        ``text`` (payloads joined; non-strings as JSON), ``n_frames`` (int64),
        ``first_at``, ``last_at`` (datetime64[ns, UTC]).
    """

    stream_ref: str
    status: str
    terminal: Frame | None
    omitted: tuple[int, ...]
    frames: pd.DataFrame = field(repr=False)
    outputs: pd.DataFrame = field(repr=False)
    _texts: dict[str, str] = field(repr=False, default_factory=dict)

    def text(self, channel: str | None = "assistant.delta") -> str:
        """The text of ``channel`` (default ``"assistant.delta"``); ``None`` joins all channels
        in seq order. A channel never seen gives ``""``."""
        if channel is None:
            return "".join(
                _text(p)
                for k, p in zip(self.frames["kind"], self.frames["payload"], strict=True)
                if k == "output"
            )
        return self._texts.get(channel, "")

    @property
    def n_outputs(self) -> int:
        """Number of ``output`` frames."""
        return int(self.outputs["n_frames"].sum()) if len(self.outputs) else 0

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict: ref, status, counts, omitted, texts per channel, terminal."""
        return {
            "stream_ref": self.stream_ref,
            "status": self.status,
            "n_frames": len(self.frames),
            "n_outputs": self.n_outputs,
            "omitted": list(self.omitted),
            "texts": dict(self._texts),
            "terminal": None if self.terminal is None else self.terminal.to_dict(),
        }

    def _repr_html_(self) -> str:
        esc = html.escape
        rows = "".join(
            f"<tr><td><code>{esc(str(ch))}</code></td><td>{n}</td>"
            f"<td style='white-space:pre-wrap;text-align:left'>{esc(t[:500])}"
            f"{'…' if len(t) > 500 else ''}</td></tr>"
            for ch, t, n in zip(
                self.outputs["channel"], self.outputs["text"], self.outputs["n_frames"], strict=True
            )
        )
        term = ""
        if self.terminal is not None:
            t = self.terminal
            bits = [f"reason={t.reason}" if t.reason else "", f"error={t.error}" if t.error else ""]
            term = esc(" ".join(b for b in bits if b) + " " + json.dumps(t.terminal))
        omitted = (
            f"<b style='color:var(--jp-warn-color0,#b45309)'>omitted seqs: "
            f"{esc(_ranges(self.omitted))}</b>"
            if self.omitted
            else "no omitted frames"
        )
        return (
            "<div class='streamnb-projection'>"
            f"<b>{esc(self.stream_ref)}</b> · status <b>{esc(self.status)}</b> · "
            f"{len(self.frames)} frames · {omitted}<br><small>{term}</small>"
            "<table><thead><tr><th>channel</th><th>frames</th><th>text</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></div>"
        )

    def __repr__(self) -> str:
        return (
            f"StreamProjection(stream_ref={self.stream_ref!r}, status={self.status!r}, "
            f"frames={len(self.frames)}, outputs={self.n_outputs}, "
            f"omitted={_ranges(self.omitted) or '[]'})"
        )


def _ranges(seqs: Sequence[int]) -> str:
    out: list[str] = []
    i = 0
    while i < len(seqs):
        j = i
        while j + 1 < len(seqs) and seqs[j + 1] == seqs[j] + 1:
            j += 1
        out.append(str(seqs[i]) if i == j else f"{seqs[i]}-{seqs[j]}")
        i = j + 1
    return ", ".join(out)


def project_attached_stream(frames: Iterable[Frame], stream_ref: str) -> StreamProjection:
    """Fold the frames an observer read into a :class:`StreamProjection`.

    Parameters
    ----------
    frames : iterable of Frame
        Frames in any order; frames of other streams, inbound ``input``
        frames and repeated seqs (first one kept) are ignored.
    stream_ref : str
        The stream to project.

    Returns
    -------
    StreamProjection
        ``status``, ``terminal``, ``omitted``, ``text(channel)``, and the
        ``frames`` and ``outputs`` DataFrames.

    Raises
    ------
    InvalidFrameError
        ``frames`` is not an iterable of :class:`~streamnb.Frame` with int seqs.

    Examples
    --------
    The frames a reader saw (out of order, one lost), folded:

    >>> F = sn.Frame
    >>> frames = [
    ...     F("opened", "st_1", 0, 10.0, payload={"kind": "demo", "mode": "bidi"}),
    ...     F("output", "st_1", 3, 10.5, "assistant.delta", "world"),
    ...     F("output", "st_1", 1, 10.1, "assistant.delta", "hello "),
    ...     F("completed", "st_1", 4, 10.6, terminal={"ok": True}),
    ... ]
    >>> proj = sn.project_attached_stream(frames, "st_1")
    >>> proj.status, proj.omitted, proj.text("assistant.delta")
    ('completed', (2,), 'hello world')
    >>> proj.frames[["seq", "kind", "dt"]]
       seq       kind   dt
    0    0     opened  0.0
    1    1     output  0.1
    2    3     output  0.5
    3    4  completed  0.6
    """
    try:
        picked, seq_arr = _columns(frames, stream_ref)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InvalidFrameError(
            f"project_attached_stream takes an iterable of sn.Frame objects ({exc}); "
            "turn JSON frames into Frames with sn.Frame.from_dict"
        ) from exc
    n = len(picked)
    # the columns, each built in one C-speed pass (fields in Frame's order)
    kinds = _column(picked, 0, object)
    channels = _column(picked, 4, object)
    payloads = _column(picked, 5, object)
    ats = _column(picked, 3, np.float64)
    last = int(seq_arr[-1]) if n else -1
    omitted: tuple[int, ...] = ()
    if n != last + 1:
        present = np.zeros(last + 1, dtype=bool)
        present[seq_arr[seq_arr >= 0]] = True
        omitted = tuple(np.flatnonzero(~present).tolist())
    terminal = None
    status = "empty"
    if n:
        for i in range(n - 1, -1, -1):  # the terminal is the last frame, almost always
            if kinds[i] in TERMINAL_KINDS:
                terminal = picked[i]
                break
        status = "running" if terminal is None else terminal.kind
    t0 = float(ats[0]) if n else 0.0
    if n and kinds[0] != "opened":
        t0 = float(ats.min())
    at_s = pd.Series(ats, dtype="float64", copy=False)
    frames_df = pd.DataFrame(
        {
            "seq": pd.Series(seq_arr, dtype="int64", copy=False),
            "kind": pd.Series(kinds, dtype="object", copy=False),
            "channel": pd.Series(channels, dtype="object", copy=False),
            "payload": pd.Series(payloads, dtype="object", copy=False),
            "at": utc_column(at_s),
            "dt": at_s - t0,
        },
        columns=_FRAME_COLUMNS,
    )
    # outputs: one vectorised pass per channel (a stream has a few), not one per frame
    is_output = kinds == "output"
    out_channels = channels[is_output]
    seen = dict.fromkeys(out_channels.tolist())  # in order of first appearance
    chans = [ch for ch in seen if ch is not None]
    texts: dict[str, str] = {}
    counts: list[int] = []
    first: list[float] = []
    lastat: list[float] = []
    # one channel and no output without one (the usual case): the mask is is_output
    alone = len(chans) == 1 and len(seen) == 1
    for ch in chans:
        mask = is_output if alone else is_output & (channels == ch)
        parts = payloads[mask].tolist()
        try:
            texts[ch] = "".join(parts)
        except TypeError:  # a non-str payload: its JSON text
            texts[ch] = "".join([_text(p) for p in parts])
        ch_ats = ats[mask]
        counts.append(len(parts))
        first.append(float(ch_ats[0]))
        lastat.append(float(ch_ats[-1]))
    outputs_df = pd.DataFrame(
        {
            "channel": pd.Series(chans, dtype="object"),
            "text": pd.Series([texts[c] for c in chans], dtype="object"),
            "n_frames": pd.Series(counts, dtype="int64"),
            "first_at": utc_column(pd.Series(first, dtype="float64")),
            "last_at": utc_column(pd.Series(lastat, dtype="float64")),
        },
        columns=_OUTPUT_COLUMNS,
    )
    return StreamProjection(stream_ref, status, terminal, omitted, frames_df, outputs_df, texts)


def project_streams(frames: Iterable[Frame]) -> pd.DataFrame:
    """One row per stream found in ``frames`` (a projection of many streams at once).

    Returns
    -------
    pandas.DataFrame
        Columns ``stream_ref`` (object), ``status`` (object), ``opened_at``
        (datetime64[ns, UTC]), ``duration_s`` (float64: first to last frame
        seen, seconds), ``ttfo_s`` (float64: opened to first ``output``,
        seconds; NaN without output), ``n_outputs``, ``n_frames`` and
        ``n_omitted`` (int64), ordered by ``opened_at``.

    Examples
    --------
    >>> F = sn.Frame
    >>> frames = [
    ...     F("opened", "st_a", 0, 1.0), F("output", "st_a", 1, 1.5, "c", "x"),
    ...     F("completed", "st_a", 2, 2.0, terminal={"ok": True}),
    ...     F("opened", "st_b", 0, 3.0),
    ... ]
    >>> sn.project_streams(frames)[["stream_ref", "status", "duration_s", "ttfo_s", "n_frames"]]
      stream_ref     status  duration_s  ttfo_s  n_frames
    0       st_a  completed         1.0     0.5         3
    1       st_b    running         0.0     NaN         1
    """
    groups: dict[str, list[Frame]] = {}
    for f in frames:
        groups.setdefault(f.stream_ref, []).append(f)
    rows = []
    for ref, fs in groups.items():
        picked = _select(fs, ref)
        if not picked:
            continue
        start = picked[0].at
        end = picked[-1].at
        first_out = next((f.at for f in picked if f.kind == "output"), None)
        term = next((f for f in reversed(picked) if f.kind in TERMINAL_KINDS), None)
        status = term.kind if term else "running"
        last = picked[-1].seq
        rows.append(
            (
                ref,
                status,
                start,
                end - start,
                float("nan") if first_out is None else first_out - start,
                sum(1 for f in picked if f.kind == "output"),
                len(picked),
                last + 1 - len(picked),
            )
        )
    cols = [
        "stream_ref",
        "status",
        "opened_at",
        "duration_s",
        "ttfo_s",
        "n_outputs",
        "n_frames",
        "n_omitted",
    ]
    df = pd.DataFrame.from_records(rows, columns=cols)
    df["opened_at"] = utc_column(df["opened_at"].astype("float64"))
    for c in ("duration_s", "ttfo_s"):
        df[c] = df[c].astype("float64")
    for c in ("n_outputs", "n_frames", "n_omitted"):
        df[c] = df[c].astype("int64")
    return df.sort_values("opened_at", kind="stable").reset_index(drop=True)
