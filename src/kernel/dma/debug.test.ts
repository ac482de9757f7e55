import { describe, expect, it } from 'vitest';
import { bytes, type DmaAddr, dmaAddr, physAddr } from '../../hw/addr.js';
import { newSgTable, sgAllocTable, sgNext, sgSetPage } from '../lib/scatterlist.js';
import type { KernelVersion } from '../profile.js';
import { debugDmaCpuAccess, debugDmaDeviceRelease } from './debug-sync.js';
import { devOf, dmaTestKernel, TB_SWITCH_A } from './dma-testbed.js';
import { DMA_ATTR_SKIP_CPU_SYNC, DMA_BIT_MASK, DMA_MAPPING_ERROR } from './dma-types.js';
import {
  dmaDriverRelease,
  dmaMapPhys,
  dmaMappingError,
  dmaMapResource,
  dmaSetMask,
  dmaSyncSingleForCpu,
  dmaSyncSingleForDevice,
  dmaUnmapPhys,
} from './mapping.js';
import { dmaMapSgtable, dmaUnmapSgAttrs, dmaUnmapSgtable } from './mapping-sg.js';

const P = physAddr(0x1234_5000n);
const K4 = bytes(4096);

function rig(version: KernelVersion = 'newest', allErrors = true) {
  const k = dmaTestKernel({ version, dma: { debugAllErrors: allErrors } });
  const dev = devOf(k);
  const mark = k.log.lines.length;
  const warns = () =>
    k.log
      .since(mark)
      .filter((l) => l.text.startsWith('DMA-API: nvme'))
      .map((l) => l.text);
  return { k, dev, d: k.dma.debug, warns };
}

const map = (
  dev: ReturnType<typeof devOf>,
  p = P,
  size = K4,
  dir: 'to-device' | 'from-device' | 'bidirectional' = 'to-device',
) => {
  const a = dmaMapPhys(dev, p, size, dir);
  expect(dmaMappingError(dev, a).ok).toBe(true);
  return a;
};

describe('dma-debug ledger: unmap checks (check_unmap)', () => {
  it('prints the boot lines and records every map', () => {
    const { k, dev, d } = rig();
    expect(k.log.lines.map((l) => l.text).slice(0, 2)).toEqual([
      'DMA-API: preallocated 65536 debug entries',
      'DMA-API: debugging enabled by kernel config',
    ]);
    const a = map(dev);
    expect(d.entries(dev)).toEqual([
      expect.objectContaining({
        devAddr: a,
        size: 4096n,
        dir: 'DMA_TO_DEVICE',
        type: 'phy',
        mapErr: 'dma map error checked',
      }),
    ]);
    dmaUnmapPhys(dev, a, K4, 'to-device');
    expect(d.entries(dev)).toEqual([]);
    expect(d.errorCount).toBe(0);
  });

  it('reports a free of memory never mapped, and of DMA_MAPPING_ERROR', () => {
    const { dev, d, warns } = rig();
    dmaUnmapPhys(dev, dmaAddr(0x9000), K4, 'to-device');
    dmaUnmapPhys(dev, DMA_MAPPING_ERROR, K4, 'to-device');
    expect(warns()).toEqual([
      'DMA-API: nvme 0000:04:00.0: device driver tries to free DMA memory it has not allocated [device address=0x0000000000009000] [size=4096 bytes]',
      'DMA-API: nvme 0000:04:00.0: device driver tries to free an invalid DMA memory address',
    ]);
    expect(d.reports.map((r) => r.kind)).toEqual(['free-not-allocated', 'free-invalid-address']);
    expect(d.reports[0]!.call).toBe('dma_unmap_phys(dev_addr=0x0000000000009000, size=4096, DMA_TO_DEVICE)');
  });

  it('reports a different size and a different direction in one unmap, with where it was mapped', () => {
    const { dev, d, warns } = rig();
    const a = map(dev);
    dmaUnmapPhys(dev, a, bytes(2048), 'from-device');
    const addr = `0x${a.toString(16).padStart(16, '0')}`;
    expect(warns()).toEqual([
      `DMA-API: nvme 0000:04:00.0: device driver frees DMA memory with different size [device address=${addr}] [map size=4096 bytes] [unmap size=2048 bytes]`,
      `DMA-API: nvme 0000:04:00.0: device driver frees DMA memory with different direction [device address=${addr}] [size=2048 bytes] [mapped with DMA_TO_DEVICE] [unmapped with DMA_FROM_DEVICE]`,
    ]);
    expect(d.reports[0]!.mappedAt).toMatch(
      /^dma_map_phys\(phys=0x0000000012345000, dev_addr=0x[0-9a-f]{16}, size=4096, DMA_TO_DEVICE\) at 0 ns$/,
    );
  });

  it('reports a double unmap as a free of memory not allocated', () => {
    const { dev, d } = rig();
    const a = map(dev);
    dmaUnmapPhys(dev, a, K4, 'to-device');
    dmaUnmapPhys(dev, a, K4, 'to-device');
    expect(d.reports.map((r) => r.kind)).toEqual(['free-not-allocated']);
  });

  it('reports a mapping whose error was never checked', () => {
    const { dev, warns } = rig();
    const a = dmaMapPhys(dev, P, K4, 'bidirectional');
    dmaUnmapPhys(dev, a, K4, 'bidirectional');
    expect(warns()).toEqual([
      `DMA-API: nvme 0000:04:00.0: device driver failed to check map error[device address=0x${a.toString(16).padStart(16, '0')}] [size=4096 bytes] [mapped as phy]`,
    ]);
  });

  it.each([
    ['6.1', 'single', 'resource'],
    ['newest', 'phy', 'phy'],
  ] as const)(
    'names entry types per profile (%s) and catches the wrong unmap function',
    (version, page, res) => {
      const { k, dev, d } = rig(version);
      expect(dmaSetMask(dev, DMA_BIT_MASK(64)).ok).toBe(true);
      const mmio = physAddr(0x380_0000_0000n);
      const a = dmaMapResource(dev, mmio, K4, 'to-device');
      dmaMappingError(dev, a);
      expect(d.entries(dev)[0]!.type).toBe(res);
      dmaUnmapPhys(dev, a, K4, 'to-device');
      if (page === res) expect(d.reports).toEqual([]);
      else {
        expect(d.reports.map((r) => r.lines[0])).toEqual([
          `DMA-API: nvme 0000:04:00.0: device driver frees DMA memory with wrong function [device address=0x${a.toString(16).padStart(16, '0')}] [size=4096 bytes] [mapped as resource] [unmapped as single]`,
        ]);
        expect(k.version).toBe('6.1');
      }
    },
  );

  it('prints only the first violation unless all errors are shown, but counts and keeps them all', () => {
    const { k, dev, d } = rig('newest', false);
    dmaUnmapPhys(dev, dmaAddr(0x1000), K4, 'to-device');
    dmaUnmapPhys(dev, dmaAddr(0x2000), K4, 'to-device');
    expect(d.errorCount).toBe(2);
    expect(d.reports.map((r) => r.printed)).toEqual([true, false]);
    expect(k.log.lines.filter((l) => l.text.includes('has not allocated'))).toHaveLength(1);
  });
});

