// dma_buf_phys_vec_to_sgt() / dma_buf_free_sgt() over the real DMA layer: bus addresses through a
// switch, one IOVA range behind an IOMMU, dma_map_phys on dma-direct, the u32 entry split, and the
// errors (no provider, unsupported path, the 6.19 multi-range IOVA overlap).

import { describe, expect, it } from 'vitest';
import { bytes, GiB, physAddr } from '../../hw/addr.js';
import type { DmaDevice } from '../dma/device.js';
import { devOf, dmaTestKernel, fnOf, TB_ROOT_PORT, TB_SWITCH_A, TB_SWITCH_B } from '../dma/dma-testbed.js';
import { DMA_BIT_MASK } from '../dma/dma-types.js';
import { dmaSetMaskAndCoherent } from '../dma/mapping.js';
import { ok } from '../errno.js';
import { iommuIovaToPhys } from '../iommu/iommu.js';
import { forEachSgtableDmaSg, type SgTable } from '../lib/scatterlist.js';
import { pcimP2pdmaInit, pcimP2pdmaProvider } from '../pci/p2pdma-provider.js';
import { testbedBar0 } from '../pci/p2pdma-testbed.js';
import { type DmaBufAttachment, dmaBufDynamicAttach, dmaBufExport } from './dma-buf.js';
import { dmaBufWorldOf } from './dma-buf-kernel.js';
import { dmaBufFreeSgt, dmaBufPhysVecToSgt, MAX_SG_ENT_SZ, type PhysVec } from './dma-buf-mapping.js';
import { dmaResvLock, dmaResvUnlock } from './dma-resv.js';
import { runNonBlocking } from './sched.js';

const run = runNonBlocking;

/** A kernel with provider BAR 0 of TB_SWITCH_A, and an attachment of `client` to a dma-buf of it. */
function rig(client: string, o: Parameters<typeof dmaTestKernel>[0] = {}) {
  const k = dmaTestKernel(o);
  const owner = fnOf(k, TB_SWITCH_A);
  expect(pcimP2pdmaInit(k, owner).ok).toBe(true);
  const provider = pcimP2pdmaProvider(k, owner, 0);
  const w = dmaBufWorldOf(k);
  const d = dmaBufExport(w, {
    expName: 'vfio-bar0',
    sizeBytes: 1 << 20,
    ops: { map_dma_buf: () => ok(null as never), unmap_dma_buf: () => {}, release: () => {} },
    priv: {},
  });
  if (!d.ok) throw new Error(d.detail);
  const dev = devOf(k, client);
  // Drivers of 64-bit capable devices widen the PCI core's default 32-bit mask at probe.
  expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)).ok).toBe(true);
  const a = run(dmaBufDynamicAttach(d.value, dev, { allow_peer2peer: true, invalidate_mappings: () => {} }));
  if (!a.ok) throw new Error(a.detail);
  return { k, w, provider, dev, attach: a.value };
}

const vec = (paddr: bigint, len: bigint): PhysVec => ({ paddr: physAddr(paddr), len: bytes(len) });
const entries = (sgt: SgTable) =>
  [...forEachSgtableDmaSg(sgt)].map((sg) => [sg.dmaAddress, sg.dmaLength, sg.pfn]);

function locked<T>(attach: DmaBufAttachment, fn: () => T): T {
  run(dmaResvLock(attach.dmabuf.resv, null));
  try {
    return fn();
  } finally {
    dmaResvUnlock(attach.dmabuf.resv);
  }
}

const bar0 = testbedBar0(0);

