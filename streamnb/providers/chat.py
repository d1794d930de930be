"""A live-provider chatbot handler: seed 000's streaming chatbot on a real model.

:func:`chat_handler` returns an :class:`~streamnb.AttachedStreamHandler` with the same
shape as the fake chatbot of :mod:`streamnb.demo` (``bidi``, cooperative cancel,
``opened -> progress -> output* -> completed``, a ``<kind>.settled`` ledger event), so
it is a drop-in replacement in notebooks and in ``streamnb serve``:

* each ``input`` frame is a user message (a string, or ``{"content": str}``);
* the reply streams as ``output`` frames on channel ``assistant.delta`` (one text
  delta each);
* tool activity streams as ``output`` frames on channel ``tool`` in the vocabulary of
  :mod:`streamnb._tool_frames`: ``tool-input-delta`` pieces of the arguments, then
  ``tool-input`` (the parsed arguments), then ``tool-output`` (the result, or
  ``error``), each with the call's ``tool_call_id`` and ``tool_name``, so that
  :mod:`streamnb.server.aisdk` shows them as AI SDK tool parts;
* the terminal payload carries ``finish_reason``, ``usage`` (summed over the steps of
  the tool loop), ``model`` and ``steps``; a provider error settles ``failed`` with the
  provider's message and ``terminal["status"]`` / ``["retryable"]``.

Cancel: the upstream reply is consumed by a task owned by the handler; when
``ctx.signal`` fires, that task is cancelled at once, which closes the upstream HTTP
response (the provider stops generating), and the handler yields ``cancelled``.
Departure from seed 000: ``max_turns`` lets one stream hold a multi-turn
conversation (default 1, as in the seed: one reply, then ``completed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, Final, Literal

import anyio

from streamnb._frames import Frame, FrameSpec
from streamnb._handler import AttachedStreamHandler, ParseError, ParseOk, StreamContext
from streamnb._tool_frames import tool_input, tool_input_delta, tool_output, tool_output_error
from streamnb.providers._events import settled_event
from streamnb.providers.config import ProviderConfig
from streamnb.providers.errors import ProviderError
from streamnb.providers.openai_source import (
    Finish,
    TextDelta,
    ToolCallDelta,
    Usage,
    make_client,
)
from streamnb.providers.tools import LoopEvent, Tool, ToolCall, ToolResult, run_tool_loop

__all__ = ["chat_handler"]

_QUEUE_SIZE: Final = 256
_CLOSE_TIMEOUT_S: Final = 2.0
_ROLES: Final = frozenset({"system", "user", "assistant", "tool", "developer"})


class _End:
    """Queue marker: the reply ended (normally, or because the feed was cancelled)."""


_END: Final = _End()


def chat_handler(
    kind: str,
    config: ProviderConfig | None = None,
    *,
    system: str | None = None,
    tools: Sequence[Tool] = (),
    max_steps: int = 5,
    max_turns: int | None = 1,
    options: Mapping[str, Any] | None = None,
    on_detach: Literal["abort", "continue"] = "abort",
) -> AttachedStreamHandler:
    """A ``bidi`` chatbot handler whose replies come from a live provider.

    Parameters
    ----------
    kind : str
        Stream kind, e.g. ``"tutorial.streaming_chatbot"`` to replace the fake one.
    config : ProviderConfig, optional
        Route, credential and model. Default: ``ProviderConfig.resolve()``, run now,
        so a missing model or key fails here and not mid-stream.
    system : str, optional
        System prompt put first in every conversation.
    tools : sequence of Tool
        Tools the model may call (e.g. ``[get_current_time, roll_dice]``).
    max_steps : int
        Most requests per reply, tool steps included (seed 004 ``stepCountIs(5)``).
    max_turns : int or None
        Replies before the stream completes; ``None`` keeps answering until cancel.
    options : dict, optional
        Extra request fields (``temperature``, ``max_tokens``, ...).
    on_detach : {"abort", "continue"}
        As for any handler; ``"abort"`` (the seed's) stops billing when nobody watches.

    Returns
    -------
    AttachedStreamHandler
        Start payload: ``None``, ``{}`` or ``{"messages": [...]}`` (the
        conversation so far in OpenAI format). When it ends with a user message and
        the first input carries that same text (what :class:`~streamnb.ChatWidget`
        sends: the conversation including the new message, then the message as
        input), the message is asked once, not twice. Ledger event on settlement:
        ``<kind>.settled`` with ``{"kind": terminal kind, "terminal": frame}``.

    Raises
    ------
    ProviderConfigError
        ``config`` was not given and cannot be resolved.
    ValueError
        ``max_steps`` or ``max_turns`` below 1.

    Examples
    --------
    Building the handler checks the configuration but sends nothing; the model
    is asked once a user message arrives:

    >>> import streamnb as sn
    >>> from streamnb.providers import ProviderConfig, roll_dice
    >>> cfg = ProviderConfig.resolve(model="llama3.2", base_url="http://localhost:11434/v1",
    ...                              api_key_env=None)
    >>> runtime = sn.StreamRuntime()
    >>> runtime.register(chat_handler("tutorial.streaming_chatbot", cfg, tools=[roll_dice]))
    AttachedStreamHandler(kind='tutorial.streaming_chatbot', mode='bidi', on_detach='abort')
    >>> runtime.close()
    """
    cfg = ProviderConfig.resolve() if config is None else config
    if max_steps < 1 or (max_turns is not None and max_turns < 1):
        raise ValueError("max_steps and max_turns must be at least 1")
    tool_list = list(tools)
    request_options = dict(options or {})

    async def run(
        start: list[dict[str, Any]], input: AsyncIterator[Frame], ctx: StreamContext
    ) -> AsyncGenerator[Any, None]:
        history: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
        history.extend(start)
        # a conversation ending with the user's message, which then also arrives as input
        asked = start[-1]["content"] if start and start[-1]["role"] == "user" else None
        client = make_client(cfg)
        try:
            yield {"kind": "progress", "payload": {"phase": "waiting_for_user", "model": cfg.model}}
            turns = 0
            async for frame in input:
                if ctx.signal.aborted:
                    break
                if frame.kind != "input":
                    continue
                text = _user_text(frame.payload)
                if text != asked:
                    history.append({"role": "user", "content": text})
                asked = None
                reply = _Reply(
                    run_tool_loop(
                        cfg,
                        history,
                        tool_list,
                        max_steps=max_steps,
                        client=client,
                        options=request_options,
                    ),
                    ctx,
                )
                try:
                    while True:
                        item = await reply.get()
                        if ctx.signal.aborted or isinstance(item, _End):
                            break
                        if isinstance(item, ProviderError):
                            yield _failed(item, reply, cfg)
                            return
                        spec = reply.frame_for(item)
                        if spec is not None:
                            yield spec
                finally:
                    await reply.aclose()
                if ctx.signal.aborted:
                    break
                turns += 1
                if max_turns is not None and turns >= max_turns:
                    yield {"kind": "completed", "terminal": reply.summary(cfg, ok=True)}
                    return
                yield {
                    "kind": "progress",
                    "payload": {"phase": "waiting_for_user", "model": cfg.model},
                }
            yield {
                "kind": "cancelled",
                "reason": ctx.signal.reason or "cancelled",
                "terminal": {"cancelled": True, "model": cfg.model},
            }
        finally:
            with anyio.move_on_after(_CLOSE_TIMEOUT_S, shield=True):
                await client.close()

    return AttachedStreamHandler(
        kind=kind,
        mode="bidi",
        cancellation="cooperative",
        on_detach=on_detach,
        parse_start=_parse_start,
        run=run,
        commit_terminal=settled_event(kind),
    )


class _Reply:
    """One reply, consumed by a task this object owns, read through a bounded queue.

    The task, not the handler's own frame loop, awaits the provider, so a cancel can
    stop it at once: a second task waits on ``ctx.signal`` and cancels the feed, whose
    cancellation closes the upstream response inside :func:`stream_chat`.
    """

    def __init__(self, events: AsyncGenerator[LoopEvent, None], ctx: StreamContext) -> None:
        self._queue: asyncio.Queue[LoopEvent | ProviderError | _End] = asyncio.Queue(_QUEUE_SIZE)
        loop = asyncio.get_running_loop()
        self._feed = loop.create_task(self._pump(events), name=f"streamnb:{ctx.stream_ref}:reply")
        self._watch = loop.create_task(ctx.signal.wait(), name=f"streamnb:{ctx.stream_ref}:stop")
        self._watch.add_done_callback(lambda _: self._feed.cancel())
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.steps = 0
        self._calls: dict[int, tuple[str, str]] = {}  # this step: index -> (id, name)

    async def _pump(self, events: AsyncGenerator[LoopEvent, None]) -> None:
        end: ProviderError | _End = _END
        try:
            async with contextlib.aclosing(events) as stream:
                async for event in stream:
                    await self._queue.put(event)
        except ProviderError as exc:
            end = exc
        finally:
            # When full, the reader is not waiting and will see the stop signal itself.
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(end)

    async def get(self) -> LoopEvent | ProviderError | _End:
        return await self._queue.get()

    def frame_for(self, event: LoopEvent) -> FrameSpec | None:
        """The frame spec for ``event``; ``Finish`` only updates the summary."""
        if isinstance(event, TextDelta):
            return {"kind": "output", "channel": "assistant.delta", "payload": event.text}
        if isinstance(event, ToolCallDelta):
            # Only a call's first delta carries its id and name; every tool frame needs
            # both. A missing id gets run_tool_loop's fallback, "call_<step>_<index>".
            call = self._calls.get(event.index)
            if call is None:
                call_id = event.call_id or f"call_{self.steps}_{event.index}"
                call = self._calls[event.index] = (call_id, event.name or "")
            return tool_input_delta(call[0], call[1], event.arguments_delta)
        if isinstance(event, ToolCall):
            return tool_input(event.call_id, event.name, _arguments(event.arguments))
        if isinstance(event, ToolResult):
            if event.is_error:
                return tool_output_error(event.call_id, event.name, _error(event.result))
            return tool_output(event.call_id, event.name, _jsonable(event.result))
        self._finished(event)
        return None

    def _finished(self, event: Finish) -> None:
        self.steps += 1
        self._calls.clear()
        self.finish_reason = event.finish_reason
        if event.usage is not None:
            old = self.usage or Usage(0, 0, 0)
            self.usage = Usage(
                old.prompt_tokens + event.usage.prompt_tokens,
                old.completion_tokens + event.usage.completion_tokens,
                old.total_tokens + event.usage.total_tokens,
            )

    def summary(self, config: ProviderConfig, *, ok: bool) -> dict[str, Any]:
        return {
            "ok": ok,
            "finish_reason": self.finish_reason,
            "usage": None if self.usage is None else self.usage.to_dict(),
            "model": config.model,
            "steps": self.steps,
        }

    async def aclose(self) -> None:
        """Cancel and await both tasks (shielded, bounded); closes the upstream."""
        self._watch.cancel()
        self._feed.cancel()
        with anyio.move_on_after(_CLOSE_TIMEOUT_S, shield=True):
            await asyncio.gather(self._feed, self._watch, return_exceptions=True)


def _failed(error: ProviderError, reply: _Reply, config: ProviderConfig) -> dict[str, Any]:
    terminal = reply.summary(config, ok=False)
    terminal.update(status=error.status, retryable=error.retryable)
    return {"kind": "failed", "reason": "provider_error", "error": str(error), "terminal": terminal}


def _user_text(payload: Any) -> str:
    if isinstance(payload, Mapping) and isinstance(payload.get("content"), str):
        return str(payload["content"])
    return payload if isinstance(payload, str) else json.dumps(payload, default=str)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _arguments(text: str) -> Any:
    """A call's arguments parsed as run_tool_loop does ("" is {}); bad JSON stays text."""
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return text


def _error(result: Any) -> str:
    """The message of a failed tool's ``{"error": message}`` result."""
    if isinstance(result, Mapping) and isinstance(result.get("error"), str):
        return str(result["error"])
    return str(result)


def _parse_start(raw: Any) -> ParseOk[list[dict[str, Any]]] | ParseError:
    if raw is None or raw == {}:
        return ParseOk([])
    if not isinstance(raw, Mapping) or set(raw) - {"messages"}:
        return ParseError(['the start payload must be None, {} or {"messages": [...]}'])
    messages = raw.get("messages")
    if not isinstance(messages, list):
        return ParseError(["messages must be a list of {'role': ..., 'content': ...} dicts"])
    issues = [
        f"messages[{i}] needs a role in {sorted(_ROLES)} and string content"
        for i, m in enumerate(messages)
        if not isinstance(m, Mapping)
        or m.get("role") not in _ROLES
        or not isinstance(m.get("content"), str)
    ]
    return ParseError(issues) if issues else ParseOk([dict(m) for m in messages])
