// The checks of the DMA debug ledger, one function per `debug_dma_*()` hook of kernel/dma/debug.c:
// map (records an entry and tracks its first cacheline), mapping_error (marks the entry checked),
// unmap (`check_unmap()`), sync (`check_sync()`), device release (the leak report) and, the model's
// addition, CPU access to memory the device owns.

import { hexPad, PAGE_SHIFT, type PhysAddr } from '../../hw/addr.js';
import { forEachSg, type Scatterlist, sgPhys } from '../lib/scatterlist.js';
import {
  DEBUG_PHYS_TYPE,
  type DebugDev,
  type DmaDebug,
  type DmaDebugCall,
  type DmaDebugType,
} from './debug.js';
import { type DebugRef, MAP_ERR_CHECKED, MAP_ERR_NOT_CHECKED, T_COHERENT, T_SG } from './debug-entries.js';
import {
  DMA_ATTR_DEBUGGING_IGNORE_CACHELINES,
  DMA_ATTR_MMIO,
  DMA_ATTR_SKIP_CPU_SYNC,
  DMA_DIRECTION_VALUE,
  DMA_MAPPING_ERROR,
  type DmaDirection,
} from './dma-types.js';

export { DEBUG_PHYS_TYPE };

const DIR_NAME = ['DMA_BIDIRECTIONAL', 'DMA_TO_DEVICE', 'DMA_FROM_DEVICE', 'DMA_NONE'];
const TO_DEVICE = DMA_DIRECTION_VALUE['to-device'];
/** `ACTIVE_CACHELINE_MAX_OVERLAP`: (1 << RADIX_TREE_MAX_TAGS) - 1. */
export const ACTIVE_CACHELINE_MAX_OVERLAP = 7;
const L1_CACHE_SHIFT = 6n;
const h16 = (v: bigint): string => hexPad(v, 16);
const callText = (c: DmaDebugCall, addr: bigint, size: bigint, dir: number): string =>
  `${c}(dev_addr=${h16(addr)}, size=${size}, ${DIR_NAME[dir]})`;

/** `add_dma_entry()`: hash the entry and track its first cacheline (not for to-device mappings). */
function addDmaEntry(d: DmaDebug, dev: DebugDev, e: number, attrs: number, call: DmaDebugCall): void {
  const E = d.e;
  E.add(e);
  if (E.dir[e] === TO_DEVICE) return;
  const cln = Number(E.paddr[e]! >> L1_CACHE_SHIFT);
  const overlap = d.cachelines.get(cln);
  if (overlap === undefined) {
    d.cachelines.set(cln, 0);
    return;
  }
  const next = overlap + 1;
  if (next > ACTIVE_CACHELINE_MAX_OVERLAP) {
    d.warnOnce(
      'overlap',
      `exceeded ${ACTIVE_CACHELINE_MAX_OVERLAP} overlapping mappings of cacheline ${h16(BigInt(cln))}`,
    );
  } else d.cachelines.set(cln, next);
  const quiet = DMA_ATTR_SKIP_CPU_SYNC | (d.version === '6.1' ? 0 : DMA_ATTR_DEBUGGING_IGNORE_CACHELINES);
  if ((attrs & quiet) === 0) {
    d.errPrintk(
      'overlapping-cacheline',
      dev,
      e,
      "cacheline tracking EEXIST, overlapping mappings aren't supported",
      callText(call, E.devAddr[e]!, E.size[e]!, E.dir[e]!),
    );
  }
}

/** `active_cacheline_remove()` + `dma_entry_free()`. */
function freeEntry(d: DmaDebug, e: number): void {
  const E = d.e;
  if (E.dir[e] !== TO_DEVICE) {
    const cln = Number(E.paddr[e]! >> L1_CACHE_SHIFT);
    const overlap = d.cachelines.get(cln);
    if (overlap !== undefined) {
      if (overlap === 0) d.cachelines.delete(cln);
      else d.cachelines.set(cln, overlap - 1);
    }
  }
  if (E.group[e] === e) d.sgRanges.delete(e);
  E.remove(e);
}

