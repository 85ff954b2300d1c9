// Runs the shared unit tests (cases.js) with node:test, and checks the
// client against a real WebSocket server from the `ws` package.
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket, { WebSocketServer } from "ws";
import { cases } from "./cases.js";
import { readFileSync } from "node:fs";
import * as pkg from "../switchboard.js";
import { SwitchboardClient } from "../switchboard.js";

for (const [name, fn] of cases) test(name, fn);

test("ws: signs in, sends, resends a direct message after a drop, resumes", async () => {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((r) => wss.once("listening", r));
  const url = `ws://127.0.0.1:${wss.address().port}/ws`;
  const frames = []; // [connection number, frame]
  let n = 0;
  wss.on("connection", (sock) => {
    const me = ++n;
    sock.on("message", (data) => {
      const f = JSON.parse(data.toString());
      frames.push([me, f]);
      if (f.type === "online") {
        sock.send(JSON.stringify({ type: "ready", connection_id: "c" + me, user_id: f.user_id, action: f.action, seq: 3 }));
        // a replayed message the client already saw, then a new one
        sock.send(JSON.stringify({ type: "message", from: "bob", to: "alice", action: "chat", ts: 1, seq: 2, text: "old" }));
        sock.send(JSON.stringify({ type: "message", from: "bob", to: "alice", action: "chat", ts: 1, seq: 3, text: "new" }));
      } else if (f.to === "bob" && me === 1) {
        sock.terminate(); // dropped before the ack
      } else if (f.id !== undefined) {
        sock.send(JSON.stringify({ type: "ack", id: f.id, delivered: 1, seq: 9 }));
      }
    });
  });
  const storage = new Map([["switchboard:seq:alice:chat", "2"]]);
  const c = new SwitchboardClient({
    url,
    action: "chat",
    userId: "alice",
    WebSocket,
    minDelay: 50,
    autoPresence: false,
    storage: { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v) },
  });
  const texts = [];
  c.on("message", (m) => texts.push(m.text));
  const ready = new Promise((r) => c.addEventListener("ready", r, { once: true }));
  c.connect();
  await ready;
  const ack = await c.direct("bob", { text: "hello" });
  c.close();
  wss.close();
  assert.equal(ack.seq, 9);
  const online = frames.filter(([, f]) => f.type === "online").map(([, f]) => f.since);
  assert.deepEqual(online, [2, 3], "since on each connection");
  const sent = frames.filter(([, f]) => f.to === "bob");
  assert.equal(sent.length, 2, "written once per connection");
  assert.equal(sent[0][1].id, sent[1][1].id, "resent with the same id");
  assert.deepEqual(texts, ["new"], "the replayed and repeated messages are delivered once");
});

test("Node without a global WebSocket: the error names the option", { skip: typeof globalThis.WebSocket === "function" && "this Node has a global WebSocket" }, () => {
  assert.throws(() => new SwitchboardClient({ url: "ws://127.0.0.1:1/ws", action: "chat" }), /pass the `WebSocket` option/);
});

test("switchboard.d.ts declares exactly the module's exports", () => {
  const dts = readFileSync(new URL("../switchboard.d.ts", import.meta.url), "utf8");
  const declared = [...dts.matchAll(/^export (?:class|function|const) (\w+)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(declared, Object.keys(pkg).sort());
});

test("a failed send nobody awaits is not an unhandled rejection", async () => {
  const unhandled = [];
  const on = (reason) => unhandled.push(reason);
  process.on("unhandledRejection", on);
  try {
    const c = new SwitchboardClient({ url: "ws://127.0.0.1:1/ws", action: "chat", WebSocket, storage: null });
    c.send({ text: "never awaited" });
    c.close(); // fails it with "closed"
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    process.off("unhandledRejection", on);
  }
  assert.deepEqual(unhandled, []);
});
