"""streamnb against the ways people stream into notebooks today (issue 16), side by side.

    python -m bench.bench_peers                 # N = 2,000, 50,000 and 200,000; ~1 h
    python -m bench.bench_peers --quick         # N = 2,000, 2 rounds: checks the harness, ~5 min
    python -m bench.bench_peers --readme        # also rewrite README.md's peers table
    python -m bench.bench_peers --only streamnb,print --sizes 2000 --rounds 3

One JupyterLab (``tests/browser/conftest.py``) in Debian's chromium through Playwright, one
notebook: a setup cell, a scratch cell and the contender cell, whose code is set before each
trial. Every contender shows the same ``peers_kernel.tokens(N)`` (short words, about 4.5
characters each), read the same way from one async source, ``peers_kernel.token_stream(N)``:
it yields each token, then gives the loop a turn (``await asyncio.sleep(0)``), as an LLM
client's stream does between chunks. Each contender cell is ``async for tok in
token_stream(N): ...`` and the streamnb handler does the same; the kernel-interrupt Stop
baselines keep a plain ``for tok in tokens(N)`` loop (an interrupt stops a blocking loop):

=====================  ==================================================================
streamnb               ``sn.StreamWidget(await runtime.attach(...))``; the handler reads
                       ``token_stream`` too, the widget batches deltas
print                  ``print(tok, end="")``: ipykernel batches stdout itself
display_throttled      ``display(..., display_id=True)`` + ``update()`` every 50 ms
print_flush            ``print(tok, end="", flush=True)``                       per token
output_widget          ``ipywidgets.Output`` + ``print(..., flush=True)``       per token
anywidget_trait        a plain anywidget with a synced ``text`` trait += tok    per token
textarea               ``ipywidgets.Textarea.value += tok``                     per token
markdown_per_token     ``display_id`` + ``update(Markdown(text))``              per token
panel                  Panel ``ChatFeed.stream(tok, message=...)``              per token
=====================  ==================================================================

Contenders are interleaved (the order rotates every round); medians over the rounds. Each
trial measures, in the page (``bench/peers_page.js``, page clock):

* **full text visible**: the ``execute_request`` leaving the page's kernel websocket to the
  DOM mutation after which the contender's view holds the whole text (textarea: its value,
  Panel: inside its shadow roots, polled every animation frame); also the first text;
* **messages and bytes per token**: iopub frames at the page's kernel websocket from the
  ``execute_request`` to the end of the trial (Playwright ``framereceived``), without the
  responsiveness probe's;
* **text lost or reordered**: the text shown at the end against the expected text;
* **kernel responsiveness**: once the first text shows, a trivial ``pass`` request is sent
  to the kernel: request to reply;
* **page responsiveness**: at the same moment a ``q`` typed into the scratch cell's editor
  (Playwright keyboard; ``q`` is no command-mode shortcut, should the editor lose focus):
  the keydown's input timestamp to the character in the editor's DOM and to the next
  animation frame.

A trial ends when the text is complete, or when the cell went idle and neither the text
nor the websocket changed for 3 s (text lost), or at the cap (120 s): a capped contender
is reported with the share of the text it showed ("34 % of the text after 120 s") and runs
once at that N. After a capped trial, lost text or any Panel trial, the next trial gets a
new page and kernel (a page flooded or left broken would slow the next contender); every
new page runs each non-Panel contender once, unrecorded, so all start warm.

**Stop** (issue 16 item 2): a 100,000-token stream, Stop clicked once 10,000 characters
show; click (the click event's time) to the producer stopping (kernel clock, synchronized
with the page by a request/reply exchange) and to the last new text in the page. Against
a kernel interrupt (the toolbar's button) of a ``print`` loop (flushed and unflushed) and
Panel's own Stop (a ``ChatInterface`` whose callback streams).

Figures (``bench/common.py`` format; baselines from the same run):

* peers.full_text_s.<N>          streamnb's full text visible; baseline unflushed print;
                                 target <= 1.5x at 2,000, <= 1.0x from 50,000 up
* peers.vs_throttled.<N>         baseline the throttled display_id loop; target <= 1.0x
* peers.vs_per_token.<N>         baseline the fastest per-token contender; target <= 0.2x
* peers.first_text_ms.<N>        streamnb's first text visible; baseline unflushed print;
                                 target <= 150 ms (the page has run a widget before)
* peers.text_lost_chars.<N>      characters missing or out of order in any round; target 0
* peers.kernel_probe_ms.<N>      report only, baseline unflushed print
* peers.keypress_ms.<N>          report only, baseline unflushed print
* peers.stop_last_text_ms        click to the last new text; baseline kernel interrupt of a
                                 flushed print loop; target <= 50 ms

Results: the figures go into ``bench/results.json`` (suite ``peers``, replacing the previous
peers figures; ``python -m bench.run`` keeps them), every trial with the versions into
``bench/peers_results.json``, and ``--readme`` rewrites README.md's peers table.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import statistics
import sys
import textwrap
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Figure, emit, jupyterlab_in_chromium, machine
from bench.peers_budget import QUICK_TOKENS as BUDGET_QUICK_TOKENS
from bench.peers_budget import SERVER_LIMIT_MSGS_PER_S, budget_trial, notebook_of
from bench.peers_budget import TOKENS as BUDGET_TOKENS
from bench.peers_budget import WIDGETS as BUDGET_WIDGETS
from bench.peers_kernel import expected_text

REPO = Path(__file__).resolve().parent.parent
PAGE_JS = Path(__file__).resolve().parent / "peers_page.js"
RESULTS = REPO / "bench" / "results.json"
DETAILS = REPO / "bench" / "peers_results.json"
README = REPO / "README.md"
BEGIN, END = "<!-- bench-peers:begin -->", "<!-- bench-peers:end -->"
NOTEBOOK = "peers_bench.ipynb"
SUITE = "peers"

SIZES = (2_000, 50_000, 200_000)
QUICK_SIZES = (2_000,)
ROUNDS = 5
QUICK_ROUNDS = 2
CAP_S = 120.0  # a trial that has not shown the whole text by then is capped
QUIET_MS = 3_000  # idle cell, no text change and no frame for this long: the trial is over
WIRE_QUIET_MS = 500  # after the text: no frame for this long before counting messages
PROBE_WAIT_S = 30.0
WARM_TOKENS = 64  # each contender runs once at this size in a new page, unrecorded
STOP_TOKENS = 100_000
STOP_SAMPLES = 5
QUICK_STOP_SAMPLES = 2
STOP_AFTER_CHARS = 10_000  # Stop is clicked once this much text shows
STOP_CAP_S = 60.0
STOP_CLICK_TIMEOUT_S = 10.0
STOP_CLICK_AFTER_S = 2.0  # ... or this long after the first text, if that is sooner
STOP_QUIET_MS = 2_000
CLOCK_SAMPLES = 7
PAGE_TIMEOUT_S = 60.0
MEM_FLOOR_BYTES = 3 * 1024**3  # a trial stops early when the machine has less available
THROTTLE_S = 0.05

PER_TOKEN_RATIO = 0.2  # >= 5x faster than every per-token contender
THROTTLED_RATIO = 1.0
PRINT_RATIO_SMALL = 1.5  # at 2,000 tokens
PRINT_RATIO_LARGE = 1.0  # from 50,000 tokens up
FIRST_TEXT_MS = 150.0
STOP_TEXT_MS = 50.0

SETUP, SCRATCH, CELL = 0, 1, 2

SETUP_CODE = """\
import asyncio
import time

import ipywidgets as widgets
from IPython.display import Markdown, display

import streamnb as sn
from bench.peers_kernel import (
    MARKS, TOKENS_KIND, close_everything, marks_json, panel_stop_interface, reset,
    streamnb_runtime, text_widget_class, token_stream, tokens,
)

RUNTIME = streamnb_runtime()
TextWidget = text_widget_class()
PANEL = None
if {panel}:
    import panel as pn

    pn.extension(inline=True)  # no CDN here: BokehJS and Panel's JS go into the page
    PANEL = pn.__version__
