import { describe, expect, it } from 'vitest';
import { bytes, dmaAddr, GiB, physAddr } from '../../hw/addr.js';
import { newSgTable, sgAllocTable, sgNext, sgSetPage } from '../lib/scatterlist.js';
import { pciP2pdmaAddResource } from '../pci/p2pdma-provider.js';
import { testbedBar0 } from '../pci/p2pdma-testbed.js';
import { dmaToPhys, physToDma } from './direct.js';
import { devOf, dmaTestKernel, fnOf, TB_SWITCH_A } from './dma-testbed.js';
import { DMA_ATTR_MMIO, DMA_ATTR_SKIP_CPU_SYNC, DMA_BIT_MASK, DMA_MAPPING_ERROR } from './dma-types.js';
import { SIZE_MAX } from './map-ops.js';
import {
  dmaGetRequiredMask,
  dmaMapPhys,
  dmaMappingError,
  dmaMaxMappingSize,
  dmaSetMask,
  dmaSetMaskAndCoherent,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaUnmapPhys,
} from './mapping.js';
import { dmaMapSgtable, dmaUnmapSgtable } from './mapping-sg.js';

const HIGH = physAddr(0x2_4000_0000n);
const K4 = bytes(4096);
const fill = (n: number, v: number) => new Uint8Array(n).fill(v);

describe('dma-direct addresses', () => {
  it('maps CPU physical addresses 1:1 without a dma_range_map', () => {
    const dev = devOf(dmaTestKernel());
    const a = dmaMapPhys(dev, physAddr(0x1000_0000n), K4, 'to-device');
    expect(a).toBe(dmaAddr(0x1000_0000n));
    expect(dmaMappingError(dev, a).ok).toBe(true);
    dmaUnmapPhys(dev, a, K4, 'to-device');
  });

  it('applies the bus offsets of dma_range_map both ways, and refuses memory outside it', () => {
    const k = dmaTestKernel({ dma: { swiotlb: 'off' } });
    const dev = devOf(k);
    dev.dmaRangeMap = [{ cpuStart: physAddr(0x8000_0000n), dmaStart: dmaAddr(0x1000_0000n), size: GiB }];
    expect(physToDma(dev, 0x8000_1234n)).toBe(dmaAddr(0x1000_1234n));
    expect(dmaToPhys(dev, 0x1000_1234n)).toBe(physAddr(0x8000_1234n));
    expect(physToDma(dev, 0x1000n)).toBe(DMA_MAPPING_ERROR);
    expect(dmaToPhys(dev, 0x5000_0000n)).toBe(physAddr((1n << 64n) - 1n));
    expect(dmaMapPhys(dev, physAddr(0x8000_0000n), K4, 'to-device')).toBe(dmaAddr(0x1000_0000n));
    const mark = k.log.lines.length;
    expect(dmaMapPhys(dev, physAddr(0x1000n), K4, 'to-device')).toBe(DMA_MAPPING_ERROR);
    expect(k.log.since(mark).map((l) => l.text)).toEqual([
      'nvme 0000:04:00.0: DMA addr 0xffffffffffffffff+4096 overflow (mask ffffffff, bus limit 0).',
    ]);
  });

  it('warns once about an unreachable address when there is no swiotlb', () => {
    const k = dmaTestKernel({ dma: { swiotlb: 'off' } });
    const dev = devOf(k);
    const mark = k.log.lines.length;
    expect(dmaMapPhys(dev, HIGH, K4, 'to-device')).toBe(DMA_MAPPING_ERROR);
    expect(dmaMapPhys(dev, HIGH, K4, 'to-device')).toBe(DMA_MAPPING_ERROR);
    expect(k.log.since(mark).map((l) => l.text)).toEqual([
      'nvme 0000:04:00.0: DMA addr 0x0000000240000000+4096 overflow (mask ffffffff, bus limit 0).',
    ]);
  });

  it('honours bus_dma_limit below the mask', () => {
    const k = dmaTestKernel({ dma: { swiotlb: 'off' } });
    const dev = devOf(k);
    dev.busDmaLimit = DMA_BIT_MASK(28);
    expect(dmaMapPhys(dev, physAddr(0x1000_0000n), K4, 'to-device')).toBe(DMA_MAPPING_ERROR);
    expect(dmaMapPhys(dev, physAddr(0x0fff_f000n), K4, 'to-device')).toBe(dmaAddr(0x0fff_f000n));
  });
});

