// A GPU driver's dma-buf exporter (drivers/gpu/drm/amd/amdgpu/amdgpu_dma_buf.c, amdgpu_vram_mgr.c
// amdgpu_vram_mgr_alloc_sgt, ttm_bo_vm.c for the CPU fault path), over the buffer objects of gpu-bo.ts:
//
//   attach:  peer2peer cleared when the importer cannot reach the GPU (pci_p2pdma_distance < 0)
//   pin:     VRAM|GTT, GTT only if any attachment lacks peer2peer; amdgpu_bo_pin (may move first)
//   map:     unpinned: validate into VRAM (P2P importer, VRAM preferred) or GTT; then
//            GTT  -> pages in an sg_table, dma_map_sgtable(importer)
//            VRAM -> one page-less entry per range, dma_map_resource(importer, BAR address)
//   mmap:    faults: trylock the resv (else wait for it, VM_FAULT_RETRY); a move in flight (KERNEL
//            fence) -> wait, VM_FAULT_RETRY; else the pfn of the current placement
//
// The exporter is dynamic (it has pin): moves notify importers through dma_buf_invalidate_mappings().

import { bytes, dmaAddr, PAGE_SHIFT, PAGE_SIZE, physAddr } from '../../../hw/addr.js';
import { DMA_ATTR_SKIP_CPU_SYNC, type DmaDirection } from '../../dma/dma-types.js';
import { dmaMappingError, dmaMapResource, dmaUnmapResource } from '../../dma/mapping.js';
import { dmaMapSgtable, dmaUnmapSgtable } from '../../dma/mapping-sg.js';
import { type DmaBuf, type DmaBufOps, dmaBufExport } from '../../dma-buf/dma-buf.js';
import { isDmaDevice } from '../../dma-buf/dma-buf-mapping.js';
import { type DmaBufVma, dmaBufVmaZap, type VmFault } from '../../dma-buf/dma-buf-mmap.js';
import { dmaResvAssertHeld, dmaResvLock, dmaResvTrylock, dmaResvUnlock } from '../../dma-buf/dma-resv.js';
import { dmaResvTestSignaled, dmaResvWaitTimeout } from '../../dma-buf/dma-resv-iter.js';
import { type KTaskOp, MAX_SCHEDULE_TIMEOUT } from '../../dma-buf/sched.js';
import { warnOn } from '../../dma-buf/world.js';
import { err, type KResult, ok } from '../../errno.js';
import {
  forEachSgtableDmaSg,
  forEachSgtableSg,
  newSgTable,
  type SgTable,
  sgAllocTable,
  sgFreeTable,
  sgSetPage,
} from '../../lib/scatterlist.js';
import { sgAllocTableFromPages } from '../../lib/scatterlist-pages.js';
import { pciP2pdmaDistance } from '../../pci/p2pdma.js';
import { note } from '../timeline.js';
import {
  type GpuBo,
  type GpuDomain,
  gpuResourcePhys,
  ttmBoPin,
  ttmBoUnpin,
  ttmBoValidate,
} from './gpu-bo.js';

const boOf = (d: DmaBuf): GpuBo => d.priv as GpuBo;

/** `amdgpu_bo_pin()`: already pinned -> must already be in an allowed domain; else validate, then pin. */
function* amdgpuBoPin(bo: GpuBo, domains: readonly GpuDomain[]): KTaskOp<KResult<undefined>> {
  if (bo.pinCount > 0) {
    if (!domains.includes(bo.res.domain)) return err('EINVAL', `${bo.name} is pinned in ${bo.res.domain}`);
    ttmBoPin(bo);
    return ok(undefined);
  }
  const v = yield* ttmBoValidate(bo, domains);
  if (!v.ok) return v;
  ttmBoPin(bo);
  return ok(undefined);
}

/** `amdgpu_vram_mgr_alloc_sgt()`: the VRAM range as one page-less entry, dma_map_resource()d for `dev`. */
function vramSgt(bo: GpuBo, attachDev: unknown, dir: DmaDirection): KResult<SgTable> {
  if (!isDmaDevice(attachDev)) return err('EINVAL', 'importer has no DMA state');
  const sgt = newSgTable();
  const a = sgAllocTable(sgt, 1, { version: bo.gdev.k.version });
  if (!a.ok) return a;
  const phys = physAddr(gpuResourcePhys(bo.gdev, bo.res));
  const addr = dmaMapResource(attachDev, phys, bytes(bo.size), dir, DMA_ATTR_SKIP_CPU_SYNC);
  if (!dmaMappingError(attachDev, addr).ok) {
    sgFreeTable(sgt);
    return err('EIO', 'dma_map_resource of VRAM failed');
  }
  for (const sg of forEachSgtableSg(sgt)) {
    sgSetPage(sg, null, Number(bo.size), 0);
    sg.dmaAddress = addr;
    sg.dmaLength = Number(bo.size);
  }
  return ok(sgt);
}

/** `drm_prime_pages_to_sg()` + `dma_map_sgtable()` of the GTT pages for the importer. */
function gttSgt(bo: GpuBo, attachDev: unknown, dir: DmaDirection): KResult<SgTable> {
  if (!isDmaDevice(attachDev)) return err('EINVAL', 'importer has no DMA state');
  const n = Number(bo.size >> BigInt(PAGE_SHIFT));
  const pfns = Array.from({ length: n }, (_, i) => bo.res.pfn + i);
  const sgt = newSgTable();
  const a = sgAllocTableFromPages(sgt, pfns, 0, bytes(bo.size), { version: bo.gdev.k.version });
  if (!a.ok) return a;
  const m = dmaMapSgtable(attachDev, sgt, dir, DMA_ATTR_SKIP_CPU_SYNC);
  if (!m.ok) {
    sgFreeTable(sgt);
    return m;
  }
  return ok(sgt);
}

