// The flush queue of lazy (DMA-FQ) IOMMU domains, drivers/iommu/dma-iommu.c: unmapped IOVAs wait here
// until one IOTLB flush covers them all, then go back to the IOVA allocator.
//
//   unmap (lazy): page table cleared, IOTLB NOT invalidated --> queue_iova(pfn, pages, counter = start_cnt)
//   ring per CPU (256 entries, one slot kept empty):  [head ... tail)
//     reap:  entries with counter < finish_cnt are safe (a flush started after they were queued ended)
//     full:  flush now (start_cnt++, flush_iotlb_all, finish_cnt++), reap
//     timer: 10 ms after the first queueing: flush once, reap every CPU's ring
//   Until the flush the device may still reach the old pages through stale IOTLB entries: the window
//   lazy mode trades for speed (visible as `staleHits` in the hardware IOTLB).
//
// Constants: per-CPU IOVA_DEFAULT_FQ_SIZE 256 / IOVA_DEFAULT_FQ_TIMEOUT 10 ms; one global queue for
// IOMMUs whose flushes shadow the page tables, IOVA_SINGLE_FQ_SIZE 32768 / IOVA_SINGLE_FQ_TIMEOUT 1000 ms
// (newest only; 6.1 spells the per-CPU pair IOVA_FQ_SIZE / IOVA_FQ_TIMEOUT). The timer runs on the sim
// engine's virtual clock; msecs_to_jiffies() rounding is not modelled (HZ=1000).

export const IOVA_DEFAULT_FQ_SIZE = 256;
export const IOVA_DEFAULT_FQ_TIMEOUT_MS = 10;
export const IOVA_SINGLE_FQ_SIZE = 32768;
export const IOVA_SINGLE_FQ_TIMEOUT_MS = 1000;

/** `enum iommu_dma_queue_type`. */
export type FqQueueType = 'per-cpu' | 'single';

/** One ring (`struct iova_fq`), entries as parallel typed arrays. */
export interface IovaFq {
  head: number;
  tail: number;
  readonly modMask: number;
  readonly pfn: Float64Array;
  readonly pages: Float64Array;
  readonly counter: Float64Array;
}

/** Something that runs a callback after a virtual delay (the sim Engine fits). */
export interface FqScheduler {
  schedule(delayNs: number, fn: () => void): unknown;
}

export interface FlushQueueStats {
  /** IOTLB flushes issued by the queue (full ring or timer). */
  flushes: number;
  /** Flushes forced by a full ring. */
  fullFlushes: number;
  /** Timer expiries. */
  timeouts: number;
  /** IOVAs returned to the allocator after a flush. */
  freed: number;
  queued: number;
}

/** The flush-queue half of `struct iommu_dma_cookie`. */
export interface FlushQueue {
  readonly type: FqQueueType;
  readonly size: number;
  readonly timeoutMs: number;
  readonly rings: IovaFq[];
  /** `fq_flush_start_cnt` / `fq_flush_finish_cnt`. */
  startCnt: number;
  finishCnt: number;
  /** `fq_timer_on`. */
  timerOn: boolean;
  /** `flush_iotlb_all` of the domain. */
  readonly flushIotlbAll: () => void;
  /** `free_iova_fast()` into the allocator (on the CPU doing the reaping). */
  readonly freeIova: (pfn: number, pages: number, cpu: number) => void;
  readonly scheduler: FqScheduler;
  /** The CPU that runs the timer callback (the one that armed it). */
  timerCpu: number;
  readonly stats: FlushQueueStats;
}

function newRing(size: number): IovaFq {
  return {
    head: 0,
    tail: 0,
    modMask: size - 1,
    pfn: new Float64Array(size),
    pages: new Float64Array(size),
    counter: new Float64Array(size),
  };
}

