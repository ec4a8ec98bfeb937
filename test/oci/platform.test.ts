import { describe, expect, it } from 'vitest';
import { formatPlatform, hostPlatform, parsePlatform, platformMatches, selectPlatform } from '../../src/oci/platform.js';

describe('platforms', () => {
  it('parses os/arch[/variant] and normalises synonyms', () => {
    expect(parsePlatform('linux/amd64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(parsePlatform('linux/arm/v7')).toEqual({ os: 'linux', architecture: 'arm', variant: 'v7' });
    expect(parsePlatform('linux/arm64/v8')).toEqual({ os: 'linux', architecture: 'arm64' });
    expect(parsePlatform('linux/x86_64')).toEqual({ os: 'linux', architecture: 'amd64' });
    expect(() => parsePlatform('linux')).toThrow(/os\/arch/);
    expect(() => parsePlatform('linux/amd64/v1/x')).toThrow(/linux\/amd64\/v1\/x/);
  });

  it('names this machine in OCI terms', () => {
    const p = hostPlatform();
    const expected: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386' };
    expect(p.os).toBe('linux');
    if (expected[process.arch]) expect(p.architecture).toBe(expected[process.arch]);
    expect(formatPlatform(p)).toMatch(/^linux\/\w+/);
  });

  it('selects the exact variant first, any variant when none is asked', () => {
    const entries = [
      { name: 'amd64', platform: { os: 'linux', architecture: 'amd64' } },
      { name: 'v6', platform: { os: 'linux', architecture: 'arm', variant: 'v6' } },
      { name: 'v7', platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
      { name: 'arm64', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { name: 'att', platform: { os: 'unknown', architecture: 'unknown' } },
    ];
    expect(selectPlatform(entries, parsePlatform('linux/arm/v7'))?.name).toBe('v7');
    expect(selectPlatform(entries, parsePlatform('linux/arm'))?.name).toBe('v6');
    expect(selectPlatform(entries, parsePlatform('linux/arm64'))?.name).toBe('arm64');
    expect(selectPlatform(entries, parsePlatform('linux/s390x'))).toBeUndefined();
    expect(platformMatches({ os: 'linux', architecture: 'arm64' }, parsePlatform('linux/arm64/v8'))).toBe(true);
  });
});
