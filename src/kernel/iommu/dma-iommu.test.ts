import { describe, expect, it } from 'vitest';
import { bytes, dmaAddr, GiB, MiB, physAddr } from '../../hw/addr.js';
import { devOf, dmaTestKernel } from '../dma/dma-testbed.js';
import { DMA_ATTR_MMIO, DMA_BIT_MASK, DMA_MAPPING_ERROR } from '../dma/dma-types.js';
import {
  dmaMapPhys,
  dmaMappingError,
  dmaSetMask,
  dmaSyncSingleForCpu,
  dmaUnmapPhys,
} from '../dma/mapping.js';
import type { KernelVersion } from '../profile.js';
import { cookieOf } from './dma-iommu.js';
import type { IommuDmaSetup } from './dma-iommu-setup.js';
import { fqPending, IOVA_DEFAULT_FQ_SIZE } from './flush-queue.js';
import { iovaDomainRanges } from './iova.js';

const K4 = bytes(4096);
const P = physAddr(0x1000_0000n);

function rig(mode: 'strict' | 'lazy', version: KernelVersion = 'newest', untrusted = false) {
  const k = dmaTestKernel({
    iommu: mode,
    version,
    dma: { debug: false, untrusted: untrusted ? ['0000:04:00.0'] : [] },
  });
  const dev = devOf(k);
  const unit = (k.dma.iommu as IommuDmaSetup).unit;
  return { k, dev, unit };
}

describe('dma-iommu set-up', () => {
  it('gives PCI devices behind the IOMMU dma-iommu with a domain per group, IOVA 0 never used', () => {
    const { k, dev } = rig('lazy');
    const c = cookieOf(dev);
    expect([dev.ops.name, c.domain.type, c.granule, c.iovad.startPfn]).toEqual([
      'dma-iommu',
      'dma-fq',
      4096,
      1,
    ]);
    expect(c.fq).not.toBeNull();
    const strict = cookieOf(devOf(dmaTestKernel({ iommu: 'strict' })));
    expect([strict.domain.type, strict.fq]).toEqual(['dma', null]);
    const pt = devOf(dmaTestKernel({ iommu: 'passthrough' }));
    expect([pt.ops.name, pt.iommu]).toEqual(['dma-direct', null]);
    expect(k.dma.iommuMode).toBe('lazy');
  });

  it('forces strict invalidation on untrusted devices', () => {
    const { dev } = rig('lazy', 'newest', true);
    expect(cookieOf(dev).domain.type).toBe('dma');
    expect(cookieOf(dev).fq).toBeNull();
  });

  it('reserves the host-bridge windows and the MSI range in the IOVA space', () => {
    const { dev } = rig('strict');
    const ranges = iovaDomainRanges(cookieOf(dev).iovad);
    const covers = (a: bigint) =>
      ranges.some((r) => BigInt(r.pfnLo) <= a >> 12n && a >> 12n <= BigInt(r.pfnHi));
    expect(covers(0xfee0_0000n)).toBe(true);
    expect(covers(0xfe00_0000n)).toBe(true);
    expect(covers(0x380_0000_0000n)).toBe(true);
    expect(covers(0x8000_0000n)).toBe(false);
  });
});

