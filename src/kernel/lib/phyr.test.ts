import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Bytes, bytes, type DmaAddr, dmaAddr, PAGE_SIZE_N, physAddr } from '../../hw/addr.js';
import type { KResult } from '../errno.js';
import {
  DmaRangeList,
  minBig,
  NO_PGMAP,
  type PgmapOf,
  PHYR_PAGE_BREAK,
  type PhyrList,
  type PhyrPages8,
  type PhysRange,
  phyrConvert,
  phyrCursorToArray,
  phyrFromRanges,
  phyrPages8FromPfns,
  phyrRanges16Build,
} from './phyr.js';

// Pgmap regions by pfn: RAM below 100, pgmap 0 for [100, 150), pgmap 1 for [150, 200), RAM above.
const regionOfPfn = (pfn: number): number => (pfn >= 100 && pfn < 150 ? 0 : pfn >= 150 && pfn < 200 ? 1 : -1);
const pgmapOf: PgmapOf = (p) => regionOfPfn(Number(p >> 12n));

const P = PAGE_SIZE_N;
function unwrap<T>(res: KResult<T>): T {
  if (!res.ok) throw new Error(`${res.errno}: ${res.detail}`);
  return res.value;
}
const r = (phys: bigint, len: bigint): PhysRange => ({ phys: physAddr(phys), len: bytes(len) });
const arr = (l: PhyrList) => phyrCursorToArray(l.cursor()).map((x) => [x.phys, x.len]);

/** A page-structured buffer: pfns in order, data starting `head` into the first page, `total` bytes. */
interface PageBuf {
  pfns: number[];
  head: number;
  total: bigint;
}

const pageBufArb: fc.Arbitrary<PageBuf> = fc
  .record({
    start: fc.integer({ min: 0, max: 260 }),
    steps: fc.array(
      fc.oneof(fc.constant(1), fc.constant(1), fc.constant(1), fc.integer({ min: -50, max: 80 })),
      {
        maxLength: 40,
      },
    ),
    head: fc.integer({ min: 0, max: 4095 }),
    tailCut: fc.integer({ min: 0, max: 4095 }),
  })
  .map(({ start, steps, head, tailCut }) => {
    const pfns = [start];
    for (const s of steps) pfns.push(Math.max(0, pfns[pfns.length - 1]! + s));
    const full = BigInt(pfns.length) * P - BigInt(head);
    // Cut at most what keeps the last page non-empty.
    const maxCut = pfns.length === 1 ? full - 1n : P - 1n;
    const cut = minBig(BigInt(tailCut), maxCut);
    return { pfns, head, total: full - cut };
  });

/** The byte stream of a page buffer as per-page ranges (ranges16's natural input). */
function pageRanges(b: PageBuf): PhysRange[] {
  const out: PhysRange[] = [];
  let left = b.total;
  b.pfns.forEach((pfn, i) => {
    const off = i === 0 ? BigInt(b.head) : 0n;
    const len = minBig(P - off, left);
    if (len > 0n) out.push(r(BigInt(pfn) * P + off, len));
    left -= len;
  });
  return out;
}

/** Naive reference merge: byte-contiguous and same pgmap, decided page by page. */
function referenceMerge(ranges: PhysRange[], pg: PgmapOf): [bigint, bigint][] {
  const out: [bigint, bigint][] = [];
  for (const x of ranges) {
    if (x.len === 0n) continue;
    const last = out[out.length - 1];
    if (last && last[0] + last[1] === x.phys && pg(physAddr(x.phys - 1n)) === pg(x.phys)) last[1] += x.len;
    else out.push([x.phys, x.len]);
  }
  return out;
}

function buildAll(b: PageBuf): PhyrList[] {
  const lists: PhyrList[] = [
    phyrRanges16Build(pageRanges(b), pgmapOf),
    unwrap(phyrPages8FromPfns(b.pfns, b.head, bytes(b.total), pgmapOf)),
  ];
  const single = phyrFromRanges('single', pageRanges(b), pgmapOf);
  if (single.ok) lists.push(single.value);
  return lists;
}

