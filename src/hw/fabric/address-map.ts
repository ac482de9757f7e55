// Who answers an address: system RAM (per NUMA node) and device BARs, each BAR backed either by plain
// memory (VRAM, a CMB, a BAR no device model claims) or by a device's register handler (NVMe BAR0).
// Mirrors no kernel file: it is the completer side of the fabric, the hardware behind /proc/iomem.
//
//   bus address  --barByBus-->  BAR (function, index)  --backing-->  memory | registers
//   CPU physical --barByCpu-->  BAR                                              (after the IOMMU)
//   CPU physical --ramAt---->   RAM region of node n
//
// BARs are looked up in both address spaces because a request below the root complex carries a bus
// address, while the IOMMU's output is a CPU physical address. They differ when the host bridge
// offsets its window (pci_bus_address != pci_resource_start).

import { type Bytes, bytes, hex, type PhysAddr, physAddr } from '../addr.js';
import { PhysMemoryMap } from '../memory/phys-memory-map.js';
import { SparseMemory } from '../memory/sparse-memory.js';
import type { PciBar, PciFunction } from '../pci.js';

/** A device's register file behind a BAR: accesses are side effects, not storage. */
export interface MmioHandler {
  readonly name: string;
  read(offset: number, dst: Uint8Array): void;
  write(offset: number, src: Uint8Array): void;
}

export type BarBacking =
  | { readonly kind: 'memory'; readonly mem: SparseMemory }
  | { readonly kind: 'mmio'; readonly mmio: MmioHandler };

export interface BarEntry {
  readonly fn: PciFunction;
  readonly bar: PciBar;
  readonly busBase: bigint;
  readonly busEnd: bigint;
  readonly cpuBase: bigint;
  readonly cpuEnd: bigint;
  backing: BarBacking;
}

export interface RamRegion {
  readonly node: number;
  readonly base: PhysAddr;
  readonly end: bigint;
  readonly mem: SparseMemory;
}

const byKey =
  (k: 'busBase' | 'cpuBase') =>
  (a: BarEntry, b: BarEntry): number =>
    a[k] < b[k] ? -1 : a[k] > b[k] ? 1 : 0;

/** Last entry whose base is <= addr, if addr is below its end. */
function findIn<T>(
  list: readonly T[],
  addr: bigint,
  base: (t: T) => bigint,
  end: (t: T) => bigint,
): T | null {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (base(list[mid]!) <= addr) lo = mid + 1;
    else hi = mid;
  }
  const e = list[lo - 1];
  return e && addr < end(e) ? e : null;
}

export class AddressMap {
  /** The CPU's view: RAM and memory-backed BARs (register BARs are reached through cpuRead/cpuWrite). */
  readonly cpu = new PhysMemoryMap();
  readonly ram: RamRegion[] = [];
  private readonly barsBus: BarEntry[] = [];
  private readonly barsCpu: BarEntry[] = [];
  private readonly barIndex = new Map<string, BarEntry>();
  /** BARs left out of the map, and why (unassigned, or overlapping an earlier one). */
  readonly notes: string[] = [];

  /**
   * Memory BARs of every function, each backed by sparse memory until a device claims it. An
   * unassigned BAR (address 0, as the kernel leaves one it could not place) or one overlapping a BAR
   * already mapped is left out and noted: nothing answers there.
   */
  addBars(fns: readonly PciFunction[]): void {
    for (const fn of fns)
      for (const bar of fn.bars) {
        if (bar.kind === 'io' || bar.size === 0n) continue;
        if (bar.cpuStart === 0n) {
          this.notes.push(`${fn.name} BAR${bar.index}: unassigned (address 0), not decoded`);
          continue;
        }
        const clash = this.barsCpu.find(
          (o) => o.cpuBase < bar.cpuStart + bar.size && o.cpuEnd > bar.cpuStart,
        );
        if (clash) {
          this.notes.push(
            `${fn.name} BAR${bar.index}: overlaps ${clash.fn.name} BAR${clash.bar.index}, not decoded`,
          );
          continue;
        }
        const mem = new SparseMemory(`${fn.name} BAR${bar.index}`, 'bar', bar.size);
        const e: BarEntry = {
          fn,
          bar,
          busBase: bar.busStart,
          busEnd: bar.busStart + bar.size,
          cpuBase: bar.cpuStart,
          cpuEnd: bar.cpuStart + bar.size,
          backing: { kind: 'memory', mem },
        };
        this.cpu.add(bar.cpuStart, mem);
        this.barsBus.push(e);
        this.barsCpu.push(e);
        this.barIndex.set(`${fn.name}/${bar.index}`, e);
      }
    this.barsBus.sort(byKey('busBase'));
    this.barsCpu.sort(byKey('cpuBase'));
  }

