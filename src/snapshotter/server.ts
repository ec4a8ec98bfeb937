/**
 * The Snapshots gRPC service on a unix socket, for containerd's proxy_plugins: each call is turned
 * into a Snapshotter call, and its errors into the status codes containerd's errdefs reads back.
 */
import { rm } from 'node:fs/promises';
import { Server, ServerCredentials, status, type ServerWritableStream, type ServiceError, type UntypedHandleCall } from '@grpc/grpc-js';
import { silentLogger, type Logger } from '../util/log.js';
import { SnapshotError } from './errors.js';
import type { SnapshotterMetrics } from './metrics.js';
import { snapshotsService } from './proto.js';
import type { Info, Mount, Snapshotter } from './snapshotter.js';

interface Timestamp { seconds: number; nanos: number }
interface WireInfo { name: string; parent: string; kind: string; created_at: Timestamp | null; updated_at: Timestamp | null; labels: Record<string, string> }

const ts = (ms: number): Timestamp => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 });
const wireInfo = (i: Info): WireInfo => ({ name: i.name, parent: i.parent, kind: i.kind, created_at: ts(i.created), updated_at: ts(i.updated), labels: i.labels });
const wireMounts = (ms: Mount[]): { mounts: Mount[] } => ({ mounts: ms });

/** The snapshot a request is about, for the log. */
function keyOf(req: unknown): string | undefined {
  const r = req as { key?: string; name?: string } | undefined;
  return r?.key || r?.name || undefined;
}

function serviceError(err: unknown, method: string, log: Logger, req?: unknown): Partial<ServiceError> {
  const key = keyOf(req);
  if (err instanceof SnapshotError) {
    if (err.kind !== 'NotFound' && err.kind !== 'AlreadyExists') log.info({ method, key, err: err.message }, 'snapshotter: request refused');
    return { code: err.grpcCode, details: err.message, message: err.message };
  }
  const message = err instanceof Error ? err.message : String(err);
  log.error({ method, key, err: message }, 'snapshotter: request failed');
  return { code: status.UNKNOWN, details: message, message };
}

type Unary<Req> = (req: Req) => Promise<object> | object;

export interface SnapshotterServer {
  address: string;
  stop(): Promise<void>;
}

export async function serveSnapshotter(sn: Snapshotter, address: string, logger: Logger = silentLogger, metrics?: SnapshotterMetrics): Promise<SnapshotterServer> {
  const unary = <Req>(method: string, fn: Unary<Req>): UntypedHandleCall =>
    ((call: { request: Req }, callback: (err: Partial<ServiceError> | null, res?: object) => void) => {
      logger.debug({ method, request: call.request }, 'snapshotter: request');
      Promise.resolve().then(() => fn(call.request)).then(
        (res) => {
          metrics?.request(method, 'OK');
          callback(null, res);
        },
        (err: unknown) => {
          const e = serviceError(err, method, logger, call.request);
          metrics?.request(method, status[e.code ?? status.UNKNOWN] ?? String(e.code));
          callback(e);
        },
      );
    }) as UntypedHandleCall;

  type KeyReq = { key: string };
  type CreateReq = { key: string; parent: string; labels: Record<string, string> };
  const handlers: Record<string, UntypedHandleCall> = {
    Prepare: unary<CreateReq>('Prepare', async (r) => wireMounts(await sn.prepare(r.key, r.parent, r.labels ?? {}))),
    View: unary<CreateReq>('View', async (r) => wireMounts(await sn.view(r.key, r.parent, r.labels ?? {}))),
    Mounts: unary<KeyReq>('Mounts', async (r) => wireMounts(await sn.mounts(r.key))),
    Commit: unary<{ name: string; key: string; labels: Record<string, string> }>('Commit', async (r) => {
      await sn.commit(r.name, r.key, r.labels ?? {});
      return {};
    }),
    Remove: unary<KeyReq>('Remove', async (r) => {
      await sn.remove(r.key);
      return {};
    }),
    Stat: unary<KeyReq>('Stat', (r) => ({ info: wireInfo(sn.stat(r.key)) })),
    Update: unary<{ info: WireInfo | null; update_mask: { paths: string[] } | null }>('Update', (r) => {
      if (!r.info) throw new SnapshotError('InvalidArgument', 'Update without info');
      return { info: wireInfo(sn.update({ name: r.info.name, labels: r.info.labels ?? {} }, r.update_mask?.paths ?? [])) };
    }),
    Usage: unary<KeyReq>('Usage', async (r) => sn.usage(r.key)),
    Cleanup: unary<object>('Cleanup', async () => {
      await sn.cleanup();
      return {};
    }),
    List: ((call: ServerWritableStream<{ filters: string[] }, object>) => {
      try {
        const infos = sn.list(call.request.filters ?? []);
        // Sent in batches, as containerd's own service does, to keep each message small.
        for (let i = 0; i < infos.length; i += 100) call.write({ info: infos.slice(i, i + 100).map(wireInfo) });
        call.end();
      } catch (err) {
        call.destroy(serviceError(err, 'List', logger) as ServiceError);
      }
    }) as UntypedHandleCall,
  };

  const server = new Server();
  server.addService(snapshotsService(), handlers);
  await rm(address, { force: true });
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${address}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return {
    address,
    stop: () => new Promise<void>((resolve) => {
      server.tryShutdown(() => resolve());
      setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, 5000).unref();
    }),
  };
}
