"""The ``streamnb`` command line: ``streamnb serve``.

::

    streamnb serve [--host 127.0.0.1] [--port 3000] [--ledger PATH|postgresql://...]
                   [--workers N] [--lease-s SECONDS]
                   [--handlers module:attr ...] [--token TOKEN] [--cors-origin ORIGIN ...]
                   [--allowed-host NAME ...] [--max-open-streams N]
                   [--idle-timeout-s SECONDS]
                   [--rate TOKENS_PER_S] [--chat-kind KIND] [--log-level LEVEL]
                   [--no-durable-streams] [--long-poll-timeout-s SECONDS]

serves the seeds' demo handlers (``tutorial.streaming_chatbot`` and
``tutorial.output_only`` with a paced fake token source) plus any handlers
named with ``--handlers``. ``module:attr`` may name a handler, a list of
handlers, or a zero-argument factory returning either; a user handler with a
demo kind replaces the demo. The token can also come from the environment
variable ``STREAMNB_TOKEN``. The Durable Streams protocol is served under
``/v1/stream/`` (streams stored in the ledger; streamnb's own streams read-only
at ``/v1/stream/streamnb/{ref}``) unless ``--no-durable-streams``. Ctrl-C
stops the server gracefully: live streams are ended, then the runtime settles
what is still running and the ledger closes.

``--ledger postgresql://user:password@host/db`` keeps the ledger (and the
Durable Streams) in PostgreSQL, shared by every process pointed at it; then
``--workers N`` serves with N worker processes on one port (see
:mod:`streamnb.server.workers`), and any of them can resume, cancel and feed
any stream. A ledger that cannot be opened (an unreachable server) is a one-line
error naming the host, exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._handler import AttachedStreamHandler
from ._ledger.lease import DEFAULT_LEASE_S
from ._ledger.pg_connect import is_postgres_url
from ._runtime import DEFAULT_IDLE_TIMEOUT_S

if TYPE_CHECKING:
    from ._ledger import Ledger

__all__ = ["build_parser", "load_handlers", "main"]

TOKEN_ENV = "STREAMNB_TOKEN"


def load_handlers(spec: str) -> list[AttachedStreamHandler]:
    """Import ``module:attr`` and return the handlers it names.

    ``attr`` (dotted for nested attributes) may be an
    :class:`~streamnb.AttachedStreamHandler`, a list or tuple of them, or a
    zero-argument callable returning either.

    Raises
    ------
    ValueError
        ``spec`` is not ``module:attr``, or the object is not handlers.
    ImportError, AttributeError
        The module or attribute does not exist.

    Examples
    --------
    >>> [h.kind for h in load_handlers("streamnb.demo:demo_handlers")]
    ['tutorial.streaming_chatbot', 'tutorial.output_only']
    >>> load_handlers("streamnb.demo")
    Traceback (most recent call last):
    ...
    ValueError: 'streamnb.demo' is not 'module:attr' (e.g. 'myhandlers:chatbot')
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{spec!r} is not 'module:attr' (e.g. 'myhandlers:chatbot')")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if callable(obj) and not isinstance(obj, AttachedStreamHandler):
        obj = obj()
    items = list(obj) if isinstance(obj, list | tuple) else [obj]
    bad = [type(x).__name__ for x in items if not isinstance(x, AttachedStreamHandler)]
    if bad or not items:
        raise ValueError(
            f"{spec!r} must name an AttachedStreamHandler, a list of them or a factory "
            f"returning them; got {', '.join(bad) or 'an empty list'}"
        )
    return items


def _rate(text: str) -> float | None:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("the rate is tokens per second, >= 0 (0: unpaced)")
    return value or None


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("a duration in seconds, > 0")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("a count >= 1")
    return value


def _seconds_or_off(text: str) -> float | None:
    value = float(text)
    if value < 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError("a duration in seconds, >= 0 (0: never)")
    return value or None


