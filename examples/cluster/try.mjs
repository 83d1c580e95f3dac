// alice on one node, bob on another, one room, one message across nodes.
//
//   HOOKWIRE_API_KEY=... node examples/cluster/try.mjs [URL_A] [URL_B]
//
// URL_A defaults to http://127.0.0.1:3001, URL_B to http://127.0.0.1:3003.
// socket.io-client comes from tests/js/node_modules (`npm ci` in tests/js).
import { createRequire } from "node:module";

const require = createRequire(new URL("../../tests/js/package.json", import.meta.url));
const { io } = require("socket.io-client");

const key = process.env.HOOKWIRE_API_KEY;
if (!key) {
  console.error("set HOOKWIRE_API_KEY (run.sh prints it)");
  process.exit(2);
}
const [urlA = "http://127.0.0.1:3001", urlB = "http://127.0.0.1:3003"] = process.argv.slice(2);
const room = "cluster-demo";

// A token for uid: create it, or refresh it when the user exists (status 1).
async function token(url, uid) {
  const call = async (path) => {
    const r = await fetch(`${url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ uid }),
    });
    return r.json();
  };
  let r = await call("/user/create_token");
  if (r.meta?.status === 1) r = await call("/user/refresh_token");
  if (r.meta?.status !== 0) throw new Error(`token for ${uid}: ${JSON.stringify(r)}`);
  return r.data.token;
}

// Connects, authenticates, joins `room`; resolves with the socket.
function enter(url, uid, tok) {
  return new Promise((resolve, reject) => {
    const s = io(url, { transports: ["websocket"], reconnection: false });
    const fail = (why) => { s.close(); reject(new Error(`${uid}@${url}: ${why}`)); };
    const timer = setTimeout(() => fail("no join within 5 s"), 5000);
    s.on("connect_error", (e) => fail(e.message));
    s.on("connect", () => s.emit("authenticate", { uid, token: tok }));
    s.on("authenticate", (r) => (r.status === 0 ? s.emit("join", { roomId: room }) : fail(r.data)));
    s.on("join", (r) => {
      clearTimeout(timer);
      r.status === 0 ? resolve(s) : fail(r.data);
    });
    s.on("remote_join", (m) => console.log(`${uid}@${url} sees remote_join of ${m.uid}`));
    s.on("kickout", () => console.log(`${uid}@${url} was kicked out (same uid logged in elsewhere)`));
  });
}

const alice = await enter(urlA, "alice", await token(urlA, "alice"));
console.log(`alice joined ${room} on ${urlA}`);
const bob = await enter(urlB, "bob", await token(urlA, "bob")); // token issued by node A, used on node B
console.log(`bob joined ${room} on ${urlB}`);

const msgId = `m-${Date.now()}`;
const received = new Promise((resolve) => {
  const timer = setTimeout(() => resolve(null), 5000);
  alice.on("msg", (m) => {
    if (m.msgId === msgId) {
      clearTimeout(timer);
      resolve(m);
    }
  });
});
const ack = await bob.timeout(5000).emitWithAck("msg", {
  data: { text: `hello from ${urlB}` },
  storage: 0,
  msgId,
});
console.log("bob's ack:", JSON.stringify(ack));

const m = await received;
let ok = m !== null;
console.log(
  ok
    ? `alice on ${urlA} received bob's msg: ${JSON.stringify(m)}`
    : `alice on ${urlA} did NOT receive bob's msg within 5 s (no cross-node delivery)`,
);

// The stored history is shared: alice's sync on node A finds the message
// bob stored through node B.
const page = await alice.timeout(5000).emitWithAck("sync", { offset: 0 });
const stored = (page.data ?? []).some((x) => x.msgId === msgId);
console.log(`alice's sync on ${urlA}: ${page.data?.length ?? 0} message(s), bob's ${stored ? "among them" : "NOT among them"}`);
ok &&= stored;

alice.close();
bob.close();
process.exit(ok ? 0 : 1);
