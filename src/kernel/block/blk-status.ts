// Block-layer completion status (`blk_status_t`, include/linux/blk_types.h) and its errno and name
// table (block/blk-core.c `blk_errors[]`, `blk_status_to_errno()`, `errno_to_blk_status()`,
// `blk_status_to_str()`), newest mainline.
//
//   driver: dma_map_sgtable -EREMOTEIO -> BLK_STS_TARGET -> the user sees -EREMOTEIO ("critical target")
//   blk_rq_dma_map_iter_start: P2P NOT_SUPPORTED -> BLK_STS_INVAL -> the user sees -EINVAL ("invalid")

import type { Errno } from '../errno.js';

export type BlkStatus =
  | 'ok'
  | 'notsupp'
  | 'timeout'
  | 'nospc'
  | 'transport'
  | 'target'
  | 'resv-conflict'
  | 'medium'
  | 'protection'
  | 'resource'
  | 'dev-resource'
  | 'again'
  | 'offline'
  | 'duration-limit'
  | 'inval'
  | 'ioerr';

interface BlkErrorEntry {
  readonly errno: Errno | null;
  /** `blk_status_to_str()`: the word before " error" in the kernel log. */
  readonly name: string;
  /** The macro, for reports. */
  readonly macro: string;
}

/** `blk_errors[]` (the zone and dm-internal entries are left out). */
export const BLK_ERRORS: Readonly<Record<BlkStatus, BlkErrorEntry>> = {
  ok: { errno: null, name: '', macro: 'BLK_STS_OK' },
  notsupp: { errno: 'EOPNOTSUPP', name: 'operation not supported', macro: 'BLK_STS_NOTSUPP' },
  timeout: { errno: 'ETIMEDOUT', name: 'timeout', macro: 'BLK_STS_TIMEOUT' },
  nospc: { errno: 'ENOSPC', name: 'critical space allocation', macro: 'BLK_STS_NOSPC' },
  transport: { errno: 'ENOLINK', name: 'recoverable transport', macro: 'BLK_STS_TRANSPORT' },
  target: { errno: 'EREMOTEIO', name: 'critical target', macro: 'BLK_STS_TARGET' },
  'resv-conflict': { errno: 'EBADE', name: 'reservation conflict', macro: 'BLK_STS_RESV_CONFLICT' },
  medium: { errno: 'ENODATA', name: 'critical medium', macro: 'BLK_STS_MEDIUM' },
  protection: { errno: 'EILSEQ', name: 'protection', macro: 'BLK_STS_PROTECTION' },
  resource: { errno: 'ENOMEM', name: 'kernel resource', macro: 'BLK_STS_RESOURCE' },
  'dev-resource': { errno: 'EBUSY', name: 'device resource', macro: 'BLK_STS_DEV_RESOURCE' },
  again: { errno: 'EAGAIN', name: 'nonblocking retry', macro: 'BLK_STS_AGAIN' },
  offline: { errno: 'ENODEV', name: 'device offline', macro: 'BLK_STS_OFFLINE' },
  'duration-limit': { errno: 'ETIME', name: 'duration limit exceeded', macro: 'BLK_STS_DURATION_LIMIT' },
  inval: { errno: 'EINVAL', name: 'invalid', macro: 'BLK_STS_INVAL' },
  ioerr: { errno: 'EIO', name: 'I/O', macro: 'BLK_STS_IOERR' },
};

/** `blk_status_to_errno()`: null for BLK_STS_OK. */
export const blkStatusToErrno = (s: BlkStatus): Errno | null => BLK_ERRORS[s].errno;

/** `blk_status_to_str()`. */
export const blkStatusToStr = (s: BlkStatus): string => BLK_ERRORS[s].name;

/** `errno_to_blk_status()`: the first entry with that errno, BLK_STS_IOERR when none has it. */
export function errnoToBlkStatus(e: Errno | null): BlkStatus {
  if (e === null) return 'ok';
  for (const [s, v] of Object.entries(BLK_ERRORS)) if (v.errno === e) return s as BlkStatus;
  return 'ioerr';
}
