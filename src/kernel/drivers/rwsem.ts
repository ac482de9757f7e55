// A reader-writer semaphore (kernel/locking/rwsem.c) as the drivers need it: down_read/down_write that
// sleep, up_read/up_write, and lockdep_assert_held_write reported as a warning. VFIO's memory_lock is
// one: it is held for writing while a device's memory decoding changes (reset, COMMAND writes).

import { WaitQueue, waitOn } from '../../sim/task.js';
import { current, type KTaskOp, type KThread } from '../dma-buf/sched.js';
import { type DmaBufWorld, warn } from '../dma-buf/world.js';

export interface RwSem {
  readonly name: string;
  writer: KThread | null;
  readers: number;
  readonly wq: WaitQueue;
}

export const initRwsem = (name: string): RwSem => ({ name, writer: null, readers: 0, wq: new WaitQueue() });

/** `down_write()`: wait until nobody holds the semaphore, then hold it for writing. May sleep. */
export function* downWrite(world: DmaBufWorld, sem: RwSem): KTaskOp<void> {
  while (sem.writer !== null || sem.readers > 0) yield waitOn(sem.wq);
  sem.writer = current(world);
}

/** `up_write()`. */
export function upWrite(sem: RwSem): void {
  sem.writer = null;
  sem.wq.wakeAll();
}

/** `down_read()`: wait for a writer to leave. May sleep. */
export function* downRead(sem: RwSem): KTaskOp<void> {
  while (sem.writer !== null) yield waitOn(sem.wq);
  sem.readers++;
}

/** `up_read()`. */
export function upRead(sem: RwSem): void {
  sem.readers--;
  if (sem.readers === 0) sem.wq.wakeAll();
}

/** `lockdep_assert_held_write(&sem)` in `func`. @returns whether the current thread holds it for writing. */
export function lockdepAssertHeldWrite(world: DmaBufWorld, sem: RwSem, func: string): boolean {
  if (sem.writer === current(world)) return true;
  warn(world, func, `WARN_ON(debug_locks && !(lockdep_is_held_type(&${sem.name}, 0)))`);
  return false;
}
