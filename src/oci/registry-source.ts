/**
 * A repository on a registry as an ImageSource: manifests by tag or digest (verified), blobs whole
 * (verified, resumable) or by byte range (206 expected, a 200 that ignores Range is sliced).
 */
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { ClipError } from '../util/errors.js';
import { BlobVerifier, isDigest, sha256Digest, verifyBytes } from './digest.js';
import { resumableRange, sliceChunks } from './blob-stream.js';
import { MAX_MANIFEST_BYTES, resolveImage, type FetchedManifest, type ManifestSource } from './manifest.js';
import { MANIFEST_ACCEPT } from './media-types.js';
import { formatReference, manifestSelector, type RegistryReference } from './reference.js';
import { errorSummary, headerValue, type RegistryClient } from './registry-client.js';
import type { BlobReadOptions, Descriptor, ImageSource, ResolveOptions, ResolvedImage } from './types.js';

type BlobDesc = Pick<Descriptor, 'digest' | 'size'>;

export class RegistryRepository implements ImageSource, ManifestSource {
  readonly location: string;

  constructor(readonly client: RegistryClient, readonly repository: string, private readonly ref?: RegistryReference) {
    this.location = `${client.registry}/${repository}`;
  }

  private scope(actions = 'pull'): string {
    return `repository:${this.repository}:${actions}`;
  }

  /** Turns a failed response into an error naming the repository and the object. */
  async failure(res: Dispatcher.ResponseData, what: string, object: string): Promise<ClipError> {
    const detail = await errorSummary(res);
    const suffix = detail ? ` (${detail})` : '';
    const s = res.statusCode;
    if (s === 401 || s === 403) {
      return new ClipError('EAUTH', `access denied (HTTP ${s}) to ${what} in repository ${this.location}${suffix}`, { object });
    }
    if (s === 404) return new ClipError('ENOTFOUND', `${what} not found in repository ${this.location}${suffix}`, { object });
    return new ClipError('ENETWORK', `registry answered HTTP ${s} for ${what} in repository ${this.location}${suffix}`, { object });
  }

