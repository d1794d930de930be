"""Running the app with uvicorn: in the background of a notebook, or in the foreground.

:func:`serve_in_background` starts ``uvicorn.Server.serve()`` as a task on the
*running* loop, the loop the runtime is bound to (in Jupyter, the kernel's
loop), so HTTP requests and the notebook's own ``await session...`` calls share
one runtime. The cell that starts it returns at once; the server keeps serving
while the kernel is idle. The socket is bound before uvicorn starts (port 0
picks a free port), so a busy port raises ``OSError`` in the cell instead of
uvicorn's ``sys.exit`` inside the kernel's loop.

:class:`StreamnbServer` is ``uvicorn.Server`` with two changes:

* Signal handlers are installed only when asked (the CLI) and only on the main
  thread; a background server never touches SIGINT, so the kernel's interrupt
  keeps working. Unlike uvicorn, a captured signal is not re-raised after a
  graceful shutdown: ``streamnb serve`` exits normally on Ctrl-C.
* Shutdown first ends every live SSE/WebSocket response
  (:meth:`ServerState.begin_shutdown`); otherwise uvicorn would wait for endless
  streams to finish on their own.

Re-running a notebook cell: :func:`serve_in_background` on a ``host:port`` that a
server of this process already serves first stops that server (``await
handle.aclose()``), so the cell can simply be run again. With ``port=0`` every call
is a new server on a new port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Generator
from typing import Any

import uvicorn

from .. import _takeover
from .._errors import RuntimeClosedError
from .._runtime import StreamRuntime
from .app import create_app
from .state import ServerState
from .timeouts import HEADER_TIMEOUT_S, header_timeout_protocol

__all__ = ["ServerHandle", "StreamnbServer", "bind_socket", "serve_in_background"]

logger = logging.getLogger("streamnb.server")


class StreamnbServer(uvicorn.Server):
    """``uvicorn.Server`` that closes streaming connections first and owns its signals.

    Parameters
    ----------
    config : uvicorn.Config
    state : ServerState, optional
        The app's state (``app.state.streamnb``), whose connections are ended
        when the server shuts down.
    install_signal_handlers : bool, default False
        Handle SIGINT/SIGTERM (main thread only) as a graceful shutdown.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        state: ServerState | None = None,
        install_signal_handlers: bool = False,
    ) -> None:
        super().__init__(config)
        self.state = state
        self.install_signal_handlers = install_signal_handlers
        self.started_event = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if not self.install_signal_handlers or (
            threading.current_thread() is not threading.main_thread()
        ):
            yield
            return
        originals = {
            sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in originals.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.started_event.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.state is not None:
            self.state.begin_shutdown()
        await super().shutdown(sockets=sockets)

    @property
    def port(self) -> int:
        """The port the server listens on (after startup)."""
        port: int = self.servers[0].sockets[0].getsockname()[1]
        return port


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free port), IPv4 or IPv6.

    The socket is created with ``proto=IPPROTO_TCP`` on purpose: asyncio turns on
    ``TCP_NODELAY`` only for sockets whose ``proto`` says TCP, and accepted
    sockets inherit it. With ``proto=0`` (what ``socket.create_server`` gives)
    Nagle's algorithm stays on and a small SSE event can wait ~40 ms for the
    client's delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def _run(server: StreamnbServer, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits the process on startup failure; not in a kernel
        raise RuntimeError(
            f"the HTTP server could not start (uvicorn exit code {exc.code}); see the log"
        ) from None
    finally:
        sock.close()


