/** The FUSE reader threads' tuning from the environment. */
import { ClipError } from '../util/errors.js';
import { wholeNumberSetting } from '../util/setting.js';

/** How the reader threads behave, from the environment (benchmarks and tuning; see reader-pool.ts). */
export interface ThreadTuning {
  /** How long the last reader thread waits for a request before it ends (CLIP_FUSE_SLEEP_MS). */
  sleepMs: number;
  /** The scheduler slice a reader thread asks for, in ns (CLIP_FUSE_SLICE_US; 0: the kernel's default). */
  sliceNs: number;
  /** Requests a second from which a thread serving them alone says 'stream' (CLIP_FUSE_STREAM_RATE). */
  streamRate: number;
  /** Threads take turns on one client's stream of requests (CLIP_FUSE_TURNS=1). */
  turns: boolean;
  /** Threads read the one connection's descriptor blocking while a lone client asks (solo-reads.ts; CLIP_FUSE_SOLO=0: never). */
  solo: boolean;
}

const DEFAULT_SLEEP_MS = 120_000;
const DEFAULT_SLICE_US = 100;
const DEFAULT_STREAM_RATE = 2000;
/** The longest a Node timer waits (2^31 - 1 ms); a longer time would fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A 0-or-1 switch from the environment (unset and empty pass); anything else is a usage error naming it. */
function zeroOrOne(name: string): string | undefined {
  const v = process.env[name];
  if (v !== undefined && v !== '' && v !== '0' && v !== '1') throw new ClipError('EINVAL', 'not 0 or 1', { object: `${name}=${v}` });
  return v;
}

/** Read when a connection's policy is made, so that a bad value fails the mount, not a thread. */
export function threadTuning(): ThreadTuning {
  const turns = zeroOrOne('CLIP_FUSE_TURNS');
  const solo = zeroOrOne('CLIP_FUSE_SOLO');
  return {
    sleepMs: wholeNumberSetting({ env: 'CLIP_FUSE_SLEEP_MS' }, 1, MAX_TIMER_MS, 'ms') ?? DEFAULT_SLEEP_MS,
    sliceNs: (wholeNumberSetting({ env: 'CLIP_FUSE_SLICE_US' }, 0, 1_000_000, 'µs') ?? DEFAULT_SLICE_US) * 1000,
    streamRate: wholeNumberSetting({ env: 'CLIP_FUSE_STREAM_RATE' }, 1, 1_000_000_000, 'requests a second') ?? DEFAULT_STREAM_RATE,
    turns: turns === '1',
    solo: solo !== '0',
  };
}
