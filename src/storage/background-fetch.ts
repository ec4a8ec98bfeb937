/**
 * Background completion: fetch every chunk of the given layers not yet on disk, while consumers are
 * quiet, at a bounded rate, so a long-running reader (a mounted container) stops depending on the
 * network. Stopped (and waited for) before the store closes.
 */
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import { sleep } from './deferred.js';
import type { Storage } from './storage.js';
import type { LayerRecord } from './types.js';

export interface BackgroundFetchOptions {
  /** Bytes per second at most (default 16 MiB/s). */
  bytesPerSecond?: number;
  /** Only after consumers have been quiet this long (default 1 s). */
  idleMs?: number;
  /** Pause before trying a layer again after a failure (doubles; default 5 s). */
  retryMs?: number;
  /** Attempts per layer before leaving it to on-demand reads (default 3). */
  attempts?: number;
  /** Called once a layer is complete on disk (the index audit); its failure is logged, not retried. */
  onLayerComplete?: (layer: LayerRecord, signal: AbortSignal) => Promise<unknown>;
  logger?: Logger;
}

export interface BackgroundFetch {
  /** Settles when every layer is complete, skipped, or the fetch was stopped. */
  readonly done: Promise<void>;
  /** Abort and wait for the chunk requests in flight. */
  stop(): Promise<void>;
}

export const DEFAULT_BACKGROUND_RATE = 16 * 1024 * 1024;

export function startBackgroundFetch(storage: Storage, layers: LayerRecord[], opts: BackgroundFetchOptions = {}): BackgroundFetch {
  const log = opts.logger ?? silentLogger;
  const abort = new AbortController();
  const signal = abort.signal;
  const rate = opts.bytesPerSecond ?? DEFAULT_BACKGROUND_RATE;
  // Each layer once, however many images (or places in one) name it.
  const unique = [...new Map(layers.map((l) => [l.diffId, l])).values()];
  const done = (async () => {
    for (const layer of unique) {
      for (let attempt = 1; !signal.aborted; attempt++) {
        try {
          const started = Date.now();
          await storage.complete(layer, { bytesPerSecond: rate, idleMs: opts.idleMs ?? 1000, signal });
          if (!signal.aborted) {
            log.info({ layer: layer.diffId, seconds: (Date.now() - started) / 1000 }, 'background fetch: layer complete on disk');
            await opts.onLayerComplete?.(layer, signal).catch((err: unknown) => {
              if (!signal.aborted) log.warn({ layer: layer.diffId, err: (err as Error).message }, 'after the layer was complete: failed');
            });
          }
          break;
        } catch (err) {
          if (signal.aborted) break;
          const giveUp = attempt >= (opts.attempts ?? 3);
          log.warn({ layer: layer.diffId, attempt, err: (err as Error).message }, giveUp ? 'background fetch: leaving the layer to reads' : 'background fetch failed; retrying');
          if (giveUp) break;
          await sleep((opts.retryMs ?? 5000) * 2 ** (attempt - 1), signal);
        }
      }
    }
  })().catch((err: unknown) => {
    if (!signal.aborted) log.warn({ err }, 'background fetch stopped');
  });
  return {
    done,
    async stop() {
      abort.abort();
      await done;
    },
  };
}
