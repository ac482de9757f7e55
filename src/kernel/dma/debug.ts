// The DMA-API debug ledger of kernel/dma/debug.c (CONFIG_DMA_API_DEBUG): every mapping is recorded,
// and unmaps, syncs and device release are checked against the record, with the kernel's message
// texts ("DMA-API: <driver> <device>: device driver frees DMA memory with different size ...").
//
// As in the kernel, `err_printk()` counts every violation (`error_count`) but prints only the first
// (`show_num_errors` = 1) unless all errors are asked for (debugfs `all_errors`); the model also keeps
// every violation as a report value with the offending call and where the memory was mapped.
//
// One check the kernel does not make is added: ownership. After a map or `sync_for_device` the memory
// belongs to the device; `sync_for_cpu` or unmap gives it back. `cpuAccess()` reports a CPU access to
// memory the device owns (its text is the model's own; no mainline message exists for it).

import { hexPad } from '../../hw/addr.js';
import { devName, type KernelLog } from '../printk.js';
import type { KernelVersion } from '../profile.js';
import {
  DebugEntries,
  type DebugRef,
  MAP_ERR_CHECKED,
  MAP_ERR_NOT_CHECKED,
  OWNER_CPU,
  OWNER_DEVICE,
  PREALLOC_DMA_DEBUG_ENTRIES,
  T_COHERENT,
  T_NONCOHERENT,
  T_PHY,
  T_RESOURCE,
  T_SG,
  T_SINGLE,
} from './debug-entries.js';
import { DMA_DIRECTION_VALUE, DMA_MAPPING_ERROR, type DmaDirection } from './dma-types.js';

export type DmaDebugType = 'single' | 'sg' | 'coherent' | 'resource' | 'phy' | 'noncoherent';
const TYPE_ID: Record<DmaDebugType, number> = {
  single: T_SINGLE,
  sg: T_SG,
  coherent: T_COHERENT,
  resource: T_RESOURCE,
  phy: T_PHY,
  noncoherent: T_NONCOHERENT,
};

/** `type2name[]` per profile: 6.1 still spells "scather-gather"; newest has "phy" and no "resource". */
const TYPE_NAMES: Record<KernelVersion, readonly string[]> = {
  '6.1': ['single', 'scather-gather', 'coherent', 'resource', 'phy', 'noncoherent'],
  newest: ['single', 'scatter-gather', 'coherent', 'resource', 'phy', 'noncoherent'],
};

/** Which entry type a physical-address mapping gets: 6.1 `single`/`resource`, newest always `phy`. */
export const DEBUG_PHYS_TYPE: Record<KernelVersion, { page: DmaDebugType; resource: DmaDebugType }> = {
  '6.1': { page: 'single', resource: 'resource' },
  newest: { page: 'phy', resource: 'phy' },
};

const DIR_NAME = ['DMA_BIDIRECTIONAL', 'DMA_TO_DEVICE', 'DMA_FROM_DEVICE', 'DMA_NONE'];
const MAPERR_NAME = [
  'dma map error check not applicable',
  'dma map error not checked',
  'dma map error checked',
];

/** The API calls the ledger records (kept as a small id per entry). */
export const DMA_DEBUG_CALLS = [
  '?',
  'dma_map_phys',
  'dma_map_page_attrs',
  'dma_map_resource',
  'dma_map_sg_attrs',
  'dma_map_sgtable',
  'dma_unmap_phys',
  'dma_unmap_page_attrs',
  'dma_unmap_resource',
  'dma_unmap_sg_attrs',
  'dma_unmap_sgtable',
  'dma_sync_single_for_cpu',
  'dma_sync_single_for_device',
  'dma_sync_sg_for_cpu',
  'dma_sync_sg_for_device',
  'device release',
  'cpu access',
  'dma_iova_link',
  'dma_iova_unlink',
  'dma_iova_destroy',
] as const;
export type DmaDebugCall = (typeof DMA_DEBUG_CALLS)[number];
const CALL_ID = new Map<string, number>(DMA_DEBUG_CALLS.map((c, i) => [c, i]));

/** The device as the ledger needs it (a `DmaDevice` fits). */
export interface DebugDev {
  readonly id: number;
  readonly name: string;
  readonly fn: { readonly driver: string | null; readonly name: string };
}

