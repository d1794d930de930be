"""Record a stream's frames to a small JSON file and replay them as a handler ("cassettes").

A *cassette* is the outbound frames of one settled stream with their timing, so a
tutorial, a Binder demo or an nbval run can show a realistic live-provider reply with
no credentials and no network, deterministically. :func:`record_cassette` writes one
(from the frames read off ``session.output``, or from a ledger made with
``Ledger(record_frames=True)``); :func:`cassette_handler` turns one back into an
:class:`~streamnb.AttachedStreamHandler` that replays it at the recorded pace, scaled by
``speed``, honouring cancel. :func:`shipped_cassette` finds the recordings that ship
with streamnb (made from the local test server through the real
:func:`~streamnb.providers.chat_handler`; ``scripts/record_cassettes.py`` remakes them).

File format (version 1): one JSON object, one frame per line so diffs stay readable::

    {
      "format": "streamnb.cassette",
      "version": 1,
      "kind": "tutorial.streaming_chatbot",
      "mode": "bidi",
      "created_at": "2025-01-01T12:00:00+00:00",
      "stream_ref": "st_0123456789abcdef",
      "meta": {"provider": {"model": "...", "credential": "set (from env ...)", ...}},
      "frames": [
        {"kind": "opened", "seq": 0, "at": 0.0, "payload": {"kind": "...", "mode": "bidi"}},
        {"kind": "output", "seq": 2, "at": 0.0311, "channel": "assistant.delta", ...},
        ...
      ]
    }

Each frame is :meth:`Frame.to_dict` without ``stream_ref`` (it is in the header) and
with ``at`` as seconds since the ``opened`` frame (0.1 ms resolution). Only outbound
frames are recorded; inputs are not. Secrets: frames never carry the provider key, and
``record_cassette(..., config=cfg)`` stores only ``cfg.to_dict()`` (which has no key)
and refuses to write a file that would contain the key.

Replay. The runtime makes its own ``opened`` frame; every later recorded frame is
yielded at its recorded offset, with gaps divided by ``speed`` (``speed=math.inf``:
no delays); offsets are kept on a timeline, so timer slack does not accumulate. A
``bidi`` replay waits for one ``input`` after each recorded ``progress`` frame with
``{"phase": "waiting_for_user"}`` (or, if there is none, before the first
``output``), whatever the input says, so a recorded chat is a drop-in for the fake
chatbot. Since inputs are not recorded, the gap from such a progress frame to the next
frame also holds however long the recorded user took to type; it is capped at
``_MAX_INPUT_GAP_S`` (1 s). On cancel the replay stops at once (the pause is
interrupted) and settles ``cancelled``; otherwise it ends with the recorded terminal.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import math
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias, cast

from streamnb._errors import InvalidFrameError
from streamnb._frames import TERMINAL_KINDS, Frame, cancelled
from streamnb._handler import AbortSignal, AttachedStreamHandler, StreamContext, parse_ok
from streamnb._json import dumps
from streamnb._ledger import Ledger
from streamnb.providers._events import settled_event
from streamnb.providers.config import ProviderConfig
from streamnb.providers.errors import CassetteError

__all__ = ["Cassette", "cassette_handler", "record_cassette", "shipped_cassette"]

FORMAT: Final = "streamnb.cassette"
VERSION: Final = 1
_MODES: Final = ("output_only", "bidi")
_MAX_INPUT_GAP_S: Final = 1.0
_AT_DIGITS: Final = 4
_SHIPPED_DIR: Final = Path(__file__).parent / "cassettes"
_HEADER_KEYS: Final = ("format", "version", "kind", "mode", "created_at", "stream_ref", "meta")

Mode: TypeAlias = Literal["output_only", "bidi"]
Sleep: TypeAlias = Callable[[float], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Cassette:
    """The recorded outbound frames of one settled stream, with their timing.

    Make one with :meth:`load` (a file), :meth:`from_frames` or :func:`record_cassette`;
    replay it with :func:`cassette_handler`.

    Attributes
    ----------
    kind : str
        Kind of the recorded stream (the default kind of the replay handler).
    mode : {"output_only", "bidi"}
        Mode of the recorded stream.
    frames : tuple of Frame
        From ``opened`` (seq 0) to the one terminal frame, seqs without gaps. Each
        frame's ``at`` is **seconds since the opened frame**, not an epoch time.
    created_at : str
        When the recorded stream opened, ISO 8601 in UTC.
    meta : dict
        Free JSON facts given when recording (model, prompt, how it was made...).
    path : pathlib.Path or None
        The file it was loaded from or saved to.

    Raises
    ------
    CassetteError
        The frames do not form one whole stream (see :meth:`from_frames`).

    Examples
    --------
    >>> tape = Cassette.load(shipped_cassette())
    >>> tape.kind, tape.mode, tape.terminal.kind
    ('tutorial.streaming_chatbot', 'bidi', 'completed')
    >>> tape.text().startswith("An attached stream")
    True
    """

    kind: str
    mode: Mode
    frames: tuple[Frame, ...]
    created_at: str
    meta: Mapping[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = _where(self.path)
        if not isinstance(self.kind, str) or not self.kind.strip():
            raise CassetteError(where, f"kind {self.kind!r} is not a non-empty string")
        if self.mode not in _MODES:
            raise CassetteError(where, f"mode {self.mode!r} is not 'output_only' or 'bidi'")
        if not isinstance(self.meta, Mapping):
            raise CassetteError(where, "meta is not a JSON object")
        _check_frames(self.frames, where)

    # --- making ----------------------------------------------------------------------

    @classmethod
    def from_frames(
        cls, frames: Sequence[Frame], *, meta: Mapping[str, Any] | None = None
    ) -> Cassette:
        """A cassette of ``frames``: one stream from ``opened`` to its terminal.

        Parameters
        ----------
        frames : sequence of Frame
            As read from ``session.output`` (e.g. ``sn.read_until_terminal``) or from
            ``ledger.frame_log(ref)``: ``at`` in seconds since the epoch.
        meta : dict, optional
            JSON facts to keep in the header.

        Raises
        ------
        CassetteError
            No ``opened`` frame first (attach was not read from the start), no terminal
            last (the stream has not settled), a gap in ``seq``, frames of several
            streams, input frames, or ``meta`` that is not JSON.
        """
        what = "being recorded"
        if not frames:
            raise CassetteError(what, "there are no frames", _FROM_START)
        opened = frames[0]
        if not isinstance(opened, Frame) or opened.kind != "opened":
            raise CassetteError(what, "the first frame is not 'opened'", _FROM_START)
        refs = {f.stream_ref for f in frames}
        if len(refs) > 1:
            raise CassetteError(what, f"the frames belong to {len(refs)} streams; record one")
        info = opened.payload if isinstance(opened.payload, Mapping) else {}
        kind, mode = info.get("kind"), info.get("mode")
        if not isinstance(kind, str) or mode not in _MODES:
            raise CassetteError(
                what, "the opened frame's payload does not name the stream's kind and mode"
            )
        t0 = opened.at
        relative = tuple(f._replace(at=max(0.0, round(f.at - t0, _AT_DIGITS))) for f in frames)
        created = datetime.fromtimestamp(t0, timezone.utc).isoformat(timespec="seconds")
        meta_dict = _jsonable_meta(meta, what)
        return cls(kind, cast(Mode, mode), relative, created, meta_dict)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Cassette:
        """Read a cassette file.

        Raises
        ------
        CassetteError
            The file is missing or unreadable, is not JSON, is not a streamnb cassette
            (``format``/``version``), or its frames do not form one whole stream. The
            message names the file and the problem.
        """
        p = Path(path)
        where = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CassetteError(
                where, "the file does not exist", "check the path, or see shipped_cassette()"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CassetteError(where, f"the file cannot be read ({exc})") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CassetteError(
                where, f"not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from exc
        return cls._from_data(data, p)

    @classmethod
    def _from_data(cls, data: Any, path: Path) -> Cassette:
        where = str(path)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CassetteError(
                where,
                f'not a streamnb cassette (no "format": "{FORMAT}" in a top-level object)',
                "make cassettes with streamnb.providers.record_cassette()",
            )
        version = data.get("version")
        if version != VERSION:
            newer = isinstance(version, int) and version > VERSION
            raise CassetteError(
                where,
                f"cassette version {version!r} is not {VERSION}",
                "upgrade streamnb" if newer else "record the cassette again",
            )
        missing = [k for k in ("kind", "mode", "created_at", "frames") if k not in data]
        if missing:
            raise CassetteError(where, f"the header lacks {', '.join(missing)}")
        raw_frames = data["frames"]
        if not isinstance(raw_frames, list):
            raise CassetteError(where, '"frames" is not a list')
        ref = str(data.get("stream_ref") or "st_cassette")
        frames = []
        for i, raw in enumerate(raw_frames):
            if not isinstance(raw, dict):
                raise CassetteError(where, f"frames[{i}] is not a JSON object")
            try:
                frames.append(Frame.from_dict({**raw, "stream_ref": ref}))
            except (InvalidFrameError, TypeError, ValueError) as exc:
                raise CassetteError(where, f"frames[{i}] is not a valid frame: {exc}") from exc
        meta = data.get("meta") or {}
        return cls(data["kind"], data["mode"], tuple(frames), str(data["created_at"]), meta, path)

    # --- writing ---------------------------------------------------------------------

    def to_json(self) -> str:
        """The file's text: the header, then one frame per line (see module docstring)."""
        ref = self.frames[0].stream_ref
        header: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            "mode": self.mode,
            "created_at": self.created_at,
            "stream_ref": ref,
            "meta": dict(self.meta),
        }
        lines = [f"  {json.dumps(k)}: {dumps(header[k], readable=True)}," for k in _HEADER_KEYS]
        rows = []
        for frame in self.frames:
            row = frame.to_dict()
            del row["stream_ref"]
            rows.append(f"    {dumps(row, readable=True)}")
        body = ",\n".join(rows)
        return "{\n" + "\n".join(lines) + '\n  "frames": [\n' + body + "\n  ]\n}\n"

    def save(self, path: str | os.PathLike[str]) -> Cassette:
        """Write the cassette to ``path`` (atomically) and return it with ``path`` set.

        Raises
        ------
        CassetteError
            The file cannot be written.
        """
        p = Path(path)
        _write(p, self.to_json())
        return dataclasses.replace(self, path=p)

    # --- reading ---------------------------------------------------------------------

    @property
    def terminal(self) -> Frame:
        """The recorded terminal frame (``completed``, ``cancelled`` or ``failed``)."""
        return self.frames[-1]

    @property
    def duration_s(self) -> float:
        """Seconds from ``opened`` to the terminal frame in the recording."""
        return self.frames[-1].at

    def text(self, channel: str = "assistant.delta") -> str:
        """The payloads of the ``output`` frames on ``channel``, joined."""
        return "".join(
            str(f.payload) for f in self.frames if f.kind == "output" and f.channel == channel
        )

    def __repr__(self) -> str:
        where = "" if self.path is None else f", path={self.path.name!r}"
        return (
            f"Cassette(kind={self.kind!r}, mode={self.mode!r}, frames={len(self.frames)}, "
            f"terminal={self.terminal.kind!r}{where})"
        )


