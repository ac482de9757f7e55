// One simulated kernel instance as dma-buf sees it: the kernel profile, the engine that gives virtual time
// and runs tasks, the fence context counter, the stub fence, the reservation ww class and a sink for the
// kernel's WARN/lockdep reports.
//
// The kernel keeps these as globals (dma_fence_context_counter and dma_fence_stub in
// drivers/dma-buf/dma-fence.c, reservation_ww_class in drivers/dma-buf/dma-resv.c); the model keeps one
// `DmaBufWorld` per simulated machine so that tests and runs stay independent.

import { Engine } from '../../sim/engine.js';
import { DEFAULT_KERNEL, type KernelVersion } from '../profile.js';
import type { DmaFence } from './dma-fence.js';
import { type KTaskOp, type KThread, kthreadCreate } from './sched.js';
import type { WwClass } from './ww-mutex.js';

/** Which kernel the world behaves like: Linux 6.1 (the oracle kernel) or mainline as of 2026. */
export type DmaBufProfile = KernelVersion;

/**
 * What differs between the kernels for dma-buf. Model code reads these facts; it never asks which
 * kernel it runs on.
 */
export interface DmaBufFacts {
  /** dma_fence_signal() returns int, -EINVAL when already signaled (6.1); void in 7.0. */
  readonly signalReturnsInt: boolean;
  /** Signaling drops `fence->ops` when they have neither release nor wait ("detach fence ops on signal", 7.0). */
  readonly detachOpsOnSignal: boolean;
  /** dma_fence_driver_name()/timeline_name() answer "detached-driver"/"signaled-timeline" once signaled. */
  readonly placeholderNamesWhenSignaled: boolean;
  /** dma_fence_allocate_private_stub() takes a timestamp and sets ENABLE_SIGNAL on the new fence (6.3/6.5). */
  readonly privateStubTimestamp: boolean;
  /** dma_fence_unwrap_merge() of only signaled fences returns a private stub with their latest timestamp. */
  readonly mergeReturnsPrivateStub: boolean;
  /** dma_buf_map_attachment() wants the resv lock from every importer (6.2+); 6.1 only from dynamic ones. */
  readonly dmabufMapLockedForAll: boolean;
  /**
   * 6.1's sg_table cache: attach pre-maps (and pins) when importer and exporter differ in dynamic-ness,
   * and ops->cache_sgt_mapping keeps the first mapping. Both were removed in 2025.
   */
  readonly dmabufSgtCache: boolean;
  /** The importer op called on moves: move_notify (required of dynamic importers) or invalidate_mappings (7.0, optional). */
  readonly dmabufInvalidateOp: 'move_notify' | 'invalidate_mappings';
  /** CONFIG_DMABUF_MOVE_NOTIFY is a build option (6.1, default n); 7.0 removed it (always on). */
  readonly dmabufMoveNotifyOptional: boolean;
  /** With CONFIG_DMA_API_DEBUG an unaligned mapping fails with -EINVAL (newest) instead of a pr_debug line. */
  readonly dmabufUnalignedMapFails: boolean;
  /** The WARN_ON condition dma_buf_pin()/dma_buf_unpin() print for a static attachment (reworded in 2025). */
  readonly dmabufPinWarnCond: string;
}

export const DMA_BUF_FACTS: Readonly<Record<KernelVersion, DmaBufFacts>> = {
  '6.1': {
    signalReturnsInt: true,
    detachOpsOnSignal: false,
    placeholderNamesWhenSignaled: false,
    privateStubTimestamp: false,
    mergeReturnsPrivateStub: false,
    dmabufMapLockedForAll: false,
    dmabufSgtCache: true,
    dmabufInvalidateOp: 'move_notify',
    dmabufMoveNotifyOptional: true,
    dmabufUnalignedMapFails: false,
    dmabufPinWarnCond: '!dma_buf_attachment_is_dynamic(attach)',
  },
  newest: {
    signalReturnsInt: false,
    detachOpsOnSignal: true,
    placeholderNamesWhenSignaled: true,
    privateStubTimestamp: true,
    mergeReturnsPrivateStub: true,
    dmabufMapLockedForAll: true,
    dmabufSgtCache: false,
    dmabufInvalidateOp: 'invalidate_mappings',
    dmabufMoveNotifyOptional: false,
    dmabufUnalignedMapFails: true,
    dmabufPinWarnCond: '!attach->importer_ops',
  },
};

/**
 * One WARN / WARN_ON / DEBUG_LOCKS_WARN_ON / lockdep report: the function and the kernel's text, and,
 * when it fired inside an entry point that records its call (see `withCall`), the offending call with
 * its arguments and the chain of calls around it, innermost first (the model's WARN backtrace).
 */
export interface KernelWarning {
  readonly func: string;
  readonly message: string;
  readonly call?: string;
  readonly backtrace?: readonly string[];
}