export type DmaDebugViolation =
  | 'free-invalid-address'
  | 'free-not-allocated'
  | 'free-different-size'
  | 'free-wrong-function'
  | 'free-different-sg-count'
  | 'free-different-direction'
  | 'map-error-not-checked'
  | 'sync-not-allocated'
  | 'sync-outside-range'
  | 'sync-different-direction'
  | 'sync-read-only-for-cpu'
  | 'sync-write-only-to-device'
  | 'sync-different-sg-count'
  | 'overlapping-cacheline'
  | 'mmio-on-ram'
  | 'leak-at-release'
  | 'iova-unlink-partial'
  | 'cpu-access-device-owned';

/** One violation: what the kernel printed, the call that offended, and where the memory was mapped. */
export interface DmaDebugReport {
  readonly kind: DmaDebugViolation;
  readonly device: string;
  /** The message as dmesg shows it (each line of a multi-line message). */
  readonly lines: readonly string[];
  /** The offending call, e.g. "dma_unmap_phys(dev_addr=0x..., size=4096, DMA_TO_DEVICE)". */
  readonly call: string;
  /** The map call of the entry involved ("dma_map_phys(...) at 1200 ns"), when there is one. */
  readonly mappedAt: string | null;
  /** Whether it reached the log (only the first does, unless all errors are shown). */
  readonly printed: boolean;
  readonly timeNs: number;
}

const h16 = (v: bigint): string => hexPad(v, 16);
const dirNum = (d: DmaDirection): number => DMA_DIRECTION_VALUE[d];

/** `struct dma_debug_entry` as a plain value, for dumps, checkers and tests. */
export interface DmaDebugEntryView {
  readonly device: string;
  readonly type: string;
  readonly devAddr: bigint;
  readonly size: bigint;
  readonly paddr: bigint;
  readonly dir: string;
  readonly mapErr: string;
  readonly owner: 'cpu' | 'device';
  readonly call: DmaDebugCall;
  readonly sgCallEnts: number;
  readonly sgMappedEnts: number;
}

export class DmaDebug {
  readonly e = new DebugEntries();
  /** `error_count`. */
  errorCount = 0;
  /** `show_num_errors` (default 1). */
  showNumErrors = 1;
  /** `all_errors`. */
  allErrors: boolean;
  /** `global_disable` inverted: false with dma_debug=off (or a profile without CONFIG_DMA_API_DEBUG). */
  enabled: boolean;
  readonly reports: DmaDebugReport[] = [];
  /** Active cachelines (`dma_active_cacheline`): cacheline number -> overlap count (0 = one mapping). */
  readonly cachelines = new Map<number, number>();
  /** CPU ranges of each sg map call, by the group's first entry: [phys0, len0, phys1, len1, ...]. */
  readonly sgRanges = new Map<number, Float64Array>();
  readonly devs: DebugDev[] = [];
  /** Optional RAM test for the MMIO check (`pfn_valid() && !PageReserved()`). */
  isRam: ((phys: bigint) => boolean) | null = null;
  private readonly warnedOnce = new Set<string>();

  readonly version: KernelVersion;
  readonly log: Pick<KernelLog, 'printk'>;
  readonly now: () => number;

  constructor(
    version: KernelVersion,
    log: Pick<KernelLog, 'printk'>,
    now: () => number,
    enabled: boolean,
    allErrors: boolean,
  ) {
    this.version = version;
    this.log = log;
    this.now = now;
    this.enabled = enabled;
    this.allErrors = allErrors;
    if (enabled) {
      log.printk('info', `DMA-API: preallocated ${PREALLOC_DMA_DEBUG_ENTRIES} debug entries`);
      log.printk('info', 'DMA-API: debugging enabled by kernel config');
    }
  }

  typeName(t: number): string {
    return TYPE_NAMES[this.version][t] ?? '?';
  }

  /** A ref for checks (`struct dma_debug_entry ref`). */
  ref(
    dev: DebugDev,
    devAddr: bigint,
    size: bigint,
    type: DmaDebugType,
    dir: DmaDirection,
    sgCall = 0,
  ): DebugRef {
    return { dev: dev.id, devAddr, size, type: TYPE_ID[type], dir: dirNum(dir), sgCallEnts: sgCall };
  }

  /** Describe entry `e`'s map call for "Mapped at:". */
  mappedAt(e: number): string {
    const E = this.e;
    const call = DMA_DEBUG_CALLS[E.call[e]!] ?? '?';
    return `${call}(phys=${h16(E.paddr[e]!)}, dev_addr=${h16(E.devAddr[e]!)}, size=${E.size[e]}, ${DIR_NAME[E.dir[e]!]}) at ${this.timeNsOf(e)} ns`;
  }

