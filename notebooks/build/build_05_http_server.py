"""Build notebooks/05_http_server.ipynb (then execute it to store outputs).

    python notebooks/build/build_05_http_server.py
    jupyter nbconvert --to notebook --execute --inplace \
        --ExecutePreprocessor.store_widget_state=False notebooks/05_http_server.ipynb
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_tutorials import HERE, nb  # noqa: E402

import nbformat  # noqa: E402

CELLS = [
    ("md", """
# 5 · Serving attached streams over HTTP

The handlers a notebook runs can be served to browsers and other programs, from the same
runtime: output-only streams as **Server-Sent Events** (resumable with `Last-Event-ID`),
two-way streams over SSE + `POST .../input` or a **WebSocket**, the plain `/chat`
endpoint of the *SSE chat server* tutorial (002, one of the TypeScript "seed" tutorials
streamnb grew from, see [docs/concepts.md](../docs/concepts.md)) with a small HTML page,
and the **AI SDK UI message stream** for `useChat` front ends. The ledger this notebook
queries is the one the server writes.

From a terminal, `streamnb serve` does the same with uvicorn. Here the server runs as a
task on the kernel's event loop, so we talk to it with `httpx.AsyncClient` (a blocking
client would block the very loop that serves it). **The server keeps running until the
last cell, "Clean up"**: run the cells one by one (or skip that last one) to keep it up
and open its page in a browser.
"""),
    ("code", """
import json

import httpx

import streamnb as sn
from streamnb.demo import chatbot_handler, output_only_handler

runtime = sn.StreamRuntime()
runtime.register(output_only_handler())   # tutorial 001's stream, exactly
runtime.register(chatbot_handler())       # tutorial 000's chatbot, fake tokens
server = await sn.server.serve_in_background(runtime, port=0)   # 127.0.0.1, a free port
http = httpx.AsyncClient(base_url=server.url, timeout=30)
print(server.url)
"""),
    ("md", """
`port=0` picks a free port, so running this cell again starts a second server next to
the first: run "Clean up" first, or pass a fixed `port=` (a server this kernel already
runs on that port is then stopped and replaced).
"""),
    ("md", """
## Open a stream, read it as SSE

`POST /streams` opens a stream and answers `201 {"stream_ref": ...}`.
`GET /streams/{ref}/events` sends each frame as one event: `id:` is the seq, `event:` the
frame kind, `data:` the frame as JSON. The response ends after the terminal frame.
"""),
    ("code", """
async def read_events(path, headers=None, limit=None):
    \"\"\"Read an SSE response into (id, event, frame) tuples.\"\"\"
    events, fields = [], {}
    async with http.stream("GET", path, headers=headers or {}) as response:
        async for line in response.aiter_lines():
            if line == "":                      # a blank line ends one event
                if "data" in fields:
                    events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
                fields = {}
                if limit and len(events) == limit:
                    break
            elif not line.startswith(":"):      # ':' lines are heartbeats/comments
                key, _, value = line.partition(": ")
                fields[key] = value
    return events


created = await http.post("/streams", json={"kind": "tutorial.output_only", "payload": {}})
print(created.status_code, list(created.json()))
ref = created.json()["stream_ref"]
for seq, event, frame in await read_events(f"/streams/{ref}/events"):
    print(seq, event, frame.get("channel", ""), frame.get("payload", ""))
"""),
    ("md", """
## Resume after a dropped connection

A client that lost its connection reconnects with the standard `Last-Event-ID` header (or
`?after_seq=`); the server replays from the frame log: every frame exactly once.
"""),
    ("code", """
opened = await http.post("/streams", json={"kind": "tutorial.output_only", "payload": {}})
ref = opened.json()["stream_ref"]
first = await read_events(f"/streams/{ref}/events", limit=2)          # then the connection drops
last_id = first[-1][0]
rest = await read_events(f"/streams/{ref}/events", headers={"Last-Event-ID": str(last_id)})
seqs = [s for s, _, _ in first + rest]
print("seqs:", seqs, "| no duplicates, no gaps:", seqs == list(range(len(seqs))))
"""),
    ("md", """
