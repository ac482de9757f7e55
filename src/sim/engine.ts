// The deterministic discrete-event engine: virtual time in nanoseconds, an event queue ordered by
// (time, insertion sequence), and cooperative tasks written as generators.
//
// Nothing here reads the wall clock or an unseeded RNG. Two runs with the same seed and the same inputs
// fire the same events in the same order. Virtual time is a `number` of ns: exact up to 2^53 ns
// (about 104 days of simulated time), far beyond any run.

import { Prng } from './prng.js';

export type EventFn = () => void;

export interface EventHandle {
  readonly id: number;
}

/** Binary min-heap over parallel arrays (time, seq) with callbacks; cancelled entries are skipped. */
class EventHeap {
  private times: number[] = [];
  private seqs: number[] = [];
  private fns: (EventFn | null)[] = [];
  get size(): number {
    return this.times.length;
  }
  push(t: number, seq: number, fn: EventFn): void {
    const { times, seqs, fns } = this;
    let i = times.length;
    times.push(t);
    seqs.push(seq);
    fns.push(fn);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (times[p]! < t || (times[p] === t && seqs[p]! < seq)) break;
      times[i] = times[p]!;
      seqs[i] = seqs[p]!;
      fns[i] = fns[p]!;
      i = p;
    }
    times[i] = t;
    seqs[i] = seq;
    fns[i] = fn;
  }
  peekTime(): number {
    return this.times[0]!;
  }
  pop(): { t: number; seq: number; fn: EventFn | null } {
    const { times, seqs, fns } = this;
    const top = { t: times[0]!, seq: seqs[0]!, fn: fns[0]! };
    const lt = times.pop()!;
    const ls = seqs.pop()!;
    const lf = fns.pop()!;
    const n = times.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let c = l;
        if (r < n && (times[r]! < times[l]! || (times[r] === times[l] && seqs[r]! < seqs[l]!))) c = r;
        if (lt < times[c]! || (lt === times[c] && ls < seqs[c]!)) break;
        times[i] = times[c]!;
        seqs[i] = seqs[c]!;
        fns[i] = fns[c]!;
        i = c;
      }
      times[i] = lt;
      seqs[i] = ls;
      fns[i] = lf;
    }
    return top;
  }
}

export class Engine {
  private nowNsValue = 0;
  private seq = 0;
  private readonly heap = new EventHeap();
  private readonly cancelled = new Set<number>();
  /** Events fired so far (for the benchmark and for run summaries). */
  eventsFired = 0;
  readonly prng: Prng;

  constructor(seed = 1) {
    this.prng = new Prng(seed);
  }

  get nowNs(): number {
    return this.nowNsValue;
  }

  /** Run `fn` after `delayNs` of virtual time (0 = after everything already queued for now). */
  schedule(delayNs: number, fn: EventFn): EventHandle {
    if (!(delayNs >= 0) || !Number.isFinite(delayNs)) throw new RangeError(`schedule: bad delay ${delayNs}`);
    const id = this.seq++;
    this.heap.push(this.nowNsValue + delayNs, id, fn);
    return { id };
  }

  /** Run `fn` at absolute virtual time `atNs` (not before now). */
  scheduleAt(atNs: number, fn: EventFn): EventHandle {
    return this.schedule(Math.max(0, atNs - this.nowNsValue), fn);
  }

  /** Cancel a pending event; returns false if it already fired or was cancelled. */
  cancel(h: EventHandle): boolean {
    if (h.id >= this.seq || this.cancelled.has(h.id)) return false;
    this.cancelled.add(h.id);
    return true;
  }

  /** True while events are pending. */
  get pending(): boolean {
    return this.heap.size > 0;
  }

  /** Fire the next event; false when the queue is empty. */
  step(): boolean {
    while (this.heap.size > 0) {
      const e = this.heap.pop();
      if (this.cancelled.size > 0 && this.cancelled.delete(e.seq)) continue;
      this.nowNsValue = e.t;
      this.eventsFired++;
      e.fn!();
      return true;
    }
    return false;
  }

  /** Run until the queue is empty or virtual time would pass `untilNs`. */
  run(untilNs = Number.POSITIVE_INFINITY): void {
    while (this.heap.size > 0) {
      if (this.heap.peekTime() > untilNs) {
        this.nowNsValue = untilNs;
        return;
      }
      this.step();
    }
  }
}
