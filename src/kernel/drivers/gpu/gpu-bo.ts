// GPU buffer objects with move semantics (drivers/gpu/drm/ttm/ttm_bo.c, ttm_bo_util.c and
// drivers/gpu/drm/amd/amdgpu/amdgpu_object.c, amdgpu_ttm.c, reduced): a buffer lives in VRAM or in
// system memory (GTT pages the GPU reaches by DMA), is pinned in place or free to move, and moves by a
// copy on the GPU's copy engine whose fence goes into the buffer's reservation object as a KERNEL fence.
//
//   ttm_bo_handle_move_mem(bo, new placement)              resv lock held
//     allocate the new resource
//     amdgpu_bo_move_notify: dma_buf_invalidate_mappings (importers drop mappings), zap CPU mappings
//     copy job: waits for every fence of the buffer, copies old -> new, signals its fence
//     dma_resv_add_fence(resv, copy fence, KERNEL); the buffer now *is* at the new place
//     old resource freed when the fence signals (ttm_bo_move_accel_cleanup's ghost object)
//
// Memory pressure: a VRAM allocation that does not fit evicts the least recently used unpinned buffer
// (ttm_mem_evict_first) to GTT and waits for that copy before it retries.

import { bytes, type DmaAddr, PAGE_SHIFT, PAGE_SIZE_N, physAddr } from '../../../hw/addr.js';
import type { CopyResult } from '../../../hw/devices/dma-engine.js';
import type { Gpu } from '../../../hw/devices/gpu.js';
import { WaitQueue, waitOn } from '../../../sim/task.js';
import type { DmaDevice } from '../../dma/device.js';
import { dmaDeviceOf } from '../../dma/dma-context.js';
import { DMA_BIT_MASK } from '../../dma/dma-types.js';
import { dmaMapPhys, dmaMappingError, dmaSetMaskAndCoherent, dmaUnmapPhys } from '../../dma/mapping.js';
import type { DmaBuf } from '../../dma-buf/dma-buf.js';
import { dmaBufWorldOf } from '../../dma-buf/dma-buf-kernel.js';
import { dmaBufInvalidateMappings } from '../../dma-buf/dma-buf-map.js';
import {
  type DmaFence,
  type DmaFenceOps,
  dmaFenceContextAlloc,
  dmaFenceInit,
  dmaFenceSetError,
  dmaFenceSignal,
} from '../../dma-buf/dma-fence.js';
import { dmaFenceWait } from '../../dma-buf/dma-fence-wait.js';
import {
  type DmaResv,
  dmaResvAddFence,
  dmaResvAssertHeld,
  dmaResvInit,
  dmaResvReserveFences,
  dmaResvTrylock,
  dmaResvUnlock,
} from '../../dma-buf/dma-resv.js';
import { dmaResvGetFences } from '../../dma-buf/dma-resv-iter.js';
import { type KTaskOp, kthreadRun } from '../../dma-buf/sched.js';
import { type DmaBufWorld, warn } from '../../dma-buf/world.js';
import { err, type KResult, ok } from '../../errno.js';
import type { Kernel } from '../../kernel.js';
import { allocPages, freePages } from '../../mm/page-alloc.js';
import { note, type Timeline } from '../timeline.js';
import { type VramMgr, vramAlloc, vramFree, vramMgrInit } from './gpu-vram.js';

export type GpuDomain = 'vram' | 'gtt';

/** A placement (`struct ttm_resource`): VRAM at an offset, or contiguous GTT pages mapped for the GPU. */
export interface GpuResource {
  readonly domain: GpuDomain;
  readonly size: bigint;
  /** VRAM: offset into VRAM (-1n for GTT). */
  readonly vramOffset: bigint;
  /** GTT: first pfn (-1 for VRAM). */
  readonly pfn: number;
  /** GTT: the pages' DMA address for the GPU's own engine (its IOVA or bus address). */
  readonly gpuAddr: DmaAddr;
}

/**
 * Memory a move left behind, from the moment the copy finished (what no importer of the buffer may touch
 * any more), until the buffer moves back into it (`untilNs`).
 */
export interface RetiredRange {
  readonly bo: string;
  readonly domain: GpuDomain;
  readonly cpuStart: bigint;
  readonly size: bigint;
  readonly sinceNs: number;
  untilNs: number | null;
}

/** A CPU mapping of a buffer the driver must zap when the buffer moves (ttm_bo_unmap_virtual). */
export interface BoCpuMapping {
  zap(): void;
}

