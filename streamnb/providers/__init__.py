"""Token sources for streamnb: fake tokens, OpenAI-compatible Chat Completions, tools, cassettes.

Layer: providers import the core, never the widget or the server. See
:mod:`streamnb.providers.fake` for the seeds' deterministic tokens,
:mod:`streamnb.providers.config` for where route, credential and model come from,
:mod:`streamnb.providers.openai_source` for streaming and error translation,
:mod:`streamnb.providers.tools` for tool calls, :mod:`streamnb.providers.chat` for
the live chatbot handler and :mod:`streamnb.providers.cassette` for recording a stream
and replaying it with no provider at all.

Names load on first use (PEP 562), so ``import streamnb.providers.fake`` (what the
demo handlers and the default room reply use) does not import the ``openai`` SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from streamnb.providers.fake import FakeTokenSource, fake_tokens, lorem_tokens
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

#: module -> the public names it defines
_EXPORTS: dict[str, tuple[str, ...]] = {
    "cassette": ("Cassette", "cassette_handler", "record_cassette", "shipped_cassette"),
    "chat": ("chat_handler",),
    "config": ("DEFAULT_API_KEY_ENV", "DEFAULT_BASE_URL", "ProviderConfig"),
    "errors": ("CassetteError", "ProviderConfigError", "ProviderError", "ToolDefinitionError"),
    "fake": ("FakeTokenSource", "fake_tokens", "lorem_tokens"),
    "openai_source": (
        "Finish",
        "ProviderEvent",
        "TextDelta",
        "ToolCallDelta",
        "Usage",
        "make_client",
        "stream_chat",
    ),
    "tools": (
        "LoopEvent",
        "Tool",
        "ToolCall",
        "ToolResult",
        "get_current_time",
        "roll_dice",
        "run_tool_loop",
        "tool",
    ),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import the module defining ``name`` on first use."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'streamnb.providers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"streamnb.providers.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)


__all__ = [
    "DEFAULT_API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "Cassette",
    "CassetteError",
    "FakeTokenSource",
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
    "fake_tokens",
    "get_current_time",
    "lorem_tokens",
    "make_client",
    "record_cassette",
    "roll_dice",
    "run_tool_loop",
    "shipped_cassette",
    "stream_chat",
    "tool",
]
