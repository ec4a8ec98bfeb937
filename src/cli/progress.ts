import { SingleBar, Presets } from 'cli-progress';
import { formatSize } from '../util/size.js';

/** Progress of a long job counted in bytes: a bar on a terminal, a plain line every few seconds otherwise. */
export interface Progress {
  /** Grow the expected total (layers are discovered as the job goes). */
  addTotal(bytes: number): void;
  advance(bytes: number): void;
  /** Free text shown beside the numbers: "layer 2/5". */
  status(text: string): void;
  stop(): void;
}

export interface ProgressOptions {
  label: string;
  stream?: NodeJS.WriteStream;
  /** Force plain lines (tests, --json); default: bar when the stream is a TTY. */
  plain?: boolean;
  /** Disable output entirely. */
  quiet?: boolean;
  intervalMs?: number;
}

export function createProgress(opts: ProgressOptions): Progress {
  const stream = opts.stream ?? process.stderr;
  if (opts.quiet) return { addTotal() {}, advance() {}, status() {}, stop() {} };
  let total = 0;
  let done = 0;
  let text = '';
  const started = Date.now();
  if (!opts.plain && stream.isTTY) {
    const bar = new SingleBar(
      {
        format: `${opts.label} [{bar}] {percentage}% {doneH}/{totalH} {rate}/s ETA {eta_formatted} {text}`,
        stream,
        hideCursor: true,
        etaBuffer: 50,
      },
      Presets.shades_classic,
    );
    const payload = () => {
      const secs = Math.max((Date.now() - started) / 1000, 0.001);
      return { doneH: formatSize(done), totalH: formatSize(total), rate: formatSize(Math.round(done / secs)), text };
    };
    bar.start(1, 0, payload());
    return {
      addTotal(bytes) { total += bytes; bar.setTotal(Math.max(total, 1)); bar.update(done, payload()); },
      advance(bytes) { done += bytes; bar.update(done, payload()); },
      status(t) { text = t; bar.update(done, payload()); },
      stop() { bar.stop(); },
    };
  }
  const line = () => {
    const secs = Math.max((Date.now() - started) / 1000, 0.001);
    const rate = done / secs;
    const eta = rate > 0 && total > done ? `, ETA ${Math.ceil((total - done) / rate)}s` : '';
    const pct = total > 0 ? ` (${Math.floor((100 * done) / total)}%)` : '';
    stream.write(`${opts.label}: ${formatSize(done)}/${formatSize(total)}${pct}, ${formatSize(Math.round(rate))}/s${eta}${text ? `, ${text}` : ''}\n`);
  };
  const timer = setInterval(line, opts.intervalMs ?? 5000);
  timer.unref();
  return {
    addTotal(bytes) { total += bytes; },
    advance(bytes) { done += bytes; },
    status(t) { text = t; },
    stop() { clearInterval(timer); line(); },
  };
}
