// @switchboard/client: the client of Switchboard, a WebSocket server for
// user-addressed messaging. One ES module, no dependencies; browsers and
// Node >= 18 (before Node 22, pass `WebSocket` from the `ws` package).
// Types: switchboard.d.ts. Guide: docs/client.md in the Switchboard
// repository.
//
//   const sb = new SwitchboardClient({ userId: "alice", action: "chat" });
//   sb.on("message", (m) => console.log(m.from, m.text));
//   sb.connect();
//   await sb.direct("bob", { text: "hello, bob" }); // resolves to the ack

// Error codes after which signing in again with the same settings cannot
// succeed: the client stops (state "offline") instead of retrying.
const FATAL_CODES = new Set([
  "missing_action",
  "invalid_action",
  "invalid_user",
  "unauthorized",
  "user_mismatch",
  "banned",
  "token_expired",
  "not_online",
  "invalid_json",
  "binary_unsupported",
]);

// Close codes after which the client reconnects. 1008 (policy) reconnects
// only when no fatal error preceded it (e.g. "slow consumer",
// "online_timeout", "too_many_connections"); 1000 (normal) never does.
const RETRY_CLOSE_CODES = new Set([1001, 1005, 1006, 1007, 1008, 1009, 1011, 1012, 1013, 1014]);

// Server events that are not messages; everything else is a "message".
const EVENT_TYPES = new Set(["presence", "join", "leave", "refreshed", "blocks"]);

// A connection that stayed online this long starts the backoff over.
const STABLE_MS = 10000;

// CustomEvent is global from Node 19 on; Node 18 has Event only.
const CustomEventImpl =
  globalThis.CustomEvent ||
  class CustomEvent extends Event {
    constructor(type, init) {
      super(type, init);
      this.detail = init && init.detail !== undefined ? init.detail : null;
    }
  };

const DEFAULTS = {
  minDelay: 1000,
  maxDelay: 30000,
  connectTimeout: 10000,
  pingInterval: 25000,
  autoPresence: true,
  sendTimeout: 30000,
  outboxLimit: 1000,
  refreshBefore: 60000,
};

/** Derives the WebSocket URL of the page's own server: ws(s)://host/ws. */
export function defaultURL() {
  const loc = globalThis.location;
  if (!loc || !loc.host) return undefined;
  return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + "/ws";
}

/**
 * backoffDelay is the wait before reconnect attempt `attempt` (from 0):
 * "full jitter", a uniformly random time in [0, min(max, min * 2^attempt)).
 */
export function backoffDelay(attempt, min = DEFAULTS.minDelay, max = DEFAULTS.maxDelay, random = Math.random) {
  const cap = Math.min(max, min * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

/** tokenExpiry returns a JWT's `exp` in Unix ms, or 0 when it has none. */
export function tokenExpiry(token) {
  if (typeof token !== "string") return 0;
  const part = token.split(".")[1];
  if (!part) return 0;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const json = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))));
    return typeof json.exp === "number" ? json.exp * 1000 : 0;
  } catch {
    return 0;
  }
}

/** SwitchboardError is how a send fails: `code` names the reason. */
export class SwitchboardError extends Error {
  constructor(code, message, detail) {
    super(message || code);
    this.name = "SwitchboardError";
    this.code = code;
    if (detail !== undefined) this.detail = detail;
  }
}

function defaultStorage() {
  try {
    const s = globalThis.localStorage;
    return s && typeof s.getItem === "function" ? s : null;
  } catch {
    return null; // storage disabled (privacy settings, sandboxed frame)
  }
}

/**
 * SwitchboardClient keeps one WebSocket to a Switchboard server online. It
 * signs in, reconnects with backoff, refreshes the token before it expires,
 * resumes private messages from the last `seq` it saw, and resends what was
 * not acknowledged. See switchboard.d.ts for the options and events.
 */
