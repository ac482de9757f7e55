import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytes } from '../../hw/addr.js';
import { Engine } from '../../sim/engine.js';
import type { KernelVersion } from '../profile.js';
import {
  allocIova,
  allocIovaFast,
  findIova,
  freeCpuCachedIovas,
  freeGlobalCachedIovas,
  freeIova,
  freeIovaFast,
  type IovaDomain,
  type IovaDomainOptions,
  initIovaDomain,
  iovaDepotReclaimTick,
  iovaDmaAddr,
  iovaDomainInitRcaches,
  iovaDomainRanges,
  iovaRcacheRange,
  putIovaDomain,
  reserveIova,
} from './iova.js';
import { IOVA_MAG_SIZE, MAX_GLOBAL_MAGS, rcacheCachedCount } from './iova-rcache.js';

const G4K = bytes(4096);
const LIMIT32 = 0xf_ffff; // DMA_BIT_MASK(32) >> 12
const LIMIT64 = 2 ** 52 - 1; // DMA_BIT_MASK(64) >> 12
const DMA32 = 0x10_0000;

function domain(startPfn = 1, nrCpus = 2, opts: IovaDomainOptions = {}): IovaDomain {
  const d = initIovaDomain(G4K, startPfn, opts);
  expect(iovaDomainInitRcaches(d, nrCpus).ok).toBe(true);
  return d;
}

const pfnOf = (r: { ok: boolean; value?: { pfnLo: number } }): number => {
  if (!r.ok || r.value === undefined) throw new Error('allocation failed');
  return r.value.pfnLo;
};
const fast = (d: IovaDomain, size: number, limit: number, cpu = 0, flush = true): number => {
  const r = allocIovaFast(d, size, limit, flush, cpu);
  if (!r.ok) throw new Error(`alloc_iova_fast failed: ${r.detail}`);
  return r.value;
};

describe('init_iova_domain', () => {
  it('sets dma_32bit_pfn, max32_alloc_size and the anchor', () => {
    const d = domain();
    expect([d.dma32bitPfn, d.max32AllocSize, d.tree.size]).toEqual([DMA32, DMA32, 1]);
    expect(iovaDomainRanges(d)).toEqual([]);
    expect(iovaRcacheRange()).toBe(128n * 1024n);
  });
  it('refuses a granule larger than PAGE_SIZE or not a power of two (BUG_ON)', () => {
    expect(() => initIovaDomain(bytes(8192), 1)).toThrow(/BUG/);
    expect(() => initIovaDomain(bytes(3000), 1)).toThrow(/BUG/);
  });
});

