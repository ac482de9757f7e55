import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type PfnSpan, PgmapTable } from './pgmap-lookup.js';

interface Span extends PfnSpan {
  readonly id: number;
}

const linear = (spans: readonly Span[], pfn: number): Span | null =>
  spans.find((s) => pfn >= s.firstPfn && pfn <= s.lastPfn) ?? null;

/** Disjoint spans from sorted gap/length pairs. */
const spansArb = fc
  .array(fc.record({ gap: fc.integer({ min: 0, max: 5000 }), len: fc.integer({ min: 1, max: 3000 }) }), {
    maxLength: 60,
  })
  .map((parts) => {
    let at = 0x10_0000;
    return parts.map((p, id) => {
      const firstPfn = at + p.gap;
      at = firstPfn + p.len;
      return { id, firstPfn, lastPfn: at - 1 };
    });
  });

describe('PgmapTable', () => {
  it('finds the span holding a pfn, and nothing in gaps', () => {
    const t = new PgmapTable<Span>();
    t.insert({ id: 1, firstPfn: 200, lastPfn: 299 });
    t.insert({ id: 0, firstPfn: 100, lastPfn: 149 });
    expect(t.lookup(100)?.id).toBe(0);
    expect(t.lookup(149)?.id).toBe(0);
    expect(t.lookup(150)).toBeNull();
    expect(t.lookup(99)).toBeNull();
    expect(t.lookup(250)?.id).toBe(1);
    expect(t.lookup(300)).toBeNull();
    expect(t.all().map((s) => s.id)).toEqual([0, 1]);
  });

  it('refuses overlapping spans and forgets removed ones (also from the last-hit cache)', () => {
    const t = new PgmapTable<Span>();
    const a = { id: 0, firstPfn: 100, lastPfn: 199 };
    t.insert(a);
    expect(() => t.insert({ id: 1, firstPfn: 150, lastPfn: 250 })).toThrow(/overlapping/);
    expect(t.lookup(120)).toBe(a);
    expect(t.remove(a)).toBe(true);
    expect(t.remove(a)).toBe(false);
    expect(t.lookup(120)).toBeNull();
    expect(t.size).toBe(0);
  });

  it('handles spans over several GiB and pfns beyond 2^32 (no 32-bit integer math)', () => {
    const t = new PgmapTable<Span>();
    const big = { id: 0, firstPfn: 2 ** 40, lastPfn: 2 ** 40 + 4 * 262144 - 1 }; // 4 GiB of 4 KiB pages
    const next = { id: 1, firstPfn: 2 ** 40 + 4 * 262144, lastPfn: 2 ** 40 + 4 * 262144 + 511 };
    t.insert(big);
    t.insert(next);
    for (const pfn of [big.firstPfn, big.firstPfn + 262144 + 5, big.lastPfn]) expect(t.lookup(pfn)).toBe(big);
    expect(t.lookup(next.firstPfn)).toBe(next);
    expect(t.lookup(next.lastPfn + 1)).toBeNull();
    expect(t.lookup(big.firstPfn - 1)).toBeNull();
    expect(t.lookup(big.firstPfn + 2 ** 33)).toBeNull(); // equal to an indexed pfn in its low 32 bits
  });

  it('agrees with a linear scan for any spans, removals and queries', () => {
    fc.assert(
      fc.property(
        spansArb,
        fc.array(fc.nat()),
        fc.array(fc.integer({ min: 0, max: 0x20_0000 })),
        (spans, drops, qs) => {
          const t = new PgmapTable<Span>();
          for (const s of [...spans].reverse()) t.insert(s);
          const kept = [...spans];
          for (const d of drops.slice(0, spans.length / 2)) {
            const victim = kept.splice(d % kept.length, 1)[0];
            if (victim) t.remove(victim);
          }
          // Query every boundary (and its neighbours) plus random pfns, in an order that exercises the cache.
          const edges = kept.flatMap((s) => [s.firstPfn - 1, s.firstPfn, s.lastPfn, s.lastPfn + 1]);
          for (const pfn of [...edges, ...qs, ...edges.reverse()])
            expect(t.lookup(pfn)).toBe(linear(kept, pfn));
        },
      ),
      { numRuns: 300 },
    );
  });
});
