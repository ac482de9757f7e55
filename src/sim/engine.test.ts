import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Engine } from './engine.js';
import { sleep, spawn, WaitQueue, waitOn } from './task.js';

describe('Engine', () => {
  it('fires events in time order, ties in insertion order', () => {
    const e = new Engine();
    const seen: string[] = [];
    e.schedule(10, () => seen.push('b'));
    e.schedule(5, () => seen.push('a'));
    e.schedule(10, () => seen.push('c'));
    e.run();
    expect(seen).toEqual(['a', 'b', 'c']);
    expect(e.nowNs).toBe(10);
  });
  it('skips cancelled events', () => {
    const e = new Engine();
    const seen: number[] = [];
    const h = e.schedule(1, () => seen.push(1));
    e.schedule(2, () => seen.push(2));
    expect(e.cancel(h)).toBe(true);
    e.run();
    expect(seen).toEqual([2]);
  });
  it('cancel returns false for a fired, a cancelled or a foreign event', () => {
    const e = new Engine();
    const fired = e.schedule(1, () => {});
    const later = e.schedule(5, () => {});
    e.run(2);
    expect(e.isPending(fired)).toBe(false);
    expect(e.cancel(fired)).toBe(false);
    expect(e.isPending(later)).toBe(true);
    expect(e.cancel(later)).toBe(true);
    expect(e.cancel(later)).toBe(false);
    expect(e.cancel({ id: 0 })).toBe(false);
    expect(e.pending).toBe(false);
  });
  it('run(until) does not fire past until when a cancelled event heads the queue', () => {
    const e = new Engine();
    const seen: number[] = [];
    const h = e.schedule(5, () => seen.push(5));
    e.schedule(100, () => seen.push(100));
    e.cancel(h);
    e.run(50);
    expect(seen).toEqual([]);
    expect(e.nowNs).toBe(50);
    e.run();
    expect(seen).toEqual([100]);
  });
  it('scheduleAt keeps the exact absolute time', () => {
    const e = new Engine();
    let at = -1;
    e.schedule(0.5373540462295523, () => e.scheduleAt(1061.3875882978125, () => (at = e.nowNs)));
    e.run();
    // now + (at - now) would round to 1061.3875882978127 here.
    expect(at).toBe(1061.3875882978125);
  });
  it('fires any schedule in (time, insertion) order, never a cancelled event', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ delay: fc.integer({ min: 0, max: 50 }), cancel: fc.boolean() }), {
          maxLength: 300,
        }),
        (specs) => {
          const e = new Engine();
          const fired: number[] = [];
          const hs = specs.map((s, i) => e.schedule(s.delay, () => fired.push(i)));
          specs.forEach((s, i) => {
            if (s.cancel) expect(e.cancel(hs[i]!)).toBe(true);
          });
          e.run();
          const expected = specs
            .map((s, i) => ({ ...s, i }))
            .filter((s) => !s.cancel)
            .sort((a, b) => a.delay - b.delay || a.i - b.i)
            .map((s) => s.i);
          expect(fired).toEqual(expected);
          expect(e.eventsFired).toBe(expected.length);
          expect(e.pending).toBe(false);
        },
      ),
    );
  });
  it('runs tasks that sleep and wait with timeouts', () => {
    const e = new Engine();
    const q = new WaitQueue();
    const log: string[] = [];
    spawn(
      e,
      'waiter',
      (function* () {
        const woken = yield waitOn(q, 100);
        log.push(`first ${woken} at ${e.nowNs}`);
        const again = yield waitOn(q, 100);
        log.push(`second ${again} at ${e.nowNs}`);
      })(),
    );
    spawn(
      e,
      'waker',
      (function* () {
        yield sleep(30);
        q.wakeAll();
      })(),
    );
    e.run();
    expect(log).toEqual(['first true at 30', 'second false at 130']);
  });
});
