// The chat rooms page (GET /rooms/): a client of WS /rooms/ws, seed 004's protocol.
//
// Text from the server never becomes HTML: user messages, names and errors are set with
// textContent; assistant text goes through the Markdown renderer the widgets use
// (markdown.bundle.js builds DOM nodes from markdown-it tokens, raw HTML stays text).
//
// Resume: the page keeps the requestId of the reply it is showing and the index of the
// last chunk it applied. After a drop it reconnects (backoff), switches back to its room
// and sends resume-request {requestId, afterIndex}: the server sends only the chunks after
// that one, so each chunk is applied once. A reply that ended meanwhile comes back stored,
// in the room's messages.
import { MarkdownView, renderMarkdown } from "./markdown.bundle.js";

const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 4000;
const DETACH_CLOSE_CODE = 1000; // closing with 1000 detaches at once (not a drop)

const token = new URLSearchParams(location.search).get("token");
const $ = (id) => document.getElementById(id);
const ui = {
  roomList: $("room-list"),
  newRoom: $("new-room"),
  roomName: $("room-name"),
  title: $("room-title"),
  rename: $("rename"),
  clear: $("clear"),
  remove: $("delete"),
  transcript: $("transcript"),
  notice: $("notice"),
  composer: $("composer"),
  message: $("message"),
  send: $("send"),
  stop: $("stop"),
  status: $("status"),
  renameDialog: $("rename-dialog"),
  newName: $("new-name"),
  renameSave: $("rename-save"),
  renameCancel: $("rename-cancel"),
  deleteDialog: $("delete-dialog"),
  deleteQuestion: $("delete-question"),
  deleteConfirm: $("delete-confirm"),
  deleteCancel: $("delete-cancel"),
};

let socket = null;
let leaving = false;
let retryMs = RETRY_FIRST_MS;
let rooms = [];
let activeRoom = null;
let reply = null; // {requestId, messageId, lastIndex, view, element, stopping}
let nextCall = 0;
const calls = new Map(); // rpc id -> {resolve, reject}

// --- helpers -------------------------------------------------------------------------------

function setStatus(text) {
  ui.status.textContent = text;
}

function notify(text) {
  ui.notice.textContent = text || "";
}

function newId(prefix) {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function roomById(id) {
  return rooms.find((r) => r.id === id) || null;
}

function nearBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 40;
}

function keepScrolled(write) {
  const stick = nearBottom(ui.transcript);
  write();
  if (stick) ui.transcript.scrollTop = ui.transcript.scrollHeight;
}

// --- the socket ----------------------------------------------------------------------------

function socketUrl() {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (token) url.searchParams.set("token", token);
  return url.href;
}

function connect() {
  const ws = new WebSocket(socketUrl());
  socket = ws;
  ws.addEventListener("open", () => onOpen(ws));
  ws.addEventListener("message", (event) => {
    if (ws === socket) onMessage(JSON.parse(event.data));
  });
  ws.addEventListener("close", () => onClose(ws));
}

async function onOpen(ws) {
  retryMs = RETRY_FIRST_MS;
  notify("");
  updateControls();
  if (activeRoom === null) {
    setStatus("connected");
    return;
  }
  setStatus(reply ? "resuming" : "connected");
  try {
    await call("switchRoom", [activeRoom]);
  } catch (error) {
    activeRoom = null;
    dropReply();
    renderRoom();
    return;
  }
  if (ws !== socket) return;
  const resume = { type: "resume-request" };
  if (reply) {
    resume.requestId = reply.requestId;
    resume.afterIndex = reply.lastIndex;
  }
  ws.send(JSON.stringify(resume));
}

function onClose(ws) {
  if (ws !== socket) return;
  socket = null;
  for (const pending of calls.values()) pending.reject(new Error("the connection was lost"));
  calls.clear();
  updateControls();
  if (leaving) return;
  setStatus("reconnecting");
  setTimeout(connect, retryMs);
  retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
}

function call(method, args) {
  return new Promise((resolve, reject) => {
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      reject(new Error("not connected; the page reconnects by itself"));
      return;
    }
    const id = "c" + nextCall++;
    calls.set(id, { resolve, reject });
    socket.send(JSON.stringify({ type: "rpc", id, method, args }));
  });
}

// --- server messages -----------------------------------------------------------------------