class ServerHandle:
    """A server running in the background; stop it with ``await handle.aclose()``.

    Attributes
    ----------
    url : str
        ``http://host:port`` (no trailing slash).
    host : str
    port : int
    app : starlette.applications.Starlette
        The served app (``app.state.streamnb`` is its state).
    server : StreamnbServer
    """

    def __init__(
        self,
        server: StreamnbServer,
        task: asyncio.Task[None],
        app: Any,
        host: str,
        port: int,
    ) -> None:
        self.server = server
        self.app = app
        self.host = host
        self.port = port
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{port}"
        self._task = task
        self._loop = task.get_loop()
        # The registry holds the handle weakly; this callback keeps it alive while the
        # server runs, so a re-run cell finds it even after its variable was rebound.
        _takeover.register("server", (host, port), self)
        task.add_done_callback(lambda _: _takeover.release("server", (host, port), self))

    @property
    def running(self) -> bool:
        """True until the server task has finished."""
        return not self._task.done()

    def stop(self) -> None:
        """Ask the server to stop (returns at once; safe from any thread).

        Live SSE/WebSocket connections are ended, their sessions detach, and
        the server task finishes on its loop shortly after.
        """
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self.server.should_exit = True
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(setattr, self.server, "should_exit", True)

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Stop the server and wait for it (at most ``timeout_s`` seconds, then force).

        Raises whatever ended the server task abnormally (e.g. a startup error).
        """
        self.stop()
        done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
        if not done:
            logger.warning("the HTTP server did not stop within %.3g s; forcing it", timeout_s)
            self.server.force_exit = True
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=timeout_s)
        if self._task.done() and not self._task.cancelled():
            exc = self._task.exception()
            if exc is not None:
                raise exc

    async def __aenter__(self) -> ServerHandle:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<ServerHandle {self.url} {'running' if self.running else 'stopped'}>"


async def serve_in_background(
    runtime: StreamRuntime,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    startup_timeout_s: float = 10.0,
    header_timeout_s: float = HEADER_TIMEOUT_S,
    **app_options: Any,
) -> ServerHandle:
    """Serve ``runtime`` over HTTP from a task on the running loop; return a handle.

    Parameters
    ----------
    runtime : StreamRuntime
        Must be unbound or bound to the running loop (in Jupyter: the kernel's).
    host : str, default "127.0.0.1"
    port : int, default 0
        0 picks a free port; read it from ``handle.port``. A server this process
        already runs on ``host:port`` is stopped first (a re-run notebook cell
        replaces its server); another process on the port is an ``OSError``.
    log_level : str, default "warning"
        uvicorn's log level (uvicorn's logging config is left alone).
    startup_timeout_s : float, default 10.0
    header_timeout_s : float, default 10.0
        A connection whose next request's headers are not complete this many
        seconds after it opened (or after its last response) is closed
        (:mod:`.timeouts`; bodies have ``create_app(body_timeout_s=...)``).
    **app_options
        Passed to :func:`~streamnb.server.create_app` (``token``, ``cors_origins``,
        ``heartbeat_s``, ``chat_kind``, ``allowed_hosts``...); ``host`` is added
        to ``allowed_hosts``.

    Returns
    -------
    ServerHandle
        ``handle.url``, ``handle.port``; ``await handle.aclose()`` or
        ``handle.stop()`` ends it (also usable as ``async with``).

    Raises
    ------
    RuntimeClosedError
        The runtime is bound to another event loop.
    OSError
        The address cannot be bound (port in use...).

    Examples
    --------
    In a notebook cell, ``handle = await serve_in_background(runtime)`` returns
    at once and the server keeps serving while the kernel is idle:

    >>> import httpx
    >>> import streamnb as sn
    >>> from streamnb.demo import demo_handlers
    >>> runtime = sn.StreamRuntime()
    >>> for handler in demo_handlers(rate_tokens_per_s=None):
    ...     _ = runtime.register(handler)
    >>> async def serve_and_ask():
    ...     async with await serve_in_background(runtime) as handle:
    ...         async with httpx.AsyncClient(base_url=handle.url) as client:
    ...             reply = await client.post("/chat", json={"message": "hi"})
    ...     return reply.headers["content-type"], reply.text.splitlines()[-2:]
    >>> runtime.run(serve_and_ask())
    ('text/event-stream; charset=utf-8', ['data: [DONE]', ''])
    >>> runtime.close()
    """
    loop = asyncio.get_running_loop()
    bound = runtime.loop
    if bound is not None and bound is not loop and not bound.is_closed():
        raise RuntimeClosedError(
            "this StreamRuntime is bound to another event loop; start the server from "
            "that loop (in Jupyter: a cell of the same kernel, with await)"
        )
    await runtime.__aenter__()  # binds an unbound runtime to this loop now, not at first attach
    # the bound host is one of the names this server answers to (the Host allow-list)
    app_options["allowed_hosts"] = [host, *app_options.get("allowed_hosts", ())]
    app = create_app(runtime, **app_options)  # bad options raise before any takeover
    if port:
        previous = _takeover.current("server", (host, port))
        if previous is not None:
            await previous.aclose()
    sock = bind_socket(host, port)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        http=header_timeout_protocol(header_timeout_s),
    )
    server = StreamnbServer(config, state=app.state.streamnb, install_signal_handlers=False)
    task = loop.create_task(_run(server, sock), name=f"streamnb-server:{host}:{port}")
    started = loop.create_task(server.started_event.wait())
    try:
        await asyncio.wait(
            {task, started}, timeout=startup_timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        started.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await started
    if not server.started:
        server.should_exit = True
        if not task.done():
            await asyncio.wait({task}, timeout=startup_timeout_s)
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        task.cancel()
        raise TimeoutError(f"the HTTP server did not start within {startup_timeout_s:g} s")
    return ServerHandle(server, task, app, host, server.port)
