// A multi-queue block device (block/blk-mq.c, blk-merge.c, blk-core.c), reduced to one hardware queue:
// bios are checked against the device size, split to the queue limits, turned into requests when a
// tag is free, handed to the driver's queue_rq, and completed with per-request status.
//
//   submit_bio(bio) -> bio_check_eod -> split to limits (max sectors, max segments, segment size,
//                      virt boundary gaps) -> one request per piece (no merging: direct I/O)
//                   -> tag free? queue_rq(rq): OK (driver completes later) | RESOURCE (re-run in 3 ms)
//                                              | other status: end the request now
//   blk_mq_end_request(rq, status) -> "<status> error, dev ..." on failure -> bio_endio per bio
//
// The driver completes requests from its interrupt path (blkMqEndRequest). Virtual time comes from
// the engine the kernel shares with the hardware.

import type { Engine } from '../../sim/engine.js';
import type { MmState } from '../mm/mm.js';
import type { KernelLog } from '../printk.js';
import {
  type Bio,
  type BioSeg,
  type BioTarget,
  bioEndio,
  bioSegs,
  bioSplit,
  REQ_OP_NAME,
  REQ_OP_VALUE,
  type ReqOp,
  SECTOR_SHIFT,
} from './bio.js';
import { type BlkStatus, blkStatusToStr } from './blk-status.js';

/** `struct queue_limits`, the part direct I/O and NVMe use. */
export interface QueueLimits {
  readonly logicalBlockSize: number;
  /** `max_hw_sectors` (512-byte units). */
  readonly maxHwSectors: number;
  /** `max_sectors`: the soft limit, min(max_hw_sectors, BLK_DEF_MAX_SECTORS_CAP). */
  readonly maxSectors: number;
  readonly maxSegments: number;
  readonly maxSegmentSize: number;
  /** `seg_boundary_mask`. */
  readonly segBoundaryMask: bigint;
  /** `virt_boundary_mask`: 0 for none; segments must not leave gaps inside (mask + 1) pages. */
  readonly virtBoundaryMask: number;
  /** `dma_alignment`. */
  readonly dmaAlignment: number;
  /** BLK_FEAT_PCI_P2PDMA. */
  readonly pciP2pdma: boolean;
}

/** `BLK_DEF_MAX_SECTORS_CAP`: 2560 sectors (1280 KiB). */
export const BLK_DEF_MAX_SECTORS_CAP = 2560;
/** `BLK_MQ_RESOURCE_DELAY`: re-run a queue 3 ms after BLK_STS_RESOURCE. */
export const BLK_MQ_RESOURCE_DELAY_NS = 3_000_000;

/** `struct request`. */
export interface Request {
  readonly q: RequestQueue;
  readonly bio: Bio;
  readonly op: ReqOp;
  /** `cmd_flags` without the op. */
  readonly cmdFlags: number;
  /** `__sector`. */
  readonly sector: number;
  /** `__data_len`. */
  readonly dataLen: number;
  /** `nr_phys_segments`. */
  readonly nrPhysSegments: number;
  tag: number;
  /** The driver's per-request data (`blk_mq_rq_to_pdu`). */
  pdu: unknown;
  readonly submitNs: number;
}

/** `struct blk_mq_ops`, the part the model uses. */
export interface BlkMqOps {
  /** `queue_rq`: issue the request; 'ok' means the driver will end it later. */
  queueRq(rq: Request): BlkStatus;
}

/** Counters of a queue. */
export interface QueueStats {
  requests: number;
  bytes: number;
  errors: number;
  splits: number;
  requeues: number;
}

/** A request queue with its disk. */
export interface RequestQueue extends BioTarget {
  readonly limits: QueueLimits;
  readonly ops: BlkMqOps;
  /** Tags (queue depth). */
  readonly depth: number;
  /** Device size in 512-byte sectors. */
  readonly capacitySectors: number;
  readonly engine: Engine;
  readonly log: KernelLog;
  readonly kmm: MmState;
  readonly freeTags: number[];
  readonly waiting: Bio[];
  readonly stats: QueueStats;
}

export interface QueueSpec {
  readonly name: string;
  readonly limits: QueueLimits;
  readonly ops: BlkMqOps;
  readonly depth: number;
  readonly capacitySectors: number;
  readonly engine: Engine;
  readonly log: KernelLog;
  readonly kmm: MmState;
}

/** `blk_mq_alloc_disk()`: a queue with `depth` tags. */
export function blkMqAllocQueue(s: QueueSpec): RequestQueue {
  return {
    ...s,
    logicalBlockSize: s.limits.logicalBlockSize,
    dmaAlignment: s.limits.dmaAlignment,
    pciP2pdma: s.limits.pciP2pdma,
    freeTags: Array.from({ length: s.depth }, (_, i) => s.depth - 1 - i),
    waiting: [],
    stats: { requests: 0, bytes: 0, errors: 0, splits: 0, requeues: 0 },
  };
}

/** `biovec_phys_mergeable()` plus the segment size: may `b` extend the segment ending in `a`? */
function physMergeable(lim: QueueLimits, segStart: bigint, segLen: number, b: BioSeg): boolean {
  const end = segStart + BigInt(segLen);
  const bStart = (BigInt(b.page.pfn) << 12n) + BigInt(b.offset);
  if (end !== bStart || segLen + b.len > lim.maxSegmentSize) return false;
  const m = lim.segBoundaryMask;
  return (segStart | m) === ((bStart + BigInt(b.len) - 1n) | m);
}