describe('dma-direct masks', () => {
  it('accepts masks of 24 bits and more (ZONE_DMA) and refuses smaller ones with EIO', () => {
    const dev = devOf(dmaTestKernel());
    expect(dmaSetMask(dev, DMA_BIT_MASK(24)).ok).toBe(true);
    expect(dmaSetMask(dev, DMA_BIT_MASK(20))).toMatchObject({ ok: false, errno: 'EIO' });
    expect(dev.dmaMask).toBe(DMA_BIT_MASK(24));
    expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)).ok).toBe(true);
    expect(dev.coherentDmaMask).toBe(DMA_BIT_MASK(64));
    dev.dmaMask = null;
    expect(dmaSetMask(dev, DMA_BIT_MASK(64))).toMatchObject({ ok: false, errno: 'EIO' });
  });

  it('requires the mask that reaches the last page of RAM', () => {
    const k = dmaTestKernel();
    const dev = devOf(k);
    const last = k.dma.ramEnd - 4096n;
    const bits = last.toString(2).length;
    expect(dmaGetRequiredMask(dev)).toBe(DMA_BIT_MASK(bits));
    expect(dmaMaxMappingSize(dev)).toBe(256n * 1024n);
    expect(dmaSetMask(dev, DMA_BIT_MASK(64)).ok).toBe(true);
    expect(dmaMaxMappingSize(dev)).toBe(SIZE_MAX);
  });
});

describe('dma-direct bouncing through swiotlb (real bytes)', () => {
  it('copies in at map whatever the direction, and back at unmap for from-device only', () => {
    const k = dmaTestKernel();
    const dev = devOf(k);
    const mem = k.dma.memory;
    mem.write(HIGH, fill(512, 0xaa));
    const a = dmaMapPhys(dev, HIGH, bytes(512), 'from-device');
    expect(a < 1n << 32n).toBe(true);
    expect(k.dma.stats.swiotlbMaps).toBe(1);
    expect(mem.read(physAddr(a), 512)).toEqual(fill(512, 0xaa));
    mem.write(physAddr(a), fill(512, 0x55));
    dmaUnmapPhys(dev, a, bytes(512), 'from-device');
    expect(mem.read(HIGH, 512)).toEqual(fill(512, 0x55));

    const b = dmaMapPhys(dev, HIGH, bytes(512), 'to-device');
    mem.write(physAddr(b), fill(512, 0x11));
    dmaUnmapPhys(dev, b, bytes(512), 'to-device');
    expect(mem.read(HIGH, 512)).toEqual(fill(512, 0x55));

    const c = dmaMapPhys(dev, HIGH, bytes(512), 'bidirectional');
    mem.write(physAddr(c), fill(512, 0x22));
    dmaUnmapPhys(dev, c, bytes(512), 'bidirectional', DMA_ATTR_SKIP_CPU_SYNC);
    expect(mem.read(HIGH, 512)).toEqual(fill(512, 0x55));
    expect(dev.dmaSkipSync).toBe(false);
  });

  it('moves bytes at sync time per direction', () => {
    const k = dmaTestKernel();
    const dev = devOf(k);
    const mem = k.dma.memory;
    const a = dmaMapPhys(dev, HIGH, K4, 'bidirectional');
    mem.write(physAddr(a), fill(16, 7));
    dmaSyncSingleForCpu(dev, a, K4, 'bidirectional');
    expect(mem.read(HIGH, 16)).toEqual(fill(16, 7));
    mem.write(HIGH, fill(16, 9));
    dmaSyncSingleForDevice(dev, a, K4, 'bidirectional');
    expect(mem.read(physAddr(a), 16)).toEqual(fill(16, 9));
    dmaUnmapPhys(dev, a, K4, 'bidirectional');
  });

  it('bounces everything with swiotlb=force, but never MMIO', () => {
    const k = dmaTestKernel({ dma: { swiotlb: 'force' } });
    const dev = devOf(k);
    const a = dmaMapPhys(dev, physAddr(0x1000_0000n), K4, 'to-device');
    expect(a).not.toBe(dmaAddr(0x1000_0000n));
    expect(k.dma.stats.swiotlbMaps).toBe(1);
    expect(dmaMapPhys(dev, physAddr(0xfe00_0000n), K4, 'to-device', DMA_ATTR_MMIO)).toBe(DMA_MAPPING_ERROR);
    expect(dmaMaxMappingSize(dev)).toBe(256n * 1024n);
  });

  it('never bounces P2P memory: an unreachable BAR page is an error, not a bounce', () => {
    const k = dmaTestKernel();
    const a = fnOf(k, TB_SWITCH_A);
    expect(pciP2pdmaAddResource(k, a, 0, 2n * 1024n * 1024n, 0n).ok).toBe(true);
    const dev = devOf(k);
    expect(dmaMapPhys(dev, testbedBar0(0), K4, 'to-device')).toBe(DMA_MAPPING_ERROR);
    expect(k.dma.stats.swiotlbMaps).toBe(0);
  });

  it('counts cache maintenance for non-coherent devices only', () => {
    const k = dmaTestKernel({ dma: { nonCoherent: ['0000:04:00.0'] } });
    const dev = devOf(k);
    const a = dmaMapPhys(dev, physAddr(0x1000_0000n), K4, 'to-device');
    dmaUnmapPhys(dev, a, K4, 'to-device');
    expect(k.dma.stats).toMatchObject({ archSyncForDevice: 1, archSyncForCpu: 1 });
    const c = devOf(k, TB_SWITCH_A);
    dmaUnmapPhys(c, dmaMapPhys(c, physAddr(0x1000_0000n), K4, 'to-device'), K4, 'to-device');
    expect(k.dma.stats).toMatchObject({ archSyncForDevice: 1, archSyncForCpu: 1 });
  });
});

