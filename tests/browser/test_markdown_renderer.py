"""The Markdown renderer (streamnb/static/markdown.bundle.js) in chromium, on a static page.

The bundle is loaded the way the widgets load it (an ES module) into a page served by a
Playwright route, without JupyterLab, so thousands of documents and split points run in
seconds. ``test_markdown_browser.py`` drives the same renderer inside real widgets.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect

pytestmark = pytest.mark.browser

BUNDLE = Path(__file__).resolve().parents[2] / "streamnb" / "static" / "markdown.bundle.js"
ORIGIN = "http://localhost"  # a secure context (the clipboard needs one); served by a route
PAGE = "<!doctype html><html><head><meta charset='utf-8'></head><body></body></html>"

# Page helpers: `streamInto(root, text, cuts)` renders `text` into `root` delta by delta
# (deltas end at `cuts`; each is rendered before the next arrives, then the view finishes);
# `inventory(root)` lists every element, attribute and link under `root`.
HELPERS = """
window.streamInto = (root, text, cuts) => {
  const view = new md.MarkdownView(root);
  let start = 0;
  for (const cut of [...cuts, text.length]) {
    view.append(text.slice(start, cut));
    view.flush();
    start = cut;
  }
  view.finish();
  return view;
};
window.inventory = (root) => {
  const all = [...root.querySelectorAll("*")];
  return {
    tags: [...new Set(all.map((e) => e.tagName))],
    attributes: [...new Set(all.flatMap((e) => [...e.attributes].map((a) => a.name)))],
    styles: all.filter((e) => e.hasAttribute("style")).map((e) => e.getAttribute("style")),
    hrefs: [...root.querySelectorAll("a")].map((a) => a.getAttribute("href")),
    links: [...root.querySelectorAll("a")].map((a) => [a.target, a.rel]),
    text: root.textContent,
  };
};
"""

# One-shot and streamed renders of the same text: [oneShotHTML, streamedHTML].
BOTH_WAYS = """
([text, cuts]) => {
  const oneShot = document.createElement("div");
  md.renderMarkdown(oneShot, text);
  const streamed = document.createElement("div");
  streamInto(streamed, text, cuts);
  return [oneShot.innerHTML, streamed.innerHTML];
}
"""

CORPUS = """\
# Heading one

Setext heading
==============

Para with **bold**, *em*, ~~strike~~, `code`, and a [link](https://example.com "title").
A lazy second line with www.example.org/path and mail@example.com.

Foo
---

- tight a
- tight b
  - nested c
  - nested d
- tight e

1. loose one

2. loose two

   continued paragraph in two

3) other delimiter

* star list
+ plus list

> quote line
lazy continuation
> > nested quote

| left | center | right |
|:-----|:------:|------:|
| 1 | 2 | 3 |
| `a|b` | **x** | ~~y~~ |
not a row?

para
| a | b |
|---|---|

```js
const x = "<script>alert(1)</script>";
```

~~~
tilde fence
~~~

    indented code
    more

***

<div onclick="alert(1)">html block</div>

Text with <b>inline html</b> and <!-- comment --> and &amp; &lt;b&gt; &#106;avascript:

Hard break  \nnext line\\
after backslash

[x]: https://reference.example

[x]

```
unclosed fence at the end
"""

# Line starts that change how the lines around them parse (for random documents).
PIECES = [
    "", "", "para text", "more *em* text", "- item", "* star", "+ plus", "1. one", "2. two",
    "3) three", "  indented two", "    code four", "> quote", "> > deep", "```", "```py", "~~~",
    "---", "***", "===", "# h1", "## h2", "| a | b |", "|---|---|", "|:-|-:|", "| 1 | 2 |",
    "a | b", "-|-", "<div>", "</div>", "<!-- x -->", "text  ", "end\\", "   - three sp", "- ",
    "1.", "2", "-", "\t tab", "[x]: https://x.y", "[x]", "**bold", "bold**", "`code",
    "www.a.com/x", "<https://a.b>", "~~s~~", "  > lazy?", "      six", "1. ```", "   ```",
]  # fmt: skip