print("ready", PANEL)
"""


@dataclass(frozen=True)
class CellCode:
    """What a trial runs in the contender cell, and how the page reads its text.

    ``code`` is the cell (``{n}``: tokens); ``getter`` names the page function that reads
    its visible text (``peers_page.js``); ``poll``: its text changes are not DOM mutations
    (read every animation frame); ``panel``: a Panel view (the page is replaced after it).
    With a ``prelude`` (``{n}``: tokens too), the cell runs the prelude (which shows the
    view), the harness waits for ``ready`` (a CSS selector, matched inside shadow roots too)
    in its output, then sends ``code`` as a request of its own (no cell shows its output).
    """

    key: str
    label: str
    code: str
    getter: str
    poll: bool = field(default=False, kw_only=True)
    panel: bool = field(default=False, kw_only=True)
    prelude: str | None = field(default=None, kw_only=True)
    ready: str | None = field(default=None, kw_only=True)


@dataclass(frozen=True)
class Contender(CellCode):
    """One way to stream ``tokens(n)`` into a notebook cell; ``per_token``: it sends a
    message per token."""

    per_token: bool


@dataclass(frozen=True)
class Stopper(CellCode):
    """A stream stopped mid-flood: ``click`` is ``widget`` (streamnb's Stop button),
    ``interrupt`` (JupyterLab's toolbar button) or ``panel`` (Panel's Stop button)."""

    click: str


def token_cell(each_token: str, *, setup: str = "", after: str = "", indent: str = "") -> str:
    """A contender cell: ``setup``, then ``each_token`` for each token of the shared source
    (``async for tok in token_stream({n})``, itself indented by ``indent``), then ``after``,
    between the kernel's marks of the cell's start and of the producer's end
    (``peers_kernel.MARKS``)."""
    loop = f"{indent}async for tok in token_stream({{n}}):\n"
    body = textwrap.indent(each_token, indent + "    ")
    start, done = 'MARKS["cell"] = time.time()\n', 'MARKS["producer_done"] = time.time()\n'
    return f"{start}{setup}{loop}{body}{after}{done}"


THROTTLED_UPDATE = 'handle.update({{"text/plain": "".join(parts)}}, raw=True)\n'
PANEL_FEED = "feed = pn.chat.ChatFeed(height=400)\ndisplay(feed)\n"
PANEL_STREAM = 'message = feed.stream(tok, user="Assistant", message=message)\n'

CONTENDERS = [
    Contender(
        "streamnb",
        "streamnb `StreamWidget`",
        """\
MARKS["cell"] = time.time()
W = sn.StreamWidget(await RUNTIME.attach(TOKENS_KIND, {{"n": {n}}}))
display(W)
""",
        "streamnb",
        per_token=False,
    ),
    Contender(
        "print",
        '`print(tok, end="")` (unflushed)',
        token_cell('print(tok, end="")\n'),
        "stdout",
        per_token=False,
    ),
    Contender(
        "display_throttled",
        "`display(..., display_id=True)` + `update()` every 50 ms",
        token_cell(
            f"parts.append(tok)\nif time.monotonic() - last >= {THROTTLE_S}:\n"
            f"    {THROTTLED_UPDATE}    last = time.monotonic()\n",
            setup='handle = display({{"text/plain": ""}}, raw=True, display_id=True)\n'
            "parts, last = [], time.monotonic()\n",
            after=THROTTLED_UPDATE,
        ),
        "plain",
        per_token=False,
    ),
    Contender(
        "print_flush",
        '`print(tok, end="", flush=True)`',
        token_cell('print(tok, end="", flush=True)\n'),
        "stdout",
        per_token=True,
    ),
    Contender(
        "output_widget",
        "`ipywidgets.Output` + `print(..., flush=True)`",
        token_cell(
            'print(tok, end="", flush=True)\n',
            setup="out = widgets.Output()\ndisplay(out)\nwith out:\n",
            indent="    ",
        ),
        "stdout",
        per_token=True,
    ),
    Contender(
        "anywidget_trait",
        "plain anywidget, a `text` trait updated per token",
        token_cell("W.text += tok\n", setup="W = TextWidget()\ndisplay(W)\n"),
        "pre",
        per_token=True,
    ),
    Contender(
        "textarea",
        "`ipywidgets.Textarea.value += tok`",
        token_cell(
            "W.value += tok\n",
            setup='W = widgets.Textarea(layout=widgets.Layout(width="100%", height="12em"))\n'
            "display(W)\n",
        ),
        "textarea",
        per_token=True,
        poll=True,
    ),
    Contender(
        "markdown_per_token",
        "`display_id` + `update(Markdown(text))` per token",
        token_cell(
            "text += tok\nhandle.update(Markdown(text))\n",
            setup='handle = display(Markdown(""), display_id=True)\ntext = ""\n',
        ),
        "markdown",
        per_token=True,
    ),
    Contender(
        "panel",
        "Panel `ChatFeed.stream` (feed shown first)",
        token_cell(PANEL_STREAM, setup="message = None\n"),
        "panel",
        per_token=True,
        poll=True,
        panel=True,
        prelude=PANEL_FEED,
        ready=".chat-feed-log",
    ),
    Contender(
        "panel_same_cell",
        "Panel `ChatFeed.stream`, feed made in the same cell",
        token_cell(PANEL_STREAM, setup=PANEL_FEED + "message = None\n"),
        "panel",
        per_token=True,
        poll=True,
        panel=True,
    ),
]
BY_KEY = {c.key: c for c in CONTENDERS}


def interrupted_print(flush: bool) -> Stopper:
    """A blocking ``print`` loop (an interrupt stops a blocking loop) stopped by a kernel
    interrupt: flushed per token or not."""
    call = 'print(tok, end="", flush=True)' if flush else 'print(tok, end="")'
    return Stopper(
        "print_flush_interrupt" if flush else "print_interrupt",
        f"`{call}` loop{'' if flush else ' (unflushed)'}, kernel interrupt",
        f"""\
MARKS["cell"] = time.time()
try:
    for tok in tokens({{n}}):
        {call}
    MARKS["producer_done"] = time.time()
except KeyboardInterrupt:
    MARKS["producer_stopped"] = time.time()
""",
        "stdout",
        "interrupt",
    )


STOPPERS = [
    Stopper("streamnb", "streamnb Stop button", BY_KEY["streamnb"].code, "streamnb", "widget"),
    interrupted_print(flush=True),
    interrupted_print(flush=False),
    Stopper(
        "panel",
        "Panel `ChatInterface` Stop button",
        'MARKS["cell"] = time.time()\nchat.send("go", respond=True)\n',
        "panel_reply",
        "panel",
        poll=True,
        panel=True,
        prelude="chat = panel_stop_interface({n})\ndisplay(chat)\n",
        ready=".chat-feed-log",
    ),
]
STOPPER_BY_KEY = {s.key: s for s in STOPPERS}


# --- kernel websocket frames as Playwright sees them ---------------------------------------


def parse_frame(payload: bytes | str) -> tuple[str | None, str | None, str | None, str | None, int]:
    """``(channel, msg_type, msg_id, parent msg_id, bytes)`` of a kernel websocket frame.

    Binary frames follow ``v1.kernel.websocket.jupyter.org`` (little-endian uint64 offsets,
    then channel, header, parent header, metadata, content, buffers); text frames are the
    legacy JSON messages.
    """
    if isinstance(payload, str):
        msg = json.loads(payload)
        header = msg.get("header") or {}
        parent = msg.get("parent_header") or {}
        return (
            msg.get("channel"),
            header.get("msg_type"),
            header.get("msg_id"),
            parent.get("msg_id"),
            len(payload.encode()),
        )

    def at(i: int) -> int:
        return int.from_bytes(payload[8 * (i + 1) : 8 * (i + 2)], "little")

    channel = payload[at(0) : at(1)].decode()
    header = json.loads(payload[at(1) : at(2)])
    parent = json.loads(payload[at(2) : at(3)]) if at(3) > at(2) else {}
    return channel, header.get("msg_type"), header.get("msg_id"), parent.get("msg_id"), len(payload)


@dataclass
class Frame:
    sent: bool
    channel: str | None
    msg_type: str | None
    msg_id: str | None
    parent_id: str | None
    size: int


# --- results ---------------------------------------------------------------------------------


@dataclass
class Trial:
    """One contender at one N in one round (times in seconds unless ``_ms``)."""

    contender: str
    n: int
    round: int
    outcome: str  # complete | lost (idle and quiet, text incomplete or wrong) | capped | error
    full_s: float | None
    first_ms: float | None
    first_from_cell_ms: float | None
    shown_chars: int
    expected_chars: int
    first_diff: int  # characters equal to the expected text before the first difference
    messages: int
    bytes: int
    page_messages: int
    kernel_probe_ms: float | None
    keypress_ms: float | None
    probe_mid_stream: bool
    server_dropped: bool
    elapsed_s: float
    timeline_ms: dict[str, float | None] = field(default_factory=dict)
    note: str = ""

    @property
    def share(self) -> float:
        return self.shown_chars / self.expected_chars if self.expected_chars else 0.0


@dataclass
class StopSample:
    stopper: str
    sample: int
    outcome: str  # stopped | finished_before_click | capped | error
    click_to_producer_stopped_ms: float | None
    click_to_last_text_ms: float | None  # last DOM change of the text after the click
    click_to_last_paint_ms: float | None  # the animation frame that saw it
    changes_after_click: int
    chars_after_click: int
    shown_at_click: int
    note: str = ""


@dataclass
class PeersRun:
    command: str
    machine: str
    versions: dict[str, str]
    sizes: list[int]
    rounds: int
    cap_s: float
    stop_tokens: int = STOP_TOKENS
    trials: list[Trial] = field(default_factory=list)
    stops: list[StopSample] = field(default_factory=list)
    cold_start: list[dict[str, Any]] = field(default_factory=list)
    clock: list[dict[str, float]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    #: the many-widgets trials (``bench/peers_budget.py``), one record each
    budget: list[dict[str, Any]] = field(default_factory=list)


# --- the lab ---------------------------------------------------------------------------------


def notebook_json(panel: bool) -> str:
    return notebook_of(
        [
            SETUP_CODE.format(panel=panel),
            "",
            "# the contender's code is set here by bench/bench_peers.py",
        ]
    )


def mem_available() -> int:
    """MemAvailable of the machine in bytes (Linux), or a large number elsewhere."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def page_value(page: Any, expression: str, arg: Any = None, timeout_s: float = 15.0) -> Any:
    """``expression(arg)`` evaluated in the page, giving up after ``timeout_s`` (a page
    flooded by a capped contender may not answer ``page.evaluate`` for minutes)."""
    handle = page.wait_for_function(
        f"(arg) => {{ const v = ({expression})(arg); return v === undefined ? null : [v]; }}",
        arg=arg,
        timeout=timeout_s * 1000,
    )
    return handle.json_value()[0]


RUN_JS = """
([cellIndex, scratchIndex, source, getter, target, options]) => {
  const P = window.__peers;
  const nb = window.jupyterapp.shell.currentWidget.content;
  const cell = nb.widgets[cellIndex];
  const scratch = nb.widgets[scratchIndex];
  cell.model.sharedModel.setSource(source);
  scratch.model.sharedModel.setSource("");
  const marks = { recv: P.recv.length, sent: P.sent.length, clicks: P.clicks.length };
  P.watch(cell.outputArea.node, getter, target, options);
  nb.mode = "command";
  nb.activeCellIndex = cellIndex;
  window.jupyterapp.commands.execute("notebook:run-cell");
  // The keypress probe types into the scratch cell: focus it now, while the page is free.
  nb.activeCellIndex = scratchIndex;
  nb.mode = "edit";
  scratch.editor.focus();
  P.armKey(scratch.node.querySelector(".cm-content"));
  return marks;
}
"""

CELL_ROOT_JS = "window.jupyterapp.shell.currentWidget.content.widgets[i].outputArea.node"

EXEC_SENT_JS = """
(mark) => {
  const rows = window.__peers.sent.slice(mark).filter((r) => r[2] === "execute_request");
  return rows.length ? rows[0] : null;
}
"""

CLEAN_JS = """
([cellIndex, scratchIndex]) => {
  const P = window.__peers;
  if (P.watcher) P.watcher.stop();
  const nb = window.jupyterapp.shell.currentWidget.content;
  nb.widgets[cellIndex].model.outputs.clear();
  nb.widgets[scratchIndex].model.sharedModel.setSource("");
  nb.mode = "command";
  return true;
}
"""


class PeersLab:
    """A JupyterLab page with the benchmark notebook open, its kernel set up and warm."""

    def __init__(
        self,
        server: Any,
        browser: Any,
        *,
        contenders: list[Contender],
        stoppers: list[Stopper],
        log: Callable[[str], None],
    ) -> None:
        self.server = server
        self.browser = browser
        self.contenders = contenders
        self.stoppers = stoppers
        self.panel = any(c.panel for c in contenders) or any(s.panel for s in stoppers)
        self.log = log
        self.context: Any = None
        self.page: Any = None
        self.frames: list[Frame] = []
        self.time_origin = 0.0
        self.offset_s = 0.0  # kernel epoch - page epoch
        self.clock: list[dict[str, float]] = []
        self.cold_start: list[dict[str, Any]] = []
        self.panel_version: str | None = None
        self.stale = ""  # why the page and kernel must be replaced before the next trial
        (server.root_dir / NOTEBOOK).write_text(notebook_json(self.panel))

    # --- page and kernel lifecycle -----------------------------------------------------------

    def _on_ws(self, ws: Any) -> None:
        if "/channels" not in ws.url:
            return

        def received(payload: bytes | str) -> None:
            self.frames.append(Frame(False, *self._parse(payload)))

        def sent(payload: bytes | str) -> None:
            self.frames.append(Frame(True, *self._parse(payload)))

        ws.on("framereceived", received)
        ws.on("framesent", sent)

    @staticmethod
    def _parse(payload: bytes | str) -> tuple[str | None, str | None, str | None, str | None, int]:
        try:
            return parse_frame(payload)
        except (ValueError, UnicodeDecodeError, KeyError):
            return None, None, None, None, len(payload)

    def fresh(self) -> None:
        """A new browser context and page, a new kernel; setup cell, clock, warm-up."""
        from tests.browser.conftest import cell_output, open_notebook, run_cell

        self.close_page()
        self.stale = ""
        self.server.shutdown_kernels()
        self.server.reset_user_state()
        self.context = self.browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(PAGE_TIMEOUT_S * 1000)
        self.context.add_init_script(script=PAGE_JS.read_text())
        self.page = self.context.new_page()
        self.page.on("websocket", self._on_ws)
        open_notebook(self.page, self.server, NOTEBOOK, timeout_s=PAGE_TIMEOUT_S)
        run_cell(self.page, SETUP, timeout_s=PAGE_TIMEOUT_S * 2)
        ready = cell_output(self.page, SETUP).inner_text().strip()
        if not ready.startswith("ready"):
            raise RuntimeError(f"the benchmark notebook's setup cell failed:\n{ready}")
        self.panel_version = ready.split()[-1] if self.panel else None
        self.time_origin = float(self.page.evaluate("() => performance.timeOrigin"))
        self.calibrate()
        for c in self.contenders:
            if c.panel:  # Panel's JS came with pn.extension(); a Panel run may break the page
                continue
            t = self.trial(c, WARM_TOKENS, -1, cap_s=PAGE_TIMEOUT_S, probes=False)
            if t.outcome != "complete":
                self.log(f"    warm-up {c.key}: {summary_line(t)}")
            if c.key == "streamnb" and len(self.cold_start) < 3:
                self.cold_start.append(t.timeline_ms)

    def close_page(self) -> None:
        if self.context is not None:
            try:
                self.context.close()
            finally:
                self.context = None
                self.page = None

    def close(self) -> None:
        self.close_page()

    def diagnose(self, exec_id: str = "") -> str:
        """Why a trial did not end: the kernel's state (REST), the page's view of the
        websocket (the cell's idle seen? seconds since the last frame, and its type) and the
        server's warnings."""
        try:
            states = [k["execution_state"] for k in self.server.api("GET", "/api/kernels")]
        except (OSError, ValueError, KeyError):
            states = ["unknown"]
        warnings = [
            line.split("]", 1)[-1].strip()[:120]
            for line in self.server.log_tail(200).splitlines()
            if ("rate exceeded" in line or " W " in line or "[W " in line or "[E " in line)
            and "404 GET" not in line
        ]
        try:
            cells = page_value(
                self.page,
                """(id) => {
                  const P = window.__peers, r = P.recv[P.recv.length - 1] || [0, "", ""];
                  return `${window.jupyterapp.shell.currentWidget.content.widgets.length} cells;`
                    + ` page: idle ${id in P.idle ? "seen" : "not seen"}, last frame`
                    + ` ${((performance.now() - r[0]) / 1000).toFixed(1)} s ago (${r[1]} ${r[2]})`;
                }""",
                exec_id,
                timeout_s=5,
            )
        except Exception:  # the page does not answer: say so, it is the diagnosis
            cells = "page not answering"
        return f" (kernel {'/'.join(states)}; {cells}" + (
            f"; server: {' | '.join(warnings[-3:])})" if warnings else ")"
        )

    def interrupt_kernel(self) -> None:
        for kernel in self.server.api("GET", "/api/kernels"):
            self.server.api("POST", f"/api/kernels/{kernel['id']}/interrupt")

    def calibrate(self) -> None:
        """Kernel clock against the page's: the request/reply sample with the least RTT."""
        samples = [
            self.page.evaluate("() => window.__peers.clockSample()") for _ in range(CLOCK_SAMPLES)
        ]
        t0, t1, kernel = min(samples, key=lambda s: s[1] - s[0])
        page_mid = (self.time_origin + (t0 + t1) / 2) / 1000
        self.offset_s = kernel - page_mid
        self.clock.append(
            {"offset_ms": round(self.offset_s * 1000, 2), "uncertainty_ms": round((t1 - t0) / 2, 2)}
        )

    def kernel_ms(self, epoch_s: float | None) -> float | None:
        """A kernel ``time.time()`` on the page's ``performance.now()`` clock (ms)."""
        if epoch_s is None:
            return None
        return (epoch_s - self.offset_s) * 1000 - self.time_origin

    def kernel_marks(self) -> dict[str, float]:
        """``MARKS`` of the kernel (``peers_kernel.py``), read with a silent request."""
        value = self.page.evaluate("() => window.__peers.evalExpression('', 'marks_json()')")
        if not isinstance(value, str) or value.startswith("error"):
            raise RuntimeError(f"could not read the kernel's marks: {value}")
        marks: dict[str, float] = json.loads(ast.literal_eval(value))
        return marks

    def cleanup(self) -> str:
        """Clear the outputs, close the widgets; "" when the kernel went idle, else why not
        (the next trial then needs a new page and kernel: ``stale``)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        from tests.browser.conftest import wait_kernel_idle

        try:
            self.page.evaluate(CLEAN_JS, [CELL, SCRATCH])
            self.page.evaluate("() => window.__peers.evalExpression('close_everything()', '0')")
            wait_kernel_idle(self.page, PAGE_TIMEOUT_S)
        except PlaywrightTimeoutError:
            self.stale = f"kernel or page still busy {PAGE_TIMEOUT_S:.0f} s after the trial"
        return self.stale

    def recover(self, why: str) -> None:
        """Interrupt, then a new page and kernel: after a capped trial (the old page may be
        minutes behind on its messages) or text lost (the page may be left broken)."""
        self.log(f"    replacing page and kernel ({why})")
        try:
            self.interrupt_kernel()
        except OSError:
            pass
        self.fresh()

    # --- one trial -----------------------------------------------------------------------

    def _start(
        self, c: CellCode, n: int, target: int, *, keep: bool
    ) -> tuple[dict[str, int], list[Any], int]:
        """Run ``c`` for ``n`` tokens in the contender cell, its page watcher waiting for
        ``target`` characters; the page's marks, the ``execute_request`` row and the frame
        count before it."""
        from tests.browser.conftest import wait_kernel_idle

        code = c.code.format(n=n)
        prelude = None if c.prelude is None else c.prelude.format(n=n)
        # reset() also makes a round trip, so every earlier frame has been delivered
        self.page.evaluate("() => window.__peers.evalExpression('reset()', '0')")
        frames_mark = len(self.frames)
        options = {"poll": c.poll, "keep": keep}
        marks = self.page.evaluate(
            RUN_JS, [CELL, SCRATCH, prelude or code, c.getter, target, options]
        )
        if prelude is not None:
            wait_kernel_idle(self.page, PAGE_TIMEOUT_S)
            self.page.wait_for_function(
                f"([i, sel]) => window.__peers.deepCount({CELL_ROOT_JS}, sel) > 0",
                arg=[CELL, c.ready or "*"],
                polling=100,
                timeout=PAGE_TIMEOUT_S * 1000,
            )
            frames_mark = len(self.frames)
            marks["sent"] = self.page.evaluate("() => window.__peers.sent.length")
            self.page.evaluate("(code) => window.__peers.request(code)", code)
        handle = self.page.wait_for_function(EXEC_SENT_JS, arg=marks["sent"], timeout=30_000)
        exec_row = handle.json_value()
        return marks, exec_row, frames_mark

    def _wait_settled(
        self, exec_id: str, quiet_ms: int, deadline: float
    ) -> tuple[str, dict[str, Any] | None]:
        """Until complete, or idle and quiet, or ``deadline`` (monotonic): the outcome and the
        watcher's last state."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        state: dict[str, Any] | None = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "capped", state
            if mem_available() < MEM_FLOOR_BYTES:
                return "capped", state
            try:
                self.page.wait_for_function(
                    "([id, quiet]) => window.__peers.settled(id, quiet)",
                    arg=[exec_id, quiet_ms],
                    polling=100,
                    timeout=min(remaining, 2.0) * 1000,
                )
                return "settled", self._state()
            except PlaywrightTimeoutError:
                try:
                    state = self._state(timeout_s=2.0)
                except PlaywrightTimeoutError:
                    pass

    def _state(self, timeout_s: float = 15.0) -> dict[str, Any]:
        state: dict[str, Any] = page_value(
            self.page, "() => window.__peers.watcher.state()", timeout_s=timeout_s
        )
        return state

    def _count(self, frames_mark: int, exec_id: str, exclude: set[str]) -> tuple[int, int]:
        frames = self.frames[frames_mark:]
        start = next(
            (i for i, f in enumerate(frames) if f.sent and f.msg_id == exec_id), len(frames)
        )
        iopub = [
            f
            for f in frames[start:]
            if not f.sent and f.channel == "iopub" and f.parent_id not in exclude
        ]
        return len(iopub), sum(f.size for f in iopub)

    def trial(
        self, c: Contender, n: int, round_: int, *, cap_s: float, probes: bool = True
    ) -> Trial:
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        expected = expected_text(n)
        target = len(expected.strip())
        started = time.monotonic()
        deadline = started + cap_s
        marks, exec_row, frames_mark = self._start(c, n, target, keep=False)
        t_exec, exec_id = exec_row[0], exec_row[3]
        probe_id: str | None = None
        press_ms: float | None = None
        if probes:
            try:
                self.page.wait_for_function(
                    "() => { const w = window.__peers.watcher; w.check();"
                    " return w.first !== null || w.done !== null; }",
                    polling="raf",
                    timeout=max(0.1, deadline - time.monotonic()) * 1000,
                )
                probe_id = self.page.evaluate("() => window.__peers.probeKernel()")
                t = time.perf_counter()
                self.page.keyboard.press("q")
                press_ms = (time.perf_counter() - t) * 1000
            except PlaywrightTimeoutError:
                pass
        outcome, state = self._wait_settled(exec_id, QUIET_MS, deadline)
        if outcome == "capped":
            return self._capped_trial(c, n, round_, started, state, t_exec, cap_s, exec_id)
        if probe_id is not None:
            try:
                self.page.wait_for_function(
                    "() => { const k = window.__peers.kernelProbe, p = window.__peers.keyProbe;"
                    " return k.done !== null && (p.down === null || p.painted !== null); }",
                    timeout=PROBE_WAIT_S * 1000,
                )
            except PlaywrightTimeoutError:
                pass
        try:
            self.page.wait_for_function(
                "(quiet) => { const r = window.__peers.recv;"
                " return performance.now() - r[r.length - 1][0] >= quiet; }",
                arg=WIRE_QUIET_MS,
                polling=100,
                timeout=PROBE_WAIT_S * 1000,
            )
        except PlaywrightTimeoutError:
            pass
        w = self._state()
        detail = self.page.evaluate(
            """([mark, getter, i]) => {
              const P = window.__peers;
              const root = """
            + CELL_ROOT_JS
            + """;
              return {
                text: P.text(root, getter) || "",
                stderr: P.text(root, "stderr") || "",
                recv: P.recv.slice(mark),
                kernelProbe: P.kernelProbe,
                keyProbe: P.keyProbe,
              };
            }""",
            [marks["recv"], c.getter, CELL],
        )
        kmarks = self.kernel_marks()
        exclude = {probe_id} if probe_id else set()
        messages, nbytes = self._count(frames_mark, exec_id, exclude)
        shown = normalize(detail["text"], c.getter)
        want = normalize(expected, c.getter)
        first_diff = common_prefix(shown, want)
        complete = shown == want
        recv = [r for r in detail["recv"] if r[0] >= t_exec]
        timeline = page_timeline(recv, exec_id, t_exec, w)
        cell_ms = self.kernel_ms(kmarks.get("cell"))
        if cell_ms is not None:
            timeline["kernel_cell_start"] = round(cell_ms - t_exec, 1)
        if "producer_done" in kmarks:
            timeline["kernel_producer_done"] = round(
                (self.kernel_ms(kmarks["producer_done"]) or 0) - t_exec, 1
            )
        done_at = w["doneMut"] if complete else None
        first_at = w["firstMut"]
        kp, kk = detail["kernelProbe"], detail["keyProbe"]
        kernel_probe_ms = keypress_ms = None
        mid = False
        if probe_id is not None and kp and kp.get("id") == probe_id:
            if kp["reply"] is not None:
                kernel_probe_ms = kp["reply"] - kp["t0"]
            end = done_at if done_at is not None else w["lastChange"]
            mid = end is not None and kp["t0"] < end
            if kk and kk["down"] is not None and kk["painted"] is not None:
                keypress_ms = kk["painted"] - kk["down"]
            elif press_ms is not None:
                keypress_ms = press_ms
        trial = Trial(
            contender=c.key,
            n=n,
            round=round_,
            outcome="complete" if complete else "lost",
            full_s=None if done_at is None else round((done_at - t_exec) / 1000, 4),
            first_ms=None if first_at is None else round(first_at - t_exec, 1),
            first_from_cell_ms=(
                None if first_at is None or cell_ms is None else round(first_at - cell_ms, 1)
            ),
            shown_chars=len(shown),
            expected_chars=len(want),
            first_diff=first_diff,
            messages=messages,
            bytes=nbytes,
            page_messages=sum(
                1 for r in recv if r[1] == "iopub" and (probe_id is None or r[3] != probe_id)
            ),
            kernel_probe_ms=None if kernel_probe_ms is None else round(kernel_probe_ms, 1),
            keypress_ms=None if keypress_ms is None else round(keypress_ms, 1),
            probe_mid_stream=mid,
            server_dropped="rate exceeded" in detail["stderr"],
            elapsed_s=round(time.monotonic() - started, 2),
            timeline_ms=timeline,
            note="" if complete else describe_loss(shown, want),
        )
        if self.cleanup():
            trial.note = "; ".join(filter(None, [trial.note, self.stale]))
        return trial

    def _capped_trial(
        self,
        c: Contender,
        n: int,
        round_: int,
        started: float,
        state: dict[str, Any] | None,
        t_exec: float,
        cap_s: float,
        exec_id: str,
    ) -> Trial:
        want = len(expected_text(n).strip())
        shown = int(state["len"]) if state else 0
        first = state.get("firstMut") if state else None
        low_memory = mem_available() < MEM_FLOOR_BYTES
        elapsed = time.monotonic() - started
        note = (
            f"{100 * shown / want:.0f} % of the text after {elapsed:.0f} s"
            + (" (stopped early: the machine ran low on memory)" if low_memory else "")
            + ("" if state else " (page did not answer)")
        )
        note += self.diagnose(exec_id)
        trial = unread_trial(
            c.key,
            n,
            round_,
            "capped",
            elapsed,
            note,
            shown_chars=shown,
            first_ms=None if first is None else round(first - t_exec, 1),
            probe_mid_stream=True,
        )
        self.recover(f"{c.key} at {n} tokens capped after {cap_s:.0f} s")
        return trial

    # --- Stop ------------------------------------------------------------------------------

    def stop_sample(self, s: Stopper, sample: int, n: int) -> StopSample:
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        from tests.browser.conftest import cell_output

        expected = expected_text(n)
        target = len(expected.strip())
        deadline = time.monotonic() + STOP_CAP_S
        marks, exec_row, _ = self._start(s, n, target, keep=True)
        exec_id = exec_row[3]
        threshold = min(STOP_AFTER_CHARS, target // 2)
        try:
            self.page.wait_for_function(
                "() => { const w = window.__peers.watcher; w.dirty = true; w.check();"
                " return w.first !== null; }",
                polling="raf",
                timeout=STOP_CAP_S * 1000,
            )
        except PlaywrightTimeoutError:
            self.recover(f"stop {s.key}: no text within {STOP_CAP_S:.0f} s")
            return StopSample(s.key, sample, "capped", None, None, None, 0, 0, 0, "no text")
        try:  # mid-flood: once STOP_AFTER_CHARS show, or STOP_CLICK_AFTER_S after the first
            self.page.wait_for_function(
                "(threshold) => { const w = window.__peers.watcher; w.dirty = true; w.check();"
                " return w.len >= threshold || w.done !== null; }",
                arg=threshold,
                polling="raf",
                timeout=STOP_CLICK_AFTER_S * 1000,
            )
        except PlaywrightTimeoutError:
            pass
        output = cell_output(self.page, CELL)
        if s.click == "widget":
            button = output.locator(".streamnb-stop")
        elif s.click == "interrupt":
            button = self.page.locator(
                '.jp-NotebookPanel:not(.lm-mod-hidden) [data-command="notebook:interrupt-kernel"]'
            ).first
        else:
            button = output.get_by_role("button", name=re.compile("stop", re.I)).last
        try:
            button.click(timeout=STOP_CLICK_TIMEOUT_S * 1000)
        except PlaywrightTimeoutError:
            # a streamnb Stop button is disabled once the stream settled
            self._wait_settled(exec_id, STOP_QUIET_MS, deadline)
            w = self._state()
            self.cleanup()
            outcome = "finished_before_click" if w["done"] is not None else "capped"
            return StopSample(s.key, sample, outcome, None, None, None, 0, 0, w["len"], "no click")
        outcome, _ = self._wait_settled(exec_id, STOP_QUIET_MS, deadline)
        if outcome == "capped":
            self.recover(f"stop {s.key}: did not settle within {STOP_CAP_S:.0f} s")
            return StopSample(s.key, sample, "capped", None, None, None, 0, 0, 0, "no settle")
        w = self._state()
        clicks = self.page.evaluate("(mark) => window.__peers.clicks.slice(mark)", marks["clicks"])
        kmarks = self.kernel_marks()
        self.cleanup()
        if not clicks:
            return StopSample(s.key, sample, "capped", None, None, None, 0, 0, 0, "no click seen")
        click = clicks[0][0]
        before = [ch for ch in w["changes"] if ch[0] <= click]
        after = [ch for ch in w["changes"] if ch[0] > click]
        shown_at_click = before[-1][2] if before else 0
        stopped = self.kernel_ms(kmarks.get("producer_stopped"))
        last_token = self.kernel_ms(kmarks.get("last_token"))
        if stopped is None and last_token is not None and last_token > click:
            stopped = last_token  # a producer that is abandoned rather than told (Panel)
        if w["done"] is not None and w["done"] <= click:
            outcome = "finished_before_click"
        elif stopped is None:
            outcome = "finished_before_click" if "producer_done" in kmarks else "stopped"
        else:
            outcome = "stopped"
        return StopSample(
            stopper=s.key,
            sample=sample,
            outcome=outcome,
            click_to_producer_stopped_ms=None if stopped is None else round(stopped - click, 1),
            click_to_last_text_ms=round(after[-1][0] - click, 1) if after else 0.0,
            click_to_last_paint_ms=round(after[-1][1] - click, 1) if after else 0.0,
            changes_after_click=len(after),
            chars_after_click=(after[-1][2] - shown_at_click) if after else 0,
            shown_at_click=shown_at_click,
            note=f"clicked {clicks[0][2]!r}",
        )


def normalize(text: str, getter: str) -> str:
    """The text as it should compare: trimmed (Markdown and Panel drop the leading space)."""
    del getter
    return text.strip()


def common_prefix(a: str, b: str) -> int:
    """Length of the common prefix of ``a`` and ``b`` (binary search on slices)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def describe_loss(shown: str, want: str) -> str:
    prefix = common_prefix(shown, want)
    if prefix == len(shown):
        return f"{100 * len(shown) / len(want):.1f} % of the text, in order (the end is missing)"
    return (
        f"{len(shown)} of {len(want)} chars shown; differs from char {prefix} on "
        "(text lost or out of order)"
    )


def page_timeline(
    recv: list[list[Any]], exec_id: str, t_exec: float, w: dict[str, Any]
) -> dict[str, float | None]:
    """Page-clock milestones of a trial, ms after its ``execute_request`` left the page."""

    def first(pred: Callable[[list[Any]], bool]) -> float | None:
        row = next((r for r in recv if pred(r)), None)
        return None if row is None else round(row[0] - t_exec, 1)

    def rel(value: float | None) -> float | None:
        return None if value is None else round(value - t_exec, 1)

    return {
        "busy": first(lambda r: r[2] == "status" and r[3] == exec_id and r[5] == "busy"),
        "execute_input": first(lambda r: r[2] == "execute_input"),
        "comm_open": first(lambda r: r[2] == "comm_open"),
        "first_output_msg": first(
            lambda r: (
                r[2] in ("stream", "display_data", "update_display_data")
                or (r[2] == "comm_msg" and r[5] in ("custom", "update"))
            )
        ),
        "first_custom_msg": first(lambda r: r[2] == "comm_msg" and r[5] == "custom"),
        "idle": first(lambda r: r[2] == "status" and r[3] == exec_id and r[5] == "idle"),
        "view_in_dom": rel(w.get("rootAt")),
        "first_text": rel(w.get("firstMut")),
        "full_text": rel(w.get("doneMut")),
        "full_text_painted": rel(w.get("done")),
    }


# --- the run ---------------------------------------------------------------------------------


def versions(browser: Any, panel: str | None) -> dict[str, str]:
    import anywidget
    import ipykernel
    import ipywidgets
    import jupyter_server
    import jupyterlab

    out = {
        "python": sys.version.split()[0],
        "jupyterlab": jupyterlab.__version__,
        "jupyter_server": jupyter_server.__version__,
        "ipykernel": ipykernel.__version__,
        "ipywidgets": ipywidgets.__version__,
        "anywidget": anywidget.__version__,
        "chromium": browser.version,
        "panel": panel or "not installed",
    }
    try:
        import bokeh

        out["bokeh"] = bokeh.__version__
    except ImportError:
        pass
    return out


def panel_available() -> bool:
    try:
        import panel  # noqa: F401
    except ImportError:
        return False
    return True


def measure(
    server: Any,
    browser: Any,
    *,
    sizes: Iterable[int],
    rounds: int,
    contenders: list[Contender],
    stoppers: list[Stopper],
    stop_samples: int,
    stop_tokens: int = STOP_TOKENS,
    cap_s: float = CAP_S,
    command: str = "python -m bench.bench_peers",
    skip_after_cap: bool = False,
    budget_widgets: int = 0,
    budget_tokens: int = BUDGET_TOKENS,
    log: Callable[[str], None] = print,
) -> PeersRun:
    """Run the trials on a running Jupyter server (``tests/browser/conftest.py``) and a
    launched chromium; returns every trial and Stop sample (no figures yet). With
    ``budget_widgets``, the many-widgets trial (``bench/peers_budget.py``) runs last."""
    if not contenders and not stoppers:
        run = PeersRun(command, machine(), versions(browser, None), [], 0, cap_s, stop_tokens)
        if budget_widgets:
            run.budget.append(
                budget_trial(server, browser, widgets=budget_widgets, tokens=budget_tokens, log=log)
            )
        return run
    lab = PeersLab(server, browser, contenders=contenders, stoppers=stoppers, log=log)
    run = PeersRun(
        command=command,
        machine=machine(),
        versions={},
        sizes=list(sizes),
        rounds=rounds,
        cap_s=cap_s,
        stop_tokens=stop_tokens,
    )
    try:
        lab.fresh()
        run.versions = versions(browser, lab.panel_version)
        capped: dict[str, int] = {}  # contender -> smallest N it was capped at
        for n in run.sizes:
            done_capped: set[str] = set()
            for r in range(rounds):
                order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
                for c in order:
                    if c.key in done_capped:
                        continue
                    if skip_after_cap and c.key in capped and capped[c.key] < n:
                        run.skipped[f"{c.key}@{n}"] = (
                            f"capped at {capped[c.key]:,} tokens, not run at {n:,}"
                        )
                        continue
                    started = time.monotonic()
                    try:
                        t = lab.trial(c, n, r, cap_s=cap_s)
                    except Exception as exc:  # a broken page must not end the whole run
                        t = error_trial(c.key, n, r, exc, time.monotonic() - started)
                        lab.stale = t.note
                    run.trials.append(t)
                    log(f"  N={n:,} round {r + 1}/{rounds} {c.key}: {summary_line(t)}")
                    if t.outcome == "capped":
                        done_capped.add(c.key)
                        if not any(
                            x.contender == c.key and x.n == n and x.outcome == "complete"
                            for x in run.trials
                        ):
                            capped.setdefault(c.key, n)
                    elif t.outcome != "complete" or c.panel or lab.stale:
                        # Lost text may leave the page in a bad state (Panel: Bokeh models
                        # the page never got), so the next contender gets a new page.
                        lab.recover(f"after {c.key}: {t.outcome} {lab.stale}".strip())
        for i in range(stop_samples):
            for s in stoppers:
                try:
                    sample = lab.stop_sample(s, i, stop_tokens)
                except Exception as exc:  # a broken page must not end the whole run
                    note = f"harness error: {type(exc).__name__}: {str(exc)[:300]}"
                    sample = StopSample(s.key, i, "error", None, None, None, 0, 0, 0, note)
                    lab.stale = note
                run.stops.append(sample)
                log(f"  stop {s.key} #{i + 1}: {asdict(sample)}")
                if lab.stale or (s.panel and sample.outcome != "capped"):
                    lab.recover(f"after stop {s.key} {lab.stale}".strip())
        run.cold_start = lab.cold_start
        run.clock = lab.clock
    finally:
        lab.close()
    if budget_widgets:
        run.budget.append(
            budget_trial(server, browser, widgets=budget_widgets, tokens=budget_tokens, log=log)
        )
    return run


def unread_trial(
    key: str,
    n: int,
    round_: int,
    outcome: str,
    elapsed_s: float,
    note: str,
    *,
    shown_chars: int = 0,
    first_ms: float | None = None,
    probe_mid_stream: bool = False,
) -> Trial:
    """A trial whose page was not read to the end (capped, or broken): what it showed, no
    full-text time and no message counts (``messages`` -1: the page is replaced)."""
    return Trial(
        contender=key,
        n=n,
        round=round_,
        outcome=outcome,
        full_s=None,
        first_ms=first_ms,
        first_from_cell_ms=None,
        shown_chars=shown_chars,
        expected_chars=len(expected_text(n).strip()),
        first_diff=-1,
        messages=-1,
        bytes=0,
        page_messages=0,
        kernel_probe_ms=None,
        keypress_ms=None,
        probe_mid_stream=probe_mid_stream,
        server_dropped=False,
        elapsed_s=round(elapsed_s, 2),
        note=note,
    )


def error_trial(key: str, n: int, round_: int, exc: BaseException, elapsed_s: float) -> Trial:
    """A trial the harness could not finish (the page or kernel broke): kept, not dropped."""
    note = f"harness error: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    return unread_trial(key, n, round_, "error", elapsed_s, note)


def summary_line(t: Trial) -> str:
    if t.outcome == "complete":
        return (
            f"full text {t.full_s:.3f} s, first {t.first_ms} ms, {t.messages} iopub msgs, "
            f"{t.bytes} B, kernel probe {t.kernel_probe_ms} ms, keypress {t.keypress_ms} ms"
        )
    return f"{t.outcome}: {t.note}"


# --- figures ---------------------------------------------------------------------------------


def median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


@dataclass
class Cell:
    """One contender at one N, over its rounds."""

    contender: str
    n: int
    trials: list[Trial]

    @property
    def complete(self) -> list[Trial]:
        return [t for t in self.trials if t.outcome == "complete"]

    @property
    def capped(self) -> Trial | None:
        return next((t for t in self.trials if t.outcome == "capped"), None)

    @property
    def full_s(self) -> float | None:
        return median(t.full_s for t in self.complete)

    def median_ms(self, attr: str) -> float | None:
        """Median over the rounds of a trial's ``attr`` (``first_ms``, ``kernel_probe_ms``,
        ``keypress_ms``), the rounds without it left out."""
        return median(getattr(t, attr) for t in self.trials)

    def per_token(self, attr: str) -> float | None:
        counted = [t for t in self.trials if t.messages >= 0]
        return median(getattr(t, attr) / t.n for t in counted)

    @property
    def lost_chars(self) -> int:
        return max(
            (
                t.expected_chars - t.first_diff
                for t in self.trials
                if t.outcome in ("complete", "lost") and t.expected_chars != t.first_diff
            ),
            default=0,
        )

    def lower_bound_s(self, cap_s: float) -> float | None:
        """Full-text time, or the cap when capped (a lower bound), or None (text lost)."""
        if self.full_s is not None:
            return self.full_s
        if self.capped is not None:
            return cap_s
        return None

    def shown(self) -> str:
        """The README cell: time, or what went wrong (the diagnosis of a capped trial stays
        in ``peers_results.json``)."""
        capped = None if self.capped is None else self.capped.note.split(" (kernel ")[0]
        if capped is not None and not self.complete:
            return capped
        text = "" if self.full_s is None else f"{self.full_s:.3g} s"
        if capped is not None:
            text += f"; capped once: {capped}"
        errors = [t for t in self.trials if t.outcome == "error"]
        if errors:
            text += f"{'; ' if text else ''}{len(errors)} round(s) failed: {errors[0].note}"
        lost = [t for t in self.trials if t.outcome == "lost"]
        bad = len(lost)
        if bad:
            shares = [t.share for t in lost]
            text += (
                f"{'; ' if text else ''}text lost in {bad} of {len(self.trials)} "
                f"(median {100 * statistics.median(shares):.0f} % shown)"
            )
        return text


def cells(run: PeersRun) -> dict[tuple[str, int], Cell]:
    out: dict[tuple[str, int], Cell] = {}
    for t in run.trials:
        out.setdefault((t.contender, t.n), Cell(t.contender, t.n, [])).trials.append(t)
    return out


def r2(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


def ratio_figure(
    name: str,
    n: int,
    ours: float | None,
    base: float | None,
    limit: float,
    what: str,
    target: str,
    rounds: str,
) -> Figure:
    """streamnb's full-text time against ``base`` (same run); met when the ratio <= limit."""
    ratio = None if ours is None or not base else round(ours / base, 3)
    return Figure(
        f"{name}.{n}",
        r2(ours) if ours is not None else float("nan"),
        "s (full text visible)",
        r2(base),
        ratio,
        target,
        ratio is not None and ratio <= limit,
        f"{n:,} tokens, {rounds}; baseline: {what}",
    )


def median_ms_figure(
    name: str,
    value: float | None,
    base: float | None,
    target: str,
    meets_target: bool,
    note: str,
    extra: dict[str, Any] | None = None,
) -> Figure:
    """A median in ms against a baseline median of the same run (ratio to 2 places)."""
    return Figure(
        name,
        r2(value, 1) if value is not None else float("nan"),
        "ms (median)",
        r2(base, 1),
        None if value is None or not base else round(value / base, 2),
        target,
        meets_target,
        note,
        extra or {},
    )


def figures(run: PeersRun) -> list[Figure]:
    """The issue's targets as figures, each against a contender of the same run."""
    table = cells(run)
    out: list[Figure] = []
    for n in run.sizes:
        us = table.get(("streamnb", n))
        if us is None:
            continue
        ours = us.full_s
        rounds = f"median of {len(us.complete)} complete of {len(us.trials)} rounds"

        printed = table.get(("print", n))
        limit = PRINT_RATIO_SMALL if n < 50_000 else PRINT_RATIO_LARGE
        # (figure, baseline contender, limit, baseline, what a capped baseline adds, target)
        for name, key, ratio_limit, what, if_capped, target in [
            (
                "peers.full_text_s",
                "print",
                limit,
                "unflushed print, same run",
                "",
                f"<= {limit}x unflushed print",
            ),
            (
                "peers.vs_throttled",
                "display_throttled",
                THROTTLED_RATIO,
                "display_id + update() every 50 ms",
                " (capped: the cap is a lower bound)",
                f"<= {THROTTLED_RATIO}x the throttled display_id loop",
            ),
        ]:
            base_cell = table.get((key, n))
            if base_cell:
                out.append(
                    ratio_figure(
                        name,
                        n,
                        ours,
                        base_cell.lower_bound_s(run.cap_s),
                        ratio_limit,
                        what + (if_capped if base_cell.capped else ""),
                        target,
                        rounds,
                    )
                )
        per_token = [
            (cell.lower_bound_s(run.cap_s), key)
            for (key, size), cell in table.items()
            if size == n and key in BY_KEY and BY_KEY[key].per_token
        ]
        finished = [(v, k) for v, k in per_token if v is not None]
        if finished:
            base, key = min(finished)
            capped_note = (
                " (every one capped: the cap is a lower bound)" if base == run.cap_s else ""
            )
            out.append(
                ratio_figure(
                    "peers.vs_per_token",
                    n,
                    ours,
                    base,
                    PER_TOKEN_RATIO,
                    f"fastest per-token contender ({key}) of {len(per_token)}{capped_note}",
                    f"<= {PER_TOKEN_RATIO}x (>= 5x faster than) every per-token contender",
                    rounds,
                )
            )
        first = us.median_ms("first_ms")
        printed_first = printed.median_ms("first_ms") if printed else None
        out.append(
            median_ms_figure(
                f"peers.first_text_ms.{n}",
                first,
                printed_first,
                f"<= {FIRST_TEXT_MS:.0f} ms",
                first is not None and first <= FIRST_TEXT_MS,
                f"execute_request to the first text in the page, a page that has run the "
                f"widget before; {n:,} tokens; baseline: unflushed print",
                {"from_kernel_cell_start_ms": r2(median(t.first_from_cell_ms for t in us.trials))},
            )
        )
        lost = us.lost_chars
        out.append(
            Figure(
                f"peers.text_lost_chars.{n}",
                lost,
                "chars (worst round)",
                None,
                None,
                "0 in every round",
                lost == 0 and len(us.complete) == len(us.trials),
                f"{len(us.complete)} of {len(us.trials)} rounds showed exactly the expected "
                f"{us.trials[0].expected_chars:,} chars",
            )
        )
        for name, attr, what in [
            ("peers.kernel_probe_ms", "kernel_probe_ms", "a trivial request to its reply"),
            ("peers.keypress_ms", "keypress_ms", "a keypress in another cell to its paint"),
        ]:
            value = us.median_ms(attr)
            base = printed.median_ms(attr) if printed else None
            out.append(
                median_ms_figure(
                    f"{name}.{n}",
                    value,
                    base,
                    "report only",
                    True,
                    f"mid-stream (sent when the first text showed): {what}; {n:,} tokens; "
                    "baseline: unflushed print",
                )
            )
    stops = {s.key: [x for x in run.stops if x.stopper == s.key] for s in STOPPERS}
    ours_stop = [x for x in stops.get("streamnb", []) if x.outcome == "stopped"]
    if ours_stop:
        value = median(x.click_to_last_text_ms for x in ours_stop)
        base_samples = [x for x in stops.get("print_flush_interrupt", []) if x.outcome == "stopped"]
        base = median(x.click_to_last_text_ms for x in base_samples)
        out.append(
            median_ms_figure(
                "peers.stop_last_text_ms",
                value,
                base,
                f"<= {STOP_TEXT_MS:.0f} ms",
                value is not None and value <= STOP_TEXT_MS,
                f"{run.stop_tokens:,}-token stream, Stop clicked once {STOP_AFTER_CHARS:,} chars "
                f"showed, {len(ours_stop)} samples: click to the last new text in the page; "
                "baseline: kernel interrupt of a flushed print loop",
                {
                    "click_to_producer_stopped_ms": r2(
                        median(x.click_to_producer_stopped_ms for x in ours_stop), 1
                    ),
                    "max_ms": max(x.click_to_last_text_ms or 0 for x in ours_stop),
                },
            )
        )
    out += budget_figures(run.budget)
    return out


def budget_figures(records: list[dict[str, Any]]) -> list[Figure]:
    """The many-widgets trial (issue 16, item 4) as figures."""
    out: list[Figure] = []
    for b in records:
        shape = (
            f"{b['widgets']} StreamWidgets x {b['tokens']:,} tokens at once, kernel budget "
            f"{b['budget_msgs_per_s']:.0f} msgs/s"
        )
        exceeded = b["rate_exceeded_in_log"] + b["rate_exceeded_in_page"]
        out.append(
            Figure(
                "peers.budget_msgs_per_s",
                b["peak_3s_msgs_per_s"],
                "msgs/s (busiest 3 s at the page)",
                SERVER_LIMIT_MSGS_PER_S,
                round(b["peak_3s_msgs_per_s"] / SERVER_LIMIT_MSGS_PER_S, 2),
                'under jupyter_server\'s 1,000 msgs/s, no "IOPub message rate exceeded"',
                b["peak_3s_msgs_per_s"] < SERVER_LIMIT_MSGS_PER_S and exceeded == 0,
                f"{shape}; every kernel websocket message the page got (status, display "
                f"and comm_open included); busiest 1 s: {b['peak_1s_msgs_per_s']:.0f} msgs/s; "
                f"{exceeded} rate-exceeded messages; baseline: jupyter_server's limit",
                {k: b[k] for k in ("iopub_messages", "deltas", "peak_1s_msgs_per_s")},
            )
        )
        lost = b["delta_lost_chars"] + b["transcript_lost_chars"] + b["delta_gaps"]
        out.append(
            Figure(
                "peers.budget_text_lost_chars",
                lost,
                "chars",
                None,
                None,
                "0: every text complete and in order",
                lost == 0 and b["settled_in_page"] == b["widgets"],
                f"{shape}; {b['settled_in_page']} of {b['widgets']} settled in the page; the "
                "deltas each widget's view got (at the page's websocket) and its transcript, "
                "against its expected text",
            )
        )
        out.append(
            Figure(
                "peers.budget_all_text_s",
                b["all_text_s"] if b["all_text_s"] is not None else float("nan"),
                "s",
                None,
                None,
                "report only",
                True,
                f"{shape}; the first widgets cell's execute_request to every widget's "
                "settled transcript in the page",
            )
        )
    return out


# --- README ----------------------------------------------------------------------------------


def fmt_ms(v: float | None) -> str:
    return "" if v is None else f"{v:,.0f} ms"


def readme_table(details: dict[str, Any]) -> str:
    """Markdown for README.md from ``peers_results.json``'s content."""
    run = load_run(details)
    table = cells(run)
    v = run.versions
    lines = [
        f"Produced by `{run.command}` on {run.machine}: JupyterLab {v.get('jupyterlab')}, "
        f"Chromium {v.get('chromium')}, ipywidgets {v.get('ipywidgets')}, anywidget "
        f"{v.get('anywidget')}, Panel {v.get('panel')}, ipykernel {v.get('ipykernel')}, "
        f"jupyter_server {v.get('jupyter_server')}, Python {v.get('python')}. Medians of "
        f"{run.rounds} interleaved rounds; a contender not done within {run.cap_s:.0f} s runs "
        "once at that size. Times from the `execute_request` leaving the page.",
        "",
    ]
    for n in run.sizes:
        lines += [
            f"**{n:,} tokens**",
            "",
            "| contender | full text visible | first text | iopub msgs / token "
            "| bytes / token | kernel probe | keypress | complete rounds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        others = [t.contender for t in run.trials if t.contender not in BY_KEY]
        for key, label in [(c.key, c.label) for c in CONTENDERS] + [
            (k, f"`{k}`") for k in dict.fromkeys(others)
        ]:
            cell = table.get((key, n))
            if cell is None:
                why = run.skipped.get(f"{key}@{n}")
                if why:
                    lines.append(f"| {label} | not run: {why} | | | | | | |")
                continue
            msgs = cell.per_token("messages")
            nbytes = cell.per_token("bytes")
            lines.append(
                f"| {label} | {cell.shown()} | {fmt_ms(cell.median_ms('first_ms'))} | "
                f"{'' if msgs is None else f'{msgs:.3g}'} | "
                f"{'' if nbytes is None else f'{nbytes:.3g}'} | "
                f"{fmt_ms(cell.median_ms('kernel_probe_ms'))} | "
                f"{fmt_ms(cell.median_ms('keypress_ms'))} | "
                f"{len(cell.complete)} of {len(cell.trials)} |"
            )
        lines.append("")
    if run.stops:
        lines += [
            f"**Stop** ({run.stop_tokens:,}-token stream, clicked once {STOP_AFTER_CHARS:,} chars "
            "show; medians)",
            "",
            "| stopper | click → producer stopped | click → last new text | samples |",
            "|---|---|---|---|",
        ]
        for s in STOPPERS:
            samples = [x for x in run.stops if x.stopper == s.key]
            if not samples:
                continue
            ok = [x for x in samples if x.outcome == "stopped"]
            early = sum(1 for x in samples if x.outcome == "finished_before_click")
            note = f"{len(ok)} stopped" + (f", {early} finished before the click" if early else "")
            capped_n = sum(1 for x in samples if x.outcome == "capped")
            if capped_n:
                note += f", {capped_n} did not settle within {STOP_CAP_S:.0f} s"
            lines.append(
                f"| {s.label} | {fmt_ms(median(x.click_to_producer_stopped_ms for x in ok))} | "
                f"{fmt_ms(median(x.click_to_last_text_ms for x in ok))} | {note} |"
            )
        lines.append("")
    if run.budget:
        lines += [
            "**Many widgets at once** (one kernel's message budget; every token its own loop turn)",
            "",
            "| widgets x tokens | budget | busiest 3 s / 1 s at the page | deltas | "
            "all text | text lost | rate exceeded |",
            "|---|---|---|---|---|---|---|",
        ]
        for b in run.budget:
            all_text = "" if b["all_text_s"] is None else f"{b['all_text_s']:.2f} s"
            lost = b["delta_lost_chars"] + b["transcript_lost_chars"]
            lines.append(
                f"| {b['widgets']} x {b['tokens']:,} | {b['budget_msgs_per_s']:.0f} msgs/s | "
                f"{b['peak_3s_msgs_per_s']:.0f} / {b['peak_1s_msgs_per_s']:.0f} msgs/s | "
                f"{b['deltas']:,} | {all_text} | {lost} chars, "
                f"{b['settled_in_page']} of {b['widgets']} settled | "
                f"{b['rate_exceeded_in_log'] + b['rate_exceeded_in_page']} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip()


def update_readme(text: str, readme: Path = README) -> None:
    content = readme.read_text()
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN not in content:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} markers")
    pattern = re.escape(BEGIN) + ".*?" + re.escape(END)
    content = re.sub(pattern, lambda _: block, content, flags=re.S)
    readme.write_text(content)


def load_run(details: dict[str, Any]) -> PeersRun:
    run = PeersRun(
        **{k: details[k] for k in ("command", "machine", "versions", "sizes", "rounds", "cap_s")},
        stop_tokens=details.get("stop_tokens", STOP_TOKENS),
    )
    run.trials = [Trial(**t) for t in details.get("trials", [])]
    run.stops = [StopSample(**s) for s in details.get("stops", [])]
    run.cold_start = details.get("cold_start", [])
    run.clock = details.get("clock", [])
    run.skipped = details.get("skipped", {})
    run.budget = details.get("budget", [])
    return run


def store(run: PeersRun, figs: list[Figure], results: Path, details: Path) -> None:
    """Replace the peers figures in ``results.json``; write every trial to ``details``.

    A run with only the many-widgets trial (``--budget-only``) replaces only its own
    figures and the ``budget`` records, keeping the contenders' stored before.
    """
    entries = json.loads(results.read_text()) if results.exists() else []
    whole = bool(run.trials or run.stops) or not details.exists()
    names = {f.name for f in figs}
    entries = [
        e for e in entries if e.get("suite") != SUITE or (not whole and e.get("name") not in names)
    ]
    entries.extend(
        {**asdict(f), "suite": SUITE, "machine": run.machine, "command": run.command} for f in figs
    )
    results.write_text(json.dumps(entries, indent=2) + "\n")
    record = asdict(run)
    if not whole:
        record = {**json.loads(details.read_text()), "budget": record["budget"]}
    details.write_text(json.dumps(record, indent=1) + "\n")


# --- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N=2,000 only, 2 rounds, 2 Stop samples")
    p.add_argument("--sizes", help="comma-separated token counts (default 2000,50000,200000)")
    p.add_argument("--rounds", type=int, help=f"rounds per size (default {ROUNDS})")
    p.add_argument("--only", help="comma-separated contenders: " + ",".join(BY_KEY))
    p.add_argument("--stops", help="comma-separated stoppers: " + ",".join(STOPPER_BY_KEY))
    p.add_argument("--stop-samples", type=int, help=f"default {STOP_SAMPLES}")
    p.add_argument("--cap-s", type=float, default=CAP_S, help="seconds before a trial is capped")
    p.add_argument(
        "--skip-after-cap",
        action="store_true",
        help="do not run a contender at a larger N once it was capped at a smaller one",
    )
    p.add_argument(
        "--budget-widgets",
        type=int,
        default=BUDGET_WIDGETS,
        help=f"widgets of the many-widgets trial (default {BUDGET_WIDGETS}; 0 skips it)",
    )
    p.add_argument(
        "--budget-tokens",
        type=int,
        help=f"tokens per widget (default {BUDGET_TOKENS:,}; --quick {BUDGET_QUICK_TOKENS})",
    )
    p.add_argument(
        "--budget-only",
        action="store_true",
        help="run only the many-widgets trial (keeps the other stored peers figures)",
    )
    p.add_argument("--readme", action="store_true", help="rewrite README.md's peers table")
    p.add_argument("--no-store", action="store_true", help="print only; leave the JSON files")
    args = p.parse_args(argv)
    sizes = (
        [int(s) for s in args.sizes.split(",") if s]
        if args.sizes is not None
        else list(QUICK_SIZES if args.quick else SIZES)
    )
    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    keys = args.only.split(",") if args.only else list(BY_KEY)
    stop_keys = args.stops.split(",") if args.stops is not None else list(STOPPER_BY_KEY)
    if args.budget_only:
        keys, stop_keys = [], []
    have_panel = panel_available()
    if not have_panel:
        print("Panel is not installed (pip install -e '.[bench]'): skipping it", file=sys.stderr)
        keys = [k for k in keys if not BY_KEY[k].panel]
        stop_keys = [k for k in stop_keys if k and not STOPPER_BY_KEY[k].panel]
    unknown = [k for k in keys if k not in BY_KEY] + [
        k for k in stop_keys if k and k not in STOPPER_BY_KEY
    ]
    if unknown:
        p.error(f"unknown contenders or stoppers: {', '.join(unknown)}")
    command = "python -m bench.bench_peers" + " ".join(["", *(argv or sys.argv[1:])]).rstrip()
    command = command.replace(" --readme", "").replace(" --no-store", "")
    with jupyterlab_in_chromium("streamnb-bench-peers-") as (server, browser):
        run = measure(
            server,
            browser,
            sizes=sizes,
            rounds=rounds,
            contenders=[BY_KEY[k] for k in keys],
            stoppers=[STOPPER_BY_KEY[k] for k in stop_keys if k],
            stop_samples=(
                args.stop_samples
                if args.stop_samples is not None
                else (QUICK_STOP_SAMPLES if args.quick else STOP_SAMPLES)
            ),
            cap_s=args.cap_s,
            command=command,
            skip_after_cap=args.skip_after_cap,
            budget_widgets=args.budget_widgets,
            budget_tokens=(
                args.budget_tokens or (BUDGET_QUICK_TOKENS if args.quick else BUDGET_TOKENS)
            ),
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    figs = figures(run)
    for f in figs:
        emit(f)
    if not args.no_store:
        store(run, figs, RESULTS, DETAILS)
        print(f"wrote {RESULTS} and {DETAILS}", file=sys.stderr)
    if args.readme:
        shown = json.loads(DETAILS.read_text()) if args.budget_only and DETAILS.exists() else None
        update_readme(readme_table(shown or json.loads(json.dumps(asdict(run)))))
    missed = [f.name for f in figs if not f.meets_target]
    if missed:
        print("targets missed: " + ", ".join(missed), file=sys.stderr)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
