/**
 * No user input produces a stack trace, a hang, or work before the mistake is found: the real entry
 * point (src/cli/main.ts) as a process, for a table of bad arguments, each answered by one clear
 * line and a non-zero exit within seconds, with nothing left behind.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixture } from '../support/fixtures/index.js';
import { clipProcess, MAIN } from './program.js';

const WITHIN_MS = 20_000; // generous: several processes start at once on a loaded machine

let tmp: string;
let ref: string;
let layoutDir: string;

beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'clip-badargs-'));
  const fx = await fixture('basic');
  ref = fx.ref;
  layoutDir = fx.layoutDir;
  await mkdir(join(tmp, 'mnt'));
  await writeFile(join(tmp, 'a-file'), 'x');
});
afterAll(() => rm(tmp, { recursive: true, force: true }));

/** [what, args, the line it must print]; `{tmp}` is the test's directory, `{ref}` and `{layout}` the basic fixture. */
const cases: [string, string[], RegExp][] = [
  ['an unknown log level', ['ls', '{ref}', '/', '--log-level', 'loud'], /^clip: loud: not a log level \(use trace, debug, info, warn, error, fatal, silent\)$/],
  ['an unknown log format', ['cat', '{ref}', '/etc/hostname', '--log-format', 'xml'], /^clip: xml: not a log format \(use auto, json, text\)$/],
  ['an unknown log level for a mount', ['mount', '{ref}', '{tmp}/mnt', '--log-level', 'loud'], /^clip: loud: not a log level/],
  ['a span of 0', ['index', '{ref}', '--span', '0'], /^clip: 0: --span must be between 64KiB and 1GiB$/],
  ['a chunk size of 3', ['index', '{ref}', '--chunk-size', '3'], /^clip: 3: --chunk-size must be a power of two between 4KiB and 64MiB$/],
  ['a chunk size of 0', ['index', '{ref}', '--chunk-size', '0'], /--chunk-size must be a power of two/],
  ['a chunk size that is not a power of two', ['index', '{ref}', '--chunk-size', '1000'], /--chunk-size must be a power of two/],
  ['a size that is not a size', ['index', '{ref}', '--span', 'lots'], /^clip: not a size: "lots"/],
  ['a mountpoint that does not exist', ['mount', '{ref}', '{tmp}/nowhere'], /^clip: .*\/nowhere: mountpoint does not exist$/],
  ['a mountpoint that is a file', ['mount', '{ref}', '{tmp}/a-file'], /^clip: .*\/a-file: mountpoint is not a directory$/],
  ['a cache dir under a regular file', ['ls', '{ref}', '/', '--cache-dir', '{tmp}/a-file/cache'], /^clip: .*a-file.*: /],
  ['a cache dir in /proc', ['cat', '{ref}', '/etc/hostname', '--cache-dir', '/proc/nope'], /^clip: \/proc\/nope: /],
  ['cache stats of a cache dir that does not exist', ['cache', 'stats', '--cache-dir', '{tmp}/no-cache'], /^clip: .*\/no-cache: no such cache directory$/],
  ['cache gc of a cache dir that does not exist', ['cache', 'gc', '--all', '--cache-dir', '{tmp}/no-cache'], /^clip: .*\/no-cache: no such cache directory$/],
  ['a platform the image is not for', ['ls', '{ref}', '/', '--platform', 'windows/arm64'], /is for linux\/amd64 only, not windows\/arm64$/],
  ['a platform that is not one', ['ls', '{ref}', '/', '--platform', 'nonsense'], /^clip: nonsense: /],
  ['a bare layout directory', ['ls', '{layout}', '/'], /did you mean oci:/],
  ['a layout that does not exist', ['ls', 'oci:{tmp}/no-layout', '/'], /no-layout: no such directory$/],
  ['a network clip run does not have', ['run', '{ref}', '--network', 'bridge'], /^clip: bridge: --network must be host or none \(clip has no bridge network\)$/],
  ['a volume that is not one', ['run', '{ref}', '--volume', 'data'], /^clip: data: not a volume: use HOST:CONTAINER or HOST:CONTAINER:ro$/],
  ['a linger that is not a duration', ['run', '{ref}', '--linger', 'soon'], /^clip: soon: not a duration \(use e\.g\. 500ms, 30s, 2m\)$/],
  ['a read timeout that is not a duration', ['cat', '{ref}', '/etc/hostname', '--read-timeout', 'soon'], /^clip: soon: not a duration/],
];

describe('bad arguments', () => {
  it.each(cases)('%s: one clear line, a non-zero exit, in seconds, no work done', async (_what, args, line) => {
    const cacheDir = join(tmp, `cache-${Math.random().toString(36).slice(2)}`);
    const argv = args.map((a) => a.replace('{tmp}', tmp).replace('{ref}', ref).replace('{layout}', layoutDir));
    if (!argv.includes('--cache-dir')) argv.push('--cache-dir', cacheDir);
    const r = await clipProcess(argv, {}, { entry: MAIN, timeoutMs: WITHIN_MS + 5000 });
    const lines = r.stderr.trimEnd().split('\n');
    expect(r.code, r.stderr).toBe(1);
    expect(r.ms).toBeLessThan(WITHIN_MS);
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(line);
    expect(r.stdout.length).toBe(0);
    // Nothing was indexed or cached before the mistake was found.
    expect(await readdir(join(cacheDir, 'indexes')).catch(() => [])).toEqual([]);
    expect(await readdir(join(tmp, 'mnt'))).toEqual([]);
  });
});