export interface GpuBo {
  readonly name: string;
  readonly gdev: GpuDevice;
  readonly size: bigint;
  readonly resv: DmaResv;
  res: GpuResource;
  pinCount: number;
  readonly preferred: GpuDomain;
  dmabuf: DmaBuf | null;
  readonly cpuMappings: Set<BoCpuMapping>;
  moves: number;
}

export interface GpuDevice {
  readonly k: Kernel;
  readonly world: DmaBufWorld;
  readonly hw: Gpu;
  /** The GPU's own DMA state (it maps GTT pages for its copy engine). */
  readonly dma: DmaDevice;
  readonly name: string;
  readonly vram: VramMgr;
  /** Buffers, least recently used first (the TTM LRU). */
  readonly bos: GpuBo[];
  readonly fenceContext: bigint;
  seqno: bigint;
  readonly retired: RetiredRange[];
  readonly timeline: Timeline | null;
  readonly warnedOnce: Set<string>;
}

const GPU_FENCE_OPS: DmaFenceOps = { get_driver_name: () => 'amdgpu', get_timeline_name: () => 'sdma0' };

/** Probe the driver on a GPU: its DMA state (64-bit), VRAM manager and fence timeline. */
export function gpuDeviceInit(k: Kernel, hw: Gpu, timeline: Timeline | null = null): GpuDevice {
  const dma = dmaDeviceOf(k.dma, hw.fn);
  dmaSetMaskAndCoherent(dma, DMA_BIT_MASK(64));
  const world = dmaBufWorldOf(k);
  return {
    k,
    world,
    hw,
    dma,
    name: `amdgpu ${hw.fn.name}`,
    vram: vramMgrInit(hw.vramBar.size),
    bos: [],
    fenceContext: dmaFenceContextAlloc(world, 1),
    seqno: 0n,
    retired: [],
    timeline,
    warnedOnce: new Set(),
  };
}

/** CPU physical address of a placement (VRAM through the BAR, GTT pages directly). */
export function gpuResourcePhys(gdev: GpuDevice, res: GpuResource): bigint {
  return res.domain === 'vram'
    ? gdev.hw.vramBar.cpuStart + res.vramOffset
    : BigInt(res.pfn) << BigInt(PAGE_SHIFT);
}

/** Allocate a placement without evicting. @returns it; ENOSPC (VRAM full), ENOMEM (no pages or no mapping). */
function allocResource(
  gdev: GpuDevice,
  domain: GpuDomain,
  size: bigint,
  owner: string,
): KResult<GpuResource> {
  if (domain === 'vram') {
    const off = vramAlloc(gdev.vram, size, owner);
    if (off === null) return err('ENOSPC', `VRAM full for ${owner}`);
    return ok({ domain, size, vramOffset: off, pfn: -1, gpuAddr: gdev.hw.vramBusAddr(off) });
  }
  const pages = Number((size + PAGE_SIZE_N - 1n) / PAGE_SIZE_N);
  const pfn = allocPages(gdev.k.mm, pages);
  if (pfn === null) return err('ENOMEM', `no ${pages} free pages for ${owner}`);
  const phys = physAddr(BigInt(pfn) << BigInt(PAGE_SHIFT));
  const addr = dmaMapPhys(gdev.dma, phys, bytes(size), 'bidirectional');
  if (!dmaMappingError(gdev.dma, addr).ok) {
    freePages(gdev.k.mm, pfn, pages);
    return err('ENOMEM', `GTT pages of ${owner} could not be mapped for the GPU`);
  }
  return ok({ domain, size, vramOffset: -1n, pfn, gpuAddr: addr });
}

function freeResource(gdev: GpuDevice, res: GpuResource): void {
  if (res.domain === 'vram') vramFree(gdev.vram, res.vramOffset);
  else {
    dmaUnmapPhys(gdev.dma, res.gpuAddr, bytes(res.size), 'bidirectional');
    freePages(gdev.k.mm, res.pfn, Number((res.size + PAGE_SIZE_N - 1n) / PAGE_SIZE_N));
  }
}

/** Run the copy engine from one placement to another. */
function hwCopy(gdev: GpuDevice, from: GpuResource, to: GpuResource, done: (r: CopyResult) => void): void {
  const len = bytes(from.size);
  if (from.domain === 'vram' && to.domain !== 'vram')
    gdev.hw.copyFromVram(Number(from.vramOffset), to.gpuAddr, len, done);
  else if (to.domain === 'vram' && from.domain !== 'vram')
    gdev.hw.copyToVram(from.gpuAddr, Number(to.vramOffset), len, done);
  else gdev.hw.copy(from.gpuAddr, to.gpuAddr, len, done);
}

