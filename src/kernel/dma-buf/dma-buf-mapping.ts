// The MMIO export helpers (drivers/dma-buf/dma-buf-mapping.c, 6.19+): an exporter of device memory
// without struct pages (a VFIO BAR) describes it as physical ranges and turns them into a DMA-only
// sg_table for the importing device, choosing the path from the P2P map type:
//
//   pci_p2pdma_map_type(provider, attach->dev)
//     BUS_ADDR          -> entries at paddr + bus_offset (peer-to-peer through a switch, no IOVA)
//     THRU_HOST_BRIDGE  -> dma_iova_try_alloc(size): one IOVA range, dma_iova_link each range with
//                          DMA_ATTR_MMIO, dma_iova_sync, one entry at state->addr
//                       -> no IOVA API (dma-direct): dma_map_phys(DMA_ATTR_MMIO) per range
//     anything else     -> -EINVAL
//
// Entries have no page (sg_set_page(sg, NULL, 0, 0)) and orig_nents is 0: importers must use only the
// DMA side. Each entry holds at most MAX_SG_ENT_SZ = ALIGN_DOWN(UINT_MAX, PAGE_SIZE) bytes (the
// reference digest says UINT_MAX; the source aligns it down, the source wins).
// Two behaviours of the 6.19 code are kept as they are: every range is linked at IOVA offset 0 (so a
// multi-range IOVA export overlaps itself; VFIO's iommufd path needs one range), and when the first
// link fails, or the table allocation fails, the IOVA from dma_iova_try_alloc() is never freed.

import {
  type Bytes,
  bytes,
  type DmaAddr,
  dmaAddr,
  PAGE_SIZE_N,
  type PhysAddr,
  physAddr,
} from '../../hw/addr.js';
import type { DmaDevice } from '../dma/device.js';
import type { DmaP2pProvider } from '../dma/dma-context.js';
import { DMA_ATTR_MMIO, type DmaDirection } from '../dma/dma-types.js';
import {
  type DmaIovaState,
  dmaIovaDestroy,
  dmaIovaLink,
  dmaIovaSync,
  dmaIovaTryAlloc,
  dmaUseIova,
  newDmaIovaState,
} from '../dma/iova-api.js';
import { dmaMapPhys, dmaMappingError, dmaUnmapPhys } from '../dma/mapping.js';
import { pciP2pdmaBusAddrMap } from '../dma/p2p-state.js';
import { type Err, err, type KResult, ok } from '../errno.js';
import {
  forEachSgtableDmaSg,
  newSgTable,
  type Scatterlist,
  type SgTable,
  sgAllocTable,
  sgFreeTable,
  sgNext,
  sgSetPage,
  UINT_MAX,
} from '../lib/scatterlist.js';
import type { DmaBufAttachment } from './dma-buf.js';
import { attachArg, callText, DMA_DIR_NAME } from './dma-buf-call.js';
import { dmaResvAssertHeld } from './dma-resv.js';
import { warnOn, warnOnOnce, withCall } from './world.js';

/** `struct dma_buf_phys_vec` (renamed `struct phys_vec` later): one physical range. */
export interface PhysVec {
  readonly paddr: PhysAddr;
  readonly len: Bytes;
}

/** `MAX_SG_ENT_SZ`: the largest length one entry carries (the u32 length, page aligned). */
export const MAX_SG_ENT_SZ = BigInt(UINT_MAX) & ~(PAGE_SIZE_N - 1n);

/** `struct dma_buf_dma`: what free_sgt needs back (the kernel finds it with container_of). */
interface DmaBufDma {
  readonly dev: DmaDevice;
  readonly state: DmaIovaState | null;
  readonly size: Bytes;
}

const dmaOfSgt = new WeakMap<SgTable, DmaBufDma>();

/** Is an attachment's device one the DMA layer knows (a PCI function with DMA state)? */
export const isDmaDevice = (d: unknown): d is DmaDevice =>
  typeof d === 'object' && d !== null && 'ctx' in d && 'fn' in d && 'ops' in d;

/** `fill_sg_entry()`: `length` bytes from `addr` as page-less entries of at most MAX_SG_ENT_SZ. */
function fillSgEntry(sgl: Scatterlist | null, length: bigint, addr: bigint): Scatterlist | null {
  let sg = sgl;
  let left = length;
  let a = addr;
  while (left > 0n) {
    const len = left < MAX_SG_ENT_SZ ? left : MAX_SG_ENT_SZ;
    left -= len;
    if (sg === null) throw new Error('BUG: fill_sg_entry ran past the end of the table');
    sgSetPage(sg, null, 0, 0);
    sg.dmaAddress = dmaAddr(a);
    sg.dmaLength = Number(len);
    a += len;
    sg = sgNext(sg);
  }
  return sg;
}

