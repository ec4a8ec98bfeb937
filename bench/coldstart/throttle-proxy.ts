/**
 * An HTTP proxy in front of a registry that limits the bytes it sends back to a fixed rate shared by
 * all responses (one network link), and records every request: range, status, body bytes and when
 * it started, got its first byte and ended. What the cold-start bench measures and profiles with.
 *
 * Blob bytes come from memory by default: the proxy fetches a blob whole from the registry the
 * first time it is asked for, keeps it (blobs are addressed by digest), and answers range GETs of
 * it itself, with the registry's own headers. On this 2-core machine the local registry and the
 * proxy's relaying of its bytes took ~0.35–0.47 s and ~0.25 s of CPU in each profiled cold start
 * (bench/index/RESULTS.md, session 17): CPU that a registry across a network does not take from
 * the node. Manifests, tags and referrers still come from the registry on every request.
 * BENCH_BLOBS=registry relays blob bytes from the registry as before.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { listenOnLoopback } from '../../test/support/loopback-server.js';

export interface ServedRequest {
  method: string;
  path: string;
  range: string | undefined;
  status: number;
  /** Response body bytes sent to the client. */
  bytes: number;
  /** Milliseconds since the log was last reset. */
  startMs: number;
  firstByteMs: number | undefined;
  endMs: number | undefined;
  /** Which client connection carried it (1, 2, ... in the order the proxy first saw them). */
  connection: number;
}

export interface ThrottleProxy {
  /** "127.0.0.1:PORT" */
  host: string;
  /** Requests since the last reset, in arrival order. */
  served: ServedRequest[];
  /** Empty the log and restart its clock. */
  reset(): void;
  stop(): Promise<void>;
}

/** Lets a link run ahead of its schedule by this much after a late timer, so the mean rate holds. */
const BURST_MS = 5;
/** Bytes a blob served from memory is sent in, each booked on the link. */
const SLICE = 64 * 1024;

interface KeptBlob {
  bytes: Buffer;
  /** The registry's headers of its whole-blob answer, less the ones that depend on the range. */
  headers: Record<string, string>;
}
/** Blobs kept by every proxy of this process, by upstream and path (a digest: never stale). */
const keptBlobs = new Map<string, Promise<KeptBlob | undefined>>();
const RANGE_DEPENDENT = new Set(['content-length', 'content-range', 'connection', 'keep-alive', 'transfer-encoding', 'date']);

/** The whole blob at `path`, fetched once; undefined if the registry does not answer it with 200. */
function keptBlob(upHost: string, upPort: string, path: string, headers: IncomingMessage['headers']): Promise<KeptBlob | undefined> {
  const key = `${upHost}:${upPort}${path}`;
  let kept = keptBlobs.get(key);
  if (!kept) {
    const { range: _range, ...rest } = headers;
    kept = new Promise<KeptBlob | undefined>((resolve) => {
      const up = httpRequest({ host: upHost, port: Number(upPort), method: 'GET', path, headers: rest }, (upRes) => {
        if (upRes.statusCode !== 200) {
          upRes.resume();
          resolve(undefined);
          return;
        }
        const parts: Buffer[] = [];
        upRes.on('data', (d: Buffer) => parts.push(d));
        upRes.on('end', () => {
          const bytes = Buffer.concat(parts);
          // Kept only whole: a body cut short would be served short to every later trial.
          const digest = /sha256:([0-9a-f]{64})$/.exec(path)?.[1];
          if (!digest || createHash('sha256').update(bytes).digest('hex') !== digest) {
            resolve(undefined);
            return;
          }
          const kept: Record<string, string> = {};
          for (const [k, v] of Object.entries(upRes.headers)) if (typeof v === 'string' && !RANGE_DEPENDENT.has(k)) kept[k] = v;
          resolve({ bytes, headers: kept });
        });
        upRes.on('error', () => resolve(undefined));
      });
      up.on('error', () => resolve(undefined));
      up.end();
    });
    keptBlobs.set(key, kept);
    // A blob the registry would not give is asked for again next time.
    void kept.then((b) => b ?? keptBlobs.delete(key));
  }
  return kept;
}

/** [start, end] (inclusive) of a single-range header over `size` bytes; undefined: serve it all; null: unsatisfiable or several ranges. */
function byteRange(header: string | undefined, size: number): [number, number] | undefined | null {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  const [start, end] = m[1] === '' ? [Math.max(0, size - Number(m[2])), size - 1] : [Number(m[1]), m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)];
  return start <= end && start < size ? [start, end] : null;
}

/**
 * `rttMs`: a round-trip time added to every request before it is forwarded (the request's way
 * there and the answer's first byte back), and once more to the first request of a new client
 * connection (its TCP handshake): reusing kept-alive connections saves that, as on a real link.
 */
