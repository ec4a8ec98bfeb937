/**
 * A fault-injecting HTTP proxy in front of a real registry. Tests arm faults (503s, connection
 * resets after N body bytes, clean truncation, a flipped byte) for requests that match, and count
 * what went through (by method, path and Range) and on how many client connections. An optional
 * round-trip time delays every request by one RTT, and the first request of a new connection by
 * one more (its TCP handshake), so pooled keep-alive connections show in the timing as they would.
 */
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { listenOnLoopback } from './loopback-server.js';

export interface ProxiedRequest {
  method: string;
  path: string;
  range: string | undefined;
  /** Whether the request carried an Authorization header (never its value). */
  authorized: boolean;
  /** Response body bytes passed on to the client. */
  bytes: number;
  /** Which client connection carried it: 1 for the first the proxy saw, and so on. */
  connection: number;
}

export interface FaultProxyOptions {
  /** Round-trip time added to every request (and once more to a connection's first): 0 when absent. */
  rttMs?: number;
}

export type FaultAction =
  | { kind: 'status'; status: number }
  /** Abort the connection (TCP RST) after this many body bytes. */
  | { kind: 'reset'; afterBytes: number }
  /** Close the connection cleanly after this many body bytes, short of Content-Length. */
  | { kind: 'truncate'; afterBytes: number }
  /** XOR the body byte at this offset (of this response) with 0xff. */
  | { kind: 'flip'; offset: number }
  /** Go silent: no answer at all, or no more body after `afterBytes` (the connection stays open). */
  | { kind: 'stall'; afterBytes?: number }
  /** Forward without the Range header, as a server that ignores Range would answer. */
  | { kind: 'ignoreRange' }
  /** Answer 307 to `${base}${path}` instead of forwarding. */
  | { kind: 'redirect'; base: string }
  /** Forward only once `until` settles (the request waits at the proxy meanwhile). */
  | { kind: 'hold'; until: Promise<void> }
  /** Answer this instead of forwarding (as a registry with a feature this one lacks would). */
  | { kind: 'reply'; status: number; headers: Record<string, string>; body: string };

export type Fault = FaultAction & {
  /** Which requests it applies to; all when absent. */
  match?: (r: ProxiedRequest) => boolean;
  /** How many matching requests it hits; 1 when absent. */
  times?: number;
};

export interface FaultProxy {
  host: string;
  requests: ProxiedRequest[];
  inject(fault: Fault): void;
  clearFaults(): void;
  count(match?: (r: ProxiedRequest) => boolean): number;
  /** Client connections that carried a request so far. */
  readonly connections: number;
  /** Change the round-trip time for requests from now on. */
  setRtt(ms: number): void;
  stop(): Promise<void>;
}

/** A matcher for blob GETs of one digest. */
export function blobGets(digest: string): (r: ProxiedRequest) => boolean {
  return (r) => r.method === 'GET' && r.path.includes(`/blobs/${digest}`);
}

export async function startFaultProxy(upstream: string, opts: FaultProxyOptions = {}): Promise<FaultProxy> {
  const [upHost, upPort] = upstream.split(':') as [string, string];
  const requests: ProxiedRequest[] = [];
  const connectionOf = new WeakMap<Socket, number>();
  let connections = 0;
  let rttMs = opts.rttMs ?? 0;
  const faults: (Fault & { left: number })[] = [];

  const takeFault = (r: ProxiedRequest): FaultAction | undefined => {
    const i = faults.findIndex((f) => f.left > 0 && (!f.match || f.match(r)));
    if (i < 0) return undefined;
    const f = faults[i]!;
    f.left--;
    return f;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    let connection = connectionOf.get(req.socket);
    const fresh = connection === undefined;
    if (connection === undefined) connectionOf.set(req.socket, (connection = ++connections));
    const r: ProxiedRequest = { method: req.method ?? 'GET', path: (req.url ?? '/').split('?')[0]!, range: req.headers.range, authorized: req.headers.authorization !== undefined, bytes: 0, connection };
    requests.push(r);
    const delay = rttMs * (fresh ? 2 : 1);
    // A request body is not read before forward() pipes it on: it waits in the socket meanwhile.
    if (delay > 0) setTimeout(() => forward(req, res, r), delay);
    else forward(req, res, r);
  };

  const forward = (req: IncomingMessage, res: ServerResponse, r: ProxiedRequest, fault = takeFault(r)): void => {
    if (fault?.kind === 'hold') {
      const go = (): void => forward(req, res, r, undefined);
      fault.until.then(go, go);
      return;
    }
    if (fault?.kind === 'reply') {
      req.resume();
      res.writeHead(fault.status, { ...fault.headers, 'content-length': String(Buffer.byteLength(fault.body)) }).end(fault.body);
      return;
    }
    if (fault?.kind === 'status') {
      req.resume();
      res.writeHead(fault.status, { 'content-type': 'application/json' }).end('{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}');
      return;
    }
    if (fault?.kind === 'stall' && fault.afterBytes === undefined) {
      req.resume();
      return; // never answered; the socket is destroyed by stop()
    }
    if (fault?.kind === 'redirect') {
      req.resume();
      res.writeHead(307, { location: `${fault.base}${req.url ?? '/'}`, 'content-length': '0' }).end();
      return;
    }
    const headers = { ...req.headers };
    if (fault?.kind === 'ignoreRange') delete headers.range;
    const up = httpRequest({ host: upHost, port: Number(upPort), method: req.method, path: req.url, headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.rawHeaders);
      let sent = 0;
      let cut = false;
      upRes.on('data', (chunk: Buffer) => {
        if (cut) return;
        let out = chunk;
        if (fault?.kind === 'flip' && fault.offset >= sent && fault.offset < sent + chunk.length) {
          out = Buffer.from(chunk);
          out[fault.offset - sent]! ^= 0xff;
        }
        if (fault?.kind === 'stall' && fault.afterBytes !== undefined && sent + out.length >= fault.afterBytes) {
          res.write(out.subarray(0, fault.afterBytes - sent));
          cut = true;
          upRes.destroy();
          return;
        }
        if ((fault?.kind === 'reset' || fault?.kind === 'truncate') && sent + out.length >= fault.afterBytes) {
          const keep = out.subarray(0, fault.afterBytes - sent);
          cut = true;
          upRes.destroy();
          const socket = res.socket;
          sent += keep.length;
          r.bytes += keep.length;
          // Let the kept bytes reach the peer before cutting: a reset drops whatever is still queued.
          res.write(keep, () => setTimeout(() => (fault.kind === 'reset' ? socket?.resetAndDestroy() : socket?.end()), 20));
          return;
        }
        sent += out.length;
        r.bytes += out.length;
        res.write(out);
      });
      upRes.on('end', () => !cut && res.end());
      upRes.on('error', () => !cut && res.destroy());
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  };

  const server = await listenOnLoopback(handle);
  return {
    host: server.host,
    requests,
    inject(fault) {
      faults.push({ ...fault, left: fault.times ?? 1 });
    },
    clearFaults() {
      faults.length = 0;
    },
    count(match) {
      return match ? requests.filter(match).length : requests.length;
    },
    get connections() {
      return connections;
    },
    setRtt(ms) {
      rttMs = ms;
    },
    stop: () => server.stop(),
  };
}
