"""Build the tutorial notebooks 01-04 from the cell lists below (then execute them).

    python notebooks/build/build_tutorials.py            # writes notebooks/0[1-4]_*.ipynb
    jupyter nbconvert --to notebook --execute --inplace \
        --ExecutePreprocessor.store_widget_state=False notebooks/0[1-4]_*.ipynb

The notebooks are the source of truth users edit in JupyterLab; this script is how
they were first written, kept so a change to all four stays one edit.

A cell of kind ``"widget"`` displays a widget: it is tagged ``nbval-ignore-output``,
because what it stores (the transcript saved once the stream settled, see
``streamnb/widget/_saved.py``) is not what nbval sees when it runs the cell (the live
widget, just started). The facts each widget shows are printed by the cells after it.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent.parent


def nb(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    book.metadata["language_info"] = {"name": "python"}
    for kind, src in cells:
        src = src.strip("\n")
        cell = nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
        if kind == "widget":
            cell.metadata["tags"] = ["nbval-ignore-output"]
        book.cells.append(cell)
    return book


OUTPUT_ONLY = [
    ("md", """
# 1 · An output-only attached stream

An *attached stream* is long-running work in the kernel that a notebook attaches to,
watches frame by frame, and can stop; whatever happens, it ends in **exactly one
settlement** committed to a queryable ledger. (The words are defined in
[docs/concepts.md](../docs/concepts.md).) This tutorial is the Python form of
*Output-Only Attached Stream*, one of the five TypeScript tutorials streamnb grew from
(the "seed" tutorials: 000 streaming chatbot, 001 output-only stream, 002 SSE chat
server, 003 streaming patterns, 004 chat rooms):

1. define an `output_only` handler,
2. attach to it and watch it in the widget,
3. fold the frames with `project_attached_stream`,
4. see that **detach is not cancel**.
"""),
    ("code", """
import streamnb as sn
from streamnb.testing import FakeTokenSource, assert_checkpoint, checkpoint_path, lorem_tokens

runtime = sn.StreamRuntime()   # an in-memory SQLite ledger by default
runtime
"""),
    ("md", """
## Define the handler

A handler names a stream **kind** and says how it runs. `run` is an async generator:
it yields frames as plain dicts, exactly as in the TypeScript tutorial. `commit_terminal`
runs once, when the stream ends, inside the same ledger transaction as the runtime's own
record.

The original handler emits one `"hello"`; ours streams words from a fake token source at
30 tokens/s so there is something to watch: 30 of them by default (one second), or as
many as the start payload's `"tokens"` asks for. It writes them on the `stdout` channel;
the widget shows the channels a stream writes.
"""),
    ("code", """
async def run(start, input, ctx):
    yield {"kind": "progress", "payload": {"step": "started"}}
    source = FakeTokenSource(lorem_tokens(start.get("tokens", 30)), rate_tokens_per_s=30)
    async for token in source.stream(start.get("message", "hello")):
        if ctx.signal.aborted:          # cooperative cancel: check the signal
            break
        yield {"kind": "output", "channel": "stdout", "payload": token}
    if ctx.signal.aborted:
        yield {"kind": "cancelled", "reason": "cancelled", "terminal": {"cancelled": True}}
        return
    yield {"kind": "completed", "terminal": {"ok": True}}


def commit_terminal(terminal, tx):
    kind = "cancelled" if terminal.kind == "cancelled" else "completed"
    tx.insert_event(f"tutorial.output_only.{kind}", terminal)


output_only = sn.AttachedStreamHandler(
    kind="tutorial.output_only",
    mode="output_only",
    cancellation="cooperative",
    on_detach="continue",
    parse_start=sn.parse_ok,
    run=run,
    commit_terminal=commit_terminal,
)
runtime.register(output_only)
runtime.kinds
"""),
    ("md", """
## Attach and watch

