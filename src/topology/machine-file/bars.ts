// BARs of designed functions and their addresses, allocated as firmware does: each bridge gets a
// non-prefetchable window (32-bit) and a prefetchable window (64-bit), 1 MiB granular and large enough
// for everything below it; each BAR is naturally aligned (its address is a multiple of its size).
//
//   host bridge window ── root-bus BARs and root ports' windows, largest alignment first
//     root port window ── its children's BARs and the windows of bridges below, largest first
//       ...
//
// 64-bit prefetchable BARs go into prefetchable windows, every other memory BAR into the 32-bit
// window. A BAR with an explicit address keeps it, and the windows above it grow to cover it.

import { bytes } from '../../hw/addr.js';
import type { BarHint } from '../../hw/pci.js';
import { type FnNode, fnName, type HbNode, type Problem, walkFunctions } from './nodes.js';
import type { BarDoc } from './schema.js';

const MiB = 1n << 20n;
const GiB = 1n << 30n;
const alignUp = (v: bigint, a: bigint): bigint => ((v + a - 1n) / a) * a;
const alignDown = (v: bigint, a: bigint): bigint => (v / a) * a;
const hex = (v: bigint): string => `0x${v.toString(16)}`;

export interface PlannedBar {
  readonly index: number;
  readonly kind: 'mem32' | 'mem64';
  readonly prefetchable: boolean;
  readonly size: bigint;
  readonly role: 'cmb' | 'vram' | undefined;
  readonly explicit: bigint | undefined;
  /** CPU address, once allocated. */
  cpuStart: bigint | null;
}

type WindowKind = 'np' | 'pf';
const windowOf = (b: PlannedBar): WindowKind => (b.kind === 'mem64' && b.prefetchable ? 'pf' : 'np');

export interface Range {
  base: bigint;
  size: bigint;
}

/** A bridge's two windows (CPU addresses), null when nothing is below. */
export interface BridgeWindows {
  np: Range | null;
  pf: Range | null;
}

/** BARs a function of this class has when the file lists none (what such devices typically have). */
function defaultBars(f: FnNode): BarDoc[] {
  if (f.role !== 'endpoint') return [];
  const base = f.classCode >> 16;
  const sub = (f.classCode >> 8) & 0xff;
  const np = (index: number, size: bigint, bits: 32 | 64 = 32): BarDoc => ({ index, size, bits });
  const pf = (index: number, size: bigint, role?: 'cmb' | 'vram'): BarDoc => ({
    index,
    size,
    bits: 64,
    prefetchable: true,
    role,
  });
  if (base === 0x03)
    return [np(0, 16n * MiB), pf(1, f.vram ?? 256n * MiB, f.vram ? 'vram' : undefined), pf(3, 32n * MiB)];
  if (base === 0x01 && sub === 0x08) return [np(0, 16n * 1024n, 64)];
  if (base === 0x01 && sub === 0x06) return [np(5, 8n * 1024n)];
  if (base === 0x02) return [pf(0, 32n * MiB)];
  if (base === 0x12) return [np(0, 16n * MiB, 64)];
  if (base === 0x06 || (base === 0x08 && sub === 0x06)) return [];
  if (base === 0x08) return [np(0, 16n * 1024n, 64)];
  return [np(0, 16n * 1024n)];
}

/**
 * The BARs of one function: those the file lists (or the class's defaults), plus a CMB or VRAM BAR
 * when `cmb:`/`vram:` asks for one that no listed BAR provides. Numbers are checked against the header.
 */
