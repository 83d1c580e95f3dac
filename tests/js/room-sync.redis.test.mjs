// Room-sync contract on the Redis store (`--redis URL`), websocket transport:
// the same suite as on the embedded store (room-sync-suite.mjs), one node on
// its own redis-server (cluster-harness.mjs).
import { startNode, startRedis } from './cluster-harness.mjs';
import { roomSyncSuite } from './room-sync-suite.mjs';

roomSyncSuite('websocket', {
  store: 'redis',
  start: async () => {
    const redis = await startRedis();
    try {
      // db 3: this file's own database (its own server too), so nothing is shared with other files
      return { srv: await startNode({ redis: redis.url(3) }), cleanup: () => redis.destroy() };
    } catch (e) {
      await redis.destroy();
      throw e;
    }
  },
});