/** `amdgpu_dma_buf_map()`. */
function* amdgpuDmaBufMap(
  attach: Parameters<DmaBufOps['map_dma_buf']>[0],
  dir: DmaDirection,
): KTaskOp<KResult<SgTable>> {
  const bo = boOf(attach.dmabuf);
  dmaResvAssertHeld(bo.resv, 'amdgpu_dma_buf_map');
  if (bo.pinCount === 0) {
    const domains: GpuDomain[] = bo.preferred === 'vram' && attach.peer2peer ? ['vram', 'gtt'] : ['gtt'];
    const v = yield* ttmBoValidate(bo, domains);
    if (!v.ok) return v;
  }
  const sgt = bo.res.domain === 'vram' ? vramSgt(bo, attach.dev, dir) : gttSgt(bo, attach.dev, dir);
  if (sgt.ok)
    note(bo.gdev.timeline, bo.gdev.name, 'map', `${bo.name} in ${bo.res.domain} for ${attach.dev.name}`);
  return sgt;
}

/** The exporter ops (`amdgpu_dmabuf_ops`). */
export const amdgpuDmabufOps: DmaBufOps = {
  attach(dmabuf, attach) {
    const bo = boOf(dmabuf);
    const dev = attach.dev;
    if (!isDmaDevice(dev) || pciP2pdmaDistance(bo.gdev.k.p2p, bo.gdev.hw.fn, dev.fn, false) < 0)
      attach.peer2peer = false;
    note(
      bo.gdev.timeline,
      bo.gdev.name,
      'attach',
      `${bo.name} by ${dev.name}${attach.peer2peer ? ' (peer2peer)' : ''}`,
    );
    return ok(undefined);
  },
  pin(attach) {
    const bo = boOf(attach.dmabuf);
    dmaResvAssertHeld(bo.resv, 'amdgpu_dma_buf_pin');
    // Pin into VRAM only if every importer can reach it peer to peer; otherwise into GTT.
    let domains: GpuDomain[] = ['vram', 'gtt'];
    if (attach.dmabuf.attachments.some((a) => !a.peer2peer)) domains = ['gtt'];
    if (warnOn(bo.gdev.world, domains.length === 0, 'amdgpu_dma_buf_pin', '!domains'))
      return err('EINVAL', 'no domain to pin into');
    return amdgpuBoPin(bo, domains);
  },
  unpin(attach) {
    ttmBoUnpin(boOf(attach.dmabuf));
  },
  map_dma_buf: (attach, dir) => amdgpuDmaBufMap(attach, dir),
  unmap_dma_buf(attach, sgt, dir) {
    const dev = attach.dev;
    if (!isDmaDevice(dev)) throw new Error('BUG: unmap for an importer without DMA state');
    if (sgt.sgl !== null && sgt.sgl.pfn !== null) dmaUnmapSgtable(dev, sgt, dir, DMA_ATTR_SKIP_CPU_SYNC);
    else
      for (const sg of forEachSgtableDmaSg(sgt))
        dmaUnmapResource(dev, dmaAddr(sg.dmaAddress), bytes(sg.dmaLength), dir, DMA_ATTR_SKIP_CPU_SYNC);
    sgFreeTable(sgt);
  },
  release(dmabuf) {
    boOf(dmabuf).dmabuf = null;
  },
  mmap(dmabuf, vma) {
    const bo = boOf(dmabuf);
    vma.fault = (v, page) => amdgpuGemFault(bo, v, page);
    bo.cpuMappings.add({ zap: () => dmaBufVmaZap(vma) });
    return ok(undefined);
  },
};

/**
 * `ttm_bo_vm_fault()` for a page of the buffer: the pfn of its current placement, or RETRY after
 * waiting for a busy lock or a move in flight.
 */
function* amdgpuGemFault(bo: GpuBo, vma: DmaBufVma, page: number): KTaskOp<VmFault> {
  if (page >= Number(bo.size >> BigInt(PAGE_SHIFT))) return { kind: 'sigbus' };
  // ttm_bo_vm_reserve(): a busy lock is waited for without mmap_lock, then the fault is retried.
  if (!dmaResvTrylock(bo.resv)) {
    yield* dmaResvLock(bo.resv, null);
    dmaResvUnlock(bo.resv);
    return { kind: 'retry' };
  }
  // ttm_bo_vm_fault_idle(): a move in flight must finish before its pages can be handed out.
  if (!dmaResvTestSignaled(bo.resv, 'kernel')) {
    yield* dmaResvWaitTimeout(bo.resv, 'kernel', true, MAX_SCHEDULE_TIMEOUT);
    dmaResvUnlock(bo.resv);
    return { kind: 'retry' };
  }
  const phys = gpuResourcePhys(bo.gdev, bo.res) + BigInt(page * PAGE_SIZE);
  dmaResvUnlock(bo.resv);
  void vma;
  return { kind: 'pfn', phys };
}

/**
 * `amdgpu_gem_prime_export()`: a dma-buf of `bo` sharing its reservation object.
 * @returns the dma-buf; the export errors of dma_buf_export().
 */
export function amdgpuGemPrimeExport(bo: GpuBo): KResult<DmaBuf> {
  const d = dmaBufExport(bo.gdev.world, {
    expName: 'amdgpu',
    sizeBytes: Number(bo.size),
    ops: amdgpuDmabufOps,
    priv: bo,
    resv: bo.resv,
  });
  if (d.ok) {
    bo.dmabuf = d.value;
    note(bo.gdev.timeline, bo.gdev.name, 'export', `${bo.name} (${bo.size} bytes, ${bo.res.domain})`);
  }
  return d;
}
