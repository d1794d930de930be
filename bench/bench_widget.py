"""StreamWidget benchmarks (issue 3, "Speed"). Prints one JSON line per figure.

    python -m bench.bench_widget [--quick] [--no-browser]

Kernel side, in this process (no browser; every comm message a widget sends is recorded:
``custom`` deltas and ``update`` state syncs, both iopub ``comm_msg`` in Jupyter):

* widget.kernel.msgs_per_s.<rate>   peak messages/s of one widget over any 1 s window, for
                                     token rates 100, 1,000, 10,000 tokens/s and "max" (as
                                     fast as possible); baseline: tokens/s (one message per
                                     token). Target <= 60.
* widget.kernel.bytes_ratio.<rate>  (bytes sent - messages x overhead) / text bytes, with
                                     bytes = JSON-encoded comm data and overhead = an empty
                                     delta message; the recorder acks after the first delta
                                     as widget.js does (a front end is attached). Target <= 1.5.
* widget.kernel.iopub_20_widgets    20 widgets at full speed at once: peak messages/s of all
                                     of them over any 1 s window. Target < 1000.

In the browser (one JupyterLab from ``tests/browser/conftest.py``, Debian's chromium,
notebook ``bench/fixtures/widget_bench.ipynb``):

* widget.browser.render_100k_s              100,000 tokens as fast as possible: kernel clock
                                             at the cell's start to the page seeing the whole
                                             text in the ``role="log"`` area. Target < 5 s.
* widget.browser.render_100k_from_delta_s   the same, from the first delta frame arriving
                                             at the page's websocket. Target < 5 s.
* widget.browser.bytes_ratio_100k            the same stream's comm_msg frames at the page's
                                             websocket until it settled, as bytes_ratio above
                                             (overhead: the smallest comm_msg frame). <= 1.5.
* widget.browser.stop_to_cancelled_ms       Stop click to the status showing ``cancelled``
                                             (MutationObserver, performance.now()), median
                                             over fresh slow streams. Target < 300 ms.
* widget.browser.iopub_20_widgets           20 widgets streaming at once: peak iopub frames
                                             the page's kernel websocket receives in any 1 s
                                             window. Target < 1000 (jupyter_server drops
                                             iopub messages above 1000/s).

Baselines are measured in the same run: the browser figures are compared with the same
work done in-process (kernel side only), so the ratio is the browser's and transport's share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import streamnb as sn
from bench.common import Figure, emit, jupyterlab_in_chromium, token_handler
from streamnb.testing import lorem_tokens

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "widget_bench.ipynb"
PARAMS_FILE = "widget_bench_params.json"
TOKENS_KIND = "bench.tokens"

PER_WIDGET_LIMIT = 60  # messages/s
BYTES_RATIO_LIMIT = 1.5
IOPUB_LIMIT = 1000  # jupyter_server's iopub_msg_rate_limit
RENDER_LIMIT_S = 5.0
STOP_LIMIT_MS = 300.0
MANY_WIDGETS = 20

# Cells of bench/fixtures/widget_bench.ipynb (0 is markdown).
SETUP, FLOOD, FLOOD_FACTS, SLOW, MANY, MANY_FACTS = 1, 2, 3, 4, 5, 6


# --- the stream every figure uses (the fixture notebook's kernel imports it too) ----------


def expected_text(n: int) -> str:
    """The text of a ``bench.tokens`` stream of ``n`` tokens (lorem words)."""
    return "".join(lorem_tokens(n)("bench"))


def bench_handler(kind: str = TOKENS_KIND) -> sn.AttachedStreamHandler:
    """Output-only: ``{"n": tokens, "rate": tokens/s or None}`` on ``assistant.delta``
    (:func:`bench.common.token_handler` of the lorem tokens, a ``progress`` frame first).

    Paced against a monotonic schedule; a cancel wakes the pause at once, so the Stop
    figure measures the widget and runtime, not the handler's token period.
    """
    return token_handler(kind, lambda n: lorem_tokens(n)("bench"), progress=True)


# --- measuring helpers ---------------------------------------------------------------------


def wire_size(data: Any) -> int:
    """Bytes of ``data`` as jupyter_client's JSON packer encodes it."""
    return len(json.dumps(data, ensure_ascii=False, allow_nan=False).encode())


