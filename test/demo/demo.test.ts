/**
 * The demo image really runs: built from this machine's files into a fresh directory, unpacked by
 * umoci, and its python, shell and program executed under chroot. Also: reuse, repair, and
 * `clip demo`: what its run needed of each layer (the data layer: nothing), said in plain words, and
 * its "try it yourself" lines run as printed.
 */
import { chmod, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerDemo, type DemoMount, type DemoReport } from '../../src/cli/commands/demo.js';
import { tryItYourself } from '../../src/cli/actions/demo.js';
import { APP_CONFIG, buildDemoImage, DATA_FILE_BYTES, DATA_FILES, findPython, type DemoImage } from '../../src/demo/index.js';
import { mountsAt } from '../../src/fuse/mountinfo.js';
import { blobPath } from '../../src/oci/build/index.js';
import { skipUnlessRoot } from '../support/env.js';
import { run, skopeoInspect, umociUnpack } from '../support/tools.js';
import { MAIN } from '../cli/program.js';

let dir: string;
let image: DemoImage;
let python: Awaited<ReturnType<typeof findPython>>;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'clip-demo-test-'));
  python = await findPython();
  image = await buildDemoImage({ dir });
}, 300_000);
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('the demo image', () => {
  it('is a four-layer OCI image that skopeo reads: base, python and its standard library, a data set, the program', async () => {
    expect(image.reused).toBe(false);
    expect(image.ref).toBe(`oci:${join(dir, 'layout')}:demo`);
    const info = JSON.parse(await skopeoInspect(image.ref));
    expect(info.Digest).toBe(image.manifestDigest);
    expect(info.Layers).toEqual(image.layers.map((l) => l.digest));
    expect(image.summary.map((s) => s.name)).toEqual(['base', 'runtime', 'data', 'app']);
    expect(image.summary[1]!.hostFiles[0]).toBe(python.binary);
    expect(image.summary[1]!.hostFiles).toContain(python.stdlib);
    expect(image.layers[2]!.uncompressedSize).toBeGreaterThan(DATA_FILES * DATA_FILE_BYTES);
  });

  it('is reused while its inputs are unchanged, and rebuilt when a blob is missing', async () => {
    const again = await buildDemoImage({ dir });
    expect(again).toMatchObject({ reused: true, manifestDigest: image.manifestDigest });
    await unlink(blobPath(join(dir, 'layout'), image.layers[3]!.digest));
    const repaired = await buildDemoImage({ dir });
    expect(repaired.reused).toBe(false);
    expect(repaired.manifestDigest).toBe(image.manifestDigest); // same inputs, same bytes
  });

  it('`clip demo --json` reports the image and its layers as the oci module resolves them', async () => {
    const out = await demo('--dir', dir, '--json');
    const report = JSON.parse(out) as DemoReport;
    expect(report.image.reused).toBe(true);
    expect(report.inspect.manifestDigest).toBe(image.manifestDigest);
    expect(report.inspect.layers.map((l) => l.digest)).toEqual(image.layers.map((l) => l.digest));
    expect(report.inspect.layers.map((l) => l.diffId)).toEqual(image.layers.map((l) => l.diffId));
    expect(report.inspect.config.entrypoint).toEqual([python.binary, '-I']);
    // It indexes the image and reads /app/main.py lazily: first from the blobs, then from the disk cache.
    expect(report.index.entries).toBeGreaterThan(1000);
    expect(report.index.shareOfImage).toBeLessThan(0.05);
    expect(report.file.content).toContain('hello from the clip demo image');
    const [first, second] = report.file.reads;
    expect(first!.bytes).toBe(Buffer.byteLength(report.file.content));
    expect(first!.byTier.source).toBeGreaterThanOrEqual(first!.bytes);
    expect(first!.byTier.disk).toBe(0);
    expect(second!.byTier).toEqual({ disk: second!.bytes, remote: 0, source: 0 });
    // As root it mounts the image from an empty cache and runs the program from the mount, twice.
    if (process.getuid?.() === 0) {
      const m = report.mount as DemoMount;
      expect(m.command).toEqual([python.binary, '-I', '/app/main.py']);
      for (const run of [m.first, m.second]) {
        expect(run.output).toContain('hello from the clip demo image');
        expect(run.output).toContain(`python ${python.version} on linux/`);
        expect(run.output).toContain(`/data holds ${DATA_FILES} files, ${((DATA_FILES * DATA_FILE_BYTES) / 2 ** 20).toFixed(1)} MiB: listed, never read`);
        expect(run.output).toContain('config: read from /app/config.json by json.load');
      }
      expect(m.layers.map((l) => l.name)).toEqual(['base', 'runtime', 'data', 'app']);
      expect(m.layers.map((l) => l.uncompressedBytes)).toEqual(image.layers.map((l) => l.uncompressedSize));
      // Laziness, visible: the data layer is never fetched, and the run needs well under half the image.
      expect(m.layers[2]!.fetchedBytes).toBe(0);
      expect(m.first.byTier.source).toBeGreaterThan(0);
      expect(m.first.byTier.remote).toBe(0);
      expect(m.first.byTier.source).toBeLessThan(0.5 * m.imageUncompressedBytes);
      const fetched = m.layers.reduce((n, l) => n + l.fetchedBytes, 0);
      expect(fetched).toBeGreaterThanOrEqual(m.first.byTier.source!);
      // The second run, a new mount on the same cache, fetches nothing: it reads from the disk cache.
      expect(m.second.byTier.source).toBe(0);
      expect(m.second.byTier.disk).toBeGreaterThan(0);
    } else {
      expect(report.mount).toEqual({ skipped: 'mounting needs root' });
    }
  }, 300_000);

  it.skipIf(skipUnlessRoot())('`clip demo` says what each number means, and its "try it yourself" lines work as printed', async () => {
    const text = await demo('--dir', dir);
    // No "bytes from disk" after "from an empty cache": the first run's numbers are what was fetched.
    const firstRun = text.slice(text.indexOf('# a new, empty cache'), text.indexOf('# again: a new mount, the same cache'));
    expect(firstRun).toMatch(/To run, the program needed \S+ \S+ of it \(\d+\.\d %\), fetched on demand from the image's/);
    expect(firstRun).toMatch(/^ +data +48\.0 MiB +0 B +0\.0 %$/m);
    expect(firstRun).toContain('Not one byte of the data layer was fetched');
    expect(firstRun).not.toMatch(/disk cache/);
    expect(text).toMatch(/The same run fetched 0 B from the image's blobs: the \S+ \S+ it read came from\n {2}the disk cache the first run filled/);
    const lines = tryItYourself({ image: { ...image, reused: true }, inspect: { config: { entrypoint: [python.binary, '-I'], cmd: ['/app/main.py'] } } as never });
    expect(text).toContain(lines.join('\n'));

    // Run them as printed (clip on PATH, as `npm link` puts it), on a mountpoint of our own.
    const bin = await mkdtemp(join(tmpdir(), 'clip-demo-bin-'));
    const mnt = await mkdtemp(join(tmpdir(), 'clip-demo-mnt-'));
    await writeFile(join(bin, 'clip'), `#!/bin/sh\nexec ${process.execPath} --import tsx ${MAIN} "$@"\n`);
    await chmod(join(bin, 'clip'), 0o755);
    const sh = (line: string) => run('sh', ['-c', line.trim().replaceAll('/mnt/demo', mnt)], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
    const commands = lines.slice(1);
    try {
      expect(commands.map((l) => l.trim().split(' ')[0])).toEqual(['mkdir', 'clip', 'chroot', 'clip', 'clip', 'clip']);
      for (const line of commands.slice(0, 2)) await sh(line); // rejects on a non-zero exit
      const ran = await sh(commands[2]!);
      expect(ran.stdout).toContain('hello from the clip demo image');
      expect(ran.stdout).toContain(`/data holds ${DATA_FILES} files`);
      expect((await sh(commands[3]!)).stdout).toMatch(/CHUNKS PRESENT/);
      await sh(commands[4]!); // clip unmount /mnt/demo
      const contained = await sh(commands[5]!); // clip run
      expect(contained.stdout).toContain('hello from the clip demo image');
      expect(contained.stdout).toContain(`/data holds ${DATA_FILES} files`);
    } finally {
      if (mountsAt(mnt).length > 0) await sh(commands[4]!); // clip unmount /mnt/demo, as printed
      await rm(bin, { recursive: true, force: true });
      await rm(mnt, { recursive: true, force: true });
    }
  }, 300_000);
});

/** `clip demo ARGS` in this process (the demo mounts from its own process, as the CLI does); stdout. */
async function demo(...args: string[]): Promise<string> {
  const program = new Command('clip').exitOverride();
  registerDemo(program);
  const out: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => { out.push(String(chunk)); return true; });
  try {
    await program.parseAsync(['node', 'clip', 'demo', ...args]);
  } finally {
    spy.mockRestore();
  }
  return out.join('');
}

describe.skipIf(skipUnlessRoot())('the demo image under chroot', () => {
  let rootfs: string;
  beforeAll(async () => { rootfs = await umociUnpack(join(dir, 'layout'), 'demo', join(dir, 'bundle')); });

  // A clean environment: the host's variables (NODE_OPTIONS, extra CA files) must not leak in.
  const inImage = (...argv: string[]) => run('chroot', [rootfs, ...argv], { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } });

  it('runs python', async () => {
    expect((await inImage(python.binary, '-I', '-c', 'print(1+1)')).stdout).toBe('2\n');
  });

  it('runs the shell and coreutils', async () => {
    expect((await inImage('/bin/sh', '-c', 'echo ok; ls /app; cat /etc/clip-demo-release | wc -l')).stdout).toBe('ok\nREADME\nconfig.json\nmain.py\n1\n');
  });

  it('runs the app as its config says', async () => {
    const config = JSON.parse(await skopeoInspect(`${image.ref}`)) as { Env: string[] };
    expect(config.Env).toContain('LANG=C.UTF-8');
    const { stdout } = await inImage(python.binary, '-I', '/app/main.py');
    expect(stdout).toBe([
      'hello from the clip demo image',
      `python ${python.version} on linux/${(await run('uname', ['-m'])).stdout.trim()}`,
      `release: ${(await readFile(join(rootfs, 'etc/clip-demo-release'), 'utf8')).trim()}`,
      `config: ${(JSON.parse(APP_CONFIG) as { greeting: string }).greeting}`,
      '/app holds: README, config.json, main.py',
      `/data holds ${DATA_FILES} files, ${((DATA_FILES * DATA_FILE_BYTES) / 2 ** 20).toFixed(1)} MiB: listed, never read`,
      '',
    ].join('\n'));
  });
});
