/**
 * The options every command that reads an image (IMAGE|INDEX argument) shares, and their parsing:
 * light on purpose, since every command definition loads it at start-up.
 */
import type { Command } from 'commander';
import { defaultCacheDir } from '../storage/cache-dir.js';
import { ClipError } from '../util/errors.js';
import { parseSize } from '../util/size.js';

/** The option values every reading command shares (as commander hands them over). */
export interface ReadCommandOptions {
  cacheDir?: string;
  platform?: string;
  insecureRegistry?: string[];
  remoteCache?: string;
  /** false with --no-discover. */
  discover?: boolean;
  cacheMaxSize?: string;
  readTimeout?: string;
  logLevel?: string;
  logFormat?: string;
  json?: boolean;
}

/** "30s", "500ms", "2m" or a plain number of seconds, as milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) throw new ClipError('EINVAL', 'not a duration (use e.g. 500ms, 30s, 2m)', { object: text });
  const n = Number(m[1]);
  const ms = m[2] === 'ms' ? n : m[2] === 'm' ? n * 60_000 : n * 1000;
  if (!(ms > 0)) throw new ClipError('EINVAL', 'a duration must be positive', { object: text });
  return Math.round(ms);
}

/** The storage settings of a reading command's options, parsed (bad values fail here, before any work). */
export interface StorageSettings {
  remoteCache?: string;
  cacheMaxBytes?: number;
  readTimeoutMs?: number;
}

export function storageSettingsOf(opts: ReadCommandOptions): StorageSettings {
  return {
    ...(opts.remoteCache ? { remoteCache: opts.remoteCache } : {}),
    ...(opts.cacheMaxSize !== undefined ? { cacheMaxBytes: parseSize(opts.cacheMaxSize) } : {}),
    ...(opts.readTimeout !== undefined ? { readTimeoutMs: parseDuration(opts.readTimeout) } : {}),
  };
}

/** Repeatable and comma separated, so that a host list never swallows the IMAGE argument. */
function collectHosts(value: string, previous: string[]): string[] {
  return [...previous, ...value.split(',').map((h) => h.trim()).filter(Boolean)];
}

/** The options every command that talks to a registry or logs takes, the same everywhere. */
export function addRegistryOptions(cmd: Command): Command {
  return cmd.option(
    '--insecure-registry <host>',
    'registry host to reach over plain HTTP; repeatable or comma separated (loopback hosts always are; env CLIP_INSECURE_REGISTRIES)',
    collectHosts,
    [],
  );
}

export function addLogOptions(cmd: Command): Command {
  return cmd
    .option('--log-level <level>', 'log level on stderr: trace, debug, info, warn, error, silent (env CLIP_LOG_LEVEL)', process.env.CLIP_LOG_LEVEL ?? 'warn')
    .option('--log-format <format>', 'log lines as text (for people) or json; auto: text on a terminal (env CLIP_LOG_FORMAT)', process.env.CLIP_LOG_FORMAT ?? 'auto');
}

/** Examples after a command's help: what people try first. */
export function examples(cmd: Command, lines: string[]): Command {
  return cmd.addHelpText('after', `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`);
}

/** Add the shared options of commands that read an image. */
export function addReadOptions(cmd: Command, opts: { json?: boolean } = {}): Command {
  cmd
    .option('--cache-dir <dir>', `cache directory (default: ${defaultCacheDir()})`)
    .option('--platform <os/arch[/variant]>', 'platform to choose from a multi-platform image (default: this machine)')
    .option('--remote-cache <url>', 'shared cache of chunks and indexes: redis://[:password@]host:port, rediss://..., redis+cluster://h1:p1,h2:p2')
    .option('--no-discover', 'do not look for a published index (shared cache, registry): index the image here when it has none cached')
    .option('--cache-max-size <size>', 'cap on the disk cache (e.g. 20GiB): least recently used layers are evicted beyond it')
    .option('--read-timeout <duration>', 'a read no tier can answer within this fails (e.g. 30s, 500ms)', '30s');
  addRegistryOptions(cmd);
  addLogOptions(cmd);
  if (opts.json !== false) cmd.option('--json', 'print JSON for scripts');
  return cmd;
}
