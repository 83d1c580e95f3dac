'use strict';
// Reference Node peer for hookwire's benchmarks.
//
// Written the way a typical Node socket.io server is written:
// socket.io 4, node-redis v4 for storage, and @socket.io/redis-adapter for the
// cluster. It implements the room-sync rows of the protocol table in README.md
// (authenticate / join / msg / sync / leave / disconnect) so the same load
// generator runs against it and against hookwire.
//
// Environment:
//   PORT             listening port (default 3000)
//   HOST             listening address (default 127.0.0.1)
//   REDIS_URL        when set: messages are stored in Redis lists/hashes
//                    (layout below) and the Redis adapter is used, so
//                    several processes form one cluster. When unset: one
//                    process, in-memory storage, default in-memory adapter.
//   FORCE_USER_AUTH  "1" = tokens are checked against the Redis hash
//                    `aol:tokens` (uid -> token); anything else (default) =
//                    any uid authenticates without a token (forceUserAuth=false)
//   AUTH_TIMEOUT_MS  default 10000; JOIN_TIMEOUT_MS default 10000 (0 disables)
//   PAGE_SIZE        sync page size (default 200)

const http = require('http');
const zlib = require('zlib');
const { Server } = require('socket.io');

const PORT = parseInt(process.env.PORT || '3000', 10);
const HOST = process.env.HOST || '127.0.0.1';
const REDIS_URL = process.env.REDIS_URL || '';
const FORCE_USER_AUTH = process.env.FORCE_USER_AUTH === '1';
const AUTH_TIMEOUT_MS = parseInt(process.env.AUTH_TIMEOUT_MS || '10000', 10);
const JOIN_TIMEOUT_MS = parseInt(process.env.JOIN_TIMEOUT_MS || '10000', 10);
const PAGE_SIZE = parseInt(process.env.PAGE_SIZE || '200', 10);
const MAX_MSG_BYTES = 512000;
const AUTH_LIMIT_PER_MIN = 30;

// ---------------------------------------------------------------- storage
// Redis layout:
//   aol:room:<roomId>:msgs     list of JSON {data, ts, uid} (insert log)
//   aol:room:<roomId>:updates  hash msgId -> JSON {data, ts, uid} (current value)
//   aol:room:<roomId>:history  list of JSON update history
class RedisStore {
  constructor(client) { this.c = client; }
  key(room, kind) { return `aol:room:${room}:${kind}`; }
  insert(room, entry) { return this.c.rPush(this.key(room, 'msgs'), entry); }
  update(room, msgId, entry) {
    return this.c.multi()
      .hSet(this.key(room, 'updates'), String(msgId), entry)
      .rPush(this.key(room, 'history'), entry)
      .exec();
  }
  async page(room, offset, n) {
    return this.c.lRange(this.key(room, 'msgs'), offset, offset + n - 1);
  }
  async updates(room) { return this.c.hVals(this.key(room, 'updates')); }
  async token(uid) { return this.c.hGet('aol:tokens', String(uid)); }
}

class MemoryStore {
  constructor() { this.rooms = new Map(); }
  room(room) {
    let r = this.rooms.get(room);
    if (!r) { r = { msgs: [], updates: new Map(), history: [] }; this.rooms.set(room, r); }
    return r;
  }
  async insert(room, entry) { this.room(room).msgs.push(entry); }
  async update(room, msgId, entry) {
    const r = this.room(room);
    r.updates.set(String(msgId), entry);
    r.history.push(entry);
  }
  async page(room, offset, n) { return this.room(room).msgs.slice(offset, offset + n); }
  async updates(room) { return Array.from(this.room(room).updates.values()); }
  async token() { return null; }
}

