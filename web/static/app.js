// The demo page's UI. All protocol work goes through client.js.
import { SwitchboardClient } from "./client.js";

const $ = (id) => document.getElementById(id);

const ROOM = "#room"; // conversation keys: ROOM, or "@" + peer user id
const MAX_ITEMS = 500; // per conversation

// Human text for every error code of the protocol (docs/protocol.md, "Errors").
const ERROR_TEXT = {
  missing_action: () => "Enter an action to join.",
  invalid_action: () => "That action is not valid: use 1–64 letters, digits, or _ . : -",
  invalid_user: () => "That user ID is not valid: 1–256 bytes without control characters.",
  not_online: () => "The server expected the sign-in message first.",
  online_timeout: () => "The server gave up waiting for the sign-in.",
  already_online: () => "This connection is already online.",
  unauthorized: () => "The token is missing, invalid or expired.",
  user_mismatch: () => "The user ID does not match the token's user.",
  token_expired: () => "Your token expired. Enter a new token and connect again.",
  invalid_json: () => "The server could not read a message (invalid JSON).",
  binary_unsupported: () => "The server accepts text messages only.",
  invalid_to: () => "The recipient is not a valid user ID.",
  invalid_id: () => "The message id is not valid.",
  user_offline: (e) => `${e.to ?? "That user"} is offline: not delivered.`,
  reserved_type: () => "That message type is reserved by the server.",
  rate_limited: () => "Too many messages: slow down. This one was not delivered.",
  unavailable: () => "The server's store is unavailable: the message may not have reached everyone. Try again.",
  internal: () => "The server had an internal error.",
};

function errorText(err) {
  const f = ERROR_TEXT[err.code];
  if (f) return f(err);
  return err.message || `Error: ${err.code}`;
}

// ---- state ----------------------------------------------------------------

let client = null;
let me = null; // user id from `ready`
let action = null;
let lastUserId = null; // as typed in the form
let focusAfterReady = false;
let everOnline = false;
const users = new Set();
const userItems = new Map(); // user id -> <li>
const conversations = new Map(); // key -> {key, peer, items: [], unread}
const pending = new Map(); // request id -> item awaiting ack
let active = ROOM;
let countdown = null;

conversations.set(ROOM, { key: ROOM, peer: null, items: [], unread: 0 });

// ---- elements -------------------------------------------------------------

const form = $("connect");
const userField = $("user-id");
const actionField = $("action");
const tokenField = $("token");
const connectError = $("connect-error");
const disconnectButton = $("disconnect-button");
const statusEl = $("status");
const statusText = $("status-text");
const usersList = $("users");
const usersEmpty = $("users-empty");
const peopleToggle = $("people-toggle");
const settingsToggle = $("settings-toggle");
const tabsEl = $("tabs");
const log = $("log");
const compose = $("compose");
const messageField = $("message");
const sendButton = $("send");

// ---- connection -----------------------------------------------------------

function connect() {
  const userId = userField.value.trim();
  const act = actionField.value.trim();
  const token = tokenField.value.trim();
  hideConnectError();
  if (!act) {
    showConnectError(ERROR_TEXT.missing_action());
    actionField.focus();
    return;
  }
  if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(act)) {
    showConnectError(ERROR_TEXT.invalid_action());
    actionField.focus();
    return;
  }
  try {
    sessionStorage.setItem("switchboard", JSON.stringify({ userId, action: act }));
  } catch {
    // Storage may be disabled; remembering the form is a convenience.
  }
  if (client) client.close();
  if (action !== act || lastUserId !== userId) resetConversations();
  action = act;
  lastUserId = userId;
  focusAfterReady = true;

  client = new SwitchboardClient({ userId, action: act, token: token || undefined });
  client.addEventListener("state", (e) => onState(e.detail));
  client.addEventListener("ready", (e) => onReady(e.detail));
  client.addEventListener("presence", (e) => setUsers(e.detail.users));
  client.addEventListener("join", (e) => addUser(e.detail.user_id));
  client.addEventListener("leave", (e) => removeUser(e.detail.user_id));
  client.addEventListener("message", (e) => onMessage(e.detail));
  client.addEventListener("ack", (e) => onAck(e.detail));
  client.addEventListener("error", (e) => onError(e.detail));
  client.addEventListener("status", (e) => system(ROOM, `Disconnected by the server: ${e.detail.reason || "no reason given"}.`));
  client.connect();
}