/** The copy job: wait for the buffer's earlier work, copy, signal, then release the old placement. */
function startCopyJob(
  bo: GpuBo,
  from: GpuResource,
  to: GpuResource,
  deps: DmaFence[],
  fence: DmaFence,
): void {
  const gdev = bo.gdev;
  kthreadRun(
    gdev.world,
    `${gdev.name} sdma`,
    (function* () {
      for (const d of deps) yield* dmaFenceWait(d, false);
      const wq = new WaitQueue();
      let result: CopyResult | null = null;
      hwCopy(gdev, from, to, (r) => {
        result = r;
        wq.wakeAll();
      });
      while (result === null) yield waitOn(wq);
      const r = result as CopyResult;
      if (!r.ok) dmaFenceSetError(fence, 'EIO');
      dmaFenceSignal(fence);
      freeResource(gdev, from);
      const cpuStart = gpuResourcePhys(gdev, from);
      const now = gdev.world.engine.nowNs;
      const cur = gpuResourcePhys(gdev, bo.res);
      // Already moved back into this memory before this copy ended: it was never left for good.
      const back = cur < cpuStart + from.size && cpuStart < cur + bo.res.size;
      gdev.retired.push({
        bo: bo.name,
        domain: from.domain,
        cpuStart,
        size: from.size,
        sinceNs: now,
        untilNs: back ? now : null,
      });
      note(
        gdev.timeline,
        gdev.name,
        'move done',
        `${bo.name} now in ${to.domain}${r.ok ? '' : ` (copy failed: ${r.reason})`}`,
      );
    })(),
  );
}

/**
 * `ttm_bo_handle_move_mem()` + `amdgpu_bo_move()`: move `bo` to `to`. Resv lock held.
 * @returns the copy fence (already in the buffer's resv as KERNEL); EBUSY for a pinned buffer; ENOSPC
 *   or ENOMEM when the destination cannot be allocated (nothing happened then). May sleep (importers).
 */
export function* ttmBoMove(bo: GpuBo, to: GpuDomain, evict: boolean): KTaskOp<KResult<DmaFence>> {
  const gdev = bo.gdev;
  dmaResvAssertHeld(bo.resv, 'ttm_bo_handle_move_mem');
  if (bo.pinCount > 0) return err('EBUSY', `${bo.name} is pinned`);
  const from = bo.res;
  const nr = allocResource(gdev, to, bo.size, bo.name);
  if (!nr.ok) return nr;
  note(gdev.timeline, gdev.name, evict ? 'evict' : 'move', `${bo.name} ${from.domain} -> ${to}`);
  // amdgpu_bo_move_notify(): importers must drop their mappings before the memory changes hands.
  if (bo.dmabuf && !bo.dmabuf.released) yield* dmaBufInvalidateMappings(bo.dmabuf);
  for (const m of bo.cpuMappings) m.zap();
  const deps = dmaResvGetFences(bo.resv, 'bookkeep');
  const fence = dmaFenceInit(gdev.world, GPU_FENCE_OPS, gdev.fenceContext, ++gdev.seqno);
  dmaResvReserveFences(bo.resv, 1);
  dmaResvAddFence(bo.resv, fence, 'kernel');
  bo.res = nr.value;
  bo.moves++;
  // Moving back into memory it left earlier: that memory is the buffer's again.
  const at = gpuResourcePhys(gdev, nr.value);
  for (const x of gdev.retired)
    if (x.bo === bo.name && x.untilNs === null && at < x.cpuStart + x.size && x.cpuStart < at + nr.value.size)
      x.untilNs = gdev.world.engine.nowNs;
  startCopyJob(bo, from, nr.value, deps.ok ? deps.value : [], fence);
  return ok(fence);
}

/**
 * `ttm_mem_evict_first()`: evict the least recently used unpinned VRAM buffer whose lock is free.
 * @returns the eviction's copy fence (VRAM is free once it signals); ENOSPC when nothing can be evicted.
 */
export function* ttmMemEvictFirst(gdev: GpuDevice, except: GpuBo | null): KTaskOp<KResult<DmaFence>> {
  for (const bo of [...gdev.bos]) {
    if (bo === except || bo.pinCount > 0 || bo.res.domain !== 'vram') continue;
    if (!dmaResvTrylock(bo.resv)) continue;
    const r = yield* ttmBoMove(bo, 'gtt', true);
    dmaResvUnlock(bo.resv);
    if (r.ok) return r;
  }
  return err('ENOSPC', 'no evictable buffer in VRAM');
}

