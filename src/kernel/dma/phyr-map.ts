// Mapping a phyr range list for DMA: the CPU side is any `PhyrList` layout (read through its cursor
// only), the DMA side a `DmaRangeList`. This is the "bring your own layout" use of the two-step IOVA
// API that mainline chose instead of a phyr type (reference §6), done the way block/blk-mq-dma.c maps a
// request: one IOVA allocation for the whole list, one link per range, one sync.
//
//   ranges:   [RAM 4K][RAM 8K][P2P bus-addr 64K][RAM 4K]
//   IOVA:     [============ 16K ============]            one contiguous DMA range for the RAM
//   bus:                         [== 64K ==]             P2P BUS_ADDR ranges get bus addresses, no IOVA
//   result:   DmaRangeList [{iova, 16K}, {bus, 64K}]
//
// Without an IOVA API (dma-direct), or when the ranges break the IOVA API's alignment rules (only the
// first linked range may start, and only the last may end, inside a granule), each range is mapped on
// its own with `dma_map_phys()`. A range of P2P memory the device cannot reach fails the whole call
// with EREMOTEIO before anything is mapped.

import { type Bytes, bytes, type DmaAddr, dmaAddr, type PhysAddr } from '../../hw/addr.js';
import { err, type KResult, ok } from '../errno.js';
import { DmaRangeList, type PhyrList } from '../lib/phyr.js';
import type { DmaDevice } from './device.js';
import type { DmaDirection } from './dma-types.js';
import { dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, newDmaIovaState } from './iova-api.js';
import type { DmaIovaState } from './map-ops.js';
import { dmaMapPhys, dmaMappingError, dmaUnmapPhys } from './mapping.js';
import { newP2pdmaMapState, pciP2pdmaBusAddrMap, pciP2pdmaState } from './p2p-state.js';

/** A mapped phyr list: what the device is given, and what unmapping needs. */
export interface PhyrDmaMapping {
  readonly dma: DmaRangeList;
  /** The IOVA state when the list went through the two-step API, else null. */
  readonly state: DmaIovaState | null;
  /** Bytes linked into the IOVA range (what `dma_iova_destroy()` unlinks). */
  readonly linkedLen: Bytes;
  /** Streaming mappings to undo one by one (dma-direct path): DMA address and length pairs. */
  readonly singles: readonly { readonly addr: DmaAddr; readonly len: Bytes }[];
  readonly dir: DmaDirection;
  readonly attrs: number;
}

interface Plan {
  readonly phys: PhysAddr[];
  readonly len: bigint[];
  /** Bus address for BUS_ADDR P2P ranges, null for ranges to map. */
  readonly bus: (bigint | null)[];
  mapBytes: bigint;
  aligned: boolean;
}

/** Classify every range; EREMOTEIO for P2P memory the device cannot reach. */
function plan(dev: DmaDevice, list: PhyrList): KResult<Plan> {
  const st = newP2pdmaMapState();
  const p: Plan = { phys: [], len: [], bus: [], mapBytes: 0n, aligned: true };
  for (const c = list.cursor(); !c.done; c.advance()) {
    const type = pciP2pdmaState(st, dev, Number(c.phys >> 12n));
    if (type !== 'none' && type !== 'bus-addr' && type !== 'thru-host-bridge')
      return err('EREMOTEIO', `range at ${c.phys.toString(16)}: P2PDMA memory the device cannot reach`);
    p.phys.push(c.phys);
    p.len.push(c.len);
    p.bus.push(type === 'bus-addr' ? pciP2pdmaBusAddrMap(st.mem!, c.phys) : null);
    if (type !== 'bus-addr') p.mapBytes += c.len;
  }
  const g = dev.ops.iova ? BigInt(dev.ops.iova.granule(dev) - 1) : 0n;
  const mapped = p.phys.map((_, i) => i).filter((i) => p.bus[i] === null);
  mapped.forEach((i, k) => {
    if (k > 0 && (p.phys[i]! & g) !== 0n) p.aligned = false;
    if (k < mapped.length - 1 && ((p.phys[i]! + p.len[i]!) & g) !== 0n) p.aligned = false;
  });
  return ok(p);
}