# Each line must render as text; none may run (window.__pwned) or become an active element.
HOSTILE = [
    '<img src=x onerror="window.__pwned=1">',
    "<script>window.__pwned=1</script>",
    "</script><script>window.__pwned=1</script>",
    '<svg onload="window.__pwned=1"><circle r=1 /></svg>',
    '<iframe src="javascript:window.__pwned=1"></iframe>',
    "<!-- <img src=x onerror=window.__pwned=1> -->",
    '<a href="javascript:window.__pwned=1">raw anchor</a>',
    '**<b onmouseover="window.__pwned=1">bold html</b>**',
    "[js](javascript:window.__pwned=1)",
    "[mixed case](JaVaScRiPt:window.__pwned=1)",
    "[entity](&#106;avascript:window.__pwned=1)",
    "[hex entity](&#x6A;avascript:window.__pwned=1)",
    "[tab](java\tscript:window.__pwned=1)",
    "[data](data:text/html,<script>window.__pwned=1</script>)",
    "[vb](vbscript:msgbox(1))",
    "[file](file:///etc/passwd)",
    "[relative](/lab/tree/x.ipynb)",
    "<javascript:window.__pwned=1>",
    "![img](javascript:window.__pwned=1)",
    "![data img](data:image/png;base64,iVBORw0KGgo=)",
    "<div>\n<script>window.__pwned=1</script>\n</div>",
    '<style>body{display:none}</style><link rel=stylesheet href="https://x/y.css">',
    "[ok](https://example.com/ok)",
]

ALLOWED_TAGS = {
    "P", "H1", "H2", "H3", "H4", "H5", "H6", "UL", "OL", "LI", "BLOCKQUOTE", "PRE", "CODE",
    "EM", "STRONG", "S", "A", "BR", "HR", "TABLE", "THEAD", "TBODY", "TR", "TH", "TD", "DIV",
    "SPAN", "BUTTON",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "class", "href", "target", "rel", "title", "start", "style", "type", "aria-label"
}  # fmt: skip
SAFE_HREF_PREFIXES = ("http://", "https://", "mailto:")


@pytest.fixture(scope="module")
def page(chromium_browser: Browser) -> Iterator[Page]:
    """A page at ``ORIGIN`` with the bundle imported as ``window.md``."""
    context = chromium_browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=ORIGIN)
    page = context.new_page()
    bundle = BUNDLE.read_text(encoding="utf-8")

    def serve(route: Route) -> None:
        if route.request.url.endswith(".js"):
            route.fulfill(body=bundle, content_type="text/javascript; charset=utf-8")
        else:
            route.fulfill(body=PAGE, content_type="text/html; charset=utf-8")

    page.route(f"{ORIGIN}/**", serve)
    page.goto(f"{ORIGIN}/index.html")
    page.evaluate("async () => { window.md = await import('/markdown.bundle.js'); }")
    page.evaluate(f"() => {{ {HELPERS} }}")
    try:
        yield page
    finally:
        context.close()


def both_ways(page: Page, text: str, cuts: list[int]) -> tuple[str, str]:
    one_shot, streamed = page.evaluate(BOTH_WAYS, [text, cuts])
    return one_shot, streamed


def shown(page: Page, text: str, cuts: list[int] | None = None) -> dict[str, Any]:
    """Stream ``text`` into a container in the document; return its inventory."""
    inventory: dict[str, Any] = page.evaluate(
        """([text, cuts]) => {
          const root = document.createElement("div");
          document.body.replaceChildren(root);
          streamInto(root, text, cuts);
          return inventory(root);
        }""",
        [text, cuts or []],
    )
    return inventory


def random_cuts(rng: random.Random, text: str, most: int) -> list[int]:
    if len(text) < 2:
        return []
    return sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, most))))


