/**
 * The serving process's own figures in a mount's metrics registry: its memory (the node server's,
 * shared by every mount it serves) and how often the server was restarted (crash or upgrade).
 */
import { Gauge, type Registry } from 'prom-client';

export function registerProcessMetrics(registry: Registry, restarts: number): void {
  const registers = [registry];
  new Gauge({
    name: 'clip_process_resident_memory_bytes',
    help: 'Resident memory of the process serving this mount (the node server serves every background mount)',
    registers,
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  new Gauge({
    name: 'clip_process_heap_used_bytes',
    help: 'V8 heap in use in the process serving this mount',
    registers,
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });
  new Gauge({ name: 'clip_server_restarts', help: 'Times the node server serving this mount was started again (after a crash, or by clip server restart)', registers }).set(restarts);
}
