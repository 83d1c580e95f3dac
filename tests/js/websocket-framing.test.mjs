// RFC 6455 framing on the engine.io websocket endpoint, black-box.
//
// Two clients talk to a real server: a hand-written framer on a raw TCP
// socket (exact bytes: masking, 7/16/64-bit lengths, FIN/RSV/opcode, split
// and coalesced writes) for what a library would refuse to send, and the
// `ws` package for the well-formed cases, as a real client library sees
// them. Every case checks what the server answers (frames, close code) and
// whether the session is still usable or closed, as RFC 6455 requires.
//
// The socket.io traffic on top is the room-sync protocol: handshake `auth`
// {uid, token} in the CONNECT packet, `join` a room, then acked events
// (`sync`, `msg`) as probes that the server really assembled and handled a
// message.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, afterEach, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { WAIT_MS, rid, sleep, startServer, tokenFor } from './harness.mjs';

const WS_PATH = '/socket.io/?EIO=4&transport=websocket';
const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const OP = { CONT: 0x0, TEXT: 0x1, BIN: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };

/**
 * How long a refusal may take. A server that fails a connection does so on
 * the offending bytes; waiting the full WAIT_MS would only slow down the
 * report when it does not.
 */
const REFUSE_MS = Math.min(WAIT_MS, 10000);

/** A server that sets no limit of its own (max_payload_bytes default, 4 MiB). */
const DEFAULT_MAX_PAYLOAD = 4 * 1024 * 1024;
/** The limit of the server started for the size cases. */
const SMALL_MAX_PAYLOAD = 100_000;

// ---------------------------------------------------------------------------
// client-side framing

function maskBytes(data, key) {
  const out = Buffer.allocUnsafe(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i] ^ key[i & 3];
  return out;
}

const toBuf = (p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, 'utf8'));

/**
 * One client frame. `length` overrides the declared payload length (a
 * bigint forces the 64-bit form with exactly those bits), for headers that
 * announce more than is sent.
 */
function encodeFrame({ opcode, payload = '', fin = true, rsv = 0, masked = true, maskKey = randomBytes(4), length } = {}) {
  const data = toBuf(payload);
  const len = length ?? data.length;
  const b0 = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
  const m = masked ? 0x80 : 0;
  let head;
  if (typeof len === 'bigint') {
    head = Buffer.alloc(10);
    head[1] = m | 127;
    head.writeBigUInt64BE(len, 2);
  } else if (len < 126) {
    head = Buffer.alloc(2);
    head[1] = m | len;
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[1] = m | 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = m | 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = b0;
  return masked ? Buffer.concat([head, maskKey, maskBytes(data, maskKey)]) : Buffer.concat([head, data]);
}

const text = (payload, o = {}) => encodeFrame({ opcode: OP.TEXT, payload, ...o });
const cont = (payload, o = {}) => encodeFrame({ opcode: OP.CONT, payload, ...o });
const closePayload = (code, reason = '') => {
  const r = toBuf(reason);
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code, 0);
  r.copy(b, 2);
  return b;
};

/** Length form a server frame must use: the minimal one (RFC 6455 5.2). */
const minimalForm = (n) => (n < 126 ? 7 : n < 65536 ? 16 : 64);

/** Splits a string's UTF-8 bytes into `n` nearly equal parts (may cut a character: RFC 6455 validates whole messages). */
function splitBytes(s, n) {
  const b = toBuf(s);
  const parts = [];
  for (let i = 0; i < n; i++) parts.push(b.subarray(Math.floor((i * b.length) / n), Math.floor(((i + 1) * b.length) / n)));
  return parts;
}

// ---------------------------------------------------------------------------
// an inbox shared by both clients: messages and control frames in arrival order

class Inbox {
  constructor(label) {
    this.label = label;
    this.items = []; // {kind: 'message', binary, data, text, frames} | {kind: 'control', opcode, payload, code, reason}
    this.waiters = [];
    this.closed = false;
    this.nextAckId = 1;
  }

  _push(item) {
    this.items.push(item);
    for (const w of [...this.waiters]) {
      if (!item.used && w.pred(item)) {
        item.used = true;
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(item);
      }
    }
  }

  _closedNow() {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.reject(new Error(`[${this.label}] connection closed while waiting for ${w.what}; received:\n    ${this.summary()}`));
  }

  summary() {
    return this.items
      .slice(-15)
      .map((i) => (i.kind === 'message'
        ? `${i.binary ? 'binary' : 'text'} ${i.binary ? i.data.toString('hex').slice(0, 60) : JSON.stringify(i.text.slice(0, 120))}${i.data.length > 120 ? ` (${i.data.length} B)` : ''}`
        : `control 0x${i.opcode.toString(16)} ${i.code !== undefined ? `code=${i.code} reason=${JSON.stringify(i.reason)}` : i.payload.toString('hex')}`))
      .join('\n    ') || '(nothing)';
  }

