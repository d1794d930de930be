"""Handlers for the multi-process tests (``streamnb serve --handlers tests._pg_handlers:handlers``).

* ``test.ticker`` (output only, ``on_detach="continue"``): ``{"n", "every_s"}`` ticks
  ``tick 0``, ``tick 1`` ... one every ``every_s`` seconds, then ``completed``; a
  cancel ends it ``cancelled`` with the reason.
* ``test.ticker_abort``: the same with ``on_detach="abort"``.
* ``test.echo`` (bidi, ``on_detach="continue"``): answers each input ``echo <payload>``;
  ``"bye"`` completes it.
* ``test.slow_chat``: the seeds' chatbot with 60 paced tokens (for ``/api/chat``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import streamnb as sn
from streamnb.demo import chatbot_handler
from streamnb.testing import FakeTokenSource, lorem_tokens


async def _tick(start: Any, _input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
    n = int((start or {}).get("n", 200))
    every_s = float((start or {}).get("every_s", 0.05))
    for i in range(n):
        if ctx.signal.aborted:
            yield sn.cancelled(ctx.signal.reason or "cancelled")
            return
        yield sn.output(f"tick {i} ", "stdout")
        await asyncio.sleep(every_s)
    yield sn.completed({"ticks": n})


async def _echo(_start: Any, input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
    yield sn.progress({"phase": "waiting_for_user"})
    async for frame in input:
        if frame.payload == "bye":
            yield sn.completed({"bye": True})
            return
        yield sn.output(f"echo {frame.payload}")
    yield sn.cancelled(ctx.signal.reason or "cancelled")


def _settled(terminal: sn.Frame, tx: sn.LedgerTx) -> None:
    tx.insert_event("test.settled", {"kind": terminal.kind, "reason": terminal.reason})


def handlers() -> list[sn.AttachedStreamHandler]:
    return [
        sn.AttachedStreamHandler(
            kind="test.ticker", run=_tick, on_detach="continue", commit_terminal=_settled
        ),
        sn.AttachedStreamHandler(kind="test.ticker_abort", run=_tick, commit_terminal=_settled),
        sn.AttachedStreamHandler(
            kind="test.echo",
            mode="bidi",
            run=_echo,
            on_detach="continue",
            commit_terminal=_settled,
        ),
        chatbot_handler(
            kind="test.slow_chat",
            source=FakeTokenSource(lorem_tokens(60), rate_tokens_per_s=30),
            on_detach="continue",
        ),
    ]
