// streamnb ChatRoomsWidget front end (anywidget AFM). Wire format: streamnb/widget/_protocol.py.
//
// The room list is the synced `room_list` trait. Which room a view shows is this view's
// own state (seed 004's per-connection activeRoomId): every request carries this view's
// id and its selected room id, answers for another view are ignored, and broadcasts are
// kept only for the room shown. A streaming reply arrives as "delta" messages applied
// only when from_seq === last_seq + 1; after a gap the view asks for the room again.
// Text enters the DOM as text nodes only; replies as Markdown turned into DOM nodes
// (render="markdown", see markdownSupport in common.js), the user's messages as text.
// Helpers (element, button, lifecycle, messageForm, ...) come from common.js, joined in
// front of this file (streamnb/widget/_assets.py).

const SUPPORTS = new Map(); // model _uid -> markdownSupport, shared by the model's views

async function initialize({ model }) {
  const uid = model.get("_uid");
  const support = markdownSupport(model);
  SUPPORTS.set(uid, support);
  // Views render once this resolves: with the Markdown renderer when it came in time.
  await support.settle();
  return () => SUPPORTS.delete(uid);
}

function newViewId() {
  if (globalThis.crypto && typeof globalThis.crypto.randomUUID === "function") {
    return globalThis.crypto.randomUUID();
  }
  return `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}`;
}

function countLabel(count) {
  return `${count} message${count === 1 ? "" : "s"}`;
}

