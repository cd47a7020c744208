/** Entry of the edge thread that startEdgeThread (edge-thread.ts) starts: `dialcore start`'s SIP edge. */
import { runEdgeThread } from './edge-thread.js';

runEdgeThread();
