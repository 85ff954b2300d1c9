// A browser chat client on @switchboard/client, type-checked with
// `npm run typecheck` (tsc --noEmit).
import { SwitchboardClient, SwitchboardError, type Message, type StateDetail } from "@switchboard/client";

const sb = new SwitchboardClient({
  action: "chat",
  userId: "alice",
  // Called at connect and before the token expires.
  getToken: async () => {
    const res = await fetch("/token");
    return res.text();
  },
});

sb.on("state", (s: StateDetail) => {
  if (s.state === "reconnecting") console.log(`reconnecting in ${Math.round((s.delay ?? 0) / 1000)} s`, s.code, s.reason);
  if (s.state === "offline" && s.error) console.log("refused:", s.error.code);
});
sb.on("presence", (p) => console.log("online:", p.users.join(", ")));
sb.on("join", (e) => console.log(e.user_id, "joined"));
sb.on("leave", (e) => console.log(e.user_id, "left"));
sb.on("message", (m: Message) => {
  if (m.to !== undefined && m.to !== sb.session?.user_id) return;
  console.log(m.to ? "private" : "room", m.from ?? "server", m.text, m.seq);
});
sb.addEventListener("ack", (e) => console.log("ack", e.detail.id, e.detail.delivered));
sb.addEventListener("error", (e) => console.log("error", e.detail.code));

sb.connect();

async function sendTo(to: string, text: string): Promise<void> {
  const p = sb.direct(to, { text });
  console.log("sending", p.id);
  try {
    const ack = await p;
    console.log("kept as", ack.seq, "delivered to", ack.delivered);
    await sb.read();
  } catch (err) {
    if (err instanceof SwitchboardError) console.log("not sent:", err.code);
  }
}
void sendTo("bob", "hello");
window.addEventListener("beforeunload", () => sb.close());
