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

    Parameters
    ----------
    kind : str, default ``"tutorial.streaming_chatbot"``
        The stream kind (seed 000's).
    source : FakeTokenSource, optional
        The reply's tokens for the user's message; default the seed's
        ``["streamnb ", "reply to ", message]`` as fast as possible.
    on_detach : {"abort", "continue"}, default ``"abort"``
        As seed 000: the reply stops when its last observer leaves.

    Returns
    -------
    AttachedStreamHandler
        ``bidi``, cooperative cancel (checked between tokens); any start payload;
        replies to the first ``input`` frame on channel ``assistant.delta``.

    Examples
    --------
    >>> import streamnb as sn
    >>> from streamnb.testing import checkpoint_path
    >>> runtime = sn.StreamRuntime()
    >>> runtime.register(chatbot_handler())
    AttachedStreamHandler(kind='tutorial.streaming_chatbot', mode='bidi', on_detach='abort')
    >>> async def chat(text):
    ...     session = await runtime.attach("tutorial.streaming_chatbot")
    ...     await session.send(text)
    ...     return await sn.read_until_terminal(session.output)
    >>> frames = runtime.run(chat("hello"))
    >>> checkpoint_path(frames)
    'opened -> progress -> output×3 -> completed'
    >>> "".join(f.payload for f in frames if f.kind == "output")
    'streamnb reply to hello'
    >>> runtime.ledger.events()["kind"].tolist()
    ['tutorial.streaming_chatbot.settled']
    >>> runtime.close()
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

    Parameters
    ----------
    kind : str, default ``"tutorial.output_only"``
        The stream kind (seed 001's).
    source : FakeTokenSource, optional
        Stream these tokens instead of the one ``"hello"``.
    on_detach : {"abort", "continue"}, default ``"continue"``
        As seed 001: the job runs on when nobody watches.

    Returns
    -------
    AttachedStreamHandler
        ``output_only``, cooperative cancel; start payload ``{"message"?: str}``;
        commits the ledger event ``<kind>.completed``, ``<kind>.cancelled`` or
        ``<kind>.failed`` with the terminal frame.

    Examples
    --------
    >>> import streamnb as sn
    >>> runtime = sn.StreamRuntime()
    >>> _ = runtime.register(output_only_handler())
    >>> async def job():
    ...     session = await runtime.attach("tutorial.output_only", {})
    ...     return await sn.read_until_terminal(session.output)
    >>> [(f.kind, f.payload) for f in runtime.run(job())][2:]
    [('output', 'hello'), ('completed', None)]
    >>> runtime.ledger.events()["kind"].tolist()
    ['tutorial.output_only.completed']
    >>> runtime.close()
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
        tx.insert_event(f"{kind}.{terminal.kind}", terminal)

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
    """The two seed handlers with a paced token source (what ``streamnb serve`` registers).

    Parameters
    ----------
    rate_tokens_per_s : float or None, default 20.0
        Pace of each reply's 40 tokens; ``None`` streams them at once.

    Returns
    -------
    list of AttachedStreamHandler
        :func:`chatbot_handler` and :func:`output_only_handler`, each with a
        :class:`~streamnb.providers.FakeTokenSource` of ``lorem_tokens(40)``.

    Examples
    --------
    >>> [handler.kind for handler in demo_handlers()]
    ['tutorial.streaming_chatbot', 'tutorial.output_only']
    """

    def source() -> FakeTokenSource:
        return FakeTokenSource(lorem_tokens(40), rate_tokens_per_s=rate_tokens_per_s)

    return [chatbot_handler(source=source()), output_only_handler(source=source())]
