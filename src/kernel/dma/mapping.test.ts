import { describe, expect, it } from 'vitest';
import { bytes, physAddr } from '../../hw/addr.js';
import { err, ok } from '../errno.js';
import { newSgTable, type SgTable, sgAllocTable, sgNext, sgSetPage } from '../lib/scatterlist.js';
import { kvirtAddr, physToVirt } from '../mm/direct-map.js';
import { directDmaOps } from './direct-sg.js';
import type { DmaP2pLookup, DmaP2pProvider } from './dma-context.js';
import { devOf, dmaTestKernel, fnOf, TB_SWITCH_A } from './dma-testbed.js';
import { DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_BIT_MASK, DMA_MAPPING_ERROR } from './dma-types.js';
import { type DmaMapOps, SIZE_MAX } from './map-ops.js';
import {
  dmaGetMergeBoundary,
  dmaMapPage,
  dmaMapPageAttrs,
  dmaMapPhys,
  dmaMappingError,
  dmaMapResource,
  dmaMapSingleAttrs,
  dmaNeedUnmap,
  dmaOptMappingSize,
  dmaPciP2pdmaSupported,
  dmaSetMask,
  dmaUnmapResource,
  dmaUnmapSingle,
} from './mapping.js';
import { dmaMapSgAttrs, dmaMapSgtable } from './mapping-sg.js';

const K4 = bytes(4096);
const P = physAddr(0x1000_0000n);

function table(pfns: number[]): SgTable {
  const t = newSgTable();
  expect(sgAllocTable(t, pfns.length, { version: 'newest' }).ok).toBe(true);
  let s = t.sgl;
  for (let i = 0; i < pfns.length && s; i++, s = i < pfns.length ? sgNext(s) : null)
    sgSetPage(s, pfns[i]!, 4096, 0);
  return t;
}