  /** A manifest by tag or digest; by digest it is verified, by tag its digest is computed (and checked against the header). */
  async getManifest(selector: string, signal?: AbortSignal): Promise<FetchedManifest> {
    const object = `${this.location}${isDigest(selector) ? '@' : ':'}${selector}`;
    const res = await this.client.request({
      method: 'GET', url: `/v2/${this.repository}/manifests/${selector}`, scope: this.scope(),
      headers: { accept: MANIFEST_ACCEPT }, followRedirects: true, ...(signal ? { signal } : {}),
    });
    if (res.statusCode !== 200) throw await this.failure(res, `manifest ${selector}`, object);
    const length = Number(headerValue(res.headers['content-length']));
    if (length > MAX_MANIFEST_BYTES) {
      await res.body.dump();
      throw new ClipError('ECORRUPT', `manifest of ${length} bytes is too large`, { object });
    }
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const c of res.body as AsyncIterable<Buffer>) {
      total += c.length;
      if (total > MAX_MANIFEST_BYTES) {
        res.body.destroy();
        throw new ClipError('ECORRUPT', `manifest larger than ${MAX_MANIFEST_BYTES} bytes`, { object });
      }
      chunks.push(c);
    }
    const bytes = Buffer.concat(chunks);
    let digest: string;
    if (isDigest(selector)) {
      verifyBytes(bytes, selector, 'manifest');
      digest = selector;
    } else {
      digest = sha256Digest(bytes);
      const claimed = headerValue(res.headers['docker-content-digest']);
      if (claimed?.startsWith('sha256:') && claimed !== digest) {
        throw new ClipError('EDIGEST', `manifest bytes hash to ${digest} but the registry claims ${claimed}`, { object });
      }
    }
    return { bytes, digest, mediaType: (headerValue(res.headers['content-type']) ?? '').split(';')[0]!.trim() };
  }

  fetchManifest(desc: Pick<Descriptor, 'digest'>): Promise<FetchedManifest> {
    return this.getManifest(desc.digest);
  }

  async readSmallBlob(desc: BlobDesc): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of await this.openBlob(desc)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  async resolve(opts: ResolveOptions = {}): Promise<ResolvedImage> {
    if (!this.ref) throw new ClipError('EINVAL', 'this blob store was opened from a location, not an image reference', { object: this.location });
    const top = await this.getManifest(manifestSelector(this.ref));
    return resolveImage(this, { ...opts, reference: formatReference(this.ref), location: this.location, top });
  }

  /** One GET of bytes [start, end), normalised to yield exactly those bytes whether the server honoured Range or not. */
  private async openRangeOnce(desc: BlobDesc, start: number, end: number, signal: AbortSignal | undefined) {
    const whole = start === 0 && end === desc.size;
    const object = `${this.location}@${desc.digest}`;
    const res = await this.client.request({
      method: 'GET', url: `/v2/${this.repository}/blobs/${desc.digest}`, scope: this.scope(), followRedirects: true,
      headers: whole ? {} : { range: `bytes=${start}-${end - 1}` }, ...(signal ? { signal } : {}),
    });
    const close = (): void => {
      if (!res.body.destroyed) res.body.destroy();
    };
    const body = res.body as AsyncIterable<Buffer>;
    if (res.statusCode === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(headerValue(res.headers['content-range']) ?? '');
      if (!m || Number(m[1]) !== start) {
        close();
        throw new ClipError('ECORRUPT', `registry answered Range ${start}-${end - 1} with Content-Range "${headerValue(res.headers['content-range']) ?? ''}"`, { object });
      }
      return { chunks: sliceChunks(body, 0, end - start), close };
    }
    if (res.statusCode === 200) return { chunks: sliceChunks(body, start, end - start), close };
    if (res.statusCode === 416) {
      close();
      throw new ClipError('EINVAL', `range ${start}-${end} is outside the blob (${desc.size} bytes)`, { object });
    }
    throw await this.failure(res, `blob ${desc.digest}`, desc.digest);
  }

  private rangeStream(desc: BlobDesc, start: number, end: number, opts: BlobReadOptions): AsyncGenerator<Buffer> {
    return resumableRange((s, e) => this.openRangeOnce(desc, s, e, opts.signal), start, end, {
      object: `${this.location}@${desc.digest}`,
      retry: this.client.retry,
      logger: this.client.logger,
      ...(opts.signal ? { signal: opts.signal } : {}),
      ...(opts.onBytes ? { onBytes: opts.onBytes } : {}),
    });
  }

  async openBlob(desc: BlobDesc, opts: BlobReadOptions = {}): Promise<Readable> {
    const chunks = this.rangeStream(desc, 0, desc.size, opts);
    // Open the first response before returning, so 401/404 surface here rather than mid-stream.
    const first = await chunks.next();
    async function* verified(): AsyncGenerator<Buffer> {
      const verifier = new BlobVerifier(desc.digest, desc.size);
      if (!first.done) {
        verifier.update(first.value);
        yield first.value;
      }
      for await (const c of chunks) {
        verifier.update(c);
        yield c;
      }
      verifier.finish();
    }
    return streamOf(verified(), chunks);
  }

  async openBlobRange(desc: BlobDesc, start: number, end: number, opts: BlobReadOptions = {}): Promise<Readable> {
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && start <= end && end <= desc.size)) {
      throw new ClipError('EINVAL', `bad range [${start}, ${end}) of a ${desc.size}-byte blob`, { object: desc.digest });
    }
    const chunks = this.rangeStream(desc, start, end, opts);
    const first = await chunks.next();
    async function* all(): AsyncGenerator<Buffer> {
      if (!first.done) yield first.value;
      yield* chunks;
    }
    return streamOf(all(), chunks);
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

/**
 * `body` as a stream that ends `chunks` when it closes, however: destroyed before it was ever read,
 * `body` never started and would not end `chunks`, whose response (opened already) would then keep
 * its connection, and the client's close(), waiting forever.
 */
function streamOf(body: AsyncGenerator<Buffer>, chunks: AsyncGenerator<Buffer>): Readable {
  const stream = Readable.from(body, { objectMode: false });
  stream.once('close', () => void chunks.return(undefined).catch(() => undefined));
  return stream;
}
