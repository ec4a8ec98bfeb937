/**
 * `clip mount --background`: start the mount as a detached daemon (its own session, stdout and
 * stderr to a log file) and return once it reports the mount ready on a pipe, or fail with its error.
 * Its configuration goes through its stdin, never its arguments: /proc/PID/cmdline is readable by
 * every user, and the configuration may hold a shared cache's password.
 * The daemon logs to a new file of its own; only once it is ready is that file renamed to the
 * mountpoint's log, so a mount that fails leaves no log and never writes into a running one's.
 */
import { spawn } from 'node:child_process';
import { closeSync } from 'node:fs';
import { readFile, rename, rm } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createPrivateFileSync, defaultCacheDir, ensurePrivateDir } from '../storage/cache-dir.js';
import { ClipError, type ErrorCode } from '../util/errors.js';
import { siblingModule } from '../util/worker.js';
import { daemonPid, mountFiles, type MountFiles } from './files.js';
import type { MountConfig } from './serve.js';

export interface BackgroundMount {
  pid: number;
  /** The daemon's ready line. */
  line: string;
  files: MountFiles;
}

/**
 * Node flags for a child running `module` from "/": ours (with module flags made absolute, since a
 * bare `--import tsx` would resolve from the child's cwd), plus tsx when the module is TypeScript.
 */
function nodeArgs(module: string): string[] {
  const args: string[] = [];
  const argv = process.execArgv;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const joined = /^--(import|loader|experimental-loader|require)=(.*)$/.exec(arg);
    if (joined) args.push(`--${joined[1]}=${absoluteSpecifier(joined[2]!)}`);
    else if (/^--(import|loader|experimental-loader|require|r)$/.test(arg) && i + 1 < argv.length) args.push(arg, absoluteSpecifier(argv[++i]!));
    else args.push(arg);
  }
  if (module.endsWith('.ts') && !args.some((a) => a.includes('tsx'))) args.push('--import', absoluteSpecifier('tsx'));
  return args;
}

function absoluteSpecifier(spec: string): string {
  if (spec.startsWith('.')) return pathToFileURL(resolve(spec)).href;
  if (spec.startsWith('/') || /^[a-z]+:/.test(spec)) return spec;
  try {
    return import.meta.resolve(spec);
  } catch {
    return spec;
  }
}

/** `cfg` must hold absolute paths (the daemon runs from "/"). */
export async function startBackground(cfg: MountConfig): Promise<BackgroundMount> {
  const files = mountFiles(cfg.cacheDir ?? defaultCacheDir(), cfg.mountpoint);
  await ensurePrivateDir(files.dir);
  const serving = await daemonPid(files, cfg.mountpoint);
  if (serving !== undefined) {
    throw new ClipError('EINVAL', `already mounted by clip (daemon pid ${serving}); clip unmount it first`, { object: cfg.mountpoint });
  }
  const log = createPrivateFileSync(files.log);
  const module = fileURLToPath(siblingModule(import.meta.url, 'daemon'));
  let child;
  try {
    child = spawn(process.execPath, [...nodeArgs(module), module], {
      detached: true,
      cwd: '/', // hold no directory busy; the config's paths are absolute
      stdio: ['pipe', log.fd, log.fd, 'pipe'],
    });
  } finally {
    closeSync(log.fd);
  }
  (child.stdin as Writable).on('error', () => undefined).end(JSON.stringify(cfg));
  const pipe = child.stdio[3] as Readable;
  const message = await new Promise<string>((resolveLine) => {
    let text = '';
    const done = (line: string): void => {
      pipe.removeAllListeners('data');
      child.removeAllListeners('exit');
      resolveLine(line);
    };
    pipe.on('data', (d: Buffer) => {
      text += d.toString();
      const nl = text.indexOf('\n');
      if (nl >= 0) done(text.slice(0, nl));
    });
    pipe.on('error', () => undefined);
    child.on('exit', (code, signal) => done(`error ${JSON.stringify({ message: `the mount daemon exited (${signal ?? `code ${code}`}) before the mount was ready` })}`));
  });
  pipe.destroy();
  if (message.startsWith('ready ')) {
    child.unref();
    // The mount serves: if its log cannot take its usual name, it keeps the one it has.
    const logPath = await rename(log.path, files.log).then(() => files.log, () => log.path);
    return { pid: child.pid!, line: message.slice('ready '.length), files: { ...files, log: logPath } };
  }
  let why: { code?: ErrorCode; message?: string } = {};
  try {
    why = JSON.parse(message.slice('error '.length)) as typeof why;
  } catch {
    why = { message };
  }
  const tail = (await readFile(log.path, 'utf8').catch(() => '')).trim().split('\n').slice(-5).join('\n');
  await rm(log.path, { force: true });
  // A ClipError from the daemon already names its object; anything else gets the mountpoint and the log's end.
  if (why.code) throw new ClipError(why.code, why.message ?? 'the mount daemon failed');
  throw new ClipError('EINVAL', `${why.message ?? 'the mount daemon failed'}${tail ? ` (its log ended with:\n${tail})` : ''}`, { object: cfg.mountpoint });
}
