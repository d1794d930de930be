"""Fixtures and handlers for ``tests/test_server_*.py`` (loaded with ``pytest_plugins``).

Every server is a real uvicorn on 127.0.0.1 with a free port, started with
:func:`streamnb.server.serve_in_background` on the test's own loop and always
stopped at teardown (httpx's ASGI transport buffers whole bodies and cannot
test an endless stream). A test module loads them with
``pytest_plugins = ["tests._server"]``; helpers are in ``tests/_server_util.py``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import streamnb as sn
from streamnb._tool_frames import tool_input, tool_input_delta, tool_output
from streamnb.demo import chatbot_handler, output_only_handler
from streamnb.server import ServerHandle, serve_in_background
from streamnb.testing import FakeTokenSource, lorem_tokens

FAST = FakeTokenSource(lorem_tokens(12))
#: the npm project with the real `ai` package (tests/js/package.json)
JS = Path(__file__).parent / "js"


def slow_source(n_tokens: int = 60, rate: float = 60.0) -> FakeTokenSource:
    """Tokens paced slowly enough for a test to act (drop, cancel) mid-stream."""
    return FakeTokenSource(lorem_tokens(n_tokens), rate_tokens_per_s=rate)


def strict_handler() -> sn.AttachedStreamHandler:
    """Rejects any start payload that is not ``{"n": <int>}``."""

    def parse(raw: Any) -> sn.ParseOk[Any] | sn.ParseError:
        if isinstance(raw, dict) and isinstance(raw.get("n"), int):
            return sn.ParseOk(raw)
        return sn.ParseError(["'n' must be an integer"])

    async def run(start: Any, _input: Any, _ctx: Any) -> AsyncIterator[Any]:
        yield sn.completed()

    return sn.AttachedStreamHandler(kind="test.strict", run=run, parse_start=parse)


def big_handler() -> sn.AttachedStreamHandler:
    """``{"n", "size"}``: n output frames of ``size`` characters, as fast as possible."""

    async def run(start: Any, _input: Any, _ctx: Any) -> AsyncIterator[Any]:
        n = int(start.get("n", 10))
        chunk = "x" * int(start.get("size", 10))
        for _ in range(n):
            yield sn.output(chunk, "stdout")
        yield sn.completed()

    return sn.AttachedStreamHandler(kind="test.big", run=run, on_detach="continue")


def failing_handler() -> sn.AttachedStreamHandler:
    """One token, then an exception: the stream settles ``failed``."""

    async def run(start: Any, input: Any, _ctx: Any) -> AsyncIterator[Any]:
        async for _frame in input:
            yield sn.output("partial ")
            raise RuntimeError("the model went away")

    return sn.AttachedStreamHandler(kind="test.failing", mode="bidi", run=run)


def html_chat_handler() -> sn.AttachedStreamHandler:
    """A chatbot whose reply contains HTML (the page must show it as text)."""
    source = FakeTokenSource(
        lambda m: ["<b>bold</b> ", "<img src=x onerror=alert(1)> ", "done"],
        rate_tokens_per_s=None,
    )
    return chatbot_handler(kind="test.html_chat", source=source)


def tool_handler() -> sn.AttachedStreamHandler:
    """Progress, text, a tool call (input deltas, input, output), more text (AI SDK test)."""

    async def run(start: Any, input: Any, _ctx: Any) -> AsyncIterator[Any]:
        yield sn.progress({"phase": "thinking"})
        async for frame in input:
            yield sn.output("Let me look ")
            yield sn.output("that up. ")
            yield tool_input_delta("call_1", "search", '{"q": ')
            yield tool_input_delta("call_1", "search", f'"{frame.payload}"}}')
            yield tool_input("call_1", "search", {"q": frame.payload})
            yield tool_output("call_1", "search", {"hits": 3})
            yield sn.progress({"phase": "answering"})
            yield sn.output("Found 3 hits.")
            yield sn.completed()
            return

    return sn.AttachedStreamHandler(kind="test.tools", mode="bidi", run=run)


def server_handlers() -> list[sn.AttachedStreamHandler]:
    return [
        chatbot_handler(source=FAST),
        output_only_handler(source=FAST),
        chatbot_handler(kind="test.slow_chat", source=slow_source()),
        chatbot_handler(kind="test.slow_chat_continue", source=slow_source(), on_detach="continue"),
        output_only_handler(kind="test.slow_output", source=slow_source()),
        output_only_handler(kind="test.slow_output_abort", source=slow_source(), on_detach="abort"),
        strict_handler(),
        big_handler(),
        failing_handler(),
        html_chat_handler(),
        tool_handler(),
    ]


@pytest.fixture
async def server_runtime(
    make_ledger: Callable[..., sn.Ledger],
) -> AsyncIterator[sn.StreamRuntime]:
    """A runtime with the test handlers (short cancel grace), closed at teardown; on each
    ledger backend (``backend``)."""
    rt = sn.StreamRuntime(make_ledger(), cancel_grace_s=0.5, force_wait_s=0.5)
    for handler in server_handlers():
        rt.register(handler)
    try:
        yield rt
    finally:
        await rt.aclose()
        rt.ledger.close()


StartServer = Callable[..., Awaitable[ServerHandle]]


@pytest.fixture
async def start_server(server_runtime: sn.StreamRuntime) -> AsyncIterator[StartServer]:
    """``await start_server(**create_app_options)``: a running server, stopped at teardown."""
    handles: list[ServerHandle] = []

    async def start(**options: Any) -> ServerHandle:
        handle = await serve_in_background(server_runtime, **options)
        handles.append(handle)
        return handle

    try:
        yield start
    finally:
        for handle in handles:
            await handle.aclose()


@pytest.fixture
async def server(start_server: StartServer) -> ServerHandle:
    """A server with default options."""
    return await start_server()


@pytest.fixture
async def client(server: ServerHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as c:
        yield c


@pytest.fixture(scope="session")
def ai_package() -> Path:
    """``tests/js`` with ``node_modules`` installed (``npm ci`` on first use)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the `ai` package test")
    if not (JS / "node_modules" / "ai").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=JS,
            check=True,
            timeout=300,
            stdout=subprocess.DEVNULL,
        )
    return JS
