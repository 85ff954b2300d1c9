// A Node bot on @switchboard/client. Node 18-21 have no global WebSocket:
// pass the `ws` package's.
import WebSocket from "ws";
import { SwitchboardClient } from "@switchboard/client";

const sb = new SwitchboardClient({
  url: "ws://localhost:8080/ws",
  action: "chat",
  userId: "build-bot",
  token: process.env.SWITCHBOARD_TOKEN,
  WebSocket,
  storage: null,
});
sb.on("ready", async () => {
  const ack = await sb.send({ text: "build 1234 passed" });
  console.log("delivered to", ack.delivered);
});
sb.on("message", (m) => console.log(m.from, m.text));
sb.connect();
process.on("SIGINT", () => sb.close());
