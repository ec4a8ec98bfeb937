/**
 * Image references parsed and normalised as Docker does (distribution/reference), plus
 * `oci:DIR[:tag]` for a local OCI image layout.
 */
import { resolve as resolvePath } from 'node:path';
import { ClipError } from '../util/errors.js';

export const DOCKER_HUB = 'docker.io';

export interface RegistryReference {
  kind: 'registry';
  /** Registry host, with port if any: "docker.io", "ghcr.io", "127.0.0.1:5000", "[::1]:5000". */
  registry: string;
  /** Repository path inside the registry: "library/ubuntu". */
  repository: string;
  tag?: string;
  digest?: string;
}

export interface LayoutReference {
  kind: 'layout';
  /** Absolute directory of the OCI image layout. */
  dir: string;
  tag?: string;
}

export type ImageReference = RegistryReference | LayoutReference;

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const SHA256 = /^sha256:[a-f0-9]{64}$/;
const HOST_LABEL = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^(?:${HOST_LABEL}(?:\\.${HOST_LABEL})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const MAX_NAME = 255;

function invalid(ref: string, why: string): ClipError {
  return new ClipError('EINVAL', `invalid image reference: ${why}`, { object: ref });
}

/** Parse `ubuntu`, `ghcr.io/o/r:tag`, `host:5000/r@sha256:...`, `r:tag@sha256:...` or `oci:DIR[:tag]`. */
export function parseReference(ref: string): ImageReference {
  if (ref.startsWith('oci:')) return parseLayoutReference(ref);
  return parseRegistryReference(ref);
}

function parseLayoutReference(ref: string): LayoutReference {
  // Like skopeo's oci: transport, the directory ends at the first colon.
  const rest = ref.slice(4);
  const colon = rest.indexOf(':');
  const dir = colon < 0 ? rest : rest.slice(0, colon);
  const tag = colon < 0 ? undefined : rest.slice(colon + 1);
  if (dir === '') throw invalid(ref, 'oci: needs a directory (oci:DIR[:tag])');
  if (tag !== undefined && (tag === '' || /[\0\n]/.test(tag))) throw invalid(ref, `bad layout tag "${tag}"`);
  return { kind: 'layout', dir: resolvePath(dir), ...(tag !== undefined ? { tag } : {}) };
}

export function parseRegistryReference(ref: string): RegistryReference {
  if (ref === '') throw invalid(ref, 'empty reference');
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw invalid(ref, `bad digest "${digest}"`);
    if (digest.startsWith('sha256:') && !SHA256.test(digest)) throw invalid(ref, `bad sha256 digest "${digest}"`);
  }
  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > rest.lastIndexOf('/')) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) throw invalid(ref, `bad tag "${tag}"`);
  }
  if (rest === '') throw invalid(ref, 'missing repository name');

  let registry = DOCKER_HUB;
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    // Docker's rule: the first component is a registry if it has a dot, a colon, is localhost, or has capitals.
    if (/[.:]/.test(first) || first === 'localhost' || first !== first.toLowerCase()) {
      registry = first;
      path = rest.slice(slash + 1);
      if (!DOMAIN.test(registry)) throw invalid(ref, `bad registry host "${registry}"`);
    }
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  if (path !== path.toLowerCase()) throw invalid(ref, 'repository name must be lowercase');
  const components = path.split('/');
  for (const c of components) {
    if (!COMPONENT.test(c)) throw invalid(ref, `bad repository component "${c}"`);
  }
  if (registry === DOCKER_HUB && components.length === 1) path = `library/${path}`;
  if (registry.length + 1 + path.length > MAX_NAME) throw invalid(ref, `repository name longer than ${MAX_NAME} characters`);
  if (tag === undefined && digest === undefined) tag = 'latest';
  return { kind: 'registry', registry, repository: path, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** "docker.io/library/ubuntu:latest", "host:5000/r:tag@sha256:...", "oci:/abs/dir:tag". */
export function formatReference(ref: ImageReference): string {
  if (ref.kind === 'layout') return `oci:${ref.dir}${ref.tag !== undefined ? `:${ref.tag}` : ''}`;
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** Where a reference's blobs live, as BlobStore.location: "host/repo" or "oci:/abs/dir". */
export function referenceLocation(ref: ImageReference): string {
  return ref.kind === 'layout' ? `oci:${ref.dir}` : `${ref.registry}/${ref.repository}`;
}

/** The tag or digest a manifest is fetched by: a pinned digest wins over the tag. */
export function manifestSelector(ref: RegistryReference): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

/** Split a location string back into its store: the inverse of referenceLocation. */
export function parseLocation(location: string): { kind: 'layout'; dir: string } | { kind: 'registry'; registry: string; repository: string } {
  if (location.startsWith('oci:')) {
    const dir = location.slice(4);
    if (!dir.startsWith('/')) throw new ClipError('EINVAL', 'layout location must be an absolute directory', { object: location });
    return { kind: 'layout', dir };
  }
  const slash = location.indexOf('/');
  if (slash <= 0) throw new ClipError('EINVAL', 'not a blob location (expected host/repository or oci:/dir)', { object: location });
  const parsed = parseRegistryReference(location);
  if (parsed.tag !== 'latest' || parsed.digest !== undefined || `${parsed.registry}/${parsed.repository}` !== location) {
    throw new ClipError('EINVAL', 'not a blob location (expected host/repository without tag)', { object: location });
  }
  return { kind: 'registry', registry: parsed.registry, repository: parsed.repository };
}
