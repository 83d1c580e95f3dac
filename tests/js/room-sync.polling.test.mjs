// Room-sync contract over the polling transport (see room-sync-suite.mjs).
import { roomSyncSuite } from './room-sync-suite.mjs';

roomSyncSuite('polling');