describe('dma-debug ledger: sync checks (check_sync)', () => {
  it('reports syncs of unknown memory, outside the range, in the wrong direction', () => {
    const { dev, warns } = rig();
    const a = map(dev, P, K4, 'to-device');
    const addr = `0x${a.toString(16).padStart(16, '0')}`;
    dmaSyncSingleForCpu(dev, dmaAddr(0x7000), K4, 'to-device');
    dmaSyncSingleForCpu(dev, a, bytes(8192), 'to-device');
    dmaSyncSingleForCpu(dev, a, K4, 'from-device');
    dmaSyncSingleForDevice(dev, a, K4, 'from-device');
    expect(warns()).toEqual([
      'DMA-API: nvme 0000:04:00.0: device driver tries to sync DMA memory it has not allocated [device address=0x0000000000007000] [size=4096 bytes]',
      `DMA-API: nvme 0000:04:00.0: device driver tries to sync DMA memory it has not allocated [device address=${addr}] [size=8192 bytes]`,
      `DMA-API: nvme 0000:04:00.0: device driver syncs DMA memory with different direction [device address=${addr}] [size=4096 bytes] [mapped with DMA_TO_DEVICE] [synced with DMA_FROM_DEVICE]`,
      `DMA-API: nvme 0000:04:00.0: device driver syncs device read-only DMA memory for cpu [device address=${addr}] [size=4096 bytes] [mapped with DMA_TO_DEVICE] [synced with DMA_FROM_DEVICE]`,
      `DMA-API: nvme 0000:04:00.0: device driver syncs DMA memory with different direction [device address=${addr}] [size=4096 bytes] [mapped with DMA_TO_DEVICE] [synced with DMA_FROM_DEVICE]`,
    ]);
  });

  it('accepts a sync of a part of a mapping (containing match)', () => {
    const { dev, d } = rig();
    const a = map(dev, P, bytes(16384), 'from-device');
    dmaSyncSingleForCpu(dev, dmaAddr(a + 8192n), K4, 'from-device');
    expect(d.reports).toEqual([]);
  });
});

