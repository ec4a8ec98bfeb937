import { createServer, type RequestListener } from 'node:http';
import type { Socket } from 'node:net';

export interface LoopbackServer {
  /** "127.0.0.1:PORT" */
  host: string;
  /** Close the server, cutting open connections (a proxy's keep-alive sockets would hold it). */
  stop(): Promise<void>;
}

/** An HTTP server on a free loopback port that can be stopped while clients keep connections open. */
export async function listenOnLoopback(handle: RequestListener): Promise<LoopbackServer> {
  const sockets = new Set<Socket>();
  const server = createServer(handle);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    host: `127.0.0.1:${port}`,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
