// The demo page's UI. All protocol work goes through the client package
// (web/client/switchboard.js, served as /static/switchboard.js).
import { SwitchboardClient } from "./switchboard.js";

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
  too_many_connections: () => "Too many connections for this user: close another tab or device.",
  banned: () => "This user is banned from the server for now.",
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
const pending = new Map(); // request id -> item awaiting its ack
let active = ROOM;
let countdown = null;
let wasOnline = false; // online since the last connect(): a drop is a loss
let lostSaid = false; // the log said the connection was lost
let catchUpTo = 0; // messages up to this seq were sent while we were away
let readSeq = 0; // the read cursor this page last sent
let backTimer = null;

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
const banner = $("banner");
const bannerText = $("banner-text");
const retryButton = $("retry");
const newMessages = $("new-messages");

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
  wasOnline = false;
  lostSaid = false;
  readSeq = 0;
  hideBanner();
  if (action !== act || lastUserId !== userId) resetConversations();
  action = act;
  lastUserId = userId;
  focusAfterReady = true;

  client = new SwitchboardClient({ userId: userId || undefined, action: act, token: token || undefined });
  client.addEventListener("state", (e) => onState(e.detail));
  client.addEventListener("ready", (e) => onReady(e.detail));
  client.addEventListener("presence", (e) => setUsers(e.detail.users));
  client.addEventListener("join", (e) => {
    if (addUser(e.detail.user_id) && e.detail.user_id !== me) system(ROOM, `${e.detail.user_id} joined.`, "presence");
  });
  client.addEventListener("leave", (e) => {
    if (removeUser(e.detail.user_id)) system(ROOM, `${e.detail.user_id} left.`, "presence");
  });
  client.addEventListener("message", (e) => onMessage(e.detail));
  client.addEventListener("error", (e) => onError(e.detail));
  client.addEventListener("gap", () => system(ROOM, "Some private messages sent while you were away are no longer kept."));
  client.addEventListener("status", (e) => system(ROOM, `Disconnected by the server: ${e.detail.reason || "no reason given"}.`));
  client.connect();
}

function onState(s) {
  stopCountdown();
  statusEl.dataset.state = s.state;
  const online = s.state === "online";
  // While the client retries, messages wait in its outbox: Send stays on.
  const live = online || s.state === "connecting" || s.state === "reconnecting";
  sendButton.disabled = !live || !me;
  disconnectButton.hidden = s.state === "offline" || s.state === "idle";
  document.body.classList.toggle("online", online);
  // On a phone the settings stay folded through a reconnect; they unfold
  // only when the page stops (a refusal, Disconnect).
  if (s.state === "offline") document.body.classList.remove("joined");
  switch (s.state) {
    case "connecting":
      if (!wasOnline) setStatus("Connecting…");
      else {
        setStatus("Reconnecting…");
        showBanner("lost", "Connection lost. Connecting…");
      }
      break;
    case "online":
      setStatus(`Online as ${s.session.user_id} in ${s.session.action}`);
      settingsToggle.setAttribute("aria-expanded", "false");
      document.body.classList.remove("settings-open");
      document.body.classList.add("joined");
      break;
    case "reconnecting":
      connectionLost();
      startCountdown(s.at);
      break;
    case "offline": {
      connectionLost(s.reason === "closed" && !s.error ? "Disconnected." : "Connection lost.");
      let why = "";
      if (s.error) why = errorText(s.error);
      else if (s.reason && s.reason !== "closed") why = s.reason;
      setStatus(why ? `Offline: ${why}` : "Offline");
      if (s.error) showConnectError(errorText(s.error));
      hideBanner();
      sendButton.disabled = true;
      break;
    }
  }
}

// showBanner shows the connection banner above the conversation: kind
// "lost" (with "Retry now") or "back".
function showBanner(kind, text) {
  if (backTimer) clearTimeout(backTimer);
  backTimer = null;
  banner.dataset.kind = kind;
  bannerText.textContent = text;
  retryButton.hidden = kind !== "lost";
  banner.hidden = false;
}

