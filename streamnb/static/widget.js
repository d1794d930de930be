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
    if (!applyDelta(store, model, msg)) return;
    acknowledge(store, model);
    notify(store, { type: "append", chunks: msg.chunks });
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

function describeProgress(progress) {
  if (progress === null || progress === undefined) return "";
  if (typeof progress !== "object" || Array.isArray(progress)) return JSON.stringify(progress);
  return Object.entries(progress)
    .map(([key, value]) => `${key}: ${typeof value === "string" ? value : JSON.stringify(value)}`)
    .join(" · ");
}

function render({ model, el }) {
  const store = STORES.get(model.get("_uid"));
  const { listen, watch, subscribe, onCleanup, dispose } = lifecycle(model);

  const root = element("div", "streamnb");
  const { header, statusText, kind, stop } = streamHeader();
  const progress = element("div", "streamnb-progress");
  const log = logBox("streamnb-log", "Stream output");
  const main = element("div", "streamnb-main");
  const channels = element("div", "streamnb-channels");
  log.append(main, channels);
  const error = errorBox();
  root.append(header, progress, log, error);
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
  const sinks = new Map(); // channel -> text sink
  const follow = (write) => keepAtBottom(log, write);
  const makeSink = (container) => {
    let live = null;
    let liveLen = 0;
    const seal = () => {
      if (live !== null) live.parentNode.classList.add("streamnb-sealed");
      live = null;
    };
    return {
      clear() {
        container.replaceChildren();
        live = null;
      },
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
      finish() {},
      dispose() {},
    };
  };
  const makeMarkdownSink = (container, module) => {
    const view = new module.MarkdownView(container, { around: follow });
    return {
      markdown: true,
      clear: () => view.reset(""),
      append: (text) => view.append(text),
      finish: () => view.finish(),
      dispose: () => view.dispose(),
    };
  };
  const sinkFor = (channel) => {
    let sink = sinks.get(channel);
    if (sink === undefined) {
      let container = main;
      if (channel !== model.get("main_channel")) {
        const section = element("section", "streamnb-channel");
        const label = element("div", "streamnb-channel-label");
        label.textContent = channel;
        container = element("div", "streamnb-channel-text");
        section.append(label, container);
        section.setAttribute("aria-label", channel);
        channels.append(section);
      }
      const module = store.markdown ? store.markdown.module : null;
      sink =
        module !== null && isAssistantChannel(channel)
          ? makeMarkdownSink(container, module)
          : makeSink(container);
      sinks.set(channel, sink);
    }
    return sink;
  };
  const dropSinks = () => {
    for (const sink of sinks.values()) sink.dispose();
    sinks.clear();
    main.replaceChildren();
    channels.replaceChildren();
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
        dropSinks(); // the render mode may have changed: new sinks
        for (const [channel, text] of store.texts) sinkFor(channel).append(text);
        if (model.get("settled")) for (const sink of sinks.values()) sink.finish();
      } else {
        for (const [channel, parts] of work) sinkFor(channel).append(parts.join(""));
      }
    });
  };
  const onStore = (event) => {
    if (event.type === "reset" || event.type === "render") {
      pending = "reset";
    } else if (pending !== "reset") {
      for (const [channel, text] of Object.entries(event.chunks)) {
        const sink = sinks.get(channel);
        if (sink !== undefined && sink.markdown) {
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
    if (frame === null) frame = requestAnimationFrame(writeDom);
  };
  subscribe(store, onStore);
  onCleanup(() => {
    if (frame !== null) cancelAnimationFrame(frame);
    for (const sink of sinks.values()) sink.dispose();
  });
  onStore({ type: "reset" });
  // Settled: render what is left at once (a Markdown view may be pacing a huge block).
  watch("change:settled", () => {
    if (!model.get("settled")) return;
    follow(() => {
      for (const sink of sinks.values()) sink.finish(); // text sinks: nothing to do
    });
  });

  // --- state --------------------------------------------------------------------------
  const showState = () => {
    const state = model.get("status") || "running";
    const reason = model.get("reason");
    statusText.textContent = reason && reason !== state ? `${state} — ${reason}` : state;
    root.dataset.status = state;
    kind.textContent = model.get("kind");
    const settled = model.get("settled");
    stop.disabled = settled;
    if (input !== null) {
      input.disabled = settled;
      send.disabled = settled;
    }
    const progressText = describeProgress(model.get("progress"));
    // once settled the last progress is history, and says so
    progress.textContent = settled && progressText ? `last progress · ${progressText}` : progressText;
    progress.hidden = progressText === "";
    showText(error, model.get("error"));
  };
  for (const name of ["status", "reason", "settled", "progress", "error", "kind"]) {
    watch(`change:${name}`, showState);
  }
  showState();

  // --- actions ------------------------------------------------------------------------
  wireMessageControls(listen, { stop, input, send }, streamActions(model));

  return () => {
    dispose();
    root.remove();
  };
}

export default { initialize, render };
