/**
 * Pushing to a registry: blobs (HEAD to skip what is there, POST then a monolithic PUT, or PATCH
 * chunks for big blobs), manifests and tags; and whole images or multi-platform indexes from an
 * OCI image layout.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { ClipError } from '../util/errors.js';
import { isDigest, sha256Digest } from './digest.js';
import { LayoutSource } from './layout.js';
import { parseManifest } from './manifest.js';
import { parseRegistryReference, formatReference } from './reference.js';
import { RegistryClient, headerValue, type RegistryOptions } from './registry-client.js';
import { RegistryRepository } from './registry-source.js';
import type { Descriptor } from './types.js';

export interface PushOptions extends RegistryOptions {
  /** Blobs larger than this are uploaded in PATCH chunks of this size; smaller in one PUT. */
  chunkSize?: number;
  /** Called once per blob with whether it was uploaded or already present. */
  onBlob?: (digest: string, uploaded: boolean) => void;
}

const DEFAULT_CHUNK = 16 * 1024 * 1024;

/** Pushes into one repository; blob bodies come from a function so retries can re-open them. */
export class RegistryPusher {
  private readonly chunkSize: number;

  constructor(private readonly repo: RegistryRepository, private readonly opts: PushOptions = {}) {
    this.chunkSize = opts.chunkSize ?? DEFAULT_CHUNK;
  }

  private get scope(): string {
    return `repository:${this.repo.repository}:pull,push`;
  }

  async hasBlob(digest: string): Promise<boolean> {
    const res = await this.repo.client.request({ method: 'HEAD', url: `/v2/${this.repo.repository}/blobs/${digest}`, scope: this.scope, followRedirects: true });
    await res.body.dump();
    if (res.statusCode === 200) return true;
    if (res.statusCode === 404) return false;
    throw await this.repo.failure(res, `blob ${digest}`, digest);
  }

  /** Uploads a blob unless the registry has it; `open(start, end)` yields the bytes [start, end). */
  async pushBlob(desc: Pick<Descriptor, 'digest' | 'size'>, open: (start: number, end: number) => Readable | Buffer): Promise<boolean> {
    if (await this.hasBlob(desc.digest)) {
      this.opts.onBlob?.(desc.digest, false);
      return false;
    }
    let location = await this.startUpload(desc.digest);
    if (desc.size > this.chunkSize) {
      for (let start = 0; start < desc.size; start += this.chunkSize) {
        const end = Math.min(desc.size, start + this.chunkSize);
        location = await this.patchChunk(location, desc.digest, start, end, () => open(start, end));
      }
      await this.finishUpload(location, desc.digest, undefined);
    } else {
      await this.finishUpload(location, desc.digest, { size: desc.size, body: () => open(0, desc.size) });
    }
    this.opts.onBlob?.(desc.digest, true);
    return true;
  }

  private async startUpload(digest: string): Promise<string> {
    const res = await this.repo.client.request({ method: 'POST', url: `/v2/${this.repo.repository}/blobs/uploads/`, scope: this.scope, headers: { 'content-length': '0' } });
    await res.body.dump();
    const location = headerValue(res.headers.location);
    if (res.statusCode !== 202 || !location) throw await this.repo.failure(res, `upload of blob ${digest}`, digest);
    return new URL(location, this.repo.client.baseUrl).toString();
  }

  private async patchChunk(location: string, digest: string, start: number, end: number, body: () => Readable | Buffer): Promise<string> {
    const res = await this.repo.client.request({
      method: 'PATCH', url: location, scope: this.scope, body, noRetry: true,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(end - start), 'content-range': `${start}-${end - 1}` },
    });
    const next = headerValue(res.headers.location);
    if (res.statusCode !== 202 || !next) throw await this.repo.failure(res, `upload chunk ${start}-${end - 1} of blob ${digest}`, digest);
    await res.body.dump();
    return new URL(next, this.repo.client.baseUrl).toString();
  }

  private async finishUpload(location: string, digest: string, content: { size: number; body: () => Readable | Buffer } | undefined): Promise<void> {
    const url = new URL(location);
    url.searchParams.set('digest', digest);
    const res = await this.repo.client.request({
      method: 'PUT', url: url.toString(), scope: this.scope, noRetry: true,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(content?.size ?? 0) },
      ...(content ? { body: content.body } : {}),
    });
    if (res.statusCode !== 201) throw await this.repo.failure(res, `upload of blob ${digest}`, digest);
    await res.body.dump();
  }

  /** PUT a manifest or index under a tag or its digest; returns its digest. */
  async pushManifest(bytes: Buffer, mediaType: string, tagOrDigest: string): Promise<string> {
    return (await this.pushManifestWithHeaders(bytes, mediaType, tagOrDigest)).digest;
  }

  /** pushManifest, also telling whether the registry indexed the manifest's subject (OCI-Subject). */
  async pushManifestWithHeaders(bytes: Buffer, mediaType: string, tagOrDigest: string): Promise<{ digest: string; subjectHeader: string | undefined }> {
    const digest = sha256Digest(bytes);
    if (isDigest(tagOrDigest) && tagOrDigest !== digest) {
      throw new ClipError('EDIGEST', `manifest hashes to ${digest}, not the digest it is pushed as`, { object: tagOrDigest });
    }
    const res = await this.repo.client.request({
      method: 'PUT', url: `/v2/${this.repo.repository}/manifests/${tagOrDigest}`, scope: this.scope,
      headers: { 'content-type': mediaType }, body: () => bytes,
    });
    if (res.statusCode !== 201) throw await this.repo.failure(res, `manifest ${tagOrDigest}`, `${this.repo.location}:${tagOrDigest}`);
    await res.body.dump();
    return { digest, subjectHeader: headerValue(res.headers['oci-subject']) };
  }
}

/**
 * Pushes the image named by `layoutTag` (or the layout's only image) from an OCI layout to `target`
 * ("host:port/repo:tag"): an index with all its child manifests, or one image. Returns the top digest.
 */
export async function pushLayout(layoutDir: string, layoutTag: string | undefined, target: string, opts: PushOptions = {}): Promise<string> {
  const ref = parseRegistryReference(target);
  const layout = new LayoutSource(layoutDir, layoutTag);
  const client = new RegistryClient(ref.registry, opts);
  const pusher = new RegistryPusher(new RegistryRepository(client, ref.repository), opts);
  const openFile = (digest: string) => (start: number, end: number): Readable | Buffer =>
    end === start ? Buffer.alloc(0) : createReadStream(layout.blobPath(digest), { start, end: end - 1 });

  async function pushTree(desc: Descriptor, tag: string | undefined): Promise<string> {
    const { bytes, mediaType } = await layout.fetchManifest(desc);
    const parsed = parseManifest(bytes, `${layout.reference} (${desc.digest})`, mediaType);
    if (parsed.kind === 'index') {
      for (const child of parsed.index.manifests) await pushTree(child, undefined);
    } else {
      for (const blob of [parsed.manifest.config, ...parsed.manifest.layers]) {
        await pusher.pushBlob(blob, openFile(blob.digest));
      }
    }
    return pusher.pushManifest(bytes, parsed.mediaType, tag ?? desc.digest);
  }

  try {
    const top = await layout.topDescriptor();
    const digest = await pushTree(top, ref.digest ? undefined : ref.tag);
    if (ref.digest && ref.digest !== digest) {
      throw new ClipError('EDIGEST', `layout image is ${digest}, not the digest in the target`, { object: formatReference(ref) });
    }
    return digest;
  } finally {
    await client.close();
  }
}