  private timeNsOf(e: number): number {
    return this.e.timeNs[e]!;
  }

  /** `err_printk()`: count, print if allowed, and keep the report. */
  errPrintk(kind: DmaDebugViolation, dev: DebugDev, entry: number, msg: string, call: string): void {
    this.errorCount++;
    const printed = this.allErrors || this.showNumErrors > 0;
    const lines = msg.split('\n').filter((l) => l !== '');
    const prefix = `DMA-API: ${devName(dev.fn)}: `;
    const mappedAt = entry >= 0 ? this.mappedAt(entry) : null;
    const text = lines.map((l, i) => (i === 0 ? prefix + l : l));
    if (printed) {
      for (const l of text) this.log.printk('warn', l);
      this.log.printk('warn', `WARNING: at ${call}`);
      if (mappedAt !== null) {
        this.log.printk('warn', 'DMA-API: Mapped at:');
        this.log.printk('warn', ` ${mappedAt}`);
      }
    }
    if (!this.allErrors && this.showNumErrors > 0) this.showNumErrors--;
    this.reports.push({ kind, device: dev.name, lines: text, call, mappedAt, printed, timeNs: this.now() });
  }

  /** A WARN_ONCE of the ledger itself (e.g. too many overlapping mappings of a cacheline). */
  warnOnce(key: string, text: string): void {
    if (this.warnedOnce.has(key)) return;
    this.warnedOnce.add(key);
    this.log.printk('warn', `DMA-API: ${text}`);
  }

  noteDev(dev: DebugDev): void {
    this.devs[dev.id] = dev;
  }

  /** Entry `e` as a value. */
  view(e: number): DmaDebugEntryView {
    const E = this.e;
    return {
      device: this.devs[E.dev[e]!]?.name ?? '?',
      type: this.typeName(E.type[e]!),
      devAddr: E.devAddr[e]!,
      size: E.size[e]!,
      paddr: E.paddr[e]!,
      dir: DIR_NAME[E.dir[e]!]!,
      mapErr: MAPERR_NAME[E.mapErr[e]!]!,
      owner: E.owner[e] === OWNER_CPU ? 'cpu' : 'device',
      call: DMA_DEBUG_CALLS[E.call[e]!]!,
      sgCallEnts: E.sgCallEnts[e]!,
      sgMappedEnts: E.sgMappedEnts[e]!,
    };
  }

  /** Every active entry, in hash order (optionally of one device). */
  entries(dev?: DebugDev): DmaDebugEntryView[] {
    const out: DmaDebugEntryView[] = [];
    for (const e of this.e.inHashOrder())
      if (dev === undefined || this.e.dev[e] === dev.id) out.push(this.view(e));
    return out;
  }

  /** `debug_dma_dump_mappings()`: one `dev_info` line per entry. */
  dumpMappings(dev?: DebugDev): string[] {
    const out: string[] = [];
    const E = this.e;
    for (const e of E.inHashOrder()) {
      const d = this.devs[E.dev[e]!];
      if (!d || (dev !== undefined && d.id !== dev.id)) continue;
      const p = E.paddr[e]!;
      const idx = E.bucket[e]!;
      out.push(
        `${devName(d.fn)}: ${this.typeName(E.type[e]!)} idx ${idx} P=${p.toString(16)} N=${(p >> 12n).toString(16)} D=${E.devAddr[e]!.toString(16)} L=${E.size[e]!.toString(16)} cln=${h16(p >> 6n)} ${DIR_NAME[E.dir[e]!]} ${MAPERR_NAME[E.mapErr[e]!]}`,
      );
    }
    return out;
  }

  callId(call: DmaDebugCall): number {
    return CALL_ID.get(call) ?? 0;
  }

  /** Does `addr` equal the error cookie (what `dma_mapping_error()` tests)? */
  static isError(addr: bigint): boolean {
    return addr === DMA_MAPPING_ERROR;
  }

  /** Mark entries of a map call as owned by the device or the CPU. */
  setOwner(e: number, owner: 'cpu' | 'device'): void {
    this.e.owner[e] = owner === 'cpu' ? OWNER_CPU : OWNER_DEVICE;
  }

  /** `MAP_ERR_*` helpers for the checks module. */
  static readonly NOT_CHECKED = MAP_ERR_NOT_CHECKED;
  static readonly CHECKED = MAP_ERR_CHECKED;
}