def peak_per_window(times: list[float], window: float = 1.0) -> int:
    """Most events in any half-open window ``[t, t + window)`` (times in seconds)."""
    ts = sorted(times)
    best, j = 0, 0
    for i in range(len(ts)):
        while j < len(ts) and ts[j] - ts[i] < window:
            j += 1
        best = max(best, j - i)
    return best


def empty_delta_size(last_seq: int, channel: str = "assistant.delta") -> int:
    """An empty delta of this stream's shape: the per-message overhead of the protocol."""
    return wire_size(
        {
            "method": "custom",
            "content": {
                "type": "delta",
                "from_seq": last_seq,
                "to_seq": last_seq,
                "chunks": {channel: ""},
                "status": "running",
            },
        }
    )


class CommRecorder:
    """Records every comm message a widget sends from now on: ``(time, method, bytes)``.

    With ``ack=True`` it also plays the part of an attached front end the way
    ``widget.js`` does: after the first delta it sends ``{"type": "ack"}`` back
    through the widget's custom-message path (the front end then keeps
    ``final_texts`` itself, so the kernel does not send the text twice).
    """

    def __init__(
        self, widget: Any, sink: list[tuple[float, str, int]] | None = None, ack: bool = False
    ) -> None:
        self.records: list[tuple[float, str, int]] = [] if sink is None else sink
        comm = widget.comm
        original = comm.send
        acked = not ack

        def send(data: Any = None, metadata: Any = None, buffers: Any = None) -> Any:
            nonlocal acked
            method = data.get("method", "?") if isinstance(data, dict) else "?"
            self.records.append((time.perf_counter(), method, wire_size(data)))
            if not acked and method == "custom" and data["content"].get("type") == "delta":
                acked = True
                asyncio.get_running_loop().call_soon(widget._handle_custom_msg, {"type": "ack"}, [])
            return original(data=data, metadata=metadata, buffers=buffers)

        comm.send = send


# --- 1. kernel side --------------------------------------------------------------------------


async def kernel_stream(rt: sn.StreamRuntime, n: int, rate: float | None) -> dict[str, Any]:
    from streamnb.widget import StreamWidget

    t0 = time.perf_counter()
    session = await rt.attach(TOKENS_KIND, {"n": n, "rate": rate})
    widget = StreamWidget(session)
    rec = CommRecorder(widget, ack=True)
    status = await widget.wait(timeout_s=120)
    duration = time.perf_counter() - t0
    text = widget.text()
    widget.close()
    expected = expected_text(n)
    times = [t for t, _, _ in rec.records]
    text_bytes = len(expected.encode())
    overhead = empty_delta_size(n + 2)
    total = sum(size for _, _, size in rec.records)
    updates = [size for _, method, size in rec.records if method == "update"]
    return {
        "status": status,
        "text_ok": text == expected,
        "duration_s": duration,
        "tokens_per_s": n / duration,
        "messages": len(times),
        "peak": peak_per_window(times),
        "mean": len(times) / duration,
        "bytes": total,
        "text_bytes": text_bytes,
        "overhead": overhead,
        "bytes_ratio": (total - len(times) * overhead) / text_bytes,
        "update_bytes": sum(updates),
        "largest_update": max(updates, default=0),
    }


async def kernel_many(rt: sn.StreamRuntime, widgets: int, n: int) -> dict[str, Any]:
    from streamnb.widget import StreamWidget

    sink: list[tuple[float, str, int]] = []
    per: list[CommRecorder] = []
    t0 = time.perf_counter()
    sessions = await asyncio.gather(
        *(rt.attach(TOKENS_KIND, {"n": n, "rate": None}) for _ in range(widgets))
    )
    made = [StreamWidget(s) for s in sessions]
    per = [CommRecorder(w) for w in made]
    statuses = await asyncio.gather(*(w.wait(timeout_s=300) for w in made))
    duration = time.perf_counter() - t0
    for w in made:
        w.close()
    for r in per:
        sink += r.records
    return {
        "statuses": sorted(set(statuses)),
        "duration_s": duration,
        "messages": len(sink),
        "peak": peak_per_window([t for t, _, _ in sink]),
        "peak_one_widget": max(peak_per_window([t for t, _, _ in r.records]) for r in per),
    }


