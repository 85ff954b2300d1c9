// Switchboard client: one ES module, no dependencies. Works in browsers and
// in Node >= 22 (global WebSocket). Copy it unchanged; see docs/client.md.
//
//   const sb = new SwitchboardClient({ userId: "alice", action: "chat" });
//   sb.addEventListener("message", (e) => console.log(e.detail));
//   sb.connect();
//   sb.send({ text: "hello, room" });
//   sb.direct("bob", { text: "hello, bob" });

// Error codes after which reconnecting with the same settings cannot
// succeed: the client stops and reports state "offline".
const FATAL_CODES = new Set([
  "missing_action",
  "invalid_action",
  "invalid_user",
  "unauthorized",
  "user_mismatch",
  "token_expired",
  "not_online",
  "invalid_json",
  "binary_unsupported",
]);

// Close codes after which the client reconnects (with backoff). 1008
// (policy) reconnects only when no fatal error code preceded it, e.g. a
// "slow consumer" close; 1000 (normal) never does.
const RETRY_CLOSE_CODES = new Set([1001, 1005, 1006, 1007, 1008, 1009, 1011, 1012, 1013, 1014]);

/** Derives the WebSocket URL of the page's own server: ws(s)://host/ws. */
export function defaultURL() {
  const loc = globalThis.location;
  if (!loc) throw new Error("switchboard: no location; pass options.url");
  return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + "/ws";
}

/**
 * SwitchboardClient keeps one WebSocket to a Switchboard server online:
 * it sends `online`, requests presence after every `ready`, and reconnects
 * with exponential backoff and jitter. Events (CustomEvent, data in
 * `event.detail`): "state", "ready", "message", "ack", "error", "presence",
 * "join", "leave", "status", "refreshed".
 */
