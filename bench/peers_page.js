// Page side of bench/bench_peers.py, added to every page before JupyterLab loads
// (Playwright's add_init_script). Everything lives on window.__peers; times are
// performance.now() (page clock, ms) unless named *Epoch.
//
// * A WebSocket subclass logs every frame of the kernel websocket (/channels):
//   recv rows [t, channel, msg_type, parent msg_id, bytes, execution_state or comm method]
//   and sent rows [t, channel, msg_type, msg_id].
// * watch(root, getter, target, options): when the contender's text (getter(root)) first
//   shows, when it reaches `target` characters (trimmed), and every change, driven by a
//   MutationObserver (mutation time) plus a requestAnimationFrame loop (paint time).
// * probeKernel / armKey: the kernel's and the page's responsiveness mid-stream.
(() => {
  const Native = window.WebSocket;
  const decoder = new TextDecoder();
  const P = {
    recv: [], sent: [], idle: {}, watcher: null, kernelProbe: null, keyProbe: null, clicks: [],
  };
  window.__peers = P;

  const describe = (data) => {
    if (typeof data === "string") {
      const m = JSON.parse(data);
      return [m.channel, m.header, m.parent_header, m.content, data.length];
    }
    // v1.kernel.websocket.jupyter.org: offsets, then channel, header, parent, metadata, content
    const view = new DataView(data);
    const at = (i) => Number(view.getBigUint64(8 * (i + 1), true));
    const part = (i) => decoder.decode(new Uint8Array(data, at(i), at(i + 1) - at(i)));
    const header = JSON.parse(part(1));
    let content = null;
    const type = header.msg_type;
    if (type === "status") content = JSON.parse(part(4));
    else if (type === "comm_msg") {
      const head = decoder.decode(new Uint8Array(data, at(4), Math.min(300, at(5) - at(4))));
      const m = /"method":\s*"(\w+)"/.exec(head);
      content = { data: { method: m ? m[1] : null } };
    }
    return [part(0), header, JSON.parse(part(2)), content, data.byteLength];
  };
  const extraOf = (type, content) => {
    if (content === null || content === undefined) return null;
    if (type === "status") return content.execution_state;
    if (type === "comm_msg") return content.data ? content.data.method : null;
    return null;
  };

  class LoggedWebSocket extends Native {
    constructor(...args) {
      super(...args);
      this.__peersKernel = String(args[0]).includes("/channels");
      if (this.__peersKernel) {
        this.addEventListener("message", (ev) => {
          const t = performance.now();
          try {
            const [channel, header, parent, content, size] = describe(ev.data);
            const type = header.msg_type;
            const parentId = parent ? parent.msg_id || null : null;
            const extra = extraOf(type, content);
            P.recv.push([t, channel, type, parentId, size, extra]);
            if (type === "status" && extra === "idle") P.idle[parentId] = t;
          } catch (e) {
            P.recv.push([t, null, null, null, 0, String(e)]);
          }
        });
      }
    }
    send(data) {
      if (this.__peersKernel) {
        try {
          const [channel, header] = describe(data);
          P.sent.push([performance.now(), channel, header.msg_type, header.msg_id]);
        } catch (e) {
          P.sent.push([performance.now(), null, null, null]);
        }
      }
      return super.send(data);
    }
  }
  window.WebSocket = LoggedWebSocket;

  // --- visible text -------------------------------------------------------------------

  // Elements under `root`, looking inside open shadow roots too (Panel renders in them).
  const deepAll = (root, selector) => {
    const found = [];
    const walk = (node) => {
      if (node.querySelectorAll) found.push(...node.querySelectorAll(selector));
      const all = node.querySelectorAll ? node.querySelectorAll("*") : [];
      for (const el of all) if (el.shadowRoot) walk(el.shadowRoot);
    };
    walk(root);
    return found;
  };
  const joined = (nodes) => (nodes.length ? nodes.map((n) => n.textContent).join("") : null);
  // Each getter returns the contender's text, or null while its view is not in the page.
  const GETTERS = {
    streamnb: (root) => {
      const m = root.querySelector(".streamnb-main");
      if (m) return m.textContent;
      // settled: the kernel replaced the view by its saved transcript (widget/_saved.py)
      const saved = root.querySelector(".streamnb-saved-main");
      return saved ? saved.textContent.replace(/\n$/, "") : null;
    },
    stdout: (root) =>
      joined(Array.from(root.querySelectorAll('[data-mime-type="application/vnd.jupyter.stdout"]'))),
    stderr: (root) =>
      joined(Array.from(root.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]'))),
    plain: (root) => joined(Array.from(root.querySelectorAll('[data-mime-type="text/plain"]'))),
    markdown: (root) => joined(Array.from(root.querySelectorAll('[data-mime-type="text/markdown"]'))),
    pre: (root) => {
      const e = root.querySelector("pre.peers-text");
      return e ? e.textContent : null;
    },
    textarea: (root) => {
      const e = root.querySelector("textarea");
      return e ? e.value : null;
    },
    panel: (root) => panelMessage(root, 0),
    panel_reply: (root) => panelMessage(root, 1), // after the user's message
  };
  // The text of Panel's `index`th chat message: its Markdown pane's shadow root holds
  // style and link elements and one div with the rendered text.
  function panelMessage(root, index) {
    const panes = deepAll(root, ".markdown.message");
    if (panes.length <= index || !panes[index].shadowRoot) return null;
    const divs = Array.from(panes[index].shadowRoot.children).filter(
      (c) => c.tagName === "DIV" && !c.classList.contains("scroll-button"),
    );
    return divs.map((d) => d.textContent).join("");
  }
  // A request straight to the kernel (no cell shows its output); returns its msg_id.
  P.request = (code) =>
    P.kernel().requestExecute({ code, silent: false, store_history: false }).msg.header.msg_id;
  P.text = (root, getter) => GETTERS[getter](root);
  P.deepCount = (root, selector) => deepAll(root, selector).length;

  P.watch = (root, getter, target, options) => {
    const opts = Object.assign({ poll: false, keep: false }, options || {});
    if (P.watcher) P.watcher.stop();
    const w = {
      getter, target, rootAt: null, first: null, firstMut: null, done: null, doneMut: null,
      len: 0, lastChange: null, lastChangeMut: null, lastMut: null, changes: [], dirty: true,
      stopped: false, checks: 0,
    };
    const fn = GETTERS[getter];
    // Called from the rAF loop and from Python's polling: compute the visible length.
    w.check = () => {
      if (w.stopped || (!w.dirty && !opts.poll)) return w;
      w.dirty = false;
      w.checks += 1;
      const now = performance.now();
      const text = fn(root);
      if (text === null) return w;
      if (w.rootAt === null) w.rootAt = opts.poll || w.lastMut === null ? now : w.lastMut;
      const len = text.trim().length;
      if (len !== w.len) {
        const mut = w.lastMut === null ? now : w.lastMut;
        w.len = len;
        w.lastChange = now;
        w.lastChangeMut = opts.poll ? now : mut;
        if (opts.keep) w.changes.push([w.lastChangeMut, now, len]);
        if (w.first === null && len > 0) {
          w.first = now;
          w.firstMut = w.lastChangeMut;
        }
        if (w.done === null && len >= target) {
          w.done = now;
          w.doneMut = w.lastChangeMut;
        }
      }
      return w;
    };
    const obs = new MutationObserver(() => {
      w.lastMut = performance.now();
      w.dirty = true;
    });
    obs.observe(root, { subtree: true, childList: true, characterData: true });
    const tick = () => {
      if (w.stopped) return;
      w.check();
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
    w.stop = () => {
      w.stopped = true;
      obs.disconnect();
    };
    w.state = () => {
      const { check, stop, state, ...plain } = w;
      return plain;
    };
    P.watcher = w;
    return w.state();
  };

  // Python's polling predicate: the text is complete, or the cell went idle and neither
  // the text nor the kernel websocket changed for quietMs.
  P.settled = (execId, quietMs) => {
    const w = P.watcher;
    if (w === null) return true;
    w.dirty = true;
    w.check();
    if (w.done !== null) return true;
    const now = performance.now();
    if (!(execId in P.idle)) return false;
    const last = P.recv.length ? P.recv[P.recv.length - 1][0] : 0;
    const lastChange = w.lastChange === null ? 0 : w.lastChange;
    return now - Math.max(last, lastChange) >= quietMs;
  };

  // --- responsiveness -----------------------------------------------------------------

  P.kernel = () => {
    const app = window.jupyterapp;
    const w = app.shell.currentWidget;
    return w.sessionContext.session.kernel;
  };

  // A trivial cell sent straight to the kernel: request -> reply, and -> idle.
  P.probeKernel = () => {
    const t0 = performance.now();
    const future = P.kernel().requestExecute({ code: "pass", silent: false, store_history: false });
    const probe = { id: future.msg.header.msg_id, t0, reply: null, done: null };
    future.onReply = () => {
      probe.reply = performance.now();
    };
    future.done.then(
      () => {
        probe.done = performance.now();
      },
      () => {
        probe.done = -1;
      },
    );
    P.kernelProbe = probe;
    return probe.id;
  };

  // The next "q" typed into `editor` ("q" is no command-mode shortcut: were the editor to lose
  // focus, the key must not act on the notebook, as "x", cut cell, would): keydown event time (the browser's input timestamp)
  // to the character in the editor's DOM, and to the next animation frame after it.
  P.armKey = (editor) => {
    const k = { down: null, landed: null, painted: null };
    P.keyProbe = k;
    const onDown = (ev) => {
      if (ev.key === "q" && k.down === null) k.down = ev.timeStamp;
    };
    window.addEventListener("keydown", onDown, true);
    const obs = new MutationObserver(() => {
      if (k.down === null || k.landed !== null) return;
      k.landed = performance.now();
      obs.disconnect();
      window.removeEventListener("keydown", onDown, true);
      requestAnimationFrame(() => {
        k.painted = performance.now();
      });
    });
    obs.observe(editor, { subtree: true, childList: true, characterData: true });
  };

  // Clicks (capture phase, so before any widget handler): [event time, label].
  document.addEventListener(
    "click",
    (ev) => {
      const target = ev.target instanceof Element ? ev.target : null;
      const label = target ? (target.closest("button, jp-button") || target).textContent : "";
      P.clicks.push([ev.timeStamp, performance.now(), String(label).trim().slice(0, 40)]);
    },
    true,
  );

  // Kernel clock sample: [page ms before, page ms after, kernel epoch s].
  P.clockSample = async () => {
    const t0 = performance.now();
    const future = P.kernel().requestExecute({
      code: "", silent: true, store_history: false,
      user_expressions: { t: "__import__('time').time()" },
    });
    const reply = await future.done;
    const t1 = performance.now();
    return [t0, t1, parseFloat(reply.content.user_expressions.t.data["text/plain"])];
  };

  // A silent request whose reply carries one expression's repr.
  P.evalExpression = async (code, expression) => {
    const future = P.kernel().requestExecute({
      code, silent: true, store_history: false, user_expressions: { v: expression },
    });
    const reply = await future.done;
    const v = reply.content.user_expressions.v;
    return v.status === "ok" ? v.data["text/plain"] : `error: ${v.ename}: ${v.evalue}`;
  };
})();
