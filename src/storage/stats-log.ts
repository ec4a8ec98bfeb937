/**
 * Tier counters that outlive the process, for `clip cache stats`: CACHE_DIR/stats/ holds immutable
 * records, one per process close (and one per interval for long-running mounts), each the counter
 * increments since that process's previous record.
 *
 * Why immutable files rather than one appended log: compaction (by `clip cache gc`) must never lose
 * or double a record while other processes write theirs and other readers sum them.
 * - A record is written to a ".tmp-" file and renamed into place: kill -9 leaves either nothing or
 *   a complete record (stray temporaries are ignored, and removed by the next compaction).
 * - A compactor first claims records by renaming them to "c-<its id>-<name>"; rename is atomic, so
 *   each record is claimed by one compactor. It then writes one summary record holding their sum
 *   and the names it absorbed, and only then unlinks them. A reader skips any record a present
 *   summary absorbed, so a crash between those steps double-counts nothing.
 * - Records are known by their base name (claim prefixes stripped), so a reader whose directory
 *   listing races with a rename sees a record once; it lists again until two listings agree.
 */
import { randomBytes } from 'node:crypto';
import { readFile, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ensurePrivateDir } from './cache-dir.js';

export type Counters = Record<string, number>;

interface StatsRecord {
  v: 1;
  at: number;
  pid: number;
  counters: Counters;
  /** Summaries only: base names of the records folded into this one. */
  absorbed?: string[];
}

export interface StatsTotals {
  counters: Counters;
  /** Record files summed (after compaction: one). */
  records: number;
  /** Files that could not be parsed (skipped). */
  unreadable: number;
}

/** A claim older than this belongs to a compactor that died: another one may take it over. */
const STALE_CLAIM_MS = 10 * 60_000;
const RECORD = /^(?:c-[0-9a-z]+-)*([rs]-[0-9]+-[0-9a-z]+\.json)$/;

export function statsDir(cacheDir: string): string {
  return path.join(cacheDir, 'stats');
}

function token(): string {
  return `${process.pid.toString(36)}${randomBytes(4).toString('hex')}`;
}

/** The name of a record without the claim prefixes compactors add; undefined for other files. */
function baseName(name: string): string | undefined {
  return RECORD.exec(name)?.[1];
}

