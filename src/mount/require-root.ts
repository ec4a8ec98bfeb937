/** The mount's first check, before any work: light, so that a CLI parent can make it too. */
import { resolve } from 'node:path';
import { ClipError } from '../util/errors.js';

export function requireRoot(mountpoint: string): void {
  if (process.getuid?.() !== 0) {
    throw new ClipError('EPERM', 'mounting needs root (clip mounts through /dev/fuse with mount(8); fusermount3 is not supported yet)', {
      object: resolve(mountpoint),
    });
  }
}
