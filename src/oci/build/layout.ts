/** An OCI image layout directory being written: oci-layout, blobs/sha256/..., index.json with tags. */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipError } from '../../util/errors.js';
import type { Descriptor } from '../types.js';
import { writeBlobBytes } from './blob.js';
import { OCI } from './media-types.js';

export const REF_NAME = 'org.opencontainers.image.ref.name';

interface LayoutIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
}

async function writeFileAtomic(path: string, data: string | Buffer): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/** Create the layout's skeleton (idempotent). */
export async function initLayout(layoutDir: string): Promise<void> {
  await mkdir(join(layoutDir, 'blobs', 'sha256'), { recursive: true });
  await writeFileAtomic(join(layoutDir, 'oci-layout'), `${JSON.stringify({ imageLayoutVersion: '1.0.0' })}\n`);
  const indexPath = join(layoutDir, 'index.json');
  const existing = await readFile(indexPath).catch(() => null);
  if (!existing) await writeFileAtomic(indexPath, JSON.stringify({ schemaVersion: 2, mediaType: OCI.index, manifests: [] }));
}

/** A JSON document as a blob; returns its descriptor and the exact bytes. */
export async function writeJsonBlob(layoutDir: string, mediaType: string, doc: unknown): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
  const bytes = Buffer.from(JSON.stringify(doc));
  const ref = await writeBlobBytes(layoutDir, bytes);
  return { descriptor: { mediaType, digest: ref.digest, size: ref.size }, bytes };
}

/** Point `tag` at `descriptor` in index.json, replacing any previous holder of the tag. */
export async function tagInLayout(layoutDir: string, descriptor: Descriptor, tag: string): Promise<void> {
  if (!/^[A-Za-z0-9_][A-Za-z0-9._:/@+-]*$/.test(tag)) throw new ClipError('EINVAL', 'not a valid tag for an OCI layout', { object: tag });
  const indexPath = join(layoutDir, 'index.json');
  let index: LayoutIndex;
  try {
    index = JSON.parse(await readFile(indexPath, 'utf8')) as LayoutIndex;
  } catch (err) {
    throw new ClipError('ECORRUPT', 'cannot read index.json of the OCI layout', { object: layoutDir, cause: err });
  }
  const manifests = index.manifests.filter((d) => d.annotations?.[REF_NAME] !== tag);
  const { annotations, ...rest } = descriptor;
  manifests.push({ ...rest, annotations: { ...annotations, [REF_NAME]: tag } });
  await writeFileAtomic(indexPath, JSON.stringify({ schemaVersion: 2, mediaType: OCI.index, manifests }));
}