describe('phyr layouts: hand cases', () => {
  it('ranges16 merges contiguous RAM and keeps a gap', () => {
    const l = phyrRanges16Build([r(0x1000n, 0x1000n), r(0x2000n, 0x800n), r(0x5000n, 0x10n)], NO_PGMAP);
    expect(arr(l)).toEqual([
      [0x1000n, 0x1800n],
      [0x5000n, 0x10n],
    ]);
    expect(l.entryCount).toBe(2);
    expect(l.totalLen()).toBe(0x1810n);
  });

  it('ranges16 never merges across a pgmap boundary even when contiguous', () => {
    // pfn 99 is RAM, pfn 100 is pgmap 0: physically contiguous, not mergeable.
    const l = phyrRanges16Build([r(99n * P, P), r(100n * P, P), r(101n * P, P)], pgmapOf);
    expect(arr(l)).toEqual([
      [99n * P, P],
      [100n * P, 2n * P],
    ]);
  });

  it('pages8 sets the break bit at a pgmap change and its cursor honours it', () => {
    const l = phyrPages8FromPfns([98, 99, 100, 101], 0x10, bytes(4n * P - 0x10n - 0x20n), pgmapOf);
    const p8 = unwrap(l) as PhyrPages8;
    expect(p8.wordAt(2) & PHYR_PAGE_BREAK).toBe(1n);
    expect(p8.wordAt(1) & PHYR_PAGE_BREAK).toBe(0n);
    expect(arr(p8)).toEqual([
      [98n * P + 0x10n, 2n * P - 0x10n],
      [100n * P, 2n * P - 0x20n],
    ]);
  });

  it('pages8 rejects a length that does not end in the last page', () => {
    const tooLong = phyrPages8FromPfns([1, 2], 0, bytes(2n * P + 1n), NO_PGMAP);
    expect(tooLong.ok).toBe(false);
    if (!tooLong.ok) expect(tooLong.errno).toBe('EINVAL');
    const tooShort = phyrPages8FromPfns([1, 2], 0, bytes(P), NO_PGMAP);
    expect(tooShort.ok).toBe(false);
    expect(phyrPages8FromPfns([1], 4096, bytes(1), NO_PGMAP).ok).toBe(false);
  });

  it('pages8 from ranges refuses holes inside a page', () => {
    const res = phyrFromRanges('pages8', [r(0x1000n, 0x800n), r(0x3000n, 0x1000n)]);
    expect(res.ok).toBe(false);
    if (!res.ok) expect(res.errno).toBe('EINVAL');
    expect(phyrFromRanges('pages8', [r(0x1800n, 0x800n), r(0x3000n, 0x100n)]).ok).toBe(true);
  });

  it('single holds one run and refuses two', () => {
    const one = phyrFromRanges('single', [r(0x1000n, 0x1000n), r(0x2000n, 0x1000n)]);
    expect(one.ok && arr(one.value)).toEqual([[0x1000n, 0x2000n]]);
    const two = phyrFromRanges('single', [r(0x1000n, 0x1000n), r(0x4000n, 0x1000n)]);
    expect(two.ok).toBe(false);
    const empty = phyrFromRanges('single', []);
    expect(empty.ok && empty.value.cursor().done).toBe(true);
  });

  it('cursors throw when advanced past the end', () => {
    for (const l of buildAll({ pfns: [5], head: 0, total: 10n })) {
      const c = l.cursor();
      c.advance();
      expect(c.done).toBe(true);
      expect(() => c.advance()).toThrow(RangeError);
    }
  });

  it('slices keep the layout and the bytes', () => {
    const b: PageBuf = { pfns: [10, 11, 40, 41, 42], head: 0x100, total: 5n * P - 0x100n - 0x300n };
    for (const l of buildAll(b)) {
      const s = l.slice(bytes(0x1000n), bytes(0x2000n));
      expect(s.layout).toBe(l.layout);
      expect(arr(s)).toEqual([
        [11n * P + 0x100n, P - 0x100n],
        [40n * P, 0x1100n],
      ]);
      expect(() => l.slice(bytes(1n), l.totalLen())).toThrow(RangeError);
    }
  });
});

