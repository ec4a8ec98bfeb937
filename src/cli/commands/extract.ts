/** `clip extract IMAGE|INDEX DIR`: the image's root filesystem written out, as `umoci unpack` would. */
import type { Command } from 'commander';
import { extractTree, type ExtractSummary } from '../../fs/extract.js';
import { formatSize } from '../../util/size.js';
import { openImageStorage } from '../../mount/open-image.js';
import { addReadOptions, openForCommand, storageSettingsOf, type ReadCommandOptions } from '../image-arg.js';
import { printJson } from '../output.js';
import { createProgress } from '../progress.js';
import { FLUSH_MS } from './cat.js';

interface ExtractCommandOptions extends ReadCommandOptions {
  progress?: boolean;
  sameOwner?: boolean;
}

export function formatExtractSummary(dir: string, s: ExtractSummary, seconds: number): string {
  const lines = [
    `extracted to ${dir} in ${seconds.toFixed(1)} s: ${s.files} files (${formatSize(s.bytes)}), ${s.dirs} directories, `
      + `${s.symlinks} symlinks, ${s.hardlinks} hardlinks, ${s.fifos} FIFOs, ${s.devices} devices, ${s.xattrs} xattrs`,
    ...s.skipped.map((x) => `  skipped ${x}`),
  ];
  return `${lines.join('\n')}\n`;
}

export function registerExtract(program: Command): void {
  const cmd = program
    .command('extract')
    .description("write the image's root filesystem into DIR (which must be empty or absent): owners, modes, mtimes, xattrs, devices, hardlinks")
    .argument('<image>', 'image reference or index file')
    .argument('<dir>', 'target directory')
    .option('--no-same-owner', 'do not set owners or make devices (the default when not root)')
    .option('--no-progress', 'no progress display');
  addReadOptions(cmd).action(async (image: string, dir: string, opts: ExtractCommandOptions) => {
    const started = Date.now();
    const settings = storageSettingsOf(opts); // bad values fail before any indexing
    const { img, logger } = await openForCommand(image, opts);
    try {
      const storage = await openImageStorage(img, { ...settings, logger });
      const progress = createProgress({ label: 'extracting', quiet: opts.progress === false, ...(opts.json ? { plain: true } : {}) });
      try {
        const total = new Map<string, number>();
        for (const { ino } of img.index.walk()) {
          const loc = img.index.dataLocation(ino);
          if (loc) total.set(String(ino), loc.size);
        }
        progress.addTotal([...total.values()].reduce((a, b) => a + b, 0));
        let summary: ExtractSummary;
        try {
          summary = await extractTree(img.index, dir, (layer, offset, size, signal) => storage.stream(img.layers[layer]!, offset, size, signal ? { signal } : {}), {
            logger,
            onBytes: (n) => progress.advance(n),
            ...(opts.sameOwner === false ? { sameOwner: false } : {}),
          });
        } finally {
          progress.stop();
        }
        if (opts.json) printJson({ dir, ...summary });
        else process.stdout.write(formatExtractSummary(dir, summary, (Date.now() - started) / 1000));
      } finally {
        await storage.close({ flushMs: FLUSH_MS });
      }
    } finally {
      await img.close();
    }
  });
}
