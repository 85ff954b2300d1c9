// Unit tests of switchboard.js, run both by Node (node.test.js, with
// node:test) and by Chromium (runAll, from the Go test TestClientBrowser).
// Each test drives a FakeSocket (the server's side of the wire) and a
// FakeClock (setTimeout, clearTimeout and Date.now), so no test sleeps.
import { SwitchboardClient, SwitchboardError, backoffDelay, tokenExpiry } from "../switchboard.js";

const URL = "ws://example.test/ws";

// FakeSocket plays the server: the test opens it, reads what the client
// sent, and delivers frames and closes.
export class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeSocket.all.push(this);
  }
  static get last() {
    return FakeSocket.all[FakeSocket.all.length - 1];
  }
  send(data) {
    if (this.readyState !== 1) throw new Error("send on a socket that is not open");
    this.sent.push(JSON.parse(data));
  }
  close(code) {
    this.closedWith = code;
    this.readyState = 3;
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  receive(obj) {
    this.onmessage?.({ data: JSON.stringify(obj) });
  }
  drop(code = 1006, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  // sentOf returns the frames of one type (messages: type "message").
  sentOf(type) {
    return this.sent.filter((f) => f.type === type);
  }
}

// FakeClock replaces the timer functions and Date.now while installed.
export class FakeClock {
  constructor() {
    this.now = 1_800_000_000_000;
    this.timers = [];
    this.nextId = 1;
  }
  install() {
    this.saved = { setTimeout: globalThis.setTimeout, clearTimeout: globalThis.clearTimeout, now: Date.now, random: Math.random };
    globalThis.setTimeout = (fn, ms = 0) => {
      const id = this.nextId++;
      this.timers.push({ id, at: this.now + Math.max(0, ms), fn });
      return id;
    };
    globalThis.clearTimeout = (id) => {
      this.timers = this.timers.filter((t) => t.id !== id);
    };
    Date.now = () => this.now;
    Math.random = () => 0.5; // backoff delays: half their cap
  }
  uninstall() {
    globalThis.setTimeout = this.saved.setTimeout;
    globalThis.clearTimeout = this.saved.clearTimeout;
    Date.now = this.saved.now;
    Math.random = this.saved.random;
  }
  // advance moves time forward by ms, firing due timers in order and
  // letting promise chains run after each.
  async advance(ms) {
    const end = this.now + ms;
    await settle();
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at || a.id - b.id);
      const t = this.timers[0];
      if (!t || t.at > end) break;
      this.timers.shift();
      this.now = t.at;
      t.fn();
      await settle();
    }
    this.now = end;
  }
}

async function settle() {
  for (let i = 0; i < 10; i++) await Promise.resolve();
}

// MemoryStorage is a Storage with getItem and setItem.
class MemoryStorage {
  constructor(init = {}) {
    this.m = new Map(Object.entries(init));
  }
  getItem(k) {
    return this.m.has(k) ? this.m.get(k) : null;
  }
  setItem(k, v) {
    this.m.set(k, String(v));
  }
}