describe('dma-iommu single mappings', () => {
  it('maps through the page table: the device reaches the buffer at the IOVA, keeping the offset', () => {
    const { dev, unit } = rig('strict');
    const a = dmaMapPhys(dev, physAddr(P + 0x123n), bytes(100), 'bidirectional');
    expect(a & 0xfffn).toBe(0x123n);
    expect(a < 1n << 32n).toBe(true);
    const t = unit.translate(dev.name, a, bytes(100), 'write');
    expect(t.ok && t.ranges).toEqual([{ phys: physAddr(P + 0x123n), len: bytes(100) }]);
    dmaUnmapPhys(dev, a, bytes(100), 'bidirectional');
    const after = unit.translate(dev.name, a, bytes(4), 'read');
    expect(after.ok).toBe(false);
  });

  it('enforces the direction in the page-table permissions', () => {
    const { dev, unit } = rig('strict');
    const a = dmaMapPhys(dev, P, K4, 'to-device');
    expect(unit.translate(dev.name, a, K4, 'read').ok).toBe(true);
    const w = unit.translate(dev.name, a, K4, 'write');
    expect(!w.ok && w.fault.reason).toBe('permission');
  });

  it('uses 2 MiB and 1 GiB pages where the buffer and IOVA allow', () => {
    const { dev, unit } = rig('strict');
    expect(dmaSetMask(dev, DMA_BIT_MASK(64)).ok).toBe(true);
    const a = dmaMapPhys(dev, physAddr(0x4000_0000n), bytes(2n * MiB), 'to-device');
    const pt = unit.pageTable(cookieOf(dev).domain.id);
    expect(pt.walk(Number(a)).pageShift).toBe(21);
    const g = dmaMapPhys(dev, physAddr(4n * GiB), bytes(GiB), 'to-device');
    expect(pt.walk(Number(g)).pageShift).toBe(30);
  });

  it('strict unmap invalidates the IOTLB at once; lazy leaves stale entries until the queue flushes', () => {
    for (const mode of ['strict', 'lazy'] as const) {
      const { k, dev, unit } = rig(mode);
      const a = dmaMapPhys(dev, P, K4, 'to-device');
      expect(unit.translate(dev.name, a, K4, 'read').ok).toBe(true);
      dmaUnmapPhys(dev, a, K4, 'to-device');
      const stale = unit.translate(dev.name, a, K4, 'read');
      expect(stale.ok).toBe(mode === 'lazy');
      expect(stale.staleHits).toBe(mode === 'lazy' ? 1 : 0);
      k.engine.run(k.engine.nowNs + 10_000_000);
      expect(unit.translate(dev.name, a, K4, 'read').ok).toBe(false);
      if (mode === 'lazy') expect(cookieOf(dev).fq!.stats).toMatchObject({ timeouts: 1, freed: 1 });
    }
  });

  it('flushes a full per-CPU ring at once (256 entries, one kept empty)', () => {
    const { dev } = rig('lazy');
    const fq = cookieOf(dev).fq!;
    for (let i = 0; i < IOVA_DEFAULT_FQ_SIZE; i++) {
      const a = dmaMapPhys(dev, physAddr(P + BigInt(i) * 4096n), K4, 'to-device');
      dmaUnmapPhys(dev, a, K4, 'to-device');
    }
    expect(fq.stats.fullFlushes).toBe(1);
    expect(fq.stats.freed).toBe(IOVA_DEFAULT_FQ_SIZE - 1);
    expect(fqPending(fq)).toBe(1);
  });

  it.each([
    ['newest', true],
    ['6.1', false],
  ] as const)('tries the 32-bit IOVA space first (%s; sticky fallback and notice: %s)', (version, sticky) => {
    const { k, dev } = rig('strict', version);
    expect(dmaSetMask(dev, DMA_BIT_MASK(64)).ok).toBe(true);
    expect(dmaMapPhys(dev, P, K4, 'to-device') < 1n << 32n).toBe(true);
    const mark = k.log.lines.length;
    const big = dmaMapPhys(dev, physAddr(4n * GiB), bytes(4n * GiB), 'to-device');
    expect(big >= 1n << 32n).toBe(true);
    expect(k.log.since(mark).map((l) => l.text)).toEqual(
      sticky ? ['nvme 0000:04:00.0: Using 48-bit DMA addresses'] : [],
    );
    const next = dmaMapPhys(dev, P, K4, 'to-device');
    expect(next >= 1n << 32n).toBe(sticky);
  });

  it('returns DMA_MAPPING_ERROR when the IOVA space below the mask is exhausted', () => {
    const { dev } = rig('strict');
    expect(dmaSetMask(dev, DMA_BIT_MASK(16)).ok).toBe(true);
    const first = dmaMapPhys(dev, P, bytes(32768), 'to-device');
    expect(first).not.toBe(DMA_MAPPING_ERROR);
    const a = dmaMapPhys(dev, P, bytes(65536), 'to-device');
    expect(dmaMappingError(dev, a)).toMatchObject({ ok: false, errno: 'ENOMEM' });
  });
});

describe('dma-iommu and swiotlb for untrusted devices', () => {
  it('bounces an unaligned buffer into a granule of its own, zeroing the padding', () => {
    const { k, dev } = rig('strict', 'newest', true);
    const mem = k.dma.memory;
    const buf = physAddr(P + 0x100n);
    mem.write(buf, new Uint8Array(64).fill(0xaa));
    const a = dmaMapPhys(dev, buf, bytes(64), 'bidirectional');
    expect(k.dma.stats.swiotlbMaps).toBe(1);
    const tlb = cookieOf(dev).domain.ops.iovaToPhys!(cookieOf(dev).domain, a);
    expect(mem.read(tlb, 64)).toEqual(new Uint8Array(64).fill(0xaa));
    const gran = physAddr(tlb & ~0xfffn);
    const whole = mem.read(gran, 4096);
    expect(whole.filter((b) => b !== 0).length).toBe(64);
    mem.write(tlb, new Uint8Array(64).fill(0x33));
    dmaSyncSingleForCpu(dev, a, bytes(64), 'bidirectional');
    expect(mem.read(buf, 64)).toEqual(new Uint8Array(64).fill(0x33));
    dmaUnmapPhys(dev, a, bytes(64), 'bidirectional');
  });

  it('maps aligned buffers directly, and refuses to bounce MMIO', () => {
    const { k, dev } = rig('strict', 'newest', true);
    const a = dmaMapPhys(dev, P, K4, 'to-device');
    expect(cookieOf(dev).domain.ops.iovaToPhys!(cookieOf(dev).domain, a)).toBe(P);
    expect(k.dma.stats.swiotlbMaps).toBe(0);
    expect(dmaMapPhys(dev, physAddr(0xfe00_0010n), bytes(16), 'to-device', DMA_ATTR_MMIO)).toBe(
      DMA_MAPPING_ERROR,
    );
    expect(dmaAddr(a)).toBe(a);
  });
});
