import { describe, expect, it } from 'vitest';
import { bytes, dmaAddr, MiB, physAddr } from '../../hw/addr.js';
import { cookieOf } from '../iommu/dma-iommu.js';
import type { IommuDmaSetup } from '../iommu/dma-iommu-setup.js';
import { phyrFromRanges } from '../lib/phyr.js';
import { debugDmaDeviceRelease } from './debug-sync.js';
import { dmaSetMinAlignMask } from './device.js';
import { devOf, dmaTestKernel } from './dma-testbed.js';
import { DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT } from './dma-types.js';
import {
  DMA_IOVA_USE_SWIOTLB,
  dmaIovaDestroy,
  dmaIovaFree,
  dmaIovaLink,
  dmaIovaSize,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaIovaUnlink,
  dmaUseIova,
  newDmaIovaState,
} from './iova-api.js';
import { dmaMapPhyr, dmaUnmapPhyr } from './phyr-map.js';

const K4 = bytes(4096);
const b = (n: bigint | number) => bytes(BigInt(n));

function rig(
  o: { mode?: 'strict' | 'lazy'; untrusted?: boolean; swiotlb?: 'on' | 'off'; nonCoherent?: boolean } = {},
) {
  const name = '0000:04:00.0';
  const k = dmaTestKernel({
    iommu: o.mode ?? 'strict',
    dma: {
      untrusted: o.untrusted ? [name] : [],
      swiotlb: o.swiotlb ?? 'on',
      nonCoherent: o.nonCoherent ? [name] : [],
    },
  });
  const dev = devOf(k);
  return { k, dev, unit: (k.dma.iommu as IommuDmaSetup).unit };
}

describe('dma_iova_try_alloc', () => {
  it('is false for devices on dma-direct, and zeroes the state', () => {
    const dev = devOf(dmaTestKernel());
    const s = { addr: dmaAddr(5), size: 7n };
    expect(dmaIovaTryAlloc(dev, s, physAddr(0), K4)).toBe(false);
    expect([s.addr, s.size, dmaUseIova(s)]).toEqual([0n, 0n, false]);
  });

  it('allocates granule-aligned IOVA keeping the offset of phys, and refuses size 0 or bit 63', () => {
    const { k, dev } = rig();
    const s = newDmaIovaState();
    expect(dmaIovaTryAlloc(dev, s, physAddr(0x1234_5678n), b(0x3000))).toBe(true);
    expect([s.addr & 0xfffn, dmaIovaSize(s), dmaUseIova(s)]).toEqual([0x678n, 0x3000n, true]);
    const mark = k.log.lines.length;
    expect(dmaIovaTryAlloc(dev, newDmaIovaState(), physAddr(0), b(0))).toBe(false);
    expect(dmaIovaTryAlloc(dev, newDmaIovaState(), physAddr(0), b(DMA_IOVA_USE_SWIOTLB))).toBe(false);
    expect(k.log.since(mark).map((l) => l.text)).toEqual([
      'WARNING: dma_iova_try_alloc: WARN_ON_ONCE(!size) (0000:04:00.0)',
      'WARNING: dma_iova_try_alloc: WARN_ON_ONCE(size & DMA_IOVA_USE_SWIOTLB) (0000:04:00.0)',
    ]);
  });
});

