// dma_fence: the cross-driver completion primitive (drivers/dma-buf/dma-fence.c, include/linux/dma-fence.h).
//
// A fence lives on a context (a timeline) with a seqno, signals exactly once, then runs the callbacks that
// were registered before, in registration order, and keeps an error and a timestamp from the virtual clock.
// Fence spinlocks are implicit: model code between two task yields runs atomically, which is what holding
// `fence->lock` guarantees in the kernel. Waits are in dma-fence-wait.ts, the stub fences in dma-fence-stub.ts.
//
//   unsignaled --enable_signaling--> (callbacks armed) --signal--> signaled: cb_list run once, timestamp set
//        |                                                             (newest: ops detached if no release/wait)
//        +--last put with callbacks pending--> WARN, error = -EDEADLK, signal

import { type Errno, err, type KResult, ok } from '../errno.js';
import type { KTaskOp } from './sched.js';
import { type DmaBufWorld, warn, warnOn } from './world.js';

export const DMA_FENCE_FLAG_SIGNALED_BIT = 0;
export const DMA_FENCE_FLAG_TIMESTAMP_BIT = 1;
export const DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT = 2;
/** First bit a fence implementation may use for itself. */
export const DMA_FENCE_FLAG_USER_BITS = 3;

export type DmaFenceFunc = (fence: DmaFence, cb: DmaFenceCb) => void;

/** `struct dma_fence_cb`: `list` is the list it sits on (null = list_empty(&cb->node)). */
export interface DmaFenceCb {
  func: DmaFenceFunc | null;
  list: DmaFenceCb[] | null;
}

export const newDmaFenceCb = (): DmaFenceCb => ({ func: null, list: null });

/**
 * `struct dma_fence_ops`. The two name callbacks are mandatory (dma_fence_init() BUG_ONs without them);
 * everything else is optional and falls back to the core's default.
 */
export interface DmaFenceOps {
  /** 6.1 `use_64bit_seqno`: compare seqnos as u64 instead of wrapping u32. */
  readonly use_64bit_seqno?: boolean;
  readonly get_driver_name: (fence: DmaFence) => string;
  readonly get_timeline_name: (fence: DmaFence) => string;
  /** Arm signaling; returning false means "already done" and the core signals the fence. */
  readonly enable_signaling?: (fence: DmaFence) => boolean;
  /** Peek at completion; returning true makes the core signal the fence. */
  readonly signaled?: (fence: DmaFence) => boolean;
  /** A custom wait (deprecated upstream); same results as dmaFenceDefaultWait. */
  readonly wait?: (fence: DmaFence, intr: boolean, timeoutNs: number) => KTaskOp<KResult<number>>;
  /** Free the containing object; without it the core frees the fence. */
  readonly release?: (fence: DmaFence) => void;
  readonly set_deadline?: (fence: DmaFence, deadlineNs: number) => void;
}

export interface DmaFence {
  readonly world: DmaBufWorld;
  /** Model-only serial number (creation order). */
  readonly id: number;
  /** Cleared on signal by the newest kernels when the ops have neither release nor wait. */
  ops: DmaFenceOps | null;
  flags: number;
  readonly context: bigint;
  readonly seqno: bigint;
  /** Set with dmaFenceSetError before signaling; undefined = 0. */
  error: Errno | undefined;
  /** The PENDING_ERROR marker containers put in `error` until they signal (dma-fence-array.c). */
  errorPending: boolean;
  refcount: number;
  cbList: DmaFenceCb[];
  /** Virtual time of the signal (valid once DMA_FENCE_FLAG_TIMESTAMP_BIT is set). */
  timestampNs: number;
  /** Seqnos compare as u64 (newest: DMA_FENCE_FLAG_SEQNO64 via dma_fence_init64). */
  seqno64: boolean;
  /** The last reference was dropped; any further use is a use-after-free (a bug: it throws). */
  freed: boolean;
}

const testBit = (f: DmaFence, bit: number): boolean => (f.flags & (1 << bit)) !== 0;
const setBit = (f: DmaFence, bit: number): void => {
  f.flags |= 1 << bit;
};
/** test_and_set_bit(): @returns the old value. */
const testAndSetBit = (f: DmaFence, bit: number): boolean => {
  const old = testBit(f, bit);
  setBit(f, bit);
  return old;
};

function assertLive(f: DmaFence, func: string): void {
  if (f.freed) throw new Error(`${func}: use after free of fence ${f.context}:${f.seqno} (#${f.id})`);
}

