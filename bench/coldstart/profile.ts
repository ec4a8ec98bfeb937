/** Summaries of what a trial asked the registry for: bytes, requests, overlap, and a per-request table. */
import type { ServedRequest } from './throttle-proxy.js';

export interface RequestProfile {
  requests: number;
  blobGets: number;
  rangeGets: number;
  /** Body bytes of blob GETs (compressed layer bytes). */
  blobBytes: number;
  /** Blob bytes counting each (blob, offset) once: what was served more than once is blobBytes - this. */
  distinctBlobBytes: number;
  /** Body bytes of every response (manifests, tokens, errors too). */
  allBytes: number;
  /** Most requests open at one instant. */
  maxInFlight: number;
  /** Milliseconds with at least one request open. */
  busyMs: number;
  /** First request's start and last one's end, ms since the trial began. */
  firstMs: number;
  lastMs: number;
}

const isBlobGet = (r: ServedRequest): boolean => r.method === 'GET' && r.path.includes('/blobs/');

export function profileOf(served: readonly ServedRequest[]): RequestProfile {
  const spans = served.map((r) => [r.startMs, r.endMs ?? r.startMs] as const);
  const events = spans.flatMap(([s, e]) => [[s, 1] as const, [e, -1] as const]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let maxInFlight = 0;
  let busyMs = 0;
  let since = 0;
  for (const [t, d] of events) {
    if (open === 0 && d > 0) since = t;
    open += d;
    if (open === 0) busyMs += t - since;
    maxInFlight = Math.max(maxInFlight, open);
  }
  const blobs = served.filter(isBlobGet);
  return {
    requests: served.length,
    blobGets: blobs.length,
    rangeGets: blobs.filter((r) => r.range !== undefined).length,
    blobBytes: blobs.reduce((n, r) => n + r.bytes, 0),
    distinctBlobBytes: distinctBytes(blobs),
    allBytes: served.reduce((n, r) => n + r.bytes, 0),
    maxInFlight,
    busyMs,
    firstMs: spans.length ? Math.min(...spans.map(([s]) => s)) : 0,
    lastMs: spans.length ? Math.max(...spans.map(([, e]) => e)) : 0,
  };
}

/** The size of the union of the byte ranges served, per blob (a GET without Range counts from 0). */
function distinctBytes(blobs: readonly ServedRequest[]): number {
  const byBlob = new Map<string, Array<[number, number]>>();
  for (const r of blobs) {
    const m = /^bytes=(\d+)-/.exec(r.range ?? '');
    const start = m ? Number(m[1]) : 0;
    byBlob.set(r.path, [...(byBlob.get(r.path) ?? []), [start, start + r.bytes]]);
  }
  let total = 0;
  for (const ranges of byBlob.values()) {
    ranges.sort((a, b) => a[0] - b[0]);
    let [s, e] = ranges[0]!;
    for (const [rs, re] of ranges.slice(1)) {
      if (rs > e) {
        total += e - s;
        [s, e] = [rs, re];
      } else e = Math.max(e, re);
    }
    total += e - s;
  }
  return total;
}

/** A markdown table of every request, naming blobs by `names` (digest -> short name). */
export function requestTable(served: readonly ServedRequest[], names: ReadonlyMap<string, string>): string {
  const rows = served.map((r) => {
    const digest = /\/blobs\/(sha256:[0-9a-f]+)/.exec(r.path)?.[1];
    const what = digest ? `blob ${names.get(digest) ?? digest.slice(7, 19)}` : r.path.replace(/^\/v2\//, '') || '/v2/';
    const ms = (x: number | undefined): string => (x === undefined ? '-' : x.toFixed(0));
    return `| ${r.method} ${what} | ${r.range ?? ''} | ${r.status} | ${r.bytes} | ${ms(r.startMs)} | ${ms(r.firstByteMs)} | ${ms(r.endMs)} | ${r.connection} |`;
  });
  return ['| request | range | status | body bytes | start ms | first byte ms | end ms | conn |', '|---|---|---|---|---|---|---|---|', ...rows].join('\n');
}
