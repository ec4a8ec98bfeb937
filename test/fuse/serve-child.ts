/**
 * Mounts a tiny filesystem on argv[2] and serves it until killed: the tests kill it with SIGKILL to
 * leave a stale mount behind, as a crashed daemon would. Prints "ready" once the mount works.
 * With argv[3] = "try", only tries to mount and prints the error code (for the non-root check);
 * with "hang-statfs", its STATFS never answers (a stuck server); with "foreign", it mounts as
 * another filesystem would (fsname and type squashfuse). Otherwise it looks like a clip mount.
 */
import { mount } from '../../src/fuse/index.js';
import { MemFs } from './memfs.js';

const [, , mountpoint, mode] = process.argv;
const fs = new MemFs();
fs.file(1, 'hello', Buffer.from('hello from the child\n'));
if (mode === 'hang-statfs') fs.statfs = () => new Promise(() => {});
try {
  await mount(fs, mountpoint!, mode === 'foreign' ? { fsname: 'squashfuse' } : { fsname: 'clip', subtype: 'clip' });
  process.stdout.write('ready\n');
} catch (err) {
  process.stdout.write(`error ${(err as { code?: string }).code} ${(err as Error).message}\n`);
  if (mode !== 'try') process.exitCode = 1;
}
