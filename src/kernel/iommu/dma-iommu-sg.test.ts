import { describe, expect, it } from 'vitest';
import { bytes, dmaAddr, physAddr } from '../../hw/addr.js';
import type { DmaP2pProvider } from '../dma/dma-context.js';
import { devOf, dmaTestKernel, fnOf, TB_SWITCH_A } from '../dma/dma-testbed.js';
import { dmaMapSgtable, dmaUnmapSgtable } from '../dma/mapping-sg.js';
import { err } from '../errno.js';
import { newSgTable, type SgTable, sgAllocTable, sgNext, sgSetPage } from '../lib/scatterlist.js';
import { cookieOf } from './dma-iommu.js';
import type { IommuDmaSetup } from './dma-iommu-setup.js';
import { sgArray } from './dma-iommu-sg.js';

/** A table of [pfn, offset, length] entries. */
function table(ents: [number, number, number][]): SgTable {
  const t = newSgTable();
  expect(sgAllocTable(t, ents.length, { version: 'newest' }).ok).toBe(true);
  let s = t.sgl;
  for (let i = 0; i < ents.length && s; i++, s = i < ents.length ? sgNext(s) : null) {
    const [pfn, off, len] = ents[i]!;
    sgSetPage(s, pfn, len, off);
  }
  return t;
}
const out = (t: SgTable) => sgArray(t.sgl!, t.nents).map((s) => [s.dmaAddress, s.dmaLength]);

function rig(untrusted = false) {
  const k = dmaTestKernel({ iommu: 'strict', dma: { untrusted: untrusted ? ['0000:04:00.0'] : [] } });
  return { k, dev: devOf(k), unit: (k.dma.iommu as IommuDmaSetup).unit };
}

describe('iommu_dma_map_sg', () => {
  it('gives scattered pages one contiguous IOVA segment the device can use', () => {
    const { dev, unit } = rig();
    const t = table([
      [0x1000, 0, 4096],
      [0x1005, 0, 4096],
      [0x1003, 0, 4096],
    ]);
    expect(dmaMapSgtable(dev, t, 'to-device').ok).toBe(true);
    expect(t.nents).toBe(1);
    const [[iova, len]] = out(t) as [[bigint, number]];
    expect(len).toBe(12288);
    const x = unit.translate(dev.name, dmaAddr(iova), bytes(12288), 'read');
    expect(x.ok && x.ranges.map((r) => r.phys)).toEqual([0x1000000n, 0x1005000n, 0x1003000n].map(physAddr));
    dmaUnmapSgtable(dev, t, 'to-device');
    expect(unit.translate(dev.name, dmaAddr(iova), bytes(4), 'read').ok).toBe(false);
  });

  it('starts a new segment where a CPU segment does not start on a granule, keeping its offset', () => {
    const { dev } = rig();
    const t = table([
      [0x1000, 0, 4096],
      [0x2000, 0x100, 0xf00],
    ]);
    expect(dmaMapSgtable(dev, t, 'to-device').ok).toBe(true);
    const [[a, la], [b, lb]] = out(t) as [[bigint, number], [bigint, number]];
    expect([la, lb, b - a]).toEqual([4096, 0xf00, 0x1100n]);
    expect(t.sgl!.offset).toBe(0);
    expect(sgNext(t.sgl!)!.offset).toBe(0x100);
  });

  it('splits at the maximum segment size', () => {
    const { dev } = rig();
    dev.maxSegSize = 8192;
    const t = table([0x10, 0x20, 0x30, 0x40].map((p) => [p, 0, 4096] as [number, number, number]));
    expect(dmaMapSgtable(dev, t, 'to-device').ok).toBe(true);
    expect(out(t).map(([, l]) => l)).toEqual([8192, 8192]);
  });

  it('pads the IOVA so no segment crosses the segment boundary', () => {
    const { dev } = rig();
    dev.segBoundaryMask = 0xffffn;
    const t = table([
      [0x100, 0, 0xf000],
      [0x200, 0, 0x2000],
    ]);
    expect(dmaMapSgtable(dev, t, 'to-device').ok).toBe(true);
    const [[a, la], [b, lb]] = out(t) as [[bigint, number], [bigint, number]];
    expect([la, lb, b - a]).toEqual([0xf000, 0x2000, 0x10000n]);
    expect(sgArray(t.sgl!, 2).map((s) => s.length)).toEqual([0xf000, 0x2000]);
  });

  it('restores the list and maps nothing when a segment is P2P memory the device cannot reach', () => {
    const { k, dev } = rig();
    const prov: DmaP2pProvider = { owner: fnOf(k, TB_SWITCH_A), busOffset: 0n };
    k.dma.p2p = { providerOfPfn: (pfn) => (pfn === 0x300 ? prov : null), mapType: () => 'not-supported' };
    const t = table([
      [0x100, 0x80, 0x100],
      [0x300, 0, 4096],
    ]);
    expect(dmaMapSgtable(dev, t, 'to-device')).toMatchObject({ ok: false, errno: 'EREMOTEIO' });
    expect([t.sgl!.offset, t.sgl!.length]).toEqual([0x80, 0x100]);
    expect(cookieRanges(k)).toBe(0);
  });

  it.each([
    ['ENOMEM', 'ENOMEM'],
    ['EEXIST', 'EINVAL'],
  ] as const)(
    'frees the IOVA and restores the list when the IOMMU map fails with %s (-> %s)',
    (fail, want) => {
      const { k, dev } = rig();
      const c = cookieOf(dev);
      const saved = c.domain.ops;
      (c.domain as { ops: typeof c.domain.ops }).ops = {
        ...c.domain.ops,
        mapPages: () => ({ mapped: bytes(0), error: err(fail, 'injected') }),
      };
      const t = table([
        [0x100, 0x40, 0x100],
        [0x200, 0, 4096],
      ]);
      const before = c.iovad.stats.treeAllocs;
      expect(dmaMapSgtable(dev, t, 'to-device')).toMatchObject({ ok: false, errno: want });
      expect([t.sgl!.offset, t.sgl!.length]).toEqual([0x40, 0x100]);
      expect(k.dma.debug.entries(dev)).toEqual([]);
      // The IOVA went back to the allocator: the next mapping of the same size reuses it from the cache.
      (c.domain as { ops: typeof c.domain.ops }).ops = saved;
      const hits = c.iovad.stats.hits.reduce((a, b) => a + b, 0);
      expect(dmaMapSgtable(dev, t, 'to-device').ok).toBe(true);
      expect(c.iovad.stats.hits.reduce((a, b) => a + b, 0)).toBe(hits + 1);
      expect(c.iovad.stats.treeAllocs).toBe(before + 1);
    },
  );
});

/** Allocated IOVA ranges above the reservations (what a leak would leave). */
function cookieRanges(k: ReturnType<typeof dmaTestKernel>): number {
  const g = [...(k.dma.iommu as IommuDmaSetup).groups.values()][0]!;
  return g.cookie!.iovad.stats.treeAllocs;
}