export class SwitchboardClient extends EventTarget {
  constructor(options = {}) {
    super();
    const o = { ...DEFAULTS };
    for (const [k, v] of Object.entries(options)) if (v !== undefined) o[k] = v;
    if (!o.url) o.url = defaultURL();
    if (!o.url) {
      throw new TypeError("switchboard: no `url` option, and no page location to derive it from: pass url, e.g. \"ws://localhost:8080/ws\"");
    }
    if (!o.WebSocket) o.WebSocket = globalThis.WebSocket;
    if (typeof o.WebSocket !== "function") {
      throw new TypeError(
        "switchboard: this runtime has no global WebSocket (Node before 22): pass the `WebSocket` option, " +
          'e.g. `import WebSocket from "ws"` and `new SwitchboardClient({ WebSocket, ... })`',
      );
    }
    if (o.storage === undefined) o.storage = defaultStorage();
    this.options = o;
    /** "idle" | "connecting" | "online" | "reconnecting" | "offline" */
    this.state = "idle";
    /** The last `ready`: {connection_id, user_id, action, seq?, gap?}. */
    this.session = null;
    this._ws = null;
    this._attempt = 0;
    this._timers = new Set(); // cleared when a connection ends
    this._gen = 0;
    this._closeError = null;
    this._status = null;
    this._onlineSince = 0;
    this._pongDue = false;
    this._retryAt = 0;
    this._token = typeof o.token === "string" ? o.token : undefined;
    this._idPrefix = Math.random().toString(36).slice(2, 10) + "-";
    this._nextId = 1;
    this._seq = this._loadSeq();
    this._mailbox = false; // the server numbers direct messages (the mailbox, docs/protocol.md)
    this._outbox = new Map(); // id -> entry, in send order
    this._onOnline = () => {
      if (this.state === "reconnecting") this.reconnect();
    };
  }

  // ---- public API ---------------------------------------------------------

  /** Opens the connection (again, after close() or a refused sign-in). */
  connect() {
    this._stop();
    this._attempt = 0;
    if (typeof globalThis.addEventListener === "function") {
      globalThis.addEventListener("online", this._onOnline);
    }
    this._dial();
  }

  /** While reconnecting, dials at once instead of waiting for the backoff. */
  reconnect() {
    if (this.state !== "reconnecting") return;
    this._stop();
    this._dial();
  }

  /** Closes for good: no reconnect; unsent messages fail with "closed". */
  close() {
    this._stop();
    if (typeof globalThis.removeEventListener === "function") {
      globalThis.removeEventListener("online", this._onOnline);
    }
    for (const e of [...this._outbox.values()]) this._fail(e, new SwitchboardError("closed", "switchboard: the client was closed"));
    if (this.state !== "offline") this._setState("offline", { reason: "closed" });
  }

  /**
   * Sends a message to everyone else in the action (or, with `to`, to one
   * user's connections). Returns a promise of the server's ack, with the
   * message's `id` as its `id` property. Offline, the message waits in the
   * outbox and goes out when the connection is back.
   */
  send(message) {
    const msg = { type: "message", ...message };
    if (msg.id === undefined) msg.id = this.newId();
    const id = msg.id;
    let entry;
    const p = new Promise((resolve, reject) => {
      entry = { id, msg, resolve, reject, written: false, lastError: null, retry: null, timer: null };
    });
    p.id = id;
    // A send nobody awaits must not end a Node process with an unhandled
    // rejection; whoever awaits it still gets the error.
    p.catch(() => {});
    if (this._outbox.has(id)) {
      entry.reject(new SwitchboardError("duplicate_id", `switchboard: a message with id ${id} is already waiting`));
      return p;
    }
    if (this._outbox.size >= this.options.outboxLimit) {
      entry.reject(new SwitchboardError("outbox_full", "switchboard: too many messages wait for the connection"));
      return p;
    }
    this._outbox.set(id, entry);
    entry.timer = setTimeout(() => {
      const err = entry.lastError;
      this._fail(entry, new SwitchboardError(err ? err.code : "timeout", err ? err.message : "switchboard: no ack in time", err || undefined));
    }, this.options.sendTimeout);
    if (this.state === "online") this._write(entry);
    this._emit("outbox", { size: this._outbox.size });
    return p;
  }

