/**
 * A local OCI image layout (what umoci and skopeo write) as an ImageSource: `oci-layout` checked,
 * `index.json` read (tags from org.opencontainers.image.ref.name), blobs under blobs/<alg>/<hex>,
 * ranges read by file position.
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ClipError } from '../util/errors.js';
import { assertDigest, verifyBytes, verifyingChunks } from './digest.js';
import { MAX_MANIFEST_BYTES, parseManifest, resolveImage, type FetchedManifest, type ManifestSource } from './manifest.js';
import { OCI_INDEX, isImageManifestMediaType, isIndexMediaType } from './media-types.js';
import { platformMatches } from './platform.js';
import type { BlobReadOptions, Descriptor, ImageSource, Platform, ResolveOptions, ResolvedImage } from './types.js';

export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';

type BlobDesc = Pick<Descriptor, 'digest' | 'size'>;

export class LayoutSource implements ImageSource, ManifestSource {
  readonly location: string;
  private checked: Promise<void> | undefined;

  constructor(readonly dir: string, readonly tag?: string) {
    this.location = `oci:${dir}`;
  }

  get reference(): string {
    return `${this.location}${this.tag !== undefined ? `:${this.tag}` : ''}`;
  }

  blobPath(digest: string): string {
    assertDigest(digest);
    const [alg, hex] = digest.split(':') as [string, string];
    return join(this.dir, 'blobs', alg, hex);
  }

  private check(): Promise<void> {
    this.checked ??= (async () => {
      const file = join(this.dir, 'oci-layout');
      let text: string;
      try {
        text = await readFile(file, 'utf8');
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') {
          const exists = await stat(this.dir).then((s) => s.isDirectory(), () => false);
          throw new ClipError('ENOTFOUND', exists ? 'not an OCI image layout (no oci-layout file)' : 'no such directory', { object: this.dir, cause: err });
        }
        throw new ClipError('EINVAL', `cannot read oci-layout: ${(err as Error).message}`, { object: this.dir, cause: err });
      }
      let version: unknown;
      try {
        version = (JSON.parse(text) as { imageLayoutVersion?: unknown }).imageLayoutVersion;
      } catch {
        throw new ClipError('ECORRUPT', 'oci-layout is not valid JSON', { object: file });
      }
      if (typeof version !== 'string' || !version.startsWith('1.')) {
        throw new ClipError('EUNSUPPORTED', `unsupported imageLayoutVersion ${JSON.stringify(version)}`, { object: file });
      }
    })();
    return this.checked;
  }

  /** index.json, parsed and checked. */
  async readIndex(): Promise<{ bytes: Buffer; manifests: Descriptor[] }> {
    await this.check();
    const file = join(this.dir, 'index.json');
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch (err) {
      throw new ClipError('ECORRUPT', `cannot read index.json: ${(err as Error).message}`, { object: file, cause: err });
    }
    const parsed = parseManifest(bytes, file, OCI_INDEX);
    if (parsed.kind !== 'index') throw new ClipError('ECORRUPT', 'index.json is not an image index', { object: file });
    return { bytes, manifests: parsed.index.manifests };
  }

  /** The descriptor index.json names for `tag` (or the only one, when no tag is given). */
  async topDescriptor(platform?: Platform): Promise<Descriptor> {
    const { manifests } = await this.readIndex();
    if (this.tag !== undefined) {
      const tagged = manifests.filter((d) => d.annotations?.[REF_NAME_ANNOTATION] === this.tag);
      const byPlatform = platform ? tagged.filter((d) => !d.platform || platformMatches(d.platform, platform)) : tagged;
      const found = byPlatform[0] ?? tagged[0];
      if (!found) {
        const tags = manifests.map((d) => d.annotations?.[REF_NAME_ANNOTATION]).filter(Boolean).join(', ') || 'none';
        throw new ClipError('ENOTFOUND', `no image tagged "${this.tag}" in the layout (tags: ${tags})`, { object: this.reference });
      }
      return found;
    }
    const usable = manifests.filter((d) => isImageManifestMediaType(d.mediaType) || isIndexMediaType(d.mediaType));
    if (usable.length === 1) return usable[0]!;
    if (usable.length === 0) throw new ClipError('ENOTFOUND', 'the layout holds no image', { object: this.reference });
    const tags = usable.map((d) => d.annotations?.[REF_NAME_ANNOTATION]).filter(Boolean);
    throw new ClipError('EINVAL', `the layout holds ${usable.length} images; name one with oci:DIR:TAG (tags: ${tags.join(', ') || 'none'})`, { object: this.reference });
  }

  async fetchManifest(desc: Pick<Descriptor, 'digest' | 'size' | 'mediaType'>): Promise<FetchedManifest> {
    if (desc.size > MAX_MANIFEST_BYTES) throw new ClipError('ECORRUPT', `manifest of ${desc.size} bytes is too large`, { object: desc.digest });
    const bytes = await this.readSmallBlob(desc);
    return { bytes, digest: desc.digest, mediaType: desc.mediaType };
  }

  async readSmallBlob(desc: BlobDesc): Promise<Buffer> {
    await this.check();
    let bytes: Buffer;
    try {
      bytes = await readFile(this.blobPath(desc.digest));
    } catch (err) {
      throw this.missing(desc.digest, err);
    }
    verifyBytes(bytes, desc.digest, 'blob');
    return bytes;
  }

  async resolve(opts: ResolveOptions = {}): Promise<ResolvedImage> {
    const top = await this.fetchManifest(await this.topDescriptor(opts.platform));
    return resolveImage(this, { ...opts, reference: this.reference, location: this.location, top });
  }

  private missing(digest: string, err: unknown): ClipError {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return new ClipError('ENOTFOUND', `blob not found in layout ${this.dir}`, { object: digest, cause: err });
    return new ClipError('EINVAL', `cannot read blob in layout ${this.dir}: ${(err as Error).message}`, { object: digest, cause: err });
  }

  private async statBlob(desc: BlobDesc): Promise<string> {
    await this.check();
    const path = this.blobPath(desc.digest);
    try {
      const st = await stat(path);
      if (st.size !== desc.size) throw new ClipError('EDIGEST', `blob file is ${st.size} bytes, expected ${desc.size}`, { object: desc.digest });
    } catch (err) {
      if (err instanceof ClipError) throw err;
      throw this.missing(desc.digest, err);
    }
    return path;
  }

  async openBlob(desc: BlobDesc, opts: BlobReadOptions = {}): Promise<Readable> {
    const path = await this.statBlob(desc);
    const file = createReadStream(path, opts.signal ? { signal: opts.signal } : {});
    const chunks = opts.onBytes ? counting(file, opts.onBytes) : (file as AsyncIterable<Buffer>);
    return Readable.from(verifyingChunks(chunks, desc.digest, desc.size), { objectMode: false });
  }

  async openBlobRange(desc: BlobDesc, start: number, end: number, opts: BlobReadOptions = {}): Promise<Readable> {
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && start <= end && end <= desc.size)) {
      throw new ClipError('EINVAL', `bad range [${start}, ${end}) of a ${desc.size}-byte blob`, { object: desc.digest });
    }
    const path = await this.statBlob(desc);
    if (start === end) return Readable.from([]);
    const file = createReadStream(path, { start, end: end - 1, ...(opts.signal ? { signal: opts.signal } : {}) });
    if (!opts.onBytes) return file;
    return Readable.from(counting(file, opts.onBytes), { objectMode: false });
  }
}

async function* counting(source: AsyncIterable<Buffer>, onBytes: (n: number) => void): AsyncGenerator<Buffer> {
  for await (const c of source) {
    onBytes(c.length);
    yield c;
  }
}