describe('dma_buf_phys_vec_to_sgt', () => {
  it('BUS_ADDR: entries at paddr + bus_offset, page-less, orig_nents 0, nothing in the DMA ledger', () => {
    const off = 0x1000_0000n;
    const { k, provider, attach } = rig(TB_SWITCH_B, { machine: { busOffset: off } });
    const r = locked(attach, () =>
      dmaBufPhysVecToSgt(
        attach,
        provider,
        [vec(bar0, 0x2000n), vec(bar0 + 0x10000n, 0x1000n)],
        bytes(0x3000),
        'to-device',
      ),
    );
    if (!r.ok) throw new Error(r.detail);
    expect(entries(r.value)).toEqual([
      [bar0 - off, 0x2000, null],
      [bar0 + 0x10000n - off, 0x1000, null],
    ]);
    expect([r.value.nents, r.value.origNents]).toEqual([2, 0]);
    expect(k.dma.debug.entries()).toEqual([]);
    locked(attach, () => dmaBufFreeSgt(attach, r.value, 'to-device'));
    expect(r.value.nents).toBe(0);
    expect(dmaBufWorldOf(k).warnings).toEqual([]);
  });

  it('splits a range at ALIGN_DOWN(UINT_MAX, PAGE_SIZE)', () => {
    const { provider, attach } = rig(TB_SWITCH_B, { machine: { barBytes: 8n * GiB } });
    const base = testbedBar0(0, 8n * GiB);
    const len = 4n * GiB + 0x1000n;
    const r = locked(attach, () =>
      dmaBufPhysVecToSgt(attach, provider, [vec(base, len)], bytes(len), 'from-device'),
    );
    if (!r.ok) throw new Error(r.detail);
    expect(MAX_SG_ENT_SZ).toBe(0xffff_f000n);
    expect(entries(r.value)).toEqual([
      [base, 0xffff_f000, null],
      [base + 0xffff_f000n, Number(len - 0xffff_f000n), null],
    ]);
  });

  it('THRU_HOST_BRIDGE behind an IOMMU: one IOVA entry mapping the BAR; free unmaps it', () => {
    const { k, provider, dev, attach } = rig(TB_ROOT_PORT, { iommu: 'strict' });
    const r = locked(attach, () =>
      dmaBufPhysVecToSgt(attach, provider, [vec(bar0, 0x4000n)], bytes(0x4000), 'bidirectional'),
    );
    if (!r.ok) throw new Error(r.detail);
    const [[iova, len, page]] = entries(r.value) as [[bigint, number, null]];
    expect([len, page, r.value.origNents]).toEqual([0x4000, null, 0]);
    const domain = (dev as DmaDevice).iommu!.domain;
    expect(iommuIovaToPhys(domain, iova as never)).toBe(bar0);
    expect(iommuIovaToPhys(domain, (iova + 0x3000n) as never)).toBe(bar0 + 0x3000n);
    locked(attach, () => dmaBufFreeSgt(attach, r.value, 'bidirectional'));
    expect(iommuIovaToPhys(domain, iova as never)).toBe(0n);
    expect(k.dma.debug.reports).toEqual([]);
  });

  it('THRU_HOST_BRIDGE on dma-direct: dma_map_phys(DMA_ATTR_MMIO) per range, recorded and released', () => {
    const { k, provider, attach } = rig(TB_ROOT_PORT);
    const r = locked(attach, () =>
      dmaBufPhysVecToSgt(
        attach,
        provider,
        [vec(bar0, 0x1000n), vec(bar0 + 0x8000n, 0x1000n)],
        bytes(0x2000),
        'to-device',
      ),
    );
    if (!r.ok) throw new Error(r.detail);
    expect(entries(r.value)).toEqual([
      [bar0, 0x1000, null],
      [bar0 + 0x8000n, 0x1000, null],
    ]);
    expect(k.dma.debug.entries().length).toBe(2);
    locked(attach, () => dmaBufFreeSgt(attach, r.value, 'to-device'));
    expect(k.dma.debug.entries()).toEqual([]);
    expect(k.dma.debug.reports).toEqual([]);
  });

  it('6.19 links every range at IOVA offset 0: two ranges collide (EEXIST) and the first is unwound', () => {
    const { k, provider, dev, attach } = rig(TB_ROOT_PORT, { iommu: 'strict' });
    const r = locked(attach, () =>
      dmaBufPhysVecToSgt(
        attach,
        provider,
        [vec(bar0, 0x1000n), vec(bar0 + 0x2000n, 0x1000n)],
        bytes(0x2000),
        'to-device',
      ),
    );
    expect(r).toMatchObject({ ok: false, errno: 'EEXIST' });
    // dma_iova_destroy() took back the first link: nothing stays mapped.
    expect(k.dma.debug.entries()).toEqual([]);
    expect((dev as DmaDevice).iommu!.domain).toBeDefined();
  });

  it('EINVAL: no provider (WARN with the call), an unsupported path, or no range', () => {
    const { w, provider, attach } = rig(TB_ROOT_PORT, { machine: { hostBridgeId: [0x1234, 0x5678] } });
    expect(
      locked(attach, () =>
        dmaBufPhysVecToSgt(attach, null, [vec(bar0, 0x1000n)], bytes(0x1000), 'to-device'),
      ),
    ).toMatchObject({
      errno: 'EINVAL',
    });
    expect(w.warnings.map((x) => [x.message, x.call])).toEqual([
      [
        'WARN_ON(!attach || !attach->dmabuf || !provider)',
        'dma_buf_phys_vec_to_sgt(attach=0000:40:00.0:vfio-bar0, nr_ranges=1, size=0x1000, dir=DMA_TO_DEVICE)',
      ],
    ]);
    // A host bridge outside the whitelist: the root-port client cannot reach the BAR at all.
    expect(
      locked(attach, () =>
        dmaBufPhysVecToSgt(attach, provider, [vec(bar0, 0x1000n)], bytes(0x1000), 'to-device'),
      ),
    ).toMatchObject({
      errno: 'EINVAL',
    });
    const b = rig(TB_SWITCH_B);
    expect(
      locked(b.attach, () => dmaBufPhysVecToSgt(b.attach, b.provider, [], bytes(0), 'to-device')),
    ).toMatchObject({
      errno: 'EINVAL',
    });
  });

  it('asserts the resv lock (lockdep) on both helpers', () => {
    const { w, provider, attach } = rig(TB_SWITCH_B);
    const r = dmaBufPhysVecToSgt(attach, provider, [vec(bar0, 0x1000n)], bytes(0x1000), 'to-device');
    if (r.ok) dmaBufFreeSgt(attach, r.value, 'to-device');
    expect(w.warnings.map((x) => x.func)).toEqual(['dma_buf_phys_vec_to_sgt', 'dma_buf_free_sgt']);
  });
});