  /** Sends a message to the connections of one user only. */
  direct(to, message) {
    return this.send({ ...message, to });
  }

  /** Asks for the users online in the action (answered by "presence"). */
  presence() {
    this.sendRaw({ type: "presence" });
  }

  /**
   * Moves the user's read cursor for the action to `seq` (default: the last
   * `seq` seen). Resolves to the ack once the server has moved it, or to
   * null at once when the server has no mailbox (no `seq` in `ready`).
   */
  read(seq = this._seq) {
    // Without a mailbox, "read" would be an ordinary custom-type message.
    if (!this._mailbox) return Promise.resolve(null);
    return this.send({ type: "read", seq });
  }

  /** Replaces the connection's token now (answered by "refreshed"). */
  refresh(token) {
    this._token = token;
    this.sendRaw({ type: "refresh", token });
  }

  /** Sends any object as is. Throws a "not_connected" error when not online. */
  sendRaw(obj) {
    if (this.state !== "online" || !this._ws || this._ws.readyState !== 1) {
      throw new SwitchboardError("not_connected", "switchboard: not online");
    }
    this._ws.send(JSON.stringify(obj));
  }

  /** Returns a request id unique to this client. */
  newId() {
    return this._idPrefix + this._nextId++;
  }

  /** Listens to one event type and gets its detail; returns an unsubscribe. */
  on(type, fn) {
    const h = (e) => fn(e.detail);
    this.addEventListener(type, h);
    return () => this.removeEventListener(type, h);
  }

  /** The highest `seq` received (0 before any). */
  get lastSeq() {
    return this._seq;
  }

  /** The messages waiting for an ack: [{id, message, sent}]. */
  get outbox() {
    return [...this._outbox.values()].map((e) => ({ id: e.id, message: e.msg, sent: e.written }));
  }

  // ---- connection ---------------------------------------------------------

