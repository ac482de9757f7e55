// The sync-side checks of the DMA debug ledger (kernel/dma/debug.c `check_sync()` and the
// `debug_dma_sync_*()` hooks), the leak report at device release, and the model's ownership check:
// a CPU access to memory that a mapping has handed to the device and no sync has handed back.

import { hexPad, type PhysAddr } from '../../hw/addr.js';
import { forEachSg, type Scatterlist } from '../lib/scatterlist.js';
import type { DebugDev, DmaDebug, DmaDebugCall, DmaDebugType } from './debug.js';
import { nrMappedEntries, sgRef } from './debug-checks.js';
import { type DebugRef, OWNER_CPU, OWNER_DEVICE, T_SG } from './debug-entries.js';
import { DMA_DIRECTION_VALUE, type DmaDirection } from './dma-types.js';

const DIR_NAME = ['DMA_BIDIRECTIONAL', 'DMA_TO_DEVICE', 'DMA_FROM_DEVICE', 'DMA_NONE'];
const TO_DEVICE = DMA_DIRECTION_VALUE['to-device'];
const FROM_DEVICE = DMA_DIRECTION_VALUE['from-device'];
const BIDIRECTIONAL = DMA_DIRECTION_VALUE.bidirectional;
const h16 = (v: bigint): string => hexPad(v, 16);
const callText = (c: DmaDebugCall, addr: bigint, size: bigint, dir: number): string =>
  `${c}(dev_addr=${h16(addr)}, size=${size}, ${DIR_NAME[dir]})`;

/** `check_sync()`, plus the ownership hand-over the model tracks. */
export function checkSync(
  d: DmaDebug,
  dev: DebugDev,
  ref: DebugRef,
  toCpu: boolean,
  call: DmaDebugCall,
): void {
  const E = d.e;
  const e = E.findContain(ref);
  const c = callText(call, ref.devAddr, ref.size, ref.dir);
  if (e < 0) {
    d.errPrintk(
      'sync-not-allocated',
      dev,
      -1,
      `device driver tries to sync DMA memory it has not allocated [device address=${h16(ref.devAddr)}] [size=${ref.size} bytes]`,
      c,
    );
    return;
  }
  E.owner[e] = toCpu ? OWNER_CPU : OWNER_DEVICE;
  const addr = h16(ref.devAddr);
  const mapped = DIR_NAME[E.dir[e]!];
  const synced = DIR_NAME[ref.dir];
  if (ref.size > E.size[e]!) {
    d.errPrintk(
      'sync-outside-range',
      dev,
      e,
      `device driver syncs DMA memory outside allocated range [device address=${h16(E.devAddr[e]!)}] [allocation size=${E.size[e]} bytes] [sync offset+size=${ref.size}]`,
      c,
    );
  }
  if (E.dir[e] === BIDIRECTIONAL) return;
  if (ref.dir !== E.dir[e]) {
    d.errPrintk(
      'sync-different-direction',
      dev,
      e,
      `device driver syncs DMA memory with different direction [device address=${addr}] [size=${E.size[e]} bytes] [mapped with ${mapped}] [synced with ${synced}]`,
      c,
    );
  }
  if (toCpu && E.dir[e] !== FROM_DEVICE && ref.dir !== TO_DEVICE) {
    d.errPrintk(
      'sync-read-only-for-cpu',
      dev,
      e,
      `device driver syncs device read-only DMA memory for cpu [device address=${addr}] [size=${E.size[e]} bytes] [mapped with ${mapped}] [synced with ${synced}]`,
      c,
    );
  }
  if (!toCpu && E.dir[e] !== TO_DEVICE && ref.dir !== FROM_DEVICE) {
    d.errPrintk(
      'sync-write-only-to-device',
      dev,
      e,
      `device driver syncs device write-only DMA memory to device [device address=${addr}] [size=${E.size[e]} bytes] [mapped with ${mapped}] [synced with ${synced}]`,
      c,
    );
  }
  if (ref.sgCallEnts !== 0 && ref.type === T_SG && ref.sgCallEnts !== E.sgCallEnts[e]) {
    d.errPrintk(
      'sync-different-sg-count',
      dev,
      e,
      `device driver syncs DMA sg list with different entry count [map count=${E.sgCallEnts[e]}] [sync count=${ref.sgCallEnts}]`,
      c,
    );
  }
}

