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

/**
 * One scheduled event; it is also the handle given to the caller, so cancel needs no lookup table.
 * `fn` is null once the event has fired or been cancelled.
 */
class EventRecord implements EventHandle {
  readonly id: number;
  fn: EventFn | null;
  constructor(id: number, fn: EventFn) {
    this.id = id;
    this.fn = fn;
  }
}

/**
 * Binary min-heap over two parallel arrays (time, record), ordered by (time, record id). Ties on time
 * are rare, so the id is read from the record only then. `pop` returns the record and leaves its
 * time in `poppedTime`, so firing an event allocates nothing.
 */
class EventHeap {
  private times: number[] = [];
  private recs: EventRecord[] = [];
  poppedTime = 0;
  get size(): number {
    return this.times.length;
  }
  push(t: number, rec: EventRecord): void {
    const { times, recs } = this;
    const id = rec.id;
    let i = times.length;
    times.push(t);
    recs.push(rec);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pt = times[p]!;
      if (pt < t || (pt === t && recs[p]!.id < id)) break;
      times[i] = pt;
      recs[i] = recs[p]!;
      i = p;
    }
    times[i] = t;
    recs[i] = rec;
  }
  peekTime(): number {
    return this.times[0]!;
  }
  pop(): EventRecord {
    const { times, recs } = this;
    const top = recs[0]!;
    this.poppedTime = times[0]!;
    const lt = times.pop()!;
    const lr = recs.pop()!;
    const n = times.length;
    if (n > 0) {
      const lid = lr.id;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let c = l;
        let ct = times[l]!;
        if (r < n) {
          const rt = times[r]!;
          if (rt < ct || (rt === ct && recs[r]!.id < recs[l]!.id)) {
            c = r;
            ct = rt;
          }
        }
        if (lt < ct || (lt === ct && lid < recs[c]!.id)) break;
        times[i] = ct;
        recs[i] = recs[c]!;
        i = c;
      }
      times[i] = lt;
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
    if (!(h instanceof EventRecord) || h.fn === null) return false;
    h.fn = null;
    this.live--;
    return true;
  }

  /** True while `h` is scheduled and has neither fired nor been cancelled. */
  isPending(h: EventHandle): boolean {
    return h instanceof EventRecord && h.fn !== null;
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
      this.fire(rec, fn, heap.poppedTime);
      return true;
    }
    return false;
  }

  /** Run until the queue is empty or virtual time would pass `untilNs`. */
  run(untilNs = Number.POSITIVE_INFINITY): void {
    const heap = this.heap;
    // One entry per iteration, time checked each time: a cancelled entry at or before untilNs is
    // dropped without letting a later event fire.
    while (heap.size > 0) {
      if (heap.peekTime() > untilNs) {
        this.nowNsValue = untilNs;
        return;
      }
      const rec = heap.pop();
      const fn = rec.fn;
      if (fn !== null) this.fire(rec, fn, heap.poppedTime);
    }
  }

  private fire(rec: EventRecord, fn: EventFn, atNs: number): void {
    rec.fn = null;
    this.live--;
    this.nowNsValue = atNs;
    this.eventsFired++;
    fn();
  }
}