`attach` opens a stream and returns a **session**, an observer of it. Displaying the
session shows a widget: the status, the latest progress, the tokens as they arrive, and
a **Stop** button. The cell returns at once; the stream runs as a task on the kernel's
event loop, so the button works while the kernel is idle. Once the stream has settled,
the widget's output becomes a transcript of it, which is what this notebook shows when
it is saved and opened again without a kernel.
"""),
    ("widget", """
session = await runtime.attach("tutorial.output_only", {"message": "hello"})
session
"""),
    ("md", """
`session.output` is one async iterator of frames, consumed as it is read. (The widget
reads its own cursor, so both see every frame.) `read_until_terminal` collects frames up
to and including the terminal one.
"""),
    ("code", """
frames = await sn.read_until_terminal(session.output, timeout_s=30)
assert_checkpoint(frames, "opened -> progress -> output* -> completed")
print(checkpoint_path(frames))
print([f.seq for f in frames][:5], "...", frames[-1].seq)
"""),
    ("md", """
## Fold the frames

`project_attached_stream` folds frames into a summary and pandas DataFrames. It accepts
frames in any order, with duplicates or frames of other streams mixed in, and lists seq
numbers it never saw under `omitted`.
"""),
    ("code", """
proj = sn.project_attached_stream(frames, session.stream_ref)
print("status:", proj.status, "| omitted:", proj.omitted, "| outputs:", proj.n_outputs)
print(repr(proj.text("stdout")[-28:]))
proj.frames[["seq", "kind", "channel", "payload"]].head(4)
"""),
    ("code", """
proj.outputs[["channel", "n_frames"]]
"""),
    ("md", """
## Detach is not cancel

`detach()` closes *this observer*: a reader iterating its `output` sees it end, and the
session cannot be used any more (`sn.SessionDetachedError`). The work goes on: this
handler says `on_detach="continue"`, so it still runs to its settlement, which the
runtime can wait for by ref.
"""),
    ("code", """
watcher = await runtime.attach("tutorial.output_only", {"message": "detached"})
await watcher.detach()
try:
    watcher.output
except sn.SessionDetachedError as exc:
    print("reading a detached session:", type(exc).__name__)
terminal = await runtime.wait(watcher.stream_ref, timeout_s=30)
print("the work still settled as:", terminal.kind)
"""),
    ("md", """
An explicit `cancel()` is the intent to stop. It returns at once with `"requested"`; the
handler sees `ctx.signal.aborted` at its next check and yields `cancelled`. The stream
below asks for 600 tokens, 20 seconds at 30 tokens/s: press **Stop** in its widget (or
Ctrl+. inside it) to stop it by hand. The cell after it cancels it for you, so the
notebook also runs top to bottom: to stop it yourself, run the cells one at a time.
"""),
    ("widget", """
stoppable = await runtime.attach("tutorial.output_only", {"message": "stop me", "tokens": 600})
stoppable
"""),
    ("code", """
first = [await stoppable.output.__anext__() for _ in range(3)]   # opened, progress, a token
print(await stoppable.cancel("user"))         # 'requested' (or 'already_requested' after Stop)
rest = await sn.read_until_terminal(stoppable.output, timeout_s=30)
assert_checkpoint(first + rest, "opened -> progress -> output+ -> cancelled")
print(rest[-1].kind, rest[-1].terminal)
print(await stoppable.cancel("again"))        # already_settled
"""),
    ("md", """
## The ledger

Every stream ended in exactly one settlement. The runtime's own record is
`ledger.streams()`; what the handler committed is `ledger.events()`. Both are DataFrames.
"""),
    ("code", """
print(runtime.ledger.streams()[["kind", "status"]].to_string())
print()
print(runtime.ledger.events()[["kind"]].to_string())
"""),
    ("md", """
Next: **2 · Streaming chatbot**, a `bidi` stream that takes input and has a Send box.
"""),
]


CHATBOT = [
    ("md", """
# 2 · A streaming chatbot

A `bidi` (two-way) attached stream: it waits for the user's message, streams a reply
token by token, can be stopped, and commits one settlement. This is *Streaming Chatbot*,
the first of the TypeScript tutorials streamnb grew from (the "seed" tutorials, see
[docs/concepts.md](../docs/concepts.md)), in Python, with its fake token generator.
(Replacing the fake source with a live provider is tutorial 6.)
"""),
    ("code", """
