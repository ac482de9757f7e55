// The one contract every `DmaMapOps` implementation keeps (dma-direct, dma-direct bouncing through
// swiotlb, dma-iommu strict and lazy, dma-iommu for an untrusted device), in both kernel profiles:
//
//   - a mapping is usable: the device reads the CPU's bytes at the DMA address (to-device) and the CPU
//     reads the device's bytes after unmap or sync_for_cpu (from-device, bidirectional);
//   - unmap gives everything back: no ledger entry, no report, no swiotlb slot, no IOVA leaked;
//   - scatterlists: the DMA segments carry the CPU bytes in order, never more segments than entries;
//   - failures are values (DMA_MAPPING_ERROR, errnos), never exceptions;
//   - the capability answers are consistent.
//
// Property tests (fast-check) drive random map/unmap round trips; a failure prints its seed.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytes, type DmaAddr, dmaAddr, type PhysAddr, physAddr } from '../../src/hw/addr.js';
import type { DmaDevice } from '../../src/kernel/dma/device.js';
import { dmaToPhys } from '../../src/kernel/dma/direct.js';
import { dmaDeviceOf } from '../../src/kernel/dma/dma-context.js';
import { type DmaTestbedOptions, devOf, dmaTestKernel } from '../../src/kernel/dma/dma-testbed.js';
import { DMA_BIT_MASK, DMA_MAPPING_ERROR, type DmaDirection } from '../../src/kernel/dma/dma-types.js';
import {
  dmaGetMergeBoundary,
  dmaMapPhys,
  dmaMappingError,
  dmaMaxMappingSize,
  dmaOptMappingSize,
  dmaSetMask,
  dmaSetMaskAndCoherent,
  dmaSyncSingleForCpu,
  dmaUnmapPhys,
} from '../../src/kernel/dma/mapping.js';
import { dmaMapSgtable, dmaUnmapSgtable } from '../../src/kernel/dma/mapping-sg.js';
import { swiotlbUsed } from '../../src/kernel/dma/swiotlb.js';
import type { IommuDmaSetup } from '../../src/kernel/iommu/dma-iommu-setup.js';
import { iovaDomainRanges } from '../../src/kernel/iommu/iova.js';
import type { Kernel } from '../../src/kernel/kernel.js';
import { newSgTable, sgAllocTable, sgNext, sgSetPage } from '../../src/kernel/lib/scatterlist.js';

interface Impl {
  readonly name: string;
  readonly opts: DmaTestbedOptions;
  readonly mask: number;
  readonly ops: string;
}

const IMPLS: Impl[] = (['6.1', 'newest'] as const).flatMap((version) => [
  { name: `dma-direct ${version}`, opts: { version }, mask: 64, ops: 'dma-direct' },
  {
    name: `dma-direct swiotlb=force ${version}`,
    opts: { version, dma: { swiotlb: 'force' } },
    mask: 64,
    ops: 'dma-direct',
  },
  { name: `dma-direct 32-bit bouncing ${version}`, opts: { version }, mask: 32, ops: 'dma-direct' },
  { name: `dma-iommu strict ${version}`, opts: { version, iommu: 'strict' }, mask: 64, ops: 'dma-iommu' },
  { name: `dma-iommu lazy ${version}`, opts: { version, iommu: 'lazy' }, mask: 64, ops: 'dma-iommu' },
  {
    name: `dma-iommu untrusted ${version}`,
    opts: { version, iommu: 'lazy', dma: { untrusted: ['0000:04:00.0'] } },
    mask: 64,
    ops: 'dma-iommu',
  },
]);

/** What the device sees at a DMA address: the IOMMU's translation, or the bus offset undone. */
function deviceView(k: Kernel, dev: DmaDevice, addr: DmaAddr, len: number, access: 'read' | 'write') {
  const setup = k.dma.iommu as IommuDmaSetup | null;
  if (dev.iommu !== null && setup !== null) {
    const t = setup.unit.translate(dev.name, addr, bytes(len), access);
    if (!t.ok) throw new Error(`IOMMU fault at ${addr.toString(16)}: ${t.fault.reason}`);
    return t.ranges.map((r) => ({ phys: r.phys, len: Number(r.len) }));
  }
  return [{ phys: dmaToPhys(dev, addr), len }];
}
function deviceRead(k: Kernel, dev: DmaDevice, addr: DmaAddr, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let at = 0;
  for (const r of deviceView(k, dev, addr, len, 'read')) {
    out.set(k.dma.memory.read(r.phys, r.len), at);
    at += r.len;
  }
  return out;
}
function deviceWrite(k: Kernel, dev: DmaDevice, addr: DmaAddr, data: Uint8Array): void {
  let at = 0;
  for (const r of deviceView(k, dev, addr, data.length, 'write')) {
    k.dma.memory.write(r.phys, data.subarray(at, at + r.len));
    at += r.len;
  }
}

