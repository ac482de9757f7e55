// Kernel error numbers as string literals, and the result type every kernel-model entry point returns.
//
// The model never returns a bare negative number: a failure is `{ ok: false, errno: 'EREMOTEIO' }`, so
// a reader sees the name the kernel documents and the type checker sees a closed set.

/** Linux errno values (asm-generic/errno-base.h and errno.h) used by the model. */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  EDEADLK: 35,
  ENOSYS: 38,
  EBADE: 52,
  ENODATA: 61,
  ETIME: 62,
  ENOLINK: 67,
  EOVERFLOW: 75,
  EILSEQ: 84,
  EOPNOTSUPP: 95,
  ETIMEDOUT: 110,
  EALREADY: 114,
  EREMOTEIO: 121,
  ECANCELED: 125,
  ERESTARTSYS: 512,
} as const;

export type Errno = keyof typeof ERRNO;

/** Successful kernel result carrying a value. */
export interface Ok<T> {
  readonly ok: true;
  readonly value: T;
}

/** Failed kernel result: the errno name and a sentence saying why (for reports, not for logic). */
export interface Err {
  readonly ok: false;
  readonly errno: Errno;
  readonly detail: string;
}

export type KResult<T> = Ok<T> | Err;

export const ok = <T>(value: T): Ok<T> => ({ ok: true, value });
export const err = (errno: Errno, detail = ''): Err => ({ ok: false, errno, detail });

/** The negative number the kernel would return for this errno (`-EREMOTEIO` is -121). */
export const negErrno = (e: Errno): number => -ERRNO[e];

/** Name of a negative (or positive) errno number, if it is one the model knows. */
export const errnoName = (n: number): Errno | undefined => {
  const v = Math.abs(n);
  for (const [k, x] of Object.entries(ERRNO)) if (x === v) return k as Errno;
  return undefined;
};
