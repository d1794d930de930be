"""A TCP proxy that cuts connections for real: a network drop between a client and a server.

Tests put it between a client that cannot be told to drop its own connection
(the ``ai`` npm client inside ``fetch``, a browser) and a uvicorn server on
127.0.0.1. :meth:`DropProxy.cut` aborts every connection it relays (no close
frame, no end of body); ``cut_when`` does so the first time the bytes relayed
from the server on one connection satisfy a predicate, e.g. "three text deltas
went by". Connections made afterwards pass untouched, so a reconnecting client
reaches the server again. :meth:`DropProxy.down` is an outage: it cuts every
connection and refuses new ones until :meth:`DropProxy.up` (Playwright's
``set_offline`` is not one: Chromium keeps a streaming ``fetch`` running, and a
WebSocket may or may not see its close or reconnect while "offline").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

__all__ = ["DropProxy"]

_READ_BYTES = 65_536


class DropProxy:
    """Relay ``127.0.0.1:<port>`` to ``target_host:target_port``; cut connections on demand."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._when: Callable[[bytes], bool] | None = None
        self._down = False
        self.refused = 0
        self.cut_done = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> DropProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def cut_when(self, predicate: Callable[[bytes], bool]) -> None:
        """Cut every live connection once one connection's server bytes satisfy ``predicate``."""
        self._when = predicate

    def down(self) -> None:
        """An outage: cut every connection and refuse new ones until :meth:`up`."""
        self._down = True
        self.cut()

    def up(self) -> None:
        """The network is back: relay new connections again."""
        self._down = False

    def cut(self) -> None:
        """Abort every connection relayed now (a TCP reset to both sides)."""
        for client, upstream in list(self._pairs):
            for writer in (client, upstream):
                writer.transport.abort()
        self._pairs.clear()
        self.cuts += 1
        self.cut_done.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._down:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for task in (
            asyncio.ensure_future(self._pipe(reader, up_writer, watch=False)),
            asyncio.ensure_future(self._pipe(up_reader, writer, watch=True)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, watch: bool
    ) -> None:
        seen = b""
        try:
            while data := await reader.read(_READ_BYTES):
                writer.write(data)
                await writer.drain()
                when = self._when
                if watch and when is not None:
                    seen += data
                    if when(seen):
                        self._when = None
                        self.cut()
                        return
            with contextlib.suppress(OSError):
                writer.write_eof()
        except (OSError, asyncio.IncompleteReadError):
            writer.transport.abort()
