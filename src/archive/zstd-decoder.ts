import { Decompress } from 'fzstd';
import { ClipError } from '../util/errors.js';
import { ZstdFrameWalker } from './zstd-frames.js';

/**
 * Streaming zstd decoding with fzstd, one decoder per frame, so that each frame start is known
 * both in the compressed and the uncompressed stream.
 *
 * Random access in zstd: a frame is the only point where decoding can start without everything
 * before it, so a layer's checkpoints are its frame starts. A layer written as one frame (what
 * `zstd` and most image builders produce) can only be read from offset 0; a layer of many frames
 * (zstd:chunked, seekable zstd, `zstd` on concatenated parts) gets a checkpoint at every frame.
 */
export class ZstdDecoder {
  private readonly walker: ZstdFrameWalker;
  private decoder: Decompress | null = null;
  private out: number;
  private readonly name: string | undefined;
  private readonly onFrameStart: ((inOffset: number, outOffset: number) => void) | undefined;
  private sink: (out: Uint8Array) => void = () => {};

  constructor(opts: { name?: string; onFrameStart?: (inOffset: number, outOffset: number) => void; startOut?: number } = {}) {
    this.name = opts.name;
    this.walker = new ZstdFrameWalker(opts.name);
    this.onFrameStart = opts.onFrameStart;
    this.out = opts.startOut ?? 0;
  }

  get uncompressedOffset(): number {
    return this.out;
  }

  write(chunk: Uint8Array, onData: (out: Uint8Array) => void): void {
    this.sink = onData;
    for (const seg of this.walker.write(chunk)) {
      if (seg.skippable) continue;
      if (seg.frameStart) {
        this.onFrameStart?.(seg.at, this.out);
        this.decoder = new Decompress((data) => {
          if (data.length) {
            this.out += data.length;
            this.sink(data);
          }
        });
      }
      try {
        this.decoder!.push(seg.bytes, seg.frameEnd);
      } catch (err) {
        throw new ClipError('ECORRUPT', `invalid zstd data near byte ${seg.at}: ${(err as Error).message}`, { object: this.name, cause: err });
      }
      if (seg.frameEnd) this.decoder = null;
    }
  }

  finish(): void {
    this.walker.end();
  }
}