describe('alloc_iova: placement', () => {
  it('allocates top-down from the limit', () => {
    const d = domain();
    expect(pfnOf(allocIova(d, 1, LIMIT32, true))).toBe(0xf_ffff);
    expect(pfnOf(allocIova(d, 1, LIMIT32, true))).toBe(0xf_fffe);
    expect(pfnOf(allocIova(d, 1, LIMIT64, true))).toBe(LIMIT64);
    expect(iovaDmaAddr(d, LIMIT64)).toBe(0xffff_ffff_ffff_f000n);
  });

  it('aligns size-aligned ranges to roundup_pow_of_two(size) without rounding the size', () => {
    const d = domain();
    allocIova(d, 1, LIMIT32, true); // 0xfffff
    allocIova(d, 1, LIMIT32, true); // 0xffffe
    const r = allocIova(d, 3, LIMIT32, true);
    expect(r.ok && r.value).toEqual({ pfnLo: 0xf_fff8, pfnHi: 0xf_fffa });
    const u = allocIova(d, 3, LIMIT32, false);
    expect(u.ok && u.value).toEqual({ pfnLo: 0xf_fff5, pfnHi: 0xf_fff7 });
  });

  it('honours limitPfn', () => {
    const d = domain();
    expect(pfnOf(allocIova(d, 16, 0xfff, true))).toBe(0xff0);
    const r = allocIova(d, 16, 0xe, true);
    expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
  });

  it('walks from the cached node, not from the limit (faithful to the kernel)', () => {
    const d = domain();
    expect(pfnOf(allocIova(d, 1, 0x7_ffff, true))).toBe(0x7_ffff);
    // The next 32-bit allocation starts below cached32_node although [0x80000, 0xfffff] is free.
    expect(pfnOf(allocIova(d, 1, LIMIT32, true))).toBe(0x7_fffe);
  });

  it('retries once from the limit down to just above the cached node', () => {
    const d = domain(0x7_fff0);
    expect(pfnOf(allocIova(d, 1, 0x7_ffff, true))).toBe(0x7_ffff);
    // Below cached32_node only 15 pages remain; the retry finds room above it.
    expect(pfnOf(allocIova(d, 16, LIMIT32, true))).toBe(0xf_fff0);
  });

  it('records max32_alloc_size on failure and fast-fails until a 32-bit range is freed', () => {
    const d = domain(DMA32 - 8);
    const a = pfnOf(allocIova(d, 4, LIMIT32, true));
    pfnOf(allocIova(d, 4, LIMIT32, true));
    const f = allocIova(d, 1, LIMIT32, true);
    expect(f.ok ? 'ok' : f.errno).toBe('ENOMEM');
    expect(d.max32AllocSize).toBe(1);
    expect(allocIova(d, 2, LIMIT32, true).ok).toBe(false);
    expect(d.stats.max32FastFails).toBe(1);
    // Above 4 GiB the 32-bit record does not apply.
    expect(pfnOf(allocIova(d, 2, LIMIT64, true))).toBe(LIMIT64 - 1);
    freeIova(d, a);
    expect(d.max32AllocSize).toBe(DMA32);
    expect(pfnOf(allocIova(d, 2, LIMIT32, true))).toBe(a + 2);
  });
});

describe('allocation failures of the kernel allocators (fault seams)', () => {
  it('ENOMEM when alloc_iova_mem, the reserve node or the rcache magazines cannot be allocated', () => {
    let fail = false;
    const d = initIovaDomain(G4K, 1, { allocFails: () => fail });
    fail = true;
    const r = iovaDomainInitRcaches(d, 1);
    expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
    const a = allocIova(d, 1, LIMIT32, true);
    expect(a.ok ? 'ok' : a.errno).toBe('ENOMEM');
    const v = reserveIova(d, 10, 20);
    expect(v.ok ? 'ok' : v.errno).toBe('ENOMEM');
    fail = false;
    expect(iovaDomainInitRcaches(d, 1).ok).toBe(true);
    expect(() => allocIovaFast(initIovaDomain(G4K, 1), 1, LIMIT32, true, 0)).toThrow(
      /before iova_domain_init_rcaches/,
    );
    expect(() => allocIovaFast(d, 1, LIMIT32, true, 5)).toThrow(/not online/);
  });
});

describe('find_iova, free_iova, reserve_iova', () => {
  it('finds by any pfn inside a range and frees it', () => {
    const d = domain();
    const lo = pfnOf(allocIova(d, 8, LIMIT32, true));
    expect(findIova(d, lo + 5)).toEqual({ pfnLo: lo, pfnHi: lo + 7 });
    freeIova(d, lo + 3);
    expect(findIova(d, lo)).toBeNull();
    freeIova(d, lo); // nothing there: no effect, as in the kernel
    expect(iovaDomainRanges(d)).toEqual([]);
  });

  it('reserves, merges overlaps in place, and allocation avoids reserved ranges', () => {
    const d = domain();
    const r1 = reserveIova(d, 0xf_ff00, 0xf_ffff);
    expect(r1.ok && r1.value).toEqual({ pfnLo: 0xf_ff00, pfnHi: 0xf_ffff });
    const r2 = reserveIova(d, 0xf_fe80, 0xf_ff10);
    expect(r2.ok && r2.value).toEqual({ pfnLo: 0xf_fe80, pfnHi: 0xf_ffff });
    expect(iovaDomainRanges(d)).toEqual([{ pfnLo: 0xf_fe80, pfnHi: 0xf_ffff }]);
    expect(pfnOf(allocIova(d, 1, LIMIT32, true))).toBe(0xf_fe7f);
    const bad = reserveIova(d, 0, 2 ** 52);
    expect(bad.ok ? 'ok' : bad.errno).toBe('EINVAL');
  });

  it('reserve extends across a gap into a new range', () => {
    const d = domain();
    reserveIova(d, 100, 110);
    const r = reserveIova(d, 105, 130);
    expect(r.ok && r.value).toEqual({ pfnLo: 111, pfnHi: 130 });
    expect(iovaDomainRanges(d)).toEqual([
      { pfnLo: 100, pfnHi: 110 },
      { pfnLo: 111, pfnHi: 130 },
    ]);
  });
});

