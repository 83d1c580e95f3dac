// Business-server push contract over the polling transport (see push-suite.mjs).
import { pushSuite } from './push-suite.mjs';

pushSuite('polling');