def _grace(text: str) -> float:
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError("a duration in seconds, >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``streamnb`` command."""
    from .server.limits import DEFAULT_MAX_OPEN_STREAMS

    parser = argparse.ArgumentParser(prog="streamnb", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve handlers over HTTP (SSE, WebSocket, /chat, /api/chat)",
        description="Serve the demo handlers (and yours) over HTTP with uvicorn.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=3000, help="port (default 3000; 0: any free)")
    serve.add_argument(
        "--ledger",
        metavar="PATH|URL",
        help="SQLite ledger file, or a postgresql:// URL shared by many processes "
        "(default: in memory)",
    )
    serve.add_argument(
        "--workers",
        type=_count,
        default=1,
        metavar="N",
        help="worker processes sharing the port (default 1; more need a postgresql:// ledger)",
    )
    serve.add_argument(
        "--lease-s",
        type=_seconds,
        default=DEFAULT_LEASE_S,
        metavar="SECONDS",
        help=f"PostgreSQL: a dead worker's streams settle runtime_lost this long after it "
        f"stopped (default {DEFAULT_LEASE_S:g})",
    )
    serve.add_argument("--socket-fd", type=int, help=argparse.SUPPRESS)  # set by --workers
    serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument(
        "--handlers",
        metavar="MODULE:ATTR",
        nargs="+",
        action="extend",
        default=[],
        help="handlers to serve besides the demo ones (handler, list, or factory)",
    )
    serve.add_argument(
        "--token",
        default=None,
        help=f"require this bearer token on every endpoint but GET / (or set ${TOKEN_ENV})",
    )
    serve.add_argument(
        "--allowed-host",
        metavar="NAME",
        action="append",
        default=[],
        help="also answer requests for this Host name (repeatable; '*' for any). Default: the "
        "bound host, localhost, 127.0.0.1 and [::1]; others get 403 (DNS rebinding)",
    )
    serve.add_argument(
        "--cors-origin",
        metavar="ORIGIN",
        action="append",
        default=[],
        help="allow browser calls from this origin (repeatable; '*' for any). Default: CORS off",
    )
    serve.add_argument(
        "--rate",
        type=_rate,
        default=20.0,
        metavar="TOKENS_PER_S",
        help="pace of the demo handlers' fake tokens (default 20; 0: unpaced)",
    )
    serve.add_argument(
        "--chat-kind",
        default="tutorial.streaming_chatbot",
        help="handler kind behind /chat and /api/chat (default tutorial.streaming_chatbot)",
    )
    serve.add_argument(
        "--rooms",
        metavar="DIR",
        help="also serve chat rooms under /rooms, kept in this directory (registry.db plus "
        "one SQLite file per room); replies use the chat kind's source",
    )
    source = serve.add_mutually_exclusive_group()
    source.add_argument(
        "--cassette",
        metavar="PATH",
        help="replay this recorded provider stream as the chat kind ('shipped' for the one "
        "streamnb ships), instead of the fake tokens",
    )
    source.add_argument(
        "--provider",
        action="store_true",
        help="answer the chat kind with a live OpenAI-compatible endpoint configured by "
        "STREAMNB_BASE_URL, STREAMNB_MODEL, STREAMNB_API_KEY_ENV or [tool.streamnb.provider]",
    )
    serve.add_argument(
        "--no-durable-streams",
        dest="durable_streams",
        action="store_false",
        help="do not serve the Durable Streams protocol under /v1/stream/",
    )
    serve.add_argument(
        "--long-poll-timeout-s",
        type=_seconds,
        default=20.0,
        metavar="SECONDS",
        help="how long a Durable Streams long-poll waits for data (default 20)",
    )
    serve.add_argument(
        "--reconnect-grace-s",
        type=_grace,
        default=30.0,
        metavar="SECONDS",
        help="how long a dropped SSE/WebSocket connection's observer stays attached waiting "
        "for a reconnection before it detaches (default 30; 0: detach at once)",
    )
    serve.add_argument(
        "--max-open-streams",
        type=_count,
        default=DEFAULT_MAX_OPEN_STREAMS,
        metavar="N",
        help=f"most streams the server holds open at once; more get HTTP 429 "
        f"(default {DEFAULT_MAX_OPEN_STREAMS})",
    )
    serve.add_argument(
        "--idle-timeout-s",
        type=_seconds_or_off,
        default=DEFAULT_IDLE_TIMEOUT_S,
        metavar="SECONDS",
        help=f"cancel (reason 'idle') a bidi stream that waits for input with nobody "
        f"watching for this long (default {DEFAULT_IDLE_TIMEOUT_S:g}; 0: never)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
    )
    return parser


def _open_ledger(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Ledger:
    """The ``--ledger``, or exit with one line saying why it cannot be opened."""
    from ._errors import StreamnbError
    from ._ledger import Ledger

    try:
        return Ledger(args.ledger, lease_s=args.lease_s) if args.ledger else Ledger()
    except StreamnbError as exc:
        parser.exit(1, f"streamnb: error: {exc}\n")


def _url(host: str, port: int) -> str:
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


async def _serve(
    args: argparse.Namespace, handlers: list[AttachedStreamHandler], ledger: Ledger
) -> None:
    import uvicorn

    from ._runtime import StreamRuntime
    from .server import create_app
    from .server.background import StreamnbServer, bind_socket
    from .server.timeouts import header_timeout_protocol

    runtime = StreamRuntime(ledger, idle_timeout_s=args.idle_timeout_s)
    rooms = None
    try:
        for handler in handlers:
            runtime.register(handler)
        if args.rooms:
            from .rooms import ChatRooms

            chat = runtime.handler(args.chat_kind)
            rooms = ChatRooms(args.rooms, runtime=runtime, handler_factory=lambda _kind: chat)
        app = create_app(
            runtime,
            token=args.token,
            cors_origins=args.cors_origin or None,
            chat_kind=args.chat_kind,
            rooms=rooms,
            durable_streams=args.durable_streams,
            long_poll_timeout_s=args.long_poll_timeout_s,
            reconnect_grace_s=args.reconnect_grace_s,
            allowed_hosts=[args.host, *args.allowed_host],
            max_open_streams=args.max_open_streams,
        )
        if args.socket_fd is not None:  # a worker of --workers: the supervisor's socket
            sock = socket.socket(fileno=args.socket_fd)
            sock.setblocking(False)
        else:
            sock = bind_socket(args.host, args.port)
        config = uvicorn.Config(
            app,
            log_level=args.log_level,
            lifespan="on",
            timeout_graceful_shutdown=5,
            http=header_timeout_protocol(),  # unfinished requests do not hold a socket
        )
        server = StreamnbServer(config, state=app.state.streamnb, install_signal_handlers=True)
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        started = asyncio.ensure_future(server.started_event.wait())
        try:
            await asyncio.wait({serving, started}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if server.started and args.ready_fd is not None:
            os.write(args.ready_fd, b"ready\n")  # the supervisor prints the serving line
        elif server.started:
            url = _url(args.host, server.port)
            auth = " (bearer token required; open the page with ?token=...)" if args.token else ""
            print(f"streamnb serving {', '.join(runtime.kinds)} on {url}{auth}", flush=True)
        try:
            await serving
        finally:
            sock.close()
    finally:
        if rooms is not None:
            await rooms.aclose()
        await runtime.aclose()
        ledger.close()


def _load_or_exit(parser: argparse.ArgumentParser, spec: str) -> list[AttachedStreamHandler]:
    try:
        return load_handlers(spec)
    except (ImportError, AttributeError, ValueError, TypeError) as exc:
        parser.error(f"--handlers {spec}: {exc}")


def _chat_source(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> AttachedStreamHandler:
    """The live provider or cassette handler for ``--provider`` / ``--cassette``."""
    from ._errors import StreamnbError
    from .providers import ProviderConfig, cassette_handler, chat_handler, shipped_cassette

    try:
        if args.provider:
            return chat_handler(args.chat_kind, ProviderConfig.resolve())
        path = shipped_cassette() if args.cassette == "shipped" else args.cassette
        return cassette_handler(path, args.chat_kind)
    except StreamnbError as exc:
        parser.error(str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamnb`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "serve":
        parser.print_help()
        return 2
    args.token = args.token or os.environ.get(TOKEN_ENV) or None
    from .demo import demo_handlers

    handlers = demo_handlers(rate_tokens_per_s=args.rate)
    if args.cassette or args.provider:
        handlers.append(_chat_source(parser, args))  # registered last: replaces the demo chat
    for spec in args.handlers:
        handlers.extend(_load_or_exit(parser, spec))
    if args.workers > 1:
        return _supervise(parser, args, handlers, argv)
    asyncio.run(_serve(args, handlers, _open_ledger(parser, args)))
    return 0


def _supervise(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    handlers: list[AttachedStreamHandler],
    argv: Sequence[str] | None,
) -> int:
    """``--workers N``: check the ledger once, bind the port, run N worker processes."""
    from .server.background import bind_socket
    from .server.workers import supervise

    if not is_postgres_url(args.ledger):
        parser.error(
            "--workers needs a shared ledger: --ledger postgresql://... (with SQLite each "
            "worker's streams would live in its own memory and file)"
        )
    if args.rooms:
        parser.error("--rooms keeps rooms in SQLite files of one process; use --workers 1")
    _open_ledger(parser, args).close()  # reachable, tables created once, before the workers
    sock = bind_socket(args.host, args.port)
    try:
        url = _url(args.host, sock.getsockname()[1])
        kinds = ", ".join(sorted({h.kind for h in handlers}))
        worker_argv = [*(sys.argv[1:] if argv is None else argv), "--workers", "1"]
        return supervise(worker_argv, sock, args.workers, url, kinds)
    finally:
        sock.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
