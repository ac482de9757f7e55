import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytes, dmaAddr, GiB, KiB, MiB, physAddr } from '../../hw/addr.js';
import { IommuUnit } from '../../hw/iommu/iommu.js';
import {
  IOMMU_MAP_ERRNOS,
  IOMMU_READ,
  IOMMU_WRITE,
  type IommuDomain,
  type IommuDomainType,
  iommuAttachDevice,
  iommuFlushIotlbAll,
  iommuIotlbGatherInit,
  iommuIotlbSync,
  iommuIovaToPhys,
  iommuMap,
  iommuMapSg,
  iommuPgsize,
  iommuUnmap,
  iommuUnmapFast,
} from './iommu.js';
import { iommuDomainAlloc } from './iommu-driver.js';

const DEV = '0000:03:00.0';
const RW = IOMMU_READ | IOMMU_WRITE;
const K4 = 4n * KiB;
const M2 = 2n * MiB;

interface Rig {
  unit: IommuUnit;
  d: IommuDomain;
  log: string[];
}

function rig(type: IommuDomainType = 'dma'): Rig {
  const unit = new IommuUnit({ name: 'iommu0', iotlb: { entries: 128, ways: 4 } });
  const log: string[] = [];
  const r = iommuDomainAlloc(unit, type, { log: (l) => log.push(l) });
  if (!r.ok) throw new Error(r.detail);
  expect(iommuAttachDevice(r.value, DEV).ok).toBe(true);
  return { unit, d: r.value, log };
}

const map = (d: IommuDomain, iova: bigint, pa: bigint, size: bigint, prot = RW) =>
  iommuMap(d, dmaAddr(iova), physAddr(pa), bytes(size), prot);
const leafShift = (u: IommuUnit, d: IommuDomain, iova: number) => u.pageTable(d.id).walk(iova).pageShift;
const xlate = (u: IommuUnit, iova: bigint, len = 8n, access: 'read' | 'write' = 'read') =>
  u.translate(DEV, dmaAddr(iova), bytes(len), access);

describe('iommuPgsize (iommu_pgsize)', () => {
  const d = { pgsizeBitmap: K4 | M2 | GiB };
  it.each([
    [0n, 0n, K4, K4, 1],
    [0n, 0n, M2, M2, 1],
    [0n, 0n, M2 + K4, M2, 1],
    [K4, K4, 4n * MiB, K4, 511], // 4K pages only up to the next 2M boundary
    [K4, K4, M2, K4, 512], // a 2M page would not fit after the boundary
    [0n, K4, 4n * MiB, K4, 1024], // iova and paddr differ inside 2M: 4K all the way
    [GiB, GiB, GiB + M2 + K4, GiB, 1],
    [M2, M2, 2n * GiB, M2, 511],
  ])('iova %s pa %s size %s -> pgsize %s x %i', (iova, pa, size, pgsize, count) => {
    expect(iommuPgsize(d, iova, pa, size)).toEqual({ pgsize, count });
  });
  it('has no page size for a size below the smallest page (BUG_ON)', () => {
    expect(() => iommuPgsize(d, 0n, 0n, 0x800n)).toThrow(/no page size/);
  });
});