/**
 * dma_fence_context_alloc(num): reserve `num` consecutive contexts.
 * @returns the first one; the counter starts at 1 so context 0 is never handed out. WARN_ON(!num).
 */
export function dmaFenceContextAlloc(world: DmaBufWorld, num = 1): bigint {
  warnOn(world, num === 0, 'dma_fence_context_alloc', '!num');
  const first = world.nextFenceContext;
  world.nextFenceContext += BigInt(num);
  return first;
}

/** dma_fence_init(): a new unsignaled fence holding one reference. */
export function dmaFenceInit(world: DmaBufWorld, ops: DmaFenceOps, context: bigint, seqno: bigint): DmaFence {
  return {
    world,
    id: world.nextFenceId++,
    ops,
    flags: 0,
    context,
    seqno: BigInt.asUintN(64, seqno),
    error: undefined,
    errorPending: false,
    refcount: 1,
    cbList: [],
    timestampNs: 0,
    seqno64: false,
    freed: false,
  };
}

/** dma_fence_init64(): like dmaFenceInit, but seqnos of this fence compare as 64-bit numbers. */
export function dmaFenceInit64(
  world: DmaBufWorld,
  ops: DmaFenceOps,
  context: bigint,
  seqno: bigint,
): DmaFence {
  const f = dmaFenceInit(world, ops, context, seqno);
  f.seqno64 = true;
  return f;
}

/** dma_fence_get(): take a reference. Taking one on a freed fence is a bug (throws). */
export function dmaFenceGet<T extends DmaFence | null>(f: T): T {
  if (f === null) return f;
  assertLive(f, 'dma_fence_get');
  f.refcount++;
  return f;
}

/** dma_fence_get_rcu() / kref_get_unless_zero(): @returns null when the fence is already being freed. */
export function dmaFenceGetRcu(f: DmaFence): DmaFence | null {
  if (f.refcount === 0) return null;
  f.refcount++;
  return f;
}

/** dma_fence_put(): drop a reference; the last one releases the fence. */
export function dmaFencePut(f: DmaFence | null): void {
  if (f === null) return;
  assertLive(f, 'dma_fence_put');
  if (f.refcount <= 0) throw new Error(`dma_fence_put: refcount underflow on fence #${f.id}`);
  if (--f.refcount === 0) dmaFenceRelease(f);
}

/**
 * dma_fence_release(): an unsignaled fence with callbacks still queued is a refcounting bug; the kernel
 * WARNs, sets -EDEADLK and signals so that nobody waits for ever, then frees through ops->release.
 */
function dmaFenceRelease(f: DmaFence): void {
  if (f.cbList.length > 0 && !dmaFenceTestSignaledFlag(f)) {
    const hex = (v: bigint): string => v.toString(16);
    warn(
      f.world,
      'dma_fence_release',
      `Fence ${dmaFenceDriverName(f)}:${dmaFenceTimelineName(f)}:${hex(f.context)}:${hex(f.seqno)} released with pending signals!`,
    );
    f.error = 'EDEADLK';
    f.errorPending = false;
    signalCore(f, f.world.engine.nowNs);
  }
  const release = f.ops?.release;
  if (release) release(f);
  else dmaFenceFree(f);
}

/** dma_fence_free(): the default release. */
export function dmaFenceFree(f: DmaFence): void {
  f.freed = true;
}

/** dma_fence_test_signaled_flag(): only the SIGNALED bit, no ops->signaled peek. */
export const dmaFenceTestSignaledFlag = (f: DmaFence): boolean => testBit(f, DMA_FENCE_FLAG_SIGNALED_BIT);

/** Set SIGNALED, stamp the time, run the stashed callbacks. @returns false if it was already signaled. */
function signalCore(f: DmaFence, timestampNs: number): boolean {
  if (testAndSetBit(f, DMA_FENCE_FLAG_SIGNALED_BIT)) return false;
  const list = f.cbList;
  f.cbList = [];
  f.timestampNs = timestampNs;
  setBit(f, DMA_FENCE_FLAG_TIMESTAMP_BIT);
  // A callback may remove a later one from the stashed list; shift() sees that.
  for (let cb = list.shift(); cb !== undefined; cb = list.shift()) {
    cb.list = null;
    cb.func?.(f, cb);
  }
  // Newest kernels detach the ops once signaled unless the fence still needs them (release, wait).
  if (f.world.facts.detachOpsOnSignal && f.ops && !f.ops.release && !f.ops.wait) f.ops = null;
  return true;
}