/** `bvec_gap_to_prev()`: would `b` after a segment ending at `prevEnd` leave a virt-boundary gap? */
function gapToPrev(lim: QueueLimits, prevEnd: bigint, b: BioSeg): boolean {
  if (lim.virtBoundaryMask === 0) return false;
  const mask = BigInt(lim.virtBoundaryMask);
  return (BigInt(b.offset) & mask) !== 0n || (prevEnd & mask) !== 0n;
}

/**
 * `bio_split_rw_at()`: how many bytes of the bio fit one request (max sectors, max segments,
 * virt-boundary gaps), and how many physical segments those bytes form.
 */
export function bioSplitRwAt(q: RequestQueue, bio: Bio): { bytes: number; nsegs: number } {
  const lim = q.limits;
  const maxBytes = Math.floor((lim.maxSectors << SECTOR_SHIFT) / lim.logicalBlockSize) * lim.logicalBlockSize;
  let bytes = 0;
  let nsegs = 0;
  let segStart = -1n;
  let segLen = 0;
  for (const s of bioSegs(bio)) {
    const phys = (BigInt(s.page.pfn) << 12n) + BigInt(s.offset);
    if (bytes > 0 && gapToPrev(lim, segStart + BigInt(segLen), s)) break;
    let take = Math.min(s.len, maxBytes - bytes);
    if (nsegs > 0 && physMergeable(lim, segStart, segLen, { ...s, len: take })) segLen += take;
    else {
      if (nsegs >= lim.maxSegments) break;
      take = Math.min(take, lim.maxSegmentSize);
      nsegs++;
      segStart = phys;
      segLen = take;
    }
    bytes += take;
    if (take < s.len || bytes >= maxBytes) break;
  }
  const aligned = bytes - (bytes % lim.logicalBlockSize);
  return { bytes: aligned === 0 ? bytes : aligned, nsegs: Math.max(nsegs, 1) };
}

/** Give the next waiting bio a tag and issue it. */
function dispatch(q: RequestQueue): void {
  while (q.freeTags.length > 0 && q.waiting.length > 0) {
    const bio = q.waiting.shift()!;
    const { nsegs } = bioSplitRwAt(q, bio);
    const rq: Request = {
      q,
      bio,
      op: bio.op,
      cmdFlags: bio.opf,
      sector: bio.sector,
      dataLen: bio.size,
      nrPhysSegments: nsegs,
      tag: q.freeTags.pop()!,
      pdu: null,
      submitNs: q.engine.nowNs,
    };
    q.stats.requests++;
    issue(rq);
  }
}

function issue(rq: Request): void {
  const st = rq.q.ops.queueRq(rq);
  if (st === 'ok') return;
  if (st === 'resource' || st === 'dev-resource') {
    rq.q.stats.requeues++;
    rq.q.engine.schedule(BLK_MQ_RESOURCE_DELAY_NS, () => issue(rq));
    return;
  }
  blkMqEndRequest(rq, st);
}

/** `bio_check_eod()`: the kernel's message for an access past the end. @returns false when past it. */
function bioCheckEod(q: RequestQueue, bio: Bio): boolean {
  const nr = bio.size >> SECTOR_SHIFT;
  if (bio.sector + nr <= q.capacitySectors) return true;
  q.log.printk('info', 'attempt to access beyond end of device');
  q.log.printk(
    'info',
    `${q.name}: rw=${REQ_OP_VALUE[bio.op]}, sector=${bio.sector}, nr_sectors = ${nr} limit=${q.capacitySectors}`,
  );
  return false;
}

/**
 * `submit_bio()`: check, split to the queue limits, and queue one request per piece. Completion is
 * reported through the bio's endIo (after every piece completed).
 */
export function submitBio(q: RequestQueue, bio: Bio): void {
  if (!bioCheckEod(q, bio)) {
    bio.status = 'ioerr';
    bioEndio(bio);
    return;
  }
  for (;;) {
    const { bytes } = bioSplitRwAt(q, bio);
    if (bytes >= bio.size) break;
    q.stats.splits++;
    q.waiting.push(bioSplit(bio, bytes));
  }
  q.waiting.push(bio);
  dispatch(q);
}

/**
 * `blk_mq_end_request()`: finish a request with `status`, printing the kernel's error line on
 * failure (`blk_print_req_error`), complete its bio, free the tag and issue waiting bios.
 */
export function blkMqEndRequest(rq: Request, status: BlkStatus): void {
  const q = rq.q;
  if (status !== 'ok') {
    q.stats.errors++;
    q.log.printk(
      'err',
      `${blkStatusToStr(status)} error, dev ${q.name}, sector ${rq.sector} op 0x${REQ_OP_VALUE[rq.op].toString(16)}:(${REQ_OP_NAME[rq.op]}) flags 0x${rq.cmdFlags.toString(16)} phys_seg ${rq.nrPhysSegments} prio class 0`,
    );
  } else q.stats.bytes += rq.dataLen;
  if (status !== 'ok') rq.bio.status = status;
  q.freeTags.push(rq.tag);
  bioEndio(rq.bio);
  dispatch(q);
}
