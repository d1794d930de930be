// streamnb ChatWidget front end (anywidget AFM).
//
// The finished transcript is the synced `transcript` trait. The reply being streamed
// arrives as batched "delta" custom messages tagged with its transcript index (`turn`);
// the same rules as widget.js apply per turn: a per-model store fed from the first
// message, {type: "hello"} -> "snapshot" when the model was created late, and only the
// delta with from_seq === last_seq + 1 is applied. Text enters the DOM as text nodes only.

const STORES = new Map(); // model _uid -> store

function getStore(uid) {
  let store = STORES.get(uid);
  if (store === undefined) {
    store = { turn: -1, lastSeq: null, texts: new Map(), listeners: new Set() };
    STORES.set(uid, store);
  }
  return store;
}

function notify(store, event) {
  for (const listener of store.listeners) listener(event);
}

function resetStore(store, turn, texts, upToSeq) {
  store.turn = turn;
  store.texts = new Map(Object.entries(texts || {}));
  store.lastSeq = upToSeq;
  notify(store, { type: "reset" });
}

function applyMessage(store, model, msg) {
  if (!msg || typeof msg !== "object" || typeof msg.turn !== "number") return;
  if (msg.type === "snapshot") {
    if (msg.turn < store.turn) return;
    if (msg.turn === store.turn && store.lastSeq !== null && msg.upto_seq <= store.lastSeq) return;
    resetStore(store, msg.turn, msg.texts, msg.upto_seq);
  } else if (msg.type === "delta") {
    if (msg.turn < store.turn) return; // an older reply: already in the transcript
    if (msg.turn > store.turn) {
      if (msg.from_seq === 0) {
        resetStore(store, msg.turn, {}, -1); // a new reply from its first frame
      } else {
        store.turn = msg.turn; // joined a reply midway: ask for what we missed
        store.lastSeq = null;
        model.send({ type: "hello" });
        return;
      }
    }
    if (store.lastSeq === null || msg.to_seq <= store.lastSeq) return; // waiting, or duplicate
    if (msg.from_seq !== store.lastSeq + 1) {
      store.lastSeq = null;
      model.send({ type: "hello" });
      return;
    }
    for (const [channel, text] of Object.entries(msg.chunks)) {
      store.texts.set(channel, (store.texts.get(channel) || "") + text);
    }
    store.lastSeq = msg.to_seq;
    notify(store, { type: "append", chunks: msg.chunks });
  }
}

function initialize({ model }) {
  const uid = model.get("_uid");
  const store = getStore(uid);
  const onMessage = (msg) => applyMessage(store, model, msg);
  model.on("msg:custom", onMessage);
  if (model.get("busy")) model.send({ type: "hello" }); // a reply is streaming: catch up
  return () => {
    model.off("msg:custom", onMessage);
    STORES.delete(uid);
  };
}

function element(tag, className, attributes = {}) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

const ROLE_LABELS = { user: "You", assistant: "Assistant" };

