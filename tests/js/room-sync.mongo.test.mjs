// Room-sync contract on the MongoDB store (`--mongo URL`, served by
// SecantusDB), websocket transport: the same suite as on the embedded store
// (room-sync-suite.mjs), one node on its own SecantusDB (cluster-harness.mjs).
import { rid } from './harness.mjs';
import { startNode, startSecantus } from './cluster-harness.mjs';
import { roomSyncSuite } from './room-sync-suite.mjs';

roomSyncSuite('websocket', {
  store: 'mongodb',
  start: async () => {
    const mongo = await startSecantus();
    try {
      // a database of this file's own (on its own server too)
      return { srv: await startNode({ mongo: mongo.url(rid('roomsync_')) }), cleanup: () => mongo.destroy() };
    } catch (e) {
      await mongo.destroy();
      throw e;
    }
  },
});