import streamnb as sn
from streamnb.testing import FakeTokenSource, assert_checkpoint, checkpoint_path, lorem_tokens

runtime = sn.StreamRuntime()


def fake_tokens(message):            # the original tutorial's stable token source
    return ["streamnb ", "reply to ", message]
"""),
    ("md", """
## The handler (tutorial 000's, line for line)

`input` is an async iterator of the frames observers `send`; it ends when the stream is
cancelled, which wakes a handler that is waiting for input.
"""),
    ("code", """
async def run(_start, input, ctx):
    yield {"kind": "progress", "payload": {"phase": "waiting_for_user"}}
    async for frame in input:
        if ctx.signal.aborted:
            yield {"kind": "cancelled", "reason": "cancelled", "terminal": {"cancelled": True}}
            return
        if frame.kind != "input":
            continue
        for token in fake_tokens(str(frame.payload)):
            yield {"kind": "output", "channel": "assistant.delta", "payload": token}
        yield {"kind": "completed", "terminal": {"ok": True}}
        return


chatbot = sn.AttachedStreamHandler(
    kind="tutorial.streaming_chatbot",
    mode="bidi",
    cancellation="cooperative",
    on_detach="abort",
    parse_start=sn.parse_ok,
    run=run,
    commit_terminal=lambda terminal, tx: tx.insert_event(
        "tutorial.streaming_chatbot.settled", {"kind": terminal.kind, "terminal": terminal}
    ),
)
runtime.register(chatbot)
runtime.kinds
"""),
    ("md", """
## Completed path

Attach, show the widget (it has a **Message** box and **Send**), and send the user's
input: a full input frame as in the original, or just the payload. The widget shows
each message sent to the stream, from its box or from code, above the reply to it.
"""),
    ("widget", """
session = await runtime.attach("tutorial.streaming_chatbot", {})
widget = sn.StreamWidget(session)
widget
"""),
    ("code", """
print(await session.send({"kind": "input", "stream_ref": session.stream_ref, "seq": 0, "payload": "hello"}))
print(await session.send({"kind": "input", "seq": 0, "payload": "hello"}))   # a retry: same seq
frames = await sn.read_until_terminal(session.output, timeout_s=30)
assert_checkpoint(frames, "opened -> progress -> output* -> completed")
print(checkpoint_path(frames))
print(repr(sn.project_attached_stream(frames, session.stream_ref).text("assistant.delta")))
"""),
    ("code", """
events = runtime.ledger.events(kind="tutorial.streaming_chatbot.settled")
print([p["kind"] for p in events.payload])
"""),
    ("md", """
## Cancel path

Now a slower reply, 200 tokens at 20 tokens/s (10 seconds), so there is time to stop
it. The handler below is the same handler with a paced source and a check of the signal
between tokens. Press **Stop** in the widget (or Ctrl+. in it; Escape only leaves the
Message box), or let the next cell press it for you: `sn.testing.press_stop` sends the
widget the very message the browser sends when you click. The status reads
`stopping…` until the handler has stopped.
"""),
    ("widget", """
slow = FakeTokenSource(lorem_tokens(200), rate_tokens_per_s=20)


async def slow_run(_start, input, ctx):
    yield {"kind": "progress", "payload": {"phase": "waiting_for_user"}}
    async for frame in input:
        async for token in slow.stream(str(frame.payload)):
            if ctx.signal.aborted:
                yield {"kind": "cancelled", "reason": "cancelled", "terminal": {"cancelled": True}}
                return
            yield {"kind": "output", "channel": "assistant.delta", "payload": token}
        yield {"kind": "completed", "terminal": {"ok": True}}
        return


runtime.register(sn.AttachedStreamHandler(
    kind="tutorial.slow_chatbot", mode="bidi", run=slow_run,
    commit_terminal=chatbot.commit_terminal,
))
slow_session = await runtime.attach("tutorial.slow_chatbot", {})
slow_widget = sn.StreamWidget(slow_session)
await slow_session.send("tell me a long story")
slow_widget
"""),
    ("code", """
