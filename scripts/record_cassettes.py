"""Remake the cassettes shipped in ``streamnb/providers/cassettes/``.

    python scripts/record_cassettes.py            # from the repository root

Each cassette is a real stream: the project's local OpenAI-compatible test server
(``tests/openai_server.py``) answers with scripted tokens at 20-40 ms each (a seeded
random pace), the official ``openai`` SDK reads them, and the real
:func:`streamnb.providers.chat_handler` turns them into frames, which are recorded from
a ``Ledger(record_frames=True)``. The key is a fake one (``sk-local-recording-...``),
passed as ``config=`` so that :func:`record_cassette` refuses to write it.

* ``chat_reply.json`` - seed 000's chatbot answering one question (~60 tokens).
* ``chat_tool_call.json`` - seed 004's ``roll_dice`` tool: ``tool-input-delta`` pieces,
  ``tool-input``, ``tool-output`` (the :mod:`streamnb._tool_frames` vocabulary), then
  the answer.
"""

from __future__ import annotations

import asyncio
import random
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import streamnb as sn  # noqa: E402
from streamnb.providers import (  # noqa: E402
    ProviderConfig,
    chat_handler,
    record_cassette,
    roll_dice,
)
from tests.openai_server import OpenAIServer, Script  # noqa: E402

OUT = ROOT / "streamnb" / "providers" / "cassettes"
KIND = "tutorial.streaming_chatbot"
MODEL = "local-test-model"
KEY_ENV = "STREAMNB_RECORDING_KEY"
FAKE_KEY = "sk-local-recording-not-a-real-key"
SYSTEM = "You are a concise tutor for streamnb."
QUESTION = "What is an attached stream?"
REPLY = (
    "An attached stream is long-running work in the kernel that a notebook can watch "
    "token by token, send input to, and stop. Every frame carries a sequence number, so "
    "a late viewer replays from the log, and when the stream ends its outcome is settled "
    "exactly once in a ledger you can query with pandas."
)
DICE_QUESTION = "Roll a 20-sided die for me."
DICE_SEED = 2024


class PacedScript(Script):
    """A :class:`Script` whose per-token delay is drawn from ``[low_s, high_s]``.

    The server reads ``script.delay_s`` before each token; a property makes every read
    a new draw from a seeded generator, so the pace is realistic and repeatable.
    """

    def __init__(self, low_s: float, high_s: float, seed: int, **fields: Any) -> None:
        self._rng = random.Random(seed)
        self._low_s, self._high_s = low_s, high_s
        super().__init__(**fields)

    @property
    def delay_s(self) -> float:
        return self._rng.uniform(self._low_s, self._high_s)

    @delay_s.setter
    def delay_s(self, _value: float) -> None:
        """Ignore the dataclass default."""


def tokens(text: str) -> list[str]:
    """Split like a BPE tokenizer roughly would: words with their leading space."""
    return re.findall(r" ?[A-Za-z]+| ?[0-9]+|[^\sA-Za-z0-9]", text)


async def record(
    server: OpenAIServer,
    name: str,
    script: Script,
    question: str,
    purpose: str,
    *,
    keep: bool = True,
    **handler_options: Any,
) -> None:
    server.reset()
    server.script = script
    config = ProviderConfig.resolve(
        model=MODEL,
        base_url=server.base_url,
        api_key_env=KEY_ENV,
        max_retries=0,
        environ={KEY_ENV: FAKE_KEY},
    )
    ledger = sn.Ledger(record_frames=True)
    async with sn.StreamRuntime(ledger=ledger) as runtime:
        runtime.register(chat_handler(KIND, config, system=SYSTEM, **handler_options))
        session = await runtime.attach(KIND, {})
        await session.send(question)
        frames = await sn.read_until_terminal(session.output, timeout_s=30)
    # The port changes at every run; keep it out of the committed file.
    provider = config.to_dict() | {"base_url": "http://127.0.0.1:<port>/v1"}
    meta = {
        "purpose": purpose,
        "source": "tests/openai_server.py through streamnb.providers.chat_handler",
        "remake": "python scripts/record_cassettes.py",
        "system": SYSTEM,
        "input": question,
        "provider": provider,
    }
    if not keep:
        ledger.close()
        return
    cassette = record_cassette((ledger, session.stream_ref), OUT / name, meta=meta, config=config)
    ledger.close()
    outputs = sum(1 for f in frames if f.kind == "output")
    print(f"{cassette.path}: {len(cassette.frames)} frames, {outputs} outputs, "
          f"{cassette.duration_s:.2f} s, {cassette.terminal.kind}")  # fmt: skip


async def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    server = OpenAIServer(model=MODEL)
    server.start()
    try:
        reply = tokens(REPLY)
        assert 40 <= len(reply) <= 80, len(reply)
        # Warm up (imports, first connection) so the recording shows a warm process.
        await record(server, "", Script(tokens=reply[:3]), QUESTION, "warm-up", keep=False)
        await record(
            server,
            "chat_reply.json",
            PacedScript(0.020, 0.040, seed=1, tokens=reply),
            QUESTION,
            "seed 000 chatbot: one question, one streamed reply",
        )
        # roll_dice draws from `random`; seed it so the scripted answer can say the roll.
        random.seed(DICE_SEED)
        rolled = random.randint(1, 20)
        random.seed(DICE_SEED)
        answer = tokens(f"I rolled a 20-sided die for you and got {rolled}.")
        await record(
            server,
            "chat_tool_call.json",
            PacedScript(
                0.020,
                0.040,
                seed=2,
                tokens=answer,
                tool_calls=[{"name": "roll_dice", "arguments": {"sides": 20}}],
                argument_piece_chars=4,
            ),
            DICE_QUESTION,
            "seed 004 tools: a roll_dice call, its result, then the answer",
            tools=[roll_dice],
        )
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
