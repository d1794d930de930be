"""Shared result format for streamnb benchmarks.

Each figure is one JSON object: ``name, value, unit, baseline, ratio, target,
meets_target`` (plus ``note``). ``baseline`` is measured in the same process on
the same machine, so the ratio is what to compare across noisy machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import streamnb as sn

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline: float | None
    ratio: float | None
    target: str
    meets_target: bool
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        return json.dumps(asdict(self))


def machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} cpu, Python {sys.version.split()[0]}"


def emit(fig: Figure, sink: list[Figure] | None = None) -> Figure:
    print(fig.line(), flush=True)
    if sink is not None:
        sink.append(fig)
    return fig


@contextlib.contextmanager
def jupyterlab_in_chromium(prefix: str) -> Iterator[tuple[Any, Any]]:
    """``(server, browser)``: a JupyterLab of this checkout in a new temporary home
    (``tests/browser/conftest.py``'s ``start_jupyter_server``; ``prefix`` names the
    directory) and Debian's chromium (headless) through Playwright; both stopped on exit."""
    from playwright.sync_api import sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, start_jupyter_server

    with tempfile.TemporaryDirectory(prefix=prefix) as home:
        server = start_jupyter_server(Path(home), REPO)
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
                )
                try:
                    yield server, browser
                finally:
                    browser.close()
        finally:
            server.stop()


def token_handler(
    kind: str, tokens: Callable[[int], Iterable[str]], *, progress: bool = False
) -> sn.AttachedStreamHandler:
    """An output-only handler of ``tokens(n)`` on ``assistant.delta``, the benchmarks' stream.

    Parameters
    ----------
    kind : str
        The handler's kind.
    tokens : callable
        ``tokens(n)``: the ``n`` tokens (strings) of one reply.
    progress : bool
        Send a ``progress`` frame (``{"phase": "streaming", "tokens": n}``) first.

    Returns
    -------
    streamnb.AttachedStreamHandler
        Its start payload is ``{"n": tokens, "rate": tokens/s (optional)}``. With a rate the
        tokens are paced against a monotonic schedule and a cancel wakes the pause at once
        (a Stop figure measures the widget and runtime, not the handler's token period);
        without one they come as fast as possible, the loop getting a turn every 64 tokens.
        A cancel settles the stream ``cancelled`` before the next token.
    """
    import streamnb as sn  # the bench modules that only drive a browser do not need it

    async def pause(ctx: sn.StreamContext, delay: float) -> None:
        if delay < 0.005:
            await asyncio.sleep(max(delay, 0.0))
            return
        try:
            await asyncio.wait_for(ctx.signal.wait(), delay)
        except asyncio.TimeoutError:
            pass

    async def run(start: Any, _input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
        n = int(start["n"])
        rate = start.get("rate")
        loop = asyncio.get_running_loop()
        if progress:
            yield sn.progress({"phase": "streaming", "tokens": n})
        t0 = loop.time()
        for i, token in enumerate(tokens(n)):
            if rate is not None:
                delay = t0 + i / rate - loop.time()
                if delay > 0:
                    await pause(ctx, delay)
                elif i % 64 == 63:
                    await asyncio.sleep(0)
            elif i % 64 == 63:
                await asyncio.sleep(0)
            if ctx.signal.aborted:
                yield sn.cancelled()
                return
            yield sn.output(token)
        yield sn.completed()

    return sn.AttachedStreamHandler(kind=kind, run=run)
