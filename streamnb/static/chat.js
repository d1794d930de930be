// streamnb ChatWidget front end (anywidget AFM).
//
// The finished transcript is the synced `transcript` trait. The reply being streamed
// arrives as batched "delta" custom messages tagged with its transcript index (`turn`);
// the same rules as widget.js apply per turn: a per-model store fed from the first
// message, {type: "hello"} -> "snapshot" when the model was created late, and only the
// delta with from_seq === last_seq + 1 is applied. Text enters the DOM as text nodes only.
// Helpers (element, lifecycle, textStores, applyDelta, ...) come from common.js, joined in
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

function initialize({ model }) {
  const uid = model.get("_uid");
  const store = STORES.get(uid);
  const { watch, dispose } = lifecycle(model);
  watch("msg:custom", (msg) => applyMessage(store, model, msg));
  // a reply is streaming: catch up (re-asked until in sync, see askForSnapshot)
  const stopAsking = model.get("busy")
    ? askForSnapshot(store, model, () => model.get("busy"))
    : () => {};
  return () => {
    stopAsking();
    dispose();
    STORES.delete(uid);
  };
}

function render({ model, el }) {
  const store = STORES.get(model.get("_uid"));
  const { listen, watch, subscribe, dispose } = lifecycle(model);

  const root = element("div", "streamnb streamnb-chat");
  const { header, statusText, kind, stop } = streamHeader();
  const log = logBox("streamnb-log streamnb-transcript", "Conversation");
  const error = errorBox();
  const { form, input, send } = messageForm();
  root.append(header, log, error, form);
  el.append(root);

  // --- transcript -----------------------------------------------------------------------
  let live = null; // {turn, node}: the text node of the reply being streamed
  const liveText = () => store.texts.get(model.get("main_channel")) || "";
  const showTranscript = () => {
    keepAtBottom(log, () => {
      const transcript = model.get("transcript") || [];
      const items = transcript.map((message, index) => {
        const streaming = message.role === "assistant" && message.status === "running";
        const text = streaming ? (index === store.turn ? liveText() : "") : message.content || "";
        // the reply being streamed has no status note
        const { item, node } = messageItem(message, text, streaming);
        if (streaming) live = { turn: index, node };
        return item;
      });
      log.replaceChildren(...items);
    });
  };
  const onStore = (event) => {
    if (live === null || live.turn !== store.turn) {
      showTranscript(); // the transcript may not show this turn yet
      return;
    }
    keepAtBottom(log, () => {
      if (event.type === "reset") {
        live.node.data = liveText();
      } else {
        const text = event.chunks[model.get("main_channel")];
        if (text) live.node.appendData(text);
      }
    });
  };
  subscribe(store, onStore);
  watch("change:transcript", () => {
    live = null;
    showTranscript();
  });
  showTranscript();

  // --- state ------------------------------------------------------------------------------
  const showState = () => {
    const busy = model.get("busy");
    const state = busy ? model.get("status") || "running" : "ready";
    const reason = busy ? "" : model.get("reason");
    const last = busy ? "" : model.get("status");
    statusText.textContent = last ? `ready — last reply ${last}${reason ? ` (${reason})` : ""}` : state;
    root.dataset.status = busy ? state : "ready";
    kind.textContent = model.get("kind");
    stop.disabled = !busy;
    send.disabled = busy;
    showText(error, model.get("error"));
  };
  for (const name of ["busy", "status", "reason", "error", "kind"]) {
    watch(`change:${name}`, showState);
  }
  showState();

  // --- actions ----------------------------------------------------------------------------
  wireMessageControls(listen, { stop, input, send }, streamActions(model));

  return () => {
    dispose();
    root.remove();
  };
}

export default { initialize, render };