function boot(impl: Impl) {
  const k = dmaTestKernel({ ...impl.opts, dma: { debugAllErrors: true, ...impl.opts.dma } });
  const dev = devOf(k);
  expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(impl.mask)).ok).toBe(true);
  return { k, dev };
}

/** Nothing held: ledger empty, no report, swiotlb slots free, only reserved IOVA ranges left. */
function expectClean(k: Kernel, dev: DmaDevice, iovaBaseline: number): void {
  expect(k.dma.debug.entries(dev)).toEqual([]);
  expect(k.dma.debug.reports).toEqual([]);
  if (k.dma.swiotlb) expect(swiotlbUsed(k.dma.swiotlb)).toBe(0);
  if (dev.iommu) {
    k.engine.run(k.engine.nowNs + 20_000_000);
    const c = dev.iommu.cookie as { iovad: Parameters<typeof iovaDomainRanges>[0] };
    const cached = c.iovad.rcaches?.flatMap((r) => r.cpu.flatMap((x) => [x.loaded.size, x.prev.size])) ?? [];
    const depot = c.iovad.rcaches?.reduce((n, r) => n + r.depot.reduce((m, g) => m + g.size, 0), 0) ?? 0;
    expect(iovaDomainRanges(c.iovad).length - cached.reduce((a, b) => a + b, 0) - depot).toBe(iovaBaseline);
  }
}
const iovaCount = (dev: DmaDevice): number =>
  dev.iommu
    ? iovaDomainRanges((dev.iommu.cookie as { iovad: Parameters<typeof iovaDomainRanges>[0] }).iovad).length
    : 0;

const HIGH_RAM = 0x2_0000_0000n;
const arbRange = fc.record({
  page: fc.integer({ min: 0, max: 0xffff }),
  offset: fc.integer({ min: 0, max: 4095 }),
  len: fc.integer({ min: 1, max: 3 * 4096 }),
  high: fc.boolean(),
  dir: fc.constantFrom<DmaDirection>('to-device', 'from-device', 'bidirectional'),
  seed: fc.integer({ min: 1, max: 250 }),
});
const physOf = (r: { page: number; offset: number; high: boolean }): PhysAddr =>
  physAddr((r.high ? HIGH_RAM : 0x1000_0000n) + BigInt(r.page) * 4096n + BigInt(r.offset));