function hideBanner() {
  if (backTimer) clearTimeout(backTimer);
  backTimer = null;
  banner.hidden = true;
}

function onReady(session) {
  const again = everOnline && me === session.user_id;
  me = session.user_id;
  everOnline = true;
  hideConnectError();
  messageField.disabled = false;
  updatePlaceholder();
  if (again && wasOnline) {
    everywhere("Connection is back.", "conn back");
    showBanner("back", "Connected again.");
    backTimer = setTimeout(hideBanner, 4000);
  } else if (again) system(ROOM, "Reconnected.");
  else system(ROOM, `Connected as ${me} to ${session.action}.`);
  wasOnline = true;
  lostSaid = false;
  catchUpTo = typeof session.seq === "number" ? session.seq : 0;
  sendButton.disabled = false;
  for (const item of pending.values()) if (!item.settled) item.setNote("Sending…", "pending");
  if (focusAfterReady) {
    focusAfterReady = false;
    messageField.focus();
  }
  renderUsers();
}

// connectionLost runs on every state that is not online; the first after
// being online says so in the conversation.
function connectionLost(text = "Connection lost. Messages you send now go out when it is back.") {
  if (users.size || me) {
    users.clear();
    renderUsers();
  }
  for (const item of pending.values()) {
    if (!item.settled) item.setNote("Waiting for the connection…", "pending");
  }
  if (wasOnline && !lostSaid) {
    lostSaid = true;
    everywhere(text, "conn lost");
  }
}

// everywhere adds a system line to every open conversation, so the one on
// screen says it whichever it is.
function everywhere(text, kind) {
  for (const key of conversations.keys()) system(key, text, kind);
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
  if (wasOnline) showBanner("lost", "Connection lost.");
  const bannerSeconds = document.createElement("span");
  bannerSeconds.setAttribute("aria-hidden", "true");
  if (!banner.hidden) bannerText.append(" ", bannerSeconds);
  const tick = () => {
    const s = Math.max(0, Math.ceil((at - Date.now()) / 1000));
    seconds.textContent = ` in ${s} s…`;
    bannerSeconds.textContent = `Reconnecting in ${s} s…`;
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
  if (typeof u !== "string" || users.has(u)) return false;
  users.add(u);
  renderUsers();
  return true;
}

function removeUser(u) {
  if (!users.delete(u)) return false;
  renderUsers();
  return true;
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
  const leaving = conversations.get(active);
  if (leaving && leaving.key !== key) clearUnreadMarks(leaving);
  const c = conversation(key);
  active = key;
  c.unread = 0;
  log.setAttribute("aria-busy", "true");
  log.replaceChildren(...c.items.map((i) => i.el));
  log.removeAttribute("aria-busy");
  const first = c.items.find((i) => i.el.classList.contains("unread"));
  if (first) first.el.scrollIntoView({ block: "start" });
  else log.scrollTop = log.scrollHeight;
  newMessages.hidden = true;
  markRead();
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
    if (c.peer !== null) {
      const close = document.createElement("button");
      close.type = "button";
      close.className = "tab-close";
      close.dataset.close = c.key;
      close.tabIndex = selected ? 0 : -1;
      close.setAttribute("aria-label", `Close conversation with ${c.peer}`);
      close.textContent = "×";
      frag.push(close);
    }
  }
  tabsEl.replaceChildren(...frag);
  if (focusKey) {
    const again = [...tabsEl.children].find((t) => t.dataset.key === focusKey);
    if (again) again.focus();
  }
}

tabsEl.addEventListener("click", (e) => {
  const close = e.target.closest("[data-close]");
  if (close) {
    closeConversation(close.dataset.close);
    return;
  }
  const tab = e.target.closest("[role=tab]");
  if (tab) openConversation(tab.dataset.key);
});

// closeConversation forgets a private conversation (Delete on its tab, or
// its close button) and shows the room.
function closeConversation(key) {
  if (key === ROOM || !conversations.has(key)) return;
  conversations.delete(key);
  if (active === key) openConversation(ROOM);
  else renderTabs();
  renderUsers();
  updateTitle();
  const tab = tabsEl.querySelector(`[role=tab][aria-selected="true"]`);
  if (tab) tab.focus();
}