/** `debug_dma_map_phys()` (6.1: `debug_dma_map_page()` / `debug_dma_map_resource()`). */
export function debugDmaMapPhys(
  d: DmaDebug,
  dev: DebugDev,
  phys: PhysAddr,
  size: bigint,
  dir: DmaDirection,
  dmaAddr: bigint,
  attrs: number,
  type: DmaDebugType,
  call: DmaDebugCall,
): void {
  if (!d.enabled || dmaAddr === DMA_MAPPING_ERROR) return;
  d.noteDev(dev);
  const E = d.e;
  const e = E.alloc();
  E.dev[e] = dev.id;
  E.type[e] = type === 'resource' ? 3 : type === 'single' ? 0 : 4;
  E.paddr[e] = phys;
  E.devAddr[e] = dmaAddr;
  E.size[e] = size;
  E.dir[e] = DMA_DIRECTION_VALUE[dir];
  E.mapErr[e] = MAP_ERR_NOT_CHECKED;
  E.attrs[e] = attrs;
  E.call[e] = d.callId(call);
  E.timeNs[e] = d.now();
  if ((attrs & DMA_ATTR_MMIO) !== 0 && d.version !== '6.1' && d.isRam?.(phys)) {
    d.errPrintk('mmio-on-ram', dev, e, `dma_map_resource called for RAM address ${h16(phys)}`, call);
  }
  addDmaEntry(d, dev, e, attrs, call);
}

/** `debug_dma_mapping_error()`: the first unchecked exact match becomes checked. */
export function debugDmaMappingError(d: DmaDebug, dev: DebugDev, dmaAddr: bigint): void {
  if (!d.enabled) return;
  const E = d.e;
  const b = Number((dmaAddr >> 13n) & 16383n);
  for (let e = E.heads[b]!; e >= 0; e = E.next[e]!) {
    if (E.devAddr[e] !== dmaAddr || E.dev[e] !== dev.id) continue;
    if (E.mapErr[e] === MAP_ERR_NOT_CHECKED) {
      E.mapErr[e] = MAP_ERR_CHECKED;
      break;
    }
  }
}

/** `check_unmap()`: find the entry, report every difference, free it. */
export function checkUnmap(d: DmaDebug, dev: DebugDev, ref: DebugRef, call: DmaDebugCall): void {
  const E = d.e;
  const e = E.findExact(ref);
  const c = callText(call, ref.devAddr, ref.size, ref.dir);
  if (e < 0) {
    if (ref.devAddr === DMA_MAPPING_ERROR) {
      d.errPrintk(
        'free-invalid-address',
        dev,
        -1,
        'device driver tries to free an invalid DMA memory address',
        c,
      );
    } else {
      d.errPrintk(
        'free-not-allocated',
        dev,
        -1,
        `device driver tries to free DMA memory it has not allocated [device address=${h16(ref.devAddr)}] [size=${ref.size} bytes]`,
        c,
      );
    }
    return;
  }
  const addr = h16(ref.devAddr);
  if (ref.size !== E.size[e]) {
    d.errPrintk(
      'free-different-size',
      dev,
      e,
      `device driver frees DMA memory with different size [device address=${addr}] [map size=${E.size[e]} bytes] [unmap size=${ref.size} bytes]`,
      c,
    );
  }
  if (ref.type !== E.type[e]) {
    d.errPrintk(
      'free-wrong-function',
      dev,
      e,
      `device driver frees DMA memory with wrong function [device address=${addr}] [size=${ref.size} bytes] [mapped as ${d.typeName(E.type[e]!)}] [unmapped as ${d.typeName(ref.type)}]`,
      c,
    );
  } else if (E.type[e] === T_COHERENT) {
    // Coherent allocations are not modelled; the CPU address check has nothing to compare.
  }
  if (ref.sgCallEnts !== 0 && ref.type === T_SG && ref.sgCallEnts !== E.sgCallEnts[e]) {
    d.errPrintk(
      'free-different-sg-count',
      dev,
      e,
      `device driver frees DMA sg list with different entry count [map count=${E.sgCallEnts[e]}] [unmap count=${ref.sgCallEnts}]`,
      c,
    );
  }
  if (ref.dir !== E.dir[e]) {
    d.errPrintk(
      'free-different-direction',
      dev,
      e,
      `device driver frees DMA memory with different direction [device address=${addr}] [size=${ref.size} bytes] [mapped with ${DIR_NAME[E.dir[e]!]}] [unmapped with ${DIR_NAME[ref.dir]}]`,
      c,
    );
  }
  if (E.mapErr[e] === MAP_ERR_NOT_CHECKED) {
    d.errPrintk(
      'map-error-not-checked',
      dev,
      e,
      `device driver failed to check map error[device address=${addr}] [size=${ref.size} bytes] [mapped as ${d.typeName(E.type[e]!)}]`,
      c,
    );
  }
  freeEntry(d, e);
}

