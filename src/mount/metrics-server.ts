/** A Prometheus endpoint (GET /metrics) for a mount's storage metrics. */
import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { ClipError } from '../util/errors.js';

/** Listen on "host:port" (or ":port" / "port" for 127.0.0.1). */
export async function serveMetrics(addr: string, registry: Registry): Promise<Server> {
  const m = /^(?:(.*):)?(\d+)$/.exec(addr);
  if (!m) throw new ClipError('EINVAL', 'metrics address must be [host:]port', { object: addr });
  const host = m[1] ? m[1].replace(/^\[|\]$/g, '') : '127.0.0.1';
  const port = Number(m[2]);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404).end('not found\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((resolveListen, reject) => {
    server.once('error', (err) => reject(new ClipError('EINVAL', `cannot listen for metrics: ${err.message}`, { object: addr, cause: err })));
    server.listen(port, host, () => resolveListen());
  });
  server.unref();
  return server;
}
