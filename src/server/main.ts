/**
 * The node's server process (started by the holder, src/server/holder.ts, as its child with an IPC
 * channel): `main CACHE_DIR`. Logs go to the file the holder's stderr goes to.
 */
import { createLineLogger } from '../util/log.js';
import { limitHeapGrowth } from './heap-growth.js';
import { fixMmapThreshold, startIdleCollector } from './idle-memory.js';
import { NodeServer } from './node-server.js';
import type { ToHolder, ToServer } from './protocol.js';

limitHeapGrowth();
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
const cacheDir = process.argv[2]!;
const log = createLineLogger(process.env.CLIP_LOG_LEVEL ?? 'info', 2, process.env.CLIP_LOG_FORMAT ?? 'auto').child({ server: process.pid });
if (!process.send) throw new Error('the clip server runs as the holder\'s child');
const server = new NodeServer(
  cacheDir,
  log,
  (msg: ToHolder) => {
    if (process.connected) process.send!(msg);
  },
  (msg: ToHolder) => new Promise((resolve) => (process.connected ? process.send!(msg, () => resolve()) : resolve())),
);
process.on('message', (msg: ToServer) => server.onHolder(msg));
// The holder is gone: nobody keeps the descriptors for a successor; serve on until the mounts end.
process.on('disconnect', () => log.warn('server: the holder is gone'));
fixMmapThreshold(log);
startIdleCollector(log);
