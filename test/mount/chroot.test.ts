/**
 * Real programs run from a mounted image under chroot: the demo image (this machine's loader,
 * libc, /bin/sh, coreutils, python3 and its standard library) served lazily from its layout
 * through a cold cache.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { APP_SCRIPT, buildDemoImage, findPython } from '../../src/demo/index.js';
import { skipUnlessRoot } from '../support/env.js';
import { run } from '../fuse/tools.js';
import { indexImage, mountIndex, type MountedImage } from '../fs/helpers.js';

const DEMO_DIR = fileURLToPath(new URL('../../.tmp/demo-mount', import.meta.url));

describe.skipIf(skipUnlessRoot())('programs from a mounted image under chroot', () => {
  let mounted: MountedImage;
  beforeAll(async () => {
    const image = await buildDemoImage({ dir: DEMO_DIR });
    mounted = await mountIndex(await indexImage(image.ref));
  }, 300_000);
  afterAll(async () => {
    await mounted?.close();
  });

  // A clean environment: the host's variables (NODE_OPTIONS and the like) must not leak in.
  const inImage = (...argv: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      void run('env', ['-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'chroot', mounted.dir, ...argv]).then(resolve);
    });

  it('runs the shell and coreutils', async () => {
    const r = await inImage('/bin/sh', '-c', 'echo ok; ls /app; sha256sum /app/main.py');
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`ok\nREADME\nconfig.json\nmain.py\n${createHash('sha256').update(APP_SCRIPT).digest('hex')}  /app/main.py\n`);
  });

  it('runs python (an interpreter and its standard library, read lazily), including the app', async () => {
    const python = await findPython();
    const r = await inImage(python.binary, '-I', '-c', 'import json, sys; print(json.dumps({"sum": 1 + 1, "version": sys.version.split()[0]}))');
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ sum: 2, version: python.version });
    const app = await inImage(python.binary, '-I', '/app/main.py');
    expect(app.stdout.split('\n')[0]).toBe('hello from the clip demo image');
    expect(app.stdout).toContain('/app holds: README, config.json, main.py');
    // Every byte served came through the read path, verified.
    const snap = await mounted.storage.metrics.snapshot();
    expect(snap['bytes.source']).toBeGreaterThan(0);
    expect(Object.entries(snap).filter(([k, v]) => k.startsWith('verifyFailures') && v !== 0)).toEqual([]);
  });

  it('is not confused by a missing program', async () => {
    const r = await inImage('/usr/bin/node', '-e', '1');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/chroot: failed to run command '\/usr\/bin\/node': No such file or directory/);
  });
});

