// streamnb StreamWidget front end (anywidget AFM).
//
// Text arrives as batched "delta" custom messages (see streamnb/widget/_protocol.py).
// `initialize` keeps one text store per model, fed from the model's first message, so
// every view of the model (a re-display, a second view) renders the full text at once.
// A model created after deltas were sent (page reload: `_flushed` is already true) asks
// the kernel with {type: "hello"} and takes the "snapshot" answer; from then on it
// applies only the delta whose from_seq is last_seq + 1: no duplicates, no gaps. Stream text
// only ever enters the DOM as text nodes (textContent / appendData), never as HTML: as text
// (render="text", and channels that are not the assistant's), or as Markdown turned into
// DOM nodes by the renderer loaded once per page (markdownSupport, markdown.bundle.js).
// The main text is the main channel's (main_channel, else the first assistant channel,
// else the first channel written); each message sent to a bidi stream (the `sent` trait)
// is shown above the text that followed it. Stop: the button or Ctrl+. / Cmd+.; the
// status reads "stopping…" until the terminal arrives, and the text stays as it was at the
// click (deltas in flight are held; dropped if the stream ends cancelled: holdAfterStop). Once the stream settles the kernel
// replaces this view's output with a static transcript (widget/_saved.py).
// Helpers (element, lifecycle, textStores, applyDelta, ...) come from common.js, joined in
// front of this file (widget/_assets.py).

const STORES = textStores();
const BLOCK_CHARS = 8192; // characters per text block in a view (see render)

// Tell the kernel once that this front end holds the text (it then does not re-send it
// in final_texts; the front end keeps final_texts in its own state for the saved notebook).
function acknowledge(store, model) {
  if (store.acked) return;
  store.acked = true;
  model.send({ type: "ack" });
}

function applyMessage(store, model, msg) {
  if (!msg || typeof msg !== "object") return;
  if (msg.type === "snapshot") {
    if (store.lastSeq !== null && msg.upto_seq <= store.lastSeq) return; // already have it
    resetStore(store, msg.texts, msg.upto_seq);
    acknowledge(store, model);
  } else if (msg.type === "delta") {
    if (store.lastSeq === null) {
      if (msg.from_seq !== 0) return; // the snapshot we asked for will include it
      store.lastSeq = -1; // the stream's very first delta: nothing was missed
    }
    if (msg.to_seq <= store.lastSeq) return; // duplicate
    if (store.stopSeq !== undefined && store.stopSeq !== null) {
      holdAfterStop(store, model, msg);
      return;
    }
    if (!applyDelta(store, model, msg)) return;
    acknowledge(store, model);
    notify(store, { type: "append", chunks: msg.chunks });
  }
}

// After Stop the text stays as it was at the click: deltas already in flight are held,
// not shown. The terminal's delta decides: a stream that ended cancelled drops them (the
// kernel's transcript and final_texts also end at the stop point, widget/_stream.py); one
// that completed anyway (or failed) shows them all.
function holdAfterStop(store, model, msg) {
  if (msg.from_seq !== store.lastSeq + 1) {
    applyDelta(store, model, msg); // a gap: asks for a snapshot, as without Stop
    return;
  }
  store.held.push(msg.chunks);
  store.lastSeq = msg.to_seq;
  acknowledge(store, model);
  if (msg.status === "running") return;
  const held = store.held;
  store.held = [];
  if (msg.status === "cancelled") return;
  for (const chunks of held) {
    for (const [channel, text] of Object.entries(chunks)) {
      store.texts.set(channel, (store.texts.get(channel) || "") + text);
    }
    notify(store, { type: "append", chunks });
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
  const onSettled = () => {
    if (!model.get("settled")) return;
    if (store.lastSeq === null) {
      // A store that never got in sync takes the final text kept in the model's state.
      resetStore(store, model.get("final_texts"), Number.POSITIVE_INFINITY);
    } else if (store.acked) {
      // Local state only (no save_changes): what JupyterLab writes into the notebook.
      model.set("final_texts", Object.fromEntries(store.texts));
    }
  };
  watch("msg:custom", (msg) => applyMessage(store, model, msg));
  watch("change:settled", onSettled);
  let stopAsking = () => {};
  if (model.get("settled")) {
    onSettled(); // a saved notebook, or a reload after the end: the state has it all
  } else if (model.get("_flushed")) {
    // created late (page reload): deltas were missed
    stopAsking = askForSnapshot(store, model, () => !model.get("settled"));
  } // else: a new model; the first delta (from_seq 0) starts it, no snapshot needed
  // Views render once this resolves: with the Markdown renderer when it came in time.
  await store.markdown.settle();
  if (store.markdown.module === null) store.markdown.ready.then((module) => module && rerender());
  return () => {
    stopAsking();
    dispose();
    STORES.delete(uid);
  };
}

// The channel shown as the main text: `main_channel` when set, else the first assistant
// channel, else the first channel the stream wrote (widget/_transcript.py main_channel).
function mainChannelOf(model, texts) {
  const preferred = model.get("main_channel");
  if (preferred) return preferred;
  let first = null;
  for (const channel of texts.keys()) {
    if (isAssistantChannel(channel)) return channel;
    if (first === null) first = channel;
  }
  return first;
}

// Code points in `text` (a sent message's place is counted in code points, as in Python).
function codePoints(text) {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n -= 1;
        i += 1;
      }
    }
  }
  return n;
}