function render({ model, el }) {
  const view = newViewId();
  const { listen, watch, onCleanup, dispose } = lifecycle(model);

  // --- this view's state ------------------------------------------------------------------
  let selected = null; // id of the room shown
  let messages = []; // its stored messages
  let reply = null; // {messageId, lastSeq, text, sink}: the streaming reply shown
  let errorText = "";

  // --- DOM --------------------------------------------------------------------------------
  const root = element("div", "streamnb streamnb-rooms");
  const sidebar = element("nav", "streamnb-rooms-sidebar", { "aria-label": "Chat rooms" });
  const sideHeader = element("div", "streamnb-rooms-sidebar-header");
  const sideTitle = element("span", "streamnb-rooms-sidebar-title");
  sideTitle.textContent = "Rooms";
  const create = button("New room", "streamnb-rooms-create");
  sideHeader.append(sideTitle, create);
  const list = element("ul", "streamnb-rooms-list", { role: "listbox", "aria-label": "Rooms" });
  sidebar.append(sideHeader, list);

  const main = element("section", "streamnb-rooms-main");
  const header = element("div", "streamnb-header streamnb-rooms-header");
  const title = element("h3", "streamnb-rooms-title");
  const { status, statusText } = statusBox();
  const tools = element("div", "streamnb-rooms-tools");
  const rename = button("Rename", "streamnb-rooms-rename");
  const clear = button("Clear", "streamnb-rooms-clear");
  const remove = button("Delete", "streamnb-rooms-delete");
  const stop = button("Stop", "streamnb-stop");
  tools.append(rename, clear, remove, stop);
  const heading = element("div", "streamnb-rooms-heading");
  heading.append(title, status);
  header.append(heading, tools);

  const renameForm = element("div", "streamnb-input streamnb-rooms-rename-form");
  const renameInput = element("input", "streamnb-message", {
    type: "text",
    "aria-label": "Room name",
    maxlength: "100",
    autocomplete: "off",
    "data-lm-suppress-shortcuts": "true",
  });
  const renameSave = button("Save", "streamnb-send");
  const renameCancel = button("Cancel", "");
  renameForm.append(renameInput, renameSave, renameCancel);
  renameForm.hidden = true;

  const log = logBox("streamnb-log streamnb-transcript", "Conversation");
  const error = errorBox();
  const { form, input, send } = messageForm();
  main.append(header, renameForm, log, error, form);
  root.append(sidebar, main);
  el.append(root);

  // --- helpers ----------------------------------------------------------------------------
  const rooms = () => model.get("room_list") || [];
  const current = () => rooms().find((room) => room.id === selected) || null;
  const request = (type, fields = {}) => {
    model.send({ type, view: view, room_id: selected, ...fields });
  };
  const showError = (text) => {
    errorText = text || "";
    showText(error, errorText || model.get("error"));
  };

  // --- room list --------------------------------------------------------------------------
  const renderList = () => {
    const hadFocus = list.contains(document.activeElement);
    const items = rooms().map((room) => {
      const isSelected = room.id === selected;
      const item = element("li", "streamnb-rooms-option", {
        role: "option",
        "aria-selected": isSelected ? "true" : "false",
        "aria-label": `${room.name}, ${countLabel(room.message_count)}${room.busy ? ", replying" : ""}`,
        tabindex: isSelected ? "0" : "-1",
      });
      item.dataset.roomId = room.id;
      item.dataset.busy = room.busy ? "true" : "false";
      const name = element("span", "streamnb-rooms-name");
      name.textContent = room.name;
      const busy = element("span", "streamnb-dot", { "aria-hidden": "true" });
      const count = element("span", "streamnb-rooms-count", { "aria-hidden": "true" });
      count.textContent = String(room.message_count);
      item.append(busy, name, count);
      return item;
    });
    list.replaceChildren(...items);
    if (items.length > 0 && !items.some((item) => item.tabIndex === 0)) items[0].tabIndex = 0;
    if (hadFocus) {
      const focus = items.find((item) => item.tabIndex === 0);
      if (focus) focus.focus();
    }
  };

  const select = (roomId) => {
    if (roomId !== selected) {
      selected = roomId;
      messages = [];
      reply = null;
      renameForm.hidden = true;
      showError("");
      renderTranscript();
    }
    renderList();
    renderHeader();
    if (selected !== null) request("open");
  };

  listen(list, "click", (event) => {
    const item = event.target.closest("[role=option]");
    if (item && list.contains(item)) select(item.dataset.roomId);
  });
  listen(list, "keydown", (event) => {
    const ids = rooms().map((room) => room.id);
    if (ids.length === 0) return;
    const at = Math.max(0, ids.indexOf(selected));
    const moves = { ArrowDown: at + 1, ArrowUp: at - 1, Home: 0, End: ids.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    const next = Math.min(ids.length - 1, Math.max(0, moves[event.key]));
    select(ids[next]);
    const item = list.querySelector("[tabindex='0']");
    if (item) item.focus();
  });

  // --- header and state -------------------------------------------------------------------
  let stopping = null; // id of the room whose reply this view asked to stop ("stopping…")
  const renderHeader = () => {
    const room = current();
    const busy = room !== null && room.busy;
    if (room !== null && room.id === stopping && !busy) stopping = null; // it settled
    title.textContent = room ? room.name : "No room selected";
    const replies = messages.filter((m) => m.role === "assistant");
    const last = replies.length > 0 ? replies[replies.length - 1].status : "";
    let state = "ready";
    if (room === null) {
      statusText.textContent = rooms().length ? "choose a room" : "no rooms yet — press New room";
      state = "idle";
    } else if (busy && stopping === room.id) {
      statusText.textContent = "stopping…";
      state = "stopping";
    } else if (busy) {
      statusText.textContent = "streaming";
      state = "running";
    } else {
      statusText.textContent = last ? `ready — last reply ${last}` : "ready";
    }
    root.dataset.status = state;
    rename.disabled = room === null;
    clear.disabled = room === null || busy;
    remove.disabled = room === null;
    stop.disabled = !busy || stopping === room.id;
    send.disabled = room === null || busy;
    input.disabled = room === null;
  };

  // --- transcript -------------------------------------------------------------------------
  const support = SUPPORTS.get(model.get("_uid")) || markdownSupport(model);
  const markdown = () => support.module;
  const follow = (write) => keepAtBottom(log, write);
  const renderTranscript = () => {
    follow(() => {
      if (reply !== null && reply.sink) reply.sink.dispose();
      if (reply !== null) reply.sink = null;
      const items = messages.map((message) => {
        const streaming = message.role === "assistant" && message.status === "streaming";
        const live = streaming && reply !== null && reply.messageId === message.id;
        const { item, body } = messageItem(message);
        if (live) {
          reply.sink = textSink(body, markdown(), { around: follow });
          reply.sink.reset(reply.text);
        } else {
          showMessageText(body, message, markdown());
        }
        return item;
      });
      log.replaceChildren(...items);
    });
  };
  const rerender = () => renderTranscript();
  watch("change:render", () => support.load().then(rerender));
  watch("change:_markdown", () => support.load().then(rerender));
  if (support.module === null) support.ready.then((module) => module && rerender());

  // --- kernel messages --------------------------------------------------------------------
  const onMessages = (msg) => {
    messages = Array.isArray(msg.messages) ? msg.messages : [];
    const snap = msg.reply;
    if (snap && typeof snap === "object") {
      const ahead = reply !== null && reply.messageId === snap.message_id && reply.lastSeq >= snap.upto_seq;
      if (!ahead) reply = { messageId: snap.message_id, lastSeq: snap.upto_seq, text: snap.text || "", sink: null };
    } else {
      reply = null;
    }
    renderTranscript();
    renderHeader();
  };

  const onDelta = (msg) => {
    const streaming = messages.some(
      (m) => m.id === msg.message_id && m.role === "assistant" && m.status === "streaming",
    );
    if (!streaming) return; // an older reply, already final in the transcript
    if (reply === null || reply.messageId !== msg.message_id) {
      request("open"); // we missed the start: ask for the room again
      return;
    }
    if (msg.to_seq <= reply.lastSeq) return; // duplicate
    if (msg.from_seq !== reply.lastSeq + 1) {
      request("open"); // gap
      return;
    }
    reply.lastSeq = msg.to_seq;
    if (!msg.text) return;
    reply.text += msg.text;
    if (reply.sink) follow(() => reply.sink.append(msg.text));

  };

  const onCustom = (msg) => {
    if (!msg || typeof msg !== "object") return;
    if (msg.view !== undefined && msg.view !== null && msg.view !== view) return;
    if (msg.type === "created") {
      select(msg.room_id);
    } else if (msg.type === "error") {
      if (msg.room_id === null || msg.room_id === undefined || msg.room_id === selected) {
        showError(msg.message);
      }
    } else if (msg.room_id !== selected) {
      return;
    } else if (msg.type === "messages") {
      onMessages(msg);
    } else if (msg.type === "delta") {
      onDelta(msg);
    }
  };
  watch("msg:custom", onCustom);

  watch("change:room_list", () => {
    const ids = rooms().map((room) => room.id);
    if (selected !== null && !ids.includes(selected)) {
      select(ids.length > 0 ? ids[0] : null); // our room was deleted
      return;
    }
    if (selected === null && ids.length > 0) {
      select(ids[0]);
      return;
    }
    renderList();
    renderHeader();
  });
  watch("change:error", () => showError(errorText));

  // --- actions ----------------------------------------------------------------------------
  const openRename = () => {
    const room = current();
    if (room === null) return;
    renameInput.value = room.name;
    renameForm.hidden = false;
    renameInput.focus();
    renameInput.select();
  };
  const closeRename = () => {
    renameForm.hidden = true;
    rename.focus();
  };
  const saveRename = () => {
    const name = renameInput.value.trim();
    if (name === "") return;
    request("rename", { name });
    closeRename();
  };

  listen(create, "click", () => {
    showError("");
    model.send({ type: "create", view: view, room_id: null });
  });
  listen(rename, "click", openRename);
  listen(renameSave, "click", saveRename);
  listen(renameCancel, "click", closeRename);
  onEnterEscape(listen, renameInput, saveRename, closeRename, { shiftEnter: true });
  listen(clear, "click", () => {
    if (!clear.disabled) request("clear");
  });
  listen(remove, "click", () => {
    if (!remove.disabled) request("delete");
  });
  wireMessageControls(listen, { root, stop, input, send }, {
    stop: () => {
      const room = current();
      if (room !== null) stopping = room.id;
      renderHeader();
      request("stop");
    },
    send: (text) => {
      showError("");
      request("send", { text });
    },
  });

  // the transcript copy saved below this widget (widget/_saved.py) is hidden while it lives
  onCleanup(hideSavedCopy(model.get("_uid")));

  // --- start: show the most recently active room ------------------------------------------
  showError("");
  const first = rooms()[0];
  select(first ? first.id : null);

  return () => {
    if (reply !== null && reply.sink) reply.sink.dispose();
    dispose();
    root.remove();
  };
}

export default { initialize, render };
