"""A token source for any OpenAI-compatible Chat Completions endpoint.

:func:`stream_chat` sends one request with the official ``openai`` SDK
(``AsyncOpenAI``, ``stream=True``, ``stream_options={"include_usage": True}``) and
yields small typed events: :class:`TextDelta`, :class:`ToolCallDelta` and, last,
one :class:`Finish` with the finish reason and token usage.

Cancellation: closing the generator (``aclose()``, leaving an ``aclosing`` block, or
cancelling the task that iterates it) closes the upstream HTTP response at once, so
the provider stops generating (and billing). The close is shielded from further
cancellation and bounded by ``_CLOSE_TIMEOUT_S``.

Errors: everything the SDK raises (HTTP 4xx/5xx, an ``error`` object inside the
stream, timeouts, refused or dropped connections) is translated into
:class:`~streamnb.providers.errors.ProviderError` carrying the provider's message.
A request that fails *before its first event* with a retryable error is sent again,
up to ``config.max_retries`` times with a bounded exponential backoff; once an event
has been yielded nothing is retried, since the consumer has already seen part of the
reply. The SDK's own retries are switched off (``max_retries=0``) so that this module
is the only place that decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias

import anyio
import openai

from streamnb.providers.config import ProviderConfig
from streamnb.providers.errors import ProviderError

__all__ = [
    "Finish",
    "ProviderEvent",
    "TextDelta",
    "ToolCallDelta",
    "Usage",
    "make_client",
    "stream_chat",
]

_CLOSE_TIMEOUT_S: Final = 2.0
_BACKOFF_BASE_S: Final = 0.25
_BACKOFF_CAP_S: Final = 2.0
_RETRYABLE_STATUS: Final = frozenset({408, 409, 429})


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported by the provider for one request."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    def to_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the assistant's text."""

    text: str
    type: Literal["text-delta"] = field(default="text-delta", init=False)


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call; ``call_id`` and ``name`` come with the first piece only.

    Pieces with the same ``index`` belong to the same call; concatenating their
    ``arguments_delta`` gives the JSON arguments.
    """

    index: int
    call_id: str | None
    name: str | None
    arguments_delta: str
    type: Literal["tool-call-delta"] = field(default="tool-call-delta", init=False)


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of one request: why the model stopped, and the usage if reported.

    ``finish_reason`` is ``"stop"``, ``"length"``, ``"tool_calls"``,
    ``"content_filter"``, or ``None`` when the provider did not say.
    """

    finish_reason: str | None
    usage: Usage | None
    type: Literal["finish"] = field(default="finish", init=False)


ProviderEvent: TypeAlias = TextDelta | ToolCallDelta | Finish


def make_client(config: ProviderConfig) -> openai.AsyncOpenAI:
    """Build the ``AsyncOpenAI`` client described by ``config``.

    The client uses ``config.base_url``, the key from ``config.api_key_env``, a
    read timeout of ``config.timeout_s`` seconds and a connect timeout of
    ``config.connect_timeout_s`` seconds, and no SDK-level retries (see module
    docstring). Close it with ``await client.close()`` when done.

    Examples
    --------
    >>> import asyncio
    >>> from streamnb.providers import ProviderConfig
    >>> cfg = ProviderConfig.resolve(model="llama3.2", base_url="http://localhost:11434/v1",
    ...                              api_key_env=None)
    >>> client = make_client(cfg)
    >>> str(client.base_url), client.max_retries
    ('http://localhost:11434/v1/', 0)
    >>> asyncio.run(client.close())
    """
    return openai.AsyncOpenAI(
        base_url=config.base_url,
        api_key=config.reveal_api_key(),
        timeout=openai.Timeout(config.timeout_s, connect=config.connect_timeout_s),
        max_retries=0,
    )


