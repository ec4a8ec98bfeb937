/** Facts about where the tests run. Root-only tests skip on a developer's laptop, never in CI. */
export const isRoot = process.getuid?.() === 0;
export const inCI = process.env.CI === 'true' || process.env.CI === '1';

/** For `describe.skipIf(skipUnlessRoot())`: skips without root, but fails loudly in CI. */
export function skipUnlessRoot(): boolean {
  if (isRoot) return false;
  if (inCI) throw new Error('CI must run as root: the FUSE and mount tests cannot be skipped there');
  return true;
}