export interface DmaBufWorld {
  readonly profile: DmaBufProfile;
  /** The profile's facts (DMA_BUF_FACTS[profile]). */
  readonly facts: DmaBufFacts;
  readonly engine: Engine;
  /** Every kernel warning, in the order they fired; tests assert on it. */
  readonly warnings: KernelWarning[];
  /** Next value handed out by dma_fence_context_alloc(); the kernel's counter starts at 1. */
  nextFenceContext: bigint;
  /** Serial number for fences (model-only, for reports and debugging). */
  nextFenceId: number;
  /** The shared signaled stub fence (dma_fence_get_stub()), created on first use. */
  stub: DmaFence | null;
  /** `reservation_ww_class`: a wait-die class (DEFINE_WD_CLASS). */
  readonly reservationWwClass: WwClass;
  /** CONFIG_DEBUG_MUTEXES: dma_resv_unlock() shrinks max_fences to num_fences (dma_resv_reset_max_fences). */
  readonly debugMutexes: boolean;
  /** CONFIG_DMABUF_MOVE_NOTIFY where it is a build option (6.1; Kconfig default n). */
  readonly dmabufMoveNotify: boolean;
  /** CONFIG_DMA_API_DEBUG: dma_buf_map_attachment() checks that DMA segments are page aligned. */
  readonly dmaApiDebug: boolean;
  /** Lines the kernel would pr_debug()/pr_info() (not warnings). */
  readonly log: string[];
  /** WARN_ON_ONCE sites that fired already (function + condition). */
  readonly warnedOnce: Set<string>;
  /** The context that runs when no task does (test bodies, engine events such as irq_work). */
  readonly mainThread: KThread;
  /** The thread whose code runs right now (`current`); set by the kthread wrapper in sched.ts. */
  current: KThread;
}

export interface DmaBufWorldOptions {
  readonly profile?: DmaBufProfile;
  readonly engine?: Engine;
  /** Seed for a new engine when none is given. */
  readonly seed?: number;
  readonly debugMutexes?: boolean;
  readonly dmabufMoveNotify?: boolean;
  readonly dmaApiDebug?: boolean;
}

/** Create a world: the default kernel ('newest') unless told, a fresh engine unless one is given. */
export function createDmaBufWorld(opts: DmaBufWorldOptions = {}): DmaBufWorld {
  const engine = opts.engine ?? new Engine(opts.seed ?? 1);
  const profile = opts.profile ?? DEFAULT_KERNEL;
  const partial = {
    profile,
    facts: DMA_BUF_FACTS[profile],
    engine,
    warnings: [],
    nextFenceContext: 1n,
    nextFenceId: 1,
    stub: null,
    reservationWwClass: { name: 'reservation_ww_class', isWaitDie: true, stamp: 0 },
    debugMutexes: opts.debugMutexes ?? true,
    dmabufMoveNotify: opts.dmabufMoveNotify ?? false,
    dmaApiDebug: opts.dmaApiDebug ?? false,
    log: [],
    warnedOnce: new Set<string>(),
  };
  const world = partial as unknown as DmaBufWorld & { mainThread: KThread; current: KThread };
  world.mainThread = kthreadCreate(world, 'main');
  world.current = world.mainThread;
  return world;
}

/** Record a kernel warning (the model reports WARN-level rules, it never throws for them). */
export function warn(world: DmaBufWorld, func: string, message: string): void {
  const calls = world.current.calls;
  if (calls.length === 0) world.warnings.push({ func, message });
  else world.warnings.push({ func, message, call: calls.at(-1)!, backtrace: [...calls].reverse() });
}

/**
 * Run `fn` as the call `text` (a function name with its arguments, e.g.
 * `dma_buf_unpin(attach=mlx5_0:gpu-bo0)`): warnings raised inside name it, as a WARN backtrace would.
 */
export function withCall<T>(world: DmaBufWorld, text: string, fn: () => T): T {
  const calls = world.current.calls;
  calls.push(text);
  try {
    return fn();
  } finally {
    calls.pop();
  }
}

/** `withCall` for a task operation: the call stays recorded on this thread across its sleeps. */
export function* withCallOp<T>(world: DmaBufWorld, text: string, op: KTaskOp<T>): KTaskOp<T> {
  const calls = world.current.calls;
  calls.push(text);
  try {
    return yield* op;
  } finally {
    calls.pop();
  }
}

/** WARN_ON(cond): record `WARN_ON(<text>)` when cond holds; returns cond like the kernel macro. */
export function warnOn(world: DmaBufWorld, cond: boolean, func: string, text: string): boolean {
  if (cond) warn(world, func, `WARN_ON(${text})`);
  return cond;
}

/** WARN_ON_ONCE(cond): as warnOn, reported the first time the site fires in this world only. */
export function warnOnOnce(world: DmaBufWorld, cond: boolean, func: string, text: string): boolean {
  if (!cond) return false;
  const site = `${func}:${text}`;
  if (!world.warnedOnce.has(site)) {
    world.warnedOnce.add(site);
    warn(world, func, `WARN_ON_ONCE(${text})`);
  }
  return true;
}

/** DEBUG_LOCKS_WARN_ON(cond): the locking debug check, reported with the kernel's prefix. */
export function debugLocksWarnOn(world: DmaBufWorld, cond: boolean, func: string, text: string): boolean {
  if (cond) warn(world, func, `DEBUG_LOCKS_WARN_ON(${text})`);
  return cond;
}

/**
 * irq_work_queue(): run `fn` from the engine after the events already queued for this instant, the way
 * the kernel runs irq work shortly after the interrupt that queued it (fence arrays and chains use it).
 */
export function irqWorkQueue(world: DmaBufWorld, fn: () => void): void {
  world.engine.schedule(0, fn);
}
