"""Frames: the messages between a stream and its observers.

Outbound kinds (stream -> observer) are ``opened``, ``progress``, ``output``,
``completed``, ``cancelled`` and ``failed``; the last three are *terminal*.
The inbound kind (observer -> stream) is ``input``. Every outbound frame carries
``stream_ref``, a per-stream ``seq`` (``opened`` is 0) and a time ``at``
(seconds since the Unix epoch, float). This follows the seeds' attached-stream
frames (seed 000 and 001); the camelCase ``streamRef`` is spelled
``stream_ref`` here.

A handler yields *frame specs*: plain dicts such as
``{"kind": "output", "channel": "assistant.delta", "payload": "hi"}`` exactly as
in the seeds, or the same dicts built by :func:`progress`, :func:`output`,
:func:`completed`, :func:`cancelled` and :func:`failed`. The runtime validates a
spec with :func:`build_frame` and stamps ``stream_ref``, ``seq`` and ``at``;
observers always receive :class:`Frame` objects.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal, NamedTuple, TypedDict

from ._errors import InvalidFrameError
from ._text import SurrogateMender, has_surrogates, mend, mend_json

#: one encoder for every JSON check: ``json.dumps`` with options builds a new
#: JSONEncoder per call, which cost more than the encoding of a small terminal
_CHECK_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False)

__all__ = [
    "OUTBOUND_KINDS",
    "TERMINAL_KINDS",
    "Frame",
    "FrameKind",
    "FrameSpec",
    "build_frame",
    "cancelled",
    "check_json",
    "completed",
    "failed",
    "outbound_json",
    "output",
    "progress",
    "tuple_new",
]

FrameKind = Literal["opened", "progress", "output", "completed", "cancelled", "failed", "input"]

TERMINAL_KINDS: frozenset[str] = frozenset({"completed", "cancelled", "failed"})
OUTBOUND_KINDS: frozenset[str] = frozenset({"opened", "progress", "output"}) | TERMINAL_KINDS
#: kinds a handler may yield (``opened`` is the runtime's, ``input`` is inbound)
_YIELDABLE = frozenset({"progress", "output"}) | TERMINAL_KINDS
_SPEC_KEYS = frozenset({"kind", "channel", "payload", "reason", "error", "terminal"})
_SCALARS = (str, int, bool, type(None))


class FrameSpec(TypedDict, total=False):
    """A frame as a handler yields it (a plain dict; only ``kind`` is required)."""

    kind: str
    channel: str
    payload: Any
    reason: str
    error: str
    terminal: Any


class Frame(NamedTuple):
    """One message of an attached stream, as observers receive it (immutable).

    A ``NamedTuple`` rather than the frozen dataclass the style guide prefers:
    it is as immutable, and is built several times faster, which the
    1M-frame throughput target needs (``bench/bench_core.py``,
    ``core.throughput``: 0.28x of a bare ``asyncio.Queue`` with a frozen
    dataclass, above 0.5x with this). Use :meth:`to_dict` / :meth:`to_json`
    for its JSON form; ``Frame._replace`` to derive a changed copy.

    Attributes
    ----------
    kind : str
        ``opened``, ``progress``, ``output``, ``completed``, ``cancelled``,
        ``failed`` (outbound) or ``input`` (inbound).
    stream_ref : str
        The stream this frame belongs to.
    seq : int
        Position in the stream: 0, 1, 2, ... per direction (``opened`` is 0).
    at : float
        When the runtime stamped the frame, seconds since the Unix epoch.
    channel : str or None
        For ``output`` frames, the channel (``"assistant.delta"``, ``"stdout"``...).
    payload : JSON value
        The frame's data (a token, a progress dict, the user's input...).
    reason : str or None
        Why a stream was cancelled or failed.
    error : str or None
        For ``failed`` frames, the error message.
    terminal : JSON value
        For terminal frames, the value the handler settled with
        (``{"ok": True}``, ``{"cancelled": True, "forced": True}``...).

    Examples
    --------
    >>> frame = Frame("output", "st_1", 2, 1700000000.0, "assistant.delta", "hi")
    >>> frame.is_terminal
    False
    >>> frame.to_dict()
    {'kind': 'output', 'stream_ref': 'st_1', 'seq': 2, 'at': 1700000000.0,
     'channel': 'assistant.delta', 'payload': 'hi'}
    >>> Frame.from_dict(frame.to_dict()) == frame
    True
    """

    kind: str
    stream_ref: str
    seq: int
    at: float
    channel: str | None = None
    payload: Any = None
    reason: str | None = None
    error: str | None = None
    terminal: Any = None

    @property
    def is_terminal(self) -> bool:
        """True for ``completed``, ``cancelled`` and ``failed`` frames."""
        return self.kind in TERMINAL_KINDS

    def to_dict(self) -> dict[str, Any]:
        """The frame's JSON form: always ``kind, stream_ref, seq, at``, other keys when set."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "stream_ref": self.stream_ref,
            "seq": self.seq,
            "at": self.at,
        }
        if self.channel is not None:
            out["channel"] = self.channel
        if self.payload is not None:
            out["payload"] = self.payload
        if self.reason is not None:
            out["reason"] = self.reason
        if self.error is not None:
            out["error"] = self.error
        if self.terminal is not None:
            out["terminal"] = self.terminal
        return out

    def to_json(self) -> str:
        """The frame as a compact JSON string (what SSE ``data:`` lines carry)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Frame:
        """Rebuild a frame from its JSON form (:meth:`to_dict`).

        Raises
        ------
        InvalidFrameError
            If a required key is missing or has the wrong type.
        """
        if not isinstance(data, dict):
            raise InvalidFrameError("expected a JSON object", data)
        try:
            kind, ref, seq, at = data["kind"], data["stream_ref"], data["seq"], data["at"]
        except KeyError as exc:
            raise InvalidFrameError(f"missing key {exc.args[0]!r}", data) from exc
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise InvalidFrameError("'seq' must be a non-negative integer", data)
        if kind not in OUTBOUND_KINDS and kind != "input":
            raise InvalidFrameError(f"unknown kind {kind!r}", data)
        return cls(
            kind=kind,
            stream_ref=str(ref),
            seq=seq,
            at=float(at),
            channel=data.get("channel"),
            payload=data.get("payload"),
            reason=data.get("reason"),
            error=data.get("error"),
            terminal=data.get("terminal"),
        )


#: ``tuple_new(Frame, fields)`` makes a Frame from an exact tuple of its nine fields without
#: NamedTuple.__new__'s argument handling: the pump's and the readers' hot path
tuple_new = tuple.__new__


def check_json(value: Any, what: str, frame: object = None) -> None:
    """Raise :class:`InvalidFrameError` unless ``value`` is plain JSON (no NaN).

    Strings, ints, bools and ``None`` pass without encoding; containers and
    floats are encoded once with ``json.dumps(allow_nan=False)``.
    """
    if isinstance(value, str):
        if not value.isascii():
            _check_utf8(value, what, frame)
        return
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, float):
        if math.isfinite(value):
            return
        raise InvalidFrameError(f"{what} is {value!r}, which JSON cannot carry", frame)
    try:
        text = _CHECK_ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidFrameError(f"{what} is not JSON-serializable ({exc})", frame) from exc
    if not text.isascii():
        _check_utf8(text, what, frame)


def outbound_json(value: Any, what: str, frame: object = None) -> Any:
    """``value`` checked as plain JSON (no NaN) for an outbound frame, lone surrogates mended.

    Unlike :func:`check_json` (inbound: a lone surrogate is refused), a handler's
    text is never refused for it: every string is mended once here (see
    :mod:`streamnb._text`), so no reader ever gets text it cannot encode.

    Raises
    ------
    InvalidFrameError
        ``value`` is not JSON-serializable, or a float JSON cannot carry.
    """
    if isinstance(value, str):
        return mend(value)
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise InvalidFrameError(f"{what} is {value!r}, which JSON cannot carry", frame)
    if type(value) is dict and _plain_flat(value):
        return value  # what encoding it would have said, without encoding it
    try:
        text = _CHECK_ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidFrameError(f"{what} is not JSON-serializable ({exc})", frame) from exc
    return mend_json(value) if has_surrogates(text) else value


def _plain_flat(value: dict[Any, Any]) -> bool:
    """A small dict of str keys and JSON scalars with no lone surrogate (a terminal such
    as ``{"ok": True}``): valid outbound JSON as it is. Encoding it to find that out cost
    more than the rest of building the frame (bench/bench_core.py core.file_ledger)."""
    if len(value) > 8:
        return False
    for key, item in value.items():
        if type(key) is not str or not (key.isascii() or not has_surrogates(key)):
            return False
        kind = type(item)
        if item is None or kind is bool or kind is int:
            continue
        if kind is str:
            if item.isascii() or not has_surrogates(item):
                continue
            return False
        if kind is float and math.isfinite(item):
            continue
        return False
    return True


def _check_utf8(text: str, what: str, frame: object) -> None:
    # a lone surrogate ("\ud800") is a Python str but not Unicode text: it cannot be
    # written as UTF-8 (the ledger, SSE, the widget), so it is refused where it comes in
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidFrameError(
            f"{what} contains {text[exc.start : exc.end]!r}, a lone surrogate that is not "
            "valid Unicode text; decode bytes with errors='replace' before sending",
            frame,
        ) from None


def build_frame(
    spec: Any, stream_ref: str, seq: int, at: float, mender: SurrogateMender | None = None
) -> Frame:
    """Validate a handler's frame spec and stamp it into a :class:`Frame`.

    Text is mended on the way (:mod:`streamnb._text`): lone surrogates in any
    string become U+FFFD, so every reader can encode the frame.

    Parameters
    ----------
    spec : dict or Frame
        What the handler yielded. A :class:`Frame` is accepted too (its own
        ``stream_ref``, ``seq`` and ``at`` are replaced), so recorded frames can
        be replayed.
    stream_ref, seq, at
        The stamp the runtime gives the frame.
    mender : SurrogateMender, optional
        The stream's mender: a text token ending with half a surrogate pair keeps
        it for the next token of its channel (the runtime's pump passes one).

    Raises
    ------
    InvalidFrameError
        Unknown or non-yieldable kind, unknown keys, an ``output`` without a
        string ``channel``, a non-string ``reason``/``error``, or a
        payload/terminal that is not JSON.
    """
    if type(spec) is dict and len(spec) == 3 and spec.get("kind") == "output":
        # hot path: {"kind": "output", "channel": str, "payload": str}, exactly these keys
        channel = spec.get("channel")
        payload = spec.get("payload")
        if (
            type(channel) is str
            and type(payload) is str
            and channel
            and (payload.isascii() or not has_surrogates(payload))
            and (mender is None or not mender.holding)
        ):
            return tuple_new(
                Frame, ("output", stream_ref, seq, at, channel, payload, None, None, None)
            )
    if isinstance(spec, Frame):
        spec = {
            k: v
            for k, v in (
                ("kind", spec.kind),
                ("channel", spec.channel),
                ("payload", spec.payload),
                ("reason", spec.reason),
                ("error", spec.error),
                ("terminal", spec.terminal),
            )
            if v is not None
        }
    elif type(spec) is not dict:
        if not isinstance(spec, dict):
            raise InvalidFrameError(
                f"a handler must yield dicts or sn.Frame objects, got {type(spec).__name__}",
                spec,
            )
    if not spec.keys() <= _SPEC_KEYS:
        extra = sorted(str(k) for k in spec.keys() - _SPEC_KEYS)
        raise InvalidFrameError(
            f"unknown keys {extra}; a frame has only {sorted(_SPEC_KEYS)}", spec
        )
    kind = spec.get("kind")
    if kind not in _YIELDABLE:
        if kind in ("opened", "input"):
            raise InvalidFrameError(
                f"a handler cannot yield {kind!r} frames (the runtime makes those)", spec
            )
        raise InvalidFrameError(f"unknown kind {kind!r}; use one of {sorted(_YIELDABLE)}", spec)
    channel = spec.get("channel")
    payload = spec.get("payload")
    if kind == "output":
        if not isinstance(channel, str) or not channel:
            raise InvalidFrameError("an 'output' frame needs a non-empty string 'channel'", spec)
        channel = mend(channel)
        if type(payload) is str:
            payload = mend(payload) if mender is None else mender.token(channel, payload)
        else:
            payload = outbound_json(payload, "'payload'", spec)
        return Frame(kind, stream_ref, seq, at, channel, payload)
    if channel is not None:
        if not isinstance(channel, str):
            raise InvalidFrameError("'channel' must be a string", spec)
        channel = mend(channel)
    payload = outbound_json(payload, "'payload'", spec)
    reason = spec.get("reason")
    error = spec.get("error")
    terminal = spec.get("terminal")
    if reason is not None:
        if not isinstance(reason, str):
            raise InvalidFrameError("'reason' must be a string", spec)
        reason = mend(reason)
    if error is not None:
        if not isinstance(error, str):
            raise InvalidFrameError("'error' must be a string", spec)
        error = mend(error)
    if kind == "progress":
        if terminal is not None:
            raise InvalidFrameError("only terminal frames carry 'terminal'", spec)
    else:
        terminal = outbound_json(terminal, "'terminal'", spec)
    return Frame(kind, stream_ref, seq, at, channel, payload, reason, error, terminal)


# --- helpers a handler may use instead of dict literals ---------------------------------


def progress(payload: Any = None) -> FrameSpec:
    """A ``progress`` frame spec, e.g. ``sn.progress({"phase": "waiting_for_user"})``.

    Examples
    --------
    >>> progress({"phase": "waiting_for_user"})
    {'kind': 'progress', 'payload': {'phase': 'waiting_for_user'}}
    """
    return {"kind": "progress", "payload": payload}


def output(payload: Any, channel: str = "assistant.delta") -> FrameSpec:
    """An ``output`` frame spec on ``channel`` (default ``"assistant.delta"``).

    Examples
    --------
    >>> output("Hel")
    {'kind': 'output', 'channel': 'assistant.delta', 'payload': 'Hel'}
    """
    return {"kind": "output", "channel": channel, "payload": payload}


def completed(terminal: Any = None, *, payload: Any = None) -> FrameSpec:
    """A ``completed`` terminal frame spec; ``terminal`` defaults to ``{"ok": True}``.

    Examples
    --------
    >>> completed()
    {'kind': 'completed', 'terminal': {'ok': True}}
    """
    spec: FrameSpec = {
        "kind": "completed",
        "terminal": {"ok": True} if terminal is None else terminal,
    }
    if payload is not None:
        spec["payload"] = payload
    return spec


def cancelled(reason: str = "cancelled", terminal: Any = None) -> FrameSpec:
    """A ``cancelled`` terminal frame spec; ``terminal`` defaults to ``{"cancelled": True}``.

    Examples
    --------
    >>> cancelled("user pressed stop")
    {'kind': 'cancelled', 'reason': 'user pressed stop', 'terminal': {'cancelled': True}}
    """
    return {
        "kind": "cancelled",
        "reason": reason,
        "terminal": {"cancelled": True} if terminal is None else terminal,
    }


def failed(error: str, reason: str = "failed", terminal: Any = None) -> FrameSpec:
    """A ``failed`` terminal frame spec carrying the error message.

    Examples
    --------
    >>> failed("the model timed out", reason="upstream_timeout")
    {'kind': 'failed', 'error': 'the model timed out', 'reason': 'upstream_timeout',
     'terminal': {'ok': False}}
    """
    return {
        "kind": "failed",
        "error": error,
        "reason": reason,
        "terminal": {"ok": False} if terminal is None else terminal,
    }
