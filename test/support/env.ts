/** Facts about where the tests run. Root-only tests skip on a developer's laptop, never in CI. */
export const isRoot = process.getuid?.() === 0;
export const inCI = process.env.CI === 'true' || process.env.CI === '1';

/** For `describe.skipIf(skipUnlessRoot())`: skips without root, but fails loudly in CI. */
export function skipUnlessRoot(): boolean {
  if (isRoot) return false;
  if (inCI) throw new Error('CI must run as root: the FUSE and mount tests cannot be skipped there');
  return true;
}

/** Runs `fn` with the environment variable `name` set to `value`, then puts it back. */
export function withEnv<T>(name: string, value: string, fn: () => T): T {
  const saved = process.env[name];
  process.env[name] = value;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  }
}

/** What `fn` threw (undefined when it returned). */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
}