function push(out: DmaRangeList, addr: bigint, len: bigint): void {
  const n = out.count;
  if (n > 0 && out.dmaAt(n - 1) + out.lenAt(n - 1) === addr) out.extendLast(bytes(len));
  else out.push(dmaAddr(addr), bytes(len));
}

function mapIova(
  dev: DmaDevice,
  p: Plan,
  dir: DmaDirection,
  attrs: number,
  state: DmaIovaState,
): KResult<PhyrDmaMapping> {
  const out = new DmaRangeList();
  let off = 0n;
  for (let i = 0; i < p.phys.length; i++) {
    const bus = p.bus[i]!;
    if (bus !== null) {
      push(out, bus, p.len[i]!);
      continue;
    }
    const r = dmaIovaLink(dev, state, p.phys[i]!, bytes(off), bytes(p.len[i]!), dir, attrs);
    if (!r.ok) {
      dmaIovaDestroy(dev, state, bytes(off), dir, attrs);
      return r;
    }
    push(out, state.addr + off, p.len[i]!);
    off += p.len[i]!;
  }
  const s = dmaIovaSync(dev, state, bytes(0), bytes(off));
  if (!s.ok) {
    dmaIovaDestroy(dev, state, bytes(off), dir, attrs);
    return s;
  }
  out.trim();
  return ok({ dma: out, state, linkedLen: bytes(off), singles: [], dir, attrs });
}

function mapStreaming(dev: DmaDevice, p: Plan, dir: DmaDirection, attrs: number): KResult<PhyrDmaMapping> {
  const out = new DmaRangeList();
  const singles: { addr: DmaAddr; len: Bytes }[] = [];
  for (let i = 0; i < p.phys.length; i++) {
    const bus = p.bus[i]!;
    if (bus !== null) {
      push(out, bus, p.len[i]!);
      continue;
    }
    const len = bytes(p.len[i]!);
    const addr = dmaMapPhys(dev, p.phys[i]!, len, dir, attrs);
    const chk = dmaMappingError(dev, addr);
    if (!chk.ok) {
      for (const s of singles) dmaUnmapPhys(dev, s.addr, s.len, dir, attrs);
      return err(chk.errno, `range ${i} could not be mapped`);
    }
    singles.push({ addr, len });
    push(out, addr, len);
  }
  out.trim();
  return ok({ dma: out, state: null, linkedLen: bytes(0), singles, dir, attrs });
}

/**
 * Map a phyr list for DMA by `dev`: through one IOVA range when the device has the IOVA API and the
 * ranges meet its alignment rules, else range by range.
 * @returns the mapping; EREMOTEIO (P2P memory the device cannot reach; nothing mapped), ENOMEM (a
 *   range could not be mapped, or no IOVA space), or a `dma_iova_link()`/`dma_iova_sync()` errno.
 *   On failure nothing stays mapped.
 */
export function dmaMapPhyr(
  dev: DmaDevice,
  list: PhyrList,
  dir: DmaDirection,
  attrs = 0,
): KResult<PhyrDmaMapping> {
  const pr = plan(dev, list);
  if (!pr.ok) return pr;
  const p = pr.value;
  const first = p.bus.indexOf(null);
  if (first >= 0 && p.aligned && dev.ops.iova !== null) {
    const state = newDmaIovaState();
    if (dmaIovaTryAlloc(dev, state, p.phys[first]!, bytes(p.mapBytes)))
      return mapIova(dev, p, dir, attrs, state);
  }
  return mapStreaming(dev, p, dir, attrs);
}

/** Undo `dmaMapPhyr`. */
export function dmaUnmapPhyr(dev: DmaDevice, m: PhyrDmaMapping): void {
  if (m.state !== null) dmaIovaDestroy(dev, m.state, m.linkedLen, m.dir, m.attrs);
  for (const s of m.singles) dmaUnmapPhys(dev, s.addr, s.len, m.dir, m.attrs);
}
