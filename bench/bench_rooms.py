"""Benchmark of chat-room replies: what checkpointing a streaming reply's text costs (issue 11).

Figures (one JSON line each: name, value, unit, baseline, ratio, target, meets_target):

* ``rooms.reply_frames_per_s`` - one room reply of N fake tokens produced as fast
  as possible (no rate), from ``room.send`` to ``room.wait`` returning (the
  reply's text and settlement committed), in a rooms *directory* (SQLite files,
  WAL), with checkpoints on (the default: every 0.25 s or 4 KB of new text),
  against the same reply with ``checkpoint_s=None`` (text written once, at the
  end). Runs alternate between the two settings; each setting's best run counts.
  Target: >= 0.7x the baseline.
* ``rooms.reply_frames_per_s_paced`` - the same with a reply paced at 2,000
  tokens/s (a fast live model), where checkpoints are written by time rather than
  by size: it reports that the cost does not slow a paced reply (ratio ~1).

Run::

    python -m bench.bench_rooms            # full (about a minute)
    python -m bench.bench_rooms --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench.common import Figure, emit


async def one_reply(directory: Path, n_tokens: int, rate: float | None, checkpoint: bool) -> dict:
    from streamnb.rooms import ChatRooms, room_reply_handler
    from streamnb.testing import FakeTokenSource, lorem_tokens

    source = FakeTokenSource(lorem_tokens(n_tokens), rate_tokens_per_s=rate)
    rooms = ChatRooms(
        directory,
        handler_factory=lambda kind: room_reply_handler(kind, source),
        checkpoint_s=0.25 if checkpoint else None,
    )
    try:
        room = rooms.room(rooms.create_room("Bench"))
        start = time.perf_counter()
        session = await room.send("go")
        message = await room.wait()
        elapsed = time.perf_counter() - start
        assert message is not None and message.status == "completed"
        frames = len(rooms.runtime.frame_log(session.stream_ref))
        return {"frames": frames, "seconds": elapsed, "chars": len(message.content)}
    finally:
        await rooms.aclose()


def best_of(n_tokens: int, rate: float | None, repeats: int) -> tuple[dict, dict]:
    """(best run with checkpoints, best run without), alternating the two settings."""
    runs: dict[bool, list[dict]] = {True: [], False: []}
    for i in range(repeats):
        for checkpoint in (i % 2 == 0, i % 2 != 0):  # alternate which goes first
            with tempfile.TemporaryDirectory(prefix="streamnb-bench-rooms-") as tmp:
                runs[checkpoint].append(
                    asyncio.run(one_reply(Path(tmp) / "chat", n_tokens, rate, checkpoint))
                )

    def best(results: list[dict]) -> dict:
        return min(results, key=lambda r: r["seconds"])

    return best(runs[True]), best(runs[False])


def run(quick: bool = False) -> list[Figure]:
    out: list[Figure] = []
    n_tokens = 200_000 if quick else 1_000_000
    repeats = 5 if quick else 7
    on, off = best_of(n_tokens, None, repeats)
    value, base = on["frames"] / on["seconds"], off["frames"] / off["seconds"]
    ratio = value / base
    emit(
        Figure(
            "rooms.reply_frames_per_s",
            round(value),
            "frames/s",
            round(base),
            round(ratio, 3),
            ">= 0.7x without checkpoints",
            ratio >= 0.7,
            f"one reply of {n_tokens} tokens ({on['chars']} chars) as fast as possible, send "
            f"to wait, rooms directory; baseline: checkpoint_s=None; best of {repeats} each, "
            "alternating",
            {"frames": on["frames"], "seconds": round(on["seconds"], 3)},
        ),
        out,
    )
    paced_tokens = 2_000 if quick else 10_000
    on, off = best_of(paced_tokens, 2_000.0, 1 if quick else 2)
    value, base = on["frames"] / on["seconds"], off["frames"] / off["seconds"]
    ratio = value / base
    emit(
        Figure(
            "rooms.reply_frames_per_s_paced",
            round(value),
            "frames/s",
            round(base),
            round(ratio, 3),
            ">= 0.95x without checkpoints",
            ratio >= 0.95,
            f"one reply of {paced_tokens} tokens paced at 2000 tokens/s; baseline: "
            "checkpoint_s=None",
            {"frames": on["frames"], "seconds": round(on["seconds"], 3)},
        ),
        out,
    )
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="smaller sizes, a few seconds")
    run(p.parse_args().quick)
