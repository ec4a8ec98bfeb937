import { describe, expect, it } from 'vitest';
import * as tarStream from 'tar-stream';
import { TarWalker } from '../../src/archive/tar-walker.js';
import { asBytePath } from './tar-builder.js';

/** tar-stream (what many Node image tools use) as a second writer, and its extractor as an oracle. */
async function pack(entries: { header: Partial<tarStream.Header> & { name: string }; body?: string }[]): Promise<Buffer> {
  const p = tarStream.pack();
  for (const e of entries) {
    if (e.body === undefined) p.entry(e.header);
    else p.entry(e.header, e.body);
  }
  p.finalize();
  const parts: Buffer[] = [];
  for await (const c of p as AsyncIterable<Buffer>) parts.push(c);
  return Buffer.concat(parts);
}

async function extractNames(raw: Buffer): Promise<string[]> {
  const x = tarStream.extract();
  const names: string[] = [];
  x.end(raw);
  for await (const entry of x) {
    names.push(entry.header.name);
    entry.resume();
  }
  return names;
}

describe('tar-stream archives', () => {
  it('reads what tar-stream writes, with PAX long names and xattrs, at the right offsets', async () => {
    const long = `${'x'.repeat(120)}/file-ü.txt`;
    const raw = await pack([
      { header: { name: 'dir/', type: 'directory', mode: 0o755 } },
      { header: { name: 'dir/a.txt', mode: 0o600, uid: 1000, gid: 1000, mtime: new Date(1_600_000_000_000) }, body: 'aaa' },
      { header: { name: long, pax: { 'SCHILY.xattr.user.k': 'value' } }, body: 'long body' },
      { header: { name: 'dir/sym', type: 'symlink', linkname: '../dir/a.txt' } },
      { header: { name: 'dir/hard', type: 'link', linkname: 'dir/a.txt' } },
    ]);
    const w = new TarWalker();
    const entries = [...w.push(raw.subarray(0, 700)), ...w.push(raw.subarray(700))];
    w.end();
    expect(entries.map((e) => e.path)).toEqual((await extractNames(raw)).map((n) => asBytePath(n.replace(/\/$/, ''))));
    const [dir, a, l, sym, hard] = entries;
    expect(dir).toMatchObject({ type: 'dir', mode: 0o755 });
    expect(a).toMatchObject({ type: 'file', mode: 0o600, uid: 1000, gid: 1000, size: 3, mtimeSec: 1_600_000_000 });
    expect(l).toMatchObject({ path: asBytePath(long), size: 9 });
    expect(l!.xattrs.get('user.k')?.toString()).toBe('value');
    expect(raw.subarray(l!.dataOffset, l!.dataOffset + 9).toString()).toBe('long body');
    expect(l!.dataOffset - l!.headerOffset).toBeGreaterThan(512);
    expect(sym).toMatchObject({ type: 'symlink', linkTarget: '../dir/a.txt' });
    expect(hard).toMatchObject({ type: 'hardlink', linkTarget: 'dir/a.txt' });
  });
});