describe('alloc_iova_fast / free_iova_fast: range caches', () => {
  it('rounds sizes below 32 pages to a power of two; larger sizes are not rounded', () => {
    const d = domain();
    const p = fast(d, 3, LIMIT32);
    expect(findIova(d, p)).toEqual({ pfnLo: p, pfnHi: p + 3 });
    const q = fast(d, 33, LIMIT32);
    expect(findIova(d, q)).toEqual({ pfnLo: q, pfnHi: q + 32 });
    expect(q % 64).toBe(0);
    expect(d.stats.rcacheBypass).toBe(1);
  });

  it('hits after a free of the same bucket on the same CPU; misses for another bucket or CPU', () => {
    const d = domain();
    const p = fast(d, 1, LIMIT32);
    expect(d.stats.misses[0]).toBe(1);
    freeIovaFast(d, p, 1, 0);
    expect(findIova(d, p)).not.toBeNull(); // cached ranges stay allocated in the tree
    fast(d, 2, LIMIT32, 0);
    expect(d.stats.misses[1]).toBe(1);
    fast(d, 1, LIMIT32, 1);
    expect(d.stats.misses[0]).toBe(2);
    expect(fast(d, 1, LIMIT32, 0)).toBe(p);
    expect(d.stats.hits[0]).toBe(1);
  });

  it('a cached pfn above the limit is a miss', () => {
    const d = domain();
    const p = fast(d, 1, LIMIT64);
    freeIovaFast(d, p, 1, 0);
    const q = fast(d, 1, LIMIT32);
    expect(q).toBeLessThanOrEqual(LIMIT32);
    expect(d.stats.hits[0]).toBe(0);
    expect(fast(d, 1, LIMIT64)).toBe(p);
  });

  it('swaps loaded and prev, then pushes a full magazine to the depot', () => {
    const d = domain(1, 1);
    const pfns = Array.from({ length: 2 * IOVA_MAG_SIZE + 1 }, () => pfnOf(allocIova(d, 1, LIMIT32, true)));
    pfns.slice(0, 2 * IOVA_MAG_SIZE).forEach((p) => {
      freeIovaFast(d, p, 1, 0);
    });
    const rc = d.rcaches![0]!;
    expect([rc.cpu[0]!.loaded.size, rc.cpu[0]!.prev.size, rc.depot.length]).toEqual([
      IOVA_MAG_SIZE,
      IOVA_MAG_SIZE,
      0,
    ]);
    freeIovaFast(d, pfns[2 * IOVA_MAG_SIZE]!, 1, 0);
    expect([rc.cpu[0]!.loaded.size, rc.depot.length, d.stats.depotPushes]).toEqual([1, 1, 1]);
    // Draining: loaded, then prev, then the depot magazine.
    for (let i = 0; i < 2 * IOVA_MAG_SIZE + 1; i++) fast(d, 1, LIMIT32);
    expect(d.stats.hits[0]).toBe(2 * IOVA_MAG_SIZE + 1);
    expect(rc.depot.length).toBe(0);
  });

  it('a failed magazine allocation frees the range to the tree', () => {
    let failMag = false;
    const d = domain(1, 1, { allocFails: (w) => w === 'magazine' && failMag });
    const pfns = Array.from({ length: 2 * IOVA_MAG_SIZE + 1 }, () => pfnOf(allocIova(d, 1, LIMIT32, true)));
    pfns.slice(0, 2 * IOVA_MAG_SIZE).forEach((p) => {
      freeIovaFast(d, p, 1, 0);
    });
    failMag = true;
    const last = pfns[2 * IOVA_MAG_SIZE]!;
    freeIovaFast(d, last, 1, 0);
    expect(findIova(d, last)).toBeNull();
  });

  it('flushes every CPU cache and the depots when the space is exhausted, then retries once', () => {
    const d = domain(DMA32 - 4);
    const ps = [
      fast(d, 1, LIMIT32, 0),
      fast(d, 1, LIMIT32, 1),
      fast(d, 1, LIMIT32, 0),
      fast(d, 1, LIMIT32, 1),
    ];
    ps.forEach((p, i) => {
      freeIovaFast(d, p, 1, i % 2);
    });
    const noFlush = allocIovaFast(d, 2, LIMIT32, false, 0);
    expect(noFlush.ok ? 'ok' : noFlush.errno).toBe('ENOMEM');
    expect(fast(d, 2, LIMIT32, 0)).toBe(DMA32 - 2);
    expect(d.stats.rcacheFlushes).toBe(1);
    expect(rcacheCachedCount(d.rcaches!)).toBe(0);
  });
});