# --------------------------------------------------------------------------- same DOM


def test_streamed_corpus_gives_the_one_shot_dom(page: Page) -> None:
    one_shot, streamed = both_ways(page, CORPUS, list(range(1, len(CORPUS))))  # char by char
    assert streamed == one_shot
    rng = random.Random(1)
    for _ in range(100):
        one_shot, streamed = both_ways(page, CORPUS, random_cuts(rng, CORPUS, 200))
        assert streamed == one_shot
    # the corpus exercised what matters: a table, a list, code, a setext heading
    for tag in ("<table>", "<ol>", "<ul>", "<pre>", "<h2>", "<blockquote>"):
        assert tag in one_shot


def test_random_documents_stream_to_the_one_shot_dom(page: Page) -> None:
    rng = random.Random(7)
    for trial in range(400):
        lines = [rng.choice(PIECES) for _ in range(rng.randint(2, 14))]
        text = "\n".join(lines) + rng.choice(["", "\n"])
        cuts = list(range(1, len(text))) if trial % 5 == 0 else random_cuts(rng, text, 30)
        one_shot, streamed = both_ways(page, text, cuts)
        assert streamed == one_shot, f"{text!r} split at {cuts}"


# Stream `text` delta by delta; after every other delta `showNow()` (a Stop press) instead
# of a render: [[text on screen, text appended] after each showNow, the DOM after
# finish(), the one-shot DOM, elements made from the text while shown as plain text].
SHOWN_NOW = """
([text, cuts]) => {
  const root = document.createElement("div");
  document.body.replaceChildren(root);
  const view = new md.MarkdownView(root);
  const seen = [];
  let start = 0;
  let made = 0;
  for (const [i, cut] of [...cuts, text.length].entries()) {
    view.append(text.slice(start, cut));
    start = cut;
    if (i % 2) {
      view.flush();
      continue;
    }
    view.showNow();
    seen.push([root.textContent, text.slice(0, cut)]);
    made += root.querySelectorAll("img, script, b").length;
  }
  view.finish();
  const oneShot = document.createElement("div");
  md.renderMarkdown(oneShot, text);
  return [seen, root.innerHTML, oneShot.innerHTML, made];
}
"""


def test_show_now_puts_every_received_character_on_screen_at_once(page: Page) -> None:
    """A Stop press rendered the Markdown of a huge open block inside its click handler
    (41-70 ms after the click for a 100,000-token paragraph, bench_peers): ``showNow``
    shows what arrived as plain text at once, and the next render is the usual one."""
    words = " ".join(f"w{i}" for i in range(400))
    cuts = list(range(7, len(words), 37))
    seen, streamed, one_shot, made = page.evaluate(SHOWN_NOW, [words, cuts])
    assert len(seen) > 5
    for on_screen, appended in seen:
        assert on_screen.split() == appended.split()  # everything, in order, nothing more
    assert streamed == one_shot and made == 0
    # Markdown and hostile text shown as text first, rendered (safely) at the end
    rng = random.Random(3)
    for text in (CORPUS, "para <img src=x onerror=alert(1)> and <b>bold</b>\n\n- a\n- b"):
        seen, streamed, one_shot, made = page.evaluate(
            SHOWN_NOW, [text, random_cuts(rng, text, 40)]
        )
        assert streamed == one_shot and made == 0
        assert "<img" not in one_shot and "<b>" not in one_shot


