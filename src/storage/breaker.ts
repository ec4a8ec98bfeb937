/**
 * A circuit breaker for an optional tier: after `threshold` consecutive failures it opens, callers
 * skip the tier, and a periodic probe closes it again once the tier answers.
 */
export interface BreakerOptions {
  threshold: number;
  probeIntervalMs: number;
  probe: () => Promise<unknown>;
  onChange?: (open: boolean) => void;
}

export class Breaker {
  private failures = 0;
  private timer: NodeJS.Timeout | undefined;
  private probing = false;
  private readonly opts: BreakerOptions;

  constructor(opts: BreakerOptions) {
    this.opts = opts;
  }

  get open(): boolean {
    return this.timer !== undefined;
  }

  success(): void {
    this.failures = 0;
  }

  failure(): void {
    this.failures++;
    if (this.failures >= this.opts.threshold && !this.open) {
      this.timer = setInterval(() => void this.tryProbe(), this.opts.probeIntervalMs);
      this.timer.unref();
      this.opts.onChange?.(true);
    }
  }

  /** Open the breaker now (e.g. the first connection failed). */
  trip(): void {
    this.failures = Math.max(this.failures, this.opts.threshold - 1);
    this.failure();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async tryProbe(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    try {
      await this.opts.probe();
      this.failures = 0;
      if (this.timer) {
        this.stop();
        this.opts.onChange?.(false);
      }
    } catch {
      // still down; the next tick tries again
    } finally {
      this.probing = false;
    }
  }
}
