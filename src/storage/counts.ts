/**
 * Counters, gauges and a histogram kept as plain numbers. The read path counts into these at
 * every request; prom-client (~3–10 MB of a server's RSS) is loaded only when a registry is asked
 * for (a metrics endpoint), and then reads these numbers at each scrape, so a count made before
 * it loaded is never lost.
 */
import type * as PromClientModule from 'prom-client';
import type { Counter, Gauge, Histogram, LabelValues, MetricType, Registry } from 'prom-client';

export type PromClient = typeof PromClientModule;

/** One value per label value ('' when the metric has no label). */
abstract class PlainMetric<L extends string> {
  protected readonly values = new Map<string, number>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelName?: L,
  ) {}

  protected key(labels: LabelValues<L> | undefined): string {
    return this.labelName === undefined ? '' : String(labels?.[this.labelName] ?? '');
  }

  protected labelsOf(key: string): LabelValues<L> {
    return (this.labelName === undefined ? {} : { [this.labelName]: key }) as LabelValues<L>;
  }

  /** Current values, as prom-client's get() gives them. */
  get(): { values: { labels: LabelValues<L>; value: number }[] } {
    return { values: [...this.values].map(([k, value]) => ({ labels: this.labelsOf(k), value })) };
  }

  /** The same metric in a prom-client registry, reading these numbers when scraped. */
  abstract register(prom: PromClient, registry: Registry): void;

  /** What a prom-client metric of this one is made with, but for its collect(). */
  protected promOptions(registry: Registry): { name: string; help: string; labelNames: string[]; registers: Registry[] } {
    return { name: this.name, help: this.help, labelNames: this.labelName === undefined ? [] : [this.labelName], registers: [registry] };
  }
}

export class PlainCounter<L extends string = never> extends PlainMetric<L> {
  inc(labels?: LabelValues<L> | number, n = 1): void {
    if (typeof labels === 'number') {
      n = labels;
      labels = undefined;
    }
    const k = this.key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + n);
  }

  /** The counter of one label value, bound (what the hot path keeps). */
  labels(labels: LabelValues<L>): { inc(n?: number): void } {
    const k = this.key(labels);
    if (!this.values.has(k)) this.values.set(k, 0);
    return { inc: (n = 1) => void this.values.set(k, (this.values.get(k) ?? 0) + n) };
  }

  register(prom: PromClient, registry: Registry): void {
    const current = (): { labels: LabelValues<L>; value: number }[] => this.get().values;
    new prom.Counter<string>({
      ...this.promOptions(registry),
      collect(this: Counter<string>) {
        this.reset();
        for (const { labels, value } of current()) this.inc(labels as LabelValues<string>, value);
      },
    });
  }
}

export class PlainGauge<L extends string = never> extends PlainMetric<L> {
  constructor(name: string, help: string, labelName?: L) {
    super(name, help, labelName);
    if (labelName === undefined) this.values.set('', 0);
  }

  set(value: number): void {
    this.values.set('', value);
  }

  register(prom: PromClient, registry: Registry): void {
    const current = (): { labels: LabelValues<L>; value: number }[] => this.get().values;
    new prom.Gauge<string>({
      ...this.promOptions(registry),
      collect(this: Gauge<string>) {
        this.reset();
        for (const { labels, value } of current()) this.set(labels as LabelValues<string>, value);
      },
    });
  }
}

interface Buckets {
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  counts: number[];
  sum: number;
  count: number;
}

export class PlainHistogram<L extends string = never> extends PlainMetric<L> {
  private readonly series = new Map<string, Buckets>();

  constructor(name: string, help: string, labelName: L | undefined, readonly buckets: readonly number[]) {
    super(name, help, labelName);
  }

  observe(labels: LabelValues<L> | undefined, value: number): void {
    this.seriesOf(this.key(labels)).push(value);
  }

  /** Starts a timer; calling the result observes the seconds since. */
  startTimer(labels?: LabelValues<L>): () => void {
    const t0 = process.hrtime.bigint();
    const observe = this.seriesOf(this.key(labels));
    return () => observe.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }

  labels(labels: LabelValues<L>): { startTimer(): () => void; observe(value: number): void } {
    return { startTimer: () => this.startTimer(labels), observe: (v) => this.observe(labels, v) };
  }

  private seriesOf(k: string): { push(value: number): void } {
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 }));
    const b = s;
    return {
      push: (v) => {
        let i = 0;
        while (i < this.buckets.length && v > this.buckets[i]!) i++;
        b.counts[i]!++;
        b.sum += v;
        b.count++;
      },
    };
  }

  /** Every series' samples, as Prometheus names them (cumulative buckets, +Inf, sum, count). */
  samples(): { metricName: string; labels: Record<string, string | number>; value: number }[] {
    const out: { metricName: string; labels: Record<string, string | number>; value: number }[] = [];
    for (const [k, s] of this.series) {
      const labels = this.labelsOf(k) as Record<string, string>;
      let acc = 0;
      this.buckets.forEach((le, i) => {
        acc += s.counts[i]!;
        out.push({ metricName: `${this.name}_bucket`, labels: { le, ...labels }, value: acc });
      });
      out.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf', ...labels }, value: s.count });
      out.push({ metricName: `${this.name}_sum`, labels, value: s.sum });
      out.push({ metricName: `${this.name}_count`, labels, value: s.count });
    }
    return out;
  }

  override get(): { values: { labels: LabelValues<L>; value: number }[] } {
    return { values: [...this.series].map(([k, s]) => ({ labels: this.labelsOf(k), value: s.count })) };
  }

  register(prom: PromClient, registry: Registry): void {
    const { name, help } = this;
    const samples = (): ReturnType<PlainHistogram<L>['samples']> => this.samples();
    // prom-client's histogram cannot be given counts, so this one answers a scrape with ours.
    class Carried extends prom.Histogram<string> {
      override async get(): Promise<Awaited<ReturnType<Histogram<string>['get']>>> {
        return { name, help, type: 'histogram' as unknown as MetricType, aggregator: 'sum', collect: () => undefined, values: samples() };
      }

      /** What the registry asks for when it writes the text exposition. */
      getForPromString(): Promise<Awaited<ReturnType<Histogram<string>['get']>>> {
        return this.get();
      }
    }
    new Carried({ ...this.promOptions(registry), buckets: [...this.buckets] });
  }
}
