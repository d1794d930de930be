// streamnb's Markdown renderer: the source of streamnb/static/markdown.bundle.js.
//
// Built with esbuild by `npm run build` (js/build.mjs) into one minified ES module; the
// widgets load it once per page (streamnb/static/common.js, `markdownSupport`).
//
// CommonMark + GFM (tables, strikethrough, autolinks) parsed by markdown-it, turned into DOM
// nodes here, never into an HTML string: text enters the page through createTextNode and
// textContent only, so no part of a reply is ever handed to the HTML parser. Raw HTML in
// the reply is shown as text (markdown-it's `html: false`), links keep only http, https
// and mailto targets (anything else is shown as plain text) and open in a new tab with
// rel="noopener noreferrer"; images are shown as links, never loaded.
//
// Streaming: a MarkdownView keeps the text of its sealed (final) top-level blocks apart
// from the tail after them. A block is final once another top-level block starts after it
// and that block's first two lines are complete: CommonMark closes blocks line by line,
// and whether a line continues the block before it depends on that line and (for a GFM
// table's delimiter row) the next one, never on later text. Each render parses only the
// tail, appends the blocks that became final and replaces the DOM of the open block(s).
// The work per render is the size of the open block, so a reply's total work grows
// linearly with its length. Reference-style link definitions (`[x]: https://…`) are the
// one CommonMark construct that reaches back to earlier blocks; they are switched off and
// shown as text.

import MarkdownIt from "markdown-it";

const SAFE_PROTOCOLS = new Set(["http:", "https:", "mailto:"]);
const ALIGNMENTS = new Set(["left", "center", "right"]);
const COPY_LABEL = "Copy";
const COPIED_MS = 1500;
// Renders of all views on the page share one pacing: a frame renders dirty views (oldest
// first) until it has spent FRAME_BUDGET_MS, and a frame that spent `cost` ms is followed
// by the next one no sooner than (RENDER_GAP - 1) x cost later. Small open blocks cost well
// under a millisecond and render every frame; huge ones (one paragraph of 100,000 tokens,
// or twenty of them in twenty widgets) take at most about a quarter of the main thread,
// leaving the rest to the page and to the messages bringing the text.
const RENDER_GAP = 4;
const FRAME_BUDGET_MS = 12;
// Sealed blocks per chunk element (see MarkdownView).
const CHUNK_BLOCKS = 32;
// An open block longer than this (characters) streams as plain text: each render appends
// the new text instead of parsing the whole block again, until a blank line or a fence
// line arrives (then the tail is parsed, which seals the block if it closed) or the view
// finishes (then it is rendered as Markdown like any other). Parsing a block costs its
// length, so one huge paragraph (a log, 100,000 tokens without a blank line) made every
// render, and the click handler of a Stop waiting behind one, cost tens of milliseconds.
const OPEN_TEXT_CHARS = 32768;
// Where a plain-text open block may have closed: a blank line, or a code fence line.
const MAY_CLOSE = /\n[ \t]*\n|\n {0,3}(`{3,}|~{3,})/;
// Characters per block of a plain-text open block (see PlainText).
const PLAIN_BLOCK_CHARS = 8192;

// --- links ------------------------------------------------------------------------------

// The link target to put in href, or null to show the link as plain text. `url` comes from
// markdown-it's normalizeLink (entities decoded, percent-encoded); only absolute http,
// https and mailto URLs pass (`JaVaScRiPt:`, `data:`, relative paths do not).
export function safeHref(url) {
  if (typeof url !== "string" || url === "") return null;
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    return null; // relative, or not a URL
  }
  return SAFE_PROTOCOLS.has(parsed.protocol) ? parsed.href : null;
}

// GFM's extended www autolink ("www.commonmark.org/help"), linked as http://.
function addWwwAutolinks(linkify) {
  let validator = null;
  linkify.add("www.", {
    validate(text, pos, self) {
      if (validator === null) {
        const re = self.re;
        validator = new RegExp(
          `(?:(?:${re.get_domain().source})[.]){1,10}${re.get_domain_root().source}` +
            re.get_port().source +
            re.get_host_terminator().source +
            re.get_path().source,
          "iy",
        );
      }
      validator.lastIndex = pos;
      const match = validator.exec(text);
      return match ? match[0].length : 0;
    },
    normalize(match) {
      match.url = `http://${match.url}`;
    },
  });
}