async def until_first_frame(rt: sn.StreamRuntime, stream_ref: str) -> None:
    """Wait until the stream published a frame after ``opened`` (it is under way)."""
    async for _ in rt.follow(stream_ref, after_seq=0):
        return


async def kernel_stop(rt: sn.StreamRuntime, samples: int) -> float:
    """In-process press_stop -> widget status ``cancelled`` (median ms): the kernel's share."""
    from streamnb.testing import press_stop
    from streamnb.widget import StreamWidget

    times = []
    for _ in range(samples):
        widget = StreamWidget(await rt.attach(TOKENS_KIND, {"n": 100_000, "rate": 20}))
        await asyncio.wait_for(until_first_frame(rt, widget.stream_ref), 10)
        await asyncio.sleep(0.2)  # a few tokens in, as in the browser
        t = time.perf_counter()
        press_stop(widget)
        await widget.wait(timeout_s=10)
        times.append((time.perf_counter() - t) * 1000)
        assert widget.status == "cancelled", widget.status
        widget.close()
    return statistics.median(times)


RATES: list[tuple[str, float | None]] = [
    ("100", 100.0),
    ("1000", 1_000.0),
    ("10000", 10_000.0),
    ("max", None),
]


FOLLOW_KIND = "bench.widget.follow"


def follow_handler() -> sn.AttachedStreamHandler:
    """``{"n": tokens}``, each token its own loop turn (as a provider's stream gives them)."""

    async def run(start: Any, _input: Any, ctx: sn.StreamContext) -> AsyncIterator[Any]:
        for _ in range(int(start["n"])):
            yield sn.output(" tok")
            await asyncio.sleep(0)
        yield sn.completed()

    return sn.AttachedStreamHandler(kind=FOLLOW_KIND, run=run)


async def follower_cost(rt: sn.StreamRuntime, n: int, rounds: int) -> dict[str, float]:
    """Seconds to settle ``n`` tokens with and without a StreamWidget following (no front
    end), interleaved; medians of ``rounds``."""
    from streamnb.widget import StreamWidget

    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for with_widget in (False, True):
            session = await rt.attach(FOLLOW_KIND, {"n": n})
            t0 = time.perf_counter()
            if with_widget:
                widget = StreamWidget(session)
                await widget.wait(120)
                assert len(widget.final_texts["assistant.delta"]) == 4 * n
                widget.close()
            else:
                await session.wait(120)
            times[with_widget].append(time.perf_counter() - t0)
            await session.detach()
    bare, followed = statistics.median(times[False]), statistics.median(times[True])
    return {"bare_s": bare, "widget_s": followed}