describe('phyr layouts: properties', () => {
  it('all layouts give the reference cursor output for the same page buffer', () => {
    fc.assert(
      fc.property(pageBufArb, (b) => {
        const expected = referenceMerge(pageRanges(b), pgmapOf);
        for (const l of buildAll(b)) {
          expect(arr(l)).toEqual(expected);
          expect(l.totalLen()).toBe(b.total);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('merging preserves total length and order, is maximal, and never crosses a pgmap', () => {
    const rangesArb = fc.array(
      fc.record({
        pfn: fc.integer({ min: 0, max: 260 }),
        off: fc.integer({ min: 0, max: 4095 }),
        len: fc.integer({ min: 0, max: 9000 }),
      }),
      { maxLength: 30 },
    );
    fc.assert(
      fc.property(rangesArb, (raw) => {
        // Clip each range to its own pgmap region so the precondition (one pgmap per input range) holds.
        const input = raw.map(({ pfn, off, len }) => {
          const start = BigInt(pfn) * P + BigInt(off);
          let end = start + BigInt(len);
          for (let p = pfn + 1; BigInt(p) * P < end; p++) {
            if (regionOfPfn(p) !== regionOfPfn(pfn)) end = BigInt(p) * P;
          }
          return r(start, end - start);
        });
        const l = phyrRanges16Build(input, pgmapOf);
        const out = phyrCursorToArray(l.cursor());
        const sum = input.reduce((a, x) => a + x.len, 0n);
        expect(l.totalLen()).toBe(sum);
        expect(out.reduce((a, x) => a + x.len, 0n)).toBe(sum);
        // Order: the byte addresses, walked in order, are the same sequence of pieces.
        expect(out.map((x) => [x.phys, x.len])).toEqual(referenceMerge(input, pgmapOf));
        for (let i = 0; i < out.length; i++) {
          const x = out[i]!;
          expect(x.len > 0n).toBe(true);
          for (let a: bigint = x.phys; a < x.phys + x.len; a += P - (a % P))
            expect(pgmapOf(physAddr(a))).toBe(pgmapOf(x.phys));
          const next = out[i + 1];
          if (next)
            expect(
              x.phys + x.len === next.phys && pgmapOf(physAddr(next.phys - 1n)) === pgmapOf(next.phys),
            ).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('slices of every layout match slicing the reference byte stream', () => {
    fc.assert(
      fc.property(pageBufArb, fc.nat(), fc.nat(), (b, a, c) => {
        const off = BigInt(a) % (b.total + 1n);
        const len = BigInt(c) % (b.total - off + 1n);
        const expected = sliceRanges(referenceMerge(pageRanges(b), pgmapOf), off, len);
        for (const l of buildAll(b)) {
          const s = l.slice(bytes(off), bytes(len));
          expect(arr(s)).toEqual(expected);
          expect(s.totalLen()).toBe(len);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('converting between layouts round-trips', () => {
    fc.assert(
      fc.property(pageBufArb, (b) => {
        const base = phyrRanges16Build(pageRanges(b), pgmapOf);
        const p8 = phyrConvert(base, 'pages8', pgmapOf);
        expect(p8.ok).toBe(true);
        if (!p8.ok) return;
        const back = phyrConvert(p8.value, 'ranges16', pgmapOf);
        expect(back.ok && arr(back.value)).toEqual(arr(base));
      }),
      { numRuns: 200 },
    );
  });
});

function sliceRanges(rs: [bigint, bigint][], off: bigint, len: bigint): [bigint, bigint][] {
  const out: [bigint, bigint][] = [];
  let skip = off;
  let want = len;
  for (const [p, l] of rs) {
    if (want === 0n) break;
    if (skip >= l) {
      skip -= l;
      continue;
    }
    const take = minBig(l - skip, want);
    out.push([p + skip, take]);
    want -= take;
    skip = 0n;
  }
  return out;
}

describe('phyr memory accounting', () => {
  it('pages8 holds 1 M pages in <= 8.5 bytes per entry; ranges16 in 16', () => {
    const N = 1 << 20;
    const pfns = function* () {
      for (let i = 0; i < N; i++) yield i * 2; // every other page: no merging
    };
    const p8 = phyrPages8FromPfns(pfns(), 0, bytes(BigInt(N) * P), NO_PGMAP);
    expect(p8.ok).toBe(true);
    if (!p8.ok) return;
    expect(p8.value.entryCount).toBe(N);
    expect(p8.value.bytesUsed() / N).toBeLessThanOrEqual(8.5);
    const r16 = phyrRanges16Build(
      (function* () {
        for (let i = 0; i < N; i++) yield r(BigInt(i * 2) * P, P);
      })(),
      NO_PGMAP,
    );
    expect(r16.entryCount).toBe(N);
    expect(r16.bytesUsed() / N).toBe(16);
  });
});

describe('DmaRangeList', () => {
  const d = (v: bigint): DmaAddr => dmaAddr(v);
  it('pushes, extends, iterates and accounts', () => {
    const l = new DmaRangeList();
    expect(l.cursor().done).toBe(true);
    l.push(d(0xfff0_0000n), bytes(0x1000n));
    l.extendLast(bytes(0x1000n));
    l.push(d(0x8000_0000n), bytes(0x200n));
    expect(l.count).toBe(2);
    expect(l.totalLen()).toBe(0x2200n);
    const seen: [DmaAddr, Bytes][] = [];
    for (const c = l.cursor(); !c.done; c.advance()) seen.push([c.dma, c.len]);
    expect(seen).toEqual([
      [0xfff0_0000n, 0x2000n],
      [0x8000_0000n, 0x200n],
    ]);
    l.trim();
    expect(l.bytesUsed()).toBe(32);
    expect(() => l.push(d(0n), bytes(0n))).toThrow(RangeError);
    expect(() => new DmaRangeList().extendLast(bytes(1n))).toThrow(RangeError);
  });
});
