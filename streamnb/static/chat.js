// streamnb ChatWidget front end (anywidget AFM).
//
// The finished transcript is the synced `transcript` trait. The reply being streamed
// arrives as batched "delta" custom messages tagged with its transcript index (`turn`);
// the same rules as widget.js apply per turn: a per-model store fed from the first
// message, {type: "hello"} -> "snapshot" when the model was created late, and only the
// delta with from_seq === last_seq + 1 is applied. Text enters the DOM as text nodes only;
// the assistant's replies as Markdown turned into DOM nodes (render="markdown", see
// markdownSupport in common.js), the user's messages as text. Helpers (element, lifecycle, textStores, applyDelta, ...) come from common.js, joined in
// front of this file (widget/_assets.py).

const STORES = textStores({ turn: -1 });

function resetTurn(store, turn, texts, upToSeq) {
  store.turn = turn;
  resetStore(store, texts, upToSeq);
}

function applyMessage(store, model, msg) {
  if (!msg || typeof msg !== "object" || typeof msg.turn !== "number") return;
  if (msg.type === "snapshot") {
    if (msg.turn < store.turn) return;
    if (msg.turn === store.turn && store.lastSeq !== null && msg.upto_seq <= store.lastSeq) return;
    resetTurn(store, msg.turn, msg.texts, msg.upto_seq);
  } else if (msg.type === "delta") {
    if (msg.turn < store.turn) return; // an older reply: already in the transcript
    if (msg.turn > store.turn) {
      if (msg.from_seq === 0) {
        resetTurn(store, msg.turn, {}, -1); // a new reply from its first frame
      } else {
        store.turn = msg.turn; // joined a reply midway: ask for what we missed
        store.lastSeq = null;
        model.send({ type: "hello" });
        return;
      }
    }
    if (store.lastSeq === null || msg.to_seq <= store.lastSeq) return; // waiting, or duplicate
    if (applyDelta(store, model, msg)) notify(store, { type: "append", chunks: msg.chunks });
  }
}

async function initialize({ model }) {
  const uid = model.get("_uid");
  const store = STORES.get(uid);
  const { watch, dispose } = lifecycle(model);
  store.markdown = markdownSupport(model);
  const rerender = () => notify(store, { type: "render" });
  watch("change:render", () => store.markdown.load().then(rerender));
  watch("change:_markdown", () => store.markdown.load().then(rerender));
  watch("msg:custom", (msg) => applyMessage(store, model, msg));
  // a reply is streaming: catch up (re-asked until in sync, see askForSnapshot)
  const stopAsking = model.get("busy")
    ? askForSnapshot(store, model, () => model.get("busy"))
    : () => {};
  // Views render once this resolves: with the Markdown renderer when it came in time.
  await store.markdown.settle();
  if (store.markdown.module === null) store.markdown.ready.then((module) => module && rerender());
  return () => {
    stopAsking();
    dispose();
    STORES.delete(uid);
  };
}

function render({ model, el }) {
  const store = STORES.get(model.get("_uid"));
  const { listen, watch, subscribe, onCleanup, dispose } = lifecycle(model);

  const root = element("div", "streamnb streamnb-chat");
  const { header, statusText, kind, stop } = streamHeader();
  const log = logBox("streamnb-log streamnb-transcript", "Conversation");
  const error = errorBox();
  const { form, input, send } = messageForm();
  root.append(header, log, error, form);
  el.append(root);

  // --- transcript -----------------------------------------------------------------------
  // Finished messages are rendered once and kept (keyed by index, role, status and text);
  // the reply being streamed grows in `live.sink` (Markdown or text, see textSink).
  let live = null; // {turn, sink}: the reply being streamed
  let rendered = new Map(); // transcript index -> {key, item}
  const markdown = () => (store.markdown ? store.markdown.module : null);
  const follow = (write) => keepAtBottom(log, write);
  const liveText = () => store.texts.get(model.get("main_channel")) || "";
  const showTranscript = () => {
    follow(() => {
      if (live !== null) live.sink.dispose();
      live = null;
      const transcript = model.get("transcript") || [];
      const kept = new Map();
      const items = transcript.map((message, index) => {
        const streaming = message.role === "assistant" && message.status === "running";
        if (streaming) {
          // the reply being streamed has no status note
          const { item, body } = messageItem(message, true);
          const sink = textSink(body, markdown(), { around: follow });
          sink.reset(index === store.turn ? liveText() : "");
          live = { turn: index, sink };
          return item;
        }
        const key = `${message.role}\u0000${message.status}\u0000${message.content}`;
        const known = rendered.get(index);
        if (known !== undefined && known.key === key) {
          kept.set(index, known);
          return known.item;
        }
        const { item, body } = messageItem(message);
        showMessageText(body, message, markdown());
        kept.set(index, { key, item });
        return item;
      });
      rendered = kept;
      log.replaceChildren(...items);
    });
  };
  const onStore = (event) => {
    if (event.type === "render") {
      rendered = new Map(); // the render mode changed: render every message again
      showTranscript();
      return;
    }
    if (live === null || live.turn !== store.turn) {
      showTranscript(); // the transcript may not show this turn yet
      return;
    }
    follow(() => {
      if (event.type === "reset") {
        live.sink.reset(liveText());
      } else {
        const text = event.chunks[model.get("main_channel")];
        if (text) live.sink.append(text);
      }
    });
  };
  subscribe(store, onStore);
  watch("change:transcript", showTranscript);
  onCleanup(() => {
    if (live !== null) live.sink.dispose();
  });
  showTranscript();

  // --- state ------------------------------------------------------------------------------
  let stopPressed = false; // "stopping…" at once, before the kernel says so
  const showState = () => {
    const busy = model.get("busy");
    if (!busy) stopPressed = false;
    const stopping = busy && (stopPressed || model.get("stopping"));
    const forced = !busy && model.get("forced");
    const state = busy ? model.get("status") || "running" : "ready";
    const reason = busy ? "" : model.get("reason");
    const last = busy ? "" : model.get("status");
    const lastWords = `${last}${reason ? ` (${reason})` : ""}${forced ? ", forced: the handler did not stop within its grace period" : ""}`;
    statusText.textContent = stopping ? "stopping…" : last ? `ready — last reply ${lastWords}` : state;
    root.dataset.status = stopping ? "stopping" : busy ? state : "ready";
    if (forced) root.dataset.forced = "true";
    else delete root.dataset.forced;
    kind.textContent = model.get("kind");
    stop.disabled = !busy || stopping;
    send.disabled = busy;
    showText(error, model.get("error"));
  };
  for (const name of ["busy", "status", "reason", "error", "kind", "stopping", "forced"]) {
    watch(`change:${name}`, showState);
  }
  showState();

  // --- actions ----------------------------------------------------------------------------
  const onStop = () => {
    stopPressed = true;
    showState();
  };
  wireMessageControls(listen, { root, stop, input, send }, streamActions(model, onStop));
  // the transcript copy saved below this widget (widget/_saved.py) is hidden while it lives
  onCleanup(hideSavedCopy(model.get("_uid")));

  return () => {
    dispose();
    root.remove();
  };
}

export default { initialize, render };