describe('dma-direct scatterlists', () => {
  function table(pfns: number[]) {
    const t = newSgTable();
    expect(sgAllocTable(t, pfns.length, { version: 'newest' }).ok).toBe(true);
    let s = t.sgl;
    for (let i = 0; i < pfns.length && s; i++, s = i < pfns.length ? sgNext(s) : null)
      sgSetPage(s, pfns[i]!, 4096, 0);
    return t;
  }

  it('maps each segment at its physical address', () => {
    const dev = devOf(dmaTestKernel());
    const t = table([0x100, 0x200, 0x201]);
    expect(dmaMapSgtable(dev, t, 'to-device').ok).toBe(true);
    expect(t.nents).toBe(3);
    expect([t.sgl!.dmaAddress, t.sgl!.dmaLength]).toEqual([dmaAddr(0x100000n), 4096]);
    dmaUnmapSgtable(dev, t, 'to-device');
  });

  it('models the 6.16-2026 THRU_HOST_BRIDGE bug only when asked, and only on the newest profile', () => {
    for (const [version, bug, mapped] of [
      ['newest', false, true],
      ['newest', true, false],
      ['6.1', true, true],
    ] as const) {
      const k = dmaTestKernel({ version, dma: { thruHostBridgeBreakBug: bug } });
      const dev = devOf(k);
      const prov = { owner: fnOf(k, TB_SWITCH_A), busOffset: 0n };
      k.dma.p2p = {
        providerOfPfn: (pfn) => (pfn === 0x200 ? prov : null),
        mapType: () => 'thru-host-bridge',
      };
      const t = table([0x200]);
      expect(dmaMapSgtable(dev, t, 'to-device').ok).toBe(true);
      expect(t.sgl!.dmaAddress === dmaAddr(0x200000n)).toBe(mapped);
      expect(t.sgl!.dmaLength).toBe(4096);
    }
  });

  it('fails with EIO when a segment cannot be mapped, leaving nothing mapped', () => {
    const k = dmaTestKernel({ dma: { swiotlb: 'off' } });
    const dev = devOf(k);
    const t = table([0x100, Number(HIGH >> 12n)]);
    expect(dmaMapSgtable(dev, t, 'to-device')).toMatchObject({ ok: false, errno: 'EIO' });
    expect(k.dma.debug.entries(dev)).toEqual([]);
  });
});