# Stream `text` in deltas ending at `cuts`, rendering after each: [[plain-text open blocks,
# whether its first piece is the one of the previous delta (appended to, not parsed
# again), its pieces] after each delta, streamed DOM == one-shot DOM, plain blocks after finish,
# <strong> elements after finish].
HUGE_OPEN_BLOCK = """
([text, cuts]) => {
  const root = document.createElement("div");
  document.body.replaceChildren(root);
  const view = new md.MarkdownView(root);
  const steps = [];
  let start = 0;
  let previous = null;
  for (const cut of [...cuts, text.length]) {
    view.append(text.slice(start, cut));
    start = cut;
    view.flush();
    const plain = root.querySelectorAll(".streamnb-md-plain");
    const node = plain.length ? plain[0].firstChild : null;
    const blocks = root.querySelectorAll(".streamnb-md-plain > span").length;
    steps.push([plain.length, node !== null && node === previous, blocks]);
    previous = node;
  }
  view.finish();
  const oneShot = document.createElement("div");
  md.renderMarkdown(oneShot, text);
  return [
    steps,
    root.innerHTML === oneShot.innerHTML,
    root.querySelectorAll(".streamnb-md-plain").length,
    root.querySelectorAll("strong").length,
  ];
}
"""


def test_a_huge_open_paragraph_streams_as_text_then_renders_as_markdown(page: Page) -> None:
    """One paragraph of 100,000 tokens was parsed whole at every render (tens of ms each,
    which also held up a Stop click): past 32,768 characters an open block grows as plain
    text, and is rendered as Markdown once a blank line closes it, or at the end."""
    words = "**bold** " + " ".join(f"w{i}" for i in range(6000))  # ~40,000 characters
    text = words + "\n\n## After\n\n- item **x**\n"
    cuts = [*range(1000, len(words), 1000), len(words) + 2, len(words) + 13]
    steps, same, plain_after, strong = page.evaluate(HUGE_OPEN_BLOCK, [text, cuts])
    plain = [count for count, _, _ in steps]
    first = plain.index(1)  # the paragraph passed OPEN_TEXT_CHARS
    assert 30 <= first <= 34 and all(count == 1 for count in plain[first : len(cuts) - 1])
    # appended to, not parsed again, until the delta with the blank line
    assert all(kept for _, kept, _ in steps[first + 1 : len(cuts) - 2])
    assert steps[len(cuts) - 2][2] >= 4  # in pieces of ~8 KB: a frame lays out the last one
    assert plain[-3:] == [1, 0, 0]  # the blank line and the heading closed it: Markdown
    assert same and plain_after == 0 and strong == 2
    # a huge code block: text while open, a code block once its fence closes
    code = (
        "```python\n" + "\n".join(f"x{i} = {i}" for i in range(4000)) + "\n```\n\nafter\n\nmore\n"
    )
    cuts = list(range(500, len(code), 700))
    steps, same, plain_after, _ = page.evaluate(HUGE_OPEN_BLOCK, [code, cuts])
    assert any(count for count, _, _ in steps) and steps[-1][0] == 0
    assert same and plain_after == 0


def test_a_list_item_after_a_blank_line_is_not_sealed_too_early(page: Page) -> None:
    # "1. one\n\n2" is a list and a paragraph until ". two" arrives and continues the list
    text = "1. one\n\n2. two\n"
    cuts = [text.index("2") + 1]
    one_shot, streamed = both_ways(page, text, cuts)
    assert streamed == one_shot
    assert one_shot.count("<ol>") == 1


def test_crlf_split_between_deltas(page: Page) -> None:
    text = "para one\r\n\r\n- a\r\n- b\r\n"
    cuts = [i + 1 for i, c in enumerate(text) if c == "\r"]  # every \r ends a delta
    one_shot, streamed = both_ways(page, text, cuts)
    assert streamed == one_shot
    assert "<li>a</li><li>b</li>" in one_shot


# --------------------------------------------------------------------------- rendering


