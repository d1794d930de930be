"""A local, scriptable OpenAI-compatible Chat Completions server for tests.

``POST /v1/chat/completions`` answers like the real API: with ``stream: true`` it sends
SSE ``data: {chunk}`` lines (``object: "chat.completion.chunk"``, ``choices[0].delta``
with ``role`` / ``content`` / ``tool_calls``, ``finish_reason``), a usage chunk
(``choices: []``) when ``stream_options.include_usage`` is true, then ``data: [DONE]``;
otherwise one ``chat.completion`` JSON object. ``GET /v1/models`` lists the model.

Each reply follows a :class:`Script` (tokens, tool calls, per-token delay and faults).
Every request is recorded (:class:`RecordedRequest`: body, headers including
``Authorization``) and so is a client disconnect, seen as the ASGI ``http.disconnect``
message while the response is still streaming. The events are :class:`CrossThreadEvent`
objects, awaitable from the test's loop, so a test can prove that cancelling the
consumer closed the upstream response.

The server is uvicorn in a background thread with its own event loop, bound to
127.0.0.1 on a free port. Fixtures: ``openai_server_session`` (one server per test
session, stopped at teardown) and ``openai_server`` (the same server, reset for each
test). Use them with ``pytest_plugins = ["tests.openai_server"]`` in ``conftest.py``,
or import both names into the test module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from streamnb.providers import ProviderConfig

__all__ = [
    "CrossThreadEvent",
    "OpenAIServer",
    "RecordedRequest",
    "Script",
    "openai_server",
    "openai_server_session",
]

DEFAULT_MODEL = "streamnb-test-model"
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


class CrossThreadEvent:
    """An event set from any thread and awaited from any event loop (or waited on).

    ``threading.Event`` cannot be awaited and ``asyncio.Event`` belongs to one loop;
    the server runs on its own loop in another thread, the test on pytest's loop.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flag = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def is_set(self) -> bool:
        return self._flag.is_set()

    def set(self) -> None:
        with self._lock:
            if self._flag.is_set():
                return
            self._flag.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is already closed
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until set; return ``False`` if ``timeout_s`` seconds passed first."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._flag.is_set():
                return True
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout_s)
        except asyncio.TimeoutError:
            return False
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove((loop, future))
        return True

    def wait_sync(self, timeout_s: float | None = None) -> bool:
        """Block the calling thread until set (for synchronous tests and fixtures)."""
        return self._flag.wait(timeout_s)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class Script:
    """What the server answers to one request.

    Attributes
    ----------
    tokens : list of str
        Text deltas, one chunk each.
    tool_calls : list of dict
        ``{"name": str, "arguments": dict | str, "id": str (optional)}``; emitted
        instead of the text when the request offers ``tools`` and (with
        ``tool_calls_when="last_user"``) its last message has role ``user``.
        Arguments are streamed in pieces of ``argument_piece_chars`` characters.
    tool_calls_when : {"last_user", "always"}
        ``"always"`` makes the model call tools on every step (tests step limits).
    delay_s : float
        Seconds before each token (and each argument piece).
    error_status : int or None
        Answer with this HTTP status and an OpenAI error JSON body.
    error_message, error_type, error_code
        Content of the error object (for ``error_status`` and ``error_mid_stream``).
    error_mid_stream : int or None
        After this many tokens, send a ``data: {"error": {...}}`` line and end.
    stall_after : int or None
        After this many tokens, send nothing more and keep the response open.
    drop_after : int or None
        After this many tokens, close the connection abruptly (incomplete body).
    finish_reason : str
        Reason sent with the last choice chunk for a text answer.
    usage : dict or None
        Override of the usage numbers; computed from the request by default.
    """

    tokens: list[str] = field(
        default_factory=lambda: ["Hello", " from", " the", " local", " server."]
    )
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tool_calls_when: Literal["last_user", "always"] = "last_user"
    argument_piece_chars: int = 8
    delay_s: float = 0.0
    error_status: int | None = None
    error_message: str = "The local test server was told to fail."
    error_type: str = "server_error"
    error_code: str | None = None
    error_mid_stream: int | None = None
    stall_after: int | None = None
    drop_after: int | None = None
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None


@dataclass
class RecordedRequest:
    """One request the server received, and what happened to its response."""

    index: int
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    script: Script | None = None
    tokens_sent: int = 0
    #: The client went away while the response was still being sent.
    disconnected: CrossThreadEvent = field(default_factory=CrossThreadEvent)
    #: The response ended, whichever way (complete, disconnect, drop, error).
    ended: CrossThreadEvent = field(default_factory=CrossThreadEvent)
    completed: bool = False

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


