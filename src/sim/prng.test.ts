import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Prng } from './prng.js';

describe('Prng', () => {
  it('is reproducible from its seed', () => {
    const a = new Prng(42);
    const b = new Prng(42);
    const xs = Array.from({ length: 100 }, () => a.nextU32());
    expect(Array.from({ length: 100 }, () => b.nextU32())).toEqual(xs);
    expect(new Prng(43).nextU32()).not.toBe(xs[0]);
  });
  it('below(n) stays in range', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1 }), fc.integer({ min: 1, max: 0xffffffff }), (seed, n) => {
        const p = new Prng(seed);
        for (let i = 0; i < 20; i++) {
          const v = p.below(n);
          if (!(v >= 0 && v < n && Number.isInteger(v))) return false;
        }
        return true;
      }),
    );
  });
  it('below(n) is roughly uniform', () => {
    const p = new Prng(7);
    const counts = new Array(6).fill(0);
    for (let i = 0; i < 60000; i++) counts[p.below(6)]++;
    for (const c of counts) expect(Math.abs(c - 10000)).toBeLessThan(500);
  });
});
