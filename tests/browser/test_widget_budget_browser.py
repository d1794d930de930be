"""100 StreamWidgets streaming at full speed in one JupyterLab notebook (issue 16, item 4).

The widgets of a kernel share one message budget (``streamnb/widget/_budget.py``, 500
messages per second by default). Without it each widget sent up to 30 deltas a second of
its own, so 100 of them passed jupyter_server's 1,000 iopub messages per second and the
server dropped messages ("IOPub message rate exceeded"): widgets lost text or never
settled. The trial is the peers benchmark's (``bench/peers_budget.py``); no timing is
asserted, only completeness, order and the server's silence.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from bench.peers_budget import budget_trial

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from .conftest import JupyterServer

pytestmark = pytest.mark.browser

WIDGETS = 100
TOKENS = 1_000


def test_hundred_widgets_stream_complete_and_in_order_without_rate_exceeded(
    jupyter_server: JupyterServer, chromium_browser: Browser
) -> None:
    record = budget_trial(
        jupyter_server, chromium_browser, widgets=WIDGETS, tokens=TOKENS, log=lambda _: None
    )
    assert record["unparsed_frames"] == 0
    assert record["settled_in_page"] == WIDGETS, record
    assert record["widgets_with_deltas"] == WIDGETS, record
    # every widget's deltas, as the page received them: contiguous, complete, in order
    assert record["delta_gaps"] == 0, record
    assert record["delta_lost_chars"] == 0, record
    assert record["transcript_lost_chars"] == 0, record
    assert record["rate_exceeded_in_log"] == 0, record
    assert record["rate_exceeded_in_page"] == 0, record
    # coalesced: far fewer deltas than tokens
    assert record["deltas"] < WIDGETS * TOKENS / 20, record
