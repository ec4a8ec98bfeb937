/** Linux errno values a filesystem may answer with (FUSE replies carry them negated). */
export const Errno = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  ENOTDIR: 20,
  EISDIR: 21,
  ENOTTY: 25,
  EINVAL: 22,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
  EINTR: 4,
  EPROTO: 71,
} as const;

export type ErrnoName = keyof typeof Errno;

/**
 * The error a filesystem operation throws to answer the kernel with an errno. Anything else thrown
 * becomes EIO (and is logged), so that a bug never leaves a request unanswered.
 */
export class FuseErrno extends Error {
  readonly errno: number;

  constructor(errno: number | ErrnoName, message?: string) {
    const value = typeof errno === 'number' ? errno : Errno[errno];
    const name = errnoName(value);
    super(message ? `${name}: ${message}` : name);
    this.name = 'FuseErrno';
    this.errno = value;
  }
}

export function errnoName(value: number): string {
  for (const [name, v] of Object.entries(Errno)) if (v === value) return name;
  return `errno ${value}`;
}

/** Map an error from Node (which carries `code: 'ENOENT'` and the like) or a FuseErrno to an errno. */
export function toErrno(err: unknown): number | undefined {
  if (err instanceof FuseErrno) return err.errno;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code in Errno) return Errno[code as ErrnoName];
  return undefined;
}