# wait for a few tokens, then press Stop through the widget's own message path
async for frame in runtime.follow(slow_session.stream_ref):
    if frame.kind == "output" and frame.seq >= 4:
        break
sn.testing.press_stop(slow_widget)
print(await slow_widget.wait(timeout_s=30))
frames = await sn.read_until_terminal(slow_session.output, timeout_s=30)
assert_checkpoint(frames, "opened -> progress -> output+ -> cancelled")
print(frames[-1].kind, frames[-1].terminal, "| reason given to cancel:", slow_widget.reason)
"""),
    ("md", """
And the original's cancel checkpoint, step by step, without a widget: `cancel` returns
`"requested"`, the handler observes `ctx.signal.aborted` (its input iterator ends), the
`cancelled` terminal frame is emitted, and the ledger has the settlement.
"""),
    ("code", """
s = await runtime.attach("tutorial.streaming_chatbot", {})
print(await s.cancel("user pressed stop"))
frames = await sn.read_until_terminal(s.output, timeout_s=30)
assert_checkpoint(frames, "opened -> progress -> cancelled")
print(checkpoint_path(frames))
"""),
    ("md", """
## The ledger rows

One settlement per stream: the runtime's `streams` record and the handler's events agree.
"""),
    ("code", """
streams = runtime.ledger.streams()
print(streams[["kind", "status"]].to_string())
print()
print([p["kind"] for p in runtime.ledger.events().payload])
"""),
    ("md", """
Bad input gets a clear error and changes nothing: sending to a settled stream raises
`StreamSettledError`, an unknown kind raises `UnknownKindError`.
"""),
    ("code", """
try:
    await session.send("anyone there?")
except sn.StreamSettledError as exc:
    print(type(exc).__name__, "->", exc)
try:
    await runtime.attach("tutorial.no_such_kind")
except sn.UnknownKindError as exc:
    print(type(exc).__name__, "->", exc)
"""),
]


PROJECTIONS = [
    ("md", """
# 3 · Projections and the ledger

Many streams at once, folded into DataFrames; SQL over the ledger; plots of tokens over
time and time to first token; and a file ledger read back after the runtime is gone.
"""),
    ("code", """
import asyncio
import tempfile
from pathlib import Path

import streamnb as sn
from streamnb.demo import chatbot_handler
from streamnb.testing import FakeTokenSource, lorem_tokens

workdir = Path(tempfile.mkdtemp())
ledger = sn.Ledger(workdir / "runs.db", record_frames=True)   # a file, WAL mode; every frame kept
runtime = sn.StreamRuntime(ledger)
runtime.register(chatbot_handler(source=FakeTokenSource(lorem_tokens(40), rate_tokens_per_s=400)))
print(ledger)
"""),
    ("md", """
## Twenty conversations at once

Each stream gets a message; every fourth is cancelled before its reply starts.
"""),
    ("code", """
async def conversation(i):
    session = await runtime.attach("tutorial.streaming_chatbot", {})
    if i % 4 == 3:
        await session.cancel("changed my mind")
    else:
        await session.send(f"question {i}")
    return await sn.read_until_terminal(session.output, timeout_s=60)


results = await asyncio.gather(*(conversation(i) for i in range(20)))
all_frames = [f for frames in results for f in frames]
print(len(results), "streams,", len(all_frames), "frames")
"""),
    ("md", """
`project_streams` gives one row per stream: status, duration, time to first output
(`ttfo_s`), output count and omitted frames.
"""),
    ("code", """
summary = sn.project_streams(all_frames)
print(summary.groupby("status").agg(streams=("stream_ref", "count"), outputs=("n_outputs", "sum")).to_string())
assert (summary.n_omitted == 0).all()
"""),
    ("md", """
## SQL over the ledger

`ledger.sql` runs read-only SQL over the `streams`, `events` and `frames` tables.
"""),
    ("code", """
