/**
 * The largest READ the kernel is asked for (MAX_PAGES, and max_read at mount): 1 MiB, unless the
 * reply could then not be spliced. A reader thread splices a big READ's reply through a pipe of
 * its own (splice.ts), and a reply goes in one splice, so it must fit the pipe with a page for the
 * header and one more for a range that does not start on a page. The pipe holds 2 MiB only with
 * CAP_SYS_RESOURCE; without it (a container may drop it even for root) the most is
 * /proc/sys/fs/pipe-max-size, 1 MiB by default, and a 1 MiB READ was read and written (two
 * copies) instead of spliced (one): READs of 254 pages then. CLIP_FUSE_MAX_PAGES (1 to 256) asks
 * for smaller READs (benchmarks). No koffi here: the holder imports this.
 */
import { readFileSync } from 'node:fs';
import { wholeNumberSetting } from '../util/setting.js';

const PAGE = 4096;
const MAX_PAGES = 256;
const CAP_SYS_RESOURCE = 24n;
let pages: number | undefined;

export function defaultMaxPages(): number {
  pages ??= Math.min(compute(), envPages() ?? MAX_PAGES);
  return pages;
}

function envPages(): number | undefined {
  return wholeNumberSetting({ env: 'CLIP_FUSE_MAX_PAGES' }, 1, MAX_PAGES, 'pages');
}

function compute(): number {
  try {
    const eff = /^CapEff:\s*([0-9a-f]+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    if (eff && (BigInt(`0x${eff}`) >> CAP_SYS_RESOURCE) & 1n) return MAX_PAGES;
    const pipeMax = Number(readFileSync('/proc/sys/fs/pipe-max-size', 'utf8').trim());
    if (!(pipeMax >= 64 * 1024)) return MAX_PAGES;
    return Math.max(1, Math.min(MAX_PAGES, Math.floor(pipeMax / PAGE) - 2));
  } catch {
    return MAX_PAGES; // no /proc: the READs keep their size; big ones are read and written
  }
}
