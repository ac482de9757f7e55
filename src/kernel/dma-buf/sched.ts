// The bits of the scheduler and of signal delivery that fence waits and ww-mutexes rely on:
// `current`, kthread_run(), schedule_timeout(), wake_up_process(), signal_pending() and sending a signal
// (kernel/sched/core.c, kernel/time/timer.c, kernel/signal.c, kernel/kthread.c).
//
// A kthread is a task of the engine (src/sim/task.ts) whose body runs with `world.current` pointing at it,
// so model code can ask who is running the way kernel code reads `current`. Each thread sleeps on its own
// wait queue, which is what wake_up_process() targets. Time is virtual nanoseconds; MAX_SCHEDULE_TIMEOUT
// is Infinity.

import { spawn, type Task, type TaskBody, type TaskOp, WaitQueue, waitOn } from '../../sim/task.js';
import type { DmaBufWorld } from './world.js';

/** A task operation of the kernel model: a generator to `yield*` from a kthread body. */
export type KTaskOp<T> = Generator<TaskOp, T, boolean | undefined>;

/** TASK_RUNNING, TASK_INTERRUPTIBLE (signals wake it) or TASK_UNINTERRUPTIBLE. */
export type KThreadState = 'running' | 'interruptible' | 'uninterruptible';

/** `MAX_SCHEDULE_TIMEOUT`: wait for ever. */
export const MAX_SCHEDULE_TIMEOUT = Number.POSITIVE_INFINITY;

export interface KThread {
  readonly name: string;
  readonly world: DmaBufWorld;
  /** The engine task running this thread; null for the world's main context. */
  task: Task<unknown> | null;
  state: KThreadState;
  /** A signal is pending (TIF_SIGPENDING). */
  sigPending: boolean;
  /** What wake_up_process() wakes: the thread parks here in schedule_timeout(). */
  readonly wake: WaitQueue;
  /** The recorded calls this thread is inside, outermost first (see withCall in world.ts). */
  readonly calls: string[];
}

/** A thread record that is not (yet) running as a task. */
export function kthreadCreate(world: DmaBufWorld, name: string): KThread {
  return { name, world, task: null, state: 'running', sigPending: false, wake: new WaitQueue(), calls: [] };
}

/** Run `body` with `world.current` set to `kt` for every step it takes. */
function* asKThread<T>(world: DmaBufWorld, kt: KThread, body: TaskBody<T>): TaskBody<T> {
  let input: boolean | undefined;
  for (;;) {
    const prev = world.current;
    world.current = kt;
    let r: IteratorResult<TaskOp, T>;
    try {
      r = body.next(input);
    } finally {
      world.current = prev;
    }
    if (r.done) return r.value;
    input = yield r.value;
  }
}

/**
 * kthread_run(): start `body` as a kernel thread; it first runs after the events already queued now.
 * @returns the thread record (for signals and wake-ups) and the engine task (for its result and state).
 */
export function kthreadRun<T>(
  world: DmaBufWorld,
  name: string,
  body: TaskBody<T>,
): { kthread: KThread; task: Task<T> } {
  const kthread = kthreadCreate(world, name);
  const task = spawn(world.engine, name, asKThread(world, kthread, body));
  kthread.task = task as Task<unknown>;
  return { kthread, task };
}

/** `current`: the thread whose code is running (the world's main context outside kthreads). */
export const current = (world: DmaBufWorld): KThread => world.current;

/** signal_pending(current) for this thread. */
export const signalPending = (kt: KThread): boolean => kt.sigPending;

/**
 * schedule_timeout() after set_current_state(state): sleep until woken or until `timeoutNs` passes.
 * An interruptible sleep with a signal already pending does not sleep (as __schedule() would not).
 * @returns the time left (0 when the timeout expired; Infinity stays Infinity).
 * Throws when called outside a kthread: only tasks can sleep (might_sleep()).
 */
export function* scheduleTimeout(
  world: DmaBufWorld,
  timeoutNs: number,
  state: KThreadState,
): KTaskOp<number> {
  const kt = world.current;
  if (kt.task === null) throw new Error(`schedule_timeout: '${kt.name}' is not a task and cannot sleep`);
  if (!(timeoutNs > 0)) return 0;
  if (state === 'interruptible' && kt.sigPending) return timeoutNs;
  kt.state = state;
  const startNs = world.engine.nowNs;
  yield waitOn(kt.wake, timeoutNs);
  kt.state = 'running';
  if (!Number.isFinite(timeoutNs)) return timeoutNs;
  return Math.max(0, timeoutNs - (world.engine.nowNs - startNs));
}

/** wake_up_process(): wake a sleeping thread. @returns true if it was asleep. */
export function wakeUpProcess(kt: KThread): boolean {
  if (kt.state === 'running') return false;
  kt.state = 'running';
  kt.wake.wakeAll();
  return true;
}

/** Send a signal to the thread (send_sig()): mark it pending and wake an interruptible sleep. */
export function sendSig(kt: KThread): void {
  kt.sigPending = true;
  if (kt.state === 'interruptible') wakeUpProcess(kt);
}

/** flush_signals(): the thread has handled its signals. */
export function flushSignals(kt: KThread): void {
  kt.sigPending = false;
}

/**
 * Run a task operation that must not sleep (a zero-timeout wait, an uncontended lock) to completion
 * from ordinary code. Throws if the operation tries to sleep: that would be a bug in the caller.
 */
export function runNonBlocking<T>(op: KTaskOp<T>): T {
  const r = op.next();
  if (!r.done) throw new Error('runNonBlocking: the operation tried to sleep; run it from a kthread');
  return r.value;
}
