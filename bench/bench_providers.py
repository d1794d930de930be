"""Provider benchmarks (issue 5, "Speed"). Prints one JSON line per figure.

    python -m bench.bench_providers [--quick]

Both paths read the same scripted reply of N tokens (no delay) from the project's local
OpenAI-compatible server (``tests/openai_server.py``, uvicorn on 127.0.0.1 in a thread
of this process), with the official ``openai`` SDK underneath:

* providers.added_ms_per_token  median over runs of ``(t_streamnb - t_raw) / N`` in ms,
  where ``t_raw`` is ``AsyncOpenAI.chat.completions.create(stream=True)`` iterated to
  the end and ``t_streamnb`` is ``session.send`` to the terminal frame of
  :func:`streamnb.providers.chat_handler` attached in a :class:`StreamRuntime` (the
  client is made when the stream opens, before ``send``; its cost is in ``extra``).
  Runs alternate raw / streamnb so drift hits both. Target: under 1 ms per token.
* providers.replay_pace  the shipped ``chat_reply`` cassette replayed at ``speed=1``:
  replayed duration over recorded duration (target within 10 %).

Wall-clock (``time.perf_counter``) medians: the server shares the process, so CPU time
would hide the network path that both sides pay.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import openai

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamnb as sn  # noqa: E402
from bench.common import Figure, emit  # noqa: E402
from streamnb.providers import (  # noqa: E402
    Cassette,
    ProviderConfig,
    cassette_handler,
    chat_handler,
    make_client,
    shipped_cassette,
)
from tests.openai_server import OpenAIServer, Script  # noqa: E402

KIND = "bench.provider_chat"
MODEL = "bench-model"
KEY_ENV = "STREAMNB_BENCH_KEY"


def config_for(server: OpenAIServer) -> ProviderConfig:
    return ProviderConfig.resolve(
        model=MODEL,
        base_url=server.base_url,
        api_key_env=KEY_ENV,
        max_retries=0,
        environ={KEY_ENV: "sk-bench-local"},
    )


async def raw_once(client: openai.AsyncOpenAI, n: int) -> float:
    """Seconds to stream one reply with the bare SDK, counting its text chunks."""
    t = time.perf_counter()
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    count = 0
    async for chunk in stream:
        for choice in chunk.choices:
            if choice.delta.content:
                count += 1
    dt = time.perf_counter() - t
    assert count == n, (count, n)
    return dt


async def streamnb_once(runtime: sn.StreamRuntime, n: int) -> float:
    """Seconds from ``send`` to the terminal frame through chat_handler, counting outputs."""
    session = await runtime.attach(KIND, {})
    opened, waiting = await anext(session.output), await anext(session.output)
    assert (opened.kind, waiting.kind) == ("opened", "progress")
    t = time.perf_counter()
    await session.send("hello")
    count = 0
    async for frame in session.output:
        if frame.kind == "output":
            count += 1
        elif frame.is_terminal:
            break
    dt = time.perf_counter() - t
    assert frame.kind == "completed" and count == n, (frame, count, n)
    return dt


async def bench_added_per_token(server: OpenAIServer, n: int, runs: int, out: list[Figure]) -> None:
    server.script = Script(tokens=[f" tok{i}" for i in range(n)])
    config = config_for(server)
    setup = []
    for _ in range(3):
        t = time.perf_counter()
        client = make_client(config)
        setup.append(time.perf_counter() - t)
        await client.close()
    client = make_client(config)
    async with sn.StreamRuntime() as runtime:
        runtime.register(chat_handler(KIND, config))
        await raw_once(client, n)  # warm-up: connections, imports, caches
        await streamnb_once(runtime, n)
        raw, ours = [], []
        for _ in range(runs):
            raw.append(await raw_once(client, n))
            ours.append(await streamnb_once(runtime, n))
    runtime.ledger.close()
    await client.close()
    added_ms = statistics.median((o - r) / n * 1e3 for o, r in zip(ours, raw, strict=True))
    raw_ms = statistics.median(raw) / n * 1e3
    ours_ms = statistics.median(ours) / n * 1e3
    emit(
        Figure(
            "providers.added_ms_per_token",
            round(added_ms, 4),
            "ms/token",
            round(raw_ms, 4),
            round(ours_ms / raw_ms, 2),
            "< 1 ms/token added over the raw openai SDK",
            added_ms < 1.0,
            f"{n} tokens x {runs} runs, local server; baseline: raw SDK ms/token; "
            "ratio: streamnb ms/token over raw",
            extra={
                "raw_ms_per_token": round(raw_ms, 4),
                "streamnb_ms_per_token": round(ours_ms, 4),
                "raw_median_s": round(statistics.median(raw), 4),
                "streamnb_median_s": round(statistics.median(ours), 4),
                "client_setup_ms": round(statistics.median(setup) * 1e3, 2),
            },
        ),
        out,
    )


async def bench_replay_pace(out: list[Figure]) -> None:
    cassette = Cassette.load(shipped_cassette("chat_reply"))
    async with sn.StreamRuntime() as runtime:
        runtime.register(cassette_handler(cassette, speed=1.0))
        session = await runtime.attach(cassette.kind, {})
        await anext(session.output)
        await anext(session.output)
        t = time.perf_counter()
        await session.send("hi")
        frames = await sn.read_until_terminal(session.output, timeout_s=60)
        dt = time.perf_counter() - t
    runtime.ledger.close()
    assert frames[-1].kind == "completed"
    # what the replay sleeps: from the wait for input (progress, seq 1) to the terminal
    recorded = cassette.duration_s - cassette.frames[1].at
    ratio = dt / recorded
    emit(
        Figure(
            "providers.replay_pace",
            round(dt, 3),
            "s",
            round(recorded, 3),
            round(ratio, 3),
            "within 10% of the recorded duration",
            abs(ratio - 1) <= 0.10,
            f"shipped chat_reply cassette, {len(frames)} frames, speed=1",
        ),
        out,
    )


async def main_async(quick: bool, out: list[Figure]) -> None:
    server = OpenAIServer(model=MODEL)
    server.start()
    try:
        await bench_added_per_token(server, 200 if quick else 1000, 5 if quick else 15, out)
    finally:
        server.stop()
    await bench_replay_pace(out)


def run(quick: bool = False) -> list[Figure]:
    out: list[Figure] = []
    asyncio.run(main_async(quick, out))
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="smaller sizes, under 30 s")
    run(p.parse_args().quick)