async def kernel_side(quick: bool, out: list[Figure], facts: dict[str, Any]) -> None:
    seconds = 1.5 if quick else 5.0
    async with sn.StreamRuntime(cancel_grace_s=0.5) as rt:
        rt.register(bench_handler())
        rt.register(follow_handler())
        n_follow = 20_000 if quick else 100_000
        c = await follower_cost(rt, n_follow, 3 if quick else 5)
        added_us = (c["widget_s"] - c["bare_s"]) / n_follow * 1e6
        emit(
            Figure(
                "widget.kernel.follower_us_per_token",
                round(added_us, 2),
                "us/token added by a StreamWidget (median)",
                round(c["bare_s"] / n_follow * 1e6, 2),
                round(c["widget_s"] / c["bare_s"], 2),
                "report only",
                True,
                f"one stream of {n_follow:,} tokens, each its own loop turn, settled with and "
                "without a widget following it (no front end), interleaved; baseline: us/token "
                "of the bare stream; ratio: with the widget over bare",
                {k: round(v, 3) for k, v in c.items()},
            ),
            out,
        )
        for label, rate in RATES:
            n = 100_000 if rate is None else int(rate * seconds)
            r = await kernel_stream(rt, n, rate)
            if rate is None:
                facts["kernel_100k_s"] = r["duration_s"]
            ok = r["status"] == "completed" and r["text_ok"]
            note = f"{n} tokens, {r['messages']} messages in {r['duration_s']:.2f} s" + (
                "" if ok else f"; WRONG: status {r['status']}, text_ok {r['text_ok']}"
            )
            emit(
                Figure(
                    f"widget.kernel.msgs_per_s.{label}",
                    r["peak"],
                    "messages/s (peak 1 s window)",
                    round(r["tokens_per_s"]),
                    round(r["peak"] / r["tokens_per_s"], 4),
                    f"<= {PER_WIDGET_LIMIT}/s per widget",
                    ok and r["peak"] <= PER_WIDGET_LIMIT,
                    note + "; baseline: tokens/s achieved (one message per token)",
                    {"mean_msgs_per_s": round(r["mean"], 1), "messages": r["messages"]},
                ),
                out,
            )
            emit(
                Figure(
                    f"widget.kernel.bytes_ratio.{label}",
                    round(r["bytes_ratio"], 3),
                    "x text bytes (after per-message overhead)",
                    None,
                    None,
                    f"<= {BYTES_RATIO_LIMIT} + {r['overhead']} B/message",
                    ok and r["bytes_ratio"] <= BYTES_RATIO_LIMIT,
                    f"{r['bytes']} B sent for {r['text_bytes']} B of text in "
                    f"{r['messages']} messages; overhead {r['overhead']} B = an empty delta",
                    {
                        "update_bytes": r["update_bytes"],
                        "largest_update_bytes": r["largest_update"],
                    },
                ),
                out,
            )
        n_many = 10_000 if quick else 50_000
        m = await kernel_many(rt, MANY_WIDGETS, n_many)
        facts["kernel_many_peak"] = m["peak"]
        ok = m["statuses"] == ["completed"]
        emit(
            Figure(
                "widget.kernel.iopub_20_widgets",
                m["peak"],
                "messages/s (peak 1 s window, all widgets)",
                None,
                None,
                f"< {IOPUB_LIMIT}/s",
                ok and m["peak"] < IOPUB_LIMIT,
                f"{MANY_WIDGETS} widgets x {n_many} tokens as fast as possible, "
                f"{m['messages']} messages in {m['duration_s']:.2f} s; statuses {m['statuses']}",
                {"peak_one_widget": m["peak_one_widget"]},
            ),
            out,
        )
        facts["kernel_stop_ms"] = await kernel_stop(rt, 5 if quick else 20)
    rt.ledger.close()


# --- 2. in the browser ---------------------------------------------------------------------

# Installed before JupyterLab's scripts: every frame a kernel websocket receives is logged
# in the page as [performance.now(), channel, msg_type, bytes, is_custom_comm_msg].
WS_HOOK = """
(() => {
  const Native = window.WebSocket;
  const decoder = new TextDecoder();
  const log = [];
  window.__benchWs = log;
  const describe = (data) => {
    if (typeof data === "string") {
      const m = JSON.parse(data);
      const custom = m.header.msg_type === "comm_msg" && m.content.data.method === "custom";
      return [m.channel, m.header.msg_type, data.length, custom];
    }
    if (!(data instanceof ArrayBuffer)) return [null, null, data.size || 0, false];
    // v1.kernel.websocket.jupyter.org: count, offsets, channel, header, parent, meta, content
    const view = new DataView(data);
    const at = (i) => Number(view.getBigUint64(8 * (i + 1), true));
    const text = (a, b) => decoder.decode(new Uint8Array(data, a, b - a));
    const channel = text(at(0), at(1));
    const type = JSON.parse(text(at(1), at(2))).msg_type;
    let custom = false;
    if (type === "comm_msg") {
      const head = text(at(4), Math.min(at(5), at(4) + 300));
      custom = /"method":\\s*"custom"/.test(head);
    }
    return [channel, type, data.byteLength, custom];
  };
  class LoggedWebSocket extends Native {
    constructor(...args) {
      super(...args);
      if (String(args[0]).includes("/channels")) {
        this.addEventListener("message", (ev) => {
          const t = performance.now();
          let row;
          try { row = describe(ev.data); } catch (e) { row = [null, null, 0, false]; }
          log.push([t, ...row]);
        });
      }
    }
  }
  window.WebSocket = LoggedWebSocket;
})();
"""

# The main text of a widget: the live view's, or (once the stream settled and the kernel
# replaced the view by its saved transcript, widget/_saved.py) the transcript's.
MAIN = ".streamnb-main, .streamnb-saved-main"