describe('iommuMap', () => {
  it('maps with the largest pages alignment and size allow', () => {
    const { unit, d } = rig();
    const iova = GiB - M2;
    expect(map(d, iova, 3n * GiB - M2, M2 + GiB + M2 + K4).ok).toBe(true);
    expect(leafShift(unit, d, Number(iova))).toBe(21);
    expect(leafShift(unit, d, Number(GiB))).toBe(30);
    expect(leafShift(unit, d, Number(2n * GiB))).toBe(21);
    expect(leafShift(unit, d, Number(2n * GiB + M2))).toBe(12);
    expect(iommuIovaToPhys(d, dmaAddr(GiB + 0x123n))).toBe(3n * GiB + 0x123n);
    expect(iommuIovaToPhys(d, dmaAddr(2n * GiB + M2 + K4))).toBe(0n);
  });

  it('refuses an unaligned range with EINVAL and the kernel message', () => {
    const { d, log } = rig();
    const r = map(d, 0x1000n, 0x2200n, 0x1000n);
    const msg = 'unaligned: iova 0x1000 pa 0x0000000000002200 size 0x1000 min_pagesz 0x1000';
    expect(r).toEqual({ ok: false, errno: 'EINVAL', detail: msg });
    expect(log).toEqual([`iommu: ${msg}`]);
    expect(map(d, 0x1000n, 0x2000n, 0x1800n)).toMatchObject({ ok: false, errno: 'EINVAL' });
  });

  it('refuses double mapping with EEXIST and unrolls what it mapped', () => {
    const { d } = rig();
    expect(map(d, M2, 0x7000n, K4).ok).toBe(true);
    // The 2M block maps first, then the 4K page after it collides: the block is unmapped again.
    expect(map(d, 0n, 0x4000_0000n, M2 + K4)).toMatchObject({ ok: false, errno: 'EEXIST' });
    expect(iommuIovaToPhys(d, dmaAddr(0))).toBe(0n);
    expect(iommuIovaToPhys(d, dmaAddr(M2))).toBe(0x7000n);
    expect(map(d, M2, 0x9000n, K4)).toMatchObject({ ok: false, errno: 'EEXIST' });
  });

  it('returns ERANGE beyond 48 bits, EINVAL without permission or on a non-paging domain', () => {
    const { d } = rig();
    expect(map(d, 1n << 48n, 0n, K4)).toMatchObject({ ok: false, errno: 'ERANGE' });
    expect(map(d, 0n, 1n << 48n, K4)).toMatchObject({ ok: false, errno: 'ERANGE' });
    expect(map(d, 0n, 0n, K4, 0)).toMatchObject({ ok: false, errno: 'EINVAL' });
    for (const t of ['identity', 'blocked'] as const) {
      const r = map(rig(t).d, 0n, 0n, K4);
      expect(r).toMatchObject({ ok: false, errno: 'EINVAL' });
      if (!r.ok) expect(IOMMU_MAP_ERRNOS).toContain(r.errno);
    }
  });

  it('iova_to_phys: identity returns the iova, blocked 0', () => {
    expect(iommuIovaToPhys(rig('identity').d, dmaAddr(0x1234_5000))).toBe(0x1234_5000n);
    expect(iommuIovaToPhys(rig('blocked').d, dmaAddr(0x1234_5000))).toBe(0n);
  });
});

describe('iommuUnmap', () => {
  it('returns the bytes unmapped, stopping at a hole', () => {
    const { d } = rig();
    map(d, 0n, 0n, 4n * MiB);
    expect(iommuUnmap(d, dmaAddr(0), bytes(4n * MiB))).toBe(4n * MiB);
    map(d, 0n, 0n, K4);
    map(d, 2n * K4, 2n * K4, K4);
    expect(iommuUnmap(d, dmaAddr(0), bytes(3n * K4))).toBe(K4);
    expect(iommuIovaToPhys(d, dmaAddr(2n * K4))).toBe(2n * K4);
    expect(iommuUnmap(d, dmaAddr(GiB), bytes(K4))).toBe(0n);
  });

  it('returns 0 for an unaligned range and for part of a block, with the kernel lines', () => {
    const { d, log } = rig();
    map(d, 0n, 0n, M2);
    expect(iommuUnmap(d, dmaAddr(0x1001), bytes(K4))).toBe(0n);
    expect(iommuUnmap(d, dmaAddr(0), bytes(K4))).toBe(0n);
    expect(iommuIovaToPhys(d, dmaAddr(0x1000))).toBe(0x1000n);
    expect(log).toEqual([
      'iommu: unaligned: iova 0x1001 size 0x1000 min_pagesz 0x1000',
      'iommu: WARN: Unmap of a partial large IOPTE is not allowed',
    ]);
  });

  it('strict: the IOTLB is invalidated before iommu_unmap returns', () => {
    const { unit, d } = rig();
    map(d, 0x10000n, 0xa0000n, K4);
    expect(xlate(unit, 0x10000n).ok).toBe(true);
    expect(iommuUnmap(d, dmaAddr(0x10000), bytes(K4))).toBe(K4);
    expect(xlate(unit, 0x10000n)).toMatchObject({ ok: false, fault: { reason: 'not-present' } });
    expect(unit.iotlb.stats.staleHits).toBe(0);
  });

  it('lazy: a stale IOTLB entry still translates after unmap_fast until iotlb_sync', () => {
    const { unit, d } = rig();
    map(d, 0x10000n, 0xa0000n, 2n * K4);
    expect(xlate(unit, 0x10000n, 2n * K4, 'write').ok).toBe(true);
    const gather = iommuIotlbGatherInit();
    expect(iommuUnmapFast(d, dmaAddr(0x10000), bytes(2n * K4), gather)).toBe(2n * K4);
    expect(gather).toMatchObject({ start: 0x10000n, end: 0x11fffn, pgsize: K4 });
    const stale = xlate(unit, 0x10000n, 2n * K4, 'write');
    expect(stale).toMatchObject({ ok: true, staleHits: 2, ranges: [{ phys: 0xa0000n, len: 2n * K4 }] });
    iommuIotlbSync(d, gather);
    expect(gather).toEqual(iommuIotlbGatherInit());
    expect(xlate(unit, 0x10000n, 2n * K4, 'write')).toMatchObject({
      ok: false,
      fault: { reason: 'not-present' },
    });
  });

  it('queued gather: nothing gathered, the flush-all removes the stale entries', () => {
    const { unit, d } = rig('dma-fq');
    map(d, 0x10000n, 0xa0000n, K4);
    xlate(unit, 0x10000n);
    const gather = { ...iommuIotlbGatherInit(), queued: true };
    expect(iommuUnmapFast(d, dmaAddr(0x10000), bytes(K4), gather)).toBe(K4);
    expect(gather.pgsize).toBe(0n);
    iommuIotlbSync(d, gather);
    expect(xlate(unit, 0x10000n)).toMatchObject({ ok: true, staleHits: 1 });
    iommuFlushIotlbAll(d);
    expect(xlate(unit, 0x10000n).ok).toBe(false);
    expect(unit.iotlb.stats.domainInvalidations).toBe(1);
  });

  it('a disjoint page or another page size syncs what was gathered first', () => {
    const { unit, d } = rig();
    map(d, 0n, 0n, K4);
    map(d, 0x100000n, 0n, K4);
    map(d, M2, 0n, M2);
    const gather = iommuIotlbGatherInit();
    iommuUnmapFast(d, dmaAddr(0), bytes(K4), gather);
    expect(unit.iotlb.stats.rangeInvalidations).toBe(0);
    iommuUnmapFast(d, dmaAddr(0x100000), bytes(K4), gather);
    expect(unit.iotlb.stats.rangeInvalidations).toBe(1);
    iommuUnmapFast(d, dmaAddr(M2), bytes(M2), gather);
    expect(unit.iotlb.stats.rangeInvalidations).toBe(2);
    expect(gather).toMatchObject({ start: M2, end: 2n * M2 - 1n, pgsize: M2 });
  });
});