function assert(ok, msg) {
  if (!ok) throw new Error(msg);
}
function eq(got, want, what) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`);
}

// jwt returns an unsigned token whose payload holds exp (Unix s).
function jwt(exp, sub = "alice") {
  const b64 = (o) => btoa(JSON.stringify(o)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");
  return b64({ alg: "HS256", typ: "JWT" }) + "." + b64({ sub, exp }) + ".sig";
}

// setup makes a client on a fake socket and clock; t.events records every
// event as [type, detail].
function setup(extra = {}) {
  FakeSocket.all = [];
  const clock = new FakeClock();
  clock.install();
  const c = new SwitchboardClient({
    url: URL,
    userId: "alice",
    action: "chat",
    WebSocket: FakeSocket,
    storage: null,
    autoPresence: false,
    pingInterval: 0,
    ...extra,
  });
  const events = [];
  for (const type of ["state", "ready", "message", "ack", "error", "presence", "join", "leave", "status", "refreshed", "gap"]) {
    c.addEventListener(type, (e) => events.push([type, e.detail]));
  }
  return { c, clock, events, states: () => events.filter(([t]) => t === "state").map(([, d]) => d.state) };
}

// online opens the latest socket and answers its `online` with `ready`.
async function online(clock, ready = {}) {
  await clock.advance(0);
  const s = FakeSocket.last;
  s.open();
  s.receive({ type: "ready", connection_id: "c" + FakeSocket.all.length, user_id: "alice", action: "chat", ...ready });
  await clock.advance(0);
  return s;
}

// outcome records how a send's promise settles.
function outcome(p) {
  const o = { done: false };
  p.then(
    (ack) => Object.assign(o, { done: true, ack }),
    (err) => Object.assign(o, { done: true, err }),
  );
  return o;
}

export const cases = [];
function test(name, fn) {
  cases.push([name, fn]);
}

// ---- backoff ---------------------------------------------------------------

test("backoffDelay: full jitter within [0, min(max, min*2^n))", () => {
  const caps = [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000];
  caps.forEach((cap, n) => {
    eq(backoffDelay(n, 1000, 30000, () => 0), 0, `attempt ${n}, random 0`);
    eq(backoffDelay(n, 1000, 30000, () => 0.5), cap / 2, `attempt ${n}, random 0.5`);
    const hi = backoffDelay(n, 1000, 30000, () => 0.999999);
    assert(hi < cap && hi >= cap - 1, `attempt ${n}, random ~1: ${hi}, want just under ${cap}`);
  });
  eq(backoffDelay(1000, 1000, 30000, () => 0.5), 15000, "a huge attempt count stays at the cap");
  for (let i = 0; i < 200; i++) {
    const d = backoffDelay(3);
    assert(d >= 0 && d < 8000, `Math.random jitter out of bounds: ${d}`);
  }
});

test("reconnects with growing jittered delays, starting over after a stable connection", async () => {
  const { c, clock, events } = setup();
  try {
    Math.random = () => 0.5;
    c.connect();
    await online(clock);
    const delays = [];
    for (let i = 0; i < 7; i++) {
      FakeSocket.last.drop(1006);
      const st = events.filter(([t]) => t === "state").at(-1)[1];
      eq(st.state, "reconnecting", "state after a drop");
      delays.push(st.delay);
      eq(st.at, clock.now + st.delay, "`at` is when the next dial happens");
      const n = FakeSocket.all.length;
      await clock.advance(st.delay - 1);
      eq(FakeSocket.all.length, n, "no dial before the delay");
      await clock.advance(1);
      eq(FakeSocket.all.length, n + 1, "a dial once the delay is over");
      if (i < 6) {
        FakeSocket.last.open(); // opened, but drops before `ready`
      }
    }
    eq(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000], "delays with random 0.5");
    await online(clock);
    await clock.advance(10000);
    FakeSocket.last.drop(1001);
    eq(events.filter(([t]) => t === "state").at(-1)[1].delay, 500, "after 10 s online the backoff starts over");
  } finally {
    c.close();
    clock.uninstall();
  }
});

test("no retry after unauthorized, banned, user_mismatch; retry after other closes", async () => {
  for (const code of ["unauthorized", "banned", "user_mismatch"]) {
    const { c, clock, states, events } = setup();
    try {
      c.connect();
      await clock.advance(0);
      const s = FakeSocket.last;
      s.open();
      s.receive({ type: "error", code, message: "no" });
      s.drop(1008);
      eq(c.state, "offline", `state after ${code}`);
      eq(events.filter(([t]) => t === "state").at(-1)[1].error.code, code, "the state names the error");
      await clock.advance(120000);
      eq(FakeSocket.all.length, 1, `dials after ${code}`);
      eq(states(), ["connecting", "offline"], "states");
    } finally {
      c.close();
      clock.uninstall();
    }
  }
  for (const close of [1001, 1006, 1011, 1012, 1013]) {
    const { c, clock } = setup();
    try {
      c.connect();
      await online(clock);
      FakeSocket.last.drop(close);
      eq(c.state, "reconnecting", `state after close ${close}`);
    } finally {
      c.close();
      clock.uninstall();
    }
  }
});

test("coming back online dials at once; reconnect() too", async () => {
  const { c, clock } = setup();
  const target = new EventTarget();
  const hadListener = typeof globalThis.addEventListener === "function";
  // Node has no window events: lend it an EventTarget for the test.
  const saved = { add: globalThis.addEventListener, remove: globalThis.removeEventListener };
  const send = hadListener ? (e) => globalThis.dispatchEvent(e) : (e) => target.dispatchEvent(e);
  if (!hadListener) {
    globalThis.addEventListener = target.addEventListener.bind(target);
    globalThis.removeEventListener = target.removeEventListener.bind(target);
  }
  try {
    Math.random = () => 0.9;
    c.connect();
    await online(clock);
    FakeSocket.last.drop(1006);
    eq(c.state, "reconnecting", "state");
    send(new Event("online"));
    await clock.advance(0);
    eq(FakeSocket.all.length, 2, "sockets after the online event");
    await online(clock);
    FakeSocket.last.drop(1006);
    c.reconnect();
    await clock.advance(0);
    eq(FakeSocket.all.length, 3, "sockets after reconnect()");
    eq(c.state, "connecting", "state after reconnect()");
  } finally {
    c.close();
    clock.uninstall();
    if (!hadListener) {
      globalThis.addEventListener = saved.add;
      globalThis.removeEventListener = saved.remove;
    }
  }
});

test("no ready within connectTimeout, or no pong, reconnects", async () => {
  const { c, clock } = setup({ pingInterval: 25000 });
  try {
    c.connect();
    await clock.advance(0);
    FakeSocket.last.open();
    await clock.advance(10000);
    eq(c.state, "reconnecting", "state after the connect timeout");
    eq(FakeSocket.all[0].closedWith, 4000, "the stalled socket is closed");
    await clock.advance(500);
    const s = await online(clock);
    await clock.advance(25000);
    eq(s.sentOf("ping").length, 1, "pings after one interval");
    await clock.advance(25000);
    eq(c.state, "reconnecting", "state after a missing pong");
  } finally {
    c.close();
    clock.uninstall();
  }
});

// ---- resume ----------------------------------------------------------------

test("resume: since from storage, dedup by seq, seq kept in storage", async () => {
  const storage = new MemoryStorage({ "switchboard:seq:alice:chat": "5" });
  const { c, clock, events } = setup({ storage });
  try {
    eq(c.lastSeq, 5, "lastSeq from storage");
    c.connect();
    const s = await online(clock, { seq: 7 });
    eq(s.sent[0], { type: "online", action: "chat", user_id: "alice", since: 5 }, "online frame");
    for (const seq of [4, 5, 6, 7, 6, 7]) s.receive({ type: "message", from: "bob", to: "alice", action: "chat", ts: 1, seq, text: "m" + seq });
    s.receive({ type: "message", from: "bob", action: "chat", ts: 1, text: "room" }); // broadcasts have no seq
    const got = events.filter(([t]) => t === "message").map(([, m]) => m.text);
    eq(got, ["m6", "m7", "room"], "messages delivered once each");
    eq(storage.getItem("switchboard:seq:alice:chat"), "7", "stored seq");
    s.drop(1006);
    await clock.advance(500);
    const s2 = await online(clock, { seq: 8 });
    eq(s2.sent[0].since, 7, "since after a reconnect");
    s2.receive({ type: "message", from: "bob", to: "alice", action: "chat", ts: 1, seq: 8, text: "m8" });
    eq(events.filter(([t]) => t === "message").length, 4, "a new seq after the reconnect is delivered");
  } finally {
    c.close();
    clock.uninstall();
  }
});

test("resume: a server without mailbox makes it a no-op; a reset mailbox restarts the count", async () => {
  const { c, clock, events } = setup();
  try {
    c.connect();
    const s = await online(clock); // no seq in ready: no mailbox
    eq("since" in s.sent[0], false, "no since without a seq seen");
    s.receive({ type: "message", from: "bob", to: "alice", action: "chat", ts: 1, text: "a" });
    s.receive({ type: "message", from: "bob", to: "alice", action: "chat", ts: 1, text: "b" });
    eq(events.filter(([t]) => t === "message").length, 2, "messages without seq are all delivered");
    eq(c.lastSeq, 0, "lastSeq");
    eq(await c.read(), null, "read() without a mailbox");
    eq(s.sentOf("read").length, 0, "no read frame without a mailbox");
  } finally {
    c.close();
    clock.uninstall();
  }
  const storage = new MemoryStorage({ "switchboard:seq:alice:chat": "40" });
  const t = setup({ storage });
  try {
    t.c.connect();
    const s = await online(t.clock, { seq: 2, gap: true });
    eq(t.c.lastSeq, 2, "lastSeq follows a mailbox that restarted lower");
    s.receive({ type: "message", from: "bob", to: "alice", action: "chat", ts: 1, seq: 3, text: "new" });
    eq(t.events.filter(([e]) => e === "message").length, 1, "new messages after the reset are delivered");
    eq(t.events.filter(([e]) => e === "gap").length, 1, "a gap event");
  } finally {
    t.c.close();
    t.clock.uninstall();
  }
});

test("read moves the cursor and resolves on its ack", async () => {
  const { c, clock } = setup();
  try {
    c.connect();
    const s = await online(clock, { seq: 0 });
    s.receive({ type: "message", from: "bob", to: "alice", action: "chat", ts: 1, seq: 3, text: "x" });
    const r = outcome(c.read());
    await clock.advance(0);
    const f = s.sentOf("read")[0];
    eq([f.type, f.seq], ["read", 3], "read frame");
    s.receive({ type: "ack", id: f.id });
    await clock.advance(0);
    assert(r.done && r.ack && r.ack.id === f.id, "read resolved to its ack");
  } finally {
    c.close();
    clock.uninstall();
  }
});

// ---- outbox ----------------------------------------------------------------

test("outbox: sent offline, written once on ready, resolved by the ack", async () => {
  const { c, clock } = setup();
  try {
    const p = c.direct("bob", { text: "typed offline" });
    const o = outcome(p);
    assert(typeof p.id === "string" && p.id.length > 0, "the promise carries the id");
    eq(c.outbox.length, 1, "outbox size");
    c.connect();
    const s = await online(clock, { seq: 0 });
    const msgs = s.sentOf("message");
    eq(msgs, [{ type: "message", text: "typed offline", to: "bob", id: p.id }], "frames after ready");
    s.receive({ type: "ack", id: p.id, delivered: 1, seq: 1 });
    await clock.advance(0);
    assert(o.done && o.ack.delivered === 1, "resolved with the ack");
    eq(c.outbox.length, 0, "outbox empty");
  } finally {
    c.close();
    clock.uninstall();
  }
});

test("outbox: an unacked direct message is resent by id after a reconnect; a broadcast fails", async () => {
  const { c, clock } = setup();
  try {
    c.connect();
    const s = await online(clock, { seq: 0 });
    const d = c.direct("bob", { text: "hi bob" });
    const b = c.send({ text: "hi all" });
    const od = outcome(d);
    const ob = outcome(b);
    eq(s.sentOf("message").length, 2, "both written");
    s.drop(1006);
    await clock.advance(0);
    assert(ob.done && ob.err instanceof SwitchboardError && ob.err.code === "connection_lost", `broadcast: ${ob.err && ob.err.code}`);
    assert(!od.done, "the direct message still waits");
    await clock.advance(500);
    const s2 = await online(clock, { seq: 1 });
    const again = s2.sentOf("message");
    eq(again.length, 1, "resent once");
    eq(again[0].id, d.id, "with the same id");
    s2.receive({ type: "ack", id: d.id, delivered: 1, seq: 1 });
    await clock.advance(0);
    assert(od.done && od.ack && od.ack.seq === 1, "the resend's ack resolves it");
  } finally {
    c.close();
    clock.uninstall();
  }
});

test("outbox: without a mailbox an unacked direct message fails with connection_lost", async () => {
  const { c, clock } = setup();
  try {
    c.connect();
    const s = await online(clock);
    const o = outcome(c.direct("bob", { text: "x" }));
    s.drop(1006);
    await clock.advance(0);
    assert(o.done && o.err.code === "connection_lost", "failed");
  } finally {
    c.close();
    clock.uninstall();
  }
});

test("outbox: timeout, server errors, rate_limited retried then reported", async () => {
  const { c, clock } = setup({ sendTimeout: 5000 });
  try {
    const late = outcome(c.send({ text: "never connected" }));
    await clock.advance(4999);
    assert(!late.done, "not failed before the timeout");
    await clock.advance(1);
    assert(late.done && late.err.code === "timeout", `timeout: ${late.err && late.err.code}`);
    eq(c.outbox.length, 0, "timed-out message left the outbox");

    c.connect();
    const s = await online(clock);
    const off = c.direct("carol", { text: "x" });
    const oo = outcome(off);
    s.receive({ type: "error", code: "user_offline", id: off.id, to: "carol" });
    await clock.advance(0);
    assert(oo.done && oo.err.code === "user_offline" && oo.err.detail.to === "carol", "user_offline rejects with the server's code");
    eq(c.state, "online", "a message error does not end the connection");

    const rl = c.send({ text: "busy" });
    const or = outcome(rl);
    s.receive({ type: "error", code: "rate_limited", id: rl.id });
    await clock.advance(1000);
    eq(s.sentOf("message").filter((m) => m.id === rl.id).length, 2, "rate_limited: written again after 1 s");
    s.receive({ type: "error", code: "rate_limited", id: rl.id });
    await clock.advance(4000);
    assert(or.done && or.err.code === "rate_limited", `after the timeout it fails with the server's code: ${or.err && or.err.code}`);
  } finally {
    c.close();
    clock.uninstall();
  }
});

