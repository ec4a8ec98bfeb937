/**
 * The demo image really runs: built from this machine's files into a fresh directory, unpacked by
 * umoci, and its node, shell and app executed under chroot. Also: reuse, repair, and `clip demo`.
 */
import { mkdtemp, readFile, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerDemo, type DemoMount, type DemoReport } from '../../src/cli/commands/demo.js';
import { buildDemoImage, type DemoImage } from '../../src/demo/index.js';
import { blobPath } from '../../src/oci/build/index.js';
import { skipUnlessRoot } from '../support/env.js';
import { run, skopeoInspect, umociUnpack } from '../support/tools.js';

let dir: string;
let image: DemoImage;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clip-demo-test-'));
  image = await buildDemoImage({ dir });
}, 300_000);
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('the demo image', () => {
  it('is a three-layer OCI image that skopeo reads', async () => {
    expect(image.reused).toBe(false);
    expect(image.ref).toBe(`oci:${join(dir, 'layout')}:demo`);
    const info = JSON.parse(await skopeoInspect(image.ref));
    expect(info.Digest).toBe(image.manifestDigest);
    expect(info.Layers).toEqual(image.layers.map((l) => l.digest));
    expect(image.summary.map((s) => s.name)).toEqual(['base', 'runtime', 'app']);
    expect(image.summary[1]!.hostFiles[0]).toBe(process.execPath);
  });

  it('is reused while its inputs are unchanged, and rebuilt when a blob is missing', async () => {
    const again = await buildDemoImage({ dir });
    expect(again).toMatchObject({ reused: true, manifestDigest: image.manifestDigest });
    await unlink(blobPath(join(dir, 'layout'), image.layers[2]!.digest));
    const repaired = await buildDemoImage({ dir });
    expect(repaired.reused).toBe(false);
    expect(repaired.manifestDigest).toBe(image.manifestDigest); // same inputs, same bytes
  });

  it('`clip demo --json` reports the image and its layers as the oci module resolves them', async () => {
    const program = new Command('clip').exitOverride();
    registerDemo(program);
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => { out.push(String(chunk)); return true; });
    try {
      await program.parseAsync(['node', 'clip', 'demo', '--dir', dir, '--json']);
    } finally {
      spy.mockRestore();
    }
    const report = JSON.parse(out.join('')) as DemoReport;
    expect(report.image.reused).toBe(true);
    expect(report.inspect.manifestDigest).toBe(image.manifestDigest);
    expect(report.inspect.layers.map((l) => l.digest)).toEqual(image.layers.map((l) => l.digest));
    expect(report.inspect.layers.map((l) => l.diffId)).toEqual(image.layers.map((l) => l.diffId));
    expect(report.inspect.config.entrypoint).toEqual([process.execPath]);
    // It indexes the image and reads /app/main.js lazily: first from the blobs, then from the disk cache.
    expect(report.index.entries).toBeGreaterThan(20);
    expect(report.index.shareOfImage).toBeLessThan(0.01);
    expect(report.file.content).toContain('hello from the clip demo image');
    const [first, second] = report.file.reads;
    expect(first!.bytes).toBe(Buffer.byteLength(report.file.content));
    expect(first!.byTier.source).toBeGreaterThanOrEqual(first!.bytes);
    expect(first!.byTier.disk).toBe(0);
    expect(second!.byTier).toEqual({ disk: second!.bytes, remote: 0, source: 0 });
    // As root it mounts the image from an empty cache and runs the entrypoint from the mount.
    if (process.getuid?.() === 0) {
      const m = report.mount as DemoMount;
      expect(m.command).toEqual([process.execPath, '/app/main.js']);
      expect(m.output).toContain('hello from the clip demo image');
      expect(m.output).toContain(`node ${process.version}`);
      expect(m.byTier.source).toBeGreaterThan(0);
      expect(m.byTier.remote).toBe(0);
      expect(m.byTier.source).toBeLessThanOrEqual(m.imageUncompressedBytes);
    } else {
      expect(report.mount).toEqual({ skipped: 'mounting needs root' });
    }
  });
});

describe.skipIf(skipUnlessRoot())('the demo image under chroot', () => {
  let rootfs: string;
  beforeAll(async () => { rootfs = await umociUnpack(join(dir, 'layout'), 'demo', join(dir, 'bundle')); });

  // A clean environment: the host's variables (NODE_OPTIONS, extra CA files) must not leak in.
  const inImage = (...argv: string[]) => run('chroot', [rootfs, ...argv], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });

  it('runs node', async () => {
    expect((await inImage(process.execPath, '-e', 'console.log(1+1)')).stdout).toBe('2\n');
  });

  it('runs the shell and coreutils', async () => {
    expect((await inImage('/bin/sh', '-c', 'echo ok; ls /app; cat /etc/clip-demo-release | wc -l')).stdout).toBe('ok\nREADME\nmain.js\n1\n');
  });

  it('runs the app as its config says', async () => {
    const config = JSON.parse(await skopeoInspect(`${image.ref}`)) as { Env: string[] };
    expect(config.Env).toContain('NODE_ENV=production');
    const { stdout } = await inImage(process.execPath, '/app/main.js');
    expect(stdout).toBe([
      'hello from the clip demo image',
      `node ${process.version} on linux/${process.arch}`,
      `release: ${(await readFile(join(rootfs, 'etc/clip-demo-release'), 'utf8')).trim()}`,
      '/app holds: README, main.js',
      '',
    ].join('\n'));
  });
});