describe('dma_iova_link / sync / unlink / destroy', () => {
  it('links scattered ranges into one IOVA range the device reaches after one sync', () => {
    const { dev, unit } = rig();
    const s = newDmaIovaState();
    expect(dmaIovaTryAlloc(dev, s, physAddr(0), b(3 * 4096))).toBe(true);
    const pages = [0x10_0000n, 0x30_0000n, 0x20_0000n];
    pages.forEach((p, i) => {
      expect(dmaIovaLink(dev, s, physAddr(p), b(i * 4096), K4, 'to-device').ok).toBe(true);
    });
    expect(dmaIovaSync(dev, s, b(0), b(3 * 4096)).ok).toBe(true);
    const x = unit.translate(dev.name, s.addr, b(3 * 4096), 'read');
    expect(x.ok && x.ranges.map((r) => r.phys)).toEqual(pages.map(physAddr));
    dmaIovaUnlink(dev, s, b(4096), K4, 'to-device');
    expect(unit.translate(dev.name, dmaAddr(s.addr + 4096n), K4, 'read').ok).toBe(false);
    expect(unit.translate(dev.name, s.addr, K4, 'read').ok).toBe(true);
    dmaIovaUnlink(dev, s, b(0), K4, 'to-device');
    dmaIovaUnlink(dev, s, b(8192), K4, 'to-device');
    dmaIovaFree(dev, s);
    expect(dev.ctx.debug.entries(dev)).toEqual([]);
  });

  it('only lets the first link start inside a granule (EIO with a warning otherwise)', () => {
    const { k, dev } = rig();
    const s = newDmaIovaState();
    expect(dmaIovaTryAlloc(dev, s, physAddr(0x100), b(0x2000))).toBe(true);
    expect(dmaIovaLink(dev, s, physAddr(0x5000_0100n), b(0), b(0xf00), 'to-device').ok).toBe(true);
    const mark = k.log.lines.length;
    expect(dmaIovaLink(dev, s, physAddr(0x6000_0010n), b(0xf00), b(0x100), 'to-device')).toMatchObject({
      ok: false,
      errno: 'EIO',
    });
    expect(k.log.since(mark)[0]!.text).toBe(
      'WARNING: dma_iova_link: WARN_ON_ONCE(iova_start_pad && offset > 0) (0000:04:00.0)',
    );
    dmaIovaDestroy(dev, s, b(0xf00), 'to-device');
  });

  it('refuses a second link over a linked range with the IOMMU errno (EEXIST)', () => {
    const { dev } = rig();
    const s = newDmaIovaState();
    expect(dmaIovaTryAlloc(dev, s, physAddr(0), K4)).toBe(true);
    expect(dmaIovaLink(dev, s, physAddr(0x10_0000n), b(0), K4, 'to-device').ok).toBe(true);
    expect(dmaIovaLink(dev, s, physAddr(0x20_0000n), b(0), K4, 'to-device')).toMatchObject({
      ok: false,
      errno: 'EEXIST',
    });
  });

  it('destroys through the flush queue on a lazy domain, or just frees with nothing mapped', () => {
    const { dev } = rig({ mode: 'lazy' });
    const s = newDmaIovaState();
    expect(dmaIovaTryAlloc(dev, s, physAddr(0), b(2n * MiB))).toBe(true);
    expect(dmaIovaLink(dev, s, physAddr(0x4000_0000n), b(0), b(2n * MiB), 'from-device').ok).toBe(true);
    dmaIovaDestroy(dev, s, b(2n * MiB), 'from-device');
    expect(cookieOf(dev).fq!.stats.queued).toBe(1);
    const t = newDmaIovaState();
    expect(dmaIovaTryAlloc(dev, t, physAddr(0), K4)).toBe(true);
    const before = cookieOf(dev).iovad.stats.hits.reduce((x, y) => x + y, 0);
    dmaIovaDestroy(dev, t, b(0), 'from-device');
    expect(cookieOf(dev).fq!.stats.queued).toBe(1);
    expect(dmaIovaTryAlloc(dev, newDmaIovaState(), physAddr(0), K4)).toBe(true);
    expect(cookieOf(dev).iovad.stats.hits.reduce((x, y) => x + y, 0)).toBe(before + 1);
  });

  it('bounces unaligned head and tail for untrusted devices and flags the state', () => {
    const { k, dev } = rig({ untrusted: true });
    // Like NVMe: the bounce slot must keep the buffer's offset in its granule, or the link is unaligned.
    dmaSetMinAlignMask(dev, 0xfff);
    const s = newDmaIovaState();
    expect(dmaIovaTryAlloc(dev, s, physAddr(0x100), b(0x2000))).toBe(true);
    expect(dmaIovaLink(dev, s, physAddr(0x5000_0100n), b(0), b(0x2000), 'to-device').ok).toBe(true);
    expect((s.size & DMA_IOVA_USE_SWIOTLB) !== 0n).toBe(true);
    expect(k.dma.stats.swiotlbMaps).toBe(2);
    expect(
      dmaIovaLink(dev, s, physAddr(0x7000_0000n), b(0x2000), K4, 'to-device', DMA_ATTR_REQUIRE_COHERENT),
    ).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    expect(
      dmaIovaLink(dev, s, physAddr(0xfe00_0010n), b(0x3000), b(16), 'to-device', DMA_ATTR_MMIO),
    ).toMatchObject({
      ok: false,
      errno: 'EIO',
    });
    const t = newDmaIovaState();
    expect(dmaIovaTryAlloc(dev, t, physAddr(0), K4)).toBe(true);
    expect(
      dmaIovaLink(dev, t, physAddr(0xfe00_0000n), b(0), b(16), 'to-device', DMA_ATTR_MMIO),
    ).toMatchObject({
      ok: false,
      errno: 'EPERM',
    });
    dmaIovaDestroy(dev, s, b(0x2000), 'to-device');
  });

  it('fails a bounced first link with the IOMMU errno when the device keeps no offset bits (EINVAL)', () => {
    const { dev } = rig({ untrusted: true });
    const s = newDmaIovaState();
    expect(dmaIovaTryAlloc(dev, s, physAddr(0x100), b(0x2000))).toBe(true);
    expect(dmaIovaLink(dev, s, physAddr(0x5000_0100n), b(0), b(0x2000), 'to-device')).toMatchObject({
      ok: false,
      errno: 'EINVAL',
    });
  });

  it('fails a needed bounce with ENOMEM when there is no swiotlb, and REQUIRE_COHERENT on a non-coherent device', () => {
    const u = rig({ untrusted: true, swiotlb: 'off' });
    const s = newDmaIovaState();
    expect(dmaIovaTryAlloc(u.dev, s, physAddr(0x10), K4)).toBe(true);
    expect(dmaIovaLink(u.dev, s, physAddr(0x5000_0010n), b(0), b(16), 'to-device')).toMatchObject({
      ok: false,
      errno: 'ENOMEM',
    });
    const n = rig({ nonCoherent: true });
    const t = newDmaIovaState();
    expect(dmaIovaTryAlloc(n.dev, t, physAddr(0), K4)).toBe(true);
    expect(
      dmaIovaLink(n.dev, t, physAddr(0), b(0), K4, 'to-device', DMA_ATTR_REQUIRE_COHERENT),
    ).toMatchObject({
      ok: false,
      errno: 'EOPNOTSUPP',
    });
  });

  it('keeps links in the debug ledger: a link never destroyed is a leak at release', () => {
    const { dev } = rig();
    const s = newDmaIovaState();
    expect(dmaIovaTryAlloc(dev, s, physAddr(0), b(8192))).toBe(true);
    expect(dmaIovaLink(dev, s, physAddr(0x10_0000n), b(0), b(8192), 'to-device').ok).toBe(true);
    expect(dev.ctx.debug.entries(dev)).toHaveLength(1);
    dmaIovaUnlink(dev, s, b(0), K4, 'to-device');
    expect(dev.ctx.debug.reports.map((r) => r.kind)).toEqual(['iova-unlink-partial']);
    expect(debugDmaDeviceRelease(dev.ctx.debug, dev)).toBe(0);
  });
});

