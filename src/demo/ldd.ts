/** The shared libraries a dynamically linked program needs, as `ldd` reports them (dynamic loader included). */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ClipError } from '../util/errors.js';

const execFileP = promisify(execFile);

/**
 * Paths from `ldd` output: "libc.so.6 => /lib/.../libc.so.6 (0x...)" and the loader's bare
 * "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file and is skipped.
 */
export function parseLdd(output: string, program: string): string[] {
  const paths: string[] = [];
  for (const raw of output.split('\n')) {
    const line = raw.trim();
    if (!line || /statically linked|not a dynamic executable/.test(line)) continue;
    const arrow = /^(\S+)\s+=>\s+(.*)$/.exec(line);
    if (arrow) {
      if (arrow[2]!.startsWith('not found')) throw new ClipError('ENOTFOUND', `shared library ${arrow[1]} not found`, { object: program });
      const path = /^(\/\S+)/.exec(arrow[2]!)?.[1];
      if (path) paths.push(path);
      continue;
    }
    const bare = /^(\/\S+)\s+\(0x[0-9a-f]+\)$/.exec(line);
    if (bare) paths.push(bare[1]!);
  }
  return paths;
}

export async function sharedLibraries(program: string): Promise<string[]> {
  try {
    const { stdout } = await execFileP('ldd', [program]);
    return parseLdd(stdout, program);
  } catch (err) {
    const e = err as { stdout?: string; code?: unknown };
    // ldd exits 1 for a static binary, with that said on its output.
    if (e.stdout && /not a dynamic executable|statically linked/.test(e.stdout)) return [];
    throw new ClipError('ENOTFOUND', 'cannot list its shared libraries with ldd', { object: program, cause: err });
  }
}
