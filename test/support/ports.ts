/**
 * Loopback ports for the test servers. A port found free is bound later by another process, and
 * other tests open ports meanwhile: `onFreePort` starts a server again on another port when its
 * own was taken in between.
 */
import net from 'node:net';

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A free loopback port; with `busOffset`, port + busOffset is free too (a Redis Cluster bus port). */
export async function freePort(busOffset?: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address();
        srv.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
      });
    });
    if (busOffset === undefined) return port;
    if (port + busOffset < 65536 && (await portIsFree(port + busOffset))) return port;
  }
  throw new Error('no free port pair found');
}

/** `start` on a free port; on another (three tries in all) if it fails with "address already in use". */
export async function onFreePort<T>(start: (port: number) => Promise<T>, busOffset?: number): Promise<{ port: number; started: T }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort(busOffset);
    try {
      return { port, started: await start(port) };
    } catch (err) {
      if (attempt >= 3 || !/address already in use/i.test(String(err))) throw err;
    }
  }
}
