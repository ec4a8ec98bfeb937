/**
 * undici parses HTTP with llhttp, compiled to WebAssembly when its first connection opens. V8
 * compiles it twice: at once with its baseline compiler (Liftoff), then again with TurboFan on a
 * background thread, ~0.4 s of CPU per process (bench/index/RESULTS.md, session 13). That second
 * compile ran beside a cold start's first range reads on a 2-core node; the baseline code parses
 * the few dozen responses a mount reads as fast as they arrive. V8 offers no per-module switch:
 * the flag holds for the process, whose only WebAssembly is llhttp. Imported before undici (by
 * every module of ours that imports it); CLIP_WASM_TURBOFAN=1 keeps V8's default (comparisons).
 */
import { setFlagsFromString } from 'node:v8';

if (process.env.CLIP_WASM_TURBOFAN !== '1') setFlagsFromString('--liftoff-only');
