/** `clip server start`, `stop`, `status` and `restart`. */
import { resolve } from 'node:path';
import type { ProcessMemory } from '../../mount/process-metrics.js';
import { askServer, unwrap } from '../../server/client.js';
import { processEnded } from '../../mount/files.js';
import { liveHolder, serverFiles } from '../../server/paths.js';
import { defaultCacheDir } from '../../storage/cache-dir.js';
import { ClipError } from '../../util/errors.js';
import { formatSize } from '../../util/size.js';
import { waitFor } from '../../util/wait.js';
import { printJson } from '../output.js';
import { formatMounts } from './mounts.js';

function cacheDirOf(opts: { cacheDir?: string }): string {
  return resolve(opts.cacheDir ?? defaultCacheDir());
}

export async function serverStatusCommand(opts: { cacheDir?: string; json?: boolean }): Promise<void> {
  const cacheDir = cacheDirOf(opts);
  const reply = await askServer(cacheDir, { op: 'status' });
  if (!reply) throw new ClipError('ENOTFOUND', 'no clip server runs for this cache directory (it starts with the first clip mount --background)', { object: cacheDir });
  const st = unwrap(reply);
  if (st.op !== 'status') throw new ClipError('EINVAL', 'the clip server answered another request', { object: cacheDir });
  if (opts.json) {
    printJson(st);
    return;
  }
  process.stdout.write(
    `server pid ${st.pid} (holder pid ${st.holderPid}), ${st.stay ? 'kept running (clip server start), ' : ''}${st.restarts} restart${st.restarts === 1 ? '' : 's'}, RSS ${formatSize(st.rssBytes)}, log ${serverFiles(cacheDir).log}\n${memoryLine(st.memory)}\n${formatMounts(st.mounts)}`,
  );
}

/** The server's memory, split: its own (anon) and the node binary's pages (file), then what V8 and buffers hold. */
function memoryLine(m: Partial<ProcessMemory>): string {
  const f = (n: number | undefined): string => (n === undefined ? '?' : formatSize(n));
  return `memory: anon ${f(m.anon)}, file ${f(m.file)}; V8 heap ${f(m.heapUsed)} used of ${f(m.heapTotal)}, array buffers ${f(m.arrayBuffers)} (indexes included), kept spans ${f(m.keptSpans)}`;
}

export async function serverRestartCommand(opts: { cacheDir?: string }): Promise<void> {
  const cacheDir = cacheDirOf(opts);
  const reply = await askServer(cacheDir, { op: 'restart' });
  if (!reply) throw new ClipError('ENOTFOUND', 'no clip server runs for this cache directory', { object: cacheDir });
  const done = unwrap(reply);
  process.stdout.write(`clip: server pid ${done.pid} is being replaced; its mounts stay\n`);
}

/** How long `clip server stop` waits for a server without mounts (and its holder) to be gone. */
const STOP_WAIT_MS = 15_000;

export async function serverStartCommand(opts: { cacheDir?: string; json?: boolean }): Promise<void> {
  const cacheDir = cacheDirOf(opts);
  const reply = unwrap((await askServer(cacheDir, { op: 'stay', stay: true }, { start: true }))!);
  if (reply.op !== 'stay') throw new ClipError('EINVAL', 'the clip server answered another request', { object: cacheDir });
  if (opts.json) {
    printJson({ cacheDir, pid: reply.pid, holderPid: reply.holderPid, mounts: reply.mounts, log: serverFiles(cacheDir).log });
    return;
  }
  process.stdout.write(`clip: server pid ${reply.pid} (holder pid ${reply.holderPid}) runs for ${cacheDir} until clip server stop; log ${serverFiles(cacheDir).log}\n`);
}

export async function serverStopCommand(opts: { cacheDir?: string; json?: boolean }): Promise<void> {
  const cacheDir = cacheDirOf(opts);
  const files = serverFiles(cacheDir);
  const print = (text: string, json: object): void => {
    if (opts.json) printJson({ cacheDir, ...json });
    else process.stdout.write(`clip: ${text}\n`);
  };
  const asked = await askServer(cacheDir, { op: 'stay', stay: false });
  if (!asked) {
    const holder = liveHolder(files.lock);
    if (holder === undefined) {
      print(`no clip server runs for ${cacheDir}`, { running: false });
      return;
    }
    // A holder whose server is between two lives (a crash's back-off) answers no request: it ends
    // on SIGTERM when it holds no mount.
    process.kill(holder, 'SIGTERM');
    if (!(await waitFor(() => processEnded(holder), STOP_WAIT_MS))) {
      throw new ClipError('ETIMEOUT', `no clip server answers, and its holder (pid ${holder}) did not end: it holds mounts (clip mounts; see ${files.log})`, { object: cacheDir });
    }
    print(`the clip server's holder (pid ${holder}) stopped`, { running: false, holderPid: holder });
    return;
  }
  const reply = unwrap(asked);
  if (reply.op !== 'stay') throw new ClipError('EINVAL', 'the clip server answered another request', { object: cacheDir });
  let mounts = reply.mounts;
  // Without mounts it ends now: wait for it, so that a `clip server start` after this finds none.
  if (mounts === 0 && !(await waitFor(() => processEnded(reply.holderPid), STOP_WAIT_MS))) {
    // A mount came meanwhile: the server ends after it, as told.
    const now = await askServer(cacheDir, { op: 'status' }).catch(() => undefined);
    if (!now?.ok || now.op !== 'status' || now.mounts.length === 0) {
      throw new ClipError('ETIMEOUT', `the clip server's holder (pid ${reply.holderPid}) did not end within ${STOP_WAIT_MS / 1000} s (see ${files.log})`, { object: cacheDir });
    }
    mounts = now.mounts.length;
  }
  if (mounts === 0) print(`server pid ${reply.pid} stopped`, { running: false, pid: reply.pid, mounts });
  else print(`server pid ${reply.pid} ends once its ${mounts} mount${mounts === 1 ? ' is' : 's are'} unmounted (clip mounts lists them)`, { running: true, pid: reply.pid, mounts });
}
