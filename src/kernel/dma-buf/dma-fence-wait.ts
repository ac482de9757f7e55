// Sleeping until a fence signals: dma_fence_wait_timeout(), dma_fence_default_wait() and dma_fence_wait()
// from drivers/dma-buf/dma-fence.c, as task operations in virtual time.
//
// The waiter queues a callback at the head of the fence's list that wakes it (wake_up_process), then
// sleeps in schedule_timeout() until the fence signals, the time runs out or, for an interruptible wait,
// a signal arrives. Timeouts are nanoseconds of virtual time; MAX_SCHEDULE_TIMEOUT (Infinity) waits for ever.

import { err, type KResult, ok } from '../errno.js';
import {
  type DmaFence,
  type DmaFenceCb,
  dmaFenceEnableSwSignaling,
  dmaFenceTestSignaledFlag,
} from './dma-fence.js';
import {
  current,
  type KTaskOp,
  MAX_SCHEDULE_TIMEOUT,
  scheduleTimeout,
  signalPending,
  wakeUpProcess,
} from './sched.js';
import { warnOn } from './world.js';

/**
 * dma_fence_default_wait(): the core's wait.
 * @returns ok(time left) once signaled; ok(1) for a zero timeout on a signaled fence; ok(0) on timeout
 *   (and for a zero timeout on a pending fence); ERESTARTSYS when interruptible and a signal is pending.
 */
export function* dmaFenceDefaultWait(
  f: DmaFence,
  intr: boolean,
  timeoutNs: number,
): KTaskOp<KResult<number>> {
  const world = f.world;
  let ret = timeoutNs !== 0 ? timeoutNs : 1;
  if (dmaFenceTestSignaledFlag(f)) return ok(ret);
  const me = current(world);
  if (intr && signalPending(me)) return err('ERESTARTSYS', 'signal pending before the wait');
  if (timeoutNs === 0) return ok(0);

  const cb: DmaFenceCb = { func: () => void wakeUpProcess(me), list: f.cbList };
  f.cbList.unshift(cb);
  let interrupted = false;
  while (!dmaFenceTestSignaledFlag(f) && ret > 0) {
    ret = yield* scheduleTimeout(world, ret, intr ? 'interruptible' : 'uninterruptible');
    if (ret > 0 && intr && signalPending(me)) {
      interrupted = true;
      break;
    }
  }
  if (cb.list !== null) {
    cb.list.splice(cb.list.indexOf(cb), 1);
    cb.list = null;
  }
  return interrupted ? err('ERESTARTSYS', 'interrupted by a signal') : ok(ret);
}

/**
 * dma_fence_wait_timeout(): enable signaling, then ops->wait or the default wait.
 * @returns ok(time left > 0) when signaled; ok(1) when `timeoutNs` is 0 and the fence is signaled; ok(0)
 *   on timeout; ERESTARTSYS if interrupted (intr); EINVAL with a WARN for a negative timeout.
 * Sleeps, so it must run in a kthread unless the answer is immediate.
 */
export function* dmaFenceWaitTimeout(
  f: DmaFence,
  intr: boolean,
  timeoutNs: number,
): KTaskOp<KResult<number>> {
  if (warnOn(f.world, timeoutNs < 0, 'dma_fence_wait_timeout', 'timeout < 0')) {
    return err('EINVAL', `negative timeout ${timeoutNs}`);
  }
  dmaFenceEnableSwSignaling(f);
  const wait = f.ops?.wait;
  if (wait) return yield* wait(f, intr, timeoutNs);
  return yield* dmaFenceDefaultWait(f, intr, timeoutNs);
}

/**
 * dma_fence_wait(): wait without a time limit.
 * @returns ok(0) once signaled; ERESTARTSYS if interrupted (intr).
 */
export function* dmaFenceWait(f: DmaFence, intr: boolean): KTaskOp<KResult<0>> {
  const r = yield* dmaFenceWaitTimeout(f, intr, MAX_SCHEDULE_TIMEOUT);
  return r.ok ? ok(0) : r;
}
