"""Kernel -> Interrupt on a cell awaiting a stream, in a real ipykernel (jupyter_client).

The interrupt detaches the cell's observer (the handler's ``on_detach`` decides) and the
cell ends with ``WaitInterruptedError`` instead of a bare ``CancelledError``; other
cancellations (a timeout) are untouched.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import KernelManager, start_new_kernel

REPO = Path(__file__).resolve().parent.parent
#: how long a cell runs before it is interrupted, seconds (the stream lasts 25 s)
INTERRUPT_AFTER_S = 1.0
CELL_TIMEOUT_S = 60.0


class Kernel:
    def __init__(self, km: KernelManager, kc: Any) -> None:
        self.km, self.kc = km, kc

    def run(self, code: str, interrupt_after_s: float | None = None) -> list[dict[str, Any]]:
        """Run a cell (interrupting it after ``interrupt_after_s``); its outputs."""
        msg_id = self.kc.execute(code)
        if interrupt_after_s is not None:
            time.sleep(interrupt_after_s)  # the cell is awaiting the stream by then
            self.km.interrupt_kernel()
        outputs = []
        while True:
            msg = self.kc.get_iopub_msg(timeout=CELL_TIMEOUT_S)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "status" and msg["content"]["execution_state"] == "idle":
                return outputs
            if kind in ("stream", "error"):
                outputs.append({"type": kind, **msg["content"]})

    def text(self, code: str) -> str:
        outputs = self.run(code)
        errors = [o for o in outputs if o["type"] == "error"]
        assert not errors, errors
        return "".join(o["text"] for o in outputs)


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    km, kc = start_new_kernel(env=env)
    try:
        k = Kernel(km, kc)
        k.text(
            "import asyncio\n"
            "import streamnb as sn\n"
            "from streamnb.demo import chatbot_handler\n"
            "from streamnb.testing import FakeTokenSource, lorem_tokens\n"
            "rt = sn.StreamRuntime()\n"
            "slow = FakeTokenSource(lorem_tokens(500), rate_tokens_per_s=20)\n"
            "rt.register(chatbot_handler(source=slow))\n"
            "rt.register(chatbot_handler('keeps.going', source=slow, on_detach='continue'))\n"
        )
        yield k
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def interrupted(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    errors = [o for o in outputs if o["type"] == "error"]
    assert len(errors) == 1, outputs
    return errors[0]


@pytest.mark.parametrize(
    "wait",
    [
        "await s.wait()",
        "await sn.read_until_terminal(s.output)",
        "await sn.read_until_terminal(s.output, timeout_s=60)",
        "async for frame in s.output:\n    pass",
    ],
)
def test_interrupting_a_cell_awaiting_a_stream_detaches_it_and_says_so(
    kernel: Kernel, wait: str
) -> None:
    kernel.text("s = await rt.attach('tutorial.streaming_chatbot', {})\nawait s.send('hi')")
    error = interrupted(kernel.run(wait, interrupt_after_s=INTERRUPT_AFTER_S))
    assert error["ename"] == "WaitInterruptedError"
    assert "interrupted while waiting for stream" in error["evalue"]
    assert "cancels the stream (reason 'detached')" in error["evalue"]
    # on_detach="abort": the detached session was the last observer, so the stream stops
    text = kernel.text(
        "terminal = await rt.wait(s.stream_ref, timeout_s=30)\n"
        "print(s.detached, terminal.kind, rt.info(s.stream_ref).cancel_reason)"
    )
    assert text.split() == ["True", "cancelled", "detached"]


def test_interrupting_a_wait_on_an_on_detach_continue_stream_leaves_it_running(
    kernel: Kernel,
) -> None:
    kernel.text("c = await rt.attach('keeps.going', {})\nawait c.send('hi')")
    error = interrupted(kernel.run("await c.wait()", interrupt_after_s=INTERRUPT_AFTER_S))
    assert error["ename"] == "WaitInterruptedError"
    assert "keeps running" in error["evalue"] and "runtime.reattach" in error["evalue"]
    text = kernel.text(
        "info = rt.info(c.stream_ref)\nprint(c.detached, info.status, info.cancel_requested)"
    )
    assert text.split() == ["True", "running", "False"]
    kernel.text("await rt.cancel(c.stream_ref, 'done')\nawait rt.wait(c.stream_ref, timeout_s=30)")


def test_a_timeout_in_a_cell_is_not_mistaken_for_an_interrupt(kernel: Kernel) -> None:
    kernel.text("t = await rt.attach('tutorial.streaming_chatbot', {})\nawait t.send('hi')")
    error = interrupted(kernel.run("await asyncio.wait_for(t.wait(), 0.2)"))
    assert error["ename"] == "TimeoutError"
    assert kernel.text("print(t.detached, rt.info(t.stream_ref).status)").split() == [
        "False",
        "running",
    ]
    kernel.text("await t.cancel('done')\nawait t.wait(30)")
