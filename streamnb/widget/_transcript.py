"""Static transcripts: what a saved notebook shows where a live widget was.

A widget's live output (``application/vnd.jupyter.widget-view+json``) needs the kernel
that holds its model; JupyterLab's widget renderer outranks every other mimetype, so
reopened without that kernel it shows "Error displaying widget: model not found" (and
it does not save widget state by default). So once nothing more can happen in a
widget, its output is replaced (``update_display``, see ``_saved.py``) by the bundle
built here: ``text/html`` (read by JupyterLab, Notebook 7, ``jupyter nbconvert --to
html``, nbviewer and GitHub) and ``text/plain`` (any ``.ipynb`` reader, ``nbconvert
--to markdown``).

The HTML is built from escaped text only. Assistant text is rendered server-side by
markdown-it-py with the browser renderer's rules (``js/markdown.js``): CommonMark +
GFM tables, strikethrough and autolinks; raw HTML shown as text (``html=False``);
links only to absolute ``http``, ``https`` and ``mailto`` targets, opening in a new
tab with ``rel="noopener noreferrer"``; images shown as links, never loaded;
reference-style link definitions left as text. Other channels and the user's
messages are escaped plain text. A small ``<style>`` (JupyterLab's ``--jp-*``
variables, with fallbacks elsewhere) gives the transcript the widget's look; readers
that strip styles (GitHub) show plain HTML. Where a reader runs the scripts of trusted
outputs (JupyterLab, Notebook 7, VS Code, an nbconvert HTML page) a short constant
script (:data:`COPY_SCRIPT`) adds a **Copy** button above each code block; it reads the
block's ``textContent`` and never touches the HTML. Readers that run no scripts show
no button.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

__all__ = [
    "COPY_SCRIPT",
    "MAX_SAVED_MESSAGES",
    "STYLE",
    "Bundle",
    "chat_bundle",
    "is_assistant_channel",
    "main_channel",
    "markdown_html",
    "progress_parts",
    "rooms_bundle",
    "stream_bundle",
]

#: a mimebundle: mimetype -> data
Bundle = dict[str, Any]
#: most messages of one chat or room a saved transcript shows (the latest ones)
MAX_SAVED_MESSAGES = 500
_SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
ROLE_LABELS = {"user": "You", "assistant": "Assistant"}

STYLE = """<style>
.streamnb-saved{border:1px solid var(--jp-border-color2,#d0d7de);border-radius:6px;\
padding:8px 10px;margin:2px 0;color:var(--jp-content-font-color1,inherit);\
font-family:var(--jp-content-font-family,system-ui,sans-serif)}
.streamnb-saved-header{display:flex;flex-wrap:wrap;gap:4px 12px;align-items:baseline;\
font-family:var(--jp-ui-font-family,system-ui,sans-serif);font-size:var(--jp-ui-font-size1,13px)}
.streamnb-saved-status{font-weight:600}
.streamnb-saved-kind{color:var(--jp-ui-font-color2,#57606a);\
font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,12px)}
.streamnb-saved-progress,.streamnb-saved-note,.streamnb-saved-role,.streamnb-saved-label{\
color:var(--jp-ui-font-color2,#57606a);font-family:var(--jp-ui-font-family,system-ui,sans-serif);\
font-size:var(--jp-ui-font-size0,11px)}
.streamnb-saved-role,.streamnb-saved-label{font-weight:600;margin-top:6px}
.streamnb-saved-bar{height:6px;border-radius:3px;background:var(--jp-layout-color3,#d0d7de);\
overflow:hidden;margin:4px 0}
.streamnb-saved-bar>div{height:100%;background:var(--jp-brand-color1,#1976d2)}
.streamnb-saved-text{white-space:pre-wrap;overflow-wrap:anywhere}
.streamnb-saved-user{white-space:pre-wrap;overflow-wrap:anywhere;padding:2px 0 2px 8px;\
border-left:3px solid var(--jp-brand-color2,#64b5f6)}
.streamnb-saved-error{color:var(--jp-error-color1,#d32f2f)}
.streamnb-saved-room{margin-top:8px;padding-top:4px;\
border-top:1px solid var(--jp-border-color2,#d0d7de)}
.streamnb-saved-copy{display:block;margin:6px 0 -4px auto;padding:1px 8px;cursor:pointer;\
font-size:var(--jp-ui-font-size0,11px);color:var(--jp-ui-font-color1,inherit);\
background:var(--jp-layout-color2,#f3f4f6);border:1px solid var(--jp-border-color2,#d0d7de);\
border-radius:3px}
</style>"""

#: adds a Copy button above each code block of the transcript it ends (trusted readers)
COPY_SCRIPT = """<script>(function () {
  var here = document.currentScript, root = here && here.parentElement;
  if (!root || !navigator.clipboard) return;
  root.querySelectorAll("pre > code").forEach(function (code) {
    var button = document.createElement("button");
    button.type = "button";
    button.className = "streamnb-saved-copy";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy code");
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(code.textContent).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      });
    });
    code.parentElement.before(button);
  });
})();</script>"""


# --- Markdown -----------------------------------------------------------------------------


def _safe_href(url: str) -> bool:
    """Only absolute http, https and mailto targets (as ``safeHref`` in js/markdown.js)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme not in _SAFE_SCHEMES:
        return False
    return scheme == "mailto" or bool(parts.netloc)


def _link_open(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    token = tokens[idx]
    token.attrSet("target", "_blank")
    token.attrSet("rel", "noopener noreferrer")
    return self.renderToken(tokens, idx, options, env)


def _image(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    # an image is shown as a link to it, never loaded (a reply cannot make the page fetch)
    token = tokens[idx]
    src = html.escape(str(token.attrGet("src") or ""), quote=True)
    alt = html.escape(self.renderInlineAsText(token.children or [], options, env))
    label = alt or src
    return f'<a href="{src}" target="_blank" rel="noopener noreferrer">{label}</a>'


def _parser() -> MarkdownIt:
    md = MarkdownIt(
        "commonmark", {"html": False, "linkify": True, "typographer": False, "breaks": False}
    )
    md.enable(["table", "strikethrough", "linkify"])
    md.disable("reference")
    md.validateLink = _safe_href  # type: ignore[method-assign]
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("image", _image)
    return md


_MD = _parser()


def markdown_html(text: str) -> str:
    """Assistant text as HTML: CommonMark + GFM, raw HTML escaped, safe links only.

    Examples
    --------
    >>> markdown_html("**bold** <img src=x onerror=alert(1)>")
    '<p><strong>bold</strong> &lt;img src=x onerror=alert(1)&gt;</p>\\n'
    >>> markdown_html("[x](javascript:alert(1)) [y](https://example.org)")
    '<p>[x](javascript:alert(1)) <a href="https://example.org" target="_blank" \
rel="noopener noreferrer">y</a></p>\\n'
    """
    return str(_MD.render(text))


def is_assistant_channel(channel: str) -> bool:
    """Channel ``assistant`` or ``assistant.<anything>``: rendered as Markdown."""
    return channel == "assistant" or channel.startswith("assistant.")


def main_channel(channels: Iterable[str], preferred: str = "") -> str | None:
    """The channel a stream widget shows first, given its channels in order of appearance.

    ``preferred`` (a widget's ``main_channel``) when set; otherwise the first assistant
    channel, else the first channel the stream wrote (so an output-only stream writing
    ``stdout`` shows it as its main text). None when there is no channel yet.

    Examples
    --------
    >>> main_channel(["stdout"]), main_channel(["tool", "assistant.delta"])
    ('stdout', 'assistant.delta')
    >>> main_channel(["stdout"], preferred="assistant.delta")
    'assistant.delta'
    """
    if preferred:
        return preferred
    seen = list(channels)
    for channel in seen:
        if is_assistant_channel(channel):
            return channel
    return seen[0] if seen else None


def progress_parts(progress: Any) -> tuple[float | None, str]:
    """``(fraction or None, label)`` of a progress payload (the widget's progress bar).

    A fraction comes from ``fraction`` (0 to 1), ``percent`` (0 to 100) or ``done`` and
    ``total``; the label lists the payload's other fields as ``key: value``.

    Examples
    --------
    >>> progress_parts({"words": 49, "done": 49, "total": 72})
    (0.6805555555555556, '49 / 72 · words: 49')
    >>> progress_parts({"phase": "waiting_for_user"})
    (None, 'phase: waiting_for_user')
    """
    if progress is None:
        return None, ""
    if not isinstance(progress, Mapping):
        return None, json.dumps(progress, ensure_ascii=False)
    fraction: float | None = None
    used: set[str] = set()
    head = ""

    def number(key: str) -> float | None:
        value = progress.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)

    if (value := number("fraction")) is not None:
        fraction, used = value, {"fraction"}
    elif (value := number("percent")) is not None:
        fraction, used = value / 100, {"percent"}
    else:
        done, total = number("done"), number("total")
        if done is not None and total is not None and total > 0:
            fraction, used = done / total, {"done", "total"}
            head = f"{_num(done)} / {_num(total)}"
    if fraction is not None:
        fraction = min(1.0, max(0.0, fraction))
        head = head or f"{round(fraction * 100)}%"
    rest = [
        f"{key}: {value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)}"
        for key, value in progress.items()
        if key not in used
    ]
    return fraction, " · ".join(([head] if head else []) + rest)


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


# --- bundles --------------------------------------------------------------------------------


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _status_line(status: str, reason: str, forced: bool) -> str:
    line = f"{status} — {reason}" if reason and reason != status else status
    return f"{line} (forced: the handler did not stop within its grace period)" if forced else line


def _text_html(text: str, markdown: bool) -> str:
    if markdown:
        return f'<div class="streamnb-saved-md">{markdown_html(text)}</div>'
    return f'<div class="streamnb-saved-text">{_esc(text)}</div>'


def _sent_html(text: str) -> str:
    return (
        '<div class="streamnb-saved-sent"><div class="streamnb-saved-role">You</div>'
        f'<div class="streamnb-saved-user">{_esc(text)}</div></div>'
    )


def _wrap(body: str, *, status: str, saved_for: str | None = None) -> str:
    marker = f' data-streamnb-saved="{_esc(saved_for)}"' if saved_for else ""
    script = COPY_SCRIPT if "<pre><code" in body else ""
    return (
        f'<div class="streamnb-saved" data-status="{_esc(status)}"{marker}>'
        f"{STYLE}{body}{script}</div>"
    )


def stream_bundle(
    *,
    kind: str,
    status: str,
    reason: str,
    forced: bool,
    error: str,
    progress: Any,
    texts: Mapping[str, str],
    sent: Sequence[Mapping[str, Any]],
    render: str,
    preferred_channel: str = "",
) -> Bundle:
    """A :class:`~streamnb.StreamWidget`'s transcript as ``text/html`` and ``text/plain``.

    ``texts``: text per channel, in order of appearance; ``sent``: the messages sent to
    the stream (``{"text", "offsets": {channel: position}}``), shown above the text that
    followed them in the main channel.
    """
    main = main_channel(texts, preferred_channel)
    markdown = render == "markdown"
    line = _status_line(status, reason, forced)
    parts: list[str] = [
        '<div class="streamnb-saved-header">'
        f'<span class="streamnb-saved-status" role="status">{_esc(line)}</span>'
        f'<span class="streamnb-saved-kind">{_esc(kind)}</span></div>'
    ]
    plain: list[str] = [f"{kind} · {line}"]
    fraction, label = progress_parts(progress)
    if label:
        if fraction is not None:
            parts.append(
                f'<div class="streamnb-saved-bar" role="progressbar" aria-valuemin="0" '
                f'aria-valuemax="100" aria-valuenow="{round(fraction * 100)}">'
                f'<div style="width:{fraction * 100:.1f}%"></div></div>'
            )
        parts.append(f'<div class="streamnb-saved-progress">last progress · {_esc(label)}</div>')
        plain.append(f"last progress · {label}")
    main_parts: list[str] = []
    main_text = texts.get(main, "") if main is not None else ""
    pos = 0
    main_md = markdown and main is not None and is_assistant_channel(main)
    for message in sent:
        offsets = message.get("offsets") or {}
        cut = max(pos, min(len(main_text), int(offsets.get(main, 0)) if main else 0))
        if cut > pos:
            main_parts.append(_text_html(main_text[pos:cut], main_md))
            plain.append(main_text[pos:cut])
        main_parts.append(_sent_html(str(message.get("text", ""))))
        plain.append(f"You: {message.get('text', '')}")
        pos = cut
    if pos < len(main_text):
        main_parts.append(_text_html(main_text[pos:], main_md))
        plain.append(main_text[pos:])
    log: list[str] = []
    if main_parts:
        log.append(f'<div class="streamnb-saved-main">{"".join(main_parts)}</div>')
    for channel, text in texts.items():
        if channel == main:
            continue
        log.append(
            f'<section aria-label="{_esc(channel)}">'
            f'<div class="streamnb-saved-label">{_esc(channel)}</div>'
            f"{_text_html(text, markdown and is_assistant_channel(channel))}</section>"
        )
        plain.append(f"[{channel}]\n{text}")
    if not log:
        log.append('<div class="streamnb-saved-note">no output</div>')
    parts.append(f'<div role="log" aria-label="Stream output">{"".join(log)}</div>')
    if error:
        parts.append(f'<div class="streamnb-saved-error" role="alert">{_esc(error)}</div>')
        plain.append(f"error: {error}")
    return {
        "text/html": _wrap("".join(parts), status=status),
        "text/plain": "\n".join(plain),
    }


def _messages_html(
    messages: Sequence[Mapping[str, Any]], render: str, plain: list[str]
) -> list[str]:
    shown = messages[-MAX_SAVED_MESSAGES:]
    parts: list[str] = []
    if len(messages) > len(shown):
        note = f"{len(messages) - len(shown)} earlier messages not shown"
        parts.append(f'<div class="streamnb-saved-note">{note}</div>')
        plain.append(f"({note})")
    for message in shown:
        role = str(message.get("role", ""))
        content = str(message.get("content", ""))
        status = str(message.get("status", ""))
        label = ROLE_LABELS.get(role, role)
        note = ""
        if role == "assistant" and status not in ("completed", ""):
            note = f'<div class="streamnb-saved-note">{_esc(status)}</div>'
        if role == "user":
            parts.append(_sent_html(content))
        else:
            parts.append(
                f'<div class="streamnb-saved-role">{_esc(label)}</div>'
                f"{_text_html(content, render == 'markdown' and role == 'assistant')}{note}"
            )
        suffix = f" [{status}]" if note else ""
        plain.append(f"{label}{suffix}: {content}")
    return parts


def chat_bundle(
    *,
    kind: str,
    transcript: Sequence[Mapping[str, Any]],
    render: str,
    saved_for: str | None = None,
) -> Bundle:
    """A :class:`~streamnb.ChatWidget`'s conversation as ``text/html`` and ``text/plain``.

    ``saved_for``: the widget's ``_uid``; its live view hides this copy while it is on
    the page (``data-streamnb-saved``).
    """
    count = len(transcript)
    line = f"{count} message{'s' if count != 1 else ''}"
    if saved_for:
        line += " · saved with the notebook (run it to chat again)"
    plain = [f"{kind} · {line}"]
    parts = [
        '<div class="streamnb-saved-header">'
        f'<span class="streamnb-saved-status" role="status">{_esc(line)}</span>'
        f'<span class="streamnb-saved-kind">{_esc(kind)}</span></div>'
    ]
    body = _messages_html(transcript, render, plain)
    if not body:
        body.append('<div class="streamnb-saved-note">no messages yet</div>')
    parts.append(f'<div role="log" aria-label="Conversation">{"".join(body)}</div>')
    return {
        "text/html": _wrap("".join(parts), status="ready", saved_for=saved_for),
        "text/plain": "\n".join(plain),
    }


def rooms_bundle(
    rooms: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
    *,
    render: str,
    saved_for: str | None = None,
) -> Bundle:
    """A :class:`~streamnb.ChatRoomsWidget`'s rooms, each with its messages.

    ``rooms``: ``(name, messages)`` per room, most recently active first.
    """
    line = f"{len(rooms)} room{'s' if len(rooms) != 1 else ''}"
    if saved_for:
        line += " · saved with the notebook (run it to chat again)"
    plain = [f"chat rooms · {line}"]
    parts = [
        '<div class="streamnb-saved-header">'
        f'<span class="streamnb-saved-status" role="status">{_esc(line)}</span></div>'
    ]
    for name, messages in rooms:
        plain.append(f"## {name}")
        body = _messages_html(messages, render, plain)
        if not body:
            body.append('<div class="streamnb-saved-note">no messages</div>')
        parts.append(
            f'<section class="streamnb-saved-room" aria-label="{_esc(name)}">'
            f'<div class="streamnb-saved-status">{_esc(name)}</div>'
            f'<div role="log" aria-label="{_esc(name)}">{"".join(body)}</div></section>'
        )
    return {
        "text/html": _wrap("".join(parts), status="ready", saved_for=saved_for),
        "text/plain": "\n".join(plain),
    }
