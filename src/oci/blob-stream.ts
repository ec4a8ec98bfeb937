/**
 * A byte range of a blob as one stream that survives interruptions: when the connection breaks or
 * the body ends short, the rest is asked for again with a Range from where it stopped, so the
 * consumer sees one uninterrupted sequence of bytes.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ClipError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { backoffDelay, isTransientNetworkError, type RetryOptions } from './retry.js';

/** Opens bytes [start, end) of the blob; the iterable yields exactly those bytes or fewer (then breaks). */
export type RangeOpener = (start: number, end: number) => Promise<{ chunks: AsyncIterable<Buffer>; close(): void }>;

export interface ResumeOptions {
  object: string;
  retry: Required<RetryOptions>;
  logger: Logger;
  signal?: AbortSignal;
  onBytes?: (n: number) => void;
}

export async function* resumableRange(open: RangeOpener, start: number, end: number, opts: ResumeOptions): AsyncGenerator<Buffer> {
  let pos = start;
  let failures = 0;
  while (pos < end) {
    // Opening already retries on its own (RegistryClient); only a broken body is resumed here.
    const body = await open(pos, end);
    try {
      for await (const chunk of body.chunks) {
        const take = chunk.length > end - pos ? chunk.subarray(0, end - pos) : chunk;
        pos += take.length;
        failures = 0; // progress resets the budget: only repeated failures without progress give up
        opts.onBytes?.(take.length);
        yield take;
        if (pos >= end) break;
      }
      if (pos < end) throw new ClipError('ENETWORK', `body ended at byte ${pos} of ${end}`, { object: opts.object });
    } catch (err) {
      if (opts.signal?.aborted || !isTransientNetworkError(err)) throw err;
      failures++;
      if (failures >= opts.retry.attempts) {
        throw new ClipError('ENETWORK', `download interrupted ${failures} times without progress at byte ${pos}: ${(err as Error).message}`, { object: opts.object, cause: err });
      }
      const delay = backoffDelay(failures - 1, opts.retry);
      opts.logger.info({ object: opts.object, at: pos, attempt: failures, delayMs: Math.round(delay), err: (err as Error).message }, 'blob stream interrupted; resuming with Range');
      await sleep(delay, undefined, { signal: opts.signal });
    } finally {
      body.close();
    }
  }
}

/** Skips `skip` bytes then passes at most `limit`: for a server that answered 200 to a Range request. */
export async function* sliceChunks(chunks: AsyncIterable<Buffer>, skip: number, limit: number): AsyncGenerator<Buffer> {
  let toSkip = skip;
  let left = limit;
  for await (const raw of chunks) {
    let chunk = raw;
    if (toSkip > 0) {
      if (chunk.length <= toSkip) {
        toSkip -= chunk.length;
        continue;
      }
      chunk = chunk.subarray(toSkip);
      toSkip = 0;
    }
    if (chunk.length >= left) {
      if (left > 0) yield chunk.subarray(0, left);
      return;
    }
    left -= chunk.length;
    yield chunk;
  }
}
