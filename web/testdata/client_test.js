// Unit tests of static/client.js against a scripted WebSocket. The Go test
// TestClientModule evaluates this expression in Chromium on the demo page;
// it resolves to a list of failures (empty when all pass).
(async () => {
  const { SwitchboardClient } = await import("/static/client.js");
  const failures = [];
  const check = (name, ok, detail) => {
    if (!ok) failures.push(`${name}: ${detail}`);
  };
  // section runs one group of checks; a timeout ends the group, not the run.
  const section = async (name, fn) => {
    try {
      await fn();
    } catch (err) {
      failures.push(`${name}: ${err.message}`);
    }
  };
  const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
  const until = async (name, cond, ms = 2000) => {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${name}`);
      await tick(2);
    }
  };

  // FakeSocket is what the server would be: the test drives both sides.
  class FakeSocket {
    static all = [];
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.readyState = 0;
      FakeSocket.all.push(this);
      setTimeout(() => {
        if (this.readyState !== 0) return;
        this.readyState = 1;
        this.onopen?.();
      }, 0);
    }
    send(data) {
      this.sent.push(JSON.parse(data));
    }
    close() {
      this.readyState = 3;
    }
    receive(obj) {
      this.onmessage?.({ data: JSON.stringify(obj) });
    }
    drop(code, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
  }

  function newClient(extra = {}) {
    FakeSocket.all = [];
    const c = new SwitchboardClient({
      url: "ws://example.test/ws",
      userId: "alice",
      action: "chat",
      WebSocket: FakeSocket,
      minDelay: 10,
      maxDelay: 80,
      pingInterval: 0,
      ...extra,
    });
    c.states = [];
    c.events = [];
    c.addEventListener("state", (e) => c.states.push(e.detail));
    for (const type of ["ready", "message", "ack", "error", "presence", "join", "leave", "status", "refreshed"]) {
      c.addEventListener(type, (e) => c.events.push([type, e.detail]));
    }
    return c;
  }

  async function signIn(c) {
    c.connect();
    await until("the socket to open", () => FakeSocket.all.at(-1)?.sent.length > 0);
    const ws = FakeSocket.all.at(-1);
    ws.receive({ type: "ready", connection_id: "c1", user_id: "alice", action: "chat" });
    return ws;
  }

  // Sign-in: online carries user_id, action and token; presence follows ready.
  await section("sign-in", async () => {
    const c = newClient({ token: "t0k" });
    const ws = await signIn(c);
    check("online frame", JSON.stringify(ws.sent[0]) === JSON.stringify({ type: "online", action: "chat", user_id: "alice", token: "t0k" }), JSON.stringify(ws.sent[0]));
    check("presence after ready", ws.sent[1]?.type === "presence", JSON.stringify(ws.sent));
    check("state online", c.state === "online" && c.session?.connection_id === "c1", c.state);

    const id1 = c.send({ text: "hi" });
    const id2 = c.direct("bob", { text: "psst" });
    check("ids differ", typeof id1 === "string" && id1 !== id2, `${id1} ${id2}`);
    check("room message", JSON.stringify(ws.sent[2]) === JSON.stringify({ type: "message", text: "hi", id: id1 }), JSON.stringify(ws.sent[2]));
    check("direct message", ws.sent[3]?.to === "bob" && ws.sent[3]?.id === id2, JSON.stringify(ws.sent[3]));
    check("own id kept", c.send({ text: "x", id: 7 }) === 7, "");

    for (const frame of [
      { type: "ack", id: id1, delivered: 2 },
      { type: "error", code: "user_offline", message: "m", id: id2, to: "bob" },
      { type: "presence", action: "chat", users: ["alice", "bob"] },
      { type: "join", user_id: "carol", action: "chat" },
      { type: "leave", user_id: "carol", action: "chat" },
      { type: "message", from: "bob", action: "chat", ts: 1, text: "yo" },
      { type: "typing", from: "bob", action: "chat", ts: 2 },
      { type: "refreshed", exp: 9 },
    ]) {
      ws.receive(frame);
    }
    const types = c.events.map(([t]) => t).join(",");
    check("events", types === "ready,ack,error,presence,join,leave,message,message,refreshed", types);
    check("error non-fatal after ready", c.state === "online", c.state);
    c.close();
    check("close", c.state === "offline" && ws.readyState === 3, c.state);
    let threw = null;
    try {
      c.send({ text: "late" });
    } catch (err) {
      threw = err;
    }
    check("send when offline throws", threw?.code === "not_connected", String(threw));
  });

  // Reconnect policy: what each way of closing leads to.
  const cases = [
    { name: "1006 abnormal", ready: true, close: 1006, want: "reconnecting" },
    { name: "1001 going away", ready: true, close: 1001, want: "reconnecting" },
    { name: "1011 server error", ready: true, close: 1011, want: "reconnecting" },
    { name: "1012 restart", ready: true, close: 1012, want: "reconnecting" },
    { name: "unavailable 1013", errors: ["unavailable"], close: 1013, want: "reconnecting" },
    { name: "slow consumer 1008", ready: true, close: 1008, reason: "slow consumer", want: "reconnecting" },
    { name: "error after ready, then 1006", ready: true, errors: ["binary_unsupported", "unauthorized"], close: 1006, want: "reconnecting" },
    { name: "unauthorized 1008", errors: ["unauthorized"], close: 1008, want: "offline" },
    { name: "user_mismatch 1008", errors: ["user_mismatch"], close: 1008, want: "offline" },
    { name: "invalid_action 1008", errors: ["invalid_action"], close: 1008, want: "offline" },
    { name: "missing_action 1008", errors: ["missing_action"], close: 1008, want: "offline" },
    { name: "invalid_user 1008", errors: ["invalid_user"], close: 1008, want: "offline" },
    { name: "token_expired 1008", ready: true, errors: ["token_expired"], close: 1008, want: "offline" },
    { name: "token_expired with a token function", ready: true, errors: ["token_expired"], close: 1008, want: "reconnecting", token: () => "fresh" },
    { name: "status then 1000", ready: true, status: "kicked", close: 1000, want: "offline" },
    { name: "1000 normal", ready: true, close: 1000, want: "offline" },
  ];
  for (const tc of cases) {
    await section(tc.name, async () => {
      const c = newClient(tc.token ? { token: tc.token } : {});
      c.connect();
      await until(`${tc.name}: online sent`, () => FakeSocket.all.at(-1)?.sent.length > 0);
      const ws = FakeSocket.all.at(-1);
      if (tc.ready) ws.receive({ type: "ready", connection_id: "c1", user_id: "alice", action: "chat" });
      for (const code of tc.errors || []) ws.receive({ type: "error", code, message: code });
      if (tc.status) ws.receive({ type: "status", status: "disconnected", reason: tc.status });
      ws.drop(tc.close, tc.reason);
      const last = c.states.at(-1);
      check(tc.name, last.state === tc.want, `state ${last.state}, want ${tc.want} (${JSON.stringify(last)})`);
      if (tc.status) check(`${tc.name}: reason`, last.reason === tc.status, JSON.stringify(last));
      if (tc.want === "reconnecting") {
        // It dials again by itself and signs in again.
        await until(`${tc.name}: redial`, () => FakeSocket.all.length === 2 && FakeSocket.all[1].sent.length > 0);
        const again = FakeSocket.all[1].sent[0];
        check(`${tc.name}: online again`, again.type === "online" && again.user_id === "alice", JSON.stringify(again));
        if (tc.token) check(`${tc.name}: fresh token`, again.token === "fresh", JSON.stringify(again));
      } else {
        await tick(120); // longer than any backoff of this client
        check(`${tc.name}: no redial`, FakeSocket.all.length === 1, `${FakeSocket.all.length} sockets`);
      }
      c.close();
    });
  }

  // Backoff: exponential with jitter, capped; the cap holds.
  await section("backoff", async () => {
    const c = newClient({ minDelay: 4, maxDelay: 32 });
    c.connect();
    for (let i = 0; i < 6; i++) {
      await until(`dial ${i}`, () => FakeSocket.all.length === i + 1 && FakeSocket.all[i].sent.length > 0);
      FakeSocket.all[i].drop(1006);
    }
    const delays = c.states.filter((s) => s.state === "reconnecting").map((s) => s.delay);
    const caps = [4, 8, 16, 32, 32, 32];
    check("backoff count", delays.length === caps.length, JSON.stringify(delays));
    delays.forEach((d, i) => check(`backoff ${i}`, d >= caps[i] / 2 && d <= caps[i], `delay ${d}, want ${caps[i] / 2}..${caps[i]}`));
    // Reconnecting again and reaching ready goes back online.
    await until("last dial", () => FakeSocket.all.length === 7 && FakeSocket.all[6].sent.length > 0);
    FakeSocket.all[6].receive({ type: "ready", connection_id: "c7", user_id: "alice", action: "chat" });
    check("online after retries", c.state === "online", c.state);
    c.close();
  });

  // A connection that never gets ready times out and is retried.
  await section("connect timeout", async () => {
    const c = newClient({ connectTimeout: 20 });
    c.connect();
    await until("connect timeout", () => c.states.some((s) => s.state === "reconnecting"));
    check("timeout reason", c.states.find((s) => s.state === "reconnecting").reason === "connect timeout", JSON.stringify(c.states));
    c.close();
  });

  // A dead connection is found by ping: no pong within an interval.
  await section("ping", async () => {
    const c = newClient({ pingInterval: 15 });
    const ws = await signIn(c);
    await until("ping", () => ws.sent.some((m) => m.type === "ping"));
    ws.receive({ type: "pong" });
    await until("second ping", () => ws.sent.filter((m) => m.type === "ping").length === 2);
    check("alive while pongs come", c.state === "online", c.state);
    await until("ping timeout", () => c.state === "reconnecting");
    check("ping timeout reason", c.states.at(-1).reason === "ping timeout", JSON.stringify(c.states.at(-1)));
    c.close();
  });

  return failures;
})()