// ---------------------------------------------------------------- server
async function main() {
  const httpServer = http.createServer((req, res) => {
    if (req.url === '/healthz') { res.writeHead(200); res.end('ok'); return; }
    if (!req.url.startsWith('/socket.io')) { res.writeHead(404); res.end(); }
  });
  const io = new Server(httpServer, {
    maxHttpBufferSize: 1e6, // transport limit above the 512,000 byte message limit
    cors: { origin: '*' },
  });

  let store;
  if (REDIS_URL) {
    const { createClient } = require('redis');
    const { createAdapter } = require('@socket.io/redis-adapter');
    const pubClient = createClient({ url: REDIS_URL });
    const subClient = pubClient.duplicate();
    const dataClient = pubClient.duplicate();
    for (const c of [pubClient, subClient, dataClient]) c.on('error', (e) => console.error('redis', e.message));
    await Promise.all([pubClient.connect(), subClient.connect(), dataClient.connect()]);
    io.adapter(createAdapter(pubClient, subClient));
    store = new RedisStore(dataClient);
  } else {
    store = new MemoryStore();
  }

  const online = new Map(); // uid -> socket (this process)
  const authAttempts = new Map(); // uid -> {window, count}

  function rateLimited(uid) {
    const w = Math.floor(Date.now() / 60000);
    let a = authAttempts.get(uid);
    if (!a || a.window !== w) { a = { window: w, count: 0 }; authAttempts.set(uid, a); }
    a.count += 1;
    return a.count > AUTH_LIMIT_PER_MIN;
  }

  function reply(socket, event, body, ack) {
    socket.emit(event, body);
    if (typeof ack === 'function') ack(body);
  }

  async function authenticate(socket, req, ack) {
    const uid = req && req.uid !== undefined && req.uid !== null ? String(req.uid) : '';
    if (!uid || uid === '0') {
      reply(socket, 'authenticate', { status: 1, data: 'uid required' }, ack);
      socket.disconnect(true);
      return;
    }
    if (rateLimited(uid)) {
      reply(socket, 'authenticate', { status: 1, data: 'too many attempts' }, ack);
      socket.disconnect(true);
      return;
    }
    if (FORCE_USER_AUTH) {
      const tok = await store.token(uid);
      if (!tok || tok !== String(req.token)) {
        reply(socket, 'authenticate', { status: 1, data: 'auth failed' }, ack);
        socket.disconnect(true);
        return;
      }
    }
    clearTimeout(socket.data.authTimer);
    socket.data.uid = uid;
    const old = online.get(uid);
    if (old && old !== socket) {
      old.data.kicked = true;
      old.emit('kickout', { uid });
      old.disconnect(true);
      socket.data.kicker = true;
    }
    online.set(uid, socket);
    reply(socket, 'authenticate', { status: 0, data: 'auth success' }, ack);
    if (JOIN_TIMEOUT_MS > 0) {
      socket.data.joinTimer = setTimeout(() => {
        if (!socket.data.room) socket.disconnect(true);
      }, JOIN_TIMEOUT_MS);
    }
  }

  io.on('connection', (socket) => {
    socket.data.authTimer = setTimeout(() => {
      if (!socket.data.uid) {
        socket.emit('authenticate', { status: 1, data: 'authentication timeout' });
        socket.disconnect(true);
      }
    }, AUTH_TIMEOUT_MS);

    const hs = socket.handshake.auth;
    if (hs && hs.uid !== undefined && hs.uid !== null) authenticate(socket, hs);

    socket.on('authenticate', (req, ack) => { authenticate(socket, req, ack); });

    socket.on('join', async (req, ack) => {
      if (!socket.data.uid) { reply(socket, 'join', { status: 1, data: 'not authenticated' }, ack); return; }
      const roomId = req && req.roomId !== undefined && req.roomId !== null ? String(req.roomId) : '';
      if (!roomId || roomId === '0') { reply(socket, 'join', { status: 1, data: 'roomId required' }, ack); return; }
      clearTimeout(socket.data.joinTimer);
      const dummy = !!(req && req.dummy);
      socket.data.room = roomId;
      socket.data.dummy = dummy;
      socket.join(roomId);
      reply(socket, 'join', { status: 0, data: 'join success' }, ack);
      if (dummy || socket.data.kicker) return;
      socket.to(roomId).emit('remote_join', { uid: socket.data.uid });
      // Tell the joiner who is already there (cluster-wide through the adapter).
      const others = await io.in(roomId).fetchSockets();
      for (const o of others) {
        if (o.id === socket.id || o.data.dummy || !o.data.uid) continue;
        socket.emit('remote_join', { uid: o.data.uid });
      }
    });

    socket.on('msg', (m, ack) => {
      const room = socket.data.room;
      const fail = (why) => {
        const body = { status: 1, data: why };
        if (typeof ack === 'function') ack(body); else socket.emit('error', body);
      };
      if (!room) return fail('not joined');
      if (socket.data.dummy) return fail('dummy may not send msg');
      if (!m || typeof m !== 'object') return fail('bad msg');
      const json = JSON.stringify(m);
      if (json.length > MAX_MSG_BYTES) return fail('msg too large');
      const uid = socket.data.uid;
      const short = ('s' in m || '1' in m) && !('storage' in m) && !('msgId' in m);
      let out;
      let storage;
      let msgId;
      if (short) {
        out = Object.assign({}, m, { 2: uid });
        storage = m.s; msgId = m['1'];
      } else {
        out = Object.assign({}, m, { uid });
        storage = m.storage; msgId = m.msgId;
      }
      socket.to(room).emit('msg', out);
      storage = storage === 1 || storage === 2 ? storage : 0;
      const ts = Date.now();
      const entry = `{"data":${json},"ts":${ts},"uid":${JSON.stringify(uid)}}`;
      let p = null;
      if (storage === 0) p = store.insert(room, entry);
      else if (storage === 1) p = store.update(room, msgId, entry);
      if (p) p.catch((e) => console.error('store', e.message));
      if (typeof ack === 'function') ack({ status: 0, data: 'msg success' });
    });

    socket.on('sync', async (req, ack) => {
      const room = socket.data.room;
      if (!room) { reply(socket, 'sync', { status: 1, data: 'not joined' }, ack); return; }
      const offset = Math.max(0, parseInt((req && req.offset) || 0, 10) || 0);
      const rows = await store.page(room, offset, PAGE_SIZE);
      let data = rows.map((r) => JSON.parse(r));
      let next = 1;
      if (rows.length < PAGE_SIZE) {
        next = 0;
        const ups = await store.updates(room);
        for (const u of ups) data.push(JSON.parse(u));
      }
      const body = { status: 0, next, offset: offset + rows.length, epoch: 0 };
      if (req && req.encoding === 'gzip') {
        body.encoding = 'gzip';
        body.data = zlib.gzipSync(JSON.stringify(data)).toString('base64');
      } else {
        body.data = data;
      }
      reply(socket, 'sync', body, ack);
      if (offset === 0 && !socket.data.dummy && !socket.data.kicker) {
        socket.to(room).emit('remote_sync', { uid: socket.data.uid });
      }
    });

    socket.on('leave', () => {
      const room = socket.data.room;
      if (room && !socket.data.dummy && !socket.data.kicked) {
        socket.to(room).emit('remote_leave', { uid: socket.data.uid });
      }
      socket.disconnect(true);
    });

    socket.on('disconnect', () => {
      clearTimeout(socket.data.authTimer);
      clearTimeout(socket.data.joinTimer);
      const { uid, room } = socket.data;
      if (uid && online.get(uid) === socket) online.delete(uid);
      if (room && !socket.data.dummy && !socket.data.kicked) {
        socket.to(room).emit('remote_disconnect', { uid });
      }
    });
  });

  httpServer.listen(PORT, HOST, () => {
    console.log(`node-peer listening on ${HOST}:${PORT} (redis: ${REDIS_URL ? 'yes' : 'no'})`);
  });
}

main().catch((e) => { console.error(e); process.exit(1); });
