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