test("outbox: close() fails what waits; the limit is enforced", async () => {
  const { c, clock } = setup({ outboxLimit: 2 });
  try {
    const a = outcome(c.send({ text: "1" }));
    c.send({ text: "2" }).catch(() => {});
    const full = outcome(c.send({ text: "3" }));
    await clock.advance(0);
    assert(full.done && full.err.code === "outbox_full", "outbox_full");
    c.close();
    await clock.advance(0);
    assert(a.done && a.err.code === "closed", "closed");
  } finally {
    clock.uninstall();
  }
});

// ---- tokens ----------------------------------------------------------------

test("tokenExpiry reads exp", () => {
  eq(tokenExpiry(jwt(1900000000)), 1900000000000, "exp in ms");
  eq(tokenExpiry("not a token"), 0, "no exp");
  eq(tokenExpiry(undefined), 0, "undefined");
});

test("getToken at connect and refreshBefore ms before expiry", async () => {
  const calls = [];
  let clockRef;
  const { c, clock } = setup({
    refreshBefore: 60000,
    getToken: async ({ reason }) => {
      calls.push([reason, clockRef.now]);
      return jwt(Math.floor(clockRef.now / 1000) + 120);
    },
  });
  clockRef = clock;
  try {
    const t0 = clock.now;
    c.connect();
    const s = await online(clock);
    eq(calls, [["connect", t0]], "getToken at connect");
    eq(s.sent[0].token, jwt(Math.floor(t0 / 1000) + 120), "online carries the token");
    await clock.advance(59999);
    eq(calls.length, 1, "no refresh before exp - 60 s");
    await clock.advance(1);
    eq(calls.at(-1), ["refresh", t0 + 60000], "refresh at exp - 60 s");
    const r = s.sentOf("refresh");
    eq(r.length, 1, "one refresh frame");
    eq(r[0].token, jwt(Math.floor((t0 + 60000) / 1000) + 120), "with the new token");
    s.receive({ type: "refreshed", exp: Math.floor((t0 + 60000) / 1000) + 120 });
    await clock.advance(59999);
    eq(calls.length, 2, "next refresh not yet");
    await clock.advance(1);
    eq(calls.length, 3, "next refresh 60 s before the new exp");
    // A short-lived token is refreshed at half its life.
  } finally {
    c.close();
    clock.uninstall();
  }
});

