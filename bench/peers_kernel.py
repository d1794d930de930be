"""Kernel side of ``bench/bench_peers.py``: the tokens, the streamnb handler and the helpers
every contender cell uses. The benchmark's notebook imports it in its setup cell; the
harness process imports only :func:`tokens` and :func:`expected_text` from it.

Every contender cell starts with ``MARKS["cell"] = time.time()`` and reads the same
``token_stream(n)`` (each token yielded, then a loop turn, as from a provider) as fast as
it comes; ``MARKS`` (kernel clock, seconds since the epoch) is read
back by the harness after each trial with a silent ``user_expressions`` request.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

#: short words, none of them Markdown syntax, so every contender shows the same text
WORDS = (
    "the model a token is of and to in stream we it text for on cell kernel page "
    "widget that with as reply fast each one by more from at word this delta time "
    "be not or an are can render lab print frame all out next so then will its"
).split()

#: stream kind of the streamnb contender
TOKENS_KIND = "bench.peers.tokens"
#: stream kind of the many-widgets trial (``bench/peers_budget.py``): ``{"n", "salt"}``
BUDGET_KIND = "bench.peers.budget"

#: kernel-clock marks of the running trial (``time.time()``), reset by :func:`reset`
MARKS: dict[str, float] = {}


@functools.lru_cache(maxsize=4)
def tokens(n: int) -> tuple[str, ...]:
    """``n`` short tokens (``" word"``, 3 to 7 characters), the same for every contender.

    The word order follows a linear congruential sequence, so a text shown out of order
    differs from the expected one (a periodic sequence could hide a reordering).
    """
    out = []
    state = 12345
    for _ in range(n):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        out.append(" " + WORDS[(state >> 8) % len(WORDS)])
    return tuple(out)


async def token_stream(n: int) -> AsyncIterator[str]:
    """:func:`tokens` as a provider's stream gives them, the one source every contender
    reads: each token yielded, then the loop gets a turn (``asyncio.sleep(0)``), as an
    LLM client awaits its connection between chunks. A cell reads it with
    ``async for tok in token_stream(n)``; the streamnb handler the same way."""
    for token in tokens(n):
        yield token
        await asyncio.sleep(0)


def expected_text(n: int) -> str:
    """The text every contender must show for ``n`` tokens."""
    return "".join(tokens(n))


def budget_tokens(n: int, salt: int) -> tuple[str, ...]:
    """The ``n`` tokens of widget ``salt`` in the many-widgets trial: ``" <salt>.<i>"``."""
    return tuple(f" {salt}.{i}" for i in range(n))


def reset() -> None:
    """Forget the marks of the previous trial."""
    MARKS.clear()


def marks_json() -> str:
    """``MARKS`` as JSON (read by the harness through ``user_expressions``)."""
    return json.dumps(MARKS)


# --- streamnb -------------------------------------------------------------------------------


def streamnb_runtime() -> Any:
    """A runtime with the ``bench.peers.tokens`` handler: ``{"n": tokens}`` as fast as possible.

    ``bench.peers.budget`` (``{"n", "salt"}``) yields :func:`budget_tokens` the same way.
    The tokens handler checks the stream's abort signal before every token; when it sees it, it
    records ``MARKS["producer_stopped"]`` (kernel clock) and ends the stream cancelled.
    """
    import streamnb as sn

    async def run(start: Any, _input: Any, ctx: Any) -> AsyncIterator[Any]:
        async for token in token_stream(int(start["n"])):
            if ctx.signal.aborted:
                MARKS["producer_stopped"] = time.time()
                yield sn.cancelled()
                return
            yield sn.output(token)
        MARKS["producer_done"] = time.time()
        yield sn.completed()

    async def budget_run(start: Any, _input: Any, ctx: Any) -> AsyncIterator[Any]:
        for token in budget_tokens(int(start["n"]), int(start["salt"])):
            yield sn.output(token)
            await asyncio.sleep(0)  # every stream gets a turn per token, as token_stream
        yield sn.completed()

    runtime = sn.StreamRuntime(cancel_grace_s=0.5)
    runtime.register(sn.AttachedStreamHandler(kind=TOKENS_KIND, run=run))
    runtime.register(sn.AttachedStreamHandler(kind=BUDGET_KIND, run=budget_run))
    return runtime


# --- a plain anywidget ----------------------------------------------------------------------

TEXT_WIDGET_ESM = """
function render({ model, el }) {
  const pre = document.createElement("pre");
  pre.className = "peers-text";
  el.append(pre);
  const show = () => { pre.textContent = model.get("text"); };
  model.on("change:text", show);
  show();
  return () => model.off("change:text", show);
}
export default { render };
"""


@functools.cache
def text_widget_class() -> type:
    """The simplest streaming anywidget: one synced ``text`` trait shown in a ``<pre>``."""
    import anywidget
    import traitlets

    class TextWidget(anywidget.AnyWidget):  # type: ignore[misc]
        _esm = TEXT_WIDGET_ESM
        text = traitlets.Unicode("").tag(sync=True)

    return TextWidget


# --- Panel ----------------------------------------------------------------------------------


def panel_stop_interface(n: int) -> Any:
    """A Panel ``ChatInterface`` whose callback streams ``tokens(n)`` (Panel's own Stop).

    The callback is an async generator yielding the text so far (Panel replaces the
    message with each value). Panel cancels the task that iterates it when Stop is
    pressed; the generator is then left suspended (its ``finally`` runs only when it is
    closed), so ``MARKS["last_token"]``, the time of the last token it produced, tells when
    it stopped.
    """
    import panel as pn

    async def reply(contents: Any, user: str, instance: Any) -> AsyncIterator[str]:
        parts: list[str] = []
        finished = False
        try:
            async for token in token_stream(n):
                parts.append(token)
                MARKS["last_token"] = time.time()
                yield "".join(parts)
            finished = True
            MARKS["producer_done"] = time.time()
        finally:
            if not finished:
                MARKS["producer_stopped"] = time.time()

    return pn.chat.ChatInterface(callback=reply, callback_user="Assistant", height=400)


def close_everything() -> None:
    """Close every widget the trials made (streamnb, ipywidgets, anywidget) and reset."""
    import gc

    import ipywidgets

    ipywidgets.Widget.close_all()
    reset()
    gc.collect()