// The UTF-16 index after `count` code points of `text`.
function codeUnitIndex(text, count) {
  let i = 0;
  for (let k = 0; k < count && i < text.length; k++) {
    const c = text.charCodeAt(i);
    i += c >= 0xd800 && c <= 0xdbff && i + 1 < text.length ? 2 : 1;
  }
  return i;
}

function render({ model, el }) {
  const store = STORES.get(model.get("_uid"));
  const { listen, watch, subscribe, onCleanup, dispose } = lifecycle(model);

  const root = element("div", "streamnb");
  const { header, statusText, kind, stop } = streamHeader();
  const progress = progressBox();
  const log = logBox("streamnb-log", "Stream output");
  const main = element("div", "streamnb-main");
  const channels = element("div", "streamnb-channels");
  log.append(main, channels);
  const error = errorBox();
  root.append(header, progress.box, log, error);
  // only a bidi stream takes messages
  const { form, input, send } =
    model.get("mode") === "bidi" ? messageForm() : { form: null, input: null, send: null };
  if (form !== null) root.append(form);
  el.append(root);

  // --- text ---------------------------------------------------------------------------
  // Plain text lives in blocks of about BLOCK_CHARS characters: appending re-flows only the
  // live (last) block, and sealed blocks are skipped by layout while off screen. One long
  // text node would be re-laid out whole on every delta (O(total text) per delta). DOM
  // writes are batched to one per animation frame, however many deltas arrived meanwhile.
  // Markdown channels get a MarkdownView (markdown.bundle.js), which batches its own
  // renders per frame and re-renders only the open last block.
  //
  // The main channel is split into segments at the messages sent to the stream (the
  // `sent` trait: each with the code points every channel held when it arrived): each
  // sent message is shown ("You") above the text that followed it, and each segment has
  // a sink of its own.
  const sinks = new Map(); // channel -> text sink (for the main channel: its last segment)
  const follow = (write) => keepAtBottom(log, write);
  const makeSink = (container) => {
    let live = null;
    let liveLen = 0;
    const seal = () => {
      if (live !== null) live.parentNode.classList.add("streamnb-sealed");
      live = null;
    };
    return {
      append(text) {
        while (text.length > 0) {
          if (live === null) {
            const block = element("span", "streamnb-block");
            live = document.createTextNode("");
            block.append(live);
            container.append(block);
            liveLen = 0;
          }
          if (liveLen >= BLOCK_CHARS) {
            // Seal after a newline; text without one is sealed at a word boundary once the
            // block is 4x longer (a block boundary is a line break on screen).
            let cut = text.indexOf("\n");
            if (cut < 0 && liveLen >= 4 * BLOCK_CHARS) cut = text.search(/\s/);
            if (cut < 0) {
              live.appendData(text);
              liveLen += text.length;
              return;
            }
            live.appendData(text.slice(0, cut + 1));
            text = text.slice(cut + 1);
            seal();
            continue;
          }
          const take = text.slice(0, BLOCK_CHARS - liveLen);
          live.appendData(take);
          liveLen += take.length;
          text = text.slice(take.length);
        }
      },
      flush() {},
      showNow() {},
      finish() {},
      dispose() {},
    };
  };
  const makeMarkdownSink = (container, module) => {
    const view = new module.MarkdownView(container, { around: follow });
    return {
      markdown: true,
      append: (text) => view.append(text),
      flush: () => view.flush(),
      showNow: () => view.showNow(),
      finish: () => view.finish(),
      dispose: () => view.dispose(),
    };
  };
  const newSink = (channel, container) => {
    const module = store.markdown ? store.markdown.module : null;
    return module !== null && isAssistantChannel(channel)
      ? makeMarkdownSink(container, module)
      : makeSink(container);
  };
  let mainChannel = null; // the channel rendered in `main`
  let segments = []; // the main channel's sinks, one per segment (the last one is live)
  let mainPoints = 0; // code points of the main channel rendered so far
  let shownSent = 0; // sent messages shown so far
  const sentList = () => model.get("sent") || [];
  const sentAt = (message) => (message.offsets && message.offsets[mainChannel]) || 0;
  const showSent = (message) => {
    const { item, body } = messageItem({ role: "user", status: "sent" }, true);
    item.classList.add("streamnb-sent");
    body.textContent = message.text;
    main.append(item);
  };
  const newSegment = () => {
    const container = element("div", "streamnb-segment");
    main.append(container);
    const sink = newSink(mainChannel, container);
    segments.push(sink);
    sinks.set(mainChannel, sink);
    return sink;
  };
  // Append main-channel text, showing each sent message where it arrived.
  const appendMain = (text) => {
    const sent = sentList();
    if (shownSent >= sent.length) {
      if (text) sinks.get(mainChannel).append(text);
      return;
    }
    for (;;) {
      while (shownSent < sent.length && sentAt(sent[shownSent]) <= mainPoints) {
        showSent(sent[shownSent]);
        shownSent += 1;
        newSegment();
      }
      if (!text) return;
      const limit = shownSent < sent.length ? sentAt(sent[shownSent]) : Infinity;
      const points = codePoints(text);
      const take = Math.min(points, limit - mainPoints);
      const cut = take === points ? text.length : codeUnitIndex(text, take);
      if (cut > 0) sinks.get(mainChannel).append(text.slice(0, cut));
      mainPoints += take;
      text = text.slice(cut);
    }
  };
  const sinkFor = (channel) => {
    let sink = sinks.get(channel);
    if (sink === undefined) {
      const section = element("section", "streamnb-channel");
      const label = element("div", "streamnb-channel-label");
      label.textContent = channel;
      const container = element("div", "streamnb-channel-text");
      section.append(label, container);
      section.setAttribute("aria-label", channel);
      channels.append(section);
      sink = newSink(channel, container);
      sinks.set(channel, sink);
    }
    return sink;
  };
  const appendTo = (channel, text) => {
    if (channel === mainChannel) appendMain(text);
    else sinkFor(channel).append(text);
  };
  const dropSinks = () => {
    for (const sink of sinks.values()) sink.dispose();
    for (const sink of segments) sink.dispose();
    sinks.clear();
    segments = [];
    main.replaceChildren();
    channels.replaceChildren();
  };
  const showEmpty = () => {
    root.classList.toggle("streamnb-empty", store.texts.size === 0 && sentList().length === 0);
  };
  // Rebuild everything from the store: on reset, a render-mode change, a new main channel
  // or a new sent message.
  const rebuild = () => {
    dropSinks();
    mainChannel = mainChannelOf(model, store.texts);
    mainPoints = 0;
    shownSent = 0;
    if (mainChannel !== null || sentList().length > 0) {
      if (mainChannel === null) mainChannel = model.get("main_channel") || "assistant";
      newSegment();
      appendMain(store.texts.get(mainChannel) || "");
    }
    for (const [channel, text] of store.texts) {
      if (channel !== mainChannel) sinkFor(channel).append(text);
    }
    if (model.get("settled")) {
      for (const sink of segments) sink.finish();
      for (const sink of sinks.values()) sink.finish();
    }
    showEmpty();
  };
  let pending = null; // null: nothing to write; "reset"; or Map channel -> [text]
  let frame = null;
  const writeDom = () => {
    frame = null;
    const work = pending;
    pending = null;
    if (work === null) return;
    follow(() => {
      if (work === "reset") {
        rebuild();
        return;
      }
      for (const [channel, parts] of work) appendTo(channel, parts.join(""));
      showEmpty();
    });
  };
  const onStore = (event) => {
    if (event.type === "reset" || event.type === "render") {
      pending = "reset";
    } else if (pending !== "reset") {
      if (mainChannelOf(model, store.texts) !== mainChannel) {
        pending = "reset"; // the first text, or an assistant channel appeared: a new main
      } else {
        for (const [channel, text] of Object.entries(event.chunks)) {
          const sink = sinks.get(channel);
          if (sink !== undefined && sink.markdown && (channel !== mainChannel || shownSent >= sentList().length)) {
            sink.append(text); // a MarkdownView schedules its own render
            continue;
          }
          if (pending === null) pending = new Map();
          const parts = pending.get(channel);
          if (parts === undefined) pending.set(channel, [text]);
          else parts.push(text);
        }
        if (pending === null) return;
      }
    }
    if (frame === null) frame = requestAnimationFrame(writeDom);
  };
  subscribe(store, onStore);
  onCleanup(() => {
    if (frame !== null) cancelAnimationFrame(frame);
    for (const sink of sinks.values()) sink.dispose();
    for (const sink of segments) sink.dispose();
  });
  onStore({ type: "reset" });
  watch("change:sent", () => onStore({ type: "reset" }));
  watch("change:main_channel", () => onStore({ type: "reset" }));
  // Settled: render what is left at once (a Markdown view may be pacing a huge block).
  watch("change:settled", () => {
    if (!model.get("settled")) return;
    follow(() => {
      for (const sink of segments) sink.finish(); // text sinks: nothing to do
      for (const sink of sinks.values()) sink.finish();
    });
  });

  // --- state --------------------------------------------------------------------------
  let stopPressed = false; // "stopping…" at once, before the kernel says so
  const showState = () => {
    const state = model.get("status") || "running";
    const settled = model.get("settled");
    const stopping = !settled && (stopPressed || model.get("stopping"));
    const forced = model.get("forced");
    statusText.textContent = statusWords(state, model.get("reason"), { stopping, forced });
    root.dataset.status = stopping ? "stopping" : state;
    if (forced) root.dataset.forced = "true";
    else delete root.dataset.forced;
    kind.textContent = model.get("kind");
    stop.disabled = settled || stopping;
    if (input !== null) {
      input.disabled = settled;
      send.disabled = settled || stopping;
    }
    progress.show(model.get("progress"), settled);
    showText(error, model.get("error"));
  };
  for (const name of ["status", "reason", "settled", "progress", "error", "kind", "stopping", "forced"]) {
    watch(`change:${name}`, showState);
  }
  showState();

  // --- actions ------------------------------------------------------------------------
  const onStop = () => {
    stopPressed = true;
    showState();
    // The stop point: what this page shows now (text received but not drawn yet is drawn
    // at once: Markdown as plain text until the settled render, which a huge open block
    // would delay by tens of milliseconds); later deltas are held (holdAfterStop).
    if (store.stopSeq === undefined || store.stopSeq === null) {
      if (pending !== null) {
        if (frame !== null) cancelAnimationFrame(frame);
        writeDom(); // text waiting for the next frame
      }
      for (const sink of sinks.values()) sink.showNow();
      for (const sink of segments) sink.showNow();
      store.stopSeq = store.lastSeq === null ? -1 : store.lastSeq;
      store.held = [];
    }
    return { shown_seq: store.stopSeq };
  };
  wireMessageControls(listen, { root, stop, input, send }, streamActions(model, onStop));

  return () => {
    dispose();
    root.remove();
  };
}

export default { initialize, render };
