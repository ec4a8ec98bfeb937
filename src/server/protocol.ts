/**
 * The messages of the node's server. Clients (`clip mount`, `clip unmount`, `clip mounts`) send one
 * JSON line on the control socket and read one back. The holder and the server talk over Node's
 * IPC channel between parent and child.
 */
import type { AttachOptions as FuseAttachOptions, InitInfo } from '../fuse/index.js';
import type { ResolvedHandoff } from '../mount/open-image.js';
import type { MountConfig } from '../mount/serve.js';
import type { ProcessMemory } from '../mount/process-metrics.js';
import type { MountStatus } from '../mount/status.js';

export type ClientRequest =
  | { op: 'mount'; config: MountConfig }
  | { op: 'unmount'; mountpoint: string; timeoutMs?: number }
  | { op: 'status' }
  /** Replace the server process with a new one (a new build) without unmounting anything. */
  | { op: 'restart' }
  /**
   * Keep the server running without mounts (`clip server start`: a node's service), or no longer
   * (`clip server stop`: it ends now if it has no mount, else once its last mount is unmounted).
   */
  | { op: 'stay'; stay: boolean };

export type ClientReply =
  | { ok: true; op: 'mount'; pid: number; line: string; log: string }
  | { ok: true; op: 'unmount'; pid: number; served: boolean }
  | { ok: true; op: 'restart'; pid: number }
  | { ok: true; op: 'stay'; pid: number; holderPid: number; stay: boolean; mounts: number }
  | { ok: true; op: 'status'; pid: number; holderPid: number; restarts: number; stay: boolean; rssBytes: number; memory: ProcessMemory; mounts: MountStatus[] }
  | { ok: false; code?: string; message: string };

/** InitInfo with its bigints as hex strings, for JSON. */
export interface SavedInit {
  major: number;
  minor: number;
  kernelMinor: number;
  offered: string;
  accepted: string;
  maxReadahead: number;
  maxWrite: number;
  maxPages: number;
}

export function saveInit(i: InitInfo): SavedInit {
  return { ...i, offered: i.offered.toString(16), accepted: i.accepted.toString(16) };
}

export function loadInit(s: SavedInit): InitInfo {
  return { ...s, offered: BigInt(`0x${s.offered}`), accepted: BigInt(`0x${s.accepted}`) };
}

/** A mount as the holder keeps it: its descriptor (the holder's number) and what a server needs to serve it again. */
export interface HeldMount {
  id: number;
  fd: number;
  mountpoint: string;
  connection: number;
  major: number;
  config: MountConfig;
  /** Set once a server answered INIT; a mount without it was never served and is dropped on restart. */
  init?: SavedInit;
}

/** The mount options that cross the IPC channel (a logger does not). */
export type AttachOptions = Omit<FuseAttachOptions, 'logger'>;

/** Server to holder. */
export type ToHolder =
  | { op: 'attach'; req: number; mountpoint: string; options: AttachOptions; config: MountConfig }
  | { op: 'served'; id: number; init: SavedInit; resolved?: ResolvedHandoff }
  | { op: 'detach'; id: number }
  /** The server is about to exit to be replaced: start the next one at once, not as after a crash. */
  | { op: 'restart' }
  /** Whether the server stays without mounts: the holder keeps it for the servers that follow. */
  | { op: 'stay'; stay: boolean }
  | { op: 'idle' };

/** Holder to server. */
export type ToServer =
  | { op: 'start'; mounts: HeldMount[]; restarts: number; stay: boolean }
  | { op: 'attached'; req: number; mount?: HeldMount; error?: { code?: string; message: string } }
  | { op: 'stop' };