describe('dma-debug ledger: scatterlists, overlap, leaks, CPU ownership', () => {
  function sgt(n: number) {
    const t = newSgTable();
    expect(sgAllocTable(t, n, { version: 'newest' }).ok).toBe(true);
    let s = t.sgl;
    for (let i = 0; i < n && s; i++, s = i < n ? sgNext(s) : null) sgSetPage(s, 0x1000 + 2 * i, 4096, 0);
    return t;
  }

  it('catches an sg unmap with a different entry count', () => {
    const { dev, warns } = rig();
    const t = sgt(3);
    expect(dmaMapSgtable(dev, t, 'to-device').ok).toBe(true);
    dmaUnmapSgAttrs(dev, t.sgl, 2, 'to-device');
    expect(warns()[0]).toBe(
      'DMA-API: nvme 0000:04:00.0: device driver frees DMA sg list with different entry count [map count=3] [unmap count=2]',
    );
  });

  it('maps and unmaps an sg table cleanly, with "scather-gather" spelled as 6.1 spells it', () => {
    for (const version of ['6.1', 'newest'] as const) {
      const { dev, d } = rig(version);
      const t = sgt(3);
      expect(dmaMapSgtable(dev, t, 'to-device').ok).toBe(true);
      expect(d.entries(dev).map((e) => e.type)).toEqual(
        Array(3).fill(version === '6.1' ? 'scather-gather' : 'scatter-gather'),
      );
      dmaUnmapSgtable(dev, t, 'to-device');
      expect(d.entries(dev)).toEqual([]);
      expect(d.reports).toEqual([]);
    }
  });

  it('reports overlapping device-writable mappings of one cacheline unless SKIP_CPU_SYNC', () => {
    const { dev, d, warns } = rig();
    map(dev, P, K4, 'from-device');
    const b = dmaMapPhys(dev, physAddr(P + 8n), bytes(64), 'from-device', DMA_ATTR_SKIP_CPU_SYNC);
    expect(d.reports).toEqual([]);
    map(dev, physAddr(P + 16n), bytes(64), 'from-device');
    expect(warns()).toEqual([
      "DMA-API: nvme 0000:04:00.0: cacheline tracking EEXIST, overlapping mappings aren't supported",
    ]);
    map(dev, physAddr(P + 32n), bytes(64), 'to-device');
    expect(d.reports).toHaveLength(1);
    expect(b).not.toBe(DMA_MAPPING_ERROR);
  });

  it('reports mappings still held when the driver is released, naming one of them', () => {
    const { k, dev, d, warns } = rig();
    const a = map(dev, P, K4, 'to-device');
    const b = map(dev, physAddr(0x5555_0000n), bytes(8192), 'from-device');
    expect(dmaDriverRelease(dev)).toBe(2);
    const lines = warns();
    expect(lines[0]).toBe(
      'DMA-API: nvme 0000:04:00.0: device driver has pending DMA allocations while released from device [count=2]',
    );
    const last = d.entries(dev).at(-1)!;
    expect([a, b]).toContain(last.devAddr);
    expect(d.reports[0]!.lines[1]).toBe(
      `One of leaked entries details: [device address=0x${last.devAddr.toString(16).padStart(16, '0')}] [size=${last.size} bytes] [mapped with ${last.dir}] [mapped as phy]`,
    );
    expect(debugDmaDeviceRelease(d, devOf(k, TB_SWITCH_A))).toBe(0);
  });

  it('reports CPU access to memory the device owns until a sync hands it back', () => {
    const { dev, d } = rig();
    const a = map(dev, P, K4, 'from-device');
    expect(debugDmaCpuAccess(d, physAddr(P + 100n), 4, false)).toBe(true);
    expect(d.reports.at(-1)!.kind).toBe('cpu-access-device-owned');
    dmaSyncSingleForCpu(dev, a, K4, 'from-device');
    expect(debugDmaCpuAccess(d, physAddr(P + 100n), 4, true)).toBe(false);
    dmaSyncSingleForDevice(dev, a, K4, 'from-device');
    expect(debugDmaCpuAccess(d, physAddr(P + 100n), 4, false)).toBe(true);
    dmaUnmapPhys(dev, a, K4, 'from-device');
    expect(debugDmaCpuAccess(d, physAddr(P + 100n), 4, true)).toBe(false);
    const t = map(dev, physAddr(0x7000_0000n), K4, 'to-device');
    expect(debugDmaCpuAccess(d, physAddr(0x7000_0010n), 4, false)).toBe(false);
    expect(debugDmaCpuAccess(d, physAddr(0x7000_0010n), 4, true)).toBe(true);
    expect(t).not.toBe(DMA_MAPPING_ERROR as DmaAddr);
  });

  it('is silent and records nothing with dma_debug off', () => {
    const k = dmaTestKernel({ dma: { debug: false } });
    const dev = devOf(k);
    const a = dmaMapPhys(dev, P, K4, 'to-device');
    dmaUnmapPhys(dev, a, bytes(1), 'from-device');
    expect(k.dma.debug.errorCount).toBe(0);
    expect(k.log.lines.some((l) => l.text.startsWith('DMA-API'))).toBe(false);
  });
});
