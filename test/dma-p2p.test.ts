// P2PDMA through every DMA mapping path, on a machine: an NVMe CMB registered as a P2P provider (as
// nvme_map_cmb() does) mapped for another device.
//
//   00:01.0 root port -- 01:00.0 switch -- 02:00.0 -- 03:00.0 NVMe (CMB in BAR 0: the provider)
//                                        `- 02:01.0 -- 04:00.0 client under the same switch
//   00:10.0 root port -- 40:00.0 client across the host bridge
//
// Same switch, no ACS: bus addresses, flagged, no IOVA. ACS redirect on the downstream ports: the
// traffic goes up through the root complex, so the pages are mapped like RAM (IOVAs behind an IOMMU).
// Across a host bridge that is not whitelisted: -EREMOTEIO and nothing stays mapped.

import { describe, expect, it } from 'vitest';
import { bytes, type DmaAddr, MiB, type PhysAddr, physAddr } from '../src/hw/addr.js';
import { dmaDeviceOf } from '../src/kernel/dma/dma-context.js';
import { fnOf, TB_ROOT_PORT, TB_SWITCH_A, TB_SWITCH_B } from '../src/kernel/dma/dma-testbed.js';
import { DMA_BIT_MASK } from '../src/kernel/dma/dma-types.js';
import { dmaSetMaskAndCoherent } from '../src/kernel/dma/mapping.js';
import { dmaMapSgtable, dmaUnmapSgtable } from '../src/kernel/dma/mapping-sg.js';
import { dmaMapPhyr, dmaUnmapPhyr } from '../src/kernel/dma/phyr-map.js';
import type { IommuDmaSetup } from '../src/kernel/iommu/dma-iommu-setup.js';
import { iovaDomainRanges } from '../src/kernel/iommu/iova.js';
import { bootKernel, type Kernel } from '../src/kernel/kernel.js';
import { phyrFromRanges } from '../src/kernel/lib/phyr.js';
import {
  newSgTable,
  type SgTable,
  sgAllocTable,
  sgDmaIsBusAddress,
  sgNext,
  sgSetPage,
} from '../src/kernel/lib/scatterlist.js';
import { virtToPhys } from '../src/kernel/mm/direct-map.js';
import { pciAllocP2pmem, pciP2pmemPublish } from '../src/kernel/pci/p2pdma-alloc.js';
import { pciP2pdmaAddResource } from '../src/kernel/pci/p2pdma-provider.js';
import { p2pMachine } from '../src/kernel/pci/p2pdma-testbed.js';
import type { KernelVersion } from '../src/kernel/profile.js';

const RR_CR = 0x0004 | 0x0008;
const BUS_OFFSET = 0x80_0000_0000n;
const RAM_PAGE = physAddr(0x1000_0000n);

interface Setup {
  readonly version: KernelVersion;
  readonly iommu: 'off' | 'strict' | 'lazy';
  readonly acs?: boolean;
  /** Host bridge 8086:29c0 (q35, not whitelisted) instead of the whitelisted 8086:2020. */
  readonly q35?: boolean;
  readonly client?: string;
  readonly swiotlb?: 'on' | 'force';
}

function boot(s: Setup) {
  const m = p2pMachine({
    dspAcsCtrl: s.acs ? RR_CR : undefined,
    busOffset: BUS_OFFSET,
    hostBridgeId: s.q35 ? [0x8086, 0x29c0] : undefined,
  });
  const k = bootKernel(
    { ...m, iommu: s.iommu !== 'off' },
    {
      version: s.version,
      dma: { iommu: s.iommu === 'off' ? undefined : s.iommu, swiotlb: s.swiotlb ?? 'on' },
    },
  );
  const nvme = fnOf(k, TB_SWITCH_A);
  const cmb = pciP2pdmaAddResource(k, nvme, 0, 2n * MiB, 0n);
  if (!cmb.ok) throw new Error(cmb.detail);
  pciP2pmemPublish(k, nvme, true);
  const buf = pciAllocP2pmem(k, nvme, 3n * 4096n);
  if (buf === null) throw new Error('no CMB memory');
  const cmbPhys = virtToPhys(buf);
  const dev = dmaDeviceOf(k.dma, fnOf(k, s.client ?? TB_SWITCH_B));
  // As nvme_pci_enable() does: the CMB sits above 4 GiB, beyond the PCI default 32-bit mask.
  expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)).ok).toBe(true);
  return { k, dev, cmbPhys };
}