tabsEl.addEventListener("keydown", (e) => {
  const tabs = [...tabsEl.querySelectorAll("[role=tab]")];
  const i = tabs.indexOf(document.activeElement);
  if (i < 0) return;
  let j = -1;
  if (e.key === "ArrowRight") j = (i + 1) % tabs.length;
  else if (e.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
  else if (e.key === "Home") j = 0;
  else if (e.key === "End") j = tabs.length - 1;
  else if (e.key === "Delete") {
    e.preventDefault();
    closeConversation(tabs[i].dataset.key);
    return;
  }
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

// clearUnreadMarks drops the "new" marks of messages that were on screen.
function clearUnreadMarks(c) {
  for (const i of c.items) i.el.classList.remove("unread");
}

// markRead moves the server's read cursor (docs/protocol.md, the mailbox) once no private
// conversation has unread messages and the page is seen.
function markRead() {
  if (!client || client.state !== "online" || document.hidden) return;
  for (const c of conversations.values()) if (c.peer !== null && c.unread) return;
  if (client.lastSeq > readSeq) {
    readSeq = client.lastSeq;
    client.read(readSeq).catch(() => {});
  }
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
  const counts = !item.mine && !item.system;
  if (key === active) {
    const stick = atBottom();
    log.append(item.el);
    if (stick || item.mine) log.scrollTop = log.scrollHeight;
    else if (counts) newMessages.hidden = false;
    if (document.hidden && counts) {
      c.unread++;
      item.el.classList.add("unread");
    }
  } else if (counts) {
    c.unread++;
    item.el.classList.add("unread");
  }
  if (c.unread) {
    renderTabs();
    if (c.peer !== null) renderUsers();
  }
  updateTitle();
}

function atBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
}

log.addEventListener("scroll", () => {
  if (!newMessages.hidden && atBottom()) newMessages.hidden = true;
});

newMessages.addEventListener("click", () => {
  log.scrollTop = log.scrollHeight;
  newMessages.hidden = true;
  log.focus();
});

document.addEventListener("visibilitychange", () => {
  if (document.hidden) return;
  const c = conversations.get(active);
  if (c.unread) {
    c.unread = 0;
    renderTabs();
    renderUsers();
    updateTitle();
  }
  markRead();
});

// system adds a line that is not a message: connection events, joins and
// leaves, custom types. kind adds CSS classes.
function system(key, text, kind = "") {
  const el = document.createElement("p");
  el.className = "system" + (kind ? " " + kind : "");
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
  if (direct) {
    const tag = document.createElement("span");
    tag.className = "private";
    tag.textContent = "Private";
    meta.append(" ", tag);
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
      el.dataset.state = kind;
    },
  };
}

function bodyText(msg) {
  if (typeof msg.text === "string") return msg.text;
  const rest = { ...msg };
  for (const k of ["type", "from", "action", "ts", "to", "id", "seq"]) delete rest[k];
  return JSON.stringify(rest);
}

function onMessage(msg) {
  const from = typeof msg.from === "string" ? msg.from : null;
  let key = ROOM;
  if (msg.to !== undefined) {
    // A private message is shown only to its addressee, in the
    // conversation with its sender.
    if (msg.to !== me) return;
    if (from !== null) key = "@" + from;
  }
  if (msg.type !== "message" && typeof msg.type === "string") {
    // A custom type (e.g. "typing") is an event, not a message: a small
    // line, with its fields only when there are some.
    const rest = bodyText(msg);
    const fields = rest === "{}" ? "" : `: ${rest.length > 120 ? rest.slice(0, 119) + "…" : rest}`;
    system(key, `${from ?? "Server"} sent “${msg.type}”${fields}`, "custom");
    return;
  }
  const item = messageItem({
    from: from ?? "Server",
    text: bodyText(msg),
    ts: msg.ts,
    mine: from !== null && from === me && key === ROOM,
    direct: msg.to !== undefined,
    to: from === null && msg.to !== undefined ? "you only" : null,
  });
  // Sent while this page was away (replayed from the mailbox): marked new
  // even in the conversation on screen.
  if (typeof msg.seq === "number" && msg.seq <= catchUpTo) item.el.classList.add("unread");
  addItem(key, item);
  if (key === active && !document.hidden) markRead();
}

// The error events of messages the page is waiting for are handled by
// their send's promise.
function onError(err) {
  if (err.id !== undefined && pending.has(err.id)) return;
  const text = errorText(err);
  if (client && client.state === "connecting") showConnectError(text);
  system(active, `Error: ${text}`);
}

// sendFailure says why a send failed, in the page's words.
function sendFailure(err) {
  switch (err.code) {
    case "connection_lost":
      return "Not sent: the connection was lost before the server confirmed it. It may or may not have arrived.";
    case "timeout":
      return "Not sent: the connection did not come back in time.";
    case "closed":
      return "Not sent: disconnected.";
    case "outbox_full":
      return "Not sent: too many messages are waiting for the connection.";
    default:
      return ERROR_TEXT[err.code] ? errorText({ code: err.code, ...(err.detail || {}) }) : `Not sent: ${err.message}`;
  }
}

function sendMessage() {
  const text = messageField.value;
  if (!text.trim()) return;
  const live = client && ["online", "connecting", "reconnecting"].includes(client.state) && me;
  if (!live) {
    system(active, "Not connected: the message was not sent. Connect first.", "error");
    return;
  }
  const c = conversations.get(active);
  const p = c.peer === null ? client.send({ text }) : client.direct(c.peer, { text });
  const item = messageItem({ from: me, text, ts: Date.now(), mine: true, direct: c.peer !== null, to: c.peer });
  item.direct = c.peer !== null;
  if (client.state === "online") item.setNote("Sending…", "pending");
  else item.setNote("Waiting for the connection…", "pending");
  pending.set(p.id, item);
  p.then(
    (ack) => {
      item.settled = true;
      const n = Number(ack.delivered) || 0;
      if (n > 0) item.setNote(`Delivered to ${n} connection${n === 1 ? "" : "s"}.`, "ok");
      else if (item.direct) item.setNote(typeof ack.seq === "number" ? "Sent: kept until they come back." : "Delivered to 0 connections.", "warn");
      else item.setNote("Delivered to 0: no one else is here.", "warn");
    },
    (err) => {
      item.settled = true;
      item.setNote(sendFailure(err), "error");
    },
  ).finally(() => pending.delete(p.id));
  addItem(active, item);
  messageField.value = "";
  fitMessageField();
}

// fitMessageField grows the Message field with its lines, up to a limit
// set in CSS.
function fitMessageField() {
  messageField.style.height = "auto";
  messageField.style.height = messageField.scrollHeight + 2 + "px";
}

messageField.addEventListener("input", fitMessageField);

// Enter sends; Shift+Enter (and Enter while composing with an input
// method) starts a new line.
messageField.addEventListener("keydown", (e) => {
  if (e.key !== "Enter" || e.shiftKey || e.isComposing) return;
  e.preventDefault();
  sendMessage();
});
// Some input paths deliver the Enter character apart from its keydown.
messageField.addEventListener("keypress", (e) => {
  if (e.key === "Enter" && !e.shiftKey) e.preventDefault();
});

retryButton.addEventListener("click", () => {
  if (client) client.reconnect();
});

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

// Leaving the page (closing the tab, navigating away) closes the
// connection at once, so the others see the leave now; a page restored
// from the back-forward cache connects again.
window.addEventListener("pagehide", () => {
  if (client && client.state !== "offline") {
    client.close();
    resumeOnShow = true;
  }
});
window.addEventListener("pageshow", (e) => {
  if (e.persisted && resumeOnShow) {
    resumeOnShow = false;
    connect();
  }
});
let resumeOnShow = false;

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
