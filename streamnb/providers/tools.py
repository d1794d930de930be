"""Tools the model may call, and the loop that runs them (seed 004).

A :class:`Tool` is a Python function (sync or async) with a name, a description and a
JSON-schema for its keyword arguments; :func:`tool` builds one from a function's
signature. :func:`run_tool_loop` streams a reply, gathers the tool-call deltas into
complete calls, runs the tools in this process, appends the assistant message and
the ``role: "tool"`` results to the conversation, and asks again, until the model
answers without tools or ``max_steps`` requests were made (seed 004: ``stepCountIs(5)``).

Sync tools run in a worker thread (``asyncio.to_thread``) so that a slow tool does not
block the event loop. A tool that raises, is unknown, or gets arguments that are not a
JSON object becomes a :class:`ToolResult` with ``is_error=True`` whose message is
sent back to the model, which can then recover; it never ends the stream.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import re
import typing
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, TypeAlias, overload

import openai

from streamnb.providers.config import ProviderConfig
from streamnb.providers.errors import ToolDefinitionError
from streamnb.providers.openai_source import (
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
    _close_quietly,
    make_client,
    stream_chat,
)

__all__ = [
    "LoopEvent",
    "Tool",
    "ToolCall",
    "ToolResult",
    "get_current_time",
    "roll_dice",
    "run_tool_loop",
    "tool",
]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call.

    Parameters
    ----------
    name : str
        1-64 characters of ``[A-Za-z0-9_-]`` (the OpenAI limit).
    description : str
        What the tool does; the model reads it to decide when to call it.
    parameters : dict
        JSON schema of an object whose properties are the keyword arguments.
    fn : callable
        Called as ``fn(**arguments)``; may be ``async``. Its return value must be a
        string or JSON-serialisable (others are sent as ``str(value)``).

    Raises
    ------
    ToolDefinitionError
        Bad name, a schema that is not an object schema, or ``fn`` not callable.

    Examples
    --------
    >>> import asyncio
    >>> asyncio.run(roll_dice.invoke({"sides": 1}))
    {'result': 1, 'sides': 1}
    >>> roll_dice.spec()["function"]["name"]
    'roll_dice'
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    fn: Callable[..., Any] = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ToolDefinitionError(
                str(self.name), "the name must be 1-64 letters, digits, '_' or '-'"
            )
        if not isinstance(self.parameters, Mapping) or self.parameters.get("type") != "object":
            raise ToolDefinitionError(
                self.name, 'parameters must be a JSON schema with "type": "object"'
            )
        if not callable(self.fn):
            raise ToolDefinitionError(self.name, "fn must be callable")

    def spec(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry: ``{"type": "function", "function": {...}}``."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": dict(self.parameters),
            },
        }

    async def invoke(self, arguments: Mapping[str, Any]) -> Any:
        """Call the function with ``arguments`` (sync functions run in a thread)."""
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(**arguments)
        result = await asyncio.to_thread(self.fn, **arguments)
        if inspect.isawaitable(result):
            return await result
        return result


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A complete tool call, assembled from its deltas at the end of a step."""

    call_id: str
    name: str
    arguments: str
    type: Literal["tool-call"] = field(default="tool-call", init=False)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool returned (or ``{"error": message}`` with ``is_error=True``)."""

    call_id: str
    name: str
    result: Any
    is_error: bool = False
    type: Literal["tool-result"] = field(default="tool-result", init=False)


LoopEvent: TypeAlias = ProviderEvent | ToolCall | ToolResult


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], Tool]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a :class:`Tool` from a function; usable as ``@tool`` or ``@tool(name=...)``.

    The name defaults to ``fn.__name__``, the description to the first paragraph of
    the docstring, and the schema is derived from the signature: ``str``, ``int``,
    ``float``, ``bool``, ``list`` and ``dict`` annotations map to JSON types,
    parameters with defaults are optional (their default is shown to the model).

    Raises
    ------
    ToolDefinitionError
        See :class:`Tool`; also for ``*args`` / ``**kwargs`` without ``parameters``.

    Examples
    --------
    >>> @tool
    ... def add(a: int, b: int = 1) -> int:
    ...     '''Add two integers.'''
    ...     return a + b
    >>> add.spec()["function"]["parameters"]["required"]
    ['a']
    """

    def build(func: Callable[..., Any]) -> Tool:
        tool_name = name or str(getattr(func, "__name__", ""))
        doc = inspect.getdoc(func) or ""
        return Tool(
            name=tool_name,
            description=description if description is not None else doc.split("\n\n")[0],
            parameters=dict(parameters) if parameters is not None else _schema(tool_name, func),
            fn=func,
        )

    return build if fn is None else build(fn)


def _schema(name: str, func: Callable[..., Any]) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable annotations: fall back to untyped properties
        hints = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(name, "*args/**kwargs need an explicit parameters= schema")
        prop: dict[str, Any] = {}
        json_type = _JSON_TYPES.get(hints.get(param.name))
        if json_type is not None:
            prop["type"] = json_type
        if param.default is param.empty:
            required.append(param.name)
        else:
            prop["default"] = param.default
        properties[param.name] = prop
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def _roll(sides: float = 6) -> dict[str, int]:
    count = int(sides)
    if count < 1:
        raise ValueError(f"a die needs at least 1 side, got {sides!r}")
    return {"result": random.randint(1, count), "sides": count}


get_current_time = Tool(
    name="get_current_time",
    description="Get the current date and time",
    parameters={"type": "object", "properties": {}},
    fn=_now_iso,
)
"""Seed 004's ``get_current_time``: the current UTC time as an ISO 8601 string."""

