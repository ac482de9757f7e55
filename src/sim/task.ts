// Cooperative tasks on the engine: the simulated threads of the kernel model.
//
// A task is a generator. It yields what it waits for (a sleep, or a wait queue with a timeout) and the
// engine resumes it: after a sleep with `undefined`, after a wait with `true` (woken) or `false` (timed
// out). Tasks interleave only at yields, in event order, so every interleaving is reproducible from
// the seed: this is how ww-mutex back-off, fence waits and DMA completions race deterministically.

import type { Engine, EventHandle } from './engine.js';

export interface SleepOp {
  readonly kind: 'sleep';
  readonly ns: number;
}
export interface WaitOp {
  readonly kind: 'wait';
  readonly queue: WaitQueue;
  /** Virtual ns to wait at most; Infinity waits for ever (MAX_SCHEDULE_TIMEOUT). */
  readonly timeoutNs: number;
}
export type TaskOp = SleepOp | WaitOp;
export type TaskBody<T> = Generator<TaskOp, T, boolean | undefined>;

export const sleep = (ns: number): SleepOp => ({ kind: 'sleep', ns });
export const waitOn = (queue: WaitQueue, timeoutNs = Number.POSITIVE_INFINITY): WaitOp => ({
  kind: 'wait',
  queue,
  timeoutNs,
});

type Waker = (woken: boolean) => void;

/** A kernel-style wait queue: tasks park on it until woken. */
export class WaitQueue {
  private waiters: Waker[] = [];
  /** @internal */
  add(w: Waker): void {
    this.waiters.push(w);
  }
  /** @internal */
  remove(w: Waker): void {
    const i = this.waiters.indexOf(w);
    if (i >= 0) this.waiters.splice(i, 1);
  }
  get length(): number {
    return this.waiters.length;
  }
  /** Wake every waiter (they resume in the order they parked). */
  wakeAll(): void {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w(true);
  }
  /** Wake the first waiter, if any. */
  wakeOne(): boolean {
    const w = this.waiters.shift();
    if (w) w(true);
    return w !== undefined;
  }
}

export type TaskState = 'runnable' | 'sleeping' | 'waiting' | 'done' | 'failed';

export class Task<T = unknown> {
  state: TaskState = 'runnable';
  result: T | undefined;
  error: unknown;
  /** Woken when the task finishes (or fails). */
  readonly done = new WaitQueue();

  readonly engine: Engine;
  readonly name: string;
  private readonly body: TaskBody<T>;

  constructor(engine: Engine, name: string, body: TaskBody<T>) {
    this.engine = engine;
    this.name = name;
    this.body = body;
    engine.schedule(0, () => this.resume(undefined));
  }

  private resume(v: boolean | undefined): void {
    let r: IteratorResult<TaskOp, T>;
    try {
      this.state = 'runnable';
      r = this.body.next(v);
    } catch (e) {
      this.state = 'failed';
      this.error = e;
      this.done.wakeAll();
      throw e;
    }
    if (r.done) {
      this.state = 'done';
      this.result = r.value;
      this.done.wakeAll();
      return;
    }
    const op = r.value;
    if (op.kind === 'sleep') {
      this.state = 'sleeping';
      this.engine.schedule(op.ns, () => this.resume(undefined));
      return;
    }
    this.state = 'waiting';
    let timer: EventHandle | null = null;
    let settled = false;
    const waker: Waker = (woken) => {
      if (settled) return;
      settled = true;
      if (timer) this.engine.cancel(timer);
      if (!woken) op.queue.remove(waker);
      // Resume from the event loop, never from inside the waker's caller.
      this.engine.schedule(0, () => this.resume(woken));
    };
    op.queue.add(waker);
    if (Number.isFinite(op.timeoutNs)) timer = this.engine.schedule(op.timeoutNs, () => waker(false));
  }
}

/** Start a task; it first runs after the events already queued for the current instant. */
export const spawn = <T>(engine: Engine, name: string, body: TaskBody<T>): Task<T> =>
  new Task(engine, name, body);
