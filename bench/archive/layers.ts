import { execSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** Realistic layers: this machine's /usr/share and parts of /usr/lib, tarred and gzipped once, cached. */
export const CACHE = path.resolve(import.meta.dirname, '../../.tmp/archive');

const SOURCES: [string, string][] = [
  ['layer1.tar.gz', 'usr/share'],
  ['layer2.tar.gz', 'usr/lib/llvm-14'],
  ['layer3.tar.gz', 'usr/lib/python3.11 usr/lib/gcc'],
];

export function benchLayers(): string[] {
  fs.mkdirSync(CACHE, { recursive: true });
  return SOURCES.map(([name, dirs]) => {
    const file = path.join(CACHE, name);
    if (!fs.existsSync(file)) {
      console.error(`making ${file} from /${dirs} ...`);
      execSync(`tar -C / -cf - ${dirs} 2>/dev/null | gzip -6 > ${file}.part && mv ${file}.part ${file}`, { shell: '/bin/bash' });
    }
    return file;
  });
}

export function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}
