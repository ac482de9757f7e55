// Device firmware as coroutines: a generator yields what it waits for (a DMA, a delay) and is resumed
// with the result when the event engine delivers it. Mirrors no kernel file; it is how the simulated
// controllers sequence their work (fetch a command, fetch its PRP list, move data, post completion).
//
//   function* readCommand() {
//     const list = yield* wait(dmaRead(prpList))     // resumes when the fabric delivers
//     ...
//   }
//   runDevTask(readCommand(), (status) => postCompletion(status))
//
// Promises cannot be used: the engine runs its events synchronously, and promise continuations would
// only run after the whole run returned. Resumption here is a plain call, trampolined so that a
// result delivered synchronously does not grow the stack.

import { type DmaOptions, type DmaOutcome, fabricDma } from '../fabric/data-path.js';
import type { Fabric } from '../fabric/fabric.js';
import type { SimClock } from '../fabric/flow-seam.js';

/** Something to wait for: `start` is given the function that resumes the waiting task. */
export interface Await<T> {
  start(resume: (v: T) => void): void;
}

export type DevTask<R> = Generator<Await<unknown>, R, unknown>;

/** Wait for `a` inside a device task: `const v = yield* wait(a)`. */
export function* wait<T>(a: Await<T>): Generator<Await<unknown>, T, unknown> {
  return (yield a as Await<unknown>) as T;
}

/** An Await that resumes after `ns` of virtual time. */
export const delay = (clock: SimClock, ns: number): Await<void> => ({
  start: (resume) => void clock.schedule(ns, () => resume()),
});

/** An Await for a callback-style operation. */
export const fromCallback = <T>(op: (cb: (v: T) => void) => void): Await<T> => ({ start: op });

/**
 * Run a device task to its end, then call `done` with its result.
 * @returns nothing; an exception inside the task propagates to whoever resumed it (a model bug).
 */
export function runDevTask<R>(task: DevTask<R>, done: (r: R) => void): void {
  const step = (input: unknown): void => {
    let v = input;
    for (;;) {
      const r = task.next(v);
      if (r.done) {
        done(r.value);
        return;
      }
      let starting = true;
      let syncResult: { v: unknown } | null = null;
      r.value.start((x) => {
        if (starting) syncResult = { v: x };
        else step(x);
      });
      starting = false;
      if (syncResult === null) return;
      v = (syncResult as { v: unknown }).v;
    }
  };
  step(undefined);
}

/** Run several waits at once and resume when all are done, results in order. */
export function all<T>(waits: readonly Await<T>[]): Await<T[]> {
  return {
    start: (resume) => {
      const out = new Array<T>(waits.length);
      let left = waits.length;
      if (left === 0) {
        resume(out);
        return;
      }
      for (const [i, w] of waits.entries())
        w.start((v) => {
          out[i] = v;
          if (--left === 0) resume(out);
        });
    },
  };
}

/** A fabric DMA as something a device task waits for. */
export const dmaWait = (fab: Fabric, o: DmaOptions): Await<DmaOutcome> => ({
  start: (resume) => fabricDma(fab, o, resume),
});
