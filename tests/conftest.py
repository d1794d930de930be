"""Shared fixtures. Async tests run on pytest-asyncio's per-test loop (asyncio_mode=auto)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

import streamnb as sn
from streamnb.demo import chatbot_handler, output_only_handler

collect_ignore_glob: list[str] = []
if os.environ.get("STREAMNB_SKIP_BROWSER") == "1":
    collect_ignore_glob.append("browser/*")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("STREAMNB_SOAK") == "1":
        return
    # soak runs are deselected (not skipped) in the default profile; STREAMNB_SOAK=1 runs them
    slow = [i for i in items if "slow" in i.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [i for i in items if "slow" not in i.keywords]


@pytest.fixture
async def runtime() -> AsyncIterator[sn.StreamRuntime]:
    """A runtime with the seeds' two handlers and a short cancel grace (0.2 s)."""
    rt = sn.StreamRuntime(cancel_grace_s=0.2, force_wait_s=0.2)
    rt.register(chatbot_handler())
    rt.register(output_only_handler())
    try:
        yield rt
    finally:
        await rt.aclose()
        rt.ledger.close()