  /**
   * Place `size` bytes of RAM for `node` at the first 1 GiB-aligned address at or above `from` that
   * overlaps no BAR and no other RAM.
   * @returns the region (its end is where the next placement may start).
   */
  addRam(node: number, from: bigint, size: Bytes, name = `node${node} RAM`): RamRegion {
    const align = 1n << 30n;
    let base = from;
    for (;;) {
      const end = base + size;
      const clash =
        this.barsCpu.find((b) => b.cpuBase < end && b.cpuEnd > base)?.cpuEnd ??
        this.ram.find((r) => r.base < end && r.end > base)?.end;
      if (clash === undefined) break;
      base = ((clash + align - 1n) / align) * align;
    }
    const mem = new SparseMemory(name, 'ram', size);
    const r: RamRegion = { node, base: physAddr(base), end: base + size, mem };
    this.cpu.add(r.base, mem);
    this.ram.push(r);
    this.ram.sort((a, b) => (a.base < b.base ? -1 : 1));
    return r;
  }

  /** The BAR holding bus address `addr`, or null. */
  barByBus(addr: bigint): BarEntry | null {
    return findIn(
      this.barsBus,
      addr,
      (e) => e.busBase,
      (e) => e.busEnd,
    );
  }

  /** The BAR holding CPU physical address `addr`, or null. */
  barByCpu(addr: bigint): BarEntry | null {
    return findIn(
      this.barsCpu,
      addr,
      (e) => e.cpuBase,
      (e) => e.cpuEnd,
    );
  }

  /** The RAM region holding `addr`, or null. */
  ramAt(addr: bigint): RamRegion | null {
    return findIn(
      this.ram,
      addr,
      (r) => r.base,
      (r) => r.end,
    );
  }

  /** Every BAR edge (bus addresses), for splitting requests where the decode may change. */
  barBusRanges(): readonly { base: bigint; end: bigint }[] {
    return this.barsBus.map((e) => ({ base: e.busBase, end: e.busEnd }));
  }

  /** The BAR entry of a function, or null when it has no such memory BAR. */
  bar(fn: PciFunction, index: number): BarEntry | null {
    return this.barIndex.get(`${fn.name}/${index}`) ?? null;
  }

  /** Let a device's register handler answer a BAR (it leaves the CPU memory map). */
  attachMmio(fn: PciFunction, index: number, mmio: MmioHandler): void {
    const e = this.bar(fn, index);
    if (!e) throw new Error(`${fn.name}: no memory BAR ${index} to attach ${mmio.name} to`);
    if (e.backing.kind === 'mmio')
      throw new Error(`${fn.name} BAR${index}: already claimed by ${e.backing.mmio.name}`);
    this.cpu.remove(e.backing.mem);
    e.backing = { kind: 'mmio', mmio };
  }

  /** The sparse memory behind a memory-backed BAR (throws for a register BAR: a caller bug). */
  barMemory(fn: PciFunction, index: number): SparseMemory {
    const e = this.bar(fn, index);
    if (e?.backing.kind !== 'memory') throw new Error(`${fn.name} BAR${index}: not a memory-backed BAR`);
    return e.backing.mem;
  }

  /**
   * A CPU load from `phys` (RAM, BAR memory or registers); no bandwidth is modelled for the CPU.
   * @returns false when part of the range decodes to nothing (a real load would read all ones).
   */
  cpuRead(phys: PhysAddr, dst: Uint8Array): boolean {
    const b = this.barByCpu(phys);
    if (b && b.backing.kind === 'mmio') {
      if (phys + bytes(dst.length) > b.cpuEnd) return false;
      b.backing.mmio.read(Number(phys - b.cpuBase), dst);
      return true;
    }
    return this.cpu.read(phys, dst).ok;
  }

  /**
   * A CPU store to `phys`.
   * @returns false when part of the range decodes to nothing (the store is dropped).
   */
  cpuWrite(phys: PhysAddr, src: Uint8Array): boolean {
    const b = this.barByCpu(phys);
    if (b && b.backing.kind === 'mmio') {
      if (phys + bytes(src.length) > b.cpuEnd) return false;
      b.backing.mmio.write(Number(phys - b.cpuBase), src);
      return true;
    }
    return this.cpu.write(phys, src).ok;
  }

  /** One line per region, for reports and error messages. */
  describe(): string[] {
    const ram = this.ram.map((r) => `RAM node${r.node} [${hex(r.base)}-${hex(r.end - 1n)}]`);
    const bars = this.barsCpu.map(
      (e) => `${e.fn.name} BAR${e.bar.index} [${hex(e.cpuBase)}-${hex(e.cpuEnd - 1n)}]`,
    );
    return [...ram, ...bars];
  }
}