# Watches one cell for its widgets' main text; records performance.now() when the first
# widget shows text and when every one of `count` widgets holds `length` characters.
WATCH_JS = """
([cell, count, length]) => {
  const w = { first: null, done: null, doneEpoch: null, mark: window.__benchWs.length };
  window.__benchWatch = w;
  const check = () => {
    const mains = cell.querySelectorAll(".streamnb-main, .streamnb-saved-main");
    let full = 0, any = false;
    for (const m of mains) {
      const n = m.textContent.length;
      if (n > 0) any = true;
      if (n >= length) full += 1;
    }
    const now = performance.now();
    if (any && w.first === null) w.first = now;
    if (full >= count && w.done === null) {
      w.done = now;
      w.doneEpoch = performance.timeOrigin + now;
      obs.disconnect();
    }
  };
  const obs = new MutationObserver(check);
  obs.observe(cell, { subtree: true, childList: true, characterData: true });
}
"""

DONE_JS = """
([cell, count, length]) => {
  const mains = cell.querySelectorAll(".streamnb-main, .streamnb-saved-main");
  return mains.length >= count
    && Array.from(mains).every((m) => m.closest('[role="log"]').textContent.length >= length);
}
"""

STOP_JS = """
(root) => new Promise((resolve, reject) => {
  const status = root.querySelector('[role="status"]');
  const stop = Array.from(root.querySelectorAll("button")).find((b) => b.textContent === "Stop");
  let t0 = 0;
  const seen = () => {
    if (!status.textContent.includes("cancelled")) return;
    const t1 = performance.now();
    obs.disconnect();
    requestAnimationFrame(() => resolve([t1 - t0, performance.now() - t0]));
  };
  const obs = new MutationObserver(seen);
  obs.observe(status, { subtree: true, childList: true, characterData: true });
  setTimeout(() => {
    obs.disconnect();
    reject(new Error("no 'cancelled' within 10 s: " + status.textContent));
  }, 10000);
  t0 = performance.now();
  stop.click();
})
"""


def frames_since(page: Any, mark: int) -> list[list[Any]]:
    rows: list[list[Any]] = page.evaluate("(mark) => window.__benchWs.slice(mark)", mark)
    return rows


def ws_channel(payload: bytes | str) -> str | None:
    """Channel of a kernel websocket frame (v1 binary protocol or legacy JSON)."""
    if isinstance(payload, str):
        return json.loads(payload).get("channel")
    start = int.from_bytes(payload[8:16], "little")
    end = int.from_bytes(payload[16:24], "little")
    return payload[start:end].decode()


class PyFrameCounter:
    """Kernel websocket frames as Playwright reports them to Python (``framereceived``)."""

    def __init__(self, page: Any) -> None:
        self.iopub: list[float] = []
        page.on("websocket", self._on_ws)

    def _on_ws(self, ws: Any) -> None:
        if "/channels" in ws.url:
            ws.on("framereceived", self._on_frame)

    def _on_frame(self, payload: bytes | str) -> None:
        try:
            channel = ws_channel(payload)
        except (ValueError, UnicodeDecodeError):
            channel = None
        if channel == "iopub":
            self.iopub.append(time.monotonic())


def cell_text(page: Any, index: int) -> str:
    from tests.browser.conftest import cell_output

    text: str = cell_output(page, index).inner_text()
    return text