class _DropConnection(Exception):
    """Raised inside the app to make uvicorn close the connection mid-body."""


class _DropFilter(logging.Filter):
    """Keep the deliberate connection drops out of the test logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, _DropConnection)


class OpenAIServer:
    """The scriptable server; see the module docstring.

    Attributes
    ----------
    base_url : str
        ``http://127.0.0.1:<port>/v1``, to pass to ``AsyncOpenAI(base_url=...)``.
    script : Script
        The reply used when no queued script is left.
    requests : list of RecordedRequest
        Every request received since the last :meth:`reset`.
    disconnected : CrossThreadEvent
        Set when any streaming response loses its client before completion.
    """

    def __init__(self, model: str = DEFAULT_MODEL) -> None:
        self.model = model
        self.script = Script()
        self.requests: list[RecordedRequest] = []
        self.disconnected = CrossThreadEvent()
        self._queue: deque[Script] = deque()
        self._release = CrossThreadEvent()
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._filter = _DropFilter()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    # -- lifecycle -----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the server is not started; call start() first")
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Bind 127.0.0.1 on a free port and serve from a background thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            loop="asyncio",
            ws="none",  # no websockets import: its deprecation warnings are errors here
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        logging.getLogger("uvicorn.error").addFilter(self._filter)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="openai-test-server"
        )
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the local OpenAI test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Release stalled responses, stop uvicorn and join its thread."""
        self._release.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT_S)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(_STOP_TIMEOUT_S)
        if self._socket is not None:
            self._socket.close()
        logging.getLogger("uvicorn.error").removeFilter(self._filter)

    def reset(self) -> None:
        """Forget requests and queued scripts, restore the default script, free stalls."""
        old_release, self._release = self._release, CrossThreadEvent()
        old_release.set()
        with self._lock:
            self.requests = []
            self._queue.clear()
        self.script = Script()
        self.disconnected = CrossThreadEvent()

    # -- scripting -----------------------------------------------------------------

    def enqueue(self, *scripts: Script) -> None:
        """Answer the next requests with ``scripts``, in order, then with ``script``."""
        with self._lock:
            self._queue.extend(scripts)

    def _next_script(self) -> Script:
        with self._lock:
            return self._queue.popleft() if self._queue else self.script

    # -- endpoints -----------------------------------------------------------------

    async def _models(self, request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "x"}]}
        )

    async def _chat(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with self._lock:
            record = RecordedRequest(
                index=len(self.requests),
                method=request.method,
                path=request.url.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
            )
            self.requests.append(record)
        if not isinstance(body, dict) or "model" not in body or "messages" not in body:
            record.ended.set()
            return _error(400, "Request must be JSON with 'model' and 'messages'.", "invalid")
        script = self._next_script()
        record.script = script
        if script.error_status is not None:
            record.ended.set()
            return _error(script.error_status, script.error_message, script.error_type)
        if body.get("stream"):
            return _SSEResponse(self._chunks(body, script, record), self, record)
        record.completed = True
        record.ended.set()
        return JSONResponse(self._completion(body, script, record))

    # -- reply building ------------------------------------------------------------

    def _wants_tools(self, body: dict[str, Any], script: Script) -> bool:
        if not script.tool_calls or not body.get("tools"):
            return False
        if script.tool_calls_when == "always":
            return True
        messages = body.get("messages") or [{}]
        return bool(messages[-1].get("role") == "user")

    def _tool_calls(self, script: Script, record: RecordedRequest) -> list[dict[str, Any]]:
        calls = []
        for i, spec in enumerate(script.tool_calls):
            args = spec.get("arguments", {})
            calls.append(
                {
                    "id": spec.get("id", f"call_{record.index}_{i}"),
                    "name": spec["name"],
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                }
            )
        return calls

    def _usage(self, body: dict[str, Any], script: Script, completion: int) -> dict[str, int]:
        if script.usage is not None:
            return dict(script.usage)
        prompt = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _completion(
        self, body: dict[str, Any], script: Script, record: RecordedRequest
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        if self._wants_tools(body, script):
            calls = self._tool_calls(script, record)
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in calls
            ]
            finish, completion = "tool_calls", len(calls)
        else:
            message["content"] = "".join(script.tokens)
            finish, completion = script.finish_reason, len(script.tokens)
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            ],
            "usage": self._usage(body, script, completion),
        }

    async def _chunks(
        self, body: dict[str, Any], script: Script, record: RecordedRequest
    ) -> AsyncIterator[bytes]:
        """Yield the SSE lines of one streamed reply; faults are applied here."""
        chat_id = f"chatcmpl-{next(self._ids)}"
        created = int(time.time())
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        release = self._release

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            obj: dict[str, Any] = {
                "id": chat_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "system_fingerprint": "fp_streamnb",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                obj["usage"] = None
            return _sse(obj)

        # (delta, counts-as-token) pairs: the role chunk is not a token.
        pieces: list[dict[str, Any]] = []
        if self._wants_tools(body, script):
            first_delta: dict[str, Any] = {"role": "assistant", "content": None}
            for i, call in enumerate(self._tool_calls(script, record)):
                pieces.append(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": call["id"],
                                "type": "function",
                                "function": {"name": call["name"], "arguments": ""},
                            }
                        ]
                    }
                )
                args = call["arguments"]
                step = max(1, script.argument_piece_chars)
                pieces.extend(
                    {"tool_calls": [{"index": i, "function": {"arguments": args[j : j + step]}}]}
                    for j in range(0, len(args), step)
                )
            finish = "tool_calls"
        else:
            first_delta = {"role": "assistant", "content": "", "refusal": None}
            pieces = [{"content": token} for token in script.tokens]
            finish = script.finish_reason

        yield chunk(first_delta)
        for n, delta in enumerate(pieces):
            if script.error_mid_stream == n:
                error = {
                    "message": script.error_message,
                    "type": script.error_type,
                    "param": None,
                    "code": script.error_code,
                }
                yield _sse({"error": error})
                return
            if script.stall_after == n:
                await release.wait()
                return
            if script.drop_after == n:
                raise _DropConnection
            if script.delay_s:
                await asyncio.sleep(script.delay_s)
            yield chunk(delta)
            record.tokens_sent = n + 1
        yield chunk({}, finish)
        if include_usage:
            usage = self._usage(body, script, len(pieces))
            yield _sse(
                {
                    "id": chat_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": body["model"],
                    "system_fingerprint": "fp_streamnb",
                    "choices": [],
                    "usage": usage,
                }
            )
        yield b"data: [DONE]\n\n"