roll_dice = Tool(
    name="roll_dice",
    description="Roll a dice with the specified number of sides",
    parameters={
        "type": "object",
        "properties": {
            "sides": {"type": "number", "description": "Number of sides on the dice", "default": 6}
        },
    },
    fn=_roll,
)
"""Seed 004's ``roll_dice``: ``{"result": 1..sides, "sides": sides}``, six sides by default."""


async def run_tool_loop(
    config: ProviderConfig,
    messages: list[dict[str, Any]],
    tools: Sequence[Tool],
    *,
    max_steps: int = 5,
    client: openai.AsyncOpenAI | None = None,
    options: Mapping[str, Any] | None = None,
) -> AsyncGenerator[LoopEvent, None]:
    """Stream replies and run the tools they call until the model answers in text.

    Each *step* is one request (streamed with
    :func:`~streamnb.providers.stream_chat`) followed by running the tools it called.
    The loop ends after a step without tool calls, or after ``max_steps`` steps
    (seed 004 ``stepCountIs(5)``); in that case the last ``Finish`` has
    ``finish_reason == "tool_calls"``.

    Parameters
    ----------
    config : ProviderConfig
        Route, credential, model, timeouts and retries.
    messages : list of dict
        The conversation. It is **extended in place** with each assistant message
        (text and ``tool_calls``) and each ``role: "tool"`` result, so the caller can
        continue the conversation afterwards.
    tools : sequence of Tool
        Tools offered to the model; names must be unique.
    max_steps : int
        Most requests to make (>= 1).
    client : openai.AsyncOpenAI, optional
        Reused for every step; by default one is made and closed at the end.
    options : dict, optional
        Extra request fields (``temperature``, ...).

    Yields
    ------
    TextDelta, ToolCallDelta, Finish, ToolCall, ToolResult
        The events of every step; after each step's ``Finish``, one ``ToolCall``
        then one ``ToolResult`` per call, in the order the model made them.

    Raises
    ------
    ProviderError
        A request failed (see :func:`stream_chat`). Tool failures do not raise.
    ToolDefinitionError
        Two tools share a name.
    ValueError
        ``max_steps`` is below 1.

    Notes
    -----
    Closing the generator or cancelling its task closes the current upstream
    response at once; a tool already running is cancelled (async) or left to
    finish in its thread (sync), and its result is discarded. With an endpoint
    to talk to::

        messages = [{"role": "user", "content": "Roll a die"}]
        async for event in run_tool_loop(cfg, messages, [roll_dice]):
            if isinstance(event, ToolResult):
                print(event.result)          # {"result": 4, "sides": 6}
        messages[-1]["content"]              # the model's answer, in text
    """
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    by_name: dict[str, Tool] = {}
    for item in tools:
        if item.name in by_name:
            raise ToolDefinitionError(item.name, "two tools have this name")
        by_name[item.name] = item
    specs = [item.spec() for item in tools]
    sdk = make_client(config) if client is None else client
    try:
        for step in range(max_steps):
            text: list[str] = []
            parts: dict[int, list[str]] = {}  # index -> [call_id, name, arguments]
            source = stream_chat(config, messages, tools=specs, client=sdk, options=options)
            try:
                async for event in source:
                    if isinstance(event, TextDelta):
                        text.append(event.text)
                    elif isinstance(event, ToolCallDelta):
                        part = parts.setdefault(event.index, ["", "", ""])
                        part[0] = event.call_id or part[0]
                        part[1] += event.name or ""
                        part[2] += event.arguments_delta
                    yield event
            finally:
                await source.aclose()
            calls = [
                ToolCall(call_id=p[0] or f"call_{step}_{i}", name=p[1], arguments=p[2])
                for i, p in sorted(parts.items())
            ]
            assistant: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
            if not calls:
                assistant["content"] = "".join(text)
                messages.append(assistant)
                return
            assistant["tool_calls"] = [
                {
                    "id": c.call_id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in calls
            ]
            messages.append(assistant)
            for call in calls:
                yield call
                result = await _execute(call, by_name)
                messages.append(
                    {"role": "tool", "tool_call_id": call.call_id, "content": _content(result)}
                )
                yield result
    finally:
        if client is None:
            await _close_quietly(sdk)


async def _execute(call: ToolCall, tools: Mapping[str, Tool]) -> ToolResult:
    def failed(message: str) -> ToolResult:
        return ToolResult(call.call_id, call.name, {"error": message}, is_error=True)

    target = tools.get(call.name)
    if target is None:
        known = ", ".join(sorted(tools)) or "none"
        return failed(f"unknown tool {call.name!r}; available tools: {known}")
    try:
        arguments = json.loads(call.arguments) if call.arguments.strip() else {}
    except ValueError as exc:
        return failed(f"arguments are not valid JSON ({exc}): {call.arguments[:200]!r}")
    if not isinstance(arguments, dict):
        return failed(f"arguments must be a JSON object, got {type(arguments).__name__}")
    try:
        signature = inspect.signature(target.fn)
        signature.bind(**arguments)
    except TypeError as exc:
        return failed(f"bad arguments for {call.name}: {exc}")
    except ValueError:  # builtins without a signature: let the call itself decide
        pass
    try:
        value = await target.invoke(arguments)
    except Exception as exc:
        return failed(f"{type(exc).__name__}: {exc}")
    return ToolResult(call.call_id, call.name, value)


def _content(result: ToolResult) -> str:
    if isinstance(result.result, str):
        return result.result
    return json.dumps(result.result, default=str, ensure_ascii=False)
