"""Helpers for the ``tests/test_server_*.py`` modules (fixtures are in ``tests/_server.py``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

import streamnb as sn


async def open_stream(client: httpx.AsyncClient, kind: str, payload: Any = None) -> str:
    response = await client.post("/streams", json={"kind": kind, "payload": payload})
    assert response.status_code == 201, response.text
    ref: str = response.json()["stream_ref"]
    return ref


def cancel_reason(runtime: sn.StreamRuntime, ref: str) -> str | None:
    """Why the runtime was asked to cancel ``ref`` (a handler's terminal may say otherwise)."""
    return runtime.info(ref).cancel_reason


async def eventually(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (bounded) until ``predicate()`` holds; for state with no event to await."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.01)
