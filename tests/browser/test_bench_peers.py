"""The peers benchmark's harness (``bench/bench_peers.py``) measures what it says, so it
cannot rot between the (long, manual) benchmark runs. No timing assertions: only that
each figure is measured, and that lost text, a capped contender and a Stop are told apart.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bench.bench_peers import (
    BY_KEY,
    STOPPER_BY_KEY,
    Contender,
    figures,
    measure,
    readme_table,
    store,
)
from bench.peers_kernel import expected_text

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from .conftest import JupyterServer

pytestmark = pytest.mark.browser

N = 200
CAP_S = 6.0

# print that drops the middle token: the page shows less than expected, then goes quiet
LOSSY = Contender(
    "lossy_print",
    "print that skips a token",
    """\
MARKS["cell"] = time.time()
for i, tok in enumerate(tokens({n})):
    if i != {n} // 2:
        print(tok, end="")
""",
    "stdout",
    per_token=False,
)
# 50 ms per token: 200 tokens take 10 s, past the cap
SLOW = Contender(
    "slow_print",
    "print with a pause per token",
    """\
MARKS["cell"] = time.time()
for tok in tokens({n}):
    print(tok, end="", flush=True)
    time.sleep(0.05)
""",
    "stdout",
    per_token=True,
)


@pytest.mark.timeout(600)
def test_harness_measures_complete_lost_capped_and_stop(
    jupyter_server: JupyterServer, chromium_browser: Browser, tmp_path: Path
) -> None:
    run = measure(
        jupyter_server,
        chromium_browser,
        sizes=[N],
        rounds=1,
        contenders=[BY_KEY["streamnb"], BY_KEY["print"], LOSSY, SLOW],
        stoppers=[STOPPER_BY_KEY["streamnb"]],
        stop_samples=1,
        stop_tokens=100_000,
        cap_s=CAP_S,
        log=lambda _line: None,
    )
    by = {t.contender: t for t in run.trials}
    want = len(expected_text(N).strip())

    for key in ("streamnb", "print"):
        t = by[key]
        assert t.outcome == "complete", t
        assert t.shown_chars == t.expected_chars == want
        assert t.full_s is not None and t.full_s > 0
        assert t.first_ms is not None and t.first_ms <= t.full_s * 1000 + 0.1  # both rounded
        assert t.messages > 0 and t.bytes > 0 and t.page_messages > 0
        assert t.kernel_probe_ms is not None and t.keypress_ms is not None
        assert t.timeline_ms["execute_input"] is not None
    # streamnb's text comes in comm messages, print's in stream messages
    assert by["streamnb"].timeline_ms["first_custom_msg"] is not None
    assert by["print"].timeline_ms["comm_open"] is None

    lost = by["lossy_print"]
    assert lost.outcome == "lost", lost
    assert lost.shown_chars < want and lost.first_diff < lost.shown_chars
    assert "out of order" in lost.note

    capped = by["slow_print"]
    assert capped.outcome == "capped", capped
    assert 0 < capped.shown_chars < want
    assert "% of the text after" in capped.note

    [stop] = run.stops
    assert stop.outcome in ("stopped", "finished_before_click"), stop
    if stop.outcome == "stopped":
        assert stop.click_to_last_text_ms is not None
        assert stop.click_to_producer_stopped_ms is not None

    names = {f.name for f in figures(run)}
    assert {f"peers.full_text_s.{N}", f"peers.first_text_ms.{N}"} <= names
    assert ("peers.stop_last_text_ms" in names) == (stop.outcome == "stopped")

    results, details = tmp_path / "results.json", tmp_path / "peers.json"
    results.write_text(json.dumps([{"name": "core.x", "suite": "core"}]))
    store(run, figures(run), results, details)
    stored = json.loads(results.read_text())
    assert {e["suite"] for e in stored} == {"core", "peers"}
    table = readme_table(json.loads(details.read_text()))
    assert "streamnb `StreamWidget`" in table and "% of the text after" in table
    assert (
        json.loads(details.read_text())["trials"] == json.loads(json.dumps(asdict(run)))["trials"]
    )