/** Fill one CPU's bucket-0 magazines and push `pushes` full magazines towards the depot. */
function pushMagazines(d: IovaDomain, pushes: number): number[] {
  const n = 2 * IOVA_MAG_SIZE + (pushes - 1) * IOVA_MAG_SIZE + 1;
  const pfns = Array.from({ length: n }, () => pfnOf(allocIova(d, 1, LIMIT64, true)));
  for (const p of pfns) freeIovaFast(d, p, 1, 0);
  return pfns;
}

describe('depot per profile', () => {
  it(`6.1: at most ${MAX_GLOBAL_MAGS} depot magazines; a displaced one goes back to the tree`, () => {
    const d = domain(1, 1, { version: '6.1' });
    const before = d.tree.size;
    pushMagazines(d, MAX_GLOBAL_MAGS + 1);
    const rc = d.rcaches![0]!;
    expect([rc.depot.length, d.stats.depotPushes, d.stats.depotOverflows]).toEqual([
      MAX_GLOBAL_MAGS,
      MAX_GLOBAL_MAGS,
      1,
    ]);
    expect(rc.workPending).toBe(false);
    expect(d.tree.size).toBe(before + rcacheCachedCount(d.rcaches!));
  });

  it('newest: the depot grows past 32 and the delayed work trims it to num_online_cpus', () => {
    const d = domain(1, 1, { version: 'newest' });
    pushMagazines(d, MAX_GLOBAL_MAGS + 1);
    const rc = d.rcaches![0]!;
    expect([rc.depot.length, d.stats.depotOverflows, rc.workPending]).toEqual([33, 0, true]);
    let ticks = 0;
    while (iovaDepotReclaimTick(d) > 0) ticks++;
    expect(rc.depot.length).toBe(1);
    expect(d.stats.depotReclaims).toBe(32);
    expect(ticks).toBe(33); // 32 runs free a magazine and re-arm; the 33rd finds depot_size <= CPUs
    expect(d.tree.size - 1).toBe(rcacheCachedCount(d.rcaches!));
  });

  it('newest: with an engine the work runs every 100 ms of virtual time', () => {
    const engine = new Engine(1);
    const d = domain(1, 2, { version: 'newest', scheduler: engine });
    pushMagazines(d, 5);
    const rc = d.rcaches![0]!;
    expect(rc.depot.length).toBe(5);
    engine.run(99_999_999);
    expect(rc.depot.length).toBe(5);
    engine.run(100_000_000);
    expect(rc.depot.length).toBe(4);
    engine.run(250_000_000);
    expect(rc.depot.length).toBe(3);
    engine.run();
    expect(rc.depot.length).toBe(2);
    expect(() => iovaDepotReclaimTick(d)).toThrow();
  });
});

