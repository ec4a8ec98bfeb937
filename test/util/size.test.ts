import { describe, expect, it } from 'vitest';
import { formatSize, parseSize } from '../../src/util/size.js';

describe('parseSize', () => {
  it('reads plain numbers and binary and decimal units', () => {
    expect(parseSize('4096')).toBe(4096);
    expect(parseSize('2MiB')).toBe(2 * 1024 * 1024);
    expect(parseSize('2m')).toBe(2 * 1024 * 1024);
    expect(parseSize('1GB')).toBe(1e9);
    expect(parseSize('1.5 KiB')).toBe(1536);
  });
  it('rejects what is not a size, naming it', () => {
    expect(() => parseSize('lots')).toThrow(/not a size: "lots"/);
    expect(() => parseSize('5 parsecs')).toThrow(/5 parsecs/);
  });
});

describe('formatSize', () => {
  it('uses binary units', () => {
    expect(formatSize(512)).toBe('512 B');
    expect(formatSize(1536)).toBe('1.50 KiB');
    expect(formatSize(300 * 1024 * 1024)).toBe('300.0 MiB');
  });
});