describe('mapping phyr lists', () => {
  const ranges = [
    { phys: physAddr(0x10_0000n), len: b(8192) },
    { phys: physAddr(0x40_0000n), len: b(4096) },
    { phys: physAddr(0x20_0000n), len: b(0x800) },
  ];

  it.each(['ranges16', 'pages8'] as const)('maps a %s list into one contiguous IOVA range', (layout) => {
    const { dev, unit } = rig();
    const list = phyrFromRanges(layout, ranges);
    if (!list.ok) throw new Error(list.detail);
    const m = dmaMapPhyr(dev, list.value, 'to-device');
    if (!m.ok) throw new Error(m.detail);
    expect(m.value.dma.toArray()).toEqual([{ dma: m.value.state!.addr, len: b(8192 + 4096 + 0x800) }]);
    const x = unit.translate(dev.name, m.value.state!.addr, b(8192 + 4096 + 0x800), 'read');
    expect(x.ok && x.ranges.map((r) => [r.phys, r.len])).toEqual(ranges.map((r) => [r.phys, r.len]));
    dmaUnmapPhyr(dev, m.value);
    expect(dev.ctx.debug.entries(dev)).toEqual([]);
  });

  it('maps range by range on dma-direct', () => {
    const dev = devOf(dmaTestKernel());
    const list = phyrFromRanges('ranges16', ranges);
    if (!list.ok) throw new Error(list.detail);
    const m = dmaMapPhyr(dev, list.value, 'to-device');
    if (!m.ok) throw new Error(m.detail);
    expect(m.value.dma.toArray().map((r) => r.dma)).toEqual(ranges.map((r) => r.phys));
    dmaUnmapPhyr(dev, m.value);
    expect(dev.ctx.debug.reports).toEqual([]);
  });
});
