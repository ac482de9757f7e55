import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytes, U64_MASK } from '../../hw/addr.js';
import {
  addrInGenPool,
  GEN_POOL_NO_PHYS,
  genPoolAddOwner,
  genPoolAddVirt,
  genPoolAlloc,
  genPoolAllocOwner,
  genPoolAvail,
  genPoolCreate,
  genPoolDestroy,
  genPoolFree,
  genPoolFreeOwner,
  genPoolSize,
  genPoolVirtToPhys,
} from './genalloc.js';

const PAGE = 4096n;
const V = 0xffff_8880_0000_0000n;

describe('gen_pool', () => {
  it('rounds allocations up to the granule and allocates first fit', () => {
    const pool = genPoolCreate<string>(12);
    genPoolAddVirt(pool, V, 0x1000_0000n, bytes(16n * PAGE));
    expect(genPoolAlloc(pool, bytes(1))).toBe(V);
    expect(genPoolAlloc(pool, bytes(PAGE + 1n))).toBe(V + PAGE);
    expect(genPoolAvail(pool)).toBe(13n * PAGE);
    genPoolFree(pool, V, bytes(1));
    // The first hole is one page: a one-page request takes it, a two-page one goes past it.
    expect(genPoolAlloc(pool, bytes(2n * PAGE))).toBe(V + 3n * PAGE);
    expect(genPoolAlloc(pool, bytes(PAGE))).toBe(V);
  });

  it('returns null for size 0 and when no chunk has room', () => {
    const pool = genPoolCreate<string>(12);
    genPoolAddVirt(pool, V, 0n, bytes(4n * PAGE));
    expect(genPoolAlloc(pool, bytes(0))).toBeNull();
    expect(genPoolAlloc(pool, bytes(5n * PAGE))).toBeNull();
    for (let i = 0; i < 4; i++) genPoolAlloc(pool, bytes(PAGE));
    genPoolFree(pool, V, bytes(PAGE));
    genPoolFree(pool, V + 2n * PAGE, bytes(PAGE));
    // Two pages free in total, but not contiguous: a two-page request fails (fragmentation).
    expect(genPoolAvail(pool)).toBe(2n * PAGE);
    expect(genPoolAlloc(pool, bytes(2n * PAGE))).toBeNull();
  });

  it('searches the most recently added chunk first and hands back its owner', () => {
    const pool = genPoolCreate<string>(12);
    genPoolAddOwner(pool, V, 0x1000n, bytes(4n * PAGE), 'first');
    genPoolAddOwner(pool, V + 0x100_0000n, 0x9000_0000n, bytes(4n * PAGE), 'second');
    expect(genPoolAllocOwner(pool, bytes(PAGE))).toEqual({ addr: V + 0x100_0000n, owner: 'second' });
    expect(genPoolFreeOwner(pool, V + 0x100_0000n, bytes(PAGE))).toBe('second');
    expect(genPoolSize(pool)).toBe(8n * PAGE);
  });

  it('skips a chunk whose avail is below the unrounded request', () => {
    const pool = genPoolCreate<string>(12);
    genPoolAddOwner(pool, V, 0n, bytes(4n * PAGE), 'big');
    genPoolAddOwner(pool, V + 0x100_0000n, 0n, bytes(PAGE), 'small');
    expect(genPoolAllocOwner(pool, bytes(PAGE + 1n))?.owner).toBe('big');
    expect(genPoolAllocOwner(pool, bytes(PAGE))?.owner).toBe('small');
  });

  it('translates virtual to "physical" addresses, -1 outside the pool', () => {
    const pool = genPoolCreate<string>(12);
    genPoolAddVirt(pool, V, 0x2_0000_0000n, bytes(4n * PAGE));
    expect(genPoolVirtToPhys(pool, V + 0x1234n)).toBe(0x2_0000_1234n);
    expect(genPoolVirtToPhys(pool, V + 4n * PAGE)).toBe(GEN_POOL_NO_PHYS);
    expect(GEN_POOL_NO_PHYS).toBe(U64_MASK);
    expect(addrInGenPool(pool, V + PAGE, bytes(3n * PAGE))).toBe(true);
    expect(addrInGenPool(pool, V + PAGE, bytes(3n * PAGE + 1n))).toBe(false);
  });

  it('frees part of an allocation, one page at a time', () => {
    const pool = genPoolCreate<string>(12);
    genPoolAddVirt(pool, V, 0n, bytes(8n * PAGE));
    const a = genPoolAlloc(pool, bytes(4n * PAGE))!;
    for (let i = 3n; i >= 0n; i--) {
      genPoolFree(pool, a + i * PAGE, bytes(PAGE));
      expect(genPoolAvail(pool)).toBe((8n - i) * PAGE);
    }
    expect(genPoolAlloc(pool, bytes(8n * PAGE))).toBe(V);
  });

  it('BUGs (throws) on a double free, a free outside the pool, and destroy with allocations', () => {
    const pool = genPoolCreate<string>(12);
    genPoolAddVirt(pool, V, 0n, bytes(4n * PAGE));
    const a = genPoolAlloc(pool, bytes(2n * PAGE))!;
    genPoolFree(pool, a + PAGE, bytes(PAGE));
    expect(() => genPoolFree(pool, a, bytes(2n * PAGE))).toThrow(/double free/);
    expect(() => genPoolFree(pool, V + 0x10_0000n, bytes(PAGE))).toThrow(/no chunk/);
    expect(() => genPoolFree(pool, a, bytes(8n * PAGE))).toThrow(/past its chunk/);
    expect(() => genPoolDestroy(pool)).toThrow(/still has allocations/);
    genPoolFree(pool, a, bytes(PAGE));
    genPoolDestroy(pool);
    expect(genPoolSize(pool)).toBe(0n);
  });

  it('matches a bitmap first-fit reference on random alloc/free sequences', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('alloc' as const), pages: fc.integer({ min: 1, max: 9 }) }),
      fc.record({ kind: fc.constant('free' as const), pick: fc.nat(), part: fc.boolean() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const N = 32;
        const pool = genPoolCreate<null>(12);
        genPoolAddVirt(pool, V, 0n, bytes(BigInt(N) * PAGE));
        const bits = new Array<boolean>(N).fill(false);
        const live: { bit: number; n: number }[] = [];
        for (const o of ops) {
          if (o.kind === 'alloc') {
            let at = -1;
            for (let s = 0; s + o.pages <= N && at < 0; s++)
              if (bits.slice(s, s + o.pages).every((b) => !b)) at = s;
            const got = genPoolAlloc(pool, bytes(BigInt(o.pages) * PAGE));
            expect(got === null ? -1 : Number((got - V) / PAGE)).toBe(at);
            if (at >= 0) {
              bits.fill(true, at, at + o.pages);
              live.push({ bit: at, n: o.pages });
            }
          } else if (live.length > 0) {
            const i = o.pick % live.length;
            const a = live[i]!;
            // Free either the whole allocation or only its last page.
            const first = o.part && a.n > 1 ? a.bit + a.n - 1 : a.bit;
            const n = a.bit + a.n - first;
            genPoolFree(pool, V + BigInt(first) * PAGE, bytes(BigInt(n) * PAGE));
            bits.fill(false, first, first + n);
            if (first === a.bit) live.splice(i, 1);
            else a.n -= n;
          }
          expect(genPoolAvail(pool)).toBe(BigInt(bits.filter((b) => !b).length) * PAGE);
        }
      }),
      { numRuns: 200 },
    );
  });
});
