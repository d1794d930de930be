// streamnb front-end prelude, shared by widget.js, chat.js and rooms.js.
//
// Plain functions, no `export`: streamnb/widget/_assets.py joins this file in front of
// each widget's module (anywidget loads `_esm` as one module from a blob URL, so the
// widgets cannot `import` a sibling file). Text only ever enters the DOM as text nodes.

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

// One transcript message: role label, text (one text node, returned as `node` so a
// streaming reply can grow it) and, for an assistant reply that did not complete, a note
// with its status (left out when `quiet`).
function messageItem(message, text, quiet = false) {
  const item = element("div", "streamnb-message-item");
  item.dataset.role = message.role;
  item.dataset.status = message.status || "";
  const label = element("div", "streamnb-message-role");
  label.textContent = ROLE_LABELS[message.role] || message.role;
  const body = element("div", "streamnb-message-text");
  const node = document.createTextNode(text);
  body.append(node);
  item.append(label, body);
  if (!quiet && message.role === "assistant" && message.status !== "completed") {
    const note = element("div", "streamnb-message-note");
    note.textContent = message.status;
    item.append(note);
  }
  return { item, node };
}

// Run `write` (which changes what `log` shows); a log scrolled to its bottom stays there.
function keepAtBottom(log, write) {
  const follow = log.scrollHeight - log.scrollTop - log.clientHeight < 8;
  write();
  if (follow) log.scrollTop = log.scrollHeight;
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