describe('dma_map_phys / dma_map_page_attrs / dma_map_resource', () => {
  it('treats an invalid direction as a kernel BUG', () => {
    const dev = devOf(dmaTestKernel());
    expect(() => dmaMapPhys(dev, P, K4, 'none')).toThrow(/BUG: invalid DMA direction/);
  });

  it('returns DMA_MAPPING_ERROR (and WARNs once) for a device without a DMA mask', () => {
    const k = dmaTestKernel();
    const dev = devOf(k);
    dev.dmaMask = null;
    const mark = k.log.lines.length;
    const a = dmaMapPhys(dev, P, K4, 'to-device');
    expect(a).toBe(DMA_MAPPING_ERROR);
    expect(dmaMapPhys(dev, P, K4, 'to-device')).toBe(DMA_MAPPING_ERROR);
    expect(k.log.since(mark).map((l) => l.text)).toEqual([
      'nvme 0000:04:00.0: WARNING: dma_map_phys: WARN_ON_ONCE(!dev->dma_mask)',
    ]);
    expect(dmaMappingError(dev, a)).toMatchObject({ ok: false, errno: 'ENOMEM' });
  });

  it('refuses REQUIRE_COHERENT on a non-coherent device in the newest profile only', () => {
    for (const version of ['6.1', 'newest'] as const) {
      const dev = devOf(dmaTestKernel({ version, dma: { nonCoherent: ['0000:04:00.0'] } }));
      const a = dmaMapPhys(dev, P, K4, 'to-device', DMA_ATTR_REQUIRE_COHERENT);
      expect(a === DMA_MAPPING_ERROR).toBe(version === 'newest');
    }
  });

  it('rejects DMA_ATTR_MMIO and (with dma-debug) ZONE_DEVICE pages in dma_map_page_attrs', () => {
    const k = dmaTestKernel();
    const dev = devOf(k);
    expect(dmaMapPageAttrs(dev, 0x10000, 0, K4, 'to-device', DMA_ATTR_MMIO)).toBe(DMA_MAPPING_ERROR);
    const prov: DmaP2pProvider = { owner: fnOf(k, TB_SWITCH_A), busOffset: 0n };
    k.dma.p2p = { providerOfPfn: (pfn) => (pfn === 0x10000 ? prov : null), mapType: () => 'bus-addr' };
    expect(dmaMapPageAttrs(dev, 0x10000, 0, K4, 'to-device')).toBe(DMA_MAPPING_ERROR);
    expect(k.log.lines.at(-1)!.text).toBe(
      'nvme 0000:04:00.0: WARNING: dma_map_page_attrs: WARN_ON_ONCE(is_zone_device_page(page))',
    );
    expect(dmaMapPageAttrs(dev, 0x10001, 16, K4, 'to-device')).toBe(0x10001010n);
  });

  it('maps direct-map addresses with dma_map_single and rejects others', () => {
    const k = dmaTestKernel();
    const dev = devOf(k);
    const a = dmaMapSingleAttrs(dev, physToVirt(physAddr(0x1234_5678n)), bytes(64), 'to-device');
    expect(a).toBe(0x1234_5678n);
    dmaMappingError(dev, a);
    dmaUnmapSingle(dev, a, bytes(64), 'to-device');
    expect(dmaMapSingleAttrs(dev, kvirtAddr(0xffff_c900_0000_0000n), bytes(64), 'to-device')).toBe(
      DMA_MAPPING_ERROR,
    );
    expect(k.log.lines.at(-1)!.text).toBe('nvme 0000:04:00.0: rejecting DMA map of vmalloc memory');
    expect(dmaMapPage(dev, 0x10, 8, bytes(8), 'to-device')).toBe(0x10008n);
  });

  it('maps RAM with dma_map_resource only in the newest profile, where dma-debug reports it', () => {
    const old = devOf(dmaTestKernel({ version: '6.1' }));
    expect(dmaMapResource(old, P, K4, 'to-device')).toBe(DMA_MAPPING_ERROR);
    const k = dmaTestKernel();
    const dev = devOf(k);
    const a = dmaMapResource(dev, P, K4, 'to-device');
    expect(a).toBe(P);
    expect(k.dma.debug.reports.map((r) => r.lines[0])).toEqual([
      'DMA-API: nvme 0000:04:00.0: dma_map_resource called for RAM address 0x0000000010000000',
    ]);
    dmaMappingError(dev, a);
    dmaUnmapResource(dev, a, K4, 'to-device');
    expect(k.dma.debug.entries(dev)).toEqual([]);
  });

  it('maps MMIO with dma_map_resource without translation or bouncing', () => {
    const k = dmaTestKernel({ dma: { swiotlb: 'force' } });
    const dev = devOf(k);
    expect(dmaSetMask(dev, DMA_BIT_MASK(64)).ok).toBe(true);
    const bar = physAddr(0x380_0000_0000n);
    expect(dmaMapResource(dev, bar, K4, 'bidirectional')).toBe(DMA_MAPPING_ERROR);
    const k2 = dmaTestKernel();
    const d2 = devOf(k2);
    expect(dmaSetMask(d2, DMA_BIT_MASK(64)).ok).toBe(true);
    expect(dmaMapResource(d2, bar, K4, 'bidirectional')).toBe(bar);
    expect(k2.dma.stats.swiotlbMaps).toBe(0);
  });
});

