"""Bad-input catalogue (guarantee 6): every entry point, malformed or hostile input.

Each row calls one public entry point (Python API, ledger, projection, widget
messages, HTTP) with malformed, wrongly typed, oversized or hostile input and
expects a :class:`streamnb.StreamnbError` whose message says what to do, and
*nothing changed*: the ledger's streams and events, every stream's frame log,
inbox, cancel state and observers are the same before and after, and the ledger
still takes writes afterwards (a bad ``ledger.sql("BEGIN")`` once left the
writer's connection inside a transaction and every later write failed).

Rows that look hostile but are valid input (HTML in text, a huge payload, a
duplicate input seq) are in ``ACCEPTED``: they must go through unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import streamnb as sn
from streamnb.demo import chatbot_handler
from tests._server_util import eventually

pytest_plugins = ["tests._server"]  # uvicorn on 127.0.0.1 for the HTTP rows

pytestmark = pytest.mark.timeout(60)

ECHO = "bad.echo"  # bidi: echoes each input as one output frame; "end" completes
WAITER = "bad.waiter"  # output_only: runs until cancelled, then settles after `release`
BIDI_WAITER = "bad.bidi_waiter"  # the same, bidi
STRICT = "bad.strict"  # parse_start wants {"topic": str}
RAISING_PARSE = "bad.raising_parse"
GARBAGE_PARSE = "bad.garbage_parse"
LONE = "\ud800"  # a lone surrogate: a Python str, not Unicode text
ENDLESS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>\u202e\x00'\"&"


def handlers(release: asyncio.Event) -> list[sn.AttachedStreamHandler]:
    async def echo(start: Any, input: Any, ctx: Any) -> AsyncIterator[Any]:
        async for frame in input:
            if frame.payload == "end":
                yield sn.completed()
                return
            yield sn.output(frame.payload if isinstance(frame.payload, str) else "x")

    async def waiter(start: Any, input: Any, ctx: Any) -> AsyncIterator[Any]:
        await ctx.signal.wait()
        await release.wait()  # stays "being cancelled" until the test ends
        yield sn.cancelled(ctx.signal.reason or "cancelled")

    def commit(terminal: sn.Frame, tx: sn.LedgerTx) -> None:
        tx.insert_event("bad.settled", {"kind": terminal.kind})

    def strict(raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("topic"), str):
            return sn.ParseOk(raw)
        return sn.ParseError(["'topic' must be a string"])

    def raising(raw: Any) -> Any:
        raise KeyError("topic")

    async def done(start: Any, input: Any, ctx: Any) -> AsyncIterator[Any]:
        yield sn.completed()

    return [
        sn.AttachedStreamHandler(kind=ECHO, mode="bidi", run=echo, commit_terminal=commit),
        sn.AttachedStreamHandler(kind=WAITER, run=waiter, commit_terminal=commit),
        sn.AttachedStreamHandler(kind=BIDI_WAITER, mode="bidi", run=waiter, commit_terminal=commit),
        sn.AttachedStreamHandler(kind=STRICT, run=done, parse_start=strict),
        sn.AttachedStreamHandler(kind=RAISING_PARSE, run=done, parse_start=raising),
        sn.AttachedStreamHandler(kind=GARBAGE_PARSE, run=done, parse_start=lambda raw: None),
    ]


async def _run(start: Any, input: Any, ctx: Any) -> AsyncIterator[Any]:
    yield sn.completed()


def _generator_commit(terminal: sn.Frame, tx: sn.LedgerTx) -> Any:
    tx.insert_event("lost", {})
    yield


@dataclass
class World:
    rt: sn.StreamRuntime
    running: sn.Session  # bidi, waiting for input
    settled: sn.Session  # bidi, completed
    waiting: sn.Session  # output_only, running
    cancelling: sn.Session  # bidi, cancel requested, not yet settled


@pytest.fixture
async def world() -> AsyncIterator[World]:
    release = asyncio.Event()
    rt = sn.StreamRuntime(cancel_grace_s=30, force_wait_s=1)
    for h in handlers(release):
        rt.register(h)
    running = await rt.attach(ECHO)
    await running.send("hi")
    settled = await rt.attach(ECHO)
    await settled.send("end")
    await settled.wait(5)
    waiting = await rt.attach(WAITER)
    cancelling = await rt.attach(BIDI_WAITER)
    await cancelling.cancel("on its way out")
    await eventually(lambda: len(rt.frame_log(running.stream_ref)) == 2)  # opened, "hi": idle
    try:
        yield World(rt, running, settled, waiting, cancelling)
    finally:
        release.set()
        await rt.aclose()
        rt.ledger.close()


def snapshot(rt: sn.StreamRuntime) -> Any:
    """Everything a bad call must leave alone."""
    ledger = rt.ledger
    streams = ledger.sql("SELECT * FROM streams ORDER BY stream_ref").to_json(orient="values")
    events = ledger.sql("SELECT * FROM events ORDER BY id").to_json(orient="values")
    memory = {}
    for ref in list(rt._streams):
        info = rt.info(ref)
        st = rt._streams[ref]
        memory[ref] = (
            info.status,
            info.next_seq,
            info.observers,
            info.cancel_requested,
            info.cancel_reason,
            rt.frame_log(ref),
            list(st.inbox or ()),
            sorted(st.input_seqs or ()),
            st.next_input_seq,
        )
    return streams, events, memory, rt.kinds


async def still_writes(rt: sn.StreamRuntime) -> None:
    """The ledger still commits: a new stream opens and settles with its event."""
    s = await rt.attach(ECHO)
    await s.send("end")
    assert (await s.wait(5)).kind == "completed"
    assert rt.ledger.events(stream_ref=s.stream_ref).payload.tolist() == [{"kind": "completed"}]


Call = Callable[[World], Any]

# (id, call, expected error, regex the message must match)
RAISES: list[tuple[str, Call, type[sn.StreamnbError], str]] = [
    # --- attach -------------------------------------------------------------------------
    ("attach-unknown-kind", lambda w: w.rt.attach("no.such"), sn.UnknownKindError, "register"),
    ("attach-kind-none", lambda w: w.rt.attach(None), sn.UnknownKindError, "registered"),
    ("attach-kind-int", lambda w: w.rt.attach(42), sn.UnknownKindError, "registered"),
    ("attach-kind-list", lambda w: w.rt.attach([ECHO]), sn.UnknownKindError, "registered"),
    ("attach-kind-html", lambda w: w.rt.attach(HOSTILE), sn.UnknownKindError, "spelling"),
    ("attach-kind-surrogate", lambda w: w.rt.attach(LONE), sn.UnknownKindError, "spelling"),
    ("attach-start-missing", lambda w: w.rt.attach(STRICT, {}), sn.StartRejectedError, "topic"),
    (
        "attach-start-wrong-type",
        lambda w: w.rt.attach(STRICT, {"topic": 7}),
        sn.StartRejectedError,
        "no stream was opened",
    ),
    (
        "attach-start-not-a-dict",
        lambda w: w.rt.attach(STRICT, ["topic"]),
        sn.StartRejectedError,
        "fix the payload",
    ),
    (
        "attach-parse-start-raises",
        lambda w: w.rt.attach(RAISING_PARSE, {}),
        sn.StartRejectedError,
        "parse_start raised KeyError",
    ),
    (
        "attach-parse-start-returns-garbage",
        lambda w: w.rt.attach(GARBAGE_PARSE, {}),
        sn.StartRejectedError,
        "ParseOk or ParseError",
    ),
    # --- send ----------------------------------------------------------------------------
    ("send-output-only", lambda w: w.waiting.send("x"), sn.InputNotAcceptedError, "output_only"),
    ("send-settled", lambda w: w.settled.send("x"), sn.StreamSettledError, "attach a new"),
    (
        "send-while-cancelling",
        lambda w: w.rt.send(w.cancelling.stream_ref, "x"),
        sn.InputNotAcceptedError,
        "being cancelled",
    ),
    (
        "send-seq-negative",
        lambda w: w.running.send({"kind": "input", "seq": -1, "payload": "x"}),
        sn.InvalidFrameError,
        "integer >= 0",
    ),
    (
        "send-seq-str",
        lambda w: w.running.send({"kind": "input", "seq": "5", "payload": "x"}),
        sn.InvalidFrameError,
        "integer",
    ),
    (
        "send-seq-bool",
        lambda w: w.running.send({"kind": "input", "seq": True, "payload": "x"}),
        sn.InvalidFrameError,
        "integer",
    ),
    (
        "send-seq-float",
        lambda w: w.running.send({"kind": "input", "seq": 1.0, "payload": "x"}),
        sn.InvalidFrameError,
        "integer",
    ),
    (
        "send-unknown-keys",
        lambda w: w.running.send({"kind": "input", "payload": "x", "streamRef": "st"}),
        sn.InvalidFrameError,
        "unknown keys",
    ),
    (
        "send-other-stream",
        lambda w: w.running.send({"kind": "input", "stream_ref": "st_other", "payload": "x"}),
        sn.InvalidFrameError,
        "not",
    ),
    (
        "send-outbound-frame",
        lambda w: w.running.send(sn.Frame("output", w.running.stream_ref, 1, 0.0, "c", "x")),
        sn.InvalidFrameError,
        "only 'input' frames",
    ),
    ("send-set", lambda w: w.running.send({1, 2}), sn.InvalidFrameError, "JSON"),
    ("send-bytes", lambda w: w.running.send(b"\xff\xfe"), sn.InvalidFrameError, "JSON"),
    ("send-object", lambda w: w.running.send(object()), sn.InvalidFrameError, "JSON"),
    ("send-nan", lambda w: w.running.send(float("nan")), sn.InvalidFrameError, "JSON"),
    ("send-inf", lambda w: w.running.send(float("-inf")), sn.InvalidFrameError, "JSON"),
    (
        "send-nested-nan",
        lambda w: w.running.send({"a": [1, {"b": float("nan")}]}),
        sn.InvalidFrameError,
        "JSON",
    ),
    (
        "send-lone-surrogate",
        lambda w: w.running.send("hi " + LONE),
        sn.InvalidFrameError,
        "surrogate.*errors='replace'",
    ),
    (
        "send-lone-surrogate-nested",
        lambda w: w.running.send({"kind": "input", "payload": {"t": ["ok", "\udfff"]}}),
        sn.InvalidFrameError,
        "surrogate",
    ),
    (
        "send-lone-surrogate-key",
        lambda w: w.running.send({LONE: 1}),
        sn.InvalidFrameError,
        "surrogate",
    ),
    (
        "send-unknown-ref",
        lambda w: w.rt.send("st_nope", "x"),
        sn.UnknownStreamError,
        "ledger.streams",
    ),
    # --- reattach / follow ---------------------------------------------------------------
    ("reattach-unknown", lambda w: w.rt.reattach("st_nope"), sn.UnknownStreamError, "ledger"),
    ("reattach-ref-none", lambda w: w.rt.reattach(None), sn.UnknownStreamError, "no stream"),
    ("reattach-ref-list", lambda w: w.rt.reattach(["st"]), sn.UnknownStreamError, "no stream"),
    (
        "reattach-after-seq-below-minus-one",
        lambda w: w.rt.reattach(w.running.stream_ref, after_seq=-2),
        sn.InvalidFrameError,
        ">= -1",
    ),
    (
        "reattach-after-seq-str",
        lambda w: w.rt.reattach(w.running.stream_ref, after_seq="3"),
        sn.InvalidFrameError,
        "an int",
    ),
    (
        "reattach-after-seq-float",
        lambda w: w.rt.reattach(w.running.stream_ref, after_seq=1.5),
        sn.InvalidFrameError,
        "an int",
    ),
    (
        "reattach-after-seq-bool",
        lambda w: w.rt.reattach(w.running.stream_ref, after_seq=True),
        sn.InvalidFrameError,
        "an int",
    ),
    (
        "follow-after-seq-str",
        lambda w: w.rt.follow(w.running.stream_ref, "x"),
        sn.InvalidFrameError,
        "an int",
    ),
    # --- cancel --------------------------------------------------------------------------
    ("cancel-reason-int", lambda w: w.running.cancel(123), sn.InvalidFrameError, "a str"),
    ("cancel-reason-none", lambda w: w.running.cancel(None), sn.InvalidFrameError, "a str"),
    ("cancel-reason-bytes", lambda w: w.running.cancel(b"stop"), sn.InvalidFrameError, "a str"),
    (
        "cancel-reason-surrogate",
        lambda w: w.running.cancel("stop " + LONE),
        sn.InvalidFrameError,
        "surrogate",
    ),
    (
        "runtime-cancel-reason-list",
        lambda w: w.rt.cancel(w.running.stream_ref, ["x"]),
        sn.InvalidFrameError,
        "a str",
    ),
    ("runtime-cancel-unknown", lambda w: w.rt.cancel("st_nope"), sn.UnknownStreamError, "no"),
    # --- ledger queries ------------------------------------------------------------------
    *[
        (
            f"sql-{i}-{q.split()[0].lower()}",
            lambda w, q=q: w.rt.ledger.sql(q),
            sn.LedgerQueryError,
            m,
        )
        for i, (q, m) in enumerate(
            [
                ("DELETE FROM events", "read-only"),
                ("UPDATE streams SET status='completed'", "read-only"),
                ("INSERT INTO events (kind, created_at) VALUES ('x', 0)", "read-only"),
                ("DROP TABLE streams", "read-only"),
                ("CREATE TABLE t (a)", "read-only"),
                ("CREATE TEMP TABLE t (a)", "read-only"),
                ("BEGIN", "not authorized"),
                ("BEGIN IMMEDIATE", "not authorized"),
                ("COMMIT", "not authorized"),
                ("SAVEPOINT s", "not authorized"),
                ("ATTACH DATABASE ':memory:' AS other", "not authorized"),
                ("PRAGMA journal_mode=DELETE", "not authorized"),
                ("PRAGMA query_only=OFF", "not authorized"),
                ("PRAGMA busy_timeout=0", "not authorized"),
                ("VACUUM", "read-only"),
                ("SELECT 1; DELETE FROM events", "one statement"),
                ("SELEKT * FROM streams", "syntax error"),
                ("SELECT * FROM no_such_table", "no such table"),
            ]
        )
    ],
    ("sql-not-a-str", lambda w: w.rt.ledger.sql(b"SELECT 1"), sn.LedgerQueryError, "a str"),
    (
        "sql-params-missing",
        lambda w: w.rt.ledger.sql("SELECT ?"),
        sn.LedgerQueryError,
        "bindings",
    ),
    (
        "sql-params-unsupported",
        lambda w: w.rt.ledger.sql("SELECT ?", (object(),)),
        sn.LedgerQueryError,
        "read-only SELECT",
    ),
    (
        "sql-params-int-too-large",
        lambda w: w.rt.ledger.sql("SELECT ?", (2**70,)),
        sn.LedgerQueryError,
        "too large",
    ),
    # queries that would run for ever, or allocate without bound (issue 15): time limits
    (
        "sql-endless-recursive-cte",
        lambda w: w.rt.ledger.sql(ENDLESS, timeout_s=0.3),
        sn.LedgerTimeoutError,
        r"stopped after 0\.3 s",
    ),
    (
        "asql-endless-recursive-cte",
        lambda w: w.rt.ledger.asql(ENDLESS, timeout_s=0.3),
        sn.LedgerTimeoutError,
        "narrow the query",
    ),
    (
        "sql-randomblob-too-big",
        lambda w: w.rt.ledger.sql("SELECT randomblob(2000000000)"),
        sn.LedgerQueryError,
        "too big",
    ),
    ("sql-timeout-zero", lambda w: w.rt.ledger.sql("SELECT 1", timeout_s=0), sn.LedgerError, "> 0"),
    (
        "sql-timeout-str",
        lambda w: w.rt.ledger.sql("SELECT 1", timeout_s="1"),
        sn.LedgerError,
        "> 0",
    ),
    (
        "frame-log-after-seq-str",
        lambda w: w.rt.ledger.frame_log("st_x", after_seq="3"),
        sn.LedgerError,
        "after_seq must be",
    ),
    (
        "runtime-frame-log-limit-negative",
        lambda w: w.rt.frame_log(w.running.stream_ref, limit=-1),
        sn.InvalidFrameError,
        "limit must be",
    ),
    (
        "handler-generator-commit-terminal",
        lambda w: sn.AttachedStreamHandler(kind="gen", run=_run, commit_terminal=_generator_commit),
        sn.HandlerDefinitionError,
        "generator",
    ),
    ("events-kind-list", lambda w: w.rt.ledger.events(kind=["x"]), sn.LedgerError, "str or None"),
    ("streams-status-int", lambda w: w.rt.ledger.streams(status=1), sn.LedgerError, "str or None"),
    (
        "frames-ref-object",
        lambda w: w.rt.ledger.frames(stream_ref=object()),
        sn.LedgerError,
        "str or None",
    ),
    # --- projection ------------------------------------------------------------------
    *[
        (
            f"project-{name}",
            lambda w, frames=frames: sn.project_attached_stream(frames, "st_x"),
            sn.InvalidFrameError,
            "Frame.from_dict",
        )
        for name, frames in [
            ("none", None),
            ("int", 42),
            ("str", "opened"),
            ("ints", [1, 2, 3]),
            ("dicts", [{"kind": "opened", "stream_ref": "st_x", "seq": 0, "at": 0.0}]),
            ("seq-str", [sn.Frame("opened", "st_x", 0, 0.0), sn.Frame("output", "st_x", "1", 0.0)]),
            (
                "seq-none",
                [sn.Frame("opened", "st_x", 0, 0.0), sn.Frame("output", "st_x", None, 0.0)],
            ),
            (
                "seq-float",
                [sn.Frame("opened", "st_x", 0.0, 0.0), sn.Frame("output", "st_x", 2.5, 0.0)],
            ),
        ]
    ],
]


@pytest.mark.parametrize(
    ("call", "error", "match"), [r[1:] for r in RAISES], ids=[r[0] for r in RAISES]
)
async def test_bad_python_input_raises_clearly_and_changes_nothing(
    world: World, call: Call, error: type[sn.StreamnbError], match: str
) -> None:
    async def invoke() -> None:
        result = call(world)
        if asyncio.iscoroutine(result):
            await result

    before = snapshot(world.rt)
    with pytest.raises(error, match=match) as info:
        await invoke()
    assert isinstance(info.value, sn.StreamnbError)
    assert len(str(info.value)) > 20  # a sentence, not a bare value
    assert snapshot(world.rt) == before
    await still_writes(world.rt)


def test_each_catalogue_row_has_a_unique_id() -> None:
    ids = [r[0] for r in RAISES] + [r[0] for r in ACCEPTED]
    assert len(ids) == len(set(ids))


# (id, input to the echo stream, the text the echo must stream back)
ACCEPTED: list[tuple[str, Any, str]] = [
    ("html-and-js", HOSTILE, HOSTILE),
    ("huge-8mb", "y" * 8_000_000, "y" * 8_000_000),
    ("emoji-and-rtl", "héllo 👋 \u05e9\u05dc\u05d5\u05dd", "héllo 👋 \u05e9\u05dc\u05d5\u05dd"),
    ("json-looking", '{"kind": "completed"}', '{"kind": "completed"}'),
    ("sql-looking", "'); DROP TABLE events; --", "'); DROP TABLE events; --"),
]


@pytest.mark.parametrize(
    ("text", "echoed"), [r[1:] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED]
)
async def test_hostile_but_valid_text_goes_through_unchanged(
    world: World, text: str, echoed: str
) -> None:
    s = await world.rt.attach(ECHO)
    assert await s.send(text) == "accepted"
    assert await s.send("end") == "accepted"
    frames = await sn.read_until_terminal(s.output, timeout_s=10)
    proj = sn.project_attached_stream(frames, s.stream_ref)
    assert proj.status == "completed"
    assert proj.text() == echoed
    assert json.loads(frames[1].to_json())["payload"] == echoed


async def test_duplicate_input_seq_is_a_retry_and_changes_nothing(world: World) -> None:
    s = world.running
    assert await s.send({"kind": "input", "seq": 40, "payload": "a"}) == "accepted"
    before = snapshot(world.rt)
    assert await s.send({"kind": "input", "seq": 40, "payload": "different"}) == "duplicate"
    assert snapshot(world.rt) == before


async def test_full_inbox_refuses_the_next_input_and_keeps_the_queued_ones() -> None:
    async def deaf(start: Any, input: Any, ctx: Any) -> AsyncIterator[Any]:
        await ctx.signal.wait()
        yield sn.cancelled()

    async with sn.StreamRuntime() as rt:
        rt.register(sn.AttachedStreamHandler(kind="deaf", mode="bidi", run=deaf))
        s = await rt.attach("deaf")
        for i in range(1024):
            await s.send(i)
        before = snapshot(rt)
        with pytest.raises(sn.InputNotAcceptedError, match="not reading input"):
            await s.send("one too many")
        assert snapshot(rt) == before
        await s.cancel()


async def test_start_payload_is_not_validated_by_parse_ok() -> None:
    # Deliberate: parse_ok passes any Python value to an in-process handler (it is not
    # stored or sent anywhere); handlers that need JSON validate it in parse_start.
    seen = []

    async def run(start: Any, input: Any, ctx: Any) -> AsyncIterator[Any]:
        seen.append(start)
        yield sn.completed()

    async with sn.StreamRuntime() as rt:
        rt.register(sn.AttachedStreamHandler(kind="any", run=run))
        token = object()
        assert (await (await rt.attach("any", {"obj": token})).wait(5)).kind == "completed"
        assert seen == [{"obj": token}]


# --- the ledger's constructor ---------------------------------------------------------


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    ("make_path", "kwargs", "match"),
    [
        (lambda d: "", {}, "non-empty file path"),
        (lambda d: 123, {}, "non-empty file path"),
        (lambda d: os.fsencode(d / "x.db"), {}, "non-empty file path"),
        (lambda d: str(d / "nul\x00.db"), {}, "non-empty file path"),
        (lambda d: d, {}, "is a directory"),
        (lambda d: d / "sub", {}, "is a directory"),
        (lambda d: d / "no" / "dir" / "x.db", {}, "does not exist"),
        (lambda d: d / "junk.db", {}, "streamnb ledger"),
        (lambda d: d / "missing.db", {"read_only": True}, "no such file"),
        (lambda d: None, {"read_only": True}, "in-memory"),
        (lambda d: "/proc/streamnb-ledger.db", {}, "lock file"),
    ],
    ids=[
        "empty",
        "int",
        "bytes",
        "nul",
        "directory",
        "subdirectory",
        "missing-dir",
        "junk-file",
        "read-only-missing",
        "read-only-memory",
        "unwritable-dir",
    ],
)
def test_bad_ledger_paths_raise_ledger_error_and_create_nothing(
    tmp_path: Path, make_path: Callable[[Path], Any], kwargs: dict[str, Any], match: str
) -> None:
    (tmp_path / "sub").mkdir()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    before = _files(tmp_path)
    with pytest.raises(sn.LedgerError, match=match):
        sn.Ledger(make_path(tmp_path), **kwargs)
    after = _files(tmp_path)
    # opening takes the writer lock before reading the file: a junk file gets its lock file
    assert [f for f in after if f not in before] in ([], ["junk.db.lock"])
    assert junk.read_bytes() == b"this is not sqlite" * 100


# --- widget messages from the front end ------------------------------------------------


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"type": "explode"}, "unknown widget message"),
        ({"type": "send"}, "string 'text'"),
        ({"type": "send", "text": 3}, "string 'text'"),
        ({"type": "send", "text": None}, "string 'text'"),
        ({"text": "hi"}, "unknown widget message"),
        ("stop", "unknown widget message"),
        (None, "unknown widget message"),
        ([{"type": "stop"}], "unknown widget message"),
        ({"type": "send", "text": "hi " + LONE}, "surrogate"),
    ],
    ids=[
        "unknown-type",
        "missing-text",
        "int-text",
        "null-text",
        "no-type",
        "str",
        "none",
        "list",
        "surrogate-text",
    ],
)
async def test_malformed_widget_messages_set_the_error_and_change_nothing(
    content: Any, match: str
) -> None:
    from streamnb.widget import StreamWidget

    rt = sn.StreamRuntime(cancel_grace_s=0.2, force_wait_s=0.2)
    rt.register(chatbot_handler())
    try:
        session = await rt.attach("tutorial.streaming_chatbot", {})
        widget = StreamWidget(session)
        await eventually(lambda: len(rt.frame_log(session.stream_ref)) == 2)  # waits for input
        before = snapshot(rt)
        widget._handle_custom_msg(content, [])
        await asyncio.gather(*list(widget._tasks), return_exceptions=True)
        assert re.search(match, widget.error), widget.error
        assert snapshot(rt) == before
        assert widget.status == "running"
        # the widget still works: a good message goes through
        widget.error = ""
        widget._handle_custom_msg({"type": "send", "text": HOSTILE}, [])
        await widget.wait(10)
        assert widget.status == "completed" and widget.error == ""
        assert widget.text().endswith(HOSTILE)  # text, never HTML
        widget.close()
    finally:
        await rt.aclose()
        rt.ledger.close()


async def test_huge_widget_text_is_sent_intact() -> None:
    from streamnb.widget import StreamWidget

    async with sn.StreamRuntime() as rt:
        rt.register(chatbot_handler())
        widget = StreamWidget(await rt.attach("tutorial.streaming_chatbot", {}))
        huge = "z" * 2_000_000
        widget._handle_custom_msg({"type": "send", "text": huge}, [])
        await widget.wait(10)
        assert widget.status == "completed" and widget.error == ""
        assert widget.text().endswith(huge)
        widget.close()


# --- HTTP (the rows tests/test_server_errors.py does not have) --------------------------


async def test_http_lone_surrogates_are_422_and_the_ledger_keeps_working(
    client: httpx.AsyncClient, server_runtime: sn.StreamRuntime
) -> None:
    ref = (await client.post("/streams", json={"kind": "tutorial.streaming_chatbot"})).json()[
        "stream_ref"
    ]
    await eventually(lambda: len(server_runtime.frame_log(ref)) == 2)  # opened, progress: idle
    before = snapshot(server_runtime)
    escaped = b'"\\ud800"'  # valid JSON grammar; Python decodes it to a lone surrogate
    for path, body in [
        (f"/streams/{ref}/cancel", b'{"reason": ' + escaped + b"}"),
        (f"/streams/{ref}/input", b'{"payload": ' + escaped + b"}"),
        (f"/streams/{ref}/input", b'{"payload": {"t": [' + escaped + b"]}}"),
    ]:
        response = await client.post(
            path, content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["type"] == "invalid_frame"
        assert "surrogate" in response.json()["error"]["message"]
    assert snapshot(server_runtime) == before
    response = await client.post(f"/streams/{ref}/input", json={"payload": HOSTILE})
    assert response.status_code == 200
    terminal = await server_runtime.wait(ref, timeout_s=10)
    assert terminal.kind == "completed"
    assert server_runtime.ledger.stream_status(ref) == "completed"


# --- chat rooms (issue 15): names, SQL, text -----------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda r, t: r.create_room("bell" + chr(7)),
            "RoomNameError",
            r"control character U\+0007",
        ),
        (lambda r, t: r.create_room("half " + LONE), "RoomNameError", "lone surrogate"),
        (lambda r, t: r.sql(f"ATTACH DATABASE '{t}' AS x"), "LedgerQueryError", "auth"),
        (lambda r, t: r.sql(f"VACUUM INTO '{t}'"), "LedgerQueryError", "auth"),
        (lambda r, t: r.sql(ENDLESS, timeout_s=0.3), "LedgerTimeoutError", "stopped after"),
    ],
    ids=["name-control", "name-lone-surrogate", "sql-attach", "sql-vacuum-into", "sql-endless"],
)
async def test_bad_rooms_input_raises_clearly_and_changes_nothing(
    tmp_path: Path, call: Callable[[Any, Path], Any], error: str, match: str
) -> None:
    from streamnb.rooms import ChatRooms

    rooms = ChatRooms()
    try:
        room_id = rooms.create_room("Lobby")
        before = (rooms.room_infos(), rooms.room(room_id).message_list())
        target = tmp_path / "created-by-a-query.db"
        with pytest.raises(sn.StreamnbError, match=match) as info:
            call(rooms, target)
        assert type(info.value).__name__ == error
        assert (rooms.room_infos(), rooms.room(room_id).message_list()) == before
        assert not target.exists()
    finally:
        await rooms.aclose()


async def test_hostile_but_valid_room_text_is_kept_mended() -> None:
    from streamnb.rooms import ChatRooms

    rooms = ChatRooms()
    try:
        family = "Family \U0001f468\u200d\U0001f469\u200d\U0001f467"  # a ZWJ sequence: text
        room = rooms.room(rooms.create_room(family))
        assert room.name == family
        await room.send(HOSTILE + " half " + LONE)
        reply = await room.wait(timeout_s=10)
        assert reply is not None and reply.status == "completed"
        assert room.message_list()[0].content == HOSTILE + " half \ufffd"
    finally:
        await rooms.aclose()


# --- HTTP requests a page of another site makes (issue 15) ----------------------------------


async def test_http_requests_of_other_pages_are_refused_and_change_nothing(
    server: Any, client: httpx.AsyncClient, server_runtime: sn.StreamRuntime
) -> None:
    ref = (await client.post("/streams", json={"kind": "tutorial.streaming_chatbot"})).json()[
        "stream_ref"
    ]
    await eventually(lambda: len(server_runtime.frame_log(ref)) == 2)
    before = snapshot(server_runtime)
    create = b'{"kind": "tutorial.output_only"}'
    for method, path, body, headers, status, code in [
        ("GET", "/ledger/streams", None, {"host": "evil.example"}, 403, "host_not_allowed"),
        ("POST", "/streams", create, {"content-type": "text/plain"}, 415, "unsupported_media_type"),
        ("POST", "/streams", create, {}, 415, "unsupported_media_type"),
        (
            "POST",
            "/streams",
            b"kind=tutorial.output_only",
            {"content-type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        (
            "POST",
            f"/streams/{ref}/cancel",
            b"{}",
            {"content-type": "application/json", "origin": "http://evil.example"},
            403,
            "origin_not_allowed",
        ),
        (
            "POST",
            f"/streams/{ref}/input",
            b'{"payload": "x"}',
            {"content-type": "application/json", "origin": "null"},
            403,
            "origin_not_allowed",
        ),
    ]:
        response = await client.request(method, path, content=body, headers=headers)
        assert response.status_code == status, (path, headers, response.text)
        assert response.json()["error"]["type"] == code
    assert snapshot(server_runtime) == before
