/**
 * `clip run IMAGE [-- COMMAND ARGS...]`: its definition and the parsing of its options (bad values
 * fail here, before any work); the action is ../actions/run.ts, loaded when it runs.
 */
import { isAbsolute } from 'node:path';
import type { Command } from 'commander';
import { ClipError } from '../../util/errors.js';
import { addReadOptions, examples, parseDuration, type ReadCommandOptions } from '../read-options.js';

export interface ContainerCommandOptions extends ReadCommandOptions {
  tty?: boolean;
  env?: string[];
  volume?: string[];
  network: string;
  user?: string;
  workdir?: string;
  entrypoint?: string;
  readOnly?: boolean;
}

export interface RunCommandOptions extends ContainerCommandOptions {
  keep?: boolean;
  cleanup?: boolean;
  linger: string;
}

/** --linger: a duration, or 0 (stop the image mount when its last container ends). In ms. */
export function parseLinger(text: string): number {
  if (/^0+(\.0+)?(ms|s|m)?$/.test(text.trim())) return 0;
  return parseDuration(text);
}

export interface VolumeArg {
  host: string;
  container: string;
  readOnly: boolean;
}

/** "HOST:CTR", "HOST:CTR:ro" or "HOST:CTR:rw"; both paths absolute (the host's is resolved when the container is made). */
export function parseVolume(text: string): VolumeArg {
  const parts = text.split(':');
  const mode = parts.length === 3 ? parts[2] : undefined;
  if (parts.length < 2 || parts.length > 3 || (mode !== undefined && mode !== 'ro' && mode !== 'rw') || !parts[0] || !parts[1]) {
    throw new ClipError('EINVAL', 'not a volume: use HOST:CONTAINER or HOST:CONTAINER:ro', { object: text });
  }
  if (!isAbsolute(parts[0]) || !isAbsolute(parts[1])) throw new ClipError('EINVAL', 'a volume names two absolute paths, HOST:CONTAINER', { object: text });
  return { host: parts[0], container: parts[1], readOnly: mode === 'ro' };
}

export function parseNetwork(text: string): 'host' | 'none' {
  if (text !== 'host' && text !== 'none') throw new ClipError('EINVAL', '--network must be host or none (clip has no bridge network)', { object: text });
  return text;
}

const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

/** The options `clip run` and `clip bundle` share: how the container's process and mounts are made. */
export function addContainerOptions(cmd: Command): Command {
  return cmd
    .option('-t, --tty', 'give the container a terminal (stdin must be one)')
    .option('-e, --env <KEY=VALUE>', "set an environment variable (over the image's Env); KEY alone passes this process's value; repeatable", collect)
    .option('-v, --volume <HOST:CONTAINER[:ro]>', 'bind a host directory or file into the container, read-only with :ro; repeatable', collect)
    .option('--network <mode>', 'host: share this machine\'s network; none: only a loopback interface', 'none')
    .option('-u, --user <user[:group]>', "run as this user (name or uid, group name or gid) instead of the image's User")
    .option('-w, --workdir <dir>', "working directory in the container instead of the image's WorkingDir (made if missing)")
    .option('--entrypoint <program>', "replace the image's Entrypoint (\"\" for none); the image's Cmd is dropped too")
    .option('--read-only', 'no writable layer: the root filesystem is the image, read-only (volumes and /dev/shm stay writable)');
}

export function registerRun(program: Command): void {
  const cmd = program
    .command('run')
    .description('run a container with runc from the lazily mounted image: one shared read-only mount per image, a writable overlay per container (as root)')
    .argument('[image]', 'image reference or index file')
    .argument('[command...]', "command and arguments, after --: replace the image's Cmd");
  addContainerOptions(cmd)
    .option('--keep', 'keep the container\'s writable layer when it ends (its path is printed); default: removed')
    .option('--linger <duration>', 'keep the image mounted this long after its last container ends, for the next run of it (0: unmount at once)', '60s')
    .option('--cleanup', 'only clean what killed `clip run`s left (containers, overlays, runc state, unused image mounts) and stop lingering image mounts, then exit');
  examples(cmd, [
    'clip run ghcr.io/org/app:1.2                          the image\'s Entrypoint and Cmd',
    'clip run ghcr.io/org/app:1.2 -- python3 -c "print(1)"',
    'clip run -t docker.io/library/debian:12 -- bash       an interactive shell',
    'clip run -e DEBUG=1 -v /srv/data:/data:ro --network host app.clip',
    'clip run --cleanup',
  ]);
  addReadOptions(cmd, { json: false }).action(async (image: string | undefined, command: string[], opts: RunCommandOptions) =>
    (await import('../actions/run.js')).runCommand(image, command, opts));
}