async def stream_chat(
    config: ProviderConfig,
    messages: Sequence[Mapping[str, Any]],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    client: openai.AsyncOpenAI | None = None,
    options: Mapping[str, Any] | None = None,
) -> AsyncGenerator[ProviderEvent, None]:
    """Stream one Chat Completions reply as typed events.

    Parameters
    ----------
    config : ProviderConfig
        Route, credential, model, timeouts (seconds) and ``max_retries``.
    messages : sequence of dict
        Chat messages in the OpenAI format (``{"role": ..., "content": ...}``).
    tools : sequence of dict, optional
        Tool specifications in the OpenAI format
        (``{"type": "function", "function": {...}}``); see
        :meth:`streamnb.providers.Tool.spec`.
    client : openai.AsyncOpenAI, optional
        A client to reuse (it is not closed). By default one is made from ``config``
        with :func:`make_client` and closed when the generator ends.
    options : dict, optional
        Extra request fields such as ``temperature`` or ``max_tokens``.

    Yields
    ------
    TextDelta, ToolCallDelta, Finish
        Deltas in the order received, then exactly one ``Finish`` if the reply ended
        normally.

    Raises
    ------
    ProviderError
        The request or the stream failed (after retries, if any were allowed); the
        message is the provider's.

    Notes
    -----
    Use ``contextlib.aclosing`` so that leaving the loop early closes the upstream
    response at once rather than when the generator is garbage collected::

        async with aclosing(stream_chat(cfg, msgs)) as events:
            async for event in events:
                ...

    Examples
    --------
    Errors arrive as :class:`~streamnb.providers.ProviderError` with what to do;
    here nothing listens on the port:

    >>> import asyncio
    >>> from streamnb.providers import ProviderConfig
    >>> cfg = ProviderConfig.resolve(model="m", base_url="http://127.0.0.1:9/v1",
    ...                              api_key_env=None, max_retries=0)
    >>> async def ask():
    ...     return [event async for event in stream_chat(cfg, [{"role": "user", "content": "hi"}])]
    >>> asyncio.run(ask())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamnb.providers.errors.ProviderError: ...
    """
    request: dict[str, Any] = dict(options or {})
    request.update(
        model=config.model,
        messages=list(messages),
        stream=True,
        stream_options={"include_usage": True},
    )
    if tools:
        request["tools"] = list(tools)
    sdk = make_client(config) if client is None else client
    try:
        attempt = 0
        while True:
            started = False
            try:
                stream = await sdk.chat.completions.create(**request)
                try:
                    finish_reason: str | None = None
                    usage: Usage | None = None
                    async for chunk in stream:
                        if chunk.usage is not None:
                            usage = _usage(chunk.usage)
                        for choice in chunk.choices:
                            if choice.index != 0:
                                continue
                            if choice.finish_reason:
                                finish_reason = choice.finish_reason
                            delta = choice.delta
                            if delta.content:
                                started = True
                                yield TextDelta(delta.content)
                            for call in delta.tool_calls or ():
                                started = True
                                function = call.function
                                yield ToolCallDelta(
                                    index=call.index,
                                    call_id=call.id,
                                    name=function.name if function else None,
                                    arguments_delta=(function.arguments or "") if function else "",
                                )
                finally:
                    await _close_quietly(stream)
            except (openai.APIError, json.JSONDecodeError) as exc:
                error = _translate(exc, config, started=started)
                if started or not error.retryable or attempt >= config.max_retries:
                    raise error from exc
            else:
                yield Finish(finish_reason, usage)
                return
            await asyncio.sleep(min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt))
            attempt += 1
    finally:
        if client is None:
            await _close_quietly(sdk)


def _usage(raw: Any) -> Usage:
    return Usage(
        prompt_tokens=int(raw.prompt_tokens or 0),
        completion_tokens=int(raw.completion_tokens or 0),
        total_tokens=int(raw.total_tokens or 0),
    )


async def _close_quietly(closeable: Any) -> None:
    """Close an SDK stream or client: shielded from cancellation, bounded in time."""
    with anyio.move_on_after(_CLOSE_TIMEOUT_S, shield=True), contextlib.suppress(Exception):
        await closeable.close()


def _translate(exc: Exception, config: ProviderConfig, *, started: bool) -> ProviderError:
    """Map an ``openai`` SDK error to :class:`ProviderError` with the provider's message."""
    where = "mid-stream" if started else "before the first token"
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return ProviderError(
            _body_message(exc.body) or exc.message,
            status=status,
            retryable=status in _RETRYABLE_STATUS or status >= 500,
        )
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(
            f"{config.base_url} did not answer in time {where} (connect timeout "
            f"{config.connect_timeout_s:g} s, read timeout {config.timeout_s:g} s)",
            retryable=True,
        )
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        what = "dropped mid-stream" if started else "failed"
        return ProviderError(f"the connection to {config.base_url} {what}{detail}", retryable=True)
    if isinstance(exc, openai.APIError):
        # An error object sent inside a 200 stream.
        return ProviderError(_body_message(exc.body) or exc.message, retryable=False)
    return ProviderError(f"the provider sent a malformed chunk {where}: {exc}", retryable=False)


def _body_message(body: object) -> str | None:
    if isinstance(body, Mapping):
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
    return None