/** RAM page, then three CMB pages. */
function table(cmbPhys: PhysAddr): SgTable {
  const t = newSgTable();
  expect(sgAllocTable(t, 4, { version: 'newest' }).ok).toBe(true);
  const pfns = [Number(RAM_PAGE >> 12n), ...[0, 1, 2].map((i) => Number(cmbPhys >> 12n) + i)];
  let s = t.sgl;
  for (let i = 0; i < 4 && s; i++, s = i < 4 ? sgNext(s) : null) sgSetPage(s, pfns[i]!, 4096, 0);
  return t;
}

function segs(t: SgTable): { dma: DmaAddr; len: number; bus: boolean }[] {
  const out = [];
  let s = t.sgl;
  for (let i = 0; i < t.nents && s; i++, s = sgNext(s))
    out.push({ dma: s.dmaAddress, len: s.dmaLength, bus: sgDmaIsBusAddress(s) });
  return out;
}

const iovaAllocs = (k: Kernel): number => {
  const g = [...(k.dma.iommu as IommuDmaSetup).groups.values()];
  return g.reduce((n, x) => n + (x.cookie?.iovad.stats.treeAllocs ?? 0), 0);
};

describe.each(['6.1', 'newest'] as const)('P2PDMA in dma_map_sgtable (%s)', (version) => {
  describe.each(['off', 'strict', 'lazy'] as const)('IOMMU %s', (iommu) => {
    it('gives CMB pages of a device under the same switch bus addresses, flagged, without IOVA', () => {
      const { k, dev, cmbPhys } = boot({ version, iommu });
      const t = table(cmbPhys);
      expect(dmaMapSgtable(dev, t, 'bidirectional').ok).toBe(true);
      const out = segs(t);
      const bus = out.filter((x) => x.bus);
      expect(bus.map((x) => x.dma)).toEqual([
        cmbPhys - BUS_OFFSET,
        cmbPhys - BUS_OFFSET + 4096n,
        cmbPhys - BUS_OFFSET + 8192n,
      ]);
      expect(bus.every((x) => x.len === 4096)).toBe(true);
      const ram = out.filter((x) => !x.bus);
      expect(ram).toHaveLength(1);
      if (iommu === 'off') expect(ram[0]!.dma).toBe(RAM_PAGE);
      else {
        const unit = (k.dma.iommu as IommuDmaSetup).unit;
        const x = unit.translate(dev.name, ram[0]!.dma, bytes(4096), 'read');
        expect(x.ok && x.ranges[0]!.phys).toBe(RAM_PAGE);
        expect(unit.translate(dev.name, bus[0]!.dma, bytes(4096), 'read').ok).toBe(false);
        // The host-bridge window is reserved as bus addresses: no IOVA can alias the CMB's bus address.
        const pfn = Number(bus[0]!.dma >> 12n);
        const c = dev.iommu!.cookie as { iovad: Parameters<typeof iovaDomainRanges>[0] };
        expect(iovaDomainRanges(c.iovad).some((r) => r.pfnLo <= pfn && pfn <= r.pfnHi)).toBe(true);
      }
      dmaUnmapSgtable(dev, t, 'bidirectional');
      expect(k.dma.debug.entries(dev)).toEqual([]);
      expect(k.dma.debug.reports).toEqual([]);
      let s = t.sgl;
      for (; s; s = sgNext(s)) expect(sgDmaIsBusAddress(s)).toBe(false);
    });

    it('maps CMB pages behind ACS redirect like RAM: through the root complex', () => {
      const { k, dev, cmbPhys } = boot({ version, iommu, acs: true });
      const mark = k.log.lines.length;
      const t = table(cmbPhys);
      expect(dmaMapSgtable(dev, t, 'to-device').ok).toBe(true);
      expect(k.log.since(mark).map((l) => l.text)[0]).toBe(
        'nvme 0000:04:00.0: ACS redirect is set between the client and provider (0000:03:00.0)',
      );
      const out = segs(t);
      expect(out.some((x) => x.bus)).toBe(false);
      if (iommu === 'off')
        expect(out.slice(1).map((x) => x.dma)).toEqual([0n, 1n, 2n].map((i) => cmbPhys + i * 4096n));
      else {
        const unit = (k.dma.iommu as IommuDmaSetup).unit;
        const x = unit.translate(dev.name, out[0]!.dma, bytes(4 * 4096), 'read');
        expect(x.ok && x.ranges.map((r) => r.phys)).toEqual([RAM_PAGE, cmbPhys]);
      }
      dmaUnmapSgtable(dev, t, 'to-device');
      expect(k.dma.debug.entries(dev)).toEqual([]);
    });

    it('fails with EREMOTEIO across a host bridge that is not whitelisted, leaving nothing mapped', () => {
      const { k, dev, cmbPhys } = boot({ version, iommu, q35: true, client: TB_ROOT_PORT });
      const mark = k.log.lines.length;
      const t = table(cmbPhys);
      const before = iommu === 'off' ? 0 : iovaAllocs(k);
      expect(dmaMapSgtable(dev, t, 'to-device')).toMatchObject({ ok: false, errno: 'EREMOTEIO' });
      expect(k.log.since(mark).map((l) => l.text)).toContain(
        'nvme 0000:40:00.0: cannot be used for peer-to-peer DMA as the client and provider (0000:03:00.0) do not share an upstream bridge or whitelisted host bridge',
      );
      expect(k.dma.debug.entries(dev)).toEqual([]);
      if (iommu !== 'off') {
        expect(iovaAllocs(k)).toBe(before);
        const unit = (k.dma.iommu as IommuDmaSetup).unit;
        expect(
          unit.pageTable([...(k.dma.iommu as IommuDmaSetup).groups.values()][0]!.domain.id).walk(0xffff_f000)
            .present,
        ).toBe(false);
      }
      expect([t.sgl!.offset, t.sgl!.length]).toEqual([0, 4096]);
    });
  });

  it('never bounces P2P memory: with swiotlb=force a host-bridge P2P segment fails instead', () => {
    const { k, dev, cmbPhys } = boot({ version, iommu: 'off', acs: true, swiotlb: 'force' });
    const t = table(cmbPhys);
    expect(dmaMapSgtable(dev, t, 'to-device')).toMatchObject({ ok: false, errno: 'EIO' });
    expect(k.dma.stats.swiotlbMaps).toBe(1);
    expect(k.dma.debug.entries(dev)).toEqual([]);
  });

  it('maps a phyr list of CMB and RAM ranges: bus addresses for the CMB, one IOVA range for RAM', () => {
    const { dev, cmbPhys } = boot({ version: 'newest', iommu: 'strict' });
    const list = phyrFromRanges(
      'ranges16',
      [
        { phys: RAM_PAGE, len: bytes(8192) },
        { phys: cmbPhys, len: bytes(4096) },
        { phys: physAddr(0x2000_0000n), len: bytes(4096) },
      ],
      (p) => (p >= cmbPhys && p < cmbPhys + 2n * MiB ? 1 : -1),
    );
    if (!list.ok) throw new Error(list.detail);
    const m = dmaMapPhyr(dev, list.value, 'to-device');
    if (!m.ok) throw new Error(m.detail);
    const r = m.value.dma.toArray();
    expect(r.map((x) => x.len)).toEqual([8192n, 4096n, 4096n]);
    expect(r[1]!.dma).toBe(cmbPhys - BUS_OFFSET);
    expect(r[2]!.dma).toBe(r[0]!.dma + 8192n);
    dmaUnmapPhyr(dev, m.value);
  });
});