function onState(s) {
  stopCountdown();
  statusEl.dataset.state = s.state;
  const online = s.state === "online";
  sendButton.disabled = !online;
  disconnectButton.hidden = s.state === "offline" || s.state === "idle";
  document.body.classList.toggle("online", online);
  switch (s.state) {
    case "connecting":
      setStatus("Connecting…");
      break;
    case "online":
      setStatus(`Online as ${s.session.user_id} in ${s.session.action}`);
      settingsToggle.setAttribute("aria-expanded", "false");
      document.body.classList.remove("settings-open");
      break;
    case "reconnecting":
      connectionLost();
      startCountdown(s.at);
      break;
    case "offline": {
      connectionLost();
      let why = "";
      if (s.error) why = errorText(s.error);
      else if (s.reason && s.reason !== "closed") why = s.reason;
      setStatus(why ? `Offline: ${why}` : "Offline");
      if (s.error) showConnectError(errorText(s.error));
      break;
    }
  }
}

function onReady(session) {
  const again = everOnline && me === session.user_id;
  me = session.user_id;
  everOnline = true;
  hideConnectError();
  messageField.disabled = false;
  updatePlaceholder();
  if (again) system(ROOM, "Reconnected.");
  else system(ROOM, `Connected as ${me} to ${session.action}.`);
  if (focusAfterReady) {
    focusAfterReady = false;
    messageField.focus();
  }
  renderUsers();
}

function connectionLost() {
  if (users.size || me) {
    users.clear();
    renderUsers();
  }
  for (const item of pending.values()) {
    if (!item.settled) item.setNote("Not confirmed: the connection was lost.", "error");
  }
  pending.clear();
}

function setStatus(text) {
  statusText.textContent = text;
}

function startCountdown(at) {
  // The status region announces "Reconnecting"; the seconds tick in an
  // aria-hidden span so screen readers are not told every second.
  const seconds = document.createElement("span");
  seconds.setAttribute("aria-hidden", "true");
  statusText.replaceChildren("Reconnecting", seconds);
  const tick = () => {
    const s = Math.max(0, Math.ceil((at - Date.now()) / 1000));
    seconds.textContent = ` in ${s} s…`;
  };
  tick();
  countdown = setInterval(tick, 1000);
}

function stopCountdown() {
  if (countdown) clearInterval(countdown);
  countdown = null;
}

function showConnectError(text) {
  connectError.textContent = text;
  connectError.hidden = false;
}

function hideConnectError() {
  connectError.hidden = true;
  connectError.textContent = "";
}

// ---- presence -------------------------------------------------------------

function setUsers(list) {
  users.clear();
  for (const u of list || []) if (typeof u === "string") users.add(u);
  renderUsers();
}

function addUser(u) {
  if (typeof u !== "string" || users.has(u)) return;
  users.add(u);
  renderUsers();
}

function removeUser(u) {
  if (!users.delete(u)) return;
  renderUsers();
}

function renderUsers() {
  const sorted = [...users].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  // Remove first, then insert: existing items never move, so a focused
  // item keeps its focus.
  for (const [u, li] of userItems) {
    if (!users.has(u)) {
      li.remove();
      userItems.delete(u);
    }
  }
  let ref = usersList.firstChild;
  for (const u of sorted) {
    let li = userItems.get(u);
    if (!li) {
      li = userItem(u);
      userItems.set(u, li);
    }
    updateUserItem(u, li);
    if (li === ref) ref = ref.nextSibling;
    else usersList.insertBefore(li, ref);
  }
  const n = String(users.size);
  $("people-count").textContent = n;
  $("people-heading-count").textContent = n;
  usersEmpty.hidden = users.size > 0;
  usersEmpty.textContent = client && client.state !== "offline" ? "Waiting for the server…" : "Connect to see who is online.";
  renderTabs(); // a peer going on- or offline changes its tab
}

function userItem(u) {
  const li = document.createElement("li");
  const b = document.createElement("button");
  b.type = "button";
  b.className = "user";
  b.textContent = u; // the item's own text is exactly the user id
  b.addEventListener("click", () => {
    openConversation("@" + u);
    peopleToggle.setAttribute("aria-expanded", "false");
    messageField.focus();
  });
  li.append(b);
  return li;
}

function updateUserItem(u, li) {
  const b = li.firstChild;
  const conv = conversations.get("@" + u);
  const unread = conv ? conv.unread : 0;
  // Decorations are CSS generated content so the item's text stays the id.
  toggleData(b, "you", u === me);
  toggleData(b, "unread", unread > 0 ? String(unread) : null);
  const desc = [u === me ? "you" : "", unread ? `${unread} unread` : ""].filter(Boolean).join(", ");
  if (desc) b.setAttribute("aria-description", desc);
  else b.removeAttribute("aria-description");
  if (active === "@" + u) b.setAttribute("aria-current", "true");
  else b.removeAttribute("aria-current");
}

function toggleData(el, name, value) {
  if (value === false || value === null) delete el.dataset[name];
  else el.dataset[name] = value === true ? "" : value;
}

// ---- conversations --------------------------------------------------------

