/** `clip inspect IMAGE`: what an image reference resolves to, without reading any layer. */
import { formatPlatform, openImage, parsePlatform, type ResolvedImage } from '../../oci/index.js';
import { createLogger } from '../../util/log.js';
import { printable } from '../../util/printable.js';
import { formatSize } from '../../util/size.js';
import { formatTable, printJson } from '../output.js';

export interface InspectLayer {
  index: number;
  digest: string;
  mediaType: string;
  size: number;
  diffId: string;
  compression: string;
}

export interface InspectSummary {
  reference: string;
  location: string;
  manifestDigest: string;
  manifestMediaType: string;
  platform: string;
  config: {
    digest: string;
    mediaType: string;
    env: string[];
    entrypoint: string[] | null;
    cmd: string[] | null;
    workingDir: string;
    user: string;
    created: string | null;
  };
  layers: InspectLayer[];
  totalSize: number;
}

export function summarize(image: ResolvedImage): InspectSummary {
  const c = image.config.config ?? {};
  return {
    reference: image.reference,
    location: image.location,
    manifestDigest: image.manifestDigest,
    manifestMediaType: image.manifestMediaType,
    platform: formatPlatform(image.platform),
    config: {
      digest: image.configDescriptor.digest,
      mediaType: image.configDescriptor.mediaType,
      env: c.Env ?? [],
      entrypoint: c.Entrypoint ?? null,
      cmd: c.Cmd ?? null,
      workingDir: c.WorkingDir ?? '',
      user: c.User ?? '',
      created: image.config.created ?? null,
    },
    layers: image.layers.map((l, index) => ({
      index,
      digest: l.descriptor.digest,
      mediaType: l.descriptor.mediaType,
      size: l.descriptor.size,
      diffId: l.diffId,
      compression: l.compression,
    })),
    totalSize: image.layers.reduce((n, l) => n + l.descriptor.size, 0),
  };
}

const short = (digest: string): string => digest.replace(/^(sha256:[a-f0-9]{12})[a-f0-9]*$/, '$1');

export function formatSummary(s: InspectSummary): string {
  // Config text comes from the image: its control characters are escaped (util/printable.ts).
  const field = (name: string, value: string): string => `${`${name}:`.padEnd(13)}${printable(value)}`;
  const lines = [
    field('Image', s.reference),
    field('Digest', s.manifestDigest),
    field('Media type', s.manifestMediaType),
    field('Platform', s.platform),
    field('Config', `${s.config.digest} (${s.config.mediaType})`),
    field('Entrypoint', s.config.entrypoint ? JSON.stringify(s.config.entrypoint) : '-'),
    field('Cmd', s.config.cmd ? JSON.stringify(s.config.cmd) : '-'),
    field('WorkingDir', s.config.workingDir || '-'),
    field('User', s.config.user || '-'),
    field('Env', s.config.env[0] ?? '-'),
    ...s.config.env.slice(1).map((e) => `${''.padEnd(13)}${printable(e)}`),
    '',
    `Layers: ${s.layers.length}, ${formatSize(s.totalSize)} stored`,
    formatTable(
      ['#', 'DIGEST', 'SIZE', 'COMPRESSION', 'DIFF_ID', 'MEDIA TYPE'],
      s.layers.map((l) => [String(l.index), short(l.digest), formatSize(l.size), l.compression, short(l.diffId), printable(l.mediaType)]),
    ),
  ];
  return `${lines.join('\n')}\n`;
}

export interface InspectOptions {
  json?: boolean;
  platform?: string;
  insecureRegistry?: string[];
  logLevel?: string;
  logFormat?: string;
}


export async function inspectCommand(image: string, opts: InspectOptions): Promise<void> {
  const platform = opts.platform ? parsePlatform(opts.platform) : undefined;
  const source = openImage(image, { insecureRegistries: opts.insecureRegistry ?? [], logger: createLogger(opts.logLevel, 2, opts.logFormat) });
  try {
    const summary = summarize(await source.resolve(platform ? { platform } : {}));
    if (opts.json) printJson(summary);
    else process.stdout.write(formatSummary(summary));
  } finally {
    await source.close?.();
  }
}