describe.each(IMPLS)('DmaMapOps contract: $name', (impl) => {
  it('is the implementation the set-up promises', () => {
    const { dev } = boot(impl);
    expect(dev.ops.name).toBe(impl.ops);
  });

  it('round-trips single mappings with the bytes each direction promises (property)', () => {
    const { k, dev } = boot(impl);
    const base = iovaCount(dev);
    fc.assert(
      fc.property(fc.array(arbRange, { minLength: 1, maxLength: 6 }), (ranges) => {
        for (const r of ranges) {
          const phys = physOf(r);
          const cpu = new Uint8Array(r.len).fill(r.seed);
          k.dma.memory.write(phys, cpu);
          const a = dmaMapPhys(dev, phys, bytes(r.len), r.dir);
          expect(dmaMappingError(dev, a).ok).toBe(true);
          expect(a + BigInt(r.len) - 1n <= DMA_BIT_MASK(impl.mask)).toBe(true);
          if (r.dir !== 'from-device') expect(deviceRead(k, dev, a, r.len)).toEqual(cpu);
          const devData = new Uint8Array(r.len).fill(r.seed + 1);
          if (r.dir !== 'to-device') deviceWrite(k, dev, a, devData);
          dmaUnmapPhys(dev, a, bytes(r.len), r.dir);
          expect(k.dma.memory.read(phys, r.len)).toEqual(r.dir === 'to-device' ? cpu : devData);
        }
      }),
      { numRuns: 40 },
    );
    expectClean(k, dev, base);
  });

  it('hands device writes to the CPU at sync_for_cpu, before unmap', () => {
    const { k, dev } = boot(impl);
    const phys = physAddr(HIGH_RAM + 0x123n);
    const a = dmaMapPhys(dev, phys, bytes(300), 'from-device');
    expect(dmaMappingError(dev, a).ok).toBe(true);
    deviceWrite(k, dev, a, new Uint8Array(300).fill(0x5a));
    dmaSyncSingleForCpu(dev, a, bytes(300), 'from-device');
    expect(k.dma.memory.read(phys, 300)).toEqual(new Uint8Array(300).fill(0x5a));
    dmaUnmapPhys(dev, a, bytes(300), 'from-device');
  });

  it('maps scatterlists: segments carry the CPU bytes in order, unmap frees everything (property)', () => {
    const { k, dev } = boot(impl);
    const base = iovaCount(dev);
    // Entry i lives in its own 1 MiB slot (i << 20): pages up to 0xef plus offset and length stay
    // below the next slot, so no two entries overlap (overlapping writes would change `expected`).
    const ent = fc.record({
      page: fc.integer({ min: 0, max: 0xef }),
      offset: fc.integer({ min: 0, max: 4095 }),
      len: fc.integer({ min: 1, max: 8192 }),
      high: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(ent, { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 1, max: 250 }),
        (ents, seed) => {
          const t = newSgTable();
          expect(sgAllocTable(t, ents.length, { version: 'newest' }).ok).toBe(true);
          const expected: number[] = [];
          let s = t.sgl;
          ents.forEach((e, i) => {
            const phys = physAddr(physOf(e) + BigInt(i) * 0x10_0000n);
            const data = Uint8Array.from({ length: e.len }, (_, j) => (seed + i * 7 + j) & 0xff);
            k.dma.memory.write(phys, data);
            expected.push(...data);
            sgSetPage(s!, Number(phys >> 12n), e.len, Number(phys & 0xfffn));
            s = i + 1 < ents.length ? sgNext(s!) : null;
          });
          const r = dmaMapSgtable(dev, t, 'to-device');
          expect(r.ok).toBe(true);
          expect(t.nents).toBeGreaterThan(0);
          expect(t.nents).toBeLessThanOrEqual(ents.length);
          const got: number[] = [];
          let d = t.sgl;
          for (let i = 0; i < t.nents && d; i++, d = sgNext(d))
            got.push(...deviceRead(k, dev, d.dmaAddress, d.dmaLength));
          expect(got).toEqual(expected);
          dmaUnmapSgtable(dev, t, 'to-device');
        },
      ),
      { numRuns: 30 },
    );
    expectClean(k, dev, base);
  });

  it('reports failure as values: a mask it cannot honour is EIO, a mapping it cannot make DMA_MAPPING_ERROR', () => {
    const { dev } = boot(impl);
    const r = dmaSetMask(dev, DMA_BIT_MASK(12));
    if (!r.ok) expect(r.errno).toBe('EIO');
    else {
      const a = dmaMapPhys(dev, physAddr(0x1000_0000n), bytes(4096), 'to-device');
      expect(a).toBe(DMA_MAPPING_ERROR);
      expect(dmaMappingError(dev, a)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    }
    expect(r.ok).toBe(impl.ops === 'dma-iommu');
  });

  it('answers its capability queries consistently', () => {
    const { k, dev } = boot(impl);
    const mb = dmaGetMergeBoundary(dev);
    expect((mb & (mb + 1n)) === 0n).toBe(true);
    expect(dmaOptMappingSize(dev) <= dmaMaxMappingSize(dev)).toBe(true);
    expect(dev.ops.dmaSupported(dev, DMA_BIT_MASK(64))).toBe(true);
    expect(dev.ops.getRequiredMask(dev) >= DMA_BIT_MASK(32)).toBe(true);
    expect(dev.ops.iova === null).toBe(impl.ops === 'dma-direct' || k.version === '6.1');
    const other = dmaDeviceOf(k.dma, k.machine.byName.get('0000:03:00.0')!);
    expect(other.ops.name).toBe(impl.ops);
    expect(dmaAddr(0)).toBe(0n);
  });
});