def browser_flood(page: Any, n: int, facts: dict[str, Any], out: list[Figure]) -> None:
    from tests.browser.conftest import cell, run_cell

    expected = expected_text(n)
    node = cell(page, FLOOD).element_handle()
    page.evaluate(WATCH_JS, [node, 1, len(expected)])
    run_cell(page, FLOOD, timeout_s=120)
    page.wait_for_function(DONE_JS, arg=[node, 1, len(expected)], polling="raf", timeout=120_000)
    page.wait_for_function("() => window.__benchWatch.done !== null", timeout=10_000)
    watch = page.evaluate("() => window.__benchWatch")
    shown = cell(page, FLOOD).locator(MAIN).first.evaluate("(el) => el.textContent.trimEnd()")
    match = re.search(r"t_cell=([0-9.]+)", cell_text(page, FLOOD))
    assert match, cell_text(page, FLOOD)
    from_cell = watch["doneEpoch"] / 1000 - float(match.group(1))
    rows = frames_since(page, watch["mark"])
    deltas = [r for r in rows if r[1] == "iopub" and r[4]]
    first_delta = deltas[0][0]
    from_delta = (watch["done"] - first_delta) / 1000
    run_cell(page, FLOOD_FACTS, timeout_s=120)  # returns once the widget has settled
    kernel_facts = cell_text(page, FLOOD_FACTS).strip()
    # Every comm_msg of the flood widget (deltas and state updates), up to the facts cell.
    rows = frames_since(page, watch["mark"])
    comm = [r[3] for r in rows if r[1] == "iopub" and r[2] == "comm_msg"]
    settled = re.search(r"t_settled=([0-9.]+)", kernel_facts)
    ok = kernel_facts.startswith(f"completed {len(expected)} ") and shown == expected
    note = f"{n} tokens, {len(expected)} chars, {len(deltas)} deltas" + (
        "" if ok else f"; WRONG TEXT: {len(shown)} chars shown, kernel says {kernel_facts!r}"
    )
    base = facts.get("kernel_100k_s")
    extra = {
        "first_text_after_first_delta_s": round((watch["first"] - first_delta) / 1000, 3),
    }
    if settled:  # the kernel's share: cell start to the last delta sent (kernel clock)
        t_settled = float(settled.group(1))
        extra["kernel_last_delta_after_cell_start_s"] = round(t_settled - float(match.group(1)), 3)
        extra["page_done_after_last_delta_sent_s"] = round(watch["doneEpoch"] / 1000 - t_settled, 3)
    for name, value, what in [
        ("widget.browser.render_100k_s", from_cell, "kernel clock at the cell's start"),
        ("widget.browser.render_100k_from_delta_s", from_delta, "the first delta frame"),
    ]:
        emit(
            Figure(
                name,
                round(value, 3),
                "s",
                None if base is None else round(base, 3),
                None if base is None else round(value / base, 2),
                f"< {RENDER_LIMIT_S} s",
                ok and value < RENDER_LIMIT_S,
                f"from {what} to the full text in the log; {note}; "
                "baseline: in-process attach to settled widget, same stream",
                extra,
            ),
            out,
        )
    overhead = min(comm)  # the smallest comm_msg frame: Jupyter envelope + an empty message
    ratio = (sum(comm) - len(comm) * overhead) / len(expected.encode())
    emit(
        Figure(
            "widget.browser.bytes_ratio_100k",
            round(ratio, 3),
            "x text bytes (after per-message overhead)",
            None,
            None,
            f"<= {BYTES_RATIO_LIMIT} + {overhead} B/message",
            ok and ratio <= BYTES_RATIO_LIMIT,
            f"{sum(comm)} B in {len(comm)} comm_msg frames at the page's kernel websocket "
            f"for {len(expected.encode())} B of text (until the widget settled); overhead: "
            "the smallest comm_msg frame",
        ),
        out,
    )


def browser_stop(page: Any, samples: int, facts: dict[str, Any], out: list[Figure]) -> None:
    from tests.browser.conftest import cell_output, run_cell

    seen, painted = [], []
    for _ in range(samples):
        run_cell(page, SLOW)
        root = cell_output(page, SLOW).locator('.streamnb[data-status="running"]')
        root.wait_for(timeout=20_000)
        page.wait_for_function(
            "(el) => el.querySelector('.streamnb-main').textContent.length > 0",
            arg=root.element_handle(),
            timeout=20_000,
        )
        to_mutation, to_frame = root.evaluate(STOP_JS)
        seen.append(to_mutation)
        painted.append(to_frame)
    value = statistics.median(seen)
    base = facts.get("kernel_stop_ms")
    emit(
        Figure(
            "widget.browser.stop_to_cancelled_ms",
            round(value, 1),
            "ms (median)",
            None if base is None else round(base, 2),
            None if base is None else round(value / base, 1),
            f"< {STOP_LIMIT_MS} ms",
            value < STOP_LIMIT_MS,
            f"{samples} fresh slow streams (20 tokens/s): click to the status text containing "
            "'cancelled'; baseline: in-process press_stop to status cancelled",
            {
                "max_ms": round(max(seen), 1),
                "median_to_next_frame_ms": round(statistics.median(painted), 1),
            },
        ),
        out,
    )