describe('iommuMapSg', () => {
  const ent = (phys: bigint, len: bigint, busAddress = false) => ({
    phys: physAddr(phys),
    len: bytes(len),
    busAddress,
  });

  it('merges contiguous entries, skips bus addresses and maps back to back', () => {
    const { unit, d } = rig();
    const sg = [ent(0x10000n, K4), ent(0x11000n, K4), ent(0x9000_0000n, K4, true), ent(0x20000n, 2n * K4)];
    const r = iommuMapSg(d, dmaAddr(0x100000), sg, RW);
    expect(r).toEqual({ ok: true, value: 4n * K4 });
    const t = xlate(unit, 0x100000n, 4n * K4);
    expect(t).toMatchObject({ ok: true, ranges: [{ phys: 0x10000n, len: 2n * K4 }, { phys: 0x20000n }] });
    expect(iommuIovaToPhys(d, dmaAddr(0x104000))).toBe(0n);
  });

  it('undoes everything when a later run fails', () => {
    const { d } = rig();
    map(d, 0x102000n, 0x5000n, K4);
    const r = iommuMapSg(d, dmaAddr(0x100000), [ent(0x10000n, 2n * K4), ent(0x30000n, K4)], RW);
    expect(r).toMatchObject({ ok: false, errno: 'EEXIST' });
    expect(iommuIovaToPhys(d, dmaAddr(0x100000))).toBe(0n);
    expect(iommuIovaToPhys(d, dmaAddr(0x102000))).toBe(0x5000n);
  });
});

describe('iommuDomainAlloc', () => {
  it('declares deferred flush and 4K/2M/1G pages; runs out of domain ids with ENOSPC', () => {
    const { d } = rig();
    expect(d.ops.capabilities.deferredFlush).toBe(true);
    expect(d.pgsizeBitmap).toBe(K4 | M2 | GiB);
    expect(d.geometry.apertureEnd).toBe((1n << 48n) - 1n);
    const unit = new IommuUnit({ name: 'small', iotlb: { entries: 1 } });
    let last = iommuDomainAlloc(unit, 'identity');
    while (last.ok) last = iommuDomainAlloc(unit, 'identity');
    expect(last).toMatchObject({ ok: false, errno: 'ENOSPC' });
  });
});

