/**
 * An HTTP proxy in front of a registry that limits the bytes it sends back to a fixed rate shared by
 * all responses (one network link), and records every request: range, status, body bytes and when
 * it started, got its first byte and ended. What the cold-start bench measures and profiles with.
 */
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

/**
 * `rttMs`: a round-trip time added to every request before it is forwarded (the request's way
 * there and the answer's first byte back), and once more to the first request of a new client
 * connection (its TCP handshake): reusing kept-alive connections saves that, as on a real link.
 */
export async function startThrottleProxy(upstream: string, opts: { rateBytesPerSec: number; rttMs?: number }): Promise<ThrottleProxy> {
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

  const forward = (req: IncomingMessage, res: ServerResponse, rec: ServedRequest, at: () => number): void => {
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