  /** The next unconsumed item matching pred. */
  next(pred, what, timeoutMs = WAIT_MS) {
    const hit = this.items.find((i) => !i.used && pred(i));
    if (hit) {
      hit.used = true;
      return Promise.resolve(hit);
    }
    if (this.closed) return Promise.reject(new Error(`[${this.label}] connection closed, no ${what}; received:\n    ${this.summary()}`));
    return new Promise((resolve, reject) => {
      const w = { pred, what, resolve: null, reject: null };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`[${this.label}] no ${what} within ${timeoutMs} ms; received:\n    ${this.summary()}`));
      }, timeoutMs);
      w.resolve = (v) => { clearTimeout(t); resolve(v); };
      w.reject = (e) => { clearTimeout(t); reject(e); };
      this.waiters.push(w);
    });
  }

  /** Next text message (the engine.io server ping `2` is skipped unless asked for). */
  async nextText(pred = () => true, what = 'text message', timeoutMs) {
    const m = await this.next((i) => i.kind === 'message' && !i.binary && i.text !== '2' && pred(i.text), what, timeoutMs);
    return m.text;
  }

  nextControl(opcode, timeoutMs = WAIT_MS) {
    return this.next((i) => i.kind === 'control' && i.opcode === opcode, `control frame 0x${opcode.toString(16)}`, timeoutMs);
  }

  /** The socket.io event `name` pushed by the server: its first argument. */
  async nextEvent(name, timeoutMs) {
    const t = await this.nextText((s) => s.startsWith(`42["${name}"`), `"${name}" event`, timeoutMs);
    return JSON.parse(t.slice(2))[1];
  }

  /** A socket.io event with an ack id; returns {id, packet} (the text to send). */
  ackPacket(event, data) {
    const id = this.nextAckId++;
    return { id, packet: `42${id}${JSON.stringify([event, data])}` };
  }

  /** The ack with this id: its first argument. */
  async ackOf(id, timeoutMs) {
    const t = await this.nextText((s) => s.startsWith(`43${id}[`), `ack ${id}`, timeoutMs);
    return JSON.parse(t.slice(2 + String(id).length))[0];
  }

  /** Emit with ack (one ordinary text frame) and wait for the ack. */
  async emitAck(event, data, timeoutMs) {
    const { id, packet } = this.ackPacket(event, data);
    this.sendText(packet);
    return this.ackOf(id, timeoutMs);
  }

  /** Proves the session still works: a `sync` round trip (the room is joined). */
  async probe() {
    const r = await this.emitAck('sync', { offset: 0 });
    assert.equal(r.status, 0, `[${this.label}] sync probe: ${JSON.stringify(r)}`);
    return r;
  }
}

// ---------------------------------------------------------------------------
// the raw client: a TCP socket and a hand-written parser of server frames

const rawClients = [];

