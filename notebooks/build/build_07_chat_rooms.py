"""Build notebooks/07_chat_rooms.ipynb from the cells below (then execute it).

    python notebooks/build/build_07_chat_rooms.py
    jupyter nbconvert --to notebook --execute --inplace \
        --ExecutePreprocessor.store_widget_state=False notebooks/07_chat_rooms.ipynb

Printed facts are deterministic: room ids, stream refs and times are never printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_tutorials import HERE, nb

CELLS = [
    (
        "md",
        """
# 7 · Chat rooms

*Chat rooms* (004, the last of the TypeScript tutorials streamnb grew from: the "seed"
tutorials, see [docs/concepts.md](../docs/concepts.md)) builds multi-room chat: a
registry of rooms, each room with its **own SQLite message history**, streaming
replies, Stop, and **resume** after a reconnect by replaying what was already produced.
`streamnb.rooms` is its notebook-first form:

* `ChatRooms(path)` is the registry: a directory with `registry.db` and one
  `rooms/<room_id>.db` per room (or everything in memory without `path`);
* every reply is an **attached stream** of one `StreamRuntime`, so Stop, reattach and
  the ledger work as in the earlier tutorials;
* every settled reply is stored in its room *and* settled in the ledger, so one SQL
  query joins rooms, messages and streams;
* `sn.ChatRoomsWidget` shows all rooms in JupyterLab.
""",
    ),
    (
        "code",
        """
import tempfile
from pathlib import Path

import streamnb as sn
from streamnb.providers import FakeTokenSource, lorem_tokens
from streamnb.rooms import ChatRooms, RoomError, room_reply_handler

# The default reply is tutorial 000's fake chatbot. It streams fast while the cells below
# script the conversation; the widget section slows it down (source.rate_tokens_per_s).
source = FakeTokenSource(lorem_tokens(16), rate_tokens_per_s=50)


def short(text):
    # a fake reply without its lorem-ipsum lead-in: "streamnb reply to ..."
    return text[text.find("streamnb") :] if "streamnb" in text else text


workdir = Path(tempfile.mkdtemp())
rooms = ChatRooms(
    workdir / "chat",
    handler_factory=lambda kind: room_reply_handler(kind, source),
)
rooms
""",
    ),
    (
        "md",
        """
## Rooms

`create_room(name)` returns the new room's id (`rm_` and 12 hex digits); `room(id)`
gives the `Room` object. Names are 1 to 100 characters, without line breaks, and
unique: anything else is refused with `RoomNameError` (a `RoomError`, itself a
`sn.StreamnbError`). `exist_ok=True` returns the room that already has the name, so
running this cell again makes no look-alike second room.
""",
    ),
    (
        "code",
        """
ideas = rooms.room(rooms.create_room("Ideas", exist_ok=True))
errands = rooms.room(rooms.create_room("Errands", exist_ok=True))

for bad in ["", "x" * 101, "two\\nlines", "Ideas"]:
    try:
        rooms.create_room(bad)
    except RoomError as exc:
        print(type(exc).__name__, "-", str(exc).split(";")[0][:60])

print(rooms.rooms()[["name", "message_count"]].to_string(index=False))
""",
    ),
    (
        "md",
        """
## A turn, and isolated histories

`await room.send(text)` stores the user message, attaches the reply stream with the
room's history as its start payload, and returns the reply's session as soon as it
has started. `await room.wait()` waits for the end and returns the stored assistant
message. The fake reply ends with `(turn N)`, counting the user messages *of this
room*: two rooms never see each other's history.
""",
    ),
    (
        "code",
        """
session = await ideas.send("hello")
print("busy while streaming:", ideas.busy)
reply = await ideas.wait()
print(reply.status, "|", short(reply.content))

await ideas.send("and another thing")
print(short((await ideas.wait()).content))

await errands.send("buy milk")
print(short((await errands.wait()).content))
""",
    ),
    (
        "code",
        """
df = ideas.messages()
df["content"] = df["content"].map(short)
print(df[["role", "status", "content"]].to_string(index=False))
print()
print(rooms.rooms()[["name", "message_count"]].to_string(index=False))
""",
    ),
    (
        "md",
        """
## One reply at a time, and Stop

A room streams at most one reply: sending while it streams raises `RoomBusyError`.
`await room.cancel()` is Stop: the reply settles `cancelled` and the text produced so
far is stored with status `cancelled`.
""",
    ),
    (
        "code",
        """
from streamnb.rooms import RoomBusyError

session = await errands.send("write a long list")
try:
    await errands.send("one more")
except RoomBusyError as exc:
    print("refused:", type(exc).__name__)

frames = []
async for frame in session.output:     # read a few tokens, then press Stop
    frames.append(frame)
    if sum(f.kind == "output" for f in frames) == 3:
        break
print(await errands.cancel("user pressed stop"))
stopped = await errands.wait()
print(stopped.status, "| partial text kept:", 0 < len(stopped.content) < 100)
""",
    ),
    (
        "md",
        """
## Resume: replay, then live, each frame once

Tutorial 004's client sends a *resume-request* after a reconnect; the server replays the
buffered chunks and continues live. Here the reply's frame log is the buffer:
`await room.resume(after_seq=n)` is a new session reading from frame `n + 1`, so a
client that remembers the last `seq` it saw gets every frame exactly once. Detaching
(a closed tab, a dropped connection) does not stop a room's reply.
""",
    ),
    (
        "code",
        """
session = await ideas.send("tell me a story")
seen = []
async for frame in session.output:
    seen.append(frame)
    if len(seen) == 5:
        break
