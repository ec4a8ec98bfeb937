import { describe, expect, it } from 'vitest';
import { isClipError } from '../../src/util/errors.js';
import { formatReference, parseLocation, parseReference, referenceLocation } from '../../src/oci/reference.js';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseReference normalises as Docker does', () => {
  const table: [string, string][] = [
    ['ubuntu', 'docker.io/library/ubuntu:latest'],
    ['ubuntu:22.04', 'docker.io/library/ubuntu:22.04'],
    ['library/ubuntu', 'docker.io/library/ubuntu:latest'],
    ['team/app', 'docker.io/team/app:latest'],
    ['docker.io/ubuntu', 'docker.io/library/ubuntu:latest'],
    ['index.docker.io/library/ubuntu:1', 'docker.io/library/ubuntu:1'],
    ['ghcr.io/o/r:tag', 'ghcr.io/o/r:tag'],
    ['localhost/app', 'localhost/app:latest'],
    ['localhost:5000/app:v1', 'localhost:5000/app:v1'],
    ['127.0.0.1:5000/a/b/c', '127.0.0.1:5000/a/b/c:latest'],
    ['[::1]:5000/app', '[::1]:5000/app:latest'],
    ['Registry/app', 'Registry/app:latest'],
    [`host:5000/r@${D}`, `host:5000/r@${D}`],
    [`host:5000/r:tag@${D}`, `host:5000/r:tag@${D}`],
    [`ubuntu@${D}`, `docker.io/library/ubuntu@${D}`],
    ['a/b-c_d.e__f/g---h', 'docker.io/a/b-c_d.e__f/g---h:latest'],
  ];
  it.each(table)('%s -> %s', (input, canonical) => {
    expect(formatReference(parseReference(input))).toBe(canonical);
  });

  it('splits registry, repository, tag and digest', () => {
    expect(parseReference(`host:5000/team/app:v2@${D}`)).toEqual({ kind: 'registry', registry: 'host:5000', repository: 'team/app', tag: 'v2', digest: D });
    expect(referenceLocation(parseReference('ubuntu'))).toBe('docker.io/library/ubuntu');
  });

  const bad = ['', 'Ubuntu', 'host/UPPER', 'ubuntu:', 'a//b', 'ubuntu@sha256:short', '-leading', 'host:5000/', `r:${'t'.repeat(129)}`, 'a/B', 'ubuntu:bad tag', 'x@', 'oci:'];
  it.each(bad)('refuses %j with EINVAL naming it', (input) => {
    let caught: unknown;
    try {
      parseReference(input);
    } catch (err) {
      caught = err;
    }
    expect(isClipError(caught, 'EINVAL')).toBe(true);
    expect((caught as Error).message).toContain(input === '' ? 'empty' : input);
  });
});

describe('oci: layout references', () => {
  it('resolves the directory and takes a tag after the first colon', () => {
    expect(parseReference('oci:/tmp/img:v1')).toEqual({ kind: 'layout', dir: '/tmp/img', tag: 'v1' });
    expect(parseReference('oci:/tmp/img')).toEqual({ kind: 'layout', dir: '/tmp/img' });
    const rel = parseReference('oci:rel/dir:t');
    expect(rel.kind === 'layout' && rel.dir.startsWith('/') && rel.dir.endsWith('/rel/dir')).toBe(true);
    expect(formatReference(parseReference('oci:/x/y:tag'))).toBe('oci:/x/y:tag');
  });
});

describe('parseLocation', () => {
  it('reads back what referenceLocation writes', () => {
    expect(parseLocation('127.0.0.1:5000/team/app')).toEqual({ kind: 'registry', registry: '127.0.0.1:5000', repository: 'team/app' });
    expect(parseLocation('docker.io/library/ubuntu')).toEqual({ kind: 'registry', registry: 'docker.io', repository: 'library/ubuntu' });
    expect(parseLocation('oci:/abs/dir')).toEqual({ kind: 'layout', dir: '/abs/dir' });
  });
  it.each(['oci:relative', 'host:5000/app:tag', 'justname', 'ubuntu'])('refuses %s', (loc) => {
    expect(() => parseLocation(loc)).toThrow(/location/);
  });
});
