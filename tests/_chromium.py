"""Debian's chromium for the server's browser tests (``tests/test_server_*browser.py``).

The JupyterLab harness (``tests/browser/conftest.py``) has its own, synchronous
fixtures; these tests drive pages of a server on the test's own loop, so they
use Playwright's async API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [  # as in tests/browser/conftest.py
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def skip_without_chromium() -> None:
    """Skip the calling test module when Debian's chromium is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip(
            "Debian's chromium is not installed (.ci/install-browser.sh)", allow_module_level=True
        )


@asynccontextmanager
async def chromium_page(extra_args: Sequence[str] = ()) -> AsyncIterator[object]:
    """A fresh page in a fresh chromium (closed on exit)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args]
        )
        try:
            context = await browser.new_context()
            yield await context.new_page()
        finally:
            await browser.close()
