/** `clip extract IMAGE|INDEX DIR`: the image's root filesystem written out, as `umoci unpack` would. */
import { extractTree, type ExtractSummary } from '../../fs/extract.js';
import { printable } from '../../util/printable.js';
import { formatSize } from '../../util/size.js';
import { openImageStorage } from '../../mount/open-image.js';
import { openForCommand } from '../image-arg.js';
import { storageSettingsOf, type ReadCommandOptions } from '../read-options.js';
import { printJson } from '../output.js';
import { createProgress } from '../progress.js';
import { FLUSH_MS } from './cat.js';

export interface ExtractCommandOptions extends ReadCommandOptions {
  progress?: boolean;
  sameOwner?: boolean;
}

export function formatExtractSummary(dir: string, s: ExtractSummary, seconds: number): string {
  const lines = [
    `extracted to ${dir} in ${seconds.toFixed(1)} s: ${s.files} files (${formatSize(s.bytes)}), ${s.dirs} directories, `
      + `${s.symlinks} symlinks, ${s.hardlinks} hardlinks, ${s.fifos} FIFOs, ${s.devices} devices, ${s.xattrs} xattrs`,
    ...s.skipped.map((x) => `  skipped ${printable(x)}`),
  ];
  return `${lines.join('\n')}\n`;
}

export async function extractCommand(image: string, dir: string, opts: ExtractCommandOptions): Promise<void> {
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
}