export async function startThrottleProxy(upstream: string, opts: { rateBytesPerSec: number; rttMs?: number; blobsFromMemory?: boolean }): Promise<ThrottleProxy> {
  const fromMemory = opts.blobsFromMemory ?? process.env.BENCH_BLOBS !== 'registry';
  const [upHost, upPort] = upstream.split(':') as [string, string];
  const rttMs = opts.rttMs ?? 0;
  const connectionOf = new WeakMap<Socket, number>();
  let connections = 0;
  const msPerByte = 1000 / opts.rateBytesPerSec;
  let served: ServedRequest[] = [];
  let epoch = performance.now();
  /** When the link is free again: each chunk books its transmission time after the one before. */
  let linkFreeAt = 0;

  /** Milliseconds to wait before sending `n` bytes at the link's rate. */
  const book = (n: number): number => {
    const now = performance.now();
    const start = Math.max(linkFreeAt, now - BURST_MS);
    linkFreeAt = start + n * msPerByte;
    return linkFreeAt - now;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    let connection = connectionOf.get(req.socket);
    const fresh = connection === undefined;
    if (connection === undefined) connectionOf.set(req.socket, (connection = ++connections));
    const rec: ServedRequest = {
      method: req.method ?? 'GET', path: (req.url ?? '/').split('?')[0]!, range: req.headers.range,
      status: 0, bytes: 0, startMs: 0, firstByteMs: undefined, endMs: undefined, connection,
    };
    served.push(rec);
    const base = epoch; // a reset during the request does not move it onto the new log's clock
    const at = (): number => performance.now() - base;
    rec.startMs = at();
    const delay = rttMs * (fresh ? 2 : 1);
    if (delay > 0) setTimeout(() => forward(req, res, rec, at), delay);
    else forward(req, res, rec, at);
  };

  /** Send `body` at the link's rate, a slice at a time; stops when the client goes away. */
  const send = async (res: ServerResponse, body: Buffer, rec: ServedRequest, at: () => number): Promise<void> => {
    for (let off = 0; off < body.length; off += SLICE) {
      const slice = body.subarray(off, off + SLICE);
      const wait = book(slice.length);
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      if (res.destroyed) return;
      rec.firstByteMs ??= at();
      rec.bytes += slice.length;
      if (!res.write(slice)) {
        await new Promise<void>((r) => {
          const done = (): void => {
            res.off('drain', done);
            res.off('close', done);
            r();
          };
          res.once('drain', done);
          res.once('close', done);
        });
      }
    }
    rec.endMs ??= at();
    res.end();
  };

  const forward = (req: IncomingMessage, res: ServerResponse, rec: ServedRequest, at: () => number): void => {
    if (fromMemory && req.method === 'GET' && /\/blobs\/sha256:[0-9a-f]{64}$/.test(rec.path)) {
      void keptBlob(upHost, upPort, req.url ?? rec.path, req.headers).then((blob) => {
        const range = blob ? byteRange(req.headers.range, blob.bytes.length) : null;
        if (!blob || range === null) return relay(req, res, rec, at);
        const [start, end] = range ?? [0, blob.bytes.length - 1];
        rec.status = range ? 206 : 200;
        res.on('close', () => (rec.endMs ??= at()));
        res.writeHead(rec.status, { ...blob.headers, 'content-length': String(end - start + 1), ...(range ? { 'content-range': `bytes ${start}-${end}/${blob.bytes.length}` } : {}) });
        void send(res, blob.bytes.subarray(start, end + 1), rec, at);
      });
      return;
    }
    relay(req, res, rec, at);
  };

  const relay = (req: IncomingMessage, res: ServerResponse, rec: ServedRequest, at: () => number): void => {
    const up = httpRequest({ host: upHost, port: Number(upPort), method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      rec.status = upRes.statusCode ?? 502;
      res.writeHead(rec.status, upRes.rawHeaders);
      // Chunks go out in order, each when the link has time for it; upstream pauses meanwhile.
      let queue = Promise.resolve();
      let queued = 0;
      upRes.on('data', (chunk: Buffer) => {
        const wait = book(chunk.length);
        queued++;
        if (queued > 1 || wait > 1) upRes.pause();
        queue = queue.then(async () => {
          if (wait > 1) await new Promise((r) => setTimeout(r, wait));
          rec.firstByteMs ??= at();
          rec.bytes += chunk.length;
          if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
          if (--queued === 0) upRes.resume();
        });
      });
      upRes.on('end', () => {
        void queue.then(() => {
          rec.endMs = at();
          res.end();
        });
      });
      upRes.on('error', () => res.destroy());
    });
    up.on('error', () => res.destroy());
    res.on('close', () => {
      rec.endMs ??= at();
      up.destroy();
    });
    req.pipe(up);
  };

  const server = await listenOnLoopback(handle);
  return {
    host: server.host,
    get served() {
      return served;
    },
    reset() {
      served = [];
      epoch = performance.now();
    },
    stop: () => server.stop(),
  };
}
