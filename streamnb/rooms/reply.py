"""The handler behind room replies: the default fake chatbot, and how any handler is bound.

A room reply is one stream of the registry's reply kind (default
``"streamnb.rooms.reply"``). Its start payload is ``{"messages": [...]}``: the
room's history before the new message, as ``{"role", "content"}`` dicts (the shape
:func:`streamnb.providers.chat_handler` takes), so a handler is history-aware
without knowing about rooms. A ``bidi`` handler then receives the user's text as
its one ``input`` (seed 000's chatbot shape); an ``output_only`` handler gets the
new message as the last entry of ``messages`` instead. The reply text is the
``output`` frames on channel ``"assistant.delta"``.

:func:`bind_reply_handler` adapts whatever handler a registry is given: it renames
it to the reply kind, sets ``on_detach="continue"`` (a closed widget or a dropped
HTTP client must not stop a reply other observers may resume; Stop is an explicit
cancel) and wraps ``commit_terminal`` so the room's own settlement (the assistant
message and a ``room.reply.settled`` ledger event) is written with it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from .._frames import Frame, cancelled
from .._handler import AttachedStreamHandler, ParseError, ParseOk, StreamContext
from .._ledger import LedgerTx
from ..providers.fake import FakeTokenSource

__all__ = [
    "DEFAULT_KIND",
    "REPLY_CHANNEL",
    "SETTLED_EVENT",
    "bind_reply_handler",
    "room_reply_handler",
]

#: the stream kind a :class:`~streamnb.rooms.ChatRooms` registers for its replies
DEFAULT_KIND = "streamnb.rooms.reply"
#: the output channel whose text becomes the assistant message
REPLY_CHANNEL = "assistant.delta"
#: the ledger event every settled reply commits
SETTLED_EVENT = "room.reply.settled"


#: ``settle(terminal, tx, commit_failed)``: the registry's part of a reply's settlement
SettleHook = Callable[[Frame, LedgerTx, bool], Awaitable[None]]


def _parse_start(raw: Any) -> ParseOk[list[dict[str, str]]] | ParseError:
    messages = raw.get("messages") if isinstance(raw, dict) else None
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    ):
        return ParseError(['the start payload must be {"messages": [{"role", "content"}, ...]}'])
    return ParseOk([{"role": m["role"], "content": m["content"]} for m in messages])


def room_reply_handler(
    kind: str = DEFAULT_KIND, source: FakeTokenSource | None = None
) -> AttachedStreamHandler:
    """Seed 000's fake chatbot, told the room's history: the default room reply.

    It waits for one user message, streams ``source``'s tokens for it (default
    the seeds' ``["streamnb ", "reply to ", text]``) and then one more token,
    ``" (turn N)"``, where N counts the user messages in this room including the
    new one, so replies show that each room has its own history. Checkpoints:
    ``opened -> progress -> output* -> completed``, or ``... -> cancelled`` after
    Stop (checked between tokens).

    Parameters
    ----------
    kind : str, default ``"streamnb.rooms.reply"``
        The stream kind.
    source : FakeTokenSource, optional
        Pace or lengthen the reply, e.g.
        ``FakeTokenSource(lorem_tokens(40), rate_tokens_per_s=20)`` (the fake
        provider, :mod:`streamnb.providers.fake`).

    Returns
    -------
    AttachedStreamHandler
        ``bidi``; start payload ``{"messages": [...]}`` (anything else is rejected
        with :class:`~streamnb.StartRejectedError`).

    Examples
    --------
    >>> from streamnb.providers import FakeTokenSource, lorem_tokens
    >>> from streamnb.rooms import ChatRooms
    >>> longer = FakeTokenSource(lorem_tokens(6), rate_tokens_per_s=1000)
    >>> rooms = ChatRooms(handler_factory=lambda kind: room_reply_handler(kind, longer))
    >>> room = rooms.room(rooms.create_room("Ideas"))
    >>> async def turn(text):
    ...     await room.send(text)
    ...     return (await room.wait()).content
    >>> rooms.runtime.run(turn("hi"))
    'Attached streams keep streamnb reply to hi (turn 1)'
    >>> rooms.runtime.run(turn("again"))
    'Attached streams keep streamnb reply to again (turn 2)'
    >>> rooms.close()
    """
    tokens = source or FakeTokenSource()

    async def run(
        history: list[dict[str, str]], input: AsyncIterator[Frame], ctx: StreamContext
    ) -> AsyncIterator[Any]:
        turn = 1 + sum(1 for m in history if m["role"] == "user")
        yield {
            "kind": "progress",
            "payload": {"phase": "waiting_for_user", "history": len(history)},
        }
        async for frame in input:
            if ctx.signal.aborted:
                break
            async for token in tokens.stream(str(frame.payload)):
                if ctx.signal.aborted:
                    yield cancelled(ctx.signal.reason or "cancelled")
                    return
                yield {"kind": "output", "channel": REPLY_CHANNEL, "payload": token}
            yield {"kind": "output", "channel": REPLY_CHANNEL, "payload": f" (turn {turn})"}
            yield {"kind": "completed", "terminal": {"ok": True, "turn": turn}}
            return
        yield cancelled(ctx.signal.reason or "cancelled")

    return AttachedStreamHandler(
        kind=kind,
        mode="bidi",
        cancellation="cooperative",
        on_detach="continue",
        parse_start=_parse_start,
        run=run,
    )


def bind_reply_handler(
    handler: AttachedStreamHandler, kind: str, settle: SettleHook
) -> AttachedStreamHandler:
    """``handler`` as a room reply: kind ``kind``, ``on_detach="continue"``, rooms' settlement.

    The bound handler is ``internal``: only its room attaches it (the HTTP
    server's generic endpoints refuse the kind).

    The handler's own ``commit_terminal`` runs first (its events stay in the
    same transaction); then ``settle(terminal, tx, commit_failed)`` stores the
    assistant message. If the handler's commit raised, the message is stored
    ``failed`` and the error is re-raised, so the runtime settles the stream
    ``failed`` (reason ``commit_terminal_error``) as it would without rooms.

    Parameters
    ----------
    handler : AttachedStreamHandler
        Any handler taking ``{"messages": [...]}`` (``bidi`` or ``output_only``).
    kind : str
        The reply kind to register it under.
    settle : coroutine function ``(terminal, tx, commit_failed) -> None``
        The registry's part of the settlement.

    Returns
    -------
    AttachedStreamHandler
        A copy of ``handler`` (``dataclasses.replace``); ``handler`` is unchanged.

    Examples
    --------
    >>> from streamnb.demo import chatbot_handler
    >>> async def settle(terminal, tx, commit_failed):
    ...     pass
    >>> bound = bind_reply_handler(chatbot_handler(), "my.reply", settle)
    >>> bound.kind, bound.on_detach, bound.internal
    ('my.reply', 'continue', True)
    """
    inner = handler.commit_terminal

    async def commit_terminal(terminal: Frame, tx: LedgerTx) -> None:
        error: Exception | None = None
        try:
            result = inner(terminal, tx)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            error = exc
        await settle(terminal, tx, error is not None)
        if error is not None:
            raise error

    return dataclasses.replace(
        handler,
        kind=kind,
        on_detach="continue",
        commit_terminal=commit_terminal,
        internal=True,  # a reply is opened by its room only, never by POST /streams
    )
