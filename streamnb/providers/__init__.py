"""Live token sources for streamnb: OpenAI-compatible Chat Completions, with tools.

Layer: providers import the core, never the widget or the server. See
:mod:`streamnb.providers.config` for where route, credential and model come from,
:mod:`streamnb.providers.openai_source` for streaming and error translation, and
:mod:`streamnb.providers.tools` for tool calls, :mod:`streamnb.providers.chat` for
the live chatbot handler and :mod:`streamnb.providers.cassette` for recording a stream
and replaying it with no provider at all.
"""

from __future__ import annotations

from streamnb.providers.cassette import (
    Cassette,
    cassette_handler,
    record_cassette,
    shipped_cassette,
)
from streamnb.providers.chat import chat_handler
from streamnb.providers.config import DEFAULT_API_KEY_ENV, DEFAULT_BASE_URL, ProviderConfig
from streamnb.providers.errors import (
    CassetteError,
    ProviderConfigError,
    ProviderError,
    ToolDefinitionError,
)
from streamnb.providers.openai_source import (
    Finish,
    ProviderEvent,
    TextDelta,
    ToolCallDelta,
    Usage,
    make_client,
    stream_chat,
)
from streamnb.providers.tools import (
    LoopEvent,
    Tool,
    ToolCall,
    ToolResult,
    get_current_time,
    roll_dice,
    run_tool_loop,
    tool,
)

__all__ = [
    "DEFAULT_API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "Cassette",
    "CassetteError",
    "Finish",
    "LoopEvent",
    "ProviderConfig",
    "ProviderConfigError",
    "ProviderError",
    "ProviderEvent",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolDefinitionError",
    "ToolResult",
    "Usage",
    "cassette_handler",
    "chat_handler",
    "get_current_time",
    "make_client",
    "record_cassette",
    "roll_dice",
    "run_tool_loop",
    "shipped_cassette",
    "stream_chat",
    "tool",
]
