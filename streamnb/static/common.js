// streamnb front-end prelude, shared by widget.js, chat.js and rooms.js.
//
// Plain functions, no `export`: streamnb/widget/_assets.py joins this file in front of
// each widget's module (anywidget loads `_esm` as one module from a blob URL, so the
// widgets cannot `import` a sibling file). Text only ever enters the DOM as text nodes,
// here and in the Markdown renderer (markdown.bundle.js, see "Markdown" below).

const ROLE_LABELS = { user: "You", assistant: "Assistant" };

// --- DOM --------------------------------------------------------------------------------

function element(tag, className, attributes = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

function button(label, className) {
  const node = element("button", `streamnb-button ${className}`, { type: "button" });
  node.textContent = label;
  return node;
}

// The status line: a coloured dot (hidden from screen readers) and the status text.
function statusBox() {
  const status = element("div", "streamnb-status", { role: "status" });
  const dot = element("span", "streamnb-dot", { "aria-hidden": "true" });
  const statusText = element("span", "streamnb-status-text");
  status.append(dot, statusText);
  return { status, statusText };
}

// A stream's header: status, kind and the Stop button.
function streamHeader() {
  const header = element("div", "streamnb-header");
  const { status, statusText } = statusBox();
  const kind = element("span", "streamnb-kind");
  const stop = button("Stop", "streamnb-stop");
  header.append(status, kind, stop);
  return { header, statusText, kind, stop };
}

function logBox(className, label) {
  return element("div", className, {
    role: "log",
    "aria-live": "polite",
    "aria-label": label,
    tabindex: "0",
  });
}

function errorBox() {
  return element("div", "streamnb-error", { role: "alert" });
}

// Show `text` in `node`, or hide the node when there is none.
function showText(node, text) {
  const shown = text || "";
  node.textContent = shown;
  node.hidden = !shown;
}

// The Message box and its Send button.
function messageForm() {
  const form = element("div", "streamnb-input");
  const input = element("input", "streamnb-message", {
    type: "text",
    "aria-label": "Message",
    placeholder: `Message (Enter sends, ${STOP_KEYS} stops)`,
    autocomplete: "off",
    // Keys typed here belong to this box, not to JupyterLab's notebook shortcuts.
    "data-lm-suppress-shortcuts": "true",
  });
  const send = button("Send", "streamnb-send");
  form.append(input, send);
  return { form, input, send };
}

// Stop's keyboard shortcut: Ctrl+. (Cmd+. on macOS), anywhere in the widget. Escape never
// stops: JupyterLab users press it to leave edit mode; in the Message box it only leaves
// the box.
const STOP_KEYS = /Mac|iPhone|iPad/.test(navigator.platform || "") ? "⌘." : "Ctrl+.";

function isStopShortcut(event) {
  return (event.ctrlKey || event.metaKey) && !event.altKey && event.key === ".";
}

// One transcript message: role label, an empty body (fill it with `textSink`) and, for an
// assistant reply that did not complete, a note with its status (left out when `quiet`).
function messageItem(message, quiet = false) {
  const item = element("div", "streamnb-message-item");
  item.dataset.role = message.role;
  item.dataset.status = message.status || "";
  const label = element("div", "streamnb-message-role");
  label.textContent = ROLE_LABELS[message.role] || message.role;
  const body = element("div", "streamnb-message-text");
  item.append(label, body);
  if (!quiet && message.role === "assistant" && message.status !== "completed") {
    const note = element("div", "streamnb-message-note");
    note.textContent = message.status;
    item.append(note);
  }
  return { item, body };
}

// Run `write` (which changes what `log` shows); a log scrolled to its bottom stays there.
function keepAtBottom(log, write) {
  const follow = log.scrollHeight - log.scrollTop - log.clientHeight < 8;
  write();
  if (follow) log.scrollTop = log.scrollHeight;
}

// --- Markdown ---------------------------------------------------------------------------
//
// The renderer (streamnb/static/markdown.bundle.js, about 100 KB minified) is not part of
// this module, which anywidget sends and imports once per widget model. It travels once
// per kernel in a MarkdownLibrary model that every widget in render="markdown" references
// in its `_markdown` trait ("IPY_MODEL_<id>"), and is imported once per page: a registry
// on globalThis, keyed by the source's digest, hands the same module to later widgets.

const MARKDOWN_MODULES = Symbol.for("streamnb.markdown.modules");
// initialize waits at most this long for the renderer, then shows text and re-renders
// once it arrives (the first delta is not held back longer)
const MARKDOWN_WAIT_MS = 1000;
const MODEL_REF = "IPY_MODEL_";

function importMarkdown(library) {
  const registry = (globalThis[MARKDOWN_MODULES] ??= new Map());
  const digest = library.get("digest");
  let loading = registry.get(digest);
  if (loading === undefined) {
    const url = URL.createObjectURL(new Blob([library.get("source")], { type: "text/javascript" }));
    loading = import(/* webpackIgnore: true */ url).finally(() => URL.revokeObjectURL(url));
    loading.catch(() => registry.delete(digest)); // a later widget tries again
    registry.set(digest, loading);
  }
  return loading;
}

// The MarkdownLibrary model `id`. While a page restores its widgets, a widget may look
// for it before the widget manager has registered it: ask again every 50 ms, for at most
// MARKDOWN_WAIT_MS.
async function libraryModel(model, id) {
  const deadline = performance.now() + MARKDOWN_WAIT_MS;
  for (;;) {
    try {
      return await model.widget_manager.get_model(id);
    } catch (error) {
      if (performance.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

// The Markdown renderer of one model: `module` is the loaded renderer, or null (render is
// "text", not loaded yet, or loading failed: text is shown). `load()` (re)loads it after
// `render` or `_markdown` changed and resolves to the module (or null).
function markdownSupport(model) {
  const support = { module: null, ready: Promise.resolve(null) };
  let generation = 0; // a load started later wins over one that finishes later
  support.load = () => {
    const current = ++generation;
    const ref = model.get("_markdown");
    if (model.get("render") !== "markdown" || typeof ref !== "string" || !ref.startsWith(MODEL_REF)) {
      support.module = null;
      support.ready = Promise.resolve(null);
      return support.ready;
    }
    support.ready = libraryModel(model, ref.slice(MODEL_REF.length))
      .then(importMarkdown)
      .then(
        (module) => {
          if (current === generation) support.module = module;
          return support.module;
        },
        (error) => {
          console.warn("[streamnb] the Markdown renderer did not load; showing text", error);
          if (current === generation) support.module = null;
          return null;
        },
      );
    return support.ready;
  };
  // Resolves once loaded, or after `ms` (the renderer then arrives later).
  support.settle = (ms = MARKDOWN_WAIT_MS) =>
    Promise.race([support.ready, new Promise((resolve) => setTimeout(resolve, ms))]);
  support.load();
  return support;
}

// Markdown is for the assistant's text: channel "assistant" or "assistant.<anything>".
function isAssistantChannel(channel) {
  return channel === "assistant" || channel.startsWith("assistant.");
}

// Text that grows in `container`: Markdown through `module` (the loaded renderer, see
// markdownSupport) when given, else one text node. `options.around(write)` wraps each DOM
// update of a Markdown view. Returns {append(text), reset(text), finish(), dispose()}.
function textSink(container, module, options = {}) {
  if (module) {
    const view = new module.MarkdownView(container, options);
    return {
      append: (text) => view.append(text),
      reset: (text) => view.reset(text),
      finish: () => view.finish(),
      dispose: () => view.dispose(),
    };
  }
  const node = document.createTextNode("");
  container.append(node);
  return {
    append: (text) => node.appendData(text),
    reset: (text) => {
      node.data = text;
    },
    finish() {},
    dispose() {},
  };
}

// A finished message's text in `body`: Markdown for the assistant when `module` is given.
function showMessageText(body, message, module) {
  const sink = textSink(body, message.role === "assistant" ? module : null);
  sink.reset(message.content || "");
  sink.finish();
}

// --- listeners --------------------------------------------------------------------------

// Registrations undone together by `dispose` (a view's or a model's cleanup).
function lifecycle(model) {
  const cleanups = [];
  const onCleanup = (cleanup) => {
    cleanups.push(cleanup);
  };
  return {
    onCleanup,
    listen(target, event, handler) {
      target.addEventListener(event, handler);
      onCleanup(() => target.removeEventListener(event, handler));
    },
    watch(event, handler) {
      model.on(event, handler);
      onCleanup(() => model.off(event, handler));
    },
    subscribe(store, listener) {
      store.listeners.add(listener);
      onCleanup(() => store.listeners.delete(listener));
    },
    dispose() {
      for (const cleanup of cleanups.splice(0)) cleanup();
    },
  };
}

// Enter (without Shift, unless `shiftEnter`) and Escape in a text box; not while an input
// method is composing.
function onEnterEscape(listen, input, enter, escape, { shiftEnter = false } = {}) {
  listen(input, "keydown", (event) => {
    if (event.isComposing) return;
    if (event.key === "Enter" && (shiftEnter || !event.shiftKey)) {
      event.preventDefault();
      enter();
    } else if (event.key === "Escape") {
      event.preventDefault();
      escape();
    }
  });
}

// Stop button and its shortcut (Ctrl+. / Cmd+. anywhere in `root`), and (when there is a
// Message box) Send button and Enter; Escape in the box only leaves it (blur).
// `actions.send(text)` gets non-blank text, after which the box is emptied; disabled
// buttons do nothing.
function wireMessageControls(listen, { root, stop, input, send }, actions) {
  const pressStop = () => {
    if (!stop.disabled) actions.stop();
  };
  listen(stop, "click", pressStop);
  stop.title = `Stop (${STOP_KEYS})`;
  listen(root, "keydown", (event) => {
    if (!isStopShortcut(event)) return;
    event.preventDefault();
    event.stopPropagation();
    pressStop();
  });
  if (input === null) return;
  const pressSend = () => {
    if (send.disabled) return;
    const text = input.value;
    if (text.trim() === "") return;
    actions.send(text);
    input.value = "";
  };
  listen(send, "click", pressSend);
  onEnterEscape(listen, input, pressSend, () => input.blur());
}

// What Stop and Send ask of a StreamWidget's or ChatWidget's kernel side (widget/_protocol.py).
// `onStop` runs first (a view shows "stopping…" at once, before the kernel says so).
function streamActions(model, onStop = () => {}) {
  return {
    stop: () => {
      onStop();
      model.send({ type: "stop" });
    },
    send: (text) => model.send({ type: "send", text }),
  };
}

// --- progress -----------------------------------------------------------------------------

// A progress payload as {fraction (0..1) or null, label}: the fraction comes from
// `fraction` (0..1), `percent` (0..100) or `done`/`total`; the label lists the other fields
// ("key: value"). The same rules as widget/_transcript.py's progress_parts.
function progressParts(progress) {
  if (progress === null || progress === undefined) return { fraction: null, label: "" };
  if (typeof progress !== "object" || Array.isArray(progress)) {
    return { fraction: null, label: JSON.stringify(progress) };
  }
  const num = (key) => (typeof progress[key] === "number" && Number.isFinite(progress[key]) ? progress[key] : null);
  let fraction = null;
  let used = [];
  let head = "";
  if (num("fraction") !== null) {
    fraction = num("fraction");
    used = ["fraction"];
  } else if (num("percent") !== null) {
    fraction = num("percent") / 100;
    used = ["percent"];
  } else if (num("done") !== null && num("total") !== null && num("total") > 0) {
    fraction = num("done") / num("total");
    used = ["done", "total"];
    head = `${num("done")} / ${num("total")}`;
  }
  if (fraction !== null) {
    fraction = Math.min(1, Math.max(0, fraction));
    head = head || `${Math.round(fraction * 100)}%`;
  }
  const rest = Object.entries(progress)
    .filter(([key]) => !used.includes(key))
    .map(([key, value]) => `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`);
  return { fraction, label: [head, ...rest].filter(Boolean).join(" · ") };
}

// A progress line: a bar (role="progressbar") when the payload has a fraction, and text.
function progressBox() {
  const box = element("div", "streamnb-progress");
  const bar = element("div", "streamnb-progress-bar", {
    role: "progressbar",
    "aria-label": "Progress",
    "aria-valuemin": "0",
    "aria-valuemax": "100",
  });
  const fill = element("div", "streamnb-progress-fill");
  bar.append(fill);
  const label = element("div", "streamnb-progress-label");
  box.append(bar, label);
  return {
    box,
    show(progress, settled) {
      const { fraction, label: text } = progressParts(progress);
      box.hidden = text === "";
      bar.hidden = fraction === null;
      if (fraction !== null) {
        const percent = Math.round(fraction * 100);
        bar.setAttribute("aria-valuenow", String(percent));
        fill.style.width = `${fraction * 100}%`;
      }
      // once settled the last progress is history, and says so
      label.textContent = settled && text ? `last progress · ${text}` : text;
    },
  };
}

// The status words: "stopping…" after Stop until the terminal arrives; a forced stop says so.
function statusWords(state, reason, { stopping = false, forced = false } = {}) {
  if (stopping && state === "running") return "stopping…";
  const words = reason && reason !== state ? `${state} — ${reason}` : state;
  return forced ? `${words} (forced: the handler did not stop within its grace period)` : words;
}

// --- saved copies (widget/_saved.py) --------------------------------------------------------

// A chat's saved transcript copy is its own output below the live widget: hide it while a
// view of that model is on the page. One <style> per model, counted over its views.
const SAVED_COPIES = Symbol.for("streamnb.saved.copies");

function hideSavedCopy(uid) {
  const registry = (globalThis[SAVED_COPIES] ??= new Map());
  let entry = registry.get(uid);
  if (entry === undefined) {
    const style = document.createElement("style");
    const selector = `[data-streamnb-saved="${CSS.escape(uid)}"]`;
    style.textContent =
      `${selector} { display: none !important; }\n` +
      `.jp-OutputArea-child:has(${selector}) { display: none !important; }`;
    document.head.append(style);
    entry = { style, views: 0 };
    registry.set(uid, entry);
  }
  entry.views += 1;
  return () => {
    entry.views -= 1;
    if (entry.views === 0) {
      entry.style.remove();
      registry.delete(uid);
    }
  };
}

// --- per-model text stores --------------------------------------------------------------

// One store per model, shared by all its views: `texts` (channel -> text so far), `lastSeq`
// (null: not in sync yet, waiting for a snapshot or for the first delta) and `listeners`.
function textStores(extra = {}) {
  const stores = new Map(); // model _uid -> store
  return {
    get(uid) {
      let store = stores.get(uid);
      if (store === undefined) {
        store = { ...extra, lastSeq: null, texts: new Map(), listeners: new Set() };
        stores.set(uid, store);
      }
      return store;
    },
    delete(uid) {
      stores.delete(uid);
    },
  };
}

function notify(store, event) {
  for (const listener of store.listeners) listener(event);
}

function resetStore(store, texts, upToSeq) {
  store.texts = new Map(Object.entries(texts || {}));
  store.lastSeq = upToSeq;
  notify(store, { type: "reset" });
}

// Ask the kernel for a snapshot until this store is in sync: a page reload can create the
// model before its comm is connected, and a hello sent then is lost. Re-sent every second,
// at most 30 times; returns the function that stops it (call it on dispose).
function askForSnapshot(store, model, stillNeeded = () => true) {
  let tries = 0;
  const ask = () => {
    if (store.lastSeq !== null || !stillNeeded() || tries >= 30) {
      clearInterval(timer);
      return;
    }
    tries += 1;
    model.send({ type: "hello" });
  };
  const timer = setInterval(ask, 1000);
  ask();
  return () => clearInterval(timer);
}

// Apply a delta that continues the store (from_seq === lastSeq + 1) and return true; after
// a gap, ask the kernel for a snapshot ({type: "hello"}) and return false. The caller
// notifies the listeners.
function applyDelta(store, model, msg) {
  if (msg.from_seq !== store.lastSeq + 1) {
    store.lastSeq = null; // gap: ask for a snapshot again
    model.send({ type: "hello" });
    return false;
  }
  for (const [channel, text] of Object.entries(msg.chunks)) {
    store.texts.set(channel, (store.texts.get(channel) || "") + text);
  }
  store.lastSeq = msg.to_seq;
  return true;
}