function resetConversations() {
  for (const k of [...conversations.keys()]) if (k !== ROOM) conversations.delete(k);
  const room = conversations.get(ROOM);
  room.items = [];
  room.unread = 0;
  active = ROOM;
  pending.clear();
  log.replaceChildren();
  renderTabs();
}

function conversation(key) {
  let c = conversations.get(key);
  if (!c) {
    c = { key, peer: key.slice(1), items: [], unread: 0 };
    conversations.set(key, c);
    system(
      key,
      c.peer === me
        ? "Messages to yourself reach your other devices only."
        : `Private conversation with ${c.peer}: no one else sees these messages.`,
    );
    renderTabs();
  }
  return c;
}

function openConversation(key) {
  const c = conversation(key);
  active = key;
  c.unread = 0;
  log.setAttribute("aria-busy", "true");
  log.replaceChildren(...c.items.map((i) => i.el));
  log.removeAttribute("aria-busy");
  log.scrollTop = log.scrollHeight;
  renderTabs();
  renderUsers();
  updatePlaceholder();
  updateTitle();
}

function renderTabs() {
  const frag = [];
  const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("[role=tab]");
  let focusKey = focused ? focused.dataset.key : null;
  for (const c of conversations.values()) {
    const tab = document.createElement("button");
    tab.type = "button";
    tab.setAttribute("role", "tab");
    tab.id = "tab-" + frag.length;
    tab.dataset.key = c.key;
    tab.setAttribute("aria-controls", "log");
    const selected = c.key === active;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    const label = document.createElement("span");
    label.textContent = c.peer === null ? "Room" : c.peer;
    tab.append(label);
    if (c.peer !== null && !users.has(c.peer) && client && client.state === "online") {
      tab.classList.add("away");
      tab.setAttribute("aria-description", "offline");
    }
    if (c.unread > 0) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.setAttribute("aria-hidden", "true");
      badge.textContent = String(c.unread);
      tab.append(badge);
      tab.setAttribute("aria-description", `${c.unread} unread`);
    }
    frag.push(tab);
  }
  tabsEl.replaceChildren(...frag);
  if (focusKey) {
    const again = [...tabsEl.children].find((t) => t.dataset.key === focusKey);
    if (again) again.focus();
  }
}

tabsEl.addEventListener("click", (e) => {
  const tab = e.target.closest("[role=tab]");
  if (tab) openConversation(tab.dataset.key);
});

tabsEl.addEventListener("keydown", (e) => {
  const tabs = [...tabsEl.querySelectorAll("[role=tab]")];
  const i = tabs.indexOf(document.activeElement);
  if (i < 0) return;
  let j = -1;
  if (e.key === "ArrowRight") j = (i + 1) % tabs.length;
  else if (e.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
  else if (e.key === "Home") j = 0;
  else if (e.key === "End") j = tabs.length - 1;
  if (j < 0) return;
  e.preventDefault();
  openConversation(tabs[j].dataset.key);
  tabsEl.querySelector(`[aria-selected="true"]`).focus();
});

function updatePlaceholder() {
  const c = conversations.get(active);
  messageField.placeholder = !me
    ? "Connect to send messages"
    : c.peer === null
      ? `Message everyone in ${action}`
      : `Private message to ${c.peer}`;
}

function updateTitle() {
  let n = 0;
  for (const c of conversations.values()) n += c.unread;
  document.title = n ? `(${n}) Switchboard` : "Switchboard";
}

// ---- messages -------------------------------------------------------------

function addItem(key, item) {
  const c = conversation(key);
  c.items.push(item);
  if (c.items.length > MAX_ITEMS) {
    const old = c.items.shift();
    old.el.remove();
  }
  if (key === active) {
    const stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(item.el);
    if (stick || item.mine) log.scrollTop = log.scrollHeight;
    if (document.hidden && !item.mine && !item.system) c.unread++;
  } else if (!item.mine && !item.system) {
    c.unread++;
  }
  if (c.unread) {
    renderTabs();
    if (c.peer !== null) renderUsers();
  }
  updateTitle();
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  const c = conversations.get(active);
  if (c.unread) {
    c.unread = 0;
    renderTabs();
    renderUsers();
    updateTitle();
  }
});

function system(key, text) {
  const el = document.createElement("p");
  el.className = "system";
  el.textContent = text;
  addItem(key, { system: true, el });
}