class RawWs extends Inbox {
  /** Upgrade request on a fresh TCP connection; resolves once the response head is read. */
  static open(srv, { path = WS_PATH, label = 'raw' } = {}) {
    const key = randomBytes(16).toString('base64');
    return new Promise((resolve, reject) => {
      const sock = net.connect(srv.port, '127.0.0.1');
      // Every write goes out as its own segment: the split-write cases
      // depend on it.
      sock.setNoDelay(true);
      let head = Buffer.alloc(0);
      const t = setTimeout(() => { sock.destroy(); reject(new Error(`[${label}] no upgrade response within ${WAIT_MS} ms`)); }, WAIT_MS);
      const onData = (d) => {
        head = Buffer.concat([head, d]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        clearTimeout(t);
        sock.off('data', onData);
        sock.off('error', onError);
        const [statusLine, ...lines] = head.subarray(0, end).toString('latin1').split('\r\n');
        const headers = {};
        for (const l of lines) {
          const i = l.indexOf(':');
          headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        const ws = new RawWs(sock, label);
        ws.key = key;
        ws.statusLine = statusLine;
        ws.status = Number(statusLine.split(' ')[1]);
        ws.headers = headers;
        ws._feed(head.subarray(end + 4));
        resolve(ws);
      };
      const onError = (e) => { clearTimeout(t); reject(e); };
      sock.on('data', onData);
      sock.on('error', onError);
      sock.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${srv.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
        + `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
  }

  constructor(sock, label) {
    super(label);
    this.sock = sock;
    this.buf = Buffer.alloc(0);
    this.frames = []; // every server frame, as parsed
    this.problems = []; // server frames RFC 6455 forbids
    this.fragments = null; // {binary, parts, frames} while a server message is open
    this.closeAt = -1; // index in frames of the server's close frame
    this.tcpClosed = new Promise((resolve) => sock.once('close', () => { this._closedNow(); resolve(); }));
    sock.on('data', (d) => this._feed(d));
    // A reset after the server failed the connection is expected; the
    // assertions look at what was received before it.
    sock.on('error', (e) => { this.error = e; });
    rawClients.push(this);
  }

  _feed(d) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : Buffer.from(d);
    for (;;) {
      const f = this._parseOne();
      if (!f) return;
      this._onFrame(f);
    }
  }

  _parseOne() {
    const b = this.buf;
    if (b.length < 2) return null;
    let len = b[1] & 0x7f;
    let off = 2;
    let form = 7;
    if (len === 126) {
      if (b.length < 4) return null;
      len = b.readUInt16BE(2);
      off = 4;
      form = 16;
    } else if (len === 127) {
      if (b.length < 10) return null;
      const big = b.readBigUInt64BE(2);
      if (big >> 63n) this.problems.push('64-bit length with the most significant bit set');
      len = Number(big);
      off = 10;
      form = 64;
    }
    const masked = (b[1] & 0x80) !== 0;
    let key;
    if (masked) {
      if (b.length < off + 4) return null;
      key = b.subarray(off, off + 4);
      off += 4;
    }
    if (b.length < off + len) return null;
    let payload = Buffer.from(b.subarray(off, off + len));
    if (masked) payload = maskBytes(payload, key);
    this.buf = b.subarray(off + len);
    return { fin: (b[0] & 0x80) !== 0, rsv: (b[0] >> 4) & 7, opcode: b[0] & 0x0f, masked, form, length: len, payload };
  }

  _onFrame(f) {
    const where = `frame #${this.frames.length} (opcode 0x${f.opcode.toString(16)})`;
    this.frames.push(f);
    if (f.masked) this.problems.push(`${where} is masked`);
    if (f.rsv) this.problems.push(`${where} has RSV bits ${f.rsv.toString(2)}`);
    if (f.form !== minimalForm(f.length)) this.problems.push(`${where}: ${f.length} B in the ${f.form}-bit length form`);
    if (this.closeAt >= 0) this.problems.push(`${where} after the server's close frame`);
    if (f.opcode >= 0x8) {
      if (!f.fin) this.problems.push(`${where}: fragmented control frame`);
      if (f.length > 125) this.problems.push(`${where}: control frame of ${f.length} B`);
      const item = { kind: 'control', opcode: f.opcode, payload: f.payload, frame: f };
      if (f.opcode === OP.CLOSE) {
        this.closeAt = this.frames.length - 1;
        if (f.payload.length >= 2) {
          item.code = f.payload.readUInt16BE(0);
          item.reason = f.payload.subarray(2).toString('utf8');
        } else {
          item.code = null;
          item.reason = '';
        }
      }
      this._push(item);
      return;
    }
    if (f.opcode === OP.CONT && !this.fragments) {
      this.problems.push(`${where}: continuation without a start`);
      return;
    }
    if (f.opcode !== OP.CONT && this.fragments) this.problems.push(`${where}: new message inside a fragmented one`);
    if (f.opcode !== OP.CONT) this.fragments = { binary: f.opcode === OP.BIN, parts: [], frames: [] };
    this.fragments.parts.push(f.payload);
    this.fragments.frames.push(f);
    if (!f.fin) return;
    const { binary, parts, frames } = this.fragments;
    this.fragments = null;
    const data = Buffer.concat(parts);
    this._push({ kind: 'message', binary, data, text: binary ? '' : data.toString('utf8'), frames });
  }

  write(buf) {
    if (!this.sock.destroyed) this.sock.write(buf);
  }

  sendText(s) {
    this.write(text(s));
  }

  /** Writes the bytes in pieces of `step`, one write each, with a pause between them. */
  async trickle(buf, step = 1, pauseMs = 2) {
    for (let i = 0; i < buf.length; i += step) {
      this.write(buf.subarray(i, i + step));
      await sleep(pauseMs);
    }
  }

  /**
   * The server fails (or closes) the connection: a close frame with one of
   * `codes` (null: no status code), then the TCP connection closed by the
   * server. Our side answers the close as a client must, and never closes
   * the TCP connection itself.
   */
  async expectClose(codes, what) {
    const c = await this.nextControl(OP.CLOSE, REFUSE_MS).catch((e) => {
      throw new Error(`${what}: expected a close frame with code ${codes.join(' or ')}; ${e.message}`);
    });
    assert.ok(
      codes.includes(c.code),
      `${what}: close code ${c.code} (reason ${JSON.stringify(c.reason)}), expected ${codes.join(' or ')}`,
    );
    this.write(encodeFrame({ opcode: OP.CLOSE, payload: c.code === null ? '' : closePayload(c.code) }));
    await Promise.race([
      this.tcpClosed,
      sleep(WAIT_MS).then(() => { throw new Error(`${what}: the server sent close ${c.code} but kept the TCP connection open for ${WAIT_MS} ms`); }),
    ]);
    return c;
  }

  destroy() {
    this.sock.destroy();
  }
}

/** A raw websocket past the engine.io open packet (no socket.io namespace yet). */
async function rawOpen(srv, label = 'raw') {
  const ws = await RawWs.open(srv, { label });
  assert.equal(ws.status, 101, `[${label}] upgrade: ${ws.statusLine}`);
  const open = await ws.nextText(() => true, 'engine.io open packet');
  assert.match(open, /^0\{/, `[${label}] first message`);
  ws.open = JSON.parse(open.slice(1));
  return ws;
}

/**
 * A raw websocket whose socket.io CONNECT (no credentials) has been
 * answered: the server is past its connection set-up and writing frames,
 * so what follows tests the framing alone.
 */
async function rawConnected(srv, label = 'raw') {
  const ws = await rawOpen(srv, label);
  ws.sendText('40');
  await ws.nextText((t) => t.startsWith('40{'), 'socket.io CONNECT answer');
  return ws;
}

/**
 * A room-sync session on a client (raw or ws): CONNECT with the handshake
 * auth, the `authenticate` answer, and `join` of `room` when given.
 */
async function sioLogin(ws, srv, room) {
  const uid = rid('u');
  const token = await tokenFor(srv, uid);
  ws.uid = uid;
  ws.sendText(`40${JSON.stringify({ uid, token })}`);
  const connected = await ws.nextText((t) => t.startsWith('40') || t.startsWith('44'), 'socket.io CONNECT answer');
  assert.match(connected, /^40\{"sid":/, `[${ws.label}] CONNECT`);
  const auth = await ws.nextEvent('authenticate');
  assert.equal(auth.status, 0, `[${ws.label}] authenticate: ${JSON.stringify(auth)}`);
  if (room) {
    const j = await ws.emitAck('join', { roomId: room });
    assert.equal(j.status, 0, `[${ws.label}] join: ${JSON.stringify(j)}`);
  }
  return ws;
}

async function rawSession(srv, { room = rid('r'), label = 'raw' } = {}) {
  const ws = await rawOpen(srv, label);
  return sioLogin(ws, srv, room);
}

// ---------------------------------------------------------------------------
// the `ws` package as the real client library

class LibWs extends Inbox {
  // ws offers permessage-deflate, as browsers do: whatever the server
  // answers to the offer, messages must arrive intact.
  static open(srv, label = 'ws') {
    const w = new LibWs(new WebSocket(`ws://127.0.0.1:${srv.port}${WS_PATH}`), label);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`[${label}] no open within ${WAIT_MS} ms`)), WAIT_MS);
      w.ws.once('open', () => { clearTimeout(t); resolve(w); });
      w.ws.once('error', (e) => { clearTimeout(t); reject(e); });
    });
  }

  constructor(ws, label) {
    super(label);
    this.ws = ws;
    this.errors = [];
    ws.on('message', (data, binary) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.concat([].concat(data));
      this._push({ kind: 'message', binary, data: buf, text: binary ? '' : buf.toString('utf8') });
    });
    ws.on('pong', (payload) => this._push({ kind: 'control', opcode: OP.PONG, payload }));
    ws.on('ping', (payload) => this._push({ kind: 'control', opcode: OP.PING, payload }));
    // ws reports a protocol violation by the server as an error event.
    ws.on('error', (e) => this.errors.push(e));
    this.closedInfo = new Promise((resolve) => ws.once('close', (code, reason) => {
      this._closedNow();
      resolve({ code, reason: reason.toString('utf8') });
    }));
  }

  sendText(s, opts = {}) {
    this.ws.send(s, { binary: false, ...opts });
  }

  async closedWithin(ms = WAIT_MS) {
    return Promise.race([this.closedInfo, sleep(ms).then(() => { throw new Error(`[${this.label}] still open after ${ms} ms`); })]);
  }

  destroy() {
    this.ws.terminate();
  }
}

async function libSession(srv, { room = rid('r'), label = 'ws' } = {}) {
  const ws = await LibWs.open(srv, label);
  const open = await ws.nextText(() => true, 'engine.io open packet');
  assert.match(open, /^0\{/, `[${label}] first message`);
  return sioLogin(ws, srv, room);
}

/** A JSON `sync` packet padded to exactly `size` bytes of UTF-8 (the server ignores unknown fields). */
function paddedSync(ws, size) {
  const { id, packet } = ws.ackPacket('sync', { offset: 0, pad: '' });
  const pad = size - Buffer.byteLength(packet);
  assert.ok(pad >= 0, `cannot pad a packet of ${Buffer.byteLength(packet)} B to ${size} B`);
  const out = packet.replace('"pad":""', `"pad":"${'p'.repeat(pad)}"`);
  assert.equal(Buffer.byteLength(out), size);
  return { id, packet: out };
}

const opened = [];
const track = (c) => { opened.push(c); return c; };

// ---------------------------------------------------------------------------

let srv;

before(async () => {
  srv = await startServer();
});

// Every server frame any raw client saw in a test obeys RFC 6455: never
// masked, no RSV bits, minimal length form, control frames short and
// unfragmented, fragments in order, nothing after the close frame.
afterEach(() => {
  const seen = rawClients.splice(0);
  assert.deepEqual(seen.flatMap((c) => c.problems.map((p) => `[${c.label}] ${p}`)), [], 'server frames RFC 6455 forbids');
});

after(async () => {
  for (const c of opened) {
    try { c.destroy(); } catch { /* gone */ }
  }
  await srv?.destroy();
});

describe('1. handshake', () => {
  test('101 with the Sec-WebSocket-Accept of our key; the open packet comes first, as an unmasked text frame', async () => {
    const ws = track(await RawWs.open(srv));
    assert.equal(ws.status, 101, ws.statusLine);
    assert.equal(ws.headers.upgrade?.toLowerCase(), 'websocket');
    assert.ok(/\bupgrade\b/i.test(ws.headers.connection || ''), `Connection: ${ws.headers.connection}`);
    const expected = createHash('sha1').update(ws.key + ACCEPT_GUID).digest('base64');
    assert.equal(ws.headers['sec-websocket-accept'], expected);
    // No extension or subprotocol was asked for, so none may be answered.
    assert.equal(ws.headers['sec-websocket-extensions'], undefined);
    assert.equal(ws.headers['sec-websocket-protocol'], undefined);

    const open = await ws.next(() => true, 'first frame');
    const first = ws.frames[0];
    assert.equal(first.opcode, OP.TEXT, 'the first frame is a text frame');
    assert.equal(first.fin, true);
    assert.equal(first.masked, false, 'server frames are never masked');
    assert.equal(first.rsv, 0);
    assert.equal(open.kind, 'message');
    assert.match(open.text, /^0\{/);
    const o = JSON.parse(open.text.slice(1));
    assert.equal(typeof o.sid, 'string');
    assert.ok(o.sid.length > 0);
    assert.deepEqual(o.upgrades, [], 'a websocket session has nothing to upgrade to');
    assert.equal(typeof o.pingInterval, 'number');
    assert.equal(typeof o.pingTimeout, 'number');
    assert.equal(o.maxPayload, DEFAULT_MAX_PAYLOAD);

    await sioLogin(ws, srv, rid('r'));
    await ws.probe();
    assert.deepEqual(ws.frames.filter((f) => f.masked), [], 'no server frame is masked');
  });

  test('the ws client library connects and reads the open packet, then a session works', async () => {
    const ws = track(await libSession(srv));
    await ws.probe();
    assert.deepEqual(ws.errors, []);
  });
});

describe('2. fragmented text messages', () => {
  test('text FIN=0, continuation FIN=0, continuation FIN=1 is one message', async () => {
    const ws = track(await rawSession(srv));
    const { id, packet } = ws.ackPacket('sync', { offset: 0 });
    const [a, b, c] = splitBytes(packet, 3);
    ws.write(text(a, { fin: false }));
    ws.write(cont(b, { fin: false }));
    ws.write(cont(c, { fin: true }));
    const r = await ws.ackOf(id);
    assert.equal(r.status, 0);
    await ws.probe();
    // One message, one answer: the fragments were not taken as packets.
    await sleep(200);
    assert.equal(ws.items.filter((i) => i.kind === 'message' && i.text.startsWith(`43${id}[`)).length, 1);
  });

  test('a character split across fragments is valid UTF-8 once assembled', async () => {
    const ws = track(await rawSession(srv));
    const { id, packet } = ws.ackPacket('sync', { offset: 0, note: 'é€😀' });
    const bytes = toBuf(packet);
    const at = bytes.indexOf(toBuf('😀')) + 2; // inside the 4-byte character
    const at2 = bytes.indexOf(toBuf('€')) + 1; // inside the 3-byte one
    ws.write(text(bytes.subarray(0, at2), { fin: false }));
    ws.write(cont(bytes.subarray(at2, at), { fin: false }));
    ws.write(cont(bytes.subarray(at), { fin: true }));
    assert.equal((await ws.ackOf(id)).status, 0);
  });

  test('a message in many small fragments, including empty ones', async () => {
    const ws = track(await rawSession(srv));
    const { id, packet } = ws.ackPacket('sync', { offset: 0 });
    const parts = splitBytes(packet, 10);
    ws.write(text(parts[0], { fin: false }));
    ws.write(cont('', { fin: false }));
    for (const p of parts.slice(1)) ws.write(cont(p, { fin: false }));
    ws.write(cont('', { fin: true }));
    assert.equal((await ws.ackOf(id)).status, 0);
  });

  test('ws library: a message sent in three fragments', async () => {
    const ws = track(await libSession(srv));
    const { id, packet } = ws.ackPacket('sync', { offset: 0 });
    const [a, b, c] = splitBytes(packet, 3);
    ws.sendText(a, { fin: false });
    ws.sendText(b, { fin: false });
    ws.sendText(c, { fin: true });
    assert.equal((await ws.ackOf(id)).status, 0);
    assert.deepEqual(ws.errors, []);
  });
});

describe('3. control frames', () => {
  test('a ping between fragments is answered at once with its payload, and the message is still assembled', async () => {
    const ws = track(await rawSession(srv));
    const { id, packet } = ws.ackPacket('sync', { offset: 0 });
    const [a, b, c] = splitBytes(packet, 3);
    ws.write(text(a, { fin: false }));
    ws.write(encodeFrame({ opcode: OP.PING, payload: 'mid-message' }));
    // The pong must not wait for the message to end (RFC 6455 5.4, 5.5.2).
    const pong = await ws.nextControl(OP.PONG);
    assert.equal(pong.payload.toString(), 'mid-message');
    ws.write(cont(b, { fin: false }));
    ws.write(encodeFrame({ opcode: OP.PING, payload: Buffer.from([0, 1, 2, 0xff]) }));
    ws.write(cont(c, { fin: true }));
    assert.deepEqual((await ws.nextControl(OP.PONG)).payload, Buffer.from([0, 1, 2, 0xff]));
    assert.equal((await ws.ackOf(id)).status, 0);
  });

  test('pings outside a message: empty and 125-byte payloads come back as they were', async () => {
    const ws = track(await rawSession(srv));
    ws.write(encodeFrame({ opcode: OP.PING, payload: '' }));
    assert.equal((await ws.nextControl(OP.PONG)).payload.length, 0);
    const big = randomBytes(125);
    ws.write(encodeFrame({ opcode: OP.PING, payload: big }));
    assert.deepEqual((await ws.nextControl(OP.PONG)).payload, big);
    await ws.probe();
  });

  test('an unsolicited pong is ignored and the session goes on', async () => {
    const ws = track(await rawSession(srv));
    ws.write(encodeFrame({ opcode: OP.PONG, payload: 'heartbeat' }));
    await ws.probe();
    assert.equal(ws.closeAt, -1);
  });

  test('ws library: ping gets a pong with the same payload; a ping between fragments too', async () => {
    const ws = track(await libSession(srv));
    ws.ws.ping(Buffer.from('lib-ping'));
    assert.equal((await ws.nextControl(OP.PONG)).payload.toString(), 'lib-ping');
    const { id, packet } = ws.ackPacket('sync', { offset: 0 });
    const [a, b] = splitBytes(packet, 2);
    ws.sendText(a, { fin: false });
    ws.ws.ping(Buffer.from('between'));
    assert.equal((await ws.nextControl(OP.PONG)).payload.toString(), 'between');
    ws.sendText(b, { fin: true });
    assert.equal((await ws.ackOf(id)).status, 0);
  });
});

describe('4. closing handshake', () => {
  test('client close 1000 with a reason: the server answers close 1000 and closes the TCP connection', async () => {
    const ws = track(await rawSession(srv));
    ws.write(encodeFrame({ opcode: OP.CLOSE, payload: closePayload(1000, 'done for today') }));
    const c = await ws.nextControl(OP.CLOSE);
    assert.equal(c.code, 1000);
    // The server closes the TCP connection first (RFC 6455 7.1.1); this
    // client never does.
    await Promise.race([ws.tcpClosed, sleep(WAIT_MS).then(() => { throw new Error('TCP connection still open'); })]);
    assert.deepEqual(ws.problems, []);
  });

  test('client close without a status code is answered by a close frame, then TCP close', async () => {
    const ws = track(await rawSession(srv));
    ws.write(encodeFrame({ opcode: OP.CLOSE, payload: '' }));
    const c = await ws.nextControl(OP.CLOSE);
    // Nothing to echo: no code, or a plain 1000 (1005 is never sent, RFC 6455 7.4.1).
    assert.ok(c.code === null || c.code === 1000, `close code ${c.code}`);
    await Promise.race([ws.tcpClosed, sleep(WAIT_MS).then(() => { throw new Error('TCP connection still open'); })]);
  });

  for (const code of [999, 1005, 1006, 1015, 2999]) {
    test(`client close with the code ${code}, which no endpoint may send: close 1002`, async () => {
      const ws = track(await rawConnected(srv));
      ws.write(encodeFrame({ opcode: OP.CLOSE, payload: closePayload(code) }));
      await ws.expectClose([1002], `close ${code}`);
    });
  }

  test('client close with a 1-byte payload: close 1002', async () => {
    const ws = track(await rawConnected(srv));
    ws.write(encodeFrame({ opcode: OP.CLOSE, payload: Buffer.from([0x03]) }));
    await ws.expectClose([1002], 'close with 1-byte payload');
  });

  test('client close whose reason is not UTF-8: close 1007', async () => {
    const ws = track(await rawConnected(srv));
    ws.write(encodeFrame({ opcode: OP.CLOSE, payload: Buffer.concat([closePayload(1000), Buffer.from([0xc3, 0x28])]) }));
    await ws.expectClose([1007], 'close reason not UTF-8');
  });

  test('ws library: close(1000, reason) ends with close 1000 from the server', async () => {
    const ws = track(await libSession(srv));
    ws.ws.close(1000, 'bye');
    const info = await ws.closedWithin();
    assert.equal(info.code, 1000);
    assert.deepEqual(ws.errors, []);
  });
});

describe('5. invalid UTF-8 in text messages: close 1007', () => {
  const cases = [
    ['a lone continuation byte after a valid prefix', [text(Buffer.from([0x34, 0x32, 0xc3, 0x28]))]],
    ['an overlong encoding', [text(Buffer.from([0x34, 0xc0, 0xaf]))]],
    ['a UTF-16 surrogate', [text(Buffer.from([0x34, 0xed, 0xa0, 0x80]))]],
    ['a code point above U+10FFFF', [text(Buffer.from([0x34, 0xf4, 0x90, 0x80, 0x80]))]],
    ['invalid bytes in a continuation frame', [text('42["sy', { fin: false }), cont(Buffer.from([0xff, 0xfe]), { fin: true })]],
    ['a message that ends inside a character', [text('4', { fin: false }), cont(Buffer.from([0xe2, 0x82]), { fin: true })]],
  ];
  for (const [name, frames] of cases) {
    test(name, async () => {
      const ws = track(await rawConnected(srv));
      for (const f of frames) ws.write(f);
      await ws.expectClose([1007], name);
    });
  }

  test('in an authenticated session, inside an event', async () => {
    const ws = track(await rawSession(srv));
    const { id, packet } = ws.ackPacket('sync', { offset: 0, x: '' });
    const bad = toBuf(packet.replace('"x":""', '"x":"\u0001"'));
    bad[bad.indexOf(1)] = 0xff;
    ws.write(text(bad));
    await ws.expectClose([1007], 'invalid UTF-8 mid-session');
    assert.equal(ws.items.some((i) => i.kind === 'message' && i.text.startsWith(`43${id}[`)), false, 'the invalid message was handled');
  });
});

describe('6. masking', () => {
  // RFC 6455 5.1: the server MUST close the connection on an unmasked
  // frame and MAY send close 1002 first; it must not act on the frame.
  test('an unmasked client frame closes the connection (close 1002 if a code is sent) and is not handled', async () => {
    const ws = track(await rawSession(srv));
    const { id, packet } = ws.ackPacket('sync', { offset: 0 });
    ws.write(text(packet, { masked: false }));
    await Promise.race([
      ws.tcpClosed,
      sleep(REFUSE_MS).then(() => { throw new Error(`connection still open ${REFUSE_MS} ms after an unmasked frame; received:\n    ${ws.summary()}`); }),
    ]);
    const closes = ws.items.filter((i) => i.kind === 'control' && i.opcode === OP.CLOSE);
    assert.ok(closes.length <= 1);
    for (const c of closes) assert.equal(c.code, 1002, `close code ${c.code}`);
    assert.equal(ws.items.some((i) => i.kind === 'message' && i.text.startsWith(`43${id}[`)), false, 'the unmasked frame was handled');
  });

  test('an all-zero masking key is still a masked frame', async () => {
    const ws = track(await rawSession(srv));
    const { id, packet } = ws.ackPacket('sync', { offset: 0 });
    ws.write(text(packet, { maskKey: Buffer.alloc(4) }));
    assert.equal((await ws.ackOf(id)).status, 0);
  });
});

describe('7. size limits: close 1009', () => {
  let small;
  before(async () => {
    small = await startServer({ args: ['--max-payload-bytes', String(SMALL_MAX_PAYLOAD)] });
  });
  after(async () => { await small?.destroy(); });

  test('the open packet announces the configured maxPayload', async () => {
    const ws = track(await rawOpen(small));
    assert.equal(ws.open.maxPayload, SMALL_MAX_PAYLOAD);
  });

  test('a message of exactly maxPayload bytes is accepted', async () => {
    const ws = track(await rawSession(small));
    const { id, packet } = paddedSync(ws, SMALL_MAX_PAYLOAD);
    ws.sendText(packet);
    assert.equal((await ws.ackOf(id)).status, 0);
  });

  test('a frame announcing maxPayload + 1 bytes is refused on its header', async () => {
    const ws = track(await rawSession(small));
    const { packet } = paddedSync(ws, SMALL_MAX_PAYLOAD + 1);
    // Header and the first KiB only: a server that buffered the whole
    // announced payload before checking it could be made to hold any size.
    ws.write(text(packet).subarray(0, 10 + 4 + 1024));
    await ws.expectClose([1009], `frame of ${SMALL_MAX_PAYLOAD + 1} B`);
  });

  test('fragments each under maxPayload whose total is over it', async () => {
    const ws = track(await rawSession(small));
    const { packet } = paddedSync(ws, SMALL_MAX_PAYLOAD + 20_000);
    const bytes = toBuf(packet);
    const half = Math.floor(bytes.length / 2);
    ws.write(text(bytes.subarray(0, half), { fin: false }));
    ws.write(cont(bytes.subarray(half), { fin: true }).subarray(0, 10 + 4 + 1024));
    await ws.expectClose([1009], 'fragmented message over maxPayload');
  });

  test('a frame announcing 2^40 bytes on a server with the default limit', async () => {
    const ws = track(await rawConnected(srv));
    ws.write(text('42', { length: 2n ** 40n }).subarray(0, 14 + 2));
    await ws.expectClose([1009], 'frame announcing 2^40 B');
  });

  test('a 64-bit length with the most significant bit set: close 1002 (or 1009)', async () => {
    // RFC 6455 5.2: that bit MUST be 0; a server that checks the size
    // first sees an impossible length.
    const ws = track(await rawConnected(srv));
    ws.write(text('42', { length: (1n << 63n) | 5n }).subarray(0, 14 + 2));
    await ws.expectClose([1002, 1009], 'length with MSB set');
  });
});

describe('8. protocol errors: close 1002', () => {
  const cases = [
    ['RSV1 set without a negotiated extension', () => [text('42["sync",{}]', { rsv: 0b100 })]],
    ['RSV2 set', () => [text('42["sync",{}]', { rsv: 0b010 })]],
    ['RSV3 set', () => [text('42["sync",{}]', { rsv: 0b001 })]],
    ['RSV1 set on a ping', () => [encodeFrame({ opcode: OP.PING, payload: 'x', rsv: 0b100 })]],
    ['reserved data opcode 0x3', () => [encodeFrame({ opcode: 0x3, payload: '42' })]],
    ['reserved data opcode 0x7', () => [encodeFrame({ opcode: 0x7, payload: '42' })]],
    ['reserved control opcode 0xB', () => [encodeFrame({ opcode: 0xb, payload: '' })]],
    ['reserved control opcode 0xF', () => [encodeFrame({ opcode: 0xf, payload: 'x' })]],
    ['a continuation frame without a start', () => [cont('42["sync",{}]', { fin: true })]],
    ['a text frame while a fragmented message is open', () => [text('42["sy', { fin: false }), text('42["sync",{}]')]],
    ['a binary frame while a fragmented text message is open', () => [text('42["sy', { fin: false }), encodeFrame({ opcode: OP.BIN, payload: Buffer.from([1]) })]],
    ['a ping with a 126-byte payload', () => [encodeFrame({ opcode: OP.PING, payload: Buffer.alloc(126, 0x61) })]],
    ['a close with a 126-byte payload', () => [encodeFrame({ opcode: OP.CLOSE, payload: closePayload(1000, 'r'.repeat(124)) })]],
    ['a fragmented ping (FIN=0)', () => [encodeFrame({ opcode: OP.PING, payload: 'x', fin: false })]],
    ['a fragmented ping between message fragments', () => [text('42["sy', { fin: false }), encodeFrame({ opcode: OP.PING, payload: 'x', fin: false })]],
  ];
  for (const [name, frames] of cases) {
    test(name, async () => {
      const ws = track(await rawConnected(srv));
      for (const f of frames()) ws.write(f);
      await ws.expectClose([1002], name);
    });
  }

  test('in an authenticated session: the connection is failed, the frame after the bad one is not handled', async () => {
    const ws = track(await rawSession(srv));
    const { id, packet } = ws.ackPacket('sync', { offset: 0 });
    ws.write(Buffer.concat([encodeFrame({ opcode: 0x3, payload: '' }), text(packet)]));
    await ws.expectClose([1002], 'reserved opcode mid-session');
    assert.equal(ws.items.some((i) => i.kind === 'message' && i.text.startsWith(`43${id}[`)), false, 'a frame after the protocol error was handled');
  });

  test(
    'right after the open packet, before anything else was sent',
    async () => {
      const ws = track(await rawOpen(srv));
      ws.write(encodeFrame({ opcode: 0x3, payload: '' }));
      await ws.expectClose([1002], 'reserved opcode right after open');
    },
  );
});

describe('9. 7-, 16- and 64-bit lengths in both directions', () => {
  /** A `msg` from `from` whose frame payload is exactly `size` bytes; the relay to `to` and the sender's ack. */
  async function relay(from, to, size, room) {
    const probe = JSON.stringify({ roomId: room, text: '' });
    const { id, packet } = from.ackPacket('msg', JSON.parse(probe));
    const filler = size - Buffer.byteLength(packet);
    assert.ok(filler >= 0);
    const body = rid('t').padEnd(filler, 'x');
    const out = packet.replace('"text":""', `"text":"${body}"`);
    assert.equal(Buffer.byteLength(out), size);
    from.sendText(out);
    const got = await to.nextText((t) => t.startsWith('42["msg"') && t.includes(body.slice(0, 11)), `relay of ${size} B`);
    const ack = await from.ackOf(id);
    assert.equal(ack.status, 0, JSON.stringify(ack));
    const m = JSON.parse(got.slice(2))[1];
    assert.equal(m.text, body);
    assert.equal(m.uid, from.uid);
    return { got, body };
  }

  test('raw: 125, 126, 200, 65535, 65536 and 70 000 B each way; server frames use the minimal length form', async () => {
    const room = rid('r');
    const a = track(await rawSession(srv, { room, label: 'A' }));
    const b = track(await rawSession(srv, { room, label: 'B' }));
    for (const size of [125, 126, 200, 65535, 65536, 70_000]) {
      const before = b.frames.length;
      const { got } = await relay(a, b, size, room);
      const relayFrames = b.items.find((i) => i.kind === 'message' && i.text === got).frames;
      for (const f of relayFrames) {
        assert.equal(f.masked, false);
        assert.equal(f.form, minimalForm(f.length), `relay frame of ${f.length} B in the ${f.form}-bit form`);
      }
      assert.ok(b.frames.length > before);
      // A single-frame relay of this size shows the server's own length form.
      if (relayFrames.length === 1) assert.equal(relayFrames[0].form, minimalForm(Buffer.byteLength(got)));
    }
    // The stored 70 000 B message comes back in a sync reply.
    const r = await a.probe();
    assert.ok(r.data.some((m) => typeof m.text === 'string' && m.text.length > 60_000), 'the large msg is in the sync reply');
  });

  test('ws library: 200 B and 70 000 B messages relayed between two ws clients', async () => {
    const room = rid('r');
    const a = track(await libSession(srv, { room, label: 'wsA' }));
    const b = track(await libSession(srv, { room, label: 'wsB' }));
    await relay(a, b, 200, room);
    await relay(a, b, 70_000, room);
    await relay(b, a, 70_000, room);
    assert.deepEqual([...a.errors, ...b.errors], []);
  });
});

describe('10. binary frames', () => {
  // socket.io carries binary event arguments as attachments: a text frame
  // `45<n>-...` with placeholders, then n binary messages. The server can
  // only act on the event once the last attachment has arrived, so the
  // ack's timing shows each binary message was read. Room-sync `msg`
  // bodies are JSON objects: the assembled event is refused, and nothing
  // is relayed.
  const placeholder = (num) => ({ _placeholder: true, num });
  const acked = (ws, id) => ws.items.some((i) => i.kind === 'message' && i.text.startsWith(`43${id}[`));

  async function binaryEvent(a, b, room, sendAttachments) {
    const id = a.nextAckId++;
    const tag = rid('bin');
    a.sendText(`452-${id}${JSON.stringify(['msg', { roomId: room, tag, first: placeholder(0), second: placeholder(1) }])}`);
    await sendAttachments(async () => {
      await sleep(300);
      assert.equal(acked(a, id), false, 'answered before all attachments arrived');
    });
    const ack = await a.ackOf(id);
    assert.equal(ack.status, 1, JSON.stringify(ack));
    assert.match(ack.data, /JSON object/);
    await a.probe();
    await b.probe();
    assert.equal(b.items.some((i) => i.kind === 'message' && i.text.includes(tag)), false, 'a refused msg was relayed');
  }

  test('raw: an event with two attachments, the second one fragmented, is handled once both arrived', async () => {
    const room = rid('r');
    const a = track(await rawSession(srv, { room, label: 'A' }));
    const b = track(await rawSession(srv, { room, label: 'B' }));
    await binaryEvent(a, b, room, async (notYet) => {
      await notYet();
      a.write(encodeFrame({ opcode: OP.BIN, payload: Buffer.from([0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff]) }));
      await notYet();
      a.write(encodeFrame({ opcode: OP.BIN, payload: Buffer.from([0xde, 0xad]), fin: false }));
      a.write(encodeFrame({ opcode: OP.PING, payload: 'in-binary' }));
      a.write(cont(Buffer.from([0xbe, 0xef]), { fin: true }));
      assert.equal((await a.nextControl(OP.PONG)).payload.toString(), 'in-binary');
    });
  });

  test('ws library: an event with two attachments', async () => {
    const room = rid('r');
    const a = track(await libSession(srv, { room, label: 'wsA' }));
    const b = track(await libSession(srv, { room, label: 'wsB' }));
    await binaryEvent(a, b, room, async (notYet) => {
      a.ws.send(randomBytes(200), { binary: true });
      await notYet();
      a.ws.send(randomBytes(70_000), { binary: true });
    });
    assert.deepEqual([...a.errors, ...b.errors], []);
  });
});

describe('11. frames and TCP writes', () => {
  test('two frames in one TCP write are both handled', async () => {
    const ws = track(await rawSession(srv));
    const p1 = ws.ackPacket('sync', { offset: 0 });
    const p2 = ws.ackPacket('sync', { offset: 0 });
    ws.write(Buffer.concat([text(p1.packet), text(p2.packet)]));
    assert.equal((await ws.ackOf(p1.id)).status, 0);
    assert.equal((await ws.ackOf(p2.id)).status, 0);
  });

  test('a whole fragmented message with a ping inside, in one TCP write', async () => {
    const ws = track(await rawSession(srv));
    const { id, packet } = ws.ackPacket('sync', { offset: 0 });
    const [a, b] = splitBytes(packet, 2);
    ws.write(Buffer.concat([
      text(a, { fin: false }),
      encodeFrame({ opcode: OP.PING, payload: 'in-one-write' }),
      cont(b, { fin: true }),
    ]));
    assert.equal((await ws.nextControl(OP.PONG)).payload.toString(), 'in-one-write');
    assert.equal((await ws.ackOf(id)).status, 0);
  });

  test('a frame and the start of the next in one write, the rest in another', async () => {
    const ws = track(await rawSession(srv));
    const p1 = ws.ackPacket('sync', { offset: 0 });
    const p2 = ws.ackPacket('sync', { offset: 0 });
    const f2 = text(p2.packet);
    ws.write(Buffer.concat([text(p1.packet), f2.subarray(0, 3)]));
    assert.equal((await ws.ackOf(p1.id)).status, 0);
    ws.write(f2.subarray(3));
    assert.equal((await ws.ackOf(p2.id)).status, 0);
  });

  test('one frame written one byte per TCP write (7-bit length)', async () => {
    const ws = track(await rawSession(srv));
    const { id, packet } = ws.ackPacket('sync', { offset: 0 });
    await ws.trickle(text(packet));
    assert.equal((await ws.ackOf(id)).status, 0);
  });

  test('one frame written one byte per TCP write (16-bit length)', async () => {
    const ws = track(await rawSession(srv));
    const { id, packet } = paddedSync(ws, 300);
    await ws.trickle(text(packet), 1, 1);
    assert.equal((await ws.ackOf(id)).status, 0);
  });

  test('a 64-bit length header written byte by byte, then its 70 000 B payload in pieces', async () => {
    const ws = track(await rawSession(srv));
    const { id, packet } = paddedSync(ws, 70_000);
    const f = text(packet);
    await ws.trickle(f.subarray(0, 14), 1);
    await ws.trickle(f.subarray(14), 7001, 1);
    assert.equal((await ws.ackOf(id)).status, 0);
  });
});
