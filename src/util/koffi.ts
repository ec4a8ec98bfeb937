/**
 * koffi's native binding, loaded without the package's entry point. `require('koffi')` runs the
 * package's install tooling first (its downloader: https, tls, http, zlib, crypto's streams), in
 * every isolate that loads it; the binding alone is what calls into libc need. Measured on Node
 * 20 (bench/server/RESULTS.md, session 10): 0.8 MB less RSS in a process, 0.9 MB less in each
 * worker thread (the FUSE reader threads load it too). The entry point's wrapper adds only
 * deprecated aliases. Falls back to the entry point where the prebuilt binary for this platform
 * is not at its usual place (musl, a bundled build): that one finds it wherever it is.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

let binding: unknown;

export function loadKoffi<T>(): T {
  if (binding === undefined) {
    try {
      binding = require(`koffi/build/koffi/${process.platform}_${process.arch}/koffi.node`);
    } catch {
      binding = require('koffi');
    }
  }
  return binding as T;
}