/** What dma_fence_signal() returns: 6.1 `int` (0 / -EINVAL if already signaled), newest `void`. */
export type DmaFenceSignalResult = KResult<undefined> | undefined;

function signalResult(world: DmaBufWorld, signaled: boolean): DmaFenceSignalResult {
  if (!world.facts.signalReturnsInt) return undefined;
  return signaled ? ok(undefined) : err('EINVAL', 'fence was already signaled');
}

/**
 * dma_fence_signal_timestamp(): signal with a given timestamp.
 * @returns 6.1: ok, or EINVAL when already signaled; newest: undefined (the function is void).
 */
export function dmaFenceSignalTimestamp(f: DmaFence, timestampNs: number): DmaFenceSignalResult {
  assertLive(f, 'dma_fence_signal_timestamp');
  return signalResult(f.world, signalCore(f, timestampNs));
}

/**
 * dma_fence_signal() (and dma_fence_signal_locked(): locks are implicit in the model).
 * @returns 6.1: ok, or EINVAL when already signaled; newest: undefined (the function is void).
 */
export function dmaFenceSignal(f: DmaFence): DmaFenceSignalResult {
  return dmaFenceSignalTimestamp(f, f.world.engine.nowNs);
}

export const dmaFenceSignalLocked = dmaFenceSignal;

/**
 * dma_fence_check_and_signal() (7.0): signal the fence.
 * @returns true if it had already been signaled.
 */
export function dmaFenceCheckAndSignal(f: DmaFence): boolean {
  assertLive(f, 'dma_fence_check_and_signal');
  return !signalCore(f, f.world.engine.nowNs);
}

export const dmaFenceCheckAndSignalLocked = dmaFenceCheckAndSignal;

/** dma_fence_is_signaled(): the flag, else ask ops->signaled and signal the fence if it says yes. */
export function dmaFenceIsSignaled(f: DmaFence): boolean {
  assertLive(f, 'dma_fence_is_signaled');
  if (dmaFenceTestSignaledFlag(f)) return true;
  if (f.ops?.signaled?.(f)) {
    signalCore(f, f.world.engine.nowNs);
    return true;
  }
  return false;
}

export const dmaFenceIsSignaledLocked = dmaFenceIsSignaled;

/**
 * __dma_fence_enable_signaling(): set ENABLE_SIGNAL once and call ops->enable_signaling the first time.
 * @returns false if the fence is (now) signaled, true if callbacks will fire later.
 */
function enableSignaling(f: DmaFence): boolean {
  const wasSet = testAndSetBit(f, DMA_FENCE_FLAG_ENABLE_SIGNAL_BIT);
  if (dmaFenceTestSignaledFlag(f)) return false;
  const enable = f.ops?.enable_signaling;
  if (!wasSet && enable && !enable(f)) {
    signalCore(f, f.world.engine.nowNs);
    return false;
  }
  return true;
}

/** dma_fence_enable_sw_signaling() (renamed dma_fence_enable_signaling() in 2026). */
export function dmaFenceEnableSwSignaling(f: DmaFence): void {
  assertLive(f, 'dma_fence_enable_sw_signaling');
  enableSignaling(f);
}

export const dmaFenceEnableSignaling = dmaFenceEnableSwSignaling;

/**
 * dma_fence_add_callback(): call `func` once the fence signals.
 * @returns ok when queued; ENOENT if the fence is already signaled (the callback will never run, `cb` is
 *   left unlinked); EINVAL (with a WARN) for a missing function.
 */
export function dmaFenceAddCallback(
  f: DmaFence,
  cb: DmaFenceCb,
  func: DmaFenceFunc | null,
): KResult<undefined> {
  assertLive(f, 'dma_fence_add_callback');
  if (func === null) {
    warn(f.world, 'dma_fence_add_callback', 'WARN_ON(!fence || !func)');
    return err('EINVAL', 'no callback function');
  }
  cb.list = null;
  if (dmaFenceTestSignaledFlag(f) || !enableSignaling(f)) return err('ENOENT', 'fence already signaled');
  cb.func = func;
  cb.list = f.cbList;
  f.cbList.push(cb);
  return ok(undefined);
}

