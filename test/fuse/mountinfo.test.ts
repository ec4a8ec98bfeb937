import { describe, expect, it } from 'vitest';
import { isFuse, parseMountInfo } from '../../src/fuse/mountinfo.js';

describe('mountinfo', () => {
  it('parses a line with optional fields and escaped names', () => {
    const text = [
      '36 35 98:0 /mnt1 /mnt\\040with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue',
      '512 29 0:56 / /tmp/m ro,relatime shared:300 - fuse.clip clip ro,user_id=0,group_id=0',
      '',
    ].join('\n');
    expect(parseMountInfo(text)).toEqual([
      { mountId: 36, major: 98, minor: 0, mountPoint: '/mnt with space', fsType: 'ext3', source: '/dev/root',
        mountOptions: ['rw', 'noatime'], superOptions: ['rw', 'errors=continue'] },
      { mountId: 512, major: 0, minor: 56, mountPoint: '/tmp/m', fsType: 'fuse.clip', source: 'clip',
        mountOptions: ['ro', 'relatime'], superOptions: ['ro', 'user_id=0', 'group_id=0'] },
    ]);
  });

  it('tells FUSE filesystems from fusectl, which only shares the prefix', () => {
    for (const fsType of ['fuse', 'fuseblk', 'fuse.clip', 'fuse.sshfs', 'fuseblk.ntfs']) expect(isFuse({ fsType }), fsType).toBe(true);
    for (const fsType of ['fusectl', 'ext4', 'fusefoo', 'tmpfs']) expect(isFuse({ fsType }), fsType).toBe(false);
  });
});
