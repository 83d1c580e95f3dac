// Business-server push contract over the websocket transport (see push-suite.mjs).
import { pushSuite } from './push-suite.mjs';

pushSuite('websocket');