function onMessage(msg) {
  switch (msg.type) {
    case "rpc": {
      const pending = calls.get(msg.id);
      if (!pending) return;
      calls.delete(msg.id);
      if (msg.success) pending.resolve(msg.result);
      else pending.reject(new Error(msg.error));
      return;
    }
    case "cf_agent_state":
      rooms = msg.state.rooms;
      if (activeRoom !== null && !roomById(activeRoom)) {
        activeRoom = null;
        dropReply();
        renderRoom();
      }
      renderRooms();
      return;
    case "messages":
      if (msg.roomId === activeRoom) renderTranscript(msg.messages);
      return;
    case "stream-start":
      if (msg.roomId === activeRoom) startReply(msg.requestId, msg.messageId);
      return;
    case "stream-resuming":
      if (msg.roomId !== activeRoom) return;
      if (!reply || reply.requestId !== msg.requestId) startReply(msg.requestId, msg.messageId);
      setStatus(reply.stopping ? "stopping" : "streaming");
      return;
    case "stream-event":
      if (reply && msg.requestId === reply.requestId) applyChunk(msg);
      return;
    case "stream-done":
      if (reply && msg.requestId === reply.requestId) finishReply(msg.message);
      return;
    case "error":
      notify(msg.error.message);
      return;
  }
}

// --- rendering -----------------------------------------------------------------------------

function renderRooms() {
  const items = rooms.map((room) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "room";
    const name = document.createElement("span");
    name.className = "room-name";
    name.textContent = room.name;
    const count = document.createElement("span");
    count.className = "room-count";
    count.title = "messages";
    count.textContent = String(room.messageCount);
    button.append(name, " ", count);
    if (room.id === activeRoom) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => switchTo(room.id));
    item.append(button);
    return item;
  });
  ui.roomList.replaceChildren(...items);
  const room = roomById(activeRoom);
  ui.title.textContent = room ? room.name : "No room selected";
  updateControls();
}

function renderRoom() {
  ui.transcript.replaceChildren();
  renderRooms();
}

function messageElement(role, status) {
  const row = document.createElement("div");
  row.className = "message " + role;
  const label = document.createElement("div");
  label.className = "who";
  label.textContent = role === "user" ? "You" : "Assistant";
  const body = document.createElement("div");
  body.className = "body";
  row.append(label, body);
  if (status && status !== "sent" && status !== "completed") markStatus(row, status);
  return { row, body };
}

function markStatus(row, status) {
  let badge = row.querySelector(".badge");
  if (!badge) {
    badge = document.createElement("div");
    badge.className = "badge";
    row.append(badge);
  }
  badge.textContent = status;
}

function renderTranscript(messages) {
  const ended = reply && messages.find((m) => m.id === reply.messageId);
  if (ended) {
    dropReply(); // it ended while the page was away: shown stored, below
    setStatus(ended.status);
  }
  const rows = messages.map((m) => {
    const { row, body } = messageElement(m.role, m.status);
    if (m.role === "assistant") renderMarkdown(body, m.content);
    else body.textContent = m.content;
    return row;
  });
  keepScrolled(() => {
    ui.transcript.replaceChildren(...rows);
    if (reply) ui.transcript.append(reply.element); // the reply still streaming
  });
}

function addUserMessage(text) {
  const { row, body } = messageElement("user", "sent");
  body.textContent = text;
  keepScrolled(() => ui.transcript.append(row));
  return row;
}

function startReply(requestId, messageId) {
  dropReply();
  const { row, body } = messageElement("assistant", null);
  const view = new MarkdownView(body, { around: keepScrolled });
  reply = { requestId, messageId, lastIndex: -1, view, element: row, stopping: false };
  keepScrolled(() => ui.transcript.append(row));
  setStatus("streaming");
  updateControls();
}

function applyChunk(msg) {
  if (msg.index <= reply.lastIndex) return; // already applied: each chunk once
  reply.lastIndex = msg.index;
  const chunk = JSON.parse(msg.event);
  if (chunk.type === "text-delta") reply.view.append(chunk.delta);
  else if (chunk.type === "error") notify(chunk.errorText);
}

function finishReply(message) {
  reply.view.finish();
  if (message.status !== "completed") markStatus(reply.element, message.status);
  reply = null;
  setStatus(message.status);
  updateControls();
}

