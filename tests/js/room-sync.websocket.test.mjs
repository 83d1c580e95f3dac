// Room-sync contract over the websocket transport (see room-sync-suite.mjs).
import { roomSyncSuite } from './room-sync-suite.mjs';

roomSyncSuite('websocket');