async function writeAtomically(dir: string, name: string, record: StatsRecord): Promise<void> {
  const tmp = path.join(dir, `.tmp-${token()}`);
  await writeFile(tmp, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  await rename(tmp, path.join(dir, name));
}

/** Store `counters` (increments) as one record; counters that are zero are left out. Returns its name, if any. */
export async function recordStats(cacheDir: string, counters: Counters): Promise<string | undefined> {
  const nonZero = Object.fromEntries(Object.entries(counters).filter(([, v]) => Number.isFinite(v) && v !== 0));
  if (Object.keys(nonZero).length === 0) return undefined;
  const dir = statsDir(cacheDir);
  await ensurePrivateDir(dir);
  const name = `r-${Date.now()}-${token()}.json`;
  await writeAtomically(dir, name, { v: 1, at: Date.now(), pid: process.pid, counters: nonZero });
  return name;
}

async function listNames(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** The parsed records of `names` (missing ones, renamed or removed meanwhile, are left out). */
async function readRecords(dir: string, names: string[]): Promise<{ records: Map<string, StatsRecord>; gone: number; unreadable: number }> {
  const records = new Map<string, StatsRecord>();
  let gone = 0;
  let unreadable = 0;
  for (const name of names) {
    if (!baseName(name)) continue;
    let text: string;
    try {
      text = await readFile(path.join(dir, name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        gone++;
        continue;
      }
      throw err;
    }
    try {
      const r = JSON.parse(text) as StatsRecord;
      if (r.v !== 1 || typeof r.counters !== 'object' || r.counters === null) throw new Error('not a stats record');
      records.set(name, r);
    } catch {
      unreadable++;
    }
  }
  return { records, gone, unreadable };
}

function addInto(total: Counters, more: Counters): void {
  for (const [k, v] of Object.entries(more)) if (typeof v === 'number' && Number.isFinite(v)) total[k] = (total[k] ?? 0) + v;
}

/** Sum what is live: each base name once, and nothing a present summary has absorbed. */
function sum(records: Map<string, StatsRecord>): { counters: Counters; records: number } {
  const absorbed = new Set<string>();
  for (const r of records.values()) for (const a of r.absorbed ?? []) absorbed.add(a);
  const seen = new Set<string>();
  const counters: Counters = {};
  for (const [name, r] of records) {
    const base = baseName(name)!;
    // A summary folded into a later one counts through that one.
    if (seen.has(base) || absorbed.has(base)) continue;
    seen.add(base);
    addInto(counters, r.counters);
  }
  return { counters, records: seen.size };
}

/** The sum of every record in CACHE_DIR/stats/. */
export async function readStats(cacheDir: string): Promise<StatsTotals> {
  const dir = statsDir(cacheDir);
  let names = await listNames(dir);
  for (let attempt = 0; ; attempt++) {
    const { records, gone, unreadable } = await readRecords(dir, names);
    const again = (await listNames(dir)).filter((n) => baseName(n));
    const listed = names.filter((n) => baseName(n));
    const stable = gone === 0 && again.length === listed.length && again.every((n, i) => n === listed[i]);
    if (stable || attempt >= 20) return { ...sum(records), unreadable };
    names = again; // a compaction ran meanwhile: read again
  }
}

/**
 * Fold every record into one summary (safe against concurrent writers, readers and compactors;
 * see the top of this file). Returns how many records were absorbed.
 */
export async function compactStats(cacheDir: string, now = Date.now()): Promise<{ absorbed: number }> {
  const dir = statsDir(cacheDir);
  const id = token();
  const names = await listNames(dir);
  // Leftovers: temporaries of writers killed mid-write, and records a present summary holds already.
  for (const name of names) {
    if (!name.startsWith('.tmp-')) continue;
    const st = await stat(path.join(dir, name)).catch(() => undefined);
    if (st && now - st.mtimeMs > STALE_CLAIM_MS) await unlink(path.join(dir, name)).catch(() => undefined);
  }
  const before = await readRecords(dir, names);
  const held = new Set<string>();
  for (const r of before.records.values()) for (const a of r.absorbed ?? []) held.add(a);
  for (const name of before.records.keys()) {
    if (held.has(baseName(name)!)) await unlink(path.join(dir, name)).catch(() => undefined);
  }
  // Claim: records nobody claimed, and claims left by compactors that died.
  const claimed: string[] = [];
  for (const name of await listNames(dir)) {
    const base = baseName(name);
    if (!base) continue;
    if (name.startsWith('c-')) {
      const st = await stat(path.join(dir, name)).catch(() => undefined);
      if (!st || now - st.ctimeMs < STALE_CLAIM_MS) continue;
    }
    const mine = `c-${id}-${base}`;
    try {
      await rename(path.join(dir, name), path.join(dir, mine));
      claimed.push(mine);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  if (claimed.length <= 1) {
    // Nothing to fold: give the record back its name.
    for (const n of claimed) await rename(path.join(dir, n), path.join(dir, baseName(n)!)).catch(() => undefined);
    return { absorbed: 0 };
  }
  const { records } = await readRecords(dir, claimed);
  const live = sum(records);
  const absorbed = new Set<string>();
  for (const [name, r] of records) {
    absorbed.add(baseName(name)!);
    for (const a of r.absorbed ?? []) absorbed.add(a);
  }
  await writeAtomically(dir, `s-${now}-${id}.json`, { v: 1, at: now, pid: process.pid, counters: live.counters, absorbed: [...absorbed] });
  for (const name of claimed) await unlink(path.join(dir, name)).catch(() => undefined);
  return { absorbed: claimed.length };
}