/** dma_fence_remove_callback(). @returns true if the callback was still queued and is now removed. */
export function dmaFenceRemoveCallback(f: DmaFence, cb: DmaFenceCb): boolean {
  assertLive(f, 'dma_fence_remove_callback');
  const list = cb.list;
  if (list === null) return false;
  const i = list.indexOf(cb);
  if (i >= 0) list.splice(i, 1);
  cb.list = null;
  return true;
}

/**
 * dma_fence_get_status().
 * @returns ok(0) pending, ok(1) signaled without error, or the error the fence signaled with.
 */
export function dmaFenceGetStatus(f: DmaFence): KResult<0 | 1> {
  if (!dmaFenceIsSignaled(f)) return ok(0);
  return f.error === undefined ? ok(1) : err(f.error, 'fence signaled with an error');
}

export const dmaFenceGetStatusLocked = dmaFenceGetStatus;

/** dma_fence_set_error(): WARNs if the fence is already signaled, but stores the error anyway. */
export function dmaFenceSetError(f: DmaFence, error: Errno): void {
  assertLive(f, 'dma_fence_set_error');
  warnOn(
    f.world,
    dmaFenceTestSignaledFlag(f),
    'dma_fence_set_error',
    'test_bit(DMA_FENCE_FLAG_SIGNALED_BIT, &fence->flags)',
  );
  f.error = error;
  f.errorPending = false;
}

/**
 * __dma_fence_is_later(): is seqno `f1` after `f2` on `fence`'s timeline? 64-bit fences compare as u64,
 * the rest as wrapping 32-bit numbers: `(int)(lower_32(f1) - lower_32(f2)) > 0`.
 */
export function __dmaFenceIsLater(fence: DmaFence, f1: bigint, f2: bigint): boolean {
  if (fence.seqno64 || fence.ops?.use_64bit_seqno) return BigInt.asUintN(64, f1) > BigInt.asUintN(64, f2);
  return BigInt.asIntN(32, f1 - f2) > 0n;
}

/** dma_fence_is_later(): WARN and false when the fences are on different contexts. */
export function dmaFenceIsLater(f1: DmaFence, f2: DmaFence): boolean {
  if (warnOn(f1.world, f1.context !== f2.context, 'dma_fence_is_later', 'f1->context != f2->context'))
    return false;
  return __dmaFenceIsLater(f1, f1.seqno, f2.seqno);
}

/** dma_fence_is_later_or_same(): the same fence, or a later one. */
export const dmaFenceIsLaterOrSame = (f1: DmaFence, f2: DmaFence): boolean =>
  f1 === f2 || dmaFenceIsLater(f1, f2);

/** dma_fence_later(): the later of two fences of one context, or null if that one is signaled. */
export function dmaFenceLater(f1: DmaFence, f2: DmaFence): DmaFence | null {
  if (warnOn(f1.world, f1.context !== f2.context, 'dma_fence_later', 'f1->context != f2->context'))
    return null;
  if (dmaFenceIsLater(f1, f2)) return dmaFenceIsSignaled(f1) ? null : f1;
  return dmaFenceIsSignaled(f2) ? null : f2;
}

/** dma_fence_driver_name(): newest kernels answer "detached-driver" once the fence has signaled. */
export function dmaFenceDriverName(f: DmaFence): string {
  if (f.world.facts.placeholderNamesWhenSignaled && dmaFenceTestSignaledFlag(f)) return 'detached-driver';
  if (!f.ops) throw new Error(`fence #${f.id}: ops detached`);
  return f.ops.get_driver_name(f);
}

/** dma_fence_timeline_name(): newest kernels answer "signaled-timeline" once the fence has signaled. */
export function dmaFenceTimelineName(f: DmaFence): string {
  if (f.world.facts.placeholderNamesWhenSignaled && dmaFenceTestSignaledFlag(f)) return 'signaled-timeline';
  if (!f.ops) throw new Error(`fence #${f.id}: ops detached`);
  return f.ops.get_timeline_name(f);
}

/** dma_fence_timestamp(): the signal time of a signaled fence, now for an unsignaled one. */
export function dmaFenceTimestamp(f: DmaFence): number {
  if (!dmaFenceTestSignaledFlag(f)) return f.world.engine.nowNs;
  return f.timestampNs;
}

/** dma_fence_set_deadline() (6.4+): pass the hint to ops->set_deadline while the fence is pending. */
export function dmaFenceSetDeadline(f: DmaFence, deadlineNs: number): void {
  const setDeadline = f.ops?.set_deadline;
  if (setDeadline && !dmaFenceIsSignaled(f)) setDeadline(f, deadlineNs);
}