export class SwitchboardClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string} [options.url] WebSocket URL; default ws(s)://location.host/ws
   * @param {string} [options.userId] sent as user_id
   * @param {string} options.action the action to join
   * @param {string|(() => string|Promise<string>)} [options.token] a JWT, or
   *   a function called before every connection attempt that returns one
   * @param {number} [options.minDelay=500] first reconnect delay, ms
   * @param {number} [options.maxDelay=15000] reconnect delay cap, ms
   * @param {number} [options.connectTimeout=10000] ms from dial to `ready`
   * @param {number} [options.pingInterval=25000] ms between `ping`s that
   *   detect a dead connection (0 turns them off)
   * @param {boolean} [options.autoPresence=true] send `presence` after `ready`
   * @param {typeof WebSocket} [options.WebSocket] WebSocket implementation
   */
  constructor(options = {}) {
    super();
    this.options = {
      minDelay: 500,
      maxDelay: 15000,
      connectTimeout: 10000,
      pingInterval: 25000,
      autoPresence: true,
      ...options,
    };
    /** "idle" | "connecting" | "online" | "reconnecting" | "offline" */
    this.state = "idle";
    /** The last `ready` object: {connection_id, user_id, action}. */
    this.session = null;
    this._ws = null;
    this._attempt = 0;
    this._timers = new Set();
    this._closeError = null;
    this._status = null;
    this._onlineSince = 0;
    this._idPrefix = Math.random().toString(36).slice(2, 8) + "-";
    this._nextId = 1;
    this._gen = 0;
    this._pongDue = false;
  }

  /** Opens the connection (again, after close() or a fatal error). */
  connect() {
    this._stop();
    this._attempt = 0;
    this._dial();
  }

  /** Closes the connection for good: no reconnect. */
  close() {
    this._stop();
    if (this.state !== "offline") this._setState("offline", { reason: "closed" });
  }

  /**
   * Sends a message to everyone else in the action. Adds `type: "message"`
   * and a fresh `id` when absent; returns the id, which the matching "ack"
   * or "error" event carries. Throws when not online.
   */
  send(message) {
    const msg = { type: "message", ...message };
    if (msg.id === undefined) msg.id = this.newId();
    this.sendRaw(msg);
    return msg.id;
  }

  /** Sends a message to the connections of one user only; returns its id. */
  direct(to, message) {
    return this.send({ ...message, to });
  }

  /** Asks for the users online in the action; answered by a "presence" event. */
  presence() {
    this.sendRaw({ type: "presence" });
  }

  /** Replaces the connection's token; answered by "refreshed" or "error". */
  refresh(token) {
    if (typeof this.options.token !== "function") this.options.token = token;
    this.sendRaw({ type: "refresh", token });
  }

  /** Sends any object as is. Throws when not online. */
  sendRaw(obj) {
    if (this.state !== "online" || this._ws.readyState !== 1) {
      const err = new Error("switchboard: not online");
      err.code = "not_connected";
      throw err;
    }
    this._ws.send(JSON.stringify(obj));
  }

  /** Returns a request id unique to this client. */
  newId() {
    return this._idPrefix + this._nextId++;
  }

  async _dial() {
    const gen = ++this._gen;
    this._setState("connecting", { attempt: this._attempt });
    this._closeError = null;
    this._status = null;
    const opts = this.options;
    let token = opts.token;
    if (typeof token === "function") {
      try {
        token = await token();
      } catch (err) {
        if (gen === this._gen) this._retry({ reason: "token: " + err.message });
        return;
      }
      if (gen !== this._gen) return; // closed or redialled meanwhile
    }

    const WS = opts.WebSocket || globalThis.WebSocket;
    let ws;
    try {
      ws = new WS(opts.url || defaultURL());
    } catch (err) {
      this._setState("offline", { reason: err.message });
      return;
    }
    this._ws = ws;
    const deadline = this._after(opts.connectTimeout, () => {
      if (this._ws === ws) ws.close(4000, "connect timeout");
      this._closed(ws, { code: 1006, reason: "connect timeout" });
    });

    ws.onopen = () => {
      const online = { type: "online", action: opts.action };
      if (opts.userId) online.user_id = opts.userId;
      if (token) online.token = token;
      ws.send(JSON.stringify(online));
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return; // the server sends only JSON text frames
      }
      if (msg && typeof msg === "object") {
        if (msg.type === "ready") this._cancel(deadline);
        this._handle(msg);
      }
    };
    ws.onclose = (ev) => this._closed(ws, ev);
  }

  _handle(msg) {
    switch (msg.type) {
      case "ready":
        this.session = msg;
        this._onlineSince = Date.now();
        this._setState("online", { session: msg });
        this._emit("ready", msg);
        if (this.state !== "online") return; // closed by a listener
        if (this.options.autoPresence) this.presence();
        this._pongDue = false;
        this._schedulePing();
        return;
      case "pong":
        this._pongDue = false;
        return;
      case "error":
        // Only a refused sign-in or an expired token ends the connection;
        // an error about one message after `ready` does not.
        if (this.state !== "online" || msg.code === "token_expired") this._closeError = msg;
        this._emit("error", msg);
        return;
      case "status":
        this._status = msg;
        this._emit("status", msg);
        return;
      case "ack":
      case "presence":
      case "join":
      case "leave":
      case "refreshed":
        this._emit(msg.type, msg);
        return;
      default:
        this._emit("message", msg);
    }
  }

  _closed(ws, ev) {
    if (this._ws !== ws) return;
    this._ws = null;
    ws.onopen = ws.onmessage = ws.onclose = null;
    this._clearTimers();
    const code = ev.code;
    const detail = { code, reason: ev.reason || "" };
    const err = this._closeError;
    if (err) detail.error = err;

    if (this._status) {
      // Disconnected on purpose by the application's backend.
      this._setState("offline", { ...detail, reason: this._status.reason || "disconnected" });
      return;
    }
    if (err && FATAL_CODES.has(err.code) && !(err.code === "token_expired" && typeof this.options.token === "function")) {
      this._setState("offline", detail);
      return;
    }
    if (!RETRY_CLOSE_CODES.has(code)) {
      this._setState("offline", detail);
      return;
    }
    // A connection that stayed up a while starts the backoff over.
    if (this._onlineSince && Date.now() - this._onlineSince > 10000) this._attempt = 0;
    this._onlineSince = 0;
    this._retry(detail);
  }

  _retry(detail) {
    const { minDelay, maxDelay } = this.options;
    const cap = Math.min(maxDelay, minDelay * 2 ** this._attempt);
    const delay = Math.round(cap / 2 + (Math.random() * cap) / 2); // "equal jitter"
    this._attempt++;
    this._setState("reconnecting", { ...detail, attempt: this._attempt, delay, at: Date.now() + delay });
    this._after(delay, () => this._dial());
  }

  _schedulePing() {
    const every = this.options.pingInterval;
    if (!every) return;
    this._after(every, () => {
      if (this.state !== "online") return;
      if (this._pongDue) {
        // No pong for a whole interval: the connection is dead.
        const ws = this._ws;
        ws.close(4000, "ping timeout");
        this._closed(ws, { code: 1006, reason: "ping timeout" });
        return;
      }
      this._pongDue = true;
      this.sendRaw({ type: "ping" });
      this._schedulePing();
    });
  }

  _stop() {
    this._gen++;
    this._clearTimers();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.close(1000);
    }
  }

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
  }

  _setState(state, detail = {}) {
    this.state = state;
    this._emit("state", { state, ...detail });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
