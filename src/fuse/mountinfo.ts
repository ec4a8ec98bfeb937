import { readFileSync } from 'node:fs';

export interface MountInfo {
  mountId: number;
  major: number;
  /** For FUSE mounts this is also the connection number under /sys/fs/fuse/connections. */
  minor: number;
  mountPoint: string;
  fsType: string;
  source: string;
  /** Per-mount flags ("ro", "nosuid", "nodev", ...). */
  mountOptions: string[];
  /** The filesystem's own options (for FUSE: "user_id=0", "allow_other", ...). */
  superOptions: string[];
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountInfo(text: string): MountInfo[] {
  const mounts: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const fields = line.split(' ');
    const sep = fields.indexOf('-');
    if (sep < 6 || fields.length < sep + 3) continue;
    const [major, minor] = (fields[2] ?? '').split(':').map(Number);
    mounts.push({
      mountId: Number(fields[0]),
      major: major ?? 0,
      minor: minor ?? 0,
      mountPoint: unescape(fields[4] ?? ''),
      fsType: fields[sep + 1] ?? '',
      source: unescape(fields[sep + 2] ?? ''),
      mountOptions: (fields[5] ?? '').split(','),
      superOptions: (fields[sep + 3] ?? '').split(','),
    });
  }
  return mounts;
}

/** A FUSE filesystem ("fuse", "fuseblk", "fuse.<subtype>"); not fusectl, which only shares the prefix. */
export function isFuse(m: Pick<MountInfo, 'fsType'>): boolean {
  return /^fuse(blk)?(\.|$)/.test(m.fsType);
}

/** The mounts on `mountPoint` (an absolute path), the topmost last. */
export function mountsAt(mountPoint: string, path = '/proc/self/mountinfo'): MountInfo[] {
  return parseMountInfo(readFileSync(path, 'utf8')).filter((m) => m.mountPoint === mountPoint);
}
