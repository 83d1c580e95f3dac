// socket.io spoken by hand over the `ws` package, for tests that hold
// thousands of connections: socket.io-client per connection would cost this
// process more than the server it measures.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { WAIT_MS } from './harness.mjs';

export { WebSocket };

/** Resolves what `pick` returns for the next text frame it returns something for (pings are answered by the listener `openJoined` adds). */
export function nextFrame(ws, pick, timeoutMs = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { ws.off('message', on); reject(new Error(`no answer within ${timeoutMs} ms`)); }, timeoutMs);
    const on = (data) => {
      const got = pick(data.toString());
      if (got !== undefined) { clearTimeout(t); ws.off('message', on); resolve(got); }
    };
    ws.on('message', on);
  });
}

/** Picks the `name` event's payload out of a socket.io EVENT packet. */
export const eventOf = (name) => (text) => {
  if (!text.startsWith('42')) return undefined;
  const [ev, payload] = JSON.parse(text.slice(2));
  return ev === name ? payload : undefined;
};

/** One WebSocket that has authenticated as `uid` and joined `room` (the tenant must not force user auth). */
export async function openJoined(srv, uid, room) {
  const ws = new WebSocket(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&transport=websocket`);
  // Answer the server's pings for the connection's whole life.
  ws.on('message', (data) => { if (data.toString() === '2') ws.send('3'); });
  const opened = nextFrame(ws, (t) => (t.startsWith('0{') ? t : undefined));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  await opened;
  const connected = nextFrame(ws, (t) => (t.startsWith('40') ? t : undefined));
  ws.send('40');
  await connected;
  const authed = nextFrame(ws, eventOf('authenticate'));
  ws.send(`42${JSON.stringify(['authenticate', { uid, token: '' }])}`);
  assert.equal((await authed).status, 0, `authenticate ${uid}`);
  const joined = nextFrame(ws, eventOf('join'));
  ws.send(`42${JSON.stringify(['join', { roomId: room }])}`);
  assert.equal((await joined).status, 0, `join ${uid}`);
  return ws;
}

export const rssBytes = (pid) => 1024 * Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