export function createParser() {
  const md = new MarkdownIt("default", {
    html: false, // raw HTML stays text
    linkify: true, // GFM autolinks
    typographer: false, // the reply's characters, as written
    breaks: false,
  });
  md.disable(["reference"]);
  md.validateLink = (url) => safeHref(url) !== null;
  addWwwAutolinks(md.linkify);
  return md;
}

let sharedParser = null;
function parser() {
  if (sharedParser === null) sharedParser = createParser();
  return sharedParser;
}

// --- tokens to DOM ----------------------------------------------------------------------

function el(tag, className) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  return node;
}

function copyText(text) {
  if (navigator.clipboard && typeof navigator.clipboard.writeText === "function") {
    return navigator.clipboard.writeText(text);
  }
  return Promise.reject(new Error("no clipboard"));
}

// A code block: a header with the language and a Copy button, then <pre><code>.
function codeBlock(content, info) {
  const language = (info || "").trim().split(/\s+/)[0].replace(/[^\w#+.-]/g, "");
  const box = el("div", "streamnb-md-code");
  const header = el("div", "streamnb-md-code-header");
  const label = el("span", "streamnb-md-code-language");
  label.textContent = language;
  const copy = el("button", "streamnb-md-copy");
  copy.type = "button";
  copy.textContent = COPY_LABEL;
  copy.setAttribute("aria-label", "Copy code");
  header.append(label, copy);
  const pre = el("pre");
  const code = el("code", language ? `language-${language}` : "");
  code.textContent = content;
  pre.append(code);
  box.append(header, pre);
  copy.addEventListener("click", () => {
    copyText(code.textContent).then(
      () => {
        copy.textContent = "Copied";
      },
      () => {
        // No clipboard (an insecure page): select the code so Ctrl+C copies it.
        const range = document.createRange();
        range.selectNodeContents(code);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        copy.textContent = "Selected";
      },
    );
    setTimeout(() => {
      copy.textContent = COPY_LABEL;
    }, COPIED_MS);
  });
  return box;
}

// Inline tokens (the children of an `inline` token) into `parent`.
function renderInline(children, parent) {
  const stack = [parent];
  let top = parent;
  for (const token of children) {
    switch (token.type) {
      case "text":
      case "text_special":
      case "html_inline": // not produced with html: false; text if it ever is
        top.append(document.createTextNode(token.content));
        break;
      case "softbreak":
        top.append(document.createTextNode("\n"));
        break;
      case "hardbreak":
        top.append(el("br"));
        break;
      case "code_inline": {
        const code = el("code");
        code.textContent = token.content;
        top.append(code);
        break;
      }
      case "image": {
        // Not loaded: a link to it (when the URL is allowed), labelled with its alt text.
        const href = safeHref(token.attrGet("src"));
        const alt = token.content || token.attrGet("src") || "image";
        const node = href === null ? el("span", "streamnb-md-image") : link(href, "streamnb-md-image");
        node.textContent = alt;
        top.append(node);
        break;
      }
      case "link_open": {
        const href = safeHref(token.attrGet("href"));
        // a dropped link keeps its text, outside any element
        const node = href === null ? top : link(href);
        const title = token.attrGet("title");
        if (href !== null && title) node.title = title;
        if (node !== top) top.append(node);
        stack.push(node);
        top = node;
        break;
      }
      default:
        if (token.nesting === 1) {
          const node = el(token.tag || "span");
          top.append(node);
          stack.push(node);
          top = node;
        } else if (token.nesting === -1) {
          if (stack.length > 1) stack.pop();
          top = stack[stack.length - 1];
        } else if (token.content) {
          top.append(document.createTextNode(token.content));
        }
    }
  }
}

function link(href, className) {
  const a = el("a", className);
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

// Block tokens[from, to) into `parent`.
function renderBlocks(tokens, from, to, parent) {
  const stack = [parent];
  let top = parent;
  for (let i = from; i < to; i++) {
    const token = tokens[i];
    if (token.nesting === 1) {
      let node = top; // a tight list's paragraph has no element of its own
      if (!token.hidden) {
        node = el(token.tag);
        if (token.type === "ordered_list_open") {
          const start = token.attrGet("start"); // set by markdown-it when not 1
          if (start !== null && Number.isInteger(Number(start))) node.start = Number(start);
        } else if (token.type === "th_open" || token.type === "td_open") {
          const style = token.attrGet("style") || "";
          const align = style.replace("text-align:", "");
          if (ALIGNMENTS.has(align)) node.style.textAlign = align;
        } else if (token.type === "table_open") {
          const wrap = el("div", "streamnb-md-table");
          wrap.append(node);
          top.append(wrap);
          stack.push(node);
          top = node;
          continue;
        }
        top.append(node);
      }
      stack.push(node);
      top = node;
    } else if (token.nesting === -1) {
      if (stack.length > 1) stack.pop();
      top = stack[stack.length - 1];
    } else if (token.type === "inline") {
      renderInline(token.children || [], top);
    } else if (token.type === "fence") {
      top.append(codeBlock(token.content, token.info));
    } else if (token.type === "code_block") {
      top.append(codeBlock(token.content, ""));
    } else if (token.type === "hr") {
      top.append(el("hr"));
    } else if (token.content) {
      // html_block (not produced with html: false) or anything unknown: its text
      const p = el("p");
      p.textContent = token.content;
      top.append(p);
    }
  }
}

// Top-level blocks of a token list: [{from, to, line}] (token index range, first line).
function topLevelBlocks(tokens) {
  const blocks = [];
  let depth = 0;
  let from = 0;
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i];
    if (depth === 0) from = i;
    depth += token.nesting;
    if (depth === 0) {
      const opener = tokens[from];
      blocks.push({ from, to: i + 1, line: opener.map ? opener.map[0] : 0 });
    }
  }
  return blocks;
}

// Offset of the start of line `line` (0-based) in `text`.
function lineOffset(text, line) {
  let offset = 0;
  for (let k = 0; k < line; k++) {
    const next = text.indexOf("\n", offset);
    if (next < 0) return text.length;
    offset = next + 1;
  }
  return offset;
}

function countNewlines(text) {
  let count = 0;
  for (let at = text.indexOf("\n"); at >= 0; at = text.indexOf("\n", at + 1)) count += 1;
  return count;
}

// Line breaks as markdown-it sees them (\r\n and \r are \n), so line numbers match offsets.
function normalizeNewlines(text) {
  return text.indexOf("\r") < 0 ? text : text.replace(/\r\n?/g, "\n");
}

// The page-wide render queue (this module is loaded once per page and shared by every
// widget, see markdownSupport in common.js).
const dirtyViews = new Set(); // insertion order: the view waiting longest renders first
let frame = null;
let timer = null;
let notBefore = 0; // performance.now() before which no frame starts (see RENDER_GAP)

function kick() {
  if (frame !== null || timer !== null || dirtyViews.size === 0) return;
  const wait = notBefore - performance.now();
  if (wait > 0) {
    timer = setTimeout(() => {
      timer = null;
      kick();
    }, wait);
  } else {
    frame = requestAnimationFrame(renderFrame);
  }
}

function renderFrame() {
  frame = null;
  const started = performance.now();
  for (const view of dirtyViews) {
    dirtyViews.delete(view);
    view.flush();
    if (performance.now() - started > FRAME_BUDGET_MS) break;
  }
  const ended = performance.now();
  notBefore = ended + (ended - started) * (RENDER_GAP - 1);
  kick();
}

// Text shown as it is in `container`, in blocks (display: block) of about PLAIN_BLOCK_CHARS
// characters that end at white space: an append lays out the last block again, not the
// whole text (one text node of 300,000 characters took tens of milliseconds per frame).
class PlainText {
  constructor(container) {
    this.container = container;
    this.node = null; // the last block's text node
    this.length = 0; // its characters
  }

  append(text) {
    while (text) {
      if (this.node === null) this.newBlock();
      if (this.length < PLAIN_BLOCK_CHARS) {
        const take = Math.min(text.length, PLAIN_BLOCK_CHARS - this.length);
        this.node.appendData(text.slice(0, take));
        this.length += take;
        text = text.slice(take);
        continue;
      }
      const cut = text.search(/\s/); // a full block ends at the next white space
      if (cut < 0) {
        this.node.appendData(text);
        this.length += text.length;
        return;
      }
      this.node.appendData(text.slice(0, cut + 1));
      text = text.slice(cut + 1);
      this.node = null;
    }
  }

  newBlock() {
    const block = document.createElement("span");
    this.node = document.createTextNode("");
    block.append(this.node);
    this.container.append(block);
    this.length = 0;
  }
}

/**
 * A Markdown reply shown in `container` (which gets the class "streamnb-md"), as it streams.
 *
 * `append(text)` adds a delta and `reset(text)` replaces the whole text; the DOM follows on
 * a coming animation frame (paced page-wide, see RENDER_GAP), or at once with `flush()`.
 * `finish()` renders what is left and seals it. `options.around(write)` wraps each DOM
 * update (a log uses it to stay scrolled to its bottom).
 *
 * Sealed blocks go into chunks of CHUNK_BLOCKS blocks, so the reply's container holds a few
 * children, not thousands: the layout after each delta stays as cheap at the end of a long
 * reply as at its start (content-visibility on full chunks was measured to make it grow
 * with the number of chunks, so it is not used). The open block(s) sit at the end of the
 * last chunk. Where a block lands depends only on its index, so a reply streamed delta by
 * delta ends in the same DOM as the same text given at once.
 */
export class MarkdownView {
  constructor(container, options = {}) {
    this.container = container;
    container.classList.add("streamnb-md");
    this.around = options.around || ((write) => write());
    this.sealed = []; // text of the sealed blocks, in pieces (newlines normalized)
    this.tail = ""; // the text after them: the open block(s), parsed at each render
    this.live = []; // DOM nodes of the open block(s)
    this.chunk = null; // the last chunk element
    this.chunkBlocks = 0; // sealed blocks in it
    this.pendingCR = false; // the last delta ended in \r: a leading \n of the next is its pair
    this.dirty = false;
    this.drawn = 0; // characters of the tail the DOM shows (rendered, or as text by showNow)
    this.plain = null; // the PlainText of an open block shown as text (OPEN_TEXT_CHARS)
  }

  // The whole text so far (newlines normalized).
  get text() {
    if (this.sealed.length > 1) this.sealed = [this.sealed.join("")];
    return (this.sealed[0] || "") + this.tail;
  }

  append(text) {
    if (!text) return;
    if (this.pendingCR && text[0] === "\n") text = text.slice(1);
    this.pendingCR = text.endsWith("\r");
    // Only the tail grows: the sealed text is never touched again, so no string operation
    // here costs the length of the whole reply.
    this.tail += normalizeNewlines(text);
    this.schedule();
  }

  reset(text) {
    this.cancel();
    this.sealed = [];
    this.tail = "";
    this.live = [];
    this.chunk = null;
    this.chunkBlocks = 0;
    this.pendingCR = false;
    this.drawn = 0;
    this.plain = null;
    this.container.replaceChildren();
    this.append(text || "");
    this.schedule();
  }

  // Render on a coming frame (see renderFrame).
  schedule() {
    this.dirty = true;
    dirtyViews.add(this);
    kick();
  }

  // Render now if anything changed since the last render.
  flush() {
    if (!this.dirty) return;
    this.dirty = false;
    dirtyViews.delete(this);
    this.around(() => this.render(false));
  }

  // Show every character appended so far at once, without parsing it: the text appended
  // since the last render goes in as plain text at the end of the open block, and stays so
  // until the next render (append, flush or finish) renders it as Markdown. A Stop press
  // uses it: what arrived before the click is on screen within the click's handler, even
  // when a Markdown render of a huge open block would take tens of milliseconds.
  showNow() {
    this.cancel();
    let text = this.tail.slice(this.drawn);
    if (!text) return;
    // a rendered paragraph ends without its trailing white space: put it back in front
    let space = this.drawn;
    while (space > 0 && /\s/.test(this.tail[space - 1])) space -= 1;
    text = this.tail.slice(space, this.drawn) + text;
    this.drawn = this.tail.length;
    this.dirty = true; // rendered as Markdown by the next flush or finish
    this.around(() => {
      if (this.plain !== null) {
        this.plain.append(text);
        return;
      }
      const last = this.live[this.live.length - 1];
      const node = document.createTextNode(text);
      if (last !== undefined && last.nodeName === "P") {
        last.append(node); // the open paragraph goes on
      } else {
        const block = document.createElement("p");
        block.className = "streamnb-md-pending";
        block.append(node);
        this.live.push(block);
        this.openChunk().append(block);
      }
    });
  }

  // The text is complete: render it all and seal the last block too.
  finish() {
    this.cancel();
    this.dirty = false;
    this.around(() => this.render(true));
  }

  render(final) {
    const tail = this.tail;
    if (!final && this.plain !== null && !MAY_CLOSE.test(tail.slice(Math.max(0, this.drawn - 1)))) {
      this.plain.append(tail.slice(this.drawn)); // a huge open block goes on as text
      this.drawn = tail.length;
      return;
    }
    this.plain = null;
    const tokens = parser().parse(tail, {});
    const blocks = topLevelBlocks(tokens);
    for (const node of this.live) node.remove();
    this.live = [];
    if (blocks.length === 0) {
      this.drawn = tail.length;
      return;
    }
    // Blocks before `open` are final: the block after them has its first two lines
    // complete (a line decides whether it continues the block before it, looking one line
    // ahead at most: a GFM table's delimiter row).
    let open = blocks.length;
    if (!final) {
      const complete = countNewlines(tail);
      open -= 1;
      while (open > 0 && blocks[open].line + 2 > complete) open -= 1;
    }
    if (open > 0) {
      const sealed = document.createDocumentFragment();
      const end = open < blocks.length ? blocks[open].from : tokens.length;
      renderBlocks(tokens, 0, end, sealed);
      this.seal(sealed);
      const cut = open < blocks.length ? lineOffset(tail, blocks[open].line) : tail.length;
      this.sealed.push(tail.slice(0, cut));
      this.tail = tail.slice(cut);
    }
    if (open < blocks.length && !final && this.tail.length > OPEN_TEXT_CHARS) {
      const block = document.createElement("div");
      block.className = "streamnb-md-plain";
      this.plain = new PlainText(block);
      this.plain.append(this.tail);
      this.live = [block];
      this.openChunk().append(block);
    } else if (open < blocks.length) {
      const fragment = document.createDocumentFragment();
      renderBlocks(tokens, blocks[open].from, tokens.length, fragment);
      this.live = Array.from(fragment.childNodes);
      this.openChunk().append(fragment);
    }
    this.drawn = this.tail.length;
  }

  // The chunk the next block goes into (a new one when the last is full).
  openChunk() {
    if (this.chunk === null || this.chunkBlocks >= CHUNK_BLOCKS) {
      this.chunk = document.createElement("div");
      this.chunk.className = "streamnb-md-chunk";
      this.container.append(this.chunk);
      this.chunkBlocks = 0;
    }
    return this.chunk;
  }

  seal(fragment) {
    for (const node of Array.from(fragment.childNodes)) {
      const chunk = this.openChunk();
      chunk.append(node);
      this.chunkBlocks += 1;
    }
  }

  cancel() {
    this.dirty = false;
    dirtyViews.delete(this);
  }

  // Drop a pending render (the view is going away).
  dispose() {
    this.cancel();
  }
}

/**
 * Render `text` (Markdown) into `container` in one go: the DOM a MarkdownView ends with.
 * @param {HTMLElement} container
 * @param {string} text
 * @returns {MarkdownView}
 */
export function renderMarkdown(container, text) {
  const view = new MarkdownView(container);
  view.reset(text);
  view.finish();
  return view;
}

export const version = "1";
