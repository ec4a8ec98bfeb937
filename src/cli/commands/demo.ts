/**
 * `clip demo`: builds (or reuses) a runnable image from this machine's own files, with no network,
 * then shows clip using it. At this stage: resolve it through the oci module and list its layers.
 */
import type { Command } from 'commander';
import { buildDemoImage, defaultDemoDir, type DemoImage } from '../../demo/index.js';
import { openImage } from '../../oci/index.js';
import { formatSize } from '../../util/size.js';
import { formatTable, printJson } from '../output.js';
import { formatSummary, summarize, type InspectSummary } from './inspect.js';

interface DemoOptions {
  dir?: string;
  rebuild?: boolean;
  json?: boolean;
}

export interface DemoReport {
  image: DemoImage;
  seconds: number;
  inspect: InspectSummary;
}

export async function runDemo(opts: DemoOptions): Promise<DemoReport> {
  const started = Date.now();
  const image = await buildDemoImage({ ...(opts.dir ? { dir: opts.dir } : {}), rebuild: opts.rebuild ?? false });
  const seconds = (Date.now() - started) / 1000;
  const source = openImage(image.ref);
  try {
    return { image, seconds, inspect: summarize(await source.resolve()) };
  } finally {
    await source.close?.();
  }
}

function formatBuild(r: DemoReport): string {
  const { image } = r;
  const verb = image.reused ? 'reused the demo image (its inputs are unchanged)' : `built the demo image in ${r.seconds.toFixed(1)} s`;
  const rows = image.layers.map((l, i) => {
    const s = image.summary[i];
    const from = s && s.hostFiles.length ? `${s.entries} entries from ${s.hostFiles.length} host files (${s.hostFiles.slice(0, 3).join(', ')}${s.hostFiles.length > 3 ? ', ...' : ''})` : `${s?.entries ?? 0} entries`;
    return [s?.name ?? String(i), formatSize(l.size), formatSize(l.uncompressedSize), from];
  });
  return [
    `clip demo: ${verb}`,
    `  ${image.ref}`,
    '',
    formatTable(['LAYER', 'STORED', 'UNCOMPRESSED', 'CONTENT'], rows).replace(/^/gm, '  '),
    '',
  ].join('\n');
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description("build (or reuse) a runnable image from this machine's own files, with no network, and show clip using it")
    .option('--dir <dir>', `where the demo image is kept (default: $CLIP_DEMO_DIR or ${defaultDemoDir()})`)
    .option('--rebuild', 'build the image again even if an up-to-date one is there')
    .option('--json', 'print one JSON object instead of text')
    .action(async (opts: DemoOptions) => {
      const report = await runDemo(opts);
      if (opts.json) {
        printJson(report);
        return;
      }
      const { image } = report;
      process.stdout.write(formatBuild(report));
      process.stdout.write(`\n$ clip inspect ${image.ref}\n`);
      process.stdout.write(formatSummary(report.inspect));
      process.stdout.write(
        [
          '',
          'The image runs as it is. To see it (as root):',
          `  umoci unpack --image ${image.layoutDir}:${image.tag} /tmp/clip-demo-bundle`,
          `  chroot /tmp/clip-demo-bundle/rootfs ${[...(report.inspect.config.entrypoint ?? []), ...(report.inspect.config.cmd ?? [])].join(' ')}`,
          '',
        ].join('\n'),
      );
    });
}
