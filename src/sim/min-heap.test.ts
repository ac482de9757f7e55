import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IndexedMinHeap, MinHeap } from './min-heap.js';

describe('MinHeap', () => {
  it('pops keys in ascending order, whatever the push order', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -1000, max: 1000 })), (keys) => {
        const h = new MinHeap<number>();
        for (const [i, k] of keys.entries()) h.push(k, i);
        const out: number[] = [];
        while (h.size > 0) {
          const i = h.pop();
          expect(h.poppedKey).toBe(keys[i]);
          out.push(h.poppedKey);
        }
        expect(out).toEqual([...keys].sort((a, b) => a - b));
      }),
    );
  });
  it('reports Infinity as the smallest key of an empty heap', () => {
    const h = new MinHeap<string>();
    expect(h.peekKey()).toBe(Number.POSITIVE_INFINITY);
    h.push(3, 'c');
    h.push(1, 'a');
    expect(h.peek()).toBe('a');
    h.clear();
    expect(h.size).toBe(0);
  });
});

describe('IndexedMinHeap', () => {
  it('keeps the minimum right under any mix of inserts, key moves and deletes', () => {
    type Item = { id: number; heapIndex: number; heapKey: number };
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 19 }), fc.integer({ min: -50, max: 50 }), fc.boolean())),
        (ops) => {
          const h = new IndexedMinHeap<Item>();
          const items: Item[] = Array.from({ length: 20 }, (_, id) => ({ id, heapIndex: -1, heapKey: 0 }));
          const ref = new Map<number, number>();
          for (const [id, key, del] of ops) {
            if (del) {
              h.delete(items[id]!);
              ref.delete(id);
            } else {
              h.set(items[id]!, key);
              ref.set(id, key);
            }
            expect(h.size).toBe(ref.size);
            expect(h.peekKey()).toBe(ref.size ? Math.min(...ref.values()) : Number.POSITIVE_INFINITY);
          }
          const out: number[] = [];
          while (h.size > 0) out.push(h.pop().heapKey);
          expect(out).toEqual([...ref.values()].sort((a, b) => a - b));
          expect(items.every((it) => it.heapIndex === -1)).toBe(true);
        },
      ),
    );
  });
});