describe('iommuMap / iommuUnmap against a reference (property)', () => {
  interface Placed {
    iova: bigint;
    pa: bigint;
    len: bigint;
    prot: number;
  }
  const range = fc.record({
    pages: fc.oneof(
      { weight: 8, arbitrary: fc.integer({ min: 1, max: 1200 }) },
      { weight: 1, arbitrary: fc.integer({ min: 262_144, max: 262_144 + 1100 }) },
    ),
    gapPages: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 700 })),
    align: fc.constantFrom(K4, M2, GiB),
    physOffset: fc.integer({ min: 0, max: 3 }),
    samePhysAlign: fc.boolean(),
    prot: fc.constantFrom(IOMMU_READ, RW),
  });

  /** Lay the ranges out one after another from 256 MiB (non-overlapping by construction). */
  type RangeSpec = typeof range extends fc.Arbitrary<infer T> ? T : never;

  function place(specs: readonly RangeSpec[]): Placed[] {
    const out: Placed[] = [];
    let cursor = 256n * MiB;
    for (const s of specs) {
      const iova = (cursor + s.align - 1n) & ~(s.align - 1n);
      const len = BigInt(s.pages) * K4;
      // Same alignment as the iova (large pages possible) or shifted by pages (4K pages only).
      const pa = iova + BigInt(s.physOffset) * (s.samePhysAlign ? s.align : K4) + 64n * GiB;
      out.push({ iova, pa, len, prot: s.prot });
      cursor = iova + len + BigInt(s.gapPages) * K4;
    }
    return out;
  }

  const expectMapped = (unit: IommuUnit, p: Placed, off: bigint) => {
    const r = xlate(unit, p.iova + off, 1n, 'read');
    expect(r).toMatchObject({ ok: true, ranges: [{ phys: p.pa + off, len: 1n }] });
    const w = xlate(unit, p.iova + off, 1n, 'write');
    expect(w.ok).toBe((p.prot & IOMMU_WRITE) !== 0);
  };
  const expectUnmapped = (unit: IommuUnit, d: IommuDomain, iova: bigint) => {
    expect(xlate(unit, iova)).toMatchObject({ ok: false, fault: { reason: 'not-present' } });
    expect(iommuIovaToPhys(d, dmaAddr(iova))).toBe(0n);
  };

  it('translations agree with the reference; unmaps remove exactly their ranges', () => {
    let bigLeaves = 0;
    fc.assert(
      fc.property(
        fc.array(range, { minLength: 1, maxLength: 10 }),
        fc.array(fc.boolean(), { minLength: 10, maxLength: 10 }),
        fc.nat(),
        (specs, drop, salt) => {
          const { unit, d } = rig();
          const placed = place(specs);
          for (const p of placed) expect(map(d, p.iova, p.pa, p.len, p.prot).ok).toBe(true);
          const probe = (p: Placed) => [0n, p.len - 1n, (BigInt(salt) * 4099n) % p.len];
          for (const p of placed) for (const off of probe(p)) expectMapped(unit, p, off);
          // The largest page that alignment and size allow was used at the start of each range.
          for (const p of placed) {
            const fit = [GiB, M2, K4].find((s) => (p.iova | p.pa) % s === 0n && p.len >= s)!;
            const shift = leafShift(unit, d, Number(p.iova));
            expect(2n ** BigInt(shift)).toBe(fit);
            bigLeaves += fit > K4 ? 1 : 0;
          }
          const kept: Placed[] = [];
          placed.forEach((p, i) => {
            if (drop[i]) expect(iommuUnmap(d, dmaAddr(p.iova), bytes(p.len))).toBe(p.len);
            else kept.push(p);
          });
          for (const p of placed) {
            if (kept.includes(p)) for (const off of probe(p)) expectMapped(unit, p, off);
            else for (const off of probe(p)) expectUnmapped(unit, d, p.iova + off);
          }
          // Just outside each kept range is either a neighbour that is kept, or nothing.
          const owner = (a: bigint) => kept.find((p) => a >= p.iova && a < p.iova + p.len);
          for (const p of kept) {
            for (const a of [p.iova - 1n, p.iova + p.len]) {
              const o = owner(a);
              if (o) expectMapped(unit, o, a - o.iova);
              else expectUnmapped(unit, d, a);
            }
          }
        },
      ),
      { numRuns: 60 },
    );
    expect(bigLeaves).toBeGreaterThan(10);
  });
});