export interface FlushQueueOptions {
  readonly type: FqQueueType;
  readonly nrCpus: number;
  readonly flushIotlbAll: () => void;
  readonly freeIova: (pfn: number, pages: number, cpu: number) => void;
  readonly scheduler: FqScheduler;
}

/** `iommu_dma_init_fq()` with the options of `iommu_dma_init_options()`: counters at 0, empty rings. */
export function iommuDmaInitFq(o: FlushQueueOptions): FlushQueue {
  const single = o.type === 'single';
  const size = single ? IOVA_SINGLE_FQ_SIZE : IOVA_DEFAULT_FQ_SIZE;
  return {
    type: o.type,
    size,
    timeoutMs: single ? IOVA_SINGLE_FQ_TIMEOUT_MS : IOVA_DEFAULT_FQ_TIMEOUT_MS,
    rings: Array.from({ length: single ? 1 : o.nrCpus }, () => newRing(size)),
    startCnt: 0,
    finishCnt: 0,
    timerOn: false,
    flushIotlbAll: o.flushIotlbAll,
    freeIova: o.freeIova,
    scheduler: o.scheduler,
    timerCpu: 0,
    stats: { flushes: 0, fullFlushes: 0, timeouts: 0, freed: 0, queued: 0 },
  };
}

/** `fq_full()`: one slot stays empty so that head == tail means empty. */
export const fqFull = (r: IovaFq): boolean => ((r.tail + 1) & r.modMask) === r.head;

/** Entries waiting in a ring. */
export const fqLength = (r: IovaFq): number => (r.tail - r.head) & r.modMask;

/** `fq_ring_free_locked()`: give back every entry a finished flush covers, oldest first. */
export function fqRingFree(fq: FlushQueue, r: IovaFq, cpu: number): void {
  const finish = fq.finishCnt;
  while (r.head !== r.tail) {
    const i = r.head;
    if (r.counter[i]! >= finish) break;
    fq.freeIova(r.pfn[i]!, r.pages[i]!, cpu);
    fq.stats.freed++;
    r.head = (r.head + 1) & r.modMask;
  }
}

/** `fq_flush_iotlb()`: one whole-domain IOTLB invalidation, bracketed by the two counters. */
export function fqFlushIotlb(fq: FlushQueue): void {
  fq.startCnt++;
  fq.flushIotlbAll();
  fq.finishCnt++;
  fq.stats.flushes++;
}

/** `fq_flush_timeout()`: flush once, then reap every ring. */
export function fqFlushTimeout(fq: FlushQueue): void {
  fq.timerOn = false;
  fq.stats.timeouts++;
  fqFlushIotlb(fq);
  for (const r of fq.rings) fqRingFree(fq, r, fq.timerCpu);
}

/**
 * `queue_iova()`: defer freeing [pfn, pfn + pages) until the IOTLB is flushed; reap what earlier
 * flushes allow first, flush at once when the ring is still full, and arm the timer if it is off.
 */
export function queueIova(fq: FlushQueue, pfn: number, pages: number, cpu: number): void {
  const r = fq.type === 'single' ? fq.rings[0]! : fq.rings[cpu % fq.rings.length]!;
  fqRingFree(fq, r, cpu);
  if (fqFull(r)) {
    fq.stats.fullFlushes++;
    fqFlushIotlb(fq);
    fqRingFree(fq, r, cpu);
  }
  const i = r.tail;
  r.tail = (i + 1) & r.modMask;
  r.pfn[i] = pfn;
  r.pages[i] = pages;
  r.counter[i] = fq.startCnt;
  fq.stats.queued++;
  if (!fq.timerOn) {
    fq.timerOn = true;
    fq.timerCpu = cpu;
    fq.scheduler.schedule(fq.timeoutMs * 1_000_000, () => fqFlushTimeout(fq));
  }
}

/** IOVAs waiting in all rings (reports and checkers). */
export const fqPending = (fq: FlushQueue): number => fq.rings.reduce((n, r) => n + fqLength(r), 0);
