"""Markdown replies: render speed, flatness and bytes per widget. One JSON line per figure.

    python -m bench.bench_markdown [--quick] [--no-browser]

The reply: ``markdown_tokens(100_000)``, a deterministic LLM-like Markdown reply of
100,000 tokens (about 700,000 characters): sections with headings, paragraphs with bold,
italics and code spans, bullet and numbered lists, fenced code blocks and tables.

In Debian's chromium, on a static page (the renderer alone: no kernel, no JupyterLab):

* markdown.render_100k_s          the reply in 1,000 deltas of 100 tokens, each delta
                                  rendered and laid out before the next arrives (no frame
                                  coalescing, the widget's worst case): first delta to the
                                  finished DOM. Target < 2 s. Baseline: the same text
                                  rendered at once (renderMarkdown) in the same page.
* markdown.last_tenth_vs_first    render + layout time of the last tenth of the deltas,
                                  against the first tenth (baseline). Target ratio <= 1.5:
                                  the cost per delta stays flat (no full re-parse).
* markdown.import_ms              importing markdown.bundle.js in a fresh page (what the
                                  first Markdown widget of a page pays once). Report only.

Bytes (kernel side, no browser):

* markdown.esm_bytes_per_widget   a StreamWidget's ``_esm`` (sent and imported once per
                                  widget model); baseline: the same with the renderer
                                  inlined. Target < 40,000 B.
* markdown.code_bytes_100_widgets front-end code sent for 100 Markdown widgets: 100 ``_esm``
                                  plus one renderer model; baseline: 100 ``_esm`` with the
                                  renderer inlined. Target ratio <= 0.3.

In JupyterLab (the harness of ``tests/browser/conftest.py``), notebook
``bench/fixtures/markdown_bench.ipynb``:

* markdown.browser.render_100k_from_delta_s   the same reply streamed as fast as
                                  possible into a StreamWidget (render="markdown"): first
                                  delta frame at the page's websocket to the finished DOM
                                  (status completed, all text rendered). Target < 2 s.
                                  Baseline: the same stream with render="text", same page.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

from bench.common import Figure, emit, jupyterlab_in_chromium, token_handler

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "streamnb" / "static" / "markdown.bundle.js"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "markdown_bench.ipynb"
PARAMS_FILE = "markdown_bench_params.json"
MARKDOWN_KIND = "bench.markdown"

TOKENS = 100_000
DELTAS = 1_000
RENDER_LIMIT_S = 2.0
FLATNESS_LIMIT = 1.5
ESM_LIMIT_BYTES = 40_000
CODE_RATIO_LIMIT = 0.3
WIDGETS = 100
ROUNDS = 3  # JupyterLab rounds (median reported)
DONE_TIMEOUT_MS = 60_000  # a widget not finished by then fails the figure
STATIC_ROUNDS = 7  # static-page rounds (medians reported; the machine is shared and noisy)

_WORDS = (
    "the stream runtime settles every attached reply exactly once and the ledger keeps what "
    "happened so a notebook can query it later with pandas while the widget renders tokens"
).split()


def markdown_tokens(n: int, seed: int = 0) -> list[str]:
    """``n`` tokens of a Markdown reply (headings, paragraphs, lists, code fences, tables)."""
    rng = random.Random(seed)
    out: list[str] = []

    def words(k: int) -> None:
        for _ in range(k):
            word = rng.choice(_WORDS)
            roll = rng.random()
            if roll < 0.03:
                word = f"**{word}**"
            elif roll < 0.05:
                word = f"*{word}*"
            elif roll < 0.07:
                word = f"`{word}`"
            out.append(word + " ")

    section = 0
    while len(out) < n:
        section += 1
        out.append(f"## Section {section}\n\n")
        for _ in range(rng.randint(1, 3)):
            words(rng.randint(30, 80))
            out.append("\n\n")
        kind = rng.random()
        if kind < 0.4:
            for i in range(rng.randint(3, 8)):
                out.append(f"{i + 1}. " if kind < 0.2 else "- ")
                words(rng.randint(5, 20))
                out.append("\n")
            out.append("\n")
        elif kind < 0.8:
            out.append("```python\n")
            for i in range(rng.randint(5, 25)):
                out.append(f"def f{i}(x):\n")
                out.append(f"    return x * {i}  # {rng.choice(_WORDS)}\n")
            out.append("```\n\n")
        else:
            out.append("| name | value |\n|---|---:|\n")
            out.extend(f"| {rng.choice(_WORDS)} | {i} |\n" for i in range(rng.randint(3, 8)))
            out.append("\n")
    return out[:n]


def markdown_handler(kind: str = MARKDOWN_KIND) -> Any:
    """Output-only: ``{"n": tokens}`` of :func:`markdown_tokens` on ``assistant.delta``, as
    fast as possible (:func:`bench.common.token_handler`)."""
    return token_handler(kind, markdown_tokens)


# --- 1. the renderer on a static page -------------------------------------------------------

ORIGIN = "http://localhost"
PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><style>{css}</style></head>"
    "<body><div class='streamnb' style='max-width:820px'><div class='streamnb-log' "
    "style='max-height:none'><div id='out'></div></div></div></body></html>"
)

# Streams `deltas` into #out, one render + layout per delta; returns per-delta ms, the
# total, and the same text rendered at once.
STREAM_JS = """
(deltas) => {
  const out = document.getElementById("out");
  out.replaceChildren();
  const view = new md.MarkdownView(out);
  const costs = [];
  const t0 = performance.now();
  for (const delta of deltas) {
    const a = performance.now();
    view.append(delta);
    view.flush();
    out.offsetHeight; // layout, as the frame would
    costs.push(performance.now() - a);
  }
  view.finish();
  out.offsetHeight;
  const total = performance.now() - t0;
  const html = out.innerHTML;
  out.replaceChildren();
  const b = performance.now();
  md.renderMarkdown(out, deltas.join(""));
  out.offsetHeight;
  const oneShot = performance.now() - b;
  return { costs, total, oneShot, same: html === out.innerHTML };
}
"""


def static_page(quick: bool, out: list[Figure]) -> None:
    import statistics

    from playwright.sync_api import Route, sync_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

    tokens = markdown_tokens(TOKENS)
    per = len(tokens) // DELTAS
    deltas = ["".join(tokens[i : i + per]) for i in range(0, len(tokens), per)]
    text_chars = sum(len(d) for d in deltas)
    bundle = BUNDLE.read_text(encoding="utf-8")
    css = (REPO / "streamnb" / "static" / "widget.css").read_text(encoding="utf-8")

    def serve(route: Route) -> None:
        if route.request.url.endswith(".js"):
            route.fulfill(body=bundle, content_type="text/javascript; charset=utf-8")
        else:
            route.fulfill(body=PAGE.format(css=css), content_type="text/html; charset=utf-8")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            imports = []
            page = None
            for _ in range(1 if quick else ROUNDS):
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.route(f"{ORIGIN}/**", serve)
                page.goto(f"{ORIGIN}/index.html")
                imports.append(
                    page.evaluate(
                        "async () => { const t = performance.now();"
                        " window.md = await import('/markdown.bundle.js');"
                        " return performance.now() - t; }"
                    )
                )
            assert page is not None
            page.evaluate(STREAM_JS, deltas[: len(deltas) // 10])  # warm the JIT once
            count = 3 if quick else STATIC_ROUNDS
            rounds = [page.evaluate(STREAM_JS, deltas) for _ in range(count)]
        finally:
            browser.close()
    tenth = len(deltas) // 10
    first = statistics.median(sum(r["costs"][:tenth]) for r in rounds)
    last = statistics.median(sum(r["costs"][-tenth:]) for r in rounds)
    costs = [c for r in rounds for c in r["costs"]]
    same = all(r["same"] for r in rounds)
    note = (
        f"{TOKENS} tokens, {text_chars} chars, {len(deltas)} deltas; median of {len(rounds)} "
        f"rounds after a warm-up; streamed DOM {'equals' if same else 'DIFFERS FROM'} "
        "the one-shot DOM"
    )
    total_s = statistics.median(r["total"] for r in rounds) / 1000
    one_s = statistics.median(r["oneShot"] for r in rounds) / 1000
    emit(
        Figure(
            "markdown.render_100k_s",
            round(total_s, 3),
            "s",
            round(one_s, 3),
            round(total_s / one_s, 2),
            f"< {RENDER_LIMIT_S} s",
            same and total_s < RENDER_LIMIT_S,
            f"first delta to finished DOM, each delta rendered + laid out; {note}; "
            "baseline: the text rendered at once",
            {
                "max_delta_ms": round(max(costs), 2),
                "rounds_s": [round(r["total"] / 1000, 3) for r in rounds],
            },
        ),
        out,
    )
    emit(
        Figure(
            "markdown.last_tenth_vs_first",
            round(last, 1),
            "ms (last tenth of the deltas)",
            round(first, 1),
            round(last / first, 2),
            f"ratio <= {FLATNESS_LIMIT}",
            last / first <= FLATNESS_LIMIT,
            f"render + layout time of deltas {len(deltas) - tenth}..{len(deltas) - 1} against "
            f"0..{tenth - 1} (baseline), medians over rounds; {note}",
        ),
        out,
    )
    import_ms = statistics.median(imports)
    emit(
        Figure(
            "markdown.import_ms",
            round(import_ms, 1),
            "ms",
            None,
            None,
            "report only",
            True,
            f"import() of markdown.bundle.js ({len(bundle.encode())} B) in a fresh page, "
            f"median of {len(imports)}: paid once per page by the first Markdown widget",
        ),
        out,
    )


# --- 2. bytes ---------------------------------------------------------------------------------


def code_bytes(out: list[Figure]) -> None:
    from streamnb.widget import StreamWidget

    esm = len(str(StreamWidget._esm).encode())
    bundle = len(BUNDLE.read_bytes())
    emit(
        Figure(
            "markdown.esm_bytes_per_widget",
            esm,
            "B",
            esm + bundle,
            round(esm / (esm + bundle), 3),
            f"< {ESM_LIMIT_BYTES} B",
            esm < ESM_LIMIT_BYTES,
            "StreamWidget._esm (common.js + widget.js), sent in every widget model's state and "
            f"imported per model; baseline: with the {bundle} B renderer inlined",
        ),
        out,
    )
    ours = WIDGETS * esm + bundle
    inlined = WIDGETS * (esm + bundle)
    emit(
        Figure(
            "markdown.code_bytes_100_widgets",
            ours,
            "B",
            inlined,
            round(ours / inlined, 3),
            f"ratio <= {CODE_RATIO_LIMIT}",
            ours / inlined <= CODE_RATIO_LIMIT,
            f"{WIDGETS} widgets' _esm + one MarkdownLibrary model per kernel; baseline: "
            "the renderer inside every _esm",
        ),
        out,
    )


# --- 3. in JupyterLab ---------------------------------------------------------------------------

# Installed before JupyterLab's scripts: performance.now() of each custom comm_msg frame
# a kernel websocket receives (the deltas).
WS_HOOK = """
(() => {
  const Native = window.WebSocket;
  const decoder = new TextDecoder();
  window.__benchDeltas = [];
  const isCustom = (data) => {
    if (typeof data === "string") return /"method":\\s*"custom"/.test(data);
    if (!(data instanceof ArrayBuffer)) return false;
    const view = new DataView(data);
    const at = (i) => Number(view.getBigUint64(8 * (i + 1), true));
    const text = (a, b) => decoder.decode(new Uint8Array(data, a, b - a));
    if (!text(at(1), at(2)).includes('"comm_msg"')) return false;
    return /"method":\\s*"custom"/.test(text(at(4), Math.min(at(5), at(4) + 300)));
  };
  class LoggedWebSocket extends Native {
    constructor(...args) {
      super(...args);
      if (String(args[0]).includes("/channels")) {
        this.addEventListener("message", (ev) => {
          const t = performance.now();
          try { if (isCustom(ev.data)) window.__benchDeltas.push(t); } catch (e) {}
        });
      }
    }
  }
  window.WebSocket = LoggedWebSocket;
})();
"""

# Resolves with performance.now() when the widget in `cell` shows status completed and
# `length` characters of text (the rendered text's length, known from a one-shot render);
# after `timeoutMs`, with what the widget shows instead. Wrapped in an object, so that
# evaluate_handle returns at once instead of awaiting the promise.
DONE_JS = """
([cell, length, timeoutMs]) => ({ done: new Promise((resolve) => {
  setTimeout(() => {
    obs.disconnect();
    const root = [...cell.querySelectorAll(".streamnb")].find((r) => !old.has(r));
    const main = root && root.querySelector(".streamnb-main");
    resolve({ timedOut: true, status: root && root.dataset.status,
              shown: main ? main.textContent.length : null, expected: length });
  }, timeoutMs);
  const old = new Set(cell.querySelectorAll(".streamnb")); // a previous round's widget
  const check = () => {
    const root = [...cell.querySelectorAll(".streamnb")].find((r) => !old.has(r));
    const main = root && root.querySelector(".streamnb-main");
    if (main && root.dataset.status === "completed" && main.textContent.length === length) {
      obs.disconnect();
      resolve(performance.now());
      return true;
    }
    return false;
  };
  const obs = new MutationObserver(check);
  obs.observe(cell, { subtree: true, childList: true, characterData: true, attributes: true });
  check();
}) })
"""

# The textContent length of `text` rendered as Markdown, with the page's loaded renderer.
RENDERED_LENGTH_JS = """
async (text) => {
  const modules = globalThis[Symbol.for("streamnb.markdown.modules")];
  const module = await [...modules.values()][0];
  const box = document.createElement("div");
  module.renderMarkdown(box, text);
  return box.textContent.length;
}
"""

# Cells of bench/fixtures/markdown_bench.ipynb (0 is markdown).
SETUP, MARKDOWN_CELL, TEXT_CELL, WARM_CELL = 1, 2, 3, 4


def in_jupyterlab(quick: bool, out: list[Figure], tokens: int = TOKENS) -> None:
    from tests.browser.conftest import cell, cell_output, open_notebook, run_cell

    text = "".join(markdown_tokens(tokens))
    results: dict[str, list[float]] = {"markdown": [], "text": []}
    with jupyterlab_in_chromium("streamnb-bench-markdown-") as (server, browser):
        name = server.add_notebook(FIXTURE)
        (server.root_dir / PARAMS_FILE).write_text(json.dumps({"tokens": tokens}))
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(120_000)
        context.add_init_script(WS_HOOK)
        page = context.new_page()
        open_notebook(page, server, name)
        run_cell(page, SETUP)
        run_cell(page, WARM_CELL)  # a first Markdown widget loads the renderer
        # the live widget, or the saved transcript it becomes once settled
        warm = cell_output(page, WARM_CELL)
        warm.locator(".streamnb-md, .streamnb-saved").first.wait_for()
        markdown_length = page.evaluate(RENDERED_LENGTH_JS, text)
        lengths = {"markdown": markdown_length, "text": len(text)}
        for _ in range(1 if quick else ROUNDS):
            for mode, index in (("markdown", MARKDOWN_CELL), ("text", TEXT_CELL)):
                node = cell(page, index).element_handle()
                page.evaluate("() => { window.__benchDeltas.length = 0; }")
                done = page.evaluate_handle(DONE_JS, [node, lengths[mode], DONE_TIMEOUT_MS])
                run_cell(page, index, timeout_s=120)
                finished = page.evaluate("(watch) => watch.done", done)
                if isinstance(finished, dict):
                    raise RuntimeError(f"{mode} widget not finished: {finished}")
                first = page.evaluate("() => window.__benchDeltas[0]")
                results[mode].append((finished - first) / 1000)
    md_s = sorted(results["markdown"])[len(results["markdown"]) // 2]
    text_s = sorted(results["text"])[len(results["text"]) // 2]
    emit(
        Figure(
            "markdown.browser.render_100k_from_delta_s",
            round(md_s, 3),
            "s",
            round(text_s, 3),
            round(md_s / text_s, 2),
            f"< {RENDER_LIMIT_S} s",
            md_s < RENDER_LIMIT_S,
            f"{tokens} Markdown tokens ({len(text)} chars) as fast as possible into a "
            "StreamWidget in JupyterLab: first delta frame at the websocket to status completed "
            f"with all text rendered; median of {len(results['markdown'])}; baseline: the same "
            "stream with render='text', same page",
            {"rounds_markdown_s": results["markdown"], "rounds_text_s": results["text"]},
        ),
        out,
    )


def run(quick: bool = False, browser: bool = True) -> list[Figure]:
    out: list[Figure] = []
    code_bytes(out)
    if browser:
        static_page(quick, out)
        in_jupyterlab(quick, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer rounds")
    p.add_argument("--no-browser", action="store_true", help="only the kernel-side figures")
    args = p.parse_args(argv)
    run(args.quick, browser=not args.no_browser)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
