"""The kernel-wide widget message budget (issue 16, item 4), without a browser.

The browser side (100 widgets in one JupyterLab notebook, no "IOPub message rate
exceeded") is ``tests/browser/test_widget_budget_browser.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

import streamnb as sn
from streamnb.testing import recorded_messages
from streamnb.widget import MessageBudget, StreamWidget, message_budget
from streamnb.widget._budget import DEFAULT_MESSAGES_PER_S

KIND = "test.budget.tokens"
#: messages a flush may send beyond the last whole message the bucket held (a settling
#: flush sends its delta and a state update)
FLUSH_OVERSHOOT = 4


def words(n: int, salt: int) -> list[str]:
    return [f" w{salt}.{i}" for i in range(n)]


def token_runtime() -> sn.StreamRuntime:
    async def run(start: Any, _input: Any, ctx: Any) -> AsyncIterator[Any]:
        for i, token in enumerate(words(int(start["n"]), int(start["salt"]))):
            yield sn.output(token)
            if i % 64 == 63:
                await asyncio.sleep(0)
        yield sn.completed()

    rt = sn.StreamRuntime()
    rt.register(sn.AttachedStreamHandler(kind=KIND, run=run))
    return rt


class SpendClock:
    """Records the loop time of every message charged to a budget."""

    def __init__(self, budget: MessageBudget) -> None:
        self.stamps: list[float] = []
        self._budget = budget
        self._original = budget.spend

    def __enter__(self) -> SpendClock:
        loop = asyncio.get_running_loop()

        def spend(messages: int = 1) -> None:
            self.stamps.extend([loop.time()] * messages)
            self._original(messages)

        self._budget.spend = spend  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        del self._budget.spend

    def busiest_window(self, window_s: float) -> int:
        """The most messages charged within any ``window_s`` seconds."""
        stamps, best, first = sorted(self.stamps), 0, 0
        for last, stamp in enumerate(stamps):
            while stamp - stamps[first] >= window_s:
                first += 1
            best = max(best, last - first + 1)
        return best


@pytest.fixture
async def budget() -> AsyncIterator[MessageBudget]:
    """The running loop's budget, put back to its default rate afterwards."""
    b = message_budget()
    yield b
    b.messages_per_s = DEFAULT_MESSAGES_PER_S


# --- the budget on its own ---------------------------------------------------------------


async def test_turns_are_granted_round_robin_at_the_budgets_rate() -> None:
    budget = MessageBudget(messages_per_s=200)  # 20 messages when full
    keys = [f"w{i}" for i in range(10)]
    order: list[str] = []
    stop = False

    def flush(key: str) -> None:
        order.append(key)
        budget.spend(1)
        if not stop:  # streams at full speed: due again at once
            budget.request(key, lambda: flush(key))

    with SpendClock(budget) as clock:
        for key in keys:
            budget.request(key, lambda key=key: flush(key))
        await asyncio.sleep(0.6)
        stop = True
        await asyncio.sleep(0.1)
    assert len(order) > 2 * len(keys)
    assert order == [keys[i % len(keys)] for i in range(len(order))]  # fair: in turn
    assert clock.busiest_window(0.25) <= 200 * 0.25 + budget.capacity + 1


async def test_a_request_already_queued_is_not_queued_twice_and_cancel_withdraws() -> None:
    budget = MessageBudget(messages_per_s=10)  # one message when full
    ran: list[str] = []
    budget.spend(1)  # empty: the next turn is 0.1 s away
    budget.request("a", lambda: ran.append("a"))
    budget.request("a", lambda: ran.append("a twice"))
    budget.request("b", lambda: ran.append("b"))
    assert budget.waiting == 2
    budget.cancel("b")
    await asyncio.sleep(0.3)
    assert ran == ["a"]
    assert budget.waiting == 0


async def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="messages per second"):
        MessageBudget(messages_per_s=0)
    with pytest.raises(ValueError, match="1 to 100000"):
        message_budget().messages_per_s = float("nan")


def test_message_budget_outside_a_running_loop_says_where_to_call_it() -> None:
    with pytest.raises(RuntimeError, match="call it in a cell"):
        message_budget()


async def test_each_loop_has_its_own_budget_and_the_widgets_share_it() -> None:
    rt = token_runtime()
    try:
        session = await rt.attach(KIND, {"n": 10, "salt": 0})
        widget = StreamWidget(session)
        before = message_budget().sent
        await widget.wait(timeout_s=10)
        assert message_budget().sent > before  # its deltas were charged here
        widget.close()
    finally:
        await rt.aclose()
        rt.ledger.close()


# --- many widgets ------------------------------------------------------------------------


async def test_hundred_widgets_streaming_at_once_stay_within_the_kernel_budget(
    budget: MessageBudget,
) -> None:
    """Before the budget each widget sent up to 30 deltas a second of its own, so 100
    widgets sent thousands of messages a second (jupyter_server drops them above 1,000)."""
    budget.messages_per_s = 200
    n_widgets, n_tokens = 100, 1_500
    rt = token_runtime()
    widgets: list[StreamWidget] = []
    try:
        with SpendClock(budget) as clock, contextlib.ExitStack() as stack:
            records = []
            for salt in range(n_widgets):
                session = await rt.attach(KIND, {"n": n_tokens, "salt": salt})
                widget = StreamWidget(session)
                widgets.append(widget)
                records.append(stack.enter_context(recorded_messages(widget)))
            statuses = await asyncio.gather(*(w.wait(timeout_s=120) for w in widgets))
        assert statuses == ["completed"] * n_widgets
        for salt, (widget, sent) in enumerate(zip(widgets, records, strict=True)):
            want = "".join(words(n_tokens, salt))
            deltas = [m for m in sent if m["type"] == "delta"]
            # every text complete and in order, in contiguous deltas: coalesced, never dropped
            assert "".join(m["chunks"].get("assistant.delta", "") for m in deltas) == want
            expected_from = 0
            for m in deltas:
                assert m["from_seq"] == expected_from
                expected_from = m["to_seq"] + 1
            assert widget.final_texts == {"assistant.delta": want}
        assert clock.busiest_window(1.0) <= 200 + budget.capacity + FLUSH_OVERSHOOT
        per_widget = Counter(len([m for m in sent if m["type"] == "delta"]) for sent in records)
        assert max(per_widget) < n_tokens / 10  # coalesced, far from one per token
    finally:
        for widget in widgets:
            widget.close()
        await rt.aclose()
        rt.ledger.close()
