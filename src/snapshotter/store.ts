/**
 * The snapshotter's metadata in LMDB (the `lmdb` package, its binary prebuilt in
 * @lmdb/lmdb-linux-x64): one record per snapshot key, and the next snapshot id. Every change that
 * touches several records is one synchronous transaction, so a crash leaves either all of it or
 * none; the snapshot directories on disk follow the records (Cleanup removes any a crash orphaned).
 */
import { open, type Database, type RootDatabase } from 'lmdb';

export type Kind = 'VIEW' | 'ACTIVE' | 'COMMITTED';

/** Where a remote (lazily served) layer comes from: its image and its place in it. */
export interface RemoteLayer {
  /** The platform manifest's digest: the image mounted for this layer's chain. */
  manifest: string;
  /** The blobs' location, e.g. "registry:5000/team/app". */
  location: string;
  /** 0-based position of the layer in the image. */
  position: number;
  /** How many layers the image has. */
  layers: number;
  /** The layer's blob digest (for logs; absent in records of older versions). */
  layerDigest?: string;
  /** The image reference containerd named (for logs and metrics; absent in records of older versions). */
  image?: string;
}

export interface SnapshotRecord {
  id: number;
  kind: Kind;
  /** The parent's key, or "" for none. */
  parent: string;
  labels: Record<string, string>;
  /** Milliseconds since the epoch. */
  created: number;
  updated: number;
  /** Committed snapshots: their size on disk when committed. */
  usage?: { size: number; inodes: number };
  /** A committed layer served from an image mount rather than a directory of its own. */
  remote?: RemoteLayer;
}

export class SnapshotStore {
  private readonly root: RootDatabase;
  private readonly snapshots: Database<SnapshotRecord, string>;
  private readonly meta: Database<number, string>;

  constructor(path: string) {
    this.root = open({ path, compression: false });
    this.snapshots = this.root.openDB<SnapshotRecord, string>({ name: 'snapshots' });
    this.meta = this.root.openDB<number, string>({ name: 'meta' });
  }

  get(key: string): SnapshotRecord | undefined {
    return this.snapshots.get(key);
  }

  all(): Array<[string, SnapshotRecord]> {
    return [...this.snapshots.getRange()].map(({ key, value }) => [key, value]);
  }

  /** Run `fn` in one write transaction (synchronous, durable when it returns). */
  transaction<T>(fn: (tx: StoreTx) => T): T {
    return this.root.transactionSync(() => fn({
      get: (key) => this.snapshots.get(key),
      put: (key, rec) => void this.snapshots.putSync(key, rec),
      remove: (key) => void this.snapshots.removeSync(key),
      nextId: () => {
        const id = (this.meta.get('nextId') ?? 1);
        this.meta.putSync('nextId', id + 1);
        return id;
      },
      children: (key) => [...this.snapshots.getRange()].filter(({ value }) => value.parent === key).map(({ key: k }) => k),
    }));
  }

  async close(): Promise<void> {
    await this.root.close();
  }
}

export interface StoreTx {
  get(key: string): SnapshotRecord | undefined;
  put(key: string, rec: SnapshotRecord): void;
  remove(key: string): void;
  nextId(): number;
  children(key: string): string[];
}