_FROM_START = (
    "record a settled stream from its start: the frames read from session.output right "
    "after attach (sn.read_until_terminal), or (ledger, stream_ref) with "
    "sn.Ledger(record_frames=True)"
)


def record_cassette(
    source: Sequence[Frame] | tuple[Ledger, str],
    path: str | os.PathLike[str],
    *,
    meta: Mapping[str, Any] | None = None,
    config: ProviderConfig | None = None,
) -> Cassette:
    """Write a settled stream's outbound frames to a cassette file.

    Parameters
    ----------
    source : sequence of Frame, or (Ledger, stream_ref)
        The frames read from ``session.output`` from ``opened`` to the terminal, or a
        ledger created with ``sn.Ledger(record_frames=True)`` and the stream's ref.
    path : path-like
        The file to write (conventionally ``*.json``); replaced atomically.
    meta : dict, optional
        JSON facts for the header (prompt, purpose...). Never put a key here.
    config : ProviderConfig, optional
        The provider the stream used: its non-secret facts (``config.to_dict()``) are
        stored as ``meta["provider"]``, and the write is refused if the file would
        contain its key.

    Returns
    -------
    Cassette
        What was written, with ``path`` set.

    Raises
    ------
    CassetteError
        The stream is not whole (see :meth:`Cassette.from_frames`), the ledger has no
        frames for it, ``meta`` is not JSON, the text would contain the provider key,
        or the file cannot be written.

    Notes
    -----
    Blocking (a small file write and, for a ledger, one query): fine in a notebook
    cell; in a server call it with ``await asyncio.to_thread(record_cassette, ...)``.

    Examples
    --------
    Record a stream read from its start, then load the file back:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import streamnb as sn
    >>> from streamnb.demo import output_only_handler
    >>> runtime = sn.StreamRuntime()
    >>> _ = runtime.register(output_only_handler())
    >>> async def one_stream():
    ...     session = await runtime.attach("tutorial.output_only", {})
    ...     return await sn.read_until_terminal(session.output)
    >>> frames = runtime.run(one_stream())
    >>> folder = tempfile.TemporaryDirectory()
    >>> tape = record_cassette(frames, Path(folder.name) / "reply.json", meta={"why": "docs"})
    >>> again = Cassette.load(tape.path)
    >>> [f.kind for f in again.frames], again.text("stdout"), again.meta
    (['opened', 'progress', 'output', 'completed'], 'hello', {'why': 'docs'})
    >>> folder.cleanup()
    >>> runtime.close()
    """
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], Ledger):
        ledger, ref = source
        frames: Sequence[Frame] = ledger.frame_log(ref)
        if not frames:
            raise CassetteError(
                f"of stream {ref!r}",
                "the ledger holds no frames for it",
                "create the ledger with sn.Ledger(record_frames=True) before attaching, "
                "or pass the frames read from session.output",
            )
    else:
        frames = list(cast("Sequence[Frame]", source))
    full_meta = dict(meta or {})
    if config is not None:
        full_meta.setdefault("provider", config.to_dict())
    cassette = Cassette.from_frames(frames, meta=full_meta)
    text = cassette.to_json()
    if config is not None and config.has_key and config.reveal_api_key() in text:
        # Do not echo the key, nor the place it was found.
        raise CassetteError(
            str(path),
            f"the recording contains the key from {config.api_key_env}; nothing was written",
            "remove the key from meta and from the stream's payloads",
        )
    p = Path(path)
    _write(p, text)
    return dataclasses.replace(cassette, path=p)