export function planBars(f: FnNode, problems: Problem[]): PlannedBar[] {
  const docs: { doc: BarDoc; path: readonly (string | number)[] }[] = (f.barDocs ?? defaultBars(f)).map(
    (doc, i) => ({
      doc,
      path: f.barDocs ? [...f.path, 'bars', i] : f.path,
    }),
  );
  for (const [role, size] of [
    ['cmb', f.cmb],
    ['vram', f.vram],
  ] as const) {
    if (size !== undefined && !docs.some((d) => d.doc.role === role)) {
      docs.push({ doc: { size, bits: 64, prefetchable: true, role }, path: [...f.path, role] });
    }
  }
  const slots = f.role === 'endpoint' || f.role === 'host-bridge' ? 6 : 2;
  const taken = new Set<number>();
  const out: PlannedBar[] = [];
  for (const { doc, path } of docs) {
    const bits = doc.bits ?? (doc.prefetchable ? 64 : 32);
    const width = bits === 64 ? 2 : 1;
    let index = doc.index ?? 0;
    if (doc.index === undefined) while (taken.has(index) || (width === 2 && taken.has(index + 1))) index++;
    const where = [...path];
    if (doc.size < 16n || (doc.size & (doc.size - 1n)) !== 0n) {
      problems.push({
        path: where,
        message: `BAR size ${hex(doc.size)} is not a power of two of at least 16 bytes`,
      });
      continue;
    }
    if (bits === 32 && doc.size > 2n * GiB) {
      problems.push({ path: where, message: 'a 32-bit BAR is at most 2 GiB: use bits: 64' });
      continue;
    }
    if (index + width > slots || taken.has(index) || (width === 2 && taken.has(index + 1))) {
      const why =
        index + width > slots ? `this function has BARs 0..${slots - 1}` : 'that BAR register is taken';
      problems.push({ path: where, message: `no room for BAR ${index} (${bits}-bit): ${why}` });
      continue;
    }
    if (doc.address !== undefined && doc.address % doc.size !== 0n) {
      problems.push({
        path: where,
        message: `address ${hex(doc.address)} is not a multiple of the BAR size ${hex(doc.size)}`,
      });
      continue;
    }
    for (let k = 0; k < width; k++) taken.add(index + k);
    out.push({
      index,
      kind: bits === 64 ? 'mem64' : 'mem32',
      prefetchable: doc.prefetchable ?? false,
      size: doc.size,
      role: doc.role,
      explicit: doc.address,
      cpuStart: doc.address ?? null,
    });
  }
  return out.sort((a, b) => a.index - b.index);
}

/** The CMB/VRAM hints of a function's BARs. */
export function barHints(bars: readonly PlannedBar[]): { cmb?: BarHint; vram?: BarHint } {
  const h: { cmb?: BarHint; vram?: BarHint } = {};
  for (const b of bars) if (b.role) h[b.role] = { bar: b.index, size: bytes(b.size) };
  return h;
}

interface Item {
  readonly size: bigint;
  readonly align: bigint;
  readonly place: (base: bigint) => void;
}

/** Lay items out largest alignment first; offsets are then aligned for any base aligned to `align`. */
function pack(items: Item[]): { size: bigint; align: bigint; place: (base: bigint) => void } {
  const sorted = [...items].sort((a, b) => (b.align > a.align ? 1 : b.align < a.align ? -1 : 0));
  let cursor = 0n;
  const offs = sorted.map((it) => {
    const off = alignUp(cursor, it.align);
    cursor = off + it.size;
    return off;
  });
  const align = sorted[0]?.align ?? 1n;
  const place = (base: bigint): void => {
    for (const [i, it] of sorted.entries()) it.place(base + offs[i]!);
  };
  return { size: cursor, align, place };
}

/** Allocation state of one host bridge. */
interface Alloc {
  readonly bars: ReadonlyMap<FnNode, PlannedBar[]>;
  readonly windows: Map<FnNode, BridgeWindows>;
}

/** The items a set of functions (one bus) puts into window kind `w`. */
function itemsOf(a: Alloc, fns: readonly FnNode[], w: WindowKind): Item[] {
  const items: Item[] = [];
  for (const f of fns) {
    for (const b of a.bars.get(f) ?? []) {
      if (b.explicit === undefined && windowOf(b) === w) {
        const place = (base: bigint): void => {
          b.cpuStart = base;
        };
        items.push({ size: b.size, align: b.size, place });
      }
    }
    if (f.below) {
      const p = pack(itemsOf(a, f.children, w));
      if (p.size > 0n) {
        const wins = a.windows.get(f) ?? a.windows.set(f, { np: null, pf: null }).get(f)!;
        const size = alignUp(p.size, MiB);
        const place = (base: bigint): void => {
          wins[w] = { base, size };
          p.place(base);
        };
        items.push({ size, align: p.align > MiB ? p.align : MiB, place });
      }
    }
  }
  return items;
}

