import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { pathBytes, shownBytes, shownPath } from '../../src/archive/tar-path.js';

describe('byte-string paths', () => {
  const samples = [
    Buffer.from('plain/ascii.txt'),
    Buffer.from('ünïcødé-名前/😀'),
    Buffer.from('caf\xe9.txt', 'latin1'),
    Buffer.from([0x61, 0xe2, 0x82, 0x2f, 0x62]), // a truncated 3-byte sequence before "/"
    Buffer.from([0xc0, 0xaf, 0xed, 0xa0, 0x80, 0xf5, 0x80, 0xff]), // overlong, surrogate, out of range
    Buffer.concat([Buffer.from('ok-'), Buffer.from('é'), Buffer.from([0xe9])]),
  ];

  it('keep every byte from tar header to index and back', () => {
    for (const b of samples) expect(pathBytes(b.toString('latin1')).equals(b)).toBe(true);
  });

  it('show names as Python backslashreplace does, so the two sides of a tree comparison agree', () => {
    const python = execFileSync('python3', ['-c', 'import sys, json; print(json.dumps([bytes.fromhex(h).decode("utf-8", "backslashreplace") for h in sys.argv[1:]]))', ...samples.map((b) => b.toString('hex'))]);
    expect(samples.map(shownBytes)).toEqual(JSON.parse(python.toString()));
    expect(shownPath(samples[2]!.toString('latin1'))).toBe('caf\\xe9.txt');
  });
});