print(ledger.sql(\"\"\"
    SELECT s.status, count(*) AS streams, sum(f.n) AS output_frames
    FROM streams s
    JOIN (SELECT stream_ref, sum(kind = 'output') AS n FROM frames GROUP BY stream_ref) f
      USING (stream_ref)
    GROUP BY s.status ORDER BY s.status
\"\"\").to_string())
"""),
    ("code", """
print(ledger.sql(
    "SELECT json_extract(payload, '$.kind') AS settled_as, count(*) AS n FROM events GROUP BY 1"
).to_string())
try:
    ledger.sql("DELETE FROM events")
except sn.LedgerQueryError as exc:
    print("refused:", type(exc).__name__)
"""),
    ("md", """
## Plots: tokens over time, time to first token
"""),
    ("code", """
# NBVAL_IGNORE_OUTPUT
import matplotlib.pyplot as plt

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
for frames in results[:6]:
    proj = sn.project_attached_stream(frames, frames[0].stream_ref)
    out = proj.frames[proj.frames.kind == "output"]
    left.step(out.dt, range(1, len(out) + 1), where="post", label=proj.stream_ref[-4:])
left.set(title="tokens over time", xlabel="seconds since opened", ylabel="tokens")
left.legend(fontsize=7)
summary.ttfo_s.dropna().mul(1000).plot.hist(ax=right, bins=10, title="time to first token")
right.set_xlabel("ms")
fig.tight_layout()
"""),
    ("md", """
## A file ledger, read back

Close the runtime and its ledger, then open the file again, as a later session or another
process would. Nothing was left `running`: every stream has its settlement.
"""),
    ("code", """
await runtime.aclose()
ledger.close()

again = sn.Ledger(workdir / "runs.db")
print(again.streams().status.value_counts().sort_index().to_string())
print("recovered as runtime_lost:", again.recovered)
print("frames stored:", len(again.frames()))
again.close()
"""),
    ("md", """
While a runtime writes a file ledger, another process that opens the same file gets it
**read-only** (and an error naming the writer's process id if it tries to write);
`Ledger(path, read_only=True)` reads it the same way from this process. The live
writer's running streams are not touched.
"""),
    ("code", """
writer_rt = sn.StreamRuntime(sn.Ledger(workdir / "runs.db"))
writer_rt.register(chatbot_handler())
live = await writer_rt.attach("tutorial.streaming_chatbot", {})
reader = sn.Ledger(workdir / "runs.db", read_only=True)
print("reader is read-only:", reader.read_only)
print("running streams seen by the reader:", (reader.streams().status == "running").sum())
await live.send("last one")
await live.wait(timeout_s=30)
print("running streams now:", (reader.streams().status == "running").sum())
reader.close()
"""),
    ("md", """
## Running a cell again

Re-running a cell is the most common notebook habit. A cell that makes
`sn.Ledger(path)` (or a runtime on it) again, in the same kernel, takes the file over
from the objects it made last time: their streams still running settle `cancelled` with
reason `"replaced"`, they close, and the new ones work. Here the cell that made
`writer_rt` is "run again" while a stream of it waits for input:
"""),
    ("code", """
waiting = await writer_rt.attach("tutorial.streaming_chatbot", {})
writer_rt = sn.StreamRuntime(sn.Ledger(workdir / "runs.db"))   # the same cell, run again
writer_rt.register(chatbot_handler())
print((await waiting.wait(timeout_s=30)).reason)
print(writer_rt.ledger.streams()[["status", "reason"]].tail(1).to_string(index=False))
await writer_rt.aclose()
writer_rt.ledger.close()
"""),
]


CHAT_WIDGET = [
    ("md", """
# 4 · A multi-turn chat in one widget

`sn.ChatWidget(runtime, kind)` keeps a transcript: each message you send attaches a new
`bidi` stream of `kind`, the reply streams in, and **Stop** cancels the current reply.
Every reply is a stream with its own settlement in the ledger.

Each reply's handler is given the conversation so far, the new message included, in the
OpenAI chat shape: the start payload `{"messages": [{"role": "user", "content": ...},
{"role": "assistant", "content": ...}, ...]}`. So a handler that reads it answers with
the whole conversation in mind.
"""),
    ("code", """
import streamnb as sn
from streamnb.testing import press_send, press_stop


async def remembering(start, input, ctx):
    # a fake chatbot that shows what it was given: the conversation so far
    async for frame in input:
        messages = start["messages"]
        earlier = len(messages) - 1
        yield sn.output(f"I was given {earlier} earlier messages; ", channel="assistant.delta")
        yield sn.output(f"you now say **{frame.payload}**", channel="assistant.delta")
        yield sn.completed()
        return


runtime = sn.StreamRuntime()
runtime.register(sn.AttachedStreamHandler(kind="tutorial.remembering", mode="bidi", run=remembering))
chat = sn.ChatWidget(runtime, "tutorial.remembering")
"""),
    ("widget", """
chat
"""),
    ("md", """
Type in the **Message** box and press **Send** (or Enter). To keep the notebook runnable
top to bottom, the cells below do the same through `sn.testing.press_send`, which sends
the widget the message the browser sends.
"""),
    ("code", """
for text in ["hello", "a second question", "and a third"]:
    press_send(chat, text)
    print(await chat.wait(timeout_s=30), "|", chat.transcript[-1]["content"])
"""),
    ("md", """
The third reply's handler was given four earlier messages and the new one. The same
list, `chat.conversation()`, is what the next reply will get:
"""),
    ("code", """
for message in chat.conversation():
    print(f"{message['role']:>9}: {message['content']}")
"""),
    ("md", """
With a live model this is a chat with memory in one line: `providers.chat_handler`
takes exactly this start payload (tutorial 6 shows how to configure it).

```python
from streamnb.providers import ProviderConfig, chat_handler

runtime.register(chat_handler("tutorial.assistant", ProviderConfig.resolve()))
sn.ChatWidget(runtime, "tutorial.assistant")
```

## Stopping a reply

Now a long reply, 400 tokens at 40 tokens/s (10 seconds): press **Stop** (or Ctrl+. in
the widget; Escape only leaves the Message box) while it streams. The status reads
`stopping…` until the reply has settled. The cell after the widget presses Stop for you
once a few tokens are in.
"""),
    ("code", """
from streamnb.demo import chatbot_handler
from streamnb.testing import FakeTokenSource, lorem_tokens

runtime.register(chatbot_handler(
    kind="tutorial.long_reply",
    source=FakeTokenSource(lorem_tokens(400), rate_tokens_per_s=40),
))
long_chat = sn.ChatWidget(runtime, "tutorial.long_reply")
"""),
    ("widget", """
long_chat
"""),
    ("code", """
import asyncio

press_send(long_chat, "tell me everything")
while len(long_chat.reply_text()) < 40:     # a few tokens in
    await asyncio.sleep(0.05)
press_stop(long_chat)
print(await long_chat.wait(timeout_s=30), "|", long_chat.reason)
last = long_chat.transcript[-1]
print(last["role"], last["status"], "| partial reply kept:", len(last["content"]) > 0)
"""),
    ("md", """
Each reply was one stream, settled once:
"""),
    ("code", """
print(runtime.ledger.streams()[["kind", "status"]].to_string())
"""),
    ("md", """
## Clean up

Closing a chat turns its output into the conversation (what a saved notebook shows
without a kernel); while a chat is open, a copy of its conversation is saved below it.
Skip this cell to keep chatting in the widgets above.
"""),
    ("code", """
chat.close()
long_chat.close()
await runtime.aclose()
print("closed")
"""),
]


def main() -> None:
    for name, cells in [
        ("01_output_only_stream.ipynb", OUTPUT_ONLY),
        ("02_streaming_chatbot.ipynb", CHATBOT),
        ("03_projections_and_ledger.ipynb", PROJECTIONS),
        ("04_chat_widget.ipynb", CHAT_WIDGET),
    ]:
        nbformat.write(nb(cells), HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