test("a short-lived token refreshes at half its life; token_expired reconnects with getToken", async () => {
  const calls = [];
  let clockRef;
  const { c, clock } = setup({
    getToken: ({ reason }) => {
      calls.push(reason);
      return jwt(Math.floor(clockRef.now / 1000) + 20);
    },
  });
  clockRef = clock;
  try {
    c.connect();
    const s = await online(clock);
    await clock.advance(10000);
    eq(calls, ["connect", "refresh"], "refreshed at half of 20 s");
    s.receive({ type: "error", code: "token_expired" });
    s.drop(1008);
    eq(c.state, "reconnecting", "token_expired with getToken reconnects");
  } finally {
    c.close();
    clock.uninstall();
  }
});

// ---- construction ------------------------------------------------------------

test("no WebSocket: a clear error naming the WebSocket option", () => {
  const saved = globalThis.WebSocket;
  try {
    globalThis.WebSocket = undefined;
    let err;
    try {
      new SwitchboardClient({ url: URL, action: "chat" });
    } catch (e) {
      err = e;
    }
    assert(err instanceof TypeError, "throws a TypeError");
    assert(/`WebSocket` option/.test(err.message) && /"ws"/.test(err.message), `message: ${err.message}`);
  } finally {
    globalThis.WebSocket = saved;
  }
});

