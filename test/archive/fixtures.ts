import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * A few MB of realistic tar: real Python sources from this machine, plus a big compressible file
 * and some incompressible bytes (stored deflate blocks) so both block kinds appear.
 */
export function makeTar(dir: string): Buffer {
  const root = path.join(dir, 'tree');
  fs.mkdirSync(root, { recursive: true });
  const words = 'lorem ipsum dolor sit amet layer checkpoint window inflate deflate block boundary '.split(' ');
  const lines: string[] = [];
  for (let i = 0; i < 60_000; i++) lines.push(`${i} ${words[i % 13]} ${words[(i * 7) % 13]} ${(i * 2654435761) % 1000}`);
  fs.writeFileSync(path.join(root, 'big.txt'), lines.join('\n'));
  fs.writeFileSync(path.join(root, 'random.bin'), randomBytes(300_000));
  const src = '/usr/lib/python3.11';
  const parts = ['json', 'email', 'asyncio'].filter((p) => fs.existsSync(path.join(src, p)));
  const a = execFileSync('tar', ['-C', src, '-cf', '-', ...parts], { maxBuffer: 1 << 28 });
  const b = execFileSync('tar', ['-C', root, '-cf', '-', '.'], { maxBuffer: 1 << 28 });
  // two archives back to back minus the first's end blocks: one tar
  return Buffer.concat([stripEnd(a), b]);
}

function stripEnd(tar: Buffer): Buffer {
  let end = tar.length;
  while (end >= 512 && tar.subarray(end - 512, end).every((x) => x === 0)) end -= 512;
  return tar.subarray(0, end);
}

export function tmpDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function run(cmd: string, args: string[], input: Buffer): Buffer {
  return execFileSync(cmd, args, { input, maxBuffer: 1 << 28 });
}

export async function* chunked(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}
