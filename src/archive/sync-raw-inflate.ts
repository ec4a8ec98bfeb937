/**
 * A raw inflate driven through node's zlib handle's synchronous write (what zlib.inflateRawSync
 * uses), so that a caller can stop it after exactly as much output as it wants.
 */
import zlib from 'node:zlib';

interface ZlibHandle {
  writeSync(flush: number, input: Uint8Array, inOff: number, inLen: number, out: Uint8Array, outOff: number, outLen: number): void;
}

/** A raw inflate driven through the zlib handle's synchronous write (what zlib.inflateRawSync uses). */
export class SyncRawInflate {
  private readonly z: zlib.InflateRaw;
  private readonly handle: ZlibHandle;
  private readonly state: Uint32Array;
  private error: Error | undefined;

  constructor(window: Buffer) {
    this.z = zlib.createInflateRaw(window.length ? { dictionary: window } : {});
    const internals = this.z as unknown as { _handle?: ZlibHandle; _writeState?: Uint32Array };
    if (!internals._handle || !internals._writeState) throw new Error('internal: this node has no synchronous zlib handle');
    this.handle = internals._handle;
    this.state = internals._writeState;
    this.z.on('error', (err: Error) => (this.error = err));
  }

  step(flush: number, input: Uint8Array, inOff: number, out: Uint8Array, outOff: number): { consumed: number; produced: number } {
    const inLen = input.length - inOff;
    const outLen = out.length - outOff;
    this.handle.writeSync(flush, input, inOff, inLen, out, outOff, outLen);
    // zlib's error reaches the 'error' listener only on the next tick, but the stream is destroyed
    // at once (and the state words are then meaningless).
    if (this.error || this.z.destroyed) throw this.error ?? new Error('raw inflate: invalid deflate data');
    return { consumed: inLen - this.state[1]!, produced: outLen - this.state[0]! };
  }

  close(): void {
    this.z.close();
  }
}