test("events: presence, join, leave, custom types as messages, status stops", async () => {
  const { c, clock, events } = setup({ autoPresence: true });
  try {
    c.connect();
    const s = await online(clock);
    eq(s.sentOf("presence").length, 1, "presence after ready");
    s.receive({ type: "presence", action: "chat", users: ["alice", "bob"] });
    s.receive({ type: "join", user_id: "carol", action: "chat" });
    s.receive({ type: "leave", user_id: "carol", action: "chat" });
    s.receive({ type: "typing", from: "bob", action: "chat", ts: 1 });
    s.receive({ type: "blocks", from: "bob", action: "chat", ts: 1 }); // a client's custom type
    eq(events.filter(([t]) => t !== "state").map(([t]) => t), ["ready", "presence", "join", "leave", "message", "message"], "event types");
    let detail;
    const off = c.on("message", (m) => (detail = m));
    s.receive({ type: "message", from: "bob", action: "chat", ts: 2, text: "hi" });
    off();
    eq(detail.text, "hi", "on() passes the detail");
    s.receive({ type: "status", status: "disconnected", reason: "kicked" });
    s.drop(1000);
    eq(c.state, "offline", "state after status");
    eq(events.at(-1)[1].reason, "kicked", "reason");
  } finally {
    c.close();
    clock.uninstall();
  }
});

// runAll runs every case (in a browser) and returns the failures.
export async function runAll() {
  const failures = [];
  for (const [name, fn] of cases) {
    try {
      await fn();
    } catch (err) {
      failures.push(`${name}: ${(err && err.stack) || err}`);
    }
  }
  return failures;
}