## A two-way stream: input and cancel over HTTP

`POST /streams/{ref}/input` sends the user's message to a `bidi` stream;
`POST /streams/{ref}/cancel` asks it to stop and answers like `session.cancel`.
"""),
    ("code", """
chat = (await http.post("/streams", json={"kind": "tutorial.streaming_chatbot"})).json()["stream_ref"]
print((await http.post(f"/streams/{chat}/input", json={"payload": "hello over HTTP"})).json())
events = await read_events(f"/streams/{chat}/events")
print(sn.testing.checkpoint_path([e for _, e, _ in events]))
print(repr("".join(f["payload"] for _, e, f in events if e == "output")))

stop = (await http.post("/streams", json={"kind": "tutorial.streaming_chatbot"})).json()["stream_ref"]
print((await http.post(f"/streams/{stop}/cancel", json={"reason": "user pressed stop"})).json())
events = await read_events(f"/streams/{stop}/events")
print(sn.testing.checkpoint_path([e for _, e, _ in events]), "|", events[-1][2]["reason"])
"""),
    ("md", """
## The `/chat` endpoint of tutorial 002

`POST /chat {"message": ...}` answers with `data: {"content": "<token>"}` per token and
`data: [DONE]` at the end, exactly the format of the SSE chat server tutorial. `GET /`
serves its small HTML page: while the server runs (until "Clean up" below), open the URL
printed at the top in a browser on this machine to try it, with a **Stop** button that
cancels the stream on the server.
"""),
    ("code", """
async with http.stream("POST", "/chat", json={"message": "hi"}) as response:
    lines = [line async for line in response.aiter_lines() if line.startswith("data: ")]
for line in lines:
    print(line)
"""),
    ("md", """
## The AI SDK UI message stream

`POST /api/chat` accepts `useChat`'s request body and answers in the AI SDK's UI message
stream protocol (header `x-vercel-ai-ui-message-stream: v1`), so an existing `useChat`
front end can talk to a streamnb handler.
"""),
    ("code", """
body = {"id": "chat-1", "messages": [{"id": "m1", "role": "user", "parts": [{"type": "text", "text": "hey"}]}]}
async with http.stream("POST", "/api/chat", json=body) as response:
    print(response.headers["x-vercel-ai-ui-message-stream"])
    chunks = [line[6:] async for line in response.aiter_lines() if line.startswith("data: ")]
print([json.loads(c)["type"] if c != "[DONE]" else c for c in chunks])
"""),
    ("md", """
## One ledger

Everything the server ran settled in the runtime's ledger, which both HTTP
(`GET /ledger/streams`) and this notebook can read.
"""),
    ("code", """
over_http = (await http.get("/ledger/streams")).json()["streams"]
print(len(over_http), "streams over HTTP;", len(runtime.ledger.streams()), "in the notebook's ledger")
print([s["status"] for s in over_http] == runtime.ledger.streams().status.tolist())
print(runtime.ledger.streams()[["kind", "status"]].to_string())
"""),
    ("md", """
Bad input gets a 4xx with a JSON error body, and changes nothing:
"""),
    ("code", """
for method, path, payload in [
    ("POST", "/streams", {"kind": "no.such.kind"}),
    ("POST", f"/streams/{chat}/input", {"payload": "too late"}),
    ("GET", "/streams/st_0000000000000000", None),
]:
    response = await http.request(method, path, json=payload)
    print(response.status_code, response.json()["error"]["type"])
"""),
    ("md", """
## Clean up

This stops the server (its page and every endpoint above), then the runtime. Skip it to
keep the server running while you try it from a browser.
"""),
    ("code", """
await http.aclose()
await server.aclose()
await runtime.aclose()
print("server stopped")
"""),
]


def main() -> None:
    nbformat.write(nb(CELLS), HERE / "05_http_server.ipynb")
    print("wrote", HERE / "05_http_server.ipynb")


if __name__ == "__main__":
    main()
