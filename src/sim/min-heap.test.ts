import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MinHeap } from './min-heap.js';

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