/** `debug_dma_sync_single_for_cpu()` / `_for_device()`. */
export function debugDmaSyncSingle(
  d: DmaDebug,
  dev: DebugDev,
  addr: bigint,
  size: bigint,
  dir: DmaDirection,
  toCpu: boolean,
): void {
  if (!d.enabled) return;
  d.noteDev(dev);
  const type: DmaDebugType = 'single';
  const ref = d.ref(dev, addr, size, type, dir, 0);
  checkSync(d, dev, ref, toCpu, toCpu ? 'dma_sync_single_for_cpu' : 'dma_sync_single_for_device');
}

/** `debug_dma_sync_sg_for_cpu()` / `_for_device()`: the mapped segments only. */
export function debugDmaSyncSg(
  d: DmaDebug,
  dev: DebugDev,
  sgl: Scatterlist,
  nelems: number,
  dir: DmaDirection,
  toCpu: boolean,
): void {
  if (!d.enabled) return;
  d.noteDev(dev);
  let mapped = 0;
  let i = 0;
  for (const s of forEachSg(sgl, nelems)) {
    const ref = sgRef(d, dev, s, dir, nelems);
    if (i === 0) mapped = nrMappedEntries(d, ref);
    if (i >= mapped) break;
    checkSync(d, dev, ref, toCpu, toCpu ? 'dma_sync_sg_for_cpu' : 'dma_sync_sg_for_device');
    i++;
  }
}

/**
 * `dma_debug_device_change(BUS_NOTIFY_UNBOUND_DRIVER)`: a driver released with mappings still in the
 * ledger leaks them; one report names the count and the last entry found in hash order.
 * @returns the number of leaked entries.
 */
export function debugDmaDeviceRelease(d: DmaDebug, dev: DebugDev): number {
  if (!d.enabled) return 0;
  const E = d.e;
  let count = 0;
  let last = -1;
  for (const e of E.inHashOrder()) {
    if (E.dev[e] !== dev.id) continue;
    count++;
    last = e;
  }
  if (count === 0) return 0;
  d.errPrintk(
    'leak-at-release',
    dev,
    last,
    `device driver has pending DMA allocations while released from device [count=${count}]\nOne of leaked entries details: [device address=${h16(E.devAddr[last]!)}] [size=${E.size[last]} bytes] [mapped with ${DIR_NAME[E.dir[last]!]}] [mapped as ${d.typeName(E.type[last]!)}]`,
    'device release',
  );
  return count;
}

/** Does [a, a + al) overlap [b, b + bl)? */
const overlaps = (a: number, al: number, b: number, bl: number): boolean => a < b + bl && b < a + al;

/**
 * The model's ownership check: the CPU reads or writes [phys, phys + len) while a mapping of it
 * belongs to the device (after map or `sync_for_device`, before `sync_for_cpu` or unmap). Reading
 * a to-device mapping is harmless and not reported.
 * @returns true when a violation was reported (the first device-owned mapping found).
 */
export function debugDmaCpuAccess(d: DmaDebug, phys: PhysAddr, len: number, write: boolean): boolean {
  if (!d.enabled || d.e.active === 0) return false;
  const E = d.e;
  const p = Number(phys);
  for (const e of E.inHashOrder()) {
    if (E.owner[e] !== OWNER_DEVICE || (!write && E.dir[e] === TO_DEVICE)) continue;
    let hit = false;
    if (E.type[e] === T_SG) {
      const r = E.group[e] === e ? d.sgRanges.get(e) : undefined;
      for (let i = 0; r !== undefined && i < r.length && !hit; i += 2)
        hit = overlaps(p, len, r[i]!, r[i + 1]!);
    } else hit = overlaps(p, len, Number(E.paddr[e]!), Number(E.size[e]!));
    if (!hit) continue;
    const dev = d.devs[E.dev[e]!];
    if (!dev) throw new Error('BUG: dma-debug entry of an unknown device');
    d.errPrintk(
      'cpu-access-device-owned',
      dev,
      e,
      `cpu ${write ? 'writes' : 'reads'} DMA memory owned by the device without a sync [device address=${h16(E.devAddr[e]!)}] [size=${E.size[e]} bytes] [mapped with ${DIR_NAME[E.dir[e]!]}] [cpu address=${h16(phys)}] [len=${len}]`,
      `cpu ${write ? 'write' : 'read'}(phys=${h16(phys)}, len=${len})`,
    );
    return true;
  }
  return false;
}
