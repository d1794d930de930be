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
    placeholder: "Message (Enter sends, Escape stops)",
    autocomplete: "off",
    // Enter and Escape belong to this box, not to JupyterLab's notebook shortcuts.
    "data-lm-suppress-shortcuts": "true",
  });
  const send = button("Send", "streamnb-send");
  form.append(input, send);
  return { form, input, send };
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

// Stop button, and (when there is a Message box) Send button, Enter sends, Escape stops.
// `actions.send(text)` gets non-blank text, after which the box is emptied; disabled
// buttons do nothing.
function wireMessageControls(listen, { stop, input, send }, actions) {
  const pressStop = () => {
    if (!stop.disabled) actions.stop();
  };
  listen(stop, "click", pressStop);
  if (input === null) return;
  const pressSend = () => {
    if (send.disabled) return;
    const text = input.value;
    if (text.trim() === "") return;
    actions.send(text);
    input.value = "";
  };
  listen(send, "click", pressSend);
  onEnterEscape(listen, input, pressSend, pressStop);
}

// What Stop and Send ask of a StreamWidget's or ChatWidget's kernel side (widget/_protocol.py).
function streamActions(model) {
  return {
    stop: () => model.send({ type: "stop" }),
    send: (text) => model.send({ type: "send", text }),
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
