"""Many widgets streaming at once in one notebook (issue 16, item 4): the kernel-wide budget.

Part of ``python -m bench.bench_peers`` (``--budget-only`` runs just this). One JupyterLab
page (the peers harness's ``bench/peers_page.js`` logs every kernel websocket frame) opens
a notebook whose cells after the first display ``widgets`` :class:`~streamnb.StreamWidget` s
(25 per cell: JupyterLab shows at most 50 outputs of a cell), run one after the other, each
on a stream of ``tokens`` tokens (``peers_kernel.budget_tokens``: ``" <widget>.<i>"``, so a
token out of order shows), all produced as fast as the kernel can, ``render="text"``.
Measured:

* **messages per second**: kernel websocket messages the page received (iopub, status
  included), the busiest 3 s (jupyter_server's ``rate_limit_window``) and 1 s windows;
* **"IOPub message rate exceeded"**: occurrences in the Jupyter server's log (written
  there since the page opened) and in the page;
* **text lost or reordered**: each widget's deltas as they crossed the page's websocket
  (custom comm messages), joined per widget and compared with its expected text, plus the
  text of every settled widget's transcript in the page;
* **all text**: the first widgets cell's ``execute_request`` to every widget showing its
  settled transcript (report only).

The browser test ``tests/browser/test_widget_budget_browser.py`` runs the same trial and
asserts completeness, order and no rate-exceeded message (no timing).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.peers_kernel import budget_tokens

PAGE_JS = Path(__file__).resolve().parent / "peers_page.js"
NOTEBOOK = "peers_budget.ipynb"
WIDGETS = 100
TOKENS = 2_000
QUICK_TOKENS = 500
TIMEOUT_S = 300.0
PAGE_TIMEOUT_S = 60.0
RATE_EXCEEDED = "IOPub message rate exceeded"
#: jupyter_server's defaults: iopub_msg_rate_limit (messages/s) over rate_limit_window (s)
SERVER_LIMIT_MSGS_PER_S = 1_000.0
SERVER_WINDOW_S = 3.0

SETUP_CODE = """\
import streamnb as sn
from bench.peers_kernel import BUDGET_KIND, streamnb_runtime

RUNTIME = streamnb_runtime()
print("ready", sn.widget.message_budget().messages_per_s)
"""

#: JupyterLab shows at most 50 outputs of a cell (``maxNumberOutputs``): the widgets are
#: displayed by cells of this many
WIDGETS_PER_CELL = 25

WIDGETS_CODE = """\
WIDGETS = globals().get("WIDGETS", [])
for salt in range({first}, {end}):
    session = await RUNTIME.attach(BUDGET_KIND, {{"n": {tokens}, "salt": salt}})
    WIDGETS.append(sn.StreamWidget(session, render="text"))
    display(WIDGETS[-1])
