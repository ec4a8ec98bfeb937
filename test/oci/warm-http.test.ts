/** Warming undici's parser leaves nothing behind: no server or socket keeps the process up. */
import { describe, expect, it, vi } from 'vitest';
import { warmHttpParser } from '../../src/oci/warm-http.js';

const handles = (): string[] => process.getActiveResourcesInfo().filter((r) => r !== 'Timeout' && r !== 'Immediate').sort();

describe('warmHttpParser', () => {
  it('makes its loopback request and closes everything it opened', async () => {
    const before = handles();
    expect(await warmHttpParser()).toBe(true); // its request was answered
    expect(await warmHttpParser()).toBe(true); // twice: nothing is kept between calls either
    // Closed handles leave libuv's list a loop turn after their close callbacks.
    await vi.waitFor(() => expect(handles()).toEqual(before), { timeout: 5_000, interval: 10 });
  });
});