def test_gfm_constructs(page: Page) -> None:
    text = (
        "# Title\n\n**bold** *it* ~~gone~~ `x`\n\n- a\n- b\n\n3. c\n\n"
        "| l | r |\n|:--|--:|\n| 1 | 2 |\n\n```python\nprint(1)\n```\n\n"
        "https://example.com www.commonmark.org/help setup.py me@example.com\n"
    )
    html = page.evaluate(
        "(t) => { const d = document.createElement('div'); md.renderMarkdown(d, t);"
        " return d.innerHTML; }",
        text,
    )
    for fragment in (
        "<h1>Title</h1>",
        "<strong>bold</strong>",
        "<em>it</em>",
        "<s>gone</s>",
        "<code>x</code>",
        "<ul><li>a</li><li>b</li></ul>",
        '<ol start="3"><li>c</li></ol>',
        '<th style="text-align: left;">l</th>',
        '<td style="text-align: right;">2</td>',
        '<code class="language-python">print(1)\n</code>',
        '<a href="https://example.com/" target="_blank" rel="noopener noreferrer">',
        '<a href="http://www.commonmark.org/help" target="_blank" rel="noopener noreferrer">',
        '<a href="mailto:me@example.com" target="_blank" rel="noopener noreferrer">',
    ):
        assert fragment in html
    assert "setup.py</" not in html and ">setup.py" not in html  # a file name is not a link


def test_reference_definitions_are_text(page: Page) -> None:
    # A definition arriving late would change text already shown: they stay text.
    inventory = shown(page, "[x]\n\n[x]: https://example.com\n")
    assert inventory["hrefs"] == ["https://example.com/"]  # the autolinked URL only
    assert "[x]" in inventory["text"]


def test_copy_button_copies_the_code(page: Page) -> None:
    page.evaluate(
        """(text) => {
          const root = document.createElement("div");
          document.body.replaceChildren(root);
          md.renderMarkdown(root, text);
        }""",
        "```sh\necho '<b>hi</b>'\n```\n",
    )
    copy = page.get_by_role("button", name="Copy code")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("() => navigator.clipboard.readText()") == "echo '<b>hi</b>'\n"


# --------------------------------------------------------------------------- safety


@pytest.mark.parametrize("per_char", [False, True], ids=["whole", "char-by-char"])
def test_hostile_markdown_is_text_and_never_runs(page: Page, per_char: bool) -> None:
    page.evaluate("() => { delete window.__pwned; }")
    text = "\n\n".join(HOSTILE) + "\n"
    inventory = shown(page, text, list(range(1, len(text))) if per_char else None)
    assert set(inventory["tags"]) <= ALLOWED_TAGS, inventory["tags"]
    assert set(inventory["attributes"]) <= ALLOWED_ATTRIBUTES, inventory["attributes"]
    assert all(style.startswith("text-align:") for style in inventory["styles"])
    # only the allowed link and a bare https URL in the text (autolinked) are links
    assert sorted(inventory["hrefs"]) == ["https://example.com/ok", "https://x/y.css"]
    assert all(href.startswith(SAFE_HREF_PREFIXES) for href in inventory["hrefs"])
    assert all(link == ["_blank", "noopener noreferrer"] for link in inventory["links"])
    for raw in ("<img src=x onerror=", "<script>", "<svg onload=", "<!-- <img", "<iframe"):
        assert raw in inventory["text"]  # shown as the characters the reply had
    # hover and click every element: nothing registers a handler that runs the payload
    page.locator("body *").evaluate_all(
        "(els) => els.forEach((e) => { e.dispatchEvent(new MouseEvent('mouseover')); })"
    )
    page.wait_for_timeout(200)  # an <img onerror> would have fired by now
    assert page.evaluate("() => window.__pwned") is None


def test_a_tag_split_across_deltas_stays_text(page: Page) -> None:
    page.evaluate("() => { delete window.__pwned; }")
    text = '<img src=x onerror="window.__pwned=1"> and [a](javascript:window.__pwned=1)\n'
    for cut in range(1, len(text)):
        inventory = shown(page, text, [cut])
        assert sorted(inventory["tags"]) == ["DIV", "P"]  # a chunk and the paragraph
        assert inventory["hrefs"] == []
    page.wait_for_timeout(200)
    assert page.evaluate("() => window.__pwned") is None
