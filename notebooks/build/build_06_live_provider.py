"""Build notebooks/06_live_provider.ipynb from the cells below (then execute it).

    python notebooks/build/build_06_live_provider.py
    ruff format notebooks/06_live_provider.ipynb
    jupyter nbconvert --to notebook --execute --inplace \
        --ExecutePreprocessor.store_widget_state=False notebooks/06_live_provider.ipynb

Under nbval the notebook runs from the shipped cassette: no network, no credentials.
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
# 6 · Live provider

The TypeScript tutorials streamnb grew from (the "seed" tutorials, see
[docs/concepts.md](../docs/concepts.md)) keep a fake token generator first and bring in
a live provider only "after provider route, credential, and model facts have one source
of truth". This tutorial
shows that source of truth, `ProviderConfig`, and `chat_handler`, which streams replies
from any OpenAI-compatible Chat Completions endpoint (OpenAI, Ollama, vLLM, llama.cpp,
LM Studio) as a drop-in for the fake chatbot of tutorial 2.

So that it runs anywhere (Binder, CI, nbval) it plays a **cassette**: a real reply
recorded from streamnb's local OpenAI-compatible test server through the real
`chat_handler`, replayed with its original token timing. The last section shows what
to change to talk to a real model.
""",
    ),
    (
        "md",
        """
## Configuration: one source of truth

Each fact (route `base_url`, `model`, the *name* of the variable holding the key, and
timeouts) is taken from the first of: an argument to `ProviderConfig.resolve`, the
environment (`STREAMNB_BASE_URL`, `STREAMNB_MODEL`, `STREAMNB_API_KEY_ENV`,
`STREAMNB_TIMEOUT_S`, ...), the `[tool.streamnb.provider]` table of `pyproject.toml`,
a default. `describe()` says where each fact came from. The key itself is read from
the environment and never printed, stored or written to a file.

For this demo we set the facts in the kernel's environment; normally you export them
in the shell that starts Jupyter.
""",
    ),
    (
        "code",
        """
import os

import streamnb as sn
from streamnb.providers import ProviderConfig, ProviderConfigError

os.environ["STREAMNB_BASE_URL"] = "http://localhost:11434/v1"  # Ollama's OpenAI route
os.environ["STREAMNB_MODEL"] = "llama3.2"
os.environ["STREAMNB_API_KEY_ENV"] = "none"  # a local server needs no key

config = ProviderConfig.resolve(max_retries=1)
print(config.describe().to_string())
""",
    ),
    (
        "md",
        """
A hosted endpoint needs a key. If the variable that should hold it is not set, the
error comes **now**, at configuration time, and says what to do (not a stack trace in
the middle of a reply):
""",
    ),
    (
        "code",
        """
try:
    ProviderConfig.resolve(
        base_url="https://api.openai.com/v1",
        model="gpt-4o-mini",
        api_key_env="STREAMNB_DEMO_UNSET_KEY",
    )
except ProviderConfigError as exc:
    print(f"{type(exc).__name__}: {exc}")
""",
    ),
    (
        "md",
        """
When the key is there, the config holds it privately: neither the `repr`, nor
`describe()`, nor `to_dict()` (what goes into ledgers and cassettes) shows it.
""",
    ),
    (
        "code",
        """
os.environ["STREAMNB_DEMO_KEY"] = "sk-demo-not-a-real-key"
hosted = ProviderConfig.resolve(
    base_url="https://api.example.com/v1", model="demo-model", api_key_env="STREAMNB_DEMO_KEY"
)
print(hosted)
print(hosted.describe().loc["credential", "value"])
shown = repr(hosted) + hosted.describe().to_string() + str(hosted.to_dict())
assert "sk-demo" not in shown
del os.environ["STREAMNB_DEMO_KEY"]
""",
    ),
    (
        "md",
        """
## A recorded reply, replayed

streamnb ships a cassette of `chat_handler` answering one question. A cassette is a
small JSON file: the stream's frames with their times (as offsets from `opened`), a
header with the kind and mode, and non-secret facts about the provider.
""",
    ),
    (
        "code",
        """
from streamnb.providers import Cassette, cassette_handler, shipped_cassette

cassette = Cassette.load(shipped_cassette("chat_reply"))
print(cassette)
print("asked:", cassette.meta["input"])
print("model:", cassette.meta["provider"]["model"])
print("tokens:", sum(f.kind == "output" for f in cassette.frames))
""",
    ),
    (
        "md",
        """
`cassette_handler` turns it into an ordinary handler. Registered under the fake
chatbot's kind it is a drop-in: `bidi`, it waits for one message (any text), then
streams the recorded reply at its recorded pace (`speed=2` plays it twice as fast, so
this reply takes about a second). The widget shows the tokens as they arrive; its
**Stop** button cancels a replay as it would a live reply (the section after next stops
one from code; `speed=0.2` gives you ten seconds to press it yourself).
""",
    ),
    (
        "code",
        """
runtime = sn.StreamRuntime()
runtime.register(cassette_handler(cassette, "tutorial.streaming_chatbot", speed=2))
session = await runtime.attach("tutorial.streaming_chatbot", {})
await session.send("What is an attached stream?")
""",
    ),
    (
        "widget",
        """
display(session)
""",
    ),
    (
        "md",
        """
The widget reads the stream without consuming `session.output`, so we can still read
every frame here and check the chatbot tutorial's checkpoint path:
""",
    ),
    (
        "code",
        """
from streamnb.testing import assert_checkpoint, checkpoint_path

frames = await sn.read_until_terminal(session.output, timeout_s=30)
assert_checkpoint(frames, "opened -> progress -> output* -> completed")
print(checkpoint_path(frames))
projection = sn.project_attached_stream(frames, session.stream_ref)
print(projection.status)
print(projection.text("assistant.delta"))
print(frames[-1].terminal)
""",
    ),
    (
        "md",
        """
The settlement is in the ledger, exactly as for a live reply (only stable columns are
printed; times differ on every run):
""",
    ),
    (
        "code",
        """
print(runtime.ledger.streams()[["kind", "mode", "status"]].to_string())
events = runtime.ledger.events(kind="tutorial.streaming_chatbot.settled")
print([payload["kind"] for payload in events.payload])
""",
    ),
    (
        "md",
        """
## Stop works on a replay too

Cancel interrupts the pause before the next token; the stream settles `cancelled`
with the reason given.
""",
    ),
    (
        "code",
        """
stoppable = await runtime.attach("tutorial.streaming_chatbot", {})
await stoppable.send("tell me again")
seen = []
async for frame in stoppable.output:
    seen.append(frame)
    if frame.kind == "output" and len(seen) >= 6:
        break
print(await stoppable.cancel("user pressed stop"))
rest = await sn.read_until_terminal(stoppable.output, timeout_s=30)
assert_checkpoint(seen + rest, "opened -> progress -> output+ -> cancelled")
print(rest[-1].kind, rest[-1].reason, rest[-1].terminal)
""",
    ),
    (
        "md",
        """
## Tool calls

The second shipped cassette is a reply that first calls the `roll_dice` tool of the
chat rooms tutorial (004).
Tool activity streams on the `tool` channel in the vocabulary of `streamnb._tool_frames`
(the AI SDK's tool parts): `tool-input-delta` pieces of the arguments, `tool-input`,
`tool-output`; then the answer streams on `assistant.delta`. `speed=math.inf` replays
without delays.
""",
    ),
    (
        "code",
        """
import math

runtime.register(
    cassette_handler(shipped_cassette("chat_tool_call"), "tutorial.dice", speed=math.inf)
)
dice = await runtime.attach("tutorial.dice", {})
await dice.send("Roll a 20-sided die for me.")
frames = await sn.read_until_terminal(dice.output, timeout_s=30)
for frame in frames:
    if frame.channel == "tool" and frame.payload["type"] != "tool-input-delta":
        print(frame.payload)
print(sn.project_attached_stream(frames, dice.stream_ref).text("assistant.delta"))
""",
    ),
    (
        "md",
        """
## Record your own

`record_cassette` writes any settled stream: the frames read from `session.output`
(as here), or `(ledger, stream_ref)` from a `sn.Ledger(record_frames=True)`. Pass the
provider `config=` to keep its non-secret facts; the write is refused if the key would
end up in the file.
""",
    ),
    (
        "code",
        """
import tempfile
from pathlib import Path

from streamnb.providers import record_cassette

with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "my_dice.json"
    recorded = record_cassette(frames, path, meta={"note": "recorded in tutorial 6"})
    print(recorded)
    assert Cassette.load(path) == recorded
""",
    ),
    (
        "md",
        """
## Point it at a real endpoint

Replace the cassette handler with `chat_handler` and a config. Set the facts outside
the notebook, in the shell that starts Jupyter (never write a key into a notebook):

| Server | `STREAMNB_BASE_URL` | key (`STREAMNB_API_KEY_ENV`) |
|---|---|---|
| OpenAI | `https://api.openai.com/v1` (the default) | `OPENAI_API_KEY` (the default) |
| Ollama | `http://localhost:11434/v1` | `none` |
| vLLM (`vllm serve`) | `http://localhost:8000/v1` | `none`, or the variable with `--api-key` |
| llama.cpp (`llama-server`) | `http://localhost:8080/v1` | `none` |
| LM Studio | `http://localhost:1234/v1` | `none` |

```bash
export STREAMNB_BASE_URL=http://localhost:11434/v1
export STREAMNB_MODEL=llama3.2
export STREAMNB_API_KEY_ENV=none      # for OpenAI: export OPENAI_API_KEY=sk-... instead
jupyter lab
```

or, per project, in `pyproject.toml` (no keys here, only the variable's name):

```toml
[tool.streamnb.provider]
base_url = "http://localhost:11434/v1"
model = "llama3.2"
api_key_env = "none"
```

Then, in a cell:

```python
import streamnb as sn
from streamnb.providers import ProviderConfig, chat_handler, get_current_time, roll_dice

config = ProviderConfig.resolve()  # fails here, clearly, if a fact is missing
print(config.describe().to_string())

runtime = sn.StreamRuntime()
runtime.register(
    chat_handler(
        "tutorial.streaming_chatbot",
        config,
        system="You are a concise tutor.",
        tools=[get_current_time, roll_dice],  # optional: tutorial 004's tools
    )
)
session = await runtime.attach("tutorial.streaming_chatbot", {})
await session.send("What time is it? Then roll a die.")
display(session)  # Stop closes the upstream response: the model stops generating
```

For a conversation, `sn.ChatWidget(runtime, "tutorial.streaming_chatbot")` is a chat
with memory: each reply's handler gets the conversation so far (tutorial 4).

The frames, the terminal payload (`finish_reason`, `usage`, `model`, `steps`) and the
ledger rows have the same shape as in the replay above, so a notebook written against
a cassette works unchanged against the live model, and a live reply can be recorded
with `record_cassette` to become the next tutorial's cassette.
""",
    ),
    (
        "code",
        """
await runtime.aclose()
for name in ("STREAMNB_BASE_URL", "STREAMNB_MODEL", "STREAMNB_API_KEY_ENV"):
    os.environ.pop(name, None)
print(runtime.ledger.streams()["status"].tolist())
""",
    ),
]


def build() -> nbformat.NotebookNode:
    return nb(CELLS)


if __name__ == "__main__":
    target = HERE / "06_live_provider.ipynb"
    nbformat.write(build(), target)
    print(f"wrote {target}")
