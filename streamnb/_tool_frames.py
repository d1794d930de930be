"""The tool-frame vocabulary: how a handler reports a tool call, defined once.

A handler that calls tools (:func:`streamnb.providers.chat_handler`, or your own)
reports each call as ``output`` frames on channel :data:`TOOL_CHANNEL` (``"tool"``)
whose payload is one of the dicts below. Consumers (the AI SDK endpoint
:mod:`streamnb.server.aisdk`, notebooks, cassettes) read these keys and nothing else.

The vocabulary is the tool part of the Vercel AI SDK *UI message stream protocol*
(v1, ``x-vercel-ai-ui-message-stream: v1``), in snake_case and without the stream
bookkeeping (``tool-input-start`` is implied by a call's first frame):

==========================================  ==========================================
payload (``type``, keys)                    AI SDK UI message stream chunks
==========================================  ==========================================
``tool-input-delta``                        ``tool-input-start`` {toolCallId, toolName}
{tool_call_id, tool_name, input_delta}      on a call's first frame, then
                                            ``tool-input-delta`` {toolCallId,
                                            inputTextDelta} (when not empty)
``tool-input``                              ``tool-input-available`` {toolCallId,
{tool_call_id, tool_name, input}            toolName, input}
``tool-output``                             ``tool-output-available`` {toolCallId,
{tool_call_id, tool_name, output}           output}
``tool-output``                             ``tool-output-error`` {toolCallId,
{tool_call_id, tool_name, error}            errorText}
==========================================  ==========================================

One call goes ``tool-input-delta* -> tool-input -> tool-output``; every frame of it
carries the same ``tool_call_id`` and ``tool_name``. Concatenating the
``input_delta`` strings gives the input's JSON text; ``input`` is that text parsed
(or the raw text when it is not valid JSON); ``output`` is any JSON value. A tool
that failed gives ``error`` (a message) instead of ``output``.

This module is core: it imports nothing from Jupyter, Starlette or the providers.

Examples
--------
>>> spec = tool_input("call_1", "roll_dice", {"sides": 20})
>>> spec["channel"], spec["payload"]["type"], spec["payload"]["input"]
('tool', 'tool-input', {'sides': 20})
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypeAlias, TypedDict

from ._frames import FrameSpec

__all__ = [
    "TOOL_CHANNEL",
    "ToolFrame",
    "ToolInput",
    "ToolInputDelta",
    "ToolOutput",
    "ToolOutputError",
    "is_tool_channel",
    "tool_input",
    "tool_input_delta",
    "tool_output",
    "tool_output_error",
]

TOOL_CHANNEL: Final = "tool"
"""The ``output`` channel of tool frames (``"tool.<name>"`` sub-channels also count)."""


class ToolInputDelta(TypedDict):
    """A piece of a call's input JSON text (AI SDK ``tool-input-start`` / ``-delta``).

    Attributes
    ----------
    type : "tool-input-delta"
    tool_call_id : str
        Identifies the call; the same on every frame of it.
    tool_name : str
        The tool called.
    input_delta : str
        The next piece of the input's JSON text (may be empty on the first piece).
    """

    type: Literal["tool-input-delta"]
    tool_call_id: str
    tool_name: str
    input_delta: str


class ToolInput(TypedDict):
    """A call's complete input (AI SDK ``tool-input-available``).

    Attributes
    ----------
    type : "tool-input"
    tool_call_id : str
    tool_name : str
    input : JSON value
        The parsed arguments (the raw text when they are not valid JSON).
    """

    type: Literal["tool-input"]
    tool_call_id: str
    tool_name: str
    input: Any


class ToolOutput(TypedDict):
    """What the tool returned (AI SDK ``tool-output-available``).

    Attributes
    ----------
    type : "tool-output"
    tool_call_id : str
    tool_name : str
    output : JSON value
    """

    type: Literal["tool-output"]
    tool_call_id: str
    tool_name: str
    output: Any


class ToolOutputError(TypedDict):
    """Why the tool failed (AI SDK ``tool-output-error``); ``error`` replaces ``output``.

    Attributes
    ----------
    type : "tool-output"
    tool_call_id : str
    tool_name : str
    error : str
        A message for people (and for the model, which is told the same).
    """

    type: Literal["tool-output"]
    tool_call_id: str
    tool_name: str
    error: str


ToolFrame: TypeAlias = ToolInputDelta | ToolInput | ToolOutput | ToolOutputError
"""Any tool-frame payload; ``type`` tells the input forms apart, ``error`` the outputs."""


def is_tool_channel(channel: str | None) -> bool:
    """Whether ``channel`` carries tool frames: ``"tool"`` or ``"tool.<anything>"``."""
    return channel is not None and (
        channel == TOOL_CHANNEL or channel.startswith(TOOL_CHANNEL + ".")
    )


def _spec(payload: ToolFrame) -> FrameSpec:
    return {"kind": "output", "channel": TOOL_CHANNEL, "payload": payload}


def tool_input_delta(tool_call_id: str, tool_name: str, input_delta: str) -> FrameSpec:
    """An ``output`` frame spec with a :class:`ToolInputDelta` payload.

    Parameters
    ----------
    tool_call_id : str
        Identifies the call.
    tool_name : str
        The tool called.
    input_delta : str
        The next piece of the input's JSON text.

    Returns
    -------
    FrameSpec
        ``{"kind": "output", "channel": "tool", "payload": {...}}``, ready to yield.
    """
    payload: ToolInputDelta = {
        "type": "tool-input-delta",
        "tool_call_id": tool_call_id,
        "tool_name": tool_name,
        "input_delta": input_delta,
    }
    return _spec(payload)


def tool_input(tool_call_id: str, tool_name: str, input: Any) -> FrameSpec:
    """An ``output`` frame spec with a :class:`ToolInput` payload.

    Parameters
    ----------
    tool_call_id : str
        Identifies the call.
    tool_name : str
        The tool called.
    input : JSON value
        The complete, parsed input.

    Returns
    -------
    FrameSpec
        ``{"kind": "output", "channel": "tool", "payload": {...}}``, ready to yield.
    """
    payload: ToolInput = {
        "type": "tool-input",
        "tool_call_id": tool_call_id,
        "tool_name": tool_name,
        "input": input,
    }
    return _spec(payload)


def tool_output(tool_call_id: str, tool_name: str, output: Any) -> FrameSpec:
    """An ``output`` frame spec with a :class:`ToolOutput` payload.

    Parameters
    ----------
    tool_call_id : str
        Identifies the call.
    tool_name : str
        The tool called.
    output : JSON value
        What the tool returned.

    Returns
    -------
    FrameSpec
        ``{"kind": "output", "channel": "tool", "payload": {...}}``, ready to yield.
    """
    payload: ToolOutput = {
        "type": "tool-output",
        "tool_call_id": tool_call_id,
        "tool_name": tool_name,
        "output": output,
    }
    return _spec(payload)


def tool_output_error(tool_call_id: str, tool_name: str, error: str) -> FrameSpec:
    """An ``output`` frame spec with a :class:`ToolOutputError` payload.

    Parameters
    ----------
    tool_call_id : str
        Identifies the call.
    tool_name : str
        The tool called.
    error : str
        Why the tool failed.

    Returns
    -------
    FrameSpec
        ``{"kind": "output", "channel": "tool", "payload": {...}}``, ready to yield.
    """
    payload: ToolOutputError = {
        "type": "tool-output",
        "tool_call_id": tool_call_id,
        "tool_name": tool_name,
        "error": error,
    }
    return _spec(payload)