/** `debug_dma_unmap_phys()` (6.1: `debug_dma_unmap_page()` / `debug_dma_unmap_resource()`). */
export function debugDmaUnmapPhys(
  d: DmaDebug,
  dev: DebugDev,
  addr: bigint,
  size: bigint,
  dir: DmaDirection,
  type: DmaDebugType,
  call: DmaDebugCall,
): void {
  if (!d.enabled) return;
  d.noteDev(dev);
  checkUnmap(d, dev, d.ref(dev, addr, size, type, dir), call);
}

/** `debug_dma_map_sg()`: one entry per mapped DMA segment, paired with the CPU entry at its index. */
export function debugDmaMapSg(
  d: DmaDebug,
  dev: DebugDev,
  sgl: Scatterlist,
  nents: number,
  mappedEnts: number,
  dir: DmaDirection,
  attrs: number,
  call: DmaDebugCall,
): void {
  if (!d.enabled) return;
  d.noteDev(dev);
  const E = d.e;
  const ranges: number[] = [];
  for (const s of forEachSg(sgl, nents)) if (s.pfn !== null) ranges.push(Number(sgPhys(s)), s.length);
  let group = -1;
  for (const s of forEachSg(sgl, mappedEnts)) {
    const e = E.alloc();
    if (group < 0) {
      group = e;
      d.sgRanges.set(e, Float64Array.from(ranges));
    }
    E.group[e] = group;
    E.dev[e] = dev.id;
    E.type[e] = T_SG;
    E.paddr[e] = s.pfn === null ? 0n : (BigInt(s.pfn) << BigInt(PAGE_SHIFT)) + BigInt(s.offset);
    E.size[e] = BigInt(s.dmaLength);
    E.devAddr[e] = s.dmaAddress;
    E.dir[e] = DMA_DIRECTION_VALUE[dir];
    E.sgCallEnts[e] = nents;
    E.sgMappedEnts[e] = mappedEnts;
    E.attrs[e] = attrs;
    E.call[e] = d.callId(call);
    E.timeNs[e] = d.now();
    addDmaEntry(d, dev, e, attrs, call);
  }
}

export const sgRef = (
  d: DmaDebug,
  dev: DebugDev,
  s: Scatterlist,
  dir: DmaDirection,
  nelems: number,
): DebugRef => d.ref(dev, s.dmaAddress, BigInt(s.dmaLength), 'sg', dir, nelems);

/** `get_nr_mapped_entries()`. */
export function nrMappedEntries(d: DmaDebug, ref: DebugRef): number {
  const e = d.e.findExact(ref);
  return e >= 0 ? d.e.sgMappedEnts[e]! : 0;
}

/** `debug_dma_unmap_sg()`: check each mapped segment (count taken from the first one found). */
export function debugDmaUnmapSg(
  d: DmaDebug,
  dev: DebugDev,
  sgl: Scatterlist,
  nelems: number,
  dir: DmaDirection,
  call: DmaDebugCall,
): void {
  if (!d.enabled) return;
  d.noteDev(dev);
  let mapped = 0;
  let i = 0;
  for (const s of forEachSg(sgl, nelems)) {
    const ref = sgRef(d, dev, s, dir, nelems);
    if (mapped !== 0 && i >= mapped) break;
    if (i === 0) mapped = nrMappedEntries(d, ref);
    checkUnmap(d, dev, ref, call);
    i++;
  }
}