  async _dial() {
    const gen = ++this._gen;
    this._setState("connecting", { attempt: this._attempt });
    this._closeError = null;
    this._status = null;
    const o = this.options;
    if (o.getToken) {
      try {
        this._token = await o.getToken({ reason: "connect" });
      } catch (err) {
        if (gen === this._gen) this._retry({ reason: "getToken failed: " + (err && err.message) });
        return;
      }
      if (gen !== this._gen) return; // closed or redialled meanwhile
    }
    let ws;
    try {
      ws = new o.WebSocket(o.url);
    } catch (err) {
      this._setState("offline", { reason: err.message });
      return;
    }
    this._ws = ws;
    const deadline = this._after(o.connectTimeout, () => this._abort(ws, "connect timeout"));
    ws.onopen = () => {
      const online = { type: "online", action: o.action };
      if (o.userId) online.user_id = o.userId;
      if (this._token) online.token = this._token;
      if (this._seq > 0) online.since = this._seq;
      ws.send(JSON.stringify(online));
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(typeof ev.data === "string" ? ev.data : new TextDecoder().decode(ev.data));
      } catch {
        return; // the server sends only JSON text frames
      }
      if (!msg || typeof msg !== "object") return;
      if (msg.type === "ready") this._cancel(deadline);
      this._handle(msg);
    };
    ws.onclose = (ev) => this._closed(ws, ev);
    ws.onerror = () => {}; // the close event that follows says it all
  }

  _handle(msg) {
    switch (msg.type) {
      case "ready":
        return this._ready(msg);
      case "pong":
        this._pongDue = false;
        return;
      case "ack":
        return this._ack(msg);
      case "error":
        return this._error(msg);
      case "status":
        this._status = msg;
        this._emit("status", msg);
        return;
      case "refreshed":
        this._scheduleRefresh(typeof msg.exp === "number" ? msg.exp * 1000 : 0);
        this._emit("refreshed", msg);
        return;
      default:
        // Server events carry no `from`; a client's message of such a
        // type (a custom type the server does not reserve) stays a message.
        if (EVENT_TYPES.has(msg.type) && msg.from === undefined) {
          this._emit(msg.type, msg);
          return;
        }
        if (typeof msg.seq === "number") {
          if (msg.seq <= this._seq) return; // already seen: a resend or replay
          this._setSeq(msg.seq);
        }
        this._emit("message", msg);
    }
  }

  _ready(msg) {
    this.session = msg;
    this._onlineSince = Date.now();
    this._mailbox = typeof msg.seq === "number";
    // A mailbox that numbers lower than what we saw was reset (an in-memory
    // server restarted): keep up with its numbers, or all would look seen.
    if (this._mailbox && msg.seq < this._seq) this._setSeq(msg.seq, true);
    this._setState("online", { session: msg });
    this._emit("ready", msg);
    if (this.state !== "online") return; // closed by a listener
    if (msg.gap) this._emit("gap", { since: this._seq, seq: msg.seq });
    if (this.options.autoPresence) this.presence();
    this._pongDue = false;
    this._schedulePing();
    this._scheduleRefresh(tokenExpiry(this._token));
    for (const e of [...this._outbox.values()]) if (!e.written) this._write(e);
  }

  _ack(msg) {
    const e = this._outbox.get(msg.id);
    if (e) {
      this._settle(e);
      e.resolve(msg);
    }
    this._emit("ack", msg);
  }

  _error(msg) {
    // Only a refused sign-in or an expired token ends the connection; an
    // error about one message after `ready` does not.
    if (this.state !== "online" || msg.code === "token_expired") this._closeError = msg;
    const e = msg.id !== undefined ? this._outbox.get(msg.id) : undefined;
    if (e) {
      e.lastError = msg;
      const direct = e.msg.to !== undefined;
      // Not delivered at all (rate_limited), or safely resent by id
      // (unavailable, for a direct message to a mailbox): try again soon.
      if (msg.code === "rate_limited" || (msg.code === "unavailable" && direct && this._mailbox)) {
        e.written = false;
        e.retry = this._after(1000, () => {
          e.retry = null;
          if (this.state === "online" && this._outbox.get(e.id) === e && !e.written) this._write(e);
        });
      } else {
        this._fail(e, new SwitchboardError(msg.code, msg.message, msg));
      }
    }
    this._emit("error", msg);
  }

  _write(e) {
    try {
      this.sendRaw(e.msg);
      e.written = true;
    } catch {
      // not online after all: it goes out on the next `ready`
    }
  }

  _settle(e) {
    clearTimeout(e.timer);
    if (e.retry) this._cancel(e.retry);
    this._outbox.delete(e.id);
    this._emit("outbox", { size: this._outbox.size });
  }

  _fail(e, err) {
    if (this._outbox.get(e.id) !== e) return;
    this._settle(e);
    e.reject(err);
  }

  _closed(ws, ev) {
    if (this._ws !== ws) return;
    this._ws = null;
    ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    this._clearTimers();
    this._lostInFlight();
    const code = ev.code;
    const detail = { code, reason: ev.reason || "" };
    const err = this._closeError;
    if (err) detail.error = err;

    if (this._status) {
      // Disconnected on purpose by the application's backend.
      this._setState("offline", { ...detail, reason: this._status.reason || this._status.status || "disconnected" });
      return;
    }
    if (err && FATAL_CODES.has(err.code) && !(err.code === "token_expired" && this.options.getToken)) {
      this._setState("offline", detail);
      return;
    }
    if (!RETRY_CLOSE_CODES.has(code)) {
      this._setState("offline", detail);
      return;
    }
    if (this._onlineSince && Date.now() - this._onlineSince >= STABLE_MS) this._attempt = 0;
    this._onlineSince = 0;
    this._retry(detail);
  }

  // _lostInFlight decides the fate of messages written to a connection that
  // ended before their ack: a direct message to a server with a mailbox is
  // resent by id (the server drops a repeat); anything else may or may not
  // have been delivered, and resending could duplicate it.
  _lostInFlight() {
    for (const e of [...this._outbox.values()]) {
      if (!e.written) continue;
      e.written = false;
      if (this._mailbox && (e.msg.to !== undefined || e.msg.type === "read")) continue;
      this._fail(e, new SwitchboardError("connection_lost", "switchboard: the connection was lost before the ack; the message may not have been delivered"));
    }
  }

  _abort(ws, reason) {
    if (this._ws !== ws) return;
    try {
      ws.close(4000, reason);
    } catch {
      // already closing
    }
    this._closed(ws, { code: 1006, reason });
  }

  _retry(detail) {
    const o = this.options;
    const delay = backoffDelay(this._attempt, o.minDelay, o.maxDelay);
    this._attempt++;
    this._retryAt = Date.now() + delay;
    this._setState("reconnecting", { ...detail, attempt: this._attempt, delay, at: this._retryAt });
    this._after(delay, () => this._dial());
  }

  _schedulePing() {
    const every = this.options.pingInterval;
    if (!every) return;
    this._after(every, () => {
      if (this.state !== "online") return;
      if (this._pongDue) {
        this._abort(this._ws, "ping timeout"); // no pong for a whole interval
        return;
      }
      this._pongDue = true;
      try {
        this.sendRaw({ type: "ping" });
      } catch {
        return; // closing: its close event decides what comes next
      }
      this._schedulePing();
    });
  }

  // _scheduleRefresh asks getToken for a new token `refreshBefore` ms
  // before `exp` (Unix ms; at half the remaining time when that is
  // shorter), and sends it with `refresh`.
  _scheduleRefresh(exp) {
    const o = this.options;
    if (this._refreshTimer) this._cancel(this._refreshTimer);
    this._refreshTimer = null;
    if (!o.getToken || !exp) return;
    const left = exp - Date.now();
    const wait = Math.max(0, left - Math.min(o.refreshBefore, left / 2));
    const gen = this._gen;
    this._refreshTimer = this._after(wait, async () => {
      this._refreshTimer = null;
      let token;
      try {
        token = await o.getToken({ reason: "refresh" });
      } catch {
        // Try again a little later, while the old token still holds.
        if (gen === this._gen && this.state === "online") this._scheduleRefresh(Math.max(exp, Date.now() + 10000));
        return;
      }
      if (gen !== this._gen || this.state !== "online") return;
      try {
        this.refresh(token);
      } catch {
        // closing: the next connection uses getToken anyway
      }
    });
  }

  _stop() {
    this._gen++;
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        // already closed
      }
      this._lostInFlight();
    }
  }

  // ---- resume -------------------------------------------------------------

  _storageKey() {
    const o = this.options;
    return "switchboard:seq:" + (o.userId || "") + ":" + o.action;
  }

  _loadSeq() {
    const s = this.options.storage;
    if (!s) return 0;
    try {
      const n = Number(s.getItem(this._storageKey()));
      return Number.isSafeInteger(n) && n > 0 ? n : 0;
    } catch {
      return 0;
    }
  }

  _setSeq(seq, lower = false) {
    if (seq <= this._seq && !lower) return;
    this._seq = seq;
    const s = this.options.storage;
    if (!s) return;
    try {
      s.setItem(this._storageKey(), String(seq));
    } catch {
      // storage full or disabled: resume then works within this page only
    }
  }

  // ---- helpers ------------------------------------------------------------

  _after(ms, fn) {
    const t = setTimeout(() => {
      this._timers.delete(t);
      fn();
    }, ms);
    this._timers.add(t);
    return t;
  }

  _cancel(t) {
    clearTimeout(t);
    this._timers.delete(t);
  }

  _clearTimers() {
    for (const t of this._timers) clearTimeout(t);
    this._timers.clear();
    this._refreshTimer = null;
    for (const e of this._outbox.values()) e.retry = null;
  }

  _setState(state, detail = {}) {
    this.state = state;
    this._emit("state", { state, ...detail });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEventImpl(type, { detail }));
  }
}
