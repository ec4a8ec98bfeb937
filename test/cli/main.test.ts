/**
 * The real entry point (src/cli/main.ts) as a process: every command is listed with its help
 * although no action module is loaded, and `clip demo`'s help names its default directory
 * whichever way the help is asked for.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
const run = promisify(execFile);

async function clipMain(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', MAIN, ...args], { env: { ...process.env, CLIP_DEMO_DIR: '/tmp/clip-demo-help' } });
  return stdout;
}

describe('clip (src/cli/main.ts)', () => {
  it('lists every command in its help', async () => {
    const help = await clipMain('--help');
    for (const cmd of ['inspect', 'index', 'ls', 'stat', 'cat', 'extract', 'mount', 'mounts', 'unmount|umount', 'cache', 'demo']) {
      expect(help).toMatch(new RegExp(`^  ${cmd.replace('|', '\\|')} `, 'm'));
    }
  });

  it("shows a command's options and defaults in `CMD --help` and `help CMD` alike", async () => {
    const [demo, helpDemo, mount] = await Promise.all([clipMain('demo', '--help'), clipMain('help', 'demo'), clipMain('mount', '--help')]);
    // The demo builder's default, computed in the child (whose CLIP_DEMO_DIR is set).
    expect(demo.replace(/\s+/g, ' ')).toContain('$CLIP_DEMO_DIR or /tmp/clip-demo-help)');
    expect(helpDemo).toBe(demo);
    expect(mount.replace(/\s+/g, ' ')).toContain('(default 16.0 MiB/s)');
    expect(mount).toContain('--read-timeout <duration>');
  });

  it('gives the same flags the same meaning everywhere, and examples on every command', async () => {
    const registry = ['inspect', 'index', 'ls', 'stat', 'cat', 'extract', 'mount'];
    const helps = await Promise.all([...registry, 'mounts', 'unmount', 'cache'].map((c) => clipMain(c, '--help')));
    helps.forEach((help, i) => {
      const name = [...registry, 'mounts', 'unmount', 'cache'][i];
      expect(help, name).toMatch(/\nExamples:\n {2}\$ /);
      expect(help.slice(help.indexOf('Examples:')), name).toMatch(/\$ .*clip /);
      if (i >= registry.length) return;
      expect(help, name).toContain('--insecure-registry <host>');
      expect(help.replace(/\s+/g, ' '), name).toContain('repeatable or comma separated');
      expect(help, name).toContain('--log-level <level>');
      expect(help, name).toContain('--log-format <format>');
    });
  });
});
