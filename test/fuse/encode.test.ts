/**
 * The reply encoders write 64-bit fields as two 32-bit halves (no BigInt): the bytes must be what
 * the BigInt writes gave, for large sizes and inode numbers and for times before 1970.
 */
import { describe, expect, it } from 'vitest';
import { attrOut, entryOut, packDirents, packDirentsPlus, statfsOut } from '../../src/fuse/encode.js';
import { ATTR_OUT_SIZE, ENTRY_OUT_SIZE } from '../../src/fuse/protocol.js';
import type { FuseAttr } from '../../src/fuse/types.js';

function attr(over: Partial<FuseAttr>): FuseAttr {
  const t = { sec: 1_700_000_000, nsec: 123_456_789 };
  return { ino: 2, size: 0, blocks: 0, atime: t, mtime: t, ctime: t, mode: 0o100644, nlink: 1, uid: 0, gid: 0, rdev: 0, blksize: 4096, ...over };
}

describe('reply encoding of 64-bit fields', () => {
  it('writes sizes, inodes and blocks past 2^32 exactly', () => {
    const a = attr({ ino: 2 ** 40 + 7, size: 2 ** 52 + 3, blocks: 2 ** 33 + 1 });
    const out = attrOut(a, 86_400.5);
    expect(out.length).toBe(ATTR_OUT_SIZE);
    expect(out.readBigUInt64LE(0)).toBe(86_400n); // attr_valid
    expect(out.readUInt32LE(8)).toBe(500_000_000); // attr_valid_nsec
    expect(out.readBigUInt64LE(16)).toBe(BigInt(2 ** 40 + 7));
    expect(out.readBigUInt64LE(24)).toBe(BigInt(2 ** 52 + 3));
    expect(out.readBigUInt64LE(32)).toBe(BigInt(2 ** 33 + 1));
    expect(out.readBigInt64LE(40)).toBe(1_700_000_000n);
  });

  it('writes times before 1970 in two\'s complement, as the kernel reads its signed seconds', () => {
    for (const sec of [-1, -86_400, -(2 ** 32), -(2 ** 40) - 5, 2 ** 32 - 1, 2 ** 33]) {
      const out = attrOut(attr({ atime: { sec, nsec: 0 }, mtime: { sec, nsec: 1 }, ctime: { sec, nsec: 2 } }), 1);
      expect([out.readBigInt64LE(40), out.readBigInt64LE(48), out.readBigInt64LE(56)]).toEqual([BigInt(sec), BigInt(sec), BigInt(sec)]);
    }
  });

  it('clamps a negative unsigned field to 0 and writes entries and statfs the same way', () => {
    const e = entryOut({ ino: 2 ** 36, attr: attr({ size: -5 }), entryTimeout: 2 ** 34, attrTimeout: 1 }, { entry: 1, attr: 1 });
    expect(e.length).toBe(ENTRY_OUT_SIZE);
    expect(e.readBigUInt64LE(0)).toBe(BigInt(2 ** 36)); // nodeid
    expect(e.readBigUInt64LE(16)).toBe(BigInt(2 ** 34)); // entry_valid
    expect(e.readBigUInt64LE(40 + 8)).toBe(0n); // attr.size
    const s = statfsOut({ blocks: 2 ** 45, bfree: 0, bavail: 0, files: 2 ** 32, ffree: 1, bsize: 4096, namelen: 255, frsize: 4096 });
    expect([s.readBigUInt64LE(0), s.readBigUInt64LE(24), s.readBigUInt64LE(32)]).toEqual([BigInt(2 ** 45), BigInt(2 ** 32), 1n]);
  });
});

describe('directory records', () => {
  it('writes each fuse_direntplus as entry_out then dirent: inode, cookie, name length, type, name, 8-byte padding', () => {
    const names = ['a', 'python3.11', 'x'.repeat(255)];
    const entries = names.map((name, i) => ({ name, ino: 2 ** 35 + i, mode: i === 1 ? 0o120777 : 0o40755, next: 3 + i, entry: { ino: 2 ** 35 + i, attr: attr({ ino: 2 ** 35 + i, size: 2 ** 33 + i }) } }));
    const out = packDirentsPlus(entries, 4096, { entry: 7, attr: 9 });
    let at = 0;
    for (const [i, name] of names.entries()) {
      expect(out.readBigUInt64LE(at)).toBe(BigInt(2 ** 35 + i)); // entry_out.nodeid
      expect(out.readBigUInt64LE(at + 16)).toBe(7n); // entry_valid
      expect(out.readBigUInt64LE(at + 40 + 8)).toBe(BigInt(2 ** 33 + i)); // attr.size
      const d = at + ENTRY_OUT_SIZE;
      expect(out.readBigUInt64LE(d)).toBe(BigInt(2 ** 35 + i)); // dirent.ino
      expect(out.readBigUInt64LE(d + 8)).toBe(BigInt(3 + i)); // off: the next entry's cookie
      expect(out.readUInt32LE(d + 16)).toBe(name.length);
      expect(out.readUInt32LE(d + 20)).toBe(i === 1 ? 10 : 4); // DT_LNK, DT_DIR
      expect(out.toString('utf8', d + 24, d + 24 + name.length)).toBe(name);
      at = d + ((24 + name.length + 7) & ~7);
    }
    expect(out.length).toBe(at);
    const plain = packDirents(entries, 4096);
    expect(plain.readUInt32LE(16)).toBe(1);
    expect(plain.readBigUInt64LE(32 + 8)).toBe(4n); // the second record (after 24 + 1 bytes padded to 32): its cookie
  });
});