def shipped_cassette(name: str = "chat_reply") -> Path:
    """The path of a cassette shipped with streamnb.

    Parameters
    ----------
    name : str
        ``"chat_reply"`` (a ~60-token chat reply recorded from the local test server
        through :func:`~streamnb.providers.chat_handler`) or ``"chat_tool_call"`` (a
        reply that calls ``roll_dice`` first). A ``.json`` suffix is optional.

    Returns
    -------
    pathlib.Path
        The ``.json`` file inside the installed package.

    Raises
    ------
    CassetteError
        No shipped cassette has that name (the message lists those that exist).

    Examples
    --------
    >>> shipped_cassette().name
    'chat_reply.json'
    >>> Cassette.load(shipped_cassette("chat_tool_call")).mode
    'bidi'
    """
    stem = name.removesuffix(".json")
    path = _SHIPPED_DIR / f"{stem}.json"
    if not path.is_file():
        known = sorted(p.stem for p in _SHIPPED_DIR.glob("*.json"))
        raise CassetteError(
            repr(name), "no shipped cassette has this name", f"use one of {', '.join(known)}"
        )
    return path


def cassette_handler(
    cassette: Cassette | str | os.PathLike[str],
    kind: str | None = None,
    *,
    speed: float = 1.0,
    mode: Mode | None = None,
    on_detach: Literal["abort", "continue"] = "abort",
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> AttachedStreamHandler:
    """A handler that replays a cassette at its recorded pace.

    Parameters
    ----------
    cassette : Cassette or path-like
        The recording, or a cassette file (read now, so a bad file fails here).
    kind : str, optional
        Stream kind of the handler (default: the recorded kind), e.g.
        ``"tutorial.streaming_chatbot"`` to stand in for the fake chatbot.
    speed : float
        Replay speed: ``1`` is the recorded pace, ``10`` ten times faster,
        ``math.inf`` as fast as possible (no delays). Must be > 0.
    mode : {"output_only", "bidi"}, optional
        Default: the recorded mode. ``"bidi"`` waits for one input (any payload) at
        each recorded wait for the user; ``"output_only"`` replays without waiting.
    on_detach : {"abort", "continue"}
        As for any handler.
    sleep : coroutine function, default ``asyncio.sleep``
        Called with each delay in seconds; replace it with a fake clock's in tests.
    clock : callable, default ``time.monotonic``
        The time in seconds that ``sleep`` waits against; frames are due at recorded
        offsets on this clock (so delays do not accumulate). Pass a fake clock with a
        fake ``sleep``.

    Returns
    -------
    AttachedStreamHandler
        Start payload: anything (ignored). Frames: the recorded ones after ``opened``,
        ending with the recorded terminal; on cancel, ``cancelled`` with the cancel's
        reason and ``terminal={"cancelled": True}``. Ledger event on settlement:
        ``<kind>.settled`` with ``{"kind": terminal kind, "terminal": frame}``.

    Raises
    ------
    CassetteError
        ``cassette`` is a path to a missing or malformed file.
    ValueError
        ``speed`` is not > 0, or ``mode`` is not a mode.

    Examples
    --------
    The shipped chat reply, replayed without its pauses (``speed=math.inf``); a
    ``bidi`` recording waits for the user's message where the original did:

    >>> import math
    >>> import streamnb as sn
    >>> runtime = sn.StreamRuntime()
    >>> _ = runtime.register(cassette_handler(shipped_cassette(), "replay.chat", speed=math.inf))
    >>> async def ask(text):
    ...     session = await runtime.attach("replay.chat")
    ...     await session.send(text)
    ...     return await sn.read_until_terminal(session.output)
    >>> frames = runtime.run(ask("What is an attached stream?"))
    >>> frames[-1].kind, "".join(f.payload for f in frames if f.kind == "output")[:12]
    ('completed', 'An attached ')
    >>> runtime.ledger.events()["kind"].tolist()
    ['replay.chat.settled']
    >>> runtime.close()
    """
    tape = cassette if isinstance(cassette, Cassette) else Cassette.load(cassette)
    if not speed > 0:  # also refuses NaN
        raise ValueError(f"speed must be > 0 (math.inf for no delays), got {speed!r}")
    run_mode = tape.mode if mode is None else mode
    if run_mode not in _MODES:
        raise ValueError(f"mode must be 'output_only' or 'bidi', got {mode!r}")
    stream_kind = tape.kind if kind is None else kind
    steps = _plan(tape, run_mode, speed)

    async def run(
        _start: Any, input: AsyncIterator[Frame], ctx: StreamContext
    ) -> AsyncGenerator[Any, None]:
        signal = ctx.signal
        stop: asyncio.Future[Any] | None = None
        # Each frame is due at a point of a timeline, not after a fresh sleep, so that
        # timer slack and the runtime's own work do not add up over a long reply.
        due = clock()
        try:
            for step in steps:
                if step.wait_for_input:
                    if not await _next_input(input, signal):
                        break
                    due = clock()
                due += step.delay_s
                delay_s = due - clock()
                if delay_s > 0 and not signal.aborted:
                    if stop is None:
                        stop = asyncio.ensure_future(signal.wait())
                    await _pause(delay_s, stop, sleep)
                if signal.aborted:
                    break
                yield step.spec()
            else:
                return
            yield cancelled(signal.reason or "cancelled")
        finally:
            if stop is not None:
                stop.cancel()
                await asyncio.gather(stop, return_exceptions=True)

    return AttachedStreamHandler(
        kind=stream_kind,
        mode=run_mode,
        cancellation="cooperative",
        on_detach=on_detach,
        parse_start=parse_ok,
        run=run,
        commit_terminal=settled_event(stream_kind),
    )


@dataclass(frozen=True, slots=True)
class _Step:
    """One replayed frame: wait for input first?, then pause ``delay_s``, then yield."""

    wait_for_input: bool
    delay_s: float
    frame: Frame

    def spec(self) -> dict[str, Any]:
        f = self.frame
        if f.kind == "output" and type(f.payload) is str:
            return {"kind": "output", "channel": f.channel, "payload": f.payload}
        spec = {
            key: copy.deepcopy(value)
            for key, value in (
                ("kind", f.kind),
                ("channel", f.channel),
                ("payload", f.payload),
                ("reason", f.reason),
                ("error", f.error),
                ("terminal", f.terminal),
            )
            if value is not None
        }
        return spec


def _plan(tape: Cassette, mode: str, speed: float) -> list[_Step]:
    frames = tape.frames
    waits = {i + 1 for i, f in enumerate(frames) if _is_wait_point(f)}
    if mode == "bidi" and not waits:
        first_output = next((i for i, f in enumerate(frames) if f.kind == "output"), None)
        waits = {len(frames) - 1 if first_output is None else first_output}
    steps = []
    for i in range(1, len(frames)):
        waits_here = mode == "bidi" and i in waits
        gap = frames[i].at - frames[i - 1].at
        if waits_here:
            gap = min(gap, _MAX_INPUT_GAP_S)
        delay = 0.0 if math.isinf(speed) else max(0.0, gap) / speed
        steps.append(_Step(waits_here, delay, frames[i]))
    return steps


def _is_wait_point(frame: Frame) -> bool:
    payload = frame.payload
    return (
        frame.kind == "progress"
        and isinstance(payload, Mapping)
        and payload.get("phase") == "waiting_for_user"
    )


async def _next_input(input: AsyncIterator[Frame], signal: AbortSignal) -> bool:
    """Wait for the next ``input`` frame; ``False`` if the stream is cancelled first."""
    while not signal.aborted:
        try:
            frame = await input.__anext__()
        except StopAsyncIteration:  # the runtime ends input on cancel
            return False
        if frame.kind == "input":
            return not signal.aborted
    return False


async def _pause(delay_s: float, stop: asyncio.Future[Any], sleep: Sleep) -> None:
    """Sleep ``delay_s`` seconds, or less if ``stop`` (the cancel signal) fires first."""
    nap = asyncio.ensure_future(sleep(delay_s))
    try:
        await asyncio.wait((nap, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not nap.done():
            nap.cancel()
            await asyncio.gather(nap, return_exceptions=True)


def _check_frames(frames: Sequence[Frame], where: str) -> None:
    if not frames:
        raise CassetteError(where, "there are no frames")
    last_at = 0.0
    for i, frame in enumerate(frames):
        if not isinstance(frame, Frame):
            raise CassetteError(where, f"frames[{i}] is not a Frame")
        if i == 0 and frame.kind != "opened":
            raise CassetteError(where, f"the first frame is {frame.kind!r}, not 'opened'")
        if frame.seq != i:
            raise CassetteError(
                where, f"frames[{i}] has seq {frame.seq}, expected {i} (a frame is missing)"
            )
        if frame.kind == "input":
            raise CassetteError(where, f"frames[{i}] is an input frame; only outbound are kept")
        if frame.is_terminal and i != len(frames) - 1:
            raise CassetteError(where, f"frames[{i}] is terminal but is not the last frame")
        at = frame.at
        if not math.isfinite(at) or at < last_at:
            raise CassetteError(
                where, f"frames[{i}] has 'at' {at!r}; times must be seconds since opened, rising"
            )
        last_at = at
    if frames[-1].kind not in TERMINAL_KINDS:
        raise CassetteError(
            where,
            f"the last frame is {frames[-1].kind!r}, not a terminal frame (the stream had "
            "not settled)",
            "record after the stream settled",
        )


def _jsonable_meta(meta: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise CassetteError(where, "meta must be a dict of JSON values")
    try:
        out: dict[str, Any] = json.loads(json.dumps(dict(meta), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise CassetteError(where, f"meta is not JSON ({exc})") from exc
    return out


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CassetteError(str(path), f"cannot be written ({exc})") from exc


def _where(path: Path | None) -> str:
    return "(in memory)" if path is None else str(path)
