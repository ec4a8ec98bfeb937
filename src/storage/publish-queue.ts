/**
 * A bounded queue of chunks on their way to the remote cache, drained by a few workers. When it is
 * full (by count or by bytes) new chunks are dropped and counted: publishing is best effort and must
 * never hold reads back or grow memory.
 */
export interface PublishItem {
  key: string;
  data: Buffer;
  /** Replace a value that failed verification instead of SET NX. */
  overwrite: boolean;
}

export interface PublishQueueOptions {
  maxItems: number;
  maxBytes: number;
  concurrency: number;
  send: (item: PublishItem) => Promise<'stored' | 'skipped'>;
  onResult: (result: 'stored' | 'skipped' | 'dropped' | 'failed', item: PublishItem, err?: unknown) => void;
  onBytes?: (queuedBytes: number) => void;
}

export class PublishQueue {
  private readonly items: PublishItem[] = [];
  private readonly queuedKeys = new Set<string>();
  private bytes = 0;
  private active = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly opts: PublishQueueOptions;

  constructor(opts: PublishQueueOptions) {
    this.opts = opts;
  }

  get pending(): number {
    return this.items.length + this.active;
  }

  push(item: PublishItem): boolean {
    if (this.queuedKeys.has(item.key)) return true;
    if (this.items.length >= this.opts.maxItems || this.bytes + item.data.length > this.opts.maxBytes) {
      this.opts.onResult('dropped', item);
      return false;
    }
    this.items.push(item);
    this.queuedKeys.add(item.key);
    this.bytes += item.data.length;
    this.opts.onBytes?.(this.bytes);
    this.pump();
    return true;
  }

  /** Resolves when everything queued has been sent, or at the deadline; returns what is left. */
  async drain(deadlineMs: number): Promise<number> {
    if (this.pending === 0) return 0;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((r) => this.idleWaiters.push(r)),
      new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadlineMs)))),
    ]);
    clearTimeout(timer);
    return this.pending;
  }

  /** Forget everything not yet sent (counted as dropped). */
  clear(): void {
    for (const item of this.items.splice(0)) this.opts.onResult('dropped', item);
    this.queuedKeys.clear();
    this.bytes = 0;
    this.opts.onBytes?.(0);
    this.settleIfIdle();
  }

  private pump(): void {
    while (this.active < this.opts.concurrency && this.items.length > 0) {
      const item = this.items.shift()!;
      this.bytes -= item.data.length;
      this.opts.onBytes?.(this.bytes);
      this.active++;
      void this.opts
        .send(item)
        .then(
          (r) => this.opts.onResult(r, item),
          (err) => this.opts.onResult('failed', item, err),
        )
        .finally(() => {
          this.active--;
          this.queuedKeys.delete(item.key);
          this.pump();
          this.settleIfIdle();
        });
    }
  }

  private settleIfIdle(): void {
    if (this.pending !== 0) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }
}
