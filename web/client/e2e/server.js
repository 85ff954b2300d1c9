// End to end against a real Switchboard server, with the `ws` package as
// Node 18-21 users run it. The Go test TestClientNodeServer starts the
// server and runs this file with SWITCHBOARD_URL set (`npm test` does not run it); it exits non-zero on
// failure.
import assert from "node:assert/strict";
import WebSocket from "ws";
import { SwitchboardClient } from "../switchboard.js";

const url = process.env.SWITCHBOARD_URL;
if (!url) throw new Error("SWITCHBOARD_URL is not set");

function client(userId) {
  return new SwitchboardClient({ url, userId, action: "e2e", WebSocket, storage: null, minDelay: 100 });
}

function next(c, type, match = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${type}`)), 10000);
    const off = c.on(type, (d) => {
      if (!match(d)) return;
      clearTimeout(timer);
      off();
      resolve(d);
    });
  });
}

const alice = client("alice");
const bob = client("bob");
try {
  // alice's message is sent before she is connected: it waits in the outbox.
  const early = alice.send({ text: "sent before connecting" });
  const bobReady = next(bob, "ready");
  bob.connect();
  await bobReady;
  const joined = next(bob, "join", (j) => j.user_id === "alice");
  const got = next(bob, "message", (m) => m.text === "sent before connecting");
  alice.connect();
  await joined;
  const ack = await early;
  assert.equal(ack.delivered, 1, "the early broadcast reached bob");
  assert.equal((await got).from, "alice");

  const direct = next(bob, "message", (m) => m.text === "psst");
  const dack = await alice.direct("bob", { text: "psst" });
  assert.equal(dack.delivered, 1);
  const m = await direct;
  assert.equal(m.to, "bob");
  assert.equal(m.from, "alice");

  const presence = next(alice, "presence");
  alice.presence();
  assert.deepEqual((await presence).users, ["alice", "bob"]);

  // A server error fails the send with its code.
  await assert.rejects(alice.send({ type: "ack", text: "reserved" }), (err) => err.code === "reserved_type");
  console.log("ok");
} finally {
  alice.close();
  bob.close();
}
