/** Worker thread body for scanLayerInWorker: one LayerScanner per job, fed chunks by the parent. */
import { parentPort } from 'node:worker_threads';
import { isClipError } from '../util/errors.js';
import { LayerScanner } from './scan.js';
import type { WorkerReply, WorkerRequest } from './scan-protocol.js';
import type { TarEntry } from './types.js';

const port = parentPort!;
/** Entries per message: large enough to amortise a message, small enough to bound what waits. */
const ENTRY_BATCH = 4096;

/** An empty xattrs map is left out: structured clone would make one Map per entry of it. */
function slim(entries: TarEntry[]): TarEntry[] {
  for (const e of entries) if (e.xattrs.size === 0) (e as Partial<TarEntry>).xattrs = undefined;
  return entries;
}
let scanner: LayerScanner | null = null;

function reply(msg: WorkerReply): void {
  port.postMessage(msg);
}

port.on('message', (msg: WorkerRequest) => {
  try {
    if (msg.type === 'start') {
      scanner = new LayerScanner(msg.opts);
    } else if (msg.type === 'data') {
      if (!scanner) return; // the job already failed; the parent is told once
      scanner.write(msg.chunk);
      if (scanner.pendingEntries >= ENTRY_BATCH) reply({ type: 'entries', entries: slim(scanner.takeEntries()) });
      reply({ type: 'ack', bytes: msg.chunk.length });
    } else if (msg.type === 'end') {
      if (!scanner) return;
      const scan = scanner.finish();
      scan.entries = slim(scan.entries);
      scanner = null;
      reply({ type: 'done', scan });
    }
  } catch (err) {
    scanner = null;
    const e = err as Error;
    reply({ type: 'error', message: e.message, code: isClipError(err) ? err.code : undefined, object: isClipError(err) ? err.object : undefined });
  }
});