def browser_many(
    page: Any,
    server: Any,
    counter: PyFrameCounter,
    n: int,
    facts: dict[str, Any],
    out: list[Figure],
) -> None:
    from tests.browser.conftest import cell, run_cell

    length = len(expected_text(n))
    node = cell(page, MANY).element_handle()
    page.evaluate(WATCH_JS, [node, MANY_WIDGETS, length])
    py_mark = len(counter.iopub)
    run_cell(page, MANY, timeout_s=180)
    page.wait_for_function(DONE_JS, arg=[node, MANY_WIDGETS, length], polling=100, timeout=180_000)
    page.wait_for_function("() => window.__benchWatch.done !== null", timeout=10_000)
    watch = page.evaluate("() => window.__benchWatch")
    rows = frames_since(page, watch["mark"])
    iopub = [r[0] / 1000 for r in rows if r[1] == "iopub"]
    limited = [
        r[0] / 1000
        for r in rows
        if r[1] == "iopub" and r[2] not in ("status", "comm_open", "execute_input")
    ]
    custom = [r[0] / 1000 for r in rows if r[1] == "iopub" and r[4]]
    py_peak = peak_per_window(counter.iopub[py_mark:])
    run_cell(page, MANY_FACTS, timeout_s=180)
    kernel_facts = cell_text(page, MANY_FACTS).strip()
    # jupyter_server logs "IOPub message rate exceeded" when it drops messages
    dropped = "rate exceeded" in server.log_tail(5000)
    ok = kernel_facts == f"['completed'] {MANY_WIDGETS * length}" and not dropped
    peak = peak_per_window(iopub)
    base = facts.get("kernel_many_peak")
    emit(
        Figure(
            "widget.browser.iopub_20_widgets",
            peak,
            "iopub frames/s (peak 1 s window, in the page)",
            base,
            None if not base else round(peak / base, 2),
            f"< {IOPUB_LIMIT}/s",
            ok and peak < IOPUB_LIMIT,
            f"{MANY_WIDGETS} widgets x {n} tokens as fast as possible, {len(iopub)} iopub frames "
            f"in {(watch['done'] - rows[0][0]) / 1000 if rows else 0:.2f} s; kernel says "
            f"{kernel_facts!r}; baseline: in-process peak for the same 20 streams",
            {
                "peak_rate_limited_types": peak_per_window(limited),
                "peak_custom_deltas": peak_per_window(custom),
                "peak_playwright_framereceived": py_peak,
                "server_dropped_iopub": dropped,
            },
        ),
        out,
    )


def browser_side(quick: bool, out: list[Figure], facts: dict[str, Any]) -> None:
    from tests.browser.conftest import cell_output, open_notebook, run_cell

    flood_tokens = 100_000
    many_tokens = 10_000 if quick else 50_000
    with jupyterlab_in_chromium("streamnb-bench-widget-") as (server, browser):
        name = server.add_notebook(FIXTURE)
        (server.root_dir / PARAMS_FILE).write_text(
            json.dumps(
                {
                    "flood_tokens": flood_tokens,
                    "many_widgets": MANY_WIDGETS,
                    "many_tokens": many_tokens,
                    "slow_rate": 20,
                }
            )
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(60_000)
        context.add_init_script(WS_HOOK)
        page = context.new_page()
        counter = PyFrameCounter(page)
        open_notebook(page, server, name)
        run_cell(page, SETUP)
        assert cell_output(page, SETUP).inner_text().strip() == "ready", cell_output(
            page, SETUP
        ).inner_text()
        browser_flood(page, flood_tokens, facts, out)
        browser_stop(page, 6 if quick else 20, facts, out)
        browser_many(page, server, counter, many_tokens, facts, out)


def run(quick: bool = False, browser: bool = True) -> list[Figure]:
    out: list[Figure] = []
    facts: dict[str, Any] = {}
    asyncio.run(kernel_side(quick, out, facts))
    if browser:
        browser_side(quick, out, facts)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes, about 30 s")
    p.add_argument("--no-browser", action="store_true", help="kernel-side figures only")
    args = p.parse_args()
    run(args.quick, browser=not args.no_browser)