"""

# Per widget output of the cells from the second on: the settled transcript's main text,
# or null while live.
TRANSCRIPTS_JS = """() => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const outputs = nb.widgets.slice(1).flatMap(
    (c) => Array.from(c.outputArea.node.querySelectorAll(".jp-OutputArea-output"))
  );
  return outputs.map((o) => {
    const main = o.querySelector(".streamnb-saved-main");
    return main === null ? null : main.textContent;
  });
}"""


def notebook_of(sources: list[str]) -> str:
    """A Python 3 notebook (JSON) of code cells with these sources, none run yet."""
    cells = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src}
        for src in sources
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.dumps(
        {"cells": cells, "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}
    )


def notebook_json(widgets: int, tokens: int) -> str:
    return notebook_of(
        [SETUP_CODE]
        + [
            WIDGETS_CODE.format(
                first=first, end=min(widgets, first + WIDGETS_PER_CELL), tokens=tokens
            )
            for first in range(0, widgets, WIDGETS_PER_CELL)
        ]
    )


def comm_delta(payload: bytes | str) -> tuple[str, dict[str, Any]] | None:
    """``(comm_id, message)`` of a kernel websocket frame carrying a widget's ``delta`` or
    ``snapshot``, else None (``v1.kernel.websocket.jupyter.org`` binary frames, or legacy
    JSON text frames)."""
    if isinstance(payload, str):
        msg = json.loads(payload)
        msg_type, content = msg.get("header", {}).get("msg_type"), msg.get("content")
    else:

        def at(i: int) -> int:
            return int.from_bytes(payload[8 * (i + 1) : 8 * (i + 2)], "little")

        msg_type = json.loads(payload[at(1) : at(2)]).get("msg_type")
        if msg_type != "comm_msg":
            return None
        content = json.loads(payload[at(4) : at(5)])
    if msg_type != "comm_msg" or not isinstance(content, dict):
        return None
    data = content.get("data") or {}
    inner = data.get("content") if data.get("method") == "custom" else None
    if not isinstance(inner, dict) or inner.get("type") not in ("delta", "snapshot"):
        return None
    return str(content.get("comm_id")), inner


def replay(messages: list[dict[str, Any]], channel: str = "assistant.delta") -> tuple[str, int]:
    """The text a view that got ``messages`` (snapshots and deltas, in order) shows, as
    ``widget.js`` applies them, and how many deltas left a gap after the text before."""
    text, last, gaps = "", None, 0
    for m in messages:
        if m["type"] == "snapshot":
            if last is None or m["upto_seq"] > last:
                text, last = m["texts"].get(channel, ""), m["upto_seq"]
            continue
        if last is None:
            if m["from_seq"] != 0:
                continue  # before the view's snapshot: the snapshot brings it
            last = -1
        if m["to_seq"] <= last:
            continue
        if m["from_seq"] != last + 1:
            gaps += 1
        text += m["chunks"].get(channel, "")
        last = m["to_seq"]
    return text, gaps


def busiest(times_ms: list[float], window_s: float) -> float:
    """The most messages within any ``window_s`` seconds, per second."""
    times, best, first = sorted(times_ms), 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= window_s * 1000:
            first += 1
        best = max(best, last - first + 1)
    return best / window_s


def lost_chars(shown: str, want: str) -> int:
    """Characters of ``want`` not shown in place: missing, extra or after a difference."""
    same = 0
    for a, b in zip(shown, want, strict=False):
        if a != b:
            break
        same += 1
    return max(len(want), len(shown)) - same


def budget_trial(
    server: Any,
    browser: Any,
    *,
    widgets: int = WIDGETS,
    tokens: int = TOKENS,
    timeout_s: float = TIMEOUT_S,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the trial on a running Jupyter server and a launched chromium; returns its record
    (times in seconds unless ``_ms``)."""
    from tests.browser.conftest import cell_output, open_notebook, run_cell

    (server.root_dir / NOTEBOOK).write_text(notebook_json(widgets, tokens))
    server.shutdown_kernels()
    deltas: dict[str, list[dict[str, Any]]] = {}
    bad_frames = 0

    def on_ws(ws: Any) -> None:
        if "/channels" not in ws.url:
            return

        def received(payload: bytes | str) -> None:
            nonlocal bad_frames
            try:
                found = comm_delta(payload)
            except (ValueError, UnicodeDecodeError, KeyError):
                bad_frames += 1
                return
            if found is not None:
                deltas.setdefault(found[0], []).append(found[1])

        ws.on("framereceived", received)

    log_start = server.log_path.stat().st_size if server.log_path.exists() else 0
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        context.set_default_timeout(PAGE_TIMEOUT_S * 1000)
        context.add_init_script(script=PAGE_JS.read_text())
        page = context.new_page()
        page.on("websocket", on_ws)
        open_notebook(page, server, NOTEBOOK, timeout_s=PAGE_TIMEOUT_S)
        run_cell(page, 0, timeout_s=PAGE_TIMEOUT_S)
        ready = cell_output(page, 0).inner_text().split()
        if not ready or ready[0] != "ready":
            raise RuntimeError(f"the budget notebook's setup cell failed: {' '.join(ready)}")
        budget = float(ready[1])
        start_ms = float(page.evaluate("() => performance.now()"))
        for index in range(1, 1 + -(-widgets // WIDGETS_PER_CELL)):
            run_cell(page, index, timeout_s=timeout_s)
        deadline = time.monotonic() + timeout_s
        shown: list[str | None] = []
        while time.monotonic() < deadline:
            shown = page.evaluate(TRANSCRIPTS_JS)
            if len(shown) == widgets and all(s is not None for s in shown):
                break
            page.wait_for_timeout(100)  # the page's DOM: nothing to wait on from here
        done_ms = float(page.evaluate("() => performance.now()"))
        page.wait_for_timeout(1_000)  # the last frames (display updates) reach the page
        recv = page.evaluate("() => window.__peers.recv.map((r) => [r[0], r[1], r[2]])")
        page_text = page.evaluate("() => document.body.innerText")
    finally:
        context.close()
    server_log = server.log_path.read_bytes()[log_start:].decode(errors="replace")
    iopub = [t for t, channel, _ in recv if channel == "iopub" and t >= start_ms]
    settled = [s for s in shown if s is not None]

    gaps, texts = 0, {}
    for messages in deltas.values():
        text, gap = replay(messages)
        gaps += gap
        texts[text.split(".", 1)[0].strip()] = text  # " <salt>.0 <salt>.1 ..."
    per_widget_lost = [
        lost_chars(texts.get(str(salt), ""), "".join(budget_tokens(tokens, salt)))
        for salt in range(widgets)
    ]
    transcript_lost = [
        lost_chars(s or "", "".join(budget_tokens(tokens, salt)))
        for salt, s in enumerate(shown + [None] * (widgets - len(shown)))
    ]
    record = {
        "widgets": widgets,
        "tokens": tokens,
        "budget_msgs_per_s": budget,
        "all_text_s": round((done_ms - start_ms) / 1000, 3) if len(settled) == widgets else None,
        "settled_in_page": len(settled),
        "iopub_messages": len(iopub),
        "peak_3s_msgs_per_s": round(busiest(iopub, SERVER_WINDOW_S), 1),
        "peak_1s_msgs_per_s": round(busiest(iopub, 1.0), 1),
        "deltas": sum(len(v) for v in deltas.values()),
        "widgets_with_deltas": len(deltas),
        "delta_gaps": gaps,
        "delta_lost_chars": sum(per_widget_lost),
        "transcript_lost_chars": sum(transcript_lost),
        "rate_exceeded_in_log": server_log.count(RATE_EXCEEDED),
        "rate_exceeded_in_page": page_text.count(RATE_EXCEEDED),
        "unparsed_frames": bad_frames,
    }
    log(f"  budget: {record}")
    return record