/** Default windows: the 32-bit hole [2 GiB, 4 GiB - 64 MiB) shared out, and 512 GiB each above 32 TiB. */
export function defaultWindows(index: number, count: number): { np: Range; pf: Range } {
  const step = alignDown((0xfc000000n - 0x80000000n) / BigInt(Math.max(count, 1)), MiB);
  return {
    np: { base: 0x80000000n + BigInt(index) * step, size: step },
    pf: { base: 0x200000000000n + BigInt(index) * 0x8000000000n, size: 0x8000000000n },
  };
}

/**
 * Give every BAR of a host bridge's functions an address and every bridge its windows.
 * @returns the bridge windows (CPU addresses); problems when a window is too small.
 */
export function allocateHostBridge(
  hb: HbNode,
  bars: ReadonlyMap<FnNode, PlannedBar[]>,
  hbWindows: { np: Range; pf: Range },
  problems: Problem[],
): Map<FnNode, BridgeWindows> {
  const a: Alloc = { bars, windows: new Map() };
  for (const w of ['np', 'pf'] as const) {
    const p = pack(itemsOf(a, hb.functions, w));
    const win = hbWindows[w];
    const base = alignUp(win.base, p.align);
    if (base + p.size > win.base + win.size) {
      const key = w === 'np' ? 'mmio' : 'mmio64';
      problems.push({
        path: hb.path,
        message: `the BARs below need ${hex(p.size)} bytes of ${w === 'np' ? '32-bit' : 'prefetchable 64-bit'} MMIO, more than the window ${hex(win.base)}+${hex(win.size)}: give a larger "${key}"`,
      });
      continue;
    }
    p.place(base);
  }
  coverExplicit(hb, a);
  return a.windows;
}

/** Grow the windows above each BAR with an explicit address so that they route it. */
function coverExplicit(hb: HbNode, a: Alloc): void {
  for (const f of walkFunctions(hb)) {
    for (const b of a.bars.get(f) ?? []) {
      if (b.explicit === undefined) continue;
      const lo = alignDown(b.explicit, MiB);
      const hi = alignUp(b.explicit + b.size, MiB);
      for (let up = f.parent; up; up = up.parent) {
        const wins = a.windows.get(up) ?? a.windows.set(up, { np: null, pf: null }).get(up)!;
        const cur = wins[windowOf(b)];
        const base = cur && cur.base < lo ? cur.base : lo;
        const end = cur && cur.base + cur.size > hi ? cur.base + cur.size : hi;
        wins[windowOf(b)] = { base, size: end - base };
      }
    }
  }
}

/** No two BARs of the machine may overlap, and 32-bit BARs must sit below 4 GiB on the bus. */
export function checkBars(
  all: readonly { f: FnNode; b: PlannedBar; busStart: bigint }[],
  problems: Problem[],
): void {
  const placed = all
    .filter((x) => x.b.cpuStart !== null)
    .sort((x, y) => (x.b.cpuStart! < y.b.cpuStart! ? -1 : 1));
  for (let i = 1; i < placed.length; i++) {
    const p = placed[i - 1]!;
    const c = placed[i]!;
    if (c.b.cpuStart! < p.b.cpuStart! + p.b.size) {
      problems.push({
        path: c.f.path,
        message: `BAR ${c.b.index} of ${fnName(c.f)} overlaps BAR ${p.b.index} of ${fnName(p.f)}`,
      });
    }
  }
  for (const x of all) {
    if (x.busStart < 0n)
      problems.push({ path: x.f.path, message: `BAR ${x.b.index} lies below the host bridge's busOffset` });
    else if (x.b.kind === 'mem32' && x.busStart + x.b.size > 1n << 32n) {
      problems.push({
        path: x.f.path,
        message: `32-bit BAR ${x.b.index} of ${fnName(x.f)} would sit above 4 GiB: give "mmio" below 4 GiB`,
      });
    }
  }
}