const divRoundUp = (n: bigint, d: bigint): bigint => (n + d - 1n) / d;

/** `calc_sg_nents()`: entries for the ranges, or for one IOVA range of `size`; 0 on u32 overflow. */
function calcSgNents(state: DmaIovaState | null, ranges: readonly PhysVec[], size: bigint): number {
  if (state === null || !dmaUseIova(state)) {
    let n = 0n;
    for (const r of ranges) n += divRoundUp(r.len, MAX_SG_ENT_SZ);
    return n > BigInt(UINT_MAX) ? 0 : Number(n);
  }
  return Number(divRoundUp(size, MAX_SG_ENT_SZ));
}

/** The unwind of a failed map (the kernel's err_unmap_dma label). */
function unwind(
  dev: DmaDevice,
  d: DmaBufDma,
  sgt: SgTable,
  mapped: bigint,
  i: number,
  dir: DmaDirection,
): void {
  if (i === 0 || d.state === null) return;
  if (dmaUseIova(d.state)) dmaIovaDestroy(dev, d.state, bytes(mapped), dir, DMA_ATTR_MMIO);
  // Every entry of the table, mapped or still zero, as the 6.19 code does.
  else
    for (const sg of forEachSgtableDmaSg(sgt))
      dmaUnmapPhys(dev, sg.dmaAddress, bytes(sg.dmaLength), dir, DMA_ATTR_MMIO);
}

/** Map the ranges one by one (bus addresses, IOVA links, or dma_map_phys). @returns the bytes linked. */
function mapRanges(
  dev: DmaDevice,
  d: DmaBufDma,
  provider: DmaP2pProvider,
  ranges: readonly PhysVec[],
  sgt: SgTable,
  dir: DmaDirection,
): KResult<{ mapped: bigint; sgl: Scatterlist | null }> {
  let sgl = sgt.sgl;
  let mapped = 0n;
  for (let i = 0; i < ranges.length; i++) {
    const r = ranges[i]!;
    let addr: DmaAddr = dmaAddr(0);
    if (d.state === null) addr = dmaAddr(pciP2pdmaBusAddrMap(provider, r.paddr));
    else if (dmaUseIova(d.state)) {
      const l = dmaIovaLink(dev, d.state, r.paddr, bytes(0), r.len, dir, DMA_ATTR_MMIO);
      if (!l.ok) return unwound(dev, d, sgt, mapped, i, dir, l);
      mapped += r.len;
    } else {
      addr = dmaMapPhys(dev, r.paddr, r.len, dir, DMA_ATTR_MMIO);
      const e = dmaMappingError(dev, addr);
      if (!e.ok) return unwound(dev, d, sgt, mapped, i, dir, e);
    }
    if (d.state === null || !dmaUseIova(d.state)) sgl = fillSgEntry(sgl, r.len, addr);
  }
  return ok({ mapped, sgl });
}

function unwound(
  dev: DmaDevice,
  d: DmaBufDma,
  sgt: SgTable,
  mapped: bigint,
  i: number,
  dir: DmaDirection,
  e: Err,
): Err {
  unwind(dev, d, sgt, mapped, i, dir);
  sgFreeTable(sgt);
  return err(e.errno, e.detail);
}

/**
 * `dma_buf_phys_vec_to_sgt()`: a DMA-only sg_table for `attach->dev` covering `ranges` (MMIO of
 * `provider`'s device), `size` bytes in all. Exporter side, resv lock held (lockdep-asserted).
 * @returns the table (page-aligned DMA addresses and lengths when the ranges are page aligned);
 *   EINVAL with a WARN for a missing provider; EINVAL when the map type is neither BUS_ADDR nor
 *   THRU_HOST_BRIDGE, or no range was given (sg_alloc_table of 0 entries); the link errors of
 *   dma_iova_link (EIO, EPERM, ENOMEM, the IOMMU's map errnos), ENOMEM from dma_map_phys, or the
 *   IOTLB sync error.
 */
