"""The seeds' tutorial handlers, ready to register.

* :func:`chatbot_handler` - seed 000, "Streaming Chatbot": a ``bidi`` handler
  that waits for one user message and streams a fake reply, with cooperative
  cancel and a settlement event ``tutorial.streaming_chatbot.settled``.
* :func:`output_only_handler` - seed 001, "Output-Only Attached Stream": emits
  progress and output and commits ``tutorial.output_only.completed`` or
  ``.cancelled``.

Both take a :class:`~streamnb.providers.FakeTokenSource`, so tutorials can slow
the reply down enough to press Stop. Departure from seed 000: the reply loop
also checks ``ctx.signal.aborted`` between tokens, so Stop ends a slow reply
at the next token instead of after the whole reply.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ._frames import Frame, FrameSpec, cancelled, completed
from ._handler import AttachedStreamHandler, StreamContext, parse_ok
from ._ledger import LedgerTx
from .providers._events import settled_event
from .providers.fake import FakeTokenSource, lorem_tokens

__all__ = ["chatbot_handler", "demo_handlers", "output_only_handler"]


def _cancelled(ctx: StreamContext) -> FrameSpec:
    # the reason given to cancel() (e.g. "user pressed stop", "detached"), where seed 000
    # writes the literal "cancelled": the ledger then says why a stream stopped
    return cancelled(ctx.signal.reason or "cancelled")


def chatbot_handler(
    kind: str = "tutorial.streaming_chatbot",
    source: FakeTokenSource | None = None,
    on_detach: str = "abort",
) -> AttachedStreamHandler:
    """Seed 000's streaming chatbot as an :class:`AttachedStreamHandler`.

    Checkpoints: ``opened -> progress -> output* -> completed`` with ledger
    event ``<kind>.settled {"kind": "completed"}``; after Stop,
    ``... -> cancelled`` with ``<kind>.settled {"kind": "cancelled"}``.
    """
    tokens = source or FakeTokenSource()

    async def run(
        _start: Any, input: AsyncIterator[Frame], ctx: StreamContext
    ) -> AsyncIterator[Any]:
        yield {"kind": "progress", "payload": {"phase": "waiting_for_user"}}
        async for frame in input:
            if ctx.signal.aborted:
                yield _cancelled(ctx)
                return
            if frame.kind != "input":
                continue
            async for token in tokens.stream(str(frame.payload)):
                if ctx.signal.aborted:
                    yield _cancelled(ctx)
                    return
                yield {"kind": "output", "channel": "assistant.delta", "payload": token}
            yield completed()
            return

    return AttachedStreamHandler(
        kind=kind,
        mode="bidi",
        cancellation="cooperative",
        on_detach=on_detach,  # type: ignore[arg-type]
        parse_start=parse_ok,
        run=run,
        commit_terminal=settled_event(kind),
    )


def output_only_handler(
    kind: str = "tutorial.output_only",
    source: FakeTokenSource | None = None,
    on_detach: str = "continue",
) -> AttachedStreamHandler:
    """Seed 001's output-only stream as an :class:`AttachedStreamHandler`.

    With the default source it emits exactly the seed's
    ``opened -> progress -> output -> completed`` (one ``stdout`` output,
    ``"hello"``). With a :class:`FakeTokenSource` it streams that source's
    tokens for the start payload's ``"message"`` instead, checking the cancel
    signal between tokens.
    """

    async def run(
        start: Any, _input: AsyncIterator[Frame], ctx: StreamContext
    ) -> AsyncIterator[Any]:
        yield {"kind": "progress", "payload": {"step": "started"}}
        if source is None:
            yield {"kind": "output", "channel": "stdout", "payload": "hello"}
        else:
            message = start.get("message", "hello") if isinstance(start, dict) else "hello"
            async for token in source.stream(message):
                if ctx.signal.aborted:
                    break
                yield {"kind": "output", "channel": "stdout", "payload": token}
        if ctx.signal.aborted:
            yield _cancelled(ctx)
            return
        yield completed()

    def commit_terminal(terminal: Frame, tx: LedgerTx) -> None:
        suffix = "cancelled" if terminal.kind == "cancelled" else "completed"
        if terminal.kind == "failed":
            suffix = "failed"
        tx.insert_event(f"{kind}.{suffix}", terminal)

    return AttachedStreamHandler(
        kind=kind,
        mode="output_only",
        cancellation="cooperative",
        on_detach=on_detach,  # type: ignore[arg-type]
        parse_start=parse_ok,
        run=run,
        commit_terminal=commit_terminal,
    )


def demo_handlers(rate_tokens_per_s: float | None = 20.0) -> list[AttachedStreamHandler]:
    """The two seed handlers with a paced token source (what ``streamnb serve`` registers)."""
    source = FakeTokenSource(lorem_tokens(40), rate_tokens_per_s=rate_tokens_per_s)
    return [
        chatbot_handler(source=source),
        output_only_handler(
            source=FakeTokenSource(lorem_tokens(40), rate_tokens_per_s=rate_tokens_per_s)
        ),
    ]