function messageItem({ from, text, ts, mine, direct, to }) {
  const el = document.createElement("article");
  el.className = "msg" + (mine ? " mine" : "") + (direct ? " direct" : "");
  const meta = document.createElement("p");
  meta.className = "meta";
  const who = document.createElement("span");
  who.className = "from";
  who.textContent = mine ? "You" : from;
  meta.append(who);
  if (to) {
    const t = document.createElement("span");
    t.className = "to";
    t.textContent = ` to ${to}`;
    meta.append(t);
  }
  const time = document.createElement("time");
  const d = new Date(typeof ts === "number" ? ts : Date.now());
  time.dateTime = d.toISOString();
  time.textContent = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  meta.append(" ", time);
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  const note = document.createElement("p");
  note.className = "note";
  note.hidden = true;
  el.append(meta, body, note);
  return {
    el,
    mine,
    setNote(t, kind = "") {
      note.textContent = t;
      note.className = "note" + (kind ? " " + kind : "");
      note.hidden = false;
    },
  };
}

function bodyText(msg) {
  if (typeof msg.text === "string") return msg.text;
  const rest = { ...msg };
  for (const k of ["type", "from", "action", "ts", "to", "id"]) delete rest[k];
  return JSON.stringify(rest);
}

function onMessage(msg) {
  if (msg.type !== "message" && typeof msg.type === "string") {
    // A custom type sent by another client: shown, but marked.
    msg = { ...msg, text: `[${msg.type}] ${bodyText(msg)}` };
  }
  const from = typeof msg.from === "string" ? msg.from : null;
  let key = ROOM;
  if (msg.to !== undefined) {
    // A private message is shown only to its addressee, in the
    // conversation with its sender.
    if (msg.to !== me) return;
    if (from !== null) key = "@" + from;
  }
  const item = messageItem({
    from: from ?? "Server",
    text: bodyText(msg),
    ts: msg.ts,
    mine: from !== null && from === me && key === ROOM,
    direct: msg.to !== undefined,
    to: from === null && msg.to !== undefined ? "you only" : null,
  });
  addItem(key, item);
}

function onAck(ack) {
  const item = pending.get(ack.id);
  if (!item || item.settled) return;
  item.settled = true;
  const n = Number(ack.delivered) || 0;
  if (n === 0) item.setNote(item.direct ? "Delivered to 0 connections." : "Delivered to 0: no one else is here.", "warn");
  else item.setNote(`Delivered to ${n} connection${n === 1 ? "" : "s"}.`, "ok");
}

function onError(err) {
  const text = errorText(err);
  const item = err.id !== undefined ? pending.get(err.id) : undefined;
  if (item) {
    // An error wins over an ack of the same message (user_offline and
    // unavailable may come with one).
    item.settled = true;
    item.setNote(text, "error");
    return;
  }
  if (client && client.state === "connecting") showConnectError(text);
  system(active, `Error: ${text}`);
}

function sendMessage() {
  const text = messageField.value;
  if (!text.trim()) return;
  if (!client || client.state !== "online") {
    system(active, "Not connected: the message was not sent.");
    return;
  }
  const c = conversations.get(active);
  let id;
  try {
    id = c.peer === null ? client.send({ text }) : client.direct(c.peer, { text });
  } catch (err) {
    system(active, `Not sent: ${err.message}`);
    return;
  }
  const item = messageItem({ from: me, text, ts: Date.now(), mine: true, direct: c.peer !== null, to: c.peer });
  item.direct = c.peer !== null;
  item.setNote("Sending…", "pending");
  pending.set(id, item);
  if (pending.size > MAX_ITEMS) pending.delete(pending.keys().next().value);
  addItem(active, item);
  messageField.value = "";
}

// ---- wiring ---------------------------------------------------------------

form.addEventListener("submit", (e) => {
  e.preventDefault();
  connect();
});

disconnectButton.addEventListener("click", () => {
  if (client) client.close();
});

compose.addEventListener("submit", (e) => {
  e.preventDefault();
  sendMessage();
});

settingsToggle.addEventListener("click", () => {
  const open = settingsToggle.getAttribute("aria-expanded") !== "true";
  settingsToggle.setAttribute("aria-expanded", String(open));
  document.body.classList.toggle("settings-open", open);
  if (open) userField.focus();
});

peopleToggle.addEventListener("click", () => {
  const open = peopleToggle.getAttribute("aria-expanded") !== "true";
  peopleToggle.setAttribute("aria-expanded", String(open));
});

document.addEventListener("keydown", (e) => {
  if (e.key === "Escape" && peopleToggle.getAttribute("aria-expanded") === "true") {
    peopleToggle.setAttribute("aria-expanded", "false");
    peopleToggle.focus();
  }
});

// Prefill from ?user=&action= or from this tab's last connection.
(function prefill() {
  let saved = {};
  try {
    saved = JSON.parse(sessionStorage.getItem("switchboard") || "{}") || {};
  } catch {
    saved = {};
  }
  const q = new URLSearchParams(location.search);
  userField.value = q.get("user") ?? saved.userId ?? "";
  actionField.value = q.get("action") ?? saved.action ?? "";
})();

renderTabs();
renderUsers();