function render({ model, el }) {
  const store = getStore(model.get("_uid"));
  const cleanups = [];
  const listen = (target, event, handler) => {
    target.addEventListener(event, handler);
    cleanups.push(() => target.removeEventListener(event, handler));
  };
  const watch = (event, handler) => {
    model.on(event, handler);
    cleanups.push(() => model.off(event, handler));
  };

  const root = element("div", "streamnb streamnb-chat");
  const header = element("div", "streamnb-header");
  const status = element("div", "streamnb-status", { role: "status" });
  const dot = element("span", "streamnb-dot", { "aria-hidden": "true" });
  const statusText = element("span", "streamnb-status-text");
  status.append(dot, statusText);
  const kind = element("span", "streamnb-kind");
  const stop = element("button", "streamnb-button streamnb-stop", { type: "button" });
  stop.textContent = "Stop";
  header.append(status, kind, stop);
  const log = element("div", "streamnb-log streamnb-transcript", {
    role: "log",
    "aria-live": "polite",
    "aria-label": "Conversation",
    tabindex: "0",
  });
  const error = element("div", "streamnb-error", { role: "alert" });
  const form = element("div", "streamnb-input");
  const input = element("input", "streamnb-message", {
    type: "text",
    "aria-label": "Message",
    placeholder: "Message (Enter sends, Escape stops)",
    autocomplete: "off",
    "data-lm-suppress-shortcuts": "true",
  });
  const send = element("button", "streamnb-button streamnb-send", { type: "button" });
  send.textContent = "Send";
  form.append(input, send);
  root.append(header, log, error, form);
  el.append(root);

  // --- transcript -----------------------------------------------------------------------
  let live = null; // {turn, node}: the text node of the reply being streamed
  const nearBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 8;
  const liveText = () => store.texts.get(model.get("main_channel")) || "";
  const showTranscript = () => {
    const follow = nearBottom();
    const transcript = model.get("transcript") || [];
    const items = transcript.map((message, index) => {
      const item = element("div", "streamnb-message-item");
      item.dataset.role = message.role;
      item.dataset.status = message.status || "";
      const label = element("div", "streamnb-message-role");
      label.textContent = ROLE_LABELS[message.role] || message.role;
      const body = element("div", "streamnb-message-text");
      const streaming = message.role === "assistant" && message.status === "running";
      const node = document.createTextNode(
        streaming ? (index === store.turn ? liveText() : "") : message.content || "",
      );
      body.append(node);
      item.append(label, body);
      if (streaming) live = { turn: index, node };
      else if (message.role === "assistant" && message.status !== "completed") {
        const note = element("div", "streamnb-message-note");
        note.textContent = message.status;
        item.append(note);
      }
      return item;
    });
    log.replaceChildren(...items);
    if (follow) log.scrollTop = log.scrollHeight;
  };
  const onStore = (event) => {
    if (live === null || live.turn !== store.turn) {
      showTranscript(); // the transcript may not show this turn yet
      return;
    }
    const follow = nearBottom();
    if (event.type === "reset") {
      live.node.data = liveText();
    } else {
      const text = event.chunks[model.get("main_channel")];
      if (text) live.node.appendData(text);
    }
    if (follow) log.scrollTop = log.scrollHeight;
  };
  store.listeners.add(onStore);
  cleanups.push(() => store.listeners.delete(onStore));
  watch("change:transcript", () => {
    live = null;
    showTranscript();
  });
  showTranscript();

  // --- state ------------------------------------------------------------------------------
  const showState = () => {
    const busy = model.get("busy");
    const state = busy ? model.get("status") || "opened" : "ready";
    const reason = busy ? "" : model.get("reason");
    const last = busy ? "" : model.get("status");
    statusText.textContent = last ? `ready — last reply ${last}${reason ? ` (${reason})` : ""}` : state;
    root.dataset.status = busy ? state : "ready";
    kind.textContent = model.get("kind");
    stop.disabled = !busy;
    send.disabled = busy;
    error.textContent = model.get("error") || "";
    error.hidden = !model.get("error");
  };
  for (const name of ["busy", "status", "reason", "error", "kind"]) {
    watch(`change:${name}`, showState);
  }
  showState();

  // --- actions ----------------------------------------------------------------------------
  const pressStop = () => {
    if (!stop.disabled) model.send({ type: "stop" });
  };
  const pressSend = () => {
    if (send.disabled) return;
    const text = input.value;
    if (text.trim() === "") return;
    model.send({ type: "send", text });
    input.value = "";
  };
  listen(stop, "click", pressStop);
  listen(send, "click", pressSend);
  listen(input, "keydown", (event) => {
    if (event.isComposing) return;
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      pressSend();
    } else if (event.key === "Escape") {
      event.preventDefault();
      pressStop();
    }
  });

  return () => {
    for (const cleanup of cleanups.splice(0)) cleanup();
    root.remove();
  };
}

export default { initialize, render };
