/** `clip inspect` through commander, against the real registry and an OCI layout. */
import { Command } from 'commander';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { formatSummary } from '../../src/cli/actions/inspect.js';
import { registerInspect, type InspectSummary } from '../../src/cli/commands/inspect.js';
import { pushLayout } from '../../src/oci/index.js';
import * as mt from '../../src/oci/media-types.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';
import { LayoutWriter, writeImage, writeIndex, type TestImage } from './images.js';

async function clip(...args: string[]): Promise<string> {
  const program = new Command('clip').exitOverride();
  registerInspect(program);
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += chunk.toString();
    return true;
  });
  try {
    await program.parseAsync(['node', 'clip', ...args]);
  } finally {
    spy.mockRestore();
  }
  return out;
}

let registry: TestRegistry;
let work: string;
let single: TestImage;
let amd: TestImage;
let arm: TestImage;

beforeAll(async () => {
  registry = await startRegistry();
  work = await mkdtemp(join(tmpdir(), 'clip-inspect-'));
  const w = new LayoutWriter(join(work, 'layout'));
  single = await writeImage(w, { flavour: 'docker', layers: [{ a: 'x' }, { b: 'y'.repeat(3000) }], env: ['A=1', 'B=2'], entrypoint: ['/entry'], cmd: ['--flag'] });
  w.tag(single.manifest, 'one');
  amd = await writeImage(w, { layers: [{ arch: 'amd64' }] });
  arm = await writeImage(w, { compression: 'zstd', layers: [{ arch: 'arm64' }], platform: { os: 'linux', architecture: 'arm64' } });
  w.tag(await writeIndex(w, [amd, arm]), 'multi');
  await w.save();
  await pushLayout(join(work, 'layout'), 'one', `${registry.host}/insp/one:v1`);
  await pushLayout(join(work, 'layout'), 'multi', `${registry.host}/insp/multi:v1`);
});
afterAll(async () => {
  await registry?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('clip inspect', () => {
  it('--json gives the manifest, platform, config summary and a layers array', async () => {
    const s = JSON.parse(await clip('inspect', `${registry.host}/insp/one:v1`, '--json')) as InspectSummary;
    expect(s.reference).toBe(`${registry.host}/insp/one:v1`);
    expect(s.manifestDigest).toBe(single.manifest.digest);
    expect(s.manifestMediaType).toBe(mt.DOCKER_MANIFEST);
    expect(s.platform).toBe('linux/amd64');
    expect(s.config).toMatchObject({ env: ['A=1', 'B=2'], entrypoint: ['/entry'], cmd: ['--flag'], workingDir: '/work', user: '1000:1000', mediaType: mt.DOCKER_CONFIG });
    expect(s.layers).toEqual(single.layers.map((l, i) => ({ index: i, digest: l.digest, mediaType: mt.DOCKER_LAYER_GZIP, size: l.size, diffId: single.diffIds[i], compression: 'gzip' })));
    expect(s.totalSize).toBe(single.layers[0]!.size + single.layers[1]!.size);
  });

  it('--platform chooses from a multi-platform index, on a registry and in a layout', async () => {
    const fromRegistry = JSON.parse(await clip('inspect', `${registry.host}/insp/multi:v1`, '--platform', 'linux/arm64', '--json')) as InspectSummary;
    expect(fromRegistry.manifestDigest).toBe(arm.manifest.digest);
    expect(fromRegistry.layers[0]).toMatchObject({ compression: 'zstd', mediaType: mt.OCI_LAYER_ZSTD });
    const fromLayout = JSON.parse(await clip('inspect', `oci:${join(work, 'layout')}:multi`, '--platform', 'linux/amd64', '--json')) as InspectSummary;
    expect(fromLayout.manifestDigest).toBe(amd.manifest.digest);
    expect(fromLayout.reference).toBe(`oci:${join(work, 'layout')}:multi`);
  });

  it('escapes control characters of the image config in the table (--json keeps JSON escapes)', async () => {
    const s = JSON.parse(await clip('inspect', `oci:${join(work, 'layout')}:one`, '--json')) as InspectSummary;
    const text = formatSummary({ ...s, config: { ...s.config, env: ['A=1', 'B=\x1b]0;pwned\x07', 'C=\nforged'], user: 'u\u009b2J', workingDir: '/w\x7f' } });
    expect(text).toContain('B=\\x1b]0;pwned\\x07\n');
    expect(text).toContain('C=\\x0aforged\n');
    expect(text).toContain('User:        u\\xc2\\x9b2J\n');
    expect(text).toContain('WorkingDir:  /w\\x7f\n');
    // eslint-disable-next-line no-control-regex
    expect(text).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
  });

  it('prints a tidy table for people', async () => {
    const text = await clip('inspect', '--insecure-registry', 'unused.example,other.example', `oci:${join(work, 'layout')}:one`);
    expect(text).toContain(`Digest:      ${single.manifest.digest}`);
    expect(text).toContain('Entrypoint:  ["/entry"]');
    expect(text).toMatch(/Env:\s+A=1\n\s+B=2/);
    const table = text.slice(text.indexOf('#  '));
    expect(table.split('\n')[0]).toMatch(/^#\s+DIGEST\s+SIZE\s+COMPRESSION\s+DIFF_ID\s+MEDIA TYPE$/);
    expect(table).toContain(single.layers[1]!.digest.slice(0, 19));
    expect(table.trim().split('\n')).toHaveLength(3);
  });

  it('refuses a bad platform naming it', async () => {
    await expect(clip('inspect', `${registry.host}/insp/one:v1`, '--platform', 'linux')).rejects.toMatchObject({ code: 'EINVAL', message: expect.stringContaining('linux') });
  });
});