/** Allocate a placement, evicting from VRAM and waiting for the evictions as needed. */
function* allocEvicting(
  gdev: GpuDevice,
  bo: GpuBo | null,
  domain: GpuDomain,
  size: bigint,
  owner: string,
): KTaskOp<KResult<GpuResource>> {
  for (;;) {
    const r = allocResource(gdev, domain, size, owner);
    if (r.ok || r.errno !== 'ENOSPC') return r;
    const f = yield* ttmMemEvictFirst(gdev, bo);
    if (!f.ok) return f;
    yield* dmaFenceWait(f.value, false);
  }
}

/**
 * `amdgpu_bo_create()`: a new buffer in `domain` (VRAM allocations evict under pressure).
 * @returns the buffer; ENOSPC (VRAM holds only pinned buffers), ENOMEM. May sleep.
 */
export function* amdgpuBoCreate(
  gdev: GpuDevice,
  name: string,
  size: bigint,
  domain: GpuDomain,
): KTaskOp<KResult<GpuBo>> {
  const r = yield* allocEvicting(gdev, null, domain, size, name);
  if (!r.ok) return r;
  const bo: GpuBo = {
    name,
    gdev,
    size,
    resv: dmaResvInit(gdev.world),
    res: r.value,
    pinCount: 0,
    preferred: domain,
    dmabuf: null,
    cpuMappings: new Set(),
    moves: 0,
  };
  gdev.bos.push(bo);
  note(gdev.timeline, gdev.name, 'create', `${name}: ${size} bytes in ${domain}`);
  return ok(bo);
}

/**
 * `ttm_bo_validate()`: make sure `bo` is in one of `domains` (in order of preference). Resv lock held.
 * @returns ok (moved if needed: importers were told, the copy fence is in the resv); EINVAL for a
 *   pinned buffer elsewhere; ENOSPC/ENOMEM. May sleep.
 */
export function* ttmBoValidate(bo: GpuBo, domains: readonly GpuDomain[]): KTaskOp<KResult<void>> {
  dmaResvAssertHeld(bo.resv, 'ttm_bo_validate');
  if (domains.includes(bo.res.domain)) return ok(undefined);
  if (bo.pinCount > 0) return err('EINVAL', `${bo.name} is pinned in ${bo.res.domain}`);
  let last: KResult<DmaFence> = err('EINVAL', 'no domain');
  for (const d of domains) {
    for (;;) {
      last = yield* ttmBoMove(bo, d, false);
      if (last.ok || last.errno !== 'ENOSPC' || d !== 'vram') break;
      const f = yield* ttmMemEvictFirst(bo.gdev, bo);
      if (!f.ok) break;
      yield* dmaFenceWait(f.value, false);
    }
    if (last.ok) return ok(undefined);
  }
  return last.ok ? ok(undefined) : last;
}

/** `ttm_bo_pin()`: keep the buffer where it is. Resv lock held. */
export function ttmBoPin(bo: GpuBo): void {
  dmaResvAssertHeld(bo.resv, 'ttm_bo_pin');
  bo.pinCount++;
}

/** `ttm_bo_unpin()`: WARN_ON_ONCE when the buffer is not pinned (an unbalanced unpin). Resv lock held. */
export function ttmBoUnpin(bo: GpuBo): void {
  dmaResvAssertHeld(bo.resv, 'ttm_bo_unpin');
  if (bo.pinCount === 0) {
    if (!bo.gdev.warnedOnce.has('ttm_bo_unpin')) {
      bo.gdev.warnedOnce.add('ttm_bo_unpin');
      warn(bo.gdev.world, 'ttm_bo_unpin', 'WARN_ON_ONCE(!bo->pin_count)');
    }
    return;
  }
  bo.pinCount--;
}

/**
 * `amdgpu_bo_unref()` of the last reference: the placement is freed once the buffer is idle (here: at
 * once; callers free idle buffers). Precondition: not pinned, not exported.
 */
export function amdgpuBoFree(bo: GpuBo): void {
  if (bo.pinCount > 0 || bo.dmabuf !== null)
    throw new Error(`BUG: freeing ${bo.name} while pinned or exported`);
  const i = bo.gdev.bos.indexOf(bo);
  if (i < 0) throw new Error(`BUG: ${bo.name} freed twice`);
  bo.gdev.bos.splice(i, 1);
  freeResource(bo.gdev, bo.res);
  note(bo.gdev.timeline, bo.gdev.name, 'free', bo.name);
}

/** Move `bo` to the end of the LRU (it was just used). */
export function ttmBoMoveToLruTail(bo: GpuBo): void {
  const list = bo.gdev.bos;
  const i = list.indexOf(bo);
  if (i >= 0) list.splice(i, 1);
  list.push(bo);
}