describe('dma_map_sgtable errno table', () => {
  const withOps = (mapSg: DmaMapOps['mapSg']) => {
    const k = dmaTestKernel();
    const dev = devOf(k);
    dev.ops = { ...directDmaOps, mapSg } satisfies DmaMapOps;
    return { k, dev };
  };

  it.each(['EINVAL', 'ENOMEM', 'EIO', 'EREMOTEIO'] as const)(
    'passes %s through and leaves nents alone',
    (errno) => {
      const { dev } = withOps(() => err(errno, 'test'));
      const t = table([0x100, 0x101]);
      t.nents = 7;
      expect(dmaMapSgtable(dev, t, 'to-device')).toMatchObject({ ok: false, errno });
      expect(t.nents).toBe(7);
      expect(dmaMapSgAttrs(dev, t.sgl, 2, 'to-device')).toBe(0);
    },
  );

  it('turns any other errno, and 0 segments, into EIO with a warning', () => {
    const { k, dev } = withOps(() => err('ERANGE', 'test'));
    const mark = k.log.lines.length;
    expect(dmaMapSgtable(dev, table([0x100]), 'to-device')).toMatchObject({ ok: false, errno: 'EIO' });
    expect(k.log.since(mark)[0]!.text).toBe(
      'nvme 0000:04:00.0: WARNING: dma_map_sgtable: unexpected result -ERANGE',
    );
    const z = withOps(() => ok(0));
    expect(dmaMapSgtable(z.dev, table([0x100]), 'to-device')).toMatchObject({ ok: false, errno: 'EIO' });
  });

  it('gives EREMOTEIO for P2P memory the device cannot reach, and EOPNOTSUPP for REQUIRE_COHERENT', () => {
    const k = dmaTestKernel({ dma: { nonCoherent: ['0000:04:00.0'] } });
    const dev = devOf(k);
    const prov: DmaP2pProvider = { owner: fnOf(k, TB_SWITCH_A), busOffset: 0n };
    const p2p: DmaP2pLookup = {
      providerOfPfn: (pfn) => (pfn >= 0x200 ? prov : null),
      mapType: () => 'not-supported',
    };
    k.dma.p2p = p2p;
    expect(dmaMapSgtable(dev, table([0x100, 0x200]), 'to-device')).toMatchObject({
      ok: false,
      errno: 'EREMOTEIO',
    });
    expect(k.dma.debug.entries(dev)).toEqual([]);
    expect(dmaMapSgtable(dev, table([0x100]), 'to-device', DMA_ATTR_REQUIRE_COHERENT)).toMatchObject({
      ok: false,
      errno: 'EOPNOTSUPP',
    });
  });

  it('gives ENOMEM when dma-iommu has no IOVA space left below the mask', () => {
    const dev = devOf(dmaTestKernel({ iommu: 'strict' }));
    expect(dmaSetMask(dev, DMA_BIT_MASK(12)).ok).toBe(true);
    expect(dmaMapSgtable(dev, table([0x100]), 'to-device')).toMatchObject({ ok: false, errno: 'ENOMEM' });
  });

  it('reports success with 0 segments for a device without a DMA mask', () => {
    const dev = devOf(dmaTestKernel());
    dev.dmaMask = null;
    const t = table([0x100]);
    expect(dmaMapSgtable(dev, t, 'to-device').ok).toBe(true);
    expect(t.nents).toBe(0);
  });
});

describe('DMA queries per implementation', () => {
  it('dma-direct: no merge boundary, no preferred size, unmap optional for coherent devices without the ledger', () => {
    const dev = devOf(dmaTestKernel({ dma: { debug: false } }));
    expect(dmaGetMergeBoundary(dev)).toBe(0n);
    expect(dmaSetMask(dev, DMA_BIT_MASK(64)).ok).toBe(true);
    expect(dmaOptMappingSize(dev)).toBe(SIZE_MAX);
    expect(dmaNeedUnmap(dev)).toBe(false);
    expect(dmaNeedUnmap(devOf(dmaTestKernel()))).toBe(true);
    expect(dmaPciP2pdmaSupported(dev)).toBe(true);
  });

  it('dma-iommu: granule merge boundary, 128 KiB preferred size, unmap always needed', () => {
    const dev = devOf(dmaTestKernel({ iommu: 'lazy', dma: { debug: false } }));
    expect(dev.ops.name).toBe('dma-iommu');
    expect(dmaGetMergeBoundary(dev)).toBe(0xfffn);
    expect(dmaOptMappingSize(dev)).toBe(128n * 1024n);
    expect(dmaNeedUnmap(dev)).toBe(true);
    expect(dmaSetMask(dev, DMA_BIT_MASK(8)).ok).toBe(true);
  });
});
