/** `clip stat IMAGE|INDEX PATH`: one entry's metadata, answered from the index alone. */
import type { ImageIndex } from '../../index/reader.js';
import { openForCommand } from '../image-arg.js';
import { type ReadCommandOptions } from '../read-options.js';
import { printable } from '../../util/printable.js';
import { printJson } from '../output.js';
import { describeEntry, isoTime, type ListedEntry } from './ls.js';

export interface StatReport extends ListedEntry {
  /** For regular files: the layer (its index and digest) and the offset of the content in its uncompressed tar. */
  layer?: number;
  layerDigest?: string;
  offset?: number;
  /** name -> value; printable values as text, others as "0x<hex>". */
  xattrs: Record<string, string>;
}

function xattrValue(v: Buffer): string {
  const text = v.toString('utf8');
  return /^[\x20-\x7e]*$/.test(text) && Buffer.from(text, 'utf8').equals(v) ? text : `0x${v.toString('hex')}`;
}

/** The entry at `path` (a symlink itself, not its target, as stat(1) without -L). */
export function statPath(index: ImageIndex, path: string): StatReport {
  const clean = `/${path.split('/').filter(Boolean).join('/')}`;
  const ino = index.resolvePathOrThrow(clean);
  const report: StatReport = { ...describeEntry(index, clean, ino), xattrs: {} };
  const loc = index.dataLocation(ino);
  if (loc && loc.layer < index.layers.length) {
    report.layer = loc.layer;
    report.layerDigest = index.layers[loc.layer]!.digest;
    report.offset = loc.offset;
  }
  for (const name of index.listxattr(ino)) report.xattrs[name] = xattrValue(index.getxattr(ino, name)!);
  return report;
}

export function formatStat(r: StatReport): string {
  const sec = Number(BigInt(r.mtimeNs) / 1_000_000_000n);
  const nsec = Number(BigInt(r.mtimeNs) % 1_000_000_000n);
  const lines = [
    `  File: ${printable(r.path)}${r.linkTarget !== undefined ? ` -> ${printable(r.linkTarget)}` : ''}`,
    `  Type: ${r.type}${r.rdev ? ` (device ${r.rdev})` : ''}`,
    `  Mode: (${r.perm.toString(8).padStart(4, '0')}/${r.mode})  Uid: ${r.uid}  Gid: ${r.gid}`,
    `  Size: ${r.size}  Inode: ${r.ino}  Links: ${r.nlink}`,
    `Modify: ${isoTime({ mtimeSec: sec, mtimeNsec: nsec })} (${r.mtimeNs} ns)`,
  ];
  if (r.layer !== undefined) lines.push(`  Data: layer ${r.layer} (${r.layerDigest}) at offset ${r.offset}`);
  for (const [k, v] of Object.entries(r.xattrs)) lines.push(` Xattr: ${printable(k)}=${v}`);
  return `${lines.join('\n')}\n`;
}

export async function statCommand(image: string, path: string, opts: ReadCommandOptions): Promise<void> {
  const { img } = await openForCommand(image, opts);
  try {
    const report = statPath(img.index, path);
    if (opts.json) printJson(report);
    else process.stdout.write(formatStat(report));
  } finally {
    await img.close();
  }
}