class _SSEResponse(StreamingResponse):
    """Stream ``chunks`` while watching ``receive`` for the client going away.

    Written against raw ASGI (not ``StreamingResponse``) so that a disconnect is seen
    even while the reply is stalled, and so that it is recorded.
    """

    def __init__(
        self, chunks: AsyncIterator[bytes], server: OpenAIServer, record: RecordedRequest
    ) -> None:
        super().__init__(
            chunks, media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )
        self._chunks = chunks
        self._server = server
        self._record = record

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = self._record
        complete = False

        async def sender() -> None:
            nonlocal complete
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            async for data in self._chunks:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            complete = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def listener() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        send_task = asyncio.ensure_future(sender())
        listen_task = asyncio.ensure_future(listener())
        try:
            await asyncio.wait({send_task, listen_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (send_task, listen_task):
                task.cancel()
            results = await asyncio.gather(send_task, listen_task, return_exceptions=True)
            await _aclose(self._chunks)
            record.completed = complete
            if not complete and listen_task.done() and not listen_task.cancelled():
                record.disconnected.set()
                self._server.disconnected.set()
            record.ended.set()
        if isinstance(results[0], _DropConnection):
            raise results[0]


async def _aclose(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


def _sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n".encode()


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": None}},
        status_code=status,
    )


@pytest.fixture(scope="session")
def openai_server_session() -> Iterator[OpenAIServer]:
    """One local OpenAI-compatible server for the whole session (stopped at the end)."""
    server = OpenAIServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def openai_server(openai_server_session: OpenAIServer) -> Iterator[OpenAIServer]:
    """The session's server, reset before and after the test."""
    openai_server_session.reset()
    try:
        yield openai_server_session
    finally:
        openai_server_session.reset()


#: the fake credential the provider tests configure (never a real key)
TEST_KEY = "sk-local-test-key"
#: seconds a provider test waits for anything (the SDK's timeout too)
WAIT_S = 10.0


def config_for(server: OpenAIServer, **overrides: Any) -> ProviderConfig:
    """A :class:`ProviderConfig` for ``server``: fake key, no retries, ``WAIT_S`` timeout."""
    settings: dict[str, Any] = {
        "model": "test-model",
        "base_url": server.base_url,
        "api_key_env": "STREAMNB_TEST_KEY",
        "max_retries": 0,
        "timeout_s": WAIT_S,
    }
    settings.update(overrides)
    return ProviderConfig.resolve(**settings, environ={"STREAMNB_TEST_KEY": TEST_KEY})
