/**
 * undici compiles its HTTP parser (llhttp, WebAssembly) when its first connection opens: ~35 ms of
 * CPU quiet, ~100 ms on a loaded node, spent on a cold start's first registry answer. A process
 * that waits for mounts (the node's server kept running) pays it ahead with one request to itself.
 */
import './http-parser-tier.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';

/** One loopback request through undici, so that its parser is compiled; whether it was answered (never throws). */
export async function warmHttpParser(): Promise<boolean> {
  const server = createServer((_req, res) => res.end());
  const agent = new Agent();
  try {
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const res = await request(`http://127.0.0.1:${port}/`, { dispatcher: agent });
    await res.body.dump();
    return res.statusCode === 200;
  } catch {
    // No loopback (a locked-down sandbox): the first registry answer compiles it, as without this.
    return false;
  } finally {
    await agent.close().catch(() => undefined);
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
