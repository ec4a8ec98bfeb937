/**
 * Layer compressors as streams: gzip through node's zlib, zstd through Debian's `zstd` program
 * (node 20 has no zstd), none as a pass-through.
 */
import { spawn } from 'node:child_process';
import { Duplex, PassThrough } from 'node:stream';
import { createGzip } from 'node:zlib';
import { ClipError } from '../../util/errors.js';
import type { Compression } from '../types.js';

export interface CompressOptions {
  /** gzip 1..9 (default 6), zstd 1..19 (default 3). */
  level?: number;
}

function zstdPipe(level: number): Duplex {
  const child = spawn('zstd', ['-q', '-c', `-${level}`, '-T1', '--no-progress'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const duplex = Duplex.from({ writable: child.stdin, readable: child.stdout });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  child.on('error', (err) => {
    duplex.destroy(new ClipError('EUNSUPPORTED', 'cannot run zstd (install the Debian package "zstd")', { object: 'zstd', cause: err }));
  });
  child.on('close', (code) => {
    if (code !== 0) duplex.destroy(new ClipError('ECORRUPT', `zstd exited with ${code}: ${stderr.trim()}`, { object: 'zstd' }));
  });
  // If the consumer fails, the child must not linger.
  duplex.on('close', () => { if (child.exitCode === null) child.kill(); });
  return duplex;
}

export function compressor(compression: Compression, opts: CompressOptions = {}): Duplex {
  switch (compression) {
    case 'gzip':
      return createGzip({ level: opts.level ?? 6 });
    case 'zstd':
      return zstdPipe(opts.level ?? 3);
    case 'none':
      return new PassThrough();
  }
}