export function dmaBufPhysVecToSgt(
  attach: DmaBufAttachment,
  provider: DmaP2pProvider | null,
  ranges: readonly PhysVec[],
  size: Bytes,
  dir: DmaDirection,
): KResult<SgTable> {
  const world = attach.dmabuf.world;
  const call = callText('dma_buf_phys_vec_to_sgt', {
    attach: attachArg(attach),
    nr_ranges: ranges.length,
    size,
    dir: DMA_DIR_NAME[dir],
  });
  return withCall(world, call, () => {
    dmaResvAssertHeld(attach.dmabuf.resv, 'dma_buf_phys_vec_to_sgt');
    // This function is for MMIO only: without a provider there is nothing to route.
    if (
      warnOn(world, provider === null, 'dma_buf_phys_vec_to_sgt', '!attach || !attach->dmabuf || !provider')
    )
      return err('EINVAL', 'no P2P provider: dma_buf_phys_vec_to_sgt() is for MMIO only');
    return physVecToSgt(attach, provider!, ranges, size, dir);
  });
}

function physVecToSgt(
  attach: DmaBufAttachment,
  provider: DmaP2pProvider,
  ranges: readonly PhysVec[],
  size: Bytes,
  dir: DmaDirection,
): KResult<SgTable> {
  const dev = attach.dev;
  if (!isDmaDevice(dev)) throw new Error(`BUG: dma_buf_phys_vec_to_sgt: ${dev.name} has no DMA state`);
  let state: DmaIovaState | null = null;
  const type = dev.ctx.p2p.mapType(provider, dev.fn);
  if (type === 'thru-host-bridge') {
    state = newDmaIovaState();
    dmaIovaTryAlloc(dev, state, physAddr(0), size);
  } else if (type !== 'bus-addr') return err('EINVAL', `P2P map type ${type} for ${dev.name}`);
  const d: DmaBufDma = { dev, state, size };
  const sgt = newSgTable();
  const a = sgAllocTable(sgt, calcSgNents(state, ranges, size), { version: dev.ctx.version });
  if (!a.ok) return a;
  const m = mapRanges(dev, d, provider, ranges, sgt, dir);
  if (!m.ok) return m;
  let sgl = m.value.sgl;
  if (state !== null && dmaUseIova(state)) {
    if (m.value.mapped !== size) warnOnce(attach, 'mapped_len != size');
    const s = dmaIovaSync(dev, state, bytes(0), bytes(m.value.mapped));
    if (!s.ok) return unwound(dev, d, sgt, m.value.mapped, ranges.length, dir, s);
    sgl = fillSgEntry(sgl, m.value.mapped, state.addr);
  }
  // No CPU list: importers must walk nents only.
  sgt.origNents = 0;
  if (sgl !== null) warnOnce(attach, 'sgl');
  dmaOfSgt.set(sgt, d);
  return ok(sgt);
}

/** WARN_ON_ONCE(cond) of dma_buf_phys_vec_to_sgt. */
function warnOnce(attach: DmaBufAttachment, cond: string): void {
  warnOnOnce(attach.dmabuf.world, true, 'dma_buf_phys_vec_to_sgt', cond);
}

/**
 * `dma_buf_free_sgt()`: undo dmaBufPhysVecToSgt: destroy the IOVA range, or dma_unmap_phys each entry
 * of a dma-direct THRU_HOST_BRIDGE mapping; bus-address tables need nothing. Resv lock held.
 * Precondition: `sgt` came from dmaBufPhysVecToSgt (the kernel would read garbage; the model throws).
 */
export function dmaBufFreeSgt(attach: DmaBufAttachment, sgt: SgTable, dir: DmaDirection): void {
  const world = attach.dmabuf.world;
  withCall(world, callText('dma_buf_free_sgt', { attach: attachArg(attach), dir: DMA_DIR_NAME[dir] }), () => {
    const d = dmaOfSgt.get(sgt);
    if (!d) throw new Error('BUG: dma_buf_free_sgt on a table dma_buf_phys_vec_to_sgt did not make');
    dmaResvAssertHeld(attach.dmabuf.resv, 'dma_buf_free_sgt');
    if (d.state !== null && dmaUseIova(d.state)) dmaIovaDestroy(d.dev, d.state, d.size, dir, DMA_ATTR_MMIO);
    else if (d.state !== null)
      for (const sg of forEachSgtableDmaSg(sgt))
        dmaUnmapPhys(d.dev, sg.dmaAddress, bytes(sg.dmaLength), dir, DMA_ATTR_MMIO);
    dmaOfSgt.delete(sgt);
    sgFreeTable(sgt);
  });
}