describe('properties', () => {
  type Op =
    | { kind: 'fast'; size: number; wide: boolean; cpu: number }
    | { kind: 'tree'; size: number; wide: boolean; aligned: boolean }
    | { kind: 'free'; pick: number; cpu: number };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    fc.record({
      kind: fc.constant('fast' as const),
      size: fc.integer({ min: 1, max: 70 }),
      wide: fc.boolean(),
      cpu: fc.integer({ min: 0, max: 1 }),
    }),
    fc.record({
      kind: fc.constant('tree' as const),
      size: fc.integer({ min: 1, max: 40 }),
      wide: fc.boolean(),
      aligned: fc.boolean(),
    }),
    fc.record({ kind: fc.constant('free' as const), pick: fc.nat(), cpu: fc.integer({ min: 0, max: 1 }) }),
  );

  for (const version of ['6.1', 'newest'] as const) {
    it(`${version}: random alloc/free never overlaps, stays inside limits, and frees everything back`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { maxLength: 300 }), (ops) => runOps(version, ops)),
        { numRuns: 60 },
      );
    });
  }

  function runOps(version: KernelVersion, ops: Op[]): void {
    // A 32-bit window of 600 pages so that exhaustion, retries and flushes happen.
    const d = domain(DMA32 - 600, 2, { version });
    reserveIova(d, DMA32 - 300, DMA32 - 290);
    const live: { pfn: number; size: number; fast: boolean; limit: number; align: number }[] = [];
    for (const op of ops) {
      if (op.kind === 'free') {
        const a = live.splice(op.pick % Math.max(1, live.length), 1)[0];
        if (a === undefined) continue;
        if (a.fast) freeIovaFast(d, a.pfn, a.size, op.cpu);
        else freeIova(d, a.pfn);
        continue;
      }
      const limit = op.wide ? LIMIT64 : LIMIT32;
      const r =
        op.kind === 'fast'
          ? allocIovaFast(d, op.size, limit, true, op.cpu)
          : allocIova(d, op.size, limit, op.aligned);
      if (!r.ok) continue;
      const pfn = typeof r.value === 'number' ? r.value : r.value.pfnLo;
      const rounded = op.kind === 'fast' && op.size < 32 ? 2 ** Math.ceil(Math.log2(op.size)) : op.size;
      const aligned = op.kind === 'fast' || op.aligned;
      live.push({
        pfn,
        size: op.size,
        fast: op.kind === 'fast',
        limit,
        align: aligned ? 2 ** Math.ceil(Math.log2(rounded)) : 1,
      });
      expect(pfn).toBeGreaterThanOrEqual(d.startPfn);
      expect(pfn + rounded - 1).toBeLessThanOrEqual(limit);
      expect(pfn % live[live.length - 1]!.align).toBe(0);
    }
    const ranges = iovaDomainRanges(d);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]!.pfnLo).toBeGreaterThan(ranges[i - 1]!.pfnHi);
    expect(ranges.length).toBe(live.length + 1 + rcacheCachedCount(d.rcaches!));
    for (const a of live) expect(findIova(d, a.pfn)?.pfnLo).toBe(a.pfn);
    d.tree.checkInvariants();
    for (const a of live) {
      if (a.fast) freeIovaFast(d, a.pfn, a.size, 0);
      else freeIova(d, a.pfn);
    }
    for (let c = 0; c < d.nrCpus; c++) freeCpuCachedIovas(d, c);
    freeGlobalCachedIovas(d);
    expect(iovaDomainRanges(d)).toEqual([{ pfnLo: DMA32 - 300, pfnHi: DMA32 - 290 }]);
    d.tree.checkInvariants();
  }
});

describe('put_iova_domain', () => {
  it('drops every range and the caches', () => {
    const d = domain();
    fast(d, 1, LIMIT32);
    allocIova(d, 5, LIMIT64, false);
    putIovaDomain(d);
    expect(iovaDomainRanges(d)).toEqual([]);
    expect(d.rcaches).toBeNull();
  });
});