function dropReply() {
  if (!reply) return;
  reply.view.dispose();
  reply.element.remove();
  reply = null;
  updateControls();
}

function updateControls() {
  const open = socket !== null && socket.readyState === WebSocket.OPEN;
  const hasRoom = activeRoom !== null && roomById(activeRoom) !== null;
  ui.message.disabled = !hasRoom;
  ui.send.disabled = !open || !hasRoom || reply !== null;
  ui.stop.disabled = !open || reply === null || reply.stopping;
  ui.rename.disabled = !open || !hasRoom;
  ui.clear.disabled = !open || !hasRoom || reply !== null;
  ui.remove.disabled = !open || !hasRoom;
  ui.newRoom.querySelector("button").disabled = !open;
}

// --- user actions --------------------------------------------------------------------------

async function switchTo(roomId) {
  if (roomId === activeRoom) return;
  dropReply();
  activeRoom = roomId;
  renderRoom();
  try {
    await call("switchRoom", [roomId]);
    setStatus("idle");
    socket.send(JSON.stringify({ type: "resume-request" })); // a reply streaming there
  } catch (error) {
    notify(error.message);
  }
}

async function createRoom(event) {
  event.preventDefault();
  const name = ui.roomName.value.trim();
  if (!name) {
    notify("type a name for the new room");
    return;
  }
  try {
    dropReply();
    const roomId = await call("createRoom", [name]);
    activeRoom = roomId; // the server switched this connection to it: a new room is empty
    ui.roomName.value = "";
    renderRoom();
    setStatus("idle");
    notify("");
  } catch (error) {
    notify(error.message);
  }
}

async function sendMessage(event) {
  event.preventDefault();
  const text = ui.message.value;
  if (!text.trim() || reply || activeRoom === null) return;
  ui.message.value = "";
  const row = addUserMessage(text);
  const requestId = newId("req_");
  ui.send.disabled = true;
  try {
    await call("sendMessage", [text, requestId]);
    notify("");
  } catch (error) {
    row.remove();
    ui.message.value = text;
    notify(error.message);
    updateControls();
  }
}

function stop() {
  if (!reply || reply.stopping || !socket) return;
  reply.stopping = true;
  setStatus("stopping");
  socket.send(JSON.stringify({ type: "cancel", requestId: reply.requestId }));
  updateControls();
}

function openRename() {
  const room = roomById(activeRoom);
  if (!room) return;
  ui.newName.value = room.name;
  ui.renameDialog.showModal();
}

async function saveRename() {
  const roomId = activeRoom;
  ui.renameDialog.close();
  try {
    await call("renameRoom", [roomId, ui.newName.value]);
    notify("");
  } catch (error) {
    notify(error.message);
  }
}

async function clearRoom() {
  try {
    await call("clearRoom", [activeRoom]);
    notify("");
  } catch (error) {
    notify(error.message);
  }
}

function openDelete() {
  const room = roomById(activeRoom);
  if (!room) return;
  ui.deleteQuestion.textContent = `Delete the room “${room.name}” and all its messages?`;
  ui.deleteDialog.showModal();
}

async function confirmDelete() {
  const roomId = activeRoom;
  ui.deleteDialog.close();
  try {
    await call("deleteRoom", [roomId]);
    if (activeRoom === roomId) {
      activeRoom = null;
      dropReply();
      renderRoom();
    }
    notify("");
  } catch (error) {
    notify(error.message);
  }
}

function leave() {
  leaving = true;
  if (socket) socket.close(DETACH_CLOSE_CODE, "page closed");
}

ui.newRoom.addEventListener("submit", createRoom);
ui.composer.addEventListener("submit", sendMessage);
ui.stop.addEventListener("click", stop);
ui.rename.addEventListener("click", openRename);
ui.renameSave.addEventListener("click", saveRename);
ui.renameCancel.addEventListener("click", () => ui.renameDialog.close());
ui.newName.addEventListener("keydown", (event) => {
  if (event.key === "Enter") saveRename();
});
ui.clear.addEventListener("click", clearRoom);
ui.remove.addEventListener("click", openDelete);
ui.deleteConfirm.addEventListener("click", confirmDelete);
ui.deleteCancel.addEventListener("click", () => ui.deleteDialog.close());
window.addEventListener("pagehide", leave);
connect();
