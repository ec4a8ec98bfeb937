/**
 * One error type for everything clip reports to a user. `code` is stable for scripts and tests;
 * `object` names the thing at fault (an image reference, a layer digest, a path, a file).
 */
export type ErrorCode =
  | 'EINVAL' // bad argument or reference
  | 'ENOTFOUND' // manifest, blob, path or file that does not exist
  | 'EAUTH' // 401/403 or missing credentials
  | 'ENETWORK' // registry or cache unreachable after retries
  | 'EDIGEST' // bytes that do not match their recorded digest
  | 'ECORRUPT' // malformed gzip, tar, manifest or index file
  | 'EUNSUPPORTED' // a media type, tar feature or platform clip does not handle
  | 'EUNSAFE' // a path that would escape its root
  | 'ETIMEOUT'
  | 'EPERM'
  | 'EIO' // a local file system call failed (full disk, name too long, I/O error)
  | 'ENOINDEX'; // an image with no index published, shared or cached, where indexing was not allowed

export class ClipError extends Error {
  readonly code: ErrorCode;
  readonly object: string | undefined;

  constructor(code: ErrorCode, message: string, opts: { object?: string; cause?: unknown } = {}) {
    super(opts.object ? `${opts.object}: ${message}` : message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ClipError';
    this.code = code;
    this.object = opts.object;
  }
}

export function isClipError(err: unknown, code?: ErrorCode): err is ClipError {
  return err instanceof ClipError && (code === undefined || err.code === code);
}
