// O_DIRECT read and write on a block device (block/fops.c `blkdev_direct_IO()` and its three
// bodies): user buffers are pinned straight into bios, no page cache.
//
//   blkdev_direct_IO(iocb, iter)
//     count 0 -> 0;  pos or a buffer misaligned (logical block size / DMA alignment) -> -EINVAL
//     pages <= BIO_MAX_VECS: one bio  (__blkdev_direct_IO_simple, or _async for AIO)
//         bio_iov_iter_get_pages error -> that errno; the bio may come back SHORT (a P2P/normal or
//         provider boundary inside the buffer): the call then transfers less than asked
//     more pages: a bio after another until the iterator is empty (__blkdev_direct_IO); a pinning
//         error ends the loop and is returned; otherwise the first failed bio's status decides
//   completion: pages unpinned (bio_release_pages), result = bytes or blk_status_to_errno(status)
//
// Every call completes through `iocb.complete(result)`, also the synchronous ones: the model's
// processes wait on the engine, so a sync read is an async one whose caller waits.

import type { Errno } from '../errno.js';
import {
  BIO_MAX_VECS,
  type Bio,
  bioAlloc,
  bioIovIterGetPages,
  bioReleasePages,
  REQ_IDLE,
  REQ_SYNC,
  SECTOR_SHIFT,
} from './bio.js';
import { type RequestQueue, submitBio } from './blk-mq.js';
import { type BlkStatus, blkStatusToErrno } from './blk-status.js';
import { type IovIter, iovIterIsAligned, iovIterNpages } from './iov-iter.js';

/** The result of a direct I/O: bytes moved, or the errno the system call returns. */
export type DioResult =
  | { readonly ok: true; readonly bytes: number }
  | { readonly ok: false; readonly errno: Errno; readonly detail: string };

/** `struct kiocb`, the part direct I/O uses. */
export interface Kiocb {
  /** `ki_pos`: byte offset on the device. */
  readonly pos: number;
  /** `ki_complete` (AIO) or the waiting task's wake-up (sync). */
  readonly complete: (r: DioResult) => void;
}

/** `dio_bio_write_op()`: REQ_OP_WRITE | REQ_SYNC | REQ_IDLE. */
const WRITE_FLAGS = REQ_SYNC | REQ_IDLE;

function fail(errno: Errno, detail: string): DioResult {
  return { ok: false, errno, detail };
}

/** The shared completion of a dio: the first bio error wins, else the byte count. */
interface Dio {
  readonly iocb: Kiocb;
  size: number;
  refs: number;
  status: BlkStatus;
  /** An error from building bios (returned instead of the status). */
  buildError: DioResult | null;
}

function dioPut(dio: Dio): void {
  if (--dio.refs > 0) return;
  if (dio.buildError !== null) return dio.iocb.complete(dio.buildError);
  const e = blkStatusToErrno(dio.status);
  dio.iocb.complete(
    e === null ? { ok: true, bytes: dio.size } : fail(e, `I/O completed with BLK_STS ${dio.status}`),
  );
}

/** `blkdev_bio_end_io()`: record the status, unpin, drop the dio reference. */
function endIo(bio: Bio): void {
  const dio = bio.priv as Dio;
  if (bio.status !== 'ok' && dio.status === 'ok') dio.status = bio.status;
  bioReleasePages(bio);
  dioPut(dio);
}

/**
 * `blkdev_direct_IO()`: read (iter.dest) or write `iter`'s buffers at `iocb.pos` of `q`'s device.
 * @returns through iocb.complete: the bytes transferred (possibly fewer than asked when the buffer
 *   mixes memory kinds and fits one bio), or EINVAL (misaligned position or buffer), EFAULT, ENOMEM,
 *   EREMOTEIO (pinning), or the completion status as errno (EREMOTEIO for BLK_STS_TARGET, EINVAL for
 *   BLK_STS_INVAL, EIO for BLK_STS_IOERR, ...).
 */
export function blkdevDirectIO(q: RequestQueue, iocb: Kiocb, iter: IovIter): void {
  if (iter.count === 0) return iocb.complete({ ok: true, bytes: 0 });
  const lbs = q.limits.logicalBlockSize;
  if (iocb.pos % lbs !== 0 || !iovIterIsAligned(iter, q.limits.dmaAlignment, lbs - 1))
    return iocb.complete(fail('EINVAL', 'position or buffer not aligned for O_DIRECT'));
  const nrPages = iovIterNpages(iter, BIO_MAX_VECS + 1);
  const op = iter.dest ? 'read' : 'write';
  const dio: Dio = { iocb, size: 0, refs: 1, status: 'ok', buildError: null };
  let pos = iocb.pos;
  let pages = Math.min(nrPages, BIO_MAX_VECS);
  for (;;) {
    const bio = bioAlloc(q, pages, op, op === 'write' ? WRITE_FLAGS : 0);
    bio.sector = pos >> SECTOR_SHIFT;
    bio.priv = dio;
    bio.endIo = endIo;
    const r = bioIovIterGetPages(bio, iter);
    if (!r.ok) {
      // The simple path returns the error; the multi-bio path fails this bio with BLK_STS_IOERR but
      // still returns the pinning error.
      dio.buildError = fail(r.errno, r.detail);
      break;
    }
    dio.size += bio.size;
    pos += bio.size;
    dio.refs++;
    const more = nrPages > BIO_MAX_VECS && iter.count > 0;
    submitBio(q, bio);
    if (!more) break;
    pages = Math.min(iovIterNpages(iter, BIO_MAX_VECS), BIO_MAX_VECS);
  }
  dioPut(dio);
}
