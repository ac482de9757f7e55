// The deterministic discrete-event engine: virtual time in nanoseconds, an event queue ordered by
// (time, insertion sequence), and cooperative tasks written as generators.
//
// Nothing here reads the wall clock or an unseeded RNG. Two runs with the same seed and the same inputs
// fire the same events in the same order. Virtual time is a `number` of ns: whole ns are exact up to
// 2^53 ns (about 104 days of simulated time), far beyond any run. Times may be fractional (the flow
// model completes transfers at bytes / rate); IEEE-754 arithmetic is deterministic, so fractional
// times reproduce exactly too.

import { Prng } from './prng.js';

export type EventFn = () => void;

export interface EventHandle {
  readonly id: number;
}

type EventState = 'pending' | 'fired' | 'cancelled';

/** One scheduled event; it is also the handle given to the caller, so cancel needs no lookup table. */
class EventRecord implements EventHandle {
  readonly id: number;
  fn: EventFn | null;
  state: EventState = 'pending';
  constructor(id: number, fn: EventFn) {
    this.id = id;
    this.fn = fn;
  }
}

/**
 * Binary min-heap over parallel arrays (time, seq, record). `pop` returns the record and leaves its time
 * in `poppedTime`, so firing an event allocates nothing.
 */
class EventHeap {
  private times: number[] = [];
  private seqs: number[] = [];
  private recs: EventRecord[] = [];
  poppedTime = 0;
  get size(): number {
    return this.times.length;
  }
  push(t: number, rec: EventRecord): void {
    const { times, seqs, recs } = this;
    const seq = rec.id;
    let i = times.length;
    times.push(t);
    seqs.push(seq);
    recs.push(rec);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pt = times[p]!;
      if (pt < t || (pt === t && seqs[p]! < seq)) break;
      times[i] = pt;
      seqs[i] = seqs[p]!;
      recs[i] = recs[p]!;
      i = p;
    }
    times[i] = t;
    seqs[i] = seq;
    recs[i] = rec;
  }
  peekTime(): number {
    return this.times[0]!;
  }
  peekCancelled(): boolean {
    return this.recs[0]!.fn === null;
  }
  pop(): EventRecord {
    const { times, seqs, recs } = this;
    const top = recs[0]!;
    this.poppedTime = times[0]!;
    const lt = times.pop()!;
    const ls = seqs.pop()!;
    const lr = recs.pop()!;
    const n = times.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let c = l;
        if (r < n && (times[r]! < times[l]! || (times[r] === times[l] && seqs[r]! < seqs[l]!))) c = r;
        const ct = times[c]!;
        if (lt < ct || (lt === ct && ls < seqs[c]!)) break;
        times[i] = ct;
        seqs[i] = seqs[c]!;
        recs[i] = recs[c]!;
        i = c;
      }
      times[i] = lt;
      seqs[i] = ls;
      recs[i] = lr;
    }
    return top;
  }
}

export class Engine {
  private nowNsValue = 0;
  private seq = 0;
  private live = 0;
  private readonly heap = new EventHeap();
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
    return this.push(this.nowNsValue + delayNs, fn);
  }

  /**
   * Run `fn` at absolute virtual time `atNs`; a time in the past means now. The time is kept exactly
   * as given (no now + (at - now) round trip), so a model that computed a completion time sees the
   * engine's clock equal it when the event fires.
   */
  scheduleAt(atNs: number, fn: EventFn): EventHandle {
    if (Number.isNaN(atNs) || atNs === Number.POSITIVE_INFINITY)
      throw new RangeError(`scheduleAt: bad time ${atNs}`);
    return this.push(Math.max(atNs, this.nowNsValue), fn);
  }

  private push(atNs: number, fn: EventFn): EventRecord {
    const rec = new EventRecord(this.seq++, fn);
    this.heap.push(atNs, rec);
    this.live++;
    return rec;
  }

  /** Cancel a pending event; returns false if it already fired, was already cancelled, or is not ours. */
  cancel(h: EventHandle): boolean {
    if (!(h instanceof EventRecord) || h.state !== 'pending') return false;
    h.state = 'cancelled';
    h.fn = null;
    this.live--;
    return true;
  }

  /** True while `h` is scheduled and has neither fired nor been cancelled. */
  isPending(h: EventHandle): boolean {
    return h instanceof EventRecord && h.state === 'pending';
  }

  /** True while events are pending (cancelled ones do not count). */
  get pending(): boolean {
    return this.live > 0;
  }

  /** Fire the next event; false when the queue is empty. */
  step(): boolean {
    const heap = this.heap;
    while (heap.size > 0) {
      const rec = heap.pop();
      const fn = rec.fn;
      if (fn === null) continue;
      rec.fn = null;
      rec.state = 'fired';
      this.live--;
      this.nowNsValue = heap.poppedTime;
      this.eventsFired++;
      fn();
      return true;
    }
    return false;
  }

  /** Run until the queue is empty or virtual time would pass `untilNs`. */
  run(untilNs = Number.POSITIVE_INFINITY): void {
    const heap = this.heap;
    while (heap.size > 0) {
      // Drop cancelled heads first, so one cannot let step() fire an event later than untilNs.
      if (heap.peekCancelled()) {
        heap.pop();
        continue;
      }
      if (heap.peekTime() > untilNs) {
        this.nowNsValue = untilNs;
        return;
      }
      this.step();
    }
  }
}