await session.detach()                 # the client went away; the reply goes on

resumed = await ideas.resume(after_seq=seen[-1].seq)
rest = [frame async for frame in resumed.output]
seqs = [f.seq for f in seen + rest]
print("every frame once, in order:", seqs == list(range(len(seqs))))
print("last frame:", rest[-1].kind)
story = await ideas.wait()
text = "".join(f.payload for f in seen + rest if f.kind == "output")
print("stored text == streamed text:", story.content == text)
""",
    ),
    (
        "md",
        """
## One file per room

With a directory, a room's history is one SQLite file (`rooms/<room_id>.db`): copy it,
open it with `sqlite3`, or delete it with the room. `delete_room` cancels a streaming
reply first, then removes the room and its file.
""",
    ),
    (
        "code",
        """
chat_dir = workdir / "chat"
print(sorted(p.name for p in chat_dir.glob("*.db")))
print(len(list((chat_dir / "rooms").glob("*.db"))), "room files")
print(Path(ideas.path).name == f"{ideas.id}.db")

scratch = rooms.room(rooms.create_room("Scratch"))
await scratch.send("this reply will be cut short")
await rooms.delete_room(scratch.id)    # cancels the reply first
print(Path(scratch.path).exists(), "|", rooms.rooms()["name"].tolist())
""",
    ),
    (
        "md",
        """
## Rooms, messages and streams in one query

Every settled reply writes its assistant message into the room's database and, in the
same settlement, a ledger event `room.reply.settled {"room_id", "message_id", "kind"}`;
both messages of a turn carry the reply's `stream_ref`. `rooms.sql(query)` runs one
read-only query over `rooms`, `messages` (all rooms, with `room_id`) and the ledger
attached as `ledger` (`ledger.streams`, `ledger.events`).
""",
    ),
    (
        "code",
        """
joined = rooms.sql('''
    SELECT r.name AS room, m.status AS message, s.status AS stream,
           json_extract(e.payload, '$.kind') AS settled
    FROM messages m
    JOIN rooms r ON r.id = m.room_id
    JOIN ledger.streams s ON s.stream_ref = m.stream_ref
    JOIN ledger.events e ON e.stream_ref = m.stream_ref AND e.kind = 'room.reply.settled'
    WHERE m.role = 'assistant'
    ORDER BY r.name, m.created_at
''')
print(joined.to_string(index=False))
""",
    ),
    (
        "md",
        """
## Reopening

Closing the registry stops streaming replies (they are stored `cancelled`). Opening the
directory again brings every room back. If the process had been killed mid-reply, the
reply's row would come back marked `interrupted` (its id in `rooms.recovered`) and the
ledger would record the stream as `failed` / `runtime_lost`. (Running the cell that
made `rooms` again, without closing it first, also works: the new `ChatRooms` takes the
directory over, and the old one's streaming replies settle `cancelled`, reason
`"replaced"`.)
""",
    ),
    (
        "code",
        """
await rooms.aclose()

rooms = ChatRooms(workdir / "chat", handler_factory=lambda kind: room_reply_handler(kind, source))
print(rooms.rooms()[["name", "message_count"]].to_string(index=False))
print("interrupted replies:", rooms.recovered)
print(rooms.room(ideas.id).messages()["status"].tolist())
""",
    ),
    (
        "md",
        """
## The widget

`sn.ChatRoomsWidget(rooms)` lists the rooms (message counts update live), shows the
selected room's transcript and has **New room**, **Rename**, **Clear**, **Delete**,
the **Message** box, **Send** and **Stop** (or Ctrl+. in the widget). Which room a view
shows is that view's own choice: display the widget twice and look at two rooms at
once. Replies stream as batched deltas; a page reload asks the kernel for the room
again, so the history and a reply in progress come back. A copy of every room's
transcript is saved below the widget, which is what this notebook shows when it is
opened without a kernel.

First slow the fake replies down, so that a reply typed into the widget streams for
about 13 seconds (200 words at 15 per second): time enough to press **Stop**.
""",
    ),
    (
        "code",
        """
source.tokens = lorem_tokens(200)
source.rate_tokens_per_s = 15
print(200 / source.rate_tokens_per_s > 10)
""",
    ),
    (
        "widget",
        """
widget = sn.ChatRoomsWidget(rooms)
widget
""",
    ),
    (
        "code",
        """
print([room["name"] for room in widget.room_list])
""",
    ),
    (
        "md",
        """
## A live model

Any handler can write the replies: `handler_factory(kind)` returns it, and it receives
the room's history as `{"messages": [...]}`, the shape `chat_handler` takes (see
tutorial 6):

```python
from streamnb.providers import ProviderConfig, chat_handler, get_current_time, roll_dice

config = ProviderConfig.resolve()
rooms = ChatRooms(
    "chat",
    handler_factory=lambda kind: chat_handler(
        kind, config,
        system="Each chat room has its own independent conversation history.",
        tools=[get_current_time, roll_dice],
    ),
)
```

## Clean up

The widget above works until this cell: it closes the widget (its output becomes the
rooms' transcript), stops any streaming reply, closes the rooms and deletes their
directory. Skip it to keep chatting.
""",
    ),
    (
        "code",
        """
import shutil

widget.close()
await rooms.aclose()
shutil.rmtree(workdir)
print("closed:", rooms.closed)
""",
    ),
]


def build() -> nbformat.NotebookNode:
    return nb(CELLS)


if __name__ == "__main__":
    target = HERE / "07_chat_rooms.ipynb"
    nbformat.write(build(), target)
    print(f"wrote {target}")
