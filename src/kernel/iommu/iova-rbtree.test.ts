import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IovaRbTree, NIL } from './iova-rbtree.js';

describe('IovaRbTree', () => {
  it('keeps the red-black invariants and the order of a reference set under random inserts and removes', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 500 })), { maxLength: 400 }),
        (ops) => {
          const t = new IovaRbTree();
          const ids = new Map<number, number>();
          for (const [insert, key] of ops) {
            if (insert && !ids.has(key)) ids.set(key, t.insert(key * 10, key * 10 + 5));
            else if (!insert && ids.has(key)) {
              t.remove(ids.get(key)!);
              ids.delete(key);
            }
          }
          t.checkInvariants();
          const keys = [...ids.keys()].sort((a, b) => a - b);
          const walked: number[] = [];
          for (let id = t.first(); id !== NIL; id = t.next(id)) walked.push(t.pfnLo(id) / 10);
          expect(walked).toEqual(keys);
          const back: number[] = [];
          for (let id = t.last(); id !== NIL; id = t.prev(id)) back.push(t.pfnLo(id) / 10);
          expect(back).toEqual([...keys].reverse());
          expect(t.size).toBe(keys.length);
          for (const k of keys) {
            expect(t.find(k * 10 + 3)).toBe(ids.get(k));
            expect(t.find(k * 10 + 7)).toBe(NIL);
            const above = t.lowestEndingAtOrAbove(k * 10 + 6);
            const nextKey = keys.find((x) => x > k);
            expect(above === NIL ? undefined : t.pfnLo(above) / 10).toBe(nextKey);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('refuses a duplicate pfn_lo (the kernel WARNs: it should not happen)', () => {
    const t = new IovaRbTree();
    t.insert(7, 9);
    expect(() => t.insert(7, 8)).toThrow(/BUG/);
  });

  it('grows past its initial arrays and reuses freed ids', () => {
    const t = new IovaRbTree();
    const ids = Array.from({ length: 1000 }, (_, i) => t.insert(i, i));
    expect(t.checkInvariants()).toBeGreaterThan(0);
    t.remove(ids[500]!);
    expect(t.insert(10_000, 10_000)).toBe(ids[500]);
  });
});
